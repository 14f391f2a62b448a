"""Breadth-first exploration: every state at depth d before any at depth d+1.

The first trace that reaches a violation is therefore a shortest one. States
wait in the queue as pickles compressed in chunks; the visited set holds fingerprints
as integers, and each stored state's parent and action are kept in a
:class:`~rmapcheck.check.compact.Lineage`, from which a trace is rebuilt
(``docs/scaling.md``, "Memory per state").
"""

from __future__ import annotations

import time

from rmapcheck.check.checker import Checker, Result, progress
from rmapcheck.check.compact import Frontier, Lineage, fingerprint_key, set_bytes
from rmapcheck.check.explore import Copies, MemoryWatch, finish, new_result, record
from rmapcheck.check.model import Finding

__all__ = ["run_bfs"]


def run_bfs(c: Checker) -> Result:
    """Explore ``c.model`` breadth-first within its bounds."""
    m = c.model
    res = new_result(c, "bfs")
    t0 = time.perf_counter()
    init = m.init_state()
    visited = {fingerprint_key(m.fingerprint(init, c.use_symmetry))}
    lineage = Lineage()
    # the states to expand, with their indices in lineage and their depths
    queue = Frontier()
    queue.append(m.dumps(init), 0, 0)
    seen: dict[tuple[str, str], Finding] = {}
    setup = list(m.setup)
    res.distinct = 1
    next_report = t0 + 1.0
    memory = MemoryWatch(c)
    cut = False
    for p in m.sometimes(init):
        res.sometimes[p] = True
    unreached = True
    while queue:
        data, index, depth = queue.popleft()
        if depth >= m.bounds.depth:
            res.depth = max(res.depth, depth)
            continue
        copies = Copies(m, data)
        acts = m.actions(copies.state)
        last = len(acts) - 1
        for i, op in enumerate(acts):
            res.states += 1
            n = copies.next(i == last)
            out = m.apply(n, op, judge=False)
            if out.blocked:
                res.blocked += 1
                continue
            if n.k.events and not out.fatal:  # an event counts on every transition
                for p in m.reached(n):
                    res.sometimes[p] = True
            key = None
            if not out.fatal:
                key = fingerprint_key(m.fingerprint(n, c.use_symmetry))
                if key in visited:
                    # An isomorphic state was judged already.
                    key = None
                else:
                    m.judge(out)
            if out.findings:
                trace = setup + lineage.trace(index) + [op]
                if record(res, seen, out, trace, len(setup)):
                    cut = c.stop_on_first
                    copies.keep()
            if cut:
                break
            if out.fatal or key is None:
                continue
            visited.add(key)
            if depth + 1 < m.bounds.depth:
                # A state at the depth bound is never expanded: only its
                # fingerprint is kept.
                queue.append(m.dumps(n), lineage.add(index, op), depth + 1)
            res.distinct += 1
            res.depth = max(res.depth, depth + 1)
            if unreached:
                for p in m.sometimes(n, res.sometimes):
                    res.sometimes[p] = True
                unreached = not all(res.sometimes.values())
        now = time.perf_counter()
        if cut or c.stop or (c.max_seconds is not None and now - t0 > c.max_seconds) or memory.reached():
            cut = True
            break
        if c.reporter is not None and now >= next_report:
            c.reporter(progress(res, now - t0))
            next_report = now + 1.0
    res.seconds = time.perf_counter() - t0
    res.exhausted = not cut
    res.memory_stopped = memory.resident
    res.bytes_per_state = (queue.packed + set_bytes(visited) + lineage.nbytes()) / max(1, res.distinct)
    if c.reporter is not None:
        c.reporter(progress(res, res.seconds, done=True))
    return finish(c, res)
