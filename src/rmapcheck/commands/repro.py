"""``rmapcheck repro TRACE -o repro.c``: a C program that performs a counterexample on a real kernel.

TRACE is a trace saved by ``rmapcheck check`` (a bundled one may be named
without its directory or ``.json``) or a scenario file; the program is
described in :mod:`rmapcheck.live.repro`.
"""

from __future__ import annotations

import click

from rmapcheck.check.trace import TraceError, judged_run, load_trace, replay
from rmapcheck.commands.common import UserError, check_design, load, trace_path, write_output
from rmapcheck.designs import DesignError
from rmapcheck.live.repro import ReproError, repro_program
from rmapcheck.report.provenance import FindingSummary, provenance

__all__ = ["command"]


def _is_trace(path: str) -> bool:
    # A trace is JSON: its first non-blank character opens an object.
    try:
        with open(path, "rb") as fh:
            return fh.read(64).lstrip()[:1] == b"{"
    except OSError:
        return False


@click.command("repro")
@click.argument("trace")
@click.option("-o", "--output", default="-", show_default=True, metavar="repro.c",
              help="where to write the C program ('-': standard output)")
@click.option("--design", default=None, metavar="NAME|PATH.py",
              help="for a scenario file: the design whose findings the header names (default linux-6.18); "
                   "a trace names its own")
def command(trace: str, output: str, design: str | None) -> None:
    """Write a C program that performs TRACE (or a scenario file) with real system calls.

    \b
    Build and run it as root on the kernel to test:
        cc -O2 -Wall -o repro repro.c && sudo ./repro
    After each step it prints the live runner's observation as a JSON line and
    checks the step's result; it restores every KSM knob it changed.
    """
    path = trace_path(trace)
    try:
        if _is_trace(path):
            if design is not None:
                raise UserError(f"{path}: a trace names its own design; --design is for a scenario file")
            t = load_trace(path)
            f, _state = replay(t)
            found = [FindingSummary(len(f.trace), f.property, f.function, f.message)] if f is not None else []
            s, kind, design = t.scenario, "trace", t.design
            prov = provenance(kind, path, s, design, found, t.config)
        else:
            s = load(trace)
            design = check_design(design or "linux-6.18")
            found = []
            for i, _op, out in judged_run(s, design):
                found += [FindingSummary(i, prop, fn, msg) for prop, fn, msg, _err in out.findings]
            prov = provenance("scenario", s.source, s, design, found)
        text = repro_program(s, prov)
    except TraceError as e:
        raise UserError(str(e)) from None
    except DesignError as e:
        raise UserError(f"{path}: {e}") from None
    except ReproError as e:
        raise UserError(f"{path}: {e}") from None
    write_output(output, text)
    if output != "-":
        click.echo(f"wrote {output}: {len(s.ops)} steps on {design}; {prov.verdict()}")
