"""Moving and resizing private anonymous mappings: ``mm/mremap.c``, v6.18.

The v6.18 code is organised around ``struct vma_remap_struct`` (Linux kernel
commit series "mm/mremap: refactor mremap() system call implementation",
in v6.16) and permits a move of several VMAs at once when
``MREMAP_FIXED`` is given and the size does not change (Linux kernel commit
d23cb648e365 ("mm/mremap: permit mremap() move of multiple VMAs") (in v6.17)).
``MREMAP_DONTUNMAP`` leaves ``VM_ACCOUNT`` on the old VMA and charges the
whole new range (Linux kernel commit "mm/mremap: correctly account old
mapping after MREMAP_DONTUNMAP remap", in v6.18).

Verified on the live 6.18 kernel (``/tmp`` ctypes experiments on
0x10000000000): a move-only ``MREMAP_FIXED`` over two adjacent VMAs moves
both, keeping the gap between them; a move that also resizes, or an in-place
expand, over two VMAs fails with ``EFAULT``; an in-place shrink over two
VMAs succeeds (it is an munmap of the tail); a gap at the start of a move
range gives ``EFAULT``; ``old_len == 0`` on a private mapping, a fixed
address without ``MREMAP_MAYMOVE``, ``MREMAP_DONTUNMAP`` with a size change,
overlapping ranges and ``new_len == 0`` give ``EINVAL``; an in-place expand
blocked by a neighbour without ``MREMAP_MAYMOVE`` gives ``ENOMEM``;
``MREMAP_DONTUNMAP`` without ``MREMAP_FIXED`` uses ``new_addr`` as a hint and
leaves the old VMA whole, still accounted.

Omitted (they do not arise for private anonymous memory in the model):
userfaultfd notification, hugetlb alignment, mseal, ``VM_LOCKED``
population, ``vm_ops->mremap``/``may_split``, PFN maps and the
``RLIMIT_MEMLOCK``/``may_expand_vm`` limits.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.findings import KernelBug, KernelError
from rmapcheck.model.mm_types import VM_ACCOUNT, VM_DONTEXPAND, VM_LOCKED, VM_MAYSHARE, VM_PFNMAP, VM_SHARED, mm_struct, vm_area_struct
from rmapcheck.model.mmap import TASK_SIZE
from rmapcheck.model.uapi import MADV_UNMERGEABLE, MAP_FIXED, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE
from rmapcheck.model.vma_init import find_vma, find_vma_intersection, vma_lookup

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "MREMAP_EXPAND",
    "MREMAP_INVALID",
    "MREMAP_NO_RESIZE",
    "MREMAP_OPS",
    "MREMAP_SHRINK",
    "check_mremap_params",
    "check_prep_vma",
    "copy_vma_and_data",
    "do_mremap",
    "dontunmap_complete",
    "expand_vma",
    "move_page_tables",
    "move_vma",
    "mremap_at",
    "mremap_to",
    "prep_move_vma",
    "remap_move",
    "shrink_vma",
    "unmap_source_vma",
    "vma_expandable",
    "vma_remap_struct",
    "vrm_calc_charge",
    "vrm_implies_new_addr",
    "vrm_move_only",
    "vrm_overlaps",
    "vrm_set_new_addr",
    "vrm_will_map_new",
]

# enum mremap_type (mm/mremap.c, v6.18)
MREMAP_INVALID = 0  # Initial state.
MREMAP_NO_RESIZE = 1  # old_len == new_len, if not moved, do nothing.
MREMAP_SHRINK = 2  # old_len > new_len.
MREMAP_EXPAND = 3  # old_len < new_len.

_VM_LOCKED_MASK = VM_LOCKED  # VM_LOCKED | VM_LOCKONFAULT; VM_LOCKONFAULT never set here


@dataclass(eq=False)
class vma_remap_struct:
    """``struct vma_remap_struct`` (mm/mremap.c, v6.18): the state of one mremap().

    Lengths are in pages. ``mmap_locked`` and the userfaultfd lists are left out.
    """

    mm: mm_struct
    addr: int
    old_len: int
    new_len: int
    flags: int
    new_addr: int
    vma: vm_area_struct | None = None
    delta: int = 0
    remap_type: int = MREMAP_INVALID
    charged: int = 0
    vmi_needs_invalidate: bool = False


def vrm_implies_new_addr(k: Kernel, vrm: vma_remap_struct) -> bool:
    """``vrm_implies_new_addr()`` (mm/mremap.c, v6.18): "Will a new address definitely be assigned?"""
    return bool(vrm.flags & (MREMAP_FIXED | MREMAP_DONTUNMAP))


