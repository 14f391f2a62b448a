"""Breadth-first search on every core: the frontier partitioned by fingerprint.

The search runs level by level. Each of N workers owns the fingerprints
whose number (the fingerprint's first eight bytes, little-endian) is ``w``
modulo N, keeps the part of the visited set with those fingerprints, and
expands the states of the current level it owns. A successor owned by
another worker is sent to it between levels: each worker sends each other
one message per level (a pickled list of ``(fingerprint, path, state)``),
the owner keeps the successors that are new to it, and the next level
begins. The coordinator only counts, decides whether to go on and, at the
end, rebuilds the traces of the findings: it never handles a state.

A state carries its *path*, the numbers of the actions that lead to it
from the start state (two bytes each, big-endian, so comparing paths as
bytes compares them action by action). Each worker expands its states in
the order of their paths and an owner keeps, of a new state reached by
several paths of one level, the least; by induction every state keeps the
least of its shortest paths, which is the path one-worker breadth-first
search (:mod:`~rmapcheck.check.bfs`) keeps, since its queue is in that
order too. For each violated property the trace kept is the least path of
the shallowest level it is violated at, so N workers report the same
distinct states, findings and traces as one.

A successor is judged (invariants, data integrity, sometimes-properties)
where it is made, right after the action, as one worker judges it: by its
owner if the owner does not know it yet, by another worker if that worker
has not sent it before (it cannot know whether the owner has it, so a state
reached on two workers may be judged twice; its findings are the same).
Worker processes on one machine share a table of the fingerprints judged
clean (``_canon.judge_clean``, in memory mapped before the workers are
forked): a state some worker judged clean is not judged again, which
spares most of those second judgements (at the depth bound, where most
states are, two workers reach about a third of their states both). A
state with a finding is not in the table, so each worker that reaches it
judges it and records the finding on its own path, as before.
A finding is reported once its level is complete; with ``--first`` each
worker stops at its first finding, or once another worker has posted a
finding on a lesser path, and the least one is kept.

The transports: worker processes on this machine
(:func:`run_parallel_bfs`, ``rmapcheck check --workers N``) and actors on a
Ray cluster (:mod:`~rmapcheck.check.ray_backend`, ``--ray ADDRESS``); both
drive :class:`Partition`.
"""

from __future__ import annotations

import gc
import mmap
import multiprocessing
import os
import pickle
import queue as queue_mod
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rmapcheck.check.checker import Checker, Progress, Result
from rmapcheck.check.compact import resident_bytes
from rmapcheck.check.explore import Copies, finish, new_result
from rmapcheck.check.model import Finding, KernelModel
from rmapcheck.check.properties import SOMETIMES
from rmapcheck.check.world import _canon
from rmapcheck.scenario.ops import Op

__all__ = ["LevelReport", "Partition", "judged_table", "owner", "rebuild", "reap", "run_parallel_bfs"]

#: bytes per action number in a path
_STEP = 2
#: seconds between progress messages of a worker
_TICK = 1.0
#: seconds a worker or the coordinator waits for one message before it
#: looks at the stop flag and whether its peers are alive
_POLL = 0.2


def owner(fp: bytes, n: int) -> int:
    """The worker (of ``n``) that owns fingerprint ``fp``; the same in every process."""
    return int.from_bytes(fp[:8], "little") % n


@dataclass
class LevelReport:
    """What a worker tells the coordinator after a level (or while it runs, for progress)."""

    index: int
    states: int = 0
    distinct: int = 0
    blocked: int = 0
    #: the deepest level at which this worker owns a state
    depth: int = 0
    #: states of the next level this worker owns
    frontier: int = 0
    #: bytes of the states queued so far and of the sets kept
    bytes: int = 0
    #: this level was cut short (a stop, a time limit, ``--first``)
    cut: bool = False
    #: the worker's resident memory (bytes) when the report was made
    resident: int = 0
    sometimes: list[str] = field(default_factory=list)
    #: (property, function) -> (path, message): the least path found so far
    findings: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)


