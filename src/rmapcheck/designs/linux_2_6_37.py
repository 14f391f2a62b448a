"""Design ``linux-2.6.37``: v2.6.37 with "mm: fix migration hangs on anon_vma lock" (docs/history.md B6 fixed).

Hugh Dickins' patch of 2011-01-10 against v2.6.37 (mainline for v2.6.38,
``Cc: stable@kernel.org [2.6.37, 2.6.36]``; the stable updates of v2.6.37
carry it): ``unmap_and_move()`` (mm/migrate.c) no longer takes its anon_vma
reference on ``page_anon_vma(page)`` under ``rcu_read_lock()`` after one look
at ``page_mapped()``, because "the anon_vma to which we get a reference may
already have been freed back to its slab (it is in use when we check
page_mapped, but that can change), and so its anon_vma->root may be switched
at any moment by reuse in anon_vma_prepare". It asks ``page_lock_anon_vma()``
(f18194275c39's: the saved root, ``page_mapped()`` checked again under the
lock) and takes the reference while the lock is held:

.. code-block:: c

    anon_vma = page_lock_anon_vma(page);
    if (anon_vma) {
            get_anon_vma(anon_vma);
            page_unlock_anon_vma(anon_vma);
    } else if (PageSwapCache(page)) {
            remap_swapcache = 0;
    } else {
            goto uncharge;
    }

BASE is :mod:`rmapcheck.designs.linux_2_6_36` (76545066c852 with
f18194275c39); the one function that differs is migration's pin,
``folio_get_anon_vma_pin`` (the end of the pin in ``unmap_and_move()``,
after the mapping was read); every other function is linux-2.6.36's.
"""

from __future__ import annotations

from typing import Any

from rmapcheck.designs import linux_2_6_36
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import anon_vma, folio

__all__ = ["BASE", "REPLACE", "folio_get_anon_vma_pin"]

BASE = "linux-2.6.36"


def folio_get_anon_vma_pin(k: Kernel, f: folio, av: anon_vma) -> anon_vma | None:
    """Migration's pin in ``unmap_and_move()`` (mm/migrate.c, v2.6.37 with "mm: fix migration hangs on anon_vma lock").

    "Only page_lock_anon_vma() understands the subtleties of getting a hold on
    an anon_vma from outside one of its mms": lock the root saved from
    ``anon_vma->root``, check ``page_mapped()`` again, and only then
    ``get_anon_vma()``; ``page_unlock_anon_vma()`` releases the lock. An
    unmapped page that is not in the swap cache (the model has no swap) goes
    on without a reference: nothing can map it again while the migration
    holds its page lock.

    :returns: ``av`` with one more ``external_refcount``, or ``NULL``.
    """
    locked = k.ops.folio_lock_anon_vma_root(k, f, av)
    if not isinstance(locked, anon_vma):
        return None
    k.ops.get_anon_vma(k, locked, "unmap_and_move")
    k.ops.page_unlock_anon_vma(k, locked, "unmap_and_move")
    return locked


REPLACE: dict[str, Any] = {"folio_get_anon_vma_pin": folio_get_anon_vma_pin}

#: Bundled scenarios whose outcome on this design differs from linux-6.18's:
#: its base's (every bundled scenario was run on both and compared step by
#: step; the change of this design shows in none).
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = dict(linux_2_6_36.SCENARIO_DIFFERS)