def vrm_move_only(k: Kernel, vrm: vma_remap_struct) -> bool:
    """``vrm_move_only()`` (mm/mremap.c, v6.18): a pure move (``MREMAP_FIXED``, same size), which may span VMAs."""
    return bool(vrm.flags & MREMAP_FIXED) and vrm.old_len == vrm.new_len


def vrm_overlaps(k: Kernel, vrm: vma_remap_struct) -> bool:
    """``vrm_overlaps()`` (mm/mremap.c, v6.18): "Does the source range overlap the target?"""
    start_old, end_old = vrm.addr, vrm.addr + vrm.old_len
    start_new, end_new = vrm.new_addr, vrm.new_addr + vrm.new_len
    return end_old > start_new and end_new > start_old


def vrm_will_map_new(k: Kernel, vrm: vma_remap_struct) -> bool:
    """``vrm_will_map_new()`` (mm/mremap.c, v6.18): will the VMA be expanded or moved?"""
    return vrm.remap_type == MREMAP_EXPAND or k.ops.vrm_implies_new_addr(k, vrm)


def vrm_calc_charge(k: Kernel, vrm: vma_remap_struct) -> bool:
    """``vrm_calc_charge()`` (mm/mremap.c, v6.18): charge the memory the remap commits.

    "If we don't unmap the old mapping, then we account the entirety of the
    length of the new one. Otherwise it's just the delta in size."

    :returns: ``false`` if the charge was refused.
    """
    if vrm.vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("vrm_calc_charge", "NULL pointer dereference: vrm.vma")
    if not vrm.vma.vm_flags & VM_ACCOUNT:
        return True
    charged = vrm.new_len if vrm.flags & MREMAP_DONTUNMAP else vrm.delta
    if k.ops.security_vm_enough_memory_mm(k, vrm.mm, charged):
        return False
    vrm.charged = charged
    return True


def check_mremap_params(k: Kernel, vrm: vma_remap_struct) -> int:
    """``check_mremap_params()`` (mm/mremap.c, v6.18): checks that need no VMA.

    :returns: 0 or ``-EINVAL``/``-ENOMEM``.
    """
    flags = vrm.flags
    # Ensure no unexpected flag values.
    if flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP):
        return -errno.EINVAL
    # We allow a zero old-len as a special case for DOS-emu "duplicate shm
    # area" thing. But a zero new-len is nonsensical.
    if not vrm.new_len:
        return -errno.EINVAL
    # Is the new length silly?
    if vrm.new_len > TASK_SIZE:
        return -errno.EINVAL
    # Remainder of checks are for cases with specific new_addr.
    if not k.ops.vrm_implies_new_addr(k, vrm):
        return 0
    # Is the new address silly?
    if vrm.new_addr > TASK_SIZE - vrm.new_len:
        return -errno.EINVAL
    # A fixed address implies a move.
    if not flags & MREMAP_MAYMOVE:
        return -errno.EINVAL
    # MREMAP_DONTUNMAP does not allow resizing in the process.
    if flags & MREMAP_DONTUNMAP and vrm.old_len != vrm.new_len:
        return -errno.EINVAL
    # Target VMA must not overlap source VMA.
    if k.ops.vrm_overlaps(k, vrm):
        return -errno.EINVAL
    # move_vma() need us to stay 4 maps below the threshold, otherwise it will
    # bail out at the very beginning. [...] Check whether current map count
    # plus 2 still leads us to 4 maps below the threshold, otherwise return
    # -ENOMEM here to be more safe.
    if vrm.mm.map_count + 2 >= k.config["sysctl_max_map_count"] - 3:
        return -errno.ENOMEM
    return 0


