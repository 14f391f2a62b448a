"""Design ``linux-3.19-rc``: ``linux-3.18`` with Linux kernel commit 7a3ef208e662, before b800c91a0517.

"mm: prevent endless growth of anon_vma hierarchy" (Konstantin Khlebnikov,
v3.19-rc4, January 2015): "Constantly forking task causes unlimited grow of
anon_vma chain ... This patch adds heuristic which decides to reuse existing
anon_vma instead of forking new one. It adds counter anon_vma->degree which
counts linked vmas and directly descending anon_vmas and reuses anon_vma if
counter is lower than two." (docs/history.md S9). Read from the commit's
diff of mm/rmap.c.

The diff against :mod:`rmapcheck.designs.linux_3_18`, all in mm/rmap.c:

* ``anon_vma_alloc()``: ``degree = 1; /* Reference for first vma */``,
  ``parent = anon_vma``;
* ``anon_vma_prepare()``: ``degree++`` when the anon_vma is installed ("vma
  reference or self-parent link for new root");
* ``anon_vma_clone()``: "Reuse existing anon_vma if its degree lower than
  two, that means it has no vma and only one anon_vma child", ``if
  (!dst->anon_vma && anon_vma != src->anon_vma && anon_vma->degree < 2)
  dst->anon_vma = anon_vma;``, then ``dst->anon_vma->degree++``;
* ``anon_vma_fork()``: ``vma->anon_vma = NULL`` before the clone ("Drop
  inherited anon_vma, we'll reuse existing or allocate new"), done if the
  clone reused one, else ``anon_vma->parent = pvma->anon_vma`` and
  ``anon_vma->parent->degree++``;
* ``unlink_anon_vmas()``: ``anon_vma->parent->degree--`` when an anon_vma's
  tree empties, ``vma->anon_vma->degree--``, and ``BUG_ON(anon_vma->degree)``
  before the put of an emptied one ("kernel BUG at mm/rmap.c:399").

The model keeps ``degree`` in its ``num_active_vmas`` field (``num_children``
stays 0): one counter, as the kernel had, so that what goes wrong with it
goes wrong the same way.

Two bugs of the counter's maintenance live here. ``vma_adjust()`` still
clones with ``importer->anon_vma`` NULL and assigns it afterwards
(``dup_anon_vma()`` of ``linux-3.16-rc``), so the clone may count the
importer on a reused ancestor that the assignment then replaces
(docs/history.md B12, fixed by b800c91a0517 in ``linux-3.19``); and a failed
clone unlinks ``dst`` with ``dst->anon_vma`` still set, decrementing a
degree it never incremented (B13, fixed by 3fe89b3e2a7b in ``linux-4.0``).
"""

from __future__ import annotations

from typing import Any

from rmapcheck.designs.linux_3_16_rc import counter_invariants as refcount_invariants
from rmapcheck.designs.linux_3_16_rc import fork_own_anon_vma
from rmapcheck.model.findings import KernelBug, RefcountUnderflow
from rmapcheck.model.invariants import _broken
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import anon_vma, vm_area_struct
from rmapcheck.model.slab import kasan_check

__all__ = ["BASE", "HISTORY", "REPLACE", "SCENARIO_DIFFERS", "anon_vma_alloc", "anon_vma_clone_linked",
           "anon_vma_clone_reuse", "anon_vma_fork", "anon_vma_unlink_check", "counter_invariants"]

BASE = "linux-3.18"


def anon_vma_alloc(k: Kernel, function: str = "anon_vma_alloc") -> anon_vma | None:
    """``anon_vma_alloc()`` (mm/rmap.c, 7a3ef208e662): refcount 1, ``degree`` 1, its own root and parent."""
    if k.should_fail("anon_vma_alloc"):
        return None
    av = k.anon_vma_cachep.alloc(function)
    av.refcount = 1
    av.num_active_vmas = 1  # degree = 1: Reference for first vma
    av.num_children = 0
    av.parent = av
    av.root = av
    return av


def _degree_inc(k: Kernel, av: anon_vma) -> None:
    # anon_vma_prepare(): anon_vma->degree++, "vma reference or self-parent
    # link for new root"
    av.num_active_vmas += 1


def _degree_dec(k: Kernel, av: anon_vma) -> None:
    # unlink_anon_vmas(): vma->anon_vma->degree--; unsigned in the kernel,
    # so an underflow wraps unnoticed until BUG_ON(anon_vma->degree)
    kasan_check(av, "unlink_anon_vmas")
    av.num_active_vmas -= 1


def _parent_degree_dec(k: Kernel, av: anon_vma) -> None:
    # unlink_anon_vmas(): an emptied anon_vma's anon_vma->parent->degree--
    _degree_dec(k, av.parent)


def anon_vma_clone_reuse(k: Kernel, dst: vm_area_struct, src: vm_area_struct, av: anon_vma) -> None:
    """The reuse test in ``anon_vma_clone()`` (mm/rmap.c, 7a3ef208e662), after ``av`` was linked to ``dst``.

    "Reuse existing anon_vma if its degree lower than two, that means it has
    no vma and only one anon_vma child. Do not chose parent anon_vma,
    otherwise first child will always reuse it. Root anon_vma is never
    reused: it has self-parent reference and at least one child." Any caller
    whose ``dst->anon_vma`` is NULL gets the reuse, not only fork.
    """
    if dst.anon_vma is None and av is not src.anon_vma and av.num_active_vmas < 2:
        dst.anon_vma = av


