"""Page migration of one folio: ``mm/migrate.c``, v6.18.

``migrate_pages()`` → ``migrate_pages_batch()`` → ``migrate_folio_unmap()`` /
``migrate_folio_move()`` for one isolated folio, anonymous or KSM, as
``move_pages(MPOL_MF_MOVE_ALL)`` starts it (:func:`migrate_page_at`). The
kernel sources read: ``mm/migrate.c`` and ``mm/rmap.c`` of a 6.12-era stable
tree (CachyOS/linux, gregkh/linux), checked against quotations of
``mm/migrate.c`` at v6.18.38 (``migrate_folio_unmap()``,
``move_to_new_folio()``, ``__migrate_folio()`` with
``folio_expected_ref_count()``, ``migrate_folio_move()``,
``remove_migration_pte()``, ``remove_migration_ptes(src, dst, 0)`` through
the unlocked ``rmap_walk()``, ``migrate_folio_undo_src()``).

The migration runs in phases so that a checker can interleave process
operations between them; each phase ends where the kernel's migration may be
preempted while other tasks run (the folio lock does not stop munmap, exit
or fork)::

    isolated  --pin-->    pinned     folio_lock(src), folio_get_anon_vma() pin,
                                     new folio allocated and locked
             (or --rcu--> rcu --pin--> pinned: with ``k.rcu_windows`` the pin
                                     stops after reading folio->mapping under
                                     RCU, before the reference is taken; the
                                     design's ``migrate_pin_anon_vma`` says,
                                     linux-2.6.34's before rcu_read_lock())
    pinned    --unmap-->  unmapped   try_to_migrate(): migration entries
    unmapped  --move-->   moved      move_to_new_folio(): copy, mapping, index,
                                     flags, KSM stable node
    moved     --remap-->  remapped   remove_migration_ptes(src, dst)
    remapped  --unpin-->  done       unlock, put_anon_vma(), free the old folio

:class:`MigrationState` holds one migration; :func:`migrate_step` advances it
by one phase; :func:`migrate_pages` loops until it is done. In-flight
migrations are listed in ``k.migrations``; their references (the isolation
reference of the old folio, the new folio's allocation reference, the
anon_vma pin) are what :data:`MIGRATION_REFS_LAYER` adds to the invariant
checker's external references.

Checking walks: before ``try_to_migrate()`` and ``remove_migration_ptes()``
the mappings are read from every process's page tables, and a mapping the
rmap walk promises (:func:`~rmapcheck.model.vmscan.rmap_walk_promised`: every
mapping of an anonymous folio, those its rmap_items cover of a KSM folio) and
did not reach is a :class:`~rmapcheck.model.findings.MissedRmapWalk`. A
mapping the unmap walk cannot reach (a KSM fork made since ksmd passed, whose
rmap_item has gone: docs/history.md B17) stays mapped, and migration backs
out as the kernel's does: ``migrate_folio_unmap()`` restores the migration
entries it made and the folio is retried, then put back (``-EBUSY``). What
is judged then is the outcome: after ``remove_migration_ptes()``, on success
and on backing out alike, no page table may hold a migration entry of the old
folio, nor, once the new folio took its place, a PTE to the old one.

A fault on a migration entry waits in the kernel until the migration unlocks
the folio (``migration_entry_wait()``); the sequential model lets the
migration run to its end instead (:func:`migration_entry_wait`).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.findings import KernelBug, MissedRmapWalk
from rmapcheck.model.kernel import Layer
from rmapcheck.model.memory import folio_lock, folio_put, is_migration_entry, is_readable_migration_entry
from rmapcheck.model.mm_types import ZERO_PAGE, anon_vma, folio, mm_struct, vm_area_struct
from rmapcheck.model.rmap import folio_mapped, folio_test_anon, rmap_walk_control
from rmapcheck.model.slab import FastPickle, kasan_check
from rmapcheck.model.vma_init import vma_lookup
from rmapcheck.model.vmscan import check_rmap_walk, page_table_mappings, reclaim_folio_refs, rmap_walk_promised

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "MIGRATE_OPS",
    "MIGRATION_PHASES",
    "MIGRATION_REFS_LAYER",
    "MigrationState",
    "NR_MAX_MIGRATE_PAGES_RETRY",
    "alloc_migration_target",
    "migrate_folio_move",
    "migrate_folio_undo_dst",
    "migrate_folio_undo_src",
    "migrate_folio_unmap",
    "migrate_page_at",
    "migrate_pages",
    "migrate_pin_anon_vma",
    "migrate_prepare",
    "migrate_step",
    "migration_anon_vma_refs",
    "migration_entry_wait",
    "migration_folio_refs",
    "migrations",
    "move_to_new_folio",
    "remove_migration_pte",
    "remove_migration_ptes",
]

#: ``NR_MAX_MIGRATE_PAGES_RETRY`` (mm/migrate.c): passes over an ``-EAGAIN`` folio
NR_MAX_MIGRATE_PAGES_RETRY = 10

#: the phases of a migration, in order (see the module docstring)
MIGRATION_PHASES = ("isolated", "rcu", "pinned", "unmapped", "moved", "remapped", "done")


class MigrationState(FastPickle):
    """One folio's migration in flight: what ``migrate_pages_batch()`` keeps between phases.

    The kernel keeps ``anon_vma`` and ``old_page_state`` in the new folio's
    ``->private`` (``__migrate_folio_record()``); the model keeps them here.

    :param src: the isolated ``struct folio *`` to migrate.
    :param check: run the checking walks (see the module docstring).
    """

    __slots__ = ("src", "dst", "anon_vma", "phase", "rc", "page_was_mapped", "src_locked",
                 "dst_locked", "isolated", "dst_ref", "passes", "check", "rcu_anon_vma")

    def __init__(self, src: folio, check: bool = True) -> None:
        self.src = src
        self.dst: folio | None = None
        self.anon_vma: anon_vma | None = None  # the folio_get_anon_vma() pin
        self.phase = "isolated"
        self.rc = 0
        self.page_was_mapped = False  # PAGE_WAS_MAPPED
        self.src_locked = False
        self.dst_locked = False
        self.isolated = True  # the isolation reference of src is held
        self.dst_ref = False  # the allocation reference of dst is held
        self.passes = 0
        self.check = check
        #: the anon_vma read under RCU, not pinned yet (phase ``rcu``); in a
        #: design whose migration takes no reference (linux-2.6.34), the one
        #: ``rcu_read_lock()`` keeps type-safe to the migration's end
        self.rcu_anon_vma: anon_vma | None = None

    @property
    def done(self) -> bool:
        """The migration finished (``rc`` 0) or failed (``rc`` a negative errno)."""
        return self.phase == "done"

    def __repr__(self) -> str:
        return f"MigrationState(page {self.src.pfn()}, {self.phase}, rc={self.rc})"


def migrations(k: Kernel) -> list[MigrationState]:
    """The kernel's in-flight migrations (``k.migrations``)."""
    return k.migrations


