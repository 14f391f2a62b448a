"""Page migration (mm/migrate.c, v6.18) and reclaim's rmap walk on the model.

Expected values are the kernel's behaviour, written by hand:

* after a migration every PTE that mapped the old frame maps the new one, the
  old frame is freed and the contents are unchanged (what
  tools/testing/selftests/mm/rmap.c checks across a fork tree, and
  migration.c's "the contents survive");
* ``remove_migration_pte()`` restores the write bit of a writable entry and
  ``RMAP_EXCLUSIVE`` unless the entry was only readable; fork turns a
  writable or exclusive migration entry into a readable one in parent and
  child (``copy_nonpresent_pte()``);
* the ``folio_get_anon_vma()`` pin keeps the anon_vma until
  ``put_anon_vma()`` at the end of ``migrate_folio_move()``; the child is
  freed before its root (Linux kernel commit 624483f3ea82, in v3.16), so no
  use-after-free on 6.18 (docs/history.md B0, B10);
* a KSM folio is found through its stable node's rmap_items, forks made after
  the merge included (docs/kernel-rules.md H2), and the stable node follows the
  folio (``folio_migrate_ksm()``).

A fork tree here is::

    P0 ─┬─ C1 ─┬─ G1
        │      └─ G2
        └─ C2 ─── G3
"""

from __future__ import annotations

import errno

import pytest
from conftest import BASE

from rmapcheck.designs import make_kernel
from rmapcheck.model.findings import KernelBug, MissedRmapWalk
from rmapcheck.model.invariants import check_invariants
from rmapcheck.model.ksm import ksm_full_scans
from rmapcheck.model.memory import is_migration_entry, is_readable_migration_entry, is_writable_migration_entry
from rmapcheck.model.migrate import (
    MigrationState, migrate_page_at, migrate_pages, migrate_prepare, migrate_step, migrations,
)
from rmapcheck.model.mm_types import ZERO_PAGE
from rmapcheck.model.rmap import rmap_walk_anon
from rmapcheck.model.syscalls import (
    spawn, sys_exit, sys_fork, sys_madvise, sys_mmap, sys_mprotect, sys_mremap, sys_munmap, user_read,
    user_write,
)
from rmapcheck.model.uapi import (
    MADV_MERGEABLE, MAP_FIXED_NOREPLACE, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE,
)
from rmapcheck.model.vmscan import folio_check_references

RW = PROT_READ | PROT_WRITE
TREE = ("P0", "C1", "C2", "G1", "G2", "G3")


def page(k, comm, vpn=BASE):
    return k.tasks[comm].mm.pgtable.get(vpn)


def fork_tree(k):
    sys_fork(k, k.tasks["P0"], "C1")
    sys_fork(k, k.tasks["P0"], "C2")
    sys_fork(k, k.tasks["C1"], "G1")
    sys_fork(k, k.tasks["C1"], "G2")
    sys_fork(k, k.tasks["C2"], "G3")


def anon_tree(k, value=7):
    """P0 writes BASE, then the fork tree shares the page; returns the folio."""
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 2, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p0, BASE, value)
    f = page(k, "P0")[0]
    fork_tree(k)
    assert all(page(k, c)[0] is f for c in TREE)
    check_invariants(k)
    return f


def run_to(k, st, phase):
    while st.phase != phase:
        migrate_step(k, st)


# -- anonymous folios ------------------------------------------------------------------

