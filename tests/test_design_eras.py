"""Every registered design on every bundled scenario: the outcome linux-6.18 gives, unless the design says why not.

Each scenario runs on the design and on linux-6.18 as ``rmapcheck run``
runs it (:func:`~rmapcheck.check.trace.judged_run`: the header's settings,
every step judged as the checker judges it). The outcome is each step's
observation (result, maps, pagemap frames, KSM pages and counters: what the
live kernel shows) and the findings (step, property). It must be the same
unless the design module's ``SCENARIO_DIFFERS`` declares the scenario, as
``(what, reason)``: ``what`` is ``"maps"`` (the observations differ) or a
property that a finding on the design violates and none on linux-6.18 does;
the test asserts that this difference really occurs and that the reason
cites a kernel commit. A scenario that needs a switch the design's
``CONFIG`` turns off (KSM steps without ``CONFIG_KSM``, migration without
``CONFIG_MIGRATION``), or sets one the design does not have, is skipped
with that reason.
"""

from __future__ import annotations

import importlib
import re
from functools import cache

import pytest

from rmapcheck.check.properties import ALWAYS
from rmapcheck.check.trace import judged_run
from rmapcheck.commands.common import BUNDLED
from rmapcheck.designs import DESIGNS, DesignError, load_design
from rmapcheck.scenario.execute import model_observation, uses_ksm
from rmapcheck.scenario.parse import load_scenario

REFERENCE = "linux-6.18"
SCENARIOS = sorted(p.stem for p in BUNDLED.glob("*.yaml"))
ERAS = [d for d in DESIGNS if d != REFERENCE]
#: a commit id as docs/history.md cites them: 12 hex digits or more
COMMIT = re.compile(r"\b[0-9a-f]{12,40}\b")


def differs(design: str) -> dict[str, tuple[str, str]]:
    return getattr(importlib.import_module(f"rmapcheck.designs.{DESIGNS[design]}"), "SCENARIO_DIFFERS", {})


def needs(name: str) -> set[str]:
    """The switches scenario ``name``'s steps need on (those its header does not set itself)."""
    s = load_scenario(str(BUNDLED / f"{name}.yaml"))
    out = set()
    if uses_ksm(s):
        out.add("CONFIG_KSM")
    if any(op.kind in ("migrate", "migrate_start") for op in s.ops):
        out.add("CONFIG_MIGRATION")
    return out - {k for k, _v in s.settings.config}


@cache
def outcome(name: str, design: str) -> tuple[tuple, tuple]:
    """(each step's observation, the findings as (step, property)) of scenario ``name`` on ``design``.

    Cached: linux-6.18's outcome of each scenario is computed once per session.
    """
    s = load_scenario(str(BUNDLED / f"{name}.yaml"))
    seen, found = [], []
    for i, _op, out in judged_run(s, design):
        seen.append(out.result if out.fatal else repr(model_observation(out.state.k, s, out.result).as_dict()))
        found.extend((i, prop) for prop, _fn, _msg, _err in out.findings)
    return tuple(seen), tuple(found)


def test_declarations_name_bundled_scenarios_and_cite_commits():
    kinds = {"maps"} | {p.name for p in ALWAYS}
    for design in ERAS:
        for name, decl in differs(design).items():
            assert name in SCENARIOS, f"{design}: SCENARIO_DIFFERS names {name!r}, not a bundled scenario"
            assert isinstance(decl, tuple) and len(decl) == 2, f"{design}: {name}: (what, reason)"
            what, reason = decl
            assert what in kinds, f"{design}: {name}: {what!r} is neither 'maps' nor a property"
            assert COMMIT.search(reason), f"{design}: {name}: the reason cites no commit: {reason!r}"


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("design", ERAS)
def test_design_gives_the_outcome_of_its_era(design, name):
    config = load_design(design).config
    off = sorted(k for k in needs(name) if not config.get(k, True))
    if off:
        pytest.skip(f"{design} is built without {', '.join(off)}, which {name} needs")
    try:
        got = outcome(name, design)
    except DesignError as e:
        pytest.skip(f"{name} cannot run on {design}: {e}")
    want = outcome(name, REFERENCE)
    decl = differs(design).get(name)
    if decl is None:
        assert got[1] == want[1], f"{name}: findings on {design} {got[1]}, on {REFERENCE} {want[1]}"
        assert got[0] == want[0], f"{name}: the observations on {design} differ from {REFERENCE}'s"
        return
    what, reason = decl
    if what == "maps":
        assert got[0] != want[0], f"{name}: declared to differ in maps on {design} ({reason}), but it does not"
    else:
        assert what in {p for _i, p in got[1]}, f"{name}: no {what} on {design} ({reason}); found {got[1]}"
        assert what not in {p for _i, p in want[1]}, f"{name}: {REFERENCE} also gives {what}"
