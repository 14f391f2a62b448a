"""Design ``linux-3.0``: one reference count, the anon_vma lock a mutex, ``page_lock_anon_vma()`` with a trylock.

Peter Zijlstra's series, merged for v3.0 (docs/history.md §1 S5):

* Linux kernel commit 01d8b20dec5f ("mm: simplify anon_vma refcounts"): the
  count is unconditional (``refcount``), a non-empty list of chains is worth
  one reference, ``put_anon_vma()`` frees at zero and ``__put_anon_vma()``
  drops the child's pin of its root. v3.0's ``__put_anon_vma()`` puts the
  root *first* and frees the child after, though ``anon_vma_free()`` of the
  child reads ``anon_vma->root`` (``mutex_is_locked(&anon_vma->root->mutex)``):
  docs/history.md B10, fixed in v3.16 by 624483f3ea82.
* Linux kernel commit 746b18d421da ("mm: use refcounts for
  page_lock_anon_vma()"): ``page_get_anon_vma()`` (``atomic_inc_not_zero()``,
  then ``page_mapped()`` again) for migration, which is v6.18's
  ``folio_get_anon_vma()``; ``page_lock_anon_vma()`` tries the root's mutex
  first and otherwise pins the anon_vma and sleeps on the mutex;
  ``anon_vma_free()`` takes and drops the root's mutex when it finds it held.
* "mm: Convert anon_vma->lock to a mutex" (Peter Zijlstra; the commit id not
  confirmed): every anon_vma lock, rmap walks' included, is the root's mutex
  (exclusive; the rwsem with read-locked walks came in v3.8, 4fc3f1d66b1e).
* Hugh Dickins' "mm: fix page_lock_anon_vma leaving mutex locked" (2011-05-28,
  in v3.0-rc; docs/history.md B7): the trylock fast path saves
  ``anon_vma->root`` and checks ``page_mapped()`` rather than the refcount.

BASE is ``linux-6.18``: its anon_vma code is this scheme plus the later
changes, so this design reverts them: no anon_vma reuse on fork (before
7a3ef208e662, v3.19; ``num_children`` and ``num_active_vmas`` are kept by the
model's functions but no decision reads them), the root freed before the
child in ``__put_anon_vma()``, the lock exclusive, v3.0's
``page_lock_anon_vma()``, and ``move_ptes()`` (mm/mremap.c) taking no anon_vma
lock (the lock there came in v3.7 with 108d6642ad81). Kept from v6.18: the
two-pass ``unlink_anon_vmas()`` and the batched root lock of
``anon_vma_clone()`` (v3.3; the same frees in the same order), and the merge
rule of ``is_mergeable_anon_vma()`` (v3.0 had 965f55dea0e3's rule, which
docs/history.md B18 describes).

Not expressible at the model's granularity (each system call runs whole
between two steps of a kernel thread): B7 itself, whose window lies inside
``anon_vma_fork()`` between ``anon_vma_alloc()`` and the reset of
``anon_vma->root``, and B9 (mremap against migration), whose windows lie
inside ``move_ptes()`` and inside one rmap walk (docs/history.md B7, B9).
"""

from __future__ import annotations

from typing import Any

from rmapcheck.designs.linux_2_6_36_pre import spin_lock_rcu
from rmapcheck.model import mremap, rmap
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import anon_vma, folio, vm_area_struct
from rmapcheck.model.rmap import folio_mapped

__all__ = ["BASE", "REPLACE", "__put_anon_vma", "anon_vma_lock_read", "anon_vma_reusable", "anon_vma_unlock_read",
           "move_page_tables", "page_lock_anon_vma"]

BASE = "linux-6.18"


def anon_vma_reusable(k: Kernel, av: anon_vma, src: vm_area_struct) -> bool:
    """``anon_vma_clone()`` (mm/rmap.c, v3.0) reuses nothing: each fork allocates the child's anon_vma."""
    return False


def __put_anon_vma(k: Kernel, av: anon_vma, function: str = "__put_anon_vma") -> None:
    """``__put_anon_vma()`` (mm/rmap.c, v3.0): the root's pin first, then the anon_vma.

    .. code-block:: c

        struct anon_vma *root = anon_vma->root;

        if (root != anon_vma && atomic_dec_and_test(&root->refcount))
                anon_vma_free(root);

        anon_vma_free(anon_vma);

    ``anon_vma_free(anon_vma)`` reads ``anon_vma->root->mutex``: if the put
    freed the root, that read is a use-after-free (docs/history.md B10).
    """
    root = av.root
    if root is not av:
        k.ops.put_root_pin(k, root, function)
    k.ops.anon_vma_free(k, av, function)


