"""C reproducers (``rmapcheck repro``): what they say, that they build, and that on the live kernel they see what the model predicts.

The live test builds the program of every bundled scenario the live runner
accepts and of the 2026 mremap trace with the system's ``cc`` (two at a
time), runs each as root, and compares its printed observation of every step
with the ``linux-6.18`` model's, as ``rmapcheck diff`` compares the live
runner's; KSM's knobs must be as they were afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fuzzing import invoke
from livekernel import requires_live

from rmapcheck.check.trace import load_trace
from rmapcheck.commands.common import BUNDLED, BUNDLED_TRACES
from rmapcheck.compare import run_model
from rmapcheck.live.repro import predicted_results, read_observations, repro_program
from rmapcheck.report.observation import describe_difference
from rmapcheck.report.provenance import provenance
from rmapcheck.scenario.ops import MODEL_ONLY_KINDS
from rmapcheck.scenario.parse import load_scenario

SCENARIOS = sorted(BUNDLED.glob("*.yaml"))
TRACES = sorted(BUNDLED_TRACES.glob("*.json"))
MREMAP = BUNDLED_TRACES / "linux-6.18.0-use-after-free-check_invariants-497a5d7d.json"
MIGRATION = BUNDLED_TRACES / "linux-2.6.36-pre-use-after-free-anon_vma_lock_read-1db99869.json"
CC = shutil.which("cc")
requires_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc) on this machine")


def _thp_always() -> bool:
    try:
        return "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


def _live_accepts(s) -> bool:
    # What LiveRunner runs: no model-only setting or step (and thp_system only without THP "always").
    return not s.settings.model_only() and not any(op.kind in MODEL_ONLY_KINDS for op in s.ops) \
        and not (_thp_always() and any("thp_system" in op.flags for op in s.ops))


def _program(path: Path) -> tuple[object, str]:
    if path.suffix == ".json":
        t = load_trace(str(path))
        s, design = t.scenario, t.design
    else:
        s, design = load_scenario(str(path)), "linux-6.18"
    return s, repro_program(s, provenance(path.suffix[1:], str(path), s, design, []))


def _compile(src: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CC, "-O0", "-Wall", "-Werror", "-o", str(src.with_suffix("")), str(src)],
                          capture_output=True, text=True, timeout=120)


def _build(paths: list[Path], where: Path) -> dict[Path, Path]:
    # Every program written, then compiled two at a time (the machine's cores).
    srcs = {}
    for p in paths:
        src = where / f"{p.stem}.c"
        src.write_text(_program(p)[1])
        srcs[p] = src
    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(srcs, pool.map(_compile, srcs.values())))
    failed = {p.name: r.stderr[-800:] for p, r in done.items() if r.returncode}
    assert not failed, failed
    return {p: src.with_suffix("") for p, src in srcs.items()}


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.stem)
def test_program_names_the_design_the_hash_and_the_bug(path, tmp_path):
    out = tmp_path / "repro.c"
    o = invoke("repro", path.stem, "-o", str(out))
    assert o.status == 0, o.err
    t = load_trace(str(path))
    head = out.read_text().split("*/", 1)[0]
    digest = path.name.rsplit("-", 1)[1][:8]  # the HASH of the saved trace's name
    assert f"sha256 {digest}" in head
    assert f"design: {t.design} (" in head
    assert f"The bug belongs to {t.design}" in head and t.property in head
    assert f"rmapcheck/traces/{path.name}" in head
    assert "linux-6.18, the kernel the live comparison checks, runs the same steps clean" in head


def test_model_only_steps_are_said_and_not_forced():
    s, text = _program(MIGRATION)
    starts = [i for i, op in enumerate(s.ops, 1) if op.kind == "migrate_start"]
    assert starts and "cannot" in text and "does not force" in text
    for i in starts:
        block = text.split(f"/* step {i} (line")[1].split("/* step")[0]
        assert "rc_race(0, 1," in block and "racer migrates the page" in block
    # stopped after the step where the model's migration ends, not before
    assert "rc_race_stop(0);" in text.split(f"/* step {len(s.ops)} (line")[1]
    for i, op in enumerate(s.ops, 1):
        if op.kind == "kthread":
            assert f'rc_step_model_only({i}, ' in text
    header = text.split("*/", 1)[0]
    assert "rcu_windows: false" in header


def test_results_are_checked_against_the_stated_or_predicted_ones():
    s, text = _program(BUNDLED / "fork-cow-child.yaml")
    predicted = predicted_results(s)
    for i, op in enumerate(s.ops, 1):
        call = text.split(f"\trc_step({i}, {op.line}, ")[1].split("\n")[0]
        want = op.expect if op.expect is not None else predicted[i - 1]
        assert call.split(", ")[1] == f'"{want}"'


def test_refuses_what_the_live_runner_refuses(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nregions:\n  A: 1\nsteps:\n  - ksm_set run 1\n")
    o = invoke("repro", str(bad))
    assert o.status == 2 and o.err.count("\n") == 1 and "scan on its own" in o.err
    o = invoke("repro", str(tmp_path / "none.json"))
    assert o.status == 2 and o.err.count("\n") == 1


@requires_cc
def test_trace_programs_compile(tmp_path):
    built = _build(TRACES, tmp_path)
    assert all(os.access(b, os.X_OK) for b in built.values())


@pytest.mark.live
@requires_live
@requires_cc
def test_reproducers_agree_with_the_model_on_the_live_kernel(tmp_path, capsys):
    from rmapcheck.live.ksm import KSM_DIR, LOCK_FD_ENV, SAVE_FILE, WRITABLE, exclusive, read_knob

    paths = [p for p in SCENARIOS if _live_accepts(load_scenario(str(p)))] + [MREMAP]
    assert len(paths) > 100
    t0 = time.perf_counter()
    built = _build(paths, tmp_path)
    t_build = time.perf_counter() - t0
    failures = []
    have = [k for k in WRITABLE if (KSM_DIR / k).exists()]
    t0 = time.perf_counter()
    with exclusive() as fd:
        before = {k: read_knob(k) for k in have}
        for path, exe in built.items():
            s = load_trace(str(path)).scenario if path.suffix == ".json" else load_scenario(str(path))
            env = dict(os.environ, **{LOCK_FD_ENV: str(fd)})
            r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, env=env, pass_fds=(fd,))
            live = read_observations(r.stdout)
            if r.returncode != 0 or len(live) != len(s.ops):
                failures.append(f"{path.name}: status {r.returncode}, {len(live)} of {len(s.ops)} steps: "
                                f"{(r.stderr or r.stdout)[-400:]}")
                continue
            for i, (m, lv) in enumerate(zip(run_model(s), live), 1):
                if not m.matches(lv):
                    failures.append(f"{path.name}: step {i} ({s.ops[i - 1].text()}): {describe_difference(m, lv)}; "
                                    f"counters model {m.counters} live {lv.counters}")
                    break
        after = {k: read_knob(k) for k in have}
    t_run = time.perf_counter() - t0
    assert not failures, "\n".join(failures)
    assert after == before
    assert not SAVE_FILE.exists()
    assert [pid for exe in built.values() for pid in _leftovers(exe.resolve())] == []
    with capsys.disabled():
        print(f"\n  repro: {len(built)} programs built in {t_build:.1f} s, run in {t_run:.1f} s")


def _leftovers(exe: Path) -> list[int]:
    # Processes still running the program (a worker or racer not reaped).
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.readlink(f"/proc/{entry.name}/exe") == str(exe):
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


@pytest.mark.live
@requires_live
@requires_cc
def test_sigterm_restores_the_knobs_and_reaps_every_worker(tmp_path):
    import select
    import signal

    from rmapcheck.live.ksm import KSM_DIR, LOCK_FD_ENV, SAVE_FILE, WRITABLE, exclusive, read_knob

    if not (KSM_DIR / "run").exists():
        pytest.skip("kernel without KSM (no /sys/kernel/mm/ksm)")
    scen = tmp_path / "long.yaml"
    scen.write_text("name: long\nregions:\n  A: 2\nsteps:\n  - mmap P0 A rw\n  - madvise P0 A mergeable\n"
                    "  - write P0 A 5\n  - fork P0 P1\n" + "  - ksm_scan 100\n" * 20)
    o = invoke("repro", str(scen), "-o", str(tmp_path / "long.c"))
    assert o.status == 0, o.err
    assert _compile(tmp_path / "long.c").returncode == 0
    exe = (tmp_path / "long").resolve()
    have = [k for k in WRITABLE if (KSM_DIR / k).exists()]
    with exclusive() as fd:
        before = {k: read_knob(k) for k in have}
        p = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, **{LOCK_FD_ENV: str(fd)}), pass_fds=(fd,))
        try:
            # Wait (bounded) until the scans have begun: the knobs are changed then.
            deadline = time.monotonic() + 30
            seen = ""
            while "step 5 " not in seen and time.monotonic() < deadline:
                if select.select([p.stdout], [], [], 1)[0]:
                    seen += p.stdout.readline()
            assert "step 5 " in seen, seen
            assert read_knob("sleep_millisecs") != before["sleep_millisecs"] or read_knob("run") == "0"
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        after = {k: read_knob(k) for k in have}
    assert p.returncode == -signal.SIGTERM
    assert after == before
    assert not SAVE_FILE.exists()
    assert _leftovers(exe) == []
