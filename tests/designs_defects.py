"""Throwaway designs for the checker's tests: linux-6.18 with one planted defect each.

A property that cannot fail proves nothing. Each design here is the running
kernel's table (:mod:`rmapcheck.designs.linux_6_18`) with one function
replaced by a subtly broken copy, so that one property of
:data:`rmapcheck.check.properties.ALWAYS` must fail. :data:`DEFECTS` maps a
design name to ``(module, property, function, bounds, also)``: the property and
the function its shortest finding must name, the small bounds at which the
defect is reachable, and what else the same defect makes the kernel report
there (empty for all but one). :data:`DEEP_DEFECTS` has the same shape for
defects that need at least eight actions from the empty start, beyond what
breadth-first search reaches (``tests/test_hunt.py`` hunts them).
:func:`register` makes the designs of both known to
:func:`rmapcheck.designs.get_design` for one test.
"""

from __future__ import annotations

import errno
import sys
import types
from typing import Any

from rmapcheck.check.hunt import HUNT_DEPTH
from rmapcheck.check.model import Bounds
from rmapcheck.designs import linux_6_18
from rmapcheck.model import rmap
from rmapcheck.model.findings import KernelWarning, RefcountUnderflow
from rmapcheck.model.memory import wp_page_copy
from rmapcheck.model.mm_types import ZERO_PAGE
from rmapcheck.model.rmap import (
    lock_anon_vma_root, unlock_anon_vma_root, anon_vma_alloc, anon_vma_chain_alloc,
    anon_vma_chain_free, anon_vma_chain_link, anon_vma_lock_write,
    anon_vma_unlock_write, folio_anon_vma, get_anon_vma, put_anon_vma,
)
from rmapcheck.model.slab import kasan_check

BASE = linux_6_18.OPS

#: fork, exit and unmap between two processes sharing one page
FORK_EXIT = Bounds(processes=2, regions=1, pages=1, contents=1, depth=5,
                   ops=("write", "fork", "exit", "munmap"))

#: one process mapping, faulting and unmapping (slab reuse)
SOLO = Bounds(processes=1, regions=1, pages=1, contents=1, depth=4, ops=("write", "mmap", "munmap"))

#: a parent and a child sharing two pages, splitting and exiting, with one
#: allocation failure in any attempt or from any attempt on
ERROR_PATH = Bounds(processes=2, regions=1, pages=2, contents=1, depth=2, forked=True,
                    ops=("write", "exit", "mprotect"), faults=1)


# -- unlink_anon_vmas variants ------------------------------------------------------

def _unlink(k, vma, *, dec_children=True, dec_active=True, keep_continue=True, put=True):
    # A copy of rmap.unlink_anon_vmas (v6.18) with switches that break one line each.
    fn = "unlink_anon_vmas"
    root = None
    keep = []
    for avc in list(vma.anon_vma_chain):
        av = avc.anon_vma
        root = lock_anon_vma_root(k, root, av, fn)
        av.rb_root.remove(avc)
        if not av.rb_root:
            if dec_children:
                av.parent.num_children -= 1
                if av.parent.num_children < 0:
                    raise RefcountUnderflow(fn, f"num_children of {av.parent.kname()} below zero")
            keep.append(avc)
            if keep_continue:
                continue
        anon_vma_chain_free(k, avc, fn)
    vma.anon_vma_chain = keep
    if vma.anon_vma is not None:
        if dec_active:
            vma.anon_vma.num_active_vmas -= 1
        if dec_active == "twice":
            # the second decrement escapes the kernel's own underflow check
            vma.anon_vma.num_active_vmas -= 1
        elif vma.anon_vma.num_active_vmas < 0:
            raise RefcountUnderflow(fn, f"num_active_vmas of {vma.anon_vma.kname()} below zero")
        vma.anon_vma = None
    unlock_anon_vma_root(k, root, fn)
    for avc in keep:
        av = avc.anon_vma
        if av.num_children:
            k.warnings.append(KernelWarning(fn, f"VM_WARN_ON(anon_vma->num_children) on {av.kname()}"))
        if av.num_active_vmas:
            k.warnings.append(KernelWarning(fn, f"VM_WARN_ON(anon_vma->num_active_vmas) on {av.kname()}"))
        if put:
            put_anon_vma(k, av, fn)
        anon_vma_chain_free(k, avc, fn)
    vma.anon_vma_chain = []


def unlink_double_free(k, vma):
    """The empty anon_vma's chain entry is freed in the first pass (no ``continue``) and again in the second."""
    _unlink(k, vma, keep_continue=False)


