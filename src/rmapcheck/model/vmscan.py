"""Reclaim's rmap walks: ``mm/vmscan.c`` (v6.18), as a checking walk.

The model has no swap, so reclaim cannot unmap an anonymous folio; what it
can do is the walk that reclaim starts with, ``folio_check_references()`` →
``folio_referenced()``, which must reach every mapping of the folio that it
promises to (:func:`rmap_walk_promised`) unless it stopped by its own rules.
The checking walk compares the mappings the walk reached with the real ones
read from every process's page tables, as the kernel's
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
    "reclaim_walk_checked",
    "rmap_walk_promised",
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


def rmap_walk_promised(k: Kernel, f: folio, mappings: list[tuple[mm_struct, int]]) -> list[tuple[mm_struct, int]]:
    """The mappings of ``mappings`` that the kernel promises an rmap walk of ``f`` reaches.

    An anonymous folio: every one. ``folio->mapping`` is the anon_vma, and
    every VMA that maps the folio is chained to it at the folio's offset
    (I1, checked after every step): ``rmap_walk_anon()`` (mm/rmap.c, v6.18)
    reaches them all.

    A KSM folio: those its stable node's rmap_items cover, nothing more.
    ``rmap_walk_ksm()`` (mm/ksm.c, v6.18) walks each rmap_item's anon_vma at
    the rmap_item's address, first in the rmap_item's own mm, then "in other
    mms: in case they were forked from the original since ksmd passed". A
    mapping no rmap_item covers is one the kernel cannot find and lives
    with:

    * a fork made since ksmd passed, once the rmap_item it was forked from
      has gone (its mm exited or dropped the page, and ksmd removed the
      rmap_item before reaching the fork): reclaim and migration miss it,
      and the page stays pinned until the fork exits or ksmd scans it
      (docs/history.md B17; Hugh Dickins, 2016: not fixed);
    * a KSM folio without a stable node, which a merge that failed half-way
      leaves mapped in a fork (``try_to_merge_one_page()`` "upgrades" the
      page "from anon to a NULL stable_node with the KSM flag set:
      stable_tree_insert() will update stable_node"; when the merge with the
      second page or ``stable_tree_insert()`` fails, ``break_cow()`` unshares
      the rmap_item's own mapping only): ``rmap_walk_ksm()`` returns at once,
      ``folio_referenced()`` returns 0 before walking, reclaim leaves the
      folio mapped and migration fails with ``-EAGAIN``; a write copies it
      (``do_wp_page()`` never reuses a KSM folio). The kernel has lived with
      such folios since KSM began ("ksm: fix page_address_in_vma anon_vma
      oops", v2.6.36).

    The rmap_items are read here, not through the walk, so a walk that skips
    what they cover (``rmap_walk_ksm()`` without its second pass) is still
    caught.

    :param f: ``struct folio *`` the walk is over.
    :param mappings: where the page tables map ``f`` (:func:`page_table_mappings`).
    """
    if not f.ksm:
        return mappings
    node = f.stable_node  # folio_stable_node()
    if node is None or not node._live:
        return []
    covered = set()
    for item in node.hlist:
        av = item.anon_vma
        if av is None or not item._live or not av._live:
            continue  # the walk itself meets it (KASAN, a NULL pointer)
        for avc in av.rb_root:
            vma = avc.vma
            if vma is not None and vma.vm_start <= item.address < vma.vm_end:
                covered.add((id(vma.vm_mm), item.address))
    return [(mm, vpn) for mm, vpn in mappings if (id(mm), vpn) in covered]


def check_rmap_walk(k: Kernel, f: folio, expected: list[tuple[mm_struct, int]],
                    visited: list[tuple[mm_struct, int]], function: str) -> None:
    """Report a mapping of ``expected`` that the walk (``visited``) did not reach.

    :param expected: the mappings before the walk that it promises to reach
        (:func:`rmap_walk_promised` of :func:`page_table_mappings`).
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
    does) and checks that the walk reached every mapping it promises
    (:func:`rmap_walk_promised`), unless it stopped by its own rules: a
    ``VM_LOCKED`` VMA ("Restore the mlock which got missed"), a contended
    rmap lock, or ``folio_mapcount()`` mappings seen (``folio_referenced_one()``:
    "if (!pra->mapcount) return false; /* To break the loop */"). The last is
    a heuristic's shortcut: the walk counts what it finds, not which mapping
    it is, and ``rmap_walk_ksm()``'s second pass finds a fork that ksmd has
    scanned a second time (through its own rmap_item in the first pass,
    through that of the mm it was forked from in the second), so the count
    can run out before the walk has seen every mapping
    (:func:`reclaim_walk_checked`).

    :param f: ``struct folio *``, mapped.
    :returns: ``folio_referenced()``'s result: referencing mappings, or -1.
    :raises MissedRmapWalk: a mapping of ``f`` the walk promised and did not reach.
    """
    fn = "folio_check_references"
    mapcount = f._mapcount  # what folio_referenced() reads first
    expected = rmap_walk_promised(k, f, page_table_mappings(k, f))
    visited: list[tuple[mm_struct, int]] = []
    vm_flags = [0]
    was_locked = f.locked
    f.locked = True  # shrink_folio_list(): folio_trylock()
    try:
        referenced = k.ops.folio_referenced(k, f, True, vm_flags, visited)
    finally:
        f.locked = was_locked
    if referenced >= 0 and reclaim_walk_checked(mapcount, len(visited), vm_flags[0]):
        check_rmap_walk(k, f, expected, visited, fn)
    return referenced


def reclaim_walk_checked(mapcount: int, found: int, vm_flags: int) -> bool:
    """Whether a reclaim walk ran to its end, so that it must have reached what it promises.

    ``folio_referenced()`` (mm/rmap.c, v6.18) stops at a ``VM_LOCKED`` VMA
    and once it has found ``folio_mapcount()`` mappings, counting each time
    it finds one, the same one twice included.

    :param mapcount: ``folio_mapcount()`` when the walk began.
    :param found: the mappings the walk found (``folio_referenced_one()``
        calls that found a PTE of the folio).
    :param vm_flags: the union of the flags of the VMAs it found.
    """
    return found < mapcount and not vm_flags & VM_LOCKED


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
        if reclaim_walk_checked(st.mapcount, len(visited), pra["vm_flags"]):
            check_rmap_walk(k, f, rmap_walk_promised(k, f, expected), visited, "folio_referenced")
        _finish(k, st)
    return st.phase


def reclaim_folio_refs(k: Kernel, refs: dict[folio, int] | None = None) -> dict[folio, int]:
    """The folio references in-flight reclaim walks hold (their isolation references).

    They are added to ``refs`` (a new dict if None), which is returned.
    """
    refs = {} if refs is None else refs
    for st in k.walks:
        refs[st.folio] = refs.get(st.folio, 0) + 1
    return refs


def reclaim_held_roots(k: Kernel) -> set[int]:
    """``id()`` of the anon_vma roots whose rwsem an in-flight reclaim walk holds."""
    return {id(st.root) for st in k.walks if st.root is not None}


VMSCAN_OPS = {
    "folio_check_references": folio_check_references,
}
