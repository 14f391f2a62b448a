"""``rmapcheck bench``: speed figures, each measured in this run, as ``bench: <name> <value> <unit>``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rmapcheck.check.hunt import HUNT_BUDGET, HUNT_DEPTH
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.generate import random_scenario
from rmapcheck.scenario.ops import Scenario

if TYPE_CHECKING:
    from rmapcheck.check.checker import Result

__all__ = ["PARTS", "STANDARD_NEIGHBOURS", "command", "default_figures", "history_figures", "hunt_figures",
           "ksm_model_vs_live", "model_ops_per_s", "model_vs_live", "parallel_figures", "part_costs",
           "planted_figures", "side_by_side", "standard_neighbours", "standard_rate"]


def model_ops_per_s(seeds: range, check: bool) -> tuple[float, int, float]:
    """System-call-level operations per second of the model on random scenarios.

    Only the operations are timed (with the invariant checks after each when
    ``check``); creating each scenario's kernel is timed apart.

    :returns: ``(operations per second, operations, microseconds per kernel creation)``.
    """
    from rmapcheck.model.invariants import check_invariants

    scenarios = [random_scenario(s) for s in seeds]
    ops = 0
    op_time = setup_time = 0.0
    clock = time.perf_counter
    for s in scenarios:
        t0 = clock()
        r = ModelRunner(s, check=check)
        t1 = clock()
        for op in s.ops:
            r.perform(op)
            if check:
                check_invariants(r.k)
        op_time += clock() - t1
        setup_time += t1 - t0
        ops += len(s.ops)
    return ops / op_time, ops, setup_time / len(scenarios) * 1e6


def model_vs_live(seeds: range, make: Callable[[int], Scenario] = random_scenario) -> float:
    """Model time over live-kernel time for the same scenarios, observation excluded."""
    from rmapcheck.live.runner import LiveRunner

    model_t = live_t = 0.0
    for sd in seeds:
        s = make(sd)
        r = ModelRunner(s, check=False)
        t0 = time.perf_counter()
        for op in s.ops:
            r.perform(op)
        model_t += time.perf_counter() - t0
        with LiveRunner(s) as live:
            for op in s.ops:
                live.step(op)
            live_t += live.op_seconds
    return model_t / live_t


def ksm_model_vs_live(seeds: range) -> float:
    """:func:`model_vs_live` over random KSM scenarios (``rmapcheck conform``'s).

    The live time includes ksmd's full scans (each started and awaited by the
    runner, see :class:`rmapcheck.live.ksm.KsmSession`); the model's its
    scans.
    """
    from rmapcheck.commands.conform import ksm_scenario

    return model_vs_live(seeds, ksm_scenario)


def ksm_full_scan_pages_per_s(pages: int = 256, scans: int = 40) -> float:
    """Pages ksmd scans per second in the model, over ``scans`` full scans from the first.

    Two processes share a region of ``pages`` pages with eight distinct
    contents: the first scans record checksums and merge, the later ones find
    the pages stable (the common case of a settled system).
    """
    from rmapcheck.model.ksm import ksm_full_scans, ksm_state_of, ksm_store
    from rmapcheck.scenario.ops import Op, Region

    sc = Scenario("bench-ksm", {"A": Region("A", pages, 0)}, [])
    r = ModelRunner(sc, check=False)
    ksm_store(r.k, "smart_scan", 0)  # as the live runner scans: every page, every pass
    r.perform(Op("prctl", "P0", value=1))
    r.perform(Op("mmap", "P0", "A", 0, pages, prot="rw"))
    for i in range(pages):
        r.perform(Op("write", "P0", "A", i, 1, value=1 + i % 8))
    r.perform(Op("fork", "P0", child="P1"))
    st = ksm_state_of(r.k)
    before = st.pages_scanned
    t0 = time.perf_counter()
    ksm_full_scans(r.k, scans)
    return (st.pages_scanned - before) / (time.perf_counter() - t0)


def restore_vs_copy_ratio(depth: int = 3) -> float:
    """Time to put a copy back (``Snapshot.restore``) over time to unpickle a fresh copy.

    Over every action of every state of the standard preset's first
    ``depth`` levels: both are timed around the same actions of the same states.
    """
    from rmapcheck.check.model import PRESETS, KernelModel
    from rmapcheck.check.world import Snapshot

    m = KernelModel("linux-6.18", PRESETS["standard"])
    level, restore, copy = [m.dumps(m.init_state())], 0.0, 0.0
    for _ in range(depth):
        nxt = []
        for data in level:
            r = m.loads(data)
            snap = Snapshot(r)
            for op in m.actions(r):
                t0 = time.perf_counter()
                m.loads(data)
                t1 = time.perf_counter()
                out = m.apply(r, op, judge=False)
                if not out.fatal and not out.blocked:
                    nxt.append(m.dumps(r))
                t2 = time.perf_counter()
                snap.restore()
                restore += time.perf_counter() - t2
                copy += t1 - t0
        level = nxt
    return restore / copy


def c_walk_ratios(depth: int = 4, rounds: int = 5) -> dict[str, float]:
    """How many times the C walks are faster than the Python ones, on the same states.

    The states are those of the standard preset's first ``depth`` levels.
    ``fingerprint``: the Python form marshalled and hashed, against the C
    walk's bytes hashed (``world.fingerprint``); ``snapshot``: recording
    and restoring a state with ``SnapshotPy`` against ``Snapshot`` in C.
    Each is the best of ``rounds`` rounds over all the states, taken in
    turns. Without the C extensions built the ratios are not measured (an
    empty dict).
    """
    import hashlib
    import marshal

    from rmapcheck.check import world
    from rmapcheck.check.model import PRESETS, KernelModel

    if world.CANONICAL_WALK != "C" or world.SNAPSHOT_WALK != "C":
        return {}
    m = KernelModel("linux-6.18", PRESETS["standard"])
    states, level = [], [m.dumps(m.init_state())]
    for _ in range(depth):
        nxt = []
        for data in level:
            for op in m.actions(m.loads(data)):
                r = m.loads(data)
                out = m.apply(r, op, judge=False)
                if not out.fatal and not out.blocked:
                    nxt.append(m.dumps(r))
        level = nxt
        states.extend(m.loads(d) for d in level)

    def python_fp() -> None:
        for r in states:
            hashlib.blake2b(marshal.dumps(world.canonical(r), 2), digest_size=12).digest()

    def c_fp() -> None:
        for r in states:
            world.fingerprint(r)

    def snap(cls: Any) -> Callable[[], None]:
        def run() -> None:
            for r in states:
                cls(r).restore()
        return run

    pairs = {"fingerprint": (python_fp, c_fp), "snapshot": (snap(world.SnapshotPy), snap(world.Snapshot))}
    best = {name: [float("inf"), float("inf")] for name in pairs}
    for _ in range(rounds):
        for name, fns in pairs.items():
            for i, fn in enumerate(fns):
                t0 = time.process_time()
                fn()
                best[name][i] = min(best[name][i], time.process_time() - t0)
    return {name: py / c for name, (py, c) in best.items()}


def standard_rate(workers: int = 1) -> Result:
    """``rmapcheck check --design linux-6.18 --preset standard``, breadth-first: its :class:`Result`.

    The rate is ``distinct / seconds``. ``workers`` is the number of
    breadth-first worker processes (1: the search in this process).
    """
    from rmapcheck.check.checker import Checker
    from rmapcheck.check.model import PRESETS, KernelModel

    return Checker(KernelModel("linux-6.18", PRESETS["standard"])).parallel(workers).spawn_bfs().join()


#: the parts of the checker's cost per transition that :func:`part_costs` times
PARTS = ("fingerprint", "kernel", "invariants", "restore", "copy", "pickle", "actions")


def part_costs(depth: int | None = None) -> tuple[dict[str, float], int]:
    """Microseconds per transition of each of :data:`PARTS`, on the standard preset, and the transitions.

    Each part is timed by wrapping it (which adds a little to each):
    ``fingerprint`` the canonical fingerprints, ``kernel`` applying the
    actions (the kernel functions), ``invariants`` judging new states,
    ``restore`` putting the copy back, ``copy`` decompressing, unpickling and
    snapshotting a state to expand, ``pickle`` pickling and compressing new
    states, ``actions`` computing a state's actions. ``depth`` cuts the
    preset's depth.
    """
    from dataclasses import replace

    from rmapcheck.check import world
    from rmapcheck.check.checker import Checker
    from rmapcheck.check.compact import Frontier
    from rmapcheck.check.model import PRESETS, KernelModel

    b = PRESETS["standard"] if depth is None else replace(PRESETS["standard"], depth=depth)
    m = KernelModel("linux-6.18", b)
    spent = dict.fromkeys(PARTS, 0.0)

    def timed(fn: Callable[..., Any], part: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                spent[part] += time.perf_counter() - t0
        return wrapper

    m.fingerprint = timed(m.fingerprint, "fingerprint")  # type: ignore[method-assign]
    m.apply = timed(m.apply, "kernel")  # type: ignore[method-assign]
    m.judge = timed(m.judge, "invariants")  # type: ignore[method-assign]
    m.actions = timed(m.actions, "actions")  # type: ignore[method-assign]
    m.loads = timed(m.loads, "copy")  # type: ignore[method-assign]
    m.dumps = timed(m.dumps, "pickle")  # type: ignore[method-assign]
    patched = [(world.Snapshot, "restore", "restore"), (world.Snapshot, "__init__", "copy"),
               (Frontier, "popleft", "copy"), (Frontier, "append", "pickle")]
    saved = [(cls, name, cls.__dict__[name]) for cls, name, _ in patched]
    for cls, name, part in patched:
        setattr(cls, name, timed(cls.__dict__[name], part))
    try:
        res = Checker(m).spawn_bfs().join()
    finally:
        for cls, name, fn in saved:
            setattr(cls, name, fn)
    return {p: spent[p] / res.states * 1e6 for p in PARTS}, res.states


def checker_figures(echo: Callable[[str], None]) -> None:
    """The model checker's figures: seed runs, the standard preset, memory per state."""
    from rmapcheck.check.checker import Checker
    from rmapcheck.check.model import PRESETS, SEED_BOUNDS, KernelModel

    def run(design: str, b: object, symmetry: bool = True) -> object:
        return Checker(KernelModel(design, b)).symmetry(symmetry).spawn_bfs().join()  # type: ignore[arg-type]

    b0 = run("linux-2.6.36-pre", SEED_BOUNDS["ksm"])
    echo(f"bench: seed_B0_seconds {b0.seconds:.3f} s")  # type: ignore[attr-defined]
    b0m = run("linux-2.6.36-pre", SEED_BOUNDS["migration"])
    echo(f"bench: seed_B0_migration_seconds {b0m.seconds:.3f} s")  # type: ignore[attr-defined]
    b1 = run("linux-2.6.36-seed-0526", SEED_BOUNDS["reuse"])
    echo(f"bench: seed_B1_seconds {b1.seconds:.3f} s")  # type: ignore[attr-defined]
    b4 = run("linux-2.6.36-pre", SEED_BOUNDS["reclaim"])
    echo(f"bench: seed_B4_seconds {b4.seconds:.3f} s")  # type: ignore[attr-defined]
    std = standard_rate(workers=1)
    echo(f"bench: standard_distinct_states {std.distinct} states")
    echo(f"bench: standard_states_per_s {std.distinct / std.seconds:.0f} states/s")
    echo(f"bench: bytes_per_state {std.bytes_per_state:.0f} bytes")
    costs, transitions = part_costs()
    for part in PARTS:
        echo(f"bench: standard_{part}_us_per_transition {costs[part]:.1f} us")
    echo(f"bench: standard_transitions {transitions} transitions")
    echo(f"bench: restore_vs_copy_ratio {restore_vs_copy_ratio():.2f} ratio")
    ratios = c_walk_ratios()
    if not ratios:
        echo("note: the C extensions are not built (no C compiler at install): the walks in C not measured")
    for name, ratio in ratios.items():
        echo(f"bench: {name}_python_vs_c_ratio {ratio:.2f} ratio")
    nosym = run("linux-2.6.36", SEED_BOUNDS["ksm"], symmetry=False)
    sym = run("linux-2.6.36", SEED_BOUNDS["ksm"])
    echo(f"bench: symmetry_reduction_ratio {nosym.distinct / sym.distinct:.2f} ratio")  # type: ignore[attr-defined]


