"""``rmapcheck history``: the catalog of real bugs, each found by the checker on its buggy design, clean on its fix.

The rows are the ``HISTORY`` declarations of the registered designs
(:mod:`rmapcheck.check.catalog`); each side of a row is ``rmapcheck check
--design D ARGS`` with the row's arguments, parsed and run by the ``check``
command's own code (:func:`~rmapcheck.commands.check.check_options`,
:func:`~rmapcheck.commands.check.run_options`).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Callable

import click

from rmapcheck.check.catalog import CatalogError, Row, RowResult, SideResult, catalog_rows, run_catalog, select_rows
from rmapcheck.check.checker import Stop
from rmapcheck.commands.check import check_options, interruptible, run_options
from rmapcheck.commands.common import UserError

__all__ = ["command", "history_rows", "run_history", "side_runner", "table_lines"]


def history_rows(bugs: tuple[str, ...] = (), fast: bool = False) -> list[tuple[Row, dict[str, Any]]]:
    """The selected rows, each with the ``check`` parameters its arguments parse to.

    Every row's arguments are parsed before any runs, so that a malformed
    one is bad input at once.

    :raises UserError: a malformed row, arguments that are not ``check``
        options, or a label that names no row.
    """
    try:
        rows = select_rows(catalog_rows(), bugs, fast)
    except CatalogError as e:
        raise UserError(str(e)) from None
    out = []
    for row in rows:
        try:
            params = check_options(row.design, row.args)
        except UserError as e:
            raise UserError(f"{row.bug} ({row.design}): args {' '.join(row.args)}: {e}") from None
        out.append((row, params))
    return out


def side_runner(params: dict[Row, dict[str, Any]], timeout: float | None = None,
                stop: Stop | None = None) -> Callable[[Row, str], SideResult]:
    """A function that runs one side of a row: ``rmapcheck check`` with the row's parameters on a design.

    :param timeout: the most seconds of each side (a row's own ``--timeout``
        is kept if shorter).
    """
    def run(row: Row, design: str) -> SideResult:
        p = dict(params[row], design=design)
        if timeout is not None:
            p["timeout"] = timeout if p.get("timeout") is None else min(timeout, p["timeout"])  # type: ignore[type-var]
        return SideResult.of(run_options(**p, stop=stop))

    return run


def run_history(selected: list[tuple[Row, dict[str, Any]]], timeout: float | None = None,
                stop: Stop | None = None, done: Callable[[RowResult], None] | None = None,
                ) -> tuple[list[RowResult], float]:
    """Run rows of :func:`history_rows`, one after another; return them and the seconds taken."""
    params = {row: p for row, p in selected}
    return run_catalog([row for row, _ in selected], side_runner(params, timeout, stop), stop, done)


def _place(f: dict[str, Any]) -> str:
    # "in down_write", or "found by check_invariants" for a check between steps
    if f.get("found_by"):
        return f"found by {f['found_by']}"
    return f"in {f['function']}" if f.get("function") else ""


def _chain(f: dict[str, Any]) -> str:
    # The innermost kernel functions of the finding's call chain, or its detector.
    chain = f.get("chain") or []
    if not chain:
        return f"found by {f['found_by']}" if f.get("found_by") else "-"
    return " <- ".join(chain[:3]) + (" <- ..." if len(chain) > 3 else "")


def _side(s: SideResult | None) -> tuple[str, str]:
    # distinct states (a hunt's states checked, starred) and seconds
    if s is None:
        return "-", "-"
    return (f"{s.distinct}" if s.strategy != "hunt" else f"{s.states}*"), f"{s.seconds:.1f}"


def table_lines(results: list[RowResult], seconds: float, total: int) -> list[str]:
    """The table ``rmapcheck history`` prints: one line per row, then each row's title, bounds, chain and tuning.

    :param total: the rows selected (more than ``results`` after an interruption).
    """
    heads = ("bug", "buggy design", "fixed design", "found on the buggy design", "trace", "states", "s",
             "on the fix", "states", "s", "tuned", "")
    lines: list[list[str]] = []
    for rr in results:
        f = rr.finding
        if f is not None:
            if f["trace_length"] is None:  # a sometimes property: no state reached it
                what, trace = f"{f['property']} never reached", "-"
            else:
                what, trace = f"{f['property']} {_place(f)}".rstrip(), str(f["trace_length"])
        elif rr.buggy is not None and rr.buggy.findings:
            other = rr.buggy.findings[0]
            what, trace = f"(only {other['property']} {_place(other)})", "-"
        else:
            what, trace = "-" if rr.buggy is None else "nothing", "-"
        bs, bsec = _side(rr.buggy)
        if rr.fixed is None:
            fixed = "not run"
        elif rr.fixed.findings:
            fixed = f"{rr.fixed.findings[0]['property']}" + (f" (+{len(rr.fixed.findings) - 1})"
                                                              if len(rr.fixed.findings) > 1 else "")
        else:
            fixed = ("clean" if rr.fixed_clean else "interrupted" if rr.fixed.interrupted
                     else "not to the end" if not rr.fixed.complete else f"{rr.row.property} never reached")
        fs, fsec = _side(rr.fixed)
        lines.append([rr.row.bug, rr.row.design, rr.row.fixed, what, trace, bs, bsec, fixed, fs, fsec,
                      "yes" if rr.row.tuned else "", rr.status])
    widths = [max([len(h)] + [len(r[i]) for r in lines]) for i, h in enumerate(heads)]
    right = {4, 5, 6, 8, 9}

    def fmt(cells: tuple[str, ...] | list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [fmt(heads).rstrip(), "-" * len(fmt(heads).rstrip())]
    out += [fmt(r).rstrip() for r in lines]
    n = sum(rr.reproduced for rr in results)
    out.append("")
    out.append(f"{n} of {total} rows reproduced (found on the buggy design, clean on the fixed one at the same "
               f"bounds) in {seconds:.1f} s" + ("" if len(results) == total and not _cut(results)
                                                 else f"; interrupted after {len(results)} rows"))
    for rr in results:
        out.append("")
        out.append(f"{rr.row.bug}: {rr.row.title}")
        out.append(f"  rmapcheck check {' '.join(rr.row.args)} --design {rr.row.design}, and {rr.row.fixed}")
        side = rr.buggy or rr.fixed
        if side is not None:
            out.append(f"  bounds: {side.bounds}")
        if rr.finding is not None and rr.finding["chain"]:
            out.append(f"  call chain: {_chain(rr.finding)}")
        elif rr.finding is not None:
            out.append(f"  {_chain(rr.finding)}")
        if rr.row.tuned:
            out.append(f"  tuned: {rr.row.tuned}")
    if any(rr.buggy is not None and rr.buggy.strategy == "hunt" for rr in results):
        out.append("")
        out.append("*: states checked by a hunt, which revisits states and does not count distinct ones")
    return out


def _cut(results: list[RowResult]) -> bool:
    return bool(results) and (results[-1].fixed is None or bool(results[-1].fixed.interrupted))


@click.command("history")
@click.option("--bug", "bugs", multiple=True, metavar="LABEL", help="run only this row, such as B10 (repeatable)")
@click.option("--fast", is_flag=True, help="run only the fast rows (those the test suite runs)")
@click.option("--timeout", type=float, default=None, help="the most seconds of each side of a row")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--progress/--no-progress", default=None,
              help="say on stderr how each row ended, as it ends (default: without --json)")
def command(bugs: tuple[str, ...], fast: bool, timeout: float | None, as_json: bool, progress: bool | None) -> None:
    """Run the catalog of real bugs: each found by the checker on its buggy design, and the fix clean.

    One row per bug (docs/history.md): the buggy design, the design with the
    fix, the `rmapcheck check` bounds both run at, what the checker found on
    the buggy design (property, kernel function, trace length, distinct
    states, seconds) and whether the fixed design is clean at the same
    bounds. Rows run one after another; Ctrl-C stops with the rows so far.
    Exit status: 0 if every row selected is reproduced, 1 if one is not,
    2 on bad input, 128 + the signal's number if interrupted before a row
    failed.
    """
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UserError(f"--timeout must be a positive number of seconds, not {timeout}")
    show = not as_json if progress is None else progress
    selected = history_rows(bugs, fast)
    total = len(selected)

    def done(rr: RowResult) -> None:
        if show:
            click.echo(f"  {rr.row.bug} ({rr.row.design} -> {rr.row.fixed}): {rr.status}", err=True)

    with interruptible(Stop()) as stop:
        results, seconds = run_history(selected, timeout, stop, done)
    n = sum(rr.reproduced for rr in results)
    if as_json:
        click.echo(json.dumps({"rows": [rr.as_dict() for rr in results], "selected": total, "reproduced": n,
                               "seconds": round(seconds, 3), "interrupted": bool(stop)}, sort_keys=True))
    else:
        for line in table_lines(results, seconds, total):
            click.echo(line)
    failed = any(not rr.reproduced and rr.status != "interrupted" for rr in results)
    if failed:
        sys.exit(1)
    if stop:
        sys.exit(128 + stop.signum)
    if n < total:
        sys.exit(1)
