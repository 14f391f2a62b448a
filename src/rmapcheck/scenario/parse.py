"""Scenario files: YAML text to a :class:`~rmapcheck.scenario.ops.Scenario`.

The format is described in ``docs/scenario-format.md``. The file is read with
PyYAML's safe composer only (no tags are ever constructed), so every node keeps
its position and every error names its line::

    ScenarioError: my-scenario.yaml:12: unknown region 'C'; the regions are A, B

The file is read with a loader stricter than PyYAML's ``SafeLoader``
(:class:`_Loader`): integers are decimal ASCII digits only (the YAML 1.1 forms
``1:30``, ``0x10``, ``1_0`` and ``010`` are strings, so no size is read from
them), anchors and aliases are refused, and collections nest at most
:attr:`~rmapcheck.scenario.schema.Limits.nesting` deep.

Checks made here, each a :class:`ScenarioError` naming the file and line:

- YAML syntax; unknown top-level keys, duplicate keys, values of the wrong type;
- the shape of each step's tokens: a known operation, the argument count,
  ranges ``R``, ``R[i]`` or ``R[i:j]`` with ``j > i``, numbers of ASCII digits,
  known keywords, fault-injection flags (``fail=SITE``, ``fail=SITE@N``,
  ``fail=SITE*``, ``fail=SITE@N*``) with a known allocation site, at most one
  per site, a stated result that the operation can produce;
- everything else through the validator shared with traces
  (:mod:`rmapcheck.scenario.schema`): regions, pages inside their regions,
  the fields, flags and values each kind takes, the processes' lifetimes, and
  the limits of :data:`~rmapcheck.scenario.schema.LIMITS`.
- the header's model settings (:class:`~rmapcheck.scenario.ops.Settings`):
  ``rcu_windows`` and ``ksm_baseline`` are true or false, ``config`` maps
  ``CONFIG_*`` and ``sysctl_*`` switch names to ``y``/``n`` or integers
  (whether the design has the switch is checked when the scenario runs).

:func:`parse_step` parses one step without the process checks, for tools that
build scenarios programmatically; :func:`dump_scenario` writes a scenario back
in the file format.
"""

from __future__ import annotations

import errno
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rmapcheck.scenario.ops import (
    FAIL_FLAG, MMAP_FLAGS, OP_KINDS, PROTS, Op, Region, Scenario, Settings, returns_value,
)
from rmapcheck.scenario.schema import (
    ADVICES, KSM_SET_KNOBS, LIMITS, SCENARIO_KEYS, ScenarioError, check_name, check_op, check_region, fail_flags,
    region_of, shown, track_processes, work_error,
)

__all__ = [
    "ADVICES",
    "KSM_SET_KNOBS",
    "MAX_ARENA_PAGES",
    "ScenarioError",
    "dump_scenario",
    "load_scenario",
    "parse_scenario",
    "parse_step",
]

# Steps that act on no process.
_NO_PROC = ("ksm_scan", "ksm_settle", "ksm_set")

#: Largest arena a scenario may use, in pages (256 MiB).
MAX_ARENA_PAGES = LIMITS.arena_pages

#: What each operation takes, for error messages.
_USAGE = {
    "mmap": "mmap P R[i:j] PROT [fixed|fixed_noreplace] [noreserve] [populate] [nohugepage|thp_system]",
    "munmap": "munmap P R[i:j]",
    "mprotect": "mprotect P R[i:j] PROT",
    "mremap": "mremap P R[i:j] [S[k]] [N] [dontunmap]",
    "madvise": "madvise P R[i:j] ADVICE",
    "read": "read P R[i:j]",
    "write": "write P R[i:j] V",
    "poke": "poke P R[i:j] V  (a write through /proc/self/mem)",
    "fork": "fork P C",
    "exit": "exit P",
    "prctl": "prctl P merge 0|1, or prctl P get_merge",
    "ksm_scan": "ksm_scan N",
    "ksm_settle": "ksm_settle",
    "ksm_set": "ksm_set KNOB V",
    "migrate": "migrate P R[i]",
    "migrate_start": "migrate_start P R[i]  (model only)",
    "kthread": "kthread N  (model only)",
    "ksmd": "ksmd N  (model only: ksmd scans N pages)",
    "reclaim": "reclaim P R[i]  (model only)",
    "reclaim_start": "reclaim_start P R[i]  (model only)",
}

