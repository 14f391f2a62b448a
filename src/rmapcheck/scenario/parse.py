"""Scenario files: YAML text to a :class:`~rmapcheck.scenario.ops.Scenario`.

The format is described in ``docs/scenario-format.md``. The file is read with
PyYAML's safe composer only (no tags are ever constructed), so every node keeps
its position and every error names its line::

    ScenarioError: scenarios/fork-cow.yaml:12: unknown region 'C'; the regions are A, B

Checks made here, each a :class:`ScenarioError` naming the file and line:

- YAML syntax; unknown top-level keys, duplicate keys, values of the wrong type;
- regions: positive page counts, non-negative placements, no two regions
  overlapping;
- steps: known operation, argument count, known region, pages inside their
  region (``R[i:j]`` with ``j > i``), known ``PROT``, known ``madvise`` advice,
  write values in ``[0, 2**63)``, ``mremap`` destination inside its region,
  a stated result that the operation can produce; the KSM steps' arguments
  (``prctl P merge 0|1``, ``ksm_scan N`` with ``N >= 1``, ``ksm_set KNOB V``
  with a known writable knob of /sys/kernel/mm/ksm, ``migrate P R[i]``);
  fault-injection flags (``fail=SITE``, ``fail=SITE@N``, ``fail=SITE*``,
  ``fail=SITE@N*``) with a known allocation site, at most one per site;
- processes: ``P0`` exists at the start, ``fork P C`` creates ``C`` (which must
  not exist yet), ``exit P`` ends ``P``; a step in a process that does not exist
  is an error.

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
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rmapcheck.model.kernel import ALLOC_SITES
from rmapcheck.scenario.ops import FAIL_FLAG, OP_KINDS, PROTS, Op, Region, Scenario, fail_flag, parse_fail_flag

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

#: ``madvise`` advice the step language knows.
ADVICES = ("dontneed", "mergeable", "unmergeable")

#: The /sys/kernel/mm/ksm knobs ``ksm_set`` may write (``pages_to_scan`` and
#: ``sleep_millisecs`` drive the scans and stay the runner's; ``run`` is never
#: 1: ksmd runs only inside ``ksm_scan`` and ``ksm_settle``).
KSM_SET_KNOBS = ("max_page_sharing", "merge_across_nodes", "run", "smart_scan",
                 "stable_node_chains_prune_millisecs", "use_zero_pages")

# Steps that act on no process.
_NO_PROC = ("ksm_scan", "ksm_settle", "ksm_set")

#: Largest arena a scenario may use, in pages (256 MiB).
MAX_ARENA_PAGES = 1 << 16

#: What each operation takes, for error messages.
_USAGE = {
    "mmap": "mmap P R[i:j] PROT [fixed]",
    "munmap": "munmap P R[i:j]",
    "mprotect": "mprotect P R[i:j] PROT",
    "mremap": "mremap P R[i:j] [S[k]] [N] [dontunmap]",
    "madvise": "madvise P R[i:j] ADVICE",
    "read": "read P R[i]",
    "write": "write P R[i] V",
    "fork": "fork P C",
    "exit": "exit P",
    "prctl": "prctl P merge 0|1",
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

_TOP_KEYS = ("name", "description", "regions", "steps")
_INITIAL_PROCS = ("P0",)

# Builds the error for the step being parsed.
_Fail = Callable[[str], "ScenarioError"]

_TAG_STR = "tag:yaml.org,2002:str"
_TAG_INT = "tag:yaml.org,2002:int"
_TAG_NULL = "tag:yaml.org,2002:null"

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# R, R[i] or R[i:j]
_RANGE_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[([0-9]+)(?::([0-9]+))?\])?\Z")
_PLAIN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_INT_RE = re.compile(r"(?:[0-9]+|0[xX][0-9a-fA-F]+)\Z")
_VALUE_LIMIT = 1 << 63


class ScenarioError(Exception):
    """A scenario file is malformed; ``str()`` is ``FILE:LINE: message``.

    :param source: the file's path (or a name such as ``<string>``).
    :param line: the 1-based line of the offending node or step; 0 if the
        error concerns the whole file (then ``str()`` is ``FILE: message``).
    :param message: what is wrong, on one line.
    """

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(source, line, message)
        self.source = source
        self.line = line
        self.message = message

    def __str__(self) -> str:
        if self.line:
            return f"{self.source}:{self.line}: {self.message}"
        return f"{self.source}: {self.message}"


def load_scenario(path: str) -> Scenario:
    """Read and parse the scenario file at ``path``.

    :raises ScenarioError: if the file cannot be read or is malformed.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(str(path), 0, f"cannot read scenario: {_one_line(str(e))}") from None
    return parse_scenario(text, str(path))


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse scenario ``text``; ``source`` names it in errors and gives the default name.

    Each ``Op.line`` is the step's 1-based line; ``Scenario.lines`` maps each
    step's index in ``ops`` to that line.

    :raises ScenarioError: on the first error, with its line.
    """
    root = _compose(text, source)
    if root is None:
        raise ScenarioError(source, 1, "empty scenario: expected a mapping with 'steps'")
    if not isinstance(root, MappingNode):
        raise ScenarioError(
            source, _line(root), "a scenario is a mapping with 'regions' and 'steps'"
        )
    fields = _mapping(root, source, "the scenario", _TOP_KEYS)
    if "steps" not in fields:
        raise ScenarioError(source, _line(root), "the scenario has no 'steps'")

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

    steps_node = fields["steps"][1]
    ops: list[Op] = []
    if not _is_null(steps_node):
        if not isinstance(steps_node, SequenceNode):
            raise ScenarioError(source, _line(steps_node), "steps must be a list of strings")
        procs = set(_INITIAL_PROCS)
        for node in steps_node.value:
            line = _line(node)
            if _is_null(node):
                raise ScenarioError(source, line, "empty step")
            if not (isinstance(node, ScalarNode) and node.tag == _TAG_STR):
                raise ScenarioError(source, line, "a step must be a string such as 'mmap P0 A rw'")
            op = parse_step(node.value, line, regions, source)
            _track_processes(op, procs, source)
            ops.append(op)
    s = Scenario(name=name, regions=regions, ops=ops, source=source, description=description)
    s.lines = {i: op.line for i, op in enumerate(ops)}
    return s


def parse_step(
    text: str, line: int, regions: dict[str, Region], source: str = "<scenario>"
) -> Op:
    """Parse one step of the step language into an :class:`Op` with ``line``.

    Checks everything but whether the processes exist (see :func:`parse_scenario`).

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
        raise fail(f"unknown operation {kind!r}; expected one of {', '.join(OP_KINDS)}")
    usage = _USAGE[kind]
    faults = _fail_flags([a for a in args if a.startswith(FAIL_FLAG)], fail)
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
        if arrow:
            op = replace(op, expect=_expect(kind, result.strip(), fail))
        return op
    if kind in _NO_PROC:
        op = _ksm_step(kind, args, arity, fail, line)
        if arrow:
            op = replace(op, expect=_expect(kind, result.strip(), fail))
        return op
    if kind in ("fork", "exit"):
        arity(2 if kind == "fork" else 1, 2 if kind == "fork" else 1)
    elif kind == "prctl":
        arity(3, 3)
    elif kind in ("migrate", "migrate_start", "reclaim", "reclaim_start"):
        arity(2, 2)
    else:
        arity(2, 5)
    proc = _proc(args[0], fail)
    op = Op(kind, proc, line=line)

    if kind == "prctl":
        if args[1] != "merge":
            raise fail(f"unknown prctl {args[1]!r}; usage: {usage}")
        if args[2] not in ("0", "1"):
            raise fail(f"bad prctl merge value {args[2]!r}: expected 0 or 1")
        op = replace(op, value=int(args[2]))
    elif kind in ("migrate", "migrate_start", "reclaim", "reclaim_start"):
        region, page, npages = _range(args[1], regions, fail)
        if npages != 1:
            raise fail(f"{kind} takes one page, such as {region}[{page}]; usage: {usage}")
        op = replace(op, region=region, page=page, npages=1)
    elif kind == "fork":
        op = replace(op, child=_proc(args[1], fail))
    elif kind != "exit":
        region, page, npages = _range(args[1], regions, fail)
        op = replace(op, region=region, page=page, npages=npages)
        rest = args[2:]
        if kind in ("read", "write"):
            arity(2 if kind == "read" else 3, 2 if kind == "read" else 3)
            if npages != 1:
                raise fail(f"{kind} takes one page, such as {region}[{page}]; usage: {usage}")
            if kind == "write":
                op = replace(op, value=_value(rest[0], fail))
        elif kind == "munmap":
            arity(2, 2)
        elif kind in ("mmap", "mprotect"):
            arity(3, 4 if kind == "mmap" else 3)
            if rest[0] not in PROTS:
                raise fail(f"unknown PROT {rest[0]!r}; expected one of none, r, rw, rx, rwx")
            op = replace(op, prot=rest[0])
            if len(rest) == 2:
                if rest[1] != "fixed":
                    raise fail(f"unknown mmap flag {rest[1]!r}; usage: {usage}")
                op = replace(op, flags=frozenset({"fixed"}))
        elif kind == "madvise":
            arity(3, 3)
            if rest[0] not in ADVICES:
                raise fail(
                    f"unknown madvise advice {rest[0]!r}; expected one of {', '.join(ADVICES)}"
                )
            op = replace(op, advice=rest[0])
        else:
            op = _mremap(op, rest, regions, usage, fail)

    if arrow:
        op = replace(op, expect=_expect(kind, result.strip(), fail))
    return op


