"""``rmapcheck run FILE``: execute a scenario on the model, step by step, with address maps."""

from __future__ import annotations

import sys

import click

from rmapcheck.commands.common import check_design, expectation_error, load
from rmapcheck.model.findings import RmapFinding
from rmapcheck.report.finding import format_finding
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.render import address_map, anon_vma_tree, vma_namer

__all__ = ["command", "final_state"]


def final_state(runner: ModelRunner) -> str:
    """The address maps of all processes and the anon_vmas of the model."""
    mms = runner.mms()
    avs = runner.k.anon_vma_cachep.live()
    return address_map(mms, runner.scenario) + "\n\n" + anon_vma_tree(avs, vma_namer(mms, runner.scenario))


@click.command("run")
@click.argument("file")
@click.option("--design", default="linux-6.18", show_default=True, metavar="NAME|PATH.py",
              help="kernel design: a name (rmapcheck designs lists them) or a design file")
@click.option("--quiet", is_flag=True, help="print only the final state")
def command(file: str, design: str, quiet: bool) -> None:
    """Run scenario FILE on the model, printing each step with its address map."""
    s = load(file)
    runner = ModelRunner(s, check_design(design))
    steps: list[str] = []
    for i, op in enumerate(s.ops, 1):
        steps.append(op.text())
        try:
            obs = runner.step(op)
        except RmapFinding as e:
            click.echo(format_finding(e, steps, i))
            sys.exit(1)
        if not quiet:
            click.echo(f"step {i} (line {op.line}): {op.text()}  -> {obs.result}")
            first = s.regions[op.region].at + op.page if op.region else None
            hl = (first, first + op.npages) if first is not None else None
            click.echo(address_map(runner.mms(), s, hl))
        err = expectation_error(s, op, obs.result)
        if err:
            raise_user(err)
    click.echo(f"final state after {len(s.ops)} steps ({design}):")
    click.echo(final_state(runner))


def raise_user(msg: str) -> None:
    """Print a one-line error and exit with status 1 (a failed run, not bad input)."""
    click.secho(f"rmapcheck: {msg}", fg="red", err=True)
    sys.exit(1)
