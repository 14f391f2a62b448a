"""Fault injection: an allocation that fails takes the kernel's error path.

linux-6.18 unwinds every injected failure cleanly; a design whose
``anon_vma_fork()`` forgets ``unlink_anon_vmas()`` on its error path (the
``out_error`` label) leaves the chain entries of the half-built VMA behind,
and the checker reports them as leaked.
"""

from __future__ import annotations

import errno
import sys
import types

import pytest

from rmapcheck import designs
from rmapcheck.check.checker import Checker
from rmapcheck.check.model import Bounds, KernelModel
from rmapcheck.designs.linux_6_18 import CONFIG, OPS
from rmapcheck.model import rmap

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
