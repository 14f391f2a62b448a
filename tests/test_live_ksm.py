"""KSM on the live kernel: the runner's KSM steps, observations and clean-up.

Expected values come from ``Documentation/admin-guide/mm/ksm.rst`` and
``mm/ksm.c``: a page is merged only in the second full scan that sees it
unchanged (the first records its checksum); ``pages_shared`` counts KSM
pages, ``pages_sharing`` the further mappings of them; the settings of
``/sys/kernel/mm/ksm`` are the machine's and must be left exactly as found.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from livekernel import requires_ksm

from rmapcheck.live.ksm import KSM_DIR, SAVE_FILE, LiveError, exclusive, read_knob
from rmapcheck.live.runner import STANDIN_ADDR, LiveRunner
from rmapcheck.scenario.ops import ARENA_BASE, Op, Region, Scenario


pytestmark = [pytest.mark.live, requires_ksm]

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(autouse=True)
def _ksm_to_ourselves():
    # Knobs read before and after a run must not see another test run's session.
    with exclusive() as fd:
        yield fd


def writable_knobs() -> dict[str, str]:
    """Every writable file of /sys/kernel/mm/ksm and its content."""
    out = {}
    for p in sorted(KSM_DIR.iterdir()):
        if p.stat().st_mode & 0o222:
            out[p.name] = p.read_text()
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def ksm_scenario(*ops: Op) -> Scenario:
    return Scenario("ksm", {"A": Region("A", 4, 0), "B": Region("B", 2, 5)}, list(ops))


MERGE_OPS = (
    Op("mmap", "P0", "A", 0, 4, "rw"),
    Op("madvise", "P0", "A", 0, 4, advice="mergeable"),
    Op("write", "P0", "A", 0, value=42),
    Op("write", "P0", "A", 1, value=42),
    Op("write", "P0", "A", 2, value=43),
)


def counters(obs) -> dict[str, int]:
    return dict(obs.counters)


def test_merge_needs_two_scans_and_counts() -> None:
    with LiveRunner(ksm_scenario(*MERGE_OPS)) as live:
        for op in MERGE_OPS:
            live.step(op)
        first = live.step(Op("ksm_scan", "", value=1))
        # The first pass only records checksums: three rmap_items, all volatile.
        assert dict(first.frames)["P0"] == (0, 1, 2, None, None, None, None)
        assert first.ksm == frozenset()
        assert counters(first) == {"ksm_zero_pages": 0, "pages_shared": 0, "pages_sharing": 0,
                                   "pages_unshared": 0, "pages_volatile": 3}
        second = live.step(Op("ksm_scan", "", value=1))
        assert dict(second.frames)["P0"] == (0, 0, 1, None, None, None, None)
        assert second.ksm == frozenset({0})
        assert counters(second) == {"ksm_zero_pages": 0, "pages_shared": 1, "pages_sharing": 1,
                                    "pages_unshared": 1, "pages_volatile": 0}
        assert dict(second.ksm_stat) == {"P0": (("ksm_merging_pages", 2), ("ksm_rmap_items", 3),
                                                ("ksm_zero_pages", 0))}
        assert live.ksm.passes == 2
        assert live.step(Op("read", "P0", "A", 1)).result == "42"


def test_pass_count_is_exact() -> None:
    # ksmd never runs a pass of its own: each scan step adds exactly its passes.
    with LiveRunner(ksm_scenario(*MERGE_OPS)) as live:
        for op in MERGE_OPS:
            live.step(op)
        for n in (1, 3, 2, 1):
            before = int(read_knob("full_scans"))
            live.step(Op("ksm_scan", "", value=n))
            assert int(read_knob("full_scans")) == before + n
            assert read_knob("run") == "0"
        before = int(read_knob("full_scans"))
        live.step(Op("ksm_settle", ""))
        assert int(read_knob("full_scans")) == before + 2
        time.sleep(0.02)
        assert int(read_knob("full_scans")) == before + 2


def test_reproducible_outcome() -> None:
    # The same scenario twice gives the same observations at every step.
    ops = [*MERGE_OPS, Op("ksm_scan", "", value=1), Op("fork", "P0", child="P1"),
           Op("write", "P1", "A", 3, value=43), Op("ksm_settle", ""),
           Op("write", "P0", "A", 0, value=7), Op("ksm_scan", "", value=1),
           Op("exit", "P1"), Op("ksm_settle", "")]
    runs = []
    for _ in range(3):
        with LiveRunner(ksm_scenario(*ops)) as live:
            runs.append([live.step(op) for op in ops])
    assert runs[0] == runs[1] == runs[2]


def test_plain_scenario_has_no_ksm_observables() -> None:
    ops = [Op("mmap", "P0", "A", 0, 4, "rw"), Op("write", "P0", "A", 0, value=1)]
    before = writable_knobs()
    with LiveRunner(ksm_scenario(*ops)) as live:
        obs = [live.step(op) for op in ops]
        assert live.ksm is None
    assert all(o.counters == () and o.ksm_stat == () for o in obs)
    assert writable_knobs() == before


def test_scenario_using_ksm_observes_counters_from_the_start() -> None:
    ops = [Op("mmap", "P0", "A", 0, 4, "rw"), Op("madvise", "P0", "A", 0, 4, advice="mergeable")]
    with LiveRunner(ksm_scenario(*ops)) as live:
        first = live.step(ops[0])
    assert counters(first) == dict.fromkeys(
        ("ksm_zero_pages", "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile"), 0)
    assert first.ksm_stat == (("P0", (("ksm_merging_pages", 0), ("ksm_rmap_items", 0),
                                      ("ksm_zero_pages", 0))),)


def test_prctl_counts_only_scenario_pages() -> None:
    # PR_SET_MEMORY_MERGE makes the interpreter's memory mergeable too; the
    # runner advises it unmergeable again, so the counters are exact.
    ops = [Op("mmap", "P0", "A", 0, 4, "rw"), Op("prctl", "P0", value=1),
           Op("write", "P0", "A", 0, value=5), Op("write", "P0", "A", 1, value=5),
           Op("fork", "P0", child="P1"), Op("mmap", "P1", "B", 0, 2, "rw"),
           Op("write", "P1", "B", 0, value=5)]
    with LiveRunner(ksm_scenario(*ops)) as live:
        for op in ops:
            assert live.step(op).result == "ok", op.text()
        obs = live.step(Op("ksm_settle", ""))
        for name, pid in live.pids.items():
            assert outside_arena_mergeable(pid) == [], name
    # One KSM page: P0's A[0], A[1] (shared with P1 by fork) and P1's B[0].
    assert counters(obs)["pages_shared"] == 1
    assert counters(obs)["pages_sharing"] == 4
    assert counters(obs)["pages_unshared"] == counters(obs)["pages_volatile"] == 0
    assert dict(obs.ksm_stat)["P0"] == (("ksm_merging_pages", 2), ("ksm_rmap_items", 2),
                                        ("ksm_zero_pages", 0))
    assert dict(obs.ksm_stat)["P1"] == (("ksm_merging_pages", 3), ("ksm_rmap_items", 3),
                                        ("ksm_zero_pages", 0))


def outside_arena_mergeable(pid: int) -> list[str]:
    """VMAs with VM_MERGEABLE (smaps ``mg``) outside the arena's tebibyte and the stand-in page."""
    out, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(" ", 1)[0]
            if "-" in first and ":" not in first:
                lo = int(first.split("-")[0], 16)
                inside = ARENA_BASE <= lo < ARENA_BASE + (1 << 40) or lo == STANDIN_ADDR
                cur = None if inside else first
            elif line.startswith("VmFlags") and " mg" in line and cur:
                out.append(cur)
    return out


