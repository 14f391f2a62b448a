"""Design ``linux-2.6.34``: anon_vma_chain without a root (docs/history.md S2).

Linux kernel v2.6.34: Rik van Riel's 5beb49305251 ("mm: change anon_vma
linking to fix multi-process server scalability issue"), Linus Torvalds'
d0e9fe1758f2 ("Simplify and comment on anon_vma re-use for
anon_vma_prepare()") and e8a03feb54ca ("rmap: add exclusively owned pages to
the newest anon_vma"), on top of 2.6.33's db114b83ab60 ("ksm: hold anon_vma in
rmap_item"). Sources: mm/rmap.c, mm/ksm.c, mm/migrate.c as the April 2010
patches of Mel Gorman's compaction series quote them as their pre-image
(v2.6.34-rc; "[PATCH 01/14] mm,migration: Take a reference to the anon_vma
before migrating", linux-mm, 20 April 2010, against ``mm/rmap.c`` blob
c59eaea and ``mm/migrate.c`` blob 5938db5).

- Every anon_vma is locked by its own spinlock: there is no ``root``
  (5c341ee1dfc8 came in v2.6.36). The model's ``anon_vma->root`` field names
  the anon_vma whose lock stands for this one; here it is always the
  anon_vma itself, so ``anon_vma_lock`` (``spin_lock(&anon_vma->lock)``)
  locks the anon_vma itself wherever the model takes ``av->root``'s lock.
- The only external count is KSM's ``ksm_refcount`` (``CONFIG_KSM``,
  db114b83ab60): ``anon_vma_unlink()`` frees an anon_vma whose list is empty
  "&& !ksm_refcount(anon_vma)", and KSM's ``drop_anon_vma()`` does
  ``atomic_dec_and_lock(&anon_vma->ksm_refcount, &anon_vma->lock)``.
- Page migration holds no reference on the anon_vma: ``unmap_and_move()``
  only takes ``rcu_read_lock()`` for an anonymous page ("This
  rcu_read_lock() delays freeing anon_vma pointer until the end of
  migration"), and ``move_to_new_page()`` calls ``remove_migration_ptes(page,
  newpage)`` after every successful move, whose ``rmap_walk_anon()`` locks
  ``page_anon_vma(page)`` with no ``page_mapped()`` test ("avoiding
  page_lock_anon_vma() is risky, and currently limits the usefulness of
  rmap_walk()"). An anon_vma freed between the isolation of the page and the
  ``rcu_read_lock()`` is garbage by then (docs/history.md S3, "the 2.6.34
  migration use-after-free"); the compaction series of v2.6.35 fixed it:
  3f6c82728f4e ("mm: migration: take a reference to the anon_vma before
  migrating"), 7f60c214fd3a ("mm: migration: share the anon_vma ref counts
  between KSM and page migration") and 67b9509b2c68 ("mm: migration: do not
  try to migrate unmapped anonymous pages").

BASE is :mod:`rmapcheck.designs.linux_2_6_36_pre` (the root series without
5/5 on 2.6.35's anon_vma code): this design is it with 5c341ee1dfc8 and
012f18004da3 reverted and the compaction series' migration pin taken out.
Replaced: ``anon_vma_alloc()`` and ``anon_vma_fork()`` (no root: each
anon_vma its own lock), ``get_anon_vma``/``put_anon_vma`` (KSM's
``hold_anon_vma()``/``drop_anon_vma()`` on ``ksm_refcount``, only under
``CONFIG_KSM``), ``__page_set_anon_rmap()`` (a page that is not exclusive
goes to the oldest anon_vma of the VMA's chain, where v2.6.36 took the
root), ``page_add_anon_rmap()`` (``__page_check_anon_rmap()`` tests the
index only) and ``page_address_in_vma()`` (no anon_vma test), migration's
pin (``migrate_pin_anon_vma`` and ``folio_get_anon_vma_pin``:
``rcu_read_lock()`` only, after a window of its own) and
``move_to_new_folio`` (the walk ``remove_migration_ptes()`` inside
``move_to_new_page()``). Every other function, ``page_lock_anon_vma()`` and
``page_unlock_anon_vma()`` among them, is linux-2.6.36-pre's, which with
no root locks and unlocks the page's own anon_vma as v2.6.34 does.
``vma_adjust()`` (v6.18's, through the base) locks only the VMA's own
anon_vma, as v2.6.34's does; the race that leaves open (docs/history.md B2)
lies inside one rmap walk, below the model's granularity.
"""

