"""Reports a developer can act on: call chains, who holds a reference, stable names, traces as scenarios.

- A finding names the kernel function where it happens and its call chain,
  never a function of the model; a finding of the checks between steps says
  which check found it and which invariant it breaks.
- Every holder of a reference to an object is listed (chains, children, the
  root pin, KSM, migration, reclaim, PTEs).
- An object has one name from its allocation to its free, the same in the
  finding, the anon_vma hierarchy and the address map; a reused slot gets a
  new one.
- Every counterexample printed as a scenario reproduces its finding with
  ``rmapcheck run``: the header carries the checker's settings.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

import designs_defects as dd
import rmapcheck.check.model as check_model
from rmapcheck.check.checker import Checker
from rmapcheck.check.model import SEED_BOUNDS, Bounds, KernelModel
from rmapcheck.check.trace import judged_run, trace_scenario
from rmapcheck.commands.seed import run_seed
from rmapcheck.live.runner import LiveError, LiveRunner
from rmapcheck.model import findings, invariants, kthreads, migrate, slab, vmscan
from rmapcheck.model.mm_types import anon_vma, folio
from rmapcheck.report.finding import format_finding
from rmapcheck.report.holders import Namer, find_object, reference_holders
from rmapcheck.scenario import execute
from rmapcheck.scenario.ops import Settings
from rmapcheck.scenario.parse import ScenarioError, dump_scenario, parse_scenario
from rmapcheck.scenario.render import address_map, anon_vma_tree, object_symbol, vma_namer

#: a parent and a child sharing a written page; KSM merges; processes exit and unmap
KSM_EXIT = Bounds(processes=2, regions=1, pages=1, contents=1, depth=8, forked=True, mergeable=True,
                  ops=("write", "exit", "ksm_scan", "munmap"))
#: B6 (kernel history): the migration bounds of the seed with the RCU windows open
B6 = replace(SEED_BOUNDS["migration"], rcu_windows=True)


def rmapcheck(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1", TERM="dumb")
    return subprocess.run([sys.executable, "-m", "rmapcheck", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def seed_rows():
    return run_seed()


def _machinery() -> set[str]:
    # Names of the model's own functions that must never appear as kernel
    # functions: KASAN's shadow, the invariants, the scheduler of kernel
    # threads, the phase drivers and checks of walks, the runner, the checker.
    names = set()
    for mod in (findings, slab, invariants, kthreads, execute, check_model):
        for n, v in vars(mod).items():
            if (inspect.isfunction(v) or inspect.isclass(v)) and v.__module__ == mod.__name__:
                names.add(n)
                if inspect.isclass(v):
                    names.update(m for m, f in vars(v).items() if inspect.isfunction(f))
    names.update({"migrate_step", "reclaim_step", "check_rmap_walk", "page_table_mappings", "rmap_walk_promised", "ksm_full_scans",
                  "kthread_step", "kasan_check", "alloc", "free"})
    return names


def _check_chain(e):
    chain = e.chain
    assert chain or e.detector, e
    bad = _machinery()
    for name in chain:
        assert name.isidentifier() and not (name.startswith("_") and not name.startswith("__")), chain
        assert name not in bad, (name, chain)
    if chain:
        assert e.function == chain[0] and not e.detector


# --- call chains ------------------------------------------------------------------------


def test_a_use_after_free_inside_anon_vma_free_names_it_and_every_caller(monkeypatch):
    # Without the child's pin on its root, the child's unmap frees the root
    # that KSM's rmap_item still reaches through the child: the put KSM's scan
    # makes frees the child, and anon_vma_free() touches its freed root.
    dd.register(monkeypatch, "defect-use-after-free")
    m = KernelModel("defect-use-after-free", KSM_EXIT)
    res = Checker(m).spawn_bfs().join()
    f = next(f for f in res.findings if f.property == "use-after-free" and "ksm_do_scan" in f.error.chain)
    assert f.function == "anon_vma_free"
    assert f.error.chain[:4] == ("anon_vma_free", "__put_anon_vma", "put_anon_vma", "remove_node_from_stable_tree")
    _check_chain(f.error)
    texts = [op.text() for op in f.trace]
    report = format_finding(f.error, texts, len(texts)).splitlines()
    assert report[0].startswith("BUG: KASAN: use-after-free in anon_vma_free: ")
    assert report[1].startswith("  call chain: anon_vma_free <- __put_anon_vma <- put_anon_vma "
                                "<- remove_node_from_stable_tree <- ")
    # dedup by property and function: each pair is reported once
    keys = [(f.property, f.function) for f in res.findings]
    assert len(keys) == len(set(keys))


def test_no_chain_names_a_function_of_the_model(seed_rows, monkeypatch):
    errors = [f.error for _d, _p, _m, res in seed_rows for f in res.findings]
    for name in sorted(dd.DEFECTS):
        dd.register(monkeypatch, name)
        bounds = dd.DEFECTS[name][3]
        errors += [f.error for f in Checker(KernelModel(name, bounds)).spawn_bfs().join().findings
                   if f.property != "model-error"]
    assert len(errors) > 20
    for e in errors:
        _check_chain(e)


def test_the_seed_findings_name_the_access_and_the_path_to_it(seed_rows):
    got = {(d, p, f.property): f.error for d, p, _m, res in seed_rows for f in res.findings}
    # B0 through KSM: KSM's drop locks the child's root, freed at exit
    b0 = got["linux-2.6.36-pre", "ksm", "use-after-free"]
    assert b0.chain[:4] == ("down_write", "anon_vma_lock_write", "atomic_dec_and_lock", "drop_anon_vma")
    assert b0.chain[-2:] == ("ksm_do_scan", "ksm_scan_thread")
    # B4: the walk's unlock of a root it never locked, inside folio_referenced()
    b4 = got["linux-2.6.36-pre", "reclaim", "lock-misuse"]
    assert b4.chain == ("page_unlock_anon_vma", "rmap_walk", "folio_referenced")


def test_a_missed_walk_names_the_walk_and_its_caller(monkeypatch):
    dd.register(monkeypatch, "defect-missed-rmap-walk")
    res = Checker(KernelModel("defect-missed-rmap-walk", dd.DEFECTS["defect-missed-rmap-walk"][3])).spawn_bfs().join()
    e = res.findings[0].error
    # the walk returned before the model compared it with the page tables
    assert e.chain[:3] == ("try_to_migrate", "migrate_folio_unmap", "migrate_pages_batch")
    assert isinstance(e.obj, folio)


def test_an_invariant_finding_says_which_check_found_it(seed_rows):
    res = next(res for d, p, _m, res in seed_rows if (d, p) == ("linux-2.6.36-seed-0526", "reuse"))
    f = next(f for f in res.findings if f.property == "leak")
    e = f.error
    assert (e.detector, e.invariant, e.chain) == ("check_invariants", "kmemleak", ())
    texts = [op.text() for op in f.trace]
    report = format_finding(e, texts, len(texts)).splitlines()
    assert report[0].startswith("kmemleak: unreferenced object anon_vma#1")
    assert report[1].startswith(f"  found by check_invariants after step {len(texts)} (munmap P0 A[0])")
    assert report[2] == "  invariant: kmemleak: every allocated object is reachable"
    assert report[3] == "  object: anon_vma#1 (b)"
    # B1: the slot of the over-dropped root is reused by the leaking anon_vma
    assert report[4].startswith(f"  Allocated by: step {f.setup + 4} (write P0 A[0] 1: ")
    assert report[5].startswith(f"  Freed before by: step {f.setup + 2} (munmap P0 A[0]: ")
    assert report[5].endswith(", as anon_vma#0 (the slot was reused)")
    assert not any(" in check_invariants" in line for line in report)
    inv = next(f for f in res.findings if f.property == "invariant").error
    assert inv.detector == "check_invariants" and inv.invariant == "I3" and isinstance(inv.obj, anon_vma)


def test_a_model_error_shows_where_in_the_kernel_it_happened(monkeypatch):
    dd.register(monkeypatch, "defect-model-error")
    res = Checker(KernelModel("defect-model-error", dd.DEFECTS["defect-model-error"][3])).spawn_bfs().join()
    f = res.findings[0]
    texts = [op.text() for op in f.trace]
    report = format_finding(f.error, texts, len(texts)).splitlines()
    assert report[0].startswith("model error: AttributeError")
    assert report[1].startswith("  call chain: do_anonymous_page <- ")


def test_a_design_file_outside_the_package_names_its_functions_by_their_entries(tmp_path):
    # A user's design: its replacement of __put_anon_vma has another name and
    # no docstring, and calls a private helper of its own.
    path = tmp_path / "mybug.py"
    path.write_text(textwrap.dedent('''
        BASE = "linux-6.18"


        def _drop_root(k, root, function):
            root.refcount -= 1
            if root.refcount <= 1:
                k.ops.anon_vma_free(k, root, function)


        def my_put(k, av, function="__put_anon_vma"):
            root = av.root
            k.ops.anon_vma_free(k, av, function)
            if root is not av:
                _drop_root(k, root, function)


        REPLACE = {"__put_anon_vma": my_put}
    '''))
    res = Checker(KernelModel(str(path), dd.FORK_EXIT)).spawn_bfs().join()
    f = next(f for f in res.findings if f.property == "vm-bug-on")
    assert f.error.chain[:3] == ("anon_vma_free", "__put_anon_vma", "put_anon_vma")
    _check_chain(f.error)


# --- who holds a reference ------------------------------------------------------------

HOLDERS = """
ksm_baseline: false
regions:
  A: 4