def anon_vma_lock_read(k: Kernel, av: anon_vma, function: str = "anon_vma_lock_read") -> None:
    """``anon_vma_lock()`` (include/linux/rmap.h, v3.0): ``mutex_lock(&anon_vma->root->mutex)``.

    v3.0 has one kind of anon_vma lock; rmap walks take it as writers do.
    """
    rmap.anon_vma_lock_write(k, av, function)


def anon_vma_unlock_read(k: Kernel, av: anon_vma, function: str = "anon_vma_unlock_read") -> None:
    """``anon_vma_unlock()`` (include/linux/rmap.h, v3.0): ``mutex_unlock(&anon_vma->root->mutex)``."""
    rmap.anon_vma_unlock_write(k, av, function)


def page_lock_anon_vma(k: Kernel, f: folio, av: anon_vma, rwc: Any = None) -> anon_vma | str | None:
    """The end of ``page_lock_anon_vma()`` (mm/rmap.c, v3.0, with "mm: fix page_lock_anon_vma leaving mutex locked").

    After the mapping read under RCU (``folio_anon_vma_rcu()``):

    .. code-block:: c

        root_anon_vma = ACCESS_ONCE(anon_vma->root);
        if (mutex_trylock(&root_anon_vma->mutex)) {
                if (!page_mapped(page)) {
                        mutex_unlock(&root_anon_vma->mutex);
                        anon_vma = NULL;
                }
                goto out;
        }
        /* trylock failed, we got to sleep */
        if (!atomic_inc_not_zero(&anon_vma->refcount)) { anon_vma = NULL; goto out; }
        if (!page_mapped(page)) { put_anon_vma(anon_vma); anon_vma = NULL; goto out; }
        rcu_read_unlock();
        anon_vma_lock(anon_vma);
        if (atomic_dec_and_test(&anon_vma->refcount)) {
                anon_vma_unlock(anon_vma);
                __put_anon_vma(anon_vma);
                anon_vma = NULL;
        }

    v3.0 has no ``try_lock`` walkers: every caller sleeps on the mutex.

    :returns: ``struct anon_vma *`` with its root's mutex held, or ``NULL``
        (:data:`~rmapcheck.model.rmap.LOCK_RETRY` only from the shared sleep
        path, which v3.0 did not have).
    """
    fn = "page_lock_anon_vma"
    root_anon_vma = av.root  # ACCESS_ONCE(anon_vma->root)
    if not (root_anon_vma.rwsem_writer or root_anon_vma.rwsem_readers):  # mutex_trylock()
        spin_lock_rcu(k, root_anon_vma, fn)
        if not folio_mapped(f):
            root_anon_vma.rwsem_writer = False  # mutex_unlock(&root_anon_vma->mutex)
            return None
        return av
    # trylock failed, we got to sleep (v3.0 has no second look at
    # page->mapping after the sleep; in the model a sleep on a lock that a
    # preempted kernel thread holds does not start until it is released)
    return k.ops.folio_lock_anon_vma_sleep(k, f, av, fn)


def move_page_tables(k: Kernel, old_vma: vm_area_struct, old_addr: int, new_vma: vm_area_struct,
                     new_addr: int, npages: int, need_rmap_locks: bool) -> int:
    """``move_page_tables()`` → ``move_ptes()`` (mm/mremap.c, v3.0): no anon_vma lock.

    v3.0's ``move_ptes()`` takes ``i_mmap_mutex`` for a file VMA and the page
    table locks, nothing for the anon_vma: "mremap's down_write of mmap_sem,
    together with i_mmap_mutex or lock, and pagetable locks, were good enough
    before page migration ... came in" (Hugh Dickins, "mm: fix race between
    mremap and removing migration entry", October 2011).
    """
    return mremap.move_page_tables(k, old_vma, old_addr, new_vma, new_addr, npages, False)


REPLACE: dict[str, Any] = {
    "anon_vma_reusable": anon_vma_reusable,
    "__put_anon_vma": __put_anon_vma,
    "anon_vma_lock_read": anon_vma_lock_read,
    "anon_vma_unlock_read": anon_vma_unlock_read,
    "folio_lock_anon_vma_root": page_lock_anon_vma,
    "move_page_tables": move_page_tables,
}

#: Bundled scenarios whose outcome on this design differs from linux-6.18's:
#: none (every bundled scenario was run on both and compared step by step).
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = {}