from __future__ import annotations

import errno
from typing import Any

from rmapcheck.designs import linux_2_6_36_pre as pre
from rmapcheck.model.findings import KernelBug
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.migrate import MigrationState, _remove_migration_ptes_checked, migrations
from rmapcheck.model.migrate import move_to_new_folio as _move_to_new_folio
from rmapcheck.model.mm_types import anon_vma, folio, vm_area_struct
from rmapcheck.model.rmap import (
    anon_vma_chain_alloc, anon_vma_chain_link, anon_vma_lock_write, anon_vma_unlock_write, folio_anon_vma,
    folio_test_anon, linear_page_index, vma_address,
)
from rmapcheck.model.slab import kasan_check

__all__ = ["BASE", "REPLACE", "anon_vma_alloc", "anon_vma_fork", "drop_anon_vma", "folio_get_anon_vma_pin",
           "hold_anon_vma", "migrate_pin_anon_vma", "move_to_new_page", "page_add_anon_rmap", "page_address_in_vma",
           "page_set_anon_rmap"]

BASE = "linux-2.6.36-pre"


def anon_vma_alloc(k: Kernel, function: str = "anon_vma_alloc") -> anon_vma | None:
    """``anon_vma_alloc()`` (mm/rmap.c, v2.6.34): ``kmem_cache_alloc()``; the lock is the anon_vma's own.

    The model's ``root`` is set to the anon_vma itself: v2.6.34 has no root,
    and ``spin_lock(&anon_vma->lock)`` is what the model's root lock stands for.
    """
    av = pre.anon_vma_alloc(k, function)
    if av is not None:
        av.root = av
    return av


def anon_vma_fork(k: Kernel, vma: vm_area_struct, pvma: vm_area_struct) -> int:
    """``anon_vma_fork()`` (mm/rmap.c, v2.6.34, 5beb49305251): clone the parent's chain, add our own anon_vma.

    "First, attach the new VMA to the parent VMA's anon_vmas, so rmap can find
    non-COWed pages in child processes", then "add our own anon_vma": no root
    to copy from the parent, no pin.
    """
    fn = "anon_vma_fork"
    if pvma.anon_vma is None:
        return 0
    if k.ops.anon_vma_clone(k, vma, pvma):
        return -errno.ENOMEM
    av = k.ops.anon_vma_alloc(k, fn)
    if av is None:
        k.ops.unlink_anon_vmas(k, vma)  # out_error
        return -errno.ENOMEM
    avc = anon_vma_chain_alloc(k, fn)
    if avc is None:
        k.ops.anon_vma_free(k, av, fn)  # out_error_free_anon_vma
        k.ops.unlink_anon_vmas(k, vma)
        return -errno.ENOMEM
    # anon_vma_chain_link() takes spin_lock(&anon_vma->lock) of the new one.
    anon_vma_lock_write(k, av, fn)
    anon_vma_chain_link(k, vma, avc, av)
    anon_vma_unlock_write(k, av, fn)
    # Mark this anon_vma as the one where our new (COWed) pages go.
    vma.anon_vma = av
    return 0


def hold_anon_vma(k: Kernel, av: anon_vma, function: str = "hold_anon_vma") -> None:
    """KSM's ``hold_anon_vma()`` (mm/ksm.c, v2.6.34): ``atomic_inc(&anon_vma->ksm_refcount)``.

    ``ksm_refcount`` exists only under ``CONFIG_KSM`` (include/linux/rmap.h,
    db114b83ab60); nothing else counts on an anon_vma in this era.
    """
    if not k.config.get("CONFIG_KSM"):
        return
    kasan_check(av, function)
    av.refcount += 1


