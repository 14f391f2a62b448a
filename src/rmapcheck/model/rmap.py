"""Reverse mapping of anonymous memory: ``mm/rmap.c`` and ``include/linux/rmap.h``, v6.18.

Lock ordering in mm (the part this model exercises, from the header comment of
mm/rmap.c)::

    mm->mmap_lock
      folio_lock
        anon_vma->rwsem        (the root's: "The root anon_vma's rwsem is the lock
                                actually used when we lock any of the anon_vmas in
                                this anon_vma tree")
          mm->page_table_lock or pte_lock

The anon_vma functions follow the v6.1+ code of Linux kernel commit 2555283eb40d
("mm/rmap: Fix anon_vma->degree ambiguity leading to double-reuse") (in v6.1),
unchanged in substance through v6.18: ``num_children`` counts child anon_vmas
(including the self-parent link of a root), ``num_active_vmas`` counts VMAs whose
``->anon_vma`` points here, and only ``anon_vma_fork()`` may reuse an anon_vma.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.findings import Deadlock, KernelBug, KernelWarning, LockMisuse, RefcountUnderflow
from rmapcheck.model.memory import (
    folio_put, is_migration_entry, make_readable_exclusive_migration_entry,
    make_readable_migration_entry, make_writable_migration_entry,
)
from rmapcheck.model.mm_types import VM_LOCKED, ZERO_PAGE, anon_vma, anon_vma_chain, folio, mm_struct, vm_area_struct
from rmapcheck.model.slab import kasan_check

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "LOCK_ORDER",
    "RMAP_OPS",
    "TTU_RMAP_LOCKED",
    "__anon_vma_prepare",
    "__folio_set_anon",
    "__put_anon_vma",
    "anon_vma_alloc",
    "anon_vma_chain_alloc",
    "anon_vma_chain_free",
    "anon_vma_chain_link",
    "anon_vma_clone",
    "anon_vma_fork",
    "anon_vma_reusable",
    "anon_vma_free",
    "anon_vma_lock_read",
    "anon_vma_lock_write",
    "anon_vma_merge",
    "anon_vma_prepare",
    "anon_vma_unlock_read",
    "anon_vma_unlock_write",
    "folio_add_anon_rmap_pte",
    "folio_add_new_anon_rmap",
    "folio_anon_vma",
    "folio_get_anon_vma",
    "folio_get_anon_vma_pin",
    "LOCK_RETRY",
    "folio_anon_vma_rcu",
    "folio_lock_anon_vma_read",
    "folio_lock_anon_vma_root",
    "folio_lock_anon_vma_sleep",
    "folio_move_anon_rmap",
    "folio_referenced",
    "folio_referenced_rwc",
    "folio_remove_rmap_pte",
    "folio_try_dup_anon_rmap_pte",
    "get_anon_vma",
    "linear_page_index",
    "lock_anon_vma_root",
    "page_address_in_vma",
    "page_unlock_anon_vma",
    "put_anon_vma",
    "put_root_pin",
    "rmap_walk",
    "rmap_walk_anon",
    "rmap_walk_control",
    "rmap_walk_locked",
    "try_to_migrate",
    "try_to_migrate_one",
    "unlink_anon_vmas",
    "unlock_anon_vma_root",
    "vma_address",
]

#: The lock order, outermost first, as the header of mm/rmap.c declares it.
LOCK_ORDER = ("mmap_lock", "folio_lock", "anon_vma->rwsem", "page_table_lock")


# -- locking -------------------------------------------------------------------

def down_write(k: Kernel, root: anon_vma, function: str) -> None:
    """``down_write(&root->rwsem)`` (kernel/locking/rwsem.c, v6.18).

    The model runs one thread, so waiting is deadlock.
    """
    kasan_check(root, function)
    if root.rwsem_writer or root.rwsem_readers:
        raise Deadlock(function, f"deadlock: down_write on held rwsem of {root.kname()}", root)
    root.rwsem_writer = True


def up_write(k: Kernel, root: anon_vma, function: str) -> None:
    """``up_write(&root->rwsem)`` (kernel/locking/rwsem.c, v6.18); releasing a lock not held is lock misuse."""
    kasan_check(root, function)
    if not root.rwsem_writer:
        raise LockMisuse(function, f"up_write of {root.kname()} rwsem not held for write")
    root.rwsem_writer = False


def anon_vma_lock_write(k: Kernel, av: anon_vma, function: str = "anon_vma_lock_write") -> None:
    """``anon_vma_lock_write()`` (include/linux/rmap.h, v6.18): the root's rwsem."""
    kasan_check(av, function)
    down_write(k, av.root, function)


def anon_vma_unlock_write(k: Kernel, av: anon_vma, function: str = "anon_vma_unlock_write") -> None:
    """``anon_vma_unlock_write()`` (include/linux/rmap.h, v6.18)."""
    kasan_check(av, function)
    up_write(k, av.root, function)


def anon_vma_lock_read(k: Kernel, av: anon_vma, function: str = "anon_vma_lock_read") -> None:
    """``anon_vma_lock_read()`` (include/linux/rmap.h, v6.18)."""
    kasan_check(av, function)
    root = av.root
    kasan_check(root, function)
    if root.rwsem_writer:
        raise Deadlock(function, f"deadlock: down_read on write-held rwsem of {root.kname()}", root)
    root.rwsem_readers += 1


def anon_vma_unlock_read(k: Kernel, av: anon_vma, function: str = "anon_vma_unlock_read") -> None:
    """``anon_vma_unlock_read()`` (include/linux/rmap.h, v6.18)."""
    kasan_check(av, function)
    root = av.root
    kasan_check(root, function)
    if root.rwsem_readers <= 0:
        raise LockMisuse(function, f"up_read of {root.kname()} rwsem not held for read")
    root.rwsem_readers -= 1


# -- allocation and reference counting ------------------------------------------

def anon_vma_alloc(k: Kernel, function: str = "anon_vma_alloc") -> anon_vma | None:
    """``anon_vma_alloc()`` (mm/rmap.c, v6.18).

    :returns: ``struct anon_vma *`` with refcount 1, its own root and parent
        (``NULL`` on allocation failure).
    """
    if k.should_fail("anon_vma_alloc"):
        return None
    av = k.anon_vma_cachep.alloc(function)
    av.refcount = 1
    av.num_children = 0
    av.num_active_vmas = 0
    av.parent = av
    # Initialise the anon_vma root to point to itself. If called from fork,
    # the root will be reset to the parent's anon_vma.
    av.root = av
    return av


def anon_vma_free(k: Kernel, av: anon_vma, function: str = "anon_vma_free") -> None:
    """``anon_vma_free()`` (mm/rmap.c, v6.18).

    Synchronises against ``folio_lock_anon_vma_read()``: if the root's rwsem is
    held, take and drop it before freeing, so a reader that pinned the
    anon_vma through the lock does not touch freed memory.
    """
    kasan_check(av, function)
    if av.refcount:
        raise KernelBug(function, f"VM_BUG_ON(atomic_read(&anon_vma->refcount)) on {av.kname()}")
    root = av.root
    kasan_check(root, function)
    if root.rwsem_writer or root.rwsem_readers:
        k.ops.anon_vma_lock_write(k, av, function)
        k.ops.anon_vma_unlock_write(k, av, function)
    k.anon_vma_cachep.free(av, function)