# -- isolation and the one-shot entry points -------------------------------------------

def migrate_prepare(k: Kernel, f: folio, check: bool | None = None) -> MigrationState | None:
    """``folio_isolate_lru()`` for migration: take the folio off the LRU with a reference.

    :param check: run the checking walks; ``None``: as ``k.config
        ["migration_check_walks"]`` says (default on). Off, a missed mapping
        behaves as in the kernel: the folio stays mapped, the migration is
        undone and retried, and finally fails with ``-EBUSY``.
    :returns: the migration's state in phase ``isolated``, or ``NULL`` if the
        folio is already isolated (``-EBUSY`` for ``move_pages()``).
    """
    kasan_check(f, "folio_isolate_lru")
    if any(st.src is f and st.isolated for st in migrations(k)):
        return None
    f._refcount += 1  # folio_get()
    if check is None:
        check = bool(k.config.get("migration_check_walks", True))
    st = MigrationState(f, check)
    migrations(k).append(st)
    return st


def _folio_putback_lru(k: Kernel, st: MigrationState) -> None:
    # putback_movable_pages() → folio_putback_lru(): drop the isolation reference.
    if st.isolated:
        st.isolated = False
        folio_put(k, st.src, "folio_putback_lru")
    _finish(k, st)


def _finish(k: Kernel, st: MigrationState) -> None:
    st.phase = "done"
    ms = migrations(k)
    if st in ms:
        ms.remove(st)