def history_figures(echo: Callable[[str], None]) -> None:
    """``rmapcheck history``: the whole catalog, every row's two sides one after another.

    ``history_bugs_found N of M``: of the M rows, N found on their buggy
    design and clean on their fix at the same bounds; ``history_seconds``:
    the time of the whole table. A row not reproduced is named.
    """
    from rmapcheck.commands.history import history_rows, run_history

    results, seconds = run_history(history_rows())
    echo(f"bench: history_bugs_found {sum(rr.reproduced for rr in results)} of {len(results)}")
    echo(f"bench: history_seconds {seconds:.1f} s")
    for rr in results:
        if not rr.reproduced:
            echo(f"  {rr.row.bug} ({rr.row.design} -> {rr.row.fixed}): {rr.status}")


def side_by_side(runs: dict[str, Callable[[], object]], rounds: int = 2) -> dict[str, tuple[object, float]]:
    """Each exploration of ``runs`` in turn, ``rounds`` times over; the fastest result of each, with its CPU time.

    Taking turns puts the same load of the (shared) machine on each, and
    the same distinct states are checked: an exploration that disagrees
    with the first is refused. The CPU time is that of this process and of
    the worker processes it joined during the run (the time the work took
    whatever else the machine ran).

    :raises RuntimeError: two explorations of ``runs`` reach different
        numbers of distinct states.
    """
    import resource

    def cpu() -> float:
        return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                     resource.getrusage(resource.RUSAGE_CHILDREN)))

    best: dict[str, tuple[object, float]] = {}
    for _ in range(rounds):
        for name, run in runs.items():
            c0 = cpu()
            res = run()
            old = best.get(name)
            if old is None or res.seconds < old[0].seconds:  # type: ignore[attr-defined]
                best[name] = (res, cpu() - c0)
    counts = {name: (res.distinct, res.verdict) for name, (res, _c) in best.items()}  # type: ignore[attr-defined]
    if len(set(counts.values())) > 1:
        raise RuntimeError(f"the explorations disagree: {counts}")
    return best