def dump_scenario(s: Scenario) -> str:
    """The scenario in the file format; :func:`parse_scenario` reads it back.

    Regions placed where the default placement puts them are written as a bare
    page count, the others as ``{pages: N, at: K}``.
    """
    out = [f"name: {_quote(s.name)}"]
    if s.description:
        out.append(f"description: {_quote(s.description)}")
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


def _compose(text: str, source: str) -> Node | None:
    # yaml.compose with the SafeLoader builds nodes only: no tag is constructed.
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
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
    n = int(SafeConstructor().construct_object(node))
    if n < least:
        raise ScenarioError(source, _line(node), f"{what} must be at least {least}, not {n}")
    return n


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
        if not (isinstance(k, ScalarNode) and k.tag == _TAG_STR and _NAME_RE.match(k.value)):
            raise ScenarioError(
                source, _line(k), f"bad region name {k.value!r}: use letters, digits and '_'"
            )
        name = k.value
        if name in regions:
            raise ScenarioError(source, _line(k), f"duplicate region {name!r}")
        if isinstance(v, MappingNode):
            fields = _mapping(v, source, f"region {name}", ("pages", "at"))
            if "pages" not in fields:
                raise ScenarioError(source, _line(v), f"region {name} has no 'pages'")
            pages = _int(fields["pages"][1], source, f"pages of region {name}", 1)
            at = next_at
            if "at" in fields:
                at = _int(fields["at"][1], source, f"'at' of region {name}", 0)
        elif isinstance(v, ScalarNode) and v.tag == _TAG_INT:
            pages = _int(v, source, f"pages of region {name}", 1)
            at = next_at
        else:
            raise ScenarioError(
                source, _line(v), f"region {name}: expected a page count or {{pages: N, at: K}}"
            )
        if at + pages > MAX_ARENA_PAGES:
            raise ScenarioError(
                source, _line(k), f"region {name} ends past the arena's {MAX_ARENA_PAGES} pages"
            )
        for other in regions.values():
            if at < other.at + other.pages and other.at < at + pages:
                raise ScenarioError(
                    source, _line(k),
                    f"region {name} (pages {at}..{at + pages - 1}) overlaps region {other.name} "
                    f"(pages {other.at}..{other.at + other.pages - 1}, line {lines[other.name]})",
                )
        regions[name] = Region(name, pages, at)
        lines[name] = _line(k)
        next_at = at + pages + 1
    return regions


