"""``rmapcheck conform``: many random scenarios on the model and the live kernel.

``-n N`` scenarios run in all, of two kinds: ``N - M`` plain ones
(``random_scenario(seed)``: the VMA, fault, fork and exit operations), then
``M`` KSM ones (``random_scenario(seed, kinds=KSM_KINDS)``: the same
operations plus mergeable/unmergeable advice, ``prctl``, ``ksm_scan``,
``ksm_settle``, ``ksm_set`` and ``migrate``), ``M`` being ``--ksm``
(default ``N // 2``). Each kind takes the seeds ``seed, seed + 1, ...``; a
KSM scenario is named ``random-ksm-<seed>``. The run ends with exactly one
line ``conform: <N> scenarios, <A> agree, <D> differ`` counting both kinds.
Each difference is shrunk to a minimal scenario, saved and printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from rmapcheck.commands.common import UserError
from rmapcheck.compare import diff_scenario, shrink
from rmapcheck.scenario import generate
from rmapcheck.scenario.generate import random_scenario
from rmapcheck.scenario.ops import Scenario
from rmapcheck.scenario.parse import dump_scenario

__all__ = ["command", "conform", "ksm_scenario", "scenarios"]


def ksm_scenario(seed: int) -> Scenario:
    """The random KSM scenario of ``seed`` (named ``random-ksm-<seed>``)."""
    s = random_scenario(seed, kinds=generate.KSM_KINDS)
    s.name = f"random-ksm-{seed}"
    s.source = f"<random ksm {seed}>"
    return s


def scenarios(n: int, seed: int, ksm: int) -> Iterator[tuple[str, Scenario]]:
    """``n`` plain, then ``ksm`` KSM random scenarios, each with a label."""
    for sd in range(seed, seed + n):
        yield f"random scenario {sd}", random_scenario(sd)
    for sd in range(seed, seed + ksm):
        yield f"random KSM scenario {sd}", ksm_scenario(sd)


def conform(n: int, seed: int, save: Path | None, echo: Callable[[str], object] = print,
            ksm: int = 0) -> tuple[int, int]:
    """Run ``n`` plain, then ``ksm`` KSM random scenarios from ``seed`` on; return ``(agree, differ)``."""
    agree = differ = 0
    for label, s in scenarios(n, seed, ksm):
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
            echo(f"difference in {label}, shrunk to {len(small.ops)} steps: {path}")
        else:
            echo(f"difference in {label}, shrunk to {len(small.ops)} steps:")
        echo(text)
    return agree, differ


@click.command("conform")
@click.option("-n", "count", default=200, show_default=True,
              help="number of random scenarios in all, plain and KSM")
@click.option("--ksm", "ksm", default=None, type=int,
              help="how many of the N are KSM scenarios (plain operations plus KSM steps "
                   "and migrate), run after the plain ones  [default: N // 2]")
@click.option("--seed", default=0, show_default=True, help="seed of the first scenario of each kind")
@click.option("--save", "save", default="conform-failures", show_default=True,
              help="directory for shrunk differing scenarios")
def command(count: int, ksm: int | None, seed: int, save: str) -> None:
    """Run N random scenarios on the model and the live kernel and count agreement.

    N - M plain scenarios (seeds SEED, SEED+1, ...), then M KSM scenarios
    (seeds SEED, SEED+1, ..., drawn with the KSM steps), M being --ksm
    (N // 2 by default; --ksm 0: plain scenarios only). The last line counts
    both kinds: "conform: <N> scenarios, <A> agree, <D> differ".
    """
    from rmapcheck.live.runner import LiveError

    if count < 0:
        raise UserError("-n must not be negative")
    if ksm is None:
        ksm = count // 2
    if not 0 <= ksm <= count:
        raise UserError(f"--ksm must be between 0 and N ({count})")
    try:
        agree, differ = conform(count - ksm, seed, Path(save), click.echo, ksm=ksm)
    except LiveError as e:
        raise UserError(f"live kernel: {e}") from None
    click.echo(f"conform: {count} scenarios, {agree} agree, {differ} differ")
    if differ:
        sys.exit(1)
