"""``rmapcheck live FILE``: execute a scenario on the running kernel."""

from __future__ import annotations

import click

from rmapcheck.commands.common import UserError, expectation_error, load
from rmapcheck.commands.run import raise_user
from rmapcheck.report.observation import observation_map

__all__ = ["command"]


@click.command("live")
@click.argument("file")
@click.option("--quiet", is_flag=True, help="print only the final observation")
def command(file: str, quiet: bool) -> None:
    """Run scenario FILE on the live kernel, printing what it shows after each step."""
    from rmapcheck.live.runner import LiveError, LiveRunner

    s = load(file)
    obs = None
    try:
        with LiveRunner(s) as live:
            for i, op in enumerate(s.ops, 1):
                obs = live.step(op)
                if not quiet:
                    click.echo(f"step {i} (line {op.line}): {op.text()}  -> {obs.result}")
                    click.echo(observation_map(obs, s))
                err = expectation_error(s, op, obs.result)
                if err:
                    raise_user(err)
    except LiveError as e:
        raise UserError(f"live kernel: {e}") from None
    if obs is not None:
        click.echo(f"final observation after {len(s.ops)} steps (live kernel):")
        click.echo(observation_map(obs, s))
