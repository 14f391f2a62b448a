"""linux-6.18 raises no alarm where the kernel waits or tolerates (mm/ksm.c, mm/migrate.c, v6.18).

Each test replays a trace the checker once reported on linux-6.18 at a
neighbour of the standard preset (``--forked``), and states what the kernel
does there instead:

* ksmd removing the rmap_items of a KSM folio takes the folio lock
  (``remove_rmap_item_from_tree()`` → ``ksm_get_folio(..,
  KSM_GET_FOLIO_LOCK)``), so it sleeps while a migration holds that lock
  between its unmap and its remap, and ``remove_migration_ptes()`` still
  finds every migration entry through the stable node;
* a merge that fails half-way leaves a KSM folio without a stable node mapped
  in a fork; the kernel's rmap walk finds nothing there and promises nothing
  (``rmap_walk_ksm()``: ``if (!stable_node) return``), reclaim leaves the
  folio and migration retries;
* ``folio_referenced()`` stops once it has found ``folio_mapcount()``
  mappings, and ``rmap_walk_ksm()``'s second pass can find one mapping twice
  (``--phase ksm-fork`` bounds at depth 10);
* a fork of a KSM page made since ksmd passed, whose rmap_item has gone, is
  found by no walk (docs/history.md B17): reclaim misses it, and migration
  misses it, backs out and fails with ``-EBUSY``.

The planted defect ``defect-missed-rmap-walk-ksm`` (tests/designs_defects.py)
shows the property still fires on a KSM folio whose walk misses a mapping.
"""

from __future__ import annotations

import errno
from dataclasses import replace
from pathlib import Path

import pytest

from rmapcheck.check.model import Bounds, KernelModel
from rmapcheck.model.findings import Deadlock, LockMisuse
from rmapcheck.model.invariants import check_invariants
from rmapcheck.model.kthreads import kthread_holds
from rmapcheck.model.memory import folio_lock
from rmapcheck.model.vmscan import folio_check_references, page_table_mappings, rmap_walk_promised
from rmapcheck.scenario.ops import Op

#: a parent and a child sharing two written pages of a mergeable region:
#: ``--preset standard --forked``
FORKED = Bounds(processes=2, regions=1, pages=2, contents=1, depth=6, forked=True, mergeable=True,
                ops=("write", "read", "fork", "exit", "mmap", "munmap", "mprotect", "dontneed",
                     "ksm_scan", "migrate", "reclaim"))

SCAN = Op("ksm_scan", "", value=1)


def kthread(n):
    return Op("kthread", "", value=n)


def replay(m, r, ops):
    for op in ops:
        out = m.apply(r, op)
        assert out.findings == [] and not out.blocked, (op.text(), out.findings)


def folio_at(r, proc, page):
    return r.k.tasks[proc].mm.pgtable[r.vpn("A", page)][0]


# -- ksmd sleeps on a folio lock that a migration holds --------------------------------

def migrating_ksm_folio():
    """Both pages merged into one KSM folio, whose migration stopped after its unmap."""
    m = KernelModel("linux-6.18", FORKED)
    r = m.init_state()
    replay(m, r, [SCAN, SCAN, Op("migrate_start", "P0", "A", 0, 1), kthread(0)])
    st = r.k.migrations[0]
    assert st.phase == "unmapped" and st.src.ksm and st.src.locked
    assert len(page_table_mappings(r.k, st.src, migration=True)) == 4
    return m, r


def test_ksmd_does_not_run_past_the_folio_lock_of_a_migration():
    # ksmd finds no present page (migration entries) and removes the
    # trailing rmap_items; remove_rmap_item_from_tree() locks the KSM folio.
    m, r = migrating_ksm_folio()
    node = r.k.migrations[0].src.stable_node
    out = m.apply(m.loads(m.dumps(r)), SCAN)
    # blocked: the explorer does not start it (the Deadlock it carries is
    # what `rmapcheck run` would report, where nothing releases the lock)
    assert out.blocked and [f[:2] for f in out.findings] == [("lock-misuse", "folio_lock")]
    assert SCAN in m.actions(r)
    # The migration runs on; once it has let go of the lock ksmd runs, and
    # every migration entry was found through the stable node.
    while r.k.migrations:
        replay(m, r, [kthread(0)])
    replay(m, r, [SCAN])
    f = folio_at(r, "P0", 1)
    assert f.ksm and f.stable_node is node and node.kpfn == f.pfn()
    assert len(page_table_mappings(r.k, f)) == 4