class Partition:
    """One worker's part of the search: its visited set, its frontier, its findings.

    :param m: the model (every worker builds or inherits the same one).
    :param index: this worker's number, ``0 <= index < n``.
    :param n: the number of workers.
    """

    def __init__(self, m: KernelModel, index: int, n: int, symmetry: bool = True, first: bool = False,
                 judged: Any = None) -> None:
        self.m = m
        #: the shared table of fingerprints judged clean (:func:`judged_table`), or None
        self.judged = judged
        self.index = index
        self.n = n
        self.symmetry = symmetry
        self.first = first
        #: the fingerprints this worker owns, of every level done
        self.visited: set[bytes] = set()
        #: fingerprints of other workers' states judged here already (sent once)
        self.sent: set[bytes] = set()
        #: the current level: (path, fingerprint, state), in the order of the paths
        self.frontier: list[tuple[bytes, bytes, bytes | None]] = []
        #: the next level as it is made: fingerprint -> (path, state)
        self.next: dict[bytes, tuple[bytes, bytes | None]] = {}
        self.report = LevelReport(index)
        self._sometimes: set[str] = set()
        #: the sometimes-properties of the state not reached here yet, each mapped to False
        self._unreached: dict[str, bool] = {p.name: False for p in SOMETIMES if p.check is not None}
        self._level = 0
        init = m.init_state()
        fp0 = m.fingerprint(init, symmetry)
        if judged is not None:
            # known from the start, as one worker knows it: never judged again
            _canon.judge_clean(judged, fp0)
        if owner(fp0, n) == index:
            data = m.dumps(init)
            self.visited.add(fp0)
            self.frontier = [(b"", fp0, data)]
            self.report.distinct = 1
            self.report.bytes = len(data)
            self._sometimes.update(m.sometimes(init))
            self._unreached = {p: False for p in self._unreached if p not in self._sometimes}

    def expand(self, level: int, stop: Callable[[bytes], bool]) -> list[bytes]:
        """Expand the states of ``level`` this worker owns; the messages to the other workers.

        :param stop: called with each state's path before it is expanded;
            True ends the level here (a stop, a time limit, a lesser finding).
        :returns: one message per worker (``b""`` for this one): the
            successors it owns that this worker has not sent before.
        """
        m, me, n, sym = self.m, self.index, self.n, self.symmetry
        rep = self.report
        self._level = level
        last = level + 1 >= m.bounds.depth  # successors at the depth bound are never expanded
        nxt: dict[bytes, tuple[bytes, bytes | None]] = {}
        self.next = nxt
        out: list[list[tuple[bytes, bytes, bytes | None]]] = [[] for _ in range(n)]
        visited, sent = self.visited, self.sent
        table = self.judged
        found = False
        for path, _fp, data in self.frontier:
            if stop(path):
                rep.cut = True
                break
            copies = Copies(m, data)
            acts = m.actions(copies.state)
            end = len(acts) - 1
            for i, op in enumerate(acts):
                rep.states += 1
                s = copies.next(i == end)
                o = m.apply(s, op, judge=False)
                if o.blocked:
                    rep.blocked += 1
                    continue
                if s.k.events and not o.fatal:  # an event counts on every transition
                    self._sometimes.update(m.reached(s))
                nfp = None
                w = me
                if not o.fatal:
                    nfp = m.fingerprint(s, sym)
                    w = owner(nfp, n)
                    if w == me:
                        known = nfp in visited or nfp in nxt
                    else:
                        known = nfp in sent
                        sent.add(nfp)
                    if known:
                        nfp = None
                    elif table is None:
                        m.judge(o)
                    elif not _canon.judged_clean(table, nfp):
                        had = len(o.findings)
                        m.judge(o)
                        if len(o.findings) == had:
                            _canon.judge_clean(table, nfp)
                npath = path + i.to_bytes(_STEP, "big")
                if o.findings:
                    self._record(o.findings, npath)
                    found = self.first
                if found:
                    break
                if o.fatal or nfp is None:
                    continue
                nd = None if last else m.dumps(s)
                if w == me:
                    nxt[nfp] = (npath, nd)
                else:
                    out[w].append((nfp, npath, nd))
                if self._unreached:
                    # only the properties not reached yet are evaluated (as one worker does)
                    got = m.sometimes(s, self._unreached)
                    if got:
                        self._sometimes.update(got)
                        self._unreached = {p: False for p in self._unreached if p not in self._sometimes}
            if found:
                rep.cut = True
                break
        return [b"" if w == me else pickle.dumps(out[w], pickle.HIGHEST_PROTOCOL) for w in range(n)]

    def receive(self, messages: list[bytes]) -> LevelReport:
        """Take the other workers' messages of the level (in the order of their senders) and end it."""
        nxt, visited = self.next, self.visited
        for msg in messages:
            if not msg:
                continue
            for nfp, npath, nd in pickle.loads(msg):
                if nfp in visited:
                    continue
                old = nxt.get(nfp)
                if old is None or npath < old[0]:
                    nxt[nfp] = (npath, nd)
        rep = self.report
        visited.update(nxt)
        rep.distinct += len(nxt)
        if nxt:
            rep.depth = self._level + 1
        frontier = [(p, f, d) for f, (p, d) in nxt.items() if d is not None]
        frontier.sort()
        self.frontier = frontier
        self.next = {}
        rep.bytes += sum(len(d) for _p, _f, d in frontier)  # type: ignore[misc]
        return self.snapshot()

    def snapshot(self) -> LevelReport:
        """The report as it stands (a copy)."""
        rep = self.report
        return LevelReport(self.index, rep.states, rep.distinct, rep.blocked, rep.depth, len(self.frontier),
                           rep.bytes + _set_bytes(self.visited) + _set_bytes(self.sent), rep.cut,
                           resident_bytes(), sorted(self._sometimes), dict(rep.findings))

    def _record(self, findings: list[tuple[str, str, str, BaseException]], path: bytes) -> None:
        # The least path per (property, function): shorter first, then by action numbers.
        got = self.report.findings
        for prop, fn, msg, _err in findings:
            old = got.get((prop, fn))
            if old is None or (len(path), path) < (len(old[0]), old[0]):
                got[(prop, fn)] = (path, msg)