_INITIAL_PROCS = ("P0",)

# Builds the error for the step being parsed.
_Fail = Callable[[str], "ScenarioError"]

_TAG_STR = "tag:yaml.org,2002:str"
_TAG_INT = "tag:yaml.org,2002:int"
_TAG_NULL = "tag:yaml.org,2002:null"
_TAG_BOOL = "tag:yaml.org,2002:bool"

# R, R[i] or R[i:j]
_RANGE_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[([0-9]+)(?::([0-9]+))?\])?\Z")
_PLAIN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_INT_RE = re.compile(r"(?:[0-9]+|0[xX][0-9a-fA-F]+)\Z")
_SWITCH_RE = re.compile(r"(?:CONFIG|sysctl)_[A-Za-z0-9_]+\Z")
_DIGITS_RE = re.compile(r"[0-9]+\Z")
_VALUE_LIMIT = 1 << 63


def load_scenario(path: str) -> Scenario:
    """Read and parse the scenario file at ``path``.

    :raises ScenarioError: if the file cannot be read or is malformed.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(LIMITS.scenario_bytes + 1)
    except OSError as e:
        raise ScenarioError(str(path), 0, f"cannot read scenario: {e.strerror or type(e).__name__}") from None
    if len(data) > LIMITS.scenario_bytes:
        raise ScenarioError(str(path), 0, f"larger than {LIMITS.scenario_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ScenarioError(str(path), line, f"not UTF-8: {_one_line(e.reason)} at byte {e.start}") from None
    return parse_scenario(text, str(path))


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse scenario ``text``; ``source`` names it in errors and gives the default name.

    Each ``Op.line`` is the step's 1-based line; ``Scenario.lines`` maps each
    step's index in ``ops`` to that line.

    :raises ScenarioError: on the first error, with its line.
    """
    if len(text) > LIMITS.scenario_bytes:
        raise ScenarioError(source, 0, f"longer than {LIMITS.scenario_bytes} characters")
    root = _compose(text, source)
    if root is None:
        raise ScenarioError(source, 1, "empty scenario: expected a mapping with 'steps'")
    if not isinstance(root, MappingNode):
        raise ScenarioError(
            source, _line(root), "a scenario is a mapping with 'regions' and 'steps'"
        )
    fields = _mapping(root, source, "the scenario", tuple(SCENARIO_KEYS))
    for key, required in SCENARIO_KEYS.items():
        if required and key not in fields:
            raise ScenarioError(source, _line(root), f"the scenario has no {key!r}")

    name = Path(source).stem
    if "name" in fields:
        name = _str(fields["name"][1], source, "name")
        if not name:
            raise ScenarioError(source, _line(fields["name"][1]), "name must not be empty")
    description = ""
    if "description" in fields:
        description = _str(fields["description"][1], source, "description")
    regions: dict[str, Region] = {}
    if "regions" in fields:
        regions = _regions(fields["regions"][1], source)
    settings = _settings(fields, source)

    steps_node = fields["steps"][1]
    ops: list[Op] = []
    if not _is_null(steps_node):
        if not isinstance(steps_node, SequenceNode):
            raise ScenarioError(source, _line(steps_node), "steps must be a list of strings")
        procs = set(_INITIAL_PROCS)
        for node in steps_node.value:
            line = _line(node)
            if len(ops) == LIMITS.steps:
                raise ScenarioError(source, line, f"more than {LIMITS.steps} steps")
            if _is_null(node):
                raise ScenarioError(source, line, "empty step")
            if not (isinstance(node, ScalarNode) and node.tag == _TAG_STR):
                raise ScenarioError(source, line, "a step must be a string such as 'mmap P0 A rw'")
            op = parse_step(node.value, line, regions, source)
            track_processes(op, procs, lambda m, line=line: ScenarioError(source, line, m))
            ops.append(op)
    s = Scenario(name=name, regions=regions, ops=ops, source=source, description=description,
                 settings=settings)
    s.lines = {i: op.line for i, op in enumerate(ops)}
    too_much = work_error(s)
    if too_much:
        i, msg = too_much
        raise ScenarioError(source, ops[i].line, msg)
    return s