steps:
  - prctl P0 merge 1
  - mmap P0 A rw
  - write P0 A[0] 1
  - write P0 A[1] 1
  - write P0 A[2] 2
  - write P0 A[3] 3
  - fork P0 P1
  - ksm_scan 2
  - migrate_start P0 A[2]
  - kthread 0
  - kthread 0
  - reclaim_start P1 A[3]
"""


def _run(text, design="linux-6.18"):
    s = parse_scenario(text)
    outs = list(judged_run(s, design))
    assert all(out.findings == [] for _i, _op, out in outs)
    return s, outs[-1][2].state


def test_every_holder_of_an_anon_vma_is_listed():
    # P0's anon_vma: its VMA and chains, the child's (P1's) parent and root
    # links, the pages it is the mapping of, KSM's rmap_items of the merged
    # pages, the migration's pin and the reclaim walk's RCU read.
    s, r = _run(HOLDERS)
    k = r.k
    p0 = k.tasks["P0"].mm
    root = next(v for v in p0.mmap if v.anon_vma is not None).anon_vma
    child = next(v for v in k.tasks["P1"].mm.mmap if v.anon_vma is not None).anon_vma
    assert child.root is root and child is not root
    held = {(type(h.holder).__name__, h.field) for h in reference_holders(k, root, Namer(r.mms(), s))}
    assert held == {("vm_area_struct", "anon_vma"), ("anon_vma_chain", "anon_vma"), ("anon_vma", "parent"),
                    ("anon_vma", "root"), ("folio", "mapping"), ("ksm_rmap_item", "anon_vma"),
                    ("MigrationState", "anon_vma"), ("ReclaimWalk", "anon_vma")}
    hs = reference_holders(k, root, Namer(r.mms(), s))
    chains = sorted(h.name for h in hs if type(h.holder).__name__ == "anon_vma_chain")
    assert [c.split(" of ")[1].split(" (")[0] for c in chains] == ["VMA P0 A [0,4)", "VMA P1 A [0,4)"]
    assert [h.holder for h in hs if h.field == "root"] == [child]
    assert sum(type(h.holder).__name__ == "ksm_rmap_item" for h in hs) == 2  # A[0] and A[1] merged


def test_every_holder_of_a_page_is_listed():
    s, r = _run(HOLDERS)
    k = r.k
    name = Namer(r.mms(), s)
    ksm_page = k.tasks["P0"].mm.pgtable[execute.ARENA_VPN][0]
    assert ksm_page.ksm
    held = sorted(h.name.split(" (")[0] + " ->" + h.field for h in reference_holders(k, ksm_page, name))
    assert held == ["ksm_stable_node#0 ->kpfn", "mm of P0 ->pgtable[A[0]]", "mm of P0 ->pgtable[A[1]]",
                    "mm of P1 ->pgtable[A[0]]", "mm of P1 ->pgtable[A[1]]"]
    # the page under migration, unmapped: the migration entries and the migration
    moving = k.migrations[0].src
    held = sorted(h.field for h in reference_holders(k, moving, name))
    assert held == ["pgtable[A[2]] (migration entry)", "pgtable[A[2]] (migration entry)", "src"]


def test_replay_shows_the_holders_after_each_step(tmp_path):
    # B0 through KSM: the root freed at exit is still the child's root, and
    # KSM's rmap_item still holds the child.
    p = rmapcheck("check", "--design", "linux-2.6.36-pre", "--processes", "2", "--pages", "1", "--depth", "8",
                  "--forked", "--mergeable", "--ops", "write,exit,ksm_scan", "--no-rcu-windows",
                  "--save-dir", "t", cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    trace = next((tmp_path / "t").glob("*use-after-free*.json"))
    out = rmapcheck("replay", str(trace)).stdout
    assert "holders of anon_vma#0 (a), freed" in out
    tail = out[out.index("\nBUG: KASAN"):]
    assert "  holders of anon_vma#1 (b)" in tail and "ksm_rmap_item#" in tail
    steps = out.split("\nstep ")
    assert sum("holders of anon_vma#1 (b)" in block for block in steps) >= 3  # followed over the steps


# --- stable names -----------------------------------------------------------------------

REUSE = """
regions:
  A: 2
