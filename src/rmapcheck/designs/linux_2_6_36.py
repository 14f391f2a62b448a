"""Design ``linux-2.6.36``: the seed patch as merged, Linux kernel commit 76545066c852.

"mm: extend KSM refcounts to the anon_vma root" with the Jun-9 fix folded in
("[PATCH -mm] only drop root anon_vma if not self", Rik van Riel, 2010-06-09):
"the root anon_vma does not have a refcount on itself, so we should not try to
do a drop on itself when it is being unlinked."

v2.6.36 also carries Linux kernel commit f18194275c39 ("mm: fix hang on
anon_vma->root->lock", Hugh Dickins, August 2010), the fix of docs/history.md
B4 in ``page_lock_anon_vma()``.

The diff against :mod:`rmapcheck.designs.linux_2_6_36_seed_0526`: the guard
``if (anon_vma->root != anon_vma)`` in ``anon_vma_unlink()``, and the root
saved and ``page_mapped()`` checked again in ``page_lock_anon_vma()``.
"""

from __future__ import annotations

from typing import Any

from rmapcheck.designs import linux_2_6_36_pre as pre
from rmapcheck.designs.linux_2_6_36_pre import spin_lock_rcu
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import anon_vma, folio
from rmapcheck.model.rmap import folio_mapped

__all__ = ["BASE", "REPLACE", "anon_vma_unlink_drop_root", "page_lock_anon_vma"]

BASE = "linux-2.6.36-seed-0526"


def anon_vma_unlink_drop_root(k: Kernel, av: anon_vma) -> None:
    """In ``anon_vma_unlink()`` (mm/rmap.c, 76545066c852): drop the root's pin, unless this is the root."""
    if av.root is not av:
        k.ops.drop_anon_vma(k, av.root, "anon_vma_unlink")


def page_lock_anon_vma(k: Kernel, f: folio, av: anon_vma, rwc: Any = None) -> anon_vma | None:
    """The end of ``page_lock_anon_vma()`` (mm/rmap.c, v2.6.36, with f18194275c39).

    ``root_anon_vma = ACCESS_ONCE(anon_vma->root); spin_lock(&root_anon_vma->lock);``
    then "If this page is still mapped, then its anon_vma cannot have been
    freed. But if it has been unmapped, we have no security against the
    anon_vma structure being freed and reused (for another anon_vma:
    SLAB_DESTROY_BY_RCU guarantees that - so the spin_lock above cannot
    corrupt): with anon_vma_prepare() or anon_vma_fork() redirecting
    anon_vma->root before page_unlock_anon_vma() is called to unlock."

    :returns: ``struct anon_vma *`` with its root locked, or ``NULL`` (the
        page was unmapped; the saved root is unlocked).
    """
    root_anon_vma = av.root
    spin_lock_rcu(k, root_anon_vma, "page_lock_anon_vma")
    if folio_mapped(f):
        return av
    root_anon_vma.rwsem_writer = False  # spin_unlock(&root_anon_vma->lock)
    return None


REPLACE: dict[str, Any] = {"anon_vma_unlink_drop_root": anon_vma_unlink_drop_root,
                           "folio_lock_anon_vma_root": page_lock_anon_vma}

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "B6",
        "title": "migration pins an anon_vma that may be freed and reused (unmap_and_move)",
        "fixed": "linux-2.6.37",
        # the bounds of the default portfolio's cow phase
        "args": ("--processes", "2", "--pages", "1", "--contents", "2", "--ops", "write,read,fork,exit,migrate",
                 "--depth", "8"),
        "property": "use-after-free",
        "tuned": "",
        "fast": True,
    },
)

#: Bundled scenarios whose outcome on this design differs from linux-6.18's:
#: linux-2.6.36-pre's (B1's fix removed the seed's one).
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = dict(pre.SCENARIO_DIFFERS)
