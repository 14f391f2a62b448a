"""Memory advice on private anonymous memory: ``mm/madvise.c``, v6.18.

Modelled advice: ``MADV_DONTNEED`` (zap the pages, keep the VMAs) and
``MADV_HUGEPAGE``/``MADV_NOHUGEPAGE`` (``hugepage_madvise()`` from
mm/khugepaged.c changes ``VM_HUGEPAGE``/``VM_NOHUGEPAGE`` through
``vma_modify_flags()``, so VMAs split and merge), ``MADV_MERGEABLE`` and
``MADV_UNMERGEABLE`` (``ksm_madvise()`` of mm/ksm.c decides the flags and
unmerges; then the same flag update). Any other advice
is ``EINVAL``, as an unknown advice is in the kernel. The per-VMA-lock walk,
``MADV_DONTNEED_LOCKED``, userfaultfd, hugetlb and anon_vma names are left out.

Verified on the live 6.18 kernel: advice over a range with a hole is applied to
the mapped VMAs and then fails with ``ENOMEM``; an unmapped range gives
``ENOMEM``; ``len == 0`` succeeds; an unknown advice is ``EINVAL``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.findings import KernelError
from rmapcheck.model.mm_types import VM_HUGEPAGE, VM_LOCKED, VM_NOHUGEPAGE, VM_PFNMAP, mm_struct, vm_area_struct
from rmapcheck.model.uapi import MADV_DONTNEED, MADV_HUGEPAGE, MADV_MERGEABLE, MADV_NOHUGEPAGE, MADV_UNMERGEABLE
from rmapcheck.model.vma_init import find_vma, find_vma_prev

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "MADVISE_OPS",
    "do_madvise",
    "hugepage_madvise",
    "madvise_dontneed_free",
    "madvise_update_vma",
    "madvise_vma_behavior",
]

_VM_HUGETLB = 0x00400000


def hugepage_madvise(k: Kernel, vma: vm_area_struct, vm_flags: int, advice: int) -> int:
    """``hugepage_madvise()`` (mm/khugepaged.c, v6.18): the new flags for (NO)HUGEPAGE.

    :returns: the new ``vm_flags_t``.
    """
    if advice == MADV_HUGEPAGE:
        vm_flags &= ~VM_NOHUGEPAGE
        vm_flags |= VM_HUGEPAGE
        # If the vma become good for khugepaged to scan, register it here
        # without waiting a page fault that may not happen any time soon.
        # (khugepaged_enter_vma(): no collapse in the model.)
    elif advice == MADV_NOHUGEPAGE:
        vm_flags &= ~VM_HUGEPAGE
        vm_flags |= VM_NOHUGEPAGE
        # Setting VM_NOHUGEPAGE will prevent khugepaged from scanning this vma
        # even if we leave the mm registered in khugepaged if it got
        # registered before VM_NOHUGEPAGE was set.
    return vm_flags


def madvise_update_vma(k: Kernel, vma: vm_area_struct, prev: vm_area_struct | None, start: int,
                       end: int, new_flags: int) -> vm_area_struct:
    """``madvise_update_vma()`` (mm/madvise.c, v6.18): merge or split, then set the flags.

    :returns: ``struct vm_area_struct *`` the VMA now covering ``[start, end)``
        (the new ``*prev``).
    :raises KernelError: ``ENOMEM`` when a split or merge fails.
    """
    if new_flags == vma.vm_flags:
        return vma
    res = k.ops.vma_modify_flags(k, prev, vma, start, end, new_flags)
    if isinstance(res, int):
        raise KernelError(-res, "madvise_update_vma", "vma_modify_flags failed")
    # vm_flags is protected by the mmap_lock held in write mode.
    res.vm_flags = new_flags
    return res


def madvise_dontneed_free(k: Kernel, vma: vm_area_struct, start: int, end: int) -> vm_area_struct:
    """``madvise_dontneed_free()`` / ``madvise_dontneed_single_vma()`` (mm/madvise.c, v6.18).

    Zaps the pages of ``[start, end)``; the VMA is unchanged. ``EINVAL`` for
    ``VM_LOCKED``/``VM_PFNMAP``/``VM_HUGETLB`` VMAs (``can_madv_lru_vma()``).

    :returns: the VMA (the new ``*prev``).
    """
    if vma.vm_flags & (VM_LOCKED | VM_PFNMAP | _VM_HUGETLB):
        raise KernelError(errno.EINVAL, "madvise_dontneed_free", "!can_madv_lru_vma(vma)")
    k.ops.zap_vma_range(k, vma, start, end)
    return vma


def madvise_vma_behavior(k: Kernel, vma: vm_area_struct, prev: vm_area_struct | None, start: int,
                         end: int, behavior: int) -> vm_area_struct:
    """``madvise_vma_behavior()`` (mm/madvise.c, v6.18): apply one advice to one VMA's part.

    :returns: the new ``*prev``.
    """
    if behavior == MADV_DONTNEED:
        return k.ops.madvise_dontneed_free(k, vma, start, end)
    if behavior in (MADV_MERGEABLE, MADV_UNMERGEABLE):
        error, new_flags = k.ops.ksm_madvise(k, vma, start, end, behavior, vma.vm_flags)
        if error:
            # "madvise() returns EAGAIN if kernel resources, such as slab,
            # are temporarily unavailable."
            if error == -errno.ENOMEM:
                error = -errno.EAGAIN
            raise KernelError(-error, "madvise_vma_behavior", "ksm_madvise failed")
        return k.ops.madvise_update_vma(k, vma, prev, start, end, new_flags)
    new_flags = k.ops.hugepage_madvise(k, vma, vma.vm_flags, behavior)
    return k.ops.madvise_update_vma(k, vma, prev, start, end, new_flags)


def do_madvise(k: Kernel, mm: mm_struct, start: int, npages: int, behavior: int) -> None:
    """``do_madvise()`` and ``madvise_walk_vmas()`` (mm/madvise.c, v6.18).

    "If the range is not mapped, the advice is applied to the mapped parts
    and -ENOMEM is returned."

    :param start: ``unsigned long`` (a page number).
    :param npages: ``size_t len_in`` in pages.
    :param behavior: ``MADV_*``.
    :raises KernelError: ``EINVAL`` (unsupported advice), ``ENOMEM`` (hole).
    """
    fn = "do_madvise"
    ksm = k.config.get("CONFIG_KSM") and getattr(k.ops, "ksm_madvise", None) is not None
    if behavior in (MADV_MERGEABLE, MADV_UNMERGEABLE) and not ksm:
        # madvise_behavior_valid(): MADV_(UN)MERGEABLE only with CONFIG_KSM.
        raise KernelError(errno.EINVAL, fn, "!madvise_behavior_valid(behavior)")
    if behavior not in (MADV_DONTNEED, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_MERGEABLE, MADV_UNMERGEABLE):
        raise KernelError(errno.EINVAL, fn, "!madvise_behavior_valid(behavior)")
    if npages < 0:
        raise KernelError(errno.EINVAL, fn, "end < start")
    if npages == 0:
        return
    end = start + npages
    unmapped_error = 0

    # madvise_walk_vmas(): If the interval [start,end) covers some unmapped
    # address ranges, just ignore them, but return -ENOMEM at the end.
    vma, prev = find_vma_prev(mm, start)
    if vma is not None and start > vma.vm_start:
        prev = vma
    while True:
        # Still start < end.
        if vma is None:
            raise KernelError(errno.ENOMEM, fn, "unmapped range")
        # Here start < (end|vma->vm_end).
        if start < vma.vm_start:
            unmapped_error = -errno.ENOMEM
            start = vma.vm_start
            if start >= end:
                break
        # Here vma->vm_start <= start < (end|vma->vm_end)
        tmp = min(vma.vm_end, end)
        # Here vma->vm_start <= start < tmp <= (end|vma->vm_end).
        prev = k.ops.madvise_vma_behavior(k, vma, prev, start, tmp, behavior)
        start = tmp
        if prev is not None and start < prev.vm_end:
            start = prev.vm_end
        if start >= end:
            break
        vma = find_vma(mm, prev.vm_end) if prev is not None else find_vma(mm, start)
    if unmapped_error:
        raise KernelError(-unmapped_error, fn, "range has unmapped pages")


#: The kernel functions of mm/madvise.c (and khugepaged's flag update), by name, for the design table.
MADVISE_OPS: dict[str, Callable[..., Any]] = {
    "do_madvise": do_madvise,
    "hugepage_madvise": hugepage_madvise,
    "madvise_dontneed_free": madvise_dontneed_free,
    "madvise_update_vma": madvise_update_vma,
    "madvise_vma_behavior": madvise_vma_behavior,
}