def _ksm_step(kind: str, args: list[str], arity: Callable[[int, int], None], fail: _Fail,
              line: int) -> Op:
    # ksm_scan N | ksm_settle | ksm_set KNOB V: steps of no process (proc "").
    if kind == "ksm_settle":
        arity(0, 0)
        return Op(kind, "", line=line)
    if kind == "ksm_scan":
        arity(1, 1)
        if not args[0].isdigit() or int(args[0]) < 1:
            raise fail(f"bad number of full scans {args[0]!r}: expected an integer of at least 1")
        return Op(kind, "", value=int(args[0]), line=line)
    arity(2, 2)
    if args[0] not in KSM_SET_KNOBS:
        raise fail(f"unknown KSM knob {args[0]!r}; expected one of {', '.join(KSM_SET_KNOBS)}")
    value = _value(args[1], fail)
    if args[0] == "run" and value == 1:
        raise fail("ksm_set run 1 would let ksmd scan on its own; use ksm_scan N or ksm_settle")
    return Op(kind, "", advice=args[0], value=value, line=line)


def _track_processes(op: Op, procs: set[str], source: str) -> None:
    # P0 exists at the start; fork creates the child; exit ends the process.
    if op.kind in _NO_PROC or op.kind in ("kthread", "ksmd"):
        return
    if op.proc not in procs:
        alive = ", ".join(sorted(procs)) or "none"
        raise ScenarioError(
            source, op.line, f"process {op.proc} does not exist here (live processes: {alive})"
        )
    if op.kind == "fork":
        if op.child in procs:
            raise ScenarioError(source, op.line, f"fork: process {op.child} already exists")
        procs.add(op.child)
    elif op.kind == "exit":
        procs.discard(op.proc)