def migrate_pages(k: Kernel, st: MigrationState) -> int:
    """``migrate_pages()`` (mm/migrate.c, v6.18) of one isolated folio, ``MIGRATE_SYNC``.

    Runs :func:`migrate_step` until the migration is done; a folio that keeps
    failing with ``-EAGAIN`` is given up after ``NR_MAX_MIGRATE_PAGES_RETRY``
    passes and put back.

    :returns: 0, or a negative errno (``-ENOMEM``, ``-EBUSY``).
    """
    while not st.done:
        migrate_step(k, st)
    return st.rc


def migrate_page_at(k: Kernel, mm: mm_struct, vpn: int) -> int:
    """``move_pages(pid, 1, &addr, &node, &status, MPOL_MF_MOVE_ALL)`` for the page at ``vpn``.

    ``do_pages_move()`` and ``add_folio_for_migration()`` (mm/migrate.c, v6.18).

    ``add_folio_for_migration()``: no VMA → ``-EFAULT``; no page mapped (or a
    migration entry, which ``folio_walk_start()`` does not return) →
    ``-ENOENT``; the zero page → ``-EFAULT``; a folio already isolated →
    ``-EBUSY``. ``MPOL_MF_MOVE_ALL`` (the live runner is privileged) moves
    shared folios too. The model has no NUMA nodes: every migration moves the
    folio to a new frame (the kernel reports 0 without moving a folio already
    on the target node). Without ``CONFIG_MIGRATION`` the system call does not
    exist (``sys_ni_syscall``): ``-ENOSYS``.

    :param mm: ``struct mm_struct *`` of the process.
    :param vpn: the page's virtual page number.
    :returns: 0, or the negative errno of the page's status or of the
        migration (``-ENOMEM``, or ``-EBUSY`` after the retries; ``move_pages()``
        itself returns the number of pages not migrated then).
    """
    if not k.config.get("CONFIG_MIGRATION", True):
        return -errno.ENOSYS
    vma = vma_lookup(mm, vpn)
    if vma is None:
        return -errno.EFAULT
    pte = mm.pgtable.get(vpn)
    if pte is None or is_migration_entry(pte):
        return -errno.ENOENT
    f = pte[0]
    if f is ZERO_PAGE:
        return -errno.EFAULT
    st = migrate_prepare(k, f)
    if st is None:
        return -errno.EBUSY
    return k.ops.migrate_pages(k, st)


# -- the phases ----------------------------------------------------------------------

def migrate_step(k: Kernel, st: MigrationState) -> str:
    """``migrate_pages_batch()`` (mm/migrate.c, v6.18) of ``st``, advanced by one phase; return the new phase.

    The phases are described in the module docstring.

    A phase that fails undoes what the migration did (``migrate_folio_undo_src()``,
    ``migrate_folio_undo_dst()``); ``-EAGAIN`` goes back to ``isolated`` for
    another pass, any other error puts the folio back and ends the migration.
    """
    phase = st.phase
    if phase == "isolated":
        _phase_pin(k, st)
    elif phase == "rcu":
        _phase_pin_rcu(k, st)
    elif phase == "pinned":
        _phase_unmap(k, st)
    elif phase == "unmapped":
        _phase_move(k, st)
    elif phase == "moved":
        _phase_remap(k, st)
    elif phase == "remapped":
        _phase_unpin(k, st)
    else:
        raise ValueError(f"migration of page {st.src.pfn()} is already done")
    return st.phase