def get_anon_vma(k: Kernel, av: anon_vma, function: str = "get_anon_vma") -> None:
    """``get_anon_vma()`` (include/linux/rmap.h, v6.18): ``atomic_inc(&anon_vma->refcount)``."""
    kasan_check(av, function)
    av.refcount += 1


def __put_anon_vma(k: Kernel, av: anon_vma, function: str = "__put_anon_vma") -> None:
    """``__put_anon_vma()`` (mm/rmap.c, v6.18): free the anon_vma, then drop its root pin.

    The child is freed before the root, as Linux kernel commit 624483f3ea82
    ("mm: rmap: fix use-after-free in __put_anon_vma") (in v3.16) requires.
    """
    root = av.root
    k.ops.anon_vma_free(k, av, function)
    if root is not av:
        k.ops.put_root_pin(k, root, function)


def put_root_pin(k: Kernel, root: anon_vma, function: str) -> None:
    """The second half of ``__put_anon_vma()`` (mm/rmap.c, v6.18): drop a child's pin of its root.

    ``if (root != anon_vma && atomic_dec_and_test(&root->refcount))
    anon_vma_free(root);`` on its own, so that a design can run it in
    another order: v3.0 to v3.15 ran it first (docs/history.md B10).
    """
    kasan_check(root, function)
    root.refcount -= 1
    if root.refcount < 0:
        raise RefcountUnderflow(function, f"refcount of {root.kname()} below zero")
    if root.refcount == 0:
        k.ops.anon_vma_free(k, root, function)


def put_anon_vma(k: Kernel, av: anon_vma, function: str = "put_anon_vma") -> None:
    """``put_anon_vma()`` (include/linux/rmap.h, v6.18)."""
    kasan_check(av, function)
    av.refcount -= 1
    if av.refcount < 0:
        raise RefcountUnderflow(function, f"refcount of {av.kname()} below zero")
    if av.refcount == 0:
        k.ops.__put_anon_vma(k, av, function)


def anon_vma_chain_alloc(k: Kernel, function: str = "anon_vma_chain_alloc") -> anon_vma_chain | None:
    """``anon_vma_chain_alloc()`` (mm/rmap.c, v6.18) (``NULL`` on allocation failure)."""
    if k.should_fail("anon_vma_chain_alloc"):
        return None
    return k.anon_vma_chain_cachep.alloc(function)


def anon_vma_chain_free(k: Kernel, avc: anon_vma_chain, function: str = "anon_vma_chain_free") -> None:
    """``anon_vma_chain_free()`` (mm/rmap.c, v6.18)."""
    k.anon_vma_chain_cachep.free(avc, function)


def anon_vma_chain_link(k: Kernel, vma: vm_area_struct, avc: anon_vma_chain, av: anon_vma) -> None:
    """``anon_vma_chain_link()`` (mm/rmap.c, v6.18): link on ``same_vma`` and in the tree."""
    kasan_check(av, "anon_vma_chain_link")
    avc.vma = vma
    avc.anon_vma = av
    vma.anon_vma_chain.insert(0, avc)  # list_add(&avc->same_vma, &vma->anon_vma_chain)
    av.rb_root.append(avc)  # anon_vma_interval_tree_insert(avc, &anon_vma->rb_root)


# -- attaching anon_vmas to VMAs --------------------------------------------------

def __anon_vma_prepare(k: Kernel, vma: vm_area_struct) -> int:
    """``__anon_vma_prepare()`` (mm/rmap.c, v6.18): attach an anon_vma to a VMA.

    Either reuse a neighbour's anon_vma (``find_mergeable_anon_vma()``: "very
    common when the only reason for splitting a vma has been mprotect()") or
    allocate a new root, which takes a self-parent link (``num_children = 1``).

    :param vma: ``struct vm_area_struct *`` without an anon_vma.
    :returns: 0, or ``-ENOMEM``.
    """
    fn = "__anon_vma_prepare"
    avc = k.ops.anon_vma_chain_alloc(k, fn)
    if avc is None:
        return -errno.ENOMEM
    av = k.ops.find_mergeable_anon_vma(k, vma)
    allocated = None
    if av is None:
        av = k.ops.anon_vma_alloc(k, fn)
        if av is None:
            k.ops.anon_vma_chain_free(k, avc, fn)
            return -errno.ENOMEM
        av.num_children += 1  # self-parent link for new root
        allocated = av
    k.ops.anon_vma_lock_write(k, av, fn)
    # page_table_lock to protect against threads
    if vma.anon_vma is None:
        vma.anon_vma = av
        k.ops.anon_vma_chain_link(k, vma, avc, av)
        av.num_active_vmas += 1
        allocated = None
        avc = None
    k.ops.anon_vma_unlock_write(k, av, fn)
    if allocated is not None:
        k.ops.put_anon_vma(k, allocated, fn)
    if avc is not None:
        k.ops.anon_vma_chain_free(k, avc, fn)
    return 0


def anon_vma_prepare(k: Kernel, vma: vm_area_struct) -> int:
    """``anon_vma_prepare()`` (include/linux/rmap.h, v6.18): the inline fast path."""
    if vma.anon_vma is not None:
        return 0
    return k.ops.__anon_vma_prepare(k, vma)


def lock_anon_vma_root(k: Kernel, root: anon_vma | None, av: anon_vma, fn: str) -> anon_vma:
    """``lock_anon_vma_root()`` (mm/rmap.c, v6.18): write-lock ``av``'s root, unless it is ``root``.

    "This is a useful helper function for locking the anon_vma root as we
    traverse the vma->anon_vma_chain, looping over anon_vma's that have the
    same vma. Such anon_vma's should have the same root, so you'd expect to
    see just a single mutex_lock for the whole traversal."

    :param root: ``struct anon_vma *`` the root locked so far (``NULL`` if none).
    :param fn: the calling kernel function, for reports.
    :returns: the root now locked.
    """
    kasan_check(av, fn)
    new_root = av.root
    if new_root is not root:
        if root is not None:
            k.warnings.append(KernelWarning(fn, "WARN_ON_ONCE(root) in lock_anon_vma_root"))
            up_write(k, root, fn)
        root = new_root
        down_write(k, root, fn)
    return root


def unlock_anon_vma_root(k: Kernel, root: anon_vma | None, fn: str) -> None:
    """``unlock_anon_vma_root()`` (mm/rmap.c, v6.18): release what :func:`lock_anon_vma_root` took.

    :param root: ``struct anon_vma *`` (``NULL`` if nothing was locked).
    """
    if root is not None:
        up_write(k, root, fn)