def test_run_in_sequence_ksmd_on_a_locked_folio_is_a_deadlock():
    # Nothing would release the lock: a scenario has no other thread.
    m, r = migrating_ksm_folio()
    src = r.k.migrations[0].src
    with pytest.raises(Deadlock, match=rf"folio_lock: deadlock: folio_lock\(\) of locked page {src.pfn()}") as e:
        r.perform(SCAN)
    assert "ksm_get_folio" in e.value.chain


def test_a_kernel_thread_waiting_for_its_own_folio_lock_is_a_deadlock():
    m, r = migrating_ksm_folio()
    st = r.k.migrations[0]
    assert kthread_holds(r.k, st.src) and kthread_holds(r.k, st.dst)
    assert not kthread_holds(r.k, st.src, running=st)
    with pytest.raises(Deadlock) as e:
        folio_lock(r.k, st.src, "migrate_folio_move")
    assert e.value.lock is st.src


def test_a_folio_left_locked_on_return_to_user_space_is_lock_misuse():
    m, r = migrating_ksm_folio()
    while r.k.migrations:
        replay(m, r, [kthread(0)])
    f = folio_at(r, "P0", 0)
    f.locked = True  # as a KSM function that forgot its folio_unlock() would leave it
    with pytest.raises(LockMisuse, match=f"page {f.pfn()} locked on return to user space"):
        check_invariants(r.k)


# -- a merge that failed half-way ---------------------------------------------------------

def half_ksm_folio():
    """The parent's first page locked by a migration, ksmd's merge of the second page with it fails.

    ``try_to_merge_one_page()`` made the second page KSM with a ``NULL``
    stable node; the merge with the locked first page failed (its trylock),
    and ``break_cow()`` unshared the parent's mapping only: the child's
    mapping keeps the half-KSM folio.
    """
    m = KernelModel("linux-6.18", FORKED)
    r = m.init_state()
    replay(m, r, [SCAN, Op("migrate_start", "P0", "A", 0, 1), SCAN])
    f = folio_at(r, "P1", 1)
    assert f.ksm and f.stable_node is None and rmap_walk_promised(r.k, f, page_table_mappings(r.k, f)) == []
    assert folio_at(r, "P0", 1) is not f
    assert [(mm.owner, vpn) for mm, vpn in page_table_mappings(r.k, f)] == [("P1", r.vpn("A", 1))]
    return m, r, f


def test_reclaim_of_a_half_ksm_folio_finds_nothing_and_keeps_it():
    m, r, f = half_ksm_folio()
    replay(m, r, [Op("reclaim_start", "P1", "A", 1, 1)])
    assert r.k.walks == [] and folio_at(r, "P1", 1) is f and not f.locked


def test_migration_of_a_half_ksm_folio_fails_and_is_retried():
    m, r, f = half_ksm_folio()
    replay(m, r, [Op("migrate_start", "P1", "A", 1, 1), kthread(1)])
    st = r.k.migrations[1]
    # try_to_migrate() found no mapping: the folio stays mapped, migrate_folio_unmap()
    # undoes and the next pass of migrate_pages_batch() tries again
    assert st.src is f and st.phase == "isolated" and st.rc == -errno.EAGAIN
    assert folio_at(r, "P1", 1) is f and not f.locked
    # a write copies it: do_wp_page() never reuses a KSM folio
    replay(m, r, [Op("write", "P1", "A", 1, 1, value=1)])
    assert folio_at(r, "P1", 1) is not f


def test_a_walk_of_a_ksm_folio_with_a_stable_node_must_reach_everything():
    m, r = migrating_ksm_folio()
    while r.k.migrations:
        replay(m, r, [kthread(0)])
    for proc in ("P0", "P1"):
        f = folio_at(r, proc, 0)
        assert f.ksm and f.stable_node is not None
        assert len(rmap_walk_promised(r.k, f, page_table_mappings(r.k, f))) == 4


def test_a_failed_stable_tree_insert_leaves_a_half_ksm_folio_in_the_child():
    # "If we fail to insert the page into the stable tree, we will have 2
    # virtual addresses that are pointing to a ksm page left outside the stable
    # tree, in which case we need to break_cow on both": both are the parent's,
    # and the child's mapping keeps the folio (--preset standard --faults 1).
    m = KernelModel("linux-6.18", replace(FORKED, faults=1))
    r = m.init_state()
    replay(m, r, [SCAN, replace(SCAN, flags=frozenset({"fail=alloc_stable_node"}))])
    f = folio_at(r, "P1", 1)
    assert f.ksm and f.stable_node is None
    assert folio_at(r, "P0", 0) is not f and folio_at(r, "P0", 1) is not f
    replay(m, r, [Op("reclaim_start", "P1", "A", 1, 1), Op("migrate_start", "P1", "A", 1, 1), kthread(0)])
    assert folio_at(r, "P1", 1) is f and r.k.migrations[0].rc == -errno.EAGAIN