def test_anon_fork_tree_migration_updates_every_mapping(k):
    f = anon_tree(k)
    R = f.mapping
    nr_pages = k.page_alloc.nr_live
    assert migrate_page_at(k, k.tasks["G2"].mm, BASE) == 0
    g = page(k, "P0")[0]
    assert g is not f and g._live
    assert not f._live, "the old frame is freed"
    assert all(page(k, c) == (g, False) for c in TREE), "every mapping maps the new frame, still COW"
    assert (g._mapcount, g._refcount, g.content) == (6, 6, 7)
    assert (g.mapping, g.index) == (R, f.index)
    assert not g.anon_exclusive, "readable migration entries map shared"
    assert k.page_alloc.nr_live == nr_pages
    assert R.refcount == 1 + 5, "the migration pin is gone (tree + five children pinning their root)"
    assert migrations(k) == []
    check_invariants(k)
    assert all(user_read(k, k.tasks[c], BASE) == 7 for c in TREE)
    user_write(k, k.tasks["G1"], BASE, 8)  # COW still breaks on the new frame
    assert page(k, "G1")[0] is not g and g._mapcount == 5
    assert user_read(k, k.tasks["P0"], BASE) == 7
    check_invariants(k)


def test_migration_of_a_child_cow_page_reaches_its_descendants(k):
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 1, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p0, BASE, 1)
    sys_fork(k, p0, "C1")
    sys_fork(k, p0, "C2")
    user_write(k, k.tasks["C1"], BASE, 2)  # C1's own folio, mapping = C1's anon_vma
    h = page(k, "C1")[0]
    assert h.mapping is k.tasks["C1"].mm.mmap[0].anon_vma
    sys_fork(k, k.tasks["C1"], "G1")
    sys_fork(k, k.tasks["C1"], "G2")
    sys_fork(k, k.tasks["C2"], "G3")
    before = {c: page(k, c)[0] for c in TREE}
    assert migrate_page_at(k, k.tasks["G1"].mm, BASE) == 0
    n = page(k, "C1")[0]
    assert n is not h and not h._live
    assert [c for c in TREE if page(k, c)[0] is n] == ["C1", "G1", "G2"]
    assert all(page(k, c)[0] is before[c] for c in ("P0", "C2", "G3"))
    assert [user_read(k, k.tasks[c], BASE) for c in TREE] == [1, 2, 1, 2, 2, 1]
    check_invariants(k)


def test_exclusive_writable_page_stays_writable_and_exclusive(k):
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 1, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p0, BASE, 3)
    f = page(k, "P0")[0]
    assert page(k, "P0") == (f, True) and f.anon_exclusive
    assert migrate_page_at(k, p0.mm, BASE) == 0
    g = page(k, "P0")[0]
    assert page(k, "P0") == (g, True), "a writable migration entry restores the write bit"
    assert g.anon_exclusive, "RMAP_EXCLUSIVE: the entry was not readable-only"
    user_write(k, p0, BASE, 4)  # no COW: the same frame
    assert page(k, "P0")[0] is g
    check_invariants(k)


def test_move_pages_status_for_holes_zero_page_and_no_vma(k):
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 2, RW, MAP_FIXED_NOREPLACE)
    assert migrate_page_at(k, p0.mm, BASE) == -errno.ENOENT, "nothing mapped"
    user_read(k, p0, BASE)
    assert page(k, "P0")[0] is ZERO_PAGE
    assert migrate_page_at(k, p0.mm, BASE) == -errno.EFAULT, "the zero page"
    assert migrate_page_at(k, p0.mm, BASE + 5) == -errno.EFAULT, "no VMA"
    check_invariants(k)


# -- phases, with process operations between them ---------------------------------------

def test_fork_copies_migration_entries_read_only_and_the_child_is_remapped(k):
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 1, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p0, BASE, 9)
    f = page(k, "P0")[0]
    st = migrate_prepare(k, f)
    run_to(k, st, "unmapped")
    assert is_writable_migration_entry(page(k, "P0"))
    assert f._mapcount == 0 and f._refcount == 1, "only the isolation reference is left"
    sys_fork(k, p0, "C1")
    # copy_nonpresent_pte(): "A previously exclusive entry is now shared"
    assert is_readable_migration_entry(page(k, "P0"))
    assert is_readable_migration_entry(page(k, "C1"))
    assert f._mapcount == 0
    run_to(k, st, "done")
    g = page(k, "P0")[0]
    assert st.rc == 0 and g is not f and not f._live
    assert page(k, "P0") == (g, False) and page(k, "C1") == (g, False)
    assert g._mapcount == 2 and not g.anon_exclusive
    assert user_read(k, k.tasks["C1"], BASE) == 9
    check_invariants(k)