def anon_vma_clone(k: Kernel, dst: vm_area_struct, src: vm_area_struct) -> int:
    """``anon_vma_clone()`` (mm/rmap.c, v6.18): attach the anon_vmas of ``src`` to ``dst``.

    "The first four [split, merge, copy_vma, expand] want an exact copy of src,
    while the last one, anon_vma_fork(), may try to reuse an existing anon_vma
    to prevent endless growth of anon_vma." A reuse candidate must have no VMA
    and at most one child: "Root anon_vma is never reused: it has self-parent
    reference and at least one child."

    :param dst: ``struct vm_area_struct *``; ``dst->anon_vma`` is ``NULL`` on fork.
    :param src: ``struct vm_area_struct *``.
    :returns: 0, or ``-ENOMEM`` after undoing the partial clone.
    """
    fn = "anon_vma_clone"
    root: anon_vma | None = None
    for pavc in reversed(src.anon_vma_chain):  # list_for_each_entry_reverse: oldest first
        avc = k.ops.anon_vma_chain_alloc(k, fn)  # GFP_NOWAIT | __GFP_NOWARN
        if avc is None:
            k.ops.unlock_anon_vma_root(k, root, fn)
            root = None
            avc = k.ops.anon_vma_chain_alloc(k, fn)  # GFP_KERNEL
            if avc is None:
                # enomem_failure: dst->anon_vma is dropped here, otherwise its
                # num_active_vmas can be incorrectly decremented in
                # unlink_anon_vmas(). We can safely do this because callers
                # of anon_vma_clone() don't care about dst->anon_vma if
                # anon_vma_clone() failed.
                dst.anon_vma = None
                k.ops.unlink_anon_vmas(k, dst)
                return -errno.ENOMEM
        av = pavc.anon_vma
        root = k.ops.lock_anon_vma_root(k, root, av, fn)
        k.ops.anon_vma_chain_link(k, dst, avc, av)
        if dst.anon_vma is None and k.ops.anon_vma_reusable(k, av, src):
            dst.anon_vma = av
    if dst.anon_vma is not None:
        dst.anon_vma.num_active_vmas += 1
    k.ops.unlock_anon_vma_root(k, root, fn)
    return 0


def anon_vma_reusable(k: Kernel, av: anon_vma, src: vm_area_struct) -> bool:
    """The reuse test inside ``anon_vma_clone()`` (mm/rmap.c, v6.18), on its own so that a design can replace it.

    "Reuse existing anon_vma if it has no vma and only one anon_vma child.
    Root anon_vma is never reused: it has self-parent reference and at least
    one child." Only on fork: "Since dst->anon_vma is set to NULL before
    call, we can identify this case by checking (!dst->anon_vma &&
    src->anon_vma)". The counters are Linux kernel commit 2555283eb40d's
    (v6.1, CVE-2022-42703).

    :param av: an anon_vma of ``src``'s chain, just linked to the new VMA.
    """
    return src.anon_vma is not None and av.num_children < 2 and av.num_active_vmas == 0


def anon_vma_fork(k: Kernel, vma: vm_area_struct, pvma: vm_area_struct) -> int:
    """``anon_vma_fork()`` (mm/rmap.c, v6.18): attach a child's VMA.

    The child's VMA is linked to every anon_vma of the parent's VMA (so rmap
    finds the pages it has not COWed yet), then gets its own anon_vma for the
    pages it will COW, unless ``anon_vma_clone()`` reused one.

    :param vma: the child's ``struct vm_area_struct *`` (a ``vm_area_dup()`` copy).
    :param pvma: the parent's ``struct vm_area_struct *``.
    :returns: 0, or ``-ENOMEM``.
    """
    fn = "anon_vma_fork"
    # Don't bother if the parent process has no anon_vma here.
    if pvma.anon_vma is None:
        return 0
    # Drop inherited anon_vma, we'll reuse existing or allocate new.
    vma.anon_vma = None
    # First, attach the new VMA to the parent VMA's anon_vmas, so rmap can
    # find non-COWed pages in child processes.
    if k.ops.anon_vma_clone(k, vma, pvma):
        return -errno.ENOMEM
    # An existing anon_vma has been reused, all done then.
    if vma.anon_vma is not None:
        return 0
    # Then add our own anon_vma.
    av = k.ops.anon_vma_alloc(k, fn)
    if av is None:
        k.ops.unlink_anon_vmas(k, vma)
        return -errno.ENOMEM
    av.num_active_vmas += 1
    avc = k.ops.anon_vma_chain_alloc(k, fn)
    if avc is None:
        k.ops.put_anon_vma(k, av, fn)  # out_error_free_anon_vma
        k.ops.unlink_anon_vmas(k, vma)
        return -errno.ENOMEM
    # The root anon_vma's rwsem is the lock actually used when we lock any of
    # the anon_vmas in this anon_vma tree.
    kasan_check(pvma.anon_vma, fn)
    av.root = pvma.anon_vma.root
    av.parent = pvma.anon_vma
    # With refcounts, an anon_vma can stay around longer than the process it
    # belongs to. The root anon_vma needs to be pinned until this anon_vma is
    # freed, because the lock lives in the root.
    k.ops.get_anon_vma(k, av.root, fn)
    # Mark this anon_vma as the one where our new (COWed) pages go.
    vma.anon_vma = av
    k.ops.anon_vma_lock_write(k, av, fn)
    k.ops.anon_vma_chain_link(k, vma, avc, av)
    av.parent.num_children += 1
    k.ops.anon_vma_unlock_write(k, av, fn)
    return 0


def unlink_anon_vmas(k: Kernel, vma: vm_area_struct) -> None:
    """``unlink_anon_vmas()`` (mm/rmap.c, v6.18): detach a VMA from its anon_vmas.

    "Unlink each anon_vma chained to the VMA. This list is ordered from newest
    to oldest, ensuring the root anon_vma gets freed last." Empty anon_vmas are
    left on the list and put in a second pass, outside the lock, "due to
    __put_anon_vma() needing to write-acquire the anon_vma->root->rwsem".
    """
    fn = "unlink_anon_vmas"
    root: anon_vma | None = None
    keep: list[anon_vma_chain] = []
    for avc in list(vma.anon_vma_chain):  # list_for_each_entry_safe: newest first
        av = avc.anon_vma
        root = k.ops.lock_anon_vma_root(k, root, av, fn)
        av.rb_root.remove(avc)  # anon_vma_interval_tree_remove()
        # Leave empty anon_vmas on the list - we'll need to free them outside
        # the lock.
        if not av.rb_root:
            av.parent.num_children -= 1
            if av.parent.num_children < 0:
                raise RefcountUnderflow(fn, f"num_children of {av.parent.kname()} below zero")
            keep.append(avc)
            continue
        k.ops.anon_vma_chain_free(k, avc, fn)
    vma.anon_vma_chain = keep
    if vma.anon_vma is not None:
        vma.anon_vma.num_active_vmas -= 1
        if vma.anon_vma.num_active_vmas < 0:
            raise RefcountUnderflow(fn, f"num_active_vmas of {vma.anon_vma.kname()} below zero")
        # vma->anon_vma pointer was cleared here in the kernel: it must not be
        # used after this point.
        vma.anon_vma = None
    k.ops.unlock_anon_vma_root(k, root, fn)
    # Iterate the list once more, it now only contains empty and unlinked
    # anon_vmas, destroy them.
    for avc in keep:
        av = avc.anon_vma
        if av.num_children:
            k.warnings.append(KernelWarning(fn, f"VM_WARN_ON(anon_vma->num_children) on {av.kname()}"))
        if av.num_active_vmas:
            k.warnings.append(KernelWarning(fn, f"VM_WARN_ON(anon_vma->num_active_vmas) on {av.kname()}"))
        k.ops.put_anon_vma(k, av, fn)
        k.ops.anon_vma_chain_free(k, avc, fn)
    vma.anon_vma_chain = []