def unlink_no_put(k, vma):
    """The second pass forgets ``put_anon_vma()``: an emptied anon_vma is never freed."""
    _unlink(k, vma, put=False)


def unlink_active_twice(k, vma):
    """``num_active_vmas`` is decremented twice for the VMA's own anon_vma."""
    _unlink(k, vma, dec_active="twice")


def unlink_keep_active(k, vma):
    """``num_active_vmas`` is never decremented: the final put finds it non-zero."""
    _unlink(k, vma, dec_active=False)


# -- anon_vma_fork variants ----------------------------------------------------------

def _fork(k, vma, pvma, *, pin_root=True, count_active=True):
    # A copy of rmap.anon_vma_fork (v6.18) with switches that break one line each.
    fn = "anon_vma_fork"
    if pvma.anon_vma is None:
        return 0
    vma.anon_vma = None
    if k.ops.anon_vma_clone(k, vma, pvma):
        return -errno.ENOMEM
    if vma.anon_vma is not None:
        return 0
    av = anon_vma_alloc(k, fn)
    if av is None:
        k.ops.unlink_anon_vmas(k, vma)
        return -errno.ENOMEM
    if count_active:
        av.num_active_vmas += 1
    avc = anon_vma_chain_alloc(k, fn)
    if avc is None:
        put_anon_vma(k, av, fn)
        k.ops.unlink_anon_vmas(k, vma)
        return -errno.ENOMEM
    kasan_check(pvma.anon_vma, fn)
    av.root = pvma.anon_vma.root
    av.parent = pvma.anon_vma
    if pin_root:
        get_anon_vma(k, av.root, fn)
    vma.anon_vma = av
    anon_vma_lock_write(k, av, fn)
    anon_vma_chain_link(k, vma, avc, av)
    av.parent.num_children += 1
    anon_vma_unlock_write(k, av, fn)
    return 0


def fork_no_root_pin(k, vma, pvma):
    """The child anon_vma does not pin its root (B0 in today's counting)."""
    return _fork(k, vma, pvma, pin_root=False)


def fork_no_active(k, vma, pvma):
    """The child's anon_vma does not count the VMA that points to it."""
    return _fork(k, vma, pvma, count_active=False)


def counters_no_root_pin(k, a, active, children, pins, ext):
    """The counters that :func:`fork_no_root_pin` keeps: no pin per child on the root."""
    want = (1 if a.rb_root else 0) + ext
    if a.num_active_vmas != active:
        return f"num_active_vmas {a.num_active_vmas} but {active} VMAs point to it"
    if a.refcount != want:
        return f"refcount {a.refcount}, expected {want}"
    return None


# -- reference counting -----------------------------------------------------------

def put_root_off_by_one(k, av, function="__put_anon_vma"):
    """``__put_anon_vma`` frees the root when its refcount reaches one, not zero."""
    root = av.root
    k.ops.anon_vma_free(k, av, function)
    if root is not av:
        kasan_check(root, function)
        root.refcount -= 1
        if root.refcount <= 1:
            k.ops.anon_vma_free(k, root, function)


# -- locking ------------------------------------------------------------------------

def prepare_no_unlock(k, vma):
    """``__anon_vma_prepare`` returns with the new anon_vma's rwsem still held for write."""
    fn = "__anon_vma_prepare"
    avc = anon_vma_chain_alloc(k, fn)
    if avc is None:
        return -errno.ENOMEM
    av = k.ops.find_mergeable_anon_vma(k, vma)
    allocated = None
    if av is None:
        av = anon_vma_alloc(k, fn)
        if av is None:
            anon_vma_chain_free(k, avc, fn)
            return -errno.ENOMEM
        av.num_children += 1
        allocated = av
    anon_vma_lock_write(k, av, fn)
    if vma.anon_vma is None:
        vma.anon_vma = av
        anon_vma_chain_link(k, vma, avc, av)
        av.num_active_vmas += 1
        return 0  # the defect: no anon_vma_unlock_write() on this path
    anon_vma_unlock_write(k, av, fn)
    if allocated is not None:
        put_anon_vma(k, allocated, fn)
    anon_vma_chain_free(k, avc, fn)
    return 0


# -- rmap walks ----------------------------------------------------------------------

def rmap_walk_anon_skip_first(k, f, rmap_one, locked=False):
    """``rmap_walk_anon`` that starts at the second entry of the interval tree."""
    fn = "rmap_walk_anon"
    av = folio_anon_vma(f)
    if av is None:
        return
    if not locked:
        rmap.anon_vma_lock_read(k, av, fn)
    try:
        pgoff = f.index
        for avc in list(av.rb_root)[1:]:
            vma = avc.vma
            kasan_check(vma, fn)
            if not (vma.vm_pgoff <= pgoff <= vma.last_pgoff()):
                continue
            if rmap_one(vma, vma.vm_start + pgoff - vma.vm_pgoff) is False:
                break
    finally:
        if not locked:
            rmap.anon_vma_unlock_read(k, av, fn)


