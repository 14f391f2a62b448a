"""Design ``linux-6.18-degree``: v6.18 with the anon_vma reuse rule of v3.19 to v6.0.

Linux kernel commit 7a3ef208e662 ("mm: prevent endless growth of anon_vma
hierarchy", v3.19) reused an anon_vma on fork when its ``degree`` was below
two: "It adds counter anon_vma->degree which counts linked vmas and directly
descending anon_vmas and reuses anon_vma if counter is lower than two."
Jann Horn's 2555283eb40d ("mm/rmap: Fix anon_vma->degree ambiguity leading to
double-reuse", v6.1, CVE-2022-42703) split the counter in two, because "it is
possible to reuse an anon_vma for one VMA while it is still tied to another
VMA ... vma_merge() can merge pages into a VMA that is not attached to the
corresponding anon_vma, leading to dangling page->mapping pointers that will
be dereferenced during rmap walks" (docs/history.md S9, S11, B16).

``degree`` counted exactly what ``num_children + num_active_vmas`` count (the
first VMA at allocation, the self-parent link of a new root, each child and
each VMA that takes the anon_vma on), so this design keeps v6.18's counters
and replaces only the test (v6.0, mm/rmap.c, ``anon_vma_clone()``)::

    if (!dst->anon_vma && src->anon_vma &&
        anon_vma != src->anon_vma && anon_vma->degree < 2)
            dst->anon_vma = anon_vma;

Everything else is v6.18's, so this is "v6.18 with the fix reverted", not
v6.0: the VMA code around it is today's.
"""

from __future__ import annotations

from typing import Any

from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import anon_vma, vm_area_struct

__all__ = ["BASE", "REPLACE", "anon_vma_reusable"]

BASE = "linux-6.18"


def anon_vma_reusable(k: Kernel, av: anon_vma, src: vm_area_struct) -> bool:
    """The reuse test of ``anon_vma_clone()`` (mm/rmap.c, v6.0): ``degree`` below two.

    "Reuse existing anon_vma if its degree lower than two, that means it has
    no vma and only one anon_vma child." An anon_vma left with no VMA and no
    child (degree 0, an "abandoned leaf") passes too, and can be reused twice.
    """
    degree = av.num_children + av.num_active_vmas
    return src.anon_vma is not None and av is not src.anon_vma and degree < 2


REPLACE: dict[str, Any] = {"anon_vma_reusable": anon_vma_reusable}

#: Bundled scenarios whose outcome on this design differs from linux-6.18's.
SCENARIO_DIFFERS = {
    "anon-vma-double-reuse": (
        "use-after-free", "fork reuses an anon_vma still tied to another VMA; a merge leaves page->mapping "
                          "dangling (B16, CVE-2022-42703), fixed by 2555283eb40d"),
    "fork-g3-double-reuse": (
        "maps", "the degree rule of 7a3ef208e662 lets two of T's pieces reuse one anon_vma, so mprotect merges "
                "them back; since 2555283eb40d the second piece gets a fresh anon_vma and they stay apart"),
}