def anon_vma_merge(k: Kernel, vma: vm_area_struct, next: vm_area_struct) -> None:
    """``anon_vma_merge()`` (include/linux/rmap.h, v6.18)."""
    if vma.anon_vma is not next.anon_vma:
        raise KernelBug("anon_vma_merge", "VM_BUG_ON_VMA(vma->anon_vma != next->anon_vma)")
    k.ops.unlink_anon_vmas(k, next)


# -- folios ------------------------------------------------------------------------

def linear_page_index(vma: vm_area_struct, address: int) -> int:
    """``linear_page_index()`` (include/linux/pagemap.h, v6.18): the pgoff of ``address``."""
    return address - vma.vm_start + vma.vm_pgoff


def vma_address(vma: vm_area_struct, pgoff: int) -> int | None:
    """``vma_address()`` (mm/internal.h, v6.18) for one page (``None`` if outside)."""
    address = vma.vm_start + pgoff - vma.vm_pgoff
    if vma.vm_start <= address < vma.vm_end:
        return address
    return None


def page_address_in_vma(k: Kernel, f: folio, vma: vm_area_struct) -> int | None:
    """``page_address_in_vma()`` (mm/rmap.c, v6.18): the address of anon folio ``f`` in ``vma``.

    "KSM folios don't reach here because of the !anon_vma check": an anon
    folio whose anon_vma root is not the VMA's has no address there.

    :returns: the address (a page number), or ``NULL`` (``-EFAULT``).
    """
    av = f.mapping if isinstance(f.mapping, anon_vma) else None
    if vma.anon_vma is None or av is None or vma.anon_vma.root is not av.root:
        return None
    return vma_address(vma, f.index)


def __folio_set_anon(k: Kernel, f: folio, vma: vm_area_struct, address: int, exclusive: bool) -> None:
    """``__folio_set_anon()`` (mm/rmap.c, v6.18).

    "If the folio isn't exclusive to this vma, we must use the _oldest_
    possible anon_vma for the folio mapping!"
    """
    av = vma.anon_vma
    if av is None:
        raise KernelBug("__folio_set_anon", "VM_BUG_ON_VMA(!anon_vma, vma)")
    if not exclusive:
        av = av.root
    f.mapping = av
    f.index = linear_page_index(vma, address)


def folio_add_new_anon_rmap(k: Kernel, f: folio, vma: vm_area_struct, address: int,
                            exclusive: bool = True) -> None:
    """``folio_add_new_anon_rmap()`` (mm/rmap.c, v6.18) with ``RMAP_EXCLUSIVE``."""
    if vma.vm_start > address or address >= vma.vm_end:
        raise KernelBug("folio_add_new_anon_rmap", "VM_BUG_ON_VMA(address < vma->vm_start || ...)")
    k.ops.__folio_set_anon(k, f, vma, address, exclusive)
    f._mapcount = 1
    f.anon_exclusive = exclusive


def folio_try_dup_anon_rmap_pte(k: Kernel, f: folio, dst_vma: vm_area_struct,
                                src_vma: vm_area_struct) -> int:
    """``folio_try_dup_anon_rmap_pte()`` (include/linux/rmap.h, v6.18), for fork.

    Without pins (no GUP in the model) the duplication always succeeds and the
    page stops being exclusive to the parent.
    """
    f._mapcount += 1
    f.anon_exclusive = False  # ClearPageAnonExclusive(page)
    return 0


def folio_remove_rmap_pte(k: Kernel, f: folio, vma: vm_area_struct) -> None:
    """``folio_remove_rmap_pte()`` (mm/rmap.c, v6.18).

    "It would be tidy to reset folio_test_anon mapping when fully unmapped, but
    that might overwrite a racing page_add_anon_rmap": ``->mapping`` stays.
    """
    f._mapcount -= 1
    if f._mapcount < 0:
        raise RefcountUnderflow("folio_remove_rmap_pte", f"mapcount of page {f.pfn()} below zero")


def folio_move_anon_rmap(k: Kernel, f: folio, vma: vm_area_struct) -> None:
    """``folio_move_anon_rmap()`` (mm/rmap.c, v6.18): move an exclusive folio to ``vma``'s anon_vma.

    "When a folio belongs exclusively to one process after a COW event, that
    folio can be moved into the anon_vma that belongs to just that process, so
    the rmap code will not search the parent or sibling processes."
    """
    if vma.anon_vma is None:
        raise KernelBug("folio_move_anon_rmap", "VM_BUG_ON_VMA(!anon_vma, vma)")
    f.mapping = vma.anon_vma


def folio_anon_vma(f: folio) -> anon_vma | None:
    """``folio_anon_vma()`` (mm/util.c, v6.18): the folio's anon_vma, unchecked."""
    m = f.mapping
    return m if isinstance(m, anon_vma) else None


def rmap_walk_anon(k: Kernel, f: folio, rmap_one, locked: bool = False) -> None:
    """``rmap_walk_anon()`` (mm/rmap.c, v6.18): visit every VMA that may map ``f``.

    Walks ``folio_anon_vma(folio)->rb_root`` over the folio's page offset, with
    the root's rwsem held for read (unless ``locked``), and calls
    ``rmap_one(vma, address)``; a ``False`` return stops the walk.
    """
    fn = "rmap_walk_anon"
    av = folio_anon_vma(f)
    if av is None:
        return
    if not locked:
        k.ops.anon_vma_lock_read(k, av, fn)
    try:
        pgoff = f.index
        for avc in list(av.rb_root):
            vma = avc.vma
            kasan_check(vma, fn)
            if not (vma.vm_pgoff <= pgoff <= vma.last_pgoff()):
                continue
            address = vma.vm_start + pgoff - vma.vm_pgoff
            if rmap_one(vma, address) is False:
                break
    finally:
        if not locked:
            k.ops.anon_vma_unlock_read(k, av, fn)


# -- rmap walks for migration and reclaim (v6.18) -----------------------------------
#
# Read from mm/rmap.c of a 6.12-era stable tree and checked against the v6.18
# quotations of mm/migrate.c: folio_get_anon_vma(), folio_lock_anon_vma_read(),
# rmap_walk()/rmap_walk_locked(), try_to_migrate(), folio_referenced() have the
# same shape in v6.18.

