"""The catalog of real bugs (``rmapcheck history``): rows gathered from the designs, and what running them found.

A registered design module declares the catalog rows it is the *buggy*
side of as plain data, ``HISTORY`` (docs/history.md "Running the catalog")::

    HISTORY = (
        {"bug": "B1", "title": "the seed's over-drop of the root's own reference",
         "fixed": "linux-2.6.36", "args": ("--phase", "reuse"), "property": "leak",
         "tuned": "", "fast": True},
    )

``args`` are ``rmapcheck check`` options, the same for both sides;
``property`` is what the buggy design must give: the name of an
``always`` property that a finding violates, or of a ``sometimes``
property, which the buggy design must then never reach while the fixed one
does; ``tuned`` is ``""`` for bounds a user would pick (a preset, a phase of
the default portfolio, plain operations), else one line saying why they are
tuned; ``fast`` marks rows whose two sides take a few seconds each (they run
in the test suite).

A row is *reproduced* when the checker finds ``property`` on the buggy
design and the fixed design is clean at the same arguments: no finding, and
the search complete (every exhaustive strategy explored its bounds to the
end; a hunt is never exhaustive and counts as complete when its budget is
spent). Running a side is the caller's (:func:`run_catalog` takes it as a
function): the command line parses ``args`` as ``rmapcheck check`` does.
"""

from __future__ import annotations

import importlib
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from rmapcheck.check.checker import Result, Stop, finding_dict
from rmapcheck.check.model import KernelModel
from rmapcheck.check.portfolio import PortfolioResult, phases_for
from rmapcheck.check.properties import ALWAYS, SOMETIMES
from rmapcheck.designs import DESIGNS, load_design

__all__ = ["CatalogError", "EXHAUSTIVE", "Row", "RowResult", "SideResult", "bug_order", "catalog_rows",
           "run_catalog", "select_rows"]

#: the strategies that can explore their bounds to the end; a side run with
#: one that did not (a time limit) is not clean, only not yet refuted
EXHAUSTIVE = ("bfs", "dfs")

#: the keys of a ``HISTORY`` row, with their types; ``tuned`` and ``fast`` may be left out
_KEYS: dict[str, type] = {"bug": str, "title": str, "fixed": str, "args": tuple, "property": str, "tuned": str,
                          "fast": bool}
_OPTIONAL = {"tuned": "", "fast": False}

#: every property name a row may give
PROPERTIES = tuple(p.name for p in ALWAYS + SOMETIMES)


class CatalogError(ValueError):
    """A malformed ``HISTORY`` row, or a selection naming no row: one line."""


@dataclass(frozen=True)
class Row:
    """One catalog row: a bug, its buggy and fixed designs, and the ``rmapcheck check`` arguments of both."""

    bug: str
    title: str
    design: str
    fixed: str
    args: tuple[str, ...]
    property: str
    tuned: str = ""
    fast: bool = False

    @property
    def sometimes(self) -> bool:
        """Whether ``property`` is a ``sometimes`` property (the buggy design never reaches it)."""
        return self.property in {p.name for p in SOMETIMES}

    def as_dict(self) -> dict[str, Any]:
        """The row as plain data."""
        return {"bug": self.bug, "title": self.title, "design": self.design, "fixed": self.fixed,
                "args": list(self.args), "property": self.property, "tuned": self.tuned, "fast": self.fast}


def _row(design: str, module: str, i: int, d: object) -> Row:
    where = f"rmapcheck/designs/{module}.py: HISTORY[{i}]"
    if not isinstance(d, Mapping):
        raise CatalogError(f"{where}: a row is a dict of {', '.join(_KEYS)}")
    extra = sorted(set(d) - set(_KEYS))
    if extra:
        raise CatalogError(f"{where}: unknown key {extra[0]!r} (keys: {', '.join(_KEYS)})")
    row = {**_OPTIONAL, **d}
    for key, kind in _KEYS.items():
        if key not in row:
            raise CatalogError(f"{where}: no {key!r}")
        if not isinstance(row[key], kind):
            raise CatalogError(f"{where}: {key!r} must be a {kind.__name__}, not {row[key]!r}")
    if not row["bug"] or any(c.isspace() for c in row["bug"]):
        raise CatalogError(f"{where}: 'bug' must be a label such as B10, not {row['bug']!r}")
    if not all(isinstance(a, str) for a in row["args"]):
        raise CatalogError(f"{where}: 'args' must be a tuple of strings (rmapcheck check options)")
    if any(a == "--design" or a.startswith("--design=") for a in row["args"]):
        raise CatalogError(f"{where}: 'args' name no design: the row runs them on {design} and on its 'fixed'")
    if row["fixed"] not in DESIGNS:
        raise CatalogError(f"{where}: 'fixed' names {row['fixed']!r}, not a registered design")
    if row["fixed"] == design:
        raise CatalogError(f"{where}: 'fixed' is the buggy design itself")
    if row["property"] not in PROPERTIES:
        raise CatalogError(f"{where}: 'property' {row['property']!r} is not a property "
                           f"(known: {', '.join(PROPERTIES)})")
    return Row(row["bug"], row["title"], design, row["fixed"], tuple(row["args"]), row["property"], row["tuned"],
               row["fast"])


