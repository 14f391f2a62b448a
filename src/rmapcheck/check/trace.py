"""Counterexamples as replayable JSON and as scenarios, and their replay.

A trace file holds the design, the bounds, the regions, the violated property
and every operation from the first (the setup included), each as the fields of
a :class:`~rmapcheck.scenario.ops.Op`. :func:`replay` re-executes it on the
model step by step, judging every state as the checker did.

A counterexample is also a scenario (:func:`trace_scenario`) whose header
carries what the checker ran otherwise than the live kernel runs
(:class:`~rmapcheck.scenario.ops.Settings`: RCU windows closed, the design's
switches, no KSM baseline); :func:`judged_run` runs any scenario with its
settings, judging each step as the checker does, so ``rmapcheck run`` of the
printed scenario reproduces the finding that ``replay`` does.

A bundled design is recorded by name. A design file is recorded by its
absolute path, with ``design_files``: the SHA-256 of its bytes and of every
design file it bases on; :func:`load_trace` refuses the trace when one of
them is missing or changed, since the trace may no longer reproduce.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Iterator

from rmapcheck.check.model import Bounds, Finding, KernelModel, Outcome
from rmapcheck.designs import (
    DESIGNS, DesignError, config_text, design_config, design_label, is_design_file, load_design, make_kernel,
)
from rmapcheck.designs.design import file_sha256
from rmapcheck.scenario.execute import ModelRunner, uses_ksm
from rmapcheck.scenario.ops import OP_KINDS, Op, Region, Scenario, Settings

__all__ = ["TRACE_FORMAT", "TraceError", "judged_run", "load_trace", "replay", "save_trace", "trace_dict",
           "trace_scenario", "trace_settings", "unsaid_steps"]

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
        "design": model.loaded.spec,
        **({"design_files": [{"path": p, "sha256": h} for p, h in model.design_files]}
           if model.design_files else {}),
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
    if not isinstance(design, str) or (design not in DESIGNS and not is_design_file(design)):
        raise bad(f"unknown design {design!r} (known: {', '.join(sorted(DESIGNS))}, or a design file)")
    if design not in DESIGNS:
        _check_design_files(d.get("design_files"), bad)
    try:
        load_design(design)
    except DesignError as e:
        raise bad(f"design: {e}") from None
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
    sc = Scenario(f"trace-{design}", regions, ops, source=path,
                  settings=trace_settings(_bounds(bounds).rcu_windows, config, ops))
    return Trace(design, str(d.get("property", "")), str(d.get("function", "")), sc, setup, bounds, config)


def trace_settings(rcu_windows: bool, config: dict[str, Any], ops: list[Op]) -> Settings:
    """The scenario settings of a counterexample of ``ops`` found at these bounds and switches.

    The checker's kernel has no KSM baseline (:data:`~rmapcheck.scenario.execute.KSM_BASELINE`):
    a counterexample that uses KSM says so.
    """
    probe = Scenario("", {}, ops)
    return Settings(rcu_windows=rcu_windows,
                    config=tuple((k, "y" if v is True else "n" if v is False else str(v))
                                 for k, v in sorted(config.items())),
                    ksm_baseline=not uses_ksm(probe))


def trace_scenario(model: KernelModel, f: Finding) -> Scenario:
    """Counterexample ``f`` of ``model`` as a scenario that ``rmapcheck run`` reproduces."""
    return Scenario(f"{design_label(model.design)}-{f.property}", model.scenario.regions, list(f.trace),
                    settings=trace_settings(model.bounds.rcu_windows, model.config, f.trace))


def unsaid_steps(sc: Scenario) -> list[int]:
    """The steps of ``sc`` (1-based) that its text does not say whole.

    A step the scenario language cannot write (a flag it has no word for)
    reads back as another step: the printed scenario would not reproduce.
    """
    from rmapcheck.scenario.parse import dump_scenario, parse_scenario

    back = parse_scenario(dump_scenario(sc), "<trace>").ops
    return [i for i, (a, b) in enumerate(zip(sc.ops, back), 1) if replace(a, line=0) != replace(b, line=0)]


def judged_run(scenario: Scenario, design: str) -> Iterator[tuple[int, Op, Outcome]]:
    """Run ``scenario`` on ``design`` with its settings, judging every step as the checker does.

    Yields each step's number, operation and :class:`~rmapcheck.check.model.Outcome`
    (whose ``state`` is the one runner, changed in place); stops after a
    fatal finding. Findings of the checks between steps (invariants, data
    integrity) that are not fatal do not stop the run.

    :raises DesignError: a switch of the header that ``design`` does not have.
    """
    st = scenario.settings
    config = design_config(design, [f"{k}={v}" for k, v in st.config])
    m = KernelModel(design, Bounds(rcu_windows=st.rcu_windows), config)
    # The checker's kernel starts bare; the live runner's KSM baseline only
    # when the settings keep it (ModelRunner applies it to a KSM scenario).
    base = scenario if st.ksm_baseline else Scenario(scenario.name, scenario.regions, [], scenario.source)
    r = ModelRunner(base, design, check=False, kernel=make_kernel(m.loaded, **config))
    r.scenario = scenario
    r.k.rcu_windows = st.rcu_windows
    r.born, r.faults, r.preempt = 1, 0, 0  # type: ignore[attr-defined]
    for i, op in enumerate(scenario.ops, 1):
        out = m.apply(r, op)
        yield i, op, out
        if out.fatal:
            return


def _check_design_files(files: Any, bad: Callable[[str], TraceError]) -> None:
    # Each design file the trace was found with must still hold the same bytes.
    if not isinstance(files, list) or not files or not all(
            isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("sha256"), str)
            for f in files):
        raise bad("\"design_files\" must list the design files as {path, sha256}")
    for f in files:
        sha = file_sha256(f["path"])
        if sha is None:
            raise bad(f"design file {f['path']} is missing (the trace was found with it)")
        if sha != f["sha256"]:
            raise bad(f"design file {f['path']} changed since the trace was saved "
                      f"(sha256 {sha[:12]}, recorded {f['sha256'][:12]}); run rmapcheck check again")


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


def replay(t: Trace, show: Callable[[Any, Op, int], None] | None = None) -> tuple[Finding | None, Any]:
    """Re-execute trace ``t``, judging each state; return the finding and the state it left.

    The finding is the trace's own if it is reproduced, else the first one
    (``None`` if none).

    :param show: called after each step with the runner, the step and its number.
    """
    first: Finding | None = None
    state: Any = None
    for i, op, out in judged_run(t.scenario, t.design):
        state = out.state
        if show is not None:
            show(state, op, i)
        for prop, fn, msg, err in out.findings:
            f = Finding(prop, fn, msg, t.scenario.ops[:i], t.setup, err)
            if (prop, fn) == (t.property, t.function):
                # The checker records a finding and explores on past it
                # unless it is fatal: the trace's own finding is the one.
                return f, state
            if first is None:
                first = f
    return first, state