def folio_mapped(f: folio) -> bool:
    """``folio_mapped()`` (include/linux/mm.h): some PTE maps the folio."""
    return f._mapcount > 0


def folio_test_anon(f: folio) -> bool:
    """``folio_test_anon()`` (include/linux/page-flags.h, v6.18): ``PAGE_MAPPING_ANON`` is set.

    KSM folios are anonymous too.
    """
    return f.ksm or isinstance(f.mapping, anon_vma)


class rmap_walk_control:
    """``struct rmap_walk_control`` (include/linux/rmap.h, v6.18).

    :param rmap_one: called as ``rmap_one(vma, address)`` for each VMA that may
        map the folio; ``False`` stops the walk.
    :param done: ``done(folio)``: ``True`` stops the walk after a VMA.
    :param anon_lock: locks the anon_vma instead of ``folio_anon_vma()`` plus
        ``anon_vma_lock_read()``: ``anon_lock(k, folio, rwc)`` returns the
        anon_vma it read-locked (``NULL`` if none).
    :param try_lock: do not sleep on a contended rmap lock; set ``contended``.
    :param invalid_vma: ``invalid_vma(vma)``: ``True`` skips the VMA.
    """

    __slots__ = ("rmap_one", "done", "anon_lock", "try_lock", "contended", "invalid_vma")

    def __init__(self, rmap_one: Callable[[vm_area_struct, int], object],
                 done: Callable[[folio], bool] | None = None,
                 anon_lock: Callable[..., anon_vma | None] | None = None,
                 try_lock: bool = False,
                 invalid_vma: Callable[[vm_area_struct], bool] | None = None) -> None:
        self.rmap_one = rmap_one
        self.done = done
        self.anon_lock = anon_lock
        self.try_lock = try_lock
        self.contended = False
        self.invalid_vma = invalid_vma


def _rwc_one(rwc: rmap_walk_control, f: folio) -> Callable[[vm_area_struct, int], bool]:
    # The per-VMA body of rmap_walk_anon()/rmap_walk_ksm(): skip invalid VMAs,
    # call rmap_one(), stop when it says so or when done() holds. Walkers
    # (k.ops.rmap_walk_anon, k.ops.rmap_walk_ksm) take this plain callable.
    def one(vma: vm_area_struct, address: int) -> bool:
        if rwc.invalid_vma is not None and rwc.invalid_vma(vma):
            return True
        if rwc.rmap_one(vma, address) is False:
            return False
        if rwc.done is not None and rwc.done(f):
            return False
        return True
    return one


def _as_rwc(rwc: rmap_walk_control | Callable[[vm_area_struct, int], object]) -> rmap_walk_control:
    return rwc if isinstance(rwc, rmap_walk_control) else rmap_walk_control(rwc)


def folio_get_anon_vma(k: Kernel, f: folio) -> anon_vma | None:
    """``folio_get_anon_vma()`` (mm/rmap.c, v6.18): pin the anon_vma of a folio off the LRU.

    "Since there is no serialization what so ever against
    folio_remove_rmap_*() the best this function can do is return a refcount
    increased anon_vma that might have been relevant to this page." Under
    ``rcu_read_lock()``: only an anonymous, mapped folio
    (:func:`folio_anon_vma_rcu`); then the design's ``folio_get_anon_vma_pin``
    (:func:`folio_get_anon_vma_pin` in v6.18).

    :param f: ``struct folio *``, normally locked by the caller.
    :returns: ``struct anon_vma *`` with one more reference (``NULL`` if none).
    """
    av = k.ops.folio_anon_vma_rcu(k, f, "folio_get_anon_vma")
    if av is None:
        return None
    return k.ops.folio_get_anon_vma_pin(k, f, av)


def folio_get_anon_vma_pin(k: Kernel, f: folio, av: anon_vma) -> anon_vma | None:
    """The second half of ``folio_get_anon_vma()`` (mm/rmap.c, v6.18): pin ``av`` read under RCU.

    ``atomic_inc_not_zero(&anon_vma->refcount)``, which a freed slot of the
    ``SLAB_TYPESAFE_BY_RCU`` cache fails harmlessly (its refcount is 0); then
    "If this folio is still mapped, then its anon_vma cannot have been freed.
    But if it has been unmapped, we have no security against the anon_vma
    structure being freed and reused", so an unmapped folio drops the pin.

    :returns: ``av`` with one more reference, or ``NULL``.
    """
    fn = "folio_get_anon_vma"
    # The memory stays an anon_vma (type-safe by RCU), so reading a freed
    # slot's refcount is not a KASAN report.
    if av.refcount == 0:
        return None
    av.refcount += 1
    if not folio_mapped(f):
        k.ops.put_anon_vma(k, av, fn)
        return None
    return av


def _down_read_trylock(k: Kernel, root: anon_vma, function: str, rcu: bool = False) -> bool:
    # down_read_trylock(&root->rwsem): fails only against a writer. Under
    # rcu_read_lock() the memory of a freed anon_vma is still an anon_vma
    # (SLAB_TYPESAFE_BY_RCU), so taking its rwsem is no use-after-free.
    if not rcu:
        kasan_check(root, function)
    if root.rwsem_writer:
        return False
    root.rwsem_readers += 1
    return True


#: :func:`folio_lock_anon_vma_root` found ``folio->mapping`` changed: read it again
LOCK_RETRY = "retry"


def folio_anon_vma_rcu(k: Kernel, f: folio, function: str = "folio_lock_anon_vma_read") -> anon_vma | None:
    """The first half of ``folio_lock_anon_vma_read()`` (mm/rmap.c, v6.18), under ``rcu_read_lock()``.

    ``anon_mapping = READ_ONCE(folio->mapping)``: an anonymous (not KSM),
    mapped folio's anon_vma, not pinned: only RCU and ``SLAB_TYPESAFE_BY_RCU``
    keep its memory an anon_vma once the folio is unmapped. The model splits
    the function here because a preemptible RCU reader may be preempted here
    (docs/history.md B4: "CONFIG_TREE_PREEMPT_RCU makes it likelier"); the
    second half is the design's ``folio_lock_anon_vma_root``. The same first
    half opens ``page_lock_anon_vma()`` (mm/rmap.c, v2.6.36).

    :param function: the kernel function it opens (``folio_get_anon_vma()``
        opens the same way), for a report.
    :returns: ``struct anon_vma *`` (``NULL`` if the folio is not an anonymous
        mapped one).
    """
    m = f.mapping
    if f.ksm or not isinstance(m, anon_vma):
        return None
    if not folio_mapped(f):
        return None
    # A mapped folio's anon_vma is live; a freed one here is the dangling
    # folio->mapping of CVE-2022-42703 (docs/history.md B16).
    kasan_check(m, function)
    return m


