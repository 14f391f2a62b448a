"""The differential test: one scenario on the model and on the live kernel.

:func:`diff_scenario` runs both sides step by step and returns the first step
whose observations differ. :func:`shrink` reduces a differing scenario to a
locally minimal one (no single operation can be removed and still differ),
dropping operations of processes that no longer exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from rmapcheck.model.findings import RmapFinding
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.ops import Observation, Op, Scenario

__all__ = ["DiffResult", "diff_scenario", "run_model", "shrink", "valid_ops"]


@dataclass
class DiffResult:
    """The outcome of running one scenario on both sides.

    ``step`` is the 1-based index of the first differing step (0 if none);
    ``finding`` a model finding that stopped the run (a model bug on 6.18).
    """

    scenario: Scenario
    model: list[Observation] = field(default_factory=list)
    live: list[Observation] = field(default_factory=list)
    step: int = 0
    finding: str = ""
    model_seconds: float = 0.0
    live_seconds: float = 0.0

    @property
    def agree(self) -> bool:
        """True when both sides observed the same at every step."""
        return not self.step and not self.finding


def run_model(scenario: Scenario, design: str = "linux-6.18", check: bool = True) -> list[Observation]:
    """The model's observation after each step of ``scenario``."""
    runner = ModelRunner(scenario, design, check=check)
    return [runner.step(op) for op in scenario.ops]


def diff_scenario(scenario: Scenario, design: str = "linux-6.18") -> DiffResult:
    """Run ``scenario`` on the model and on the live kernel; stop at the first difference."""
    from rmapcheck.live.runner import LiveRunner

    res = DiffResult(scenario)
    runner = ModelRunner(scenario, design)
    with LiveRunner(scenario) as live:
        for i, op in enumerate(scenario.ops, 1):
            t0 = time.perf_counter()
            try:
                m = runner.step(op)
            except RmapFinding as e:
                res.finding = f"step {i} ({op.text()}): {type(e).__name__}: {e}"
                res.step = i
                break
            res.model_seconds += time.perf_counter() - t0
            lv = live.step(op)
            res.model.append(m)
            res.live.append(lv)
            if not m.matches(lv):
                res.step = i
                break
        res.live_seconds = live.op_seconds
    return res


def valid_ops(ops: list[Op]) -> list[Op]:
    """``ops`` without the operations of processes that do not exist at their step."""
    live = {"P0"}
    out = []
    for op in ops:
        if op.proc not in live:
            continue
        if op.kind == "fork":
            if op.child in live:
                continue
            live.add(op.child)
        elif op.kind == "exit":
            live.discard(op.proc)
        out.append(op)
    return out


def shrink(scenario: Scenario, differs: Callable[[Scenario], bool]) -> Scenario:
    """A locally minimal sub-scenario of ``scenario`` for which ``differs`` holds."""
    ops = list(scenario.ops)

    def make(o: list[Op]) -> Scenario:
        return Scenario(scenario.name + "-min", scenario.regions, o, source=scenario.source,
                        description=scenario.description, arena_pages=scenario.arena_pages,
                        settings=scenario.settings)

    changed = True
    while changed:
        changed = False
        # Try removing chunks, largest first, then single operations.
        size = max(1, len(ops) // 2)
        while size >= 1:
            i = 0
            while i < len(ops):
                cand = valid_ops(ops[:i] + ops[i + size:])
                if len(cand) < len(ops) and differs(make(cand)):
                    ops = cand
                    changed = True
                else:
                    i += size
            size //= 2
    return make(ops)
