"""Design ``linux-6.18.0``: v6.18 as released, before the January 2026 mremap fix.

Linux kernel commit 61f67c230a5e ("mm/vma: fix anon_vma UAF on mremap()
faulted, unfaulted merge", January 2026, Cc: stable; carried by the live
6.18.44 kernel and by design ``linux-6.18``) made ``copy_vma()`` merge
through a new ``vma_merge_copied_range()``, which sets
``vmg->copied_from``: ``vma_expand()`` then gives the merged VMA the copied
VMA's anon_vmas, and ``is_mergeable_anon_vma()`` refuses a fork child's
(with the follow-up 3b617fd3d317, "mm/vma: enforce VMA fork limit on
unfaulted,faulted mremap merge too"). Without it, an mremap() that moves a
faulted VMA next to an unfaulted one with contiguous ``vm_pgoff`` merges
them into a VMA that has no anon_vma while the moved folios still point to
the source's anon_vma (docs/history.md: the 2026 mremap use-after-free).

The fix reverted: ``copy_vma()`` of v6.18 merged the copied range as a new
one, ``vmg.middle = NULL; new_vma = vma_merge_new_range(&vmg);``. With
``copied_from`` never set, the fix's other two hunks and the follow-up's
test do nothing, so the revert is one function: BASE ``linux-6.18`` with
``vma_merge_copied_range()`` replaced.
"""

from __future__ import annotations

from typing import Any

from rmapcheck.model.kernel import Kernel
from rmapcheck.model.vma import vma_merge_struct
from rmapcheck.model.mm_types import vm_area_struct

__all__ = ["BASE", "REPLACE", "vma_merge_copied_range"]

BASE = "linux-6.18"


def vma_merge_copied_range(k: Kernel, vmg: vma_merge_struct) -> vm_area_struct | None:
    """What ``copy_vma()`` (mm/vma.c, v6.18) did in its place: merge the copied range as a new VMA.

    ``vmg.middle = NULL; /* New VMA range. */ new_vma = vma_merge_new_range(&vmg);``
    """
    vmg.middle = None  # New VMA range.
    return k.ops.vma_merge_new_range(k, vmg)  # type: ignore[no-any-return]


REPLACE: dict[str, Any] = {"vma_merge_copied_range": vma_merge_copied_range}

#: Bundled scenarios whose outcome on this design differs from linux-6.18's.
SCENARIO_DIFFERS = {
    "mremap-faulted-unfaulted-merge": (
        "use-after-free", "the moved range merges without its anon_vma, which is freed under mapped folios; "
                          "fixed by 61f67c230a5e"),
    "mremap-fork-child-no-merge-at-destination": (
        "use-after-free", "a fork child's moved range merges at its destination without its anon_vma; "
                          "refused since 61f67c230a5e and 3b617fd3d317"),
}

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "mremap-2026",
        "title": "mremap() merges a faulted range into an unfaulted VMA without its anon_vma (61f67c230a5e)",
        "fixed": "linux-6.18",
        "args": ("--processes", "1", "--regions", "2", "--ops", "write,mremap", "--depth", "4"),
        "property": "use-after-free",
        "tuned": "",
        "fast": True,
    },
)
