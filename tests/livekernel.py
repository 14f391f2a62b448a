"""Whether tests can use the live kernel, and the reason they skip if not.

Live tests need root (pagemap reports page frame numbers only to root) and a
readable /proc/kpageflags; KSM tests also need /sys/kernel/mm/ksm.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["KSM_REASON", "LIVE_REASON", "assert_agrees", "requires_ksm", "requires_live"]


def _live_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (pagemap PFNs, /proc/kpageflags)"
    try:
        with open("/proc/kpageflags", "rb") as f:
            f.read(8)
    except OSError as e:
        return f"/proc/kpageflags unreadable: {e}"
    return None


def _ksm_skip_reason() -> str | None:
    reason = _live_skip_reason()
    if reason is not None:
        return reason
    if not Path("/sys/kernel/mm/ksm/run").exists():
        return "kernel without KSM (no /sys/kernel/mm/ksm)"
    return None


def _thp_setting() -> str:
    try:
        return Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return ""


LIVE_REASON = _live_skip_reason()
KSM_REASON = _ksm_skip_reason()

#: skip a test, with the reason, where the live kernel cannot be observed
requires_live = pytest.mark.skipif(LIVE_REASON is not None, reason=LIVE_REASON or "")
#: skip a test, with the reason, where KSM cannot be driven
requires_ksm = pytest.mark.skipif(KSM_REASON is not None, reason=KSM_REASON or "")


def assert_agrees(path: Path) -> None:
    """Run the scenario file ``path`` on the model and the live kernel; fail at the first difference.

    The failure names the file, line and step and shows both views, KSM
    counters and ``ksm_stat`` included.
    """
    from rmapcheck.compare import diff_scenario
    from rmapcheck.report.observation import describe_difference, observation_map
    from rmapcheck.scenario.parse import load_scenario

    s = load_scenario(str(path))
    if any("thp_system" in op.flags for op in s.ops) and "[always]" in _thp_setting():
        pytest.skip("transparent_hugepage/enabled is 'always': a thp_system mapping may get a huge page, "
                    "which the model has not")
    res = diff_scenario(s)
    if res.finding:
        pytest.fail(f"{path.name}: model finding: {res.finding}")
    if not res.agree:
        i = res.step
        op = s.ops[i - 1]
        m, lv = res.model[-1], res.live[-1]
        pytest.fail(f"{path.name}:{op.line}: step {i} ({op.text()}) differs: "
                    f"{describe_difference(m, lv)}\nmodel:\n{observation_map(m, s)}\n"
                    f"live kernel:\n{observation_map(lv, s)}\n"
                    f"counters model {m.counters} live {lv.counters}\n"
                    f"ksm_stat model {m.ksm_stat} live {lv.ksm_stat}")