def parse_step(
    text: str, line: int, regions: dict[str, Region], source: str = "<scenario>"
) -> Op:
    """Parse one step of the step language into an :class:`Op` with ``line``.

    Checks everything but whether the processes exist (see :func:`parse_scenario`):
    the tokens here, the fields with :func:`~rmapcheck.scenario.schema.check_op`.

    :param text: the step, such as ``write P0 A[0] 7 => ok``.
    :param line: the 1-based line the step stands on, for ``Op.line`` and errors.
    :param regions: the scenario's regions by name.
    :param source: the file name for errors.
    :raises ScenarioError: if the step is malformed.
    """

    def fail(message: str) -> ScenarioError:
        return ScenarioError(source, line, message)

    body, arrow, result = text.partition("=>")
    if "=>" in result:
        raise fail("a step has at most one '=> RESULT'")
    toks = body.split()
    if not toks:
        raise fail("empty step")
    kind, args = toks[0], toks[1:]
    if kind not in OP_KINDS:
        raise fail(f"unknown operation {shown(kind)}; expected one of {', '.join(OP_KINDS)}")
    usage = _USAGE[kind]
    faults = fail_flags([a for a in args if a.startswith(FAIL_FLAG)], fail)
    if faults:
        args = [a for a in args if not a.startswith(FAIL_FLAG)]
        op = parse_step(" ".join([kind, *args]) + (f" => {result}" if arrow else ""), line, regions, source)
        return replace(op, flags=op.flags | faults)

    def arity(lo: int, hi: int) -> None:
        if not lo <= len(args) <= hi:
            raise fail(f"wrong number of arguments to {kind}; usage: {usage}")

    if kind in ("kthread", "ksmd"):
        arity(1, 1)
        op = Op(kind, "", value=_value(args[0], fail), line=line)
    elif kind in _NO_PROC:
        op = _ksm_step(kind, args, arity, fail, line)
    else:
        op = _proc_step(kind, args, arity, regions, usage, fail, line)
    if arrow:
        op = replace(op, expect=_expect(op, result.strip(), fail))
    return check_op(op, regions, fail)


def _proc_step(kind: str, args: list[str], arity: Callable[[int, int], None], regions: dict[str, Region],
               usage: str, fail: _Fail, line: int) -> Op:
    # The steps of a process: P is the first argument.
    if kind in ("fork", "exit"):
        arity(2 if kind == "fork" else 1, 2 if kind == "fork" else 1)
    elif kind == "prctl":
        arity(2, 3)
    elif kind in ("migrate", "migrate_start", "reclaim", "reclaim_start"):
        arity(2, 2)
    else:
        arity(2, 3 + len(MMAP_FLAGS))
    op = Op(kind, _proc(args[0], fail), line=line)

    if kind == "prctl":
        if args[1] == "get_merge":
            arity(2, 2)
            return replace(op, advice="get_merge")
        if args[1] != "merge":
            raise fail(f"unknown prctl {shown(args[1])}; usage: {usage}")
        arity(3, 3)
        if args[2] not in ("0", "1"):
            raise fail(f"bad prctl merge value {shown(args[2])}: expected 0 or 1")
        return replace(op, value=int(args[2]))
    if kind == "fork":
        return replace(op, child=_proc(args[1], fail))
    if kind == "exit":
        return op
    region, page, npages = _range(args[1], regions, fail)
    op = replace(op, region=region, page=page, npages=npages)
    rest = args[2:]
    if kind in ("read", "write", "poke"):
        arity(2 if kind == "read" else 3, 2 if kind == "read" else 3)
        if kind != "read":
            op = replace(op, value=_value(rest[0], fail))
    elif kind in ("munmap", "migrate", "migrate_start", "reclaim", "reclaim_start"):
        arity(2, 2)
    elif kind in ("mmap", "mprotect"):
        arity(3, 3 + len(MMAP_FLAGS) if kind == "mmap" else 3)
        if rest[0] not in PROTS:
            raise fail(f"unknown PROT {shown(rest[0])}; expected one of {', '.join(PROTS)}")
        op = replace(op, prot=rest[0])
        for word in rest[1:]:
            if word not in MMAP_FLAGS:
                raise fail(f"unknown mmap flag {shown(word)}; usage: {usage}")
            if word in op.flags:
                raise fail(f"mmap flag {word} given twice")
            op = replace(op, flags=op.flags | {word})
    elif kind == "madvise":
        arity(3, 3)
        if rest[0] not in ADVICES:
            raise fail(f"unknown madvise advice {shown(rest[0])}; expected one of {', '.join(ADVICES)}")
        op = replace(op, advice=rest[0])
    else:
        op = _mremap(op, rest, regions, usage, fail)
    return op