def parallel_figures(echo: Callable[[str], None], workers: int = 2) -> None:
    """The standard preset on one worker and on ``workers``, side by side; then on a two-node Ray cluster.

    ``standard_states_per_s_1_worker`` and ``_2_workers``: distinct states
    per second of the same exhaustive exploration (one process, and the
    frontier partitioned over ``workers`` processes), each the faster of
    two runs taken in turns; ``parallel_speedup`` their ratio;
    ``parallel_cpu_ratio`` the CPU time of all the workers over that of the
    one process (the work the partitioning adds, which a loaded machine
    does not blur as it blurs the wall time). Then ``ray_speedup_2_nodes``:
    the same exploration on a Ray cluster of two nodes on this machine (one
    CPU each, an actor on each, their start included) against one process,
    in turns again. Without Ray installed a note says that figure was not
    measured.
    """
    from rmapcheck.check.checker import Checker
    from rmapcheck.check.model import PRESETS, KernelModel
    from rmapcheck.check.ray_backend import RayUnavailable, local_cluster

    def run(w: int | None, ray: str | None = None) -> Callable[[], object]:
        return lambda: standard_rate(w) if ray is None else Checker(
            KernelModel("linux-6.18", PRESETS["standard"])).parallel(w, ray).spawn_bfs().join()

    got = side_by_side({"one": run(1), "many": run(workers)})
    (one, one_cpu), (many, many_cpu) = got["one"], got["many"]
    echo(f"bench: standard_states_per_s_1_worker {one.distinct / one.seconds:.0f} states/s")  # type: ignore[attr-defined]
    echo(f"bench: standard_states_per_s_{workers}_workers "
         f"{many.distinct / many.seconds:.0f} states/s")  # type: ignore[attr-defined]
    echo(f"bench: parallel_speedup {one.seconds / many.seconds:.2f} ratio")  # type: ignore[attr-defined]
    echo(f"bench: parallel_cpu_ratio {many_cpu / one_cpu:.2f} ratio")
    try:
        with local_cluster(nodes=2, cpus=1) as address:
            got = side_by_side({"one": run(1), "ray": run(None, address)})
    except RayUnavailable:
        echo("note: Ray is not installed (pip install 'rmapcheck[ray]'): ray_speedup_2_nodes not measured")
        return
    echo(f"bench: ray_speedup_2_nodes {got['one'][0].seconds / got['ray'][0].seconds:.2f} ratio")  # type: ignore[attr-defined]


