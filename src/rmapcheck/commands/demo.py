"""``rmapcheck demo``: the main job on a built-in default.

First the 2010 review question answered by the model checker (``rmapcheck
seed``: the table and the counterexample of B0), then a bundled scenario run on
the model with address maps and compared with the live kernel.
"""

from __future__ import annotations

import sys

import click

from rmapcheck.commands.common import UserError, load
from rmapcheck.commands.diff import print_diff
from rmapcheck.commands.seed import command as seed_command
from rmapcheck.compare import diff_scenario
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.render import address_map, op_pages

__all__ = ["DEFAULT", "command"]

#: the bundled scenario the demo runs
DEFAULT = "fork-cow-mprotect-merge"


@click.command("demo")
@click.option("--scenario", default=DEFAULT, show_default=True, help="bundled scenario or file")
@click.pass_context
def command(ctx: click.Context, scenario: str) -> None:
    """Answer the 2010 question with the checker, then diff a bundled scenario against the live kernel."""
    from rmapcheck.live.runner import LiveError

    click.echo("== 1. rmapcheck seed: the three designs of the 2010 root anon_vma series")
    try:
        ctx.invoke(seed_command, save_dir="rmapcheck-traces", quiet=False)
    except SystemExit as e:
        if e.code:
            raise
    s = load(scenario)
    click.echo("")
    click.echo(f"== 2. the scenario {s.name}: {s.description}".rstrip(": "))
    click.echo("== on the model (design linux-6.18):")
    r = ModelRunner(s)
    for i, op in enumerate(s.ops, 1):
        obs = r.step(op)
        click.echo(f"step {i}: {op.text()}  -> {obs.result}")
        click.echo(address_map(r.mms(), s, op_pages(s, op)))
    click.echo("== the model against the live kernel:")
    try:
        res = diff_scenario(s)
    except LiveError as e:
        raise UserError(f"live kernel: {e}") from None
    print_diff(res, verbose=True)
    if not res.agree:
        sys.exit(1)
