"""The design linux-2.6.34: anon_vma_chain without a root (docs/history.md S2, §2 "the 2.6.34 migration use-after-free").

Its catalog row runs with the other fast rows in tests/test_history.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from rmapcheck.check.trace import judged_run
from rmapcheck.designs import load_design, make_kernel
from rmapcheck.scenario.parse import load_scenario

# A family three generations deep, each with pages of its own.
FAMILY = """\
name: family
description: three generations, each writes
regions:
  A: 2
steps:
  - mmap P0 A rw
  - write P0 A[0] 1
  - fork P0 P1
  - write P1 A[0] 2
  - fork P1 P2
  - write P2 A[1] 3
  - read P2 A[0] => 2
"""

# The page is isolated for migration, its process exits (the anon_vma is
# freed), and only then does unmap_and_move() take rcu_read_lock(): v2.6.34
# walks the freed anon_vma in remove_migration_ptes(); from v2.6.35 the
# migration skips an unmapped page (67b9509b2c68).
ISOLATED_THEN_EXIT = """\
name: isolated-then-exit
description: migration of a page whose process exits after the isolation
rcu_windows: false
regions:
  A: 1
steps:
  - mmap P0 A rw
  - write P0 A[0] 1
  - migrate_start P0 A[0]
  - exit P0
  - kthread 0
  - kthread 0
  - kthread 0
  - kthread 0
"""


def rmapcheck(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1", TERM="dumb")
    return subprocess.run([sys.executable, "-m", "rmapcheck", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def anon_vmas(design: str, tmp_path) -> list:
    f = tmp_path / "family.yaml"
    f.write_text(FAMILY)
    *_, (_i, _op, out) = judged_run(load_scenario(str(f)), design)
    assert not out.findings and not out.fatal
    return out.state.k.anon_vma_cachep.live()


def test_the_design_loads_on_its_base():
    d = load_design("linux-2.6.34")
    assert d.base == "linux-2.6.36-pre"
    assert {"anon_vma_fork", "folio_get_anon_vma_pin", "move_to_new_folio"} <= d.changed
    k = make_kernel("linux-2.6.34")
    av = k.ops.anon_vma_alloc(k)
    assert av is not None and av.root is av


def test_no_anon_vma_has_a_root_but_itself(tmp_path):
    avs = anon_vmas("linux-2.6.34", tmp_path)
    assert len(avs) == 3
    assert all(av.root is av for av in avs)
    # The root series (5c341ee1dfc8) points every child at the oldest one.
    avs = anon_vmas("linux-2.6.36-pre", tmp_path)
    assert len(avs) == 3
    assert sum(av.root is not av for av in avs) == 2


def test_each_anon_vma_is_locked_by_itself():
    # spin_lock(&anon_vma->lock): a child and its parent are two locks in
    # v2.6.34, one (the root's) from 012f18004da3 on.
    for design, separate in (("linux-2.6.34", True), ("linux-2.6.36-pre", False)):
        k = make_kernel(design)
        parent = k.ops.anon_vma_alloc(k)
        child = k.ops.anon_vma_alloc(k)
        if design != "linux-2.6.34":
            child.root = parent  # as anon_vma_fork() of the root series sets it
        k.ops.anon_vma_lock_read(k, child)
        assert parent.rwsem_readers == (0 if separate else 1)


def test_ksm_refcount_only_under_config_ksm():
    for ksm, want in ((True, 1), (False, 0)):
        k = make_kernel("linux-2.6.34", CONFIG_KSM=ksm, CONFIG_MIGRATION=True)
        av = k.ops.anon_vma_alloc(k)
        k.ops.get_anon_vma(k, av)
        assert av.refcount == want


@pytest.mark.parametrize("design,verdict", [("linux-2.6.34", "use-after-free"), ("linux-2.6.36-pre", "ok")])
def test_migration_walks_the_anon_vma_freed_before_rcu_read_lock(design, verdict, tmp_path):
    f = tmp_path / "isolated-then-exit.yaml"
    f.write_text(textwrap.dedent(ISOLATED_THEN_EXIT))
    p = rmapcheck("run", str(f), "--design", design, "--json")
    assert "Traceback" not in p.stderr, p.stderr
    out = json.loads(p.stdout)
    if verdict == "ok":
        assert p.returncode == 0 and out["verdict"] == "ok", out
        return
    assert p.returncode == 1, out
    finding = out["finding"]
    assert finding["property"] == verdict, finding
    # the third kthread step is move_to_new_page(), whose remove_migration_ptes() locks the anon_vma
    assert finding["step"] == 7 and finding["function"] == "anon_vma_lock_read", finding
