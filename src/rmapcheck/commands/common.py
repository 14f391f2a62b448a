"""What the commands share: loading scenarios and designs with one-line errors."""

from __future__ import annotations

import errno as _errno
import json
from pathlib import Path
from typing import Any

import click

from rmapcheck.designs import DesignError, get_design
from rmapcheck.scenario.ops import Observation, Op, Scenario
from rmapcheck.scenario.parse import ScenarioError, load_scenario

__all__ = ["BUNDLED", "BUNDLED_TRACES", "ScenarioReport", "UserError", "check_design", "expectation_error", "load",
           "trace_path", "write_output"]

#: the scenarios shipped with the package
BUNDLED = Path(__file__).resolve().parent.parent / "scenarios"

#: the counterexamples shipped with the package (traces saved by ``rmapcheck check``)
BUNDLED_TRACES = Path(__file__).resolve().parent.parent / "traces"


class UserError(Exception):
    """Bad input: printed as one line, exit status 2."""


def trace_path(path: str) -> str:
    """``path``, or the bundled trace it names without its directory or ``.json``."""
    if not Path(path).exists():
        for p in (BUNDLED_TRACES / path, BUNDLED_TRACES / f"{path}.json"):
            if p.is_file():
                return str(p)
    return path


def write_output(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (``-``: standard output); a path that cannot be written is bad input."""
    if path == "-":
        click.echo(text, nl=False)
        return
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot write: {getattr(e, 'strerror', None) or e}") from None


def load(path: str) -> Scenario:
    """Load a scenario file; a bundled scenario may be named without its directory."""
    p = Path(path)
    if not p.exists() and (BUNDLED / path).exists():
        p = BUNDLED / path
    if not p.exists() and (BUNDLED / f"{path}.yaml").exists():
        p = BUNDLED / f"{path}.yaml"
    if not p.exists():
        raise UserError(f"{path}: no such scenario file")
    try:
        return load_scenario(str(p))
    except ScenarioError as e:
        raise UserError(str(e)) from None


def check_design(name: str) -> str:
    """``name`` if it is a known design or a design file that loads, else a :class:`UserError`."""
    try:
        get_design(name)
    except DesignError as e:
        raise UserError(str(e)) from None
    return name


def expectation_error(s: Scenario, op: Op, result: str) -> str | None:
    """The one-line error for a step whose result is unexpected (``None`` if fine).

    A step without a stated result must succeed (``ok``) or be a read; a step
    with one must produce exactly it.
    """
    where = f"{s.source}:{op.line}" if op.line else s.source
    if op.expect is not None:
        if result != op.expect:
            return f"{where}: {op.text()}: got {result}"
        return None
    if result == "SIGSEGV":
        return f"{where}: {op.text()}: SIGSEGV"
    if result in _errno.errorcode.values():
        return f"{where}: {op.text()}: {result} (the kernel refuses it)"
    return None




class ScenarioReport:
    """The ``--json`` object of ``run`` and ``live``: each step's observation, then the verdict.

    ``{"scenario", "file", "side", "steps": [{"step", "line", "op", "expect",
    "result", "layout", "frames", "ksm", "counters", "ksm_stat"}, ...],
    "verdict", "error", "finding"}``: ``verdict`` is ``ok``, ``unexpected`` (a
    step's result is not the stated one: ``error`` says which) or ``finding``
    (the model found a violation: ``finding`` names it). Printed once, when the
    run ends; ``counters`` and ``ksm_stat`` only with KSM in play.

    :param side: the design run (``linux-6.18``) or ``live``.
    """

    def __init__(self, s: Scenario, side: str, enabled: bool = True) -> None:
        self.enabled = enabled
        self.d: dict[str, Any] = {"scenario": s.name, "file": s.source, "side": side, "steps": [],
                                  "verdict": "ok"}

    def step(self, i: int, op: Op, obs: Observation) -> None:
        """Record step ``i``'s observation."""
        self.d["steps"].append({"step": i, "line": op.line, "op": op.text(), "expect": op.expect, **obs.as_dict()})

    def unexpected(self, error: str) -> None:
        """The last step's result is not the stated one: print the object now."""
        self.d.update(verdict="unexpected", error=error)
        self.done()

    def finding(self, i: int, op: Op, prop: str, function: str, message: str) -> None:
        """Step ``i`` raised a finding: print the object now."""
        self.d.update(verdict="finding", finding={"step": i, "line": op.line, "op": op.text(), "property": prop,
                                                  "function": function, "message": message})
        self.done()

    def done(self) -> None:
        """Print the object (once, if enabled)."""
        if self.enabled:
            click.echo(json.dumps(self.d, sort_keys=True))
            self.enabled = False
