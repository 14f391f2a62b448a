"""``rmapcheck live FILE``: execute a scenario on the running kernel."""

from __future__ import annotations

import click

from rmapcheck.commands.common import ScenarioReport, UserError, expectation_error, load
from rmapcheck.commands.run import raise_user
from rmapcheck.report.observation import ksm_summary, observation_map

__all__ = ["command"]


@click.command("live")
@click.argument("file")
@click.option("--quiet", is_flag=True, help="print only the final observation")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object with each step's observation")
def command(file: str, quiet: bool, as_json: bool) -> None:
    """Run scenario FILE on the live kernel, printing what it shows after each step.

    With KSM in play each step also shows KSM's counters and each process's
    ksm_stat; --json prints one object with every step's observation, as
    `rmapcheck run --json` does for the model.
    """
    from rmapcheck.live.runner import LiveError, LiveRunner

    s = load(file)
    report = ScenarioReport(s, "live", enabled=as_json)
    obs = None
    try:
        with LiveRunner(s) as live:
            for i, op in enumerate(s.ops, 1):
                obs = live.step(op)
                report.step(i, op, obs)
                if not quiet and not as_json:
                    click.echo(f"step {i} (line {op.line}): {op.text()}  -> {obs.result}")
                    click.echo(observation_map(obs, s))
                    if obs.counters:
                        click.echo(ksm_summary(obs))
                err = expectation_error(s, op, obs.result)
                if err:
                    report.unexpected(err)
                    raise_user(err)
    except LiveError as e:
        raise UserError(f"live kernel: {e}") from None
    report.done()
    if obs is not None and not as_json:
        click.echo(f"final observation after {len(s.ops)} steps (live kernel):")
        click.echo(observation_map(obs, s))
        if obs.counters:
            click.echo(ksm_summary(obs))
