"""``rmapcheck check --design X`` without bounds: the default portfolio.

The whole portfolio takes a minute or two per design; its figures on every
design are in ``make bench`` (``default_*``). Here its phases run one at a
time or a few together: the phase about KSM finds B0 on linux-2.6.36-pre,
the two-region ``mremap`` phase finds the 2026 use-after-free on
linux-6.18.0, and the KSM phase is clean on linux-6.18. The command line prints every
bound set and lists the designs and presets in its help.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import designs_defects as dd
from rmapcheck.check.model import PRESETS
from rmapcheck.check.portfolio import PHASES, phases_for, run_portfolio
from rmapcheck.commands import check as check_command
from rmapcheck.designs import DESIGNS, get_design
from test_cli import rmapcheck


def _phases(*names):
    return tuple(p for p in PHASES if p.name in names)


def test_phases_follow_the_kernels_switches():
    names = lambda cfg: [p.name for p in phases_for(cfg)]  # noqa: E731
    cfg = get_design("linux-6.18")[1]
    assert names(cfg) == [p.name for p in PHASES]
    assert "ksm" not in names({**cfg, "CONFIG_KSM": False})
    assert "migration" not in names({**cfg, "CONFIG_MIGRATION": False})
    # every phase is different in what it explores
    assert len({p.bounds for p in PHASES}) == len(PHASES)


def test_b0_on_linux_2_6_36_pre_and_none_on_linux_6_18():
    phases = _phases("reuse", "ksm")
    pres = run_portfolio("linux-2.6.36-pre", phases=phases)
    assert [pr.phase.name for pr in pres.phases] == ["reuse", "ksm"] and pres.exhausted
    found = {(f.property, f.function, pr.phase.name) for pr, f in pres.findings}
    # the child's anon_vma outlives its root, freed at the exits: KSM's drop
    # then locks the freed root (the bad access is in down_write, called by
    # drop_anon_vma)
    assert ("use-after-free", "down_write", "ksm") in found, found
    (f,) = [f for pr, f in pres.findings if pr.phase.name == "ksm"]
    assert "drop_anon_vma" in f.error.chain
    clean = run_portfolio("linux-6.18", phases=phases)
    assert clean.verdict == "clean" and clean.exhausted


def test_the_2026_mremap_use_after_free_on_linux_6_18_0():
    # up to the first finding (linux-6.18 clean at the whole phase: make bench)
    pres = run_portfolio("linux-6.18.0", phases=_phases("mremap-fork"), first=True)
    (pr, f), = pres.findings
    assert (f.property, pr.phase.name, f.trace_length) == ("use-after-free", "mremap-fork", 4)
    assert [op.kind for op in f.trace[f.setup:]].count("mremap") == 3


def test_the_faults_phase_reaches_an_error_path_behind_a_retry(monkeypatch):
    # defect-error-path: anon_vma_clone()'s unwind forgets what it linked,
    # which only a failure of both attempts for one chain entry shows
    dd.register(monkeypatch, "defect-error-path")
    pres = run_portfolio("defect-error-path", phases=_phases("faults"), first=True)
    (pr, f), = pres.findings
    assert (f.property, pr.phase.name) == ("invariant", "faults")
    assert any(flag.endswith("*") for op in f.trace for flag in op.flags)


def test_findings_are_merged_keeping_the_shortest_trace():
    # the seed design's over-drop shows in both phases: once per property and
    # function, with the shorter trace
    pres = run_portfolio("linux-2.6.36-seed-0526", phases=_phases("reuse", "migration"))
    keys = [(f.property, f.function) for _pr, f in pres.findings]
    assert len(keys) == len(set(keys))
    both = {(f.property, f.function) for f in pres.phases[0].result.findings} & \
        {(f.property, f.function) for f in pres.phases[1].result.findings}
    assert both, "no finding in both phases: the merge is not tested"
    for _pr, f in pres.findings:
        assert f.trace_length == min(g.trace_length for pr in pres.phases for g in pr.result.findings
                                     if (g.property, g.function) == (f.property, f.function))


def test_a_used_up_budget_skips_the_phases_left():
    pres = run_portfolio("linux-6.18", budget=0.0, phases=_phases("reuse", "ksm"))
    assert pres.phases == [] and [n for n, _ in pres.skipped] == ["reuse", "ksm"]
    assert not pres.exhausted


@pytest.fixture
def few_phases(monkeypatch):
    monkeypatch.setattr(check_command, "PHASES", _phases("reuse", "ksm"))


def test_the_default_prints_every_bound_set(few_phases, tmp_path):
    out = CliRunner(mix_stderr=False).invoke(check_command.command,
                                             ["--design", "linux-2.6.36-pre", "--save-dir", str(tmp_path)])
    assert out.exit_code == 1, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("design linux-2.6.36-pre: violation (the default portfolio: 2 bound sets")
    for p in _phases("reuse", "ksm"):
        i = lines.index(next(ln for ln in lines if ln.startswith(f"  {p.name}: ")))
        assert lines[i + 1] == f"    bounds: {p.bounds.text()}"
    assert "found by ksm" in out.output and "BUG: KASAN: use-after-free in down_write" in out.output
    assert "<- drop_anon_vma <-" in out.output


def test_the_default_as_json_is_one_object_with_the_bound_sets(few_phases, tmp_path):
    out = CliRunner(mix_stderr=False).invoke(check_command.command, ["--design", "linux-2.6.36-pre", "--json",
                                                                     "--save-dir", str(tmp_path)])
    d = json.loads(out.output)
    assert d["strategy"] == "portfolio" and d["verdict"] == "violation"
    assert [ph["name"] for ph in d["phases"]] == ["reuse", "ksm"]
    assert d["phases"][1]["bounds"] == _phases("ksm")[0].bounds.as_dict()
    f = next(f for f in d["findings"] if f["function"] == "down_write" and "drop_anon_vma" in f["chain"])
    assert f["phase"] == "ksm" and (tmp_path / f["trace"].split("/")[-1]).exists()


def test_a_single_check_prints_its_bounds():
    p = rmapcheck("check", "--design", "linux-6.18", "--preset", "small")
    assert p.returncode == 0, p.stderr
    assert f"bounds: {PRESETS['small'].text()}" in p.stdout.splitlines()


def test_help_lists_designs_presets_and_phases():
    p = rmapcheck("check", "--help")
    assert p.returncode == 0
    text = p.stdout
    designs = text[text.index("Designs:"):text.index("Presets:")]
    presets = text[text.index("Presets:"):text.index("The default portfolio")]
    phases = text[text.index("The default portfolio"):text.index("Options:")]
    for section, names in ((designs, DESIGNS), (presets, PRESETS), (phases, [ph.name for ph in PHASES])):
        firsts = [ln.split()[0] for ln in section.splitlines()[1:] if ln.startswith("    ")]
        assert firsts == list(names) + (["PATH.py"] if names is DESIGNS else [])


def test_linux_6_18_is_clean_where_failures_meet_a_migration():
    # the phase of persistent_missed_rmap_walk.py (tests/planted/), whole
    pres = run_portfolio("linux-6.18", phases=_phases("migration-faults"))
    (pr,) = pres.phases
    assert pres.verdict == "clean" and pres.exhausted and pr.result.distinct > 1000
