"""The checked model: initial state, actions, next state, for one design and bounds.

The model exposes what a checker needs and nothing more (Stateright's
``Model``): :meth:`KernelModel.init_state`, :meth:`KernelModel.actions` (in a
deterministic order), :meth:`KernelModel.next_state` and the properties of
:mod:`rmapcheck.check.properties`. Actions are scenario operations
(:class:`~rmapcheck.scenario.ops.Op`), so a counterexample is a scenario that
``rmapcheck replay`` and ``rmapcheck run`` execute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from types import SimpleNamespace
from typing import Any

from rmapcheck.check.properties import EVENTS, FATAL, SOMETIMES, data_integrity, property_of
from rmapcheck.check.world import Snapshot, clone, dumps, fingerprint, loads
from rmapcheck.designs import load_design, make_kernel
from rmapcheck.model.findings import Deadlock, RmapFinding
from rmapcheck.model.invariants import check_invariants
from rmapcheck.model.events import EVENTS_LAYER
from rmapcheck.model.kernel import ALLOC_SITES, resolve_ops
from rmapcheck.model.kthreads import kthread_folio, kthread_holds, kthreads
from rmapcheck.model.mm_types import VM_EXEC, VM_READ, VM_WRITE, ZERO_PAGE, folio
from rmapcheck.model.vma_init import vma_lookup
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.ops import FAIL_FLAG, Op, Region, Scenario, fail_flag
from rmapcheck.scenario.schema import FAULT_MODES

__all__ = ["ALLOC_SITES", "Bounds", "FAULT_MODES", "Finding", "KernelModel", "Outcome", "PRESETS", "enabled_ops"]

#: what the explorer injects into an action at an allocation site it makes
#: ``a`` attempts at (``Bounds.fault_mode``), each mode including the one
#: before: ``first`` fails the first attempt (a retry then succeeds),
#: ``nth`` the N-th attempt alone for N up to ``a``, ``persistent`` also the
#: N-th and every later attempt (memory stays short from there on)


@dataclass(frozen=True)
class Bounds:
    """The bounds of one exploration.

    :param processes: most processes alive at once.
    :param regions: regions, each mapped read-write in the first process.
    :param pages: pages per region.
    :param contents: distinct non-zero values a write may store.
    :param depth: most actions after the setup.
    :param ops: the operation kinds to explore.
    :param mergeable: the regions are ``MADV_MERGEABLE`` (for KSM).
    :param preemption: most times a kernel thread in the middle of an
        operation is preempted by another action (the preemption bound).
    :param faults: most actions with an injected allocation failure per trace.
    :param fault_mode: which attempts of a site the explorer fails in one
        action (:data:`FAULT_MODES`).
    :param forked: the setup also writes every page of the first region in
        the first process and forks a second one (a parent and a child
        sharing anonymous pages); further regions stay unfaulted, without an
        anon_vma.
    :param rcu_windows: kernel threads may be preempted inside their RCU
        read-side sections: between reading ``folio->mapping`` and locking
        (reclaim) or pinning (migration) its anon_vma (``k.rcu_windows``).
    """

    processes: int = 2
    regions: int = 1
    pages: int = 2
    contents: int = 1
    depth: int = 8
    ops: tuple[str, ...] = ("write", "fork", "exit", "munmap")
    mergeable: bool = False
    preemption: int = 2
    faults: int = 0
    fault_mode: str = "persistent"
    forked: bool = False
    rcu_windows: bool = True

    def as_dict(self) -> dict[str, Any]:
        """The bounds as plain data (for JSON)."""
        d = asdict(self)
        d["ops"] = list(self.ops)
        return d

    def text(self) -> str:
        """The bounds in one line, such as ``2 processes, 1 region × 2 pages (mergeable), depth 6, ...``."""
        start = [w for w, on in (("forked", self.forked), ("mergeable", self.mergeable)) if on]
        out = [f"{self.processes} process{'es' if self.processes != 1 else ''}",
               f"{self.regions} region{'s' if self.regions != 1 else ''} × {self.pages} "
               f"page{'s' if self.pages != 1 else ''}" + (f" ({', '.join(start)})" if start else ""),
               f"{self.contents} value{'s' if self.contents != 1 else ''}", f"depth {self.depth}",
               f"ops {','.join(self.ops)}", f"preemption {self.preemption}"]
        if self.faults:
            out.append(f"faults {self.faults} ({self.fault_mode})")
        if not self.rcu_windows:
            out.append("RCU windows closed")
        return ", ".join(out)


#: the bounds of ``rmapcheck seed``: the 2010 question, by each path to it
SEED_BOUNDS: dict[str, Bounds] = {
    # a parent and a child share a written page; KSM merges, both exit
    "ksm": Bounds(processes=2, regions=1, pages=1, contents=1, depth=8, forked=True, mergeable=True,
                  ops=("write", "exit", "ksm_scan"), rcu_windows=False),
    # the same, with a page migration in phases instead of KSM; its anon_vma
    # pin is one step, as the question has it (opened, the window between
    # page_mapped() and the reference shows B6 on every 2.6.36 design)
    "migration": Bounds(processes=2, regions=1, pages=1, contents=1, depth=8, forked=True,
                        ops=("write", "exit", "migrate"), rcu_windows=False),
    # one process maps, faults and unmaps again and again (slab reuse)
    "reuse": Bounds(processes=1, regions=1, pages=1, contents=1, depth=6, ops=("write", "mmap", "munmap")),
    # a parent and a child, and a second region no page of which is faulted
    # yet; reclaim walks in phases (docs/history.md B4)
    "reclaim": Bounds(processes=2, regions=2, pages=1, contents=1, depth=6, forked=True,
                      ops=("write", "exit", "reclaim")),
}

#: named bounds; ``standard`` is the 6.18 acceptance preset
PRESETS: dict[str, Bounds] = {
    "small": Bounds(processes=2, regions=1, pages=1, contents=1, depth=6),
    # every operation the explorer knows, two processes, a mergeable region of
    # two pages, six actions deep (docs/checker.md)
    "standard": Bounds(processes=2, regions=1, pages=2, contents=1, depth=6, mergeable=True,
                       ops=("write", "read", "fork", "exit", "mmap", "munmap", "mprotect", "dontneed",
                            "ksm_scan", "migrate", "reclaim")),
}


@dataclass
class Finding:
    """A violated property, with the shortest trace found to it."""

    property: str
    function: str
    message: str
    trace: list[Op]
    setup: int
    error: BaseException | None = field(default=None, repr=False)

    @property
    def trace_length(self) -> int:
        """Actions after the setup."""
        return len(self.trace) - self.setup


@dataclass
class Outcome:
    """What one action did: the new state (bytes), findings, and whether it may be expanded."""

    state: ModelRunner
    findings: list[tuple[str, str, str, BaseException]]
    fatal: bool
    #: the action would sleep on a lock a preempted kernel thread holds: it
    #: is not enabled in this state (``state`` is spoilt and must be dropped)
    blocked: bool = False
    #: the step's result (``ok``, an errno name, ``SIGSEGV``, a read's value;
    #: ``""`` if a finding stopped it)
    result: str = ""
    #: allocation attempts the action made, per site (``Kernel.alloc_attempts``)
    attempts: dict[str, int] | None = None


#: the VM_READ/VM_WRITE/VM_EXEC bits of the protections the explorer sets
_PROT_FLAGS = {"r": VM_READ, "rw": VM_READ | VM_WRITE}


def _inflight(r: ModelRunner) -> list[Any]:
    # In-flight kernel work that runs in phases (migrations, reclaim walks).
    return kthreads(r.k)


def enabled_ops(ops: tuple[str, ...], config: dict[str, Any]) -> tuple[str, ...]:
    """The operations of ``ops`` that a kernel built with ``config`` has.

    Without ``CONFIG_KSM`` there is no ksmd (``ksm_scan``, ``ksmd``), without
    ``CONFIG_MIGRATION`` no page migration (``migrate``).
    """
    if not config.get("CONFIG_KSM"):
        ops = tuple(o for o in ops if o not in ("ksm_scan", "ksmd"))
    if not config.get("CONFIG_MIGRATION"):
        ops = tuple(o for o in ops if o != "migrate")
    return ops


class KernelModel:
    """The kernel of ``design`` under ``bounds``, as a model to check."""

    def __init__(self, design: str, bounds: Bounds, config: dict[str, Any] | None = None) -> None:
        self.design = design
        self.bounds = bounds
        #: the design's switches set otherwise than its default (``CONFIG_KSM``...)
        self.config = dict(config or {})
        #: the design, loaded once: every kernel of this model runs the same code
        self.loaded = load_design(design)
        #: ``(path, SHA-256)`` of the design file and of those it bases on (empty for a bundled design)
        self.design_files = self.loaded.files
        cfg = {**self.loaded.config, **self.config}
        #: the operations of ``bounds.ops`` this kernel has
        self.ops_enabled = enabled_ops(bounds.ops, cfg)
        at = 0
        regions = {}
        for i in range(bounds.regions):
            name = chr(ord("A") + i)
            regions[name] = Region(name, bounds.pages, at)
            at += bounds.pages + 1
        self.setup = []
        if bounds.mergeable:
            # PR_SET_MEMORY_MERGE: every VMA of P0, later ones and those of its
            # children too, is mergeable.
            self.setup.append(Op("prctl", "P0", value=1))
        for r in regions.values():
            self.setup.append(Op("mmap", "P0", r.name, 0, r.pages, prot="rw"))
        if bounds.forked:
            for r in list(regions.values())[:1]:
                for p in range(r.pages):
                    self.setup.append(Op("write", "P0", r.name, p, 1, value=1))
            self.setup.append(Op("fork", "P0", child="P1"))
        self.scenario = Scenario(f"check-{design}", regions, [], source=f"<check {design}>")
        # the design's table with the checker's observation of events over it
        # (rmapcheck.model.events): the kernel functions are the design's
        make_kernel(self.loaded)  # names the design's functions in call chains
        self.ops_table = SimpleNamespace(**resolve_ops(self.loaded.ops, (EVENTS_LAYER,)))
        self._ops: dict[tuple, Op] = {}
        #: id(op) -> (op, op.text()) for the actions applied (an Op's text is built once)
        self._texts: dict[int, tuple[Op, str]] = {}
        #: region -> the other regions (mremap destinations)
        self._others = {a: [b for b in regions if b != a] for a in regions}
        # the mremap moves explored: plain, and with MREMAP_DONTUNMAP (the
        # source VMA stays, empty)
        self._moves = [flags for kind, flags in (("mremap", frozenset()),
                                                 ("mremap_dontunmap", frozenset({"dontunmap"})))
                       if kind in self.ops_enabled]

    def init_state(self) -> ModelRunner:
        """The state after the setup operations (each region mapped in ``P0``)."""
        r = ModelRunner(self.scenario, self.design, check=False,
                        kernel=make_kernel(self.loaded, **self.config))
        r.k.ops = self.ops_table
        r.k.rcu_windows = self.bounds.rcu_windows
        r.born = 1  # type: ignore[attr-defined]
        r.faults = 0  # type: ignore[attr-defined]
        r.preempt = 0  # type: ignore[attr-defined]
        for op in self.setup:
            out = self.apply(r, op)
            if out.findings:
                raise RuntimeError(f"the setup step {op.text()} fails: {out.findings[0][2]}")
        return r

    def actions(self, r: ModelRunner) -> list[Op]:
        """The actions enabled in ``r``, in a deterministic order.

        Actions that cannot change ``r`` are left out (:meth:`self_loops`):
        they would only lead back to it.
        """
        return [op for op, loop in self._candidates(r) if not loop]

    def self_loops(self, r: ModelRunner) -> list[Op]:
        """The actions :meth:`actions` leaves out because they leave ``r`` as it is.

        Always: a read of a present page, and a write of the value a writable
        present page holds. With no kernel work in flight: a read or write of
        a page no VMA maps, or a write to a VMA without ``VM_WRITE``
        (``SIGSEGV`` before the fault handler changes anything); ``munmap`` of
        a region nothing maps; ``mmap`` (``MAP_FIXED_NOREPLACE``) over a
        mapping (``EEXIST`` before anything is allocated); ``mprotect`` of a
        page no VMA maps (``ENOMEM``) or to the protection it has
        (``mprotect_fixup()``: ``newflags == oldflags``); ``MADV_DONTNEED`` of
        a region no page table entry is in. While kernel work is in flight any
        process action uses up a preemption, so the first two lead to this
        state with less budget left, whose successors this state has too; the
        others are kept then. ``tests/test_check.py`` applies each, with
        nothing in flight, and gets the same fingerprint back.
        """
        return [op for op, loop in self._candidates(r) if loop]

    def _candidates(self, r: ModelRunner) -> list[tuple[Op, bool]]:
        # Every action with whether it is a self-loop (see self_loops()).
        b = self.bounds
        ops = self.ops_enabled
        out: list[tuple[Op, bool]] = []
        inflight = _inflight(r)
        kthreads = [(self._op("kthread", "", value=i), False) for i in range(len(inflight))]
        if inflight and r.preempt >= b.preemption:  # type: ignore[attr-defined]
            # The preemption bound is used up: the kernel threads run on.
            return kthreads
        still = not inflight  # with work in flight every action changes the preemption count
        busy = {id(kthread_folio(st)) for st in inflight}
        tasks = sorted(r.k.tasks)
        others = self._others
        moves = self._moves
        for comm in tasks:
            mm = r.k.tasks[comm].mm
            pt = mm.pgtable
            for reg in self.scenario.regions.values():
                first = r.vpn(reg.name, 0)
                vmas = [vma_lookup(mm, first + page) for page in range(reg.pages)]
                for page in range(reg.pages):
                    vpn = first + page
                    pte = pt.get(vpn)
                    vma = vmas[page]
                    present = pte is not None and type(pte[0]) is folio
                    segv = vma is None
                    if "write" in ops:
                        for v in range(1, b.contents + 1):
                            same = present and pte[1] and pte[0].content == v  # type: ignore[index]
                            loop = same or (still and (segv or not vma.vm_flags & VM_WRITE))  # type: ignore[union-attr]
                            out.append((self._op("write", comm, reg.name, page, 1, value=v), loop))
                    if "read" in ops:
                        out.append((self._op("read", comm, reg.name, page, 1), present or (still and segv)))
                    if "migrate" in ops or "reclaim" in ops:
                        # A locked folio would make migration sleep in
                        # folio_lock() and reclaim skip it (folio_trylock()):
                        # the actions are enabled once it is free.
                        if pte is not None and type(pte[0]) is folio and pte[0] is not ZERO_PAGE \
                                and id(pte[0]) not in busy and not pte[0].locked:
                            if "migrate" in ops:
                                out.append((self._op("migrate_start", comm, reg.name, page, 1), False))
                            if "reclaim" in ops:
                                # the walk in phases: kthread steps continue it
                                out.append((self._op("reclaim_start", comm, reg.name, page, 1), False))
                mapped = any(v is not None for v in vmas)
                if "munmap" in ops:
                    out.append((self._op("munmap", comm, reg.name, 0, reg.pages), still and not mapped))
                if "mmap" in ops:
                    out.append((self._op("mmap", comm, reg.name, 0, reg.pages, prot="rw"), still and mapped))
                for flags in moves:
                    if reg.pages > 1:
                        # MREMAP_MAYMOVE|MREMAP_FIXED of one page onto its
                        # neighbour and back: copy_vma(), move_page_tables(),
                        # the pgoff rule.
                        out.append((self._op("mremap", comm, reg.name, 0, 1, to_region=reg.name, to_page=1,
                                             flags=flags), False))
                        out.append((self._op("mremap", comm, reg.name, 1, 1, to_region=reg.name, to_page=0,
                                             flags=flags), False))
                    # each page to the same place of every other region: a VMA
                    # moved away and back keeps its vm_pgoff, so it can merge
                    # with what it left (the 2026 mremap use-after-free)
                    for other in others[reg.name]:
                        for page in range(reg.pages):
                            out.append((self._op("mremap", comm, reg.name, page, 1, to_region=other,
                                                 to_page=page, flags=flags), False))
                if "mprotect" in ops and reg.pages > 1:
                    # the first page and the last: a split at the head and at
                    # the tail, and the merges back
                    for page in (0, reg.pages - 1):
                        v = vmas[page]
                        rwx = v.vm_flags & (VM_READ | VM_WRITE | VM_EXEC) if v is not None else None
                        for prot in ("r", "rw"):
                            loop = still and (rwx is None or rwx == _PROT_FLAGS[prot])
                            out.append((self._op("mprotect", comm, reg.name, page, 1, prot=prot), loop))
                if "dontneed" in ops:
                    empty = all(pt.get(first + page) is None for page in range(reg.pages))
                    out.append((self._op("madvise", comm, reg.name, 0, reg.pages, advice="dontneed"), still and empty))
            if "fork" in ops and len(tasks) < b.processes:
                out.append((self._op("fork", comm, child=f"P{r.born}"), False))  # type: ignore[attr-defined]
            if "exit" in ops:
                out.append((self._op("exit", comm), False))
        if "ksm_scan" in ops:
            out.append((self._op("ksm_scan", "", value=1), False))
        if "ksmd" in ops and r.k.ksm is not None and r.k.ksm.mm_list:
            # ksmd one page at a time: process actions interleave between pages
            out.append((self._op("ksmd", "", value=1), False))
        out += kthreads
        if b.faults and r.faults < b.faults:  # type: ignore[attr-defined]
            # A failure injected into a self-loop would only use up the
            # budget: the same kernel state, fewer failures left.
            out += [(op, False) for op in self.fault_actions(r, [op for op, loop in out if not loop])]
        return out

    def fault_actions(self, r: ModelRunner, ops: list[Op]) -> list[Op]:
        """``ops`` with an allocation failure injected, in the ways ``bounds.fault_mode`` says.

        Each action is applied to ``r`` once and ``r`` put back
        (:class:`~rmapcheck.check.world.Snapshot`), to learn at which
        allocation sites it makes how many attempts (``Kernel.alloc_attempts``);
        a site it never reaches gets no failure. For a site with ``a``
        attempts, ``first`` gives ``fail=SITE``; ``nth`` gives ``fail=SITE@N``
        for N from 1 to ``a``; ``persistent`` adds ``fail=SITE@N*`` for the
        same N (``fail=SITE*`` for 1). A failure can make the kernel retry
        (``anon_vma_clone()``'s ``GFP_KERNEL`` after ``GFP_NOWAIT``), so the
        persistent failure of attempt ``a`` reaches further than the base
        action did.
        """
        mode = self.bounds.fault_mode
        snap = Snapshot(r)
        out: list[Op] = []
        for op in ops:
            res = self.apply(r, op, judge=False)
            snap.restore()
            if res.blocked or not res.attempts:
                continue
            for site in sorted(res.attempts):
                last = 1 if mode == "first" else res.attempts[site]
                for at in range(1, last + 1):
                    out.append(self._flagged(op, fail_flag(site, at)))
                    if mode == "persistent":
                        out.append(self._flagged(op, fail_flag(site, at, True)))
        return out

    def _flagged(self, op: Op, flag: str) -> Op:
        # ``op`` with one more flag, one Op object per distinct result (as _op).
        key = (op, flag)
        new = self._ops.get(key)
        if new is None:
            new = self._ops[key] = replace(op, flags=op.flags | {flag})
        return new

    def _op(self, kind: str, proc: str, *args: Any, **kw: Any) -> Op:
        # One Op object per distinct action (they are immutable): building a
        # frozen dataclass costs more than looking it up.
        key = (kind, proc, args, tuple(kw.items()))
        op = self._ops.get(key)
        if op is None:
            op = self._ops[key] = Op(kind, proc, *args, **kw)
        return op

    def next_state(self, r: ModelRunner, op: Op) -> Outcome:
        """Apply ``op`` to a copy of ``r`` and judge the result."""
        n = clone(r)
        return self.apply(n, op)

    def apply(self, n: ModelRunner, op: Op, judge: bool = True) -> Outcome:
        """Apply ``op`` to ``n`` in place and judge the result.

        With ``judge`` False only the findings raised inside the action are
        collected; :meth:`judge` checks the state's invariants afterwards (the
        explorer does so once per distinct state).
        """
        n.step_no += 1
        k = n.k
        k.events.clear()
        k.clock.step = n.step_no
        known = self._texts.get(id(op))
        if known is None or known[0] is not op:
            known = self._texts[id(op)] = (op, op.text())
        k.clock.what = known[1]
        if op.flags and any(f.startswith(FAIL_FLAG) for f in op.flags):
            n.faults += 1  # type: ignore[attr-defined]
        if op.kind == "fork":
            n.born += 1  # type: ignore[attr-defined]
        running = None  # the kernel thread this action steps
        if op.kind == "kthread":
            work = _inflight(n)
            running = work[op.value] if 0 <= op.value < len(work) else None
        elif _inflight(n):
            n.preempt = getattr(n, "preempt", 0) + 1  # type: ignore[attr-defined]
        findings: list[tuple[str, str, str, BaseException]] = []
        fatal = False
        result = ""
        try:
            result = n.perform(op)
        except Deadlock as e:
            if e.lock is not None and kthread_holds(k, e.lock, running):
                # A task sleeps on the lock until the kernel thread releases
                # it: the operation cannot start before then (run in
                # sequence, nothing releases it: the finding says so).
                k.warnings.clear()
                k.alloc_attempts.clear()
                return Outcome(n, [(property_of(e), e.function, e.message, e)], True, blocked=True)
            findings.append((property_of(e), e.function, e.message, e))
            fatal = True
        except RmapFinding as e:
            # Raised in the middle of a kernel function: the function stopped
            # half-way, so the state after it is no state the kernel reaches.
            findings.append((property_of(e), e.function, e.message, e))
            fatal = True
        except Exception as e:  # a bug of the model, reported as such
            findings.append(("model-error", type(e).__name__, f"{type(e).__name__}: {e}", e))
            fatal = True
        self._warnings(k, findings)
        out = Outcome(n, findings, fatal, result=result)
        if k.alloc_attempts:
            # statistics of this action, not part of the state (a copy: the
            # dict itself may belong to a Snapshot that puts it back)
            out.attempts = k.alloc_attempts.copy()
            k.alloc_attempts.clear()
        if judge and not fatal:
            self.judge(out)
        return out

    def judge(self, out: Outcome) -> None:
        """Check the invariants and data integrity of ``out.state`` into ``out``."""
        n = out.state
        try:
            check_invariants(n.k)
            data_integrity(n)
        except RmapFinding as e:
            out.findings.append((property_of(e), e.function, e.message, e))
            out.fatal = out.fatal or property_of(e) in FATAL
        except Exception as e:  # a bug of the model, reported as such
            out.findings.append(("model-error", type(e).__name__, f"{type(e).__name__}: {e}", e))
            out.fatal = True
        self._warnings(n.k, out.findings)

    @staticmethod
    def _warnings(k: Any, findings: list[tuple[str, str, str, BaseException]]) -> None:
        while k.warnings:
            w = k.warnings.pop(0)
            findings.append((property_of(w), getattr(w, "function", "?"), str(w), w))

    def sometimes(self, r: ModelRunner, only: dict[str, bool] | None = None) -> list[str]:
        """The sometimes-properties that hold in ``r`` (of those ``only`` maps to False, if given).

        An explorer passes its record of the properties reached so far, so
        that a property is no longer checked once it was reached.
        """
        return [p.name for p in SOMETIMES if p.check is not None and (only is None or not only.get(p.name, True))
                and p.check(r)]

    @staticmethod
    def reached(r: ModelRunner) -> list[str]:
        """The sometimes-properties that are events of the action that led to ``r`` (every transition)."""
        return [EVENTS[e] for e in r.k.events if e in EVENTS]

    # re-exported for the strategies
    dumps = staticmethod(dumps)
    fingerprint = staticmethod(fingerprint)

    def loads(self, data: bytes) -> ModelRunner:
        """A state from bytes."""
        return loads(data, self.ops_table, self.scenario)
