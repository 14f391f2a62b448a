"""The command line, driven in a subprocess as a user would.

Bad input is one line on stderr (naming the file and line where there is
one), a non-zero exit status and never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from livekernel import requires_live


def rmapcheck(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1", TERM="dumb")
    return subprocess.run(
        [sys.executable, "-m", "rmapcheck", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )


def one_error_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


GOOD = "regions:\n  A: 2\nsteps:\n  - mmap P0 A rw\n  - write P0 A[0] 1\n"

BAD = {
    # name: (file text, line the error names, words the message must contain)
    "malformed-yaml": ("regions:\n  A: 2\nsteps:\n  - mmap P0 A rw\n   - bad: [\n", 5, "YAML"),
    "unknown-operation": (GOOD + "  - frob P0 A\n", 6, "unknown operation 'frob'"),
    "unknown-process": (GOOD + "  - write P3 A[0] 1\n", 6, "P3"),
    "unknown-region": (GOOD + "  - write P0 Q[0] 1\n", 6, "unknown region 'Q'"),
    "page-out-of-range": (GOOD + "  - write P0 A[2] 1\n", 6, "out of range"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", ["run", "diff", "live"])
def test_bad_scenario_is_one_line_naming_file_and_line(tmp_path, case, command):
    text, line, words = BAD[case]
    f = tmp_path / f"{case}.yaml"
    f.write_text(text)
    err = one_error_line(rmapcheck(command, str(f)))
    assert f"{f}:{line}:" in err
    assert words in err


@pytest.mark.parametrize("command", ["run", "diff", "live"])
def test_missing_file(tmp_path, command):
    missing = tmp_path / "no-such-scenario.yaml"
    err = one_error_line(rmapcheck(command, str(missing)))
    assert str(missing) in err


@pytest.mark.parametrize("command", ["run", "diff"])
def test_unknown_design(tmp_path, command):
    f = tmp_path / "good.yaml"
    f.write_text(GOOD)
    err = one_error_line(rmapcheck(command, str(f), "--design", "linux-0.01"))
    assert "linux-0.01" in err


def test_refused_operation_without_expectation(tmp_path):
    f = tmp_path / "refused.yaml"
    f.write_text(GOOD + "  - mmap P0 A rw\n")
    p = rmapcheck("run", str(f))
    err = one_error_line(p)
    assert p.returncode == 1
    assert f"{f}:6:" in err
    assert "EEXIST" in err


def test_refused_operation_with_expectation_passes(tmp_path):
    f = tmp_path / "refused.yaml"
    f.write_text(GOOD + "  - mmap P0 A rw => EEXIST\n  - read P0 A[0] => 1\n")
    p = rmapcheck("run", str(f))
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""


def test_run_prints_address_map():
    p = rmapcheck("run", "fork-cow-mprotect-merge")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "final state after 15 steps (linux-6.18):" in out
    # The ruler and the rows of the address map, per process.
    for row in ("vma:", "prot:", "anon_vma:", "pages:"):
        assert any(line.startswith(row) for line in out.splitlines()), row
    assert any(line.split() == ["012345"] for line in out.splitlines())
    assert "num_active_vmas" in out


def test_help_lists_commands():
    p = rmapcheck("--help")
    assert p.returncode == 0
    for cmd in ("run", "live", "diff", "conform", "bench", "demo"):
        assert cmd in p.stdout


@pytest.mark.live
@requires_live
def test_diff_prints_agreement():
    p = rmapcheck("diff", "fork-cow-mprotect-merge")
    assert p.returncode == 0, p.stdout + p.stderr
    last = p.stdout.splitlines()[-1]
    assert last.endswith("fork-cow-mprotect-merge.yaml: model and live kernel agree on all 15 steps")


@pytest.mark.live
@requires_live
def test_conform_last_line(tmp_path):
    p = rmapcheck("conform", "-n", "3", "--save", str(tmp_path / "failures"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[-1] == "conform: 3 scenarios, 3 agree, 0 differ"


def test_run_help_has_the_address_map_legend():
    p = rmapcheck("run", "--help")
    assert p.returncode == 0
    for words in ("anon_vma:", "'z' the zero", "a letter per VMA", "ksm_stat"):
        assert words in p.stdout, words


def test_run_prints_ksm_counters_when_ksm_is_in_play():
    p = rmapcheck("run", "ksm-merge-two-pages")
    assert p.returncode == 0, p.stderr
    ksm = [line for line in p.stdout.splitlines() if line.startswith("ksm: ")]
    stat = [line for line in p.stdout.splitlines() if line.startswith("ksm_stat: P0 ")]
    # one per step and one after the final state
    assert len(ksm) == len(stat) == 9
    assert "pages_sharing 1" in ksm[-1]
    p = rmapcheck("run", "fork-cow-child")
    assert p.returncode == 0
    assert not any(line.startswith("ksm") for line in p.stdout.splitlines())


def test_run_json():
    import json

    from rmapcheck.commands.common import load

    p = rmapcheck("run", "--json", "ksm-merge-two-pages")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    s = load("ksm-merge-two-pages")
    assert (d["scenario"], d["side"], d["verdict"]) == ("ksm-merge-two-pages", "linux-6.18", "ok")
    assert [st["op"] for st in d["steps"]] == [op.text() for op in s.ops]
    last = d["steps"][-1]
    assert last["result"] == "42" and last["counters"]["pages_sharing"] == 1
    assert set(last["ksm_stat"]) == {"P0"} and last["frames"]["P0"] == [0, 0, 1]


def test_run_json_unexpected_result(tmp_path):
    import json

    f = tmp_path / "s.yaml"
    f.write_text(GOOD + "  - read P0 A[0] => 2\n  - write P0 A[1] 1\n")
    p = rmapcheck("run", "--json", str(f))
    assert p.returncode == 1
    d = json.loads(p.stdout)
    assert d["verdict"] == "unexpected" and len(d["steps"]) == 3
    assert d["error"] == f"{f}:6: read P0 A[0] => 2: got 1"
    assert "counters" not in d["steps"][0]
    assert one_error_line(p) == f"rmapcheck: {d['error']}"


@pytest.mark.live
@requires_live
def test_live_json_is_the_models():
    import json

    run = json.loads(rmapcheck("run", "--json", "poke-cow-readonly").stdout)
    p = rmapcheck("live", "--json", "poke-cow-readonly")
    assert p.returncode == 0, p.stderr
    live = json.loads(p.stdout)
    assert live["side"] == "live"
    assert live["steps"] == run["steps"]


def test_run_json_finding():
    import json

    p = rmapcheck("run", "--json", "anon-vma-double-reuse", "--design", "linux-6.18-degree")
    assert p.returncode == 1
    d = json.loads(p.stdout)
    assert d["verdict"] == "finding"
    f = d["finding"]
    # the checks between steps found it: every step up to it is observed
    assert len(d["steps"]) == f["step"]
    assert (f["property"], f["function"]) == ("invariant", "check_invariants")