def _set_bytes(s: set[bytes]) -> int:
    # the set and its fingerprints (all of one size)
    return sys.getsizeof(s) + (len(s) * sys.getsizeof(next(iter(s))) if s else 0)


def rebuild(m: KernelModel, path: bytes, key: tuple[str, str]) -> tuple[list[Op], str, BaseException | None]:
    """The actions of ``path`` from the start state, and the finding ``key`` they report at the last step.

    The actions are replayed on the model, each judged, so the finding's
    error object (with what the report prints) is made here, in this process.

    :raises RuntimeError: the last step does not report ``key`` (the model
        is not deterministic).
    """
    r = m.init_state()
    ops: list[Op] = []
    out = None
    for j in range(0, len(path), _STEP):
        op = m.actions(r)[int.from_bytes(path[j:j + _STEP], "big")]
        ops.append(op)
        out = m.apply(r, op)
    for prop, fn, msg, err in out.findings if out is not None else ():
        if (prop, fn) == key:
            return ops, msg, err
    raise RuntimeError(f"the trace of {key[0]} in {key[1]} does not report it when replayed")


class Coordinator:
    """Level reports in, decisions out: what the transports share.

    The transport runs each level on every worker and hands each worker's
    :class:`LevelReport` to :meth:`level_done`; it asks :meth:`halted` while
    a level runs and :meth:`progress` about once a second.
    """

    def __init__(self, c: Checker, workers: int, strategy: str = "bfs") -> None:
        self.c = c
        self.n = workers
        self.res = new_result(c, strategy)
        self.t0 = time.perf_counter()
        self.reports: dict[int, LevelReport] = {}
        self.cut = False
        #: the resident memory of all the processes when it reached ``c.max_memory`` (0: not reached)
        self.memory_stopped = 0
        self._next_report = self.t0 + 1.0

    def halted(self) -> bool:
        """A stop was asked for or the time limit is reached: the level in progress ends early."""
        c = self.c
        if c.stop or (c.max_seconds is not None and time.perf_counter() - self.t0 > c.max_seconds):
            self.cut = True
        return self.cut

    def progress(self, latest: dict[int, LevelReport]) -> None:
        """Report the sum of the workers' latest figures, at most about once a second.

        Also where the memory limit is watched: the workers' resident memory
        as they last reported it, and the coordinator's own (for Ray, the
        actors' processes, wherever they run).
        """
        limit = self.c.max_memory
        if limit is not None and not self.memory_stopped:
            total = resident_bytes() + sum(r.resident for r in latest.values())
            if total >= limit:
                self.memory_stopped = total
                self.cut = True
        now = time.perf_counter()
        if self.c.reporter is not None and now >= self._next_report:
            self.c.reporter(self._sum(latest, now - self.t0))
            self._next_report = now + 1.0

    def _sum(self, latest: dict[int, LevelReport], seconds: float, done: bool = False) -> Progress:
        reps = latest.values()
        keys = {k for r in reps for k in r.findings}
        return Progress(sum(r.states for r in reps), sum(r.distinct for r in reps),
                        max((r.depth for r in reps), default=0), seconds, done, len(keys))

    def level_done(self, reports: list[LevelReport]) -> bool:
        """Take the reports of one level; True if the search goes on to the next."""
        for r in reports:
            self.reports[r.index] = r
        if any(r.cut for r in reports):
            self.cut = True
        if self.c.stop_on_first and any(r.findings for r in reports):
            self.cut = True
        self.progress(self.reports)
        return not self.cut and any(r.frontier for r in reports)

    def result(self) -> Result:
        """The result of the search from the last reports, the traces rebuilt."""
        c, res, reps = self.c, self.res, list(self.reports.values())
        m = c.model
        res.states = sum(r.states for r in reps)
        res.distinct = sum(r.distinct for r in reps)
        res.blocked = sum(r.blocked for r in reps)
        res.depth = max((r.depth for r in reps), default=0)
        for r in reps:
            for p in r.sometimes:
                res.sometimes[p] = True
        best: dict[tuple[str, str], bytes] = {}
        for r in sorted(reps, key=lambda r: r.index):
            for key, (path, _msg) in r.findings.items():
                old = best.get(key)
                if old is None or (len(path), path) < (len(old), old):
                    best[key] = path
        if c.stop_on_first and best:
            # one action's findings, as one worker stops at its first
            least = min(best.values(), key=lambda p: (len(p), p))
            best = {k: p for k, p in best.items() if p == least}
        setup = list(m.setup)
        for (prop, fn), path in sorted(best.items(), key=lambda kp: (len(kp[1]), kp[1], kp[0])):
            ops, msg, err = rebuild(m, path, (prop, fn))
            res.findings.append(Finding(prop, fn, msg, setup + ops, len(setup), err))
        res.seconds = time.perf_counter() - self.t0
        res.exhausted = not self.cut
        res.memory_stopped = self.memory_stopped
        res.bytes_per_state = sum(r.bytes for r in reps) / max(1, res.distinct)
        if c.reporter is not None:
            c.reporter(self._sum(self.reports, res.seconds, done=True))
        return finish(c, res)