def bug_order(label: str) -> tuple[int, int, str]:
    """Sort key of a bug label: ``B2`` before ``B10``, and labels without a number after them."""
    m = re.fullmatch(r"B(\d+)", label)
    return (0, int(m.group(1)), "") if m else (1, 0, label)


def catalog_rows(designs: Mapping[str, str] | None = None) -> list[Row]:
    """The ``HISTORY`` rows of every registered design (``designs``: name → module), in bug order.

    :raises CatalogError: a row is malformed (naming its module and index).
    """
    rows = []
    for name, module in (DESIGNS if designs is None else designs).items():
        mod = importlib.import_module(f"rmapcheck.designs.{module}")
        history = getattr(mod, "HISTORY", ())
        if not isinstance(history, (tuple, list)):
            raise CatalogError(f"rmapcheck/designs/{module}.py: HISTORY must be a tuple of rows")
        rows.extend(_row(name, module, i, d) for i, d in enumerate(history))
    return sorted(rows, key=lambda r: bug_order(r.bug))


def select_rows(rows: list[Row], bugs: Iterable[str] = (), fast: bool = False) -> list[Row]:
    """The rows of ``bugs`` (labels, any case; every row if none), only the fast ones if ``fast``.

    :raises CatalogError: a label names no row.
    """
    want = {b.upper(): b for b in bugs}
    known = {r.bug.upper() for r in rows}
    for key, b in want.items():
        if key not in known:
            labels = ", ".join(dict.fromkeys(r.bug for r in rows))
            raise CatalogError(f"--bug {b}: no such row in the catalog (known: {labels})")
    return [r for r in rows if (not want or r.bug.upper() in want) and (r.fast or not fast)]