def test_fault_on_a_migration_entry_waits_for_the_migration(k):
    f = anon_tree(k, 5)
    st = migrate_prepare(k, f)
    run_to(k, st, "unmapped")
    assert all(is_migration_entry(page(k, c)) for c in TREE)
    assert user_read(k, k.tasks["G3"], BASE) == 5  # migration_entry_wait(), then the retried fault
    assert st.done and st.rc == 0 and not f._live
    assert all(page(k, c)[0] is page(k, "P0")[0] for c in TREE)
    check_invariants(k)


def test_munmap_of_a_migration_entry_between_phases(k):
    f = anon_tree(k)
    st = migrate_prepare(k, f)
    run_to(k, st, "moved")
    sys_munmap(k, k.tasks["C2"], BASE, 2)  # zap_nonpresent_ptes(): the entry just goes
    assert page(k, "C2") is None
    run_to(k, st, "done")
    g = page(k, "P0")[0]
    assert g._mapcount == 5 and g._refcount == 5
    assert [c for c in TREE if page(k, c) is not None] == ["P0", "C1", "G1", "G2", "G3"]
    check_invariants(k)


def test_mremap_and_mprotect_of_migration_entries_between_phases(k):
    """move_ptes() carries the entries; the remove walk finds the moved VMA by its vm_pgoff."""
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 2, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p0, BASE, 5)
    c1 = sys_fork(k, p0, "C1")
    user_write(k, p0, BASE + 1, 6)  # P0's own page: exclusive and writable
    f, x = page(k, "P0")[0], page(k, "P0", BASE + 1)[0]
    st = migrate_prepare(k, f)
    run_to(k, st, "unmapped")
    sys_mremap(k, c1, BASE, 2, 2, MREMAP_MAYMOVE | MREMAP_FIXED, BASE + 10)
    assert page(k, "C1") is None and is_readable_migration_entry(page(k, "C1", BASE + 10))
    run_to(k, st, "done")
    g = page(k, "P0")[0]
    assert page(k, "C1", BASE + 10) == (g, False) and g._mapcount == 2
    assert user_read(k, c1, BASE + 10) == 5
    check_invariants(k)
    st = migrate_prepare(k, x)
    run_to(k, st, "unmapped")
    assert is_writable_migration_entry(page(k, "P0", BASE + 1))
    sys_mprotect(k, p0, BASE, 2, PROT_READ)  # change_pte_range(): no longer writable
    assert not is_writable_migration_entry(page(k, "P0", BASE + 1))
    assert not is_readable_migration_entry(page(k, "P0", BASE + 1)), "still exclusive"
    run_to(k, st, "done")
    y = page(k, "P0", BASE + 1)[0]
    assert page(k, "P0", BASE + 1) == (y, False) and y.anon_exclusive and y.content == 6
    check_invariants(k)


def test_migration_pin_keeps_anon_vma_alive_across_exit(k):
    f = anon_tree(k)
    R = f.mapping
    st = migrate_prepare(k, f)
    run_to(k, st, "pinned")
    assert st.anon_vma is R and R.refcount == 1 + 5 + 1
    for c in ("G1", "G2", "G3", "C1", "C2", "P0"):
        sys_exit(k, k.tasks[c])
    assert R._live and R.refcount == 1, "only the migration's pin is left"
    assert f._live and f._mapcount == 0 and f._refcount == 1, "only the isolation reference is left"
    assert k.anon_vma_cachep.nr_live == 1
    check_invariants(k)
    for phase in ("unmapped", "moved", "remapped"):
        migrate_step(k, st)
        assert st.phase == phase
        assert R._live, f"anon_vma still pinned after {phase}"
    assert not st.page_was_mapped
    migrate_step(k, st)
    assert st.done and st.rc == 0
    assert not R._live and R._free[1] == "migrate_folio_move", "freed exactly at the final put_anon_vma()"
    assert not f._live and not st.dst._live, "both frames freed: nothing maps them"
    assert k.anon_vma_cachep.nr_live == 0 and k.page_alloc.nr_live == 0
    assert k.warnings == []
    check_invariants(k)


