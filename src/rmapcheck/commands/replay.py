"""``rmapcheck replay TRACE``: re-execute a saved counterexample step by step.

Each step prints the address maps, the anon_vma hierarchy and every holder of
a reference to the objects the finding involves
(:func:`~rmapcheck.report.holders.involved_objects`), found in that step's
state by their names (cache and allocation serial), so the references can be
followed from each object's allocation to the finding.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from rmapcheck.check.trace import TraceError, load_trace, replay
from rmapcheck.commands.common import UserError, trace_path, write_output
from rmapcheck.designs import DesignError, config_text
from rmapcheck.report.finding import format_finding
from rmapcheck.report.holders import Namer, find_object, format_holders, involved_objects
from rmapcheck.scenario.ops import Op
from rmapcheck.scenario.render import address_map, anon_vma_tree, op_pages, vma_namer

__all__ = ["command"]


@click.command("replay")
@click.argument("trace")
@click.option("--quiet", is_flag=True, help="print only the report")
@click.option("--html", "html_out", metavar="OUT.html",
              help="also write a self-contained page that steps through the trace (docs/html.md)")
def command(trace: str, quiet: bool, html_out: str | None) -> None:
    """Replay TRACE (saved by `rmapcheck check`) with address maps, anon_vmas and who holds them.

    TRACE may name a bundled trace without its directory or .json.
    """
    trace = trace_path(trace)
    try:
        t = load_trace(trace)
        # A first pass finds the object of the finding, the second shows it.
        f, state = replay(t)
    except (TraceError, DesignError) as e:
        raise UserError(str(e) if isinstance(e, TraceError) else f"{trace}: {e}") from None
    built = f" with {config_text(t.config)}" if t.config else ""
    click.echo(f"replaying {trace}: design {t.design}{built}, expecting {t.property} in {t.function}")
    involved = involved_objects(f.error) if f is not None and f.error is not None else []
    idents = [(o._cache.name, o._alloc[2]) for o in involved if o._cache is not None and o._alloc]

    def show(r: Any, op: Op, i: int) -> None:
        tag = " (setup)" if i <= t.setup else ""
        click.echo(f"step {i}{tag}: {op.text()}")
        mms = r.mms()
        click.echo(address_map(mms, t.scenario, op_pages(t.scenario, op)))
        avs = r.k.anon_vma_cachep.live() + [a for a in r.k.anon_vma_cachep.freelist]
        if avs:
            click.echo(anon_vma_tree(avs, vma_namer(mms, t.scenario)))
        name = Namer(mms, t.scenario)
        for ident in idents:
            o = find_object(r.k, *ident)
            if o is not None:
                click.echo(format_holders(r.k, o, name, indent=""))

    if html_out:
        from rmapcheck.report.html import trace_page

        write_output(html_out, trace_page(trace, t))
    if not quiet:
        f, state = replay(t, show)
    if f is None:
        click.echo(f"not reproduced: no property is violated by the {len(t.scenario.ops)} steps")
        sys.exit(1)
    texts = [op.text() for op in t.scenario.ops[:len(f.trace)]]
    click.echo("")
    if f.error is not None:
        click.echo(format_finding(f.error, texts, len(texts), state.k, t.scenario))
    else:
        click.echo(f"{f.property} in {f.function}: {f.message}")
    same = (f.property, f.function) == (t.property, t.function)
    click.echo(f"reproduced: {f.property} in {f.function} at step {len(f.trace)}"
               + ("" if same else f" (the trace recorded {t.property} in {t.function})"))
    if not same:
        sys.exit(1)
