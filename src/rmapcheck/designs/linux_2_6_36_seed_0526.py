"""Design ``linux-2.6.36-seed-0526``: patch 5/5 as Rik van Riel reposted it on 2010-05-26.

"mm: extend KSM refcounts to the anon_vma root" before the Jun-9 fix "only drop
root anon_vma if not self" (docs/history.md §1 S4, §3): a child anon_vma
pins its root from ``anon_vma_fork()`` until it is freed, and the generic
``drop_anon_vma()`` frees a child and then its root. But ``anon_vma_unlink()``
drops the root's reference for *every* emptied anon_vma, the root itself
included, though "the root anon_vma does not have a refcount on itself" —
an over-drop to -1 that survives in the freed slot (``SLAB_DESTROY_BY_RCU``:
the constructor does not run again) and makes the next anon_vma there leak
(docs/history.md §2 B1, found by kmemleak).

The diff against :mod:`rmapcheck.designs.linux_2_6_36_pre`:
``anon_vma_fork()`` takes ``get_anon_vma(anon_vma->root)``;
``anon_vma_unlink()`` calls ``drop_anon_vma(anon_vma->root)``; KSM and
migration call the generic ``drop_anon_vma()``.
"""

from __future__ import annotations

from typing import Any

from rmapcheck.designs import linux_2_6_36_pre as pre
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import anon_vma

__all__ = ["BASE", "REPLACE", "anon_vma_fork_pin_root", "anon_vma_unlink_drop_root", "drop_anon_vma"]

BASE = "linux-2.6.36-pre"


def anon_vma_fork_pin_root(k: Kernel, av: anon_vma) -> None:
    """In ``anon_vma_fork()`` (mm/rmap.c, seed 5/5).

    "With KSM refcounts, an anon_vma can stay around longer than the process
    it belongs to. The root anon_vma needs to be pinned until this anon_vma is
    freed, because the lock lives in the root."
    """
    k.ops.get_anon_vma(k, av.root, "anon_vma_fork")


def anon_vma_unlink_drop_root(k: Kernel, av: anon_vma) -> None:
    """In ``anon_vma_unlink()`` (mm/rmap.c, seed 5/5 of 2010-05-26): "We no longer need the root anon_vma"."""
    k.ops.drop_anon_vma(k, av.root, "anon_vma_unlink")


def drop_anon_vma(k: Kernel, av: anon_vma, function: str = "drop_anon_vma") -> None:
    """``drop_anon_vma()`` (mm/rmap.c, seed 5/5): drop a reference, free the child then maybe the root.

    "The refcount on a non-root anon_vma got dropped. Drop the refcount on the
    root and check if we need to free it."
    """
    if not (k.config.get("CONFIG_KSM") or k.config.get("CONFIG_MIGRATION")):
        return
    _drop(k, av)


def _drop(k: Kernel, av: anon_vma) -> None:
    function = "drop_anon_vma"
    if pre.atomic_dec_and_lock(k, av, av, function):
        root = av.root
        empty = not av.rb_root
        last_root_user = root_empty = False
        if empty and av is not root:
            root.refcount -= 1
            last_root_user = root.refcount == 0
            root_empty = not root.rb_root
        pre.anon_vma_unlock_write(k, av, function)
        if empty:
            k.ops.anon_vma_free(k, av, function)
            if root_empty and last_root_user:
                k.ops.anon_vma_free(k, root, function)


def counter_invariants(k: Kernel, av: anon_vma, active: int, children: int, pins: int, ext: int) -> str | None:
    """``external_refcount``: the external holders plus one per child pinning this root."""
    want = ext + pins
    if av.refcount != want:
        return f"external_refcount {av.refcount}, expected {want}"
    return None


REPLACE: dict[str, Any] = {
    "anon_vma_fork_pin_root": anon_vma_fork_pin_root,
    "anon_vma_unlink_drop_root": anon_vma_unlink_drop_root,
    "put_anon_vma": drop_anon_vma,
    "drop_anon_vma": drop_anon_vma,
    "anon_vma_counter_invariants": counter_invariants,
}

#: Bundled scenarios whose outcome on this design differs from linux-6.18's
#: (every bundled scenario was run on both and compared step by step).
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = {
    **pre.SCENARIO_DIFFERS,
    "mmap-fixed-noreplace": (
        "counter-underflow",
        "docs/history.md B1: anon_vma_unlink() drops the root's pin on the root itself when its list "
        "empties (the 2010-05-26 repost of \"mm: extend KSM refcounts to the anon_vma root\"; fixed by "
        "\"only drop root anon_vma if not self\", folded into 76545066c852)",
    ),
}
