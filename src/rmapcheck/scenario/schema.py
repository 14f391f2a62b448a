"""What an input may hold: the limits and the one validator of scenarios, traces and bounds.

A scenario reaches the model three ways: a scenario file (parsed by
:mod:`rmapcheck.scenario.parse`), a trace file (JSON, loaded by
:mod:`rmapcheck.check.trace`) and the model checker's bounds (options of
``rmapcheck check``, or the ``bounds`` of a trace). Each reader turns its
syntax into :class:`~rmapcheck.scenario.ops.Op` values and regions, and this
module judges them, so a trace can hold nothing a scenario file could not:

- :data:`LIMITS`: every size an input can set, bounded (pages, regions,
  processes, steps, ``ksm_scan N``, digits, nesting, name lengths, the work
  one run may ask for);
- :data:`KINDS`: per step kind, the fields of :class:`Op` it uses, its flags,
  its advice words and the range of its value; :data:`SCENARIO_KEYS` and
  :data:`TRACE_KEYS`: the top-level keys of the two file formats;
  :data:`BOUNDS`: the checker's bounds with their ranges. A new field is
  declared in these tables and nowhere else;
- :func:`validate_scenario` (regions, every step, the processes' lifetimes
  and the work), :func:`check_op`, :func:`check_bounds`.

Errors are one line: :class:`ScenarioError` names the file and line (a
trace's step number), and every token of the input an error repeats is cut
to :attr:`Limits.shown` characters (:func:`shown`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable

from rmapcheck.model.kernel import ALLOC_SITES
from rmapcheck.scenario.ops import FAIL_FLAG, MMAP_FLAGS, PROTS, Op, Region, Scenario, fail_flag, parse_fail_flag

__all__ = [
    "ADVICES",
    "BOUNDS",
    "CHECK_OPS",
    "FAULT_MODES",
    "KINDS",
    "KSM_SET_KNOBS",
    "LIMITS",
    "NAME_RE",
    "OP_FIELDS",
    "SCENARIO_KEYS",
    "TRACE_KEYS",
    "Kind",
    "Limits",
    "ScenarioError",
    "check_bounds",
    "check_op",
    "fail_flags",
    "check_name",
    "check_region",
    "region_of",
    "shown",
    "track_processes",
    "validate_scenario",
    "work_error",
]


@dataclass(frozen=True)
class Limits:
    """The largest input rmapcheck takes (docs/scenario-format.md, "Limits").

    Each bound keeps a run short or an error message short; none is close to
    what a scenario of the kernel's selftests needs.
    """

    #: pages of the arena every region lies in (256 MiB)
    arena_pages: int = 1 << 16
    #: regions of a scenario (and of the checker's bounds: A to Z)
    regions: int = 26
    #: steps of a scenario or a trace
    steps: int = 4096
    #: processes alive at once
    processes: int = 32
    #: characters of a process or region name
    name_length: int = 32
    #: digits of a number (2**63 has 19)
    digits: int = 20
    #: nesting of YAML or JSON collections
    nesting: int = 32
    #: full scans of one ``ksm_scan N``
    ksm_scans: int = 100
    #: pages of one ``ksmd N`` batch
    ksmd_pages: int = 1 << 16
    #: bytes of a scenario file
    scenario_bytes: int = 1 << 20
    #: bytes of a trace file
    trace_bytes: int = 1 << 22
    #: characters of a string field (a name, a description, a message)
    text: int = 1 << 16
    #: the work of one run: the arena's pages times the processes alive,
    #: summed over the steps (a ``ksm_scan N`` counting 4N steps; see
    #: :func:`work_error`); about a second of the model's time
    work: int = 1 << 20
    #: characters of an input token an error message repeats
    shown: int = 40


LIMITS = Limits()

#: a process or region name
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

#: ``madvise`` advice the step language knows.
ADVICES = ("dontneed", "mergeable", "unmergeable")

#: The /sys/kernel/mm/ksm knobs ``ksm_set`` may write (``pages_to_scan`` and
#: ``sleep_millisecs`` drive the scans and stay the runner's; ``run`` is never
#: 1: ksmd runs only inside ``ksm_scan`` and ``ksm_settle``).
KSM_SET_KNOBS = ("max_page_sharing", "merge_across_nodes", "run", "smart_scan",
                 "stable_node_chains_prune_millisecs", "use_zero_pages")

_VALUE = (0, (1 << 63) - 1)
_RANGE = frozenset({"region", "page", "npages"})


@dataclass(frozen=True)
class Kind:
    """What one step kind takes.

    :param proc: the step runs in a process (``proc`` names it).
    :param fields: the fields of :class:`Op` besides ``kind``, ``proc``,
        ``expect`` and ``line`` it may set; the others keep their defaults.
    :param flags: the words ``flags`` may hold.
    :param advice: the words ``advice`` may hold.
    :param value: the least and the largest ``value``.
    :param one_page: ``npages`` is 1.
    """

    proc: bool
    fields: frozenset[str] = frozenset()
    flags: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()
    value: tuple[int, int] = (0, 0)
    one_page: bool = False


_PAGE = Kind(True, _RANGE, one_page=True)

#: every step kind of :data:`~rmapcheck.scenario.ops.OP_KINDS`
KINDS: dict[str, Kind] = {
    "mmap": Kind(True, _RANGE | {"prot", "flags"}, flags=MMAP_FLAGS),
    "munmap": Kind(True, _RANGE),
    "mprotect": Kind(True, _RANGE | {"prot"}),
    "mremap": Kind(True, _RANGE | {"to_region", "to_page", "new_pages", "flags"}, flags=("dontunmap",)),
    "madvise": Kind(True, _RANGE | {"advice"}, advice=ADVICES),
    "read": Kind(True, _RANGE),
    "write": Kind(True, _RANGE | {"value"}, value=_VALUE),
    "poke": Kind(True, _RANGE | {"value"}, value=_VALUE),
    "fork": Kind(True, frozenset({"child"})),
    "exit": Kind(True),
    # advice "" is PR_SET_MEMORY_MERGE of value, "get_merge" PR_GET_MEMORY_MERGE
    "prctl": Kind(True, frozenset({"value", "advice"}), advice=("", "get_merge"), value=(0, 1)),
    "ksm_scan": Kind(False, frozenset({"value"}), value=(1, LIMITS.ksm_scans)),
    "ksm_settle": Kind(False),
    "ksm_set": Kind(False, frozenset({"advice", "value"}), advice=KSM_SET_KNOBS, value=_VALUE),
    "migrate": _PAGE,
    "migrate_start": _PAGE,
    "kthread": Kind(False, frozenset({"value"}), value=_VALUE),
    "reclaim": _PAGE,
    "reclaim_start": _PAGE,
    "ksmd": Kind(False, frozenset({"value"}), value=(1, LIMITS.ksmd_pages)),
}

#: the fields of a step with their types (those of :class:`Op`'s defaults)
OP_FIELDS: dict[str, type] = {f.name: type(getattr(Op("", ""), f.name)) for f in fields(Op)
                              if f.name not in ("expect", "line")}

#: the top-level keys of a scenario file: key -> required
SCENARIO_KEYS: dict[str, bool] = {"name": False, "description": False, "rcu_windows": False, "config": False,
                                   "ksm_baseline": False, "regions": False, "steps": True}

#: the top-level keys of a trace file: key -> (JSON type, required)
TRACE_KEYS: dict[str, tuple[type, bool]] = {
    "format": (str, True),
    "design": (str, True),
    # a design file's path and SHA-256, and those of the files it bases on
    "design_files": (list, False),
    "config": (dict, False),
    "bounds": (dict, False),
    "property": (str, False),
    "function": (str, False),
    "message": (str, False),
    "regions": (dict, True),
    "setup": (int, False),
    "steps": (list, True),
}

#: the operations ``rmapcheck check --ops`` explores
CHECK_OPS = ("write", "read", "fork", "exit", "mmap", "munmap", "mprotect", "mremap", "mremap_dontunmap",
             "dontneed", "ksm_scan", "ksmd", "migrate", "reclaim")

#: which attempts of an allocation site ``rmapcheck check --faults`` fails in
#: one action: the first, the N-th, or the N-th and every later one
FAULT_MODES = ("first", "nth", "persistent")

#: the checker's bounds (:class:`rmapcheck.check.model.Bounds`): name ->
#: ``(least, largest)`` for integers, ``bool``, ``CHECK_OPS`` or ``FAULT_MODES`` for the others.
#: Regions are named A to Z; the others keep an exhaustive search finite.
BOUNDS: dict[str, tuple[int, int] | type | tuple[str, ...]] = {
    "processes": (1, 16),
    "regions": (1, LIMITS.regions),
    "pages": (1, 64),
    "contents": (1, 16),
    "depth": (1, 64),
    "ops": CHECK_OPS,
    "mergeable": bool,
    "preemption": (0, 16),
    "faults": (0, 16),
    "fault_mode": FAULT_MODES,
    "forked": bool,
    "rcu_windows": bool,
}


class ScenarioError(Exception):
    """A malformed scenario or trace; ``str()`` is ``FILE:LINE: message``.

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