def check_prep_vma(k: Kernel, vrm: vma_remap_struct) -> int:
    """``check_prep_vma()`` (mm/mremap.c, v6.18): checks against the VMA at ``addr``.

    Sets ``delta`` and ``remap_type``. "We can't remap across the end of VMAs,
    as another VMA may be adjacent" (``EFAULT``), except for the range an
    in-place shrink unmaps.

    :returns: 0 or a negative errno.
    """
    vma = vrm.vma
    addr = vrm.addr
    if vma is None:
        return -errno.EFAULT
    vrm.delta = abs(vrm.old_len - vrm.new_len)  # vrm_set_delta()
    # vrm_remap_type()
    if vrm.delta == 0:
        vrm.remap_type = MREMAP_NO_RESIZE
    elif vrm.old_len > vrm.new_len:
        vrm.remap_type = MREMAP_SHRINK
    else:
        vrm.remap_type = MREMAP_EXPAND
    # For convenience, we set new_addr even if VMA won't move.
    if not k.ops.vrm_implies_new_addr(k, vrm):
        vrm.new_addr = addr
    # Below only meaningful if we expand or move a VMA.
    if not k.ops.vrm_will_map_new(k, vrm):
        return 0
    old_len = vrm.old_len
    new_len = vrm.new_len
    # !old_len is a special case where an attempt is made to 'duplicate' a
    # mapping. This makes no sense for private mappings as it will instead
    # create a fresh/new mapping unrelated to the original. [...] As a result,
    # fail such attempts.
    if not old_len and not vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
        return -errno.EINVAL
    if vrm.flags & MREMAP_DONTUNMAP and vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        return -errno.EINVAL
    # We permit crossing of boundaries for the range being unmapped due to a
    # shrink.
    if vrm.remap_type == MREMAP_SHRINK:
        old_len = new_len
    # We can't remap across the end of VMAs, as another VMA may be adjacent.
    # We also require that vma->vm_pgoff be the same for the new range.
    if old_len > vma.vm_end - addr:
        return -errno.EFAULT
    if new_len == old_len:
        return 0
    if vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        return -errno.EFAULT
    # mlock_future_ok() and may_expand_vm() always succeed in the model.
    return 0


def move_page_tables(k: Kernel, old_vma: vm_area_struct, old_addr: int, new_vma: vm_area_struct,
                     new_addr: int, npages: int, need_rmap_locks: bool) -> int:
    """``move_page_tables()`` (mm/mremap.c, v6.18): move the PTEs of ``npages`` pages.

    Each present PTE moves from ``old_addr + i`` to ``new_addr + i``; the
    folio's ``index`` and ``mapping`` do not change and it keeps its mapcount.
    "When need_rmap_locks is true, we take the i_mmap_rwsem and anon_vma locks
    to create an effective barrier that will make rmap traversals see either
    the old or the new ptes" (``take_rmap_locks()``).

    :param old_vma: ``struct vm_area_struct *`` (``pmc->old``).
    :param new_vma: ``struct vm_area_struct *`` (``pmc->new``).
    :returns: the number of pages moved.
    """
    mm = old_vma.vm_mm
    if mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("move_page_tables", "NULL pointer dereference: mm")
    av = old_vma.anon_vma if need_rmap_locks else None
    if av is not None:
        k.ops.anon_vma_lock_write(k, av, "take_rmap_locks")
    pt = mm.pgtable
    # Walk in the direction that cannot overwrite a PTE not yet moved.
    order = range(npages) if new_addr < old_addr else range(npages - 1, -1, -1)
    for i in order:
        pte = pt.pop(old_addr + i, None)
        if pte is not None:
            pt[new_addr + i] = pte
    if av is not None:
        k.ops.anon_vma_unlock_write(k, av, "drop_rmap_locks")
    return npages


def copy_vma_and_data(k: Kernel, vrm: vma_remap_struct) -> tuple[int, vm_area_struct | None]:
    """``copy_vma_and_data()`` (mm/mremap.c, v6.18): the new VMA, then the page tables.

    ``copy_vma()`` is given the source's pgoff at ``addr``; it replaces it by
    the destination address for a VMA that was never faulted (no anon_vma).

    :returns: ``(err, new_vma)`` (``new_vma`` ``NULL`` if it could not be set up).
    """
    vma = vrm.vma
    if vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("copy_vma_and_data", "NULL pointer dereference: vma")
    internal_pgoff = vrm.addr - vma.vm_start
    new_pgoff = vma.vm_pgoff + internal_pgoff
    new_vma, vma, need_rmap_locks = k.ops.copy_vma(k, vma, vrm.new_addr, vrm.new_len, new_pgoff)
    if new_vma is None:
        # vrm_uncharge()
        return -errno.ENOMEM, None
    # By merging, we may have invalidated any iterator in use.
    if vma is not vrm.vma:
        vrm.vmi_needs_invalidate = True
    vrm.vma = vma
    moved_len = k.ops.move_page_tables(k, vma, vrm.addr, new_vma, vrm.new_addr, vrm.old_len,
                                       need_rmap_locks)
    err = 0
    if moved_len < vrm.old_len:
        err = -errno.ENOMEM
        # On error, move entries back from new area to old, which will succeed
        # since page tables still there, and then proceed to unmap new area
        # instead of old.
        k.ops.move_page_tables(k, new_vma, vrm.new_addr, vma, vrm.addr, moved_len, True)
        vrm.vma = new_vma
        vrm.old_len = vrm.new_len
        vrm.addr = vrm.new_addr
    return err, new_vma


