"""Design ``linux-2.6.36-pre``: the root anon_vma series without patch 5/5.

Rik van Riel's series "always lock the root (oldest) anon_vma" (May 2010), as
in -mm before "mm: extend KSM refcounts to the anon_vma root": Linux kernel
commits 5c341ee1dfc8 ("mm: track the root (oldest) anon_vma") and 012f18004da3
("mm: always lock the root (oldest) anon_vma") on top of the 2.6.35 anon_vma
code (anon_vma_chain, Linux kernel commit 5beb49305251, and the migration
reference of the compaction series). Every anon_vma lock is the root's
spinlock, but nothing pins the root: KSM and migration hold a reference
(``external_refcount``) on a *child* anon_vma only, so at exit the root can be
freed while its child lives on — the question Mel Gorman asked on 2010-05-13
(docs/history.md §2 B0).

Fields of the model's ``struct anon_vma`` in this era: ``refcount`` is
``external_refcount`` (``CONFIG_KSM || CONFIG_MIGRATION``), ``rb_root`` is the
list ``head`` of anon_vma_chains; ``num_children`` and ``num_active_vmas`` do
not exist (they stay 0). Fork never reuses an anon_vma; ``anon_vma_prepare()``
reuses a neighbour's anon_vma only when the neighbour's chain is singular
(Linux kernel commit d0e9fe1758f2, in v2.6.34), which the 6.18
``find_mergeable_anon_vma()`` the design keeps does as well.

BASE is ``linux-6.18``: the model's v6.18 code with the anon_vma lifetime,
locking and merge test of this era put in. Replaced (mm/rmap.c, mm/ksm.c,
mm/migrate.c as of the series): ``anon_vma_alloc()``, ``anon_vma_free()``,
``anon_vma_prepare()``, ``anon_vma_clone()`` and ``anon_vma_fork()`` (no
reuse, no counters), ``unlink_anon_vmas()``, ``anon_vma_merge()``,
``get_anon_vma()`` and the drop (``put_anon_vma`` is KSM's and migration's
``drop_anon_vma()``), migration's pin (``folio_get_anon_vma_pin``),
``page_lock_anon_vma()`` and ``page_unlock_anon_vma()`` (the root's
spinlock), the refcount invariant, and ``is_mergeable_anon_vma()`` (mm/mmap.c,
no fork-child test before 965f55dea0e3 in v3.0). Added for the later designs
of the series to replace: ``anon_vma_fork_pin_root``,
``anon_vma_unlink_drop_root``, ``drop_anon_vma``. The rest (VMA splitting and
merging but for that test, mremap, KSM's scan, migration's and reclaim's
walks) is v6.18's.
"""

from __future__ import annotations

import errno
from typing import Any

from rmapcheck.model.findings import Deadlock, LockMisuse, RefcountUnderflow
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import anon_vma, folio, vm_area_struct
from rmapcheck.model.rmap import (
    anon_vma_chain_alloc, anon_vma_chain_free, anon_vma_chain_link, anon_vma_lock_write,
    anon_vma_unlock_write,
)
from rmapcheck.model.slab import kasan_check

__all__ = ["ADD", "BASE", "REPLACE", "anon_vma_alloc", "anon_vma_clone", "anon_vma_fork",
           "anon_vma_free", "anon_vma_prepare", "anon_vma_unlink", "atomic_dec_and_lock", "drop_anon_vma",
           "folio_get_anon_vma_pin", "get_anon_vma", "is_mergeable_anon_vma", "page_lock_anon_vma", "page_unlock_anon_vma", "spin_lock_rcu",
           "unlink_anon_vmas"]

BASE = "linux-6.18"

