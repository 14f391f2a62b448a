"""The operations of a scenario, as data shared by the model and the live runner.

A scenario names processes (``P0`` exists at the start; ``fork`` creates the
others), regions (named page ranges at fixed places of one arena that every
process shares the addresses of) and a list of operations. Both the model and
the live kernel reduce each step to an :class:`Observation`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rmapcheck.model.uapi import MADV_NOHUGEPAGE, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_NORESERVE, MAP_POPULATE

__all__ = [
    "ARENA_BASE",
    "FAIL_FLAG",
    "MMAP_FLAGS",
    "MODEL_ONLY_KINDS",
    "OP_KINDS",
    "PROTS",
    "Observation",
    "Op",
    "Region",
    "Scenario",
    "Settings",
    "fail_flag",
    "mmap_flags",
    "mmap_thp",
    "parse_fail_flag",
    "read_result",
    "returns_value",
]

#: Virtual address of arena page 0, the same in every process. Far below the
#: interpreter's mappings (near 0x7f...) and its heap (near 0x55...), so nothing
#: else is ever placed next to a scenario mapping.
ARENA_BASE = 0x100_0000_0000

#: Protection strings of the scenario language and their PROT_* bits.
PROTS = {"none": 0, "r": 1, "rw": 3, "rx": 5, "rwx": 7}

OP_KINDS = (
    "mmap", "munmap", "mprotect", "mremap", "madvise", "read", "write", "fork", "exit",
    # KSM and migration (issue: KSM and page migration in the model)
    "prctl", "ksm_scan", "ksm_settle", "ksm_set", "migrate",
    # a forced write, as /proc/self/mem makes it
    "poke",
    # model only (the model checker's kernel threads): start a migration of one
    # page; advance in-flight kernel work number ``value`` (a migration or a
    # reclaim walk) by one phase; run the reclaim rmap walk
    # (folio_referenced()) on one page, whole or its first phase; let ksmd
    # scan ``value`` pages (one ksm_do_scan() batch)
    "migrate_start", "kthread", "reclaim", "reclaim_start", "ksmd",
)

#: the words an ``mmap`` step may add, in the order a step is written:
#: ``MAP_FIXED`` instead of ``MAP_FIXED_NOREPLACE`` (or the default said
#: aloud), ``MAP_NORESERVE``, ``MAP_POPULATE``, and the THP choice: the
#: default ``madvise(MADV_NOHUGEPAGE)`` said aloud, or no madvise at all
#: (the system's THP setting decides)
MMAP_FLAGS = ("fixed", "fixed_noreplace", "noreserve", "populate", "nohugepage", "thp_system")

#: steps the model runs but the live kernel cannot be made to run on demand
MODEL_ONLY_KINDS = ("migrate_start", "kthread", "reclaim", "reclaim_start", "ksmd")

#: the prefix of a step's fault-injection flag (model only)
FAIL_FLAG = "fail="

_FAIL_RE = re.compile(re.escape(FAIL_FLAG) + r"([A-Za-z_][A-Za-z0-9_]*)(?:@([0-9]+))?(\*)?\Z")


def fail_flag(site: str, attempt: int = 1, persistent: bool = False) -> str:
    """The flag that fails allocation ``site`` in one step, as the scenario language writes it.

    ``fail=SITE`` fails the first attempt, ``fail=SITE@N`` the N-th only,
    ``fail=SITE*`` every attempt, ``fail=SITE@N*`` the N-th and every later
    one; attempts are counted within the step.
    """
    return f"{FAIL_FLAG}{site}{f'@{attempt}' if attempt != 1 else ''}{'*' if persistent else ''}"


def parse_fail_flag(flag: str) -> tuple[str, int, bool]:
    """``(site, attempt, persistent)`` of a flag written as :func:`fail_flag` writes it.

    ``fail=SITE@1`` is accepted for ``fail=SITE``.

    :raises ValueError: the flag is malformed (the message is one line).
    """
    m = _FAIL_RE.match(flag)
    if m is None or (m.group(2) is not None and int(m.group(2)) < 1):
        raise ValueError(f"bad fault flag {flag!r}: expected fail=SITE, fail=SITE@N, fail=SITE* or "
                         "fail=SITE@N* (N >= 1)")
    return m.group(1), int(m.group(2) or 1), m.group(3) is not None


def mmap_flags(words: frozenset[str]) -> int:
    """The ``MAP_*`` flags of an ``mmap`` step's words (``MAP_PRIVATE|MAP_ANONYMOUS`` implied)."""
    flags = MAP_FIXED if "fixed" in words else MAP_FIXED_NOREPLACE
    if "noreserve" in words:
        flags |= MAP_NORESERVE
    if "populate" in words:
        flags |= MAP_POPULATE
    return flags


def mmap_thp(words: frozenset[str]) -> int | None:
    """The advice an ``mmap`` step gives its mapping: ``MADV_NOHUGEPAGE``, or ``None`` with ``thp_system``."""
    return None if "thp_system" in words else MADV_NOHUGEPAGE


