"""The live runner against the running kernel.

Expected values come from the kernel's documented behaviour: a read fault on
private anonymous memory maps the shared zero page, a write fault a new
frame; fork shares every frame copy-on-write until one side writes;
``MAP_FIXED_NOREPLACE`` refuses an occupied range with ``EEXIST``;
``mprotect`` of part of a VMA splits it; adjacent compatible anonymous VMAs
merge.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from livekernel import requires_live

from rmapcheck.live.ksm import SAVE_FILE, KsmSettings, exclusive, read_knob, wait_full_scans
from rmapcheck.live.runner import LiveError, LiveRunner
from rmapcheck.scenario.ops import Op, Region, Scenario


pytestmark = [pytest.mark.live, requires_live]

SRC = Path(__file__).resolve().parents[1] / "src"


def scenario() -> Scenario:
    # A: arena pages 0-3, B: pages 4-5, right after A.
    return Scenario("t", {"A": Region("A", 4, 0), "B": Region("B", 2, 4)}, [])


def run(live: LiveRunner, *ops: Op) -> list:
    return [live.step(op) for op in ops]


def frames(obs) -> dict:
    return dict(obs.frames)


def layout(obs) -> dict:
    return dict(obs.layout)


def gone_or_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


MMAP_A = Op("mmap", "P0", "A", 0, 4, "rw")


def test_read_fault_maps_zero_page() -> None:
    with LiveRunner(scenario()) as live:
        first = live.step(MMAP_A)
        assert first.result == "ok"
        assert frames(first) == {"P0": (None,) * 6}
        obs = live.step(Op("read", "P0", "A", 2))
    assert obs.result == "0"
    assert frames(obs) == {"P0": (None, None, -1, None, None, None)}
    assert obs.ksm == frozenset()


def test_write_fault_gets_own_frame() -> None:
    with LiveRunner(scenario()) as live:
        *_, w, r = run(live, MMAP_A, Op("read", "P0", "A", 0),
                       Op("write", "P0", "A", 1, value=7), Op("read", "P0", "A", 1))
    assert w.result == "ok"
    assert r.result == "7"
    assert frames(r) == {"P0": (-1, 0, None, None, None, None)}


def test_fork_shares_frames_until_child_writes() -> None:
    with LiveRunner(scenario()) as live:
        run(live, MMAP_A, Op("write", "P0", "A", 0, value=7), Op("write", "P0", "A", 1, value=9),
            Op("read", "P0", "A", 2))
        forked = live.step(Op("fork", "P0", child="P1"))
        assert forked.result == "ok"
        assert frames(forked) == {"P0": (0, 1, -1, None, None, None),
                                  "P1": (0, 1, -1, None, None, None)}
        assert layout(forked) == {"P0": ((0, 4, "rw-"),), "P1": ((0, 4, "rw-"),)}
        cow = live.step(Op("write", "P1", "A", 0, value=8))
        assert frames(cow) == {"P0": (0, 1, -1, None, None, None),
                               "P1": (2, 1, -1, None, None, None)}
        assert live.step(Op("read", "P0", "A", 0)).result == "7"
        assert live.step(Op("read", "P1", "A", 0)).result == "8"
        assert live.step(Op("read", "P1", "A", 1)).result == "9"


def test_write_to_read_only_is_sigsegv() -> None:
    with LiveRunner(scenario()) as live:
        mm, w, r = run(live, Op("mmap", "P0", "A", 0, 4, "r"), Op("write", "P0", "A", 0, value=1),
                       Op("read", "P0", "A", 0))
        # Nothing mapped at all: both accesses fault.
        none_w, none_r = run(live, Op("write", "P0", "B", 0, value=1), Op("read", "P0", "B", 0))
    assert mm.result == "ok"
    assert w.result == "SIGSEGV"
    assert frames(w) == {"P0": (None,) * 6}
    assert r.result == "0"  # the worker survived, and a read maps the zero page
    assert frames(r) == {"P0": (-1, None, None, None, None, None)}
    assert (none_w.result, none_r.result) == ("SIGSEGV", "SIGSEGV")


def test_map_fixed_noreplace_over_mapping_is_eexist() -> None:
    with LiveRunner(scenario()) as live:
        _, again, fixed = run(live, MMAP_A, Op("mmap", "P0", "A", 1, 1, "rw"),
                              Op("mmap", "P0", "A", 1, 1, "r", flags=frozenset({"fixed"})))
    assert again.result == "EEXIST"
    assert layout(again) == {"P0": ((0, 4, "rw-"),)}
    assert fixed.result == "ok"  # MAP_FIXED replaces
    assert layout(fixed) == {"P0": ((0, 1, "rw-"), (1, 2, "r--"), (2, 4, "rw-"))}


def test_mprotect_middle_page_splits_vma() -> None:
    with LiveRunner(scenario()) as live:
        _, obs = run(live, Op("mmap", "P0", "A", 0, 3, "rw"), Op("mprotect", "P0", "A", 1, 1, "r"))
    assert obs.result == "ok"
    assert layout(obs) == {"P0": ((0, 1, "rw-"), (1, 2, "r--"), (2, 3, "rw-"))}


def test_adjacent_mmaps_merge_into_one_vma() -> None:
    with LiveRunner(scenario()) as live:
        _, merged = run(live, MMAP_A, Op("mmap", "P0", "B", 0, 2, "rw"))
        assert layout(merged) == {"P0": ((0, 6, "rw-"),)}
        _, _, apart = run(live, Op("munmap", "P0", "B", 0, 2), Op("mmap", "P0", "B", 0, 2, "r"),
                          Op("read", "P0", "B", 0))
    assert layout(apart) == {"P0": ((0, 4, "rw-"), (4, 6, "r--"))}


def test_mremap_and_madvise_dontneed() -> None:
    with LiveRunner(scenario()) as live:
        run(live, MMAP_A, Op("write", "P0", "A", 0, value=5))
        moved = live.step(Op("mremap", "P0", "A", 0, 1, to_region="B", to_page=0))
        assert moved.result == "ok"
        assert frames(moved) == {"P0": (None, None, None, None, 0, None)}
        assert live.step(Op("read", "P0", "B", 0)).result == "5"
        dropped = live.step(Op("madvise", "P0", "B", 0, 1, advice="dontneed"))
        assert dropped.result == "ok"
        assert frames(dropped) == {"P0": (None,) * 6}
        bad = live.step(Op("mremap", "P0", "A", 1, 1, new_pages=1, flags=frozenset({"dontunmap"})))
    assert bad.result == "EINVAL"  # MREMAP_DONTUNMAP needs MREMAP_MAYMOVE


def test_exit_child_leaves_parent_only() -> None:
    with LiveRunner(scenario()) as live:
        run(live, MMAP_A, Op("write", "P0", "A", 0, value=1), Op("fork", "P0", child="P1"))
        child = live.pids["P1"]
        obs = live.step(Op("exit", "P1"))
        assert obs.result == "ok"
        assert gone_or_zombie(child)
        assert [name for name, _ in obs.frames] == ["P0"]
        assert [name for name, _ in obs.layout] == ["P0"]
        assert frames(obs) == {"P0": (0, None, None, None, None, None)}
        assert live.pids == {"P0": live.started_pids[0]}


def test_unknown_process_raises() -> None:
    with LiveRunner(scenario()) as live:
        with pytest.raises(LiveError, match="P9"):
            live.step(Op("read", "P9", "A", 0))
        live.step(Op("fork", "P0", child="P1"))
        with pytest.raises(LiveError, match="already exists"):
            live.step(Op("fork", "P0", child="P1"))
        live.step(Op("exit", "P1"))
        with pytest.raises(LiveError, match="P1"):
            live.step(Op("read", "P1", "A", 0))


def test_silent_worker_times_out() -> None:
    with LiveRunner(scenario(), timeout=0.3) as live:
        pid = live.pids["P0"]
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(LiveError, match="did not answer within 0.3s"):
            live.step(MMAP_A)
        assert time.monotonic() - t0 < 2
    assert not os.path.exists(f"/proc/{pid}")


def test_close_leaves_no_worker() -> None:
    with LiveRunner(scenario()) as live:
        run(live, MMAP_A, Op("fork", "P0", child="P1"), Op("fork", "P1", child="P2"),
            Op("fork", "P0", child="P3"))
        # P2's parent goes: P2 is reparented to the runner (a subreaper).
        last = live.step(Op("exit", "P1"))
        assert [name for name, _ in last.frames] == ["P0", "P2", "P3"]
        assert ppid(live.pids["P2"]) == os.getpid()
        # P0 goes too (a zombie the runner reaps at once); its children stay.
        after = live.step(Op("exit", "P0"))
        assert [name for name, _ in after.layout] == ["P2", "P3"]
        assert ppid(live.pids["P3"]) == os.getpid()
        pids = live.started_pids
        assert len(pids) == 4
        assert live.op_seconds > 0
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"worker {pid} still present"


def test_workers_exit_when_controller_dies() -> None:
    # A controller that dies without closing: its workers see end of file.
    script = textwrap.dedent("""
        import json, os, sys
        from rmapcheck.live.runner import LiveRunner
        from rmapcheck.scenario.ops import Op, Region, Scenario
        live = LiveRunner(Scenario("t", {"A": Region("A", 1, 0)}, []))
        live.step(Op("fork", "P0", child="P1"))
        live.step(Op("fork", "P1", child="P2"))
        print(json.dumps(live.started_pids), flush=True)
        os._exit(0)
    """)
    env = dict(os.environ, PYTHONPATH=str(SRC))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=20, check=True)
    pids = json.loads(out.stdout)
    assert len(pids) == 3
    deadline = time.monotonic() + 5
    while not all(gone_or_zombie(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(gone_or_zombie(p) for p in pids), pids


# -- KSM settings -------------------------------------------------------------


@pytest.fixture
def ksm_to_ourselves():
    # Knobs read before and after must not see another test run's KSM session.
    with exclusive() as fd:
        yield fd


def test_ksm_settings_restored(tmp_path: Path, ksm_to_ourselves: None) -> None:
    save = SAVE_FILE
    sleep, scan = read_knob("sleep_millisecs"), read_knob("pages_to_scan")
    with KsmSettings(save_file=save, sleep_millisecs=int(sleep) + 7) as ksm:
        assert read_knob("sleep_millisecs") == str(int(sleep) + 7)
        assert json.loads(save.read_text())["saved"] == {"sleep_millisecs": sleep}
        ksm.set(pages_to_scan=int(scan) + 11)
        assert read_knob("pages_to_scan") == str(int(scan) + 11)
    assert (read_knob("sleep_millisecs"), read_knob("pages_to_scan")) == (sleep, scan)
    assert not save.exists()


def test_ksm_settings_restored_after_exception(tmp_path: Path, ksm_to_ourselves: None) -> None:
    save = SAVE_FILE
    sleep, scan = read_knob("sleep_millisecs"), read_knob("pages_to_scan")
    with pytest.raises(RuntimeError, match="boom"):
        with KsmSettings(save_file=save, sleep_millisecs=int(sleep) + 3, pages_to_scan=int(scan) + 5):
            assert read_knob("pages_to_scan") == str(int(scan) + 5)
            raise RuntimeError("boom")
    assert (read_knob("sleep_millisecs"), read_knob("pages_to_scan")) == (sleep, scan)
    assert not save.exists()


def test_ksm_settings_restore_stale_save_file(tmp_path: Path, ksm_to_ourselves: None) -> None:
    save = SAVE_FILE
    sleep = read_knob("sleep_millisecs")
    proc = subprocess.Popen(["true"])
    proc.wait()
    try:
        # A run killed after saving and changing sleep_millisecs.
        save.write_text(json.dumps({"pid": proc.pid, "saved": {"sleep_millisecs": sleep}}))
        Path("/sys/kernel/mm/ksm/sleep_millisecs").write_text(str(int(sleep) + 9))
        with KsmSettings(save_file=save):
            assert read_knob("sleep_millisecs") == sleep
            assert not save.exists()
    finally:
        Path("/sys/kernel/mm/ksm/sleep_millisecs").write_text(sleep)


def test_ksm_settings_restored_on_sigterm(tmp_path: Path, ksm_to_ourselves: int) -> None:
    save = SAVE_FILE
    sleep = read_knob("sleep_millisecs")
    script = textwrap.dedent(f"""
        import os, signal, time
        from rmapcheck.live.ksm import KsmSettings
        with KsmSettings(save_file={str(save)!r}, sleep_millisecs={int(sleep) + 5}):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    """)
    env = dict(os.environ, PYTHONPATH=str(SRC), RMAPCHECK_KSM_LOCK_FD=str(ksm_to_ourselves))
    out = subprocess.run([sys.executable, "-c", script], env=env, timeout=20,
                         pass_fds=(ksm_to_ourselves,))
    assert out.returncode == -15
    assert read_knob("sleep_millisecs") == sleep
    assert not save.exists()


def test_ksm_max_page_sharing_restored(tmp_path: Path, ksm_to_ourselves: None) -> None:
    save = SAVE_FILE
    mps, run_ = read_knob("max_page_sharing"), read_knob("run")
    with KsmSettings(save_file=save, max_page_sharing=int(mps) + 1):
        assert read_knob("max_page_sharing") == str(int(mps) + 1)
        assert read_knob("run") == run_
    assert (read_knob("max_page_sharing"), read_knob("run")) == (mps, run_)


def test_ksm_merges_identical_pages(tmp_path: Path, ksm_to_ourselves: None) -> None:
    # Driving ksmd by hand: pages merge within two full scans.
    with KsmSettings(sleep_millisecs=1,
                     pages_to_scan=1000, smart_scan=0, use_zero_pages=0) as ksm:
        with LiveRunner(scenario()) as live:
            run(live, MMAP_A, Op("write", "P0", "A", 0, value=42), Op("write", "P0", "A", 1, value=42),
                Op("write", "P0", "A", 2, value=43))
            # Through the worker, not a KSM step: the runner leaves ksmd alone.
            live._request(live._workers["P0"], {"cmd": "madvise", "addr": 0x100_0000_0000,
                                                "len": 4 * 4096, "advice": 12}, MMAP_A)
            assert live.ksm is None
            ksm.set(run=1)
            wait_full_scans(2, timeout=5)
            ksm.set(run=0)
            obs = live.observe("ok")
        # Drop the stable tree the merge left behind (ksmd prunes it only when
        # it runs again), so no KSM counter stays changed.
        ksm.set(run=2)
    assert frames(obs) == {"P0": (0, 0, 1, None, None, None)}
    assert obs.ksm == frozenset({0})


def test_ksm_steps_borrow_active_settings(tmp_path: Path, ksm_to_ourselves: None) -> None:
    # A KSM step inside someone's KsmSettings uses those settings (which
    # restore everything) instead of failing.
    sleep = read_knob("sleep_millisecs")
    with KsmSettings(sleep_millisecs=int(sleep) + 2):
        with LiveRunner(scenario()) as live:
            run(live, MMAP_A, Op("madvise", "P0", "A", 0, 4, advice="mergeable"),
                Op("write", "P0", "A", 0, value=42), Op("write", "P0", "A", 1, value=42))
            obs = live.step(Op("ksm_settle", ""))
            assert live.ksm is not None
        assert read_knob("run") == "0"
        assert read_knob("pages_shared") == "0"  # unmerged when the runner closed
    assert read_knob("sleep_millisecs") == sleep
    assert frames(obs) == {"P0": (0, 0, None, None, None, None)}
    assert obs.ksm == frozenset({0})


def test_thp_system_is_refused_where_thp_is_always(tmp_path, monkeypatch):
    # With transparent_hugepage/enabled "always" a fault may map a huge page,
    # which the model has not: the live runner refuses thp_system there.
    from rmapcheck.live import runner
    from rmapcheck.scenario.ops import Op

    setting = tmp_path / "enabled"
    monkeypatch.setattr(runner, "_THP_ENABLED", setting)
    op = Op("mmap", "P0", "A", 0, 2, flags=frozenset({"thp_system"}))
    setting.write_text("[always] madvise never\n")
    with pytest.raises(runner.LiveError, match="thp_system needs 'madvise' or 'never'"):
        runner._check_thp_setting(op)
    setting.write_text("always [madvise] never\n")
    runner._check_thp_setting(op)