# -- worker processes on this machine -------------------------------------------------

class _Peers:
    """A worker process's view of the others: their inboxes, its own, the coordinator's queue."""

    def __init__(self, index: int, inboxes: list[Any], results: Any, halt: Any, best: Any, parent: int) -> None:
        self.index = index
        self.inboxes = inboxes
        self.results = results
        self.halt = halt
        self.best = best
        self.parent = parent
        self.next_tick = time.monotonic() + _TICK

    def gone(self) -> bool:
        """The coordinator asked to stop, or is no more."""
        return self.halt.is_set() or os.getppid() != self.parent

    def stop(self, part: Partition) -> Callable[[bytes], bool]:
        def stop(path: bytes) -> bool:
            now = time.monotonic()
            if now >= self.next_tick:
                self.next_tick = now + _TICK
                self.results.put(("progress", part.snapshot()))
            if self.gone():
                return True
            if part.first:
                raw = self.posted()
                # a finding on a lesser path was posted: none here can be less
                return bool(raw) and path > raw[:len(path)]
            return False
        return stop

    def posted(self) -> bytes:
        """The least path of a finding posted so far (``b""``: none)."""
        with self.best.get_lock():
            raw = bytes(self.best.raw)
        return raw[_STEP:_STEP + int.from_bytes(raw[:_STEP], "big")]

    def post(self, part: Partition) -> None:
        """With ``--first``: post this worker's least finding if it is less than the one posted."""
        if not part.report.findings:
            return
        mine = min((p for p, _m in part.report.findings.values()), key=lambda p: (len(p), p))
        with self.best.get_lock():
            raw = bytes(self.best.raw)
            old = raw[_STEP:_STEP + int.from_bytes(raw[:_STEP], "big")]
            if not old or (len(mine), mine) < (len(old), old):
                self.best.raw = (len(mine).to_bytes(_STEP, "big") + mine).ljust(len(raw), b"\0")


#: slots of the table of fingerprints judged clean (16 bytes each: 16 MiB, about
#: 500,000 states before it is half full; a full table only judges again)
_JUDGED_SLOTS = 1 << 20


def judged_table() -> Any:
    """A table of fingerprints judged clean, in anonymous memory that forked workers share (None without the C walk)."""
    if _canon is None:
        return None
    return mmap.mmap(-1, _JUDGED_SLOTS * 16)


