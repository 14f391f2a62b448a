"""The designs of 3.16 to 4.0 (docs/history.md B10 to B13): each bug found on its buggy design, none on its fix.

Each catalog row a design declares (``HISTORY``) is run with ``rmapcheck
check`` and its own arguments on both sides; the rows of these designs are
all fast (a few seconds). Then the scenario-level facts behind them: the
root freed first (B10), the split that claims success (B11), the degree
that a merge does not count (B12) and the failed clone that uncounts it
(B13).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from rmapcheck.designs import DESIGNS
from rmapcheck.model.findings import DataCorruption, KernelBug, UseAfterFree
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.parse import parse_scenario

MID = ("linux-3.16-rc", "linux-3.16", "linux-3.18", "linux-3.19-rc", "linux-3.19", "linux-4.0")

ROWS = [(name, row) for name in MID
        for row in getattr(importlib.import_module(f"rmapcheck.designs.{DESIGNS[name]}"), "HISTORY", ())]


def test_the_rows_are_the_bugs_of_these_designs():
    assert sorted(row["bug"] for _, row in ROWS) == ["B10", "B11", "B12", "B13"]


def _check(design, args, cwd):
    out = subprocess.run([sys.executable, "-m", "rmapcheck", "check", "--design", design, *args, "--json"],
                         capture_output=True, text=True, cwd=cwd, timeout=300)
    return out.returncode, json.loads(out.stdout)


@pytest.mark.parametrize("name, row", ROWS, ids=[row["bug"] for _, row in ROWS])
def test_row_buggy_design_has_the_bug_and_the_fix_is_clean(name, row, tmp_path):
    assert row["fast"]
    rc, res = _check(name, row["args"], tmp_path)
    assert rc == 1 and res["exhausted"]
    assert row["property"] in {f["property"] for f in res["findings"]}, res["findings"]
    rc, res = _check(row["fixed"], row["args"], tmp_path)
    assert rc == 0 and res["exhausted"] and res["findings"] == [], res["findings"]


def _run(design, text):
    s = parse_scenario(text, "test")
    r = ModelRunner(s, design=design, check=True)
    for op in s.ops:
        r.step(op)
    return r


B10 = """
name: b10
description: the last put of a child frees its root first
regions:
  A: 1
steps:
  - mmap P0 A rw
  - write P0 A[0] 1
  - fork P0 P1
  - write P1 A[0] 2
  - migrate_start P1 A[0]
  - kthread 0
  - exit P0
  - exit P1
  - kthread 0
  - kthread 0
  - kthread 0
  - kthread 0
"""


def test_b10_the_child_reads_its_freed_root_in_anon_vma_free():
    with pytest.raises(UseAfterFree) as e:
        _run("linux-3.16-rc", B10)
    assert e.value.function == "anon_vma_free"
    assert "__put_anon_vma" in e.value.chain


def test_b10_fixed_frees_the_child_first():
    r = _run("linux-3.16", B10)
    assert r.k.anon_vma_cachep.nr_live == 0


B11 = """
name: b11
description: a split that fails but claims success
regions:
  A: 2
steps:
  - mmap P0 A rw
  - write P0 A[0] 1
  - munmap P0 A[1] fail=anon_vma_chain_alloc*
  - read P0 A[0]
"""


def test_b11_munmap_of_one_page_unmaps_the_whole_vma():
    with pytest.raises(DataCorruption) as e:
        _run("linux-3.16", B11)
    assert "never unmapped" in str(e.value)


def test_b11_fixed_munmap_fails_and_keeps_the_page():
    s = parse_scenario(B11, "test")
    r = ModelRunner(s, design="linux-3.18", check=True)
    results = [r.step(op).result for op in s.ops]
    assert results[2] == "ENOMEM" and results[3] != "SIGSEGV"


B13 = """
name: b13
description: a failed clone in a split uncounts the degree
regions:
  A: 2
steps:
  - mmap P0 A rw
  - write P0 A[0] 1
  - mprotect P0 A[1] r fail=anon_vma_chain_alloc*
  - exit P0
"""


@pytest.mark.parametrize("design", ["linux-3.19-rc", "linux-3.19"])
def test_b13_the_exit_hits_bug_on_degree(design):
    s = parse_scenario(B13, "test")
    r = ModelRunner(s, design=design, check=False)
    r.step(s.ops[0])
    r.step(s.ops[1])
    assert r.step(s.ops[2]).result == "ENOMEM"
    with pytest.raises(KernelBug) as e:
        r.step(s.ops[3])
    assert e.value.function == "unlink_anon_vmas" and "degree" in str(e.value)


def test_b13_fixed_keeps_the_degree():
    s = parse_scenario(B13, "test")
    r = ModelRunner(s, design="linux-4.0", check=True)
    assert [r.step(op).result for op in s.ops][2] == "ENOMEM"
    assert r.k.anon_vma_cachep.nr_live == 0


def test_no_reuse_before_degree():
    # Three generations: v3.18 gives every child an anon_vma of its own; v3.19
    # reuses the middle one once its process has exited.
    text = """
name: chain
description: fork, fork, exit the middle, fork again
regions:
  A: 1
steps:
  - mmap P0 A rw
  - write P0 A[0] 1
  - fork P0 P1
  - fork P1 P2
  - exit P1
  - fork P2 P3
"""
    assert _run("linux-3.18", text).k.anon_vma_cachep.nr_live == 4
    assert _run("linux-3.19", text).k.anon_vma_cachep.nr_live == 3
