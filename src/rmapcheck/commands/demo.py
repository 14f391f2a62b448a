"""``rmapcheck demo``: the main job on a built-in default."""

from __future__ import annotations

import sys

import click

from rmapcheck.commands.common import UserError, load
from rmapcheck.commands.diff import print_diff
from rmapcheck.compare import diff_scenario
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.render import address_map

__all__ = ["DEFAULT", "command"]

#: the bundled scenario the demo runs
DEFAULT = "fork-cow-mprotect-merge"


@click.command("demo")
@click.option("--scenario", default=DEFAULT, show_default=True, help="bundled scenario or file")
def command(scenario: str) -> None:
    """Run a bundled scenario on the model (with address maps) and diff it against the live kernel."""
    from rmapcheck.live.runner import LiveError

    s = load(scenario)
    click.echo(f"== {s.name}: {s.description}".rstrip(": "))
    click.echo("== the model (design linux-6.18):")
    r = ModelRunner(s)
    for i, op in enumerate(s.ops, 1):
        obs = r.step(op)
        click.echo(f"step {i}: {op.text()}  -> {obs.result}")
        first = s.regions[op.region].at + op.page if op.region else None
        click.echo(address_map(r.mms(), s, (first, first + op.npages) if first is not None else None))
    click.echo("== the model against the live kernel:")
    try:
        res = diff_scenario(s)
    except LiveError as e:
        raise UserError(f"live kernel: {e}") from None
    print_diff(res, verbose=True)
    if not res.agree:
        sys.exit(1)
