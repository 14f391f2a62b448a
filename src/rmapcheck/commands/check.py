"""``rmapcheck check``: explore a design within bounds and report every violated property."""

from __future__ import annotations

import importlib
import json
import math
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Iterator

import click

from rmapcheck.check.checker import STRATEGIES, Checker, Progress, Result, Stop, all_cores
from rmapcheck.check.compact import parse_size
from rmapcheck.check.hunt import HUNT_BUDGET, HUNT_DEPTH
from rmapcheck.check.model import FAULT_MODES, PRESETS, Bounds, Finding, KernelModel
from rmapcheck.check.portfolio import DEFAULT_BUDGET, PHASES, Phase, PortfolioResult, run_portfolio
from rmapcheck.check.properties import SOMETIMES, sometimes_property
from rmapcheck.check.ray_backend import RayUnavailable, require_ray
from rmapcheck.check.trace import judged_run, save_finding, trace_scenario, unsaid_steps
from rmapcheck.commands.common import UserError, check_design
from rmapcheck.designs import DESIGNS, DesignError, config_text, design_config
from rmapcheck.report.finding import format_finding
from rmapcheck.scenario.ops import Scenario
from rmapcheck.scenario.parse import dump_scenario
from rmapcheck.scenario.schema import CHECK_OPS, check_bounds, shown

__all__ = ["OP_CHOICES", "CheckRun", "bounds_from_options", "check_options", "command", "interruptible",
           "phase_named", "print_portfolio", "print_result", "run_check", "run_default", "run_options"]

#: the operations ``--ops`` takes
OP_CHOICES = CHECK_OPS


def bounds_from_options(preset: str | None, phase: str | None = None, **opts: object) -> Bounds:
    """Bounds from a preset or a phase of the default portfolio, overridden by the options given.

    Each option is checked by the shared schema; a preset and a phase
    together are bad input.
    """
    if preset is not None and phase is not None:
        raise UserError("--preset and --phase: give one of them")
    if preset is not None and preset not in PRESETS:
        raise UserError(f"unknown preset {shown(preset)} (known: {', '.join(sorted(PRESETS))})")
    b = PRESETS[preset] if preset else phase_named(phase).bounds if phase else Bounds()
    kw = {k: v for k, v in opts.items() if v is not None}
    if "ops" in kw:
        kw["ops"] = tuple(x.strip() for x in str(kw["ops"]).split(",") if x.strip())
    try:
        kw = check_bounds(kw, prefix="--")
    except ValueError as e:
        raise UserError(str(e)) from None
    return Bounds(**{**b.__dict__, **kw})


def phase_named(name: str) -> Phase:
    """The phase ``name`` of the default portfolio (:data:`~rmapcheck.check.portfolio.PHASES`)."""
    for p in PHASES:
        if p.name == name:
            return p
    raise UserError(f"unknown phase {shown(name)} (known: {', '.join(p.name for p in PHASES)})")


def _progress(p: Progress, phase: str = "") -> None:
    end = "\n" if p.done else "\r"
    click.echo(f"  {phase + ': ' if phase else ''}states {p.states}  distinct {p.distinct}  depth {p.depth}  "
               f"findings {p.findings}  "
               f"{p.rate:.0f} distinct/s", err=True, nl=False)
    click.echo(end, err=True, nl=False)


def _settings(design: str, config: tuple[str, ...]) -> dict[str, object]:
    # The design's switches as set by --config, with one-line errors.
    check_design(design)
    try:
        return design_config(design, config)
    except DesignError as e:
        raise UserError(str(e)) from None


def run_check(design: str, bounds: Bounds, strategy: str = "bfs", first: bool = False,
              timeout: float | None = None, seed: int = 0, runs: int = 200,
              progress: bool = False, config: tuple[str, ...] = (),
              stop: Stop | None = None, budget: float | None = None,
              workers: int | None = None, ray: str | None = None, require: tuple[str, ...] = (),
              max_memory: int | None = None) -> tuple[KernelModel, Result]:
    """Run one check and return the model and its result.

    :param config: ``NAME=VALUE`` settings of the design's switches.
    :param require: sometimes-properties that must be reached: an exhaustive
        run that never reaches one reports it in ``Result.never_reached``.
    :param stop: ends the check early, with the findings so far, once set.
    :param budget: seconds of ``strategy`` ``hunt`` (default
        :data:`~rmapcheck.check.hunt.HUNT_BUDGET`).
    :param workers: worker processes of ``bfs`` and ``hunt`` (default: one
        per core; with ``ray``, one actor per CPU of the cluster).
    :param ray: run ``bfs`` on the Ray cluster at this address (or ``auto``).
    :param max_memory: resident bytes at which breadth- and depth-first search stop.
    """
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise UserError(f"--budget must be a positive number of seconds, not {budget}")
    _check_parallel(strategy, workers, ray)
    m = KernelModel(design, bounds, _settings(design, config))
    c = Checker(m).first_violation(first).timeout(timeout).memory_limit(max_memory)
    try:
        c.require(*require)
    except KeyError as e:
        raise UserError(f"--require: {e.args[0]}") from None
    c.seed, c.runs = seed, runs
    if stop is not None:
        c.stop_on(stop)
    if progress:
        c.report(_progress)
    c.hunt_budget = budget
    c.parallel(_workers(workers, ray), ray)
    try:
        return m, c.spawn(strategy).join()
    except RayUnavailable as e:
        raise UserError(str(e)) from None


