"""``rmapcheck bench``: speed figures, each measured in this run, as ``bench: <name> <value> <unit>``."""

from __future__ import annotations

import time
from collections.abc import Callable

import click

from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.generate import random_scenario
from rmapcheck.scenario.ops import Scenario

__all__ = ["command", "ksm_model_vs_live", "model_ops_per_s", "model_vs_live"]


def model_ops_per_s(seeds: range, check: bool) -> tuple[float, int]:
    """System-call-level operations per second of the model on random scenarios."""
    scenarios = [random_scenario(s) for s in seeds]
    ops = 0
    t0 = time.perf_counter()
    for s in scenarios:
        r = ModelRunner(s, check=check)
        for op in s.ops:
            r.perform(op)
            if check:
                from rmapcheck.model.invariants import check_invariants
                check_invariants(r.k)
        ops += len(s.ops)
    return ops / (time.perf_counter() - t0), ops


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


@click.command("bench")
@click.option("--scenarios", default=2000, show_default=True, help="random scenarios for the model figure")
@click.option("--live-scenarios", default=50, show_default=True, help="random scenarios for the live ratio")
@click.option("--ksm-scenarios", default=50, show_default=True,
              help="random KSM scenarios for the KSM live ratio")
def command(scenarios: int, live_scenarios: int, ksm_scenarios: int) -> None:
    """Measure the model's speed and its speed against the live kernel."""
    rate, n = model_ops_per_s(range(scenarios), check=False)
    click.echo(f"bench: model_ops_per_s {rate:.0f} ops/s")
    rate_c, _ = model_ops_per_s(range(scenarios // 4), check=True)
    click.echo(f"bench: model_ops_per_s_with_invariants {rate_c:.0f} ops/s")
    click.echo(f"bench: model_ops_measured {n} ops")
    click.echo(f"bench: model_vs_live_time_ratio {model_vs_live(range(live_scenarios)):.3f} ratio")
    ratio = ksm_model_vs_live(range(ksm_scenarios))
    click.echo(f"bench: ksm_scenario_vs_live_time_ratio {ratio:.3f} ratio")
