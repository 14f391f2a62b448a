"""The planted-defect corpus (``tests/planted/``) is found by the default's phases.

Each design file there is linux-6.18 with one planted bug, written as a user
writes a design (``BASE``, ``REPLACE``, public names only), and
``tests/planted/corpus.py`` says which property it violates and which phase
of the default portfolio (``check/portfolio.py``) finds it. Each defect is
run through that phase alone, breadth-first up to the first violation, as
``rmapcheck check --design FILE`` runs it: the planted property must be
among the findings of the first violating step (a bug's first symptom may
come with the invariant it breaks there), and the saved trace must replay to
the same finding.

``deep_*``: breadth-first search reports a shortest trace, and it is eight
actions or more after the empty start, so every state within seven actions
was checked and found clean on the way. ``persistent_*``: the trace fails an
allocation on every attempt from the N-th on; the same trace with any single
attempt failing instead (what ``--fault-mode first`` and ``nth`` inject) is
clean. That every bound set of those modes is clean, and the depth-7 searches
on their own, are ``make bench``'s ``planted_*`` figures (docs/checker.md,
"Planted defects").
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from rmapcheck.check.portfolio import PHASES, run_portfolio
from rmapcheck.check.properties import ALWAYS
from rmapcheck.check.trace import load_trace, replay, save_finding
from rmapcheck.designs import load_design
from rmapcheck.scenario.ops import FAIL_FLAG, fail_flag, parse_fail_flag

PLANTED = Path(__file__).parent / "planted"
_spec = importlib.util.spec_from_file_location("planted_corpus", PLANTED / "corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)


def _found(name, table):
    # The phase that covers the defect, run alone up to its first violation.
    prop, phase = table[name]
    pres = run_portfolio(str(PLANTED / name), phases=tuple(p for p in PHASES if p.name == phase), first=True)
    (pr,) = pres.phases
    assert pr.phase.name == phase and pres.verdict == "violation"
    mine = [f for _pr, f in pres.findings if f.property == prop]
    assert mine, [(f.property, f.function, f.message) for _pr, f in pres.findings]
    return pr, mine[0]


def _replays(pr, f, tmp_path):
    t = load_trace(str(save_finding(tmp_path, pr.model, f)))
    again, _state = replay(t)
    assert again is not None and (again.property, again.function) == (f.property, f.function)
    assert [op.text() for op in again.trace] == [op.text() for op in f.trace]


def test_the_corpus_plants_every_property():
    names = {p.name for p in ALWAYS}
    assert {prop for prop, _phase in corpus.DEEP.values()} == names
    assert {prop for prop, _phase in corpus.PERSISTENT.values()} == names
    for table, kind in ((corpus.DEEP, "deep"), (corpus.PERSISTENT, "persistent")):
        for name, (prop, phase) in table.items():
            assert name == f"{kind}_{prop.replace('-', '_')}.py"
            assert phase in {p.name for p in PHASES}
    files = {p.name for p in PLANTED.glob("*.py")} - {"corpus.py"}
    assert files == set(corpus.DEEP) | set(corpus.PERSISTENT)


@pytest.mark.parametrize("name", sorted([*corpus.DEEP, *corpus.PERSISTENT]))
def test_each_defect_is_a_users_design_file(name):
    # BASE and REPLACE over linux-6.18, the model's public names only
    d = load_design(str(PLANTED / name))
    assert d.base == "linux-6.18"
    tree = ast.parse((PLANTED / name).read_text())
    assert ast.get_docstring(tree)
    private = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("_")]
    private += [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names
                if a.name.startswith("_")]
    assert private == []


@pytest.mark.parametrize("name", sorted(corpus.DEEP))
def test_a_deep_defect_is_found_eight_actions_from_the_empty_start(name, tmp_path):
    pr, f = _found(name, corpus.DEEP)
    assert not pr.model.bounds.forked and f.setup == len(pr.model.setup)
    # breadth-first: a shortest trace, so nothing within seven actions violates
    assert 8 <= f.trace_length <= pr.model.bounds.depth
    _replays(pr, f, tmp_path)


def _single_attempt_variants(op):
    # The step with its persistent failure turned into each failure of one
    # attempt (fault modes first and nth) up to two attempts beyond it, and
    # into no failure.
    flag = next(fl for fl in op.flags if fl.startswith(FAIL_FLAG))
    site, attempt, persistent = parse_fail_flag(flag)
    assert persistent, flag
    rest = op.flags - {flag}
    yield replace(op, flags=rest)
    for at in range(1, attempt + 3):
        yield replace(op, flags=rest | {fail_flag(site, at)})


@pytest.mark.parametrize("name", sorted(corpus.PERSISTENT))
def test_a_persistent_defect_is_found_only_with_a_persistent_failure(name, tmp_path):
    pr, f = _found(name, corpus.PERSISTENT)
    steps = f.trace[f.setup:]
    failing = [i for i, op in enumerate(steps) if any(fl.startswith(FAIL_FLAG) for fl in op.flags)]
    assert len(failing) == 1
    _replays(pr, f, tmp_path)
    m = pr.model
    for variant in _single_attempt_variants(steps[failing[0]]):
        r = m.init_state()
        found = []
        for op in [*steps[:failing[0]], variant, *steps[failing[0] + 1:]]:
            found += [(p, fn) for p, fn, _msg, _e in m.apply(r, op).findings]
        assert found == [], (variant.text(), found)
