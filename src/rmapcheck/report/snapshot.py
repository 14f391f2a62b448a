"""A kernel state as plain data: one JSON-ready snapshot per step, for the HTML step-through and tests.

:func:`kernel_snapshot` reduces the model's kernel after a step to dicts,
lists, strings and numbers: each process's VMAs (arena pages, protection,
``vm_pgoff``, the anon_vma and the chains), what its page table maps
(folio, zero page, migration entry), each folio with the anon_vma or KSM
stable node its ``mapping`` points to, the anon_vma forest (root, parent,
chains and the counters of the design's era, :func:`anon_vma_fields`), KSM's
stable tree, unstable tree and rmap_items, the migrations and reclaim walks
in flight with the references each holds, and every holder of a reference
to the objects a finding is about (:mod:`rmapcheck.report.holders`).

Every kernel object is named as reports name it, by its slab cache and
allocation serial (``anon_vma#3``, ``page#5``, ``vm_area_struct#2``): a name
stays with one object from its allocation to its free and is never given to
another, so the same name in two snapshots is the same object and a viewer
can give it one colour throughout. A freed object that something still
points to (a stale pointer, the finding) is listed with ``"freed": true``.
"""

from __future__ import annotations

from typing import Any, Iterable

from rmapcheck.designs import DesignError, load_design
from rmapcheck.model.memory import migration_entry
from rmapcheck.model.mm_types import (
    PAGE_SHIFT, VM_EXEC, VM_MERGEABLE, VM_READ, VM_WRITE, ZERO_PAGE, anon_vma, folio, mm_struct,
)
from rmapcheck.model.slab import SlabObject
from rmapcheck.report.holders import Namer, reference_holders
from rmapcheck.scenario.ops import ARENA_BASE, Scenario
from rmapcheck.scenario.render import object_symbol, vma_namer

__all__ = ["ERA_FIELDS", "anon_vma_fields", "kernel_snapshot", "object_name"]

_ARENA_VPN = ARENA_BASE >> PAGE_SHIFT

#: The anon_vma counters shown for a design, as ``(model field, the kernel's
#: name for it)``, by the design its line of designs starts from: the 2010
#: root series (``linux-2.6.36-pre`` and the designs based on it) kept one
#: ``external_refcount`` and had no ``num_children`` or ``num_active_vmas``
#: (the model keeps it in ``refcount``); the 3.x designs had ``refcount`` only,
#: and from ``linux-3.19-rc`` ``degree`` too (the model keeps it in
#: ``num_active_vmas``); every other design has v6.18's three.
ERA_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "linux-2.6.36-pre": (("refcount", "external_refcount"),),
    "linux-3.16-rc": (("refcount", "refcount"),),
    "linux-3.19-rc": (("refcount", "refcount"), ("num_active_vmas", "degree")),
    "linux-6.18": (("refcount", "refcount"), ("num_children", "num_children"),
                   ("num_active_vmas", "num_active_vmas")),
}


def anon_vma_fields(design: str) -> tuple[tuple[str, str], ...]:
    """The anon_vma counters of ``design``'s era (:data:`ERA_FIELDS`), found along its ``BASE`` line.

    A design file based on ``linux-2.6.36`` gets the 2010 fields; a design
    that does not load gets v6.18's.
    """
    spec: str | None = design
    while spec is not None:
        if spec in ERA_FIELDS:
            return ERA_FIELDS[spec]
        try:
            spec = load_design(spec).base
        except DesignError:
            break
    return ERA_FIELDS["linux-6.18"]


def object_name(o: Any) -> str:
    """The name of a kernel object in snapshots and reports: ``anon_vma#3``; ``zero page``."""
    if o is ZERO_PAGE:
        return "zero page"
    if isinstance(o, SlabObject):
        return o.kname()
    return type(o).__name__


def _name(o: Any) -> str | None:
    return None if o is None else object_name(o)


def _freed(o: Any) -> bool:
    return isinstance(o, SlabObject) and o._cache is not None and not o._live


def _arena_page(vpn: int) -> int:
    return vpn - _ARENA_VPN