def _workers(workers: int | None, ray: str | None) -> int | None:
    # --workers, by default every core (on a cluster: one actor per CPU of it)
    return workers if workers is not None or ray is not None else all_cores()


def _check_parallel(strategy: str | None, workers: int | None, ray: str | None) -> None:
    # --workers and --ray, with one-line errors; --ray without Ray installed
    # is refused before anything runs.
    if workers is not None and workers < 1:
        raise UserError("--workers must be at least 1")
    if ray is not None:
        if strategy not in (None, "bfs"):
            raise UserError(f"--ray runs breadth-first search (--strategy bfs), not --strategy {strategy}")
        try:
            require_ray()
        except RayUnavailable as e:
            raise UserError(str(e)) from None


def run_default(design: str, strategy: str | None = None, first: bool = False, budget: float | None = None,
                seed: int = 0, runs: int = 200, progress: bool = False,
                config: tuple[str, ...] = (), stop: Stop | None = None, workers: int | None = None,
                ray: str | None = None, max_memory: int | None = None) -> PortfolioResult:
    """Run the default portfolio (:mod:`rmapcheck.check.portfolio`) on ``design``.

    :param strategy: run every phase with this strategy instead of its own.
    :param budget: seconds for the whole portfolio (default
        :data:`~rmapcheck.check.portfolio.DEFAULT_BUDGET`).
    :param stop: ends the portfolio early, with the findings so far, once set.
    :param workers: worker processes of each phase (default: one per core).
    :param ray: run the breadth-first phases on the Ray cluster at this address.
    :param max_memory: resident bytes at which a breadth- or depth-first phase stops.
    """
    settings = _settings(design, config)
    _check_parallel(strategy, workers, ray)
    phases = PHASES if strategy is None else tuple(replace(p, strategy=strategy) for p in PHASES)

    def prepare(c: Checker, p: Phase) -> Checker:
        c.seed, c.runs = seed, runs
        c.memory_limit(max_memory)
        c.parallel(_workers(workers, ray), ray if p.strategy == "bfs" else None)
        return c.report(partial(_progress, phase=p.name)) if progress else c

    try:
        return run_portfolio(design, settings, DEFAULT_BUDGET if budget is None else budget, first, phases,
                             prepare, stop)
    except RayUnavailable as e:
        raise UserError(str(e)) from None


def _print_finding(m: KernelModel, design: str, f: Finding, save_dir: Path | None, found_by: str = "") -> None:
    # One finding as the kernel would report it, its trace as a scenario that
    # `rmapcheck run` reproduces, and where the trace is saved (as JSON for
    # replay, and as that scenario).
    sc = trace_scenario(m, f)
    click.echo("")
    click.echo(_report(m, f, sc))
    click.echo(f"trace ({f.trace_length} steps after {f.setup} setup steps{found_by}), as a scenario:")
    for line in dump_scenario(sc).splitlines():
        click.echo(f"  {line}")
    unsaid = unsaid_steps(sc)
    if unsaid:
        click.echo(f"warning: the scenario language cannot write all of step {', '.join(map(str, unsaid))} "
                   f"({', '.join(sorted(sc.ops[unsaid[0] - 1].flags))}): run it with the trace (replay)")
    if save_dir is not None:
        path = save_finding(save_dir, m, f)
        yaml_path = path.with_suffix(".yaml")
        click.echo(f"saved: {path} (rmapcheck replay {path})")
        click.echo(f"saved: {yaml_path} (rmapcheck run {yaml_path} --design {design})")