def _quote(s: str) -> str:
    # A plain scalar if it reads back as the same string, else a double-quoted
    # one escaped by PyYAML itself.
    if _PLAIN_RE.match(s) and yaml.safe_load(s) == s:
        return s
    return yaml.safe_dump(s, default_style='"', allow_unicode=True, width=1 << 30).rstrip("\n")


# --- step tokens ----------------------------------------------------------------


def _proc(tok: str, fail: _Fail) -> str:
    if not _NAME_RE.match(tok):
        raise fail(f"bad process name {tok!r}: use letters, digits and '_', such as P1")
    return tok


def _range(tok: str, regions: dict[str, Region], fail: _Fail) -> tuple[str, int, int]:
    m = _RANGE_RE.match(tok)
    if m is None:
        raise fail(f"bad range {tok!r}; expected R, R[i] or R[i:j]")
    name, i, j = m.group(1), m.group(2), m.group(3)
    r = regions.get(name)
    if r is None:
        known = ", ".join(regions) if regions else "none"
        raise fail(f"unknown region {name!r}; the regions are {known}")
    if i is None:
        return name, 0, r.pages
    first = int(i)
    if first >= r.pages:
        raise fail(f"page {first} is out of range of region {name} (pages 0..{r.pages - 1})")
    if j is None:
        return name, first, 1
    end = int(j)
    if end <= first:
        raise fail(f"empty range {tok}: in R[i:j], j must be greater than i")
    if end > r.pages:
        raise fail(f"{tok} is out of range of region {name} (pages 0..{r.pages - 1})")
    return name, first, end - first


def _value(tok: str, fail: _Fail) -> int:
    if not _INT_RE.match(tok):
        raise fail(f"bad value {tok!r}: expected a non-negative integer")
    v = int(tok, 0) if tok[:2].lower() == "0x" else int(tok)
    if v >= _VALUE_LIMIT:
        raise fail(f"bad value {tok}: must be below 2**63")
    return v


