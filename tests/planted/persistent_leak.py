"""copy_vma() returns without freeing the new VMA when anon_vma_clone() fails.

``copy_vma()`` (mm/vma.c, v6.18), which sets up the destination VMA of an
``mremap()`` move, frees the VMA it duplicated when ``anon_vma_clone()``
fails (``out_free_mempol``, ``out_free_vma``). This patch returns NULL
there without the free: nothing references the ``vm_area_struct`` any
more, and kmemleak reports it (``check_invariants``).

Why a persistent failure: ``anon_vma_clone()`` fails only when both
attempts for one chain entry fail (``GFP_NOWAIT``, then ``GFP_KERNEL``
after dropping the root's lock), that is with
``fail=anon_vma_chain_alloc@N*`` (the N-th attempt and every later one).
Failing the first attempt alone (``--fault-mode first``) or any one attempt
(``nth``) only exercises the retry, which succeeds; the other failures of
``copy_vma()`` (the VMA's duplication, the maple tree's preallocation) take other error paths.

Found by the ``faults`` phase (an mremap of the child, whose VMA is chained to two anon_vmas).
"""

from rmapcheck.model.findings import KernelBug
from rmapcheck.model.vma import VMG_VMA_STATE, validate_mm, vma_iter_prealloc, vma_set_range
from rmapcheck.model.vma_init import find_vma, find_vma_prev, vma_iter_store

BASE = "linux-6.18"


def copy_vma(k, vma, addr, npages, pgoff):
    """``copy_vma()`` (mm/vma.c, v6.18), leaking on the clone's failure (the planted defect)."""
    fn = "copy_vma"
    vma_start = vma.vm_start
    mm = vma.vm_mm
    faulted_in_anon_vma = True
    vmg = VMG_VMA_STATE(None, vma, addr, addr + npages)
    # If anonymous vma has not yet been faulted, update new pgoff to match new
    # location, to increase its chance of merging.
    if vma.anon_vma is None:
        pgoff = addr
        faulted_in_anon_vma = False
    new_vma, vmg.prev = find_vma_prev(mm, addr)
    if new_vma is not None and new_vma.vm_start < addr + npages:
        return None, vma, False  # should never get here
    vmg.pgoff = pgoff
    vmg.next = find_vma(mm, addr)
    new_vma = k.ops.vma_merge_copied_range(k, vmg)
    if new_vma is not None:
        # Source vma may have been merged into new_vma
        if vma_start >= new_vma.vm_start and vma_start < new_vma.vm_end:
            if faulted_in_anon_vma:
                raise KernelBug(fn, "VM_BUG_ON_VMA(faulted_in_anon_vma, new_vma)")
            vma = new_vma
        return new_vma, vma, new_vma.vm_pgoff <= vma.vm_pgoff
    new_vma = k.ops.vm_area_dup(k, vma, fn)
    if new_vma is None:
        return None, vma, False
    vma_set_range(new_vma, addr, addr + npages, pgoff)
    if k.ops.anon_vma_clone(k, new_vma, vma):
        return None, vma, False  # the defect: no vm_area_free(new_vma)
    if vma_iter_prealloc(k):
        k.ops.unlink_anon_vmas(k, new_vma)  # out_vma_link
        k.ops.vm_area_free(k, new_vma, fn)
        return None, vma, False
    vma_iter_store(mm, new_vma)
    validate_mm(k, mm)
    return new_vma, vma, False


REPLACE = {"copy_vma": copy_vma}
