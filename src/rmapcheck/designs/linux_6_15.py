"""Design ``linux-6.15``: the anonymous merge rule of v3.0 to v6.15, before 879bca0a2c4f.

Linux kernel commit 965f55dea0e3 ("mmap: avoid merging cloned VMAs", May
2011) made ``is_mergeable_anon_vma()`` refuse a merge that would widen a VMA
cloned from a parent, with a ``list_is_singular()`` test on the anon_vma
chain. The test was applied to the VMA passed in, which is the *target* of
the merge (``vmg->prev`` or ``vmg->next``), so an unfaulted target (empty
chain) refused every faulted source: "we very often do NOT do this ... This
appears to be due to an inadvertent consequence of the change introduced by
commit 965f55dea0e3". Lorenzo Stoakes' 879bca0a2c4f ("mm/vma: fix
incorrectly disallowed anonymous VMA merges", v6.16) tests whichever side has
the anon_vma instead (docs/history.md B18, S12).

BASE is ``linux-6.18.0`` (v6.18 before the 2026 mremap fix, which repaired a
merge 879bca0a2c4f had made possible): "v6.18.0 with 879bca0a2c4f reverted".
The revert is one function. ``are_anon_vmas_compatible(prev, next)``, which
the fix inlined into ``can_vma_merge_right()``, called
``is_mergeable_anon_vma(prev->anon_vma, next->anon_vma, NULL)`` and so
allowed what v6.18's expression allows; it needs no replacement. The rest of
the VMA code is today's (v6.12's ``vma_merge_existing_range()`` and
``vma_merge_new_range()``, not the ``vma_merge()`` of earlier releases).

This design is the buggy side of B18, which is not a memory-safety bug but a
merge that must happen: ``rmapcheck check --require anon-merge-into-unfaulted``
reports ``never reached`` here and reaches it on ``linux-6.18``.
"""

from __future__ import annotations

from typing import Any

from rmapcheck.model.findings import KernelBug
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.vma import vma_merge_struct

__all__ = ["BASE", "HISTORY", "REPLACE", "SCENARIO_DIFFERS", "is_mergeable_anon_vma"]

BASE = "linux-6.18.0"


def is_mergeable_anon_vma(k: Kernel, vmg: vma_merge_struct, merge_next: bool) -> bool:
    """``is_mergeable_anon_vma()`` (mm/vma.c, v6.15, before 879bca0a2c4f).

    ``is_mergeable_anon_vma(vmg->anon_vma, vma->anon_vma, vma)`` with ``vma``
    the merge target (``vmg->next`` in ``can_vma_merge_before()``,
    ``vmg->prev`` in ``can_vma_merge_after()``)::

        if ((!anon_vma1 || !anon_vma2) && (!vma ||
                list_is_singular(&vma->anon_vma_chain)))
            return true;
        return anon_vma1 == anon_vma2;

    "The list_is_singular() test is to avoid merging VMA cloned from parents.
    This can improve scalability caused by anon_vma lock." An unfaulted
    target's chain is empty, not singular: a faulted range never merges into it.
    """
    vma = vmg.next if merge_next else vmg.prev
    if vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("is_mergeable_anon_vma", "NULL pointer dereference: vma")
    anon_vma1 = vmg.anon_vma
    anon_vma2 = vma.anon_vma
    if (anon_vma1 is None or anon_vma2 is None) and len(vma.anon_vma_chain) == 1:
        return True
    return anon_vma1 is anon_vma2


REPLACE: dict[str, Any] = {"is_mergeable_anon_vma": is_mergeable_anon_vma}

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "B18",
        "title": "a faulted VMA never merges into an unfaulted neighbour (965f55dea0e3 to 879bca0a2c4f)",
        "fixed": "linux-6.18",
        # the bounds of the 2026 mremap use-after-free, which 879bca0a2c4f
        # made possible: a faulted page moved away and back next to an
        # unfaulted one of its region
        "args": ("--processes", "1", "--regions", "2", "--ops", "write,mremap", "--depth", "4",
                 "--require", "anon-merge-into-unfaulted"),
        "property": "anon-merge-into-unfaulted",
        "tuned": "",
        "fast": True,
    },
)

_MERGE_RULE = "a faulted range never merges into an unfaulted VMA before 879bca0a2c4f (v6.16)"

#: Bundled scenarios whose outcome on this design differs from linux-6.18's.
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = {
    name: ("maps", _MERGE_RULE) for name in (
        "fork-child-refuses-existing-merge", "merge-mprotect-both", "merge-mprotect-faulted-left-unfaulted-right",
        "merge-mprotect-next", "merge-mprotect-prev", "merge-mprotect-unfaulted-both",
        "merge-mprotect-unfaulted-left", "merge-mprotect-unfaulted-left-faulted-right",
        "merge-mprotect-unfaulted-right", "mremap-faulted-unfaulted-merge",
        "mremap-fork-child-no-merge-at-destination")
}
