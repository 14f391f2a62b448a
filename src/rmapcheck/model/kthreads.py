"""Kernel work in flight between two checker actions: page migrations and reclaim walks.

Both run in phases (:mod:`rmapcheck.model.migrate`, :mod:`rmapcheck.model.vmscan`);
the model checker's ``kthread N`` action advances the N-th of :func:`kthreads`
by one phase.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rmapcheck.model.migrate import MigrationState, migrate_step
from rmapcheck.model.vmscan import reclaim_held_roots, reclaim_step

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = ["kthread_folio", "kthread_holds", "kthread_step", "kthreads"]


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


def kthread_holds(k: Kernel, lock: object) -> bool:
    """A preempted kernel thread holds the rwsem of the anon_vma ``lock``."""
    return id(lock) in reclaim_held_roots(k)
