"""anon_vma_fork() sets up the child's own anon_vma before anon_vma_clone(), which then unwinds it uncounted.

This patch reorders ``anon_vma_fork()`` (mm/rmap.c, v6.18): the child's own
anon_vma is allocated, counted (``num_active_vmas``), pinned to its root and
linked first, and ``anon_vma_clone()`` links the parent's anon_vmas after
(with ``dst->anon_vma`` set, nothing is reused; the patch takes back the
count ``anon_vma_clone()`` adds for ``dst->anon_vma`` on success). It
misses what the comment of ``anon_vma_clone()``'s ``enomem_failure`` says:
"callers of anon_vma_clone() don't care about dst->anon_vma if
anon_vma_clone() failed". That unwind drops ``dst->anon_vma`` and then
unlinks everything on the chain, the child's own anon_vma included, which
is emptied with ``num_active_vmas`` still counting the VMA:
``VM_WARN_ON(anon_vma->num_active_vmas)`` in ``unlink_anon_vmas()``.

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
    """``anon_vma_fork()`` (mm/rmap.c, v6.18), its own anon_vma first (the planted defect)."""
    fn = "anon_vma_fork"
    if pvma.anon_vma is None:
        return 0
    av = k.ops.anon_vma_alloc(k, fn)
    if av is None:
        return -errno.ENOMEM
    av.num_active_vmas += 1
    avc = k.ops.anon_vma_chain_alloc(k, fn)
    if avc is None:
        k.ops.put_anon_vma(k, av, fn)
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
    # the defect: on failure, anon_vma_clone() unwinds the own anon_vma above, still counted
    if k.ops.anon_vma_clone(k, vma, pvma):
        return -errno.ENOMEM
    av.num_active_vmas -= 1  # anon_vma_clone() counted dst->anon_vma again
    return 0


REPLACE = {"anon_vma_fork": anon_vma_fork}
