"""Bug hunting beyond breadth-first reach: a swarm of novelty-guided random searches, in parallel.

Breadth-first search proves a design clean within its bounds, but the states
it must visit grow several times over with each action, and with six
processes it does not get far from the empty start, while the degree
ambiguity of CVE-2022-42703 shows after nine actions from there
(``docs/checker.md``, "Hunting"). The hunt gives up the proof for depth.
Each worker process repeats:

1. pick a state from its *corpus* (at first only the start state), favouring
   states picked less often;
2. extend it by a random walk of a few actions, each action drawn by its
   kind's weight in the worker's current *swarm configuration* (each kind
   of action weighted at random, the walk length drawn too; redrawn every
   epoch of some 20,000 states and different in each worker, so the search
   is diversified as swarm testing diversifies it), and judge every state
   on the way with every property, as breadth-first search does;
3. add to the corpus each state that shows a *feature* no state before it
   showed (:func:`state_features`: the shape of each anon_vma in its
   hierarchy, of each VMA and its chain, of each mapping, of KSM's and the
   kernel threads' state, counted up to three), so that the walks grow from
   every new shape of the anon_vma forest rather than from the start again.

With two workers or more, the first begins with breadth-first search for a
tenth of the budget (at most 30 s): shallow bugs get their shortest traces
there, a clean run can say that every trace up to some depth was checked,
and small bounds are explored whole, which ends the hunt.

A finding's trace is the shortest any worker reported, shrunk
(:func:`shrink`, delta debugging: steps, pieces of kernel work and whole
processes removed while a replay on the model still reports the same
property in the same function) and its processes renamed in order of birth.

Deterministic: each worker's walks depend only on ``(seed, worker index)``;
with ``--first`` a worker stops at its first finding, so with one worker the
finding, its trace and the shrunk trace are the same on every run. Not
deterministic: how far each worker gets within the time budget (the number
of states checked, and so what a clean run has covered), and with several
workers which of them reports first.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue as queue_mod
import random
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rmapcheck.check.checker import Checker, Progress, Result, all_cores
from rmapcheck.check.explore import finish, new_result
from rmapcheck.check.model import Finding, KernelModel
from rmapcheck.check.parallel import reap
from rmapcheck.check.properties import SOMETIMES
from rmapcheck.check.world import _fields
from rmapcheck.model.kthreads import kthreads
from rmapcheck.model.mm_types import ZERO_PAGE, anon_vma, folio
from rmapcheck.model.slab import kmem_cache
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.ops import Op

__all__ = ["HUNT_BUDGET", "HUNT_DEPTH", "reproduce", "run_hunt", "shrink", "state_features"]

#: the most actions per trace when no depth is given: three times what
#: CVE-2022-42703 needs from the empty start
HUNT_DEPTH = 32

#: seconds a hunt runs when no budget is given (the issue's goal)
HUNT_BUDGET = 600.0

#: states each worker checks per swarm configuration (about a second)
_EPOCH = 20000
#: how often (in states) a worker looks at the clock and the stop flag
_POLL = 256
#: the most states a worker's corpus keeps (a few kilobytes each)
_CORPUS_MAX = 50000
#: with two workers or more, the first spends this share of the budget, and
#: at most _BFS_MAX seconds, on breadth-first search (a few hundred
#: megabytes at most: the queue grows by some 3 kB per state)
_BFS_SHARE = 0.1
_BFS_MAX = 30.0


# -- features ---------------------------------------------------------------------

def _c(n: int) -> int:
    # a count bucketed: 0, 1, 2, "3 or more"
    return n if n < 3 else 3


def _generation(a: anon_vma) -> int:
    # hops from an anon_vma to its root (the root's parent is itself)
    n = 0
    while a.parent is not a and n < 8:
        a = a.parent
        n += 1
    return n


def _shape(o: Any) -> tuple:
    # Any other kernel object: its scalar fields bucketed, its references
    # only as present or not, its containers by size.
    out: list[Any] = [type(o).__name__]
    for name in _fields(type(o)):
        v = getattr(o, name, None)
        t = type(v)
        if t is bool or v is None or t is str:
            out.append(v)
        elif t is int:
            out.append(_c(v) if v >= 0 else -1)
        elif t in (list, dict, set, tuple):
            out.append(_c(len(v)))
        else:
            out.append("@")
    return tuple(out)


def state_features(r: ModelRunner) -> set[tuple]:
    """The abstract features of state ``r`` that the hunt's novelty search rewards.

    Each feature is a shape and how many times it occurs (1, 2, 3 or more):
    each anon_vma's generation, ``num_children``, ``num_active_vmas``, chains
    and ``refcount``; each VMA's size, flags, whether ``mremap`` moved it
    (its page offset against its address), chain length, how many
    generations its ``anon_vma`` lies above the deepest anon_vma of its chain
    (an anon_vma reused on fork lies above) and how many VMAs of its mm share
    it; each page table entry's folio (mapcount, write bit, KSM, exclusive,
    the generation of its anon_vma) or non-present entry; each mm's VMA and
    PTE counts; each kernel thread's phase; KSM's objects and counters; the
    number of processes, live objects per cache, injected failures and
    preemptions used. Object identities, names, addresses and contents are
    left out, so the features stay few whatever the depth.
    """
    k = r.k
    feats: list[tuple] = []
    add = feats.append
    gen: dict[int, int] = {}
    for a in k.anon_vma_cachep.live():
        g = gen[id(a)] = _generation(a)
        add(("anon_vma", g, _c(a.num_children), _c(a.num_active_vmas), _c(len(a.rb_root)),
             _c(a.refcount), a.root is a))
    for t in k.tasks.values():
        mm = t.mm
        users: dict[int, int] = {}
        for v in mm.mmap:
            if v.anon_vma is not None:
                users[id(v.anon_vma)] = users.get(id(v.anon_vma), 0) + 1
        add(("mm", _c(len(mm.mmap)), _c(len(mm.pgtable))))
        for v in mm.mmap:
            a = v.anon_vma
            chain = v.anon_vma_chain
            # moved (mremap): its page offset no longer its address
            moved = (v.vm_pgoff > v.vm_start) - (v.vm_pgoff < v.vm_start)
            if a is None:
                add(("vma", v.vm_end - v.vm_start, v.vm_flags, moved, None, _c(len(chain))))
            else:
                g = gen.get(id(a), -1)
                deepest = max([gen.get(id(c.anon_vma), -1) for c in chain], default=g)
                add(("vma", v.vm_end - v.vm_start, v.vm_flags, moved, _c(g), _c(len(chain)), _c(deepest - g),
                     _c(users[id(a)])))
        for f, w in mm.pgtable.values():
            if f is ZERO_PAGE:
                add(("pte", "zero", w))
            elif type(f) is folio:
                m = f.mapping
                add(("pte", _c(f._mapcount), w, f.ksm, f.anon_exclusive, f.locked,
                     _c(gen.get(id(m), -1)) if type(m) is anon_vma else m is None))
            else:  # a migration entry or another non-present entry
                add(("pte", type(f).__name__))
    for st in kthreads(k):
        add(("kthread", type(st).__name__, getattr(st, "phase", None)))
    caches = [(n, v) for n, v in vars(k).items() if type(v) is kmem_cache]
    ksm = k.ksm
    if ksm is not None:
        for n, v in getattr(ksm, "__dict__", {}).items():
            if type(v) is kmem_cache:
                caches.append((n, v))
                for o in v.live():
                    add(_shape(o))
            elif type(v) is int and n not in ("pages_scanned", "seqnr", "scan_address", "scan_rmap_pos"):
                add(("ksm", n, _c(v)))
            elif type(v) is dict:
                add(("ksm", n, _c(len(v))))
    for n, v in caches:
        add(("live", n, _c(v.nr_live)))
    add(("tasks", len(k.tasks)))
    add(("faults", getattr(r, "faults", 0)))
    add(("preempt", getattr(r, "preempt", 0)))
    counts: dict[tuple, int] = {}
    for f in feats:
        counts[f] = counts.get(f, 0) + 1
    return {(f, _c(n)) for f, n in counts.items()}


# -- the swarm ----------------------------------------------------------------------

def _category(op: Op) -> str:
    # the kind an action is weighted by: an injected failure is a kind of its own
    for f in op.flags:
        if f.startswith("fail"):
            return "fail"
    if op.kind == "madvise":
        return op.advice
    return op.kind


@dataclass
class _Swarm:
    """One swarm configuration: a weight per action kind and the walk lengths.

    Every kind keeps a weight of at least a quarter: leaving kinds out, as
    swarm testing does, starved the walks of the forks or writes that every
    bug of the anon_vma forest needs (``docs/checker.md``, "Hunting").
    """

    rng: random.Random
    uniform: bool
    walk: int
    weights: dict[str, float] = field(default_factory=dict)

    @classmethod
    def draw(cls, rng: random.Random, uniform: bool) -> _Swarm:
        """A configuration: walks of up to 4 to 32 actions; ``uniform``: every kind weighted alike."""
        return cls(rng, uniform, 1 << rng.randint(2, 5))

    def weight(self, cat: str) -> float:
        """The weight of action kind ``cat``."""
        w = self.weights.get(cat)
        if w is None:
            # Drawn the first time the kind is enabled, so the draws depend
            # only on the worker's seed and what it has seen, in order.
            w = self.weights[cat] = 1.0 if self.uniform else self.rng.uniform(0.25, 1.0)
        return w

    def choose(self, rng: random.Random, acts: Sequence[Op]) -> Op:
        """An action of ``acts``: a kind by weight, then an action of that kind uniformly."""
        by: dict[str, list[Op]] = {}
        for op in acts:
            by.setdefault(_category(op), []).append(op)
        cats = list(by)
        cat = rng.choices(cats, [self.weight(c) for c in cats])[0]
        return rng.choice(by[cat])


# -- one worker ---------------------------------------------------------------------

@dataclass
class _Entry:
    data: bytes
    trace: tuple[Op, ...]
    picks: int = 0


class _Search:
    """One worker's search: its corpus, its features seen, its findings."""

    def __init__(self, m: KernelModel, seed: int, index: int, depth: int,
                 send: Callable[[tuple], None], first: bool = False) -> None:
        self.m = m
        #: stop after the first step that reports a finding
        self.first = first
        self.rng = random.Random(f"rmapcheck-hunt:{seed}:{index}")
        self.index = index
        self.depth = depth
        self.send = send
        init = m.init_state()
        self.corpus = [_Entry(m.dumps(init), ())]
        self.seen = state_features(init)
        # (property, function) -> the length of the shortest trace sent
        self.sent: dict[tuple[str, str], int] = {}
        self.sometimes = set(m.sometimes(init))
        self.states = self.blocked = self.max_depth = 0
        # The first worker starts with every kind weighted alike.
        self.swarm = _Swarm.draw(self.rng, uniform=index == 0)

    def _pick(self) -> _Entry:
        # Less-picked states are favoured: weight 1/sqrt(1 + picks).
        c = self.corpus
        if len(c) == 1:
            e = c[0]
        else:
            e = self.rng.choices(c, [1.0 / math.sqrt(1 + x.picks) for x in c])[0]
        e.picks += 1
        return e

    def run(self, until: Callable[[], bool]) -> None:
        """Walk until ``until()`` says stop (asked every few hundred states)."""
        m, rng, setup = self.m, self.rng, self.m.setup
        next_poll = self.states + _POLL
        next_epoch = self.states + _EPOCH
        of_state = {p.name for p in SOMETIMES if p.check is not None}
        while True:
            if self.states >= next_poll:
                next_poll = self.states + _POLL
                if until():
                    return
                if self.states >= next_epoch:
                    next_epoch = self.states + _EPOCH
                    self.swarm = _Swarm.draw(rng, uniform=False)
            e = self._pick()
            r = m.loads(e.data)
            path = list(e.trace)
            for _ in range(rng.randint(1, self.swarm.walk)):
                if len(path) >= self.depth:
                    break
                acts = m.actions(r)
                if not acts:
                    break
                op = self.swarm.choose(rng, acts)
                # an action that would sleep on a kernel thread's lock spoils the copy
                saved = m.dumps(r) if kthreads(r.k) else None
                out = m.apply(r, op)
                self.states += 1
                if out.blocked:
                    self.blocked += 1
                    r = m.loads(saved)  # type: ignore[arg-type]
                    continue
                path.append(op)
                if r.k.events and not out.fatal:  # an event counts on every transition
                    self.sometimes.update(m.reached(r))
                if out.findings:
                    for prop, fn, msg, _err in out.findings:
                        best = self.sent.get((prop, fn))
                        if best is None or len(path) < best:
                            self.sent[(prop, fn)] = len(path)
                            self.send(("finding", self.index, prop, fn, msg, [*setup, *path]))
                    if self.first:
                        return
                if out.fatal:
                    break
                self.max_depth = max(self.max_depth, len(path))
                fs = state_features(r)
                if not fs <= self.seen:
                    self.seen |= fs
                    if len(path) < self.depth and len(self.corpus) < _CORPUS_MAX:
                        self.corpus.append(_Entry(m.dumps(r), tuple(path)))
                if not of_state <= self.sometimes:
                    self.sometimes.update(m.sometimes(r))

    def stats(self) -> tuple:
        return ("stats", self.index, self.states, self.blocked, self.max_depth, len(self.corpus),
                sorted(self.sometimes))