def anon_vma_alloc(k: Kernel, function: str = "anon_vma_alloc") -> anon_vma | None:
    """``anon_vma_alloc()`` (mm/rmap.c, v2.6.35): ``kmem_cache_alloc()``, nothing more.

    Only the slab constructor ``anon_vma_ctor()`` initialises the lock, the
    ``head`` list and ``external_refcount``, and only on a fresh slot: a slot
    reused under ``SLAB_DESTROY_BY_RCU`` keeps its old ``external_refcount``.
    """
    if k.should_fail("anon_vma_alloc"):
        return None
    av = k.anon_vma_cachep.alloc(function)
    av.parent = av
    av.num_children = av.num_active_vmas = 0
    return av


def anon_vma_free(k: Kernel, av: anon_vma, function: str = "anon_vma_free") -> None:
    """``anon_vma_free()`` (mm/rmap.c, v2.6.35): ``kmem_cache_free()``."""
    kasan_check(av, function)
    k.anon_vma_cachep.free(av, function)


def get_anon_vma(k: Kernel, av: anon_vma, function: str = "get_anon_vma") -> None:
    """``atomic_inc(&anon_vma->external_refcount)``: KSM's ``hold_anon_vma()`` and migration.

    A no-op without ``CONFIG_KSM`` and ``CONFIG_MIGRATION`` (include/linux/rmap.h, v2.6.35).
    """
    if not (k.config.get("CONFIG_KSM") or k.config.get("CONFIG_MIGRATION")):
        return
    kasan_check(av, function)
    av.refcount += 1


def atomic_dec_and_lock(k: Kernel, av: anon_vma, lock_owner: anon_vma, function: str) -> bool:
    """``atomic_dec_and_lock(&av->external_refcount, &lock_owner->lock)`` (lib/dec_and_lock.c, v2.6.36).

    Takes the lock (touching ``lock_owner``) only when the count drops to zero;
    a count that goes below zero is recorded, as kmemleak's later report is the
    only symptom the kernel shows.
    """
    kasan_check(av, function)
    av.refcount -= 1
    if av.refcount < 0:
        k.warnings.append(RefcountUnderflow(function, f"external_refcount of {av.kname()} is {av.refcount}"))
    if av.refcount != 0:
        return False
    anon_vma_lock_write(k, lock_owner, function)  # spin_lock(&lock_owner->root->lock)
    return True


def drop_anon_vma(k: Kernel, av: anon_vma, function: str = "drop_anon_vma") -> None:
    """KSM's ``drop_anon_vma(rmap_item)`` (mm/ksm.c) and migration's open-coded drop (mm/migrate.c).

    With 012f18004da3 the lock taken is the root's: ``atomic_dec_and_lock(
    &anon_vma->external_refcount, &anon_vma->root->lock)`` — on the root that
    this design lets exit free first.
    """
    if not (k.config.get("CONFIG_KSM") or k.config.get("CONFIG_MIGRATION")):
        return
    if atomic_dec_and_lock(k, av, av, "drop_anon_vma"):
        empty = not av.rb_root
        anon_vma_unlock_write(k, av, "drop_anon_vma")
        if empty:
            k.ops.anon_vma_free(k, av, "drop_anon_vma")


def folio_get_anon_vma_pin(k: Kernel, f: folio, av: anon_vma) -> anon_vma | None:
    """Migration's pin in ``unmap_and_move()`` (mm/migrate.c, v2.6.35), after the mapping read.

    ``rcu_read_lock(); if (!page_mapped(page)) goto skip; anon_vma =
    page_anon_vma(page); atomic_inc(&anon_vma->external_refcount);``: no
    second look at ``page_mapped()``, and no "not zero" test. "The anon_vma
    to which we get a reference may already have been freed back to its slab
    (it is in use when we check page_mapped, but that can change)"
    (docs/history.md B6, fixed in 2011 after v2.6.37).
    """
    k.ops.get_anon_vma(k, av, "unmap_and_move")
    return av