def default_figures(echo: Callable[[str], None]) -> None:
    """``rmapcheck check --design X`` without bounds (the default portfolio) on every bundled design.

    Per design: the seconds it takes, the distinct states of all its phases,
    and the findings after merging (``default_<design>_findings``; on
    linux-6.18 the figure must be 0).
    """
    from rmapcheck.check.portfolio import run_portfolio
    from rmapcheck.designs import DESIGNS

    for design in DESIGNS:
        pres = run_portfolio(design)
        key = design.replace("-", "_").replace(".", "_")
        echo(f"bench: default_{key}_seconds {pres.seconds:.1f} s")
        echo(f"bench: default_{key}_distinct_states {sum(pr.result.distinct for pr in pres.phases)} states")
        echo(f"bench: default_{key}_findings {len(pres.findings)} findings")


def hunt_figures(echo: Callable[[str], None], budget: float, seeds: tuple[int, ...] = (1, 2, 3)) -> None:
    """The hunting strategy from the empty start: CVE-2022-42703 found, linux-6.18 clean.

    The operations a user would pick (``--ops write,fork,exit,mprotect
    --processes 6``, one region of two pages, no ``--forked`` start), every
    core, ``--first``: the seconds to the first finding on
    ``linux-6.18-degree`` (shrinking included; the median over ``seeds``,
    ``inf`` for a run that found nothing within ``budget``), then
    ``linux-6.18`` for the whole ``budget``: the states it checked and what
    it found (nothing, if the model has no false alarm there).
    """
    import statistics

    from rmapcheck.check.checker import Checker
    from rmapcheck.check.model import Bounds, KernelModel

    b = Bounds(processes=6, regions=1, pages=2, contents=1, depth=HUNT_DEPTH, ops=("write", "fork", "exit", "mprotect"))
    times = []
    for seed in seeds:
        res = Checker(KernelModel("linux-6.18-degree", b)).first_violation().spawn_hunt(budget, None, seed).join()
        times.append(res.seconds if res.findings else float("inf"))
    echo(f"bench: cve_2022_42703_seconds {statistics.median(times):.1f} s")
    clean = Checker(KernelModel("linux-6.18", b)).spawn_hunt(budget, None, seeds[0]).join()
    echo(f"bench: hunt_linux_6_18_states {clean.states} states")
    echo(f"bench: hunt_linux_6_18_findings {len(clean.findings)} findings")