def _worker(m: KernelModel, index: int, n: int, symmetry: bool, first: bool, cmds: Any, inboxes: list[Any],
            results: Any, halt: Any, best: Any, parent: int, judged: Any) -> None:
    # One worker process: levels until the coordinator says stop. Ctrl-C is
    # the coordinator's to answer; a worker ends when the coordinator is gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for q in (*inboxes, results):
        q.cancel_join_thread()  # never wait at exit to hand over a message nobody takes
    peers = _Peers(index, inboxes, results, halt, best, parent)
    try:
        part = Partition(m, index, n, symmetry, first, judged)
        results.put(("level", part.snapshot()))
        while True:
            try:
                cmd = cmds.get(timeout=_POLL)
            except queue_mod.Empty:
                if os.getppid() != parent:
                    return
                continue
            if cmd is None:
                return
            msgs = part.expand(cmd, peers.stop(part))
            if first:
                peers.post(part)
            for w in range(n):
                if w != index:
                    inboxes[w].put((index, msgs[w]))
            got: dict[int, bytes] = {}
            while len(got) < n - 1:
                try:
                    sender, msg = inboxes[index].get(timeout=_POLL)
                except queue_mod.Empty:
                    if peers.gone():
                        part.report.cut = True
                        break
                    continue
                got[sender] = msg
            results.put(("level", part.receive([got[s] for s in sorted(got)])))
    except BaseException:  # reported by the coordinator, never a silent death
        results.put(("error", index, traceback.format_exc()))


def reap(procs: list[Any]) -> None:
    """Join every worker process: let it end, then terminate it, then kill it."""
    for p in procs:
        if p.pid is not None:
            p.join(timeout=5.0)
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(timeout=2.0)
        if p.is_alive():
            p.kill()
            p.join()


def run_parallel_bfs(c: Checker, workers: int) -> Result:
    """Breadth-first search of ``c.model`` by ``workers`` processes (see the module docstring)."""
    m = c.model
    co = Coordinator(c, workers)
    ctx = multiprocessing.get_context("fork")
    cmds = [ctx.Queue() for _ in range(workers)]
    inboxes = [ctx.Queue() for _ in range(workers)]
    results = ctx.Queue()
    halt = ctx.Event()
    # the least finding's path posted with --first: its length, then the path
    best = ctx.Array("c", _STEP * (m.bounds.depth + 2))
    judged = judged_table()
    procs = [ctx.Process(target=_worker, args=(m, i, workers, c.use_symmetry, c.stop_on_first, cmds[i], inboxes,
                                               results, halt, best, os.getpid(), judged),
                         name=f"rmapcheck-bfs-{i}", daemon=True) for i in range(workers)]
    latest: dict[int, LevelReport] = {}
    try:
        # The workers inherit this process's objects: frozen, the collector
        # of a worker never walks them, which would write to (and so copy)
        # every page they lie on.
        gc.freeze()
        try:
            for p in procs:
                p.start()
        finally:
            gc.unfreeze()
        go = co.level_done(_collect(co, procs, results, halt, latest))  # the start state
        level = 0
        while go:
            for q in cmds:
                q.put(level)
            go = co.level_done(_collect(co, procs, results, halt, latest))
            level += 1
    finally:
        halt.set()
        for q in cmds:
            q.put(None)
        reap(procs)
        for q in (*cmds, *inboxes, results):
            q.cancel_join_thread()
            q.close()
        if judged is not None:
            judged.close()
    return co.result()


def _collect(co: Coordinator, procs: list[Any], results: Any, halt: Any,
             latest: dict[int, LevelReport]) -> list[LevelReport]:
    # Every worker's report of the level, with progress and stops meanwhile.
    done: dict[int, LevelReport] = {}
    dead: dict[int, float] = {}  # a worker gone without its report, and since when
    while len(done) < len(procs):
        try:
            msg = results.get(timeout=_POLL)
        except queue_mod.Empty:
            msg = None
        if msg is not None:
            if msg[0] == "error":
                raise RuntimeError(f"breadth-first worker {msg[1]} failed: {msg[2].strip().splitlines()[-1]}")
            rep: LevelReport = msg[1]
            latest[rep.index] = rep
            if msg[0] == "level":
                done[rep.index] = rep
        now = time.monotonic()
        for i, p in enumerate(procs):
            if i not in done and not p.is_alive():
                # its last words (an error) may still be on the way
                if now - dead.setdefault(i, now) > 1.0:
                    raise RuntimeError(f"breadth-first worker {i} died (exit status {p.exitcode})")
        if co.halted():
            halt.set()
        co.progress(latest)
    return [done[i] for i in range(len(procs))]