# -- folio_referenced() stops at folio_mapcount() ---------------------------------------

#: the ``ksm-fork`` phase of the default (check/portfolio.py) at depth 10
KSM_FORK = Bounds(processes=2, regions=1, pages=1, contents=1, depth=10, mergeable=True,
                  ops=("write", "fork", "exit", "ksm_scan", "reclaim"))


def w(proc, value=1):
    return Op("write", proc, "A", 0, 1, value=value)


def test_reclaim_stops_at_mapcount_when_the_ksm_walk_finds_a_mapping_twice():
    # P0 and P1 share a KSM page, each with an rmap_item; P0 exits and its
    # rmap_item stays on the stable node until ksmd's next pass; P1 forks P2.
    # rmap_walk_ksm(): the first pass finds P1 through P1's rmap_item, the
    # second finds P1 again through P0's (P1's VMA is chained to P0's
    # anon_vma), and folio_referenced_one() stops there: two of mapcount 2.
    m = KernelModel("linux-6.18", KSM_FORK)
    r = m.init_state()
    replay(m, r, [w("P0"), Op("fork", "P0", child="P1"), w("P0"), SCAN, SCAN, w("P0"), SCAN,
                  Op("exit", "P0"), Op("fork", "P1", child="P2")])
    f = folio_at(r, "P1", 0)
    node = f.stable_node
    assert f.ksm and f._mapcount == 2 and folio_at(r, "P2", 0) is f
    assert sorted(item.mm.owner for item in node.hlist) == ["P0", "P1"]
    assert not r.k.tasks.get("P0") and len(rmap_walk_promised(r.k, f, page_table_mappings(r.k, f))) == 2
    # the walk, as the kernel's: P1 twice, P2 never
    visited = []
    f.locked = True
    assert r.k.ops.folio_referenced(r.k, f, True, [0], visited) == 2
    f.locked = False
    assert [mm.owner for mm, _vpn in visited] == ["P1", "P1"]
    # so no finding: the walk ended by folio_referenced()'s own rule
    replay(m, r, [Op("reclaim_start", "P1", "A", 0, 1)])
    assert folio_check_references(r.k, f) == 2


def test_reclaim_stops_at_mapcount_after_finding_a_scanned_fork_twice():
    # No exit needed: P0's two pages merged, P1 forked and scanned (its A[0]
    # is a page of its own by then), P2 forked: five mappings. The first
    # pass finds P1's A[1] and P0's two through their own rmap_items; the
    # second finds P1's A[1] again through P0's rmap_item, then P2's A[1],
    # and the count of five is used up before P2's A[0].
    m = KernelModel("linux-6.18", Bounds(processes=3, regions=1, pages=2, contents=1, depth=7, mergeable=True,
                                         ops=("write", "fork", "ksm_scan", "reclaim")))
    r = m.init_state()
    replay(m, r, [Op("write", "P0", "A", 0, 1, value=1), Op("write", "P0", "A", 1, 1, value=1), SCAN,
                  Op("fork", "P0", child="P1"), SCAN, Op("fork", "P0", child="P2")])
    f = folio_at(r, "P0", 0)
    assert f._mapcount == 5 and len(rmap_walk_promised(r.k, f, page_table_mappings(r.k, f))) == 5
    visited = []
    f.locked = True
    assert r.k.ops.folio_referenced(r.k, f, True, [0], visited) == 5
    f.locked = False
    assert len(set(visited)) == 4 and (r.k.tasks["P2"].mm, r.vpn("A", 0)) not in visited
    replay(m, r, [Op("reclaim_start", "P0", "A", 0, 1)])


def test_reclaim_reports_a_walk_that_ends_short_of_mapcount():
    # The same state with rmap_walk_ksm()'s second pass gone (the planted
    # deep_missed_rmap_walk.py): the walk finds P1 once, 1 of mapcount 2,
    # and misses P2, which P1's rmap_item covers.
    m = KernelModel(str(Path(__file__).parent / "planted" / "deep_missed_rmap_walk.py"), KSM_FORK)
    r = m.init_state()
    replay(m, r, [w("P0"), Op("fork", "P0", child="P1"), w("P0"), SCAN, SCAN, w("P0"), SCAN,
                  Op("exit", "P0"), Op("fork", "P1", child="P2")])
    out = m.apply(r, Op("reclaim_start", "P1", "A", 0, 1))
    assert [(p, fn) for p, fn, msg, _e in out.findings] == [("missed-rmap-walk", "folio_check_references")]
    assert "missed its mapping in P2" in out.findings[0][2]