def _summary(res: Result) -> str:
    # a hunt revisits states and does not count distinct ones
    states = f"{res.states} states checked" if res.strategy == "hunt" else \
        f"{res.distinct} distinct states, {res.states} transitions"
    return (f"{res.verdict} ({res.strategy}, {states}, depth {res.depth}, {res.seconds:.2f} s"
            f"{', exhaustive' if res.exhausted else ''})")


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
    """The summary, the bounds, each finding as the kernel would report it, and its trace.

    Each trace is saved as JSON (for ``rmapcheck replay``) and as a scenario
    (for ``rmapcheck run``, whose header carries the checker's settings).
    """
    built = f" with {config_text(res.config)}" if res.config else ""
    click.echo(f"design {res.design}{built}: {_summary(res)}")
    if res.interrupted:
        click.echo(f"partial result: the check was interrupted after {res.seconds:.2f} s; "
                   f"{len(res.findings)} findings so far")
    click.echo(f"bounds: {m.bounds.text()}")
    for w in res.warnings:
        click.echo(f"warning: {w}")
    for name in res.never_reached:
        click.echo(f"never reached: {name} ({sometimes_property(name).doc}): required, and no state or "
                   f"transition within the bounds has it (the exploration was exhaustive)")
    for f in res.findings:
        _print_finding(m, res.design, f, save_dir)


def print_portfolio(pres: PortfolioResult, save_dir: Path | None) -> None:
    """Each phase with its bounds and verdict, the warnings, then the merged findings."""
    built = f" with {config_text(pres.config)}" if pres.config else ""
    click.echo(f"design {pres.design}{built}: {pres.verdict} (the default portfolio: {len(pres.phases)} bound "
               f"sets, {pres.seconds:.2f} s of a {pres.budget:.0f} s budget"
               f"{', every one exhaustive' if pres.exhausted else ''})")
    if pres.interrupted:
        click.echo(f"partial result: the check was interrupted after {pres.seconds:.2f} s; "
                   f"{len(pres.findings)} findings so far")
    warned: dict[str, list[str]] = {}
    for pr in pres.phases:
        click.echo(f"  {pr.phase.name}: {_summary(pr.result)}")
        click.echo(f"    bounds: {pr.model.bounds.text()}")
        click.echo(f"    {pr.phase.why}")
        for w in pr.result.warnings:
            warned.setdefault(w, []).append(pr.phase.name)
    for name, why in pres.skipped:
        click.echo(f"  {name}: not run ({why})")
    for w, names in warned.items():
        where = "" if len(names) == len(pres.phases) else f" ({', '.join(names)})"
        click.echo(f"warning{where}: {w}")
    for pr, f in pres.findings:
        _print_finding(pr.model, pres.design, f, save_dir, f", found by {pr.phase.name}")


def _designs_help() -> str:
    # One line per design: the first line of its module's docstring.
    lines = []
    for name, mod in DESIGNS.items():
        doc = (importlib.import_module(f"rmapcheck.designs.{mod}").__doc__ or "").strip().splitlines()
        first = doc[0].split(": ", 1)[-1] if doc else ""
        lines.append(f"  {name:<24}{first}")
    lines.append(f"  {'PATH.py':<24}a design file: a base design and the kernel functions a patch replaces")
    return "\n".join(lines)


def _help() -> str:
    w = max(13, *(len(n) + 2 for n in PRESETS), *(len(p.name) + 2 for p in PHASES))
    presets = "\n".join(f"  {n:<{w}}{b.text()}" for n, b in PRESETS.items())
    phases = "\n".join(f"  {p.name:<{w}}{p.why}" for p in PHASES)
    return f"""Explore DESIGN within bounds; report every property violated, with a shortest trace.

Without bounds (neither --preset nor a bound option) the default portfolio
runs: one bound set per path the design's switches enable, breadth-first, one
after another within --timeout seconds (default {DEFAULT_BUDGET:.0f}), then a hunt (--strategy
hunt, not exhaustive) for bugs deeper than breadth-first search reaches; the
findings merged.
The output always prints the bounds used.

\b
Designs:
{_designs_help()}

\b
Presets:
{presets}

\b
The default portfolio (a phase about KSM or migration runs only if the
kernel is built with it; --phase NAME runs one phase's bounds and strategy):
{phases}
"""


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


#: what one ``rmapcheck check`` returns: the default portfolio's result, or one check's model and result
CheckRun = PortfolioResult | tuple[KernelModel, Result]


