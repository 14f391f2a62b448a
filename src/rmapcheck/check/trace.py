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

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from rmapcheck.check.model import Bounds, Finding, KernelModel, Outcome
from rmapcheck.designs import (
    DESIGNS, DesignError, config_text, design_config, design_label, is_design_file, load_design, make_kernel,
)
from rmapcheck.designs.design import file_sha256
from rmapcheck.scenario.execute import ModelRunner, uses_ksm
from rmapcheck.scenario.ops import Op, Region, Scenario, Settings
from rmapcheck.scenario.schema import (
    LIMITS, OP_FIELDS, TRACE_KEYS, ScenarioError, check_bounds, shown, validate_scenario,
)

__all__ = ["TRACE_FORMAT", "TraceError", "judged_run", "load_trace", "replay", "save_finding", "save_trace",
           "trace_dict", "trace_scenario", "trace_settings", "unsaid_steps"]

TRACE_FORMAT = "rmapcheck-trace/1"



class TraceError(ValueError):
    """A malformed trace file; ``str()`` is one line naming the file."""


def trace_dict(model: KernelModel, f: Finding) -> dict[str, Any]:
    """The JSON object of a counterexample."""
    steps = []
    for op in f.trace:
        d = {}
        for name in OP_FIELDS:
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
        fh.write(_trace_text(model, f))


def _trace_text(model: KernelModel, f: Finding) -> str:
    return json.dumps(trace_dict(model, f), indent=1, sort_keys=True) + "\n"


def save_finding(save_dir: str | os.PathLike[str], model: KernelModel, f: Finding) -> Path:
    """Save the counterexample ``f`` of ``model`` under ``save_dir``; return its path.

    The name is ``DESIGN-PROPERTY-FUNCTION-HASH.json``, ``HASH`` the first
    eight hex digits of the SHA-256 of the file's text: two different traces
    never get the same name, and the same trace saved again (the same check
    run twice) is the same file. A file of that name with other text (a
    collision of the short hash) is left alone: the trace gets ``-2``,
    ``-3`` ... appended. The counterexample as a scenario that ``rmapcheck
    run`` reproduces (:func:`trace_scenario`) goes next to it, with the
    suffix ``.yaml``.
    """
    from rmapcheck.scenario.parse import dump_scenario

    text = _trace_text(model, f)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    stem = _FILE_RE.sub("_", f"{design_label(model.design)}-{f.property}-{f.function}")[:120] + f"-{digest}"
    d = Path(save_dir)
    d.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        path = d / (f"{stem}.json" if n == 1 else f"{stem}-{n}.json")
        try:
            with open(path, "x") as fh:
                fh.write(text)
            break
        except FileExistsError:
            if path.read_text(errors="replace") == text:
                break
        n += 1
    path.with_suffix(".yaml").write_text(dump_scenario(trace_scenario(model, f)))
    return path


