"""The model checker: symmetric fingerprints, the seed (B0, B1), strategies, check and replay.

Expected outcomes come from the kernel history (docs/history.md §2): B0, the
root anon_vma freed under a child that KSM or page migration still holds,
on the root series without 5/5 (linux-2.6.36-pre); B1, the over-drop of the
root's own reference that leaks the next anon_vma of the reused slab slot, on
5/5 as reposted on 2010-05-26 (linux-2.6.36-seed-0526); B4, a reclaim walk's
anon_vma freed and reused with another root between page_lock_anon_vma() and
page_unlock_anon_vma(), on both postings; v2.6.36 (the merged commit
76545066c852 and f18194275c39) clean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmapcheck.check.checker import Checker
from rmapcheck.check.model import SEED_BOUNDS, Bounds, KernelModel
from rmapcheck.check.trace import load_trace, replay
from rmapcheck.check.world import Snapshot, fingerprint
from rmapcheck.commands.seed import run_seed
from rmapcheck.model.findings import Deadlock, Leak, LockMisuse, UseAfterFree
from rmapcheck.model.mm_types import anon_vma
from rmapcheck.report.finding import format_finding
from rmapcheck.scenario.ops import Op

KSM = SEED_BOUNDS["ksm"]
MIGRATION = SEED_BOUNDS["migration"]
REUSE = SEED_BOUNDS["reuse"]
RECLAIM = SEED_BOUNDS["reclaim"]


def write(p, page=0, value=1):
    return Op("write", p, "A", page, 1, value=value)


def fork(p, child):
    return Op("fork", p, child=child)


def state(ops, design="linux-6.18", bounds=Bounds(processes=3, pages=2, contents=2)):
    m = KernelModel(design, bounds)
    r = m.init_state()
    for op in ops:
        out = m.apply(r, op)
        assert out.findings == [], (op.text(), out.findings)
    return r


def bfs(design, bounds, **kw):
    c = Checker(KernelModel(design, bounds))
    if kw.get("first"):
        c.first_violation()
    return c.spawn_bfs().join()


# -- fingerprints and symmetry ---------------------------------------------------------

def test_symmetric_children_share_a_fingerprint():
    # Two children, the older writes page 0 and the younger page 1: the names
    # of the children do not matter, nor the order of the two writes (slab
    # slots and page frames differ; the states are equal up to renaming).
    a = state([write("P0"), fork("P0", "P1"), fork("P0", "P2"), write("P1", 0), write("P2", 1)])
    b = state([write("P0"), fork("P0", "P2"), fork("P0", "P1"), write("P2", 0), write("P1", 1)])
    c = state([write("P0"), fork("P0", "P1"), fork("P0", "P2"), write("P2", 1), write("P1", 0)])
    assert fingerprint(a) == fingerprint(b) == fingerprint(c)
    # The raw states differ: P1's copy of page 0 is in another frame in c.
    vpn = a.vpn("A", 0)
    assert a.k.tasks["P1"].mm.pgtable[vpn][0].pfn() != c.k.tasks["P1"].mm.pgtable[vpn][0].pfn()


def test_process_names_do_not_matter():
    a = state([write("P0"), fork("P0", "P1"), write("P1", 1, 2)])
    b = state([write("P0"), fork("P0", "P7"), write("P7", 1, 2)])
    assert fingerprint(a) == fingerprint(b)


def test_different_states_have_different_fingerprints():
    base = [write("P0"), fork("P0", "P1"), fork("P0", "P2")]
    child = state(base + [write("P1", 0)])
    # the parent COWs instead: its page goes to the root anon_vma, not a child's
    parent = state(base + [write("P0", 0)])
    other_value = state(base + [write("P1", 0, 2)])
    other_page = state(base + [write("P1", 1)])
    both = state(base + [write("P1", 0), write("P2", 0)])
    fps = [fingerprint(s) for s in (child, parent, other_value, other_page, both)]
    assert len(set(fps)) == len(fps)


def test_fingerprint_is_stable_across_processes():
    # Fingerprints must not depend on hash() seeds: compute one in a fresh
    # interpreter with another PYTHONHASHSEED.
    code = ("from tests.test_check import state, write, fork; from rmapcheck.check.world import fingerprint; "
            "print(fingerprint(state([write('P0'), fork('P0', 'P1'), write('P1', 1, 2)])).hex())")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         env=dict(os.environ, PYTHONHASHSEED="12345"), timeout=60)
    assert out.returncode == 0, out.stderr
    here = fingerprint(state([write("P0"), fork("P0", "P1"), write("P1", 1, 2)])).hex()
    assert out.stdout.strip() == here


@pytest.mark.parametrize("bounds", [
    Bounds(processes=2, regions=1, pages=2, contents=1, depth=4, mergeable=True,
           ops=("write", "read", "fork", "exit", "mmap", "munmap", "mprotect", "dontneed", "ksm_scan")),
    Bounds(processes=2, regions=2, pages=1, contents=2, depth=4, faults=1,
           ops=("write", "read", "fork", "exit", "mmap", "munmap", "mprotect", "dontneed")),
])
def test_the_actions_left_out_are_self_loops(bounds):
    # Every action actions() leaves out, applied, gives back a state with the
    # same fingerprint and no finding.
    m = KernelModel("linux-6.18", bounds)
    init = m.init_state()
    queue, seen, checked = [m.dumps(init)], {fingerprint(init)}, 0
    while queue:
        data = queue.pop()
        r = m.loads(data)
        fp = fingerprint(r)
        for op in m.self_loops(r):
            out = m.apply(m.loads(data), op)
            assert out.findings == [] and not out.blocked, op.text()
            assert fingerprint(out.state) == fp, op.text()
            checked += 1
        if r.step_no - len(m.setup) >= bounds.depth:
            continue
        for op in m.actions(r):
            out = m.apply(m.loads(data), op)
            if not out.fatal and fingerprint(out.state) not in seen:
                seen.add(fingerprint(out.state))
                queue.append(m.dumps(out.state))
    assert checked > 100


@pytest.mark.parametrize("design,bounds", [
    ("linux-6.18", Bounds(processes=2, regions=1, pages=2, contents=1, depth=3, mergeable=True,
                          ops=("write", "read", "fork", "exit", "mmap", "munmap", "mprotect", "dontneed",
                               "ksm_scan", "migrate", "reclaim"))),
    ("linux-6.18", Bounds(processes=2, regions=2, pages=1, contents=2, depth=3, faults=1,
                          ops=("write", "fork", "exit", "munmap", "mremap", "ksmd"), mergeable=True)),
    # findings raised half-way through kernel functions
    ("linux-2.6.36-pre", SEED_BOUNDS["reclaim"]),
])
def test_a_restored_snapshot_is_the_state_it_was_taken_of(design, bounds):
    # The explorers apply every action of a state to one copy and put it back
    # with a Snapshot: whatever the action did (findings, failed allocations,
    # kernel threads in phases included), the copy must pickle to the same
    # bytes as before, and an action applied to it must do what it does to a
    # fresh copy.
    m = KernelModel(design, bounds)
    queue, seen, restored, findings = [m.dumps(m.init_state())], set(), 0, 0
    while queue:
        data = queue.pop()
        r = m.loads(data)
        snap, before = Snapshot(r), m.dumps(r)
        for op in m.actions(m.loads(data)):
            out = m.apply(r, op)
            fresh = m.apply(m.loads(data), op)
            assert [f[:3] for f in out.findings] == [f[:3] for f in fresh.findings], op.text()
            assert out.blocked == fresh.blocked and out.fatal == fresh.fatal, op.text()
            if not out.fatal and not out.blocked:
                assert m.dumps(r) == m.dumps(fresh.state), op.text()
                fp = fingerprint(r)
                if fp not in seen and r.step_no - len(m.setup) < bounds.depth:
                    seen.add(fp)
                    queue.append(m.dumps(r))
            findings += bool(out.findings)
            snap.restore()
            assert m.dumps(r) == before, op.text()
            restored += 1
    assert restored > 200
    if design != "linux-6.18":
        assert findings > 0


def test_symmetry_reduction_explores_fewer_states():
    b = Bounds(processes=3, pages=1, depth=4, ops=("write", "fork", "exit"))
    on = bfs("linux-6.18", b)
    off = Checker(KernelModel("linux-6.18", b)).symmetry(False).spawn_bfs().join()
    assert on.verdict == off.verdict == "clean"
    assert on.distinct < off.distinct


# -- the seed: B0 and B1 ------------------------------------------------------------------

def _root_and_finding(design, bounds, trace, setup):
    """Re-run ``trace``: the root anon_vma (allocated by the setup's first write) and the finding."""
    m = KernelModel(design, bounds)
    r = m.init_state()
    root = r.k.tasks["P0"].mm.mmap[-1].anon_vma
    assert root is not None and root.root is root
    for op in trace[setup:]:
        out = m.apply(r, op)
        if out.findings:
            return root, out.findings[0][3]
    raise AssertionError("the trace does not reproduce")


@pytest.fixture(scope="module")
def seed_results():
    rows = run_seed()
    assert [(d, p) for d, p, _m, _r in rows] == [
        (d, p) for d in ("linux-2.6.36-pre", "linux-2.6.36-seed-0526", "linux-2.6.36") for p in SEED_BOUNDS]
    for _d, p, m, _r in rows:
        assert m.bounds == SEED_BOUNDS[p]
    return {(d, p): res for d, p, _m, res in rows}


def test_seed_command_says_as_the_history_says(tmp_path):
    p = rmapcheck("seed", "--quiet", "--save-dir", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().splitlines()[-1].endswith(": as the history says")


def test_b0_through_ksm(seed_results):
    res = seed_results["linux-2.6.36-pre", "ksm"]
    assert res.exhausted
    uaf = [f for f in res.findings if f.property == "use-after-free"]
    assert uaf
    f = uaf[0]
    # "the later drop does atomic_dec_and_lock(&child->ksm_refcount, &child->root->lock)
    # on freed memory": KASAN in the root's lock, taken by KSM's drop
    assert f.function == "down_write"
    assert f.error.chain[:4] == ("down_write", "anon_vma_lock_write", "atomic_dec_and_lock", "drop_anon_vma")
    assert "ksm_do_scan" in f.error.chain
    steps = [op.text() for op in f.trace[f.setup:]]
    assert "exit P0" in steps and "exit P1" in steps
    last_exit = max(steps.index("exit P0"), steps.index("exit P1"))
    assert any(s.startswith("ksm_scan") for s in steps[:last_exit])  # ksmd took the reference
    assert steps[-1].startswith("ksm_scan")  # and drops it after both exits
    root, err = _root_and_finding("linux-2.6.36-pre", KSM, f.trace, f.setup)
    assert isinstance(err, UseAfterFree) and err.obj is root
    assert not root._live


def test_b0_through_migration(seed_results):
    res = seed_results["linux-2.6.36-pre", "migration"]
    assert res.exhausted
    uaf = [f for f in res.findings if f.property == "use-after-free"]
    assert uaf and {f.property for f in res.findings} == {"use-after-free"}
    for f in uaf:
        steps = [op.text() for op in f.trace[f.setup:]]
        assert "exit P0" in steps and "exit P1" in steps
        last_exit = max(steps.index("exit P0"), steps.index("exit P1"))
        # the migration pinned the child before the last exit and touches the root after it
        assert any(s.startswith("migrate_start") for s in steps[:last_exit])
        assert steps[-1].startswith("kthread")
        root, err = _root_and_finding("linux-2.6.36-pre", MIGRATION, f.trace, f.setup)
        assert isinstance(err, UseAfterFree) and err.obj is root


def test_b1_leak_after_slab_reuse(seed_results):
    res = seed_results["linux-2.6.36-seed-0526", "reuse"]
    assert res.exhausted
    leaks = [f for f in res.findings if f.property == "leak"]
    assert len(leaks) == 1
    f = leaks[0]
    # "mmap+fault (root R); munmap → R over-dropped & freed; mmap+fault reuses R's
    # slot (refcount −1); munmap → leak"
    assert [op.kind for op in f.trace[f.setup:]] == ["write", "munmap", "mmap", "write", "munmap"]
    assert isinstance(f.error, Leak) and isinstance(f.error.obj, anon_vma)
    assert f.error.obj.refcount == -1


B4_KINDS = ["write", "reclaim_start", "exit", "kthread", "write", "kthread"]


@pytest.mark.parametrize("design", ["linux-2.6.36-pre", "linux-2.6.36-seed-0526"])
def test_b4_reclaim_walk_unlocks_another_root(seed_results, design):
    res = seed_results[design, "reclaim"]
    assert res.exhausted
    f = next(f for f in res.findings if f.property == "lock-misuse")
    assert f.function == "page_unlock_anon_vma"
    # "T1 reclaim: page_lock_anon_vma reads page->mapping=A (page_mapped) … T2: last
    # unmap of the page, unlink frees A … T3: anon_vma_prepare/fork reallocates A's
    # slot … T1: unlocks via A->root which now differs" (docs/history.md B4)
    assert [op.kind for op in f.trace[f.setup:]] == B4_KINDS
    texts = [op.text() for op in f.trace]
    report = format_finding(f.error, texts, len(texts)).splitlines()
    assert report[1] == "  call chain: page_unlock_anon_vma <- rmap_walk <- folio_referenced"
    assert report[3].startswith(f"  Allocated by: step {f.setup + 5} (write P0 B[0] 1: anon_vma_prepare")
    assert report[4].startswith(f"  Freed before by: step {f.setup + 3} (exit P1: ")
    m = KernelModel(design, RECLAIM)
    r = m.init_state()
    trace = f.trace[f.setup:]
    for op in trace[:4]:
        assert m.apply(r, op).findings == []
    walk = r.k.walks[0]
    av, root = walk.anon_vma, walk.root
    assert walk.phase == "locked" and not av._live and root._live and root is not av
    assert m.apply(r, trace[4]).findings == []
    assert av._live and av.root is av  # reused by anon_vma_prepare(): its own root now
    out = m.apply(r, trace[5])
    assert isinstance(out.findings[0][3], LockMisuse) and out.fatal
    assert root.rwsem_writer  # the lock taken stays held: the hang


@pytest.mark.parametrize("design", ["linux-2.6.36", "linux-6.18"])
def test_b4_trace_is_harmless_with_the_recheck(seed_results, design):
    # f18194275c39: the saved root is unlocked again when the page is no
    # longer mapped, and the walk ends before its anon_vma can be reused.
    f = next(f for f in seed_results["linux-2.6.36-pre", "reclaim"].findings if f.property == "lock-misuse")
    m = KernelModel(design, RECLAIM)
    r = m.init_state()
    trace = f.trace[f.setup:]
    for op in trace[:4]:
        assert m.apply(r, op).findings == []
    assert r.k.walks == []
    assert m.apply(r, trace[4]).findings == []


def test_b6_migration_pins_a_freed_anon_vma_when_its_rcu_window_is_open():
    # "the anon_vma to which we get a reference may already have been freed
    # back to its slab (it is in use when we check page_mapped, but that can
    # change)" (docs/history.md B6): v2.6.36 had it until 2011. The seed
    # bounds keep the pin one step; opened, the window shows it.
    b = Bounds(**{**MIGRATION.__dict__, "rcu_windows": True})
    res = bfs("linux-2.6.36", b)
    f = next(f for f in res.findings if f.property == "use-after-free")
    # v2.6.36's atomic_inc(&anon_vma->external_refcount) in unmap_and_move()
    assert f.error.chain[:2] == ("atomic_inc", "unmap_and_move")
    steps = [op.text() for op in f.trace[f.setup:]]
    assert steps[0].startswith("migrate_start") and steps[-1] == "kthread 0"
    assert {"exit P0", "exit P1"} <= set(steps)
    assert bfs("linux-6.18", b).verdict == "clean"
    closed = bfs("linux-2.6.36", MIGRATION)
    assert closed.verdict == "clean" and any("RCU windows of kernel threads are closed" in w for w in closed.warnings)


def test_an_action_that_sleeps_on_a_kernel_threads_lock_is_not_started():
    # linux-2.6.36: the walk holds the root's spinlock between its phases; the
    # parent's exit needs it (unlink_anon_vmas()) and waits.
    m = KernelModel("linux-2.6.36", RECLAIM)
    r = m.init_state()
    for op in (Op("write", "P1", "A", 0, 1, value=1), Op("reclaim_start", "P1", "A", 0, 1), Op("kthread", "", value=0)):
        assert m.apply(r, op).findings == []
    assert r.k.walks[0].phase == "locked"
    data = m.dumps(r)
    out = m.apply(m.loads(data), Op("exit", "P0"))
    # not enabled here; run in sequence, it would be a deadlock
    assert out.blocked and [(p, fn) for p, fn, _m, _e in out.findings] == [("lock-misuse", "down_write")]
    assert Op("exit", "P0") in m.actions(r)
    # run in sequence, as a scenario is, nothing would release the lock
    with pytest.raises(Deadlock):
        m.loads(data).perform(Op("exit", "P0"))
    # the walk runs on and the exit follows
    assert m.apply(r, Op("kthread", "", value=0)).findings == []
    assert m.apply(r, Op("exit", "P0")).findings == []


@pytest.mark.parametrize("path", sorted(SEED_BOUNDS))
def test_merged_seed_is_clean_and_exhausted(seed_results, path):
    res = seed_results["linux-2.6.36", path]
    assert res.verdict == "clean" and res.exhausted, [(f.property, f.function) for f in res.findings]


def test_pre_and_merged_explore_the_same_bounds(seed_results):
    # the clean verdict is not vacuous: the same interesting states are reached
    for path in ("ksm", "migration"):
        res = seed_results["linux-2.6.36", path]
        assert res.distinct > 100
        assert res.sometimes["anon-vma-held-without-vma"] and res.sometimes["child-anon-vma"]
    assert seed_results["linux-2.6.36", "ksm"].sometimes["ksm-page"]


@pytest.mark.parametrize("path", sorted(SEED_BOUNDS))
def test_linux_6_18_is_clean_at_the_seed_bounds(path):
    res = bfs("linux-6.18", SEED_BOUNDS[path])
    assert res.verdict == "clean" and res.exhausted, [(f.property, f.function) for f in res.findings]


# -- strategies ---------------------------------------------------------------------------

def test_dfs_finds_b0_through_ksm():
    res = Checker(KernelModel("linux-2.6.36-pre", KSM)).spawn_dfs().join()
    assert res.strategy == "dfs"
    f = next(f for f in res.findings if f.property == "use-after-free")
    assert "drop_anon_vma" in f.error.chain
    assert f.trace_length <= KSM.depth
    root, err = _root_and_finding("linux-2.6.36-pre", KSM, f.trace, f.setup)
    assert err.obj is root


def test_dfs_agrees_with_bfs_at_depth_7():
    b = Bounds(**{**KSM.__dict__, "depth": 7})
    m = KernelModel("linux-2.6.36-pre", b)
    assert bfs("linux-2.6.36-pre", b).verdict == "violation"
    dfs = Checker(m).spawn_dfs().join()
    assert dfs.verdict == "violation" or not dfs.exhausted


@pytest.mark.parametrize("path", ["ksm", "migration"])
def test_random_simulation_finds_b0(path):
    res = Checker(KernelModel("linux-2.6.36-pre", SEED_BOUNDS[path])).spawn_simulation(seed=0, runs=300).join()
    assert res.strategy == "simulation" and not res.exhausted
    assert "use-after-free" in {f.property for f in res.findings}
    again = Checker(KernelModel("linux-2.6.36-pre", SEED_BOUNDS[path])).spawn_simulation(seed=0, runs=300).join()
    assert [(f.property, f.function, [o.text() for o in f.trace]) for f in res.findings] == \
        [(f.property, f.function, [o.text() for o in f.trace]) for f in again.findings]


def test_random_simulation_of_the_merged_seed_is_clean():
    res = Checker(KernelModel("linux-2.6.36", KSM)).spawn_simulation(seed=0, runs=300).join()
    assert res.verdict == "clean"
    assert any("not exhaustive" in w for w in res.warnings)


def test_first_stops_at_the_first_violation():
    full = bfs("linux-2.6.36-pre", MIGRATION)
    first = bfs("linux-2.6.36-pre", MIGRATION, first=True)
    assert len(full.findings) >= 2 and full.exhausted
    assert len(first.findings) == 1 and not first.exhausted
    assert first.states < full.states
    assert first.findings[0].property == "use-after-free"
    assert any("cut short" in w for w in first.warnings)


# -- check and replay through the command line ---------------------------------------------

def rmapcheck(*args, cwd=None):
    env = dict(os.environ, NO_COLOR="1", TERM="dumb")
    return subprocess.run([sys.executable, "-m", "rmapcheck", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def one_error_line(p):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


CHECKS = {
    "ksm": ["--design", "linux-2.6.36-pre", "--ops", "write,exit,ksm_scan", "--mergeable", "--forked",
            "--pages", "1", "--depth", "8"],
    "migration": ["--design", "linux-2.6.36-pre", "--ops", "write,exit,migrate", "--forked", "--pages", "1",
                  "--depth", "8"],
    "reuse": ["--design", "linux-2.6.36-seed-0526", "--processes", "1", "--ops", "write,mmap,munmap",
              "--pages", "1", "--depth", "6"],
    "reclaim": ["--design", "linux-2.6.36-pre", "--ops", "write,exit,reclaim", "--forked", "--regions", "2",
                "--pages", "1", "--depth", "6"],
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Run each check with --json; return ``{path: (json, save_dir)}``."""
    out = {}
    for path, args in CHECKS.items():
        d = tmp_path_factory.mktemp(path)
        p = rmapcheck("check", *args, "--json", "--save-dir", str(d / "traces"), cwd=d)
        assert p.returncode == 1, p.stderr
        out[path] = (json.loads(p.stdout), d / "traces")
    return out


@pytest.mark.parametrize("path", sorted(CHECKS))
def test_check_json(saved, path):
    d, _ = saved[path]
    for key in ("design", "verdict", "findings", "distinct_states", "seconds", "bounds"):
        assert key in d
    assert d["verdict"] == "violation"
    assert d["design"] == CHECKS[path][1]
    assert d["bounds"]["pages"] == 1 and d["bounds"]["depth"] == int(CHECKS[path][-1])
    assert isinstance(d["distinct_states"], int) and d["distinct_states"] > 1
    assert isinstance(d["seconds"], (int, float))
    for f in d["findings"]:
        assert {"property", "function", "trace_length"} <= set(f)
        assert 1 <= f["trace_length"] <= d["bounds"]["depth"]
    want = {"ksm": "use-after-free", "migration": "use-after-free", "reuse": "leak", "reclaim": "lock-misuse"}[path]
    assert want in {f["property"] for f in d["findings"]}


def test_check_first_json(tmp_path):
    p = rmapcheck("check", *CHECKS["migration"], "--first", "--json", "--save-dir", "traces", cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    d = json.loads(p.stdout)
    assert d["verdict"] == "violation" and len(d["findings"]) == 1 and not d["exhausted"]


def test_check_json_clean(tmp_path):
    p = rmapcheck("check", "--design", "linux-2.6.36", *CHECKS["reuse"][2:], "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["verdict"] == "clean" and d["findings"] == [] and d["exhausted"]


@pytest.mark.parametrize("path", sorted(CHECKS))
def test_replay_reproduces_every_saved_counterexample(saved, path):
    d, traces = saved[path]
    files = sorted(traces.glob("*.json"))
    assert len(files) == len(d["findings"]) >= 1
    assert sorted(f["trace"] for f in d["findings"]) == sorted(str(f) for f in files)
    for f in d["findings"]:
        t = load_trace(f["trace"])
        assert (t.design, t.property, t.function) == (d["design"], f["property"], f["function"])
        assert len(t.scenario.ops) - t.setup == f["trace_length"]
        got, _state = replay(t)
        assert got is not None and (got.property, got.function) == (f["property"], f["function"])
        p = rmapcheck("replay", f["trace"])
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"reproduced: {f['property']} in {f['function']}" in p.stdout
        assert "(the trace recorded" not in p.stdout


def _mutated(saved, tmp_path, mutate):
    _, traces = saved["ksm"]
    d = json.loads(next(traces.glob("*.json")).read_text())
    mutate(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    return p


def _set(path, value):
    def mutate(d):
        obj = d
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return mutate


BAD_TRACES = {
    "wrong-format": _set(["format"], "rmapcheck-trace/0"),
    "unknown-design": _set(["design"], "linux-9.99"),
    "unknown-op": _set(["steps", 1, "kind"], "teleport"),
    "unknown-region": _set(["steps", 1, "region"], "Z"),
    "bad-region": _set(["regions", "A", "pages"], 0),
    "no-regions": _set(["regions"], {}),
    "bad-field-type": _set(["steps", 1, "page"], "zero"),
    "unknown-field": _set(["steps", 1, "colour"], "red"),
    "bad-setup": _set(["setup"], 999),
    "unknown-switch": _set(["config"], {"CONFIG_FOO": True}),
    "switch-not-a-bool": _set(["config"], {"CONFIG_KSM": "n"}),
    "config-not-an-object": _set(["config"], ["CONFIG_KSM=n"]),
    "bad-fault-flag": _set(["steps", 1, "flags"], ["fail=anon_vma_alloc@0"]),
    "unknown-fault-site": _set(["steps", 1, "flags"], ["fail=kmalloc*"]),
}


@pytest.mark.parametrize("case", sorted(BAD_TRACES))
def test_malformed_trace_is_one_line(saved, tmp_path, case):
    p = _mutated(saved, tmp_path, BAD_TRACES[case])
    line = one_error_line(rmapcheck("replay", str(p)))
    assert str(p) in line


@pytest.mark.parametrize("case", ["flags-not-a-list", "bounds-not-an-object", "unknown-process",
                                  "negative-page", "setup-bool"])
def test_malformed_trace_without_traceback(saved, tmp_path, case):
    mutate = {"flags-not-a-list": _set(["steps", 1, "flags"], 5),
              "bounds-not-an-object": _set(["bounds"], []),
              "unknown-process": _set(["steps", 1, "proc"], "P9"),
              "negative-page": _set(["steps", 1, "page"], -3),
              "setup-bool": _set(["setup"], True)}[case]
    p = _mutated(saved, tmp_path, mutate)
    line = one_error_line(rmapcheck("replay", str(p)))
    assert str(p) in line


# -- the design's switches ------------------------------------------------------------------

def test_without_ksm_and_migration_the_seed_question_does_not_arise():
    # external_refcount exists "under CONFIG_KSM || CONFIG_MIGRATION"
    # (docs/history.md S3/S4): built without both, nothing holds a child
    # anon_vma from outside, and B0 is out of reach on either path.
    off = {"CONFIG_KSM": False, "CONFIG_MIGRATION": False}
    for b in (KSM, MIGRATION):
        res = Checker(KernelModel("linux-2.6.36-pre", b, off)).spawn_bfs().join()
        assert res.verdict == "clean" and res.exhausted
        assert res.config == off
        assert any("was not explored: the kernel is built without it" in w for w in res.warnings)


def test_migration_alone_still_reaches_b0():
    res = Checker(KernelModel("linux-2.6.36-pre", MIGRATION, {"CONFIG_KSM": False})).spawn_bfs().join()
    assert "use-after-free" in {f.property for f in res.findings}


def test_switches_reach_the_kernel():
    m = KernelModel("linux-6.18", Bounds(processes=1, pages=1, depth=2, mergeable=True,
                                         ops=("write", "ksm_scan", "migrate")), {"CONFIG_KSM": False})
    r = m.init_state()
    assert r.k.config["CONFIG_KSM"] is False and r.k.config["CONFIG_MIGRATION"] is True
    assert m.ops_enabled == ("write", "migrate")
    # the setup's prctl(PR_SET_MEMORY_MERGE) fails: the option does not exist
    assert not r.k.tasks["P0"].mm.ksm_flags
    assert r.perform(Op("prctl", "P0", value=1)) == "EINVAL"


def test_check_config_option(tmp_path):
    p = rmapcheck("check", *CHECKS["migration"], "--config", "CONFIG_KSM=n", "--json", "--save-dir", "traces",
                  cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    d = json.loads(p.stdout)
    assert d["config"] == {"CONFIG_KSM": False}
    f = next(f for f in d["findings"] if f["property"] == "use-after-free")
    t = load_trace(str(tmp_path / f["trace"]))
    assert t.config == {"CONFIG_KSM": False}
    r = rmapcheck("replay", f["trace"], cwd=tmp_path)
    assert r.returncode == 0 and "with CONFIG_KSM=n" in r.stdout.splitlines()[0]
    p = rmapcheck("check", *CHECKS["migration"], "--config", "CONFIG_MIGRATION=n", "--json", cwd=tmp_path)
    assert p.returncode == 0 and json.loads(p.stdout)["verdict"] == "clean"


def test_rcu_windows_option(tmp_path):
    args = ["check", "--design", "linux-2.6.36", "--ops", "write,exit,migrate", "--forked", "--pages", "1",
            "--depth", "8", "--json", "--save-dir", "traces"]
    shut = rmapcheck(*args, "--no-rcu-windows", cwd=tmp_path)
    assert shut.returncode == 0, shut.stderr
    d = json.loads(shut.stdout)
    assert d["bounds"]["rcu_windows"] is False and d["verdict"] == "clean"
    assert any("RCU windows of kernel threads are closed" in w for w in d["warnings"])
    opened = rmapcheck(*args, "--rcu-windows", cwd=tmp_path)
    assert opened.returncode == 1
    d = json.loads(opened.stdout)
    f = next(f for f in d["findings"] if "unmap_and_move" in f["chain"])
    assert f["property"] == "use-after-free"
    r = rmapcheck("replay", f["trace"], cwd=tmp_path)
    assert r.returncode == 0 and f"reproduced: use-after-free in {f['function']}" in r.stdout


@pytest.mark.parametrize("setting", ["CONFIG_FOO=y", "CONFIG_KSM=maybe", "KSM", "sysctl_max_map_count=many"])
def test_bad_config_is_one_line(tmp_path, setting):
    line = one_error_line(rmapcheck("check", "--design", "linux-6.18", "--config", setting, cwd=tmp_path))
    assert setting.split("=")[0] in line


def test_not_json_is_one_line(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('{"format": "rmapcheck-trace/1",\n  oops}\n')
    line = one_error_line(rmapcheck("replay", str(p)))
    assert str(p) in line and "JSON" in line


def test_missing_trace_is_one_line(tmp_path):
    p = tmp_path / "absent.json"
    line = one_error_line(rmapcheck("replay", str(p)))
    assert str(p) in line


def test_check_unknown_design_is_one_line():
    line = one_error_line(rmapcheck("check", "--design", "nope"))
    assert "nope" in line and "linux-6.18" in line


def test_check_unknown_op_is_one_line():
    line = one_error_line(rmapcheck("check", "--design", "linux-6.18", "--ops", "write,teleport"))
    assert "teleport" in line