def dump_scenario(s: Scenario) -> str:
    """The scenario in the file format; :func:`parse_scenario` reads it back.

    Regions placed where the default placement puts them are written as a bare
    page count, the others as ``{pages: N, at: K}``.
    """
    out = [f"name: {_quote(s.name)}"]
    if s.description:
        out.append(f"description: {_quote(s.description)}")
    out.extend(s.settings.model_only())
    out.append("regions:" if s.regions else "regions: {}")
    next_at = 0
    for r in s.regions.values():
        if r.at == next_at:
            out.append(f"  {r.name}: {r.pages}")
        else:
            out.append(f"  {r.name}: {{pages: {r.pages}, at: {r.at}}}")
        next_at = r.at + r.pages + 1
    out.append("steps:" if s.ops else "steps: []")
    out.extend(f"  - {op.text()}" for op in s.ops)
    return "\n".join(out) + "\n"


# --- YAML nodes ---------------------------------------------------------------


def _one_line(s: str) -> str:
    return " ".join(s.split())


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter: decimal integers only, no aliases, bounded nesting.

    Only nodes are composed (no tag is constructed). The implicit resolvers
    are YAML 1.2's core schema less floats: ``null``, ``true``/``false`` (and
    the YAML 1.1 spellings such as ``yes``, which are never a size) and
    decimal integers; ``1:30``, ``0x10``, ``0o10``, ``010``, ``1_0`` and
    ``1.5`` stay strings.
    """

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    _depth = 0

    def compose_node(self, parent: Node | None, index: object) -> Node:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            ev = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "anchors and aliases are not supported",
                                              ev.start_mark)
        if self._depth >= LIMITS.nesting:
            raise yaml.composer.ComposerError(None, None, f"nested more than {LIMITS.nesting} deep",
                                              self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
     list("yYnNtTfFoO")),
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9]*)$", list("-+0123456789")),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def _compose(text: str, source: str) -> Node | None:
    # Nodes only, through the strict loader: no tag is constructed.
    loader = None
    try:
        loader = _Loader(text)
        return loader.get_single_node()  # type: ignore[no-any-return]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = e.problem or e.context or "malformed YAML"
        raise ScenarioError(source, line, f"YAML syntax error: {_one_line(what)}") from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise ScenarioError(source, line, f"YAML syntax error: {_one_line(e.reason)}") from None
    except yaml.YAMLError as e:
        raise ScenarioError(source, 1, f"YAML syntax error: {_one_line(str(e))}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _TAG_NULL


def _mapping(
    node: MappingNode, source: str, what: str, allowed: tuple[str, ...]
) -> dict[str, tuple[Node, Node]]:
    # The mapping's string keys with their (key, value) nodes; rejects unknown
    # and duplicate keys.
    out: dict[str, tuple[Node, Node]] = {}
    for k, v in node.value:
        if not (isinstance(k, ScalarNode) and k.tag == _TAG_STR):
            raise ScenarioError(source, _line(k), f"keys of {what} must be strings")
        if k.value not in allowed:
            raise ScenarioError(
                source, _line(k),
                f"unknown key {k.value!r} in {what}; expected {', '.join(allowed)}",
            )
        if k.value in out:
            raise ScenarioError(source, _line(k), f"duplicate key {k.value!r} in {what}")
        out[k.value] = (k, v)
    return out


def _str(node: Node, source: str, what: str) -> str:
    if not (isinstance(node, ScalarNode) and node.tag == _TAG_STR):
        raise ScenarioError(source, _line(node), f"{what} must be a string")
    return str(node.value)


def _int(node: Node, source: str, what: str, least: int) -> int:
    if not (isinstance(node, ScalarNode) and node.tag == _TAG_INT):
        raise ScenarioError(source, _line(node), f"{what} must be an integer")
    text = str(node.value).lstrip("+-")
    if len(text) > LIMITS.digits:
        raise ScenarioError(source, _line(node), f"{what} has more than {LIMITS.digits} digits")
    n = int(node.value)
    if n < least:
        raise ScenarioError(source, _line(node), f"{what} must be at least {least}, not {n}")
    return n


def _true(node: ScalarNode) -> bool:
    # The value of a node the strict loader tagged bool (YAML 1.1's words).
    return node.value.lower() in ("yes", "true", "on")


def _bool(node: Node, source: str, what: str) -> bool:
    if not (isinstance(node, ScalarNode) and node.tag == _TAG_BOOL):
        raise ScenarioError(source, _line(node), f"{what} must be true or false")
    return _true(node)


def _settings(fields: dict[str, tuple[Node, Node]], source: str) -> Settings:
    # The header's model settings: rcu_windows, config, ksm_baseline.
    rcu = _bool(fields["rcu_windows"][1], source, "rcu_windows") if "rcu_windows" in fields else True
    baseline = _bool(fields["ksm_baseline"][1], source, "ksm_baseline") if "ksm_baseline" in fields else True
    config: list[tuple[str, str]] = []
    if "config" in fields:
        node = fields["config"][1]
        if not isinstance(node, MappingNode):
            raise ScenarioError(source, _line(node), "config must be a mapping such as {CONFIG_KSM: n}")
        seen: set[str] = set()
        for k, v in node.value:
            if not (isinstance(k, ScalarNode) and k.tag == _TAG_STR and _SWITCH_RE.match(k.value)):
                raise ScenarioError(source, _line(k), f"bad config switch {getattr(k, 'value', k)!r}: "
                                                      "expected a CONFIG_* or sysctl_* name")
            if k.value in seen:
                raise ScenarioError(source, _line(k), f"duplicate config switch {k.value!r}")
            seen.add(k.value)
            if isinstance(v, ScalarNode) and v.tag == _TAG_BOOL:
                value = "y" if _true(v) else "n"
            elif isinstance(v, ScalarNode) and v.tag in (_TAG_STR, _TAG_INT) and re.match(r"-?\w+\Z", v.value):
                value = v.value
            else:
                raise ScenarioError(source, _line(v), f"config {k.value}: expected y, n or an integer")
            config.append((k.value, value))
    return Settings(rcu_windows=rcu, config=tuple(sorted(config)), ksm_baseline=baseline)


def _regions(node: Node, source: str) -> dict[str, Region]:
    if _is_null(node):
        return {}
    if not isinstance(node, MappingNode):
        raise ScenarioError(
            source, _line(node),
            "regions must be a mapping: name: pages, or name: {pages: N, at: K}",
        )
    regions: dict[str, Region] = {}
    lines: dict[str, int] = {}
    next_at = 0
    for k, v in node.value:
        def fail(m: str, k: Node = k) -> ScenarioError:
            return ScenarioError(source, _line(k), m)
        name = check_name(k.value if isinstance(k, ScalarNode) and k.tag == _TAG_STR else k.value,
                          "region", fail)
        if name in regions:
            raise fail(f"duplicate region {name!r}")
        if isinstance(v, MappingNode):
            fields = _mapping(v, source, f"region {name}", ("pages", "at", "after"))
            if "pages" not in fields:
                raise ScenarioError(source, _line(v), f"region {name} has no 'pages'")
            pages = _int(fields["pages"][1], source, f"pages of region {name}", 1)
            at = next_at
            if "at" in fields and "after" in fields:
                raise ScenarioError(source, _line(v), f"region {name} has both 'at' and 'after'")
            if "at" in fields:
                at = _place(fields["at"][1], source, name, "at", regions)
            elif "after" in fields:
                at = _place(fields["after"][1], source, name, "after", regions)
        elif isinstance(v, ScalarNode) and v.tag == _TAG_INT:
            pages = _int(v, source, f"pages of region {name}", 1)
            at = next_at
        else:
            raise ScenarioError(
                source, _line(v), f"region {name}: expected a page count or {{pages: N, at: K}}"
            )
        r = Region(name, pages, at)
        msg = check_region(r, regions.values(), lines)
        if msg:
            raise fail(msg)
        regions[name] = r
        lines[name] = _line(k)
        next_at = at + pages + 1
    return regions


_PLACE_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:([+-])\s*([0-9]+))?\Z")


def _place(node: Node, source: str, name: str, key: str, regions: dict[str, Region]) -> int:
    # at: K (a page of the arena), at: R, R+K or R-K (K pages from region R's
    # first page), after: R or R+K (K pages past R's last page).
    what = f"{key!r} of region {name}"
    if key == "at" and isinstance(node, ScalarNode) and node.tag == _TAG_INT:
        return _int(node, source, what, 0)
    m = _PLACE_RE.match(node.value) if isinstance(node, ScalarNode) and node.tag == _TAG_STR else None
    if m is None or (key == "after" and m.group(2) == "-"):
        form = "R or R+K" if key == "after" else "a page number, R, R+K or R-K"
        raise ScenarioError(source, _line(node), f"{what} must be {form}, R an earlier region")

    def fail(msg: str) -> ScenarioError:
        return ScenarioError(source, _line(node), f"{what}: {msg}")

    other = region_of(m.group(1), regions, fail)
    k = _number(m.group(3), "page count", fail) if m.group(3) else 0
    base = other.at + other.pages if key == "after" else other.at
    at = base - k if m.group(2) == "-" else base + k
    if at < 0:
        raise fail(f"{node.value} is before the arena's first page")
    return at


def _ksm_step(kind: str, args: list[str], arity: Callable[[int, int], None], fail: _Fail,
              line: int) -> Op:
    # ksm_scan N | ksm_settle | ksm_set KNOB V: steps of no process (proc "").
    if kind == "ksm_settle":
        arity(0, 0)
        return Op(kind, "", line=line)
    if kind == "ksm_scan":
        arity(1, 1)
        n = _number(args[0], "number of full scans", fail)
        if n < 1:
            raise fail(f"bad number of full scans {n}: expected an integer of at least 1")
        return Op(kind, "", value=n, line=line)
    arity(2, 2)
    if args[0] not in KSM_SET_KNOBS:
        raise fail(f"unknown KSM knob {shown(args[0])}; expected one of {', '.join(KSM_SET_KNOBS)}")
    return Op(kind, "", advice=args[0], value=_value(args[1], fail), line=line)


def _plain_str(s: str) -> bool:
    # s, written plain, reads back as the string s
    node = _compose(s, "<quote>")
    return isinstance(node, ScalarNode) and node.tag == _TAG_STR and node.value == s


def _quote(s: str) -> str:
    # A plain scalar if it reads back as the same string, else a double-quoted
    # one escaped by PyYAML itself.
    if _PLAIN_RE.match(s) and _plain_str(s):
        return s
    return yaml.safe_dump(s, default_style='"', allow_unicode=True, width=1 << 30).rstrip("\n")


# --- step tokens ----------------------------------------------------------------


def _proc(tok: str, fail: _Fail) -> str:
    return check_name(tok, "process", fail)


def _number(tok: str, what: str, fail: _Fail) -> int:
    # A count: ASCII decimal digits, at most LIMITS.digits of them.
    if not _DIGITS_RE.match(tok):
        raise fail(f"bad {what} {shown(tok)}: expected a non-negative decimal integer")
    if len(tok) > LIMITS.digits:
        raise fail(f"bad {what} {shown(tok)}: more than {LIMITS.digits} digits")
    return int(tok)


def _range(tok: str, regions: dict[str, Region], fail: _Fail) -> tuple[str, int, int]:
    m = _RANGE_RE.match(tok)
    if m is None:
        raise fail(f"bad range {shown(tok)}; expected R, R[i] or R[i:j]")
    name, i, j = m.group(1), m.group(2), m.group(3)
    r = region_of(name, regions, fail)
    if i is None:
        return name, 0, r.pages
    first = _number(i, "page", fail)
    if j is None:
        return name, first, 1
    end = _number(j, "page", fail)
    if end <= first:
        raise fail(f"empty range {tok}: in R[i:j], j must be greater than i")
    return name, first, end - first


def _value(tok: str, fail: _Fail) -> int:
    if not _INT_RE.match(tok):
        raise fail(f"bad value {shown(tok)}: expected a non-negative integer")
    if len(tok) > LIMITS.digits:
        raise fail(f"bad value {shown(tok)}: more than {LIMITS.digits} digits")
    v = int(tok, 0) if tok[:2].lower() == "0x" else int(tok)
    if v >= _VALUE_LIMIT:
        raise fail(f"bad value {tok}: must be below 2**63")
    return v


def _mremap(
    op: Op, rest: list[str], regions: dict[str, Region], usage: str, fail: _Fail
) -> Op:
    # mremap P R[i:j] [S[k]] [N] [dontunmap], in this order; check_op() checks
    # that the pages lie in the destination region.
    rest = list(rest)
    if rest and rest[0] != "dontunmap" and not _DIGITS_RE.match(rest[0]):
        m = _RANGE_RE.match(rest[0])
        if m is None or m.group(2) is None or m.group(3) is not None:
            raise fail(f"bad mremap target {shown(rest[0])}: expected one page, S[k]; usage: {usage}")
        dest, first, _ = _range(rest.pop(0), regions, fail)
        op = replace(op, to_region=dest, to_page=first)
    if rest and _DIGITS_RE.match(rest[0]):
        new_pages = _number(rest.pop(0), "page count", fail)
        if new_pages == 0:
            raise fail("mremap to 0 pages: N must be at least 1")
        op = replace(op, new_pages=new_pages)
    if rest and rest[0] == "dontunmap":
        rest.pop(0)
        op = replace(op, flags=frozenset({"dontunmap"}))
    if rest:
        raise fail(f"unexpected {shown(rest[0])} in mremap; usage: {usage}")
    return op


def _expect(op: Op, result: str, fail: _Fail) -> str:
    # ok | errno name | SIGSEGV | the value(s) a read or prctl get_merge gives,
    # kept in decimal, as an Observation states them (V, or V,V,... for a
    # range whose pages differ).
    kind = op.kind
    if len(result.split()) != 1:
        raise fail("expected one result after '=>': ok, an errno name (ENOMEM), SIGSEGV or a value")
    memory = kind in ("read", "write")
    valued = returns_value(op)
    if result == "ok":
        if valued:
            raise fail(f"{'a read' if kind == 'read' else kind}'s result is its value"
                       f"{' or SIGSEGV' if memory else ''}, not ok")
        return result
    if result == "SIGSEGV":
        if not memory:
            raise fail(f"{kind} cannot raise SIGSEGV: only read and write touch memory")
        return result
    values = result.split(",")
    if all(_INT_RE.match(v) for v in values):
        if not valued:
            raise fail(f"only a read or prctl get_merge returns a value; {kind} results are ok or an errno name")
        if len(values) > 1 and len(values) != op.npages:
            raise fail(f"{len(values)} values for a read of {op.npages} pages: give one value for every page, "
                       "or one for them all")
        return ",".join(str(_value(v, fail)) for v in values)
    if result.startswith("E") and result.isalnum():
        code = getattr(errno, result, None)
        if not isinstance(code, int) or code not in errno.errorcode:
            raise fail(f"unknown errno name {shown(result)}")
        if memory:
            raise fail(f"{kind} is a memory access: its result is SIGSEGV, not an errno")
        # An alias (EWOULDBLOCK) becomes the name the kernel's code has (EAGAIN),
        # which is what an observation reports.
        return errno.errorcode[code]
    raise fail(
        f"bad result {shown(result)}; expected ok, an errno name (ENOMEM), SIGSEGV or a read's value"
    )
