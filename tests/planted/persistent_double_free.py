"""__split_vma() frees the new VMA twice when anon_vma_clone() fails.

``__split_vma()`` (mm/vma.c, v6.18) unwinds through labels that fall into
each other (``out_free_mpol``, ``out_free_vmi``, ``out_free_vma``). This
patch frees the new VMA right where ``anon_vma_clone()`` fails, and still
goes on to the common label that frees it: a double free of the
``vm_area_struct``.

Why a persistent failure: ``anon_vma_clone()`` fails only when both
attempts for one chain entry fail (``GFP_NOWAIT``, then ``GFP_KERNEL``
after dropping the root's lock), that is with
``fail=anon_vma_chain_alloc@N*`` (the N-th attempt and every later one).
Failing the first attempt alone (``--fault-mode first``) or any one attempt
(``nth``) only exercises the retry, which succeeds; the other failures of
``__split_vma()`` (the VMA's duplication, the maple tree's preallocation) take other error paths.

Found by the ``faults`` phase (an mremap, whose unmap of the destination splits the VMA).
"""

import errno

from rmapcheck.model.findings import KernelWarning
from rmapcheck.model.vma import validate_mm, vma_iter_prealloc

BASE = "linux-6.18"


def __split_vma(k, vma, addr, new_below):
    """``__split_vma()`` (mm/vma.c, v6.18), freeing twice (the planted defect)."""
    fn = "__split_vma"
    if vma.vm_start >= addr:
        k.warnings.append(KernelWarning(fn, "WARN_ON(vma->vm_start >= addr)"))
    if vma.vm_end <= addr:
        k.warnings.append(KernelWarning(fn, "WARN_ON(vma->vm_end <= addr)"))
    new = k.ops.vm_area_dup(k, vma, fn)
    if new is None:
        return -errno.ENOMEM
    if new_below:
        new.vm_end = addr
    else:
        new.vm_start = addr
        new.vm_pgoff += addr - vma.vm_start
    err = vma_iter_prealloc(k)
    if err:
        k.ops.vm_area_free(k, new, fn)  # out_free_vma
        return err
    err = k.ops.anon_vma_clone(k, new, vma)
    if err:
        k.ops.vm_area_free(k, new, fn)
        k.ops.vm_area_free(k, new, fn)  # the defect: out_free_vma frees it again
        return err
    vp = k.ops.init_multi_vma_prep(k, vma, None)
    vp.insert = new
    k.ops.vma_prepare(k, vp)
    if new_below:
        vma.vm_start = addr
        vma.vm_pgoff += addr - new.vm_start
    else:
        vma.vm_end = addr
    k.ops.vma_complete(k, vp, vma.vm_mm)  # stores the new VMA
    validate_mm(k, vma.vm_mm)
    return 0


REPLACE = {"__split_vma": __split_vma}