def shown(tok: object) -> str:
    """``repr(tok)`` for an error message, cut to :attr:`Limits.shown` characters."""
    s = tok if isinstance(tok, str) else repr(tok)
    if len(s) > LIMITS.shown:
        return repr(s[:LIMITS.shown]) + f"... ({len(s)} characters)"
    return repr(s)


_Fail = Callable[[str], Exception]


def check_name(name: object, what: str, fail: _Fail) -> str:
    """``name`` if it is a process or region name, else ``fail``."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise fail(f"bad {what} name {shown(name)}: use letters, digits and '_', such as "
                   f"{'P1' if what == 'process' else 'A'}")
    if len(name) > LIMITS.name_length:
        raise fail(f"{what} name {shown(name)} is longer than {LIMITS.name_length} characters")
    return name


def check_region(r: Region, earlier: Iterable[Region], lines: dict[str, int] | None = None) -> str | None:
    """What is wrong with region ``r`` placed after ``earlier`` (``None`` if nothing).

    :param lines: the line of each earlier region, named in an overlap.
    """
    if r.pages < 1:
        return f"pages of region {r.name} must be at least 1, not {r.pages}"
    if r.at < 0:
        return f"'at' of region {r.name} must be at least 0, not {r.at}"
    if r.at + r.pages > LIMITS.arena_pages:
        return f"region {r.name} ends past the arena's {LIMITS.arena_pages} pages"
    n = 0
    for other in earlier:
        n += 1
        if r.at < other.at + other.pages and other.at < r.at + r.pages:
            where = f", line {lines[other.name]}" if lines and other.name in lines else ""
            return (f"region {r.name} (pages {r.at}..{r.at + r.pages - 1}) overlaps region {other.name} "
                    f"(pages {other.at}..{other.at + other.pages - 1}{where})")
    if n >= LIMITS.regions:
        return f"more than {LIMITS.regions} regions"
    return None


def region_of(name: str, regions: dict[str, Region], fail: _Fail) -> Region:
    """The region called ``name``, else ``fail``."""
    r = regions.get(name)
    if r is None:
        known = ", ".join(regions) if regions else "none"
        raise fail(f"unknown region {shown(name)}; the regions are {known}")
    return r


def _span(r: Region, first: int, n: int) -> str:
    return f"{r.name}[{first}]" if n == 1 else f"{r.name}[{first}:{first + n}]"


def check_op(op: Op, regions: dict[str, Region], fail: _Fail) -> Op:
    """``op`` if every field is one its kind takes, in range, else ``fail``.

    Checks the kind, the names, the pages inside their regions, the
    protection, flags, advice and value of the kind (:data:`KINDS`), the
    ``mremap`` destination; not whether the processes exist
    (:func:`track_processes`).
    """
    kind = KINDS.get(op.kind) if isinstance(op.kind, str) else None
    if kind is None:
        raise fail(f"unknown operation {shown(op.kind)}; expected one of {', '.join(KINDS)}")
    default = _DEFAULT
    for name in OP_FIELDS:
        if name not in ("kind", "proc") and name not in kind.fields and getattr(op, name) != getattr(default, name):
            # any step may carry allocation failures (fail=SITE...)
            if name == "flags" and all(f.startswith(FAIL_FLAG) for f in op.flags):
                continue
            raise fail(f"{op.kind} takes no {name}")
    if kind.proc:
        check_name(op.proc, "process", fail)
    elif op.proc:
        raise fail(f"{op.kind} runs in no process")
    if "region" in kind.fields:
        r = region_of(op.region, regions, fail)
        if not 0 <= op.page < r.pages:
            raise fail(f"page {op.page} is out of range of region {r.name} (pages 0..{r.pages - 1})")
        if op.npages < 1:
            raise fail(f"{op.kind} of {op.npages} pages: a range has at least one page")
        if op.page + op.npages > r.pages:
            raise fail(f"{_span(r, op.page, op.npages)} is out of range of region {r.name} "
                       f"(pages 0..{r.pages - 1})")
        if kind.one_page and op.npages != 1:
            raise fail(f"{op.kind} takes one page, such as {r.name}[{op.page}]")
    if "prot" in kind.fields and op.prot not in PROTS:
        raise fail(f"unknown PROT {shown(op.prot)}; expected one of {', '.join(PROTS)}")
    fail_flags([f for f in op.flags if f.startswith(FAIL_FLAG)], fail)
    for f in op.flags:
        if not f.startswith(FAIL_FLAG) and f not in kind.flags:
            known = ", ".join(kind.flags) or "none"
            raise fail(f"unknown {op.kind} flag {shown(f)}; known: {known}")
    for pair in _EXCLUSIVE_FLAGS:
        if pair <= op.flags:
            raise fail(f"{op.kind} flags {' and '.join(sorted(pair))} exclude each other")
    if kind.advice and op.advice not in kind.advice:
        what = {"madvise": "madvise advice", "ksm_set": "KSM knob"}.get(op.kind, f"{op.kind} word")
        raise fail(f"unknown {what} {shown(op.advice)}; expected one of {', '.join(kind.advice)}")
    if "value" in kind.fields:
        lo, hi = kind.value
        if not lo <= op.value <= hi:
            raise fail(f"bad value {op.value} for {op.kind}: expected {lo} to {hi}")
        if op.kind == "prctl" and op.advice == "get_merge" and op.value:
            raise fail("prctl get_merge takes no value")
        if op.kind == "ksm_set" and op.advice == "run" and op.value == 1:
            raise fail("ksm_set run 1 would let ksmd scan on its own; use ksm_scan N or ksm_settle")
    if op.kind == "fork":
        check_name(op.child, "process", fail)
    if op.kind == "mremap":
        _check_mremap(op, regions, fail)
    return op


_DEFAULT = Op("", "")

#: flags of which a step may hold one at most
_EXCLUSIVE_FLAGS = (frozenset({"fixed", "fixed_noreplace"}), frozenset({"nohugepage", "thp_system"}))


def _check_mremap(op: Op, regions: dict[str, Region], fail: _Fail) -> None:
    # The pages the mapping covers afterwards must lie in the destination region.
    if op.new_pages < 0:
        raise fail("mremap to 0 pages: N must be at least 1")
    dest, first = regions[op.region], op.page
    if op.to_region:
        dest = region_of(op.to_region, regions, fail)
        first = op.to_page
        if not 0 <= first < dest.pages:
            raise fail(f"page {first} is out of range of region {dest.name} (pages 0..{dest.pages - 1})")
    elif op.to_page:
        raise fail("mremap takes no target page without a target region")
    if "dontunmap" in op.flags and not op.to_region:
        raise fail("dontunmap needs a target S[k] (MREMAP_DONTUNMAP moves the pages)")
    end = first + (op.new_pages or op.npages)
    if end > dest.pages:
        what = "target" if op.to_region else "resized range"
        raise fail(f"mremap {what} {dest.name}[{first}:{end}] is out of range of "
                   f"region {dest.name} (pages 0..{dest.pages - 1})")


def fail_flags(flags: Iterable[str], fail: _Fail) -> frozenset[str]:
    """The ``fail=SITE[@N][*]`` flags of a step, each in its canonical spelling, else ``fail``.

    One flag per allocation site, each a site the model has
    (``fail=SITE@1`` is ``fail=SITE``). Scenario files and traces alike.
    """
    out: dict[str, str] = {}
    for flag in flags:
        try:
            site, attempt, persistent = parse_fail_flag(flag)
        except ValueError as e:
            raise fail(str(e)) from None
        if site not in ALLOC_SITES:
            raise fail(f"unknown allocation site {shown(site)} in {shown(flag)}; "
                       f"the sites are {', '.join(ALLOC_SITES)}")
        if site in out:
            raise fail(f"two fault flags for {site} in one step ({out[site]} and {shown(flag)})")
        out[site] = fail_flag(site, attempt, persistent)
    return frozenset(out.values())


def track_processes(op: Op, procs: set[str], fail: _Fail) -> None:
    """Follow the processes alive before ``op`` (``procs``) through it, else ``fail``.

    ``P0`` exists at the start; ``fork`` creates the child, which must not
    exist yet; ``exit`` ends the process; a step in a process that does not
    exist is an error, and so are more than :attr:`Limits.processes` at once.
    """
    if not KINDS[op.kind].proc:
        return
    if op.proc not in procs:
        alive = ", ".join(sorted(procs)) or "none"
        raise fail(f"process {op.proc} does not exist here (live processes: {alive})")
    if op.kind == "fork":
        if op.child in procs:
            raise fail(f"fork: process {op.child} already exists")
        if len(procs) >= LIMITS.processes:
            raise fail(f"fork: more than {LIMITS.processes} processes alive at once")
        procs.add(op.child)
    elif op.kind == "exit":
        procs.discard(op.proc)


#: what a step of KSM's scanner costs against another step: ksmd's scan of a
#: page costs about four times what an address map or a fork spends on it
_SCAN_COST = 4


def work_error(s: Scenario) -> tuple[int, str] | None:
    """The first step of ``s`` past :attr:`Limits.work` and what it says (``None`` if within).

    A step costs the arena's pages times the processes alive after it (an
    address map per process, a fork's page tables, the invariants);
    ``ksm_scan N`` costs 4N such steps, ``ksm_settle`` 8, and ``ksmd N`` adds
    4N (ksmd's scan of a page costs about four times as much).
    """
    pages = max(1, s.arena_pages)
    procs = 1
    total = 0
    for i, op in enumerate(s.ops):
        procs += 1 if op.kind == "fork" else -1 if op.kind == "exit" else 0
        times = _SCAN_COST * op.value if op.kind == "ksm_scan" else 2 * _SCAN_COST if op.kind == "ksm_settle" else 1
        total += pages * max(1, procs) * times + (_SCAN_COST * op.value if op.kind == "ksmd" else 0)
        if total > LIMITS.work:
            return i, (f"too much work: {s.arena_pages} arena pages times the processes, summed over the steps "
                       f"to this one (a ksm_scan N counting 4N), is {total}, above {LIMITS.work}")
    return None


def validate_scenario(s: Scenario, line_of: Callable[[int, Op], int] | None = None) -> Scenario:
    """``s`` if its regions, steps, processes and work are within bounds, else a :class:`ScenarioError`.

    The step checks are :func:`check_op` and :func:`track_processes`; a
    region's are :func:`check_region` (the parser checks regions as it reads
    them, to name their lines).

    :param line_of: the line an error names for step ``i`` (``op.line`` by default).
    """
    def where(i: int, op: Op) -> int:
        return line_of(i, op) if line_of is not None else op.line

    if len(s.ops) > LIMITS.steps:
        raise ScenarioError(s.source, where(LIMITS.steps, s.ops[LIMITS.steps]),
                            f"more than {LIMITS.steps} steps")
    placed: list[Region] = []
    for r in s.regions.values():
        check_name(r.name, "region", lambda m: ScenarioError(s.source, 0, m))
        msg = check_region(r, placed)
        if msg:
            raise ScenarioError(s.source, 0, msg)
        placed.append(r)
    procs = {"P0"}
    for i, op in enumerate(s.ops):
        def fail(m: str, i: int = i, op: Op = op) -> ScenarioError:
            return ScenarioError(s.source, where(i, op), m)
        check_op(op, s.regions, fail)
        track_processes(op, procs, fail)
    too_much = work_error(s)
    if too_much:
        i, msg = too_much
        raise ScenarioError(s.source, where(i, s.ops[i]), msg)
    return s


def check_bounds(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``d`` with each bound of :data:`BOUNDS` typed and in range, else a ``ValueError``.

    :param prefix: put before a bound's name in the message (``--`` for options).
    """
    out: dict[str, Any] = {}
    for k, v in d.items():
        rule = BOUNDS.get(k)
        if rule is None:
            raise ValueError(f"unknown bound {shown(k)} (known: {', '.join(BOUNDS)})")
        name = prefix + k.replace("_", "-") if prefix else k
        if rule is bool:
            if type(v) is not bool:
                raise ValueError(f"{name} must be true or false")
        elif rule is CHECK_OPS:
            if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v) or not v:
                raise ValueError(f"{name} must name at least one operation")
            for o in v:
                if o not in CHECK_OPS:
                    raise ValueError(f"unknown operation {shown(o)} in {name} (known: {', '.join(CHECK_OPS)})")
            v = tuple(v)
        elif rule is FAULT_MODES:
            if v not in FAULT_MODES:
                raise ValueError(f"{name} must be one of {', '.join(FAULT_MODES)}, not {shown(v)}")
        else:
            lo, hi = rule  # type: ignore[misc]
            if type(v) is not int:
                raise ValueError(f"{name} must be an integer")
            if not lo <= v <= hi:
                raise ValueError(f"{name} must be between {lo} and {hi}, not {v}")
        out[k] = v
    return out