def merge_any(pid: int) -> str:
    with open(f"/proc/{pid}/ksm_stat") as f:
        return dict(line.strip().split(": ") for line in f if ": " in line)["ksm_merge_any"]


def test_merge_any_survives_a_scan_without_arena_memory() -> None:
    # ksmd drops an mm without mergeable VMAs and clears MMF_VM_MERGE_ANY; the
    # worker's stand-in page (like a real process's own memory) prevents it.
    ops = [Op("prctl", "P0", value=1), Op("ksm_scan", "", value=1),
           Op("mmap", "P0", "A", 0, 2, "rw"), Op("write", "P0", "A", 0, value=3),
           Op("write", "P0", "A", 1, value=3), Op("ksm_settle", "")]
    with LiveRunner(ksm_scenario(*ops)) as live:
        for op in ops:
            obs = live.step(op)
        assert merge_any(live.pids["P0"]) == "yes"
    assert dict(obs.frames)["P0"][:2] == (0, 0)
    assert obs.ksm == frozenset({0})


def test_migrate_is_a_no_op_with_the_kernels_answer() -> None:
    ops = [Op("mmap", "P0", "A", 0, 4, "rw"), Op("write", "P0", "A", 0, value=1),
           Op("read", "P0", "A", 1)]
    with LiveRunner(ksm_scenario(*ops)) as live:
        before = [live.step(op) for op in ops][-1]
        moved = live.step(Op("migrate", "P0", "A", 0))
        assert moved.result == "ok"
        assert moved.frames == before.frames
        assert live.step(Op("migrate", "P0", "A", 1)).result == "EFAULT"  # zero page
        assert live.step(Op("migrate", "P0", "A", 2)).result == "ENOENT"  # not populated
        assert live.step(Op("migrate", "P0", "B", 0)).result == "EFAULT"  # no VMA