def spin_lock_rcu(k: Kernel, root: anon_vma, function: str) -> None:
    """``spin_lock(&root->lock)`` under ``rcu_read_lock()``.

    As ``page_lock_anon_vma()`` (mm/rmap.c, v2.6.36-rc1) takes it; the
    model's root lock is the rwsem, held for write.

    The anon_vma cache is ``SLAB_DESTROY_BY_RCU``: a freed anon_vma's memory is
    still an anon_vma with its lock, so taking it is no use-after-free.
    """
    if root.rwsem_writer or root.rwsem_readers:
        raise Deadlock(function, f"deadlock: spin_lock on held lock of {root.kname()}", root)
    root.rwsem_writer = True


def page_lock_anon_vma(k: Kernel, f: folio, av: anon_vma, rwc: Any = None) -> anon_vma | None:
    """The end of ``page_lock_anon_vma()`` (mm/rmap.c) in the root series: ``anon_vma_lock(anon_vma)``.

    After the mapping read under RCU (``folio_anon_vma_rcu()``), 012f18004da3
    ("mm: always lock the root (oldest) anon_vma") made the lock
    ``spin_lock(&anon_vma->root->lock)``, and the function returns the
    anon_vma: nothing checks ``page_mapped()`` again. If the page was
    unmapped meanwhile, the anon_vma may have been freed and reused with
    another root, and ``page_unlock_anon_vma()`` then unlocks a different
    root (docs/history.md B4, fixed by f18194275c39 in v2.6.36).

    :returns: ``struct anon_vma *``, its root locked.
    """
    spin_lock_rcu(k, av.root, "page_lock_anon_vma")
    return av


def page_unlock_anon_vma(k: Kernel, av: anon_vma, function: str = "page_unlock_anon_vma") -> None:
    """``page_unlock_anon_vma()`` (mm/rmap.c, v2.6.36): ``anon_vma_unlock(anon_vma); rcu_read_unlock()``.

    ``anon_vma_unlock()`` is ``spin_unlock(&anon_vma->root->lock)``: the root
    is read again, so if the anon_vma was reused with another root since the
    lock, the lock released is not the one taken.
    """
    root = av.root
    if not root.rwsem_writer:
        raise LockMisuse("page_unlock_anon_vma",
                         f"spin_unlock of {root.kname()}'s lock, which is not held: {av.kname()}->root "
                         f"changed since page_lock_anon_vma() locked it", av)
    root.rwsem_writer = False


def anon_vma_prepare(k: Kernel, vma: vm_area_struct) -> int:
    """``anon_vma_prepare()`` (mm/rmap.c, v2.6.36): attach a neighbour's or a new root anon_vma.

    "This VMA had no anon_vma yet. This anon_vma is the root of any anon_vma
    tree that might form."
    """
    fn = "anon_vma_prepare"
    if vma.anon_vma is not None:
        return 0
    avc = anon_vma_chain_alloc(k, fn)
    if avc is None:
        return -errno.ENOMEM
    av = k.ops.find_mergeable_anon_vma(k, vma)
    allocated = None
    if av is None:
        av = k.ops.anon_vma_alloc(k, fn)
        if av is None:
            anon_vma_chain_free(k, avc, fn)
            return -errno.ENOMEM
        allocated = av
        av.root = av
    anon_vma_lock_write(k, av, fn)
    if vma.anon_vma is None:
        vma.anon_vma = av
        anon_vma_chain_link(k, vma, avc, av)
        allocated = None
        avc = None
    anon_vma_unlock_write(k, av, fn)
    if allocated is not None:
        k.ops.anon_vma_free(k, allocated, fn)
    if avc is not None:
        anon_vma_chain_free(k, avc, fn)
    return 0


