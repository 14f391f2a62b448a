"""Malformed input, fuzzed and by hand: every status is 0, 1 or 2, never a traceback, never a hang.

The fuzz tests draw scenario files and traces (structured and byte-level
mutations, :mod:`fuzzing`) and run them through the command's entry point in
this process; ``make fuzz N=...`` runs N of them at random. The reproducers of
issue 11 follow, each with the status and the error line it must give.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzzing
from fuzzing import (
    SCENARIO_TEXTS, byte_mutations, fuzz_settings, invoke, outcome, scenario_texts, trace_seeds, trace_texts,
    write_case,
)

# One directory for every case of the module: Hypothesis runs many cases per test.
_DIR = Path(tempfile.mkdtemp(prefix="rmapcheck-fuzz-"))


@pytest.fixture(scope="module", autouse=True)
def _crash_reports_and_figures(tmp_path_factory):
    # Crash reports (status 3, which would fail the test) go to a temporary
    # cache; the figures are printed at the end (seen with pytest -s).
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()
    print("\n" + fuzzing.summary())


@fuzz_settings()
@given(data=scenario_texts(), quiet=st.booleans())
def test_fuzz_run_structured(data, quiet):
    path = write_case(_DIR, "s.yaml", data)
    outcome("run", *(["--quiet"] if quiet else []), path)


@fuzz_settings()
@given(data=byte_mutations(SCENARIO_TEXTS), quiet=st.booleans())
def test_fuzz_run_bytes(data, quiet):
    path = write_case(_DIR, "b.yaml", data)
    outcome("run", *(["--quiet"] if quiet else []), path)


@fuzz_settings()
@given(data=trace_texts(), quiet=st.booleans())
def test_fuzz_replay_structured(data, quiet):
    path = write_case(_DIR, "t.json", data)
    outcome("replay", *(["--quiet"] if quiet else []), path)


@fuzz_settings()
@given(data=st.deferred(lambda: byte_mutations(trace_seeds())), quiet=st.booleans())
def test_fuzz_replay_bytes(data, quiet):
    path = write_case(_DIR, "u.json", data)
    outcome("replay", *(["--quiet"] if quiet else []), path)


# --- the reproducers of issue 11 ----------------------------------------------------

HEAD = "regions:\n  A: 4\n  B: 2\nsteps:\n  - mmap P0 A rw\n"

#: scenario text -> (line named, words of the error); every one is status 2
RUN_CASES = {
    "yaml-nested-500": ("steps: " + "[" * 500 + "]" * 500 + "\n", 1, "nested more than 32 deep"),
    "yaml-mapping-nested-500": ("steps: []\nregions: " + "{a: " * 500 + "1" + "}" * 500 + "\n", 2,
                                "nested more than 32 deep"),
    "ksm-scan-superscript": (HEAD + "  - ksm_scan ²\n", 6, "bad number of full scans '²'"),
    "ksm-scan-arabic-indic": (HEAD + "  - ksm_scan ٣\n", 6, "bad number of full scans '٣'"),
    "mremap-superscript": (HEAD + "  - mremap P0 A[0:2] ³\n", 6, "bad mremap target '³'"),
    "digits-5000-pages": ("regions:\n  A: " + "9" * 5000 + "\nsteps: []\n", 2, "more than 20 digits"),
    "digits-5000-at": ("regions:\n  A: {pages: 1, at: " + "9" * 5000 + "}\nsteps: []\n", 2,
                       "more than 20 digits"),
    "digits-5000-value": (HEAD + "  - write P0 A[0] " + "9" * 5000 + "\n", 6, "more than 20 digits"),
    "digits-5000-page": (HEAD + "  - write P0 A[" + "9" * 5000 + "] 1\n", 6, "more than 20 digits"),
    "digits-5000-ksm-scan": (HEAD + "  - ksm_scan " + "9" * 5000 + "\n", 6, "more than 20 digits"),
    "digits-5000-mremap": (HEAD + "  - mremap P0 A[0:2] " + "9" * 5000 + "\n", 6, "more than 20 digits"),
    "digits-5000-result": (HEAD + "  - read P0 A[0] => " + "9" * 5000 + "\n", 6, "more than 20 digits"),
    "ksm-scan-billion": (HEAD + "  - ksm_scan 1000000000\n", 6, "ksm_scan: expected 1 to 100"),
    "process-name-100000": (HEAD + "  - mmap " + "P" * 100_000 + " B rw\n", 6,
                            "is longer than 32 characters"),
    "region-name-1000": ("regions:\n  " + "A" * 1000 + ": 1\nsteps: []\n", 2,
                           "is longer than 32 characters"),
    "prot-w": (HEAD + "  - mmap P0 B w\n", 6, "unknown PROT 'w'; expected one of none, r, rw, rx, rwx"),
    "yaml11-sexagesimal": ("regions:\n  A: 1:30\nsteps: []\n", 2, "region A: expected a page count"),
    "yaml11-hex": ("regions:\n  A: 0x10\nsteps: []\n", 2, "region A: expected a page count"),
    "yaml11-underscore": ("regions:\n  A: 1_0\nsteps: []\n", 2, "region A: expected a page count"),
    "yaml11-octal": ("regions:\n  A: {pages: 2, at: 010}\nsteps: []\n", 2, "'at' of region A must be a page number"),
    "yaml-alias": ("regions: &r\n  A: 1\nsteps: *r\n", 3, "anchors and aliases are not supported"),
    # 256 pages times 4 * 100 scans, 11 times, is past 2**20
    "too-much-work": ("regions:\n  A: 256\nsteps:\n" + "  - ksm_scan 100\n" * 20, 14, "too much work"),
    "too-many-steps": ("regions:\n  A: 1\nsteps:\n" + "  - ksm_settle\n" * 4097, 4100, "more than 4096 steps"),
    "too-many-processes": ("regions:\n  A: 1\nsteps:\n" + "".join(f"  - fork P0 Q{i}\n" for i in range(40)),
                           35, "more than 32 processes alive at once"),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_run_reproducer(tmp_path, case):
    text, line, words = RUN_CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    o = outcome("run", "--quiet", str(path))
    assert o.status == 2, o.err
    assert o.err.startswith(f"rmapcheck: {path}:{line}: "), o.err
    assert words in o.err


def test_run_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"regions:\n  A: 1\nsteps:\n  - mmap P0 A rw # \xe9t\xe9\n")
    o = outcome("run", str(path))
    assert o.status == 2
    assert o.err.startswith(f"rmapcheck: {path}:4: not UTF-8")


def _trace(tmp_path: Path, edit) -> str:
    d = json.loads(trace_seeds()[0])
    edit(d)
    path = tmp_path / "T.json"
    path.write_text(json.dumps(d))
    return str(path)


def _mmap_step(d: dict) -> dict:
    return next(s for s in d["steps"] if s["kind"] == "mmap")


#: a change to a real trace -> the words of the error; every one is status 2
REPLAY_CASES = {
    "step-without-proc": (lambda d: d["steps"][1].pop("proc"), "step 2: no field 'proc'"),
    "design-list": (lambda d: d.update(design=["x"]), "'design' must be a string"),
    "region-10e12-pages": (lambda d: d["regions"]["A"].update(pages=10**12), "ends past the arena's 65536 pages"),
    "region-at-2e63": (lambda d: d["regions"]["A"].update(at=2**63), "ends past the arena's 65536 pages"),
    "region-at-negative": (lambda d: d["regions"]["A"].update(at=-1), "'at' of region A must be at least 0"),
    "proc-empty": (lambda d: _mmap_step(d).update(proc=""), "bad process name ''"),
    "prot-upper-case": (lambda d: _mmap_step(d).update(prot="RW"), "unknown PROT 'RW'"),
    "page-bool": (lambda d: _mmap_step(d).update(page=True), "field 'page' must be an integer"),
    "bounds-regions-27": (lambda d: d["bounds"].update(regions=27), "regions must be between 1 and 26, not 27"),
    "bounds-unknown": (lambda d: d["bounds"].update(zzz=1), "unknown bound 'zzz'"),
    "unknown-key": (lambda d: d.update(zzz=1), "unknown key 'zzz'"),
    "fork-existing": (lambda d: d["steps"].insert(0, {"kind": "fork", "proc": "P0", "child": "P0"}),
                      "step 1: fork: process P0 already exists"),
    "flag-unknown": (lambda d: _mmap_step(d).update(flags=["fail=nowhere"]), "unknown allocation site 'nowhere' in 'fail=nowhere'"),
    "ksm-scan-billion": (lambda d: d["steps"].append({"kind": "ksm_scan", "proc": "", "value": 10**9}),
                         "bad value 1000000000 for ksm_scan"),
}


@pytest.mark.parametrize("case", sorted(REPLAY_CASES))
def test_replay_reproducer(tmp_path, case):
    edit, words = REPLAY_CASES[case]
    path = _trace(tmp_path, edit)
    o = outcome("replay", path)
    assert o.status == 2, o.err
    assert o.err.startswith(f"rmapcheck: {path}: "), o.err
    assert words in o.err, o.err


@pytest.mark.parametrize(("data", "words"), [
    (b"\xff\xfe{\"format\": 1}", ":1: not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested more than 32 deep"),
    (b"{\"a\": " + b"9" * 5000 + b"}", "a number of more than 20 digits"),
    (b"{\"a\": NaN}", "not an integer"),
    (b"", ":1: not JSON"),
])
def test_replay_unreadable(tmp_path, data, words):
    path = tmp_path / "T.json"
    path.write_bytes(data)
    o = outcome("replay", str(path))
    assert o.status == 2
    assert o.err.startswith(f"rmapcheck: {path}") and words in o.err, o.err


def test_replay_bounds_regions_9_runs(tmp_path):
    # Nine regions are within bounds now (A to I): the trace replays as recorded.
    path = _trace(tmp_path, lambda d: d["bounds"].update(regions=9))
    assert outcome("replay", "--quiet", path).status == 0


def test_check_regions_9(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    o = outcome("check", "--design", "linux-6.18", "--regions", "9", "--pages", "1", "--depth", "1", "--json")
    assert o.status == 0, o.err
    assert json.loads(o.out)["bounds"]["regions"] == 9


@pytest.mark.parametrize(("args", "words"), [
    (["--regions", "27"], "--regions must be between 1 and 26, not 27"),
    (["--processes", "0"], "--processes must be between 1 and 16, not 0"),
    (["--ops", "write,frob"], "unknown operation 'frob' in --ops"),
    (["--ops", ","], "--ops must name at least one operation"),
    (["--timeout", "nan"], "--timeout must be a positive number of seconds"),
    (["--timeout", "-1"], "--timeout must be a positive number of seconds"),
    (["--runs", "0"], "--runs"),
    (["--depth", "9" * 5000], "--depth"),
    (["--preset", "x" * 10_000], "unknown preset"),
])
def test_check_bad_bounds(args, words):
    o = outcome("check", "--design", "linux-6.18", *args)
    assert o.status == 2
    assert words in o.err, o.err


def test_internal_error_is_status_3_with_a_crash_report(tmp_path, monkeypatch):
    # A bug of the tool (here: the observation of a step raising) is status 3:
    # one line with the path of a report that holds the traceback. (A Python
    # exception inside a kernel function is the checker's model-error
    # finding, status 1, as a design file's typo must be.)
    from rmapcheck.commands import run

    def broken(k, scenario, result):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(run, "model_observation", broken)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    o = invoke("run", "fork-cow-child")
    assert o.status == 3
    lines = o.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in o.err
    m = re.fullmatch(r"rmapcheck: internal error: ZeroDivisionError: division by zero; crash report: (\S+)", lines[0])
    assert m, lines[0]
    report = Path(m.group(1))
    assert report.parent == tmp_path / "cache" / "rmapcheck" / "crashes"
    text = report.read_text()
    assert "command: rmapcheck run fork-cow-child" in text
    assert "Traceback (most recent call last)" in text and "in broken" in text