def test_ksm_set_results() -> None:
    with LiveRunner(ksm_scenario(*MERGE_OPS)) as live:
        for op in MERGE_OPS:
            live.step(op)
        assert live.step(Op("ksm_set", "", advice="max_page_sharing", value=3)).result == "ok"
        assert read_knob("max_page_sharing") == "3"
        live.step(Op("ksm_settle", ""))
        # Only while no KSM page exists (max_page_sharing_store()).
        busy = live.step(Op("ksm_set", "", advice="max_page_sharing", value=2))
        assert busy.result == "EBUSY"
        assert live.step(Op("ksm_set", "", advice="use_zero_pages", value=1)).result == "ok"
        assert busy.ksm == frozenset({0})
        unmerged = live.step(Op("ksm_set", "", advice="run", value=2))  # unmerge everything
        assert (unmerged.result, unmerged.ksm) == ("ok", frozenset())
        assert live.step(Op("ksm_set", "", advice="run", value=3)).result == "EINVAL"
        after = live.step(Op("ksm_settle", ""))  # scans again (run=1 while scanning)
        assert after.ksm == frozenset({0})
        with pytest.raises(LiveError, match="run 1"):
            live.step(Op("ksm_set", "", advice="run", value=1))
        with pytest.raises(LiveError, match="sleep_millisecs"):
            live.step(Op("ksm_set", "", advice="sleep_millisecs", value=1))


def _check_clean(before: dict[str, str], pids: tuple[int, ...]) -> None:
    assert writable_knobs() == before
    assert [p for p in pids if alive(p)] == []
    for name in ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
                 "ksm_zero_pages"):
        assert read_knob(name) == "0", name


def test_knobs_left_as_found(tmp_path: Path) -> None:
    before = writable_knobs()
    ops = [*MERGE_OPS, Op("ksm_set", "", advice="use_zero_pages", value=1),
           Op("ksm_set", "", advice="smart_scan", value=1), Op("prctl", "P0", value=1),
           Op("fork", "P0", child="P1"), Op("ksm_settle", ""), Op("exit", "P0")]
    with LiveRunner(ksm_scenario(*ops)) as live:
        for op in ops:
            live.step(op)
        assert read_knob("use_zero_pages") == "1"
        assert SAVE_FILE.exists()
        pids = live.started_pids
    assert not SAVE_FILE.exists()
    _check_clean(before, pids)


def test_knobs_left_as_found_after_error(tmp_path: Path) -> None:
    before = writable_knobs()
    with pytest.raises(RuntimeError, match="boom"):
        with LiveRunner(ksm_scenario(*MERGE_OPS)) as live:
            for op in MERGE_OPS:
                live.step(op)
            live.step(Op("ksm_set", "", advice="max_page_sharing", value=2))
            live.step(Op("ksm_settle", ""))
            pids = live.started_pids
            raise RuntimeError("boom")
    _check_clean(before, pids)
    with pytest.raises(LiveError, match="region"):
        with LiveRunner(ksm_scenario(*MERGE_OPS)) as live:
            live.step(MERGE_OPS[0])
            live.step(Op("ksm_scan", "", value=1))
            pids = live.started_pids
            live.step(Op("write", "P0", "Z", 0, value=1))
    _check_clean(before, pids)


