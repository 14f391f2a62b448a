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
from rmapcheck.commands.common import (
    ScenarioReport, UserError, check_design, expectation_error, load, write_output,
)
from rmapcheck.designs import DesignError
from rmapcheck.report.finding import format_finding
from rmapcheck.report.observation import ksm_summary
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.execute import model_observation
from rmapcheck.scenario.ops import Observation
from rmapcheck.scenario.render import LEGEND, address_map, anon_vma_tree, op_pages, vma_namer

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
@click.option("--design", default="linux-6.18", show_default=True, metavar="NAME|PATH.py",
              help="kernel design: a name (rmapcheck designs lists them) or a design file")
@click.option("--quiet", is_flag=True, help="print only the final state")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object with each step's observation")
@click.option("--html", "html_out", metavar="OUT.html",
              help="also write a self-contained page that steps through the run (docs/html.md)")
def command(file: str, design: str, quiet: bool, as_json: bool, html_out: str | None) -> None:
    """Run scenario FILE on the model, printing each step with its address map."""
    s = load(file)
    check_design(design)
    if html_out:
        from rmapcheck.report.html import scenario_page

        try:
            write_output(html_out, scenario_page(s.source, s, design))
        except DesignError as e:
            raise UserError(f"{s.source}: {e}") from None
    report = ScenarioReport(s, design, enabled=as_json)
    steps: list[str] = []
    found = False
    runner: ModelRunner | None = None
    obs: Observation | None = None
    try:
        for i, op, out in judged_run(s, design):
            runner = out.state
            steps.append(op.text())
            if not out.fatal:
                obs = model_observation(runner.k, s, out.result)
                report.step(i, op, obs)
            if not quiet and not as_json:
                click.echo(f"step {i} (line {op.line}): {op.text()}  -> {out.result or 'stopped'}")
                click.echo(address_map(runner.mms(), s, op_pages(s, op)))
                if obs is not None and obs.counters and not out.fatal:
                    click.echo(ksm_summary(obs))
            for prop, fn, msg, err in out.findings:
                if not found:
                    report.finding(i, op, prop, fn, msg)
                if not as_json:
                    click.echo(format_finding(err, steps, i, runner.k, s))
                found = True
            if out.fatal:
                if not as_json:
                    click.echo(f"stopped at step {i}: the kernel cannot go on past this finding")
                sys.exit(1)
            err = expectation_error(s, op, out.result)
            if err:
                report.unexpected(err)
                raise_user(err)
    except DesignError as e:
        raise UserError(f"{s.source}: {e}") from None
    report.done()
    if not as_json:
        click.echo(f"final state after {len(s.ops)} steps ({design}):")
        click.echo(final_state(runner if runner is not None else ModelRunner(s, design)))
        if obs is not None and obs.counters:
            click.echo(ksm_summary(obs))
    if found:
        sys.exit(1)


def raise_user(msg: str) -> None:
    """Print a one-line error and exit with status 1 (a failed run, not bad input)."""
    click.secho(f"rmapcheck: {msg}", fg="red", err=True)
    sys.exit(1)
