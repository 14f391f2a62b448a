"""``rmapcheck check``: explore a design within bounds and report every violated property."""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click

from rmapcheck.check.checker import Checker, Progress, Result, Stop
from rmapcheck.check.model import PRESETS, Bounds, KernelModel
from rmapcheck.check.model import Finding
from rmapcheck.check.trace import judged_run, save_finding, trace_scenario, unsaid_steps
from rmapcheck.commands.common import UserError, check_design
from rmapcheck.designs import DesignError, config_text, design_config
from rmapcheck.report.finding import format_finding
from rmapcheck.scenario.ops import Scenario
from rmapcheck.scenario.parse import dump_scenario
from rmapcheck.scenario.schema import CHECK_OPS, check_bounds, shown

__all__ = ["OP_CHOICES", "bounds_from_options", "command", "interruptible", "print_result", "run_check"]

#: the operations ``--ops`` takes
OP_CHOICES = CHECK_OPS


def bounds_from_options(preset: str | None, **opts: object) -> Bounds:
    """Bounds from a preset, overridden by the options given, each checked by the shared schema."""
    if preset is not None and preset not in PRESETS:
        raise UserError(f"unknown preset {shown(preset)} (known: {', '.join(sorted(PRESETS))})")
    b = PRESETS[preset] if preset else Bounds()
    kw = {k: v for k, v in opts.items() if v is not None}
    if "ops" in kw:
        kw["ops"] = tuple(x.strip() for x in str(kw["ops"]).split(",") if x.strip())
    try:
        kw = check_bounds(kw, prefix="--")
    except ValueError as e:
        raise UserError(str(e)) from None
    return Bounds(**{**b.__dict__, **kw})


def _progress(p: Progress) -> None:
    end = "\n" if p.done else "\r"
    click.echo(f"  states {p.states}  distinct {p.distinct}  depth {p.depth}  findings {p.findings}  "
               f"{p.rate:.0f} distinct/s", err=True, nl=False)
    click.echo(end, err=True, nl=False)


def run_check(design: str, bounds: Bounds, strategy: str = "bfs", first: bool = False,
              timeout: float | None = None, seed: int = 0, runs: int = 200,
              progress: bool = False, config: tuple[str, ...] = (),
              stop: Stop | None = None) -> tuple[KernelModel, Result]:
    """Run one check and return the model and its result.

    :param config: ``NAME=VALUE`` settings of the design's switches.
    :param stop: ends the check early, with the findings so far, once set.
    """
    check_design(design)
    try:
        settings = design_config(design, config)
    except DesignError as e:
        raise UserError(str(e)) from None
    m = KernelModel(design, bounds, settings)
    c = Checker(m).first_violation(first).timeout(timeout)
    if stop is not None:
        c.stop_on(stop)
    if progress:
        c.report(_progress)
    if strategy == "bfs":
        return m, c.spawn_bfs().join()
    if strategy == "dfs":
        return m, c.spawn_dfs().join()
    return m, c.spawn_simulation(seed, runs).join()


def _report(m: KernelModel, f: Finding, sc: Scenario) -> str:
    # The finding's report, from the scenario run again so that the report
    # can list who holds the finding's object in the state it was raised in.
    texts = [op.text() for op in f.trace]
    for i, _op, out in judged_run(sc, m.design):
        for prop, fn, _msg, err in out.findings:
            if i == len(f.trace) and (prop, fn) == (f.property, f.function):
                return format_finding(err, texts, i, out.state.k, sc)
    if f.error is not None:
        return format_finding(f.error, texts, len(texts))
    return f"{f.property} in {f.function}: {f.message}"