def alloc_migration_target(k: Kernel, src: folio) -> folio | None:
    """``alloc_migration_target()`` (mm/migrate.c, v6.18): a fresh order-0 folio, refcount 1.

    :returns: ``struct folio *`` (``NULL`` on allocation failure).
    """
    if k.should_fail("alloc_migration_target"):
        return None
    return k.ops.vma_alloc_folio(k, 0, "alloc_migration_target")


def _retry(k: Kernel, st: MigrationState) -> None:
    # -EAGAIN: the folio stays on the from list for the next pass of
    # migrate_pages_batch(); after the last pass it counts as failed.
    st.passes += 1
    st.dst = None
    st.page_was_mapped = False
    if st.passes >= NR_MAX_MIGRATE_PAGES_RETRY:
        st.rc = -errno.EBUSY
        _folio_putback_lru(k, st)
    else:
        st.rc = -errno.EAGAIN
        st.phase = "isolated"


def _phase_pin(k: Kernel, st: MigrationState) -> None:
    # migrate_folio_unmap(), up to the unmap: new folio, folio lock, anon_vma pin.
    fn = "migrate_folio_unmap"
    src = st.src
    kasan_check(src, fn)
    dst = k.ops.alloc_migration_target(k, src)
    if dst is None:
        st.rc = -errno.ENOMEM
        _folio_putback_lru(k, st)
        return
    st.dst = dst
    st.dst_ref = True
    # folio_trylock() failed: MIGRATE_SYNC sleeps in folio_lock().
    folio_lock(k, src, fn)
    st.src_locked = True
    # By try_to_migrate(), src->mapcount goes down to 0 here. In this case, we
    # cannot notice that anon_vma is freed while we migrate a page. This
    # get_anon_vma() delays freeing anon_vma pointer until the end of
    # migration. [...] Only folio_get_anon_vma() understands the subtleties of
    # getting a hold on an anon_vma from outside one of its mms. But if we
    # cannot get anon_vma, then we won't need it anyway, because that implies
    # that the anon page is no longer mapped (and cannot be remapped so long as
    # we hold the page lock).
    if folio_test_anon(src) and not src.ksm and k.ops.migrate_pin_anon_vma(k, st):
        return  # phase rcu: the pin ends in the next phase
    _lock_dst(st, dst)


def migrate_pin_anon_vma(k: Kernel, st: MigrationState) -> bool:
    """The anon_vma pin of ``migrate_folio_unmap()`` (mm/migrate.c, v6.18): ``folio_get_anon_vma()``.

    With ``k.rcu_windows`` in two: the RCU read of ``folio->mapping`` now
    (``st.rcu_anon_vma``), the reference in the next phase (the design's
    ``folio_get_anon_vma_pin``).

    :returns: true if the migration stops in phase ``rcu`` before the reference.
    """
    src = st.src
    if k.rcu_windows:
        st.rcu_anon_vma = k.ops.folio_anon_vma_rcu(k, src, "folio_get_anon_vma")
        if st.rcu_anon_vma is not None:
            st.phase = "rcu"
            return True
        return False
    st.anon_vma = k.ops.folio_get_anon_vma(k, src)
    return False


def _phase_pin_rcu(k: Kernel, st: MigrationState) -> None:
    # migrate_folio_unmap(): the end of folio_get_anon_vma(), the design's pin of the
    # anon_vma read under RCU.
    av, st.rcu_anon_vma = st.rcu_anon_vma, None
    st.anon_vma = k.ops.folio_get_anon_vma_pin(k, st.src, av)
    _lock_dst(st, st.dst)


