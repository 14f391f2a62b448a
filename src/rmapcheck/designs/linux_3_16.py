"""Design ``linux-3.16``: v3.16, Linux kernel commit 624483f3ea82 on ``linux-3.16-rc``.

"mm: rmap: fix use-after-free in __put_anon_vma" (Andrey Ryabinin, June
2014, found with KASAN, Cc stable 3.0+): "For the last anon_vma,
anon_vma->root freed before child anon_vma. Later in anon_vma_free(anon_vma)
we are referencing to already freed anon_vma->root to check rwsem. This
patch puts freeing of child anon_vma before freeing of anon_vma->root."
(docs/history.md S8, B10).

The diff against :mod:`rmapcheck.designs.linux_3_16_rc`: ``__put_anon_vma()``
frees the anon_vma first, then drops its root's pin; that is v6.18's
``__put_anon_vma()`` (mm/rmap.c), unchanged since. Still here: the
``__split_vma()`` that returns success when ``anon_vma_clone()`` fails
(docs/history.md B11, fixed in ``linux-3.18``). The checker finds it on a
one-page ``mremap()`` whose source split fails for good (``fail=
anon_vma_chain_alloc@2*``: the copy's clone succeeds, the split's does not):
the move unmaps the whole source VMA, and v6.18's ``unmap_source_vma()``
finds no VMA after the range it unmapped (a NULL dereference in the
kernel); ``munmap()`` of one page of a VMA unmaps all of it, which
``rmapcheck run`` shows as a read that finds nothing mapped where the
process wrote.
"""

from __future__ import annotations

from typing import Any

from rmapcheck.model.rmap import __put_anon_vma

__all__ = ["BASE", "HISTORY", "REPLACE", "SCENARIO_DIFFERS"]

BASE = "linux-3.16-rc"

REPLACE: dict[str, Any] = {"__put_anon_vma": __put_anon_vma}

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "B11",
        "title": "__split_vma() returns success when anon_vma_clone() fails",
        "fixed": "linux-3.18",
        "args": ("--processes", "1", "--regions", "2", "--pages", "2", "--ops", "write,mremap",
                 "--faults", "1", "--depth", "2"),
        "property": "vm-bug-on",
        "tuned": "",
        "fast": True,
    },
)

#: Bundled scenarios whose outcome on this design differs from linux-6.18's.
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = {}
