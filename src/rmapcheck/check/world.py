"""The explored state: a model runner (kernel + abstract memory), copied and fingerprinted.

Copies go through :mod:`pickle` (the C pickler), with the design's function
table and the scenario detached, so a state in the queue is a few kilobytes of
bytes; where ``_snapshot.c`` is built, kernel objects are reduced in C (the
same bytes). Fingerprints are canonical: processes are ordered by a
signature that does not depend on object identities or names, and every
kernel object gets a number in the order a deterministic walk from those
processes first reaches it, so two states that differ only in process
names, slab slots, page frame numbers or pids share one fingerprint. The
common kernel structures have encoders of their own (for speed); any other
object reachable from the kernel is walked generically through its slots or
attributes, so a new kernel structure is covered as soon as it is
reachable. Where ``_canon.c`` is built, the fingerprint's walk runs in C and
writes the bytes this module's form marshals to.
"""

from __future__ import annotations

import copyreg
import hashlib
import marshal
import os
import pickle
import types
from collections import deque
from itertools import repeat
from operator import call as _call
from typing import Any, Callable

from rmapcheck.model.mm_types import (
    ZERO_PAGE, anon_vma, anon_vma_chain, folio, mm_struct, task_struct, vm_area_struct,
)
from rmapcheck.model.slab import SLAB_TYPESAFE_BY_RCU, FastPickle, kmem_cache
from rmapcheck.scenario.execute import ModelRunner

__all__ = ["CANONICAL_WALK", "EXCLUDED_FIELDS", "SNAPSHOT_WALK", "Snapshot", "SnapshotC", "SnapshotPy", "canonical",
           "clone", "dumps", "fingerprint", "loads"]

#: fields that record history or identity, not state
EXCLUDED_FIELDS = frozenset({"_slot", "_alloc", "_free", "_cache", "comm", "pid", "owner", "clock",
                             "next_pid", "ops", "design", "scenario", "step_no", "born",
                             # statistics only: they never decide what the kernel does
                             "pages_scanned", "alloc_attempts",
                             # what the last action did (rmapcheck.model.events)
                             "events"})

_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(cls: type) -> tuple[str, ...]:
    f = _FIELDS.get(cls)
    if f is None:
        names: list[str] = []
        for c in reversed(cls.__mro__):
            for n in c.__dict__.get("__slots__", ()):
                if n not in EXCLUDED_FIELDS and n not in names:
                    names.append(n)
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


_ALL = slice(None)
#: runs an iterator to its end, keeping nothing (C speed)
_drain = deque(maxlen=0).extend
_IMMUTABLE = frozenset({int, str, bool, float, bytes, type(None), type, range})
#: functions a state refers to (slab constructors): code, not state
_CODE = frozenset({types.FunctionType, types.BuiltinFunctionType})