def kernel_snapshot(k: Any, scenario: Scenario, design: str = "linux-6.18",
                    involved: Iterable[Any] = ()) -> dict[str, Any]:
    """The state of kernel ``k`` as plain data (see the module docstring).

    :param k: the model's ``Kernel``.
    :param scenario: the arena's size and the regions, for page places.
    :param design: picks the anon_vma counters shown (:func:`anon_vma_fields`).
    :param involved: objects whose reference holders to list (a finding's).
    :returns: ``{"processes", "folios", "anon_vmas", "ksm", "migrations",
        "walks", "holders"}``; every object by its name (:func:`object_name`).
    """
    mms = {c: t.mm for c, t in sorted(k.tasks.items())}
    vma_label = vma_namer(mms, scenario)
    namer = Namer(mms, scenario)
    npages = scenario.arena_pages
    folios: dict[int, Any] = {}
    avs: dict[int, anon_vma] = {}

    def see_folio(f: Any) -> None:
        if isinstance(f, folio) and f is not ZERO_PAGE and id(f) not in folios:
            folios[id(f)] = f
            if isinstance(f.mapping, anon_vma):
                see_av(f.mapping)

    def see_av(av: anon_vma | None) -> None:
        while av is not None and id(av) not in avs:
            avs[id(av)] = av
            see_av(av.root)
            av = av.parent

    processes = []
    for comm, mm in mms.items():
        processes.append(_process(k.tasks[comm], mm, npages, vma_label, see_folio, see_av))
    for av in k.anon_vma_cachep.live():
        see_av(av)
    for f in k.page_alloc.live():
        see_folio(f)
    for st in [*k.migrations, *k.walks]:
        for v in _slots(st).values():
            see_folio(v) if isinstance(v, folio) else see_av(v) if isinstance(v, anon_vma) else None
    ksm = _ksm(k, namer, see_folio, see_av) if k.ksm is not None else None
    fields = anon_vma_fields(design)
    return {
        "processes": processes,
        "folios": [_folio(f) for f in sorted(folios.values(), key=_serial)],
        "anon_vmas": [_anon_vma(av, fields, vma_label) for av in sorted(avs.values(), key=_serial)],
        "ksm": ksm,
        "migrations": [_kthread(st, i) for i, st in enumerate(k.migrations)],
        "walks": [_kthread(st, len(k.migrations) + i) for i, st in enumerate(k.walks)],
        "holders": [_holders(k, o, namer, fields) for o in involved],
    }


def _serial(o: SlabObject) -> tuple[int, int]:
    return (o._alloc[2], o._slot) if o._alloc else (-1, o._slot)


def _process(task: Any, mm: mm_struct, npages: int, vma_label: Any, see_folio: Any, see_av: Any) -> dict[str, Any]:
    # One process: its VMAs meeting the arena and its present PTEs there.
    lo, hi = _ARENA_VPN, _ARENA_VPN + npages
    vmas = []
    for v in sorted((v for v in mm.mmap if v.vm_end > lo and v.vm_start < hi), key=lambda v: v.vm_start):
        see_av(v.anon_vma)
        for avc in v.anon_vma_chain:
            see_av(avc.anon_vma)
        vmas.append({
            "name": object_name(v),
            "label": vma_label(v),
            "start": _arena_page(v.vm_start),
            "end": _arena_page(v.vm_end),
            "pgoff": _arena_page(v.vm_pgoff),
            # as /proc/<pid>/maps shows it
            "prot": "".join(c if v.vm_flags & bit else "-" for c, bit in (("r", VM_READ), ("w", VM_WRITE),
                                                                          ("x", VM_EXEC))),
            "mergeable": bool(v.vm_flags & VM_MERGEABLE),
            "anon_vma": _name(v.anon_vma),
            "chains": [_name(avc.anon_vma) for avc in v.anon_vma_chain],
            "freed": _freed(v),
        })
    ptes = []
    for vpn in range(lo, hi):
        pte = mm.pgtable.get(vpn)
        if pte is None:
            continue
        f, migration = pte[0], False
        if isinstance(f, migration_entry):
            f, migration = f.folio, True
        see_folio(f)
        ptes.append({"page": _arena_page(vpn), "folio": object_name(f), "writable": bool(pte[1]),
                     "migration": migration, "zero": f is ZERO_PAGE})
    return {"name": task.comm, "pid": task.pid, "mm": object_name(mm), "vmas": vmas, "ptes": ptes}


def _folio(f: folio) -> dict[str, Any]:
    mapping = f.mapping
    return {
        "name": object_name(f),
        "symbol": object_symbol(f),
        "pfn": f.pfn(),
        "mapping": _name(mapping),
        "mapping_kind": "anon_vma" if isinstance(mapping, anon_vma) else ("ksm" if mapping is not None else None),
        "index": _arena_page(f.index) if f.index >= _ARENA_VPN else f.index,
        "mapcount": f._mapcount,
        "refcount": f._refcount,
        "ksm": bool(f.ksm),
        "anon_exclusive": bool(f.anon_exclusive),
        "locked": bool(f.locked),
        "content": f.content,
        "freed": _freed(f),
    }


def _anon_vma(av: anon_vma, fields: tuple[tuple[str, str], ...], vma_label: Any) -> dict[str, Any]:
    chains = []
    for avc in av.rb_root:
        v = avc.vma
        chains.append({
            "name": object_name(avc),
            "vma": _name(v),
            "label": vma_label(v) if v is not None else None,
            "start": _arena_page(v.vm_start) if v is not None else None,
            "end": _arena_page(v.vm_end) if v is not None else None,
            "pgoff": _arena_page(v.vm_pgoff) if v is not None else None,
        })
    lock = "write" if av.rwsem_writer else (f"read x{av.rwsem_readers}" if av.rwsem_readers else "")
    return {
        "name": object_name(av),
        "symbol": object_symbol(av),
        "root": object_name(av.root),
        "parent": object_name(av.parent),
        "counters": [[kernel_name, getattr(av, field)] for field, kernel_name in fields],
        "chains": chains,
        "lock": lock,
        "freed": _freed(av),
    }


