"""Counterexamples as replayable JSON, and their replay.

A trace file holds the design, the bounds, the regions, the violated property
and every operation from the first (the setup included), each as the fields of
a :class:`~rmapcheck.scenario.ops.Op`. :func:`replay` re-executes it on the
model step by step, judging every state as the checker did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Callable

from rmapcheck.check.model import Finding, KernelModel
from rmapcheck.designs import DESIGNS
from rmapcheck.scenario.ops import OP_KINDS, Op, Region, Scenario

__all__ = ["TRACE_FORMAT", "TraceError", "load_trace", "replay", "save_trace", "trace_dict"]

TRACE_FORMAT = "rmapcheck-trace/1"

_OP_FIELDS = [f.name for f in fields(Op) if f.name not in ("line", "expect")]


class TraceError(ValueError):
    """A malformed trace file; ``str()`` is one line naming the file."""


def trace_dict(model: KernelModel, f: Finding) -> dict[str, Any]:
    """The JSON object of a counterexample."""
    steps = []
    for op in f.trace:
        d = {}
        for name in _OP_FIELDS:
            v = getattr(op, name)
            if name == "flags":
                v = sorted(v)
            if v != getattr(_DEFAULT, name) or name in ("kind", "proc"):
                d[name] = v
        steps.append(d)
    return {
        "format": TRACE_FORMAT,
        "design": model.design,
        "bounds": model.bounds.as_dict(),
        "property": f.property,
        "function": f.function,
        "message": f.message,
        "regions": {r.name: {"pages": r.pages, "at": r.at} for r in model.scenario.regions.values()},
        "setup": f.setup,
        "steps": steps,
    }


_DEFAULT = Op("", "")


def save_trace(path: str, model: KernelModel, f: Finding) -> None:
    """Write the counterexample ``f`` of ``model`` to ``path``."""
    with open(path, "w") as fh:
        json.dump(trace_dict(model, f), fh, indent=1, sort_keys=True)
        fh.write("\n")


@dataclass
class Trace:
    """A loaded trace."""

    design: str
    property: str
    function: str
    scenario: Scenario
    setup: int
    bounds: dict[str, Any]


def load_trace(path: str) -> Trace:
    """Read and validate a trace file.

    :raises TraceError: naming the file and what is wrong with it.
    """
    try:
        with open(path) as fh:
            d = json.load(fh)
    except OSError as e:
        raise TraceError(f"{path}: cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise TraceError(f"{path}:{e.lineno}: not JSON: {e.msg}") from None

    def bad(msg: str) -> TraceError:
        return TraceError(f"{path}: {msg}")

    if not isinstance(d, dict) or d.get("format") != TRACE_FORMAT:
        raise bad(f"not an rmapcheck trace (expected \"format\": \"{TRACE_FORMAT}\")")
    design = d.get("design")
    if design not in DESIGNS:
        raise bad(f"unknown design {design!r} (known: {', '.join(sorted(DESIGNS))})")
    regs = d.get("regions")
    if not isinstance(regs, dict) or not regs:
        raise bad("\"regions\" must be an object of name: {pages, at}")
    regions = {}
    for name, r in regs.items():
        if not isinstance(r, dict) or not isinstance(r.get("pages"), int) or not isinstance(r.get("at"), int) \
                or r["pages"] < 1 or r["at"] < 0:
            raise bad(f"region {name!r} must have integer pages >= 1 and at >= 0")
        regions[name] = Region(name, r["pages"], r["at"])
    steps = d.get("steps")
    if not isinstance(steps, list):
        raise bad("\"steps\" must be a list")
    ops = []
    for i, s in enumerate(steps, 1):
        if not isinstance(s, dict) or s.get("kind") not in OP_KINDS:
            raise bad(f"step {i}: unknown operation {s.get('kind') if isinstance(s, dict) else s!r}")
        unknown = set(s) - set(_OP_FIELDS)
        if unknown:
            raise bad(f"step {i}: unknown field {sorted(unknown)[0]!r}")
        kw = dict(s)
        if "flags" in kw:
            kw["flags"] = frozenset(kw["flags"])
        for name, v in kw.items():
            want = type(getattr(_DEFAULT, name))
            if not isinstance(v, want):
                raise bad(f"step {i}: field {name!r} must be {want.__name__}")
        if kw.get("region") and kw["region"] not in regions:
            raise bad(f"step {i}: unknown region {kw['region']!r}")
        ops.append(Op(line=i, **kw))
    setup = d.get("setup", 0)
    if not isinstance(setup, int) or not 0 <= setup <= len(ops):
        raise bad("\"setup\" must count the setup steps")
    sc = Scenario(f"trace-{design}", regions, ops, source=path)
    return Trace(design, str(d.get("property", "")), str(d.get("function", "")), sc, setup,
                 d.get("bounds", {}))


def replay(t: Trace, echo: Callable[[str], None],
           show: Callable[[Any, Op, int], None] | None = None) -> Finding | None:
    """Re-execute trace ``t``, judging each state; return the first finding (``None`` if none).

    :param show: called after each step with the runner, the step and its number.
    """
    from rmapcheck.check.model import Bounds

    b = Bounds(**{k: (tuple(v) if k == "ops" else v) for k, v in t.bounds.items()
                  if k in Bounds.__dataclass_fields__})
    m = KernelModel(t.design, b)
    m.scenario = Scenario(t.scenario.name, t.scenario.regions, [], source=t.scenario.source)
    from rmapcheck.scenario.execute import ModelRunner

    r = ModelRunner(m.scenario, t.design, check=False)
    r.born, r.faults = 1, 0  # type: ignore[attr-defined]
    for i, op in enumerate(t.scenario.ops, 1):
        out = m.apply(r, op)
        if show is not None:
            show(r, op, i)
        if out.findings:
            prop, fn, msg, err = out.findings[0]
            return Finding(prop, fn, msg, t.scenario.ops[:i], t.setup, err)
    return None