def dontunmap_complete(k: Kernel, vrm: vma_remap_struct, new_vma: vm_area_struct) -> None:
    """``dontunmap_complete()`` (mm/mremap.c, v6.18): finish an ``MREMAP_DONTUNMAP`` move.

    Clears the mlock flags on the remaining VMA "by convention (it cannot be
    mlock()'d any longer, as pages in range are no longer mapped), and
    removing anon_vma_chain links from it if the entire VMA was copied over".
    ``VM_ACCOUNT`` stays (live 6.18: a ``rw`` mapping placed next to the old
    VMA merges with it).
    """
    vma = vrm.vma
    if vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("dontunmap_complete", "NULL pointer dereference: vma")
    start = vrm.addr
    end = vrm.addr + vrm.old_len
    old_start = vma.vm_start
    old_end = vma.vm_end
    # We always clear VM_LOCKED[ONFAULT] on the old VMA.
    vma.vm_flags &= ~_VM_LOCKED_MASK
    # anon_vma links of the old vma is no longer needed after its page table
    # has been moved.
    if new_vma is not vma and start == old_start and end == old_end:
        k.ops.unlink_anon_vmas(k, vma)
    # Because we won't unmap we don't need to touch locked_vm.


def unmap_source_vma(k: Kernel, vrm: vma_remap_struct) -> None:
    """``unmap_source_vma()`` (mm/mremap.c, v6.18): unmap the moved-from range.

    "So we perform a trick here to prevent incorrect accounting. [...] To avoid
    this we temporarily clear this flag, reinstating on any portions of the
    original VMA that remain."
    """
    mm = vrm.mm
    addr = vrm.addr
    length = vrm.old_len
    vma = vrm.vma
    if vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("unmap_source_vma", "NULL pointer dereference: vma")
    # It might seem odd that we check for MREMAP_DONTUNMAP here, [...] this
    # occurs when this operation was attempted and an error arose, in which
    # case we _do_ wish to unmap the _new_ VMA.
    accountable_move = bool(vma.vm_flags & VM_ACCOUNT) and not vrm.flags & MREMAP_DONTUNMAP
    vm_start = vma.vm_start
    vm_end = vma.vm_end
    if accountable_move:
        vma.vm_flags &= ~VM_ACCOUNT
    err = k.ops.do_vmi_munmap(k, mm, addr, length)
    vrm.vma = None  # Invalidated.
    vrm.vmi_needs_invalidate = True
    if err:
        # OOM: unable to split vma, just get accounts right
        return
    if accountable_move:
        end = addr + length
        # Having cleared VM_ACCOUNT from the whole VMA, after we unmap above
        # we'll end up with A [vm_start, addr) and B [end, vm_end).
        if vm_start < addr:
            prev = vma_lookup(mm, addr - 1)  # vma_prev(&vmi)
            if prev is None:
                raise KernelBug("unmap_source_vma", "no VMA before the unmapped range")
            prev.vm_flags |= VM_ACCOUNT
        if vm_end > end:
            nxt = vma_lookup(mm, end)  # vma_next(&vmi)
            if nxt is None:
                raise KernelBug("unmap_source_vma", "no VMA after the unmapped range")
            nxt.vm_flags |= VM_ACCOUNT


