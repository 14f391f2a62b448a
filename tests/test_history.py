"""``rmapcheck history``: the catalog's fast rows reproduced, and the command's table, JSON, exit codes and bad input.

The fast rows run through the command's own code path (:func:`run_history`
over :func:`history_rows`), each side as ``rmapcheck check`` runs the row's
arguments. The slower rows run in ``make bench`` (``history_bugs_found``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import types

import pytest
from test_interrupt import interrupt, start, wait_for

from rmapcheck.check.catalog import CatalogError, Row, catalog_rows, select_rows
from rmapcheck.check.checker import Stop
from rmapcheck.commands import history
from rmapcheck.commands.history import history_rows, run_history, table_lines
from rmapcheck.designs import DESIGNS

FAST = [r for r in catalog_rows() if r.fast]


def rmapcheck(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1", TERM="dumb")
    return subprocess.run([sys.executable, "-m", "rmapcheck", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_the_catalog_has_rows_and_fast_ones():
    rows = catalog_rows()
    assert {"B0", "B1", "B4"} <= {r.bug for r in rows}
    assert FAST


@pytest.mark.parametrize("row", FAST, ids=lambda r: f"{r.bug}-{r.design}-{'-'.join(r.args)}")
def test_fast_row_is_reproduced(row):
    selected = [(r, p) for r, p in history_rows((row.bug,), fast=True) if r == row]
    assert len(selected) == 1
    (rr,), _seconds = run_history(selected)
    assert rr.reproduced, (rr.status, rr.buggy, rr.fixed)
    assert rr.finding["property"] == row.property
    assert rr.fixed.design == row.fixed and rr.buggy.design == row.design
    assert rr.buggy.bounds == rr.fixed.bounds


def test_every_row_names_a_documented_bug_and_registered_designs():
    text = open(os.path.join(os.path.dirname(__file__), "..", "docs", "history.md")).read()
    for r in catalog_rows():
        assert r.design in DESIGNS and r.fixed in DESIGNS
        if re.fullmatch(r"B\d+", r.bug):
            assert f"### {r.bug}." in text, r.bug


def test_table_and_exit_status_of_a_small_selection():
    p = rmapcheck("history", "--bug", "b1", "--no-progress")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:4] == ["bug", "buggy", "design", "fixed"]
    row = lines[2].split()
    assert row[:3] == ["B1", "linux-2.6.36-seed-0526", "linux-2.6.36"]
    assert row[3] == "leak" and row[-1] == "reproduced"
    assert "1 of 1 rows reproduced" in p.stdout
    assert "B1: " in p.stdout and "  bounds: 1 process, 1 region" in p.stdout
    assert p.stderr == ""


def test_json_of_a_small_selection():
    p = rmapcheck("history", "--bug", "B1", "--bug", "B0", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["selected"] == len(d["rows"]) == d["reproduced"] == len([r for r in catalog_rows()
                                                                       if r.bug in ("B0", "B1")])
    assert not d["interrupted"]
    for r in d["rows"]:
        assert r["reproduced"] and r["status"] == "reproduced"
        assert r["found"]["property"] == r["property"]
        assert r["buggy_side"]["design"] == r["design"] and r["fixed_side"]["design"] == r["fixed"]
        assert r["fixed_side"]["findings"] == [] and r["fixed_side"]["complete"]


@pytest.mark.parametrize("args, words", [
    (("--bug", "B99"), "--bug B99: no such row in the catalog"),
    (("--timeout", "-1"), "--timeout must be a positive number"),
    (("--bug",), "--bug"),
])
def test_bad_input_is_one_line(args, words):
    p = rmapcheck("history", *args)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert len(p.stderr.splitlines()) == 1 and words in p.stderr, p.stderr


def _fake_rows(monkeypatch, rows):
    monkeypatch.setattr(history, "catalog_rows", lambda: rows)


def test_a_row_not_reproduced_is_a_difference(monkeypatch, capsys):
    from rmapcheck.cli import run_cli

    # linux-2.6.36 has no B1 leak; linux-2.6.36-seed-0526 as its own "fix" is not clean
    rows = [Row("X1", "not found", "linux-2.6.36", "linux-6.18", ("--phase", "reuse"), "leak"),
            Row("X2", "fix not clean", "linux-2.6.36-seed-0526", "linux-2.6.36-seed-0526", ("--phase", "reuse"),
                "leak"),
            Row("X3", "reproduced", "linux-2.6.36-seed-0526", "linux-2.6.36", ("--phase", "reuse"), "leak")]
    _fake_rows(monkeypatch, rows)
    assert run_cli(["history", "--no-progress", "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    got = {r["bug"]: r["status"] for r in d["rows"]}
    assert got == {"X1": "leak not found", "X2": "fix not clean", "X3": "reproduced"}
    assert d["reproduced"] == 1 and d["selected"] == 3


def test_a_row_whose_args_are_not_check_options_is_bad_input(monkeypatch, capsys):
    from rmapcheck.cli import run_cli

    _fake_rows(monkeypatch, [Row("X1", "t", "linux-2.6.36", "linux-6.18", ("--frobnicate",), "leak")])
    assert run_cli(["history"]) == 2
    err = capsys.readouterr().err
    assert "X1 (linux-2.6.36): args --frobnicate" in err and "frobnicate" in err


@pytest.mark.parametrize("row, words", [
    ({"bug": "B1", "title": "t", "fixed": "linux-2.6.36", "args": ("--phase", "reuse")}, "no 'property'"),
    ({"bug": "B1", "title": "t", "fixed": "linux-9", "args": (), "property": "leak"}, "not a registered design"),
    ({"bug": "B1", "title": "t", "fixed": "linux-2.6.36", "args": ["--phase"], "property": "leak"},
     "'args' must be a tuple"),
    ({"bug": "B1", "title": "t", "fixed": "linux-2.6.36", "args": (), "property": "leaks"}, "not a property"),
    ({"bug": "B1", "title": "t", "fixed": "linux-2.6.36", "args": ("--design", "x"), "property": "leak"},
     "name no design"),
    ({"bug": "B1", "title": "t", "fixed": "linux-2.6.36", "args": (), "property": "leak", "fastt": True},
     "unknown key 'fastt'"),
])
def test_malformed_history_rows(monkeypatch, row, words):
    mod = types.ModuleType("rmapcheck.designs.fake_history")
    mod.HISTORY = (row,)
    monkeypatch.setitem(sys.modules, "rmapcheck.designs.fake_history", mod)
    with pytest.raises(CatalogError) as e:
        catalog_rows({"linux-fake": "fake_history"})
    assert "fake_history.py: HISTORY[0]" in str(e.value) and words in str(e.value)
    assert "\n" not in str(e.value)


def test_selection_and_order():
    rows = catalog_rows()
    labels = [r.bug for r in rows]
    numbered = [int(b[1:]) for b in labels if re.fullmatch(r"B\d+", b)]
    assert numbered == sorted(numbered)
    assert [r.bug for r in select_rows(rows, ("b4",))] == ["B4"]
    assert all(r.fast for r in select_rows(rows, (), fast=True))
    with pytest.raises(CatalogError):
        select_rows(rows, ("B99",))


def test_stop_ends_with_the_rows_so_far():
    stop = Stop()

    def done(rr):
        stop.signum = signal.SIGINT

    selected = history_rows(("B0",))
    assert len(selected) >= 2
    results, seconds = run_history(selected, stop=stop, done=done)
    assert len(results) == 1 and results[0].reproduced
    text = "\n".join(table_lines(results, seconds, len(selected)))
    assert f"1 of {len(selected)} rows reproduced" in text and "interrupted after 1 rows" in text


def test_ctrl_c_prints_the_partial_table(tmp_path):
    total = len(select_rows(catalog_rows(), ("B0", "B4")))
    p = start(["history", "--bug", "B0", "--bug", "B4", "--progress"], tmp_path)
    wait_for(p, lambda seen: b"reproduced" in seen, "row reproduced")
    status, text, err = interrupt(p, signal.SIGINT)
    assert "Traceback" not in err
    assert text.splitlines()[0].startswith("bug ")
    assert status == 128 + signal.SIGINT, (status, text)
    assert re.search(rf"^\d+ of {total} rows reproduced .*; interrupted after \d+ rows$", text, re.M), text


def test_a_sometimes_row_is_found_by_a_complete_search_that_never_reaches_it():
    from rmapcheck.check.catalog import RowResult, SideResult
    from rmapcheck.check.properties import SOMETIMES

    prop = SOMETIMES[0].name
    row = Row("X5", "t", "linux-2.6.36", "linux-6.18", (), prop)

    def side(design, reached, complete=True, findings=()):
        return SideResult(design, "bfs", "b", list(findings), 10, 20, 0.1, complete, {prop: reached})

    assert RowResult(row, side("linux-2.6.36", False), side("linux-6.18", True)).reproduced
    # a cut search proves nothing about what it did not reach
    assert RowResult(row, side("linux-2.6.36", False, complete=False), side("linux-6.18", True)).status \
        == f"{prop} not found"
    # the fix must reach it
    assert RowResult(row, side("linux-2.6.36", False), side("linux-6.18", False)).status == "fix not clean"
    assert not RowResult(row, side("linux-2.6.36", True), side("linux-6.18", True)).reproduced
    lines = table_lines([RowResult(row, side("linux-2.6.36", False), side("linux-6.18", False))], 0.2, 1)
    assert f"{prop} never reached" in lines[2]