class SnapshotPy:
    """The shallow state of every mutable object of a state, to put the state back in place.

    The explorers apply each action of a state to one copy of it and put the
    copy back afterwards, instead of unpickling a fresh copy per action
    (``docs/checker.md``, "States and fingerprints"). A snapshot records, for
    every object reachable from the runner (the design's table and the
    scenario apart), its slots, its ``__dict__`` or, for a list, dict or set,
    its items; tuples and frozensets are walked, not recorded. A kernel object
    must be a :class:`~rmapcheck.model.slab.FastPickle` or have a
    ``__dict__``; any other kind is refused with ``TypeError``.
    :meth:`restore` writes all of them back in place, so every alias stays
    valid, and whatever an action allocated is left unreachable. Everything is
    restored, changed or not: a comparison could not tell a ``ksm_zero_pte``
    from the plain PTE it equals.

    :data:`Snapshot` is this class, or :class:`SnapshotC` (the same
    records and writes, in C) where that is built.
    """

    __slots__ = ("_dict_saved", "_dicts", "_list_saved", "_lists", "_set_saved", "_sets", "_setters",
                 "_states")

    def __init__(self, r: ModelRunner) -> None:
        objs: list[tuple[Any, tuple]] = []
        dicts: list[tuple[dict, dict]] = []
        lists: list[tuple[list, list]] = []
        sets: list[tuple[set, set]] = []
        seen = {id(r.k.ops), id(r.scenario)}
        todo: list[Any] = [r]
        immutable = _IMMUTABLE
        while todo:
            o = todo.pop()
            t = type(o)
            if t in immutable or id(o) in seen:
                continue
            seen.add(id(o))
            if t is tuple or t is frozenset or t.__base__ is tuple:
                todo.extend(o)
            elif t is list:
                lists.append((o, o[:]))
                todo.extend(o)
            elif t is dict:
                dicts.append((o, o.copy()))
                todo.extend(o.values())
                todo.extend(o)
            elif t is set:
                sets.append((o, o.copy()))
                todo.extend(o)
            elif isinstance(o, FastPickle):
                st = o.__getstate__()
                objs.append((o, st))
                todo.extend(st)
            elif t in _CODE:
                continue
            elif hasattr(o, "__dict__") and not isinstance(o, (list, dict, set)) and not callable(o):
                d = vars(o)
                dicts.append((d, d.copy()))
                todo.extend(d.values())
            else:
                # A subclass of a container or a slotted class without
                # FastPickle could keep state this walk does not see.
                raise TypeError(f"Snapshot: cannot record a {t.__name__}")
        # restore() runs once per action: the calls are laid out for map()
        self._setters = [o.__setstate__ for o, _ in objs]
        self._states = [st for _, st in objs]
        self._dicts = [d for d, _ in dicts]
        self._dict_saved = [saved for _, saved in dicts]
        self._lists = [lst for lst, _ in lists]
        self._list_saved = [saved for _, saved in lists]
        self._sets = [s for s, _ in sets]
        self._set_saved = [saved for _, saved in sets]

    def restore(self) -> None:
        """Put every recorded object back as it was when the snapshot was taken."""
        _drain(map(_call, self._setters, self._states))
        _drain(map(dict.clear, self._dicts))
        _drain(map(dict.update, self._dicts, self._dict_saved))
        _drain(map(list.__setitem__, self._lists, repeat(_ALL), self._list_saved))
        if self._sets:
            _drain(map(set.clear, self._sets))
            _drain(map(set.update, self._sets, self._set_saved))


#: the snapshot in C, unless it is not built or RMAPCHECK_PURE_PYTHON is set
_snapshot: Any = None
if not os.environ.get("RMAPCHECK_PURE_PYTHON"):
    try:
        from rmapcheck.check import _snapshot
    except ImportError:  # not compiled (no C compiler at install): SnapshotPy
        _snapshot = None
    else:
        _snapshot.configure(FastPickle, copyreg.__newobj__)


def _fast_pickle_classes(cls: type = FastPickle) -> list[type]:
    # every subclass of FastPickle defined so far
    out: list[type] = []
    for sub in cls.__subclasses__():
        out += [sub, *_fast_pickle_classes(sub)]
    return out


def _register_reductions() -> None:
    # Pickle each FastPickle class that keeps object's reduction by the
    # same reduction built in C (the same pickle, without calling
    # __getstate__): pickle and copy read copyreg's table before
    # __reduce_ex__.
    for cls in _fast_pickle_classes():
        if cls.__reduce_ex__ is object.__reduce_ex__ and cls.__reduce__ is object.__reduce__ \
                and not hasattr(cls, "__getnewargs_ex__") and not hasattr(cls, "__getnewargs__") \
                and cls not in copyreg.dispatch_table and _snapshot.by_slots(cls):
            copyreg.pickle(cls, _snapshot.reduce)


if _snapshot is not None:
    _register_reductions()


class SnapshotC:
    """:class:`SnapshotPy` in C (``_snapshot.c``): the same objects recorded in the same order, the same writes.

    The walk runs in C, and the slots of a
    :class:`~rmapcheck.model.slab.FastPickle` object are read and written
    where they lie in the object (those its ``__getstate__`` and
    ``__setstate__`` name), not through the two methods.
    """

    __slots__ = ("_saved",)

    def __init__(self, r: ModelRunner) -> None:
        self._saved = _snapshot.record(r, (r.k.ops, r.scenario))

    def restore(self) -> None:
        """Put every recorded object back as it was when the snapshot was taken."""
        self._saved.restore()