def _slots(o: Any) -> dict[str, Any]:
    return {n: getattr(o, n) for c in type(o).__mro__ for n in c.__dict__.get("__slots__", ()) if hasattr(o, n)}


def _ksm(k: Any, namer: Namer, see_folio: Any, see_av: Any) -> dict[str, Any]:
    # KSM's stable tree (nodes, chains and their dups), unstable tree, rmap_items, mm slots, counters.
    from rmapcheck.model.ksm import STABLE_FLAG, STABLE_NODE_CHAIN, UNSTABLE_FLAG, ksm_counters

    st = k.ksm
    page_of_pfn = {f.pfn(): f for f in k.page_alloc.live()}

    def node(n: Any) -> dict[str, Any]:
        kind = "dup" if n.head is not None else ("chain" if n.rmap_hlist_len == STABLE_NODE_CHAIN else "node")
        page = page_of_pfn.get(n.kpfn)
        if page is not None:
            see_folio(page)
        entry: dict[str, Any] = {"name": object_name(n), "kind": kind, "kpfn": n.kpfn, "page": _name(page),
                                 "rmap_hlist_len": n.rmap_hlist_len, "freed": _freed(n)}
        if kind == "chain":
            entry["dups"] = [node(d) for d in n.hlist]
        else:
            entry["items"] = [object_name(r) for r in n.hlist]
        return entry

    # The rmap_items of the mm slots, then any other an rmap_item list or a tree still holds.
    found: dict[int, Any] = {}
    for slot in st.mm_list:
        for r in slot.rmap_list:
            found.setdefault(id(r), r)
    for n in st.root_stable_tree.values():
        for x in ([n] if n.rmap_hlist_len != STABLE_NODE_CHAIN else n.hlist):
            for r in x.hlist:
                found.setdefault(id(r), r)
    for r in st.root_unstable_tree.values():
        found.setdefault(id(r), r)
    items = []
    for r in found.values():
        see_av(r.anon_vma)
        state = "stable" if r.flags & STABLE_FLAG else ("unstable" if r.flags & UNSTABLE_FLAG else "")
        items.append({"name": object_name(r), "proc": r.mm.owner if r.mm is not None else "?",
                      "place": namer.place(r.address), "state": state, "anon_vma": _name(r.anon_vma),
                      "stable_node": _name(r.head), "freed": _freed(r)})
    return {
        "counters": dict(sorted(ksm_counters(k).items())),
        "stable_tree": [node(n) for _key, n in sorted(st.root_stable_tree.items(), key=lambda kv: _serial(kv[1]))],
        "unstable_tree": [object_name(r) for _key, r in sorted(st.root_unstable_tree.items(),
                                                              key=lambda kv: _serial(kv[1]))],
        "rmap_items": items,
        "mm_slots": [{"name": object_name(s), "proc": s.mm.owner if s.mm is not None else "?"} for s in st.mm_list],
    }


# What each field of a kernel thread in flight holds, by the flag that says it is held.
_REFERENCES = {
    "MigrationState": (
        ("src", "isolated", "the isolation reference of the old folio (folio_isolate_lru)"),
        ("src", "src_locked", "the old folio's lock (folio_lock)"),
        ("dst", "dst_ref", "the new folio's allocation reference"),
        ("dst", "dst_locked", "the new folio's lock"),
        ("anon_vma", None, "a pin on the anon_vma (folio_get_anon_vma)"),
        ("rcu_anon_vma", None, "folio->mapping read under RCU, not pinned (yet)"),
    ),
    "ReclaimWalk": (
        ("folio", None, "the isolated, locked folio (folio_isolate_lru, folio_trylock)"),
        ("anon_vma", None, "the anon_vma read from folio->mapping"),
        ("root", None, "the root's rwsem, held for the walk (anon_vma_lock_read)"),
    ),
}


def _kthread(st: Any, number: int) -> dict[str, Any]:
    # A migration or reclaim walk in flight: its phase and the references it holds.
    kind = type(st).__name__
    fields = _slots(st)
    refs = []
    for field, flag, what in _REFERENCES.get(kind, ()):
        o = fields.get(field)
        if o is not None and (flag is None or fields.get(flag)):
            refs.append({"object": object_name(o), "field": field, "what": what, "freed": _freed(o)})
    return {"number": number, "kind": "migration" if kind == "MigrationState" else "reclaim walk",
            "phase": st.phase, "folio": object_name(st.src if kind == "MigrationState" else st.folio),
            "references": refs}


def _holders(k: Any, o: Any, namer: Namer, fields: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    if isinstance(o, anon_vma):
        counts = {kernel_name: getattr(o, field) for field, kernel_name in fields}
    elif isinstance(o, folio):
        counts = {"mapcount": o._mapcount, "refcount": o._refcount}
    return {"object": object_name(o), "freed": _freed(o), "counters": counts,
            "holders": [{"name": h.name, "object": _name(h.holder) if isinstance(h.holder, SlabObject) else None,
                         "field": h.field} for h in reference_holders(k, o, namer)]}
