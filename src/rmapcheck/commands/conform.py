"""``rmapcheck conform``: many random scenarios on the model and the live kernel.

Ends with exactly one line ``conform: <N> scenarios, <A> agree, <D> differ``.
Each difference is shrunk to a minimal scenario, saved and printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rmapcheck.commands.common import UserError
from rmapcheck.compare import diff_scenario, shrink
from rmapcheck.scenario.generate import random_scenario
from rmapcheck.scenario.parse import dump_scenario

__all__ = ["command", "conform"]


def conform(n: int, seed: int, save: Path | None, echo=print) -> tuple[int, int]:
    """Run ``n`` random scenarios from ``seed`` on; return ``(agree, differ)``."""
    agree = differ = 0
    for sd in range(seed, seed + n):
        s = random_scenario(sd)
        res = diff_scenario(s)
        if res.agree:
            agree += 1
            continue
        differ += 1
        small = shrink(s, lambda c: not diff_scenario(c).agree)
        text = dump_scenario(small)
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            path = save / f"{small.name}.yaml"
            path.write_text(text)
            echo(f"difference in random scenario {sd}, shrunk to {len(small.ops)} steps: {path}")
        else:
            echo(f"difference in random scenario {sd}, shrunk to {len(small.ops)} steps:")
        echo(text)
    return agree, differ


@click.command("conform")
@click.option("-n", "count", default=200, show_default=True, help="number of random scenarios")
@click.option("--seed", default=0, show_default=True, help="seed of the first scenario")
@click.option("--save", "save", default="conform-failures", show_default=True,
              help="directory for shrunk differing scenarios")
def command(count: int, seed: int, save: str) -> None:
    """Run COUNT random scenarios on the model and the live kernel and count agreement."""
    from rmapcheck.live.runner import LiveError

    if count < 0:
        raise UserError("-n must not be negative")
    try:
        agree, differ = conform(count, seed, Path(save), click.echo)
    except LiveError as e:
        raise UserError(f"live kernel: {e}") from None
    click.echo(f"conform: {count} scenarios, {agree} agree, {differ} differ")
    if differ:
        sys.exit(1)