def prep_move_vma(k: Kernel, vrm: vma_remap_struct) -> int:
    """``prep_move_vma()`` (mm/mremap.c, v6.18): map-count check and KSM unmerge before a move.

    "We'd prefer to avoid failure later on in do_munmap: which may split one
    vma into three before unmapping."

    :returns: 0 or a negative errno.
    """
    vma = vrm.vma
    if vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("prep_move_vma", "NULL pointer dereference: vma")
    if vrm.mm.map_count >= k.config["sysctl_max_map_count"] - 3:
        return -errno.ENOMEM
    # Advise KSM to break any KSM pages in the area to be moved: it would be
    # confusing if they were to turn up at the new location, where they happen
    # to coincide with different KSM pages recently unmapped. But leave
    # vma->vm_flags as it was, so KSM can come around to merge on vma and
    # new_vma afterwards.
    ksm_madvise = getattr(k.ops, "ksm_madvise", None)
    if ksm_madvise is not None:
        err, _dummy = ksm_madvise(k, vma, vrm.addr, vrm.addr + vrm.old_len, MADV_UNMERGEABLE,
                                  vma.vm_flags)
        if err:
            return err
    return 0


def move_vma(k: Kernel, vrm: vma_remap_struct) -> int:
    """``move_vma()`` (mm/mremap.c, v6.18): copy the VMA and its page tables, unmap the source.

    :returns: the new address (a page number) or a negative errno.
    """
    err = k.ops.prep_move_vma(k, vrm)
    if err:
        return err
    # If accounted, determine the number of bytes the operation will charge.
    if not k.ops.vrm_calc_charge(k, vrm):
        return -errno.ENOMEM
    # Perform copy step.
    err, new_vma = k.ops.copy_vma_and_data(k, vrm)
    # If we established the copied-to VMA, we attempt to recover from the error
    # by setting the destination VMA to the source VMA and unmapping it below.
    if err and new_vma is None:
        return err
    if new_vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("move_vma", "NULL pointer dereference: new_vma")
    if not err and vrm.flags & MREMAP_DONTUNMAP:
        k.ops.dontunmap_complete(k, vrm, new_vma)
    else:
        k.ops.unmap_source_vma(k, vrm)
    return err if err else vrm.new_addr


def vrm_set_new_addr(k: Kernel, vrm: vma_remap_struct) -> int:
    """``vrm_set_new_addr()`` (mm/mremap.c, v6.18): find the target address of a move.

    ``get_unmapped_area()`` with ``MAP_FIXED`` for ``MREMAP_FIXED``, else with
    ``new_addr`` (``MREMAP_DONTUNMAP``) or 0 as the hint.

    :returns: 0 or a negative errno.
    """
    vma = vrm.vma
    if vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("vrm_set_new_addr", "NULL pointer dereference: vma")
    new_addr = vrm.new_addr if k.ops.vrm_implies_new_addr(k, vrm) else 0
    map_flags = MAP_FIXED if vrm.flags & MREMAP_FIXED else 0
    res = k.ops.get_unmapped_area(k, vrm.mm, new_addr, vrm.new_len, map_flags)
    if res < 0:
        return res
    vrm.new_addr = res
    return 0


def shrink_vma(k: Kernel, vrm: vma_remap_struct, drop_lock: bool) -> int:
    """``shrink_vma()`` (mm/mremap.c, v6.18): unmap the tail ``[addr + new_len, addr + old_len)``.

    :returns: 0 or a negative errno.
    """
    unmap_start = vrm.addr + vrm.new_len
    res = k.ops.do_vmi_munmap(k, vrm.mm, unmap_start, vrm.delta)
    vrm.vma = None  # Invalidated.
    vrm.vmi_needs_invalidate = True
    if res:
        return res
    # If we've not dropped the lock, then we should reload the VMA to replace
    # the invalidated VMA with the one that may have now been split.
    if not drop_lock:
        vrm.vma = vma_lookup(vrm.mm, vrm.addr)
        if vrm.vma is None:
            return -errno.EFAULT
    return 0


def vma_expandable(k: Kernel, mm: mm_struct, vma: vm_area_struct, delta: int) -> bool:
    """``vma_expandable()`` (mm/mremap.c, v6.18): is ``[vm_end, vm_end + delta)`` free and below ``TASK_SIZE``?"""
    end = vma.vm_end + delta
    if find_vma_intersection(mm, vma.vm_end, end) is not None:
        return False
    return end <= TASK_SIZE


