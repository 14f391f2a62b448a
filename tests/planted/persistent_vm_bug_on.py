"""anon_vma_fork() allocates the child's anon_vma before anon_vma_clone() and frees it with anon_vma_free().

This patch moves the allocation of the child's own anon_vma in
``anon_vma_fork()`` (mm/rmap.c, v6.18) before ``anon_vma_clone()``, so that
a failure to allocate it costs no cloning; when the clone then fails, or
reused an anon_vma, the new one must go again. The reuse path drops it with
``put_anon_vma()``; the clone's failure path calls ``anon_vma_free()``
directly, while the anon_vma still holds the reference ``anon_vma_alloc()``
gave it: ``VM_BUG_ON(atomic_read(&anon_vma->refcount))``.

Why a persistent failure: ``anon_vma_fork()`` fails at ``anon_vma_clone()``
only when both attempts for one chain entry fail (``GFP_NOWAIT``, then
``GFP_KERNEL`` after dropping the root's lock), that is with
``fail=anon_vma_chain_alloc@N*`` (the N-th attempt and every later one).
Failing the first attempt alone (``--fault-mode first``) or any one attempt
(``nth``) only exercises the retry, which succeeds; the other failures of
``anon_vma_fork()`` (its own anon_vma, its own chain entry) take other
error paths.

Found by the ``faults`` phase (a fork).
"""

import errno

from rmapcheck.model.slab import kasan_check

BASE = "linux-6.18"


def anon_vma_fork(k, vma, pvma):
    """``anon_vma_fork()`` (mm/rmap.c, v6.18), allocating first (the planted defect)."""
    fn = "anon_vma_fork"
    if pvma.anon_vma is None:
        return 0
    av = k.ops.anon_vma_alloc(k, fn)
    if av is None:
        return -errno.ENOMEM
    vma.anon_vma = None
    if k.ops.anon_vma_clone(k, vma, pvma):
        k.ops.anon_vma_free(k, av, fn)  # the defect: put_anon_vma(), it holds a reference
        return -errno.ENOMEM
    if vma.anon_vma is not None:  # an existing anon_vma has been reused
        k.ops.put_anon_vma(k, av, fn)
        return 0
    av.num_active_vmas += 1
    avc = k.ops.anon_vma_chain_alloc(k, fn)
    if avc is None:
        k.ops.put_anon_vma(k, av, fn)
        k.ops.unlink_anon_vmas(k, vma)
        return -errno.ENOMEM
    kasan_check(pvma.anon_vma, fn)
    av.root = pvma.anon_vma.root
    av.parent = pvma.anon_vma
    k.ops.get_anon_vma(k, av.root, fn)
    vma.anon_vma = av
    k.ops.anon_vma_lock_write(k, av, fn)
    k.ops.anon_vma_chain_link(k, vma, avc, av)
    av.parent.num_children += 1
    k.ops.anon_vma_unlock_write(k, av, fn)
    return 0


REPLACE = {"anon_vma_fork": anon_vma_fork}
