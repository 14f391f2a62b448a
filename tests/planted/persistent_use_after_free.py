"""anon_vma_clone()'s unwind frees the chain entries it linked, left in the interval trees.

The kernel's ``enomem_failure`` in ``anon_vma_clone()`` (mm/rmap.c, v6.18)
unwinds with ``unlink_anon_vmas(dst)``, which takes each chain entry out of
its anon_vma's interval tree before freeing it. This patch open-codes the
unwind as a walk of ``dst``'s chain that frees each entry and forgets the
``anon_vma_interval_tree_remove()``: the anon_vmas' trees keep the freed
entries, and the next rmap walk (or the invariant check, which walks every
tree) reads freed memory.

A chain entry must have been linked before the one whose allocations fail:
``fail=anon_vma_chain_alloc@2*`` on a VMA of the child, which is chained to
two anon_vmas.

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
    """``anon_vma_clone()`` (mm/rmap.c, v6.18), its unwind freeing in place (the planted defect)."""
    fn = "anon_vma_clone"
    root = None
    for pavc in reversed(src.anon_vma_chain):  # oldest first
        avc = k.ops.anon_vma_chain_alloc(k, fn)  # GFP_NOWAIT | __GFP_NOWARN
        if avc is None:
            k.ops.unlock_anon_vma_root(k, root, fn)
            root = None
            avc = k.ops.anon_vma_chain_alloc(k, fn)  # GFP_KERNEL
            if avc is None:
                dst.anon_vma = None
                for done in dst.anon_vma_chain:
                    k.ops.anon_vma_chain_free(k, done, fn)  # the defect: still in done->anon_vma's tree
                dst.anon_vma_chain = []
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
