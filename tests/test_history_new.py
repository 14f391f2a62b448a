"""The later designs of docs/history.md §6 (B14, B15, B16, B18) and the required sometimes-property.

Each design's mechanism on a short sequence of its own, against the design
it is fixed by; the catalog rows themselves (``HISTORY``) run through
``rmapcheck history``'s tests. Here also: an event sometimes-property counts
on every transition, and a required property is reported as never reached
only by an exhaustive exploration; the hunt that finds CVE-2022-42703 from
the empty start is the same on every run with one worker and a seed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rmapcheck.check.checker import Checker
from rmapcheck.check.model import Bounds, KernelModel
from rmapcheck.check.trace import judged_run
from rmapcheck.commands.check import command as check_command
from rmapcheck.designs import DESIGNS, load_design
from rmapcheck.designs.linux_5_4_next import vm_prev
from rmapcheck.designs.linux_6_0 import HISTORY as B16
from rmapcheck.model.events import ANON_MERGE_INTO_UNFAULTED
from rmapcheck.scenario.parse import parse_scenario


def _run(design, steps, regions="A: 3\n  B: 3"):
    """Findings ``(property, function)`` per step of ``steps`` on ``design``, and the events per step."""
    sc = parse_scenario(f"name: t\nregions:\n  {regions}\nsteps:\n" + "".join(f"  - {s}\n" for s in steps))
    found, events = [], []
    for _i, _op, out in judged_run(sc, design):
        found.append({(p, fn) for p, fn, _m, _e in out.findings})
        events.append(set(out.state.k.events))
    return found, events


def test_new_designs_are_registered_in_version_order():
    names = list(DESIGNS)
    order = ["linux-4.7-mm", "linux-5.4-next", "linux-6.0", "linux-6.1", "linux-6.15", "linux-6.18.0"]
    assert [n for n in names if n in order] == order
    assert load_design("linux-6.1").base == "linux-6.0"
    assert load_design("linux-6.0").changed == {"anon_vma_reusable"}
    assert load_design("linux-6.15").changed == {"is_mergeable_anon_vma"}


# -- B18: the merge rule before v6.16 ------------------------------------------------------------

#: the bundled scenario mremap-faulted-unfaulted-merge: a faulted page moved back next to an unfaulted one
_MOVE_BACK = ["mmap P0 A[0:2] rw", "mmap P0 B[0:2] rw", "write P0 A[0] 1", "mremap P0 A[0] B[0]",
              "mremap P0 B[1] A[1]", "mremap P0 B[0] A[0]"]


@pytest.mark.parametrize("design,merged", [("linux-6.18", True), ("linux-6.15", False), ("linux-6.1", False)])
def test_faulted_page_moved_back_merges_only_after_879bca0a2c4f(design, merged):
    found, events = _run(design, _MOVE_BACK, "A: 2\n  B: 2")
    assert not any(found)
    assert (ANON_MERGE_INTO_UNFAULTED in events[-1]) is merged
    assert not any(events[:-1])


def test_required_property_is_never_reached_only_by_an_exhaustive_run():
    b = Bounds(processes=1, regions=2, ops=("write", "mremap"), depth=4)
    res = Checker(KernelModel("linux-6.15", b)).require(ANON_MERGE_INTO_UNFAULTED).spawn_bfs().join()
    assert res.exhausted and res.never_reached == [ANON_MERGE_INTO_UNFAULTED] and res.verdict == "violation"
    fixed = Checker(KernelModel("linux-6.18", b)).require(ANON_MERGE_INTO_UNFAULTED).spawn_dfs().join()
    assert fixed.sometimes[ANON_MERGE_INTO_UNFAULTED] and fixed.verdict == "clean"
    cut = Checker(KernelModel("linux-6.15", b)).require(ANON_MERGE_INTO_UNFAULTED).timeout(1e-9).spawn_bfs().join()
    assert not cut.exhausted and cut.never_reached == []
    assert any("required property" in w and "no verdict" in w for w in cut.warnings)


def test_an_event_is_not_a_vacuity_warning_unless_required():
    b = Bounds(processes=1, regions=2, ops=("write", "mremap"), depth=2)
    res = Checker(KernelModel("linux-6.15", b)).spawn_bfs().join()
    assert not any(ANON_MERGE_INTO_UNFAULTED in w for w in res.warnings)


def test_require_on_the_command_line(tmp_path):
    run = CliRunner()
    args = ["--processes", "1", "--regions", "2", "--ops", "write,mremap", "--depth", "4",
            "--require", ANON_MERGE_INTO_UNFAULTED, "--save-dir", str(tmp_path)]
    buggy = run.invoke(check_command, ["--design", "linux-6.15", *args, "--json"])
    assert buggy.exit_code == 1
    assert json.loads(buggy.output)["never_reached"] == [ANON_MERGE_INTO_UNFAULTED]
    text = run.invoke(check_command, ["--design", "linux-6.15", *args, "--no-progress"])
    assert f"never reached: {ANON_MERGE_INTO_UNFAULTED}" in text.output
    assert run.invoke(check_command, ["--design", "linux-6.18", *args, "--no-progress"]).exit_code == 0
    for extra, words in (([*args, "--require", "no-such"], "unknown sometimes-property 'no-such'"),
                         (["--require", ANON_MERGE_INTO_UNFAULTED], "--require needs bounds")):
        p = subprocess.run([sys.executable, "-m", "rmapcheck", "check", "--design", "linux-6.18", *extra],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 2 and "Traceback" not in p.stderr
        assert len(p.stderr.splitlines()) == 1 and words in p.stderr


# -- B15: linux-next, October 2019 ----------------------------------------------------------------

def test_b15_merge_gives_prev_its_predecessors_anon_vma():
    # an unfaulted page moved between an unfaulted VMA and a faulted one joins them (syzbot's mmap)
    steps = ["mmap P0 A[0:3] rw", "mmap P0 B[0:3] rw", "mremap P0 B[1] B[0]", "write P0 B[2] 1",
             "mremap P0 A[1] B[1]"]
    found, _ = _run("linux-5.4-next", steps)
    assert found[-1] == {("vm-bug-on", "anon_vma_merge")}
    found, _ = _run("linux-6.0", steps)
    assert not any(found)
    # with no VMA before prev, prev is NULL
    found, _ = _run("linux-5.4-next", ["mmap P0 A[0:3] rw", "mremap P0 A[1] A[0]", "write P0 A[2] 1",
                                       "mremap P0 A[0] A[1]"], "A: 3")
    assert found[-1] == {("vm-bug-on", "anon_vma_clone")}


def test_vm_prev_of_a_copy_is_its_sources():
    sc = parse_scenario("name: t\nregions:\n  A: 3\nsteps:\n  - mmap P0 A[0:1] r\n  - mmap P0 A[1:3] rw\n")
    r = None
    for _i, _op, out in judged_run(sc, "linux-5.4-next"):
        r = out.state
    first, second = r.k.tasks["P0"].mm.mmap
    assert vm_prev(second) is first and vm_prev(first) is None
    copy = r.k.ops.vm_area_dup(r.k, second)
    assert vm_prev(copy, second) is first


# -- B14: mmotm, July 2016 -------------------------------------------------------------------------

def test_b14_ksm_puts_another_anon_vma_than_it_got():
    # the child's page stays filed under the parent's anon_vma; ksmd merges it
    steps = ["prctl P0 merge 1", "mmap P0 A[0] rw", "write P0 A[0] 1", "fork P0 P1", "write P0 A[0] 1",
             "ksm_scan 1", "ksm_scan 1"]
    found, _ = _run("linux-4.7-mm", steps, "A: 1")
    assert ("invariant", "check_invariants") in found[-1]
    found, _ = _run("linux-6.0", steps, "A: 1")
    assert not any(found)


# -- B16: CVE-2022-42703 from the empty start ----------------------------------------------------

def test_b16_hunt_with_one_worker_is_the_same_on_every_run(tmp_path):
    args = list(B16[0]["args"])
    runs = []
    for _ in range(2):
        got = CliRunner().invoke(check_command, ["--design", "linux-6.0", *args, "--json",
                                                 "--save-dir", str(tmp_path)])
        assert got.exit_code == 1
        d = json.loads(got.output)
        runs.append((d["states"], [(f["property"], f["function"], f["trace_length"]) for f in d["findings"]]))
    assert runs[0] == runs[1]
    assert runs[0][1][0][0] == B16[0]["property"]