def folio_lock_anon_vma_root(k: Kernel, f: folio, av: anon_vma,
                             rwc: rmap_walk_control | None = None) -> anon_vma | str | None:
    """The second half of ``folio_lock_anon_vma_read()`` (mm/rmap.c, v6.18): lock ``av``'s root.

    ``av`` was read under RCU (:func:`folio_anon_vma_rcu`) and may have been
    freed and reused since. "Its a little more complex as it tries to keep the
    fast path to a single atomic op -- the trylock." The root is read once
    (``READ_ONCE``) and locked; after the lock ``folio->mapping`` and
    ``folio_mapped()`` are checked again (the fix of Linux kernel commit
    f18194275c39 ("mm: fix hang on anon_vma->root->lock") (in v2.6.36)): "If
    the folio is still mapped, then this anon_vma is still its anon_vma, and
    holding the mutex ensures that it will not go away, see anon_vma_free()".
    When the trylock fails, a ``try_lock`` walker gives up
    (``rwc->contended``); others pin the anon_vma and sleep on the lock, which
    in a single-threaded model is a deadlock.

    :param rwc: ``struct rmap_walk_control *`` (``NULL`` allowed).
    :returns: the read-locked ``struct anon_vma *``, ``NULL`` if none, or
        :data:`LOCK_RETRY` (``goto retry``).
    """
    fn = "folio_lock_anon_vma_read"
    root_anon_vma = av.root  # READ_ONCE(anon_vma->root)
    if _down_read_trylock(k, root_anon_vma, fn, rcu=True):
        # folio_move_anon_rmap() might have changed the anon_vma as we
        # might not hold the folio lock here.
        if f.mapping is not av:
            up_read(k, root_anon_vma, fn, rcu=True)
            return LOCK_RETRY
        if not folio_mapped(f):
            up_read(k, root_anon_vma, fn, rcu=True)
            return None
        return av
    if rwc is not None and rwc.try_lock:
        rwc.contended = True
        return None
    return k.ops.folio_lock_anon_vma_sleep(k, f, av, fn)


def folio_lock_anon_vma_sleep(k: Kernel, f: folio, av: anon_vma, fn: str) -> anon_vma | str | None:
    """The slow path of ``folio_lock_anon_vma_read()`` (mm/rmap.c, v6.18): pin, then sleep on the lock.

    "trylock failed, we got to sleep": ``atomic_inc_not_zero()``, a second
    look at ``folio_mapped()``, the lock, and the last reference handled
    without ``put_anon_vma()``. The same path ends ``page_lock_anon_vma()``
    since Linux kernel commit 746b18d421da ("mm: use refcounts for
    page_lock_anon_vma()") (in v3.0), which had no second look at
    ``folio->mapping``.

    :returns: ``av`` locked, ``NULL``, or :data:`LOCK_RETRY`.
    """
    if av.refcount == 0:  # atomic_inc_not_zero()
        return None
    av.refcount += 1
    if not folio_mapped(f):
        k.ops.put_anon_vma(k, av, fn)
        return None
    # we pinned the anon_vma, its safe to sleep
    k.ops.anon_vma_lock_read(k, av, fn)
    if f.mapping is not av:
        k.ops.anon_vma_unlock_read(k, av, fn)
        k.ops.put_anon_vma(k, av, fn)
        return LOCK_RETRY
    av.refcount -= 1
    if av.refcount == 0:
        # Oops, we held the last refcount, release the lock and bail --
        # can't simply use put_anon_vma() because we'll deadlock on the
        # anon_vma_lock_write() recursion.
        k.ops.anon_vma_unlock_read(k, av, fn)
        k.ops.__put_anon_vma(k, av, fn)
        return None
    return av


def folio_lock_anon_vma_read(k: Kernel, f: folio, rwc: rmap_walk_control | None = None) -> anon_vma | None:
    """``folio_lock_anon_vma_read()`` (mm/rmap.c, v6.18): read-lock a mapped folio's anon_vma.

    Both halves at once: :func:`folio_anon_vma_rcu`, then the design's
    ``folio_lock_anon_vma_root`` (:func:`folio_lock_anon_vma_root` in v6.18),
    again from the start while it says :data:`LOCK_RETRY`.

    :param rwc: ``struct rmap_walk_control *`` (``NULL`` allowed).
    :returns: the locked ``struct anon_vma *`` (``NULL`` if none); the caller
        unlocks it with the design's ``page_unlock_anon_vma``.
    """
    while True:  # retry:
        av = k.ops.folio_anon_vma_rcu(k, f)
        if av is None:
            return None
        got = k.ops.folio_lock_anon_vma_root(k, f, av, rwc)
        if got != LOCK_RETRY:
            return got  # type: ignore[return-value]


def up_read(k: Kernel, root: anon_vma, function: str, rcu: bool = False) -> None:
    """``up_read(&root->rwsem)`` (kernel/locking/rwsem.c, v6.18); releasing a lock not held is lock misuse.

    :param rcu: under ``rcu_read_lock()``, where a freed anon_vma's memory
        is still an anon_vma (no use-after-free report).
    """
    if not rcu:
        kasan_check(root, function)
    if root.rwsem_readers <= 0:
        raise LockMisuse(function, f"up_read of {root.kname()} rwsem not held for read")
    root.rwsem_readers -= 1


def page_unlock_anon_vma(k: Kernel, av: anon_vma, function: str = "page_unlock_anon_vma") -> None:
    """Unlock what ``folio_lock_anon_vma_read()`` locked: ``anon_vma_unlock_read(anon_vma)``.

    (mm/rmap.c: ``page_unlock_anon_vma()`` of v2.6.36; in v6.18
    ``rmap_walk_anon()`` calls ``anon_vma_unlock_read()`` itself;
    the function was ``page_unlock_anon_vma()`` in v2.6.36 and
    ``page_unlock_anon_vma_read()`` from v3.8.) It reads ``anon_vma->root``
    again: safe because the folio was mapped under the lock, so the anon_vma
    cannot be freed and reused before the unlock.
    """
    k.ops.anon_vma_unlock_read(k, av, function)


def rmap_walk(k: Kernel, f: folio, rwc: rmap_walk_control | Callable[[vm_area_struct, int], object],
              locked: bool = False) -> None:
    """``rmap_walk()`` / ``rmap_walk_locked()`` (mm/rmap.c, v6.18): visit the VMAs that may map ``f``.

    A KSM folio goes to ``rmap_walk_ksm()``, an anonymous one to
    ``rmap_walk_anon()`` (both through ``k.ops``, so a design can replace
    them). Without ``rwc->anon_lock`` the anon walk locks ``folio_anon_vma()``
    unpinned: "Users without mmap_lock are required to take a reference count
    to prevent the anon_vma disappearing" (``rmap_walk_anon_lock()``).

    :param rwc: ``struct rmap_walk_control *``, or a bare ``rmap_one(vma, address)``.
    :param locked: the caller holds the anon_vma lock (``rmap_walk_locked()``).
    """
    fn = "rmap_walk"
    rwc = _as_rwc(rwc)
    one = _rwc_one(rwc, f)
    if f.ksm:
        if locked:
            # rmap_walk_locked(): "no ksm support for now"
            raise KernelBug("rmap_walk_locked", "VM_BUG_ON_FOLIO(folio_test_ksm(folio))")
        k.ops.rmap_walk_ksm(k, f, one)
        return
    if not isinstance(f.mapping, anon_vma):
        if locked:
            raise KernelBug("rmap_walk_anon", "VM_BUG_ON_FOLIO(!anon_vma): anon_vma disappear under us?")
        return  # rmap_walk_file(): no file folios in this model
    if locked or rwc.anon_lock is None:
        k.ops.rmap_walk_anon(k, f, one, locked)
        return
    av = rwc.anon_lock(k, f, rwc)  # rmap_walk_anon_lock()
    if av is None:
        return
    try:
        k.ops.rmap_walk_anon(k, f, one, True)
    finally:
        k.ops.page_unlock_anon_vma(k, av, fn)