#: what the explorers take snapshots with
Snapshot: type[SnapshotC] | type[SnapshotPy] = SnapshotPy if _snapshot is None else SnapshotC
#: "C" or "Python": how Snapshot records and restores
SNAPSHOT_WALK = "C" if _snapshot is not None else "Python"


def _proc_signature(r: ModelRunner, comm: str) -> tuple:
    # What a process looks like without object identities: its VMAs, what
    # its page tables map (content, sharing count, write bit) and its memory.
    mm = r.k.tasks[comm].mm
    vmas = tuple([(v.vm_start, v.vm_end, v.vm_pgoff, v.vm_flags, v.anon_vma is None,
                   len(v.anon_vma_chain)) for v in mm.mmap])
    ptes = []
    for vpn, pte in mm.pgtable.items():
        f = pte[0]
        if type(f) is not folio and not hasattr(f, "content"):  # a non-present entry (migration entry)
            f = getattr(f, "folio", ZERO_PAGE)
            w = False
        else:
            w = pte[1]
        ptes.append((vpn, -1, 0, w) if f is ZERO_PAGE else (vpn, f.content, f._mapcount, w))
    ptes.sort()
    mem = r.memory.get(comm)
    return (vmas, tuple(ptes), tuple(sorted(mem.items())) if mem else ())


def _kpfn(pfn: int, oid: Any, pa: kmem_cache) -> Any:
    # A page frame number: the folio in that slot now, or the slot's place on
    # the page allocator's freelist (which decides when a new page reuses it),
    # never the number itself.
    if pfn < 0:
        return pfn
    f = pa.objects.get(pfn)
    if f is not None:
        return ("page", oid(f))
    fl = pa.freelist
    return ("free", len(fl) - fl.index(pfn) if pfn in fl else -1)


_SCALAR = frozenset({int, str, bool, float, bytes, type(None)})
#: what canonical()'s ref() makes of an empty dict, list or tuple
_EMPTY_DICT: tuple = ("dict", ())
_EMPTY: dict[type, Any] = {dict: _EMPTY_DICT, list: (), tuple: ()}
_KERNEL_FIELDS: dict[tuple[str, ...], tuple[tuple[str, ...], bytes]] = {}


def _digest(data: bytes) -> bytes:
    # 16 bytes standing for ``data`` in a canonical form: a long part that
    # is the same in most states (the kernel's layout, its configuration)
    # then costs the fingerprint's hash 16 bytes, not hundreds.
    return hashlib.blake2b(data, digest_size=16).digest()


def _kernel_fields(names: tuple[str, ...]) -> tuple[tuple[str, ...], bytes]:
    # The kernel's attributes that are state, in a fixed order, and a digest
    # of that order: the canonical form names the attributes once by the
    # digest, then gives their values in this order.
    f = _KERNEL_FIELDS.get(names)
    if f is None:
        fields = tuple(sorted(n for n in names if n not in EXCLUDED_FIELDS and n != "tasks"))
        f = _KERNEL_FIELDS[names] = (fields, _digest(marshal.dumps(fields, 2)))
    return f


class _Numbering(dict):
    # Object -> its number, in the order first asked for (by identity: no
    # model class compares by value); None stays None, the zero page is -1.
    # A number already given is found by dict.__getitem__, in C.
    __slots__ = ("objs",)

    def __init__(self) -> None:
        super().__init__({None: None, ZERO_PAGE: -1})
        self.objs: list[Any] = []

    def __missing__(self, o: Any) -> int:
        objs = self.objs
        i = self[o] = len(objs)
        objs.append(o)
        return i


