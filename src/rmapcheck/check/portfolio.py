"""The default exploration: a portfolio of focused bound sets, run one after another.

``rmapcheck check --design X`` without bounds runs every phase of
:data:`PHASES` that X's switches leave something to explore in (a phase
about KSM needs ``CONFIG_KSM``, one about migration ``CONFIG_MIGRATION``),
cheapest first, each exhaustively with its own strategy, within one time
budget; the findings are merged, one per property and function, each with
the shortest trace any phase found. One bound set large enough for every
path at once would be out of reach; each phase is small in every dimension
but the one its path needs (the forked start that KSM and migration need,
two regions for ``mremap``, depth for reuse chains from an empty start, an
allocation failure for error paths, two values and reads for copy-on-write).

A further strategy joins as a phase: register it in
:data:`rmapcheck.check.checker.STRATEGIES` and add a :class:`Phase` with its
name as ``strategy`` (a hunting search for deep bugs, with the phase's share
of the budget as its time limit, :meth:`Checker.timeout`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from rmapcheck.check.checker import Checker, Result, Stop, finding_dict
from rmapcheck.check.hunt import HUNT_DEPTH
from rmapcheck.check.model import PRESETS, Bounds, Finding, KernelModel, enabled_ops
from rmapcheck.check.properties import SEVERITY
from rmapcheck.designs import load_design

__all__ = ["DEFAULT_BUDGET", "HUNT_PHASE_SECONDS", "PHASES", "Phase", "PhaseResult", "PortfolioResult", "phases_for", "run_portfolio"]

#: seconds the whole portfolio may take
DEFAULT_BUDGET = 150.0


@dataclass(frozen=True)
class Phase:
    """One bound set of the portfolio.

    :param name: a short name, printed with its results.
    :param why: the path it explores, in one line.
    :param bounds: its bounds.
    :param focus: operations it is about: the phase is left out when the
        kernel is built without one of them (``ksm_scan`` without
        ``CONFIG_KSM``).
    :param strategy: a name of :data:`rmapcheck.check.checker.STRATEGIES`.
    :param seconds: the most this phase may take (``None``: its share of
        the budget left, as every exhaustive phase).
    """

    name: str
    why: str
    bounds: Bounds
    focus: tuple[str, ...] = ()
    strategy: str = "bfs"
    seconds: float | None = None


#: the most seconds the default's hunting phase takes (less if the budget left is less)
HUNT_PHASE_SECONDS = 40.0

#: the default portfolio, cheapest first (docs/checker.md, "The default")
PHASES: tuple[Phase, ...] = (
    Phase("reuse", "one process maps, faults and unmaps again and again: slab reuse of freed anon_vmas",
          Bounds(processes=1, regions=1, pages=1, contents=1, depth=6, ops=("write", "mmap", "munmap"))),
    Phase("migration", "a parent and a child share a page; it migrates in phases (RCU windows open) while "
          "they write and exit",
          Bounds(processes=2, regions=1, pages=1, contents=1, depth=9, forked=True,
                 ops=("write", "exit", "migrate")),
          focus=("migrate",)),
    Phase("cow", "from an empty start a parent and a child write two values, read, fork and exit while a page "
          "migrates in phases: copy-on-write, and the migration entries fork copies",
          Bounds(processes=2, regions=1, pages=1, contents=2, depth=8,
                 ops=("write", "read", "fork", "exit", "migrate")),
          focus=("migrate",)),
    Phase("ksm", "a parent and a child share a page; KSM merges it while they write, unmap, exit and fork",
          Bounds(processes=2, regions=1, pages=1, contents=1, depth=8, forked=True, mergeable=True,
                 ops=("write", "fork", "exit", "munmap", "ksm_scan")),
          focus=("ksm_scan",)),
    Phase("ksm-fork", "from an empty start a parent and a child write, fork and exit while ksmd merges; reclaim "
          "walks the merged page, mapped by processes forked since ksmd passed",
          Bounds(processes=2, regions=1, pages=1, contents=1, depth=8, mergeable=True,
                 ops=("write", "fork", "exit", "ksm_scan", "reclaim")),
          focus=("ksm_scan",)),
    Phase("mremap-fork", "two processes move pages between two regions and back, with and without "
          "MREMAP_DONTUNMAP",
          Bounds(processes=2, regions=2, pages=2, contents=1, depth=4,
                 ops=("write", "fork", "exit", "munmap", "mremap", "mremap_dontunmap"))),
    Phase("reclaim", "a parent and a child share a page, a second region is unfaulted; the reclaim walk "
          "runs in phases while they write, unmap and exit",
          Bounds(processes=2, regions=2, pages=1, contents=1, depth=7, forked=True,
                 ops=("write", "exit", "munmap", "reclaim"))),
    Phase("faults", "a parent and a child split, move, fork, unmap, exit and read; one allocation fails at "
          "any attempt, or at every attempt from one on",
          Bounds(processes=3, regions=1, pages=2, contents=1, depth=3, forked=True, faults=1,
                 ops=("write", "read", "fork", "exit", "munmap", "mprotect", "mremap"))),
    # RCU windows closed: the migration phase explores the pin's races; here
    # the error paths of what runs while a page is unmapped for migration.
    Phase("migration-faults", "a parent and a child share a page that migrates in phases while they move it "
          "to a second region, write and exit; one allocation fails at any attempt, or at every attempt from one on",
          Bounds(processes=2, regions=2, pages=1, contents=1, depth=4, forked=True, faults=1,
                 ops=("write", "exit", "migrate", "mremap"), rcu_windows=False),
          focus=("migrate",)),
    Phase("mremap", "one process moves pages between two regions and back, deeper",
          Bounds(processes=1, regions=2, pages=2, contents=1, depth=5,
                 ops=("write", "munmap", "mremap", "mremap_dontunmap"))),
    Phase("chains", "from an empty start two processes write, fork, split, unmap and exit, eight actions deep",
          Bounds(processes=2, regions=1, pages=2, contents=1, depth=8,
                 ops=("write", "fork", "exit", "munmap", "mprotect"))),
    Phase("standard", "the standard preset: every operation but mremap, two processes, a mergeable region "
          "of two pages",
          PRESETS["standard"]),
    # Last: what breadth-first search cannot reach (CVE-2022-42703 needs six
    # processes and nine actions from the empty start). Not exhaustive; a
    # clean hunt is no proof.
    Phase("hunt", "from an empty start up to six processes write, fork, split, unmap, move and exit, as deep "
          "as random searches guided by new shapes of the anon_vma forest get (not exhaustive)",
          Bounds(processes=6, regions=1, pages=2, contents=1, depth=HUNT_DEPTH,
                 ops=("write", "fork", "exit", "munmap", "mprotect", "mremap")),
          strategy="hunt", seconds=HUNT_PHASE_SECONDS),
)


def phases_for(config: dict[str, Any], phases: tuple[Phase, ...] = PHASES) -> list[Phase]:
    """The phases a kernel built with ``config`` (the design's switches, overrides applied) can run."""
    return [p for p in phases if set(p.focus) <= set(enabled_ops(p.focus, config))]


@dataclass
class PhaseResult:
    """One phase as run: its model (for traces) and its result."""

    phase: Phase
    model: KernelModel
    result: Result


@dataclass
class PortfolioResult:
    """The merged outcome of a portfolio."""

    design: str
    budget: float
    #: the design's switches set otherwise than its default
    config: dict = field(default_factory=dict)
    phases: list[PhaseResult] = field(default_factory=list)
    #: one per property and function: the phase that found its shortest trace
    findings: list[tuple[PhaseResult, Finding]] = field(default_factory=list)
    #: phases left out: (name, why)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    #: the signal that interrupted the portfolio (0: none)
    interrupted: int = 0
    #: required sometimes-properties never reached: none, since a portfolio takes no ``--require``
    never_reached: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        """``violation`` if any phase found one, else ``interrupted`` if the portfolio was, else ``clean``."""
        return "violation" if self.findings else "interrupted" if self.interrupted else "clean"

    @property
    def exhausted(self) -> bool:
        """Every phase ran and explored its bounds to the end."""
        return not self.skipped and all(p.result.exhausted for p in self.phases)

    def as_dict(self) -> dict:
        """The result as plain data (``rmapcheck check --json`` without bounds)."""
        return {
            "design": self.design,
            "strategy": "portfolio",
            "verdict": self.verdict,
            "findings": [{**finding_dict(f), "phase": pr.phase.name} for pr, f in self.findings],
            "budget": self.budget,
            "seconds": round(self.seconds, 3),
            "exhausted": self.exhausted,
            "interrupted": bool(self.interrupted),
            "config": {k: v for k, v in sorted(self.config.items())},
            "phases": [{"name": pr.phase.name, "why": pr.phase.why, **pr.result.as_dict()} for pr in self.phases],
            "skipped": [{"name": n, "why": w} for n, w in self.skipped],
        }


def run_portfolio(design: str, config: dict[str, Any] | None = None, budget: float = DEFAULT_BUDGET,
                  first: bool = False, phases: tuple[Phase, ...] = PHASES,
                  prepare: Callable[[Checker, Phase], Checker] | None = None,
                  stop: Stop | None = None) -> PortfolioResult:
    """Run the phases of ``phases`` that ``design`` (with ``config``) can run, in order, within ``budget``.

    Each phase gets the budget left divided by the phases left, so time a
    cheap phase does not use goes to the later ones; a phase cut short is
    not exhaustive and its result says so.

    :param config: the design's switches set otherwise than its default.
    :param first: stop at the first violation.
    :param prepare: called with each phase's checker and the phase before
        it starts (to attach a progress reporter).
    :param stop: once set (a signal), the phase running ends with its
        findings so far and the later phases are left out.
    """
    config = dict(config or {})
    cfg = {**load_design(design).config, **config}
    out = PortfolioResult(design, budget, config)
    todo = phases_for(cfg, phases)
    for p in phases:
        if p not in todo:
            out.skipped.append((p.name, f"the kernel is built without {', '.join(p.focus)}"))
    best: dict[tuple[str, str], tuple[PhaseResult, Finding]] = {}
    t0 = time.perf_counter()
    for i, p in enumerate(todo):
        left = budget - (time.perf_counter() - t0)
        if stop:
            out.interrupted = stop.signum
            out.skipped.extend((q.name, "the check was interrupted") for q in todo[i:])
            break
        if left <= 0 or (first and best):
            out.skipped.extend((q.name, "the budget was used up" if left <= 0 else "a violation was found")
                               for q in todo[i:])
            break
        m = KernelModel(design, p.bounds, config)
        share = left / (len(todo) - i)
        c = Checker(m).first_violation(first).timeout(share if p.seconds is None else min(left, p.seconds))
        if stop is not None:
            c.stop_on(stop)
        if prepare is not None:
            c = prepare(c, p)
        pr = PhaseResult(p, m, c.spawn(p.strategy).join())
        out.phases.append(pr)
        for f in pr.result.findings:
            key = (f.property, f.function)
            if key not in best or f.trace_length < best[key][1].trace_length:
                best[key] = (pr, f)
    out.seconds = time.perf_counter() - t0
    if stop:
        out.interrupted = stop.signum
    out.findings = sorted(best.values(), key=lambda pf: (
        SEVERITY.index(pf[1].property) if pf[1].property in SEVERITY else 99, pf[1].trace_length))
    return out