def rmap_walk_locked(k: Kernel, f: folio, rwc: rmap_walk_control | Callable[[vm_area_struct, int], object]) -> None:
    """``rmap_walk_locked()`` (mm/rmap.c, v6.18): like ``rmap_walk()``, the caller holds the rmap lock."""
    k.ops.rmap_walk(k, f, rwc, locked=True)


def folio_add_anon_rmap_pte(k: Kernel, f: folio, vma: vm_area_struct, address: int,
                            exclusive: bool) -> None:
    """``folio_add_anon_rmap_pte()`` (mm/rmap.c, v6.18): map an existing anon folio once more.

    Checks ``__page_check_anon_rmap()`` for a non-KSM folio: the folio's
    anon_vma must share the VMA's root and its index must match the address.

    :param exclusive: ``RMAP_EXCLUSIVE``: set ``PageAnonExclusive``.
    """
    fn = "__folio_add_anon_rmap"
    f._mapcount += 1
    if not f.ksm:
        av = folio_anon_vma(f)
        if av is None or vma.anon_vma is None:
            raise KernelBug("__page_check_anon_rmap", f"NULL anon_vma adding page {f.pfn()} to {vma.kname()}")
        kasan_check(av, "__page_check_anon_rmap")
        kasan_check(vma.anon_vma, "__page_check_anon_rmap")
        if av.root is not vma.anon_vma.root:
            raise KernelBug("__page_check_anon_rmap",
                            "VM_BUG_ON_FOLIO(folio_anon_vma(folio)->root != vma->anon_vma->root)")
        if f.index != linear_page_index(vma, address):
            raise KernelBug("__page_check_anon_rmap",
                            "VM_BUG_ON_PAGE(page_to_pgoff(page) != linear_page_index(vma, address))")
    if exclusive:
        f.anon_exclusive = True  # SetPageAnonExclusive()
    if f._mapcount > 1 and f.anon_exclusive:
        k.warnings.append(KernelWarning(fn, f"VM_WARN_ON_FOLIO(mapcount > 0 && PageAnonExclusive) page {f.pfn()}"))


#: ``TTU_RMAP_LOCKED`` of ``enum ttu_flags`` (include/linux/rmap.h, v6.18)
TTU_RMAP_LOCKED = 0x80


def _invalid_migration_vma(vma: vm_area_struct) -> bool:
    # invalid_migration_vma(): vma_is_temporary_stack(). "During exec, a
    # temporary VMA is setup and later moved ... migration skips temporary
    # VMAs until after exec() completes." The model has no exec.
    return False


def _folio_not_mapped(f: folio) -> bool:
    # folio_not_mapped(): the walk's done() of try_to_migrate()/try_to_unmap().
    return not folio_mapped(f)


def try_to_migrate_one(k: Kernel, f: folio, vma: vm_area_struct, address: int,
                       visited: list[tuple[mm_struct, int]] | None = None) -> bool:
    """``try_to_migrate_one()`` (mm/rmap.c, v6.18): replace ``f``'s PTE in ``vma`` by a migration entry.

    ``page_vma_mapped_walk()`` finds the PTE mapping ``f`` at ``address`` (none:
    nothing to do). The PTE is cleared; an exclusive anon page is shared first
    (``folio_try_share_anon_rmap_pte()``: "clear PTE first", and without GUP
    pins it cannot fail); the entry is writable if the PTE was, else
    readable-exclusive if the page was ``PageAnonExclusive``, else readable.
    Then the mapping's rmap and reference go (``folio_remove_rmap_pte()``,
    ``folio_put()``): "the page can not be free in this function as call of
    try_to_unmap() must hold a reference on the page".

    :param visited: if given, each ``(mm, address)`` whose PTE was replaced is
        appended (the model's record of what the walk reached).
    :returns: ``true`` (continue the walk).
    """
    fn = "try_to_migrate_one"
    mm = vma.vm_mm
    pt = mm.pgtable
    pte = pt.get(address)
    if pte is None or is_migration_entry(pte) or pte[0] is not f:
        return True
    writable = bool(pte[1])
    anon_exclusive = folio_test_anon(f) and f.anon_exclusive
    del pt[address]  # ptep_clear_flush()
    if writable and folio_test_anon(f) and not anon_exclusive:
        raise KernelBug(fn, "VM_BUG_ON_PAGE(pte_write(pteval) && folio_test_anon(folio) && !anon_exclusive)")
    if anon_exclusive:
        # See folio_try_share_anon_rmap_pte(): clear PTE first.
        f.anon_exclusive = False
    # Store the pfn of the page in a special migration pte. do_swap_page()
    # will wait until the migration pte is removed and then restart fault
    # handling.
    if writable:
        pt[address] = make_writable_migration_entry(f)
    elif anon_exclusive:
        pt[address] = make_readable_exclusive_migration_entry(f)
    else:
        pt[address] = make_readable_migration_entry(f)
    k.ops.folio_remove_rmap_pte(k, f, vma)
    folio_put(k, f, fn)
    if visited is not None:
        visited.append((mm, address))
    return True


def try_to_migrate(k: Kernel, f: folio, flags: int = 0,
                   visited: list[tuple[mm_struct, int]] | None = None) -> None:
    """``try_to_migrate()`` (mm/rmap.c, v6.18): replace every PTE of ``f`` by a migration entry.

    The walk locks the anon_vma with ``folio_lock_anon_vma_read()`` and stops
    once the folio is unmapped (``folio_not_mapped()``). Anonymous non-KSM
    folios skip temporary exec stacks (``invalid_migration_vma()``). "Caller
    must hold the folio lock."

    :param f: ``struct folio *``, locked.
    :param flags: ``enum ttu_flags``; only ``TTU_RMAP_LOCKED`` (1) matters here.
    :param visited: see :func:`try_to_migrate_one`.
    """
    if not f.locked:
        raise KernelBug("try_to_migrate", "caller must hold the folio lock")
    if f is ZERO_PAGE:
        return

    def one(vma: vm_area_struct, address: int) -> bool:
        return k.ops.try_to_migrate_one(k, f, vma, address, visited)

    rwc = rmap_walk_control(one, done=_folio_not_mapped, anon_lock=k.ops.folio_lock_anon_vma_read)
    if not f.ksm and folio_test_anon(f):
        rwc.invalid_vma = _invalid_migration_vma
    k.ops.rmap_walk(k, f, rwc, bool(flags & TTU_RMAP_LOCKED))


