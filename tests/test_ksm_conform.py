"""Random KSM scenarios agree between the model and the live kernel.

``random_scenario(seed, kinds=KSM_KINDS)`` mixes the VMA operations with
mergeable/unmergeable advice, ``prctl``, ``ksm_scan``, ``ksm_settle``,
``ksm_set`` and ``migrate``. Every step's observation (frames, KSM pages,
the global KSM counters and each process's ``ksm_stat``) must agree; a
difference is shrunk to a minimal scenario for the failure message.
"""

from __future__ import annotations


import pytest
from livekernel import requires_ksm

from rmapcheck.commands.conform import ksm_scenario
from rmapcheck.compare import DiffResult, diff_scenario, shrink
from rmapcheck.report.observation import describe_difference
from rmapcheck.scenario.parse import dump_scenario

#: how many random KSM scenarios (seeds 0..N-1)
N = 120


pytestmark = [pytest.mark.live, requires_ksm]


def _explain(res: DiffResult) -> str:
    s = res.scenario
    small = shrink(s, lambda c: not diff_scenario(c).agree)
    again = diff_scenario(small)
    op = small.ops[again.step - 1] if again.step else None
    what = again.finding or (describe_difference(again.model[-1], again.live[-1]) if again.model else "")
    return (f"{s.name} differs at step {res.step} ({s.ops[res.step - 1].text()}); shrunk to "
            f"{len(small.ops)} steps, differing at {op.text() if op else '?'}: {what}\n"
            f"{dump_scenario(small)}")


def test_random_ksm_scenarios_agree():
    for seed in range(N):
        res = diff_scenario(ksm_scenario(seed))
        if not res.agree:
            pytest.fail(_explain(res))


def test_bench_ksm_ratio():
    from rmapcheck.commands.bench import ksm_model_vs_live

    ratio = ksm_model_vs_live(range(3))
    assert 0 < ratio < 100
