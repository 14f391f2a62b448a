"""Designs of the 6.18 line: the January 2026 mremap fix, with and without.

Without ``vmg->copied_from`` (design ``linux-6.18.0``), moving a faulted VMA
back in front of an unfaulted one with contiguous ``vm_pgoff`` merges them into
a VMA whose anon_vma chain does not hold the moved pages' anon_vma: an rmap walk
of those pages would miss the VMA (the use-after-free the fix describes follows
once that anon_vma is freed). ``linux-6.18`` carries the fix and is clean.
"""

from __future__ import annotations

import pytest

from rmapcheck.check.checker import Checker
from rmapcheck.check.model import Bounds, KernelModel
from rmapcheck.commands.common import BUNDLED
from rmapcheck.model.findings import InvariantViolation
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.parse import load_scenario

SCENARIO = BUNDLED / "mremap-fork-child-no-merge-at-destination.yaml"


def test_the_unfixed_copy_vma_loses_the_anon_vma_on_the_merge():
    s = load_scenario(str(SCENARIO))
    r = ModelRunner(s, "linux-6.18.0")
    with pytest.raises(InvariantViolation, match="not on the VMA's chain"):
        for op in s.ops:
            r.step(op)
    assert op.text().startswith("mremap P1 B[0:2] A[0]"), "the move back is the step that breaks it"


def test_the_fixed_design_runs_the_same_scenario_cleanly():
    s = load_scenario(str(SCENARIO))
    r = ModelRunner(s, "linux-6.18")
    assert [r.step(op).result for op in s.ops][-1] == "4"


def test_linux_6_18_is_clean_with_mremap_in_the_checker():
    b = Bounds(processes=2, regions=1, pages=2, contents=1, depth=5,
               ops=("write", "fork", "exit", "munmap", "mprotect", "mremap"))
    res = Checker(KernelModel("linux-6.18", b)).spawn_bfs().join()
    assert res.exhausted and res.findings == [], [(f.property, f.message) for f in res.findings]


@pytest.mark.parametrize("design, clean", [("linux-2.6.36-pre", False), ("linux-2.6.36", True),
                                           ("linux-6.18", True)])
def test_ksmd_page_by_page_reaches_b0_where_the_history_has_it(design, clean):
    # ksmd one page per action, so exits interleave between the pages of a pass.
    b = Bounds(processes=2, regions=1, pages=1, contents=1, depth=10, forked=True, mergeable=True,
               ops=("write", "exit", "ksmd"))
    res = Checker(KernelModel(design, b)).spawn_bfs().join()
    assert res.exhausted
    uaf = [f for f in res.findings if f.property == "use-after-free"]
    if clean:
        assert res.findings == [], [(f.property, f.message) for f in res.findings]
    else:
        assert uaf and uaf[0].function == "drop_anon_vma"
        assert any(op.kind == "ksmd" for op in uaf[0].trace)