def print_result(m: KernelModel, res: Result, save_dir: Path | None) -> None:
    """The summary, each finding as the kernel would report it, and its trace.

    Each trace is saved as JSON (for ``rmapcheck replay``) and as a scenario
    (for ``rmapcheck run``, whose header carries the checker's settings).
    """
    built = f" with {config_text(res.config)}" if res.config else ""
    click.echo(f"design {res.design}{built}: {res.verdict} ({res.strategy}, {res.distinct} distinct states, "
               f"{res.states} transitions, depth {res.depth}, {res.seconds:.2f} s"
               f"{', exhaustive' if res.exhausted else ''})")
    if res.interrupted:
        click.echo(f"partial result: the check was interrupted after {res.seconds:.2f} s; "
                   f"{len(res.findings)} findings so far")
    for w in res.warnings:
        click.echo(f"warning: {w}")
    for f in res.findings:
        sc = trace_scenario(m, f)
        click.echo("")
        click.echo(_report(m, f, sc))
        click.echo(f"trace ({f.trace_length} steps after {f.setup} setup steps), as a scenario:")
        text = dump_scenario(sc)
        for line in text.splitlines():
            click.echo(f"  {line}")
        unsaid = unsaid_steps(sc)
        if unsaid:
            click.echo(f"warning: the scenario language cannot write all of step {', '.join(map(str, unsaid))} "
                       f"({', '.join(sorted(sc.ops[unsaid[0] - 1].flags))}): run it with the trace (replay)")
        if save_dir is not None:
            path = save_finding(save_dir, m, f)
            yaml_path = path.with_suffix(".yaml")
            click.echo(f"saved: {path} (rmapcheck replay {path})")
            click.echo(f"saved: {yaml_path} (rmapcheck run {yaml_path} --design {res.design})")


@contextmanager
def interruptible(stop: Stop) -> Iterator[Stop]:
    """While in the block, the first SIGINT or SIGTERM sets ``stop``; a second one interrupts at once.

    Outside the main thread, where no signal handler can be set, the block
    runs with the handlers as they are.
    """
    def handler(signum: int, frame: object) -> None:
        if stop:
            raise KeyboardInterrupt
        stop.signum = signum

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@click.command("check")
@click.option("--design", required=True, metavar="NAME|PATH.py",
              help="kernel design: a name (rmapcheck designs lists them) or a design file")
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
@click.option("--strategy", type=click.Choice(["bfs", "dfs", "random"]), default="bfs", show_default=True)
@click.option("--seed", default=0, show_default=True, help="seed of --strategy random")
@click.option("--runs", default=200, show_default=True, type=click.IntRange(1, 10_000_000),
              help="walks of --strategy random")
@click.option("--first", is_flag=True, help="stop at the first violation")
@click.option("--timeout", type=float, default=None, help="stop after this many seconds")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--progress/--no-progress", default=None,
              help="report progress on stderr about once a second (default: without --json)")
@click.option("--save-dir", default="rmapcheck-traces", show_default=True, help="where traces are saved")
def command(design: str, preset: str | None, processes: int | None, regions: int | None,
            pages: int | None, contents: int | None, depth: int | None, ops: str | None,
            mergeable: bool | None, preemption: int | None, faults: int | None, forked: bool | None,
            rcu_windows: bool | None, config: tuple[str, ...], strategy: str,
            seed: int, runs: int, first: bool, timeout: float | None, as_json: bool, progress: bool | None,
            save_dir: str) -> None:
    """Explore DESIGN within bounds; report every property violated, with a shortest trace.

    Ctrl-C (SIGINT) or SIGTERM ends the exploration early: the findings so far
    are reported and their traces saved, with a line saying the result is
    partial (``"interrupted": true`` with --json). A second one stops at once.
    Exit status: 1 with findings, else 128 + the signal's number if
    interrupted, else 0.
    """
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UserError(f"--timeout must be a positive number of seconds, not {timeout}")
    b = bounds_from_options(preset, processes=processes, regions=regions, pages=pages,
                            contents=contents, depth=depth, ops=ops, mergeable=mergeable,
                            preemption=preemption, faults=faults, forked=forked, rcu_windows=rcu_windows)
    with interruptible(Stop()) as stop:
        m, res = run_check(design, b, strategy, first, timeout, seed, runs,
                           progress=not as_json if progress is None else progress, config=config, stop=stop)
        if as_json:
            d = res.as_dict()
            for fd, f in zip(d["findings"], res.findings):
                path = save_finding(save_dir, m, f)
                fd["trace"] = str(path)
                fd["scenario"] = str(path.with_suffix(".yaml"))
            click.echo(json.dumps(d, sort_keys=True))
        else:
            print_result(m, res, Path(save_dir))
    if res.findings:
        sys.exit(1)
    if res.interrupted:
        sys.exit(128 + res.interrupted)