class _Stopped(Exception):
    """The parent asked the workers to stop during breadth-first search."""


def _bfs_phase(m: KernelModel, index: int, first: bool, seconds: float, stop: Any, q: Any) -> bool:
    # Breadth-first search for ``seconds``: the shortest traces of shallow
    # bugs, and every trace up to the depth it completes. True if nothing is
    # left to hunt: every state within the bounds explored, or a finding
    # with ``first``, or the parent said stop.
    from rmapcheck.check.bfs import run_bfs

    def report(p: Progress) -> None:
        if stop.is_set() and not p.done:
            raise _Stopped

    c = Checker(m).first_violation(first).timeout(seconds).report(report)
    try:
        res = run_bfs(c)
    except _Stopped:
        return True
    for f in res.findings:
        q.put(("finding", index, f.property, f.function, f.message, list(f.trace)))
    # Cut short, it was expanding the states of the level before its deepest.
    complete = res.depth if res.exhausted else max(res.depth - 1, 0)
    q.put(("bfs", index, res.states, res.distinct, complete, res.exhausted,
           sorted(p for p, hit in res.sometimes.items() if hit)))
    return res.exhausted or (first and bool(res.findings))


def _worker(m: KernelModel, seed: int, index: int, depth: int, first: bool, bfs_seconds: float, deadline: float,
            stop: Any, q: Any, parent: int) -> None:
    # A worker process: the parent alone answers Ctrl-C; a worker stops at the
    # deadline, when the parent sets ``stop``, or when the parent is gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if bfs_seconds > 0 and _bfs_phase(m, index, first, bfs_seconds, stop, q):
            q.put(("done", index))
            return
        s = _Search(m, seed, index, depth, q.put, first)
        next_stats = time.monotonic() + 1.0

        def until() -> bool:
            nonlocal next_stats
            now = time.monotonic()
            if now >= next_stats:
                q.put(s.stats())
                next_stats = now + 1.0
            return now >= deadline or stop.is_set() or os.getppid() != parent

        s.run(until)
        q.put(s.stats())
        q.put(("done", index))
    except BaseException:  # reported by the parent, never a silent death
        q.put(("error", index, traceback.format_exc()))