def test_knobs_left_as_found_after_sigterm(tmp_path: Path, _ksm_to_ourselves: int) -> None:
    before = writable_knobs()
    save = SAVE_FILE
    script = textwrap.dedent("""
        import json, os, signal
        from rmapcheck.live.runner import STANDIN_ADDR, LiveRunner
        from rmapcheck.scenario.ops import Op, Region, Scenario
        ops = [Op("mmap", "P0", "A", 0, 2, "rw"), Op("madvise", "P0", "A", 0, 2, advice="mergeable"),
               Op("write", "P0", "A", 0, value=1), Op("write", "P0", "A", 1, value=1),
               Op("ksm_set", "", advice="use_zero_pages", value=1), Op("ksm_settle", "")]
        live = LiveRunner(Scenario("t", {"A": Region("A", 2, 0)}, ops))
        for op in ops:
            live.step(op)
        print(json.dumps(live.started_pids), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
    """)
    env = dict(os.environ, PYTHONPATH=str(SRC), RMAPCHECK_KSM_LOCK_FD=str(_ksm_to_ourselves))
    out = subprocess.run([sys.executable, "-c", script], env=env, timeout=30,
                         capture_output=True, text=True, pass_fds=(_ksm_to_ourselves,))
    assert out.returncode == -signal.SIGTERM, out.stderr
    pids = tuple(int(p) for p in out.stdout.strip("[]\n").split(","))
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not save.exists()
    # The killed controller's workers exit on end of file; their merged page
    # is gone with them, but its rmap_items stay until ksmd passes again:
    # only the settings are promised back.
    assert writable_knobs() == before
    assert [p for p in pids if alive(p)] == []


def test_knobs_left_as_found_after_sigint(tmp_path: Path, _ksm_to_ourselves: int) -> None:
    # Ctrl-C in the middle: the settings are restored by the signal handler,
    # KeyboardInterrupt still reaches the program, and the runner's close
    # kills the workers.
    before = writable_knobs()
    save = SAVE_FILE
    script = textwrap.dedent("""
        import json, os, signal, sys
        from rmapcheck.live.runner import LiveRunner
        from rmapcheck.scenario.ops import Op, Region, Scenario
        ops = [Op("mmap", "P0", "A", 0, 2, "rw"), Op("madvise", "P0", "A", 0, 2, advice="mergeable"),
               Op("write", "P0", "A", 0, value=1), Op("write", "P0", "A", 1, value=1),
               Op("ksm_set", "", advice="max_page_sharing", value=2), Op("ksm_settle", "")]
        try:
            with LiveRunner(Scenario("t", {"A": Region("A", 2, 0)}, ops)) as live:
                for op in ops:
                    live.step(op)
                print(json.dumps(live.started_pids), flush=True)
                os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            sys.exit(42)
    """)
    env = dict(os.environ, PYTHONPATH=str(SRC), RMAPCHECK_KSM_LOCK_FD=str(_ksm_to_ourselves))
    out = subprocess.run([sys.executable, "-c", script], env=env, timeout=30,
                         capture_output=True, text=True, pass_fds=(_ksm_to_ourselves,))
    assert out.returncode == 42, out.stderr
    pids = tuple(int(p) for p in out.stdout.strip("[]\n").split(","))
    assert not save.exists()
    assert writable_knobs() == before
    assert [p for p in pids if alive(p)] == []


def _merge_by_hand(ksm, other: LiveRunner) -> None:
    # P0 of ``other`` gets two merged pages, ksmd driven by hand.
    from rmapcheck.live.ksm import wait_full_scans

    for op in MERGE_OPS[:1] + MERGE_OPS[2:]:
        other.step(op)
    other._request(other._workers["P0"], {"cmd": "madvise", "addr": ARENA_BASE,
                                          "len": 4 * 4096, "advice": 12}, MERGE_OPS[1])
    ksm.set(run=1)
    wait_full_scans(2)
    ksm.set(run=0)
    assert read_knob("pages_shared") == "1"