def anon_vma_clone(k: Kernel, dst: vm_area_struct, src: vm_area_struct) -> int:
    """``anon_vma_clone()`` (mm/rmap.c, v2.6.36): link ``dst`` to every anon_vma of ``src``; no reuse."""
    fn = "anon_vma_clone"
    for pavc in reversed(src.anon_vma_chain):
        avc = anon_vma_chain_alloc(k, fn)
        if avc is None:
            k.ops.unlink_anon_vmas(k, dst)
            return -errno.ENOMEM
        av = pavc.anon_vma
        anon_vma_lock_write(k, av, fn)
        anon_vma_chain_link(k, dst, avc, av)
        anon_vma_unlock_write(k, av, fn)
    return 0


def anon_vma_fork(k: Kernel, vma: vm_area_struct, pvma: vm_area_struct) -> int:
    """``anon_vma_fork()`` (mm/rmap.c, 2.6.36 root series before 5/5): no pin on the root."""
    fn = "anon_vma_fork"
    if pvma.anon_vma is None:
        return 0
    if k.ops.anon_vma_clone(k, vma, pvma):
        return -errno.ENOMEM
    av = k.ops.anon_vma_alloc(k, fn)
    if av is None:
        k.ops.unlink_anon_vmas(k, vma)
        return -errno.ENOMEM
    avc = anon_vma_chain_alloc(k, fn)
    if avc is None:
        k.ops.anon_vma_free(k, av, fn)
        k.ops.unlink_anon_vmas(k, vma)
        return -errno.ENOMEM
    # The root anon_vma's spinlock is the lock actually used when we lock any
    # of the anon_vmas in this anon_vma tree.
    kasan_check(pvma.anon_vma, fn)
    av.root = pvma.anon_vma.root
    av.parent = pvma.anon_vma
    k.ops.anon_vma_fork_pin_root(k, av)
    vma.anon_vma = av
    anon_vma_lock_write(k, av, fn)
    anon_vma_chain_link(k, vma, avc, av)
    anon_vma_unlock_write(k, av, fn)
    return 0


def _no_root_pin(k: Kernel, av: anon_vma) -> None:
    # Before "mm: extend KSM refcounts to the anon_vma root" nothing pins the root.
    return None


def anon_vma_unlink(k: Kernel, av: anon_vma, avc: Any) -> None:
    """``anon_vma_unlink()`` (mm/rmap.c, v2.6.36 root series): unlink one chain entry.

    "We must garbage collect the anon_vma if it's empty": no chain entry and
    no external reference.
    """
    fn = "anon_vma_unlink"
    anon_vma_lock_write(k, av, fn)
    av.rb_root.remove(avc)  # list_del(&anon_vma_chain->same_anon_vma)
    empty = not av.rb_root and not av.refcount
    anon_vma_unlock_write(k, av, fn)
    if empty:
        k.ops.anon_vma_unlink_drop_root(k, av)
        k.ops.anon_vma_free(k, av, fn)


def _no_root_drop(k: Kernel, av: anon_vma) -> None:
    return None


def unlink_anon_vmas(k: Kernel, vma: vm_area_struct) -> None:
    """``unlink_anon_vmas()`` (mm/rmap.c, v2.6.36).

    "Unlink each anon_vma chained to the VMA. This list is ordered from newest
    to oldest, ensuring the root anon_vma gets freed last."
    """
    for avc in list(vma.anon_vma_chain):
        if avc.anon_vma is not None:
            anon_vma_unlink(k, avc.anon_vma, avc)
        vma.anon_vma_chain.remove(avc)
        anon_vma_chain_free(k, avc, "unlink_anon_vmas")
    vma.anon_vma = None


def anon_vma_merge(k: Kernel, vma: vm_area_struct, next: vm_area_struct) -> None:
    """``anon_vma_merge()`` (include/linux/rmap.h, v2.6.36)."""
    k.ops.unlink_anon_vmas(k, next)


