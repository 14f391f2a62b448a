"""A design whose anon_vma_fork() misspells an errno on the path where anon_vma_clone() failed.

``model-error`` is a Python exception raised in a kernel function: a bug of
the model or of a design file, not of the kernel. This design copies
``anon_vma_fork()`` (mm/rmap.c, v6.18) and misspells ``ENOMEM`` on its first
error path; in C the compiler would refuse it, in a design file it is an
``AttributeError`` the first time the path runs.

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
    """``anon_vma_fork()`` (mm/rmap.c, v6.18) with a typo on an error path (the planted defect)."""
    fn = "anon_vma_fork"
    if pvma.anon_vma is None:
        return 0
    vma.anon_vma = None
    if k.ops.anon_vma_clone(k, vma, pvma):
        return -errno.ENOMEN  # the defect: ENOMEM
    if vma.anon_vma is not None:
        return 0
    av = k.ops.anon_vma_alloc(k, fn)
    if av is None:
        k.ops.unlink_anon_vmas(k, vma)
        return -errno.ENOMEM
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
