"""Design ``linux-2.6.36``: the seed patch as merged, Linux kernel commit 76545066c852.

"mm: extend KSM refcounts to the anon_vma root" with the Jun-9 fix folded in
("[PATCH -mm] only drop root anon_vma if not self", Rik van Riel, 2010-06-09):
"the root anon_vma does not have a refcount on itself, so we should not try to
do a drop on itself when it is being unlinked."

The diff against :mod:`rmapcheck.designs.linux_2_6_36_seed_0526`: the guard
``if (anon_vma->root != anon_vma)`` in ``anon_vma_unlink()``.
"""

from __future__ import annotations

from typing import Any

from rmapcheck.designs import linux_2_6_36_seed_0526 as seed
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import anon_vma

__all__ = ["CONFIG", "OPS", "anon_vma_unlink_drop_root"]


def anon_vma_unlink_drop_root(k: Kernel, av: anon_vma) -> None:
    """In ``anon_vma_unlink()`` (mm/rmap.c, 76545066c852): drop the root's pin, unless this is the root."""
    if av.root is not av:
        k.ops.drop_anon_vma(k, av.root, "anon_vma_unlink")


OPS: dict[str, Any] = {**seed.OPS, "anon_vma_unlink_drop_root": anon_vma_unlink_drop_root}

CONFIG: dict[str, Any] = dict(seed.CONFIG)
