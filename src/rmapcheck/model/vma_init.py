"""VMA allocation and the per-mm VMA tree: ``mm/vma_init.c`` and the maple-tree helpers.

In v6.18 ``vm_area_alloc()``, ``vm_area_dup()`` and ``vm_area_free()`` live in
mm/vma_init.c. The maple tree ``mm->mm_mt`` is modelled as the list
``mm.mmap`` kept in ``vm_start`` order.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.mm_types import mm_struct, vm_area_struct

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "VMA_INIT_OPS",
    "find_vma",
    "find_vma_intersection",
    "find_vma_prev",
    "vm_area_alloc",
    "vm_area_dup",
    "vm_area_free",
    "vma_iter_remove",
    "vma_iter_store",
    "vma_lookup",
    "vma_next",
    "vma_prev",
]


def vm_area_alloc(k: Kernel, mm: mm_struct, function: str = "vm_area_alloc") -> vm_area_struct | None:
    """``vm_area_alloc()`` (mm/vma_init.c, v6.18): a zeroed VMA of ``mm``.

    :returns: ``struct vm_area_struct *`` (``NULL`` on injected allocation failure).
    """
    if k.should_fail("vm_area_alloc"):
        return None
    vma = k.vm_area_cachep.alloc(function)
    vma.vm_mm = mm
    vma.vm_start = vma.vm_end = vma.vm_pgoff = vma.vm_flags = 0
    vma.anon_vma = None
    vma.anon_vma_chain = []
    return vma


def vm_area_dup(k: Kernel, orig: vm_area_struct, function: str = "vm_area_dup") -> vm_area_struct | None:
    """``vm_area_dup()`` (mm/vma_init.c, v6.18): copy the VMA's fields.

    The copy has an empty ``anon_vma_chain`` (``INIT_LIST_HEAD``); the caller
    fills it with ``anon_vma_clone()`` or ``anon_vma_fork()``.
    """
    if k.should_fail("vm_area_dup"):
        return None
    new = k.vm_area_cachep.alloc(function)
    new.vm_mm = orig.vm_mm
    new.vm_start = orig.vm_start
    new.vm_end = orig.vm_end
    new.vm_pgoff = orig.vm_pgoff
    new.vm_flags = orig.vm_flags
    new.anon_vma = orig.anon_vma
    new.anon_vma_chain = []
    return new


def vm_area_free(k: Kernel, vma: vm_area_struct, function: str = "vm_area_free") -> None:
    """``vm_area_free()`` (mm/vma_init.c, v6.18)."""
    k.vm_area_cachep.free(vma, function)


def _starts(mm: mm_struct) -> list[int]:
    return [v.vm_start for v in mm.mmap]


def find_vma(mm: mm_struct, addr: int) -> vm_area_struct | None:
    """``find_vma()`` (mm/mmap.c, v6.18): the first VMA with ``vm_end > addr`` (``NULL`` if none)."""
    for v in mm.mmap:
        if v.vm_end > addr:
            return v
    return None


def vma_lookup(mm: mm_struct, addr: int) -> vm_area_struct | None:
    """``vma_lookup()`` (include/linux/mm.h, v6.18): the VMA containing ``addr`` (``NULL`` if none)."""
    v = find_vma(mm, addr)
    if v is not None and v.vm_start <= addr:
        return v
    return None


def find_vma_intersection(mm: mm_struct, start: int, end: int) -> vm_area_struct | None:
    """``find_vma_intersection()`` (mm/mmap.c, v6.18): the first VMA meeting ``[start, end)``."""
    v = find_vma(mm, start)
    if v is not None and v.vm_start < end:
        return v
    return None


def find_vma_prev(mm: mm_struct, addr: int) -> tuple[vm_area_struct | None, vm_area_struct | None]:
    """``find_vma_prev()`` (mm/mmap.c, v6.18): ``(find_vma(addr), the VMA before it)``."""
    prev = None
    for v in mm.mmap:
        if v.vm_end > addr:
            return v, prev
        prev = v
    return None, prev


def vma_prev(mm: mm_struct, vma: vm_area_struct) -> vm_area_struct | None:
    """``vma_prev()`` (include/linux/mm.h, v6.18): the VMA before ``vma`` in the tree (``NULL`` if none)."""
    i = mm.mmap.index(vma)
    return mm.mmap[i - 1] if i else None


def vma_next(mm: mm_struct, vma: vm_area_struct) -> vm_area_struct | None:
    """``vma_next()`` (include/linux/mm.h, v6.18): the VMA after ``vma`` in the tree (``NULL`` if none)."""
    i = mm.mmap.index(vma)
    return mm.mmap[i + 1] if i + 1 < len(mm.mmap) else None


def vma_iter_store(mm: mm_struct, vma: vm_area_struct) -> None:
    """``vma_iter_store()`` (mm/vma.h, v6.18): insert ``vma`` into the tree in address order."""
    i = bisect_right(_starts(mm), vma.vm_start)
    mm.mmap.insert(i, vma)


def vma_iter_remove(mm: mm_struct, vma: vm_area_struct) -> None:
    """``vma_iter_clear()`` (mm/vma.h, v6.18): remove ``vma`` from the tree."""
    mm.mmap.remove(vma)


#: The kernel functions of mm/vma_init.c, by name, for the design table (the
#: maple-tree helpers are the model's data structure, not replaceable).
VMA_INIT_OPS: dict[str, Callable[..., Any]] = {
    "vm_area_alloc": vm_area_alloc,
    "vm_area_dup": vm_area_dup,
    "vm_area_free": vm_area_free,
}