def folio_referenced(k: Kernel, f: folio, is_locked: bool = False, vm_flags: list[int] | None = None,
                     visited: list[tuple[mm_struct, int]] | None = None) -> int:
    """``folio_referenced()`` (mm/rmap.c, v6.18): count the mappings that referenced ``f``.

    "Quick test_and_clear_referenced for all mappings of a folio". The walk
    uses ``folio_lock_anon_vma_read()`` with ``try_lock`` and stops when every
    mapping (``folio_mapcount()``) was seen. The model keeps no accessed bit:
    ``ptep_clear_flush_young_notify()`` finds every present PTE young, so the
    result is the number of VMAs in which the walk found a PTE of ``f``. A
    ``VM_LOCKED`` VMA stops the walk ("Restore the mlock which got missed").
    The model has no memcg and no ``vma_has_recency()`` hints, so no VMA is
    invalid.

    :param is_locked: the caller holds the folio lock.
    :param vm_flags: ``unsigned long *vm_flags``: if given, ``vm_flags[0]`` is set
        to the union of the referencing VMAs' flags (``VM_LOCKED`` if a locked
        VMA stopped the walk).
    :param visited: if given, each ``(mm, address)`` found mapped is appended.
    :returns: the number of referencing mappings, or -1 if the rmap lock was
        contended.
    """
    mapcount = f._mapcount  # folio_mapcount()
    if not mapcount:
        return 0
    if f.mapping is None:  # folio_raw_mapping()
        return 0
    we_locked = False
    if not is_locked and (not folio_test_anon(f) or f.ksm):
        if f.locked:  # folio_trylock()
            return 1
        f.locked = we_locked = True
    rwc, pra = k.ops.folio_referenced_rwc(k, f, mapcount, visited)
    if vm_flags is not None:
        vm_flags[:] = [0]
    k.ops.rmap_walk(k, f, rwc)
    if vm_flags is not None:
        vm_flags[0] = pra["vm_flags"]
    if we_locked:
        f.locked = False
    return -1 if rwc.contended else pra["referenced"]


def folio_referenced_rwc(k: Kernel, f: folio, mapcount: int,
                         visited: list[tuple[mm_struct, int]] | None = None) -> tuple[rmap_walk_control, dict]:
    """The ``struct rmap_walk_control`` and ``struct folio_referenced_arg`` of ``folio_referenced()``.

    ``rmap_one`` is ``folio_referenced_one()``; the walk locks with
    ``folio_lock_anon_vma_read()`` and ``try_lock`` (mm/rmap.c, v6.18).

    :param mapcount: ``folio_mapcount()`` when the walk began: the walk stops
        once it has seen that many mappings.
    :param visited: if given, each ``(mm, address)`` found mapped is appended.
    :returns: the control and the argument (``mapcount``, ``referenced``,
        ``vm_flags``), which the walk updates.
    """
    pra = {"mapcount": mapcount, "referenced": 0, "vm_flags": 0}

    def folio_referenced_one(vma: vm_area_struct, address: int) -> bool:
        pte = vma.vm_mm.pgtable.get(address)
        if pte is None or is_migration_entry(pte) or pte[0] is not f:
            return True  # page_vma_mapped_walk() found nothing here
        if visited is not None:
            visited.append((vma.vm_mm, address))
        if vma.vm_flags & VM_LOCKED:
            # Restore the mlock which got missed
            pra["vm_flags"] |= VM_LOCKED
            return False  # To break the loop
        pra["referenced"] += 1
        pra["vm_flags"] |= vma.vm_flags & ~VM_LOCKED
        pra["mapcount"] -= 1
        return pra["mapcount"] != 0

    rwc = rmap_walk_control(folio_referenced_one, anon_lock=k.ops.folio_lock_anon_vma_read, try_lock=True)
    return rwc, pra


#: The kernel functions of mm/rmap.c and include/linux/rmap.h, by name, for the design table.
RMAP_OPS: dict[str, Callable[..., Any]] = {
    "__anon_vma_prepare": __anon_vma_prepare,
    "__folio_set_anon": __folio_set_anon,
    "__put_anon_vma": __put_anon_vma,
    "anon_vma_alloc": anon_vma_alloc,
    "anon_vma_chain_alloc": anon_vma_chain_alloc,
    "anon_vma_chain_free": anon_vma_chain_free,
    "anon_vma_chain_link": anon_vma_chain_link,
    "anon_vma_clone": anon_vma_clone,
    "anon_vma_fork": anon_vma_fork,
    "anon_vma_free": anon_vma_free,
    "anon_vma_lock_read": anon_vma_lock_read,
    "anon_vma_lock_write": anon_vma_lock_write,
    "anon_vma_merge": anon_vma_merge,
    "anon_vma_prepare": anon_vma_prepare,
    "anon_vma_reusable": anon_vma_reusable,
    "anon_vma_unlock_read": anon_vma_unlock_read,
    "anon_vma_unlock_write": anon_vma_unlock_write,
    "folio_add_anon_rmap_pte": folio_add_anon_rmap_pte,
    "folio_add_new_anon_rmap": folio_add_new_anon_rmap,
    "folio_move_anon_rmap": folio_move_anon_rmap,
    "folio_remove_rmap_pte": folio_remove_rmap_pte,
    "folio_try_dup_anon_rmap_pte": folio_try_dup_anon_rmap_pte,
    "get_anon_vma": get_anon_vma,
    "lock_anon_vma_root": lock_anon_vma_root,
    "page_address_in_vma": page_address_in_vma,
    "put_anon_vma": put_anon_vma,
    "put_root_pin": put_root_pin,
    "rmap_walk_anon": rmap_walk_anon,
    "unlink_anon_vmas": unlink_anon_vmas,
    "unlock_anon_vma_root": unlock_anon_vma_root,
    # migration and reclaim walks
    "folio_anon_vma_rcu": folio_anon_vma_rcu,
    "folio_get_anon_vma": folio_get_anon_vma,
    "folio_get_anon_vma_pin": folio_get_anon_vma_pin,
    "folio_lock_anon_vma_read": folio_lock_anon_vma_read,
    "folio_lock_anon_vma_root": folio_lock_anon_vma_root,
    "folio_lock_anon_vma_sleep": folio_lock_anon_vma_sleep,
    "folio_referenced": folio_referenced,
    "folio_referenced_rwc": folio_referenced_rwc,
    "page_unlock_anon_vma": page_unlock_anon_vma,
    "rmap_walk": rmap_walk,
    "rmap_walk_locked": rmap_walk_locked,
    "try_to_migrate": try_to_migrate,
    "try_to_migrate_one": try_to_migrate_one,
}
