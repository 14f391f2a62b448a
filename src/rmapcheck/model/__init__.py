"""The kernel: state and functions of Linux's anonymous reverse mapping, one module per kernel file.

Pure and deterministic: no I/O, no clock, no randomness, no CLI libraries.
``rmap`` is mm/rmap.c, ``vma`` mm/vma.c, ``mmap`` mm/mmap.c, ``mprotect``
mm/mprotect.c, ``mremap`` mm/mremap.c, ``madvise`` mm/madvise.c, ``memory``
mm/memory.c, ``fork`` the mm parts of kernel/fork.c, ``ksm`` mm/ksm.c,
``migrate`` mm/migrate.c, ``vmscan`` mm/vmscan.c, ``vma_init`` mm/vma_init.c,
``slab`` the slab caches with a KASAN-like shadow, ``mm_types`` the structures,
``invariants`` and ``findings`` what the model checks and reports.
"""