# -- error paths ---------------------------------------------------------------------

def clone_unwind_keeps_links(k, dst, src):
    """``anon_vma_clone`` whose ``enomem_failure`` forgets ``unlink_anon_vmas(dst)``.

    Reached only when both attempts for one chain entry fail (``GFP_NOWAIT``,
    then ``GFP_KERNEL``) after an earlier entry was linked: a persistent
    failure from the second attempt on (``fail=anon_vma_chain_alloc@2*``).
    A failure of one attempt alone is retried and succeeds.
    """
    fn = "anon_vma_clone"
    root = None
    for pavc in reversed(src.anon_vma_chain):
        avc = anon_vma_chain_alloc(k, fn)
        if avc is None:
            unlock_anon_vma_root(k, root, fn)
            root = None
            avc = anon_vma_chain_alloc(k, fn)
            if avc is None:
                dst.anon_vma = None
                return -errno.ENOMEM  # the defect: what was linked to dst stays linked
        av = pavc.anon_vma
        root = lock_anon_vma_root(k, root, av, fn)
        anon_vma_chain_link(k, dst, avc, av)
        if dst.anon_vma is None and k.ops.anon_vma_reusable(k, av, src):
            dst.anon_vma = av
    if dst.anon_vma is not None:
        dst.anon_vma.num_active_vmas += 1
    unlock_anon_vma_root(k, root, fn)
    return 0


def rmap_walk_ksm_no_new_forks(k, f, rmap_one, locked=False):
    """``rmap_walk_ksm`` without its second pass: forks made since ksmd passed are not searched."""
    fn = "rmap_walk_ksm"
    kasan_check(f, fn)
    node = f.stable_node
    if node is None:
        return
    for item in list(node.hlist):
        av = item.anon_vma
        rmap.anon_vma_lock_read(k, av, fn)
        try:
            for avc in list(av.rb_root):
                vma = avc.vma
                if vma.vm_start <= item.address < vma.vm_end and vma.vm_mm is item.mm:
                    if rmap_one(vma, item.address) is False:
                        return
        finally:
            rmap.anon_vma_unlock_read(k, av, fn)


# -- faults ------------------------------------------------------------------------

def do_wp_page_reuse_shared(k, vma, vpn):
    """``do_wp_page`` that reuses any anonymous page in place, shared or not."""
    mm = vma.vm_mm
    f, _ = mm.pgtable[vpn]
    if f is not ZERO_PAGE:
        kasan_check(f, "do_wp_page")
        mm.pgtable[vpn] = (f, True)
        return
    wp_page_copy(k, vma, vpn, f)


def do_anonymous_page_typo(k, vma, vpn, write):
    """``do_anonymous_page`` with a typo: a Python exception inside a kernel function."""
    return vma.anon_vma_chian  # noqa: the planted typo


# -- deep defects -------------------------------------------------------------------

def _generation(av):
    # hops from an anon_vma to its root
    n = 0
    while av.parent is not av:
        av = av.parent
        n += 1
    return n


def fork_deep_uncounted(k, vma, pvma):
    """``anon_vma_fork`` that forgets to count the child's VMA in ``num_active_vmas``, but only
    for a split parent VMA whose new anon_vma is six generations below a root no VMA uses any more.

    It needs nine actions from the empty start: a write (the root), six forks in
    a line (one generation each; reuse on fork only ever gives a child an older
    anon_vma), the exit of the root's process and an ``mprotect`` split.
    """
    err = rmap.anon_vma_fork(k, vma, pvma)
    av = vma.anon_vma
    if not err and av is not None and _generation(av) >= 6 and av.root.num_active_vmas == 0 \
            and len(pvma.vm_mm.mmap) > 1:
        av.num_active_vmas -= 1
    return err


# -- the designs ----------------------------------------------------------------------

def _design(name: str, config: dict[str, Any] | None = None, **replace: Any) -> types.ModuleType:
    mod = types.ModuleType(f"rmapcheck.designs.{name}")
    mod.OPS = {**BASE, **replace}
    mod.CONFIG = {**linux_6_18.CONFIG, **(config or {})}
    mod.__doc__ = "; ".join(f"{fn} replaced by {f.__name__}" for fn, f in replace.items())
    return mod


#: design name → (module, planted property, function its shortest finding names, bounds,
#: other properties the same defect also violates at those bounds)
DEFECTS: dict[str, tuple[types.ModuleType, str, str, Bounds, frozenset[str]]] = {}


