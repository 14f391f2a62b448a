"""Hypothesis strategies for malformed scenarios and traces, and the in-process command runner.

Each case is a file that ``rmapcheck run`` or ``rmapcheck replay`` reads,
through :func:`rmapcheck.cli.run_cli` (the function the ``rmapcheck``
command runs) in this process, under a time limit. :func:`outcome` judges
it as a user would: a status of 0, 1 or 2, never a traceback, a status-2
error on one bounded line.

``RMAPCHECK_FUZZ=N`` (``make fuzz N=...``) sets the number of cases of each
fuzz test to N/4 and draws them at random; without it each test runs
:data:`TEST_CASES` cases from a fixed seed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from rmapcheck.check.model import SEED_BOUNDS
from rmapcheck.check.trace import trace_dict
from rmapcheck.cli import run_cli
from rmapcheck.commands.check import run_check
from rmapcheck.commands.common import BUNDLED
from rmapcheck.scenario.ops import OP_KINDS

#: the time one case may take, in seconds (issue 11: no run over 10 s)
CASE_LIMIT = 10.0
#: the longest status-2 error line
ERROR_LINE = 500
#: cases per fuzz test in ``make test``
TEST_CASES = 60

_FUZZ = int(os.environ.get("RMAPCHECK_FUZZ", "0") or 0)


def fuzz_settings() -> settings:
    """Hypothesis settings of a fuzz test: N/4 random cases under ``make fuzz``, else a fixed few."""
    return settings(max_examples=max(1, _FUZZ // 4) if _FUZZ else TEST_CASES, deadline=None,
                    derandomize=not _FUZZ, database=None, print_blob=True,
                    suppress_health_check=list(HealthCheck))


#: what the fuzz tests saw: exit statuses, and the slowest case
STATS: Counter[str] = Counter()
SLOWEST: list[float] = [0.0]


class CaseTimeout(BaseException):
    """A case ran past :data:`CASE_LIMIT` (a BaseException: the CLI's crash handler lets it through)."""


@dataclass
class Outcome:
    status: int
    out: str
    err: str
    seconds: float


def _alarm(signum: int, frame: object) -> None:
    raise CaseTimeout("ran over its time limit")


def invoke(*args: str, limit: float = CASE_LIMIT) -> Outcome:
    """``rmapcheck ARGS`` in this process, its output captured, under ``limit`` seconds (a hang guard)."""
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = run_cli(list(args))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return Outcome(status, out.getvalue(), err.getvalue(), time.perf_counter() - t0)


def outcome(*args: str) -> Outcome:
    """:func:`invoke`, judged: status 0, 1 or 2, no traceback, a status-2 error on one bounded line."""
    o = invoke(*args)
    STATS[f"status {o.status}"] += 1
    SLOWEST[0] = max(SLOWEST[0], o.seconds)
    assert "Traceback" not in o.err and "Traceback" not in o.out, o.err[-2000:]
    assert o.status in (0, 1, 2), f"status {o.status}: {o.err[-2000:]}"
    if o.status == 2:
        lines = o.err.splitlines()
        assert len(lines) == 1, o.err[:2000]
        assert lines[0].startswith("rmapcheck: ") and len(lines[0]) <= ERROR_LINE, lines[0][:2000]
    return o


def summary() -> str:
    """One line of figures: cases, statuses, the slowest case."""
    total = sum(STATS.values())
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(STATS.items()))
    return f"fuzz: {total} cases ({statuses}), slowest {SLOWEST[0]:.2f} s, limit {CASE_LIMIT:.0f} s"


# --- scenarios -----------------------------------------------------------------

#: the bundled scenarios' texts, the seeds of byte-level mutations
SCENARIO_TEXTS = [p.read_bytes() for p in sorted(BUNDLED.glob("*.yaml"))]