#: values whose equal values of one type encode alike (not floats: 0.0 == -0.0)
_EXACT = frozenset({int, str, bool, bytes, type(None)})
#: kernel attribute -> its last dict of scalars (its keys, values, the types
#: of both, in order) and what _root_dict() made of it
_ROOT_DICTS: dict[str, tuple[list[str], list[Any], list[type], list[type], bytes]] = {}


def _root_dict(name: str, d: dict, ref: Callable[[Any], Any]) -> Any:
    # A dict the kernel keeps (its configuration, the armed failure sites):
    # ref(d), or for a dict of scalars with string keys, a digest of ref(d)
    # marshalled, remembered while the dict holds what the last one asked
    # for under this name held (the configuration is the same in every
    # state of a run).
    # The same keys (strings, not a subclass) in the same order with equal
    # values of the same types (True == 1, but marshal tells them apart)
    # encode alike; scalars name no object, so no numbering is skipped.
    # Bytes stand for such a dict whether remembered or not, so each dict
    # has one encoding.
    last = _ROOT_DICTS.get(name)
    if last is not None and list(d) == last[0] and list(d.values()) == last[1] \
            and list(map(type, d.values())) == last[2] and list(map(type, d)) == last[3]:
        return last[4]
    keys, values = list(d), list(d.values())
    types, key_types = list(map(type, values)), list(map(type, keys))
    if all(t is str for t in key_types) and all(map(_EXACT.__contains__, types)):
        e = _digest(marshal.dumps(ref(d), 2))
        _ROOT_DICTS[name] = (keys, values, types, key_types, e)
        return e
    return ref(d)


def _proc_order(r: ModelRunner, symmetry: bool) -> list[str]:
    # The processes' names in canonical order.
    tasks = r.k.tasks
    if not symmetry or len(tasks) <= 1:
        return sorted(tasks)
    # Processes in the order of their signatures; first by a part of the
    # signature that is cheap to read (the numbers of VMAs, page table
    # entries and memory words), the whole one only where that part ties.
    # Both keys are functions of the signature, so states share a form
    # exactly when they did sorted by the signature alone.
    memory = r.memory
    cheap = {c: (len(t.mm.mmap), len(t.mm.pgtable), len(memory.get(c) or ())) for c, t in tasks.items()}
    if len(set(cheap.values())) == len(cheap):
        return sorted(tasks, key=cheap.__getitem__)
    return sorted(tasks, key=lambda c: (cheap[c], _proc_signature(r, c), c))


def _generic_fields(o: Any) -> tuple[str, ...]:
    # The fields an object without an encoder of its own is encoded by.
    cls = type(o)
    if hasattr(cls, "__slots__"):
        return _fields(cls)
    return tuple(n for n in sorted(vars(o)) if n not in EXCLUDED_FIELDS)


