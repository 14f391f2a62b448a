"""The running kernel's design is clean at the standard preset, exhaustively.

This is the acceptance bound of the model checker for linux-6.18: every
operation the explorer knows (docs/checker.md), two processes, a mergeable
region of two pages, six actions deep. It takes about a minute.
"""

from __future__ import annotations

from rmapcheck.check.checker import Checker
from rmapcheck.check.model import PRESETS, KernelModel


def test_linux_6_18_is_clean_at_the_standard_preset():
    res = Checker(KernelModel("linux-6.18", PRESETS["standard"])).spawn_bfs().join()
    assert res.exhausted
    assert res.findings == [], [(f.property, f.function, f.message) for f in res.findings]
    # Not vacuous: the exploration reached forks, shared pages, KSM merges and
    # anon_vmas held without VMAs.
    assert all(res.sometimes.values()), res.sometimes
    assert res.distinct > 10_000
