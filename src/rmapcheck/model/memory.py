"""Page faults, copy-on-write, zapping and fork's page-table copy: ``mm/memory.c``, v6.18.

The PTE of a virtual page is ``mm.pgtable[vpn] = (folio, writable)``. The
shared zero page is :data:`~rmapcheck.model.mm_types.ZERO_PAGE`, mapped
read-only and never refcounted (``vm_normal_page()`` returns ``NULL`` for it).

A page under migration has a non-present PTE instead, a *migration entry*
(``include/linux/swapops.h``): ``(migration_entry(folio, exclusive), writable)``,
where ``writable`` is the ``SWP_MIGRATION_WRITE`` type and ``exclusive`` without
``writable`` is ``SWP_MIGRATION_READ_EXCLUSIVE``. A migration entry holds
neither a mapcount nor a reference of the folio (``try_to_migrate_one()``
dropped both); the migration's own reference keeps the folio alive. Use
:func:`is_migration_entry` before reading ``pte[0]`` as a folio.
A folio's ``_refcount`` equals its mapcount in this model: there is no swap
cache, GUP's references (:mod:`rmapcheck.model.gup`) are dropped within the
step that takes them, and the per-CPU LRU batches that may hold a transient
reference are drained (``lru_add_drain()`` in ``wp_can_reuse_anon_folio()``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.findings import Deadlock, KernelBug, KernelError, SegmentationFault
from rmapcheck.model.mm_types import (
    VM_EXEC, VM_MAYWRITE, VM_READ, VM_SHARED, VM_WRITE, ZERO_PAGE, folio, mm_struct, vm_area_struct,
)
from rmapcheck.model.slab import FastPickle, kasan_check
from rmapcheck.model.vma_init import vma_lookup

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "MEMORY_OPS",
    "copy_nonpresent_pte",
    "copy_page_range",
    "do_anonymous_page",
    "do_wp_page",
    "folio_lock",
    "folio_put",
    "folio_unlock",
    "handle_mm_fault",
    "handle_pte_fault",
    "is_migration_entry",
    "is_readable_migration_entry",
    "is_writable_migration_entry",
    "make_readable_exclusive_migration_entry",
    "make_readable_migration_entry",
    "make_writable_migration_entry",
    "migration_entry",
    "vma_alloc_folio",
    "wp_can_reuse_anon_folio",
    "wp_page_copy",
    "zap_vma_range",
]


class migration_entry(FastPickle):
    """A migration swap entry (``swp_entry_t`` of type ``SWP_MIGRATION_*``).

    :param folio: ``struct folio *`` under migration (``pfn_swap_entry_folio()``).
    :param exclusive: the entry is ``SWP_MIGRATION_READ_EXCLUSIVE`` or
        ``SWP_MIGRATION_WRITE``: the page was ``PageAnonExclusive`` (or
        writable) when it was unmapped, and is mapped exclusive again.
    """

    __slots__ = ("folio", "exclusive")

    def __init__(self, folio: folio, exclusive: bool) -> None:
        self.folio = folio
        self.exclusive = exclusive

    def __repr__(self) -> str:
        return f"migration_entry(page {self.folio.pfn()}, exclusive={self.exclusive})"


def make_writable_migration_entry(f: folio) -> tuple[migration_entry, bool]:
    """``make_writable_migration_entry()`` as a PTE (include/linux/swapops.h, v6.18)."""
    return (migration_entry(f, True), True)


def make_readable_exclusive_migration_entry(f: folio) -> tuple[migration_entry, bool]:
    """``make_readable_exclusive_migration_entry()`` as a PTE (include/linux/swapops.h, v6.18)."""
    return (migration_entry(f, True), False)


def make_readable_migration_entry(f: folio) -> tuple[migration_entry, bool]:
    """``make_readable_migration_entry()`` as a PTE (include/linux/swapops.h, v6.18)."""
    return (migration_entry(f, False), False)


def is_migration_entry(pte: object) -> bool:
    """``pte`` is a migration entry (include/linux/swapops.h, v6.18).

    ``is_swap_pte(pte) && is_migration_entry(pte_to_swp_entry(pte))``.
    """
    return isinstance(pte, tuple) and isinstance(pte[0], migration_entry)


def is_writable_migration_entry(pte: tuple) -> bool:
    """``is_writable_migration_entry()`` (include/linux/swapops.h, v6.18)."""
    return is_migration_entry(pte) and bool(pte[1])


def is_readable_migration_entry(pte: tuple) -> bool:
    """``is_readable_migration_entry()`` (include/linux/swapops.h, v6.18).

    ``SWP_MIGRATION_READ``: neither exclusive nor writable.
    """
    return is_migration_entry(pte) and not pte[1] and not pte[0].exclusive


def vma_alloc_folio(k: Kernel, content: int, function: str) -> folio | None:
    """``vma_alloc_folio()`` (mm/mempolicy.c, v6.18): one order-0 page, refcount 1."""
    if k.should_fail("vma_alloc_folio"):
        return None
    f = k.page_alloc.alloc(function)
    f.mapping = None
    f.index = 0
    f._mapcount = 0
    f._refcount = 1
    f.anon_exclusive = False
    f.content = content
    f.ksm = False
    f.stable_node = None
    f.locked = False
    return f


def folio_put(k: Kernel, f: folio, function: str = "folio_put") -> None:
    """``folio_put()`` (include/linux/mm.h, v6.18): free the page at refcount 0."""
    if f is ZERO_PAGE:
        return
    kasan_check(f, function)
    f._refcount -= 1
    if f._refcount == 0:
        k.page_alloc.free(f, function)
    elif f._refcount < 0:
        raise KernelBug(function, f"VM_BUG_ON_FOLIO(folio_ref_count(folio) == 0) page {f.pfn()}")


def folio_lock(k: Kernel, f: folio, function: str) -> None:
    """``folio_lock()`` (include/linux/pagemap.h, v6.18): take ``PG_locked``, sleeping while it is held.

    The model runs one thread at a time, so a folio locked already is a
    :class:`~rmapcheck.model.findings.Deadlock` naming the folio: run in
    sequence nothing would unlock it; in the model checker, where a preempted
    kernel thread (a migration, a reclaim walk) holds it, the task would sleep
    until the thread runs on, and the action is not started
    (:func:`~rmapcheck.model.kthreads.kthread_holds`).

    :param f: ``struct folio *``.
    :raises Deadlock: ``f`` is locked.
    """
    kasan_check(f, function)
    if f.locked:
        raise Deadlock(function, f"deadlock: folio_lock() of locked page {f.pfn()}", f)
    f.locked = True


def folio_unlock(k: Kernel, f: folio, function: str) -> None:
    """``folio_unlock()`` (mm/filemap.c, v6.18).

    :param f: ``struct folio *``, locked.
    :raises KernelBug: ``VM_BUG_ON_FOLIO(!folio_test_locked(folio), folio)``.
    """
    kasan_check(f, function)
    if not f.locked:
        raise KernelBug(function, f"VM_BUG_ON_FOLIO(!folio_test_locked(folio)) page {f.pfn()}")
    f.locked = False


def _access_error(vma: vm_area_struct, write: bool) -> bool:
    # access_error() (arch/x86/mm/fault.c): a write needs VM_WRITE; a read is
    # allowed by any of VM_READ, VM_WRITE, VM_EXEC.
    if write:
        return not vma.vm_flags & VM_WRITE
    return not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC)


def do_anonymous_page(k: Kernel, vma: vm_area_struct, vpn: int, write: bool) -> None:
    """``do_anonymous_page()`` (mm/memory.c, v6.18): fault on a page never mapped.

    A read maps the shared zero page ("Use the zero-page for reads") without
    needing an anon_vma; a write prepares the anon_vma (``vmf_anon_prepare()``),
    allocates a zeroed folio and maps it exclusive and writable.
    """
    fn = "do_anonymous_page"
    mm = vma.vm_mm
    if vma.vm_flags & VM_SHARED:
        raise KernelBug(fn, "shared anonymous VMAs are not modelled")
    if not write:
        mm.pgtable[vpn] = (ZERO_PAGE, False)
        return
    if k.ops.anon_vma_prepare(k, vma):
        raise KernelError(errno.ENOMEM, fn, "VM_FAULT_OOM")
    f = k.ops.vma_alloc_folio(k, 0, fn)
    if f is None:
        raise KernelError(errno.ENOMEM, fn, "VM_FAULT_OOM")
    k.ops.folio_add_new_anon_rmap(k, f, vma, vpn, True)
    mm.pgtable[vpn] = (f, bool(vma.vm_flags & VM_WRITE))


def wp_can_reuse_anon_folio(k: Kernel, f: folio, vma: vm_area_struct) -> bool:
    """``wp_can_reuse_anon_folio()`` (mm/memory.c, v6.18) for a small folio.

    "KSM doesn't necessarily raise the folio refcount": a KSM folio is never
    reused. Otherwise reuse iff this mapping holds the only reference; then the
    folio moves to the faulting VMA's anon_vma.
    """
    if f.ksm or f._refcount > 3:
        return False
    if f._refcount > 1:
        return False
    f.locked = True  # folio_trylock()
    if f.ksm or f._refcount != 1:
        f.locked = False
        return False
    k.ops.folio_move_anon_rmap(k, f, vma)
    f.locked = False
    return True


def wp_page_copy(k: Kernel, vma: vm_area_struct, vpn: int, old: folio, unshare: bool = False) -> None:
    """``wp_page_copy()`` (mm/memory.c, v6.18): break COW by copying into a new folio.

    A copy of the zero page is a zeroed folio (``vma_alloc_zeroed_movable_folio()``).

    :param unshare: an unsharing fault (``FAULT_FLAG_UNSHARE``, as KSM's
        ``break_ksm()`` takes): the new PTE stays read-only, without
        ``maybe_mkwrite(pte_mkdirty(entry), vma)``.
    :raises KernelError: ``ENOMEM`` (``VM_FAULT_OOM``).
    """
    fn = "wp_page_copy"
    mm = vma.vm_mm
    if k.ops.anon_vma_prepare(k, vma):  # vmf_anon_prepare()
        raise KernelError(errno.ENOMEM, fn, "VM_FAULT_OOM")
    new = k.ops.vma_alloc_folio(k, 0 if old is ZERO_PAGE else old.content, fn)
    if new is None:
        raise KernelError(errno.ENOMEM, fn, "VM_FAULT_OOM")
    if old is not ZERO_PAGE:
        kasan_check(old, fn)
    k.ops.folio_add_new_anon_rmap(k, new, vma, vpn, True)
    # maybe_mkwrite(pte_mkdirty(entry), vma): writable only with VM_WRITE (a
    # FOLL_FORCE write through /proc/PID/mem copies into a read-only PTE)
    mm.pgtable[vpn] = (new, not unshare and bool(vma.vm_flags & VM_WRITE))
    if old is not ZERO_PAGE:
        # Only after switching the pte to the new page may we remove the
        # mapcount here.
        k.ops.folio_remove_rmap_pte(k, old, vma)
        folio_put(k, old, fn)


def do_wp_page(k: Kernel, vma: vm_area_struct, vpn: int) -> None:
    """``do_wp_page()`` (mm/memory.c, v6.18): write to a present, write-protected PTE.

    An exclusive anon page (``PageAnonExclusive``) or one that
    ``wp_can_reuse_anon_folio()`` finds unshared is reused in place
    (``wp_page_reuse()``); anything else, the zero page and KSM pages included,
    is copied (``wp_page_copy()``).
    """
    mm = vma.vm_mm
    f, _ = mm.pgtable[vpn]
    if f is not ZERO_PAGE:
        kasan_check(f, "do_wp_page")
        if f.anon_exclusive or k.ops.wp_can_reuse_anon_folio(k, f, vma):
            f.anon_exclusive = True  # SetPageAnonExclusive()
            # wp_page_reuse(): maybe_mkwrite(pte_mkdirty(entry), vma)
            mm.pgtable[vpn] = (f, bool(vma.vm_flags & VM_WRITE))
            return
    k.ops.wp_page_copy(k, vma, vpn, f)


def handle_mm_fault(k: Kernel, mm: mm_struct, vpn: int, write: bool) -> folio:
    """``handle_mm_fault()`` (mm/memory.c, v6.18) as a user access reaches it.

    Looks up the VMA (``lock_vma_under_rcu()``), checks the access
    (``access_error()``, arch/x86/mm/fault.c) and resolves the fault through
    ``do_anonymous_page()`` or ``do_wp_page()``.

    :returns: the folio the access lands on.
    :raises SegmentationFault: no VMA, or the VMA forbids the access.
    """
    vma = vma_lookup(mm, vpn)
    if vma is None:
        raise SegmentationFault("handle_mm_fault", "no VMA at address")
    kasan_check(vma, "handle_mm_fault")
    if _access_error(vma, write):
        raise SegmentationFault("handle_mm_fault", "access_error")
    k.ops.handle_pte_fault(k, vma, vpn, write)
    return mm.pgtable[vpn][0]


def handle_pte_fault(k: Kernel, vma: vm_area_struct, vpn: int, write: bool) -> None:
    """``handle_pte_fault()`` (mm/memory.c, v6.18): resolve a fault the access checks allowed.

    A missing PTE goes to ``do_anonymous_page()``, a write to a read-only
    one to ``do_wp_page()``, a migration entry waits for its migration
    (``do_swap_page()``). The callers have checked the access: the arch's
    fault handler (:func:`handle_mm_fault`) or GUP's ``check_vma_flags()``.
    """
    mm = vma.vm_mm
    pte = mm.pgtable.get(vpn)
    if pte is not None and is_migration_entry(pte):
        # do_swap_page(): a migration entry. migration_entry_wait() sleeps
        # until the migration unlocks the folio, then the fault is retried. A
        # sequential model cannot sleep: the waiter lets the migration run to
        # its end first (see migrate.migration_entry_wait()).
        k.ops.migration_entry_wait(k, mm, vpn)
        pte = mm.pgtable.get(vpn)
        if pte is not None and is_migration_entry(pte):
            raise KernelBug("do_swap_page", f"migration entry at {vpn:#x} survived its migration")
    if pte is None:
        k.ops.do_anonymous_page(k, vma, vpn, write)
    elif write and not pte[1]:
        k.ops.do_wp_page(k, vma, vpn)


def zap_vma_range(k: Kernel, vma: vm_area_struct, start: int, end: int) -> None:
    """``zap_pte_range()`` (mm/memory.c, v6.18) over ``[start, end)`` of ``vma``.

    Clears each PTE, removes the rmap (``folio_remove_rmap_pte()``) and drops the
    mapping's reference; the mmu_gather frees pages whose refcount reaches zero
    (``tlb_finish_mmu()``), which the model does at once. A migration entry
    (``zap_nonpresent_ptes()``) is only cleared: it holds no mapcount and no
    reference, and the migration's ``remove_migration_ptes()`` will find no
    entry to restore there.
    """
    fn = "zap_pte_range"
    pt = vma.vm_mm.pgtable
    for vpn in range(max(start, vma.vm_start), min(end, vma.vm_end)):
        pte = pt.pop(vpn, None)
        if pte is None or is_migration_entry(pte):
            continue
        f = pte[0]
        if f is ZERO_PAGE:
            continue
        kasan_check(f, fn)
        k.ops.folio_remove_rmap_pte(k, f, vma)
        folio_put(k, f, fn)


def copy_page_range(k: Kernel, dst_vma: vm_area_struct, src_vma: vm_area_struct) -> int:
    """``copy_page_range()`` (mm/memory.c, v6.18): fork's copy of a VMA's PTEs.

    ``vma_needs_copy()``: an anonymous VMA without an anon_vma has no pages to
    copy. For each present PTE (``copy_present_pte()``) the folio gains a
    reference and a mapping (``folio_try_dup_anon_rmap_pte()`` clears
    ``PageAnonExclusive``), and a writable COW PTE is write-protected in both
    parent and child. Non-present entries go through ``copy_nonpresent_pte()``.
    """
    fn = "copy_present_pte"
    if src_vma.anon_vma is None:
        return 0
    src_pt = src_vma.vm_mm.pgtable
    dst_pt = dst_vma.vm_mm.pgtable
    for vpn in range(src_vma.vm_start, src_vma.vm_end):
        pte = src_pt.get(vpn)
        if pte is None:
            continue
        if is_migration_entry(pte):
            k.ops.copy_nonpresent_pte(k, dst_vma, src_vma, vpn, pte)
            continue
        f = pte[0]
        if f is ZERO_PAGE:
            dst_pt[vpn] = pte
            continue
        kasan_check(f, fn)
        f._refcount += 1  # folio_get()
        k.ops.folio_try_dup_anon_rmap_pte(k, f, dst_vma, src_vma)
        if pte[1]:
            src_pt[vpn] = (f, False)  # ptep_set_wrprotect()
        dst_pt[vpn] = (f, False)
    return 0


def copy_nonpresent_pte(k: Kernel, dst_vma: vm_area_struct, src_vma: vm_area_struct, vpn: int,
                        pte: tuple) -> None:
    """``copy_nonpresent_pte()`` (mm/memory.c, v6.18) for a migration entry.

    The entry is copied without a reference or mapcount (the folio is unmapped
    while it migrates; ``remove_migration_ptes()`` maps the child too, having
    found the child's VMA through the AVCs ``anon_vma_fork()`` linked). "COW
    mappings require pages in both parent and child to be set to read. A
    previously exclusive entry is now shared": a writable or exclusive entry
    becomes ``make_readable_migration_entry()`` in parent and child.

    :param pte: the parent's migration entry at ``vpn``.
    """
    entry = pte[0]
    kasan_check(entry.folio, "copy_nonpresent_pte")
    if not is_readable_migration_entry(pte) and _is_cow_mapping(src_vma.vm_flags):
        pte = make_readable_migration_entry(entry.folio)
        src_vma.vm_mm.pgtable[vpn] = pte
    dst_vma.vm_mm.pgtable[vpn] = pte


def _is_cow_mapping(flags: int) -> bool:
    # is_cow_mapping() (include/linux/mm.h): private and may be written.
    return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE


#: The kernel functions of mm/memory.c, by name, for the design table.
MEMORY_OPS: dict[str, Callable[..., Any]] = {
    "copy_nonpresent_pte": copy_nonpresent_pte,
    "copy_page_range": copy_page_range,
    "do_anonymous_page": do_anonymous_page,
    "do_wp_page": do_wp_page,
    "handle_mm_fault": handle_mm_fault,
    "handle_pte_fault": handle_pte_fault,
    "vma_alloc_folio": vma_alloc_folio,
    "wp_can_reuse_anon_folio": wp_can_reuse_anon_folio,
    "wp_page_copy": wp_page_copy,
    "zap_vma_range": zap_vma_range,
}