def canonical(r: ModelRunner, symmetry: bool = True) -> tuple:
    """The canonical form of a state (see the module docstring).

    :func:`fingerprint` hashes it as :mod:`marshal` writes it; where the C
    walk (``_canon.c``) is built, that writes the same bytes without
    building the form.

    With ``symmetry`` False, processes keep their names and objects their
    slab slots: only states equal in every respect share a form.
    """
    k = r.k
    tasks = k.tasks
    procs = _proc_order(r, symmetry)
    ids = _Numbering()
    objs = ids.objs
    oid = ids.__getitem__
    _scalar = _SCALAR

    scalars = _scalar.__contains__
    encoders = _ENCODERS

    def ref(o: Any) -> Any:
        t = type(o)
        if t in _scalar:
            return o
        if t is list or t is tuple:
            if all(map(scalars, map(type, o))):
                return tuple(o)
            return tuple([ref(x) for x in o])
        if t is dict:
            if all(map(scalars, map(type, o))) and all(map(scalars, map(type, o.values()))):
                return ("dict", tuple(sorted(o.items())))
            items = [((kk if type(kk) in _scalar else repr(ref(kk))), (v if type(v) in _scalar else ref(v)))
                     for kk, v in o.items()]
            items.sort()
            return ("dict", tuple(items))
        if t is set or t is frozenset:
            return ("set", tuple(sorted(repr(ref(x)) for x in o)))
        if t is kmem_cache:
            # Slot numbers are not state; the freelist is: its order decides
            # which slot the next allocation reuses and, for a type-safe
            # cache, freed memory keeps its contents.
            if o.flags & SLAB_TYPESAFE_BY_RCU:
                return ("cache", o.nr_live, tuple(map(oid, o.freelist)))
            return ("cache", o.nr_live, len(o.freelist))
        return ("@", oid(o))

    roots: list[Any] = [tuple([oid(tasks[c]) for c in procs])]
    if not symmetry:
        roots.append(tuple(procs))
    memory = r.memory
    roots.append(tuple([ref(mem) if mem or type(mem) is not dict else _EMPTY_DICT
                        for mem in map(memory.get, procs, repeat({}))]))
    roots.append(getattr(r, "faults", 0))
    roots.append(getattr(r, "preempt", 0))
    kv = vars(k)
    fields, layout = _kernel_fields(tuple(kv))
    roots.append(layout)
    for name in fields:
        v = kv[name]
        t = type(v)
        if t is kmem_cache:  # the common case, without a call of ref()
            roots.append(("cache", v.nr_live, tuple(map(oid, v.freelist))
                          if v.flags & SLAB_TYPESAFE_BY_RCU else len(v.freelist)))
        elif t in _scalar:
            roots.append(v)
        elif not v and t in _EMPTY:  # an empty list or dict, as ref() encodes it
            roots.append(_EMPTY[t])
        elif t in encoders:  # a kernel object (ksm_state), as ref() encodes it
            roots.append(("@", oid(v)))
        elif t is dict:
            roots.append(_root_dict(name, v, ref))
        else:
            roots.append(ref(v))
    enc: list[Any] = []
    append = enc.append
    # objs grows while it is walked: the list iterator sees what is appended
    for o in objs:
        e = encoders.get(type(o))
        if e is not None:
            append(e(o, oid, k))
        else:
            append((type(o).__name__, tuple([ref(getattr(o, n, None)) for n in _generic_fields(o)])))
        if not symmetry:
            append(getattr(o, "_slot", None))
    return (tuple(roots), tuple(enc))


def _enc_task(t: Any, oid: Any, k: Any) -> tuple:
    return ("t", oid(t.mm))


def _enc_mm(mm: Any, oid: Any, k: Any) -> tuple:
    # the page table first: its folios are numbered before the VMAs
    ptes = tuple([(vpn, oid(pte[0]), pte[1], type(pte).__name__) for vpn, pte in sorted(mm.pgtable.items())])
    return ("mm", mm._live, tuple(map(oid, mm.mmap)), ptes, mm.mm_users, mm.mm_count, mm.ksm_flags,
            mm.ksm_rmap_items, mm.ksm_merging_pages, mm.ksm_zero_pages)


def _enc_vma(v: Any, oid: Any, k: Any) -> tuple:
    return ("v", v._live, v.vm_start, v.vm_end, v.vm_pgoff, v.vm_flags, oid(v.anon_vma),
            tuple(map(oid, v.anon_vma_chain)), oid(v.vm_mm))


def _enc_av(a: Any, oid: Any, k: Any) -> tuple:
    return ("a", a._live, oid(a.root), oid(a.parent), a.refcount, a.num_children, a.num_active_vmas,
            tuple(map(oid, a.rb_root)), a.rwsem_writer, a.rwsem_readers)


def _enc_avc(c: Any, oid: Any, k: Any) -> tuple:
    return ("c", c._live, oid(c.vma), oid(c.anon_vma))


def _enc_folio(f: Any, oid: Any, k: Any) -> tuple:
    return ("f", f._live, oid(f.mapping), f.index, f._mapcount, f._refcount, f.anon_exclusive,
            f.content, f.ksm, oid(f.stable_node), f.locked)


def _enc_rmap_item(i: Any, oid: Any, k: Any) -> tuple:
    return ("ri", i._live, oid(i.mm), i.address, i.flags, oid(i.anon_vma), i.oldchecksum, i.age,
            i.remaining_skips, oid(i.head), i.key)