@dataclass
class SideResult:
    """What ``rmapcheck check`` gave on one side of a row: the findings, the states, the seconds.

    :param findings: as :func:`~rmapcheck.check.checker.finding_dict` gives
        them (a portfolio's with the ``phase`` that found them).
    :param sometimes: each ``sometimes`` property: whether a state reached it
        (in any phase, for a portfolio).
    :param complete: every exhaustive search explored its bounds to the end
        (:data:`EXHAUSTIVE`), and no phase was left out for lack of time.
    """

    design: str
    strategy: str
    bounds: str
    findings: list[dict[str, Any]] = field(default_factory=list)
    distinct: int = 0
    states: int = 0
    seconds: float = 0.0
    complete: bool = False
    sometimes: dict[str, bool] = field(default_factory=dict)
    interrupted: int = 0

    @classmethod
    def of(cls, run: PortfolioResult | tuple[KernelModel, Result]) -> SideResult:
        """The side from a check's model and result, or from a portfolio's result."""
        if isinstance(run, PortfolioResult):
            cfg = {**load_design(run.design).config, **run.config}
            ran = [pr.phase.name for pr in run.phases]
            complete = ran == [p.name for p in phases_for(cfg)] and all(
                pr.result.exhausted or pr.result.strategy not in EXHAUSTIVE for pr in run.phases)
            sometimes: dict[str, bool] = {}
            for pr in run.phases:
                for k, v in pr.result.sometimes.items():
                    sometimes[k] = sometimes.get(k, False) or v
            return cls(run.design, "portfolio", "the default portfolio (" + ", ".join(ran) + ")",
                       [{**finding_dict(f), "phase": pr.phase.name} for pr, f in run.findings],
                       sum(pr.result.distinct for pr in run.phases), sum(pr.result.states for pr in run.phases),
                       run.seconds, complete, sometimes, run.interrupted)
        m, res = run
        return cls(res.design, res.strategy, m.bounds.text(), [finding_dict(f) for f in res.findings],
                   res.distinct, res.states, res.seconds, res.exhausted or res.strategy not in EXHAUSTIVE,
                   dict(res.sometimes), res.interrupted)

    def found(self, prop: str) -> dict[str, Any] | None:
        """The finding of ``prop`` with the shortest trace; for a ``sometimes`` property, its never being reached.

        A ``sometimes`` property counts as not reached only by a complete
        search (a cut one may just not have got there).
        """
        if prop in {p.name for p in SOMETIMES}:
            if self.complete and self.sometimes.get(prop) is False:
                return {"property": prop, "function": "", "message": f"no state reached {prop}", "chain": [],
                        "found_by": "", "trace_length": None}
            return None
        hits = [f for f in self.findings if f["property"] == prop]
        return min(hits, key=lambda f: f["trace_length"]) if hits else None

    def clean(self, prop: str) -> bool:
        """No finding, not interrupted, complete; for a ``sometimes`` property ``prop``, also reached."""
        reached = self.sometimes.get(prop, False) if prop in {p.name for p in SOMETIMES} else True
        return not self.findings and not self.interrupted and self.complete and reached

    def as_dict(self) -> dict[str, Any]:
        """The side as plain data."""
        return {"design": self.design, "strategy": self.strategy, "bounds": self.bounds, "findings": self.findings,
                "distinct_states": self.distinct, "states": self.states, "seconds": round(self.seconds, 3),
                "complete": self.complete, "sometimes": self.sometimes, "interrupted": bool(self.interrupted)}


@dataclass
class RowResult:
    """One row as run: both sides (``None`` for a side not run, after an interruption)."""

    row: Row
    buggy: SideResult | None = None
    fixed: SideResult | None = None

    @property
    def finding(self) -> dict[str, Any] | None:
        """What the buggy side found of the row's property."""
        return self.buggy.found(self.row.property) if self.buggy is not None else None

    @property
    def fixed_clean(self) -> bool:
        """The fixed side is clean at the row's arguments."""
        return self.fixed is not None and self.fixed.clean(self.row.property)

    @property
    def reproduced(self) -> bool:
        """Found on the buggy design, and the fixed design clean at the same arguments."""
        return self.finding is not None and self.fixed_clean

    @property
    def status(self) -> str:
        """``reproduced``, or in a few words why not."""
        if self.reproduced:
            return "reproduced"
        if self.buggy is None or self.buggy.interrupted and self.finding is None:
            return "interrupted"
        if self.finding is None:
            return f"{self.row.property} not found"
        if self.fixed is None or self.fixed.interrupted:
            return "interrupted"
        return "fix not clean" if self.fixed.findings or self.row.sometimes else "fix not checked to the end"

    def as_dict(self) -> dict[str, Any]:
        """The row, both sides and the verdict as plain data."""
        return {**self.row.as_dict(), "status": self.status, "reproduced": self.reproduced,
                "found": self.finding, "buggy_side": self.buggy.as_dict() if self.buggy else None,
                "fixed_side": self.fixed.as_dict() if self.fixed else None}


def run_catalog(rows: Iterable[Row], run_side: Callable[[Row, str], SideResult], stop: Stop | None = None,
                done: Callable[[RowResult], None] | None = None) -> tuple[list[RowResult], float]:
    """Run each row's buggy side, then its fixed side, one row after another.

    :param run_side: runs ``rmapcheck check`` with the row's arguments on a design.
    :param stop: once set, the side running ends with its result so far and
        no further side starts.
    :param done: called with each row once both its sides ran (or it was cut).
    :returns: the rows run (the last one partial if ``stop`` was set) and the seconds they took.
    """
    out: list[RowResult] = []
    t0 = time.perf_counter()
    for row in rows:
        if stop:
            break
        rr = RowResult(row)
        out.append(rr)
        rr.buggy = run_side(row, row.design)
        if not stop:
            rr.fixed = run_side(row, row.fixed)
        if done is not None:
            done(rr)
    return out, time.perf_counter() - t0