_FILE_RE = re.compile(r"[^A-Za-z0-9_.-]")


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

    The keys are those of :data:`~rmapcheck.scenario.schema.TRACE_KEYS`, the
    steps' fields those of :class:`Op`, and the scenario they make is judged
    by :func:`~rmapcheck.scenario.schema.validate_scenario`, as a scenario
    file's steps are; the bounds by :func:`~rmapcheck.scenario.schema.check_bounds`.

    :raises TraceError: one line naming the file and what is wrong with it.
    """
    d = _read_json(path)

    def bad(msg: str) -> TraceError:
        return TraceError(f"{path}: {msg}")

    if not isinstance(d, dict) or d.get("format") != TRACE_FORMAT:
        raise bad(f"not an rmapcheck trace (expected \"format\": \"{TRACE_FORMAT}\")")
    for key in d:
        if key not in TRACE_KEYS:
            raise bad(f"unknown key {shown(key)} (known: {', '.join(TRACE_KEYS)})")
    for key, (kind, required) in TRACE_KEYS.items():
        if key not in d:
            if required:
                raise bad(f"no {key!r}")
        elif type(d[key]) is not kind:
            raise bad(f"{key!r} must be {_JSON_TYPES[kind]}")
        elif kind is str and len(d[key]) > LIMITS.text:
            raise bad(f"{key!r} is longer than {LIMITS.text} characters")
    design = d["design"]
    if design not in DESIGNS and not is_design_file(design):
        raise bad(f"unknown design {shown(design)} (known: {', '.join(sorted(DESIGNS))}, or a design file)")
    if design not in DESIGNS:
        _check_design_files(d.get("design_files"), bad)
    try:
        load_design(design)
    except DesignError as e:
        raise bad(f"design: {e}") from None
    config = d.get("config", {})
    if any(len(k) > LIMITS.name_length * 2 for k in config):
        raise bad("bad \"config\": a switch name is too long")
    try:
        typed = design_config(design, [config_text({k: v}) for k, v in config.items()])
    except DesignError as e:
        raise bad(f"bad \"config\": {e}") from None
    if typed != config:
        raise bad(f"bad \"config\": {shown(config_text(config))} (switches are true/false or integers)")
    regions: dict[str, Region] = {}
    for name, r in d["regions"].items():
        if not isinstance(r, dict) or set(r) != {"pages", "at"} or type(r["pages"]) is not int \
                or type(r["at"]) is not int:
            raise bad(f"region {shown(name)} must be an object {{\"pages\": N, \"at\": K}} of integers")
        regions[name] = Region(name, r["pages"], r["at"])
    steps = d["steps"]
    if len(steps) > LIMITS.steps:
        raise bad(f"more than {LIMITS.steps} steps")
    ops = [_op(s, i, bad) for i, s in enumerate(steps, 1)]
    sc = Scenario(f"trace-{design_label(design)}", regions, ops, source=path)
    try:
        validate_scenario(sc)
    except ScenarioError as e:
        raise bad(f"step {e.line}: {e.message}" if e.line else e.message) from None
    setup = d.get("setup", 0)
    if not 0 <= setup <= len(ops):
        raise bad("\"setup\" must count the setup steps")
    bounds = d.get("bounds", {})
    try:
        _bounds(bounds)
    except ValueError as e:
        raise bad(f"bad \"bounds\": {e}") from None
    sc.settings = trace_settings(_bounds(bounds).rcu_windows, config, ops)
    words = [d.get(k, "") for k in ("property", "function")]
    for w in words:
        if len(w) > LIMITS.name_length * 2:
            raise bad(f"property or function name {shown(w)} is too long")
    return Trace(design, words[0], words[1], sc, setup, bounds, config)


_JSON_TYPES = {str: "a string", int: "an integer", dict: "an object", list: "a list", bool: "true or false"}


def _read_json(path: str) -> Any:
    # The JSON value of the file: UTF-8, at most LIMITS.trace_bytes, numbers
    # of at most LIMITS.digits digits, no NaN or Infinity, nested at most
    # LIMITS.nesting deep.
    try:
        with open(path, "rb") as fh:
            data = fh.read(LIMITS.trace_bytes + 1)
    except OSError as e:
        raise TraceError(f"{path}: cannot read: {e.strerror or type(e).__name__}") from None
    if len(data) > LIMITS.trace_bytes:
        raise TraceError(f"{path}: larger than {LIMITS.trace_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise TraceError(f"{path}:{line}: not UTF-8: {e.reason} at byte {e.start}") from None
    try:
        d = json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_float)
    except json.JSONDecodeError as e:
        raise TraceError(f"{path}:{e.lineno}: not JSON: {e.msg}") from None
    except RecursionError:
        raise TraceError(f"{path}: nested more than {LIMITS.nesting} deep") from None
    except ValueError as e:
        raise TraceError(f"{path}: {e}") from None
    if _depth(d) > LIMITS.nesting:
        raise TraceError(f"{path}: nested more than {LIMITS.nesting} deep")
    return d


def _json_int(s: str) -> int:
    if len(s.lstrip("-")) > LIMITS.digits:
        raise ValueError(f"a number of more than {LIMITS.digits} digits")
    return int(s)


def _json_float(s: str) -> float:
    # No field of a trace is a fraction, NaN or Infinity.
    raise ValueError(f"a number that is not an integer: {shown(s)}")


def _depth(v: Any) -> int:
    # How deeply lists and objects nest in v (iteratively: v may be deep).
    most, todo = 0, [(v, 1)]
    while todo:
        x, n = todo.pop()
        if isinstance(x, (list, dict)):
            most = max(most, n)
            if n <= LIMITS.nesting:
                todo.extend((y, n + 1) for y in (x.values() if isinstance(x, dict) else x))
    return most


def _op(s: Any, i: int, bad: Callable[[str], TraceError]) -> Op:
    # One step: an object of Op fields, of Op's types.
    if not isinstance(s, dict):
        raise bad(f"step {i}: expected an object of step fields")
    for name, v in s.items():
        want = OP_FIELDS.get(name)
        if want is None:
            raise bad(f"step {i}: unknown field {shown(name)}")
        if name == "flags":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise bad(f"step {i}: field 'flags' must be a list of strings")
        elif type(v) is not want:
            raise bad(f"step {i}: field {name!r} must be {_JSON_TYPES[want]}")
    for name in ("kind", "proc"):
        if name not in s:
            raise bad(f"step {i}: no field {name!r}")
    kw = dict(s)
    if "flags" in kw:
        kw["flags"] = frozenset(kw["flags"])
    return Op(line=i, **kw)


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
    r.k.ops = m.ops_table  # the checker's table: its events are observed too
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

    return Bounds(**check_bounds(d))


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