_WEIRD_NUMBERS = ["0", "1", "2", "7", "-1", "1.5", "0x10", "1_0", "1:30", "010", "0o7", "1e3", "²", "٣", "³",
                  "9" * 25, "9" * 5000, "18446744073709551616", "9223372036854775808", "100000", "65536",
                  "1000000000", ".inf", "~", "true", "yes"]
_WEIRD_NAMES = ["P0", "P1", "P2", "A", "B", "x", "", "P-1", "0", "Ä", "P" * 40, "P" * 100_000, "a b", "P0\u200b"]

numbers = st.one_of(st.integers(0, 9).map(str), st.integers(0, 70_000).map(str), st.sampled_from(_WEIRD_NUMBERS))
names = st.one_of(st.sampled_from(["P0", "P1", "P2", "P3"]), st.sampled_from(_WEIRD_NAMES),
                  st.text(min_size=0, max_size=12))
regions_names = st.one_of(st.sampled_from(["A", "B", "C"]), st.sampled_from(_WEIRD_NAMES))


@st.composite
def ranges(draw: st.DrawFn) -> str:
    r = draw(regions_names)
    form = draw(st.integers(0, 3))
    if form == 0:
        return r
    if form == 1:
        return f"{r}[{draw(numbers)}]"
    if form == 2:
        return f"{r}[{draw(numbers)}:{draw(numbers)}]"
    return draw(st.text(max_size=10))


_WORDS = ["rw", "r", "none", "rx", "rwx", "w", "RW", "fixed", "dontunmap", "mergeable", "unmergeable",
          "dontneed", "merge", "get_merge", "max_page_sharing", "run", "use_zero_pages", "smart_scan",
          "noreserve", "populate", "fixed_noreplace", "nohugepage", "thp_system", "=>", "ok"]


@st.composite
def steps(draw: st.DrawFn) -> str:
    """One step line: mostly well-formed words in odd orders, numbers and names."""
    kind = draw(st.one_of(st.sampled_from(OP_KINDS), st.sampled_from(["frob", "", "MMAP", "ksm_scan²"])))
    args = draw(st.lists(st.one_of(names, ranges(), numbers, st.sampled_from(_WORDS)), max_size=5))
    text = " ".join([kind, *args])
    if draw(st.booleans()):
        text += " => " + draw(st.one_of(st.sampled_from(["ok", "EEXIST", "ENOMEM", "SIGSEGV", "EFOO", "7", ""]),
                                        numbers))
    return text


@st.composite
def good_steps(draw: st.DrawFn, procs: list[str]) -> str:
    """One well-formed step over regions A (4 pages) and B (2 pages), in a process of ``procs``."""
    p = draw(st.sampled_from(procs))
    r, n = draw(st.sampled_from([("A", 4), ("B", 2)]))
    i = draw(st.integers(0, n - 1))
    j = draw(st.integers(i + 1, n))
    rng = draw(st.sampled_from([r, f"{r}[{i}]", f"{r}[{i}:{j}]"]))
    page = f"{r}[{i}]"
    prot = draw(st.sampled_from(["rw", "r", "none", "rx", "rwx"]))
    kind = draw(st.sampled_from(["mmap", "munmap", "mprotect", "mremap", "madvise", "read", "write", "write",
                                 "poke", "fork", "exit", "prctl", "ksm_scan", "ksm_settle", "ksm_set", "migrate",
                                 "reclaim", "ksmd"]))
    if kind == "mmap":
        flags = draw(st.lists(st.sampled_from(["fixed", "noreserve", "populate", "thp_system"]), unique=True))
        return " ".join([f"mmap {p} {rng} {prot}", *flags])
    if kind == "munmap":
        return f"munmap {p} {rng}"
    if kind == "mprotect":
        return f"mprotect {p} {rng} {prot}"
    if kind == "mremap":
        dest = draw(st.sampled_from(["", " B[0]", " A[2]", " 1", " A[0] 1 dontunmap"]))
        return f"mremap {p} {rng}{dest}"
    if kind == "madvise":
        return f"madvise {p} {rng} {draw(st.sampled_from(['dontneed', 'mergeable', 'unmergeable']))}"
    if kind == "read":
        return f"read {p} {draw(st.sampled_from([page, rng]))}"
    if kind in ("write", "poke"):
        return f"{kind} {p} {draw(st.sampled_from([page, rng]))} {draw(st.integers(0, 3))}"
    if kind == "fork":
        child = f"P{len(procs)}"
        procs.append(child)
        return f"fork {p} {child}"
    if kind == "exit":
        if p != "P0":
            procs.remove(p)
        return f"exit {p}"
    if kind == "prctl":
        return draw(st.sampled_from([f"prctl {p} merge 0", f"prctl {p} merge 1", f"prctl {p} get_merge"]))
    if kind == "ksm_scan":
        return f"ksm_scan {draw(st.integers(1, 3))}"
    if kind == "ksm_set":
        return draw(st.sampled_from(["ksm_set max_page_sharing 2", "ksm_set use_zero_pages 1", "ksm_set run 2",
                                     "ksm_set smart_scan 1", "ksm_set merge_across_nodes 0"]))
    if kind in ("migrate", "reclaim"):
        return f"{kind} {p} {page}"
    if kind == "ksmd":
        return f"ksmd {draw(st.integers(1, 8))}"
    return kind


