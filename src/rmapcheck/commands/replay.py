"""``rmapcheck replay TRACE``: re-execute a saved counterexample step by step."""

from __future__ import annotations

import sys

import click

from rmapcheck.check.trace import TraceError, load_trace, replay
from rmapcheck.commands.common import UserError
from rmapcheck.designs import config_text
from rmapcheck.report.finding import format_finding
from rmapcheck.scenario.render import address_map, anon_vma_tree, vma_namer

__all__ = ["command"]


@click.command("replay")
@click.argument("trace")
@click.option("--quiet", is_flag=True, help="print only the report")
def command(trace: str, quiet: bool) -> None:
    """Replay TRACE (saved by `rmapcheck check`) with address maps and anon_vma state."""
    try:
        t = load_trace(trace)
    except TraceError as e:
        raise UserError(str(e)) from None
    built = f" with {config_text(t.config)}" if t.config else ""
    click.echo(f"replaying {trace}: design {t.design}{built}, expecting {t.property} in {t.function}")

    def show(r, op, i):  # type: ignore[no-untyped-def]
        if quiet:
            return
        tag = " (setup)" if i <= t.setup else ""
        click.echo(f"step {i}{tag}: {op.text()}")
        mms = r.mms()
        first = t.scenario.regions[op.region].at + op.page if op.region else None
        click.echo(address_map(mms, t.scenario, (first, first + op.npages) if first is not None else None))
        avs = r.k.anon_vma_cachep.live() + [a for a in r.k.anon_vma_cachep.freelist]
        if avs:
            click.echo(anon_vma_tree(avs, vma_namer(mms, t.scenario)))

    f = replay(t, click.echo, show)
    if f is None:
        click.echo(f"not reproduced: no property is violated by the {len(t.scenario.ops)} steps")
        sys.exit(1)
    texts = [op.text() for op in t.scenario.ops[:len(f.trace)]]
    click.echo("")
    if f.error is not None and hasattr(f.error, "property_name"):
        click.echo(format_finding(f.error, texts, len(texts)))  # type: ignore[arg-type]
    else:
        click.echo(f"{f.property} in {f.function}: {f.message}")
    same = (f.property, f.function) == (t.property, t.function)
    click.echo(f"reproduced: {f.property} in {f.function} at step {len(f.trace)}"
               + ("" if same else f" (the trace recorded {t.property} in {t.function})"))
    if not same:
        sys.exit(1)