def expand_vma(k: Kernel, vrm: vma_remap_struct) -> int:
    """``expand_vma()`` and ``expand_vma_in_place()`` (mm/mremap.c, v6.18).

    "[addr, old_len) spans precisely to the end of the VMA, so try to expand it
    in-place" with ``vma_merge_extend()``, which may also merge with the next
    VMA; otherwise move if ``MREMAP_MAYMOVE`` allows, else ``ENOMEM``.

    :returns: the address or a negative errno.
    """
    vma = vrm.vma
    if vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("expand_vma", "NULL pointer dereference: vma")
    # vrm_can_expand_in_place()
    if vma.vm_end - vrm.addr == vrm.old_len and k.ops.vma_expandable(k, vrm.mm, vma, vrm.delta):
        # expand_vma_in_place()
        if not k.ops.vrm_calc_charge(k, vrm):
            return -errno.ENOMEM
        # Function vma_merge_extend() is called on the extension we are adding
        # to the already existing vma, vma_merge_extend() will merge this
        # extension with the already existing vma (expand operation itself)
        # and possibly also with the next vma if it becomes adjacent to the
        # expanded vma and otherwise compatible.
        new = k.ops.vma_merge_extend(k, vma, vrm.delta)
        if new is None:
            return -errno.ENOMEM
        vrm.vma = new
        return vrm.addr
    # We weren't able to just expand or shrink the area, we need to create a
    # new one and move it. We're not allowed to move the VMA, so error out.
    if not vrm.flags & MREMAP_MAYMOVE:
        return -errno.ENOMEM
    # Find a new location to move the VMA to.
    err = k.ops.vrm_set_new_addr(k, vrm)
    if err:
        return err
    return k.ops.move_vma(k, vrm)


def mremap_at(k: Kernel, vrm: vma_remap_struct) -> int:
    """``mremap_at()`` (mm/mremap.c, v6.18): resize in place (or move if it must).

    :returns: the address or a negative errno.
    """
    if vrm.remap_type == MREMAP_NO_RESIZE:
        # NO-OP CASE - resizing to the same size.
        return vrm.addr
    if vrm.remap_type == MREMAP_SHRINK:
        # SHRINK CASE. Can always be done in-place. Simply unmap the shrunken
        # portion of the VMA.
        res = k.ops.shrink_vma(k, vrm, True)
        return res if res else vrm.addr
    if vrm.remap_type == MREMAP_EXPAND:
        return k.ops.expand_vma(k, vrm)
    raise KernelBug("mremap_at", "WARN_ON_ONCE(1): invalid remap type")


def mremap_to(k: Kernel, vrm: vma_remap_struct) -> int:
    """``mremap_to()`` (mm/mremap.c, v6.18): move to ``new_addr`` (``MREMAP_FIXED``/``DONTUNMAP``).

    With ``MREMAP_FIXED`` whatever is at the target is unmapped first.

    :returns: the new address or a negative errno.
    """
    if vrm.flags & MREMAP_FIXED:
        # VMA is moved to dst address, and munmap dst first.
        err = k.ops.do_vmi_munmap(k, vrm.mm, vrm.new_addr, vrm.new_len)
        vrm.vma = None  # vma may have been invalidated.
        vrm.vmi_needs_invalidate = True
        if err:
            return err
        # If we remap a portion of a VMA elsewhere in the same VMA, this can
        # invalidate the old VMA. Reset.
        vrm.vma = vma_lookup(vrm.mm, vrm.addr)
        if vrm.vma is None:
            return -errno.EFAULT
    if vrm.remap_type == MREMAP_SHRINK:
        err = k.ops.shrink_vma(k, vrm, False)
        if err:
            return err
        # Set up for the move now shrink has been executed.
        vrm.old_len = vrm.new_len
    # MREMAP_DONTUNMAP expands by old_len since old_len == new_len: may_expand_vm()
    err = k.ops.vrm_set_new_addr(k, vrm)
    if err:
        return err
    return k.ops.move_vma(k, vrm)