def _yaml_scalar(s: str) -> str:
    # Most as written, some quoted; a few with YAML syntax of their own.
    return json.dumps(s) if any(c in s for c in ":#{}[],&*!|>'\"%@`\n") or s.strip() != s else s


@st.composite
def nested(draw: st.DrawFn) -> str:
    """Flow collections nested deeply, or a few anchors and aliases."""
    depth = draw(st.integers(1, 600))
    if draw(st.booleans()):
        return "[" * depth + "]" * depth
    return "{a: " * depth + "1" + "}" * depth


@st.composite
def scenario_texts(draw: st.DrawFn) -> bytes:
    """A scenario file from parts: well-formed, well-formed with a few odd steps, or odd throughout."""
    if draw(st.booleans()):
        procs = ["P0"]
        b = draw(st.sampled_from(["2", "{pages: 2, after: A}", "{pages: 2, after: A+3}", "{pages: 2, at: A+5}"]))
        lines = ["regions:", "  A: 4", f"  B: {b}", "steps:"]
        for _ in range(draw(st.integers(0, 16))):
            step = draw(good_steps(procs)) if draw(st.integers(0, 9)) else draw(steps())
            if draw(st.integers(0, 5)) == 0:
                step += " => " + draw(st.sampled_from(["ok", "EEXIST", "ENOMEM", "EINVAL", "SIGSEGV", "0", "1"]))
            lines.append(f"  - {_yaml_scalar(step)}")
        return ("\n".join(lines) + "\n").encode()
    lines = []
    if draw(st.booleans()):
        lines.append(f"name: {_yaml_scalar(draw(st.text(max_size=20)))}")
    shape = draw(st.integers(0, 9))
    if shape == 0:
        lines.append(f"regions: {draw(nested())}")
    elif shape == 1:
        lines.append(f"regions: {_yaml_scalar(draw(st.text(max_size=10)))}")
    else:
        lines.append("regions:")
        for _ in range(draw(st.integers(0, 4))):
            name = draw(regions_names)
            form = draw(st.integers(0, 3))
            if form == 0:
                lines.append(f"  {_yaml_scalar(name)}: {draw(numbers)}")
            elif form == 1:
                lines.append(f"  {_yaml_scalar(name)}: {{pages: {draw(numbers)}, at: {draw(numbers)}}}")
            else:
                key = "after" if form == 2 else "at"
                where = f"{draw(regions_names)}{draw(st.sampled_from(['', '+', '-', '+1', '-2', '+' + '9' * 30]))}"
                lines.append(f"  {_yaml_scalar(name)}: {{pages: {draw(numbers)}, {key}: {_yaml_scalar(where)}}}")
    if draw(st.integers(0, 9)) == 0:
        lines.append(f"{draw(st.sampled_from(['step', 'extra', 'steps']))}: {draw(nested())}")
    lines.append("steps:")
    for s in draw(st.lists(steps(), max_size=12)):
        lines.append(f"  - {_yaml_scalar(s)}")
    return ("\n".join(lines) + "\n").encode()


