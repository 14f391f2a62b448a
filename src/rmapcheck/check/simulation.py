"""Seeded random simulation: random walks to the depth bound, for depths exhaustion cannot reach.

Never exhaustive: a clean result means only that the walks found nothing.
"""

from __future__ import annotations

import random
import time

from rmapcheck.check.checker import Checker, Progress, Result, progress
from rmapcheck.check.explore import finish, new_result, record
from rmapcheck.check.model import Finding
from rmapcheck.model.kthreads import kthreads
from rmapcheck.scenario.ops import Op

__all__ = ["run_simulation"]


def run_simulation(c: Checker) -> Result:
    """``c.runs`` random walks of at most ``depth`` actions from seed ``c.seed``."""
    m = c.model
    res = new_result(c, "simulation")
    rng = random.Random(c.seed)
    t0 = time.perf_counter()
    init = m.dumps(m.init_state())
    setup = list(m.setup)
    seen: dict[tuple[str, str], Finding] = {}
    fps: set[bytes] = set()
    next_report = t0 + 1.0
    stop = False
    for _ in range(c.runs):
        r = m.loads(init)
        path: list[Op] = []
        for _d in range(m.bounds.depth):
            acts = m.actions(r)
            if not acts:
                break
            op = rng.choice(acts)
            snap = m.dumps(r) if kthreads(r.k) else None
            out = m.apply(r, op)
            if out.blocked:
                # The action waits for a kernel thread's lock: not enabled now.
                res.blocked += 1
                r = m.loads(snap)  # type: ignore[arg-type]
                continue
            path.append(op)
            res.states += 1
            if r.k.events and not out.fatal:  # an event counts on every transition
                for p in m.reached(r):
                    res.sometimes[p] = True
            if out.findings and record(res, seen, out, setup + list(path), len(setup)) and c.stop_on_first:
                stop = True
            if out.fatal or stop:
                break
            fp = m.fingerprint(r)
            if fp not in fps:
                fps.add(fp)
                for p in m.sometimes(r):
                    res.sometimes[p] = True
            res.depth = max(res.depth, len(path))
        now = time.perf_counter()
        if c.reporter is not None and now >= next_report:
            c.reporter(Progress(res.states, len(fps), res.depth, now - t0, findings=len(res.findings)))
            next_report = now + 1.0
        if stop or c.stop or (c.max_seconds is not None and now - t0 > c.max_seconds):
            break
    res.distinct = len(fps)
    res.seconds = time.perf_counter() - t0
    res.exhausted = False
    if c.reporter is not None:
        c.reporter(progress(res, res.seconds, done=True))
    res = finish(c, res)
    res.warnings.insert(0, f"random simulation ({c.runs} walks, seed {c.seed}) is not exhaustive")
    return res