#: the neighbours of the standard preset at which linux-6.18 must be clean,
#: exhaustively (no false alarms): name → the ``rmapcheck check --preset
#: standard`` options that make it
STANDARD_NEIGHBOURS: dict[str, dict[str, object]] = {
    "forked": {"forked": True},
    "faults1": {"faults": 1},
    "mremap_regions2": {"ops": "write,read,fork,exit,mmap,munmap,mprotect,dontneed,ksm_scan,migrate,reclaim,mremap",
                        "regions": 2},
}


def standard_neighbours(echo: Callable[[str], None]) -> None:
    """linux-6.18 at each of :data:`STANDARD_NEIGHBOURS`: distinct states, seconds, findings (0: clean)."""
    from rmapcheck.check.checker import Checker
    from rmapcheck.check.model import KernelModel
    from rmapcheck.commands.check import bounds_from_options

    for name, opts in STANDARD_NEIGHBOURS.items():
        res = Checker(KernelModel("linux-6.18", bounds_from_options("standard", **opts))).spawn_bfs().join()
        echo(f"bench: standard_{name}_states {res.distinct} states")
        echo(f"bench: standard_{name}_seconds {res.seconds:.1f} s")
        echo(f"bench: standard_{name}_findings {len(res.findings)} findings")
        for f in res.findings:
            echo(f"  {f.property} in {f.function}: {f.message}")


