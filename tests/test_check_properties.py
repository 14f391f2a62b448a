"""Every property the checker judges can fail: one planted defect per property.

A property that cannot fail proves nothing. Each throwaway design of
:mod:`designs_defects` is linux-6.18 with one kernel function replaced by a
subtly broken copy; the checker must report exactly the planted property
(plus, where stated, what the same defect makes the kernel itself report),
while the unmodified linux-6.18 design is clean at the same bounds.
"""

from __future__ import annotations

import pytest

import designs_defects as dd
from rmapcheck.check.checker import Checker
from rmapcheck.check.model import KernelModel
from rmapcheck.check.properties import ALWAYS
from rmapcheck.designs import DESIGNS, DesignError, get_design
from rmapcheck.scenario.ops import Op


def test_every_always_property_has_a_planted_defect():
    planted = {prop for _m, prop, _f, _b, _a in dd.DEFECTS.values()}
    assert planted == {p.name for p in ALWAYS}


@pytest.mark.parametrize("name", sorted(dd.DEFECTS))
def test_each_defect_replaces_one_kernel_function(name):
    ops = dd.DEFECTS[name][0].OPS
    changed = {fn for fn in ops if ops[fn] is not dd.BASE[fn]}
    assert set(ops) == set(dd.BASE)
    # the use-after-free design also states its own counting (no root pin)
    assert len(changed - {"anon_vma_counter_invariants"}) == 1


def test_throwaway_designs_are_unknown_outside_the_test(monkeypatch):
    with monkeypatch.context() as mp:
        dd.register(mp, "defect-leak")
        assert "defect-leak" in DESIGNS
        ops, _ = get_design("defect-leak")
        assert ops["unlink_anon_vmas"] is dd.unlink_no_put
    with pytest.raises(DesignError):
        get_design("defect-leak")


@pytest.mark.parametrize("name", sorted(dd.DEFECTS))
def test_planted_defect_is_caught(monkeypatch, name):
    _mod, prop, function, bounds, also = dd.DEFECTS[name]
    dd.register(monkeypatch, name)
    res = Checker(KernelModel(name, bounds)).spawn_bfs().join()
    assert res.verdict == "violation"
    assert res.exhausted
    found = {f.property for f in res.findings}
    assert found == {prop} | also, [(f.property, f.function, f.message) for f in res.findings]
    # The shortest counterexample of the planted property names where it is detected.
    mine = [f for f in res.findings if f.property == prop]
    shortest = min(f.trace_length for f in mine)
    assert function in {f.function for f in mine if f.trace_length == shortest}
    for f in res.findings:
        assert f.trace[:f.setup] == KernelModel(name, bounds).setup
        assert 1 <= f.trace_length <= bounds.depth


@pytest.mark.parametrize("name", sorted(dd.DEFECTS))
def test_linux_6_18_is_clean_at_the_same_bounds(name):
    bounds = dd.DEFECTS[name][3]
    res = Checker(KernelModel("linux-6.18", bounds)).spawn_bfs().join()
    assert res.verdict == "clean", [(f.property, f.function, f.message) for f in res.findings]
    assert res.exhausted
    assert res.distinct > 1


def _run(design, bounds, ops):
    m = KernelModel(design, bounds)
    r = m.init_state()
    outs = [m.apply(r, op) for op in ops]
    return r, outs


def test_use_after_free_is_the_root_freed_under_the_parent(monkeypatch):
    # Without the child's pin on its root (B0 in today's counting), the child's
    # unmap frees the root that the parent's VMA still uses.
    dd.register(monkeypatch, "defect-use-after-free")
    r, outs = _run("defect-use-after-free", dd.FORK_EXIT,
                   [Op("write", "P0", "A", 0, 1, value=1), Op("fork", "P0", child="P1")])
    assert [o.findings for o in outs] == [[], []]
    root = r.k.tasks["P0"].mm.mmap[-1].anon_vma
    assert root is not None and root.root is root
    m = KernelModel("defect-use-after-free", dd.FORK_EXIT)
    out = m.apply(r, Op("munmap", "P1", "A", 0, 1))
    assert [(p, fn) for p, fn, _msg, _e in out.findings] == [("use-after-free", "check_invariants")]
    assert out.findings[0][3].obj is root
    assert out.fatal


def test_double_free_names_the_chain_entry(monkeypatch):
    dd.register(monkeypatch, "defect-double-free")
    r, outs = _run("defect-double-free", dd.FORK_EXIT,
                   [Op("write", "P0", "A", 0, 1, value=1), Op("munmap", "P0", "A", 0, 1)])
    assert outs[0].findings == []
    (prop, fn, msg, err), = outs[1].findings
    assert (prop, fn) == ("double-free", "anon_vma_chain_free")
    # the planted unlink_anon_vmas() is named by its place in the design's table
    assert err.chain[:2] == ("anon_vma_chain_free", "unlink_anon_vmas")
    assert type(err.obj).__name__ == "anon_vma_chain"
    assert outs[1].fatal


def test_missed_rmap_walk_names_the_process_skipped(monkeypatch):
    # The broken walk skips the first entry of the root's interval tree: the
    # parent's mapping (its chain entry was linked before the child's).
    dd.register(monkeypatch, "defect-missed-rmap-walk")
    bounds = dd.DEFECTS["defect-missed-rmap-walk"][3]
    res = Checker(KernelModel("defect-missed-rmap-walk", bounds)).spawn_bfs().join()
    f = res.findings[0]
    assert (f.property, f.function) == ("missed-rmap-walk", "try_to_migrate")
    assert "in P0" in f.message
    # isolate and read folio->mapping under RCU; pin; unmap (the walk)
    assert [op.kind for op in f.trace[f.setup:]] == ["migrate_start", "kthread", "kthread"]