steps:
  - mmap P0 A rw
  - write P0 A[0] 1
  - fork P0 P1
  - write P1 A[0] 2
  - exit P1
  - munmap P0 A
  - mmap P0 A rw
  - write P0 A[1] 3
"""


def test_an_object_keeps_its_name_and_a_reused_slot_gets_a_new_one():
    s = parse_scenario(REUSE)
    names: dict[int, str] = {}
    reused = False
    for _i, _op, out in judged_run(s, "linux-6.18"):
        k = out.state.k
        for av in k.anon_vma_cachep.live():
            key = (id(av), av._alloc[2])
            if id(av) in names and names[id(av)] != av.kname():
                reused = True  # the same memory, allocated again
                assert av._free is not None and av._free[2] != av._alloc[2]
            names[id(av)] = av.kname()
            assert av.kname() == f"anon_vma#{key[1]}"
        # one name in the map, the hierarchy and the reports
        mms = out.state.mms()
        text = address_map(mms, s)
        tree = anon_vma_tree(k.anon_vma_cachep.live(), vma_namer(mms, s))
        for comm, mm in mms.items():
            for v in mm.mmap:
                if v.anon_vma is not None and v.vm_start >= execute.ARENA_VPN:
                    sym = object_symbol(v.anon_vma)
                    block = next(b for b in text.split("\n\n") if b.startswith(comm))
                    assert sym in next(line for line in block.splitlines() if line.startswith("anon_vma:"))
                    assert f"\n{sym} {v.anon_vma.kname()}: " in "\n" + tree
                    assert Namer(mms, s)(v.anon_vma) == f"{v.anon_vma.kname()} ({sym})"
    assert reused, "the scenario reuses a freed anon_vma slot"


def test_find_object_by_name_across_replays():
    # Two runs of one scenario are two sets of objects; an object of the
    # first is found in the second by its name (replay's two passes).
    s = parse_scenario(REUSE)
    found = []
    for _ in range(2):
        for i, _op, out in judged_run(s, "linux-6.18"):
            if i == 4:
                objs = [find_object(out.state.k, "anon_vma", n) for n in (0, 1, 2)]
                found.append((objs, [o.kname() for o in objs[:2]], objs[1].root is objs[0]))
    (a, a_names, a_root), (b, b_names, b_root) = found
    assert a[2] is None and a[0] is not b[0] and a_root and b_root
    assert a_names == b_names == ["anon_vma#0", "anon_vma#1"]


# --- traces as scenarios -------------------------------------------------------------------


def _reproduces(sc, design, want):
    got = set()
    for _i, _op, out in judged_run(sc, design):
        got |= {(p, fn) for p, fn, _msg, _e in out.findings}
    return want in got


def test_every_seed_and_b6_trace_reproduces_as_a_scenario(seed_rows):
    cases = [(d, m, res) for d, _p, m, res in seed_rows]
    m = KernelModel("linux-2.6.36", B6)
    cases.append(("linux-2.6.36", m, Checker(m).spawn_bfs().join()))
    assert any(f.property == "use-after-free" for f in cases[-1][2].findings)  # B6
    needed = 0
    n = 0
    for d, m, res in cases:
        for f in res.findings:
            sc = trace_scenario(m, f)
            text = dump_scenario(sc)
            parsed = parse_scenario(text, "<trace>")
            assert parsed.settings == sc.settings and [op.text() for op in parsed.ops] == [op.text() for op in f.trace]
            assert _reproduces(parsed, d, (f.property, f.function)), text
            n += 1
            if not _reproduces(replace(parsed, settings=Settings()), d, (f.property, f.function)):
                needed += 1
    assert n >= 14
    assert needed >= 1, "some trace needs its header (RCU windows closed) to reproduce"


def test_run_reproduces_a_printed_trace_and_diff_refuses_its_settings(tmp_path):
    p = rmapcheck("check", "--design", "linux-2.6.36-pre", "--processes", "2", "--pages", "1", "--depth", "8",
                  "--forked", "--ops", "write,exit,migrate", "--no-rcu-windows", "--save-dir", "t", cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    assert "  rcu_windows: false" in p.stdout.splitlines()
    for yaml in sorted((tmp_path / "t").glob("*.yaml")):
        # DESIGN-PROPERTY-FUNCTION-HASH8
        fn = yaml.stem.split("-use-after-free-")[1].rsplit("-", 1)[0]
        r = rmapcheck("run", str(yaml), "--design", "linux-2.6.36-pre", "--quiet")
        assert r.returncode == 1 and f"BUG: KASAN: use-after-free in {fn}: " in r.stdout, r.stdout + r.stderr
    d = rmapcheck("diff", str(yaml), "--design", "linux-2.6.36-pre")
    assert d.returncode == 2 and "Traceback" not in d.stderr
    assert d.stderr.strip().count("\n") == 0 and "'rcu_windows: false' is a model-only setting" in d.stderr


def test_the_live_runner_refuses_model_only_settings():
    s = parse_scenario("config: {CONFIG_KSM: n}\nregions:\n  A: 1\nsteps:\n  - mmap P0 A rw\n")
    with pytest.raises(LiveError, match="'config: {CONFIG_KSM: n}' is a model-only setting"):
        LiveRunner(s)


def test_run_honours_the_design_switches_of_the_header(tmp_path):
    body = "regions:\n  A: 1\nsteps:\n  - prctl P0 merge 1 => EINVAL\n"
    f = tmp_path / "noksm.yaml"
    f.write_text("config: {CONFIG_KSM: n}\n" + body)
    assert rmapcheck("run", str(f), "--quiet").returncode == 0
    f.write_text(body)
    assert rmapcheck("run", str(f), "--quiet").returncode == 1
    f.write_text("config: {CONFIG_NOPE: y}\n" + body)
    p = rmapcheck("run", str(f))
    assert p.returncode == 2 and str(f) in p.stderr and "CONFIG_NOPE" in p.stderr
    assert len(p.stderr.splitlines()) == 1


@pytest.mark.parametrize("header,line,words", [
    ("rcu_windows: maybe", 1, "rcu_windows must be true or false"),
    ("ksm_baseline: 0", 1, "ksm_baseline must be true or false"),
    ("config: [CONFIG_KSM]", 1, "config must be a mapping"),
    ("config: {KSM: n}", 1, "bad config switch 'KSM'"),
    ("config:\n  CONFIG_KSM: n\n  CONFIG_KSM: y", 3, "duplicate config switch"),
    ("config: {CONFIG_KSM: [n]}", 1, "expected y, n or an integer"),
])
def test_a_bad_header_is_one_line_with_its_line(header, line, words):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(header + "\nregions:\n  A: 1\nsteps:\n  - mmap P0 A rw\n", "h.yaml")
    assert e.value.line == line and words in e.value.message


def test_a_printed_header_reads_back():
    st = Settings(rcu_windows=False, config=(("CONFIG_KSM", "n"), ("sysctl_max_map_count", "10")),
                  ksm_baseline=False)
    text = dump_scenario(replace(parse_scenario("regions:\n  A: 1\nsteps: []\n"), settings=st))
    assert text.splitlines()[1:4] == ["rcu_windows: false", "config: {CONFIG_KSM: n, sysctl_max_map_count: 10}",
                                      "ksm_baseline: false"]
    assert parse_scenario(text).settings == st
    assert "rcu_windows" not in dump_scenario(parse_scenario("regions:\n  A: 1\nsteps: []\n"))


def test_migrate_and_vmscan_drivers_are_not_kernel_functions():
    # the phase drivers name the kernel function they stand for, or none
    assert findings.kernel_function_name(migrate.migrate_step.__code__, migrate.__name__, vars(migrate)) == \
        "migrate_pages_batch"
    for fn in (vmscan.check_rmap_walk, vmscan.rmap_walk_promised, vmscan.reclaim_walk_checked):
        assert findings.kernel_function_name(fn.__code__, vmscan.__name__, vars(vmscan)) is None


def test_a_step_the_language_cannot_write_is_pointed_out():
    # An injected allocation failure is a flag of the step; a scenario that
    # cannot write it would not reproduce, and the checker says so.
    from rmapcheck.check.trace import unsaid_steps
    from rmapcheck.scenario.ops import Op, Region, Scenario

    ops = [Op("mmap", "P0", "A", 0, 1, prot="rw", flags=frozenset({"fixed"})),
           Op("write", "P0", "A", 0, 1, value=1, flags=frozenset({"fail=anon_vma_alloc"}))]
    sc = Scenario("x", {"A": Region("A", 1, 0)}, ops)
    said = parse_scenario(dump_scenario(sc)).ops
    assert unsaid_steps(sc) == [i for i, (a, b) in enumerate(zip(ops, said), 1) if a.flags != b.flags]