# -- shrinking ----------------------------------------------------------------------

#: one step of a path being shrunk: its number in the path found, the action,
#: and for a kernel thread step the number of the step that started the work
#: it advances (its index among the work in flight changes as steps go)
_Step = tuple[int, Op, int | None]


def _replay(m: KernelModel, steps: Sequence[_Step], key: tuple[str, str], init: bytes
            ) -> tuple[int, tuple[str, str, str, BaseException], list[_Step]] | None:
    # reproduce() on numbered steps; also returns the steps as taken, each
    # kernel thread step with the work it advanced and its index then.
    b = m.bounds
    r = m.loads(init)
    started: list[tuple[Any, int]] = []  # work in flight, and the step that started it
    taken: list[_Step] = []
    for uid, op, owner in steps:
        tasks = r.k.tasks
        inflight = kthreads(r.k)
        if op.kind == "kthread":
            if owner is not None:
                idx = next((i for i, w in enumerate(inflight) for o, u in started if o is w and u == owner), None)
                if idx is None:
                    return None
                if idx != op.value:
                    op = replace(op, value=idx)
            if op.value >= len(inflight):
                return None
            owner = next((u for o, u in started if o is inflight[op.value]), None)
        elif op.proc and op.proc not in tasks:
            return None
        elif inflight and r.preempt >= b.preemption:  # type: ignore[attr-defined]
            return None
        if op.kind == "fork" and (op.child in tasks or len(tasks) >= b.processes):
            return None
        out = m.apply(r, op)
        if out.blocked or r.faults > b.faults:  # type: ignore[attr-defined]
            return None
        taken.append((uid, op, owner))
        for w in kthreads(r.k):
            if not any(o is w for o, _ in started):
                started.append((w, uid))
        for f in out.findings:
            if (f[0], f[1]) == key:
                return len(taken), f, taken
        if out.fatal:
            return None
    return None


