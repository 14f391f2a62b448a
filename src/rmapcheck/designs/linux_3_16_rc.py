"""Design ``linux-3.16-rc``: the anon_vma code of v3.15, before Linux kernel commit 624483f3ea82.

The 3.x scheme (docs/history.md S5 to S7): one ``refcount`` (a non-empty
interval tree is worth one reference, a child pins its root, KSM and
migration take their own), the root's rwsem, read-locked rmap walks, and no
reuse of an anon_vma on fork: every child VMA gets a new anon_vma
(``anon_vma_fork()``), and ``struct anon_vma`` has neither ``degree`` nor
``num_children``/``num_active_vmas`` (the model's two counters stay 0).
Read from mm/rmap.c of torvalds/linux at 00170fdd0846 (a v3.15-era tree:
``rmap_walk_control``, rwsem, interval tree, no ``degree``, the root freed
first).

Two bugs of the era live here:

* ``__put_anon_vma()`` frees the root before the child (docs/history.md B10),
  fixed by 624483f3ea82 ("mm: rmap: fix use-after-free in __put_anon_vma",
  Andrey Ryabinin, June 2014, v3.16, Cc stable 3.0+): "For the last
  anon_vma, anon_vma->root freed before child anon_vma. Later in
  anon_vma_free(anon_vma) we are referencing to already freed
  anon_vma->root to check rwsem." Design ``linux-3.16`` is the fix.
* ``__split_vma()`` (mm/mmap.c, v3.12 to v3.17) returns success when
  ``anon_vma_clone()`` fails (B11), fixed by c4ea95d7cd08 ("mm: fix
  anon_vma_clone() error treatment", Daniel Forrest): "In __split_vma(),
  between Linux 3.11 and 3.12 the code was changed so the err variable is
  used before the call to anon_vma_clone() and the default initial value of
  -ENOMEM is overwritten. So a failure of anon_vma_clone() will return
  success since err at this point is now zero." Design ``linux-3.18`` is the
  fix.

BASE is ``linux-6.18`` with these functions replaced ("v6.18 with the 3.15
anon_vma functions"): the VMA code around them (merges, mremap, the maple
tree) is today's, except the two places where a 3.x caller of
``anon_vma_clone()`` behaved differently: ``__split_vma()`` and the
importer/exporter clone of ``vma_adjust()`` (``dup_anon_vma()`` here).
``unlink_anon_vmas()`` clears ``vma->anon_vma`` as v5.x does (the v6.18 callers
that the model keeps, such as mremap's ``MREMAP_DONTUNMAP``, rely on it; the
3.x callers freed the VMA or cleared the pointer themselves).
"""

from __future__ import annotations

import errno
from typing import Any

from rmapcheck.model.findings import KernelBug, KernelWarning, RefcountUnderflow
from rmapcheck.model.invariants import _broken
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import anon_vma, vm_area_struct
from rmapcheck.model.slab import kasan_check
from rmapcheck.model.vma import validate_mm, vma_iter_prealloc

__all__ = ["ADD", "BASE", "HISTORY", "REPLACE", "SCENARIO_DIFFERS", "__anon_vma_prepare", "__put_anon_vma",
           "__split_vma", "anon_vma_alloc", "anon_vma_clone", "anon_vma_fork", "clone_chain",
           "counter_invariants", "dup_anon_vma", "fork_own_anon_vma", "unlink_anon_vmas"]

BASE = "linux-6.18"


def anon_vma_alloc(k: Kernel, function: str = "anon_vma_alloc") -> anon_vma | None:
    """``anon_vma_alloc()`` (mm/rmap.c, v3.15): refcount 1, its own root.

    "Initialise the anon_vma root to point to itself. If called from fork,
    the root will be reset to the parents anon_vma."
    """
    if k.should_fail("anon_vma_alloc"):
        return None
    av = k.anon_vma_cachep.alloc(function)
    av.refcount = 1
    av.root = av
    av.parent = av  # no ->parent in v3.15; kept pointing to itself
    av.num_children = av.num_active_vmas = 0
    return av