def _lock_dst(st: MigrationState, dst: folio | None) -> None:
    # Block others from accessing the new page when we get around to
    # establishing additional references.
    if dst is None:
        raise KernelBug("migrate_folio_unmap", "NULL pointer dereference: dst")
    dst.locked = True
    st.dst_locked = True
    st.phase = "pinned"


def _phase_unmap(k: Kernel, st: MigrationState) -> None:
    # migrate_folio_unmap(), from the unmap: establish migration ptes.
    src = st.src
    kasan_check(src, "migrate_folio_unmap")
    if src.mapping is None and not src.ksm:
        pass  # goto out: nothing the rmap could find
    elif folio_mapped(src):
        # (A design whose migration holds the anon_vma under rcu_read_lock()
        # only keeps it in st.rcu_anon_vma: linux-2.6.34.)
        if folio_test_anon(src) and not src.ksm and st.anon_vma is None and st.rcu_anon_vma is None:
            raise KernelBug("migrate_folio_unmap",
                            "VM_BUG_ON_FOLIO(folio_test_anon(src) && !folio_test_ksm(src) && !anon_vma)")
        expected = rmap_walk_promised(k, src, page_table_mappings(k, src)) if st.check else []
        visited: list[tuple[mm_struct, int]] = []
        k.ops.try_to_migrate(k, src, 0, visited)
        st.page_was_mapped = True
        if expected:
            check_rmap_walk(k, src, expected, visited, "try_to_migrate")
    if not folio_mapped(src):
        st.phase = "unmapped"
        return
    # out: a folio that has not been unmapped is restored; retry.
    k.ops.migrate_folio_undo_src(k, st)
    k.ops.migrate_folio_undo_dst(k, st)
    _retry(k, st)


def move_to_new_folio(k: Kernel, dst: folio, src: folio) -> int:
    """``move_to_new_folio()`` → ``migrate_folio()`` → ``__migrate_folio()`` (mm/migrate.c, v6.18).

    For an anonymous folio (``folio_mapping()`` is ``NULL`` without swap
    cache): copy the contents, ``->mapping``, ``->index`` and the KSM state
    to ``dst``, unless ``src`` holds references beyond its mappings and the
    migration's own.

    :returns: 0 or ``-EAGAIN``.
    """
    fn = "move_to_new_folio"
    if not src.locked or not dst.locked:
        raise KernelBug(fn, "VM_BUG_ON_FOLIO(!folio_test_locked(src/dst))")
    # __migrate_folio(): expected_count = folio_expected_ref_count(src) + 1:
    # one reference per mapping left, plus the migration's own.
    expected_count = src._mapcount + 1
    # Check whether src does not have extra refs before we do more work
    if src._refcount != expected_count:
        return -errno.EAGAIN
    dst.content = src.content  # folio_mc_copy()
    # __folio_migrate_mapping(), !mapping: "No turning back from here"
    dst.index = src.index
    dst.mapping = src.mapping
    # folio_migrate_flags(): PG_anon_exclusive "is always migrated via
    # migration entries"; the KSM bit lives in ->mapping (PAGE_MAPPING_KSM).
    dst.ksm = src.ksm
    # folio_migrate_ksm() (mm/ksm.c): the stable node's kpfn moves to dst.
    migrate_ksm = getattr(k.ops, "folio_migrate_ksm", None)
    if migrate_ksm is not None:
        migrate_ksm(k, dst, src)
    # "Anonymous folios must stay anonymous until freed": src->mapping stays.
    return 0


def _phase_move(k: Kernel, st: MigrationState) -> None:
    # migrate_folio_move(), up to the remap.
    src, dst = st.src, st.dst
    if dst is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("_phase_move", "NULL pointer dereference: dst")
    kasan_check(src, "migrate_folio_move")
    rc = k.ops.move_to_new_folio(k, dst, src)
    if rc == -errno.EAGAIN:
        st.passes += 1
        if st.passes < NR_MAX_MIGRATE_PAGES_RETRY:
            st.rc = rc
            return  # stays unmapped: moved again on the next pass
    if rc:
        k.ops.migrate_folio_undo_src(k, st)
        k.ops.migrate_folio_undo_dst(k, st)
        st.rc = -errno.EBUSY if rc == -errno.EAGAIN else rc
        _folio_putback_lru(k, st)
        return
    # folio_add_lru(dst): the LRU holds no reference in this model.
    st.phase = "moved"