def reproduce(m: KernelModel, path: Sequence[Op], key: tuple[str, str],
              init: bytes | None = None) -> tuple[int, tuple[str, str, str, BaseException]] | None:
    """Replay ``path`` (the actions after the setup) on the model; where is ``key`` reported?

    The replay judges every state as the checker does and stops at the
    first step that reports ``key`` (a ``(property, function)`` pair). A
    path the checker could not take within ``m.bounds`` reproduces nothing:
    a step of a process that does not exist, a fork beyond the processes
    bound or of a name in use, a kernel thread step with nothing in flight,
    more injected failures or preemptions than the bounds allow, an action
    that would sleep on a kernel thread's lock.

    :param init: the start state (:meth:`KernelModel.dumps`), if at hand.
    :returns: the number of steps up to and including the reporting one,
        and the finding; ``None`` if ``key`` is never reported.
    """
    got = _replay(m, [(i, op, None) for i, op in enumerate(path)], key,
                  init if init is not None else m.dumps(m.init_state()))
    return None if got is None else got[:2]


def _subtree(steps: Sequence[_Step], proc: str) -> set[str]:
    # proc and every process forked from it or its descendants
    names = {proc}
    for _u, op, _o in steps:
        if op.kind == "fork" and op.proc in names:
            names.add(op.child)
    return names