def test_exit_between_unmap_and_remap_leaves_nothing_to_remap(k):
    f = anon_tree(k)
    R = f.mapping
    st = migrate_prepare(k, f)
    run_to(k, st, "unmapped")
    for c in ("G1", "G2", "G3", "C1", "C2", "P0"):
        sys_exit(k, k.tasks[c])  # zap_nonpresent_ptes() drops the migration entries
    assert R._live and R.refcount == 1 and not R.rb_root
    run_to(k, st, "remapped")  # remove_migration_ptes() walks R's empty tree under the pin
    assert st.dst._mapcount == 0 and R._live
    migrate_step(k, st)
    assert st.rc == 0 and not R._live and not f._live and not st.dst._live
    assert k.anon_vma_cachep.nr_live == 0 and k.page_alloc.nr_live == 0
    check_invariants(k)


def test_migration_pin_of_a_child_anon_vma_frees_child_before_root(k):
    """B10's sequence with migration as the extra holder: no use-after-free on 6.18."""
    p = k.tasks["P0"]
    sys_mmap(k, p, BASE, 1, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p, BASE, 1)
    R = p.mm.mmap[0].anon_vma
    c = sys_fork(k, p, "C")
    user_write(k, c, BASE, 2)
    x = page(k, "C")[0]
    A_C = c.mm.mmap[0].anon_vma
    assert x.mapping is A_C and A_C.root is R
    st = migrate_prepare(k, x)
    run_to(k, st, "pinned")
    assert st.anon_vma is A_C
    sys_exit(k, p)
    sys_exit(k, c)
    assert A_C._live and R._live and (A_C.refcount, R.refcount) == (1, 1), "R is held by A_C's root pin only"
    check_invariants(k)
    assert migrate_pages(k, st) == 0
    assert not A_C._live and not R._live
    assert A_C._free[:2] == R._free[:2], "both freed by the final put, in one step"
    assert A_C._free[2] > R._free[2], "each named by its own allocation: the child came later"
    assert k.anon_vma_cachep.freelist[-2:] == [A_C, R], "child freed before its root"
    check_invariants(k)


# -- KSM folios --------------------------------------------------------------------------

def test_ksm_fork_tree_migration_follows_stable_node(k):
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 2, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p0, BASE, 5)
    user_write(k, p0, BASE + 1, 5)
    sys_madvise(k, p0, BASE, 2, MADV_MERGEABLE)
    ksm_full_scans(k, 3)
    f = page(k, "P0")[0]
    assert f.ksm and page(k, "P0", BASE + 1)[0] is f, "the two pages merged"
    node = f.stable_node
    assert node.kpfn == f.pfn()
    fork_tree(k)  # forks after the merge: only P0 has rmap_items
    check_invariants(k)
    assert migrate_page_at(k, k.tasks["G3"].mm, BASE + 1) == 0
    g = page(k, "P0")[0]
    assert g is not f and not f._live
    assert g.ksm and g.stable_node is node and g.mapping is node and node.kpfn == g.pfn()
    assert all(page(k, c, v) == (g, False) for c in TREE for v in (BASE, BASE + 1)), \
        "rmap_walk_ksm() reached the forks made after the merge"
    assert g._mapcount == 12 and g.content == 5
    assert migrations(k) == []
    check_invariants(k)
    assert folio_check_references(k, g) == 12, "reclaim's walk reaches them too"
    assert user_read(k, k.tasks["G2"], BASE + 1) == 5
    user_write(k, k.tasks["G2"], BASE, 6)  # a KSM page is never reused: COW
    assert page(k, "G2")[0] is not g and g._mapcount == 11
    check_invariants(k)


