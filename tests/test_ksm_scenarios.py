"""The bundled KSM scenarios (``ksm-*.yaml``): documented, and the same on the model and the live kernel.

Each file states in its comment block what it shows; its stated results
(``=> ...``) hold on the live kernel, and every step's observation, KSM
counters and ``ksm_stat`` included, agrees between model and live kernel.
"""

from __future__ import annotations


import pytest
from livekernel import assert_agrees, requires_ksm

from rmapcheck.commands.common import BUNDLED, expectation_error
from rmapcheck.live.runner import LiveRunner, uses_ksm
from rmapcheck.scenario import execute
from rmapcheck.scenario.parse import load_scenario

FILES = sorted(BUNDLED.glob("ksm-*.yaml"))

#: Scenarios the model gets wrong today, with the reason; strict, so a fix
#: shows up as XPASS and the entry must go.
KNOWN_MODEL_BUGS: dict[str, str] = {}


def _ids(p):
    return p.stem


def _param(path):
    bug = KNOWN_MODEL_BUGS.get(path.stem)
    marks = [pytest.mark.xfail(reason=bug, strict=True)] if bug else []
    return pytest.param(path, marks=marks, id=path.stem)


def test_enough_ksm_scenarios():
    assert len(FILES) >= 26


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_ksm_scenario_is_documented(path):
    text = path.read_text()
    assert text.startswith("# "), f"{path.name} must start with a comment block"
    s = load_scenario(str(path))
    assert s.name == path.stem
    assert s.description
    # Both sides agree on which scenarios use KSM (and so observe its counters),
    # except for a scenario of migrations only.
    assert uses_ksm(s) == execute.uses_ksm(s)


@pytest.mark.live
@requires_ksm
@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_ksm_scenario_results_live(path):
    s = load_scenario(str(path))
    with LiveRunner(s) as runner:
        for op in s.ops:
            err = expectation_error(s, op, runner.step(op).result)
            assert err is None, err


@pytest.mark.live
@requires_ksm
@pytest.mark.parametrize("path", [_param(p) for p in FILES])
def test_ksm_scenario_agrees_with_live_kernel(path):
    assert_agrees(path)
