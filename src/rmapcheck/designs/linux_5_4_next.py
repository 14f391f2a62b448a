"""Design ``linux-5.4-next``: linux-next of October 2019 with "mm/rmap.c: reuse mergeable anon_vma as parent when fork".

Wei Yang's patch (Message-ID <20191004160632.30251-1-richardw.yang@linux.intel.com>,
4 October 2019; in linux-next as 4e4a9eb92133, next-20191008) taught
``anon_vma_clone()`` to keep, in a forked child, the anon_vma a parent VMA
shares with its predecessor (mm/rmap.c)::

    struct vm_area_struct *prev = dst->vm_prev, *pprev = src->vm_prev;
    /*
     * If parent share anon_vma with its vm_prev, keep this sharing in in
     * child.
     *
     * 1. Parent has vm_prev, which implies we have vm_prev.
     * 2. Parent and its vm_prev have the same anon_vma.
     */
    if (pprev && pprev->anon_vma == src->anon_vma)
            dst->anon_vma = prev->anon_vma;

But ``anon_vma_clone()`` is not only fork's: the merge code calls it too,
after setting ``importer->anon_vma = exporter->anon_vma``. When a new range
joins an unfaulted ``prev`` to a faulted ``next``, ``pprev`` (next's
predecessor) is ``prev`` itself, whose anon_vma was just set to next's, so
``prev`` gets the anon_vma of *its own* predecessor: another anon_vma, or
none. syzbot and Qian Cai's s390 test (9 October 2019, 5.4.0-rc2-next-20191008)
then hit ``kernel BUG at include/linux/rmap.h:159``, ``anon_vma_merge()``'s
``VM_BUG_ON_VMA(vma->anon_vma != next->anon_vma)``, in ``__vma_adjust()``
from ``vma_merge()`` from ``mmap_region()``; with no predecessor, ``prev``
is ``NULL`` (docs/history.md B15). Wei Yang: "anon_vma_clone() now would be
called in vma_adjust, which is a different case when it is introduced." The
later versions guarded the test with ``!dst->anon_vma && src->anon_vma``;
Konstantin Khlebnikov's "mm/rmap: fix and simplify reusing mergeable anon_vma
as parent when fork" (January 2020, ``Fixes: 4e4a9eb92133``) moved it into
``anon_vma_fork()``; mainline has neither.

BASE is ``linux-6.0``: the reuse rule (``degree``) and merge rule of 2019.
Replaced: ``anon_vma_clone()``, the hunk above and then the base's clone.
``vm_prev`` is the VMA before in the mm's tree; for a ``vm_area_dup()``
copy not yet linked (fork, a split, ``copy_vma()``) it is the source's, as
2019's ``*new = *orig`` copied the field. The merge path is today's
``vma_expand()``/``dup_anon_vma()``, which calls ``anon_vma_clone()`` in the
place 2019's ``__vma_adjust()`` did.
"""

from __future__ import annotations

from typing import Any

from rmapcheck.designs import linux_6_0
from rmapcheck.model import rmap
from rmapcheck.model.findings import KernelBug
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import vm_area_struct

__all__ = ["BASE", "HISTORY", "REPLACE", "SCENARIO_DIFFERS", "anon_vma_clone", "vm_prev"]

BASE = "linux-6.0"


def vm_prev(vma: vm_area_struct, src: vm_area_struct | None = None) -> vm_area_struct | None:
    """``vma->vm_prev`` (include/linux/mm_types.h, v5.4): the VMA before ``vma`` in its mm.

    A ``vm_area_dup()`` copy that is not in the tree yet kept the field of the
    VMA it was copied from, ``src``.
    """
    mm = vma.vm_mm
    if mm is not None:
        for i, v in enumerate(mm.mmap):
            if v is vma:
                return mm.mmap[i - 1] if i else None
    return vm_prev(src) if src is not None else None


def anon_vma_clone(k: Kernel, dst: vm_area_struct, src: vm_area_struct) -> int:
    """``anon_vma_clone()`` (mm/rmap.c, next-20191008): 4e4a9eb92133's hunk, then the clone.

    :returns: 0, or ``-ENOMEM``.
    """
    prev, pprev = vm_prev(dst, src), vm_prev(src)
    if pprev is not None and pprev.anon_vma is src.anon_vma:
        if prev is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("anon_vma_clone", "NULL pointer dereference: prev")
        dst.anon_vma = prev.anon_vma
    return rmap.anon_vma_clone(k, dst, src)


REPLACE: dict[str, Any] = {"anon_vma_clone": anon_vma_clone}

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "B15",
        "title": "a merge's anon_vma_clone() takes prev's predecessor's anon_vma (linux-next, October 2019)",
        "fixed": "linux-6.0",
        # three pages a region: an unfaulted page moved between an unfaulted
        # and a faulted VMA joins them, as syzbot's mmap() did
        "args": ("--processes", "1", "--regions", "2", "--pages", "3", "--ops", "write,mremap", "--depth", "4"),
        "property": "vm-bug-on",
        "tuned": "",
        "fast": True,
    },
)

#: Bundled scenarios whose outcome on this design differs from linux-6.18's.
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = {
    **linux_6_0.SCENARIO_DIFFERS,
    "mremap-move-unfaulted-merges": (
        "vm-bug-on", "4e4a9eb92133 (linux-next, 2019): the merge's anon_vma_clone() gives prev its predecessor's "
                     "anon_vma, VM_BUG_ON_VMA in anon_vma_merge()"),
}
