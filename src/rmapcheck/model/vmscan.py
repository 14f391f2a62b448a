"""Reclaim's rmap walks: ``mm/vmscan.c`` (v6.18), as a checking walk.

The model has no swap, so reclaim cannot unmap an anonymous folio; what it
can do is the walk that reclaim starts with, ``folio_check_references()`` →
``folio_referenced()``, which must reach every mapping of the folio. The
checking walk compares the mappings the walk reached with the real ones read
from every process's page tables, as the kernel's
``tools/testing/selftests/mm/rmap.c`` checks rmap across a fork tree, and
reports a mapping the walk missed as
:class:`~rmapcheck.model.findings.MissedRmapWalk`. Migration uses the same
comparison (:func:`check_rmap_walk`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmapcheck.model.findings import MissedRmapWalk
from rmapcheck.model.memory import is_migration_entry
from rmapcheck.model.mm_types import VM_LOCKED, folio, mm_struct

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "VMSCAN_OPS",
    "check_rmap_walk",
    "folio_check_references",
    "page_table_mappings",
]


def page_table_mappings(k: Kernel, f: folio, migration: bool = False) -> list[tuple[mm_struct, int]]:
    """Where the page tables of the live processes map ``f``: the ground truth of a walk.

    :param migration: look for migration entries of ``f`` instead of present PTEs.
    :returns: ``(mm, vpn)`` pairs, in process-name and address order.
    """
    out = []
    for comm in sorted(k.tasks):
        mm = k.tasks[comm].mm
        for vpn in sorted(mm.pgtable):
            pte = mm.pgtable[vpn]
            if is_migration_entry(pte):
                if migration and pte[0].folio is f:
                    out.append((mm, vpn))
            elif not migration and pte[0] is f:
                out.append((mm, vpn))
    return out


def check_rmap_walk(k: Kernel, f: folio, expected: list[tuple[mm_struct, int]],
                    visited: list[tuple[mm_struct, int]], function: str) -> None:
    """Report a mapping of ``expected`` that the walk (``visited``) did not reach.

    :param expected: the mappings before the walk (:func:`page_table_mappings`).
    :param visited: the ``(mm, address)`` pairs the walk's ``rmap_one`` handled.
    :raises MissedRmapWalk: naming the first mapping missed.
    """
    seen = {(id(mm), vpn) for mm, vpn in visited}
    for mm, vpn in expected:
        if (id(mm), vpn) not in seen:
            raise MissedRmapWalk(
                function, f"rmap walk of page {f.pfn()} missed its mapping in {mm.owner} at {vpn:#x} "
                          f"({len(expected) - len(seen)} of {len(expected)} mappings not visited)")


def folio_check_references(k: Kernel, f: folio) -> int:
    """``folio_check_references()`` (mm/vmscan.c, v6.18), checking its rmap walk.

    Runs ``folio_referenced()`` on the locked folio (as ``shrink_folio_list()``
    does) and checks that the walk reached every mapping the page tables hold,
    unless a ``VM_LOCKED`` VMA stopped it early ("Restore the mlock which got
    missed") or the rmap lock was contended.

    :param f: ``struct folio *``, mapped.
    :returns: ``folio_referenced()``'s result: referencing mappings, or -1.
    :raises MissedRmapWalk: a mapping of ``f`` the walk did not reach.
    """
    fn = "folio_check_references"
    expected = page_table_mappings(k, f)
    visited: list[tuple[mm_struct, int]] = []
    vm_flags = [0]
    was_locked = f.locked
    f.locked = True  # shrink_folio_list(): folio_trylock()
    try:
        referenced = k.ops.folio_referenced(k, f, True, vm_flags, visited)
    finally:
        f.locked = was_locked
    if referenced >= 0 and not vm_flags[0] & VM_LOCKED:
        check_rmap_walk(k, f, expected, visited, fn)
    return referenced


VMSCAN_OPS = {
    "folio_check_references": folio_check_references,
}