def _phase_remap(k: Kernel, st: MigrationState) -> None:
    # migrate_folio_move(): if (old_page_state & PAGE_WAS_MAPPED)
    # remove_migration_ptes(src, dst, 0).
    dst = st.dst
    if dst is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("_phase_remap", "NULL pointer dereference: dst")
    if st.page_was_mapped:
        _remove_migration_ptes_checked(k, st, dst, "migrate_folio_move")
    st.phase = "remapped"


def _remove_migration_ptes_checked(k: Kernel, st: MigrationState, dst: folio, function: str) -> None:
    src = st.src
    # The walk is over dst, which has src's anon_vma or stable node by now.
    expected = rmap_walk_promised(k, dst, page_table_mappings(k, src, migration=True)) if st.check else []
    visited: list[tuple[mm_struct, int]] = []
    k.ops.remove_migration_ptes(k, src, dst, False, visited)
    if not st.check:
        return
    check_rmap_walk(k, src, expected, visited, "remove_migration_ptes")
    # The outcome, whatever the walk promised: every entry the unmap made is gone.
    left = page_table_mappings(k, src, migration=True)
    if dst is not src:
        left += page_table_mappings(k, src)
    if left:
        mm, vpn = left[0]
        raise MissedRmapWalk(
            function, f"remove_migration_ptes left page {src.pfn()} in {mm.owner} at {vpn:#x} "
                      f"({len(left)} stale entries): a later fault waits on a freed page")


def _phase_unpin(k: Kernel, st: MigrationState) -> None:
    # migrate_folio_move(), out_unlock_both: and after.
    fn = "migrate_folio_move"
    src, dst = st.src, st.dst
    if dst is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("_phase_unpin", "NULL pointer dereference: dst")
    dst.locked = False  # folio_unlock(dst)
    st.dst_locked = False
    # If migration is successful, decrease refcount of dst, which will not
    # free the page because new page owner increased refcounter.
    st.dst_ref = False
    folio_put(k, dst, fn)
    # Drop an anon_vma reference if we took one
    av, st.anon_vma = st.anon_vma, None
    if av is not None:
        k.ops.put_anon_vma(k, av, fn)
    src.locked = False  # folio_unlock(src)
    st.src_locked = False
    # migrate_folio_done(): "A folio that has been migrated has all references
    # removed and will be freed."
    st.isolated = False
    folio_put(k, src, "migrate_folio_done")
    st.rc = 0
    _finish(k, st)


def migrate_folio_unmap(k: Kernel, st: MigrationState) -> int:
    """``migrate_folio_unmap()`` (mm/migrate.c, v6.18): the pin and unmap phases at once.

    :returns: 0 (``MIGRATEPAGE_UNMAP``) once unmapped, else ``st.rc``.
    """
    if st.phase == "isolated":
        _phase_pin(k, st)
    if st.phase == "rcu":
        _phase_pin_rcu(k, st)
    if st.phase == "pinned":
        _phase_unmap(k, st)
    return 0 if st.phase == "unmapped" else st.rc


def migrate_folio_move(k: Kernel, st: MigrationState) -> int:
    """``migrate_folio_move()`` (mm/migrate.c, v6.18): the move, remap and unpin phases at once."""
    for phase in ("unmapped", "moved", "remapped"):
        if st.phase == phase:
            migrate_step(k, st)
    return st.rc


