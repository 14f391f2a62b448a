"""Saved counterexamples never overwrite each other, and each ``saved:`` line names its own trace."""

from __future__ import annotations

import re

from fuzzing import invoke

from rmapcheck.check.model import SEED_BOUNDS
from rmapcheck.check.trace import _trace_text, load_trace, save_finding
from rmapcheck.commands.check import run_check

_SAVED = re.compile(r"saved: (\S+) \(rmapcheck replay (\S+)\)$")


def _saved(out: str) -> list[tuple[str, str]]:
    # (design of the block, saved path) for every saved: line of `rmapcheck seed`
    design, rows = "", []
    for line in out.splitlines():
        if line.startswith("== "):
            design = line[3:].split(",")[0]
        m = _SAVED.match(line)
        if m:
            assert m.group(1) == m.group(2)
            rows.append((design, m.group(1)))
    return rows


def test_seed_saves_every_trace_in_a_file_of_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = invoke("seed", limit=600)
    assert first.status == 0, first.err
    rows = _saved(first.out)
    paths = [p for _, p in rows]
    # each trace as JSON and as a scenario (.yaml), one directory per path
    saved = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "rmapcheck-traces").rglob("*.json"))
    assert len(paths) == len(set(paths)) and sorted(paths) == saved
    for design, path in rows:
        t = load_trace(str(tmp_path / path))
        assert t.design == design
    texts = {p: (tmp_path / p).read_text() for p in paths}
    # Run again: the same traces, the same files, nothing else written.
    again = invoke("seed", limit=600)
    assert _saved(again.out) == rows
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "rmapcheck-traces").rglob("*.json")) \
        == saved
    assert all((tmp_path / p).read_text() == text for p, text in texts.items())


def test_a_file_of_other_text_is_never_overwritten(tmp_path):
    m, res = run_check("linux-2.6.36-pre", SEED_BOUNDS["ksm"])
    f = res.findings[0]
    path = save_finding(tmp_path, m, f)
    assert path.name.startswith(f"linux-2.6.36-pre-{f.property}-{f.function}-")
    assert save_finding(tmp_path, m, f) == path  # the same trace: the same file
    path.write_text("something else\n")
    other = save_finding(tmp_path, m, f)
    assert other.name == path.name[:-len(".json")] + "-2.json"
    assert path.read_text() == "something else\n"
    assert other.read_text() == _trace_text(m, f)