def __put_anon_vma(k: Kernel, av: anon_vma, function: str = "__put_anon_vma") -> None:
    """``__put_anon_vma()`` (mm/rmap.c, v3.0 to v3.15): the root is put, and maybe freed, first.

    ``if (root != anon_vma && atomic_dec_and_test(&root->refcount))
    anon_vma_free(root); anon_vma_free(anon_vma);`` — and ``anon_vma_free()``
    reads ``anon_vma->root->rwsem`` (``rwsem_is_locked()``), so when the
    child's last reference held the root's last pin, the child's free reads
    the freed root (docs/history.md B10).
    """
    root = av.root
    if root is not av:
        kasan_check(root, function)
        root.refcount -= 1
        if root.refcount < 0:
            raise RefcountUnderflow(function, f"refcount of {root.kname()} below zero")
        if root.refcount == 0:
            k.ops.anon_vma_free(k, root, function)
    k.ops.anon_vma_free(k, av, function)


def __anon_vma_prepare(k: Kernel, vma: vm_area_struct) -> int:
    """``anon_vma_prepare()`` (mm/rmap.c, v3.15): a neighbour's anon_vma or a new root; no counters."""
    fn = "anon_vma_prepare"
    avc = k.ops.anon_vma_chain_alloc(k, fn)
    if avc is None:
        return -errno.ENOMEM
    av = k.ops.find_mergeable_anon_vma(k, vma)
    allocated = None
    if av is None:
        av = k.ops.anon_vma_alloc(k, fn)
        if av is None:
            k.ops.anon_vma_chain_free(k, avc, fn)  # out_enomem_free_avc
            return -errno.ENOMEM
        allocated = av
    k.ops.anon_vma_lock_write(k, av, fn)
    # page_table_lock to protect against threads
    if vma.anon_vma is None:
        vma.anon_vma = av
        k.ops.anon_vma_chain_link(k, vma, avc, av)
        k.ops.anon_vma_prepare_linked(k, av)
        allocated = None
        avc = None
    k.ops.anon_vma_unlock_write(k, av, fn)
    if allocated is not None:
        k.ops.put_anon_vma(k, allocated, fn)
    if avc is not None:
        k.ops.anon_vma_chain_free(k, avc, fn)
    return 0


def clone_chain(k: Kernel, dst: vm_area_struct, src: vm_area_struct, fn: str = "anon_vma_clone") -> bool:
    """The loop of ``anon_vma_clone()`` (mm/rmap.c, v3.15 to v4.0): link ``dst`` to each anon_vma of ``src``.

    Oldest first (``list_for_each_entry_reverse``); each chain entry is
    tried with ``GFP_NOWAIT``, then, the root's lock dropped, with
    ``GFP_KERNEL``. ``k.ops.anon_vma_clone_reuse`` is called on each linked
    anon_vma: the reuse test of 7a3ef208e662 (v3.19), nothing before it.

    :returns: whether every entry was linked (``False``: ``goto
        enomem_failure``, the root unlocked).
    """
    root: anon_vma | None = None
    for pavc in reversed(src.anon_vma_chain):
        avc = k.ops.anon_vma_chain_alloc(k, fn)  # GFP_NOWAIT | __GFP_NOWARN
        if avc is None:
            k.ops.unlock_anon_vma_root(k, root, fn)
            root = None
            avc = k.ops.anon_vma_chain_alloc(k, fn)  # GFP_KERNEL
            if avc is None:
                return False
        av = pavc.anon_vma
        root = k.ops.lock_anon_vma_root(k, root, av, fn)
        k.ops.anon_vma_chain_link(k, dst, avc, av)
        k.ops.anon_vma_clone_reuse(k, dst, src, av)
    k.ops.anon_vma_clone_linked(k, dst)
    k.ops.unlock_anon_vma_root(k, root, fn)
    return True


def _no_reuse(k: Kernel, dst: vm_area_struct, src: vm_area_struct, av: anon_vma) -> None:
    # Before 7a3ef208e662 (v3.19) anon_vma_clone() reuses nothing.
    return None


def _nothing_counted(k: Kernel, dst: vm_area_struct) -> None:
    # Before 7a3ef208e662 (v3.19) no counter follows the clone.
    return None


def anon_vma_clone(k: Kernel, dst: vm_area_struct, src: vm_area_struct) -> int:
    """``anon_vma_clone()`` (mm/rmap.c, v3.15): attach the anon_vmas of ``src`` to ``dst``.

    On failure, ``enomem_failure: unlink_anon_vmas(dst); return -ENOMEM;``:
    ``dst->anon_vma`` is left as the caller set it.
    """
    if clone_chain(k, dst, src):
        return 0
    k.ops.unlink_anon_vmas(k, dst)
    return -errno.ENOMEM