def planted_figures(echo: Callable[[str], None], root: Path | None = None) -> None:
    """The proofs of the planted-defect corpus (``tests/planted/``, docs/checker.md "Planted defects").

    Each ``deep_*`` design is searched breadth-first and exhaustively at the
    bounds of the phase that finds it, the depth cut to seven: clean means
    it needs eight actions or more from the empty start
    (``planted_deep_depth7_clean`` of ``planted_deep_defects``, with the
    distinct states and the seconds of those searches). Each
    ``persistent_*`` design is searched exhaustively at its phase's bounds
    with ``--fault-mode first`` and with ``nth``: clean under both means
    only a failure of every attempt from the N-th on reaches it
    (``planted_persistent_single_failure_clean`` of
    ``planted_persistent_defects``). The corpus lives in the source
    checkout, beside the tests; without it nothing is measured and a note
    says so.

    :param root: the checkout (by default the one this module is in).
    """
    import importlib.util
    from dataclasses import replace

    from rmapcheck.check.checker import Checker
    from rmapcheck.check.model import Bounds, KernelModel
    from rmapcheck.check.portfolio import PHASES

    planted = (root or Path(__file__).resolve().parents[3]) / "tests" / "planted"
    spec = importlib.util.spec_from_file_location("planted_corpus", planted / "corpus.py")
    if spec is None or spec.loader is None or not (planted / "corpus.py").is_file():
        echo(f"note: no planted-defect corpus at {planted}: planted_* not measured")
        return
    corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpus)
    bounds = {p.name: p.bounds for p in PHASES}

    def clean(name: str, b: Bounds) -> tuple[bool, int]:
        res = Checker(KernelModel(str(planted / name), b)).spawn_bfs().join()
        return res.verdict == "clean" and res.exhausted, res.distinct

    t0 = time.perf_counter()
    runs = [clean(name, replace(bounds[phase], depth=7)) for name, (_prop, phase) in sorted(corpus.DEEP.items())]
    echo(f"bench: planted_deep_defects {len(runs)} defects")
    echo(f"bench: planted_deep_depth7_clean {sum(ok for ok, _n in runs)} defects")
    echo(f"bench: planted_deep_depth7_states {sum(n for _ok, n in runs)} states")
    echo(f"bench: planted_deep_depth7_seconds {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    single = [all(clean(name, replace(bounds[phase], fault_mode=mode))[0] for mode in ("first", "nth"))
              for name, (_prop, phase) in sorted(corpus.PERSISTENT.items())]
    echo(f"bench: planted_persistent_defects {len(single)} defects")
    echo(f"bench: planted_persistent_single_failure_clean {sum(single)} defects")
    echo(f"bench: planted_persistent_single_failure_seconds {time.perf_counter() - t0:.1f} s")


@click.command("bench")
@click.option("--scenarios", default=2000, show_default=True, help="random scenarios for the model figure")
@click.option("--live-scenarios", default=50, show_default=True, help="random scenarios for the live ratio")
@click.option("--ksm-scenarios", default=50, show_default=True,
              help="random KSM scenarios for the KSM live ratio")
@click.option("--hunt-budget", default=HUNT_BUDGET, show_default=True,
              help="seconds of each hunt (the CVE-2022-42703 runs stop at their finding)")
@click.option("--neighbours/--no-neighbours", default=True, show_default=True,
              help="the exhaustive runs of linux-6.18 next to the standard preset (the longest part)")
def command(scenarios: int, live_scenarios: int, ksm_scenarios: int, hunt_budget: float, neighbours: bool) -> None:
    """Measure the model's speed and its speed against the live kernel."""
    # The median of three runs over the same scenarios: one run on a shared
    # machine varies by a fifth.
    runs = sorted(model_ops_per_s(range(scenarios), check=False) for _ in range(3))
    rate, n, setup_us = runs[1]
    click.echo(f"bench: model_ops_per_s {rate:.0f} ops/s")
    rate_c, _, _ = model_ops_per_s(range(scenarios // 4), check=True)
    click.echo(f"bench: model_ops_per_s_with_invariants {rate_c:.0f} ops/s")
    click.echo(f"bench: model_ops_measured {n} ops")
    click.echo(f"bench: model_kernel_setup_us {setup_us:.1f} us")
    click.echo(f"bench: model_vs_live_time_ratio {model_vs_live(range(live_scenarios)):.3f} ratio")
    ratio = ksm_model_vs_live(range(ksm_scenarios))
    click.echo(f"bench: ksm_scenario_vs_live_time_ratio {ratio:.3f} ratio")
    click.echo(f"bench: ksm_full_scan_pages_per_s {ksm_full_scan_pages_per_s():.0f} pages/s")
    checker_figures(click.echo)
    history_figures(click.echo)
    parallel_figures(click.echo)
    planted_figures(click.echo)
    default_figures(click.echo)
    hunt_figures(click.echo, hunt_budget)
    if neighbours:
        standard_neighbours(click.echo)
