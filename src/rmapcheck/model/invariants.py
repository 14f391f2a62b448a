"""Invariants checked between operations (docs/kernel-rules.md §G/§I, docs/history.md §5).

Each check raises the finding of its kind, naming the objects involved:

* I1 every mapped anon folio's anon_vma is on the chain of every VMA that maps
  it, at the folio's page offset (``__page_check_anon_rmap()``);
* I2 VMAs with the same ``->anon_vma`` have the same set of anon_vmas on their
  chains (what ``is_mergeable_anon_vma()`` callers assume);
* I3 ``num_active_vmas`` equals the VMAs pointing at the anon_vma,
  ``num_children`` the anon_vmas whose ``->parent`` points at it and whose tree
  is not empty, ``refcount`` the tree's own reference plus one per child pinning
  it as root plus external holders (KSM, migration);
* I4 no rwsem and no folio lock is held on return to user space, but by a
  preempted kernel thread of the model checker (a reclaim walk, a migration);
* I5 KSM (through the ``ksm_invariants`` hook, :func:`rmapcheck.model.ksm.validate_ksm`):
  a mapped KSM folio's stable node is live and points back to it, the stable
  tree holds no content duplicates (docs/kernel-rules.md I25), KSM's counters
  match its structures;
* I6 no counter is below zero;
* nothing reachable points to a freed object (KASAN), and every allocated
  object is reachable (kmemleak).

A finding raised here is no kernel access: its ``detector`` is
``check_invariants`` and its ``invariant`` the one violated, in words
(:data:`INVARIANTS`); the objects it names are its ``obj``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.findings import (
    InvariantViolation, Leak, LockMisuse, RefcountUnderflow, RmapFinding, UseAfterFree,
)
from rmapcheck.model.mm_types import ZERO_PAGE, anon_vma, folio, vm_area_struct
from rmapcheck.model.kthreads import kthread_locked_folios, kthreads
from rmapcheck.model.vmscan import reclaim_held_roots

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = ["INVARIANTS", "INVARIANT_OPS", "anon_vma_counters_v6_1", "check_invariants"]

#: the invariants :func:`check_invariants` checks, by name, in words
INVARIANTS = {
    "KASAN": "nothing reachable points to a freed object",
    "kmemleak": "every allocated object is reachable",
    "VMA tree": "an mm's VMA tree is sorted, disjoint and its own",
    "chains": "every anon_vma_chain links a VMA on whose chain it is and sits in its anon_vma's interval tree",
    "I1": "a mapped page's anon_vma is on the chain of every VMA that maps it, at the page's offset",
    "I2": "VMAs with the same anon_vma have the same anon_vma chains",
    "I3": "an anon_vma's counters count its VMAs, its children and the references held on it",
    "I4": "no rwsem is held on return to user space",
    "I6": "no counter is below zero",
    "page counts": "a page's mapcount and refcount count its mappings and the references held on it",
}


def _broken(invariant: str, e: RmapFinding) -> RmapFinding:
    # The finding e, naming the invariant of INVARIANTS it violates.
    e.invariant = invariant
    return e


def _freed(obj: Any, where: str) -> RmapFinding:
    # KASAN: ``where`` points to ``obj``, which is free.
    return _broken("KASAN", UseAfterFree("check_invariants", f"{where} points to freed {obj.kname()}", obj))


def check_invariants(k: Kernel) -> None:
    """Check every invariant of the kernel state; raise the first violation.

    It runs once per new state of an exploration, so its loops test ``_live``
    in line and build nothing a clean state does not need (the kernel
    threads' locks, the roots reclaim holds, the lists of live objects); the
    checks and their order stay those of the module's docstring.
    """
    fn = "check_invariants"
    if k.warnings:
        w = k.warnings[0]
        k.warnings.clear()
        raise w
    vmas: list[vm_area_struct] = []
    live_mms = set()
    for t in k.tasks.values():
        mm = t.mm
        if mm is not None and not mm._live:
            raise _freed(mm, "task->mm")
        live_mms.add(mm)
        prev_end = None
        for v in mm.mmap:
            if v is not None and not v._live:
                raise _freed(v, "mm VMA tree")
            if v.vm_mm is not mm:
                raise _broken("VMA tree", InvariantViolation(fn, f"VMA {v.kname()} in {t.comm} has vm_mm of another mm", v))
            if v.vm_start >= v.vm_end or (prev_end is not None and v.vm_start < prev_end):
                raise _broken("VMA tree", InvariantViolation(fn, f"VMA tree of {t.comm} is not sorted and disjoint", v))
            prev_end = v.vm_end
            vmas.append(v)

    k.ops.ksm_invariants(k)
    ext = k.ops.anon_vma_external_refs(k)
    active: dict[anon_vma, int] = {}
    chain_sets: dict[anon_vma, frozenset[anon_vma]] = {}
    seen_avcs = set()
    for v in vmas:
        chain = v.anon_vma_chain
        avs = []
        for avc in chain:
            if avc is not None and not avc._live:
                raise _freed(avc, "vma->anon_vma_chain")
            av = avc.anon_vma
            if av is not None and not av._live:
                raise _freed(av, "anon_vma_chain->anon_vma")
            if avc.vma is not v:
                raise _broken("chains", InvariantViolation(
                    fn, f"{avc.kname()} on {v.kname()}'s chain has vma {avc.vma.kname()}", avc))
            if avc not in av.rb_root:
                raise _broken("chains", InvariantViolation(
                    fn, f"{avc.kname()} missing from {av.kname()}'s interval tree", avc))
            seen_avcs.add(avc)
            avs.append(av)
        cs = frozenset(avs)
        if len(cs) != len(avs):
            raise _broken("chains", InvariantViolation(fn, f"{v.kname()} is chained twice to one anon_vma", v))
        a = v.anon_vma
        if a is None:
            if chain:
                raise _broken("chains", InvariantViolation(fn, f"{v.kname()} has a chain but no anon_vma", v))
            continue
        if not a._live:
            raise _freed(a, "vma->anon_vma")
        if a not in cs:
            raise _broken("chains", InvariantViolation(fn, f"{v.kname()}->anon_vma {a.kname()} is not on its chain", a))
        active[a] = active.get(a, 0) + 1
        other = chain_sets.setdefault(a, cs)
        if other != cs:
            raise _broken("I2", InvariantViolation(
                fn, f"VMAs sharing {a.kname()} have different anon_vma chains (is_mergeable_anon_vma assumption)", a))

    # The cache is SLAB_TYPESAFE_BY_RCU: its objects include the freed ones.
    anon_vmas = k.anon_vma_cachep.objects.values()
    children: dict[anon_vma, int] = {}
    pins: dict[anon_vma, int] = {}
    for a in anon_vmas:
        if not a._live:
            continue
        root = a.root
        if root is not a:
            pins[root] = pins.get(root, 0) + 1
        if a.rb_root:
            # Only an anon_vma in use by VMAs must have a live root and parent:
            # one held by KSM or migration alone may point to a freed root,
            # and KASAN reports that when (and only if) it is touched.
            if root is not None and not root._live:
                raise _freed(root, "anon_vma->root")
            parent = a.parent
            if parent is not None and not parent._live:
                raise _freed(parent, "anon_vma->parent")
            children[parent] = children.get(parent, 0) + 1
            for avc in a.rb_root:
                if avc is not None and not avc._live:
                    raise _freed(avc, "anon_vma's interval tree")
                if avc not in seen_avcs:
                    raise _broken("chains", InvariantViolation(
                        fn, f"{avc.kname()} in {a.kname()}'s tree is on no live VMA's chain", avc))
    counters = k.ops.anon_vma_counter_invariants
    for a in anon_vmas:
        if not a._live:
            continue
        e = ext.get(a, 0)
        p = pins.get(a, 0)
        if not a.rb_root and not e and not p:
            # No VMA, no child and no external holder: it should have been
            # freed ("we must garbage collect the anon_vma object itself").
            raise _broken("kmemleak", Leak(fn, f"unreferenced object {a.kname()} (refcount {a.refcount})", a))
        msg = counters(k, a, active.get(a, 0), children.get(a, 0), p, e)
        if msg:
            raise _broken("I3", InvariantViolation(fn, f"{a.kname()}: {msg}", a))
        # A preempted reclaim walk holds its root's rwsem (the checker's phases).
        if (a.rwsem_writer or a.rwsem_readers) and id(a) not in reclaim_held_roots(k):
            raise _broken("I4", LockMisuse(fn, f"rwsem of {a.kname()} held on return to user space", a))

    # I1: folios, their mappings and their anon_vmas.
    maps: dict[folio, int] = {}
    no_chain: frozenset[anon_vma] = frozenset()
    for v in vmas:
        pt = v.vm_mm.pgtable
        cs = chain_sets.get(v.anon_vma) if v.anon_vma is not None else no_chain
        for vpn in range(v.vm_start, v.vm_end):
            pte = pt.get(vpn)
            if pte is None:
                continue
            f = pte[0]
            if f is ZERO_PAGE or type(f) is not folio:
                continue  # the zero page, or a migration entry (no mapcount)
            if not f._live:
                raise _freed(f, "a PTE")
            maps[f] = maps.get(f, 0) + 1
            av = f.mapping
            if isinstance(av, anon_vma):
                if not av._live:
                    raise _freed(av, "folio->mapping")
                if cs is None or av not in cs:
                    raise _broken("I1", InvariantViolation(
                        fn, f"page {f.pfn()} mapped by {v.kname()} of {v.vm_mm.owner} but its anon_vma "
                            f"{av.kname()} is not on the VMA's chain (rmap walk would miss it)", f))
                if f.index != vpn - v.vm_start + v.vm_pgoff:
                    raise _broken("I1", InvariantViolation(
                        fn, f"page {f.pfn()} index {f.index:#x} does not match {v.kname()} at {vpn:#x}", f))
            elif not f.ksm:
                raise _broken("I1", InvariantViolation(fn, f"mapped page {f.pfn()} has no anon_vma", f))
            elif av is not None and not av._live:
                # A KSM folio's mapping is its stable node (PAGE_MAPPING_KSM).
                raise _freed(av, "KSM folio->mapping")
    fext = k.ops.folio_external_refs(k)
    kthread_locked = None  # id() of the folios preempted kernel threads hold locked
    for f in k.page_alloc.objects.values():
        if not f._live:
            continue
        if f.locked:
            if kthread_locked is None:
                kthread_locked = {id(g) for st in kthreads(k) for g in kthread_locked_folios(st)}
            if id(f) not in kthread_locked:
                raise LockMisuse(fn, f"page {f.pfn()} locked on return to user space", f)
        mapped = maps.get(f, 0)
        if f._mapcount != mapped:
            raise _broken("page counts", InvariantViolation(
                fn, f"page {f.pfn()}: mapcount {f._mapcount}, mapped {mapped} times", f))
        want = mapped + fext.get(f, 0)
        if f._refcount != want:
            if want == 0:
                raise _broken("kmemleak", Leak(fn, f"unreferenced object page {f.pfn()} (refcount {f._refcount})", f))
            raise _broken("page counts", InvariantViolation(
                fn, f"page {f.pfn()}: refcount {f._refcount}, expected {want}", f))

    # kmemleak: every allocated VMA, AVC and mm is reachable.
    if k.vm_area_cachep.nr_live != len(vmas):
        vs = set(vmas)
        for v in k.vm_area_cachep.live():
            if v not in vs:
                raise _broken("kmemleak", Leak(fn, f"unreferenced object {v.kname()}", v))
    if k.anon_vma_chain_cachep.nr_live != len(seen_avcs):
        for avc in k.anon_vma_chain_cachep.live():
            if avc not in seen_avcs:
                raise _broken("kmemleak", Leak(fn, f"unreferenced object {avc.kname()}", avc))
    # KSM's mm_slots keep exited mms (mmgrab()) until ksmd frees the slot.
    live_mms |= k.ops.mm_external_refs(k)
    if k.mm_cachep.nr_live != len(live_mms):
        for mm in k.mm_cachep.live():
            if mm not in live_mms:
                raise _broken("kmemleak", Leak(fn, f"unreferenced object {mm.kname()}", mm))


def anon_vma_counters_v6_1(k: Kernel, a: anon_vma, active: int, children: int, pins: int,
                           ext: int) -> str | None:
    """The anon_vma counters of Linux kernel commit 2555283eb40d (in v6.1) through v6.18.

    ``num_active_vmas`` counts the VMAs pointing here, ``num_children`` the
    children (the self-parent link of a root included) whose tree is not
    empty, and ``refcount`` is one for the tree while it is not empty, plus one
    per child pinning this root, plus the external holders.

    :returns: what is wrong (``None`` if nothing).
    """
    if a.refcount < 0 or a.num_children < 0 or a.num_active_vmas < 0:
        for name, val in (("refcount", a.refcount), ("num_children", a.num_children),
                          ("num_active_vmas", a.num_active_vmas)):
            if val < 0:
                raise _broken("I6", RefcountUnderflow("check_invariants", f"{name} of {a.kname()} is {val}", a))
    if a.num_active_vmas != active:
        return f"num_active_vmas {a.num_active_vmas} but {active} VMAs point to it"
    if a.num_children != children:
        return f"num_children {a.num_children} but {children} children"
    want = (1 if a.rb_root else 0) + pins + ext
    if a.refcount != want:
        return f"refcount {a.refcount}, expected {want}"
    return None


def _no_external_refs(k: Kernel) -> dict:
    # Without KSM or migration no one outside the VMAs holds a reference.
    return {}


def _no_mm_refs(k: Kernel) -> set:
    # Without KSM no one but a task keeps an mm.
    return set()


def _no_ksm_invariants(k: Kernel) -> None:
    # Without KSM there is nothing more to check.
    return None


#: The invariant checker's hooks a design (KSM, an older counting) replaces, by name.
INVARIANT_OPS: dict[str, Callable[..., Any]] = {
    "anon_vma_counter_invariants": anon_vma_counters_v6_1,
    "anon_vma_external_refs": _no_external_refs,
    "folio_external_refs": _no_external_refs,
    "ksm_invariants": _no_ksm_invariants,
    "mm_external_refs": _no_mm_refs,
}