def returns_value(op: "Op") -> bool:
    """True if ``op``'s result is a value (a read, ``prctl P get_merge``), not ``ok``."""
    return op.kind == "read" or (op.kind == "prctl" and op.advice == "get_merge")


def read_result(values: list[int]) -> str:
    """A read's result: its pages' values in decimal, one if they are all the same, else ``V,V,...``."""
    if values and all(v == values[0] for v in values):
        return str(values[0])
    return ",".join(str(v) for v in values)


@dataclass(frozen=True, slots=True)
class Region:
    """A named range of arena pages: ``[at, at + pages)``."""

    name: str
    pages: int
    at: int


@dataclass(frozen=True, slots=True)
class Op:
    """One step of a scenario.

    ``page``/``npages`` select pages of ``region``. ``prot`` is a key of
    :data:`PROTS`. ``mremap`` moves to ``to_region[to_page]`` when ``to_region``
    is set (``MREMAP_MAYMOVE|MREMAP_FIXED``) and resizes to ``new_pages`` (0:
    unchanged). ``flags`` holds the words of :data:`MMAP_FLAGS` (mmap) and
    ``dontunmap`` (mremap ``MREMAP_DONTUNMAP``) and, on any step, allocation
    failures (``fail=SITE``, ``fail=SITE@N``, ``fail=SITE*``, ``fail=SITE@N*``:
    :func:`fail_flag`). ``advice`` is a madvise
    advice such as ``dontneed``. ``read``, ``write`` and ``poke`` (a write
    through ``/proc/self/mem``) act on each page of their range in turn. KSM
    and migration steps: ``prctl P merge V`` (``PR_SET_MEMORY_MERGE``,
    ``value`` 0 or 1), ``prctl P get_merge`` (``PR_GET_MEMORY_MERGE``:
    ``advice`` is ``get_merge``), ``ksm_scan N`` (``value`` full
    scans, no process), ``ksm_settle``, ``ksm_set KNOB V`` (``advice`` holds the
    knob of /sys/kernel/mm/ksm, ``value`` its value), ``migrate P R[i]``.
    ``expect`` is the result the file expects (``ok``, an errno
    name, ``SIGSEGV`` or a read value), ``None`` if the file states none.
    """

    kind: str
    proc: str
    region: str = ""
    page: int = 0
    npages: int = 1
    prot: str = "rw"
    value: int = 0
    child: str = ""
    to_region: str = ""
    to_page: int = 0
    new_pages: int = 0
    flags: frozenset[str] = frozenset()
    advice: str = ""
    expect: str | None = None
    line: int = 0

    def text(self) -> str:
        """The step in the scenario language (what a person writes)."""
        rng = f"{self.region}[{self.page}]" if self.npages == 1 else \
            f"{self.region}[{self.page}:{self.page + self.npages}]"
        k = self.kind
        if k == "fork":
            s = f"fork {self.proc} {self.child}"
        elif k == "exit":
            s = f"exit {self.proc}"
        elif k in ("write", "poke"):
            s = f"{k} {self.proc} {rng} {self.value}"
        elif k == "read":
            s = f"read {self.proc} {rng}"
        elif k == "mmap":
            s = " ".join([f"{k} {self.proc} {rng} {self.prot}", *(f for f in MMAP_FLAGS if f in self.flags)])
        elif k == "mprotect":
            s = f"{k} {self.proc} {rng} {self.prot}"
        elif k == "munmap":
            s = f"munmap {self.proc} {rng}"
        elif k == "madvise":
            s = f"madvise {self.proc} {rng} {self.advice}"
        elif k == "prctl":
            s = f"prctl {self.proc} get_merge" if self.advice == "get_merge" else \
                f"prctl {self.proc} merge {self.value}"
        elif k == "ksm_scan":
            s = f"ksm_scan {self.value}"
        elif k == "ksm_settle":
            s = "ksm_settle"
        elif k == "ksm_set":
            s = f"ksm_set {self.advice} {self.value}"
        elif k in ("migrate", "migrate_start", "reclaim", "reclaim_start"):
            s = f"{k} {self.proc} {rng}"
        elif k in ("kthread", "ksmd"):
            s = f"{k} {self.value}"
        elif k == "mremap":
            s = f"mremap {self.proc} {rng}"
            if self.to_region:
                s += f" {self.to_region}[{self.to_page}]"
            if self.new_pages:
                s += f" {self.new_pages}"
            if "dontunmap" in self.flags:
                s += " dontunmap"
        else:
            s = f"{k} {self.proc}"
        if self.flags:
            for f in sorted(self.flags):
                if f.startswith(FAIL_FLAG):
                    s += f" {f}"
        if self.expect is not None:
            s += f" => {self.expect}"
        return s


