"""Counterexamples as replayable JSON, and their replay.

A trace file holds the design, the bounds, the regions, the violated property
and every operation from the first (the setup included), each as the fields of
a :class:`~rmapcheck.scenario.ops.Op`. :func:`replay` re-executes it on the
model step by step, judging every state as the checker did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from rmapcheck.check.model import Finding, KernelModel
from rmapcheck.designs import DESIGNS, DesignError, config_text, design_config
from rmapcheck.model.kernel import ALLOC_SITES
from rmapcheck.scenario.ops import FAIL_FLAG, OP_KINDS, Op, Region, Scenario, parse_fail_flag

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
        "config": dict(sorted(model.config.items())),
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
    #: the design's switches set otherwise than its default
    config: dict[str, Any] = field(default_factory=dict)


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
    config = d.get("config", {})
    if not isinstance(config, dict):
        raise bad("\"config\" must be an object of switch: value")
    try:
        typed = design_config(design, [config_text({k: v}) for k, v in config.items()])
    except DesignError as e:
        raise bad(f"bad \"config\": {e}") from None
    if typed != config:
        raise bad(f"bad \"config\": {config_text(config)} (switches are true/false or integers)")
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
            if not isinstance(kw["flags"], list) or not all(isinstance(x, str) for x in kw["flags"]):
                raise bad(f"step {i}: field 'flags' must be a list of strings")
            kw["flags"] = frozenset(kw["flags"])
            for flag in kw["flags"]:
                if flag.startswith(FAIL_FLAG):
                    try:
                        site = parse_fail_flag(flag)[0]
                    except ValueError as e:
                        raise bad(f"step {i}: {e}") from None
                    if site not in ALLOC_SITES:
                        raise bad(f"step {i}: unknown allocation site {site!r} in {flag}")
        for name, v in kw.items():
            want = type(getattr(_DEFAULT, name))
            if type(v) is not want:
                raise bad(f"step {i}: field {name!r} must be {want.__name__}")
        if kw.get("region"):
            reg = regions.get(kw["region"])
            if reg is None:
                raise bad(f"step {i}: unknown region {kw['region']!r}")
            page, npages = kw.get("page", 0), kw.get("npages", 1)
            if page < 0 or npages < 1 or page + npages > reg.pages:
                raise bad(f"step {i}: pages [{page}, {page + npages}) outside region {reg.name}")
        ops.append(Op(line=i, **kw))
    live = {"P0"}
    for i, op in enumerate(ops, 1):
        if op.proc and op.proc not in live:
            raise bad(f"step {i}: process {op.proc!r} does not exist at this step")
        if op.kind == "fork":
            live.add(op.child)
        elif op.kind == "exit":
            live.discard(op.proc)
    setup = d.get("setup", 0)
    if type(setup) is not int or not 0 <= setup <= len(ops):
        raise bad("\"setup\" must count the setup steps")
    bounds = d.get("bounds", {})
    if not isinstance(bounds, dict):
        raise bad("\"bounds\" must be an object")
    try:
        _bounds(bounds)
    except (TypeError, ValueError) as e:
        raise bad(f"bad \"bounds\": {e}") from None
    sc = Scenario(f"trace-{design}", regions, ops, source=path)
    return Trace(design, str(d.get("property", "")), str(d.get("function", "")), sc, setup, bounds, config)


def _bounds(d: dict[str, Any]) -> Any:
    from rmapcheck.check.model import Bounds

    fields_ = Bounds.__dataclass_fields__
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k not in fields_:
            continue
        default = getattr(Bounds(), k)
        if k == "ops":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise TypeError("ops must be a list of operation names")
            v = tuple(v)
        elif type(v) is not type(default):
            raise TypeError(f"{k} must be {type(default).__name__}")
        kw[k] = v
    return Bounds(**kw)


def replay(t: Trace, echo: Callable[[str], None],
           show: Callable[[Any, Op, int], None] | None = None) -> Finding | None:
    """Re-execute trace ``t``, judging each state; return the first finding (``None`` if none).

    :param show: called after each step with the runner, the step and its number.
    """
    b = _bounds(t.bounds)
    m = KernelModel(t.design, b, t.config)
    m.scenario = Scenario(t.scenario.name, t.scenario.regions, [], source=t.scenario.source)
    from rmapcheck.designs import make_kernel
    from rmapcheck.scenario.execute import ModelRunner

    r = ModelRunner(m.scenario, t.design, check=False, kernel=make_kernel(t.design, **t.config))
    r.k.rcu_windows = b.rcu_windows
    r.born, r.faults, r.preempt = 1, 0, 0  # type: ignore[attr-defined]
    first: Finding | None = None
    for i, op in enumerate(t.scenario.ops, 1):
        out = m.apply(r, op)
        if show is not None:
            show(r, op, i)
        for prop, fn, msg, err in out.findings:
            f = Finding(prop, fn, msg, t.scenario.ops[:i], t.setup, err)
            if (prop, fn) == (t.property, t.function):
                # The checker records a finding and explores on past it
                # unless it is fatal: the trace's own finding is the one.
                return f
            if first is None:
                first = f
        if out.fatal:
            break
    return first
