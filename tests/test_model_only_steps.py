"""Steps only the model runs: the model checker's kernel threads, usable in scenario files.

``migrate_start`` isolates and locks a page and reads its anon_vma under RCU
(the first phase of ``migrate_pages()``), ``kthread N`` advances kernel work N
by one phase (the pin, the unmap, ...), ``reclaim`` runs the reclaim rmap walk
(``folio_check_references()``) and ``reclaim_start`` its first phase. Once
migration has replaced the PTEs by migration entries there is no page left to
reclaim there (``ENOENT``), and the finished migration maps the page again.
"""

from __future__ import annotations

import pytest
from livekernel import requires_live

from rmapcheck.live.runner import LiveError, LiveRunner
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.parse import ScenarioError, parse_scenario

TEXT = """
regions:
  A: 1
steps:
  - mmap P0 A rw
  - write P0 A[0] 1
  - fork P0 P1
  - reclaim P1 A[0]
  - migrate_start P0 A[0]
  - kthread 0
  - kthread 0
  - reclaim P0 A[0] => ENOENT
  - kthread 0
  - kthread 0
  - kthread 0
  - read P1 A[0] => 1
  - reclaim P0 A[0]
"""


def test_model_only_steps_run_on_the_model():
    s = parse_scenario(TEXT, "t.yaml")
    r = ModelRunner(s)
    results = [r.step(op).result for op in s.ops]
    assert results == ["ok", "ok", "ok", "ok", "ok", "ok", "ok", "ENOENT", "ok", "ok", "ok", "1", "ok"]
    assert r.k.migrations == [], "the migration has finished"


def test_a_reclaim_walk_in_phases():
    s = parse_scenario("""
regions:
  A: 1
steps:
  - mmap P0 A rw
  - write P0 A[0] 1
  - fork P0 P1
  - reclaim_start P1 A[0]
  - reclaim_start P1 A[0] => EBUSY
  - kthread 0
  - kthread 0
  - read P1 A[0] => 1
""", "t.yaml")
    r = ModelRunner(s)
    phases = []
    for op in s.ops:
        r.step(op)
        phases.append([w.phase for w in r.k.walks])
    # the folio is locked while the walk is in flight: a second walk skips it
    assert phases[3:] == [["rcu"], ["rcu"], ["locked"], [], []]


def test_model_only_step_errors_name_the_line():
    with pytest.raises(ScenarioError) as e:
        parse_scenario("regions:\n  A: 1\nsteps:\n  - kthread\n", "t.yaml")
    assert e.value.line == 4 and "kthread N" in str(e.value)


@requires_live
@pytest.mark.live
@pytest.mark.parametrize(("text", "first", "message"), [
    ("model-only", 3, "model-only"), ("faults", 4, "injects an allocation failure")])
def test_the_live_runner_refuses_what_only_the_model_runs(text, first, message):
    s = parse_scenario({"model-only": TEXT, "faults": FAULTS}[text], "t.yaml")
    with LiveRunner(s) as live:
        for op in s.ops[:first]:
            live.step(op)
        with pytest.raises(LiveError, match=message):
            live.step(s.ops[first])


FAULTS = """
regions:
  A: 2
steps:
  - mmap P0 A rw
  - write P0 A[0] 1
  - fork P0 P1
  - write P1 A[0] 2
  - mprotect P1 A[0] r fail=anon_vma_chain_alloc@2* => ENOMEM
  - mprotect P1 A[0] r fail=anon_vma_chain_alloc@2
  - fork P1 P2 fail=vm_area_dup => ENOMEM
"""


def test_fault_flags_run_on_the_model():
    s = parse_scenario(FAULTS, "t.yaml")
    r = ModelRunner(s)
    assert [r.step(op).result for op in s.ops] == ["ok"] * 4 + ["ENOMEM", "ok", "ENOMEM"]

