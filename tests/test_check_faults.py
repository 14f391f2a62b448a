"""Fault injection: an allocation that fails takes the kernel's error path.

linux-6.18 unwinds every injected failure cleanly; a design whose
``anon_vma_fork()`` forgets ``unlink_anon_vmas()`` on its error path (the
``out_error`` label) leaves the chain entries of the half-built VMA behind,
and the checker reports them as leaked. A failure can fail one attempt of a
site, or every attempt from one on, so the error paths behind a retry
(``anon_vma_clone()``'s ``GFP_KERNEL`` after ``GFP_NOWAIT``) run too.
"""

from __future__ import annotations

import errno
import sys
import types

import pytest

import designs_defects as dd
from rmapcheck import designs
from rmapcheck.check.checker import Checker
from rmapcheck.check.model import FAULT_MODES, Bounds, KernelModel
from rmapcheck.check.trace import load_trace, replay, save_trace
from rmapcheck.designs.linux_6_18 import CONFIG, OPS
from rmapcheck.model import rmap
from rmapcheck.model.invariants import check_invariants
from rmapcheck.model.ksm import ksm_state_of
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.ops import Scenario
from rmapcheck.scenario.parse import dump_scenario, parse_scenario, parse_step

BOUNDS = Bounds(processes=2, regions=1, pages=2, contents=1, depth=3, ops=("write", "fork", "exit"), faults=1)


def _fork_without_unwind(k, vma, pvma):
    # anon_vma_fork() with its out_error path cut short: no unlink_anon_vmas().
    if pvma.anon_vma is None:
        return 0
    vma.anon_vma = None
    if k.ops.anon_vma_clone(k, vma, pvma):
        return -errno.ENOMEM
    if vma.anon_vma is not None:
        return 0
    av = rmap.anon_vma_alloc(k, "anon_vma_fork")
    if av is None:
        return -errno.ENOMEM  # BUG: the AVCs anon_vma_clone() linked stay behind
    k.ops.anon_vma_fork_rest(k, vma, pvma, av)
    return 0


def _fork_rest(k, vma, pvma, av):
    av.num_active_vmas += 1
    avc = rmap.anon_vma_chain_alloc(k, "anon_vma_fork")
    av.root = pvma.anon_vma.root
    av.parent = pvma.anon_vma
    rmap.get_anon_vma(k, av.root, "anon_vma_fork")
    vma.anon_vma = av
    rmap.anon_vma_lock_write(k, av, "anon_vma_fork")
    rmap.anon_vma_chain_link(k, vma, avc, av)
    av.parent.num_children += 1
    rmap.anon_vma_unlock_write(k, av, "anon_vma_fork")


@pytest.fixture
def defect(monkeypatch):
    mod = types.ModuleType("rmapcheck.designs.test_fork_no_unwind")
    mod.OPS = {**OPS, "anon_vma_fork": _fork_without_unwind, "anon_vma_fork_rest": _fork_rest}
    mod.CONFIG = dict(CONFIG)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(designs.DESIGNS, "test-fork-no-unwind", "test_fork_no_unwind")
    return "test-fork-no-unwind"


def test_linux_6_18_unwinds_every_injected_failure():
    res = Checker(KernelModel("linux-6.18", BOUNDS)).spawn_bfs().join()
    assert res.exhausted and res.findings == [], [(f.property, f.message) for f in res.findings]


def test_a_missing_error_path_is_found_through_injection(defect):
    without = Checker(KernelModel(defect, Bounds(**{**BOUNDS.__dict__, "faults": 0}))).spawn_bfs().join()
    assert without.findings == [], "the defect only shows when an allocation fails"
    res = Checker(KernelModel(defect, BOUNDS)).spawn_bfs().join()
    found = {(f.property, any("fail=anon_vma_alloc" in o.flags for o in f.trace)) for f in res.findings}
    assert ("leak", True) in found or ("invariant", True) in found, found


# -- attempts: the N-th, and from the N-th on ------------------------------------------

FORKED = """\
regions:
  A: 2
steps:
  - mmap P0 A rw
  - write P0 A[0] 1
  - write P0 A[1] 1
  - fork P0 P1
"""


def _forked(design="linux-6.18"):
    s = parse_scenario(FORKED, "forked.yaml")
    r = ModelRunner(s, design)
    for op in s.ops:
        assert r.perform(op) == "ok"
    return r


def _chain(r, proc):
    return [[avc.anon_vma for avc in v.anon_vma_chain] for v in r.k.tasks[proc].mm.mmap]


# The child's VMA has two chain entries (its own anon_vma, the parent's):
# splitting it clones both, one GFP_NOWAIT attempt each, and a GFP_KERNEL
# retry after a failed one.
CLONE_CASES = [
    # flag, result, attempts at anon_vma_chain_alloc
    ("", "ok", 2),
    ("fail=anon_vma_chain_alloc", "ok", 3),          # the retry succeeds
    ("fail=anon_vma_chain_alloc@2", "ok", 3),        # the second entry's retry succeeds
    ("fail=anon_vma_chain_alloc@3", "ok", 2),        # no third attempt: nothing fails
    ("fail=anon_vma_chain_alloc*", "ENOMEM", 2),     # both attempts of the first entry
    ("fail=anon_vma_chain_alloc@2*", "ENOMEM", 3),   # one entry linked, then both attempts fail
]


