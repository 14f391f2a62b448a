"""copy_vma() goes on without the anon_vma chain when anon_vma_clone() fails and no page looks mapped.

``copy_vma()`` (mm/vma.c, v6.18) sets up the destination VMA of an
``mremap()`` move; when ``anon_vma_clone()`` fails it frees the new VMA and
the move fails with ``-ENOMEM``. This patch wants a move to succeed under
memory pressure when it can: a VMA that was never faulted needs no anon_vma
(``copy_vma()`` itself copies such a VMA without one, and
``anon_vma_prepare()`` gives it one at its first fault), so when the clone
fails and no page of the moved range is mapped (``pte_present()`` of each
PTE), it goes on with the copy as an unfaulted one: ``anon_vma_clone()``'s
unwind has left it no anon_vma and an empty chain. A page under migration is
mapped all the same, through a migration entry, which is not present: the
entry moves into a VMA on no anon_vma's chain, ``remove_migration_ptes()``
walks the folio's anon_vma and does not find it, and the entry is left
behind for a fault to wait on a freed page (migrations make such entries
all the time: compaction, NUMA balancing, ``move_pages()``).

Why a persistent failure: ``anon_vma_clone()`` allocates each chain entry
with ``GFP_NOWAIT`` and, once that fails, drops the root's lock and retries
with ``GFP_KERNEL``; it fails only when both attempts for one entry fail,
``fail=anon_vma_chain_alloc@N*`` (the N-th attempt and every later one).
Failing the first attempt alone (``--fault-mode first``) or any one attempt
(``nth``) only exercises the retry, which succeeds; ``copy_vma()``'s other
failures (the VMA's duplication, the maple tree's preallocation) take other
error paths. With a present page in the range the patch fails the move as
before, so the bug needs the move to fall between a migration's unmap and
its remap.

Found by the ``migration-faults`` phase: a page shared by a parent and a
child migrates; between the unmap and the remap one of them moves it to a
second region with the clone failing, and its write there waits for the
migration, whose remap misses the entry (four actions from the forked
start).
"""

from rmapcheck.model.findings import KernelBug
from rmapcheck.model.mm_types import folio
from rmapcheck.model.vma import VMG_VMA_STATE, validate_mm, vma_iter_prealloc, vma_set_range
from rmapcheck.model.vma_init import find_vma, find_vma_prev, vma_iter_store

BASE = "linux-6.18"


def range_mapped(mm, start, npages):
    """Whether a PTE of ``[start, start + npages)`` is present (``pte_present()``), as the patch asks."""
    for vpn in range(start, start + npages):
        pte = mm.pgtable.get(vpn)
        if pte is not None and isinstance(pte[0], folio):
            return True
    return False


def copy_vma(k, vma, addr, npages, pgoff):
    """``copy_vma()`` (mm/vma.c, v6.18) with an unfaulted fallback on the clone's failure (the planted defect)."""
    fn = "copy_vma"
    vma_start = vma.vm_start
    mm = vma.vm_mm
    faulted_in_anon_vma = True
    vmg = VMG_VMA_STATE(None, vma, addr, addr + npages)
    old_addr = vma.vm_start + pgoff - vma.vm_pgoff
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
        if range_mapped(mm, old_addr, npages):
            k.ops.vm_area_free(k, new_vma, fn)  # out_free_mempol / out_free_vma
            return None, vma, False
        # the defect: "nothing faulted in the range: the copy needs no
        # anon_vma", but a migration entry is a mapping that is not present
    if vma_iter_prealloc(k):
        k.ops.unlink_anon_vmas(k, new_vma)  # out_vma_link
        k.ops.vm_area_free(k, new_vma, fn)
        return None, vma, False
    vma_iter_store(mm, new_vma)
    validate_mm(k, mm)
    return new_vma, vma, False


REPLACE = {"copy_vma": copy_vma}
