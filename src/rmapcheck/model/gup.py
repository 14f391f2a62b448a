"""Get user pages, as ``MAP_POPULATE`` and a write through ``/proc/PID/mem`` reach it: ``mm/gup.c``, v6.18.

``__get_user_pages()`` walks a range a page at a time: ``check_vma_flags()``
decides whether the access may be made at all, ``follow_page_pte()`` finds a
page that allows it, and otherwise ``faultin_page()`` resolves a fault (as
``handle_mm_fault()`` does, without the arch's ``access_error()``: FOLL_FORCE
may write where the VMA has no ``VM_WRITE``) and the page is followed again.
The reference GUP takes on each page is dropped before the step ends (the
callers here copy data and ``put_page()``), so the model counts none.

Two callers: ``__mm_populate()`` (``mmap(MAP_POPULATE)``: a write fault on
every page of a private writable mapping, a read fault elsewhere, nothing in
a ``PROT_NONE`` one) and ``access_remote_vm()`` with ``FOLL_FORCE |
FOLL_WRITE`` (``mem_rw()`` of fs/proc/base.c: a write to ``/proc/self/mem``),
which breaks COW even in a read-only or ``PROT_NONE`` private mapping and
writes into the now exclusive anonymous page, whose PTE stays read-only.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.findings import KernelBug, KernelError
from rmapcheck.model.memory import is_migration_entry
from rmapcheck.model.mm_types import (
    VM_EXEC, VM_IO, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_PFNMAP, VM_READ, VM_SHARED,
    VM_WRITE, ZERO_PAGE, folio, mm_struct, vm_area_struct,
)
from rmapcheck.model.vma_init import find_vma_intersection, vma_lookup

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "FOLL_FORCE",
    "FOLL_TOUCH",
    "FOLL_WRITE",
    "GUP_OPS",
    "__get_user_pages",
    "__mm_populate",
    "access_remote_vm",
    "can_follow_write_pte",
    "check_vma_flags",
    "faultin_page",
    "populate_vma_page_range",
]

#: include/linux/mm_types.h: enum fault_flag's neighbours, the FOLL_* flags
FOLL_WRITE = 1 << 0
FOLL_FORCE = 1 << 3
#: mm/internal.h
FOLL_TOUCH = 1 << 16


def _is_cow_mapping(vm_flags: int) -> bool:
    # is_cow_mapping() (include/linux/mm.h)
    return (vm_flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE


def _vma_is_accessible(vma: vm_area_struct) -> bool:
    # vma_is_accessible() (include/linux/mm.h)
    return bool(vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC))


def check_vma_flags(vma: vm_area_struct, gup_flags: int) -> int:
    """``check_vma_flags()`` (mm/gup.c, v6.18): may ``gup_flags`` access ``vma`` at all.

    A write needs ``VM_WRITE``, or ``FOLL_FORCE`` on a COW mapping; a read
    needs ``VM_READ``, or ``FOLL_FORCE`` and ``VM_MAYREAD``. (No VMA of the
    model is file-backed, hugetlb, secretmem or a shadow stack.)

    :returns: 0 or ``-EFAULT``.
    """
    vm_flags = vma.vm_flags
    if vm_flags & (VM_IO | VM_PFNMAP):
        return -errno.EFAULT
    if gup_flags & FOLL_WRITE:
        if not vm_flags & VM_WRITE:
            if not gup_flags & FOLL_FORCE:
                return -errno.EFAULT
            # Anon pages in shared mappings are surprising: now just reject it.
            if not _is_cow_mapping(vm_flags):
                return -errno.EFAULT
    elif not vm_flags & VM_READ:
        if not gup_flags & FOLL_FORCE:
            return -errno.EFAULT
        # Is there actually any vma we can reach here which does not have
        # VM_MAYREAD set?
        if not vm_flags & VM_MAYREAD:
            return -errno.EFAULT
    return 0


def can_follow_write_pte(writable: bool, f: folio, vma: vm_area_struct, flags: int) -> bool:
    """``can_follow_write_pte()`` (mm/gup.c, v6.18): may a write go to the page this PTE maps.

    A writable PTE, or with ``FOLL_FORCE`` in a private mapping without
    ``VM_WRITE`` an exclusive anonymous page: "we broke COW and could map the
    page writable if we have an exclusive anonymous page".
    """
    # If the pte is writable, we can write to the page.
    if writable:
        return True
    # Maybe FOLL_FORCE is set to override it?
    if not flags & FOLL_FORCE:
        return False
    # But FOLL_FORCE has no effect on shared mappings
    if vma.vm_flags & (VM_MAYSHARE | VM_SHARED):
        return False
    # ... or read-only private ones
    if not vma.vm_flags & VM_MAYWRITE:
        return False
    # ... or already writable ones that just need to take a write fault
    if vma.vm_flags & VM_WRITE:
        return False
    return f is not ZERO_PAGE and f.anon_exclusive


def _follow_page_pte(vma: vm_area_struct, vpn: int, flags: int) -> folio | None:
    # follow_page_pte(): the page mapped at vpn if the access may use it as it
    # is, else None (a fault is needed). A PROT_NONE PTE is followed:
    # gup_can_follow_protnone() without FOLL_HONOR_NUMA_FAULT.
    pte = vma.vm_mm.pgtable.get(vpn)
    if pte is None or is_migration_entry(pte):
        return None
    f, writable = pte
    if flags & FOLL_WRITE and not can_follow_write_pte(writable, f, vma, flags):
        return None
    return f  # type: ignore[no-any-return]


def faultin_page(k: Kernel, vma: vm_area_struct, vpn: int, flags: int) -> int:
    """``faultin_page()`` (mm/gup.c, v6.18): ``handle_mm_fault()`` for GUP.

    No ``access_error()``: ``check_vma_flags()`` has decided; the fault is
    resolved as any (``handle_pte_fault()``), and ``do_wp_page()`` maps
    writable only with ``VM_WRITE``.

    :returns: 0 or a negative errno (``-ENOMEM``).
    """
    try:
        k.ops.handle_pte_fault(k, vma, vpn, bool(flags & FOLL_WRITE))
    except KernelError as e:
        return -e.errno
    return 0


def __get_user_pages(k: Kernel, mm: mm_struct, start: int, nr_pages: int, gup_flags: int) -> int:
    """``__get_user_pages()`` (mm/gup.c, v6.18): fault in and follow ``nr_pages`` from ``start``.

    :returns: the pages followed, or a negative errno if the first failed
        (``-EFAULT``: no VMA, or ``check_vma_flags()`` refuses).
    """
    done = 0
    vma: vm_area_struct | None = None
    while done < nr_pages:
        vpn = start + done
        if vma is None or vpn >= vma.vm_end:
            vma = vma_lookup(mm, vpn)
            err = -errno.EFAULT if vma is None else check_vma_flags(vma, gup_flags)
            if err:
                return done or err
        assert vma is not None
        # A fault may need a retry: a write fault that copied leaves an
        # exclusive page that FOLL_FORCE may follow.
        for _ in range(3):
            if _follow_page_pte(vma, vpn, gup_flags) is not None:
                break
            err = k.ops.faultin_page(k, vma, vpn, gup_flags)
            if err:
                return done or err
        else:
            raise KernelBug("__get_user_pages", f"page {vpn:#x} still not followable after faulting it in")
        done += 1
    return done


def populate_vma_page_range(k: Kernel, vma: vm_area_struct, start: int, end: int) -> int:
    """``populate_vma_page_range()`` (mm/gup.c, v6.18): fault in ``[start, end)`` of ``vma``.

    "We want to touch writable mappings with a write fault in order to break
    COW, except for shared mappings ... Otherwise, do a read fault, and use
    FOLL_FORCE in case it's not readable"; and "we've never faulted in
    PROT_NONE pages".

    :returns: the pages faulted in, or a negative errno.
    """
    # (No VMA of the model is VM_LOCKONFAULT: there is no mlock.)
    # ... similarly, we've never faulted in PROT_NONE pages
    if not _vma_is_accessible(vma):
        return -errno.EFAULT
    gup_flags = FOLL_TOUCH
    if (vma.vm_flags & (VM_WRITE | VM_SHARED)) == VM_WRITE:
        gup_flags |= FOLL_WRITE
    else:
        gup_flags |= FOLL_FORCE
    return k.ops.__get_user_pages(k, vma.vm_mm, start, end - start, gup_flags)


def __mm_populate(k: Kernel, mm: mm_struct, start: int, npages: int, ignore_errors: bool) -> int:
    """``__mm_populate()`` (mm/gup.c, v6.18): populate every VMA of ``[start, start + npages)``.

    ``mm_populate()`` (after ``mmap(MAP_POPULATE)``) ignores errors: a
    ``PROT_NONE`` VMA is skipped, and so is the rest of one that failed.

    :returns: 0 or a negative errno (only without ``ignore_errors``).
    """
    end = start + npages
    nstart = start
    while nstart < end:
        # We want to fault in pages for [nstart; end) address range. Find
        # first corresponding VMA.
        vma = find_vma_intersection(mm, nstart, end)
        if vma is None:
            break
        # Set [nstart; nend) to intersection of desired address range with
        # the first VMA. Also, skip undesirable VMA types.
        nend = min(end, vma.vm_end)
        if vma.vm_flags & (VM_IO | VM_PFNMAP):
            nstart = nend
            continue
        nstart = max(nstart, vma.vm_start)
        ret = k.ops.populate_vma_page_range(k, vma, nstart, nend)
        if ret < 0:
            if ignore_errors:
                nstart = nend
                continue  # continue at next VMA
            return ret
        nstart += ret
    return 0


def access_remote_vm(k: Kernel, mm: mm_struct, vpn: int, value: int, gup_flags: int) -> int:
    """``access_remote_vm()`` (mm/memory.c, v6.18) of one page: store ``value`` at its start.

    ``get_user_pages_remote()`` of the page with ``gup_flags`` (a write:
    ``FOLL_WRITE``, from ``/proc/PID/mem`` also ``FOLL_FORCE``), then the copy
    into it (``copy_to_user_page()``).

    :returns: the bytes written: 8, or 0 if the page could not be had.
    """
    if k.ops.__get_user_pages(k, mm, vpn, 1, gup_flags) != 1:
        return 0
    vma = vma_lookup(mm, vpn)
    assert vma is not None
    f = _follow_page_pte(vma, vpn, gup_flags)
    if f is None or f is ZERO_PAGE:
        raise KernelBug("access_remote_vm", f"followed page {vpn:#x} is gone or the zero page")
    f.content = value
    return 8


#: The kernel functions of mm/gup.c, replaceable by a design.
GUP_OPS: dict[str, Callable[..., Any]] = {
    "__get_user_pages": __get_user_pages,
    "__mm_populate": __mm_populate,
    "access_remote_vm": access_remote_vm,
    "faultin_page": faultin_page,
    "populate_vma_page_range": populate_vma_page_range,
}