#: the same for defects beyond breadth-first reach (at least eight actions from the empty start)
DEEP_DEFECTS: dict[str, tuple[types.ModuleType, str, str, Bounds, frozenset[str]]] = {}


def _add(name, prop, function, bounds, config=None, also=(), table=DEFECTS, **replace):
    mod = _design("test_" + name.replace("-", "_"), config, **replace)
    table[name] = (mod, prop, function, bounds, frozenset(also))


# the child's unmap frees the root under the parent's VMA (the design counts
# no root pin): the invariants' KASAN walk sees it first, unlink_anon_vmas
# touches it when the parent unmaps too
_add("defect-use-after-free", "use-after-free", "check_invariants", FORK_EXIT,
     anon_vma_fork=fork_no_root_pin, anon_vma_counter_invariants=counters_no_root_pin)
# kmem_cache_free() of the chain entry a second time, in anon_vma_chain_free()
# (called from the broken unlink_anon_vmas(): its chain says so)
_add("defect-double-free", "double-free", "anon_vma_chain_free", FORK_EXIT,
     unlink_anon_vmas=unlink_double_free)
_add("defect-leak", "leak", "check_invariants", SOLO, unlink_anon_vmas=unlink_no_put)
# the counter goes to -1 unnoticed by the kernel (check_invariants, I6, sees
# it); where the anon_vma is then freed, the kernel's own VM_WARN_ON fires
_add("defect-counter-underflow", "counter-underflow", "check_invariants", FORK_EXIT, also=("vm-warn-on",),
     unlink_anon_vmas=unlink_active_twice)
# anon_vma_free's VM_BUG_ON, in anon_vma_free (the broken __put_anon_vma is its caller)
_add("defect-vm-bug-on", "vm-bug-on", "anon_vma_free", FORK_EXIT, __put_anon_vma=put_root_off_by_one)
_add("defect-vm-warn-on", "vm-warn-on", "unlink_anon_vmas", SOLO, unlink_anon_vmas=unlink_keep_active)
_add("defect-lock-misuse", "lock-misuse", "check_invariants", FORK_EXIT, __anon_vma_prepare=prepare_no_unlock)
_add("defect-missed-rmap-walk", "missed-rmap-walk", "try_to_migrate",
     Bounds(processes=2, regions=1, pages=1, contents=1, depth=3, forked=True, ops=("write", "exit", "migrate")),
     rmap_walk_anon=rmap_walk_anon_skip_first)
# the same property on a KSM folio: a child forked after the merge has no
# rmap_item of its own yet, and only the second pass would find its mapping
_add("defect-missed-rmap-walk-ksm", "missed-rmap-walk", "folio_check_references",
     Bounds(processes=2, regions=1, pages=2, contents=1, depth=5, forked=True, mergeable=True,
            ops=("exit", "fork", "ksm_scan", "reclaim")),
     rmap_walk_ksm=rmap_walk_ksm_no_new_forks)
_add("defect-invariant", "invariant", "check_invariants",
     Bounds(processes=2, regions=1, pages=1, contents=1, depth=3, ops=("write", "fork")),
     anon_vma_fork=fork_no_active)
_add("defect-data-corruption", "data-corruption", "data_integrity",
     Bounds(processes=2, regions=1, pages=1, contents=2, depth=4, ops=("write", "read", "fork")),
     do_wp_page=do_wp_page_reuse_shared)
_add("defect-model-error", "model-error", "AttributeError", FORK_EXIT, do_anonymous_page=do_anonymous_page_typo)
# an error path behind a retry: the split of the child's VMA (two chain
# entries to clone) with chain allocation failing from the second attempt on
_add("defect-error-path", "invariant", "check_invariants", ERROR_PATH, anon_vma_clone=clone_unwind_keeps_links)


# six processes, forks, exits and splits, as deep as the hunt goes
_add("defect-deep-fork", "invariant", "check_invariants",
     Bounds(processes=6, regions=1, pages=2, contents=1, depth=HUNT_DEPTH, ops=("write", "fork", "exit", "mprotect")),
     table=DEEP_DEFECTS, anon_vma_fork=fork_deep_uncounted)


def register(monkeypatch, name: str) -> None:
    """Make design ``name`` of :data:`DEFECTS` or :data:`DEEP_DEFECTS` known to :mod:`rmapcheck.designs`
    for one test."""
    import rmapcheck.designs as designs

    mod = {**DEFECTS, **DEEP_DEFECTS}[name][0]
    monkeypatch.setitem(designs.DESIGNS, name, mod.__name__.rsplit(".", 1)[1])
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
