"""anon_vma_clone() retries with GFP_KERNEL without dropping the root's lock first.

``anon_vma_clone()`` (mm/rmap.c, v6.18) allocates each chain entry with
``GFP_NOWAIT`` under the root anon_vma's lock and, when that fails, drops
the lock (``unlock_anon_vma_root()``) before the sleeping ``GFP_KERNEL``
retry. This patch drops the unlock. While the retry succeeds the loop goes
on under the lock it still holds (the model does not check sleeping under a
lock), but when the retry fails too, the unwind's ``unlink_anon_vmas(dst)``
takes the root's lock again: a deadlock (lock-misuse, in ``down_write()``).

A chain entry must have been linked before the one whose allocations fail,
so that the root is locked: ``fail=anon_vma_chain_alloc@2*`` on a VMA of the
child, which is chained to two anon_vmas.

Why a persistent failure: ``anon_vma_clone()`` allocates each chain entry
with ``GFP_NOWAIT`` and, once that fails, drops the root's lock and retries
with ``GFP_KERNEL``; its ``enomem_failure`` unwind runs only when both
attempts for one entry fail, that is with ``fail=anon_vma_chain_alloc@N*``
(the N-th attempt and every later one). Failing the first attempt alone
(``--fault-mode first``) or any one attempt (``nth``) only exercises the
retry, which succeeds.

Found by the ``faults`` phase (an mremap in the child).
"""

import errno

BASE = "linux-6.18"


def anon_vma_clone(k, dst, src):
    """``anon_vma_clone()`` (mm/rmap.c, v6.18), without the unlock before the retry (the planted defect)."""
    fn = "anon_vma_clone"
    root = None
    for pavc in reversed(src.anon_vma_chain):  # oldest first
        avc = k.ops.anon_vma_chain_alloc(k, fn)  # GFP_NOWAIT | __GFP_NOWARN
        if avc is None:
            avc = k.ops.anon_vma_chain_alloc(k, fn)  # GFP_KERNEL
            if avc is None:
                dst.anon_vma = None
                k.ops.unlink_anon_vmas(k, dst)
                return -errno.ENOMEM
        av = pavc.anon_vma
        root = k.ops.lock_anon_vma_root(k, root, av, fn)
        k.ops.anon_vma_chain_link(k, dst, avc, av)
        if dst.anon_vma is None and k.ops.anon_vma_reusable(k, av, src):
            dst.anon_vma = av
    if dst.anon_vma is not None:
        dst.anon_vma.num_active_vmas += 1
    k.ops.unlock_anon_vma_root(k, root, fn)
    return 0


REPLACE = {"anon_vma_clone": anon_vma_clone}
