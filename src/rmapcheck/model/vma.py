"""VMA merge, split, expand and unmap: ``mm/vma.c`` and ``mm/vma.h``, v6.18.

The model follows the v6.18 code, which carries Linux kernel commit
879bca0a2c4f ("mm/vma: fix incorrectly disallowed anonymous VMA merges")
(in v6.15): ``is_mergeable_anon_vma()`` distinguishes the three anon_vma
configurations of a merge and refuses only those that would widen the anon_vma
hierarchy of a fork child (``vma_is_fork_child()``). On top of v6.18 it
carries the January 2026 stable fix "mm/vma: fix anon_vma UAF on mremap()
faulted, unfaulted merge" (Lorenzo Stoakes; Fixes: 879bca0a2c4f; Cc: stable),
with its follow-up "mm/vma: enforce VMA fork limit on unfaulted,faulted
mremap merge too": ``copy_vma()`` merges through ``vma_merge_copied_range()``,
which sets ``vmg->copied_from``; ``is_mergeable_anon_vma()`` refuses a Case 1
merge when the copied-from VMA is a fork child, and ``vma_expand()`` always
duplicates the copied-from VMA's anon_vmas into the target. The live
6.18.44 kernel has it: a faulted fork-child VMA moved back in front of an
unfaulted VMA with contiguous ``vm_pgoff`` does not merge, and with a
non-fork-child the merged VMA keeps its anon_vma (a later fork child reads
the data). The design ``linux-6.18.0`` replaces ``vma_merge_copied_range``
by what ``copy_vma()`` did before the fix, a plain ``vma_merge_new_range()``
without ``copied_from``: the merged VMA gets no anon_vma while folios of the
source's anon_vma are moved into it (the UAF the fix describes; without it
the fork child above reads 0).

Every VMA of the model is private anonymous: no ``vm_file``, no ``vm_ops``
(so no ``close``/``may_split``/``open`` hooks and ``can_merge_remove_vma()`` is
always true), no mempolicy, no userfaultfd context, no anon_vma name, no
uprobes, no hugetlb, and ``VM_SOFTDIRTY`` is 0 (``CONFIG_MEM_SOFT_DIRTY`` is off).
The branches for these collapse and are left out; each function's docstring
says which. The maple tree is the sorted list ``mm.mmap``; a VMA iterator is
replaced by explicit neighbour lookups. ``vma_iter_prealloc()`` can fail at the
fault-injection site ``"vma_iter_prealloc"``. Per-VMA locks
(``vma_start_write()``) and khugepaged registration have no observable effect
in the model and are omitted.

Functions that return ``ERR_PTR()`` in the kernel return a negative errno
(``int``) here; functions returning an ``int`` error return 0 or ``-errno``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.findings import KernelBug, KernelWarning
from rmapcheck.model.mm_types import (
    VM_ACCESS_FLAGS,
    VM_ACCOUNT,
    VM_IGNORE_MERGE,
    VM_SPECIAL,
    anon_vma,
    mm_struct,
    vm_area_struct,
)
from rmapcheck.model.vma_init import find_vma, find_vma_prev, vma_iter_remove, vma_iter_store, vma_next, vma_prev

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "VMA_MERGE_ERROR_NOMEM",
    "VMA_MERGE_NOMERGE",
    "VMA_MERGE_START",
    "VMA_MERGE_SUCCESS",
    "VMA_OPS",
    "VMG_VMA_STATE",
    "__split_vma",
    "anon_vma_compatible",
    "can_vma_merge_after",
    "can_vma_merge_before",
    "can_vma_merge_left",
    "can_vma_merge_right",
    "commit_merge",
    "copy_vma",
    "do_vmi_munmap",
    "dup_anon_vma",
    "find_mergeable_anon_vma",
    "init_multi_vma_prep",
    "is_mergeable_anon_vma",
    "is_mergeable_vma",
    "remove_vma",
    "reusable_anon_vma",
    "split_vma",
    "validate_mm",
    "vma_complete",
    "vma_expand",
    "vma_is_fork_child",
    "vma_iter_prealloc",
    "vma_merge_copied_range",
    "vma_merge_existing_range",
    "vma_merge_extend",
    "vma_merge_new_range",
    "vma_merge_struct",
    "vma_modify",
    "vma_modify_flags",
    "vma_munmap_struct",
    "vma_prepare",
    "vma_prepare_struct",
    "vma_set_range",
    "vmg_adjust_set_range",
    "vms_abort_munmap_vmas",
    "vms_clear_ptes",
    "vms_complete_munmap_vmas",
    "vms_gather_munmap_vmas",
]

# enum vma_merge_state (mm/vma.h, v6.18)
VMA_MERGE_START = 0
VMA_MERGE_ERROR_NOMEM = 1
VMA_MERGE_NOMERGE = 2
VMA_MERGE_SUCCESS = 3


@dataclass(eq=False)
class vma_merge_struct:
    """``struct vma_merge_struct`` (mm/vma.h, v6.18): the state of one merge attempt.

    The kernel's ``__remove_middle``, ``__remove_next``, ``__adjust_middle_start``
    and ``__adjust_next_start`` lose their leading ``__`` here (Python would
    mangle them inside a class). ``file``, ``policy``, ``uffd_ctx`` and
    ``anon_name`` are always ``NULL`` in the model and are left out.
    """

    mm: mm_struct
    start: int
    end: int
    pgoff: int
    vm_flags: int
    prev: vm_area_struct | None = None
    middle: vm_area_struct | None = None
    next: vm_area_struct | None = None
    target: vm_area_struct | None = None
    anon_vma: anon_vma | None = None
    state: int = VMA_MERGE_START
    just_expand: bool = False
    give_up_on_oom: bool = False
    remove_middle: bool = False
    remove_next: bool = False
    adjust_middle_start: bool = False
    adjust_next_start: bool = False
    #: If copied from (i.e. mremap()'d) the VMA from which we are copying.
    copied_from: vm_area_struct | None = None


def VMG_VMA_STATE(prev: vm_area_struct | None, vma: vm_area_struct, start: int,
                  end: int) -> vma_merge_struct:
    """``VMG_VMA_STATE()`` (mm/vma.h, v6.18): a merge state for ``[start, end)`` of ``vma``.

    :param prev: ``struct vm_area_struct *`` (``NULL`` if none).
    :param vma: ``struct vm_area_struct *``, becomes ``vmg->middle``.
    """
    if vma.vm_mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("VMG_VMA_STATE", "NULL pointer dereference: vma.vm_mm")
    return vma_merge_struct(mm=vma.vm_mm, start=start, end=end,
                            pgoff=vma.vm_pgoff + (start - vma.vm_start),  # vma_pgoff_offset()
                            vm_flags=vma.vm_flags, prev=prev, middle=vma,
                            anon_vma=vma.anon_vma)


def vma_set_range(vma: vm_area_struct, start: int, end: int, pgoff: int) -> None:
    """``vma_set_range()`` (mm/vma.h, v6.18)."""
    vma.vm_start = start
    vma.vm_end = end
    vma.vm_pgoff = pgoff


def _list_is_singular(vma: vm_area_struct) -> bool:
    return len(vma.anon_vma_chain) == 1


def vma_iter_prealloc(k: Kernel) -> int:
    """``vma_iter_prealloc()`` (mm/vma.h, v6.18): the maple tree's node preallocation, ``GFP_KERNEL``.

    A primitive of the VMA tree, not replaceable; public so that a design
    copying a function that preallocates (``__split_vma()``, ``copy_vma()``)
    can call it.

    :returns: 0, or ``-ENOMEM`` (an injected failure of ``vma_iter_prealloc``).
    """
    return -errno.ENOMEM if k.should_fail("vma_iter_prealloc") else 0


def validate_mm(k: Kernel, mm: mm_struct) -> None:
    """``validate_mm()`` (mm/vma.c, v6.18, ``CONFIG_DEBUG_VM_MAPLE_TREE``).

    Checks that the tree is sorted, non-overlapping and holds non-empty VMAs of
    this mm; ``VM_BUG_ON_MM`` otherwise.
    """
    last_end = -1
    for v in mm.mmap:
        if v.vm_start >= v.vm_end or v.vm_start < last_end or v.vm_mm is not mm or not v._live:
            raise KernelBug("validate_mm", f"VM_BUG_ON_MM: bad VMA {v.kname()} "
                            f"[{v.vm_start:#x},{v.vm_end:#x}) after end {last_end:#x}")
        last_end = v.vm_end


# -- mergeability ------------------------------------------------------------------

def vma_is_fork_child(k: Kernel, vma: vm_area_struct | None) -> bool:
    """``vma_is_fork_child()`` (mm/vma.c, v6.18).

    Was this VMA ever forked from a parent, i.e. maybe contains CoW mappings?
    "The list_is_singular() test is to avoid merging VMA cloned from parents.
    This can improve scalability caused by the anon_vma root lock."

    :param vma: ``struct vm_area_struct *`` (may be ``NULL``).
    """
    return vma is not None and vma.anon_vma is not None and not _list_is_singular(vma)


def is_mergeable_vma(k: Kernel, vmg: vma_merge_struct, merge_next: bool) -> bool:
    """``is_mergeable_vma()`` (mm/vma.c, v6.18): flags, file, policy, uffd, name match.

    Only the flags comparison remains (``~VM_IGNORE_MERGE``); the file, mempolicy,
    userfaultfd context and anon_vma name are ``NULL`` on both sides in the model.
    """
    vma = vmg.next if merge_next else vmg.prev
    if vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("is_mergeable_vma", "NULL pointer dereference: vma")
    if (vma.vm_flags ^ vmg.vm_flags) & ~VM_IGNORE_MERGE:
        return False
    return True


def is_mergeable_anon_vma(k: Kernel, vmg: vma_merge_struct, merge_next: bool) -> bool:
    """``is_mergeable_anon_vma()`` (mm/vma.c, v6.18; Linux kernel commit 879bca0a2c4f).

    :param vmg: ``struct vma_merge_struct *``.
    :param merge_next: true to test against ``vmg->next``, else ``vmg->prev``.
    """
    tgt = vmg.next if merge_next else vmg.prev
    if tgt is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("is_mergeable_anon_vma", "NULL pointer dereference: tgt")
    src = vmg.middle  # existing merge case.
    tgt_anon = tgt.anon_vma
    src_anon = vmg.anon_vma

    # We _can_ have !src, vmg->anon_vma via copy_vma(). In this instance we
    # will remove the existing VMA's anon_vma's so there's no scalability
    # concerns.
    if src is not None and src_anon is not src.anon_vma:
        k.warnings.append(KernelWarning("is_mergeable_anon_vma",
                                        "VM_WARN_ON(src && src_anon != src->anon_vma)"))

    # Case 1 - we will dup_anon_vma() from src into tgt.
    if tgt_anon is None and src_anon is not None:
        if k.ops.vma_is_fork_child(k, src):
            return False
        if k.ops.vma_is_fork_child(k, vmg.copied_from):
            return False
        return True
    # Case 2 - we will simply use tgt's anon_vma.
    if tgt_anon is not None and src_anon is None:
        return not k.ops.vma_is_fork_child(k, tgt)
    # Case 3 - the anon_vma's are already shared.
    return src_anon is tgt_anon


def can_vma_merge_before(k: Kernel, vmg: vma_merge_struct) -> bool:
    """``can_vma_merge_before()`` (mm/vma.c, v6.18).

    Return true if we can merge this (vm_flags,anon_vma,file,vm_pgoff) in front
    of (at a lower virtual address and file offset than) the vma. "We cannot
    merge two vmas if they have differently assigned (non-NULL) anon_vmas, nor
    if same anon_vma is assigned but offsets incompatible." We assume the vma
    may be removed as part of the merge.
    """
    if vmg.next is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("can_vma_merge_before", "NULL pointer dereference: vmg.next")
    pglen = vmg.end - vmg.start
    if k.ops.is_mergeable_vma(k, vmg, True) and k.ops.is_mergeable_anon_vma(k, vmg, True):
        if vmg.next.vm_pgoff == vmg.pgoff + pglen:
            return True
    return False


def can_vma_merge_after(k: Kernel, vmg: vma_merge_struct) -> bool:
    """``can_vma_merge_after()`` (mm/vma.c, v6.18).

    Return true if we can merge this (vm_flags,anon_vma,file,vm_pgoff) beyond
    (at a higher virtual address and file offset than) the vma. We assume that
    vma is not removed as part of the merge.
    """
    if vmg.prev is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("can_vma_merge_after", "NULL pointer dereference: vmg.prev")
    if k.ops.is_mergeable_vma(k, vmg, False) and k.ops.is_mergeable_anon_vma(k, vmg, False):
        if vmg.prev.vm_pgoff + vmg.prev.pages() == vmg.pgoff:
            return True
    return False


def can_vma_merge_left(k: Kernel, vmg: vma_merge_struct) -> bool:
    """``can_vma_merge_left()`` (mm/vma.c, v6.18).

    "Can the proposed VMA be merged with the left (previous) VMA taking into
    account the start position of the proposed range."
    """
    return vmg.prev is not None and vmg.prev.vm_end == vmg.start and k.ops.can_vma_merge_after(k, vmg)


def can_vma_merge_right(k: Kernel, vmg: vma_merge_struct, can_merge_left: bool) -> bool:
    """``can_vma_merge_right()`` (mm/vma.c, v6.18).

    "Can the proposed VMA be merged with the right (next) VMA taking into
    account the end position of the proposed range." If it can merge left too,
    the left and right anon_vmas must agree with each other.

    :param can_merge_left: the result of ``can_vma_merge_left()``.
    """
    nxt = vmg.next
    if nxt is None or vmg.end != nxt.vm_start or not k.ops.can_vma_merge_before(k, vmg):
        return False
    if not can_merge_left:
        return True
    # If we can merge with prev (left) and next (right), indicating that each
    # VMA's anon_vma is compatible with the proposed anon_vma, this does not
    # mean prev and next are compatible with EACH OTHER.
    #
    # We therefore check this in addition to mergeability to either side.
    prev = vmg.prev
    if prev is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("can_vma_merge_right", "NULL pointer dereference: prev")
    return prev.anon_vma is None or nxt.anon_vma is None or prev.anon_vma is nxt.anon_vma


def _can_merge_remove_vma(vma: vm_area_struct) -> bool:
    # can_merge_remove_vma(): "We can only remove VMAs when merging if they do
    # not have a close hook." No VMA of the model has vm_ops.
    return True


# -- vma_prepare / vma_complete -------------------------------------------------------

@dataclass(eq=False)
class vma_prepare_struct:
    """``struct vma_prepare`` (mm/vma.h, v6.18), named apart from the function ``vma_prepare()``.

    ``file`` and ``mapping`` are always ``NULL`` in the model.
    """

    vma: vm_area_struct
    anon_vma: anon_vma | None = None
    adj_next: vm_area_struct | None = None
    insert: vm_area_struct | None = None
    remove: vm_area_struct | None = None
    remove2: vm_area_struct | None = None


def init_multi_vma_prep(k: Kernel, vma: vm_area_struct,
                        vmg: vma_merge_struct | None) -> vma_prepare_struct:
    """``init_multi_vma_prep()`` (mm/vma.c, v6.18): the ``struct vma_prepare`` of a merge or split.

    :param vmg: ``struct vma_merge_struct *`` (``NULL`` for a split).
    """
    vp = vma_prepare_struct(vma=vma, anon_vma=vma.anon_vma)
    removes: list[vm_area_struct] = []
    if vmg is not None and vmg.remove_middle:
        if vmg.middle is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("init_multi_vma_prep", "NULL pointer dereference: vmg.middle")
        removes.append(vmg.middle)
    if vmg is not None and vmg.remove_next:
        if vmg.next is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("init_multi_vma_prep", "NULL pointer dereference: vmg.next")
        removes.append(vmg.next)
    vp.remove = removes[0] if removes else None
    vp.remove2 = removes[1] if len(removes) > 1 else None

    if vmg is not None and vmg.adjust_middle_start:
        adjust = vmg.middle
    elif vmg is not None and vmg.adjust_next_start:
        adjust = vmg.next
    else:
        adjust = None
    vp.adj_next = adjust
    if vp.anon_vma is None and adjust is not None:
        vp.anon_vma = adjust.anon_vma
    if (vp.anon_vma is not None and adjust is not None and adjust.anon_vma is not None
            and vp.anon_vma is not adjust.anon_vma):
        k.warnings.append(KernelWarning(
            "init_multi_vma_prep",
            "VM_WARN_ON(vp->anon_vma && adjust && adjust->anon_vma && vp->anon_vma != adjust->anon_vma)"))
    return vp


def vma_prepare(k: Kernel, vp: vma_prepare_struct) -> None:
    """``vma_prepare()`` (mm/vma.c, v6.18): take the anon_vma lock before altering the VMAs.

    The interval tree's pre-update is implicit in the model (an AVC's interval
    is read from its VMA).
    """
    if vp.anon_vma is not None:
        k.ops.anon_vma_lock_write(k, vp.anon_vma, "vma_prepare")


def vma_complete(k: Kernel, vp: vma_prepare_struct, mm: mm_struct) -> None:
    """``vma_complete()`` (mm/vma.c, v6.18): insert the split-off VMA, unlock, free merged-away VMAs.

    A removed VMA with an anon_vma is unlinked from it (``anon_vma_merge()``).
    """
    if vp.insert is not None:
        # split_vma has split insert from vma, and needs us to insert it before
        # dropping the locks (it may either follow vma or precede it).
        vma_iter_store(mm, vp.insert)  # map_count++
    if vp.anon_vma is not None:
        k.ops.anon_vma_unlock_write(k, vp.anon_vma, "vma_complete")
    remove = vp.remove
    while remove is not None:
        vma_iter_remove(mm, remove)  # vma_mark_detached(); map_count--
        if remove.anon_vma is not None:
            k.ops.anon_vma_merge(k, vp.vma, remove)
        if vp.remove2 is None and vp.vma.vm_end < remove.vm_end:
            k.warnings.append(KernelWarning("vma_complete",
                                            "WARN_ON_ONCE(vp->vma->vm_end < vp->remove->vm_end)"))
        k.ops.vm_area_free(k, remove, "vma_complete")
        # In mprotect's case 6 (see comments on vma_merge), we are removing
        # both mid and next vmas
        remove, vp.remove2 = vp.remove2, None


# -- split ------------------------------------------------------------------------------

def __split_vma(k: Kernel, vma: vm_area_struct, addr: int, new_below: int) -> int:
    """``__split_vma()`` (mm/vma.c, v6.18): split ``vma`` at ``addr``.

    "__split_vma() bypasses sysctl_max_map_count checking. We use this where it
    has already been checked or doesn't make sense to fail." A new VMA is
    allocated for ``[vm_start, addr)`` if ``new_below``, else for
    ``[addr, vm_end)``; it gets an exact copy of the anon_vma chain
    (``anon_vma_clone()``). No ``may_split``/``open`` hooks, mempolicy, file or
    hugetlb in the model.

    :param vma: ``struct vm_area_struct *``.
    :param addr: ``unsigned long`` (a page number here).
    :param new_below: ``int``.
    :returns: 0 or ``-ENOMEM``.
    """
    fn = "__split_vma"
    if vma.vm_start >= addr:
        k.warnings.append(KernelWarning(fn, "WARN_ON(vma->vm_start >= addr)"))
    if vma.vm_end <= addr:
        k.warnings.append(KernelWarning(fn, "WARN_ON(vma->vm_end <= addr)"))
    new = k.ops.vm_area_dup(k, vma, fn)
    if new is None:
        return -errno.ENOMEM
    if new_below:
        new.vm_end = addr
    else:
        new.vm_start = addr
        new.vm_pgoff += addr - vma.vm_start

    err = vma_iter_prealloc(k)
    if err:
        # out_free_vma
        k.ops.vm_area_free(k, new, fn)
        return err
    err = k.ops.anon_vma_clone(k, new, vma)
    if err:
        # out_free_mpol / out_free_vmi / out_free_vma
        k.ops.vm_area_free(k, new, fn)
        return err

    vp = k.ops.init_multi_vma_prep(k, vma, None)
    vp.insert = new
    k.ops.vma_prepare(k, vp)
    if new_below:
        vma.vm_start = addr
        vma.vm_pgoff += addr - new.vm_start
    else:
        vma.vm_end = addr
    # vma_complete stores the new vma
    if vma.vm_mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("__split_vma", "NULL pointer dereference: vma.vm_mm")
    k.ops.vma_complete(k, vp, vma.vm_mm)
    validate_mm(k, vma.vm_mm)
    return 0


def split_vma(k: Kernel, vma: vm_area_struct, addr: int, new_below: int) -> int:
    """``split_vma()`` (mm/vma.c, v6.18): ``__split_vma()`` within ``sysctl_max_map_count``.

    :returns: 0 or ``-ENOMEM``.
    """
    if vma.vm_mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("split_vma", "NULL pointer dereference: vma.vm_mm")
    if vma.vm_mm.map_count >= k.config["sysctl_max_map_count"]:
        return -errno.ENOMEM
    return k.ops.__split_vma(k, vma, addr, new_below)


# -- merge ------------------------------------------------------------------------------

def dup_anon_vma(k: Kernel, dst: vm_area_struct, src: vm_area_struct) -> tuple[int, vm_area_struct | None]:
    """``dup_anon_vma()`` (mm/vma.c, v6.18): give an unfaulted merge target src's anon_vmas.

    "There are three cases to consider for correctly propagating anon_vma's on
    merge. The first is trivial - neither VMA has anon_vma, we need not do
    anything. The second where both have anon_vma is also a no-op, as they must
    then be the same, so there is simply nothing to copy. Here we cover the
    third - if the destination VMA has no anon_vma, that is it is unfaulted, we
    need to ensure that the newly merged range is referenced by the anon_vma's
    of the source."

    :param dst: ``struct vm_area_struct *``, the VMA merged into.
    :param src: ``struct vm_area_struct *``.
    :returns: ``(0 or -ENOMEM, *dup)``: ``*dup`` is ``dst`` when its chain was cloned.
    """
    if src.anon_vma is not None and dst.anon_vma is None:
        dst.anon_vma = src.anon_vma
        ret = k.ops.anon_vma_clone(k, dst, src)
        if ret:
            return ret, None
        return 0, dst
    return 0, None


def vmg_adjust_set_range(k: Kernel, vmg: vma_merge_struct) -> None:
    """``vmg_adjust_set_range()`` (mm/vma.c, v6.18): move the start of middle or next, whichever shrinks."""
    if vmg.adjust_middle_start:
        adjust = vmg.middle
        if adjust is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("vmg_adjust_set_range", "NULL pointer dereference: adjust")
        pgoff = adjust.vm_pgoff + (vmg.end - adjust.vm_start)
    elif vmg.adjust_next_start:
        adjust = vmg.next
        if adjust is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("vmg_adjust_set_range", "NULL pointer dereference: adjust")
        pgoff = adjust.vm_pgoff - (adjust.vm_start - vmg.end)
    else:
        return
    vma_set_range(adjust, vmg.end, adjust.vm_end, pgoff)


def commit_merge(k: Kernel, vmg: vma_merge_struct) -> int:
    """``commit_merge()`` (mm/vma.c, v6.18): actually perform the VMA merge operation.

    "If vmg->give_up_on_oom is set, we're safe, because we don't actually
    manipulate any VMAs until we succeed at preallocation. Past this point, we
    will not return an error."

    :returns: 0 or ``-ENOMEM`` (maple tree preallocation).
    """
    if vmg.adjust_next_start:
        # We manipulate middle and adjust next, which is the target.
        vma = vmg.middle
    else:
        vma = vmg.target
    if vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("commit_merge", "NULL pointer dereference: vma")
    vp = k.ops.init_multi_vma_prep(k, vma, vmg)
    if vma_iter_prealloc(k):
        return -errno.ENOMEM
    k.ops.vma_prepare(k, vp)
    vma_set_range(vma, vmg.start, vmg.end, vmg.pgoff)
    k.ops.vmg_adjust_set_range(k, vmg)
    k.ops.vma_complete(k, vp, vmg.mm)
    validate_mm(k, vmg.mm)
    return 0


def vma_merge_existing_range(k: Kernel, vmg: vma_merge_struct) -> vm_area_struct | None:
    """``vma_merge_existing_range()`` (mm/vma.c, v6.18): merge a modified part of ``vmg->middle``.

    The range ``[vmg->start, vmg->end)`` of an existing VMA is about to change
    attributes (mprotect, madvise). If it abuts ``prev`` or ``next`` and the new
    attributes match, merge::

        |<------>|              |<----------------->|
        |-------********-------|  ********* = range of middle
          prev   middle   next

    The range must start at middle's start or end at its end: "If a special
    mapping or if the range being modified is neither at the furthermost left
    or right side of the VMA, then we have no chance of merging and should
    abort." ``vma_merge_existing_range`` does not split.

    :param vmg: ``struct vma_merge_struct *`` with ``middle`` (and ``prev``) set.
    :returns: ``struct vm_area_struct *`` the merged VMA, or ``NULL`` with
        ``vmg->state`` ``VMA_MERGE_NOMERGE`` or ``VMA_MERGE_ERROR_NOMEM``.
    """
    fn = "vma_merge_existing_range"
    middle = vmg.middle
    prev = vmg.prev
    start = vmg.start
    end = vmg.end
    if middle is None:
        raise KernelWarning(fn, "VM_WARN_ON_VMG(!middle): we are modifying a VMA, so caller must specify")
    if vmg.next is not None:
        k.warnings.append(KernelWarning(fn, "VM_WARN_ON_VMG(vmg->next): we set this"))
    if prev is not None and start <= prev.vm_start:
        k.warnings.append(KernelWarning(fn, "VM_WARN_ON_VMG(prev && start <= prev->vm_start)"))
    if start >= end:
        k.warnings.append(KernelWarning(fn, "VM_WARN_ON_VMG(start >= end)"))
    # If middle == prev, then we are offset into a VMA. Otherwise, if we are
    # not, we must span a portion of the VMA.
    if (middle is not prev and start != middle.vm_start) or end > middle.vm_end:
        k.warnings.append(KernelWarning(fn, "VM_WARN_ON_VMG: range not within middle"))
    # An existing merge can never be used by the mremap() logic.
    if vmg.copied_from is not None:
        k.warnings.append(KernelWarning(fn, "VM_WARN_ON_VMG(vmg->copied_from)"))
    left_side = start == middle.vm_start
    right_side = end == middle.vm_end

    vmg.state = VMA_MERGE_NOMERGE
    if vmg.vm_flags & VM_SPECIAL or (not left_side and not right_side):
        return None

    merge_left = k.ops.can_vma_merge_left(k, vmg) if left_side else False
    nxt: vm_area_struct | None = None
    if right_side:
        nxt = vmg.next = vma_next(vmg.mm, middle)
        merge_right = k.ops.can_vma_merge_right(k, vmg, merge_left)
    else:
        merge_right = False

    if not merge_left and not merge_right:  # If we have nothing to merge, abort.
        return None

    merge_both = merge_left and merge_right
    # If we span the entire VMA, a merge implies it will be deleted.
    vmg.remove_middle = left_side and right_side
    # If we need to remove middle in its entirety but are unable to do so, we
    # have no sensible recourse but to abort the merge.
    if vmg.remove_middle and not _can_merge_remove_vma(middle):
        return None
    # If we merge both VMAs, then next is also deleted. This implies
    # merge_will_delete_vma also.
    vmg.remove_next = merge_both
    # If we cannot delete next, then we can reduce the operation to merging
    # prev and middle (thereby deleting middle).
    if vmg.remove_next and nxt is not None and not _can_merge_remove_vma(nxt):
        vmg.remove_next = False
        merge_right = False
        merge_both = False

    if merge_right:
        vmg.target = nxt
    if merge_left:
        vmg.target = prev

    if merge_both:
        #  |<-------------------->|
        #  |-------********-------|
        #    prev   middle   next
        #   extend  delete  delete
        if prev is None or nxt is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("vma_merge_existing_range", "NULL pointer dereference: prev or nxt")
        vmg.start = prev.vm_start
        vmg.end = nxt.vm_end
        vmg.pgoff = prev.vm_pgoff
        # We already ensured anon_vma compatibility above, so now it's simply a
        # case of, if prev has no anon_vma object, which of next or middle
        # contains the anon_vma we must duplicate.
        err, anon_dup = k.ops.dup_anon_vma(k, prev, nxt if nxt.anon_vma is not None else middle)
    elif merge_left:
        #  |<------------>|      OR
        #  |<----------------->|
        #  |-------*************
        #    prev     middle
        #   extend shrink/delete
        if prev is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("vma_merge_existing_range", "NULL pointer dereference: prev")
        vmg.start = prev.vm_start
        vmg.pgoff = prev.vm_pgoff
        if not vmg.remove_middle:
            vmg.adjust_middle_start = True
        err, anon_dup = k.ops.dup_anon_vma(k, prev, middle)
    else:  # merge_right
        #      |<------------->| OR
        #  |<----------------->|
        #  *************-------|
        #     middle     next
        #  shrink/delete extend
        if nxt is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("vma_merge_existing_range", "NULL pointer dereference: nxt")
        pglen = vmg.end - vmg.start
        # If we are offset into a VMA, then prev must be middle.
        if vmg.start > middle.vm_start and prev is not None and middle is not prev:
            k.warnings.append(KernelWarning(fn, "VM_WARN_ON_VMG: offset into a VMA but prev != middle"))
        if vmg.remove_middle:
            vmg.end = nxt.vm_end
            vmg.pgoff = nxt.vm_pgoff - pglen
        else:
            # We shrink middle and expand next.
            vmg.adjust_next_start = True
            vmg.start = middle.vm_start
            vmg.end = start
            vmg.pgoff = middle.vm_pgoff
        err, anon_dup = k.ops.dup_anon_vma(k, nxt, middle)

    if err:
        # abort: "This means we have failed to clone anon_vma's correctly, but
        # no actual changes to VMAs have occurred, so no harm no foul".
        if not vmg.give_up_on_oom:
            vmg.state = VMA_MERGE_ERROR_NOMEM
        return None

    err = k.ops.commit_merge(k, vmg)
    if err:
        if err != -errno.ENOMEM:
            k.warnings.append(KernelWarning(fn, "VM_WARN_ON(err != -ENOMEM)"))
        if anon_dup is not None:
            k.ops.unlink_anon_vmas(k, anon_dup)
        # We've cleaned up any cloned anon_vma's, no VMAs have been modified,
        # no harm no foul if the user requests that we not report this and
        # just give up, leaving the VMAs unmerged.
        if not vmg.give_up_on_oom:
            vmg.state = VMA_MERGE_ERROR_NOMEM
        return None

    vmg.state = VMA_MERGE_SUCCESS
    return vmg.target


def vma_merge_new_range(k: Kernel, vmg: vma_merge_struct) -> vm_area_struct | None:
    """``vma_merge_new_range()`` (mm/vma.c, v6.18): attempt to merge a new range with its neighbours.

    We are about to add a VMA to the address space at ``[vmg->start,
    vmg->end)``. "1. There is a VMA with identical properties immediately
    adjacent to the proposed new VMA either before or after it - EXPAND that
    VMA. 2. There are VMAs with identical properties immediately adjacent both
    before AND after it - EXPAND the former and REMOVE the latter. 3. There are
    no VMAs immediately adjacent to the proposed new VMA or those VMAs do not
    have identical attributes - NO MERGE POSSIBLE."

    The caller must have determined that the range is empty and set
    ``vmg->prev`` and ``vmg->next``.

    :returns: ``struct vm_area_struct *`` the expanded VMA, or ``NULL``.
    """
    fn = "vma_merge_new_range"
    prev = vmg.prev
    nxt = vmg.next
    end = vmg.end
    if vmg.middle is not None:
        k.warnings.append(KernelWarning(fn, "VM_WARN_ON_VMG(vmg->middle)"))
    if vmg.target is not None:
        k.warnings.append(KernelWarning(fn, "VM_WARN_ON_VMG(vmg->target)"))

    vmg.state = VMA_MERGE_NOMERGE
    # Special VMAs are unmergeable, also if no prev/next.
    if vmg.vm_flags & VM_SPECIAL or (prev is None and nxt is None):
        return None

    can_merge_left = k.ops.can_vma_merge_left(k, vmg)
    can_merge_right = not vmg.just_expand and k.ops.can_vma_merge_right(k, vmg, can_merge_left)

    # If we can merge with the next VMA, adjust vmg accordingly.
    if can_merge_right:
        if nxt is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("vma_merge_new_range", "NULL pointer dereference: nxt")
        vmg.end = nxt.vm_end
        vmg.target = nxt
    # If we can merge with the previous VMA, adjust vmg accordingly.
    if can_merge_left:
        if prev is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("vma_merge_new_range", "NULL pointer dereference: prev")
        vmg.start = prev.vm_start
        vmg.target = prev
        vmg.pgoff = prev.vm_pgoff
        # If this merge would result in removal of the next VMA but we are not
        # permitted to do so, reduce the operation to merging prev and vma.
        if can_merge_right and nxt is not None and not _can_merge_remove_vma(nxt):
            vmg.end = end

    # Now try to expand adjacent VMA(s). This takes care of removing the
    # following VMA if we have VMAs on both sides.
    if vmg.target is not None and not k.ops.vma_expand(k, vmg):
        vmg.state = VMA_MERGE_SUCCESS
        return vmg.target
    return None


def vma_expand(k: Kernel, vmg: vma_merge_struct) -> int:
    """``vma_expand()`` (mm/vma.c, v6.18 with the 2026 mremap fix): expand ``vmg->target``.

    The target grows to ``[vmg->start, vmg->end)``. Removes ``vmg->next`` if
    the expansion covers it entirely, first giving the target next's anon_vmas
    (``dup_anon_vma()``) if the target has none; when copying from a VMA
    (mremap), the target also gets the copied-from VMA's anon_vmas.

    :returns: 0 or ``-ENOMEM``.
    """
    fn = "vma_expand"
    target = vmg.target
    nxt = vmg.next
    anon_dup: vm_area_struct | None = None
    remove_next = False
    if target is None:
        raise KernelWarning(fn, "VM_WARN_ON_VMG(!target)")
    if nxt is not None and target is not nxt and vmg.end == nxt.vm_end:
        remove_next = True
    # Not merging but overwriting any part of next is not handled.
    if nxt is not None and not remove_next and nxt is not target and vmg.end > nxt.vm_start:
        k.warnings.append(KernelWarning(fn, "VM_WARN_ON_VMG: overwriting part of next"))
    # Only handles expanding.
    if target.vm_start < vmg.start or target.vm_end > vmg.end:
        k.warnings.append(KernelWarning(fn, "VM_WARN_ON_VMG: only handles expanding"))
    # If we are removing the next VMA or copying from a VMA (e.g.
    # mremap()'ing), we must propagate anon_vma state.
    #
    # Note that, by convention, callers ignore OOM for this case, so we don't
    # need to account for vmg->give_up_on_mm here.
    ret = 0
    if remove_next:
        ret, anon_dup = k.ops.dup_anon_vma(k, target, nxt)  # type: ignore[arg-type]
    if not ret and vmg.copied_from is not None:
        ret, dup = k.ops.dup_anon_vma(k, target, vmg.copied_from)
        anon_dup = dup or anon_dup
    if ret:
        return ret
    if remove_next:
        vmg.remove_next = True
    if k.ops.commit_merge(k, vmg):
        # nomem:
        if anon_dup is not None:
            k.ops.unlink_anon_vmas(k, anon_dup)
        # If the user requests that we just give upon OOM, we are safe to do so
        # here, as commit merge provides this contract to us.
        if not vmg.give_up_on_oom:
            vmg.state = VMA_MERGE_ERROR_NOMEM
        return -errno.ENOMEM
    return 0


def vma_merge_extend(k: Kernel, vma: vm_area_struct, delta: int) -> vm_area_struct | None:
    """``vma_merge_extend()`` (mm/vma.c, v6.18): expand ``vma`` by ``delta`` pages.

    Potentially merges with an immediately adjacent VMA with identical
    properties. Used by mremap()'s in-place expansion.

    :returns: ``struct vm_area_struct *`` or ``NULL`` on failure.
    """
    vmg = VMG_VMA_STATE(vma, vma, vma.vm_end, vma.vm_end + delta)
    if vma.vm_mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("vma_merge_extend", "NULL pointer dereference: vma.vm_mm")
    nxt = find_vma(vma.vm_mm, vma.vm_end)  # vma_iter_next_rewind()
    vmg.next = nxt
    vmg.middle = None  # We use the VMA to populate VMG fields only.
    return k.ops.vma_merge_new_range(k, vmg)


def vma_modify(k: Kernel, vmg: vma_merge_struct) -> vm_area_struct | int:
    """``vma_modify()`` (mm/vma.c, v6.18): merge if possible, else split off ``[start, end)``.

    :returns: ``struct vm_area_struct *`` covering exactly ``[start, end)``, or
        a negative errno (``ERR_PTR``).
    """
    vma = vmg.middle
    if vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("vma_modify", "NULL pointer dereference: vma")
    start = vmg.start
    end = vmg.end
    # First, try to merge.
    merged = k.ops.vma_merge_existing_range(k, vmg)
    if merged is not None:
        return merged
    if vmg.state == VMA_MERGE_ERROR_NOMEM:
        return -errno.ENOMEM
    # Split any preceding portion of the VMA.
    if vma.vm_start < start:
        err = k.ops.split_vma(k, vma, start, 1)
        if err:
            return err
    # Split any trailing portion of the VMA.
    if vma.vm_end > end:
        err = k.ops.split_vma(k, vma, end, 0)
        if err:
            return err
    return vma


def vma_modify_flags(k: Kernel, prev: vm_area_struct | None, vma: vm_area_struct, start: int,
                     end: int, vm_flags: int) -> vm_area_struct | int:
    """``vma_modify_flags()`` (mm/vma.c, v6.18): prepare ``[start, end)`` of ``vma`` for new flags.

    The caller then sets the flags on the returned VMA.

    :param prev: ``struct vm_area_struct *``: the VMA before ``start``, or
        ``vma`` itself when ``start`` is inside ``vma`` (``NULL`` if none).
    :param vm_flags: ``vm_flags_t`` the new flags.
    :returns: ``struct vm_area_struct *`` or a negative errno.
    """
    vmg = VMG_VMA_STATE(prev, vma, start, end)
    vmg.vm_flags = vm_flags
    return k.ops.vma_modify(k, vmg)


def vma_merge_copied_range(k: Kernel, vmg: vma_merge_struct) -> vm_area_struct | None:
    """``vma_merge_copied_range()`` (mm/vma.c): merge a VMA copied by mremap().

    Linux kernel commit 61f67c230a5e ("mm/vma: fix anon_vma UAF on mremap()
    faulted, unfaulted merge") (in v6.19, stable 6.18.y; docs/history.md).

    "vmg->prev, next, start, end, pgoff should all be relative to the COPIED TO
    range, i.e. the target range for the VMA." ``vmg->middle`` holds the
    copied-from VMA on entry and moves to ``vmg->copied_from``.
    """
    # We must have a copied-from VMA.
    if vmg.middle is None:
        k.warnings.append(KernelWarning("vma_merge_copied_range", "VM_WARN_ON_VMG(!vmg->middle)"))
    vmg.copied_from = vmg.middle
    vmg.middle = None
    return k.ops.vma_merge_new_range(k, vmg)


def copy_vma(k: Kernel, vma: vm_area_struct, addr: int, npages: int,
             pgoff: int) -> tuple[vm_area_struct | None, vm_area_struct, bool]:
    """``copy_vma()`` (mm/vma.c, v6.18 with the 2026 mremap fix): the destination VMA of an mremap() move.

    Merges ``[addr, addr + npages)`` with its neighbours if it can, else
    duplicates ``vma`` there with an exact copy of its anon_vma chain. "If
    anonymous vma has not yet been faulted, update new pgoff to match new
    location, to increase its chance of merging."

    :param vma: ``struct vm_area_struct **vmap``: the source.
    :param pgoff: ``pgoff_t`` of ``addr`` at the destination.
    :returns: ``(new_vma or NULL, *vmap, *need_rmap_locks)``; ``*vmap`` is the
        VMA that now holds the source range (the merged VMA if the source was
        merged into the destination).
    """
    fn = "copy_vma"
    vma_start = vma.vm_start
    mm = vma.vm_mm
    if mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("copy_vma", "NULL pointer dereference: mm")
    faulted_in_anon_vma = True
    vmg = VMG_VMA_STATE(None, vma, addr, addr + npages)

    # If anonymous vma has not yet been faulted, update new pgoff to match new
    # location, to increase its chance of merging.
    if vma.anon_vma is None:
        pgoff = addr
        faulted_in_anon_vma = False

    new_vma, vmg.prev = find_vma_prev(mm, addr)
    if new_vma is not None and new_vma.vm_start < addr + npages:
        return None, vma, False  # should never get here

    vmg.pgoff = pgoff
    vmg.next = find_vma(mm, addr)  # vma_iter_next_rewind()
    new_vma = k.ops.vma_merge_copied_range(k, vmg)

    if new_vma is not None:
        # Source vma may have been merged into new_vma
        if vma_start >= new_vma.vm_start and vma_start < new_vma.vm_end:
            # The only way we can get a vma_merge with self during an mremap is
            # if the vma hasn't been faulted in yet and we were allowed to
            # reset the dst vma->vm_pgoff to the destination address of the
            # mremap to allow the merge to happen. mremap must change the
            # vm_pgoff linearity between src and dst vmas (in turn preventing
            # a vma_merge) to be safe. It is only safe to keep the vm_pgoff
            # linear if there are no pages mapped yet.
            if faulted_in_anon_vma:
                raise KernelBug(fn, "VM_BUG_ON_VMA(faulted_in_anon_vma, new_vma)")
            vma = new_vma
        need_rmap_locks = new_vma.vm_pgoff <= vma.vm_pgoff
        return new_vma, vma, need_rmap_locks

    new_vma = k.ops.vm_area_dup(k, vma, fn)
    if new_vma is None:
        return None, vma, False
    vma_set_range(new_vma, addr, addr + npages, pgoff)
    if k.ops.anon_vma_clone(k, new_vma, vma):
        # out_free_mempol / out_free_vma
        k.ops.vm_area_free(k, new_vma, fn)
        return None, vma, False
    # vma_link()
    if vma_iter_prealloc(k):
        # out_vma_link:
        k.ops.unlink_anon_vmas(k, new_vma)
        k.ops.vm_area_free(k, new_vma, fn)
        return None, vma, False
    vma_iter_store(mm, new_vma)  # map_count++
    validate_mm(k, mm)
    return new_vma, vma, False


# -- anon_vma reuse by neighbours ---------------------------------------------------------

def anon_vma_compatible(k: Kernel, a: vm_area_struct, b: vm_area_struct) -> bool:
    """``anon_vma_compatible()`` (mm/vma.c, v6.18).

    "Rough compatibility check to quickly see if it's even worth looking at
    sharing an anon_vma. They need to have the same vm_file, and the flags can
    only differ in things that mprotect may change. NOTE! The fact that we
    share an anon_vma doesn't _have_ to mean that we can merge the two vma's."
    ``a`` precedes ``b``; mempolicy and file are ``NULL`` on both in the model.
    """
    return (a.vm_end == b.vm_start
            and not ((a.vm_flags ^ b.vm_flags) & ~(VM_ACCESS_FLAGS | VM_IGNORE_MERGE))
            and b.vm_pgoff == a.vm_pgoff + (b.vm_start - a.vm_start))


def reusable_anon_vma(k: Kernel, old: vm_area_struct, a: vm_area_struct, b: vm_area_struct) -> anon_vma | None:
    """``reusable_anon_vma()`` (mm/vma.c, v6.18): ``old``'s anon_vma if it may be shared.

    "The list_is_singular() test on the anon_vma_chain only matters for the
    'stable anon_vma' case (ie the thing we want to avoid is to return an
    anon_vma that is 'complex' due to having gone through a fork)."
    """
    if k.ops.anon_vma_compatible(k, a, b):
        av = old.anon_vma
        if av is not None and _list_is_singular(old):
            return av
    return None


def find_mergeable_anon_vma(k: Kernel, vma: vm_area_struct) -> anon_vma | None:
    """``find_mergeable_anon_vma()`` (mm/vma.c, v6.18): a neighbour's anon_vma to reuse.

    "find_mergeable_anon_vma is used by anon_vma_prepare, to check neighbouring
    vmas for a suitable anon_vma, before it goes off to allocate a new one. It
    checks because a repetitive sequence of mprotects and faults may otherwise
    lead to distinct anon_vmas being allocated, preventing vma merge in
    subsequent mprotect." Tries next first, then prev.

    :returns: ``struct anon_vma *`` (``NULL`` if none).
    """
    mm = vma.vm_mm
    if mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("find_mergeable_anon_vma", "NULL pointer dereference: mm")
    av = None
    # Try next first.
    nxt = find_vma(mm, vma.vm_end)  # vma_iter_load() at vm_end
    if nxt is not None and nxt.vm_start <= vma.vm_end:
        av = k.ops.reusable_anon_vma(k, nxt, vma, nxt)
        if av is not None:
            return av
    prev = vma_prev(mm, vma)
    # Try prev next.
    if prev is not None:
        av = k.ops.reusable_anon_vma(k, prev, prev, vma)
    # We might reach here with anon_vma == NULL if we can't find any reusable
    # anon_vma. There's no absolute need to look only at touching neighbours:
    # we could search further afield for "compatible" anon_vmas. But it would
    # probably just be a waste of time searching, or lead to too many vmas
    # hanging off the same anon_vma. We're trying to allow mprotect remerging
    # later on, not trying to minimize memory used for anon_vmas.
    return av


# -- munmap ---------------------------------------------------------------------------------

@dataclass(eq=False)
class vma_munmap_struct:
    """``struct vma_munmap_struct`` (mm/vma.h, v6.18), reduced to what the model uses.

    ``detached`` plays ``mas_detach``: the VMAs taken out of the tree. The
    model removes them from ``mm.mmap`` at gather time (the kernel leaves them
    in the tree, marked detached, until the range is overwritten or cleared).
    """

    mm: mm_struct
    vma: vm_area_struct | None
    start: int
    end: int
    prev: vm_area_struct | None = None
    next: vm_area_struct | None = None
    detached: list[vm_area_struct] | None = None
    nr_pages: int = 0
    nr_accounted: int = 0
    clear_ptes: bool = True


def vms_gather_munmap_vmas(k: Kernel, vms: vma_munmap_struct) -> int:
    """``vms_gather_munmap_vmas()`` (mm/vma.c, v6.18): split at the edges and detach.

    "If we need to split any vma, do it now to save pain later." The first VMA
    is split at ``start`` and the last at ``end``; the VMAs in between are
    detached. On failure the detached VMAs are reattached, but a split already
    done stays. No mseal in the model (``vma_is_sealed()`` is false).

    :returns: 0 or ``-ENOMEM``.
    """
    vma = vms.vma
    if vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("vms_gather_munmap_vmas", "NULL pointer dereference: vma")
    mm = vms.mm
    vms.detached = []
    if vms.start > vma.vm_start:
        # Make sure that map_count on return from munmap() will not exceed its
        # limit; but let map_count go just above its limit temporarily, to help
        # free resources as expected.
        if vms.end < vma.vm_end and mm.map_count >= k.config["sysctl_max_map_count"]:
            return -errno.ENOMEM
        err = k.ops.__split_vma(k, vma, vms.start, 1)
        if err:
            return err
    vms.prev = vma_prev(mm, vma) if vma in mm.mmap else None
    # Detach a range of VMAs from the mm.
    nxt: vm_area_struct | None = vma
    while nxt is not None and nxt.vm_start < vms.end:
        # Does it split the end?
        if nxt.vm_end > vms.end:
            err = k.ops.__split_vma(k, nxt, vms.end, 0)
            if err:
                # end_split_failed: reattach_vmas()
                for v in vms.detached:
                    vma_iter_store(mm, v)
                vms.detached = []
                return err
        following = vma_next(mm, nxt)
        vms.detached.append(nxt)
        vma_iter_remove(mm, nxt)  # vma_mark_detached(); stays counted until complete
        vms.nr_pages += nxt.pages()
        if nxt.vm_flags & VM_ACCOUNT:
            vms.nr_accounted += nxt.pages()
        nxt = following
    vms.next = nxt
    return 0


def vms_clear_ptes(k: Kernel, vms: vma_munmap_struct) -> None:
    """``vms_clear_ptes()`` (mm/vma.c, v6.18): zap the detached VMAs, then unlink their anon_vmas.

    ``unmap_vmas()`` zaps the pages of each detached VMA, then
    ``free_pgtables()`` unlinks each VMA from its anon_vmas
    (``unlink_anon_vmas()``).
    """
    if not vms.clear_ptes:  # Nothing to do
        return
    if vms.detached is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("vms_clear_ptes", "NULL pointer dereference: vms.detached")
    for v in vms.detached:
        k.ops.zap_vma_range(k, v, v.vm_start, v.vm_end)
    for v in vms.detached:
        k.ops.unlink_anon_vmas(k, v)
    vms.clear_ptes = False


def remove_vma(k: Kernel, vma: vm_area_struct) -> None:
    """``remove_vma()`` (mm/vma.c, v6.18): close a vm structure and free it.

    No ``close`` hook, file or mempolicy in the model.
    """
    k.ops.vm_area_free(k, vma, "remove_vma")


def vms_complete_munmap_vmas(k: Kernel, vms: vma_munmap_struct) -> None:
    """``vms_complete_munmap_vmas()`` (mm/vma.c, v6.18): zap, unlink and free the detached VMAs."""
    if not vms.nr_pages:
        return
    k.ops.vms_clear_ptes(k, vms)
    if vms.detached is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("vms_complete_munmap_vmas", "NULL pointer dereference: vms.detached")
    # Remove and clean up vmas
    for v in vms.detached:
        k.ops.remove_vma(k, v)
    vms.detached = []
    validate_mm(k, vms.mm)


def vms_abort_munmap_vmas(k: Kernel, vms: vma_munmap_struct) -> None:
    """``vms_abort_munmap_vmas()`` (mm/vma.h, v6.18): undo a gathered munmap of a failed mmap.

    If the page tables were not cleared yet the VMAs are reattached; else
    "Aborting cannot just call the vm_ops open() because they are often not
    symmetrical and state data has been lost. Resort to the old failure method
    of leaving a gap where the MAP_FIXED mapping failed."
    """
    if not vms.nr_pages:
        return
    if vms.detached is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("vms_abort_munmap_vmas", "NULL pointer dereference: vms.detached")
    if vms.clear_ptes:
        for v in vms.detached:
            vma_iter_store(vms.mm, v)
        vms.detached = []
        return
    k.ops.vms_complete_munmap_vmas(k, vms)


def do_vmi_munmap(k: Kernel, mm: mm_struct, start: int, npages: int) -> int:
    """``do_vmi_munmap()`` and ``do_vmi_align_munmap()`` (mm/vma.c, v6.18).

    Unmap ``[start, start + npages)``: split at the edges, detach, zap the
    pages, unlink the anon_vmas and free the VMAs.

    :param start: ``unsigned long`` (a page number).
    :param npages: ``size_t len`` in pages.
    :returns: 0 or a negative errno (``-EINVAL`` for an empty range).
    """
    end = start + npages
    if npages <= 0 or end > _TASK_SIZE_PAGES:
        return -errno.EINVAL
    # Find the first overlapping VMA
    vma = find_vma(mm, start)
    if vma is None or vma.vm_start >= end:
        return 0
    vms = vma_munmap_struct(mm=mm, vma=vma, start=start, end=end)
    err = k.ops.vms_gather_munmap_vmas(k, vms)
    if err:
        return err
    # Point of no return
    k.ops.vms_complete_munmap_vmas(k, vms)
    return 0


#: TASK_SIZE of x86-64 with 4-level page tables, in pages.
_TASK_SIZE_PAGES = 0x7FFFFFFFF000 >> 12


#: The replaceable functions of mm/vma.c, by name, for the design table.
VMA_OPS: dict[str, Callable[..., Any]] = {
    "__split_vma": __split_vma,
    "anon_vma_compatible": anon_vma_compatible,
    "can_vma_merge_after": can_vma_merge_after,
    "can_vma_merge_before": can_vma_merge_before,
    "can_vma_merge_left": can_vma_merge_left,
    "can_vma_merge_right": can_vma_merge_right,
    "commit_merge": commit_merge,
    "copy_vma": copy_vma,
    "do_vmi_munmap": do_vmi_munmap,
    "dup_anon_vma": dup_anon_vma,
    "find_mergeable_anon_vma": find_mergeable_anon_vma,
    "init_multi_vma_prep": init_multi_vma_prep,
    "is_mergeable_anon_vma": is_mergeable_anon_vma,
    "is_mergeable_vma": is_mergeable_vma,
    "remove_vma": remove_vma,
    "reusable_anon_vma": reusable_anon_vma,
    "split_vma": split_vma,
    "vma_complete": vma_complete,
    "vma_expand": vma_expand,
    "vma_is_fork_child": vma_is_fork_child,
    "vma_merge_copied_range": vma_merge_copied_range,
    "vma_merge_existing_range": vma_merge_existing_range,
    "vma_merge_extend": vma_merge_extend,
    "vma_merge_new_range": vma_merge_new_range,
    "vma_modify": vma_modify,
    "vma_modify_flags": vma_modify_flags,
    "vma_prepare": vma_prepare,
    "vmg_adjust_set_range": vmg_adjust_set_range,
    "vms_abort_munmap_vmas": vms_abort_munmap_vmas,
    "vms_clear_ptes": vms_clear_ptes,
    "vms_complete_munmap_vmas": vms_complete_munmap_vmas,
    "vms_gather_munmap_vmas": vms_gather_munmap_vmas,
}
