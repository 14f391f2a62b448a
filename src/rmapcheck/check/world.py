"""The explored state: a model runner (kernel + abstract memory), copied and fingerprinted.

Copies go through :mod:`pickle` (the C pickler), with the design's function
table and the scenario detached, so a state in the queue is a few kilobytes of
bytes. Fingerprints are canonical: processes are ordered by a signature that
does not depend on object identities or names, and every kernel object gets a
number in the order a deterministic walk from those processes first reaches
it, so two states that differ only in process names, slab slots or pids share
one fingerprint. The walk is generic over the model's slotted classes, so new
kernel structures (KSM, migration) are covered as soon as they are reachable
from the kernel object.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Any

from rmapcheck.model.mm_types import ZERO_PAGE
from rmapcheck.model.slab import SLAB_TYPESAFE_BY_RCU, kmem_cache
from rmapcheck.scenario.execute import ModelRunner

__all__ = ["EXCLUDED_FIELDS", "clone", "dumps", "fingerprint", "loads"]

#: fields that record history or identity, not state
EXCLUDED_FIELDS = frozenset({"_slot", "_alloc", "_free", "_cache", "comm", "pid", "owner", "clock",
                             "next_pid", "ops", "design", "scenario", "step_no", "born"})

_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(cls: type) -> tuple[str, ...]:
    f = _FIELDS.get(cls)
    if f is None:
        names: list[str] = []
        for c in reversed(cls.__mro__):
            for n in c.__dict__.get("__slots__", ()):
                if n not in EXCLUDED_FIELDS and n not in names:
                    names.append(n)
        if not names and hasattr(cls, "__dict__"):
            names = []
        f = _FIELDS[cls] = tuple(names)
    return f


def dumps(r: ModelRunner) -> bytes:
    """The state as bytes (the design's table and the scenario are not copied)."""
    ops, sc = r.k.ops, r.scenario
    r.k.ops = None  # type: ignore[assignment]
    r.scenario = None  # type: ignore[assignment]
    try:
        return pickle.dumps(r, pickle.HIGHEST_PROTOCOL)
    finally:
        r.k.ops, r.scenario = ops, sc


def loads(data: bytes, ops: Any, scenario: Any) -> ModelRunner:
    """A state from :func:`dumps`, reattached to ``ops`` and ``scenario``."""
    r: ModelRunner = pickle.loads(data)
    r.k.ops = ops
    r.scenario = scenario
    return r


def clone(r: ModelRunner) -> ModelRunner:
    """An independent copy of ``r``."""
    return loads(dumps(r), r.k.ops, r.scenario)


def _proc_signature(r: ModelRunner, comm: str) -> tuple:
    # What a process looks like without object identities: its VMAs, what
    # its page tables map (content, sharing count, write bit) and its memory.
    mm = r.k.tasks[comm].mm
    vmas = tuple((v.vm_start, v.vm_end, v.vm_pgoff, v.vm_flags, v.anon_vma is None,
                  len(v.anon_vma_chain)) for v in mm.mmap)
    ptes = tuple(sorted((vpn, -1 if f is ZERO_PAGE else f.content,
                         0 if f is ZERO_PAGE else f._mapcount, w) for vpn, (f, w) in _ptes(mm)))
    return (vmas, ptes, tuple(sorted(r.memory.get(comm, {}).items())))


def _ptes(mm: Any) -> list:
    out = []
    for vpn, pte in mm.pgtable.items():
        f = pte[0]
        if hasattr(f, "content"):
            out.append((vpn, (f, pte[1])))
        else:  # a non-present entry (migration entry)
            out.append((vpn, (getattr(f, "folio", ZERO_PAGE), False)))
    return out


def canonical(r: ModelRunner) -> tuple:
    """The canonical form of a state (see the module docstring)."""
    k = r.k
    procs = sorted(k.tasks, key=lambda c: (_proc_signature(r, c), c))
    ids: dict[int, int] = {id(ZERO_PAGE): -1}
    objs: list[Any] = []

    def ref(o: Any) -> Any:
        if o is None or isinstance(o, (int, str, bool, float, bytes)):
            return o
        if isinstance(o, (list, tuple)):
            return tuple(ref(x) for x in o)
        if isinstance(o, (set, frozenset)):
            return ("set", tuple(sorted(repr(ref(x)) for x in o)))
        if isinstance(o, dict):
            return ("dict", tuple(sorted(((kk if isinstance(kk, (int, str)) else repr(ref(kk))), ref(v))
                                         for kk, v in o.items())))
        if isinstance(o, kmem_cache):
            # Slot numbers are not state; the freelist is: its order decides
            # which slot the next allocation reuses and, for a type-safe
            # cache, freed memory keeps its contents.
            if o.flags & SLAB_TYPESAFE_BY_RCU:
                return ("cache", o.nr_live, ref(o.freelist))
            return ("cache", o.nr_live, len(o.freelist))
        i = ids.get(id(o))
        if i is None:
            i = ids[id(o)] = len(objs)
            objs.append(o)
        return ("@", i)

    roots = [("task", ref(k.tasks[c])) for c in procs]
    roots.append(("memory", tuple(ref(r.memory.get(c, {})) for c in procs)))
    roots.append(("faults", getattr(r, "faults", 0)))
    for name in sorted(vars(k)):
        if name in EXCLUDED_FIELDS or name == "tasks":
            continue
        roots.append((name, ref(getattr(k, name))))
    enc = []
    i = 0
    while i < len(objs):
        o = objs[i]
        cls = type(o)
        fields = _fields(cls) if hasattr(cls, "__slots__") else tuple(
            n for n in sorted(vars(o)) if n not in EXCLUDED_FIELDS)
        enc.append((cls.__name__, tuple(ref(getattr(o, n, None)) for n in fields)))
        i += 1
    return (tuple(roots), tuple(enc))


def fingerprint(r: ModelRunner) -> bytes:
    """A 16-byte fingerprint of the canonical form, stable across runs and processes."""
    return hashlib.blake2b(repr(canonical(r)).encode(), digest_size=16).digest()