def test_stale_ksm_pages_removed_at_start(tmp_path: Path) -> None:
    # A run killed before it could clean up leaves rmap_items and stable nodes
    # (ksmd removes an exited mm's only when it passes again): a KSM run
    # starts by removing them (run=2), so its counters are its own.
    from rmapcheck.live.ksm import KsmSettings

    with KsmSettings(sleep_millisecs=1, pages_to_scan=1000,
                     smart_scan=0) as ksm:
        with LiveRunner(ksm_scenario()) as other:
            _merge_by_hand(ksm, other)
        assert read_knob("pages_shared") == "1"  # the workers are gone, their items not
        ops = [Op("mmap", "P0", "B", 0, 1, "rw"), Op("prctl", "P0", value=1)]
        with LiveRunner(ksm_scenario(*ops)) as live:
            first = live.step(ops[0])
    assert set(dict(first.counters).values()) == {0}


def test_other_mergeable_process_refused(tmp_path: Path) -> None:
    # A process with mergeable memory outside the run would be scanned too.
    from rmapcheck.live.ksm import KsmSettings

    with KsmSettings(sleep_millisecs=1, pages_to_scan=1000,
                     smart_scan=0) as ksm:
        with LiveRunner(ksm_scenario()) as other:
            _merge_by_hand(ksm, other)
            with pytest.raises(LiveError, match=f"{other.pids['P0']} "):
                LiveRunner(ksm_scenario(Op("ksm_settle", "")))
        ksm.set(run=2)


def test_session_residue_repaired() -> None:
    # A knob left at a value only a session writes (its restore was lost)
    # goes back to the kernel's default instead of being saved as original.
    from rmapcheck.live.ksm import SLEEP_BASE

    found = read_knob("sleep_millisecs")
    try:
        (KSM_DIR / "sleep_millisecs").write_text(str(SLEEP_BASE + 5))
        with LiveRunner(ksm_scenario(*MERGE_OPS)) as live:
            live.step(MERGE_OPS[0])
        assert read_knob("sleep_millisecs") == "20"
    finally:
        (KSM_DIR / "sleep_millisecs").write_text(found)


def test_settle_is_fast() -> None:
    with LiveRunner(ksm_scenario(*MERGE_OPS)) as live:
        for op in MERGE_OPS:
            live.step(op)
        t0 = time.perf_counter()
        for _ in range(20):
            live.step(Op("ksm_settle", ""))
        per = (time.perf_counter() - t0) / 20
    assert per < 0.1, f"ksm_settle took {per * 1000:.1f} ms"


class FakeKsmd:
    """A stand-in for ksmd over a directory of knob files, for the pass protocol.

    It does ``passes_per_kick`` full scans for each start it notices (a new
    ``sleep_millisecs`` while ``run`` is 1), ignoring the first ``lose``
    starts (a lost wake-up).
    """

    def __init__(self, root: Path, lose: int = 0, passes_per_kick: int = 1) -> None:
        import threading

        self.root, self.lose, self.per = root, lose, passes_per_kick
        for name, value in (("full_scans", "0"), ("run", "0"), ("sleep_millisecs", "0")):
            (root / name).write_text(value)
        self.kicks = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        seen = (self.root / "sleep_millisecs").read_text()
        while not self.stop.is_set():
            sleep = (self.root / "sleep_millisecs").read_text()
            if sleep and sleep != seen and (self.root / "run").read_text() == "1":
                seen = sleep
                self.kicks += 1
                if self.kicks > self.lose:
                    n = int((self.root / "full_scans").read_text())
                    tmp = self.root / "full_scans.tmp"
                    tmp.write_text(str(n + self.per))
                    os.replace(tmp, self.root / "full_scans")  # never seen half written
            time.sleep(0.0005)


def test_pass_protocol_retries_a_lost_start(tmp_path: Path) -> None:
    from rmapcheck.live.ksm import KsmSession

    fake = FakeKsmd(tmp_path, lose=1)
    try:
        session = KsmSession(ksm_dir=tmp_path, timeout=5)
        session.scan(2)
    finally:
        fake.stop.set()
    assert (tmp_path / "full_scans").read_text() == "2"
    assert fake.kicks == 3  # one lost, then one per pass
    assert (tmp_path / "run").read_text() == "0"


def test_pass_protocol_refuses_extra_passes(tmp_path: Path) -> None:
    from rmapcheck.live.ksm import KsmSession

    fake = FakeKsmd(tmp_path, passes_per_kick=2)
    try:
        with pytest.raises(LiveError, match="did 2 full scans"):
            KsmSession(ksm_dir=tmp_path, timeout=5).scan(1)
    finally:
        fake.stop.set()
