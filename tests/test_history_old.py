"""The designs of 2.6.36-rc6 to 3.0 and their catalog rows (docs/history.md B5, B6, B10).

Each ``HISTORY`` row of these design modules is checked as ``rmapcheck
history`` would run it: ``rmapcheck check --design BUGGY ARGS`` reports the
row's property, ``--design FIXED ARGS`` is clean. The rows marked ``fast``
run here; they are small.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

MODULES = ("linux_2_6_36", "linux_2_6_36_rc6")


def rows():
    from rmapcheck.designs import DESIGNS

    names = {mod: name for name, mod in DESIGNS.items()}
    for mod in MODULES:
        for row in importlib.import_module(f"rmapcheck.designs.{mod}").HISTORY:
            yield pytest.param(names[mod], row, id=f"{row['bug']}-{names[mod]}")


def rmapcheck(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1", TERM="dumb")
    return subprocess.run([sys.executable, "-m", "rmapcheck", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def check(design: str, args: tuple[str, ...], tmp_path) -> tuple[int, dict]:
    p = rmapcheck("check", "--design", design, *args, "--json", "--no-progress",
                  "--save-dir", str(tmp_path / "traces"))
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, json.loads(p.stdout)


@pytest.mark.parametrize("buggy,row", list(rows()))
def test_row_found_on_buggy_clean_on_fixed(buggy, row, tmp_path):
    if not row["fast"]:
        pytest.skip("a slow row: make bench runs it")
    rc, out = check(buggy, row["args"], tmp_path)
    assert rc == 1, out
    assert row["property"] in {f["property"] for f in out["findings"]}, out["findings"]
    rc, out = check(row["fixed"], row["args"], tmp_path)
    assert rc == 0 and out["findings"] == [], out["findings"]
    assert out["exhausted"]


# docs/history.md B10 on linux-3.0: a migration's pin is the last holder of a
# child whose processes exited; its put frees the root first, then the child,
# whose anon_vma_free() reads the freed root. v6.18 frees the child first.
B10 = """\
regions:
  A: 1
steps:
  - mmap P0 A[0] rw
  - write P0 A[0] 1
  - fork P0 P1
  - write P1 A[0] 2
  - migrate_start P1 A[0]
  - kthread 0
  - kthread 0
  - exit P0
  - exit P1
  - kthread 0
  - kthread 0
  - kthread 0
"""


def test_linux_3_0_frees_the_root_before_the_child(tmp_path):
    f = tmp_path / "b10.yaml"
    f.write_text(textwrap.dedent(B10))
    p = rmapcheck("run", str(f), "--design", "linux-3.0", "--json")
    assert p.returncode == 1, p.stdout + p.stderr
    finding = json.loads(p.stdout)["finding"]
    assert finding["property"] == "use-after-free" and finding["function"] == "anon_vma_free", finding
    p = rmapcheck("run", str(f), "--design", "linux-6.18", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["verdict"] == "ok"


def test_linux_3_0_walks_take_the_mutex():
    # v3.0's one anon_vma lock is the root's mutex: a walk excludes another
    # walk, where v6.18's read-locked walks share the rwsem.
    from rmapcheck.designs import make_kernel
    from rmapcheck.model.findings import Deadlock
    from rmapcheck.model.mm_types import anon_vma

    for design, shared in (("linux-3.0", False), ("linux-6.18", True)):
        k = make_kernel(design)
        av = k.ops.anon_vma_alloc(k)
        assert isinstance(av, anon_vma)
        k.ops.anon_vma_lock_read(k, av)
        if shared:
            k.ops.anon_vma_lock_read(k, av)
            assert av.rwsem_readers == 2
        else:
            with pytest.raises(Deadlock):
                k.ops.anon_vma_lock_read(k, av)