def migrate_folio_undo_src(k: Kernel, st: MigrationState) -> None:
    """``migrate_folio_undo_src()`` (mm/migrate.c, v6.18): restore the old folio on failure.

    Migration entries point back at the old folio (``remove_migration_ptes(src,
    src, 0)``), the anon_vma pin is dropped, the folio unlocked; it stays
    isolated for a retry or the put-back.
    """
    fn = "migrate_folio_undo_src"
    src = st.src
    if st.page_was_mapped:
        _remove_migration_ptes_checked(k, st, src, fn)
        st.page_was_mapped = False
    av, st.anon_vma = st.anon_vma, None
    if av is not None:
        k.ops.put_anon_vma(k, av, fn)
    if st.src_locked:
        src.locked = False
        st.src_locked = False


def migrate_folio_undo_dst(k: Kernel, st: MigrationState) -> None:
    """``migrate_folio_undo_dst()`` (mm/migrate.c, v6.18): unlock and free the new folio."""
    dst = st.dst
    if dst is None:
        return
    if st.dst_locked:
        dst.locked = False
        st.dst_locked = False
    if st.dst_ref:
        st.dst_ref = False
        folio_put(k, dst, "migrate_folio_undo_dst")


# -- migration entries ---------------------------------------------------------------

def remove_migration_pte(k: Kernel, src: folio, dst: folio, vma: vm_area_struct, address: int,
                         visited: list[tuple[mm_struct, int]] | None = None) -> bool:
    """``remove_migration_pte()`` (mm/migrate.c, v6.18): "Restore a potential migration pte to a working pte entry".

    ``page_vma_mapped_walk(PVMW_MIGRATION)`` finds a migration entry of
    ``src`` at ``address`` (none: nothing to do). The new PTE maps ``dst``
    (``folio_get()``, ``folio_add_anon_rmap_pte()``), writable if the entry
    was, and ``RMAP_EXCLUSIVE`` unless the entry was only readable.

    :param src: ``struct folio *`` the entries name.
    :param dst: ``struct folio *`` to map (``src`` itself when undoing).
    :param visited: if given, each ``(mm, address)`` restored is appended.
    :returns: ``true`` (continue the walk).
    """
    fn = "remove_migration_pte"
    mm = vma.vm_mm
    pt = mm.pgtable
    pte = pt.get(address)
    if pte is None or not is_migration_entry(pte) or pte[0].folio is not src:
        return True
    kasan_check(dst, fn)
    dst._refcount += 1  # folio_get()
    exclusive = folio_test_anon(dst) and not is_readable_migration_entry(pte)
    k.ops.folio_add_anon_rmap_pte(k, dst, vma, address, exclusive)
    pt[address] = (dst, bool(pte[1]))  # pte_mkwrite() if is_writable_migration_entry()
    if visited is not None:
        visited.append((mm, address))
    return True


def remove_migration_ptes(k: Kernel, src: folio, dst: folio, locked: bool = False,
                          visited: list[tuple[mm_struct, int]] | None = None) -> None:
    """``remove_migration_ptes()`` (mm/migrate.c, v6.18): "Get rid of all migration entries".

    The walk is over ``dst`` (whose ``->mapping`` and ``->index`` are
    ``src``'s): ``rmap_walk()`` (``RMP_LOCKED``: ``rmap_walk_locked()``),
    without ``anon_lock``, so for an anonymous folio it locks
    ``folio_anon_vma()`` unpinned and relies on the migration's
    ``folio_get_anon_vma()`` pin.

    :param locked: ``RMP_LOCKED``.
    :param visited: see :func:`remove_migration_pte`.
    """
    def one(vma: vm_area_struct, address: int) -> bool:
        return k.ops.remove_migration_pte(k, src, dst, vma, address, visited)

    rwc = rmap_walk_control(one)
    k.ops.rmap_walk(k, dst, rwc, locked)


