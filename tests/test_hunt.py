"""The hunting strategy: deep planted defects found from the empty start, shrunk traces that replay, workers reaped.

The deep defect of :data:`designs_defects.DEEP_DEFECTS` needs nine actions
from the empty start with six processes, where breadth-first search does not
get. The hunts run with ``--first`` and a budget far above what they take,
so that a loaded machine does not make them fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import designs_defects as dd
from procs import children as _children
from rmapcheck.check.checker import Checker
from rmapcheck.check.hunt import reproduce, shrink, state_features
from rmapcheck.check.model import Bounds, KernelModel
from rmapcheck.check.trace import load_trace, replay, save_trace
from rmapcheck.commands.common import load
from rmapcheck.scenario.ops import Op

#: what a user would pick to look for CVE-2022-42703
USER_OPS = Bounds(processes=6, regions=1, pages=2, contents=1, depth=32, ops=("write", "fork", "exit", "mprotect"))


def _hunt(design, bounds, budget=300.0, workers=2, seed=0, first=True):
    c = Checker(KernelModel(design, bounds)).first_violation(first)
    return c.spawn_hunt(budget, workers, seed).join()


def test_hunt_finds_a_planted_defect_nine_actions_deep(monkeypatch, tmp_path):
    _mod, prop, function, bounds, _also = dd.DEEP_DEFECTS["defect-deep-fork"]
    dd.register(monkeypatch, "defect-deep-fork")
    res = _hunt("defect-deep-fork", bounds)
    assert _children(os.getpid()) == []
    assert res.strategy == "hunt" and not res.exhausted and res.states > 0
    assert (prop, function) in {(f.property, f.function) for f in res.findings}
    f = next(f for f in res.findings if (f.property, f.function) == (prop, function))
    m = KernelModel("defect-deep-fork", bounds)
    assert f.trace[:f.setup] == m.setup
    path = f.trace[f.setup:]
    # the defect cannot show in fewer than nine actions (designs_defects)
    assert f.trace_length >= 9
    # shrunk: the last step reports it, and no single step can go
    got = reproduce(m, path, (prop, function))
    assert got is not None and got[0] == len(path)
    for i in range(len(path)):
        assert reproduce(m, path[:i] + path[i + 1:], (prop, function)) is None, path[i].text()
    # processes named in order of birth
    born = [op.child for op in path if op.kind == "fork"]
    assert born == [f"P{i}" for i in range(1, len(born) + 1)]
    # the saved trace replays to the same finding
    p = tmp_path / "t.json"
    save_trace(str(p), m, f)
    again, _ = replay(load_trace(str(p)))
    assert again is not None and (again.property, again.function) == (prop, function)


def test_hunt_is_clean_on_linux_6_18_and_stops_at_the_budget():
    res = _hunt("linux-6.18", USER_OPS, budget=3.0, first=False)
    assert _children(os.getpid()) == []
    assert res.verdict == "clean", [(f.property, f.function, f.message) for f in res.findings]
    assert res.states > 0 and res.depth > 0 and not res.exhausted and not res.interrupted
    assert res.warnings[0].startswith("hunting is not exhaustive: 2 workers")
    assert res.warnings[1].startswith("breadth-first search (worker 0, first 0.3 s) checked every trace of up to ")


def test_bounds_explored_whole_end_the_hunt_exhaustive():
    res = _hunt("linux-6.18", Bounds(processes=2, regions=1, pages=1, ops=("write", "fork", "exit")), first=False)
    assert _children(os.getpid()) == []
    assert res.verdict == "clean" and res.exhausted
    assert "explored every state within the bounds" in res.warnings[0]
    bounds = Bounds(**{**res.bounds, "ops": tuple(res.bounds["ops"])})
    assert res.distinct == Checker(KernelModel("linux-6.18", bounds)).spawn_bfs().join().distinct


@pytest.mark.parametrize("name", ["defect-double-free", "defect-leak"])
def test_a_shallow_defect_gets_its_shortest_trace(monkeypatch, name):
    _mod, prop, function, bounds, _also = dd.DEFECTS[name]
    dd.register(monkeypatch, name)
    key = (prop, function)
    shortest = next(f for f in Checker(KernelModel(name, bounds)).spawn_bfs().join().findings
                    if (f.property, f.function) == key)
    f = next(f for f in _hunt(name, bounds).findings if (f.property, f.function) == key)
    assert f.trace_length == shortest.trace_length


def test_one_worker_with_first_is_deterministic(monkeypatch):
    dd.register(monkeypatch, "defect-deep-fork")
    bounds = dd.DEEP_DEFECTS["defect-deep-fork"][3]
    a = _hunt("defect-deep-fork", bounds, workers=1, seed=3)
    b = _hunt("defect-deep-fork", bounds, workers=1, seed=3)
    assert a.findings and a.states == b.states
    assert [(f.property, f.function, f.trace) for f in a.findings] == \
        [(f.property, f.function, f.trace) for f in b.findings]


def test_cve_2022_42703_from_the_empty_start():
    # the operations a user would pick; no --forked start, no hint of the sequence
    res = _hunt("linux-6.18-degree", USER_OPS)
    f = next(f for f in res.findings if (f.property, f.function) == ("invariant", "check_invariants"))
    assert "different anon_vma chains" in f.message
    # The same path on linux-6.18 (2555283eb40d) is clean.
    m = KernelModel("linux-6.18", USER_OPS)
    r = m.init_state()
    for op in f.trace[f.setup:]:
        assert m.apply(r, op).findings == [], op.text()


def test_shrink_a_handwritten_trace_to_a_minimal_one():
    # The bundled 16-step sequence, its expected results dropped: the fork
    # that reuses the abandoned leaf for both halves comes at step 12.
    sc = load("anon-vma-double-reuse")
    m = KernelModel("linux-6.18-degree", USER_OPS)
    path = [Op(op.kind, op.proc, op.region, op.page, op.npages, prot=op.prot, value=op.value, child=op.child)
            for op in sc.ops[1:]]
    key = ("invariant", "check_invariants")
    assert reproduce(m, path, key) is not None
    short = shrink(m, path, key)
    assert len(short) < len(path)
    assert reproduce(m, short, key)[0] == len(short)
    for i in range(len(short)):
        assert reproduce(m, short[:i] + short[i + 1:], key) is None


def test_reproduce_takes_only_paths_the_checker_could_take():
    m = KernelModel("linux-6.18-degree", Bounds(processes=2, regions=1, pages=2, ops=("write", "fork", "exit")))
    key = ("invariant", "check_invariants")
    w = Op("write", "P0", "A", 0, 1, value=1)
    # a process that does not exist, a fork beyond the bound, a kernel
    # thread step with nothing in flight: not taken
    assert reproduce(m, [Op("write", "P5", "A", 0, 1, value=1)], key) is None
    assert reproduce(m, [w, Op("fork", "P0", child="P1"), Op("fork", "P0", child="P2")], key) is None
    assert reproduce(m, [Op("kthread", "", value=0)], key) is None
    with pytest.raises(ValueError):
        shrink(m, [w], key)


def test_state_features_do_not_depend_on_names():
    m = KernelModel("linux-6.18", USER_OPS)

    def features(child):
        r = m.init_state()
        for op in (Op("write", "P0", "A", 0, 1, value=1), Op("fork", "P0", child=child),
                   Op("mprotect", child, "A", 1, 1, prot="r")):
            m.apply(r, op)
        return state_features(r)

    assert features("P1") == features("P7")
    r = m.init_state()
    assert state_features(r) != features("P1")


def test_ctrl_c_reaps_every_worker(tmp_path):
    # As a terminal's Ctrl-C does: SIGINT to the whole process group.
    cmd = [sys.executable, "-m", "rmapcheck", "check", "--design", "linux-6.18", "--ops", "write,fork,exit,mprotect",
           "--processes", "6", "--strategy", "hunt", "--budget", "120", "--workers", "2",
           "--save-dir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env=env)
    try:
        deadline = time.monotonic() + 60
        while len(_children(p.pid)) < 2 and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
        assert len(_children(p.pid)) >= 2
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130, err
    assert "warning: interrupted by SIGINT" in out and "partial result: " in out and "Traceback" not in err
    assert _children(p.pid, group=True) == []


def test_cli_hunt_options(tmp_path):
    from click.testing import CliRunner

    from rmapcheck.commands.check import command

    runner = CliRunner()
    base = ["--design", "linux-6.18", "--ops", "write,fork", "--strategy", "hunt", "--save-dir", str(tmp_path)]
    r = runner.invoke(command, [*base, "--budget", "1", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "clean (hunt, " in r.output and "states checked, depth " in r.output
    for bad in (["--workers", "0"], ["--budget", "0"]):
        r = runner.invoke(command, [*base, *bad])
        assert r.exit_code != 0 and "must be" in str(r.exception)