def _rename(path: Sequence[Op]) -> list[Op]:
    # Processes renamed P1, P2, ... in order of birth (P0 stays).
    names = {"P0": "P0"}
    out = []
    for op in path:
        if op.kind == "fork":
            names[op.child] = f"P{len(names)}"
        out.append(replace(op, proc=names.get(op.proc, op.proc), child=names.get(op.child, op.child)))
    return out


def shrink(m: KernelModel, path: Sequence[Op], key: tuple[str, str],
           max_replays: int = 20000) -> list[Op]:
    """A shorter path (actions after the setup) that still reports ``key``.

    Delta debugging (Zeller's ddmin, removals only), repeated until nothing
    more can go (every single step is then needed) or after ``max_replays``
    replays: chunks of steps from halves down to single steps; every run of
    two to four steps; each piece of kernel work (a migration or reclaim walk
    started) with every step that advanced it; each process with its
    descendants, all their steps and the fork that made it. Kernel thread
    steps follow the work they advance, so their indices are renumbered as
    other work goes. The processes are then renamed in order of birth if the
    trace still reproduces so.

    :param path: a path that reports ``key`` (see :func:`reproduce`).
    :raises ValueError: ``path`` does not report ``key``.
    """
    init = m.dumps(m.init_state())
    replays = 0
    got = _replay(m, [(i, op, None) for i, op in enumerate(path)], key, init)
    if got is None:
        raise ValueError(f"the trace does not report {key[0]} in {key[1]}")
    cur = got[2]

    def without(cand: list[_Step]) -> bool:
        # Take the candidate if it still reports the finding (cut after it).
        nonlocal cur, replays
        if len(cand) >= len(cur) or replays >= max_replays:
            return False
        replays += 1
        got = _replay(m, cand, key, init)
        if got is None:
            return False
        cur = got[2]
        return True

    changed = True
    while changed and replays < max_replays:
        changed = False
        n = 2
        while len(cur) >= 2 and replays < max_replays:
            size = math.ceil(len(cur) / n)
            if any(without(cur[:i] + cur[i + size:]) for i in range(0, len(cur), size)):
                n = max(n - 1, 2)
                changed = True
            elif size == 1:
                break
            else:
                n = min(len(cur), 2 * n)
        # A few steps that only go together, wherever they begin.
        for size in (2, 3, 4):
            i = 0
            while i + size <= len(cur):
                if without(cur[:i] + cur[i + size:]):
                    changed = True
                else:
                    i += 1
        for start in [s[0] for s in cur if any(o == s[0] for _u, _op, o in cur)][::-1]:
            if without([s for s in cur if start not in (s[0], s[2])]):
                changed = True
        for proc in [op.child for _u, op, _o in cur if op.kind == "fork"][::-1]:
            gone = _subtree(cur, proc)
            if without([s for s in cur if s[1].proc not in gone and not (s[1].kind == "fork" and s[1].child in gone)]):
                changed = True
    ops = [op for _u, op, _o in cur]
    named = _rename(ops)
    found = reproduce(m, named, key, init)
    return named if found is not None and found[0] == len(named) else ops


