"""Random scenarios: the model against the live kernel, and the model alone with invariants.

A difference is shrunk to a locally minimal scenario, printed in the file
format so that it can be saved and replayed with ``rmapcheck diff``.
"""

from __future__ import annotations


import pytest
from livekernel import requires_live

from rmapcheck.compare import diff_scenario, shrink
from rmapcheck.model.findings import RmapFinding
from rmapcheck.report.observation import describe_difference
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.generate import random_scenario
from rmapcheck.scenario.parse import dump_scenario

#: the seeds compared with the live kernel (fixed, so a failure replays)
LIVE_SEEDS = range(1000, 1200)
#: the seeds run on the model alone
MODEL_SEEDS = range(0, 1000)


@pytest.mark.live
@requires_live
def test_random_scenarios_agree_with_live_kernel():
    assert len(LIVE_SEEDS) >= 200
    for seed in LIVE_SEEDS:
        s = random_scenario(seed)
        res = diff_scenario(s)
        if res.agree:
            continue
        if res.finding:
            why = f"model finding: {res.finding}"
        else:
            op = s.ops[res.step - 1]
            why = f"step {res.step} ({op.text()}): {describe_difference(res.model[-1], res.live[-1])}"
        small = shrink(s, lambda c: not diff_scenario(c).agree)
        pytest.fail(
            f"random scenario {seed} differs at {why}\n"
            f"shrunk to {len(small.ops)} steps:\n{dump_scenario(small)}"
        )


def test_random_scenarios_on_model_keep_invariants():
    # Every step checks the kernel's invariants (check=True); a finding
    # (use-after-free, leak, refcount, data corruption, ...) raises.
    for seed in MODEL_SEEDS:
        s = random_scenario(seed)
        runner = ModelRunner(s, check=True)
        for i, op in enumerate(s.ops, 1):
            try:
                runner.step(op)
            except RmapFinding as e:  # report the scenario to replay it
                pytest.fail(
                    f"random scenario {seed}, step {i} ({op.text()}): "
                    f"{type(e).__name__}: {e}\n{dump_scenario(s)}"
                )
