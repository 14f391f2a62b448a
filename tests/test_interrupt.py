"""Ctrl-C and SIGTERM during ``rmapcheck check``: the findings so far, their traces, a partial verdict.

The commands run in a subprocess, as a user runs them; each test waits for
the progress line that shows a finding (or any progress) before it sends the
signal, with every wait bounded.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from rmapcheck.check.checker import Checker, Stop
from rmapcheck.check.model import SEED_BOUNDS, KernelModel
from rmapcheck.check.trace import load_trace, replay

#: a check that finds a use-after-free within a second and explores for minutes after
LONG_CHECK = ["check", "--design", "linux-2.6.36-pre", "--strategy", "dfs", "--pages", "2", "--forked",
              "--mergeable", "--ops", "write,exit,ksm_scan,fork,mmap,munmap,mprotect", "--processes", "3",
              "--depth", "14", "--no-rcu-windows", "--progress"]
#: a check of linux-6.18 that finds nothing for a long while
CLEAN_CHECK = ["check", "--design", "linux-6.18", "--preset", "standard", "--depth", "12", "--progress"]

_WAIT = 120.0


def start(args: list[str], cwd) -> subprocess.Popen:
    env = dict(os.environ, NO_COLOR="1", TERM="dumb")
    return subprocess.Popen([sys.executable, "-m", "rmapcheck", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(p: subprocess.Popen, done, what: str) -> str:
    """Read stderr until ``done(what was read)`` holds; what was read (the test fails after a bounded wait)."""
    seen = b""
    deadline = time.monotonic() + _WAIT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([p.stderr], [], [], 1.0)
        if ready:
            chunk = os.read(p.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            if done(seen):
                return seen.decode()
    p.kill()
    p.wait(10)
    pytest.fail(f"no {what} within {_WAIT} s: {seen[-500:]!r}")


def wait_for_progress(p: subprocess.Popen, findings: int) -> str:
    """Read stderr until a progress report shows at least ``findings`` findings; what was read."""
    def done(seen: bytes) -> bool:
        counts = [int(n) for n in re.findall(rb"findings (\d+)", seen)]
        return bool(counts) and counts[-1] >= findings

    return wait_for(p, done, f"progress report with {findings} findings")


def interrupt(p: subprocess.Popen, signum: int) -> tuple[int, str, str]:
    p.send_signal(signum)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("the check did not end within 60 s of the signal")
    return p.returncode, out.decode(), err.decode()


def check_saved(path: str, prop: str, function: str) -> None:
    t = load_trace(path)
    assert (t.property, t.function) == (prop, function)
    f, _ = replay(t)
    assert f is not None and (f.property, f.function) == (prop, function)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_check_prints_findings_so_far(tmp_path, signum):
    p = start([*LONG_CHECK, "--save-dir", "traces"], tmp_path)
    wait_for_progress(p, 1)
    status, out, err = interrupt(p, signum)
    assert status == 1, err
    assert "Traceback" not in err
    name = signal.Signals(signum).name
    lines = out.splitlines()
    assert lines[0].startswith("design linux-2.6.36-pre: violation (dfs, ")
    assert re.match(r"partial result: the check was interrupted after [0-9.]+ s; [1-9][0-9]* findings so far$",
                    lines[1]), lines[1]
    assert f"warning: interrupted by {name}: the result is partial, the findings are those found so far" in lines
    saved = [m.groups() for m in map(re.compile(r"saved: (\S+) \(rmapcheck replay (\S+)\)$").match, lines) if m]
    assert saved and all(a == b for a, b in saved)
    assert sorted(f for f in os.listdir(tmp_path / "traces") if f.endswith(".json")) \
        == sorted(os.path.basename(a) for a, _ in saved)
    for path, _ in saved:
        t = load_trace(str(tmp_path / path))
        check_saved(str(tmp_path / path), t.property, t.function)
        assert os.path.basename(path).startswith(f"linux-2.6.36-pre-{t.property}-{t.function}-")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_check_json_is_complete(tmp_path, signum):
    p = start([*LONG_CHECK, "--json", "--save-dir", "traces"], tmp_path)
    wait_for_progress(p, 1)
    status, out, err = interrupt(p, signum)
    assert status == 1, err
    d = json.loads(out)
    assert d["interrupted"] is True and d["exhausted"] is False and d["verdict"] == "violation"
    assert d["findings"]
    assert any(w.startswith(f"interrupted by {signal.Signals(signum).name}") for w in d["warnings"])
    for f in d["findings"]:
        check_saved(str(tmp_path / f["trace"]), f["property"], f["function"])


def test_interrupted_clean_check_is_not_clean(tmp_path):
    # Nothing found before the signal: the verdict is "interrupted", not
    # "clean", and the status is 128 + the signal's number.
    p = start([*CLEAN_CHECK, "--json"], tmp_path)
    wait_for_progress(p, 0)
    status, out, err = interrupt(p, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, err
    d = json.loads(out)
    assert (d["verdict"], d["interrupted"], d["findings"]) == ("interrupted", True, [])


@pytest.mark.parametrize("strategy", ["spawn_bfs", "spawn_dfs", "spawn_simulation"])
def test_stop_ends_each_strategy_with_a_partial_result(strategy):
    stop = Stop()
    stop.signum = signal.SIGINT
    c = Checker(KernelModel("linux-2.6.36-pre", SEED_BOUNDS["ksm"])).stop_on(stop)
    res = getattr(c, strategy)().join()
    assert res.interrupted == signal.SIGINT and not res.exhausted
    assert res.as_dict()["interrupted"] is True
    full = getattr(Checker(KernelModel("linux-2.6.36-pre", SEED_BOUNDS["ksm"])), strategy)().join()
    assert res.states < full.states
    assert not full.interrupted and full.as_dict()["interrupted"] is False