def remap_move(k: Kernel, vrm: vma_remap_struct) -> int:
    """``remap_move()`` (mm/mremap.c, v6.18): move every VMA in ``[addr, addr + old_len)``.

    "When moving VMAs we allow for batched moves across multiple VMAs, with all
    VMAs in the input range [addr, addr + old_len) being moved (and split as
    necessary)." The gaps between source VMAs are kept at the destination; a
    gap at the start of the range is ``EFAULT``. A failure part-way leaves the
    VMAs already moved at their destination.

    :returns: the new address or a negative errno.
    """
    start = vrm.addr
    end = vrm.addr + vrm.old_len
    new_addr = vrm.new_addr
    target_addr = new_addr
    res = -errno.EFAULT
    last_end = 0
    seen_vma = False
    cursor = start
    while cursor < end:
        # for_each_vma_range(vmi, vma, end): the maple state resumes after the
        # last entry found, and only entries below end count.
        vma = find_vma(vrm.mm, cursor)
        if vma is None or vma.vm_start >= end:
            break
        # Account for start, end not aligned with VMA start, end.
        addr = max(vma.vm_start, start)
        length = min(end, vma.vm_end) - addr
        # No gap permitted at the start of the range.
        if not seen_vma and start < vma.vm_start:
            return -errno.EFAULT
        # To sensibly move multiple VMAs, [...] we simply attempt to move such
        # that the gaps between source VMAs remain consistent in destination
        # VMAs.
        offset = vma.vm_start - last_end if seen_vma else 0
        last_end = vma.vm_end
        vrm.vma = vma
        vrm.addr = addr
        vrm.new_addr = target_addr + offset
        vrm.old_len = vrm.new_len = length
        # vma_multi_allowed() is true for anonymous VMAs without userfaultfd.
        res_vma = k.ops.check_prep_vma(k, vrm)
        if not res_vma:
            res_vma = k.ops.mremap_to(k, vrm)
        if res_vma < 0:
            return res_vma
        if not seen_vma:
            res = res_vma
        seen_vma = True
        target_addr = res_vma + vrm.new_len
        # The iterator resumes after the VMA just handled (vma_iter_invalidate()
        # re-walks from there): a VMA left in place by MREMAP_DONTUNMAP is not
        # visited again.
        cursor = last_end
    return res


def do_mremap(k: Kernel, mm: mm_struct, addr: int, old_pages: int, new_pages: int, flags: int,
              new_addr: int) -> int:
    """``do_mremap()`` (mm/mremap.c, v6.18): the ``mremap()`` system call.

    :param addr: ``unsigned long`` (a page number).
    :param old_pages: ``unsigned long old_len`` in pages.
    :param new_pages: ``unsigned long new_len`` in pages.
    :param flags: ``MREMAP_MAYMOVE`` / ``MREMAP_FIXED`` / ``MREMAP_DONTUNMAP``.
    :param new_addr: ``unsigned long`` (a page number; used with ``MREMAP_FIXED``
        and as a hint with ``MREMAP_DONTUNMAP``).
    :returns: the address of the (possibly moved) mapping.
    :raises KernelError: with the errno of the refusal (see the module docstring).
    """
    vrm = vma_remap_struct(mm=mm, addr=addr, old_len=old_pages, new_len=new_pages, flags=flags,
                           new_addr=new_addr)
    res = k.ops.check_mremap_params(k, vrm)
    if not res:
        if k.ops.vrm_move_only(k, vrm):
            res = k.ops.remap_move(k, vrm)
        else:
            vrm.vma = vma_lookup(mm, vrm.addr)
            res = k.ops.check_prep_vma(k, vrm)
            if not res:
                # Actually execute mremap.
                res = k.ops.mremap_to(k, vrm) if k.ops.vrm_implies_new_addr(k, vrm) else k.ops.mremap_at(k, vrm)
    if res < 0:
        raise KernelError(-res, "do_mremap", "mremap refused")
    return res


#: The kernel functions of mm/mremap.c, by name, for the design table.
MREMAP_OPS: dict[str, Callable[..., Any]] = {
    "check_mremap_params": check_mremap_params,
    "check_prep_vma": check_prep_vma,
    "copy_vma_and_data": copy_vma_and_data,
    "do_mremap": do_mremap,
    "dontunmap_complete": dontunmap_complete,
    "expand_vma": expand_vma,
    "move_page_tables": move_page_tables,
    "move_vma": move_vma,
    "mremap_at": mremap_at,
    "mremap_to": mremap_to,
    "prep_move_vma": prep_move_vma,
    "remap_move": remap_move,
    "shrink_vma": shrink_vma,
    "unmap_source_vma": unmap_source_vma,
    "vma_expandable": vma_expandable,
    "vrm_calc_charge": vrm_calc_charge,
    "vrm_implies_new_addr": vrm_implies_new_addr,
    "vrm_move_only": vrm_move_only,
    "vrm_overlaps": vrm_overlaps,
    "vrm_set_new_addr": vrm_set_new_addr,
    "vrm_will_map_new": vrm_will_map_new,
}
