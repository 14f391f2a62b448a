"""Breadth-first search on a Ray cluster of two nodes on this machine: the same result as one process.

The cluster (``ray.cluster_utils.Cluster``: a head node and a second node,
one CPU each, on the loopback address) is started once for the module and
shut down after it; the last check is that none of its processes (GCS,
raylets, workers) is left. With one CPU per node, the two actors of a
search run on the two nodes. Ray is the optional extra ``rmapcheck[ray]``,
which ``make test`` installs; without it these tests are skipped.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from procs import children
from rmapcheck.check.checker import Checker
from rmapcheck.check.model import PRESETS, SEED_BOUNDS, KernelModel
from rmapcheck.check.ray_backend import local_cluster
from test_parallel import summary

if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray is not installed (pip install 'rmapcheck[ray]')", allow_module_level=True)

@pytest.fixture(scope="module")
def cluster():
    import ray

    before = set(children(os.getpid()))
    with local_cluster(nodes=2, cpus=1) as address:
        assert ray.cluster_resources().get("CPU") == 2 and len(ray.nodes()) == 2
        yield address
    deadline = time.monotonic() + 30
    while set(children(os.getpid())) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    left = set(children(os.getpid())) - before
    assert not left, f"Ray processes left behind: {sorted(left)}"


def ray_run(cluster, design, bounds, first=False, workers=None, timeout=None):
    c = Checker(KernelModel(design, bounds)).first_violation(first).timeout(timeout)
    return c.parallel(workers, ray=cluster).spawn_bfs().join()


def one(design, bounds, first=False):
    return Checker(KernelModel(design, bounds)).first_violation(first).spawn_bfs().join()


@pytest.mark.parametrize("design,name", [("linux-2.6.36-pre", "ksm"), ("linux-2.6.36-seed-0526", "reuse"),
                                         ("linux-2.6.36-pre", "migration")])
def test_seed_bounds_same_result_as_one_process(cluster, design, name):
    res = ray_run(cluster, design, SEED_BOUNDS[name])
    assert res.strategy == "bfs"
    assert summary(res) == summary(one(design, SEED_BOUNDS[name]))


def test_standard_preset_same_result_as_one_process(cluster):
    b = PRESETS["standard"]
    assert summary(ray_run(cluster, "linux-6.18", b)) == summary(one("linux-6.18", b))


def test_first_violation_same_trace(cluster):
    b = SEED_BOUNDS["ksm"]
    res = ray_run(cluster, "linux-2.6.36-pre", b, first=True, workers=3)
    assert summary(res)["findings"] == summary(one("linux-2.6.36-pre", b, first=True))["findings"]
    assert res.findings and not res.exhausted


def test_time_limit_ends_the_actors_early(cluster):
    res = ray_run(cluster, "linux-6.18", replace(PRESETS["standard"], depth=12), timeout=2.0)
    assert not res.exhausted and res.distinct > 1
    assert any("cut short" in w for w in res.warnings)


def test_cli_on_the_cluster_prints_what_one_process_prints(cluster, tmp_path):
    args = [sys.executable, "-m", "rmapcheck", "check", "--design", "linux-2.6.36-pre", "--processes", "2",
            "--pages", "1", "--depth", "8", "--forked", "--mergeable", "--ops", "write,exit,ksm_scan",
            "--no-rcu-windows", "--no-progress", "--save-dir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    outs = []
    for extra in (["--workers", "1"], ["--ray", cluster]):
        p = subprocess.run(args + extra, capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 1, p.stderr
        outs.append(re.sub(r"[0-9.]+ s\b", "S s", p.stdout))
    assert outs[0] == outs[1]


@pytest.mark.parametrize("address,words", [("closed", "no Ray cluster there"), ("nonsense", "expected HOST:PORT")])
def test_an_address_without_a_cluster_is_one_line_at_once(address, words):
    # Ray itself would wait minutes on an address where nothing listens
    if address == "closed":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket is closed
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    p = subprocess.run([sys.executable, "-m", "rmapcheck", "check", "--design", "linux-6.18", "--preset", "small",
                        "--ray", address], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.splitlines()) == 1 and words in p.stderr, p.stderr
