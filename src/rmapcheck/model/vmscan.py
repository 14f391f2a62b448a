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

The model checker runs the walk of an anonymous folio as a kernel thread in
phases (:class:`ReclaimWalk`), split where the kernel's walk may be
preempted or run beside other CPUs: after reading ``folio->mapping`` under
RCU, and while it holds the anon_vma root's lock::

    isolated  --rcu-->     rcu      folio_isolate_lru(), folio_trylock();
                                    folio_mapcount(); the anon_vma read under
                                    rcu_read_lock(), not pinned
    rcu       --lock-->    locked   the design's folio_lock_anon_vma_root()
    locked    --walk-->    done     the walk of the anon_vma's chains, the
                                    design's page_unlock_anon_vma(), putback

This is the window of docs/history.md B4: the anon_vma freed and reused
while the walker waits for its root's lock. With ``k.rcu_windows`` off the
first two steps are one: the lock is taken where ``folio->mapping`` is read.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from rmapcheck.model.findings import MissedRmapWalk
from rmapcheck.model.memory import folio_put, is_migration_entry
from rmapcheck.model.mm_types import VM_LOCKED, anon_vma, folio, mm_struct
from rmapcheck.model.rmap import LOCK_RETRY
from rmapcheck.model.slab import FastPickle, kasan_check

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "RECLAIM_PHASES",
    "ReclaimWalk",
    "VMSCAN_OPS",
    "check_rmap_walk",
    "folio_check_references",
    "page_table_mappings",
    "reclaim_folio_refs",
    "reclaim_held_roots",
    "reclaim_prepare",
    "reclaim_step",
    "rmap_walk_reaches_all",
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


def rmap_walk_reaches_all(f: folio) -> bool:
    """Whether the kernel promises that an rmap walk of ``f`` reaches every mapping of it.

    It does for an anonymous folio (through its anon_vma) and for a KSM folio
    with a stable node (through the node's rmap_items and, for forks made
    since ksmd passed, their anon_vmas). It does not for a KSM folio without
    a stable node, which a merge that failed half-way leaves mapped
    (mm/ksm.c, v6.18): ``try_to_merge_one_page()`` upgrades the first page
    "from anon to a NULL stable_node with the KSM flag set:
    stable_tree_insert() will update stable_node"; when the merge with the
    second page or ``stable_tree_insert()`` fails, ``break_cow()`` unshares
    the rmap_item's own mapping only, and a mapping forked before the merge
    keeps the half-KSM folio. ``folio_stable_node()`` is then ``NULL``:
    ``folio_referenced()`` returns 0 before walking (no
    ``folio_raw_mapping()``), ``rmap_walk_ksm()`` returns at once, reclaim
    leaves the folio mapped and migration fails with ``-EAGAIN`` and is
    retried; a write to it copies (``do_wp_page()`` never reuses a KSM
    folio), and ksmd cannot merge it again (``page_address_in_vma()`` finds
    no anon_vma). The kernel has lived with such folios since KSM began
    ("ksm: fix page_address_in_vma anon_vma oops", v2.6.36, is about them).

    :param f: ``struct folio *`` the walk is over.
    """
    return not f.ksm or f.stable_node is not None


def check_rmap_walk(k: Kernel, f: folio, expected: list[tuple[mm_struct, int]],
                    visited: list[tuple[mm_struct, int]], function: str) -> None:
    """Report a mapping of ``expected`` that the walk (``visited``) did not reach.

    The caller checks only a walk that :func:`rmap_walk_reaches_all` says
    must reach every mapping.

    :param expected: the mappings before the walk (:func:`page_table_mappings`).
    :param visited: the ``(mm, address)`` pairs the walk's ``rmap_one`` handled.
    :raises MissedRmapWalk: naming the first mapping missed.
    """
    seen = {(id(mm), vpn) for mm, vpn in visited}
    for mm, vpn in expected:
        if (id(mm), vpn) not in seen:
            raise MissedRmapWalk(
                function, f"rmap walk of page {f.pfn()} missed its mapping in {mm.owner} at {vpn:#x} "
                          f"({len(expected) - len(seen)} of {len(expected)} mappings not visited)", f)