def anon_vma_fork(k: Kernel, vma: vm_area_struct, pvma: vm_area_struct) -> int:
    """``anon_vma_fork()`` (mm/rmap.c, v3.15): the parent's anon_vmas, then always a new one of its own."""
    fn = "anon_vma_fork"
    # Don't bother if the parent process has no anon_vma here.
    if pvma.anon_vma is None:
        return 0
    # First, attach the new VMA to the parent VMA's anon_vmas, so rmap can
    # find non-COWed pages in child processes.
    if k.ops.anon_vma_clone(k, vma, pvma):
        return -errno.ENOMEM
    return fork_own_anon_vma(k, vma, pvma)


def fork_own_anon_vma(k: Kernel, vma: vm_area_struct, pvma: vm_area_struct) -> int:
    """The second half of ``anon_vma_fork()`` (mm/rmap.c, v3.15 to v4.0): "Then add our own anon_vma"."""
    fn = "anon_vma_fork"
    av = k.ops.anon_vma_alloc(k, fn)
    if av is None:
        k.ops.unlink_anon_vmas(k, vma)  # out_error
        return -errno.ENOMEM
    avc = k.ops.anon_vma_chain_alloc(k, fn)
    if avc is None:
        k.ops.put_anon_vma(k, av, fn)  # out_error_free_anon_vma
        k.ops.unlink_anon_vmas(k, vma)
        return -errno.ENOMEM
    # The root anon_vma's spinlock is the lock actually used when we lock
    # any of the anon_vmas in this anon_vma tree.
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
    k.ops.anon_vma_fork_linked(k, av)
    k.ops.anon_vma_unlock_write(k, av, fn)
    return 0


def _fork_nothing_counted(k: Kernel, av: anon_vma) -> None:
    # Before 7a3ef208e662 (v3.19) the parent counts no children.
    return None


def unlink_anon_vmas(k: Kernel, vma: vm_area_struct) -> None:
    """``unlink_anon_vmas()`` (mm/rmap.c, v3.15): two passes, no counters.

    "Unlink each anon_vma chained to the VMA. This list is ordered from
    newest to oldest, ensuring the root anon_vma gets freed last." Emptied
    anon_vmas are put in the second pass, outside the lock, "due to
    __put_anon_vma() needing to write-acquire the anon_vma->root->rwsem".
    ``k.ops.anon_vma_unlink_counts`` updates the counters of 7a3ef208e662
    (v3.19): nothing before it.
    """
    fn = "unlink_anon_vmas"
    root: anon_vma | None = None
    keep = []
    for avc in list(vma.anon_vma_chain):  # newest first
        av = avc.anon_vma
        root = k.ops.lock_anon_vma_root(k, root, av, fn)
        av.rb_root.remove(avc)  # anon_vma_interval_tree_remove()
        # Leave empty anon_vmas on the list - we'll need to free them
        # outside the lock.
        if not av.rb_root:
            k.ops.anon_vma_unlink_emptied(k, av)
            keep.append(avc)
            continue
        k.ops.anon_vma_chain_free(k, avc, fn)
    vma.anon_vma_chain = keep
    if vma.anon_vma is not None:
        k.ops.anon_vma_unlink_vma(k, vma.anon_vma)
        vma.anon_vma = None  # as v5.x does; see the module docstring
    k.ops.unlock_anon_vma_root(k, root, fn)
    # Iterate the list once more, it now only contains empty and unlinked
    # anon_vmas, destroy them.
    for avc in keep:
        av = avc.anon_vma
        k.ops.anon_vma_unlink_check(k, av)
        k.ops.put_anon_vma(k, av, fn)
        k.ops.anon_vma_chain_free(k, avc, fn)
    vma.anon_vma_chain = []


def _av_noop(k: Kernel, av: anon_vma) -> None:
    # No degree before 7a3ef208e662 (v3.19).
    return None