def drop_anon_vma(k: Kernel, av: anon_vma, function: str = "drop_anon_vma") -> None:
    """KSM's ``drop_anon_vma()`` (mm/ksm.c, v2.6.34).

    ``if (atomic_dec_and_lock(&anon_vma->ksm_refcount, &anon_vma->lock))``:
    free it if its list is empty. The lock is the anon_vma's own.
    """
    if not k.config.get("CONFIG_KSM"):
        return
    if pre.atomic_dec_and_lock(k, av, av, "drop_anon_vma"):
        empty = not av.rb_root
        anon_vma_unlock_write(k, av, "drop_anon_vma")  # spin_unlock(&anon_vma->lock)
        if empty:
            k.ops.anon_vma_free(k, av, "drop_anon_vma")


def page_set_anon_rmap(k: Kernel, f: folio, vma: vm_area_struct, address: int, exclusive: bool) -> None:
    """``__page_set_anon_rmap()`` (mm/rmap.c, v2.6.34, e8a03feb54ca).

    "If the page isn't exclusively mapped into this vma, we must use the
    _oldest_ possible anon_vma for the page mapping! So take the last AVC
    chain entry in the vma, which is the deepest ancestor" (v2.6.36's
    288468c334e9 took ``anon_vma->root`` instead).
    """
    av = vma.anon_vma
    if av is None:
        raise KernelBug("__page_set_anon_rmap", "BUG_ON(!anon_vma)")
    if not exclusive and vma.anon_vma_chain:
        av = vma.anon_vma_chain[-1].anon_vma  # list_entry(vma->anon_vma_chain.prev, ...)
    f.mapping = av
    f.index = linear_page_index(vma, address)


def page_add_anon_rmap(k: Kernel, f: folio, vma: vm_area_struct, address: int, exclusive: bool) -> None:
    """``page_add_anon_rmap()`` (mm/rmap.c, v2.6.34): map an existing anon page once more.

    ``__page_check_anon_rmap()`` checks only "BUG_ON(page->index !=
    linear_page_index(vma, address))": with anon_vma_chain the page's
    anon_vma may be any of the VMA's chain, and there is no root to compare
    (v6.18's ``folio_anon_vma(folio)->root != vma->anon_vma->root`` test
    needs 5c341ee1dfc8).
    """
    f._mapcount += 1
    if not f.ksm and f.index != linear_page_index(vma, address):
        raise KernelBug("__page_check_anon_rmap", "BUG_ON(page->index != linear_page_index(vma, address))")
    if exclusive:
        f.anon_exclusive = True


def page_address_in_vma(k: Kernel, f: folio, vma: vm_area_struct) -> int | None:
    """``page_address_in_vma()`` (mm/rmap.c, v2.6.34): no anon_vma test, the address from ``page->index``.

    v2.6.34 compares no anon_vmas there (a page may sit in any anon_vma of
    the VMA's chain); 21d0d443cdc1 ("rmap: resurrect page_address_in_vma
    anon_vma check", v2.6.36-rc1) brought back a test, of the roots.

    :returns: the address (a page number), or ``NULL`` (``-EFAULT``: outside the VMA).
    """
    return vma_address(vma, f.index)


def _migration_of(k: Kernel, f: folio) -> MigrationState | None:
    return next((st for st in migrations(k) if st.src is f), None)


def migrate_pin_anon_vma(k: Kernel, st: MigrationState) -> bool:
    """``unmap_and_move()`` (mm/migrate.c, v2.6.34) up to ``if (PageAnon(page)) { rcu_read_lock(); ... }``.

    Between the isolation of the page and ``rcu_read_lock()`` the migration
    sleeps where it must (``lock_page()``, ``mem_cgroup_prepare_migration()``
    allocating, a ``PageWriteback`` wait), outside any RCU read section; the
    model stops it there (phase ``rcu``: nothing read yet, whether or not
    ``k.rcu_windows`` opens the RCU windows, since this one is not inside
    RCU), and :func:`folio_get_anon_vma_pin` takes the RCU read lock in the
    next phase. No reference: what ``rcu_read_lock()`` keeps type-safe is the
    anon_vma that ``page->mapping`` names then, if it is still allocated
    (``st.rcu_anon_vma``); one freed before it (the page was unmapped after
    its isolation) may be garbage by the time the migration touches it.

    :returns: true: the migration stops before ``rcu_read_lock()``.
    """
    st.rcu_anon_vma = None
    st.phase = "rcu"
    return True


