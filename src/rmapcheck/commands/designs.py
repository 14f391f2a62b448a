"""``rmapcheck designs [DESIGN]``: the designs, or one design's kernel functions, layers and switches."""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable

import click

from rmapcheck.commands.common import UserError
from rmapcheck.designs import DESIGNS, Design, DesignError, config_text, load_design
from rmapcheck.designs.design import signature

__all__ = ["command", "describe"]


def _summary(d: Design) -> str:
    # The docstring's first line, without its "Design ``name``:" and markup.
    return re.sub(r"^Design ``[^`]*``:\s*", "", d.doc).replace("``", "")


def _where(fn: Callable[..., Any]) -> str:
    mod = getattr(fn, "__module__", "") or ""
    if mod.startswith("rmapcheck_design_"):
        return "design file " + str(getattr(inspect.getmodule(fn), "__file__", mod))
    return mod


def describe(d: Design, changed_only: bool = False) -> list[str]:
    """The lines ``rmapcheck designs DESIGN`` prints."""
    base = f" (base {d.base})" if d.base else ""
    out = [f"design {d.spec}{base}: {_summary(d)}"]
    # what it is: its kernel version and commits, and what differs from its base
    out += [f"  {line}".rstrip() for line in d.about.replace("``", "").splitlines()]
    for path, sha in d.files:
        out.append(f"file: {path} sha256 {sha}")
    if d.changed:
        out.append(f"changes: {', '.join(sorted(d.changed))}")
    out.append("layers, applied in order over the kernel functions after every replacement:")
    for layer in d.layers:
        out.append(f"  {layer.name}: wraps {', '.join(layer.wraps)} ({layer.doc})")
    if d.outer:
        out.append(f"replaced after the layers (REPLACE_OUTER): {', '.join(sorted(d.outer))}")
    switches = {k: v for k, v in d.config.items() if k.startswith(("CONFIG_", "sysctl_"))}
    out.append(f"switches (--config, CONFIG): {config_text(switches)}")
    names = sorted(d.changed if changed_only else d.functions, key=lambda n: n.lstrip("_"))
    out.append(f"kernel functions ({len(names)}), replaceable by name in REPLACE:")
    width = min(48, max((len(signature(n, d.functions[n])) for n in names), default=0))
    for n in names:
        fn = d.functions[n]
        notes = [_where(fn)]
        wrapped = d.wrapped_by(n)
        if wrapped:
            notes.append(f"wrapped by {', '.join(wrapped)}")
        if n in d.changed:
            notes.append("changed by this design")
        out.append(f"  {signature(n, fn):<{width}}  {'; '.join(notes)}")
    return out


@click.command("designs")
@click.argument("design", required=False, metavar="[NAME|PATH.py]")
@click.option("--changed", is_flag=True, help="list only the kernel functions the design changes")
def command(design: str | None, changed: bool) -> None:
    """List the designs, or DESIGN's kernel functions (what a design file may replace), layers and switches."""
    if design is None:
        rows = []
        for name in DESIGNS:
            d = load_design(name)
            rows.append((name, d.base or "", _summary(d)))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        click.echo(f"{'design':<{w0}}  {'base':<{w1}}  what it is")
        for name, b, doc in rows:
            click.echo(f"{name:<{w0}}  {b:<{w1}}  {doc}")
        click.echo("")
        click.echo("A design file (rmapcheck check --design mybug.py) names its BASE and REPLACEs kernel")
        click.echo("functions by name; rmapcheck designs NAME lists them (docs/writing-a-design.md).")
        return
    try:
        d = load_design(design)
    except DesignError as e:
        raise UserError(str(e)) from None
    for line in describe(d, changed):
        click.echo(line)