def run_options(design: str, preset: str | None = None, phase: str | None = None, config: tuple[str, ...] = (),
                strategy: str | None = None, seed: int = 0, budget: float | None = None, workers: int | None = None,
                runs: int = 200, first: bool = False, timeout: float | None = None, progress: bool = False,
                stop: Stop | None = None, require: tuple[str, ...] = (), max_memory: int | None = None,
                ray: str | None = None, **bounds: object) -> CheckRun:
    """Run what ``rmapcheck check`` runs for its options (the keyword arguments are its parameters).

    Without bounds (no preset, phase or bound option) the default portfolio
    runs; else one check at the bounds given: a preset's or a phase's,
    overridden by the bound options. A phase brings its own strategy
    (``--strategy`` replaces it) and, for a hunt, its seconds as the budget.

    :param require: sometimes-properties that must be reached (``--require``); needs bounds.
    :param max_memory: resident bytes at which exhaustive searches stop with a partial result.
    :param bounds: the bound options (``processes`` ... ``rcu_windows``), ``None`` where not given.
    """
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UserError(f"--timeout must be a positive number of seconds, not {timeout}")
    if preset is None and phase is None and all(v is None for v in bounds.values()):
        if require:
            raise UserError("--require needs bounds (--preset, --phase or bound options): the default portfolio's "
                            "phases explore different bounds, and a hunt is not exhaustive")
        return run_default(design, strategy, first, timeout, seed, runs, progress=progress, config=config,
                           stop=stop, workers=workers, ray=ray, max_memory=max_memory)
    if phase is not None:
        ph = phase_named(phase)
        if strategy is None:
            strategy = ph.strategy
            if budget is None and strategy == "hunt":
                budget = ph.seconds
    elif strategy == "hunt" and bounds.get("depth") is None:
        bounds["depth"] = HUNT_DEPTH  # the hunt is for what lies beyond the presets' depths
    b = bounds_from_options(preset, phase, **bounds)
    return run_check(design, b, strategy or "bfs", first, timeout, seed, runs, progress=progress, config=config,
                     stop=stop, budget=budget, workers=workers, ray=ray, require=require, max_memory=max_memory)


def check_options(design: str, args: tuple[str, ...] | list[str]) -> dict[str, object]:
    """The parameters ``rmapcheck check --design DESIGN ARGS`` runs with (:func:`run_options` takes them).

    ARGS are parsed by the ``check`` command itself; the output options
    (``--json``, ``--progress``, ``--save-dir``) are dropped.

    :raises UserError: ARGS are not ``check`` options, or ask for its help.
    """
    try:
        ctx = command.make_context("check", ["--design", design, *args])
    except click.ClickException as e:
        raise UserError(e.format_message()) from None
    except click.exceptions.Exit:
        raise UserError("--help: not an option to run with") from None
    params = dict(ctx.params)
    for out in ("as_json", "progress", "save_dir"):
        params.pop(out, None)
    params["max_memory"] = _memory(params.get("max_memory"))  # type: ignore[arg-type]
    return params


def _memory(size: str | None) -> int | None:
    """``--max-memory SIZE`` in bytes.

    :raises UserError: SIZE is not a size such as 2G or 500M.
    """
    if size is None:
        return None
    try:
        return parse_size(size)
    except ValueError as e:
        raise UserError(f"--max-memory: {e}") from None


@click.command("check", help=_help())
@click.option("--design", required=True, metavar="NAME|PATH.py",
              help="kernel design: a name (listed below) or a design file")
@click.option("--preset", default=None, help=f"named bounds ({', '.join(PRESETS)}; listed below)")
@click.option("--phase", default=None, metavar="NAME",
              help="the bounds and strategy of one phase of the default portfolio (listed below)")
@click.option("--processes", type=int, default=None, help="most processes alive at once")
@click.option("--regions", type=int, default=None)
@click.option("--pages", type=int, default=None, help="pages per region")
@click.option("--contents", type=int, default=None, help="distinct values written")
@click.option("--depth", type=int, default=None, help="most actions after the setup")
@click.option("--ops", default=None, help=f"comma-separated operations ({','.join(OP_CHOICES)})")
@click.option("--mergeable/--no-mergeable", default=None, help="regions MADV_MERGEABLE")
@click.option("--preemption", type=int, default=None, help="preemption bound of kernel threads")
@click.option("--faults", type=int, default=None, help="most actions with an injected allocation failure per trace")
@click.option("--fault-mode", type=click.Choice(FAULT_MODES), default=None,
              help="which attempts of an allocation site fail in one action: the first, the N-th, or "
                   "also the N-th and every later one (persistent, the default)")
