"""Process creation and teardown: ``dup_mmap()``, ``mmput()``, ``exit_mmap()``, v6.18.

In v6.18 ``dup_mmap()`` and ``exit_mmap()`` live in mm/mmap.c; ``mmput()`` in
kernel/fork.c.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.findings import KernelError
from rmapcheck.model.mm_types import VM_DONTCOPY, VM_LOCKED, VM_WIPEONFORK, mm_struct, task_struct

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "FORK_OPS",
    "copy_process",
    "dup_mmap",
    "exit_mmap",
    "mm_alloc",
    "mmdrop",
    "mmgrab",
    "mmput",
]

# include/linux/mm_types.h, v6.18: the mm flags a child inherits (MMF_INIT_MASK);
# of the flags the model keeps, only MMF_VM_MERGE_ANY ("the flag is inherited
# by child processes" of PR_SET_MEMORY_MERGE).
_MMF_VM_MERGE_ANY = 1 << 30
_MMF_INIT_MASK = _MMF_VM_MERGE_ANY


def mm_alloc(k: Kernel, owner: str, function: str = "mm_alloc") -> mm_struct:
    """``mm_alloc()`` (kernel/fork.c, v6.18): an empty address space."""
    mm = k.mm_cachep.alloc(function)
    mm.mmap = []
    mm.pgtable = {}
    mm.owner = owner
    mm.mm_users = 1
    mm.ksm_flags = 0
    mm.ksm_rmap_items = 0
    mm.ksm_merging_pages = 0
    mm.ksm_zero_pages = 0
    mm.mm_count = 1  # the users together hold one
    return mm


def mmgrab(k: Kernel, mm: mm_struct) -> None:
    """``mmgrab()`` (include/linux/sched/mm.h, v6.18): pin the ``struct mm_struct`` itself."""
    mm.mm_count += 1


def mmdrop(k: Kernel, mm: mm_struct) -> None:
    """``mmdrop()`` (include/linux/sched/mm.h, v6.18): free the mm with its last ``mm_count``.

    The users together hold one ``mm_count``, dropped by ``mmput()``; KSM's
    mm_slot holds another (``mmgrab()`` in ``__ksm_enter()``), so an exited mm
    stays allocated until ksmd frees its slot.
    """
    mm.mm_count -= 1
    if mm.mm_count:
        return
    k.mm_cachep.free(mm, "__mmdrop")


def dup_mmap(k: Kernel, mm: mm_struct, oldmm: mm_struct) -> int:
    """``dup_mmap()`` (mm/mmap.c, v6.18): copy the parent's VMAs and page tables.

    Each VMA is duplicated (``vm_area_dup()``), attached to the parent's
    anon_vmas plus one of its own (``anon_vma_fork()``), linked into the child's
    tree, and its PTEs copied (``copy_page_range()``).

    :returns: 0, or ``-ENOMEM`` with the VMAs copied so far left in ``mm`` for
        ``exit_mmap()`` to tear down, as the kernel's ``loop_out`` path does.
    """
    fn = "dup_mmap"
    k.ops.ksm_fork(k, mm, oldmm)
    for mpnt in list(oldmm.mmap):
        if mpnt.vm_flags & VM_DONTCOPY:
            continue
        tmp = k.ops.vm_area_dup(k, mpnt, fn)
        if tmp is None:
            return -errno.ENOMEM
        tmp.vm_mm = mm
        if tmp.vm_flags & VM_WIPEONFORK:
            tmp.anon_vma = None
        elif k.ops.anon_vma_fork(k, tmp, mpnt):
            k.ops.vm_area_free(k, tmp, fn)  # fail_nomem_anon_vma_fork
            return -errno.ENOMEM
        tmp.vm_flags &= ~VM_LOCKED
        mm.mmap.append(tmp)  # vma_iter_bulk_store(): parent order is address order
        if not tmp.vm_flags & VM_WIPEONFORK:
            k.ops.copy_page_range(k, tmp, mpnt)
    return 0


def exit_mmap(k: Kernel, mm: mm_struct) -> None:
    """``exit_mmap()`` (mm/mmap.c, v6.18): tear down an address space.

    First every VMA's pages are unmapped (``unmap_vmas()``), then
    ``free_pgtables()`` unlinks each VMA from its anon_vmas
    (``unlink_anon_vmas()``), then every VMA is freed (``remove_vma()``).
    """
    fn = "exit_mmap"
    vmas = list(mm.mmap)
    for vma in vmas:
        k.ops.zap_vma_range(k, vma, vma.vm_start, vma.vm_end)
    for vma in vmas:
        k.ops.unlink_anon_vmas(k, vma)
    for vma in vmas:
        k.ops.vm_area_free(k, vma, fn)
    mm.mmap = []


def mmput(k: Kernel, mm: mm_struct) -> None:
    """``mmput()``/``__mmput()`` (kernel/fork.c, v6.18): drop a user of the mm.

    The last user leaves KSM (``ksm_exit()``), tears the mm down
    (``exit_mmap()``) and drops the users' ``mm_count`` (``mmdrop()``); an mm
    KSM still holds (``mmgrab()``) is freed by ksmd later.
    """
    mm.mm_users -= 1
    if mm.mm_users:
        return
    k.ops.ksm_exit(k, mm)
    k.ops.exit_mmap(k, mm)
    k.ops.mmdrop(k, mm)


def copy_process(k: Kernel, parent: task_struct, comm: str) -> task_struct:
    """``copy_process()``/``copy_mm()``/``dup_mm()`` (kernel/fork.c, v6.18) for ``fork()``.

    :raises KernelError: ``ENOMEM`` when ``dup_mmap()`` fails; the half-built mm
        is torn down as ``dup_mm()`` does (``mmput()``).
    """
    mm = k.ops.mm_alloc(k, comm, "dup_mm")
    # dup_mm(): memcpy(mm, oldmm, sizeof(*mm)) copies the per-mm KSM counters
    # too (ksm_fork() resets or accounts them); mm_init(): mm->flags =
    # mmf_init_flags(current->mm->flags).
    mm.ksm_rmap_items = parent.mm.ksm_rmap_items
    mm.ksm_merging_pages = parent.mm.ksm_merging_pages
    mm.ksm_zero_pages = parent.mm.ksm_zero_pages
    mm.ksm_flags = parent.mm.ksm_flags & _MMF_INIT_MASK
    if k.ops.dup_mmap(k, mm, parent.mm):
        k.ops.mmput(k, mm)
        raise KernelError(errno.ENOMEM, "dup_mmap")
    t = task_struct(comm, k.next_pid, mm)
    k.next_pid += 1
    return t


def _ksm_fork(k: Kernel, mm: mm_struct, oldmm: mm_struct) -> int:
    # ksm_fork() (include/linux/ksm.h): nothing to do without KSM.
    return 0


def _ksm_exit(k: Kernel, mm: mm_struct) -> None:
    # ksm_exit() (include/linux/ksm.h): nothing to do without KSM.
    return None


#: The kernel functions of kernel/fork.c's mm part, by name, for the design table,
#: with KSM's hooks as a kernel without ``CONFIG_KSM`` has them.
FORK_OPS: dict[str, Callable[..., Any]] = {
    "copy_process": copy_process,
    "dup_mmap": dup_mmap,
    "exit_mmap": exit_mmap,
    "ksm_exit": _ksm_exit,
    "ksm_fork": _ksm_fork,
    "mm_alloc": mm_alloc,
    "mmdrop": mmdrop,
    "mmgrab": mmgrab,
    "mmput": mmput,
}