def _enc_stable_node(n: Any, oid: Any, k: Any) -> tuple:
    return ("sn", n._live, tuple(map(oid, n.hlist)), _kpfn(n.kpfn, oid, k.page_alloc),
            n.rmap_hlist_len, n.head, oid(n.chain), n.key, n.nid)


def _enc_mm_slot(m: Any, oid: Any, k: Any) -> tuple:
    return ("ms", m._live, oid(m.mm), tuple(map(oid, m.rmap_list)))


_ENCODERS = {
    task_struct: _enc_task, mm_struct: _enc_mm, vm_area_struct: _enc_vma, anon_vma: _enc_av,
    anon_vma_chain: _enc_avc, folio: _enc_folio,
}
def _enc_ksm(st: Any, oid: Any, k: Any) -> tuple:
    # mm_slots_hash repeats what mm_list says (each slot names its mm); the
    # caches are not typesafe: only their counts matter.
    stable, unstable = st.root_stable_tree, st.root_unstable_tree
    return ("ksm", tuple(map(oid, st.mm_list)), oid(st.scan_mm_slot), st.scan_address,
            st.scan_rmap_pos, st.seqnr,
            tuple([(key, oid(n)) for key, n in sorted(stable.items())]) if stable else (),
            tuple([(key, oid(i)) for key, i in sorted(unstable.items())]) if unstable else (),
            st.pages_shared, st.pages_sharing, st.pages_unshared, st.rmap_items, st.stable_node_chains,
            st.stable_node_dups, st.pages_skipped, st.zero_pages,
            st.rmap_item_cache.nr_live, st.stable_node_cache.nr_live, st.mm_slot_cache.nr_live)


try:
    from rmapcheck.model.ksm import ksm_mm_slot, ksm_rmap_item, ksm_stable_node, ksm_state

    _ENCODERS.update({ksm_rmap_item: _enc_rmap_item, ksm_stable_node: _enc_stable_node,
                      ksm_mm_slot: _enc_mm_slot, ksm_state: _enc_ksm})
except ImportError:  # a tree without KSM
    pass


#: the walk in C, unless it is not built or RMAPCHECK_PURE_PYTHON is set
_canon: Any = None
if not os.environ.get("RMAPCHECK_PURE_PYTHON"):
    try:
        from rmapcheck.check import _canon
    except ImportError:  # not compiled (no C compiler at install): the interpreter's walk
        _canon = None
if _canon is not None:
    _canon.configure({
        "task_struct": task_struct, "mm_struct": mm_struct, "vm_area_struct": vm_area_struct,
        "anon_vma": anon_vma, "anon_vma_chain": anon_vma_chain, "folio": folio,
        **{cls.__name__: cls for cls in _ENCODERS if cls.__name__.startswith("ksm_")},
        "kmem_cache": kmem_cache, "ZERO_PAGE": ZERO_PAGE, "SLAB_TYPESAFE_BY_RCU": SLAB_TYPESAFE_BY_RCU,
        "encoders": _ENCODERS, "kernel_fields_cache": _KERNEL_FIELDS, "root_dicts": _ROOT_DICTS,
        "empty_dict": _EMPTY_DICT, "kernel_fields": _kernel_fields, "root_dict": _root_dict,
        "proc_order": _proc_order, "generic_fields": _generic_fields, "fields_cache": _FIELDS,
    })
#: "C" or "Python": which walk fingerprint() runs
CANONICAL_WALK = "C" if _canon is not None else "Python"


def fingerprint(r: ModelRunner, symmetry: bool = True) -> bytes:
    """A 12-byte (96-bit) fingerprint of the canonical form, stable across runs and processes.

    Two distinct states of an exploration of ``N`` states share a fingerprint
    with probability about ``N²/2^97`` (``docs/scaling.md``, "Memory per state").
    """
    if _canon is not None:
        return hashlib.blake2b(_canon.marshalled(r, symmetry), digest_size=12).digest()
    return hashlib.blake2b(marshal.dumps(canonical(r, symmetry), 2), digest_size=12).digest()