def anon_vma_clone_linked(k: Kernel, dst: vm_area_struct) -> None:
    """After the loop of ``anon_vma_clone()`` (7a3ef208e662): ``if (dst->anon_vma) dst->anon_vma->degree++``."""
    if dst.anon_vma is not None:
        dst.anon_vma.num_active_vmas += 1


def anon_vma_unlink_check(k: Kernel, av: anon_vma) -> None:
    """The check in the second pass of ``unlink_anon_vmas()`` (7a3ef208e662): ``BUG_ON(anon_vma->degree)``.

    "kernel BUG at mm/rmap.c:399" in the v3.19 reports of B12 and B13.
    """
    if av.num_active_vmas:
        raise KernelBug("unlink_anon_vmas", f"BUG_ON(anon_vma->degree): degree of {av.kname()} is "
                                            f"{av.num_active_vmas}")


def anon_vma_fork(k: Kernel, vma: vm_area_struct, pvma: vm_area_struct) -> int:
    """``anon_vma_fork()`` (mm/rmap.c, 7a3ef208e662): reuse an anon_vma of the parent's chain, or a new one."""
    # Don't bother if the parent process has no anon_vma here.
    if pvma.anon_vma is None:
        return 0
    # Drop inherited anon_vma, we'll reuse existing or allocate new.
    vma.anon_vma = None
    # First, attach the new VMA to the parent VMA's anon_vmas, so rmap can
    # find non-COWed pages in child processes.
    error = k.ops.anon_vma_clone(k, vma, pvma)
    if error:
        return error
    # An existing anon_vma has been reused, all done then.
    if vma.anon_vma is not None:
        return 0
    return fork_own_anon_vma(k, vma, pvma)


def _fork_parent_degree(k: Kernel, av: anon_vma) -> None:
    # anon_vma_fork(): anon_vma->parent->degree++
    av.parent.num_active_vmas += 1


def counter_invariants(k: Kernel, a: anon_vma, active: int, children: int, pins: int,
                       ext: int) -> str | None:
    """The anon_vma counters of 7a3ef208e662 (v3.19) to v6.0: ``refcount`` and ``degree``.

    ``degree`` counts the VMAs whose ``->anon_vma`` is this one plus the
    children whose tree is not empty (a root counts itself).
    """
    degree = a.num_active_vmas
    if degree < 0:
        raise _broken("I6", RefcountUnderflow("check_invariants", f"degree of {a.kname()} is {degree}", a))
    if degree != active + children:
        return f"degree {degree} but {active} VMAs and {children} children"
    return refcount_invariants(k, a, active, children, pins, ext)


REPLACE: dict[str, Any] = {
    "anon_vma_alloc": anon_vma_alloc,
    "anon_vma_prepare_linked": _degree_inc,
    "anon_vma_clone_reuse": anon_vma_clone_reuse,
    "anon_vma_clone_linked": anon_vma_clone_linked,
    "anon_vma_fork": anon_vma_fork,
    "anon_vma_fork_linked": _fork_parent_degree,
    "anon_vma_unlink_emptied": _parent_degree_dec,
    "anon_vma_unlink_vma": _degree_dec,
    "anon_vma_unlink_check": anon_vma_unlink_check,
    "anon_vma_counter_invariants": counter_invariants,
}

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "B12",
        "title": "vma_adjust() overrides the anon_vma that anon_vma_clone() counted",
        "fixed": "linux-3.19",
        "args": ("--processes", "1", "--regions", "1", "--pages", "2", "--ops", "write,exit,mprotect",
                 "--depth", "6"),
        "property": "vm-bug-on",
        "tuned": "",
        "fast": True,
    },
)

_B12 = "degree not counted for the importer of a merge (vma_adjust() clones before it assigns), fixed by b800c91a0517 (v3.19)"
_B16 = "degree ambiguity: an anon_vma reused while a VMA still uses it (7a3ef208e662, v3.19), fixed by 2555283eb40d (v6.1)"

#: Bundled scenarios whose outcome on this design differs from linux-6.18's.
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = {
    "anon-vma-double-reuse": ("invariant", _B16),
    "fork-g3-double-reuse": ("maps", _B16),
    "fork-child-refuses-existing-merge": ("invariant", _B12),
    "merge-mprotect-both": ("invariant", _B12),
    "merge-mprotect-faulted-next": ("invariant", _B12),
    "merge-mprotect-next": ("invariant", _B12),
    "merge-mprotect-prev": ("invariant", _B12),
    "merge-mprotect-unfaulted-both": ("invariant", _B12),
    "merge-mprotect-unfaulted-left-faulted-right": ("invariant", _B12),
    "merge-mprotect-unfaulted-left": ("invariant", _B12),
    "merge-mprotect-unfaulted-right": ("invariant", _B12),
    "mremap-faulted-unfaulted-merge": ("invariant", _B12),
    "mremap-fork-child-no-merge-at-destination": ("invariant", _B12),
    "mremap-move-unfaulted-merges": ("invariant", _B12),
}