# -- the parent ---------------------------------------------------------------------

@dataclass
class _Inbox:
    """What the workers told the parent."""

    #: workers not done yet
    running: set[int]
    #: (property, function) -> (message, shortest trace, setup included)
    best: dict[tuple[str, str], tuple[str, list[Op]]] = field(default_factory=dict)
    #: worker -> its last ``stats`` message
    stats: dict[int, tuple] = field(default_factory=dict)
    #: the breadth-first phase's ``bfs`` message
    bfs: tuple | None = None
    errors: list[str] = field(default_factory=list)
    #: when the workers asked to stop are terminated if not done
    grace: float | None = None

    def receive(self, q: Any, procs: list[Any], first: bool, stop: Any) -> None:
        """Take one message (waiting a fifth of a second at most) and look for dead workers."""
        try:
            msg = q.get(timeout=0.2)
        except queue_mod.Empty:
            msg = None
        if msg is not None:
            kind, i = msg[0], msg[1]
            if kind == "finding":
                _, _i, prop, fn, text, trace = msg
                old = self.best.get((prop, fn))
                if old is None or len(trace) < len(old[1]):
                    self.best[(prop, fn)] = (text, trace)
                if first:
                    stop.set()
            elif kind == "stats":
                self.stats[i] = msg
            elif kind == "bfs":
                self.bfs = msg
                if msg[5]:  # every state within the bounds explored: nothing left to hunt
                    stop.set()
            elif kind == "done":
                self.running.discard(i)
            elif kind == "error":
                self.errors.append(f"hunt worker {i} failed: {msg[2].strip().splitlines()[-1]}")
                self.running.discard(i)
        for i in list(self.running):
            if not procs[i].is_alive() and procs[i].exitcode not in (None, 0):
                self.errors.append(f"hunt worker {i} died (exit status {procs[i].exitcode})")
                self.running.discard(i)


