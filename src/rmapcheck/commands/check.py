"""``rmapcheck check``: explore a design within bounds and report every violated property."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rmapcheck.check.checker import Checker, Progress, Result
from rmapcheck.check.hunt import HUNT_BUDGET, HUNT_DEPTH
from rmapcheck.check.model import PRESETS, Bounds, KernelModel
from rmapcheck.check.trace import save_trace
from rmapcheck.commands.common import UserError, check_design
from rmapcheck.designs import DesignError, config_text, design_config
from rmapcheck.report.finding import format_finding
from rmapcheck.scenario.ops import Scenario
from rmapcheck.scenario.parse import dump_scenario

__all__ = ["OP_CHOICES", "bounds_from_options", "command", "print_result", "run_check"]

OP_CHOICES = ("write", "read", "fork", "exit", "mmap", "munmap", "mprotect", "mremap", "dontneed", "ksm_scan",
              "ksmd", "migrate", "reclaim")


def bounds_from_options(preset: str | None, **opts: object) -> Bounds:
    """Bounds from a preset, overridden by the options given."""
    if preset is not None and preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r} (known: {', '.join(sorted(PRESETS))})")
    b = PRESETS[preset] if preset else Bounds()
    kw = {k: v for k, v in opts.items() if v is not None}
    if "ops" in kw:
        ops = tuple(x.strip() for x in str(kw["ops"]).split(",") if x.strip())
        for o in ops:
            if o not in OP_CHOICES:
                raise UserError(f"unknown operation {o!r} in --ops (known: {', '.join(OP_CHOICES)})")
        kw["ops"] = ops
    for name in ("processes", "regions", "pages", "contents", "depth"):
        if name in kw and int(kw[name]) < 1:  # type: ignore[call-overload]
            raise UserError(f"--{name} must be at least 1")
    return Bounds(**{**b.__dict__, **kw})


def _progress(p: Progress) -> None:
    end = "\n" if p.done else "\r"
    click.echo(f"  states {p.states}  distinct {p.distinct}  depth {p.depth}  "
               f"{p.rate:.0f} distinct/s", err=True, nl=False)
    click.echo(end, err=True, nl=False)


def run_check(design: str, bounds: Bounds, strategy: str = "bfs", first: bool = False,
              timeout: float | None = None, seed: int = 0, runs: int = 200,
              progress: bool = False, config: tuple[str, ...] = (), budget: float | None = None,
              workers: int | None = None) -> tuple[KernelModel, Result]:
    """Run one check and return the model and its result.

    :param config: ``NAME=VALUE`` settings of the design's switches.
    :param budget: seconds of ``strategy`` ``hunt`` (default
        :data:`~rmapcheck.check.hunt.HUNT_BUDGET`).
    :param workers: worker processes of ``hunt`` (default: one per core).
    """
    if budget is not None and budget <= 0:
        raise UserError("--budget must be more than 0 seconds")
    if workers is not None and workers < 1:
        raise UserError("--workers must be at least 1")
    check_design(design)
    try:
        settings = design_config(design, config)
    except DesignError as e:
        raise UserError(str(e)) from None
    m = KernelModel(design, bounds, settings)
    c = Checker(m).first_violation(first).timeout(timeout)
    if progress:
        c.report(_progress)
    if strategy == "bfs":
        return m, c.spawn_bfs().join()
    if strategy == "dfs":
        return m, c.spawn_dfs().join()
    if strategy == "hunt":
        return m, c.spawn_hunt(budget, workers, seed).join()
    return m, c.spawn_simulation(seed, runs).join()


def print_result(m: KernelModel, res: Result, save_dir: Path | None) -> None:
    """The summary, each finding as the kernel would report it, and its trace."""
    built = f" with {config_text(res.config)}" if res.config else ""
    # a hunt revisits states and does not count distinct ones
    states = f"{res.states} states checked" if res.strategy == "hunt" else \
        f"{res.distinct} distinct states, {res.states} transitions"
    click.echo(f"design {res.design}{built}: {res.verdict} ({res.strategy}, {states}, depth {res.depth}, "
               f"{res.seconds:.2f} s"
               f"{', exhaustive' if res.exhausted else ''})")
    for w in res.warnings:
        click.echo(f"warning: {w}")
    for f in res.findings:
        texts = [op.text() for op in f.trace]
        click.echo("")
        if f.error is not None and hasattr(f.error, "property_name"):
            click.echo(format_finding(f.error, texts, len(texts)))  # type: ignore[arg-type]
        else:
            click.echo(f"{f.property} in {f.function}: {f.message}")
        click.echo(f"trace ({f.trace_length} steps after {f.setup} setup steps), as a scenario:")
        sc = Scenario(f"{res.design}-{f.property}", m.scenario.regions, f.trace)
        for line in dump_scenario(sc).splitlines():
            click.echo(f"  {line}")
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            path = save_dir / f"{res.design}-{f.property}-{f.function}.json"
            save_trace(str(path), m, f)
            click.echo(f"saved: {path} (rmapcheck replay {path})")


@click.command("check")
@click.option("--design", required=True, help="kernel design to check")
@click.option("--preset", default=None, help=f"named bounds ({', '.join(PRESETS)})")
@click.option("--processes", type=int, default=None, help="most processes alive at once")
@click.option("--regions", type=int, default=None)
@click.option("--pages", type=int, default=None, help="pages per region")
@click.option("--contents", type=int, default=None, help="distinct values written")
@click.option("--depth", type=int, default=None, help="most actions after the setup")
@click.option("--ops", default=None, help=f"comma-separated operations ({','.join(OP_CHOICES)})")
@click.option("--mergeable/--no-mergeable", default=None, help="regions MADV_MERGEABLE")
@click.option("--preemption", type=int, default=None, help="preemption bound of kernel threads")
@click.option("--faults", type=int, default=None, help="most injected allocation failures per trace")
@click.option("--forked/--no-forked", default=None, help="setup: write the pages and fork a child")
@click.option("--rcu-windows/--no-rcu-windows", default=None,
              help="kernel threads may be preempted between reading folio->mapping and locking or pinning it")
@click.option("--config", "config", multiple=True, metavar="NAME=VALUE",
              help="set a switch of the design, such as CONFIG_KSM=n (repeatable)")
@click.option("--strategy", type=click.Choice(["bfs", "dfs", "random", "hunt"]), default="bfs", show_default=True,
              help="hunt: novelty-guided random searches in parallel, for bugs deeper than bfs reaches")
@click.option("--seed", default=0, show_default=True, help="seed of --strategy random and hunt")
@click.option("--budget", type=float, default=None,
              help=f"seconds of --strategy hunt (default {HUNT_BUDGET:.0f}; --first stops at a finding)")
@click.option("--workers", type=int, default=None, help="worker processes of --strategy hunt (default: every core)")
@click.option("--runs", default=200, show_default=True, help="walks of --strategy random")
@click.option("--first", is_flag=True, help="stop at the first violation")
@click.option("--timeout", type=float, default=None, help="stop after this many seconds")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--save-dir", default="rmapcheck-traces", show_default=True, help="where traces are saved")
def command(design: str, preset: str | None, processes: int | None, regions: int | None,
            pages: int | None, contents: int | None, depth: int | None, ops: str | None,
            mergeable: bool | None, preemption: int | None, faults: int | None, forked: bool | None,
            rcu_windows: bool | None, config: tuple[str, ...], strategy: str,
            seed: int, budget: float | None, workers: int | None, runs: int, first: bool, timeout: float | None,
            as_json: bool, save_dir: str) -> None:
    """Explore DESIGN within bounds; report every property violated, with a shortest trace."""
    if strategy == "hunt" and depth is None:
        depth = HUNT_DEPTH  # the hunt is for what lies beyond the presets' depths
    b = bounds_from_options(preset, processes=processes, regions=regions, pages=pages,
                            contents=contents, depth=depth, ops=ops, mergeable=mergeable,
                            preemption=preemption, faults=faults, forked=forked, rcu_windows=rcu_windows)
    m, res = run_check(design, b, strategy, first, timeout, seed, runs, progress=not as_json, config=config,
                       budget=budget, workers=workers)
    if as_json:
        d = res.as_dict()
        if res.findings:
            paths = []
            sd = Path(save_dir)
            sd.mkdir(parents=True, exist_ok=True)
            for f in res.findings:
                p = sd / f"{res.design}-{f.property}-{f.function}.json"
                save_trace(str(p), m, f)
                paths.append(str(p))
            for fd, p in zip(d["findings"], paths):
                fd["trace"] = p
        click.echo(json.dumps(d, sort_keys=True))
    else:
        print_result(m, res, Path(save_dir))
    if res.findings:
        sys.exit(1)
    if res.interrupted:
        sys.exit(130)
