"""Kernel structures of the model: ``include/linux/mm_types.h``, ``include/linux/rmap.h``.

Addresses are in pages: ``vm_start`` and ``vm_end`` are virtual page numbers
(the kernel's ``addr >> PAGE_SHIFT``), so ``vm_pgoff`` of a fresh anonymous VMA
equals its ``vm_start``, as ``do_mmap()`` sets it for ``MAP_ANONYMOUS``.

Page tables are a dict per mm from virtual page number to a PTE. A PTE is the
tuple ``(folio, writable)``; the shared zero page is the singleton folio
:data:`ZERO_PAGE`. Field comments name the lock that protects them in the
kernel, as ``rmap.h`` does.
"""

from __future__ import annotations

from rmapcheck.model.slab import FastPickle, SlabObject

__all__ = [
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "VM_ACCESS_FLAGS",
    "VM_ACCOUNT",
    "VM_DONTCOPY",
    "VM_DONTEXPAND",
    "VM_EXEC",
    "VM_HUGEPAGE",
    "VM_IGNORE_MERGE",
    "VM_IO",
    "VM_LOCKED",
    "VM_MAYEXEC",
    "VM_MAYREAD",
    "VM_MAYSHARE",
    "VM_MAYWRITE",
    "VM_MERGEABLE",
    "VM_MIXEDMAP",
    "VM_NOHUGEPAGE",
    "VM_NONE",
    "VM_NORESERVE",
    "VM_PFNMAP",
    "VM_READ",
    "VM_SHARED",
    "VM_SOFTDIRTY",
    "VM_SPECIAL",
    "VM_WIPEONFORK",
    "VM_WRITE",
    "ZERO_PAGE",
    "anon_vma",
    "anon_vma_chain",
    "folio",
    "mm_struct",
    "task_struct",
    "vm_area_struct",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

# include/linux/mm.h, v6.18
VM_NONE = 0x00000000
VM_READ = 0x00000001
VM_WRITE = 0x00000002
VM_EXEC = 0x00000004
VM_SHARED = 0x00000008
VM_MAYREAD = 0x00000010
VM_MAYWRITE = 0x00000020
VM_MAYEXEC = 0x00000040
VM_MAYSHARE = 0x00000080
VM_PFNMAP = 0x00000400
VM_LOCKED = 0x00002000
VM_IO = 0x00004000
VM_DONTCOPY = 0x00020000
VM_DONTEXPAND = 0x00040000
VM_ACCOUNT = 0x00100000
VM_NORESERVE = 0x00200000
VM_WIPEONFORK = 0x02000000
# CONFIG_MEM_SOFT_DIRTY is off in the 6.18 kernel the model tracks: VM_SOFTDIRTY is 0.
VM_SOFTDIRTY = 0x00000000
VM_MIXEDMAP = 0x10000000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_MERGEABLE = 0x80000000

VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP
# Flags that do not prevent a merge (include/linux/mm.h VM_IGNORE_MERGE, v6.18).
VM_IGNORE_MERGE = VM_SOFTDIRTY


class task_struct(FastPickle):
    """A process: its name in the scenario, its pid and its ``mm``."""

    __slots__ = ("comm", "pid", "mm")

    def __init__(self, comm: str, pid: int, mm: mm_struct) -> None:
        self.comm = comm
        self.pid = pid
        self.mm = mm


class mm_struct(SlabObject):
    """``struct mm_struct``: the VMAs in address order and the page tables."""

    __slots__ = ("mmap", "pgtable", "owner", "mm_users", "mm_count", "ksm_flags", "ksm_rmap_items",
                 "ksm_merging_pages", "ksm_zero_pages")

    def __init__(self) -> None:
        super().__init__()
        self.mmap: list[vm_area_struct] = []  # the maple tree, in vm_start order; mmap_lock
        self.pgtable: dict[int, tuple[folio, bool]] = {}  # vpn -> (folio, writable); page_table_lock
        self.owner = ""
        self.mm_users = 0  # users of the address space (mmget/mmput)
        self.mm_count = 0  # references to the struct itself (mmgrab/mmdrop)
        self.ksm_flags = 0
        self.ksm_rmap_items = 0
        self.ksm_merging_pages = 0
        self.ksm_zero_pages = 0

    @property
    def map_count(self) -> int:
        """``mm->map_count``."""
        return len(self.mmap)


class vm_area_struct(SlabObject):
    """``struct vm_area_struct`` of a private anonymous mapping."""

    __slots__ = ("vm_mm", "vm_start", "vm_end", "vm_pgoff", "vm_flags", "anon_vma",
                 "anon_vma_chain")

    def __init__(self) -> None:
        super().__init__()
        self.vm_mm: mm_struct | None = None
        self.vm_start = 0
        self.vm_end = 0
        self.vm_pgoff = 0
        self.vm_flags = 0
        self.anon_vma: anon_vma | None = None  # mmap_lock (write) + page_table_lock
        # newest first, as list_add() leaves it; mmap_lock and page_table_lock
        self.anon_vma_chain: list[anon_vma_chain] = []

    def pages(self) -> int:
        """``vma_pages()``."""
        return self.vm_end - self.vm_start

    def last_pgoff(self) -> int:
        """``vma_last_pgoff()``: the pgoff of the VMA's last page."""
        return self.vm_pgoff + self.vm_end - self.vm_start - 1


class anon_vma(SlabObject):
    """``struct anon_vma`` (include/linux/rmap.h, v6.18)."""

    __slots__ = ("root", "parent", "refcount", "num_children", "num_active_vmas", "rb_root",
                 "rwsem_writer", "rwsem_readers")

    def __init__(self) -> None:
        super().__init__()
        self.root: anon_vma = self  # Root of this anon_vma tree
        self.parent: anon_vma = self  # Parent of this anon_vma
        self.refcount = 0  # atomic_t
        self.num_children = 0  # Count of child anon_vmas, including itself
        self.num_active_vmas = 0  # Count of VMAs whose ->anon_vma points to this object
        self.rb_root: list[anon_vma_chain] = []  # interval tree of AVCs; locked by root rwsem
        # struct rw_semaphore rwsem: only the root's is ever taken
        self.rwsem_writer = False
        self.rwsem_readers = 0


class anon_vma_chain(SlabObject):
    """``struct anon_vma_chain``: links one VMA with one anon_vma.

    Its interval in ``anon_vma->rb_root`` is ``[vma->vm_pgoff, vma_last_pgoff(vma)]``,
    read from the VMA as the kernel's ``avc_start_pgoff()``/``avc_last_pgoff()`` do.
    """

    __slots__ = ("vma", "anon_vma")

    def __init__(self) -> None:
        super().__init__()
        self.vma: vm_area_struct | None = None
        self.anon_vma: anon_vma | None = None


class folio(SlabObject):
    """``struct folio`` of one page: an anonymous page, or the zero page.

    ``content`` is the page's data reduced to one small value (0 means all
    zeroes), so sharing and data integrity are observable.
    """

    __slots__ = ("mapping", "index", "_mapcount", "_refcount", "anon_exclusive", "content",
                 "ksm", "stable_node", "locked")

    def __init__(self) -> None:
        super().__init__()
        self.mapping: object | None = None  # anon_vma (PAGE_MAPPING_ANON) or a KSM stable node
        self.index = 0
        self._mapcount = 0  # number of PTEs mapping it (the kernel stores this minus one)
        self._refcount = 0
        self.anon_exclusive = False  # PageAnonExclusive
        self.content = 0
        self.ksm = False  # PAGE_MAPPING_KSM
        self.stable_node: object | None = None
        self.locked = False  # PG_locked

    def pfn(self) -> int:
        """The page frame number: the folio's slot in the page allocator."""
        return self._slot

    def __reduce_ex__(self, protocol):  # type: ignore[no-untyped-def]
        # The zero page is one object in every copy of a kernel state (the
        # model checker copies states with pickle): pickle it by name.
        if self is ZERO_PAGE:
            return "ZERO_PAGE"
        return super().__reduce_ex__(protocol)


ZERO_PAGE = folio()
ZERO_PAGE._live = True
ZERO_PAGE._slot = -1