@st.composite
def byte_mutations(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """One of ``seeds`` with a few bytes flipped, inserted, deleted or repeated."""
    data = bytearray(draw(st.sampled_from(seeds)))
    inserts = st.one_of(st.binary(max_size=8), st.sampled_from(
        [b"\xff", b"\x00", b"\xc3", "²".encode(), "٣".encode(), b"9" * 5000, b"[" * 200, b"&a ", b"*a",
         b"\n  - ksm_scan 1000000000\n", b": ", b"0x", b"_0", b":30", b"\t"]))
    for _ in range(draw(st.integers(1, 5))):
        if not data:
            data += draw(inserts)
            continue
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.integers(0, 3))
        if op == 0:
            data[i] = draw(st.integers(0, 255))
        elif op == 1:
            data[i:i] = draw(inserts)
        elif op == 2:
            del data[i:i + draw(st.integers(1, 16))]
        else:
            j = min(len(data), i + draw(st.integers(1, 64)))
            data[i:i] = data[i:j] * draw(st.integers(1, 50))
    return bytes(data)


# --- traces ----------------------------------------------------------------------


def seed_traces() -> list[dict]:
    """Real counterexamples: the first finding of each seed path on linux-2.6.36-pre."""
    out = []
    for b in SEED_BOUNDS.values():
        m, res = run_check("linux-2.6.36-pre", b)
        for f in res.findings[:1]:
            out.append(trace_dict(m, f))
    assert out
    return out


_TRACES: list[dict] = []


def traces() -> list[dict]:
    """:func:`seed_traces`, computed once."""
    if not _TRACES:
        _TRACES.extend(seed_traces())
    return _TRACES


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.sampled_from([10**12, 2**63, -1, 0, 9]),
              st.text(max_size=10), st.sampled_from(["", "RW", "P9", "frob", "A", "linux-6.18", "x" * 100_000])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)


def _paths(v: object, prefix: tuple = ()) -> list[tuple]:
    # Every path to a value inside v.
    out = [prefix]
    if isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, prefix + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += _paths(x, prefix + (i,))
    return out


@st.composite
def trace_texts(draw: st.DrawFn) -> bytes:
    """A real trace with a few values replaced, keys dropped or added, or nested deep."""
    d = json.loads(json.dumps(draw(st.sampled_from(traces()))))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(d)))
        if not path:
            continue
        parent = d
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = draw(st.integers(0, 4))
        if op == 0:
            parent[key] = draw(json_values)
        elif op == 1:
            del parent[key]
        elif op == 2 and isinstance(parent, dict):
            parent[draw(st.sampled_from(["proc", "kind", "x", "flags", "pages", "at", "regions", "zzz"]))] = \
                draw(json_values)
        elif op == 3 and isinstance(parent, list):
            parent.insert(key, json.loads(json.dumps(parent[key])))
        else:
            parent[key] = json.loads("[" * 40 + "]" * 40) if draw(st.booleans()) else [parent[key]]
    text = json.dumps(d)
    if draw(st.integers(0, 9)) == 0:
        text = text.replace("1", "1" + "0" * draw(st.sampled_from([5, 30, 5000])), 1)
    return text.encode()


def trace_seeds() -> list[bytes]:
    """The real traces as bytes, the seeds of byte-level mutations."""
    return [json.dumps(t, indent=1).encode() for t in traces()]


def write_case(directory: Path, name: str, data: bytes) -> str:
    """Write ``data`` to ``directory/name``; its path."""
    p = directory / name
    p.write_bytes(data)
    return str(p)
