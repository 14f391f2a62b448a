"""The checker's builder, result and progress reporting.

Usage, after Stateright's ``CheckerBuilder``::

    result = Checker(KernelModel("linux-2.6.36-pre", bounds)).symmetry().spawn_bfs().join()

Each strategy (:mod:`~rmapcheck.check.bfs`, :mod:`~rmapcheck.check.dfs`,
:mod:`~rmapcheck.check.simulation`, :mod:`~rmapcheck.check.hunt`) fills one
:class:`Result`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from rmapcheck.check.model import Finding, KernelModel

__all__ = ["STRATEGIES", "Checker", "Progress", "Reporter", "Result", "Stop", "all_cores", "finding_dict",
           "progress"]


@dataclass
class Progress:
    """A progress report: states generated, distinct states, depth reached, rate."""

    states: int
    distinct: int
    depth: int
    seconds: float
    done: bool = False
    #: distinct violations found so far
    findings: int = 0

    @property
    def rate(self) -> float:
        """Distinct states per second so far."""
        return self.distinct / self.seconds if self.seconds else 0.0


class Reporter(Protocol):
    """Receives progress while a check runs (the CLI renders it)."""

    def __call__(self, p: Progress) -> None: ...


@dataclass
class Result:
    """The outcome of one check."""

    design: str
    strategy: str
    bounds: dict
    findings: list[Finding] = field(default_factory=list)
    states: int = 0
    distinct: int = 0
    depth: int = 0
    seconds: float = 0.0
    exhausted: bool = False
    sometimes: dict[str, bool] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    bytes_per_state: float = 0.0
    #: the design's switches set otherwise than its default
    config: dict = field(default_factory=dict)
    #: actions not started because they would sleep on a kernel thread's lock
    blocked: int = 0
    #: the signal that stopped the check early (0 if none): the result is partial
    interrupted: int = 0
    #: the sometimes-properties required (``Checker.require``)
    required: list[str] = field(default_factory=list)
    #: required sometimes-properties an exhaustive exploration never reached:
    #: each is a finding of its own (a merge that must happen did not)
    never_reached: list[str] = field(default_factory=list)
    #: the resident memory (bytes) at which the memory limit stopped the check (0 if it did not)
    memory_stopped: int = 0

    @property
    def verdict(self) -> str:
        """``violation`` if any property failed (or a required one was never reached), else
        ``interrupted`` if the check was, else ``clean``."""
        return "violation" if self.findings or self.never_reached else \
            "interrupted" if self.interrupted else "clean"

    def as_dict(self) -> dict:
        """The result as plain data (``rmapcheck check --json``)."""
        return {
            "design": self.design,
            "strategy": self.strategy,
            "verdict": self.verdict,
            "findings": [finding_dict(f) for f in self.findings],
            "distinct_states": self.distinct,
            "states": self.states,
            "blocked": self.blocked,
            "depth": self.depth,
            "exhausted": self.exhausted,
            "seconds": round(self.seconds, 3),
            "bounds": self.bounds,
            "config": {k: v for k, v in sorted(self.config.items())},
            "sometimes": self.sometimes,
            "required": self.required,
            "never_reached": self.never_reached,
            "warnings": self.warnings,
            "interrupted": bool(self.interrupted),
            "memory_limit_reached": bool(self.memory_stopped),
        }


class Stop:
    """A request to stop a running check, set by a signal handler.

    The strategies look at it once per state they expand and, when it is set,
    end as after a time limit: the result holds the findings so far, is not
    exhaustive and records the signal in :attr:`Result.interrupted`.
    """

    __slots__ = ("signum",)

    def __init__(self) -> None:
        #: the signal that asked to stop (0: none yet)
        self.signum = 0

    def __bool__(self) -> bool:
        return self.signum != 0


def finding_dict(f: Finding) -> dict:
    """A finding as plain data: property, function, call chain, who found it, trace length."""
    return {"property": f.property, "function": f.function, "message": f.message,
            "chain": list(getattr(f.error, "chain", ())), "found_by": getattr(f.error, "detector", ""),
            "trace_length": f.trace_length}


class Checker:
    """Builder: choose reductions and limits, then a strategy."""

    def __init__(self, model: KernelModel) -> None:
        self.model = model
        self.use_symmetry = True
        self.reporter: Reporter | None = None
        self.stop_on_first = False
        self.max_seconds: float | None = None
        self.seed = 0
        self.runs = 100
        self.stop = Stop()
        self.hunt_budget: float | None = None
        self.required: tuple[str, ...] = ()
        #: resident bytes at which breadth- and depth-first search stop (None: no limit)
        self.max_memory: int | None = None
        #: worker processes of breadth-first search and of the hunt (None:
        #: one for breadth-first search, every core for the hunt)
        self.workers: int | None = None
        #: the Ray cluster breadth-first search runs on (an address, or ``auto``)
        self.ray: str | None = None

    def symmetry(self, on: bool = True) -> Checker:
        """Use symmetry reduction (canonical fingerprints; on by default)."""
        self.use_symmetry = on
        return self

    def report(self, reporter: Reporter) -> Checker:
        """Report progress to ``reporter`` about once a second."""
        self.reporter = reporter
        return self

    def first_violation(self, on: bool = True) -> Checker:
        """Stop at the first violation instead of collecting every distinct one."""
        self.stop_on_first = on
        return self

    def timeout(self, seconds: float | None) -> Checker:
        """Stop after ``seconds`` (the result then is not exhaustive)."""
        self.max_seconds = seconds
        return self

    def require(self, *names: str) -> Checker:
        """Require the sometimes-properties ``names``: an exhaustive run that never reaches one reports it.

        :raises KeyError: a name that is not a sometimes-property.
        """
        from rmapcheck.check.properties import sometimes_property
        for name in names:
            sometimes_property(name)
        self.required = tuple(names)
        return self

    def memory_limit(self, size: int | None) -> Checker:
        """Stop, with a partial result, once the process's resident memory reaches ``size`` bytes."""
        self.max_memory = size
        return self

    def stop_on(self, stop: Stop) -> Checker:
        """End the check early, with the findings so far, once ``stop`` is set."""
        self.stop = stop
        return self

    def parallel(self, workers: int | None = None, ray: str | None = None) -> Checker:
        """Run on ``workers`` processes, or on the Ray cluster at ``ray`` (an address or ``auto``).

        Breadth-first search then partitions its frontier by fingerprint
        (:mod:`~rmapcheck.check.parallel`, :mod:`~rmapcheck.check.ray_backend`),
        with the same result as one process; the hunt runs ``workers``
        searches with independent seeds.
        """
        self.workers, self.ray = workers, ray
        return self

    def spawn_bfs(self) -> Runner:
        """Breadth-first: shortest counterexamples (on the workers or the cluster of :meth:`parallel`)."""
        if self.ray is not None:
            from rmapcheck.check.ray_backend import run_ray_bfs
            return Runner(lambda: run_ray_bfs(self, self.ray, self.workers))  # type: ignore[arg-type]
        if self.workers is not None and self.workers > 1:
            from rmapcheck.check.parallel import run_parallel_bfs
            return Runner(lambda: run_parallel_bfs(self, self.workers))  # type: ignore[arg-type]
        from rmapcheck.check.bfs import run_bfs
        return Runner(lambda: run_bfs(self))

    def spawn_dfs(self) -> Runner:
        """Depth-first: less memory, longer traces."""
        from rmapcheck.check.dfs import run_dfs
        return Runner(lambda: run_dfs(self))

    def spawn_simulation(self, seed: int = 0, runs: int = 100) -> Runner:
        """Seeded random walks to the depth bound, for deeper runs."""
        from rmapcheck.check.simulation import run_simulation
        self.seed, self.runs = seed, runs
        return Runner(lambda: run_simulation(self))

    def spawn(self, strategy: str) -> Runner:
        """The strategy named ``strategy`` (a key of :data:`STRATEGIES`)."""
        return STRATEGIES[strategy](self)

    def spawn_hunt(self, budget: float | None = None, workers: int | None = None, seed: int = 0) -> Runner:
        """Bug hunting: novelty-guided random searches on ``workers`` cores for ``budget`` seconds.

        Not exhaustive; for depths breadth-first search cannot reach
        (:mod:`~rmapcheck.check.hunt`). ``workers`` defaults to every core,
        ``budget`` to :data:`~rmapcheck.check.hunt.HUNT_BUDGET`.
        """
        from rmapcheck.check.hunt import run_hunt
        self.seed, self.workers, self.hunt_budget = seed, workers, budget
        return Runner(lambda: run_hunt(self))


class Runner:
    """A started check; :meth:`join` runs it to the end."""

    def __init__(self, fn: Callable[[], Result]) -> None:
        self.fn = fn

    def join(self) -> Result:
        """Run the check and return its result."""
        return self.fn()


#: the strategies by name (``rmapcheck check --strategy``, a portfolio phase's
#: ``strategy``); ``random`` walks ``Checker.runs`` times from ``Checker.seed``
STRATEGIES: dict[str, Callable[[Checker], Runner]] = {
    "bfs": Checker.spawn_bfs,
    "dfs": Checker.spawn_dfs,
    "random": lambda c: c.spawn_simulation(c.seed, c.runs),
    "hunt": lambda c: c.spawn_hunt(c.hunt_budget, c.workers, c.seed),
}


def all_cores() -> int:
    """The cores this process may run on: the default number of workers (``--workers``)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no sched_getaffinity on this system
        return os.cpu_count() or 1


def _now() -> float:
    return time.perf_counter()


def progress(res: Result, seconds: float, done: bool = False) -> Progress:
    """A progress report of ``res`` after ``seconds``."""
    return Progress(res.states, res.distinct, res.depth, seconds, done, len(res.findings))