@pytest.mark.parametrize(("flag", "result", "attempts"), CLONE_CASES, ids=[c[0] or "none" for c in CLONE_CASES])
def test_persistent_and_nth_failures_reach_the_error_path_behind_the_retry(flag, result, attempts):
    r = _forked()
    before = _chain(r, "P1")
    op = parse_step(f"mprotect P1 A[0] r {flag}", 1, r.scenario.regions)
    assert r.perform(op) == result
    assert r.k.alloc_attempts["anon_vma_chain_alloc"] == attempts
    assert r.k.fail_sites == {}
    if result == "ENOMEM":
        # enomem_failure: unlink_anon_vmas() took back what was linked
        assert _chain(r, "P1") == before
    check_invariants(r.k)


def test_a_failure_lasts_one_step():
    r = _forked()
    r.perform(parse_step("mprotect P1 A[0] r fail=anon_vma_chain_alloc*", 1, r.scenario.regions))
    assert r.perform(parse_step("mprotect P1 A[0] r", 2, r.scenario.regions)) == "ok"
    assert r.k.alloc_attempts == {"vm_area_dup": 1, "vma_iter_prealloc": 1, "anon_vma_chain_alloc": 2}


def test_persistent_failure_stalls_ksmd_instead_of_looping():
    s = parse_scenario("regions:\n  A: 1\nsteps:\n  - prctl P0 merge 1\n  - mmap P0 A rw\n"
                       "  - write P0 A[0] 1\n", "ksm.yaml")
    r = ModelRunner(s)
    for op in s.ops:
        r.perform(op)
    seqnr = ksm_state_of(r.k).seqnr
    assert r.perform(parse_step("ksm_scan 1 fail=alloc_rmap_item*", 1, s.regions)) == "ok"
    assert ksm_state_of(r.k).seqnr == seqnr  # no full scan completed
    assert r.perform(parse_step("ksm_scan 1", 2, s.regions)) == "ok"
    assert ksm_state_of(r.k).seqnr > seqnr


def test_failures_are_injected_only_where_the_action_allocates():
    m = KernelModel("linux-6.18", Bounds(processes=2, regions=1, pages=2, depth=3, forked=True,
                                         ops=("write", "exit", "mprotect"), faults=1))
    r = m.init_state()
    split = parse_step("mprotect P1 A[0] r", 1, m.scenario.regions)
    attempts = m.apply(m.init_state(), split).attempts
    assert attempts == {"vm_area_dup": 1, "vma_iter_prealloc": 1, "anon_vma_chain_alloc": 2}
    got = {op.text() for op in m.fault_actions(r, [split, parse_step("exit P1", 2, m.scenario.regions)])}
    assert got == {f"mprotect P1 A[0] r {f}" for f in [
        "fail=vm_area_dup", "fail=vm_area_dup*", "fail=vma_iter_prealloc", "fail=vma_iter_prealloc*",
        "fail=anon_vma_chain_alloc", "fail=anon_vma_chain_alloc*",
        "fail=anon_vma_chain_alloc@2", "fail=anon_vma_chain_alloc@2*"]}
    # the state is put back as it was
    assert m.fingerprint(r) == m.fingerprint(m.init_state())


@pytest.mark.parametrize("mode", FAULT_MODES)
def test_an_error_path_behind_a_retry_needs_a_persistent_failure(monkeypatch, mode):
    # defect-error-path: anon_vma_clone()'s unwind forgets what it linked
    dd.register(monkeypatch, "defect-error-path")
    bounds = Bounds(**{**dd.ERROR_PATH.__dict__, "fault_mode": mode})
    res = Checker(KernelModel("defect-error-path", bounds)).spawn_bfs().join()
    assert res.exhausted
    if mode != "persistent":
        # "first" is the injection of old: one failure, at the first attempt
        assert res.findings == []
        return
    (f,) = res.findings
    assert (f.property, f.function) == ("invariant", "check_invariants")
    assert [op.text() for op in f.trace[f.setup:]] == ["mprotect P1 A[0] r fail=anon_vma_chain_alloc@2*"]


def test_a_trace_with_a_persistent_failure_replays_and_runs(monkeypatch, tmp_path):
    dd.register(monkeypatch, "defect-error-path")
    m = KernelModel("defect-error-path", dd.ERROR_PATH)
    (f,) = Checker(m).spawn_bfs().join().findings
    save_trace(str(tmp_path / "t.json"), m, f)
    got, _ = replay(load_trace(str(tmp_path / "t.json")))
    assert got is not None and (got.property, got.function) == (f.property, f.function)
    # printed as a scenario, the trace keeps its flag and runs the same way
    s = parse_scenario(dump_scenario(Scenario("t", m.scenario.regions, f.trace)), "t.yaml")
    r = ModelRunner(s, "defect-error-path")
    assert [r.perform(op) for op in s.ops][-1] == "ENOMEM"
    with pytest.raises(Exception, match="is on no live VMA's chain"):
        check_invariants(r.k)
