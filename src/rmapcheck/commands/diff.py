"""``rmapcheck diff FILE``: the scenario on the model and on the live kernel, compared."""

from __future__ import annotations

import sys

import click

from rmapcheck.commands.common import UserError, check_design, load
from rmapcheck.compare import DiffResult, diff_scenario
from rmapcheck.report.observation import describe_difference, observation_map

__all__ = ["command", "print_diff"]


def print_diff(res: DiffResult, verbose: bool) -> None:
    """Print the steps of a diff run and its verdict."""
    s = res.scenario
    for i, (m, lv) in enumerate(zip(res.model, res.live), 1):
        op = s.ops[i - 1]
        ok = m.matches(lv)
        same = "agree" if ok else "DIFFER"
        if verbose or not ok:
            click.echo(f"step {i} (line {op.line}): {op.text()}  -> model {m.result}, live {lv.result}: {same}")
        if not ok:
            click.echo("  model:")
            click.echo(observation_map(m, s, "    "))
            click.echo("  live kernel:")
            click.echo(observation_map(lv, s, "    "))
            click.echo(f"  {describe_difference(m, lv)}")
    if res.finding:
        click.echo(f"model finding: {res.finding}")
    elif res.agree:
        if res.model and not verbose:
            click.echo(observation_map(res.model[-1], s))
        click.echo(f"{s.source}: model and live kernel agree on all {len(res.model)} steps")
    else:
        op = s.ops[res.step - 1]
        click.echo(f"{s.source}:{op.line}: model and live kernel differ at step {res.step} ({op.text()})")


@click.command("diff")
@click.argument("file")
@click.option("--design", default="linux-6.18", show_default=True, metavar="NAME|PATH.py",
              help="kernel design: a name (rmapcheck designs lists them) or a design file")
@click.option("-v", "--verbose", is_flag=True, help="print every step")
def command(file: str, design: str, verbose: bool) -> None:
    """Run scenario FILE on the model and the live kernel; print agreement or the first difference."""
    from rmapcheck.live.runner import LiveError

    s = load(file)
    try:
        res = diff_scenario(s, check_design(design))
    except LiveError as e:
        raise UserError(f"live kernel: {e}") from None
    print_diff(res, verbose)
    if not res.agree:
        sys.exit(1)