def __split_vma(k: Kernel, vma: vm_area_struct, addr: int, new_below: int) -> int:
    """``__split_vma()`` (mm/mmap.c, v3.12 to v3.17): a failed ``anon_vma_clone()`` returns success.

    ``err = vma_dup_policy(vma, new); if (err) goto out_free_vma; if
    (anon_vma_clone(new, vma)) goto out_free_mpol; ... out_free_mpol: ...
    return err;`` with ``err`` 0: the VMA is not split, and the caller goes
    on as if it were (docs/history.md B11). In the model the step that sets
    ``err`` before the clone is ``vma_iter_prealloc()``, as ``vma_dup_policy()``
    was in v3.12; the rest is v6.18's ``__split_vma()``.
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
        k.ops.vm_area_free(k, new, fn)  # out_free_vma
        return err
    if k.ops.anon_vma_clone(k, new, vma):
        k.ops.vm_area_free(k, new, fn)  # out_free_mpol
        return err
    vp = k.ops.init_multi_vma_prep(k, vma, None)
    vp.insert = new
    k.ops.vma_prepare(k, vp)
    if new_below:
        vma.vm_start = addr
        vma.vm_pgoff += addr - new.vm_start
    else:
        vma.vm_end = addr
    if vma.vm_mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug(fn, "NULL pointer dereference: vma.vm_mm")
    k.ops.vma_complete(k, vp, vma.vm_mm)
    validate_mm(k, vma.vm_mm)
    return 0


def dup_anon_vma(k: Kernel, dst: vm_area_struct, src: vm_area_struct) -> tuple[int, vm_area_struct | None]:
    """The importer/exporter clone of ``vma_adjust()`` (mm/mmap.c, v2.6.34 to v3.18): clone, then assign.

    "Easily overlooked: when mprotect shifts the boundary, make sure the
    expanding vma has anon_vma set if the shrinking vma had, to cover any
    anon pages imported." ``if (exporter && exporter->anon_vma &&
    !importer->anon_vma) { error = anon_vma_clone(importer, exporter); if
    (error) return error; importer->anon_vma = exporter->anon_vma; }`` —
    ``importer->anon_vma`` is still ``NULL`` during the clone. v6.18's
    ``dup_anon_vma()`` is the same step of a merge.

    :returns: ``(0 or -ENOMEM, *dup)``: ``*dup`` is ``dst`` when its chain was cloned.
    """
    if src.anon_vma is not None and dst.anon_vma is None:
        ret = k.ops.anon_vma_clone(k, dst, src)
        if ret:
            return ret, None
        dst.anon_vma = src.anon_vma
        return 0, dst
    return 0, None


def counter_invariants(k: Kernel, a: anon_vma, active: int, children: int, pins: int,
                       ext: int) -> str | None:
    """The anon_vma counter of v3.0 to v3.18: ``refcount`` only.

    One for the interval tree while it is not empty, one per child pinning
    this root, plus the external holders (KSM, migration).
    """
    if a.refcount < 0:
        raise _broken("I6", RefcountUnderflow("check_invariants", f"refcount of {a.kname()} is {a.refcount}", a))
    want = (1 if a.rb_root else 0) + pins + ext
    if a.refcount != want:
        return f"refcount {a.refcount}, expected {want}"
    return None


REPLACE: dict[str, Any] = {
    "anon_vma_alloc": anon_vma_alloc,
    "__put_anon_vma": __put_anon_vma,
    "__anon_vma_prepare": __anon_vma_prepare,
    "anon_vma_clone": anon_vma_clone,
    "anon_vma_fork": anon_vma_fork,
    "unlink_anon_vmas": unlink_anon_vmas,
    "__split_vma": __split_vma,
    "dup_anon_vma": dup_anon_vma,
    "anon_vma_counter_invariants": counter_invariants,
}

#: The steps of the 3.x anon_vma functions that 7a3ef208e662 (v3.19) fills in.
ADD: dict[str, Any] = {
    "anon_vma_prepare_linked": _av_noop,
    "anon_vma_clone_reuse": _no_reuse,
    "anon_vma_clone_linked": _nothing_counted,
    "anon_vma_fork_linked": _fork_nothing_counted,
    "anon_vma_unlink_emptied": _av_noop,
    "anon_vma_unlink_vma": _av_noop,
    "anon_vma_unlink_check": _av_noop,
}

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "B10",
        "title": "root freed before its child in __put_anon_vma()",
        "fixed": "linux-3.16",
        "args": ("--processes", "2", "--regions", "1", "--pages", "1", "--ops", "write,exit,migrate",
                 "--forked", "--depth", "9"),
        "property": "use-after-free",
        "tuned": "",
        "fast": True,
    },
)

#: Bundled scenarios whose outcome on this design differs from linux-6.18's.
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = {}
