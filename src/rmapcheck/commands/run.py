"""``rmapcheck run FILE``: execute a scenario on the model, step by step, with address maps."""

from __future__ import annotations

import sys

import click

from rmapcheck.commands.common import ScenarioReport, check_design, expectation_error, load
from rmapcheck.model.findings import RmapFinding
from rmapcheck.report.finding import format_finding
from rmapcheck.report.observation import ksm_summary
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.ops import Observation
from rmapcheck.scenario.render import LEGEND, address_map, anon_vma_tree, vma_namer

__all__ = ["command", "final_state", "raise_user"]


def final_state(runner: ModelRunner) -> str:
    """The address maps of all processes and the anon_vmas of the model."""
    mms = runner.mms()
    avs = runner.k.anon_vma_cachep.live()
    return address_map(mms, runner.scenario) + "\n\n" + anon_vma_tree(avs, vma_namer(mms, runner.scenario))


_EPILOG = "\b\nThe address map of each step, row by row:\n" + LEGEND + """

\b
With KSM in play (a KSM step or mergeable advice), each step also shows
KSM's counters (/sys/kernel/mm/ksm) and each process's ksm_stat.
--json prints one object instead: every step's observation (result, VMAs,
frames, KSM pages, counters, ksm_stat), as `rmapcheck live --json` does."""


@click.command("run", epilog=_EPILOG)
@click.argument("file")
@click.option("--design", default="linux-6.18", show_default=True, help="kernel design to run")
@click.option("--quiet", is_flag=True, help="print only the final state")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object with each step's observation")
def command(file: str, design: str, quiet: bool, as_json: bool) -> None:
    """Run scenario FILE on the model, printing each step with its address map."""
    s = load(file)
    runner = ModelRunner(s, check_design(design))
    report = ScenarioReport(s, design, enabled=as_json)
    steps: list[str] = []
    obs: Observation | None = None
    for i, op in enumerate(s.ops, 1):
        steps.append(op.text())
        try:
            obs = runner.step(op)
        except RmapFinding as e:
            report.finding(i, op, e.property_name, e.function, e.message)
            if not as_json:
                click.echo(format_finding(e, steps, i))
            sys.exit(1)
        report.step(i, op, obs)
        if not quiet and not as_json:
            click.echo(f"step {i} (line {op.line}): {op.text()}  -> {obs.result}")
            first = s.regions[op.region].at + op.page if op.region else None
            hl = (first, first + op.npages) if first is not None else None
            click.echo(address_map(runner.mms(), s, hl))
            if obs.counters:
                click.echo(ksm_summary(obs))
        err = expectation_error(s, op, obs.result)
        if err:
            report.unexpected(err)
            raise_user(err)
    report.done()
    if as_json:
        return
    click.echo(f"final state after {len(s.ops)} steps ({design}):")
    click.echo(final_state(runner))
    if obs is not None and obs.counters:
        click.echo(ksm_summary(obs))


def raise_user(msg: str) -> None:
    """Print a one-line error and exit with status 1 (a failed run, not bad input)."""
    click.secho(f"rmapcheck: {msg}", fg="red", err=True)
    sys.exit(1)