def _rcu_read_lock(st: MigrationState) -> None:
    av = folio_anon_vma(st.src)
    st.rcu_anon_vma = av if av is not None and av._live else None


def folio_get_anon_vma_pin(k: Kernel, f: folio, av: anon_vma | None) -> anon_vma | None:
    """``rcu_read_lock()`` in ``unmap_and_move()`` (v2.6.34), after the window :func:`migrate_pin_anon_vma` opened.

    No reference is taken: the anon_vma ``page->mapping`` names now, if
    allocated, is the one RCU keeps type-safe (``st.rcu_anon_vma``).
    """
    st = _migration_of(k, f)
    if st is not None:
        _rcu_read_lock(st)
    return None


def move_to_new_page(k: Kernel, dst: folio, src: folio) -> int:
    """``move_to_new_page()`` (mm/migrate.c, v2.6.34): move, then ``remove_migration_ptes(page, newpage)``.

    "if (!rc) remove_migration_ptes(page, newpage)": after every successful
    move, whether or not the page was mapped when the migration unmapped it.
    The walk (``rmap_walk_anon()``) does ``anon_vma = page_anon_vma(page);
    spin_lock(&anon_vma->lock)`` with no reference and no ``page_mapped()``
    test. The anon_vma that ``rcu_read_lock()`` found allocated stays an
    anon_vma (``SLAB_DESTROY_BY_RCU``); one freed before it is a
    use-after-free. A freed anon_vma that RCU keeps has no VMA left: the walk
    under its lock finds nothing.
    """
    rc = _move_to_new_folio(k, dst, src)
    st = _migration_of(k, src)
    if rc or st is None or not folio_test_anon(src) or src.ksm:
        return rc
    av = folio_anon_vma(src)
    if av is None or av._live or av is not st.rcu_anon_vma:
        # A freed anon_vma that RCU does not keep: rmap_walk_anon() locks garbage.
        _remove_migration_ptes_checked(k, st, dst, "move_to_new_page")
    # else: freed under rcu_read_lock(), still an anon_vma, and no VMA is left
    # on its list: the walk under its lock finds nothing.
    # unmap_and_move() walks again only if the move failed ("if (rc)
    # remove_migration_ptes(page, page)"): nothing for the remap phase.
    st.page_was_mapped = False
    return rc


REPLACE: dict[str, Any] = {
    "anon_vma_alloc": anon_vma_alloc,
    "anon_vma_fork": anon_vma_fork,
    "get_anon_vma": hold_anon_vma,
    "put_anon_vma": drop_anon_vma,
    "drop_anon_vma": drop_anon_vma,
    "__folio_set_anon": page_set_anon_rmap,
    "folio_add_anon_rmap_pte": page_add_anon_rmap,
    "page_address_in_vma": page_address_in_vma,
    "migrate_pin_anon_vma": migrate_pin_anon_vma,
    "folio_get_anon_vma_pin": folio_get_anon_vma_pin,
    "move_to_new_folio": move_to_new_page,
}

#: Bundled scenarios whose outcome on this design differs from linux-6.18's.
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = dict(pre.SCENARIO_DIFFERS)

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "migration-2.6.34",
        "title": "migration walks an anon_vma freed between the page's isolation and rcu_read_lock()",
        "fixed": "linux-2.6.36-pre",
        "args": ("--processes", "1", "--ops", "write,exit,migrate", "--no-rcu-windows"),
        "property": "use-after-free",
        "tuned": "one process, RCU windows closed: open, or with a fork, the fix's own holes show on "
                 "linux-2.6.36-pre (B6, B0)",
        "fast": True,
    },
)