# -- checking walks: planted defects ------------------------------------------------------

def _skip_mm(owner):
    def rmap_walk_anon_skipping(k, f, rmap_one, locked=False):
        # A planted defect: the walk never reaches the VMA of one process.
        def one(vma, address):
            if vma.vm_mm.owner == owner:
                return True
            return rmap_one(vma, address)
        rmap_walk_anon(k, f, one, locked)
    return rmap_walk_anon_skipping


def defect_kernel(walk):
    kern = make_kernel("linux-6.18")
    kern.ops.rmap_walk_anon = walk
    spawn(kern, "P0")
    return kern


def test_planted_walk_that_skips_a_vma_is_a_missed_rmap_walk():
    k = defect_kernel(_skip_mm("G2"))
    f = anon_tree(k)
    with pytest.raises(MissedRmapWalk, match=r"try_to_migrate: rmap walk of page \d+ missed its mapping in G2"):
        migrate_page_at(k, k.tasks["P0"].mm, BASE)
    assert f._live


def test_planted_walk_defect_is_found_by_the_reclaim_walk():
    k = defect_kernel(_skip_mm("C1"))
    f = anon_tree(k)
    with pytest.raises(MissedRmapWalk, match="folio_check_references: .* missed its mapping in C1"):
        folio_check_references(k, f)


def test_reclaim_walk_counts_every_mapping(k):
    f = anon_tree(k)
    assert folio_check_references(k, f) == 6


def test_planted_defect_in_the_remove_walk_leaves_a_migration_entry():
    calls = []

    def walk(k, f, rmap_one, locked=False):
        # A planted defect in the second walk only: remove_migration_ptes()
        # misses G3 after try_to_migrate() replaced its PTE.
        calls.append(f)
        if len(calls) == 2:
            return _skip_mm("G3")(k, f, rmap_one, locked)
        return rmap_walk_anon(k, f, rmap_one, locked)

    k = defect_kernel(walk)
    anon_tree(k)
    with pytest.raises(MissedRmapWalk, match="remove_migration_ptes: .* missed its mapping in G3"):
        migrate_page_at(k, k.tasks["P0"].mm, BASE)
    assert is_migration_entry(page(k, "G3"))


def test_stale_migration_entry_fault_is_a_bug():
    calls = []

    def walk(k, f, rmap_one, locked=False):
        calls.append(f)
        if len(calls) == 2:
            return _skip_mm("G3")(k, f, rmap_one, locked)
        return rmap_walk_anon(k, f, rmap_one, locked)

    k = defect_kernel(walk)
    f = anon_tree(k)
    st = MigrationState(f, check=False)  # the kernel does not check: it carries on
    f._refcount += 1  # folio_isolate_lru()
    migrations(k).append(st)
    assert migrate_pages(k, st) == 0
    assert is_migration_entry(page(k, "G3")) and not f._live
    with pytest.raises(KernelBug, match="stale migration entry"):
        user_read(k, k.tasks["G3"], BASE)


def test_without_checking_walks_a_missed_mapping_fails_the_migration_as_in_the_kernel():
    k = defect_kernel(_skip_mm("G2"))
    k.config["migration_check_walks"] = False
    f = anon_tree(k)
    assert migrate_page_at(k, k.tasks["P0"].mm, BASE) == -errno.EBUSY
    assert all(page(k, c)[0] is f for c in TREE), "undone: every PTE maps the old frame again"
    assert f._live and f._mapcount == 6 and not f.locked
    assert migrations(k) == []
    check_invariants(k)
