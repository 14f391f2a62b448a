"""``rmapcheck bench``: speed figures, each measured in this run, as ``bench: <name> <value> <unit>``."""

from __future__ import annotations

import time
from collections.abc import Callable

import click

from rmapcheck.check.hunt import HUNT_BUDGET, HUNT_DEPTH
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.generate import random_scenario
from rmapcheck.scenario.ops import Scenario

__all__ = ["command", "hunt_figures", "ksm_model_vs_live", "model_ops_per_s", "model_vs_live"]


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
    std = run("linux-6.18", PRESETS["standard"])
    echo(f"bench: standard_distinct_states {std.distinct} states")  # type: ignore[attr-defined]
    echo(f"bench: standard_states_per_s {std.distinct / std.seconds:.0f} states/s")  # type: ignore[attr-defined]
    echo(f"bench: bytes_per_state {std.bytes_per_state:.0f} bytes")  # type: ignore[attr-defined]
    echo(f"bench: restore_vs_copy_ratio {restore_vs_copy_ratio():.2f} ratio")
    nosym = run("linux-2.6.36", SEED_BOUNDS["ksm"], symmetry=False)
    sym = run("linux-2.6.36", SEED_BOUNDS["ksm"])
    echo(f"bench: symmetry_reduction_ratio {nosym.distinct / sym.distinct:.2f} ratio")  # type: ignore[attr-defined]


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


@click.command("bench")
@click.option("--scenarios", default=2000, show_default=True, help="random scenarios for the model figure")
@click.option("--live-scenarios", default=50, show_default=True, help="random scenarios for the live ratio")
@click.option("--ksm-scenarios", default=50, show_default=True,
              help="random KSM scenarios for the KSM live ratio")
@click.option("--hunt-budget", default=HUNT_BUDGET, show_default=True,
              help="seconds of each hunt (the CVE-2022-42703 runs stop at their finding)")
def command(scenarios: int, live_scenarios: int, ksm_scenarios: int, hunt_budget: float) -> None:
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
    hunt_figures(click.echo, hunt_budget)
