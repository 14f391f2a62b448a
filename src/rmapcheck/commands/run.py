"""``rmapcheck run FILE``: execute a scenario on the model, step by step, with address maps.

The scenario runs with its header's settings (``rcu_windows``, ``config``,
``ksm_baseline``) and every step is judged as the model checker judges it
(:func:`~rmapcheck.check.trace.judged_run`), so a counterexample printed as a
scenario reproduces its finding here. A finding inside a kernel function
stops the run; one of the checks between steps (an invariant, a leak) is
reported and the run goes on, as the checker explores on past it.
"""

from __future__ import annotations

import sys

import click

from rmapcheck.check.trace import judged_run
from rmapcheck.commands.common import UserError, check_design, expectation_error, load
from rmapcheck.designs import DesignError
from rmapcheck.report.finding import format_finding
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.render import address_map, anon_vma_tree, op_pages, vma_namer

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
    check_design(design)
    steps: list[str] = []
    found = False
    runner: ModelRunner | None = None
    try:
        for i, op, out in judged_run(s, design):
            runner = out.state
            steps.append(op.text())
            if not quiet:
                click.echo(f"step {i} (line {op.line}): {op.text()}  -> {out.result or 'stopped'}")
                click.echo(address_map(runner.mms(), s, op_pages(s, op)))
            for _prop, _fn, _msg, err in out.findings:
                click.echo(format_finding(err, steps, i, runner.k, s))
                found = True
            if out.fatal:
                click.echo(f"stopped at step {i}: the kernel cannot go on past this finding")
                sys.exit(1)
            err = expectation_error(s, op, out.result)
            if err:
                raise_user(err)
    except DesignError as e:
        raise UserError(f"{s.source}: {e}") from None
    click.echo(f"final state after {len(s.ops)} steps ({design}):")
    click.echo(final_state(runner if runner is not None else ModelRunner(s, design)))
    if found:
        sys.exit(1)


def raise_user(msg: str) -> None:
    """Print a one-line error and exit with status 1 (a failed run, not bad input)."""
    click.secho(f"rmapcheck: {msg}", fg="red", err=True)
    sys.exit(1)
