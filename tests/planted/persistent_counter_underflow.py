"""anon_vma_clone()'s unwind drops dst->anon_vma only when dst inherited it.

The kernel's ``enomem_failure`` in ``anon_vma_clone()`` (mm/rmap.c, v6.18)
drops ``dst->anon_vma`` before ``unlink_anon_vmas(dst)``, "otherwise its
num_active_vmas can be incorrectly decremented in unlink_anon_vmas()". This
design drops it only when it is the one ``vm_area_dup()`` copied from the
source (a split or a move), on the reading that otherwise
``dst->anon_vma`` is NULL. But on fork ``anon_vma_clone()`` may have set
it itself, reusing an anon_vma of the chain before the allocation for a
later entry failed, and the reuse has not been counted yet (that happens
after the loop): ``unlink_anon_vmas()`` takes ``num_active_vmas`` of the
reused anon_vma below zero. This is the underflow Linux kernel commit
3fe89b3e2a7b ("mm: fix anon_vma->degree underflow in anon_vma endless
growing prevention") (in v4.0) fixed, for the ``degree`` counter of the
time.

Reuse needs an anon_vma with no VMA and one child on the chain: a
grandchild forks after its parent exited (fork, exit, then the fork whose
clone fails at the third entry, ``fail=anon_vma_chain_alloc@3*``).

Why a persistent failure: ``anon_vma_clone()`` allocates each chain entry
with ``GFP_NOWAIT`` and, once that fails, drops the root's lock and retries
with ``GFP_KERNEL``; its ``enomem_failure`` unwind runs only when both
attempts for one entry fail, that is with ``fail=anon_vma_chain_alloc@N*``
(the N-th attempt and every later one). Failing the first attempt alone
(``--fault-mode first``) or any one attempt (``nth``) only exercises the
retry, which succeeds.

Found by the ``faults`` phase (fork, exit, then a fork that reuses an anon_vma).
"""

import errno

BASE = "linux-6.18"


def anon_vma_clone(k, dst, src):
    """``anon_vma_clone()`` (mm/rmap.c, v6.18), its unwind half fixed (the planted defect)."""
    fn = "anon_vma_clone"
    root = None
    for pavc in reversed(src.anon_vma_chain):  # oldest first
        avc = k.ops.anon_vma_chain_alloc(k, fn)  # GFP_NOWAIT | __GFP_NOWARN
        if avc is None:
            k.ops.unlock_anon_vma_root(k, root, fn)
            root = None
            avc = k.ops.anon_vma_chain_alloc(k, fn)  # GFP_KERNEL
            if avc is None:
                if dst.anon_vma is src.anon_vma:  # the defect: only the one vm_area_dup() copied
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
