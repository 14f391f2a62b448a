"""Breadth-first exploration: every state at depth d before any at depth d+1.

The first trace that reaches a violation is therefore a shortest one. States
wait in the queue as bytes; the visited set maps a fingerprint to its parent
fingerprint and the action taken, from which a trace is rebuilt.
"""

from __future__ import annotations

import sys
import time
from collections import deque

from rmapcheck.check.checker import Checker, Result, progress
from rmapcheck.check.explore import Copies, finish, new_result, record
from rmapcheck.check.model import Finding
from rmapcheck.scenario.ops import Op

__all__ = ["run_bfs"]


def _trace(parents: dict[bytes, tuple[bytes | None, Op | None]], fp: bytes) -> list[Op]:
    ops: list[Op] = []
    while True:
        parent, op = parents[fp]
        if parent is None:
            break
        ops.append(op)  # type: ignore[arg-type]
        fp = parent
    ops.reverse()
    return ops


def _visited_bytes(parents: dict[bytes, tuple[bytes | None, Op | None]]) -> int:
    # The visited set: the dict itself, and per entry its fingerprint, the
    # (parent, action) tuple and the action (one per entry: each transition
    # adds at most one entry).
    size = sys.getsizeof(parents)
    for fp, entry in parents.items():
        size += sys.getsizeof(fp) + sys.getsizeof(entry) + (sys.getsizeof(entry[1]) if entry[1] is not None else 0)
    return size


def run_bfs(c: Checker) -> Result:
    """Explore ``c.model`` breadth-first within its bounds."""
    m = c.model
    res = new_result(c, "bfs")
    t0 = time.perf_counter()
    init = m.init_state()
    fp0 = m.fingerprint(init, c.use_symmetry)
    parents: dict[bytes, tuple[bytes | None, Op | None]] = {fp0: (None, None)}
    queue: deque[tuple[bytes, bytes, int]] = deque([(m.dumps(init), fp0, 0)])
    seen: dict[tuple[str, str], Finding] = {}
    setup = list(m.setup)
    total_bytes = len(queue[0][0])
    res.distinct = 1
    next_report = t0 + 1.0
    cut = False
    for p in m.sometimes(init):
        res.sometimes[p] = True
    while queue:
        data, fp, depth = queue.popleft()
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
            nfp = None
            if not out.fatal:
                nfp = m.fingerprint(n, c.use_symmetry)
                if nfp in parents:
                    # An isomorphic state was judged already.
                    nfp = None
                else:
                    m.judge(out)
            if out.findings:
                trace = setup + _trace(parents, fp) + [op]
                if record(res, seen, out, trace, len(setup)):
                    cut = c.stop_on_first
                    copies.keep()
            if cut:
                break
            if out.fatal or nfp is None:
                continue
            parents[nfp] = (fp, op)
            if depth + 1 < m.bounds.depth:
                # A state at the depth bound is never expanded: only its
                # fingerprint is kept.
                nd = m.dumps(n)
                total_bytes += len(nd)
                queue.append((nd, nfp, depth + 1))
            res.distinct += 1
            res.depth = max(res.depth, depth + 1)
            for p in m.sometimes(n):
                res.sometimes[p] = True
        now = time.perf_counter()
        if cut or c.stop or (c.max_seconds is not None and now - t0 > c.max_seconds):
            cut = True
            break
        if c.reporter is not None and now >= next_report:
            c.reporter(progress(res, now - t0))
            next_report = now + 1.0
    res.seconds = time.perf_counter() - t0
    res.exhausted = not cut
    res.bytes_per_state = (total_bytes + _visited_bytes(parents)) / max(1, res.distinct)
    if c.reporter is not None:
        c.reporter(progress(res, res.seconds, done=True))
    return finish(c, res)
