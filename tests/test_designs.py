"""Designs of the 6.18 line: the January 2026 mremap fix, with and without.

Without ``vmg->copied_from`` (design ``linux-6.18.0``), moving a faulted VMA
back in front of an unfaulted one with contiguous ``vm_pgoff`` merges them into
a VMA whose anon_vma chain does not hold the moved pages' anon_vma: an rmap walk
of those pages would miss the VMA (the use-after-free the fix describes follows
once that anon_vma is freed). ``linux-6.18`` carries the fix and is clean.

With the reuse test of v3.19 to v6.0 (design ``linux-6.18-degree``), an
abandoned leaf anon_vma is reused twice on one fork, and the chain of
CVE-2022-42703 follows: the two halves merge, the page's anon_vma is freed
while the page is still mapped, and the next rmap walk reads freed memory.
"""

from __future__ import annotations

import pytest

from rmapcheck.check.checker import Checker
from rmapcheck.check.model import Bounds, KernelModel
from rmapcheck.commands.common import BUNDLED
from rmapcheck.model.findings import InvariantViolation, UseAfterFree
from rmapcheck.scenario.ops import Op
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.parse import load_scenario

SCENARIO = BUNDLED / "mremap-fork-child-no-merge-at-destination.yaml"
DOUBLE_REUSE = BUNDLED / "anon-vma-double-reuse.yaml"


def run_until_it_raises(path, design, exc, match=None):
    """Run bundled scenario ``path`` on ``design`` until a step raises ``exc``.

    :returns: the runner, the step that raised and the exception.
    """
    s = load_scenario(str(path))
    r = ModelRunner(s, design)
    with pytest.raises(exc, match=match) as e:
        for op in s.ops:
            r.step(op)
    return r, op, e.value


def test_the_unfixed_copy_vma_loses_the_anon_vma_on_the_merge():
    r, op, _ = run_until_it_raises(SCENARIO, "linux-6.18.0", InvariantViolation, "not on the VMA's chain")
    assert op.text().startswith("mremap P1 B[0:2] A[0]"), "the move back is the step that breaks it"


def test_the_fixed_design_runs_the_same_scenario_cleanly():
    s = load_scenario(str(SCENARIO))
    r = ModelRunner(s, "linux-6.18")
    assert [r.step(op).result for op in s.ops][-1] == "4"


FAULTED_UNFAULTED = BUNDLED / "mremap-faulted-unfaulted-merge.yaml"


def test_the_unfixed_copy_vma_frees_the_anon_vma_of_a_mapped_page():
    # The fix's own case, no fork needed: the faulted VMA merges into the
    # unfaulted one and unmapping the source frees the page's anon_vma.
    r, op, e = run_until_it_raises(FAULTED_UNFAULTED, "linux-6.18.0", UseAfterFree)
    assert op.text() == "mremap P0 B[0] A[0]"
    assert e.obj._free[1] == "unlink_anon_vmas"
    page = r.k.tasks["P0"].mm.pgtable[r.vpn("A", 0)][0]
    assert page.mapping is e.obj and page._mapcount == 1
    assert [v.anon_vma for v in r.k.tasks["P0"].mm.mmap] == [None], "one merged VMA, without an anon_vma"


def test_the_fixed_copy_vma_merges_and_keeps_the_anon_vma():
    s = load_scenario(str(FAULTED_UNFAULTED))
    r = ModelRunner(s, "linux-6.18")
    assert [r.step(op).result for op in s.ops][-3:] == ["1", "ok", "2"]
    vmas = r.k.tasks["P0"].mm.mmap
    assert len(vmas) == 1 and vmas[0].anon_vma is not None


@pytest.mark.parametrize("design", ["linux-6.18.0", "linux-6.18"])
def test_the_checker_finds_the_2026_mremap_use_after_free_where_it_is(design):
    # Moves of a page to the same place of the other region and back.
    b = Bounds(processes=1, regions=2, pages=2, contents=1, depth=4, ops=("write", "mremap"))
    res = Checker(KernelModel(design, b)).spawn_bfs().join()
    assert res.exhausted
    if design == "linux-6.18":
        assert res.findings == [], [(f.property, f.message) for f in res.findings]
        return
    f = res.findings[0]
    assert (f.property, f.trace_length) == ("use-after-free", 4)
    assert [op.text() for op in f.trace[f.setup:]] == [
        "write P0 A[0] 1", "mremap P0 A[0] B[0]", "mremap P0 B[1] A[1]", "mremap P0 B[0] A[0]"]


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
        assert uaf and "drop_anon_vma" in uaf[0].error.chain
        assert any(op.kind == "ksmd" for op in uaf[0].trace)


def test_degree_reuses_an_abandoned_leaf_twice():
    r, op, _ = run_until_it_raises(DOUBLE_REUSE, "linux-6.18-degree", InvariantViolation, "different anon_vma chains")
    assert op.text() == "fork P4 P5"
    halves = r.k.tasks["P5"].mm.mmap
    assert len(halves) == 2 and halves[0].anon_vma is halves[1].anon_vma
    assert halves[0].anon_vma.num_children == 0, "P2's leaf, abandoned when P2 exited"


def test_degree_double_reuse_ends_in_a_use_after_free_in_the_rmap_walk():
    # The invariant is the first sign; run on without it, as the kernel did.
    s = load_scenario(str(DOUBLE_REUSE))
    r = ModelRunner(s, "linux-6.18-degree", check=False)
    steps = iter(s.ops)
    for op in steps:
        r.perform(op)
        if op.text() == "write P4 A[1] 2":
            page = r.k.tasks["P4"].mm.pgtable[r.vpn("A", 1)][0]
            page_anon_vma = page.mapping
        if op.text() == "exit P4":
            break
    assert len(r.k.tasks["P5"].mm.mmap) == 1, "mprotect merged P5's halves back"
    assert not page_anon_vma._live and page.mapping is page_anon_vma and page._mapcount == 1
    with pytest.raises(UseAfterFree) as e:
        r.perform(Op("reclaim", "P5", "A", 1, 1))
    assert e.value.function == "folio_lock_anon_vma_read" and e.value.obj is page_anon_vma


def test_v6_18_reuses_the_leaf_once_at_most():
    s = load_scenario(str(DOUBLE_REUSE))
    r = ModelRunner(s, "linux-6.18")
    assert [r.step(op).result for op in s.ops][-2:] == ["1", "2"]
    halves = r.k.tasks["P5"].mm.mmap
    assert len(halves) == 2 and halves[0].anon_vma is not halves[1].anon_vma