def _mremap(
    op: Op, rest: list[str], regions: dict[str, Region], usage: str, fail: _Fail
) -> Op:
    # mremap P R[i:j] [S[k]] [N] [dontunmap], in this order.
    rest = list(rest)
    dest, first = op.region, op.page
    if rest and rest[0] != "dontunmap" and not rest[0].isdigit():
        m = _RANGE_RE.match(rest[0])
        if m is None or m.group(2) is None or m.group(3) is not None:
            raise fail(f"bad mremap target {rest[0]!r}: expected one page, S[k]; usage: {usage}")
        dest, first, _ = _range(rest.pop(0), regions, fail)
        op = replace(op, to_region=dest, to_page=first)
    if rest and rest[0].isdigit():
        new_pages = int(rest.pop(0))
        if new_pages == 0:
            raise fail("mremap to 0 pages: N must be at least 1")
        op = replace(op, new_pages=new_pages)
    if rest and rest[0] == "dontunmap":
        rest.pop(0)
        if not op.to_region:
            raise fail("dontunmap needs a target S[k] (MREMAP_DONTUNMAP moves the pages)")
        op = replace(op, flags=frozenset({"dontunmap"}))
    if rest:
        raise fail(f"unexpected {rest[0]!r} in mremap; usage: {usage}")
    # The pages the mapping covers afterwards must lie in the destination region.
    end = first + (op.new_pages or op.npages)
    r = regions[dest]
    if end > r.pages:
        what = "target" if op.to_region else "resized range"
        raise fail(
            f"mremap {what} {dest}[{first}:{end}] is out of range of "
            f"region {dest} (pages 0..{r.pages - 1})"
        )
    return op


def _fail_flags(toks: list[str], fail: _Fail) -> frozenset[str]:
    # fail=SITE[@N][*] flags, each in its canonical spelling (fail=SITE@1 is
    # fail=SITE); one per allocation site.
    out: dict[str, str] = {}
    for tok in toks:
        try:
            site, attempt, persistent = parse_fail_flag(tok)
        except ValueError as e:
            raise fail(str(e)) from None
        if site not in ALLOC_SITES:
            raise fail(f"unknown allocation site {site!r} in {tok}; the sites are {', '.join(ALLOC_SITES)}")
        if site in out:
            raise fail(f"two fault flags for {site} in one step ({out[site]} and {tok})")
        out[site] = fail_flag(site, attempt, persistent)
    return frozenset(out.values())


def _expect(kind: str, result: str, fail: _Fail) -> str:
    # ok | errno name | SIGSEGV | a read's value (kept in decimal, as an
    # Observation states it).
    if len(result.split()) != 1:
        raise fail("expected one result after '=>': ok, an errno name (ENOMEM), SIGSEGV or a value")
    memory = kind in ("read", "write")
    if result == "ok":
        if kind == "read":
            raise fail("a read's result is its value or SIGSEGV, not ok")
        return result
    if result == "SIGSEGV":
        if not memory:
            raise fail(f"{kind} cannot raise SIGSEGV: only read and write touch memory")
        return result
    if _INT_RE.match(result):
        if kind != "read":
            raise fail(f"only a read returns a value; {kind} results are ok or an errno name")
        return str(_value(result, fail))
    if result.startswith("E") and result.isalnum():
        code = getattr(errno, result, None)
        if not isinstance(code, int):
            raise fail(f"unknown errno name {result!r}")
        if memory:
            raise fail(f"{kind} is a memory access: its result is SIGSEGV, not an errno")
        # An alias (EWOULDBLOCK) becomes the name the kernel's code has (EAGAIN),
        # which is what an observation reports.
        return errno.errorcode[code]
    raise fail(
        f"bad result {result!r}; expected ok, an errno name (ENOMEM), SIGSEGV or a read's value"
    )
