"""Breadth-first search on several worker processes: the same result as one, and no worker left behind.

Each comparison runs the same exploration with one worker (the single-process
search of check/bfs.py) and with several, and compares everything a result
says: distinct states, transitions, blocked actions, depth, whether it was
exhaustive, the sometimes-properties reached, the verdict, and each finding
with its whole trace (the parallel search keeps, as one worker does, the
least of the shortest paths). The standard preset runs whole with two
workers, and at depth 4 with three; its speed is compared side by side in
``make bench`` (``bench: parallel_speedup``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from procs import children
from rmapcheck.check.checker import Checker, Stop
from rmapcheck.check.model import PRESETS, SEED_BOUNDS, Bounds, KernelModel
from rmapcheck.check.parallel import owner

#: rmapcheck seed's questions: B0 (KSM and migration on linux-2.6.36-pre),
#: B1 (reuse on the 2010-05-26 posting), B4 (the reclaim walk)
SEED = [("linux-2.6.36-pre", "ksm"), ("linux-2.6.36-pre", "migration"), ("linux-2.6.36-seed-0526", "reuse"),
        ("linux-2.6.36-pre", "reclaim"), ("linux-2.6.36", "ksm")]


def summary(res):
    return {"distinct": res.distinct, "states": res.states, "blocked": res.blocked, "depth": res.depth,
            "exhausted": res.exhausted, "verdict": res.verdict,
            "sometimes": sorted(p for p, hit in res.sometimes.items() if hit),
            "findings": [(f.property, f.function, f.trace_length, [op.text() for op in f.trace])
                         for f in res.findings],
            "warnings": res.warnings}


def run(design, bounds, workers, first=False):
    res = Checker(KernelModel(design, bounds)).first_violation(first).parallel(workers).spawn_bfs().join()
    assert children(os.getpid()) == []
    return res


@pytest.mark.parametrize("design,name", SEED)
def test_seed_bounds_same_result_as_one_worker(design, name):
    one = run(design, SEED_BOUNDS[name], 1)
    for workers in (2, 3):
        assert summary(run(design, SEED_BOUNDS[name], workers)) == summary(one), workers


def test_seed_b0_finds_the_use_after_free_with_the_shortest_trace():
    one = run("linux-2.6.36-pre", SEED_BOUNDS["ksm"], 1)
    two = run("linux-2.6.36-pre", SEED_BOUNDS["ksm"], 2)
    assert two.verdict == "violation" and two.findings
    assert [f.trace_length for f in two.findings] == [f.trace_length for f in one.findings]


def test_standard_preset_same_result_as_one_worker():
    one = run("linux-6.18", PRESETS["standard"], 1)
    assert one.distinct > 100_000 and one.exhausted
    assert summary(run("linux-6.18", PRESETS["standard"], 2)) == summary(one)
    b = replace(PRESETS["standard"], depth=4)
    assert summary(run("linux-6.18", b, 3)) == summary(run("linux-6.18", b, 1))


@pytest.mark.parametrize("design,name", [("linux-2.6.36-pre", "ksm"), ("linux-2.6.36-pre", "migration")])
def test_first_violation_same_finding_and_trace(design, name):
    one = run(design, SEED_BOUNDS[name], 1, first=True)
    assert one.findings and not one.exhausted
    for workers in (2, 3):
        res = run(design, SEED_BOUNDS[name], workers, first=True)
        assert summary(res)["findings"] == summary(one)["findings"], workers
        assert not res.exhausted and res.verdict == "violation"


def test_fingerprints_and_owners_are_the_same_in_a_fresh_interpreter():
    # Ray's actors are fresh interpreters (another hash seed): a state must
    # have the same fingerprint, and so the same owner, in each.
    m = KernelModel("linux-6.18", PRESETS["standard"])
    r = m.init_state()
    fps = [m.fingerprint(r)]
    for op in m.actions(r)[:6]:
        n = m.loads(m.dumps(r))
        m.apply(n, op)
        fps.append(m.fingerprint(n))
    code = ("from rmapcheck.check.model import PRESETS, KernelModel\n"
            "m = KernelModel('linux-6.18', PRESETS['standard'])\n"
            "r = m.init_state()\n"
            "fps = [m.fingerprint(r)]\n"
            "for op in m.actions(r)[:6]:\n"
            "    n = m.loads(m.dumps(r))\n"
            "    m.apply(n, op)\n"
            "    fps.append(m.fingerprint(n))\n"
            "print(' '.join(fp.hex() for fp in fps))\n")
    env = {**os.environ, "PYTHONHASHSEED": "12345",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == [fp.hex() for fp in fps], out.stderr
    assert len(set(fps)) == len(fps)
    assert {owner(fp, 2) for fp in fps} == {0, 1}


def test_time_limit_ends_with_a_partial_result_and_no_worker():
    b = replace(PRESETS["standard"], depth=12)
    c = Checker(KernelModel("linux-6.18", b)).timeout(1.0).parallel(2)
    res = c.spawn_bfs().join()
    assert children(os.getpid()) == []
    assert not res.exhausted and res.distinct > 1 and res.verdict == "clean"
    assert any("cut short" in w for w in res.warnings)


def test_stop_ends_with_a_partial_result_and_no_worker():
    stop = Stop()
    stop.signum = signal.SIGTERM
    c = Checker(KernelModel("linux-2.6.36-pre", SEED_BOUNDS["ksm"])).stop_on(stop).parallel(2)
    res = c.spawn_bfs().join()
    assert children(os.getpid()) == []
    assert res.interrupted == signal.SIGTERM and not res.exhausted


def test_progress_reports_reach_the_reporter():
    seen = []
    c = Checker(KernelModel("linux-2.6.36-pre", SEED_BOUNDS["ksm"])).report(seen.append).parallel(2)
    res = c.spawn_bfs().join()
    assert seen and seen[-1].done and seen[-1].distinct == res.distinct and seen[-1].findings == len(res.findings)


def _cli(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src"), "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "rmapcheck", *args, "--save-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=env)


@pytest.mark.parametrize("signum,group", [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_interrupted_cli_run_leaves_no_worker(tmp_path, signum, group):
    # SIGINT to the process group, as a terminal's Ctrl-C; SIGTERM to the checker alone.
    p = _cli(["check", "--design", "linux-6.18", "--preset", "standard", "--depth", "12", "--workers", "2",
              "--progress"], tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len(children(p.pid)) < 2 and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
        assert len(children(p.pid)) == 2
        time.sleep(1.0)
        if group:
            os.killpg(p.pid, signum)
        else:
            p.send_signal(signum)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert re.search(r"partial result: the check was interrupted", out)
    assert f"warning: interrupted by {signal.Signals(signum).name}" in out
    assert children(p.pid, group=True) == []


def test_cli_workers_give_the_same_report(tmp_path):
    args = ["check", "--design", "linux-2.6.36-pre", "--processes", "2", "--pages", "1", "--depth", "8",
            "--forked", "--mergeable", "--ops", "write,exit,ksm_scan", "--no-rcu-windows", "--no-progress"]
    outs = []
    for workers in ("1", "2"):
        p = _cli([*args, "--workers", workers], tmp_path / workers)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 1, err
        # the seconds differ, nothing else
        outs.append(re.sub(r"[0-9.]+ s\b", "S s", out.replace(str(tmp_path / workers), "DIR")))
    assert outs[0] == outs[1]


def test_cli_ray_without_ray_is_one_line(tmp_path):
    # a Python that cannot import ray: a module named ray that fails first on the path
    fake = tmp_path / "noray"
    fake.mkdir()
    (fake / "ray.py").write_text("raise ImportError('no ray here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake),
                                                        str(Path(__file__).resolve().parent.parent / "src")])}
    p = subprocess.run([sys.executable, "-m", "rmapcheck", "check", "--design", "linux-6.18", "--preset", "small",
                        "--ray", "auto"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["rmapcheck: --ray needs Ray, an optional extra: "
                                             "pip install 'rmapcheck[ray]'"]


def test_cli_ray_with_another_strategy_is_refused():
    p = subprocess.run([sys.executable, "-m", "rmapcheck", "check", "--design", "linux-6.18", "--preset", "small",
                        "--strategy", "dfs", "--ray", "auto"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "--ray" in p.stderr


def test_small_bounds_with_more_workers_than_states():
    b = Bounds(processes=1, regions=1, pages=1, contents=1, depth=2, ops=("write", "munmap"))
    assert summary(run("linux-6.18", b, 8)) == summary(run("linux-6.18", b, 1))


def test_memory_limit_stops_the_workers_with_a_partial_result():
    m = KernelModel("linux-6.18", PRESETS["small"])
    full = Checker(m).parallel(2).spawn_bfs().join()
    cut = Checker(m).parallel(2).memory_limit(1).spawn_bfs().join()
    assert full.exhausted and not full.memory_stopped
    assert not cut.exhausted and cut.memory_stopped > 1 and cut.distinct < full.distinct
    assert [w for w in cut.warnings if "memory limit" in w]


@pytest.mark.parametrize("design,reached", [("linux-6.18", True), ("linux-6.15", False)])
def test_an_event_property_counts_on_the_workers_as_in_one_process(design, reached):
    # anon-merge-into-unfaulted is an event of a transition (docs/history.md B18): a
    # worker records it on every transition, whoever owns the state it leads to
    b = Bounds(processes=1, regions=2, ops=("write", "mremap"), depth=4)
    one = Checker(KernelModel(design, b)).require("anon-merge-into-unfaulted").spawn_bfs().join()
    two = Checker(KernelModel(design, b)).parallel(2).require("anon-merge-into-unfaulted").spawn_bfs().join()
    for res in (one, two):
        assert bool(res.sometimes.get("anon-merge-into-unfaulted")) is reached
        assert res.never_reached == ([] if reached else ["anon-merge-into-unfaulted"])
    assert (one.distinct, one.verdict) == (two.distinct, two.verdict)