@click.option("--forked/--no-forked", default=None, help="setup: write the pages and fork a child")
@click.option("--rcu-windows/--no-rcu-windows", default=None,
              help="kernel threads may be preempted between reading folio->mapping and locking or pinning it")
@click.option("--config", "config", multiple=True, metavar="NAME=VALUE",
              help="set a switch of the design, such as CONFIG_KSM=n (repeatable)")
@click.option("--strategy", type=click.Choice(sorted(STRATEGIES)), default=None,
              help="search strategy (default bfs; without bounds, each phase's own); hunt: novelty-guided "
                   "random searches in parallel, for bugs deeper than bfs reaches")
@click.option("--seed", default=0, show_default=True, help="seed of --strategy random and hunt")
@click.option("--budget", type=float, default=None,
              help=f"seconds of --strategy hunt (default {HUNT_BUDGET:.0f}; --first stops at a finding)")
@click.option("--workers", type=int, default=None,
              help="worker processes of breadth-first search (the frontier partitioned by fingerprint, the same "
                   "result as one) and of the hunt (independent seeds); default: every core, 1: one process")
@click.option("--ray", default=None, metavar="ADDRESS|auto",
              help="breadth-first search on the Ray cluster at ADDRESS (auto: the cluster `ray start` began on "
                   "this machine), one actor per CPU unless --workers; needs pip install 'rmapcheck[ray]' "
                   "(docs/scaling.md)")
@click.option("--runs", default=200, show_default=True, type=click.IntRange(1, 10_000_000),
              help="walks of --strategy random")
@click.option("--first", is_flag=True, help="stop at the first violation")
@click.option("--require", "require", multiple=True, metavar="PROPERTY",
              help="a sometimes-property that must be reached (repeatable; "
                   f"{', '.join(p.name for p in SOMETIMES)}): an exhaustive run that never reaches it "
                   "reports 'never reached' and exits 1")
@click.option("--timeout", type=float, default=None,
              help=f"stop after this many seconds (without bounds: the portfolio's budget, {DEFAULT_BUDGET:.0f})")
@click.option("--max-memory", default=None, metavar="SIZE",
              help="stop breadth- and depth-first search, with a partial result and a warning, once this "
                   "process's resident memory reaches SIZE (such as 2G or 500M)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--progress/--no-progress", default=None,
              help="report progress on stderr about once a second (default: without --json)")
@click.option("--save-dir", default="rmapcheck-traces", show_default=True, help="where traces are saved")
def command(design: str, preset: str | None, phase: str | None, config: tuple[str, ...], strategy: str | None,
            seed: int, budget: float | None, workers: int | None, ray: str | None, runs: int, first: bool,
            require: tuple[str, ...], timeout: float | None, max_memory: str | None, as_json: bool,
            progress: bool | None, save_dir: str, **bounds: object) -> None:
    """Explore DESIGN within the bounds given, or run the default portfolio (the help text is :func:`_help`).

    Ctrl-C (SIGINT) or SIGTERM ends the exploration early: the findings so far
    are reported and their traces saved, with a line saying the result is
    partial (``"interrupted": true`` with --json). A second one stops at once.
    Exit status: 1 with findings (a required sometimes-property never
    reached is one), else 128 + the signal's number if interrupted, else 0.
    """
    # bounds: the bound options (--processes ... --rcu-windows); given any,
    # or a preset or phase, one check runs at them instead of the portfolio
    memory = _memory(max_memory)
    show = not as_json if progress is None else progress
    with interruptible(Stop()) as stop:
        run = run_options(design, preset, phase, config, strategy, seed, budget, workers, runs, first, timeout,
                          progress=show, stop=stop, require=require, max_memory=memory, ray=ray,
                          **bounds)
        if isinstance(run, PortfolioResult):
            res: PortfolioResult | Result = run
            found = [(pr.model, f) for pr, f in run.findings]
        else:
            m, res = run
            found = [(m, f) for f in res.findings]
        if as_json:
            d = res.as_dict()
            for fd, (fm, f) in zip(d["findings"], found):
                path = save_finding(save_dir, fm, f)
                fd["trace"], fd["scenario"] = str(path), str(path.with_suffix(".yaml"))
            click.echo(json.dumps(d, sort_keys=True))
        elif isinstance(run, PortfolioResult):
            print_portfolio(run, Path(save_dir))
        else:
            print_result(m, res, Path(save_dir))
    if res.findings or res.never_reached:
        sys.exit(1)
    if res.interrupted:
        sys.exit(128 + res.interrupted)