def migration_entry_wait(k: Kernel, mm: mm_struct, vpn: int) -> None:
    """``migration_entry_wait()`` (mm/migrate.c, v6.18): "Something used the pte of a page under migration".

    The kernel sleeps until the migration unlocks the folio
    (``migration_entry_wait_on_locked()``) and the fault is retried. The
    sequential model runs the migration that owns the entry to its end first.
    An entry whose folio is not locked, or that no migration owns, would make
    ``pfn_swap_entry_folio()`` hit ``BUG_ON(is_migration_entry(entry) &&
    !folio_test_locked(folio))``: a migration entry left behind.
    """
    fn = "migration_entry_wait"
    pte = mm.pgtable.get(vpn)
    if pte is None or not is_migration_entry(pte):
        return
    f = pte[0].folio
    st = next((s for s in migrations(k) if s.src is f), None)
    if not f._live or not f.locked or st is None:
        raise KernelBug(fn, f"BUG_ON(is_migration_entry(entry) && !folio_test_locked(folio)): "
                            f"stale migration entry of page {f.pfn()} in {mm.owner} at {vpn:#x}")
    while not st.done:
        migrate_step(k, st)


# -- references held by migrations, for the invariant checker ----------------------------

def migration_anon_vma_refs(k: Kernel, refs: dict[anon_vma, int] | None = None) -> dict[anon_vma, int]:
    """The anon_vma references in-flight migrations hold (their ``folio_get_anon_vma()`` pins).

    They are added to ``refs`` (a new dict if None), which is returned.
    """
    refs = {} if refs is None else refs
    for st in migrations(k):
        if st.anon_vma is not None:
            refs[st.anon_vma] = refs.get(st.anon_vma, 0) + 1
    return refs


def migration_folio_refs(k: Kernel, refs: dict[folio, int] | None = None) -> dict[folio, int]:
    """The folio references in-flight migrations hold: isolation of the old, allocation of the new.

    They are added to ``refs`` (a new dict if None), which is returned.
    """
    refs = {} if refs is None else refs
    for st in migrations(k):
        if st.isolated:
            refs[st.src] = refs.get(st.src, 0) + 1
        if st.dst_ref and st.dst is not None:
            refs[st.dst] = refs.get(st.dst, 0) + 1
    return refs


def _wrap_anon_vma_external_refs(inner: Callable[..., Any]) -> Callable[..., Any]:
    def anon_vma_external_refs(k: Kernel) -> dict:
        if not k.migrations:
            return inner(k)  # type: ignore[no-any-return]
        return migration_anon_vma_refs(k, dict(inner(k)))
    return anon_vma_external_refs


def _wrap_folio_external_refs(inner: Callable[..., Any]) -> Callable[..., Any]:
    def folio_external_refs(k: Kernel) -> dict:
        if not k.migrations and not k.walks:
            return inner(k)  # type: ignore[no-any-return]
        return reclaim_folio_refs(k, migration_folio_refs(k, dict(inner(k))))
    return folio_external_refs


#: The invariant checker's external references, whatever the design counts
#: there (KSM's included), plus those of in-flight migrations and reclaim walks.
MIGRATION_REFS_LAYER = Layer("migration-refs", {
    "anon_vma_external_refs": _wrap_anon_vma_external_refs,
    "folio_external_refs": _wrap_folio_external_refs,
}, "the references in-flight migrations and reclaim walks hold count as external holders")


#: The kernel functions of mm/migrate.c, by name, for the design table.
MIGRATE_OPS: dict[str, Callable[..., Any]] = {
    "alloc_migration_target": alloc_migration_target,
    "migrate_folio_undo_dst": migrate_folio_undo_dst,
    "migrate_folio_undo_src": migrate_folio_undo_src,
    "migrate_page_at": migrate_page_at,
    "migrate_pages": migrate_pages,
    "migrate_pin_anon_vma": migrate_pin_anon_vma,
    "migration_entry_wait": migration_entry_wait,
    "move_to_new_folio": move_to_new_folio,
    "remove_migration_pte": remove_migration_pte,
    "remove_migration_ptes": remove_migration_ptes,
}
