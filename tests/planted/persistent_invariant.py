"""anon_vma_clone()'s unwind keeps dst->anon_vma, which unlink_anon_vmas() then uncounts.

The kernel's ``enomem_failure`` in ``anon_vma_clone()`` (mm/rmap.c, v6.18)
reads: "dst->anon_vma is dropped here otherwise its num_active_vmas can be
incorrectly decremented in unlink_anon_vmas()". This design reverts that
line, as the unwind was before Linux kernel commit 3fe89b3e2a7b ("mm: fix
anon_vma->degree underflow in anon_vma endless growing prevention") (in
v4.0), which fixed it for the ``degree`` counter of the time. A VMA being
split or moved (``__split_vma()``, ``copy_vma()``) comes from
``vm_area_dup()`` with its source's anon_vma, so ``unlink_anon_vmas()``
takes one off the source anon_vma's ``num_active_vmas``, which still counts
the source VMA: the counters no longer count the VMAs (I3).

Why a persistent failure: ``anon_vma_clone()`` allocates each chain entry
with ``GFP_NOWAIT`` and, once that fails, drops the root's lock and retries
with ``GFP_KERNEL``; its ``enomem_failure`` unwind runs only when both
attempts for one entry fail, that is with ``fail=anon_vma_chain_alloc@N*``
(the N-th attempt and every later one). Failing the first attempt alone
(``--fault-mode first``) or any one attempt (``nth``) only exercises the
retry, which succeeds.

Found by the ``faults`` phase (an mremap that splits the VMA it moves).
"""

import errno

BASE = "linux-6.18"


def anon_vma_clone(k, dst, src):
    """``anon_vma_clone()`` (mm/rmap.c, v6.18), whose unwind keeps ``dst->anon_vma`` (the planted defect)."""
    fn = "anon_vma_clone"
    root = None
    for pavc in reversed(src.anon_vma_chain):  # oldest first
        avc = k.ops.anon_vma_chain_alloc(k, fn)  # GFP_NOWAIT | __GFP_NOWARN
        if avc is None:
            k.ops.unlock_anon_vma_root(k, root, fn)
            root = None
            avc = k.ops.anon_vma_chain_alloc(k, fn)  # GFP_KERNEL
            if avc is None:
                k.ops.unlink_anon_vmas(k, dst)  # the defect: dst->anon_vma is not dropped first
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