def folio_check_references(k: Kernel, f: folio) -> int:
    """``folio_check_references()`` (mm/vmscan.c, v6.18), checking its rmap walk.

    Runs ``folio_referenced()`` on the locked folio (as ``shrink_folio_list()``
    does) and checks that the walk reached every mapping the page tables hold,
    unless a ``VM_LOCKED`` VMA stopped it early ("Restore the mlock which got
    missed"), the rmap lock was contended, or the walk promises nothing
    (:func:`rmap_walk_reaches_all`: a half-merged KSM folio).

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
    if referenced >= 0 and not vm_flags[0] & VM_LOCKED and rmap_walk_reaches_all(f):
        check_rmap_walk(k, f, expected, visited, fn)
    return referenced


#: the phases of a reclaim walk, in order (see the module docstring)
RECLAIM_PHASES = ("isolated", "rcu", "locked", "done")


class ReclaimWalk(FastPickle):
    """One reclaim walk in flight: what ``shrink_folio_list()`` → ``folio_referenced()`` keeps between phases.

    :param f: the isolated, locked ``struct folio *``.
    """

    __slots__ = ("folio", "phase", "mapcount", "anon_vma", "root")

    def __init__(self, f: folio) -> None:
        self.folio = f
        self.phase = "isolated"
        self.mapcount = 0  # folio_mapcount() when folio_referenced() began
        self.anon_vma: anon_vma | None = None  # read under RCU, then locked
        self.root: anon_vma | None = None  # the root whose rwsem the walk holds

    def __repr__(self) -> str:
        return f"ReclaimWalk(page {self.folio.pfn()}, {self.phase})"


def reclaim_prepare(k: Kernel, f: folio) -> ReclaimWalk | None:
    """``folio_isolate_lru()`` and ``folio_trylock()`` of ``shrink_folio_list()`` (mm/vmscan.c, v6.18).

    :returns: the walk in phase ``isolated``, listed in ``k.walks``; ``NULL``
        if the folio is locked (reclaim skips it).
    """
    kasan_check(f, "folio_isolate_lru")
    if f.locked:
        return None
    f._refcount += 1  # folio_isolate_lru(): folio_get()
    f.locked = True  # folio_trylock()
    st = ReclaimWalk(f)
    k.walks.append(st)
    return st


def _finish(k: Kernel, st: ReclaimWalk) -> None:
    # folio_unlock(); folio_putback_lru() drops the isolation reference.
    st.phase = "done"
    st.folio.locked = False
    k.walks.remove(st)
    folio_put(k, st.folio, "folio_putback_lru")


def reclaim_step(k: Kernel, st: ReclaimWalk) -> str:
    """``folio_referenced()`` of the reclaim walk ``st``, advanced by one phase (see the module docstring).

    Returns the new phase. The walk is ``folio_referenced()`` (mm/rmap.c, v6.18) cut at its
    preemption points, with the checking walk of
    :func:`folio_check_references` at the end: a walk that saw fewer mappings
    than ``folio_mapcount()`` promised, and did not stop at a ``VM_LOCKED``
    VMA, must have reached every mapping the page tables hold. A KSM folio's
    walk (``rmap_walk_ksm()``) runs whole in the first phase.

    :raises MissedRmapWalk: a mapping of the folio the walk did not reach.
    """
    f = st.folio
    if st.phase == "isolated":
        if f.ksm or not isinstance(f.mapping, anon_vma):
            k.ops.folio_check_references(k, f)
            _finish(k, st)
            return st.phase
        st.mapcount = f._mapcount  # folio_mapcount()
        av = k.ops.folio_anon_vma_rcu(k, f) if st.mapcount else None
        if av is None:
            _finish(k, st)
            return st.phase
        st.anon_vma = av
        st.phase = "rcu"
        if not k.rcu_windows:
            return reclaim_step(k, st)  # the lock at once
    elif st.phase == "rcu":
        rwc, _ = k.ops.folio_referenced_rwc(k, f, st.mapcount)
        got = k.ops.folio_lock_anon_vma_root(k, f, st.anon_vma, rwc)
        if got == LOCK_RETRY:
            # rcu_read_unlock(); goto retry: read folio->mapping again
            av = k.ops.folio_anon_vma_rcu(k, f)
            if av is None:
                _finish(k, st)
            else:
                st.anon_vma = av
        elif got is None:
            _finish(k, st)
        else:
            st.anon_vma = got
            st.root = got.root
            st.phase = "locked"
    elif st.phase == "locked":
        expected = page_table_mappings(k, f)
        visited: list[tuple[mm_struct, int]] = []
        rwc, pra = k.ops.folio_referenced_rwc(k, f, st.mapcount, visited)
        locked = st.anon_vma
        # rmap_walk() → rmap_walk_anon_lock(): the anon_vma is locked already
        rwc.anon_lock = lambda k_, f_, rwc_: locked
        st.root = None  # page_unlock_anon_vma() releases it
        k.ops.rmap_walk(k, f, rwc)
        if pra["mapcount"] and not pra["vm_flags"] & VM_LOCKED:
            check_rmap_walk(k, f, expected, visited, "folio_referenced")
        _finish(k, st)
    return st.phase


def reclaim_folio_refs(k: Kernel) -> Counter[folio]:
    """The folio references in-flight reclaim walks hold (their isolation references)."""
    return Counter(st.folio for st in k.walks)


def reclaim_held_roots(k: Kernel) -> set[int]:
    """``id()`` of the anon_vma roots whose rwsem an in-flight reclaim walk holds."""
    return {id(st.root) for st in k.walks if st.root is not None}


VMSCAN_OPS = {
    "folio_check_references": folio_check_references,
}