def is_mergeable_anon_vma(k: Kernel, vmg: Any, merge_next: bool) -> bool:
    """``is_mergeable_anon_vma()`` (mm/mmap.c, v2.6.36): ``!anon_vma1 || !anon_vma2 || (anon_vma1 == anon_vma2)``.

    No test of the VMA's chain: a VMA cloned from a parent (a fork child's)
    merges with a neighbour that has no anon_vma, in either direction, and
    ``vma_adjust()`` clones the exporter's chain into the importer. Linux
    kernel commit 965f55dea0e3 ("mmap: avoid merging cloned VMAs", v3.0)
    added the ``list_is_singular(&vma->anon_vma_chain)`` test that v6.18's
    ``vma_is_fork_child()`` carries on (docs/history.md B18).

    :param vmg: ``struct vma_merge_struct *`` (the merge in v6.18's terms).
    :param merge_next: true to test against ``vmg->next``, else ``vmg->prev``.
    """
    tgt = vmg.next if merge_next else vmg.prev
    return tgt.anon_vma is None or vmg.anon_vma is None or tgt.anon_vma is vmg.anon_vma


def counter_invariants(k: Kernel, av: anon_vma, active: int, children: int, pins: int, ext: int) -> str | None:
    """What ``external_refcount`` must be in this design: the external holders only."""
    want = ext
    if av.refcount != want:
        return f"external_refcount {av.refcount}, expected {want}"
    return None


REPLACE: dict[str, Any] = {
    "anon_vma_alloc": anon_vma_alloc,
    "anon_vma_free": anon_vma_free,
    "anon_vma_prepare": anon_vma_prepare,
    "__anon_vma_prepare": anon_vma_prepare,
    "anon_vma_clone": anon_vma_clone,
    "anon_vma_fork": anon_vma_fork,
    "unlink_anon_vmas": unlink_anon_vmas,
    "anon_vma_merge": anon_vma_merge,
    "get_anon_vma": get_anon_vma,
    "put_anon_vma": drop_anon_vma,
    "folio_get_anon_vma_pin": folio_get_anon_vma_pin,
    "folio_lock_anon_vma_root": page_lock_anon_vma,
    "page_unlock_anon_vma": page_unlock_anon_vma,
    "anon_vma_counter_invariants": counter_invariants,
    "is_mergeable_anon_vma": is_mergeable_anon_vma,
}

#: Functions of this era that later designs of the series replace.
ADD: dict[str, Any] = {
    "anon_vma_fork_pin_root": _no_root_pin,
    "anon_vma_unlink_drop_root": _no_root_drop,
    "drop_anon_vma": drop_anon_vma,
}

#: Bundled scenarios whose outcome on this design differs from linux-6.18's.
SCENARIO_DIFFERS = {
    name: ("maps", "a fork child's VMA merges with a neighbour that has no anon_vma: the list_is_singular() test "
                   "came with 965f55dea0e3 (v3.0)")
    for name in ("fork-child-refuses-existing-merge", "fork-child-refuses-new-merge", "merge-forked-source-vma",
                 "merge-forked-target-vma", "mremap-fork-child-no-merge-at-destination", "munmap-after-fork")
}

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "B0",
        "title": "the root freed under a child anon_vma that KSM holds (KSM path)",
        "fixed": "linux-2.6.36",
        "args": ("--phase", "ksm"),
        "property": "use-after-free",
        "tuned": "",
        "fast": True,
    },
    {
        "bug": "B0",
        "title": "the root freed under a child anon_vma that a migration holds (migration path)",
        "fixed": "linux-2.6.36",
        "args": ("--phase", "migration", "--no-rcu-windows"),
        "property": "use-after-free",
        "tuned": "RCU windows closed: open, they also show B6 (fixed in 2.6.37) on linux-2.6.36",
        "fast": True,
    },
    {
        "bug": "B4",
        "title": "page_unlock_anon_vma() unlocks a root it never locked (the hang on anon_vma->root->lock)",
        "fixed": "linux-2.6.36",
        "args": ("--phase", "reclaim"),
        "property": "lock-misuse",
        "tuned": "",
        "fast": True,
    },
)
