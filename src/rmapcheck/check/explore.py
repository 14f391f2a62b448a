"""What every strategy shares: recording findings and vacuity, warnings about bounds."""

from __future__ import annotations

import signal
from typing import Any

from rmapcheck.check.checker import Checker, Result
from rmapcheck.check.compact import resident_bytes
from rmapcheck.check.model import Finding, Outcome
from rmapcheck.check.properties import SEVERITY, SOMETIMES, sometimes_property
from rmapcheck.check.world import Snapshot
from rmapcheck.designs import config_text
from rmapcheck.scenario.ops import Op

__all__ = ["Copies", "MemoryWatch", "finish", "new_result", "record"]


class Copies:
    """The state that each action of one state is applied to, in turn.

    One copy is unpickled and, before each further action, put back as it
    was (:class:`~rmapcheck.check.world.Snapshot`): cheaper than a fresh
    copy per action. After :meth:`keep` the next action gets a fresh copy
    instead, and the old one stays as the action left it (a new finding's
    report reads the objects it names).
    """

    __slots__ = ("_data", "_dirty", "_model", "_snap", "state")

    def __init__(self, model: Any, data: bytes) -> None:
        self._model = model
        self._data = data
        #: the state as unpickled: what the actions are computed on
        self.state = model.loads(data)
        self._snap: Snapshot | None = None
        self._dirty = False

    def next(self, last: bool = False) -> Any:
        """The state for the next action (``last``: no action follows it)."""
        if self._dirty:
            if self._snap is None:
                self.state = self._model.loads(self._data)
            else:
                self._snap.restore()
                return self.state
        self._dirty = True
        self._snap = None if last else Snapshot(self.state)
        return self.state

    def keep(self) -> None:
        """Leave the state as the last action left it; the next action gets a fresh copy."""
        self._snap = None


class MemoryWatch:
    """Whether the process's resident memory reached ``Checker.max_memory``, read every few states.

    :meth:`reached` is asked once per expanded state and reads the resident
    size (:func:`~rmapcheck.check.compact.resident_bytes`, a few
    microseconds) every :attr:`EVERY` calls; what it read when it reached
    the limit is :attr:`resident`.
    """

    __slots__ = ("_calls", "limit", "resident")

    #: expanded states between two readings
    EVERY = 64

    def __init__(self, c: Checker) -> None:
        self.limit = c.max_memory
        self._calls = 0
        self.resident = 0

    def reached(self) -> bool:
        """True once the limit is reached (then always)."""
        if self.limit is None:
            return False
        if self.resident:
            return True
        self._calls += 1
        if self._calls % self.EVERY:
            return False
        rss = resident_bytes()
        if rss >= self.limit:
            self.resident = rss
            return True
        return False


def new_result(c: Checker, strategy: str) -> Result:
    """An empty result for checker ``c``."""
    res = Result(c.model.design, strategy, c.model.bounds.as_dict(), config=dict(c.model.config))
    res.sometimes = {p.name: False for p in SOMETIMES}
    return res


def record(res: Result, seen: dict[tuple[str, str], Finding], out: Outcome, trace: list[Op],
           setup: int) -> bool:
    """Record the findings of ``out`` reached by ``trace``; True if any is new."""
    new = False
    for prop, fn, msg, err in out.findings:
        key = (prop, fn)
        if key not in seen:
            f = Finding(prop, fn, msg, trace, setup, err)
            seen[key] = f
            res.findings.append(f)
            new = True
    return new


def finish(c: Checker, res: Result, exhaustive: bool = True) -> Result:
    """Add the warnings a person must read before trusting a clean verdict.

    :param exhaustive: the strategy explores every state when not cut short
        (not so the hunt, which says so itself and uses no fingerprints).
    """
    b = c.model.bounds
    if c.stop and not res.exhausted:
        res.interrupted = c.stop.signum
        res.exhausted = False
        res.warnings.append(f"interrupted by {_signame(c.stop.signum)}: the result is partial, the findings are "
                            "those found so far")
    elif res.memory_stopped:
        res.warnings.append(f"the memory limit was reached ({_mib(res.memory_stopped)} resident, limit "
                            f"{_mib(c.max_memory or 0)}): the result is partial, not every state within the "
                            "bounds was checked")
    elif not res.exhausted and exhaustive:
        res.warnings.append("the exploration was cut short (time limit or first violation): "
                            "not every state within the bounds was checked")
    if res.depth >= b.depth:
        res.warnings.append(f"the depth bound {b.depth} was reached: longer traces were not explored")
    if c.use_symmetry and exhaustive:
        res.warnings.append("symmetry reduction is on: states equal up to renaming of processes and "
                            "objects are explored once (sound; a model whose behaviour depends on names "
                            "would be under-explored)")
    ops = c.model.ops_enabled
    for o in b.ops:
        if o not in ops:
            res.warnings.append(f"{o} was not explored: the kernel is built without it "
                                f"({config_text(c.model.config)})")
    if not b.rcu_windows and ("migrate" in ops or "reclaim" in ops):
        res.warnings.append("the RCU windows of kernel threads are closed (rcu_windows off): migration pins and "
                            "reclaim locks the anon_vma in the step that reads folio->mapping, so races such "
                            "as docs/history.md B4 and B6 are not explored")
    if "ksm_scan" in ops and "ksmd" not in ops:
        res.warnings.append("ksmd runs a whole scan pass per action: races inside a pass are not explored")
    if "ksmd" in ops:
        res.warnings.append("ksmd scans one page per action: races inside the scan of one page are not explored")
    if res.blocked:
        res.warnings.append(f"{res.blocked} actions would have slept on a lock held by a preempted kernel "
                            "thread and were not started then: an operation that sleeps half-way through is "
                            "not interleaved, it runs whole once the thread has released the lock")
    res.required = list(c.required)
    for name, hit in res.sometimes.items():
        if hit or name in c.required:
            continue
        if sometimes_property(name).vacuity and _relevant(name, ops):
            res.warnings.append(f"sometimes-property {name!r} was never reached: the bounds may be too "
                                "small for what it stands for")
    for name in c.required:
        if res.sometimes.get(name):
            continue
        if res.exhausted and not res.findings:
            res.never_reached.append(name)
        else:
            why = "a finding cut the exploration short" if res.findings and res.exhausted else \
                "the exploration was not exhaustive"
            res.warnings.append(f"required property {name!r} was not reached, but {why}: no verdict on it")
    res.findings.sort(key=lambda f: (SEVERITY.index(f.property) if f.property in SEVERITY else 99,
                                     f.trace_length))
    return res


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB"


def _signame(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _relevant(name: str, ops: tuple[str, ...]) -> bool:
    if name == "ksm-page":
        return "ksm_scan" in ops or "ksmd" in ops
    if name == "anon-vma-held-without-vma":
        return "ksm_scan" in ops or "ksmd" in ops or "migrate" in ops
    if name in ("child-anon-vma", "shared-page"):
        return "fork" in ops
    return True