# -- B17: a fork of a KSM page made since ksmd passed -------------------------------------

def b17(m):
    """docs/history.md B17: P1 maps the KSM page at A[1] with no rmap_item covering it.

    P0's two pages merged into one KSM page; P0 forks P1 and exits; ksmd,
    one page on, has dropped P0's rmap_items and given P1 one for A[0],
    not yet for A[1].
    """
    r = m.init_state()
    replay(m, r, [Op("write", "P0", "A", 0, 1, value=1), Op("write", "P0", "A", 1, 1, value=1),
                  replace(SCAN, value=2), Op("fork", "P0", child="P1"), Op("exit", "P0"),
                  Op("ksmd", "", value=1)])
    f = folio_at(r, "P1", 0)
    assert f.ksm and folio_at(r, "P1", 1) is f and f._mapcount == 2
    assert [(item.mm.owner, item.address) for item in f.stable_node.hlist] == [("P1", r.vpn("A", 0))]
    mapped = page_table_mappings(r.k, f)
    assert [(mm.owner, vpn) for mm, vpn in rmap_walk_promised(r.k, f, mapped)] == [("P1", r.vpn("A", 0))]
    return r, f


B17 = Bounds(processes=2, regions=1, pages=2, contents=1, depth=10, mergeable=True,
             ops=("write", "fork", "exit", "ksmd", "migrate", "reclaim"))


def test_b17_migration_misses_the_fork_backs_out_and_fails():
    m = KernelModel("linux-6.18", B17)
    r, f = b17(m)
    # try_to_migrate() unmaps A[0] only: the folio stays mapped, every pass
    # backs out (the migration entry at A[0] restored) and the tenth gives up
    out = m.apply(r, Op("migrate", "P1", "A", 0, 1))
    assert out.findings == [] and out.result == "EBUSY"
    assert folio_at(r, "P1", 0) is f and folio_at(r, "P1", 1) is f
    assert page_table_mappings(r.k, f, migration=True) == [] and r.k.migrations == []
    assert not f.locked and f._mapcount == 2
    check_invariants(r.k)


def test_b17_reclaim_misses_the_fork_and_keeps_the_page():
    m = KernelModel("linux-6.18", B17)
    r, f = b17(m)
    visited = []
    f.locked = True
    assert r.k.ops.folio_referenced(r.k, f, True, [0], visited) == 1
    f.locked = False
    assert [(mm.owner, vpn) for mm, vpn in visited] == [("P1", r.vpn("A", 0))]
    replay(m, r, [Op("reclaim_start", "P1", "A", 1, 1)])
    assert folio_at(r, "P1", 1) is f


def test_b17_with_the_fork_scanned_every_mapping_is_promised_and_reached():
    # ksmd one page further gives P1 its rmap_item for A[1]: both mappings
    # are covered, and the migration moves the page
    m = KernelModel("linux-6.18", B17)
    r, f = b17(m)
    replay(m, r, [Op("ksmd", "", value=1)])
    assert len(rmap_walk_promised(r.k, f, page_table_mappings(r.k, f))) == 2
    out = m.apply(r, Op("migrate", "P1", "A", 0, 1))
    assert out.findings == [] and out.result in ("", "ok", "0")
    assert folio_at(r, "P1", 0) is not f and folio_at(r, "P1", 1) is folio_at(r, "P1", 0)


# -- the exhaustive runs in make bench ---------------------------------------------------

def test_bench_runs_the_three_neighbours_of_the_standard_preset():
    from rmapcheck.check.model import PRESETS
    from rmapcheck.commands.bench import STANDARD_NEIGHBOURS
    from rmapcheck.commands.check import bounds_from_options

    std = PRESETS["standard"]
    got = {name: bounds_from_options("standard", **opts) for name, opts in STANDARD_NEIGHBOURS.items()}
    assert got == {"forked": replace(std, forked=True), "faults1": replace(std, faults=1),
                   "mremap_regions2": replace(std, regions=2, ops=(*std.ops, "mremap"))}


def test_bench_prints_states_seconds_and_findings_of_each(monkeypatch):
    import rmapcheck.commands.bench as bench

    monkeypatch.setattr(bench, "STANDARD_NEIGHBOURS", {"tiny": {"depth": 2, "forked": True}})
    lines: list[str] = []
    bench.standard_neighbours(lines.append)
    assert [line.split()[1] for line in lines] == ["standard_tiny_states", "standard_tiny_seconds",
                                                   "standard_tiny_findings"]
    assert int(lines[0].split()[2]) > 1 and lines[2] == "bench: standard_tiny_findings 0 findings"
