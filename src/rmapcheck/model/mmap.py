"""Creating and removing private anonymous mappings: ``mm/mmap.c`` and ``mm/vma.c``, v6.18.

``do_mmap()`` and ``__vm_munmap()`` live in mm/mmap.c; ``mmap_region()``'s core
``__mmap_region()`` with ``__mmap_setup()``, ``__mmap_new_vma()`` and
``__mmap_complete()`` lives in mm/vma.c. Every mapping of the model is
``MAP_PRIVATE|MAP_ANONYMOUS``: there is no file, no ``f_op->mmap_prepare``,
no ``MAP_SHARED``, no ``MAP_GROWSDOWN``, no ``MAP_LOCKED``, no
memory-deny-write-execute and no protection keys, so those branches are
omitted. ``MAP_NORESERVE`` sets ``VM_NORESERVE`` (no ``VM_ACCOUNT`` then);
``MAP_POPULATE`` is the caller's (``vm_mmap_pgoff()`` populates after
``do_mmap()``: :func:`rmapcheck.model.syscalls.sys_mmap`). ``may_expand_vm()`` always succeeds (no
``RLIMIT_AS``/``RLIMIT_DATA`` pressure) and ``security_vm_enough_memory_mm()``
fails only at the fault-injection site ``"security_vm_enough_memory_mm"``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.findings import KernelError
from rmapcheck.model.mm_types import (
    VM_ACCOUNT,
    VM_EXEC,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYWRITE,
    VM_NORESERVE,
    VM_READ,
    VM_SHARED,
    VM_SOFTDIRTY,
    VM_WRITE,
    mm_struct,
    vm_area_struct,
)
from rmapcheck.model.uapi import MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_NORESERVE, PROT_EXEC, PROT_READ, PROT_WRITE
from rmapcheck.model.vma import _TASK_SIZE_PAGES, validate_mm, vma_iter_prealloc, vma_merge_struct, vma_munmap_struct
from rmapcheck.model.vma_init import find_vma_intersection, find_vma_prev, vma_iter_store

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "MMAP_OPS",
    "TASK_SIZE",
    "__mmap_complete",
    "__mmap_new_vma",
    "__mmap_region",
    "__vm_munmap",
    "accountable_mapping",
    "calc_vm_prot_bits",
    "do_mmap",
    "do_munmap",
    "get_unmapped_area",
    "mmap_region",
    "security_vm_enough_memory_mm",
]

#: include/uapi/linux/mman.h
_OVERCOMMIT_NEVER = 2

#: ``TASK_SIZE`` of x86-64 with 4-level page tables, in pages.
TASK_SIZE = _TASK_SIZE_PAGES
#: ``mm->mmap_base`` of the model's top-down allocator, in pages: far above the
#: scenario arena (0x10000000000), as the live kernel's is.
MMAP_BASE = 0x7F0000000000 >> 12


def calc_vm_prot_bits(prot: int) -> int:
    """``calc_vm_prot_bits()`` (include/linux/mman.h, v6.18) without protection keys."""
    return ((VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0)
            | (VM_EXEC if prot & PROT_EXEC else 0))


def accountable_mapping(vm_flags: int) -> bool:
    """``accountable_mapping()`` (mm/vma.h, v6.18): a private writable mapping is committed.

    "We account for memory if it's a private writeable mapping, not hugepages
    and VM_NORESERVE wasn't set."
    """
    return (vm_flags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE


def security_vm_enough_memory_mm(k: Kernel, mm: mm_struct, pages: int) -> int:
    """``security_vm_enough_memory_mm()`` / ``__vm_enough_memory()`` (mm/util.c, v6.18).

    The overcommit heuristic never refuses the model's few pages; the site
    ``"security_vm_enough_memory_mm"`` injects ``-ENOMEM``.
    """
    return -errno.ENOMEM if k.should_fail("security_vm_enough_memory_mm") else 0


def get_unmapped_area(k: Kernel, mm: mm_struct, addr: int, npages: int, flags: int) -> int:
    """``__get_unmapped_area()`` / ``arch_get_unmapped_area_topdown()`` (mm/mmap.c, v6.18).

    ``MAP_FIXED`` returns ``addr``; a hint is used if ``[addr, addr+npages)`` is
    free; otherwise the highest free gap below :data:`MMAP_BASE` is taken.

    :returns: the address (a page number) or a negative errno.
    """
    if npages > TASK_SIZE:
        return -errno.ENOMEM
    if flags & MAP_FIXED:
        if addr > TASK_SIZE - npages:
            return -errno.ENOMEM
        return addr
    if addr:
        if addr <= TASK_SIZE - npages and find_vma_intersection(mm, addr, addr + npages) is None:
            return addr
    top = MMAP_BASE
    for v in reversed(mm.mmap):
        if v.vm_start >= top:
            continue
        if v.vm_end <= top - npages:
            return top - npages
        top = v.vm_start
    if top - npages >= 16:  # mmap_min_addr
        return top - npages
    return -errno.ENOMEM


def do_mmap(k: Kernel, mm: mm_struct, addr: int, npages: int, prot: int, flags: int) -> int:
    """``do_mmap()`` (mm/mmap.c, v6.18) of a private anonymous mapping.

    ``vm_flags`` are as the kernel computes them: ``calc_vm_prot_bits(prot) |
    mm->def_flags | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC``; ``vm_pgoff`` of an
    anonymous private mapping is ``addr >> PAGE_SHIFT`` ("case MAP_PRIVATE:
    Set pgoff according to addr for anon_vma."). ``VM_ACCOUNT`` is added in
    ``__mmap_setup()`` for a writable mapping.

    :param addr: ``unsigned long`` (a page number).
    :param npages: ``unsigned long len`` in pages.
    :param prot: ``PROT_*``.
    :param flags: ``MAP_FIXED`` / ``MAP_FIXED_NOREPLACE``, ``MAP_NORESERVE``
        (``MAP_PRIVATE|MAP_ANONYMOUS`` implied).
    :returns: the address of the mapping (a page number).
    :raises KernelError: ``EINVAL`` (empty), ``ENOMEM`` (too big, too many
        maps, no room), ``EEXIST`` (``MAP_FIXED_NOREPLACE`` over a mapping).
    """
    fn = "do_mmap"
    if npages <= 0:
        raise KernelError(errno.EINVAL, fn, "len is 0")
    if npages > TASK_SIZE:
        raise KernelError(errno.ENOMEM, fn, "len > TASK_SIZE")
    # force arch specific MAP_FIXED handling in get_unmapped_area
    if flags & MAP_FIXED_NOREPLACE:
        flags |= MAP_FIXED
    # Too many mappings?
    if mm.map_count > k.config["sysctl_max_map_count"]:
        raise KernelError(errno.ENOMEM, fn, "map_count > sysctl_max_map_count")
    addr = k.ops.get_unmapped_area(k, mm, addr, npages, flags)
    if addr < 0:
        raise KernelError(-addr, fn, "get_unmapped_area failed")
    if flags & MAP_FIXED_NOREPLACE:
        if find_vma_intersection(mm, addr, addr + npages) is not None:
            raise KernelError(errno.EEXIST, fn, "MAP_FIXED_NOREPLACE over an existing mapping")
    # Do simple checking here so the lower-level routines won't have to. We
    # assume access permissions have been handled by the open of the memory
    # object, so we don't do any here.
    vm_flags = calc_vm_prot_bits(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    # case MAP_PRIVATE: Set pgoff according to addr for anon_vma.
    pgoff = addr
    if flags & MAP_NORESERVE:
        # We honor MAP_NORESERVE if allowed to overcommit
        if k.config.get("sysctl_overcommit_memory", 0) != _OVERCOMMIT_NEVER:
            vm_flags |= VM_NORESERVE
    ret = k.ops.mmap_region(k, mm, addr, npages, vm_flags, pgoff)
    if ret < 0:
        raise KernelError(-ret, fn, "mmap_region failed")
    return ret


def mmap_region(k: Kernel, mm: mm_struct, addr: int, npages: int, vm_flags: int, pgoff: int) -> int:
    """``mmap_region()`` (mm/vma.c, v6.18): MDWE and arch checks, then ``__mmap_region()``.

    Neither check applies to the model (no ``PR_SET_MDWE``, x86 accepts all flags).

    :returns: ``addr`` or a negative errno.
    """
    return k.ops.__mmap_region(k, mm, addr, npages, vm_flags, pgoff)


def __mmap_region(k: Kernel, mm: mm_struct, addr: int, npages: int, vm_flags: int, pgoff: int) -> int:
    """``__mmap_region()`` (mm/vma.c, v6.18): unmap what is in the way, merge or insert.

    :returns: ``addr`` or a negative errno.
    """
    end = addr + npages
    vms = vma_munmap_struct(mm=mm, vma=None, start=addr, end=end)
    prev: vm_area_struct | None
    nxt: vm_area_struct | None
    charged = 0

    # __mmap_setup(): find the first overlapping VMA and initialise unmap state.
    vms.vma = find_vma_intersection(mm, addr, end)
    if vms.vma is not None:
        # OK, we have overlapping VMAs - prepare to unmap them.
        err = k.ops.vms_gather_munmap_vmas(k, vms)
        if err:
            # On error VMAs will already have been reattached.
            return err
        nxt = vms.next
        prev = vms.prev
    else:
        nxt, prev = find_vma_prev(mm, addr)  # vma_iter_next_rewind()
    # Check against address space limit: may_expand_vm() always succeeds here.
    # Private writable mapping: check memory availability.
    if accountable_mapping(vm_flags):
        charged = npages - vms.nr_accounted
        if charged and k.ops.security_vm_enough_memory_mm(k, mm, charged):
            k.ops.vms_abort_munmap_vmas(k, vms)
            return -errno.ENOMEM
        vms.nr_accounted = 0
        vm_flags |= VM_ACCOUNT
    # Clear PTEs while the vma is still in the tree so that rmap cannot race
    # with the freeing later in the truncate scenario. (vms_clean_up_area())
    if vms.vma is not None:
        k.ops.vms_clear_ptes(k, vms)

    ksm_vma_flags = getattr(k.ops, "ksm_vma_flags", None)
    if ksm_vma_flags is not None:
        # map.check_ksm_early: update_ksm_flags() sets VM_MERGEABLE before the
        # merge attempt (KSM is modelled elsewhere; absent, nothing changes).
        vm_flags = ksm_vma_flags(k, mm, vm_flags)

    vma: vm_area_struct | None = None
    # Attempt to merge with adjacent VMAs...
    if prev is not None or nxt is not None:
        vmg = vma_merge_struct(mm=mm, start=addr, end=end, pgoff=pgoff, vm_flags=vm_flags,
                               prev=prev, next=nxt)
        vma = k.ops.vma_merge_new_range(k, vmg)

    # ...but if we can't, allocate a new VMA.
    if vma is None:
        vma, err = k.ops.__mmap_new_vma(k, mm, addr, end, pgoff, vm_flags)
        if vma is None:
            # unacct_error / abort_munmap
            k.ops.vms_abort_munmap_vmas(k, vms)
            return err
    k.ops.__mmap_complete(k, vms, vma)
    return addr


def __mmap_new_vma(k: Kernel, mm: mm_struct, addr: int, end: int, pgoff: int,
                   vm_flags: int) -> tuple[vm_area_struct | None, int]:
    """``__mmap_new_vma()`` (mm/vma.c, v6.18): allocate and insert a new anonymous VMA.

    :returns: ``(vma, 0)`` or ``(NULL, -ENOMEM)``.
    """
    fn = "__mmap_new_vma"
    # Determine the object being mapped and call the appropriate specific
    # mapper. the address has already been validated, but not unmapped, but
    # the maps are removed from the list.
    vma = k.ops.vm_area_alloc(k, mm, fn)
    if vma is None:
        return None, -errno.ENOMEM
    vma.vm_start = addr
    vma.vm_end = end
    vma.vm_pgoff = pgoff
    vma.vm_flags = vm_flags
    # vma_set_anonymous(); vma_iter_prealloc()
    if vma_iter_prealloc(k):
        k.ops.vm_area_free(k, vma, fn)
        return None, -errno.ENOMEM
    vma_iter_store(mm, vma)  # vma_iter_store_new(); map_count++
    validate_mm(k, mm)
    return vma, 0


def __mmap_complete(k: Kernel, vms: vma_munmap_struct, vma: vm_area_struct) -> None:
    """``__mmap_complete()`` (mm/vma.c, v6.18): free the unmapped VMAs, mark soft-dirty.

    "New (or expanded) vma always get soft dirty status. Otherwise user-space
    soft-dirty page tracker won't be able to distinguish situation when vma
    area unmapped, then new mapped in-place (which must be aimed as a
    completely new data area)." ``VM_SOFTDIRTY`` is 0 in the model.
    """
    # Unmap any existing mapping in the area.
    k.ops.vms_complete_munmap_vmas(k, vms)
    vma.vm_flags |= VM_SOFTDIRTY


def __vm_munmap(k: Kernel, mm: mm_struct, start: int, npages: int) -> None:
    """``__vm_munmap()`` (mm/mmap.c, v6.18): the ``munmap()`` system call.

    :raises KernelError: ``EINVAL`` for an empty range or one beyond ``TASK_SIZE``.
    """
    ret = k.ops.do_vmi_munmap(k, mm, start, npages)
    if ret:
        raise KernelError(-ret, "__vm_munmap", "do_vmi_munmap failed")


def do_munmap(k: Kernel, mm: mm_struct, start: int, npages: int) -> None:
    """``munmap()``: ``__vm_munmap()`` (mm/mmap.c, v6.18).

    :param start: ``unsigned long`` (a page number).
    :param npages: ``size_t len`` in pages.
    """
    k.ops.__vm_munmap(k, mm, start, npages)


#: The kernel functions of mm/mmap.c (and the mmap half of mm/vma.c), by name, for the design table.
MMAP_OPS: dict[str, Callable[..., Any]] = {
    "__mmap_complete": __mmap_complete,
    "__mmap_new_vma": __mmap_new_vma,
    "__mmap_region": __mmap_region,
    "__vm_munmap": __vm_munmap,
    "do_mmap": do_mmap,
    "do_munmap": do_munmap,
    "get_unmapped_area": get_unmapped_area,
    "mmap_region": mmap_region,
    "security_vm_enough_memory_mm": security_vm_enough_memory_mm,
}
