"""Depth-first exploration: the same states as breadth-first, less memory, longer traces."""

from __future__ import annotations

import time

from rmapcheck.check.checker import Checker, Result, progress
from rmapcheck.check.explore import Copies, MemoryWatch, finish, new_result, record
from rmapcheck.check.model import Finding
from rmapcheck.scenario.ops import Op

__all__ = ["run_dfs"]


def run_dfs(c: Checker) -> Result:
    """Explore ``c.model`` depth-first within its bounds (visited set by fingerprint)."""
    m = c.model
    res = new_result(c, "dfs")
    t0 = time.perf_counter()
    init = m.init_state()
    setup = list(m.setup)
    # fingerprint -> the shallowest depth it was reached at: a state reached
    # again by a shorter path is expanded again, so the depth bound cuts no
    # state that breadth-first search would reach.
    visited = {m.fingerprint(init, c.use_symmetry): 0}
    stack: list[tuple[bytes, list[Op]]] = [(m.dumps(init), [])]
    seen: dict[tuple[str, str], Finding] = {}
    total = len(stack[0][0])
    res.distinct = 1
    cut = False
    next_report = t0 + 1.0
    memory = MemoryWatch(c)
    while stack and not cut:
        data, path = stack.pop()
        if len(path) >= m.bounds.depth:
            continue
        copies = Copies(m, data)
        acts = m.actions(copies.state)
        for i, op in enumerate(reversed(acts)):
            res.states += 1
            n = copies.next(i == len(acts) - 1)
            out = m.apply(n, op, judge=False)
            if out.blocked:
                res.blocked += 1
                continue
            if n.k.events and not out.fatal:  # an event counts on every transition
                for p in m.reached(n):
                    res.sometimes[p] = True
            nfp = None
            depth = len(path) + 1
            if not out.fatal:
                nfp = m.fingerprint(n, c.use_symmetry)
                seen_at = visited.get(nfp)
                if seen_at is not None and seen_at <= depth:
                    nfp = None
                elif seen_at is None:
                    m.judge(out)
            if out.findings and record(res, seen, out, setup + path + [op], len(setup)):
                copies.keep()
                if c.stop_on_first:
                    cut = True
                    break
            if out.fatal or nfp is None:
                continue
            if nfp not in visited:
                res.distinct += 1
            visited[nfp] = depth
            if depth < m.bounds.depth:
                # a state at the depth bound is never expanded
                nd = m.dumps(n)
                total += len(nd)
                stack.append((nd, path + [op]))
            res.depth = max(res.depth, len(path) + 1)
            for p in m.sometimes(n):
                res.sometimes[p] = True
        now = time.perf_counter()
        if c.stop or (c.max_seconds is not None and now - t0 > c.max_seconds) or memory.reached():
            cut = True
        if c.reporter is not None and now >= next_report:
            c.reporter(progress(res, now - t0))
            next_report = now + 1.0
    res.seconds = time.perf_counter() - t0
    res.exhausted = not cut
    res.memory_stopped = memory.resident
    res.bytes_per_state = total / max(1, res.distinct)
    if c.reporter is not None:
        c.reporter(progress(res, res.seconds, done=True))
    return finish(c, res)
