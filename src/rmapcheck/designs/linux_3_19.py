"""Design ``linux-3.19``: ``linux-3.19-rc`` with Linux kernel commit b800c91a0517.

"mm: fix corner case in anon_vma endless growing prevention" (Konstantin
Khlebnikov, January 2015): "Anon_vma_clone() is usually called for a copy
of source vma in destination argument. If source vma has anon_vma it should
be already in dst->anon_vma. NULL in dst->anon_vma is used as a sign that
it's called from anon_vma_fork(). In this case anon_vma_clone() finds
anon_vma for reusing. Vma_adjust() calls it differently and this breaks
anon_vma reusing logic: anon_vma_clone() links vma to old anon_vma and
updates degree counters but vma_adjust() overrides vma->anon_vma right
after that. As a result final unlink_anon_vmas() decrements degree for
wrong anon_vma. This patch assigns ->anon_vma before calling
anon_vma_clone()." (docs/history.md B12).

The diff against :mod:`rmapcheck.designs.linux_3_19_rc`: the
importer/exporter clone of ``vma_adjust()`` (mm/mmap.c; ``dup_anon_vma()``
here) assigns first, and clears the assignment if the clone fails. A failed
clone still decrements the degree of the anon_vma so assigned, which
``anon_vma_clone()`` never incremented (B13, fixed in ``linux-4.0``).
"""

from __future__ import annotations

from typing import Any

from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import vm_area_struct

__all__ = ["BASE", "HISTORY", "REPLACE", "SCENARIO_DIFFERS", "dup_anon_vma"]

BASE = "linux-3.19-rc"


def dup_anon_vma(k: Kernel, dst: vm_area_struct, src: vm_area_struct) -> tuple[int, vm_area_struct | None]:
    """The importer/exporter clone of ``vma_adjust()`` (mm/mmap.c, b800c91a0517): assign, then clone.

    ``importer->anon_vma = exporter->anon_vma; error = anon_vma_clone(importer,
    exporter); if (error) { importer->anon_vma = NULL; return error; }``

    :returns: ``(0 or -ENOMEM, *dup)``: ``*dup`` is ``dst`` when its chain was cloned.
    """
    if src.anon_vma is not None and dst.anon_vma is None:
        dst.anon_vma = src.anon_vma
        ret = k.ops.anon_vma_clone(k, dst, src)
        if ret:
            dst.anon_vma = None
            return ret, None
        return 0, dst
    return 0, None


REPLACE: dict[str, Any] = {"dup_anon_vma": dup_anon_vma}

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "B13",
        "title": "degree underflow when anon_vma_clone() fails",
        "fixed": "linux-4.0",
        "args": ("--processes", "1", "--regions", "1", "--pages", "2", "--ops", "write,exit,mprotect",
                 "--faults", "1", "--fault-mode", "persistent", "--depth", "3"),
        "property": "vm-bug-on",
        "tuned": "",
        "fast": True,
    },
)

#: Bundled scenarios whose outcome on this design differs from linux-6.18's.
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = {
    "anon-vma-double-reuse": (
        "invariant",
        "degree ambiguity: an anon_vma reused while a VMA still uses it (7a3ef208e662, v3.19), "
        "fixed by 2555283eb40d (v6.1)",
    ),
    "fork-g3-double-reuse": (
        "maps",
        "the degree rule of 7a3ef208e662 (v3.19) lets two of T's pieces reuse one anon_vma, so mprotect merges "
        "them back; since 2555283eb40d (v6.1) the second piece gets a fresh anon_vma and they stay apart",
    ),
}
