"""Every bundled scenario: its stated results on the model, and agreement with the live kernel.

The KSM scenarios (``ksm-*.yaml``) are exercised by their own tests.
"""

from __future__ import annotations


import pytest
from livekernel import assert_agrees, requires_live

from rmapcheck.commands.common import BUNDLED, expectation_error
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.parse import load_scenario

FILES = sorted(p for p in BUNDLED.glob("*.yaml") if not p.name.startswith("ksm-"))


def test_enough_scenarios():
    assert len(FILES) >= 42


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_scenario_is_documented(path):
    text = path.read_text()
    assert text.startswith("# "), f"{path.name} must start with a comment block"
    s = load_scenario(str(path))
    assert s.name == path.stem, f"{path.name}: name {s.name!r} should be the file's stem"
    assert s.description


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_scenario_on_model(path):
    s = load_scenario(str(path))
    runner = ModelRunner(s, check=True)
    for op in s.ops:
        obs = runner.step(op)
        err = expectation_error(s, op, obs.result)
        assert err is None, err


@pytest.mark.live
@requires_live
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_scenario_agrees_with_live_kernel(path):
    assert_agrees(path)