@dataclass(frozen=True, slots=True)
class Settings:
    """How the model runs a scenario, where it departs from the live kernel's way.

    The model checker explores with such settings (its bounds and the
    design's switches), so a counterexample printed as a scenario carries
    them in its header and ``rmapcheck run`` reproduces it. Each differs from
    the live kernel, which refuses a scenario that sets one (:meth:`model_only`).

    :param rcu_windows: kernel threads in phases stop inside their RCU
        read-side sections (``Kernel.rcu_windows``); ``False`` as the seed
        bounds have it.
    :param config: the design's switches set otherwise than its default,
        ``(NAME, VALUE)`` as written (``("CONFIG_KSM", "n")``), in name order.
    :param ksm_baseline: a scenario that uses KSM starts from the live
        runner's baseline (``smart_scan`` 0, and one untouched mapping of P0
        standing for the live worker's own memory); ``False`` starts from the
        bare kernel, as the model checker does.
    """

    rcu_windows: bool = True
    config: tuple[tuple[str, str], ...] = ()
    ksm_baseline: bool = True

    def model_only(self) -> list[str]:
        """The settings the live kernel cannot honour, as they read in a scenario header."""
        out = []
        if not self.rcu_windows:
            out.append("rcu_windows: false")
        if self.config:
            out.append("config: {" + ", ".join(f"{k}: {v}" for k, v in self.config) + "}")
        if not self.ksm_baseline:
            out.append("ksm_baseline: false")
        return out


@dataclass(slots=True)
class Scenario:
    """A parsed scenario file."""

    name: str
    regions: dict[str, Region]
    ops: list[Op]
    source: str = "<scenario>"
    description: str = ""
    arena_pages: int = 0
    lines: dict[int, int] = field(default_factory=dict)
    #: the header's settings of the model (defaults: as the live kernel runs)
    settings: Settings = Settings()

    def __post_init__(self) -> None:
        if not self.arena_pages:
            self.arena_pages = max((r.at + r.pages for r in self.regions.values()), default=0)

    def region_of(self, page: int) -> tuple[str, int] | None:
        """The region and page within it of arena page ``page``."""
        for r in self.regions.values():
            if r.at <= page < r.at + r.pages:
                return r.name, page - r.at
        return None


@dataclass(frozen=True, slots=True)
class Observation:
    """What one step shows from outside, reduced to canonical form.

    ``result`` is ``ok``, an errno name (``ENOMEM``), ``SIGSEGV``, or the value a
    read returned, in decimal. ``layout`` has, per live process in name order,
    the private VMAs that meet the arena as ``(start, end, prot)`` in arena pages
    (clipped to the arena), ``prot`` as in ``/proc/<pid>/maps`` (``rw-``).
    ``frames`` has, per live process in name order, one entry per arena page:
    ``None`` if no page is mapped, ``-1`` for the shared zero page, else the
    number of its physical frame, numbered in order of first appearance over
    the processes in name order and their pages in address order. Two pages
    share a number exactly when they map the same frame. ``ksm`` is the set
    of frame numbers whose page is a KSM page.
    """

    result: str
    layout: tuple[tuple[str, tuple[tuple[int, int, str], ...]], ...]
    frames: tuple[tuple[str, tuple[int | None, ...]], ...]
    ksm: frozenset[int] = frozenset()
    #: compared KSM counters of /sys/kernel/mm/ksm, as (name, value), sorted
    counters: tuple[tuple[str, int], ...] = ()
    #: per process, the compared fields of /proc/<pid>/ksm_stat, sorted
    ksm_stat: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()
    #: other outcomes the kernel may legitimately show (the model's prediction
    #: when timing or scan order decides); empty on the live side
    alternatives: tuple["Observation", ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The observation as plain data (``--json``): frames and ``ksm_stat`` per process."""
        d: dict[str, object] = {
            "result": self.result,
            "layout": {proc: [list(v) for v in vmas] for proc, vmas in self.layout},
            "frames": {proc: list(row) for proc, row in self.frames},
            "ksm": sorted(self.ksm),
        }
        if self.counters:
            d["counters"] = dict(self.counters)
            d["ksm_stat"] = {proc: dict(fields) for proc, fields in self.ksm_stat}
        return d

    def matches(self, live: "Observation") -> bool:
        """True if ``live`` is this predicted outcome or one of its alternatives."""
        return live == self._plain() or any(live == a._plain() for a in self.alternatives)

    def _plain(self) -> "Observation":
        if not self.alternatives:
            return self
        return Observation(self.result, self.layout, self.frames, self.ksm, self.counters, self.ksm_stat)

    @staticmethod
    def canonical_frames(
        raw: dict[str, list[object | None]], is_zero: object
    ) -> tuple[tuple[str, tuple[int | None, ...]], ...]:
        """Number frames by first appearance; ``raw`` maps process to page frames.

        :param raw: per process, one entry per arena page: ``None`` or a frame key.
        :param is_zero: the key that stands for the zero page.
        """
        names: dict[object, int] = {}
        out = []
        for proc in sorted(raw):
            row: list[int | None] = []
            for key in raw[proc]:
                if key is None:
                    row.append(None)
                elif key == is_zero:
                    row.append(-1)
                else:
                    n = names.get(key)
                    if n is None:
                        n = names[key] = len(names)
                    row.append(n)
            out.append((proc, tuple(row)))
        return tuple(out)