def run_hunt(c: Checker) -> Result:
    """Hunt for violations of ``c.model`` with ``c.workers`` workers for ``c.hunt_budget`` seconds.

    Without a budget, the checker's timeout is the budget, else
    :data:`HUNT_BUDGET`.

    The result's ``states`` counts the states checked (every action taken by
    every worker; the walks revisit states, so this is not a count of
    distinct states), ``distinct`` the distinct states of the breadth-first
    phase, ``depth`` the longest walk; it is ``exhausted`` when the
    breadth-first phase explored every state within the bounds. Each
    finding keeps the shortest trace any worker reported, shrunk by
    :func:`shrink`.
    """
    m = c.model
    res = new_result(c, "hunt")
    workers = c.workers or all_cores()
    depth = m.bounds.depth
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    stop = ctx.Event()
    budget = c.hunt_budget if c.hunt_budget is not None else c.max_seconds
    deadline = time.monotonic() + (HUNT_BUDGET if budget is None else budget)
    # With two workers or more, the first begins with breadth-first search.
    bfs_seconds = min(_BFS_SHARE * (deadline - time.monotonic()), _BFS_MAX) if workers > 1 else 0.0
    procs = [ctx.Process(target=_worker, args=(m, c.seed, i, depth, c.stop_on_first, bfs_seconds if i == 0 else 0.0,
                                               deadline, stop, q, os.getpid()),
                         name=f"rmapcheck-hunt-{i}", daemon=True) for i in range(workers)]
    box = _Inbox(set(range(workers)))
    #: the signals that asked the hunt to stop (SIGINT here, SIGTERM through Checker.stop_on)
    interrupted: list[int] = []

    def on_sigint(signum: int, frame: Any) -> None:
        # Ctrl-C: stop the workers, keep what they found
        interrupted.append(signum)
        stop.set()

    # Only the main thread may set a handler; elsewhere Ctrl-C stays KeyboardInterrupt.
    main = threading.current_thread() is threading.main_thread()
    old_handler = signal.signal(signal.SIGINT, on_sigint) if main else None
    try:
        for p in procs:
            p.start()
        next_report = time.perf_counter() + 1.0
        while box.running:
            box.receive(q, procs, c.stop_on_first, stop)
            if c.stop and not interrupted:
                # SIGTERM (or SIGINT) through rmapcheck check's handler
                interrupted.append(c.stop.signum)
                stop.set()
            now = time.perf_counter()
            if stop.is_set() or time.monotonic() >= deadline:
                stop.set()
                if box.grace is None:
                    box.grace = now + 10.0
            elif c.reporter is not None and now >= next_report:
                c.reporter(_progress(box.stats, now - t0))
                next_report = now + 1.0
            if box.grace is not None and now > box.grace:
                break  # the stragglers are terminated below
    finally:
        stop.set()
        reap(procs)
        q.close()
        q.join_thread()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    searched = time.perf_counter() - t0
    stats, bfs, best = box.stats, box.bfs, box.best
    for st in stats.values():
        _, _i, states, blocked, d, _corpus, hit = st
        res.states += states
        res.blocked += blocked
        res.depth = max(res.depth, d)
        for p in hit:
            res.sometimes[p] = True
    complete = 0
    if bfs is not None:
        _, _i, states, res.distinct, complete, res.exhausted, hit = bfs
        for p in hit:
            res.sometimes[p] = True
        res.states += states
    setup = list(m.setup)
    for (prop, fn), (_text, trace) in best.items():
        path = shrink(m, trace[len(setup):], (prop, fn))
        got = reproduce(m, path, (prop, fn))
        if got is None:  # shrink() returns only paths that reproduce
            raise RuntimeError(f"the shrunk trace of {prop} in {fn} does not reproduce")
        f = got[1]
        res.findings.append(Finding(prop, fn, f[2], setup + path, len(setup), f[3]))
    res.seconds = time.perf_counter() - t0
    if c.reporter is not None:
        c.reporter(_progress(stats, res.seconds, done=True))
    res = finish(c, res, exhaustive=res.exhausted)
    res.warnings[:0] = box.errors
    if interrupted and not res.interrupted:
        res.interrupted = interrupted[0]
        res.warnings.insert(0, f"interrupted by {signal.Signals(interrupted[0]).name}: the result is partial, the "
                               "findings are those found so far")
    if bfs is not None:
        res.warnings.insert(0, f"breadth-first search (worker 0, first {bfs_seconds:.3g} s) "
                               + ("explored every state within the bounds" if res.exhausted else
                                  f"checked every trace of up to {complete} actions")
                               + f" ({res.distinct} distinct states)")
    if not res.exhausted:
        res.warnings.insert(0, f"hunting is not exhaustive: {workers} workers (seed {c.seed}) checked {res.states} "
                               f"states in {searched:.1f} s, revisiting some; a clean verdict means only that "
                               "none of them violated a property")
    return res


def _progress(stats: dict[int, tuple], seconds: float, done: bool = False) -> Progress:
    states = sum(s[2] for s in stats.values())
    depth = max((s[4] for s in stats.values()), default=0)
    # the walks revisit states: states checked stand for distinct ones
    return Progress(states, states, depth, seconds, done)
