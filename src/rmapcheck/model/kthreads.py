"""Kernel work in flight between two checker actions: page migrations and reclaim walks.

Both run in phases (:mod:`rmapcheck.model.migrate`, :mod:`rmapcheck.model.vmscan`);
the model checker's ``kthread N`` action advances the N-th of :func:`kthreads`
by one phase.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rmapcheck.model.migrate import MigrationState, migrate_step
from rmapcheck.model.vmscan import reclaim_step

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = ["kthread_folio", "kthread_holds", "kthread_locked_folios", "kthread_step", "kthreads"]


def kthreads(k: Kernel) -> list[Any]:
    """The kernel's work in flight: migrations first, then reclaim walks."""
    return [*k.migrations, *k.walks]


def kthread_step(k: Kernel, st: Any) -> str:
    """Advance ``st`` (a migration or a reclaim walk) by one phase; return the new phase."""
    if isinstance(st, MigrationState):
        return migrate_step(k, st)
    return reclaim_step(k, st)


def kthread_folio(st: Any) -> Any:
    """The folio ``st`` works on (isolated and locked while it is in flight)."""
    return st.src if isinstance(st, MigrationState) else st.folio


def kthread_locked_folios(st: Any) -> list[Any]:
    """The folios whose ``PG_locked`` the kernel thread ``st`` holds.

    A migration holds the old folio's lock from its pin to its end (or to an
    undo) and the new folio's from its allocation to its unpin; a reclaim
    walk holds its folio's from ``folio_trylock()`` to its put-back.
    """
    if isinstance(st, MigrationState):
        out = [st.src] if st.src_locked else []
        if st.dst_locked and st.dst is not None:
            out.append(st.dst)
        return out
    return [st.folio]


def kthread_holds(k: Kernel, lock: object, running: Any = None) -> bool:
    """A preempted kernel thread other than ``running`` holds ``lock``.

    :param lock: a ``struct anon_vma *`` (the rwsem of the root a reclaim
        walk locked) or a ``struct folio *`` (its ``PG_locked``), as
        :class:`~rmapcheck.model.findings.Deadlock` names it.
    :param running: the kernel thread whose step asks for the lock: a thread
        waiting for a lock it holds itself is a deadlock, not a wait.
    """
    for st in kthreads(k):
        if st is running:
            continue
        if any(f is lock for f in kthread_locked_folios(st)):
            return True
        if not isinstance(st, MigrationState) and st.root is lock:
            return True
    return False
