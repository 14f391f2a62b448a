"""Design ``linux-4.0``: ``linux-3.19`` with Linux kernel commit 3fe89b3e2a7b.

"mm: fix anon_vma->degree underflow in anon_vma endless growing prevention"
(Leon Yu, March 2015, v4.0-rc, Cc stable): "unlink_anon_vmas() is called
without incrementing dst->anon_vma->degree in anon_vma_clone() due to
allocation failure. If dst->anon_vma is not NULL in error path, its degree
will be incorrectly decremented in unlink_anon_vmas() and eventually
underflow when exiting as a result of another call to unlink_anon_vmas().
That's how "kernel BUG at mm/rmap.c:399!" is triggered for me. This patch
fixes the underflow by dropping dst->anon_vma when allocation fails."
(docs/history.md B13).

The diff against :mod:`rmapcheck.designs.linux_3_19`: ``anon_vma_clone()``
(mm/rmap.c) sets ``dst->anon_vma = NULL`` before ``unlink_anon_vmas(dst)``
on failure, and ``vma_adjust()`` (mm/mmap.c) no longer clears
``importer->anon_vma`` itself ("Also suggested by Michal Hocko, we can clean
up vma_adjust() a bit as anon_vma_clone() now does the work"), which is
v6.18's ``dup_anon_vma()``. The anon_vma code of v4.0 through v6.0 then
differs from this design in the reuse only by Wei Yang's 2019 "reuse only
on fork" (docs/history.md S10) and in the ``VM_WARN_ON`` of 2016.
"""

from __future__ import annotations

import errno
from typing import Any

from rmapcheck.designs.linux_3_16_rc import clone_chain
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import vm_area_struct
from rmapcheck.model.vma import dup_anon_vma

__all__ = ["BASE", "REPLACE", "SCENARIO_DIFFERS", "anon_vma_clone"]

BASE = "linux-3.19"


def anon_vma_clone(k: Kernel, dst: vm_area_struct, src: vm_area_struct) -> int:
    """``anon_vma_clone()`` (mm/rmap.c, 3fe89b3e2a7b): on failure, drop ``dst->anon_vma`` first.

    "dst->anon_vma is dropped here otherwise its degree can be incorrectly
    decremented in unlink_anon_vmas(). We can safely do this because callers
    of anon_vma_clone() don't care about dst->anon_vma if anon_vma_clone()
    failed."
    """
    if clone_chain(k, dst, src):
        return 0
    dst.anon_vma = None
    k.ops.unlink_anon_vmas(k, dst)
    return -errno.ENOMEM


REPLACE: dict[str, Any] = {"anon_vma_clone": anon_vma_clone, "dup_anon_vma": dup_anon_vma}

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
