"""Changing the protection of private anonymous memory: ``mm/mprotect.c``, v6.18.

``do_mprotect_pkey()`` walks the VMAs of the range and ``mprotect_fixup()``
merges or splits each one (``vma_modify_flags()``), sets its new flags
(including the ``VM_ACCOUNT`` rules of v6.18) and changes the protection of
its PTEs (``change_protection()``). Protection keys (``pkey`` is always -1),
``PROT_GROWSDOWN``/``PROT_GROWSUP``, ``READ_IMPLIES_EXEC``, mseal, PFN maps,
``vm_ops->mprotect``, mlock population and memory-deny-write-execute do not
arise in the model and are omitted.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.findings import KernelBug, KernelError
from rmapcheck.model.mm_types import (
    folio,
    VM_ACCESS_FLAGS,
    VM_ACCOUNT,
    VM_NORESERVE,
    VM_SHARED,
    VM_WRITE,
    ZERO_PAGE,
    mm_struct,
    vm_area_struct,
)
from rmapcheck.model.mmap import calc_vm_prot_bits
from rmapcheck.model.vma_init import find_vma, vma_next, vma_prev

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "MPROTECT_OPS",
    "change_protection",
    "do_mprotect_pkey",
    "mprotect_fixup",
]

#: ``VM_HUGETLB`` (include/linux/mm.h): never set on a model VMA.
_VM_HUGETLB = 0x00400000
#: ``VM_FLAGS_CLEAR`` without protection-key bits (x86: ``ARCH_VM_PKEY_FLAGS`` is
#: cleared too, but no model VMA carries a pkey).
_VM_FLAGS_CLEAR = VM_ACCESS_FLAGS


def change_protection(k: Kernel, vma: vm_area_struct, start: int, end: int,
                      try_change_writable: bool) -> None:
    """``change_protection()`` / ``change_pte_range()`` (mm/mprotect.c, v6.18).

    A VMA without ``VM_WRITE`` gets read-only PTEs. With
    ``MM_CP_TRY_CHANGE_WRITABLE`` a PTE is made writable only where
    ``can_change_pte_writable()`` allows: for a private mapping, an anonymous
    exclusive page (``PageAnonExclusive``), so shared (COW) pages, KSM pages and
    the zero page stay read-only and take a write fault.
    """
    pt = vma.vm_mm.pgtable if vma.vm_mm is not None else {}
    writable = bool(vma.vm_flags & VM_WRITE)
    for vpn in range(start, end):
        pte = pt.get(vpn)
        if pte is None:
            continue
        f, w = pte
        if type(f) is not folio:
            # A migration entry (change_pte_range(): a writable migration
            # entry becomes a readable one when write permission goes).
            if not writable and w:
                pt[vpn] = (f, False)
            continue
        if not writable:
            w = False
        elif try_change_writable and not w:
            w = f is not ZERO_PAGE and f.anon_exclusive and not f.ksm
        if w != pte[1]:
            pt[vpn] = (f, w)


def mprotect_fixup(k: Kernel, vma: vm_area_struct, prev: vm_area_struct | None, start: int,
                   end: int, newflags: int) -> tuple[int, vm_area_struct | None]:
    """``mprotect_fixup()`` (mm/mprotect.c, v6.18): apply ``newflags`` to ``[start, end)`` of ``vma``.

    "If we make a private mapping writable we increase our commit; but (without
    finer accounting) cannot reduce our commit if we make it unwritable again
    except in the anonymous case where no anon_vma has yet to be assigned."
    So ``VM_ACCOUNT`` is added when a private mapping without it becomes
    writable, and dropped when an accounted anonymous VMA that has no anon_vma
    yet loses ``VM_WRITE`` (verified on the live 6.18 kernel: an unfaulted
    ``rw`` VMA made ``r`` merges with an ``r`` neighbour mapped read-only).

    :param vma: ``struct vm_area_struct *``.
    :param prev: ``struct vm_area_struct **pprev`` on entry (``NULL`` if none).
    :param newflags: ``vm_flags_t``.
    :returns: ``(0 or -errno, *pprev)``.
    """
    oldflags = vma.vm_flags
    nrpages = end - start
    charged = 0

    if newflags == oldflags:
        return 0, vma

    if newflags & VM_WRITE:
        # Check space limits when area turns into data: may_expand_vm() always
        # succeeds in the model.
        if not oldflags & (VM_ACCOUNT | VM_WRITE | _VM_HUGETLB | VM_SHARED | VM_NORESERVE):
            charged = nrpages
            if k.ops.security_vm_enough_memory_mm(k, vma.vm_mm, charged):  # type: ignore[arg-type]
                return -errno.ENOMEM, prev
            newflags |= VM_ACCOUNT
    elif oldflags & VM_ACCOUNT and vma.anon_vma is None:
        # vma_is_anonymous(vma) && !vma->anon_vma
        newflags &= ~VM_ACCOUNT

    res = k.ops.vma_modify_flags(k, prev, vma, start, end, newflags)
    if isinstance(res, int):
        # fail: vm_unacct_memory(charged)
        return res, prev
    vma = res

    # vm_flags and vm_page_prot are protected by the mmap_lock held in write
    # mode.
    vma.vm_flags = newflags
    # vma_wants_manual_pte_write_upgrade(): a private VMA with VM_WRITE.
    k.ops.change_protection(k, vma, start, end, bool(newflags & VM_WRITE))
    return 0, vma


def do_mprotect_pkey(k: Kernel, mm: mm_struct, start: int, npages: int, prot: int) -> None:
    """``do_mprotect_pkey()`` (mm/mprotect.c, v6.18): the ``mprotect()`` system call.

    VMAs are changed one after the other; a hole in the range stops the walk
    with ``ENOMEM`` and leaves the VMAs before it changed (live 6.18:
    ``mprotect`` over ``[rw rw . rw rw]`` gives ``ENOMEM`` with the first VMA
    already read-only).

    :param start: ``unsigned long`` (a page number).
    :param npages: ``size_t len`` in pages (0 is a no-op).
    :param prot: ``PROT_*``.
    :raises KernelError: ``ENOMEM`` (unmapped page in the range),
        ``EACCES`` (protection beyond ``VM_MAY*``).
    """
    fn = "do_mprotect_pkey"
    if npages == 0:
        return
    if npages < 0:
        raise KernelError(errno.ENOMEM, fn, "end <= start")
    end = start + npages
    reqprot = prot

    vma = find_vma(mm, start)  # vma_find(&vmi, end)
    if vma is None or vma.vm_start >= end:
        raise KernelError(errno.ENOMEM, fn, "no VMA in range")
    if vma.vm_start > start:
        raise KernelError(errno.ENOMEM, fn, "range starts in a hole")
    prev = vma if start > vma.vm_start else vma_prev(mm, vma)

    error = 0
    nstart = start
    tmp = vma.vm_start
    cur: vm_area_struct | None = vma
    while cur is not None and cur.vm_start < end:
        if cur.vm_start != tmp:
            error = -errno.ENOMEM
            break
        # Each mprotect() call explicitly passes r/w/x permissions. If a
        # permission is not passed to mprotect(), it must be cleared from the
        # VMA.
        newflags = calc_vm_prot_bits(prot)
        newflags |= cur.vm_flags & ~_VM_FLAGS_CLEAR
        # newflags >> 4 shift VM_MAY% in place of VM_%
        if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
            error = -errno.EACCES
            break
        tmp = min(cur.vm_end, end)
        error, new_prev = k.ops.mprotect_fixup(k, cur, prev, nstart, tmp, newflags)
        if error:
            break
        prev = new_prev
        if prev is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("do_mprotect_pkey", "NULL pointer dereference: prev")
        tmp = prev.vm_end  # vma_iter_end(&vmi)
        nstart = tmp
        prot = reqprot
        cur = vma_next(mm, prev)
    if not error and tmp < end:
        error = -errno.ENOMEM
    if error:
        raise KernelError(-error, fn, "mprotect_fixup failed" if error != -errno.ENOMEM
                          else "unmapped page in range")


#: The kernel functions of mm/mprotect.c, by name, for the design table.
MPROTECT_OPS: dict[str, Callable[..., Any]] = {
    "change_protection": change_protection,
    "do_mprotect_pkey": do_mprotect_pkey,
    "mprotect_fixup": mprotect_fixup,
}
