"""System calls and user accesses of a process, as the scenario drives them.

Each entry takes the kernel, the calling task and addresses in pages, runs the
kernel's entry point (``ksys_mmap_pgoff()``, ``__vm_munmap()``,
``do_mprotect_pkey()``, ``do_mremap()``, ``do_madvise()``, ``kernel_clone()``,
``do_exit()``) and raises :class:`~rmapcheck.model.findings.KernelError` with the
kernel's errno when the kernel refuses.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from rmapcheck.model.findings import KernelError
from rmapcheck.model.mm_types import task_struct
from rmapcheck.model.gup import FOLL_FORCE, FOLL_WRITE
from rmapcheck.model.ksm import MMF_VM_MERGE_ANY
from rmapcheck.model.uapi import MADV_NOHUGEPAGE, MAP_POPULATE

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "spawn",
    "sys_exit",
    "sys_fork",
    "sys_madvise",
    "sys_mmap",
    "sys_mprotect",
    "sys_mremap",
    "sys_munmap",
    "sys_poke",
    "sys_prctl_get_memory_merge",
    "user_read",
    "user_write",
]


def spawn(k: Kernel, comm: str) -> task_struct:
    """A new process with an empty address space (the scenario's first process)."""
    t = task_struct(comm, k.next_pid, k.ops.mm_alloc(k, comm))
    k.next_pid += 1
    k.tasks[comm] = t
    return t


def sys_mmap(k: Kernel, t: task_struct, addr: int, npages: int, prot: int, flags: int,
             thp: int | None = MADV_NOHUGEPAGE) -> int:
    """``mmap()`` of private anonymous memory (``vm_mmap_pgoff()``), then ``madvise(thp)`` on it.

    ``MAP_POPULATE`` faults the mapping in after ``do_mmap()``, as
    ``vm_mmap_pgoff()`` does (``mm_populate()``, errors ignored). By default
    the live runner applies ``MADV_NOHUGEPAGE`` to every region so that no THP
    is ever allocated, and the model takes the same two steps; with ``thp``
    ``None`` no madvise follows (the VMA has neither ``VM_HUGEPAGE`` nor
    ``VM_NOHUGEPAGE``; the system's THP setting decides).
    """
    addr = k.ops.do_mmap(k, t.mm, addr, npages, prot, flags)
    if flags & MAP_POPULATE:
        k.ops.__mm_populate(k, t.mm, addr, npages, True)
    if thp is not None:
        k.ops.do_madvise(k, t.mm, addr, npages, thp)
    return addr


def sys_prctl_get_memory_merge(k: Kernel, t: task_struct) -> int:
    """``prctl(PR_GET_MEMORY_MERGE)`` (kernel/sys.c, v6.18): 1 if ``MMF_VM_MERGE_ANY`` is set, else 0.

    :raises KernelError: ``EINVAL`` in a kernel without ``CONFIG_KSM``.
    """
    if not k.config.get("CONFIG_KSM", True):
        raise KernelError(errno.EINVAL, "prctl", "PR_GET_MEMORY_MERGE without CONFIG_KSM")
    return 1 if t.mm.ksm_flags & MMF_VM_MERGE_ANY else 0


def sys_poke(k: Kernel, t: task_struct, vpn: int, value: int) -> None:
    """A write of ``value`` at the start of page ``vpn`` through ``/proc/self/mem``.

    ``mem_rw()`` (fs/proc/base.c, v6.18) writes with ``access_remote_vm()``
    and ``FOLL_FORCE | FOLL_WRITE`` (``proc_mem_foll_force()``: the default
    ``proc_mem.force_override=always``), so it writes where the VMA forbids
    the process to: copy-on-write is broken in a read-only or ``PROT_NONE``
    private mapping and the new, exclusive page keeps a read-only PTE.

    :raises KernelError: ``EIO``: no byte could be written (no VMA there).
    """
    if k.ops.access_remote_vm(k, t.mm, vpn, value, FOLL_FORCE | FOLL_WRITE) == 0:
        raise KernelError(errno.EIO, "mem_rw", "access_remote_vm() wrote nothing")


def sys_munmap(k: Kernel, t: task_struct, addr: int, npages: int) -> None:
    """``munmap()``."""
    k.ops.do_munmap(k, t.mm, addr, npages)


def sys_mprotect(k: Kernel, t: task_struct, addr: int, npages: int, prot: int) -> None:
    """``mprotect()``."""
    k.ops.do_mprotect_pkey(k, t.mm, addr, npages, prot)


def sys_mremap(k: Kernel, t: task_struct, addr: int, old_pages: int, new_pages: int, flags: int,
               new_addr: int) -> int:
    """``mremap()``."""
    return k.ops.do_mremap(k, t.mm, addr, old_pages, new_pages, flags, new_addr)


def sys_madvise(k: Kernel, t: task_struct, addr: int, npages: int, behavior: int) -> None:
    """``madvise()``."""
    k.ops.do_madvise(k, t.mm, addr, npages, behavior)


def user_read(k: Kernel, t: task_struct, vpn: int) -> int:
    """A load from the start of page ``vpn``: fault it in if needed, return its value."""
    # Even a present PTE needs the VMA to allow the access (PROT_NONE), so
    # every access goes through the fault path's checks.
    return k.ops.handle_mm_fault(k, t.mm, vpn, False).content


def user_write(k: Kernel, t: task_struct, vpn: int, value: int) -> None:
    """A store of ``value`` at the start of page ``vpn``, breaking COW as needed."""
    f = k.ops.handle_mm_fault(k, t.mm, vpn, True)
    f.content = value


def sys_fork(k: Kernel, t: task_struct, comm: str) -> task_struct:
    """``fork()``: ``kernel_clone()`` → ``copy_process()``; the child is named ``comm``."""
    if comm in k.tasks:
        raise KernelError(errno.EEXIST, "fork", f"process {comm} exists")
    child = k.ops.copy_process(k, t, comm)
    k.tasks[comm] = child
    return child


def sys_exit(k: Kernel, t: task_struct) -> None:
    """``exit()``: ``do_exit()`` → ``exit_mm()`` → ``mmput()``."""
    del k.tasks[t.comm]
    k.ops.mmput(k, t.mm)
