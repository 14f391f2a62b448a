"""rmap_walk_ksm() without its second pass: processes forked since ksmd passed are never walked.

``rmap_walk_ksm()`` (mm/ksm.c, v6.18) walks the anon_vma of each rmap_item of
a KSM folio's stable node twice: first the VMA of the rmap_item's own mm,
then ("search_new_forks") the VMAs of other mms: "Initially we examine only
the vma which covers this rmap_item; but later, if there is still work to
do, we examine covering vmas in other mms: in case they were forked from the
original since ksmd passed". This patch drops the second pass as an
optimisation. A child forked after the merge maps the KSM page without an
rmap_item of its own until ksmd scans it, and the walk (reclaim's
``folio_referenced()``, migration's ``try_to_migrate()``) misses it.

Why depth 8 from the empty start: the KSM page takes five actions (write,
fork, a write that breaks COW so that two pages hold the same value, two
scans), the child that maps it without an rmap_item two more (the second
process must exit to make room for it under two processes: exit, fork), and
the walk one (``reclaim_start``). Found by the ``ksm-fork`` phase.
"""

from rmapcheck.model.findings import KernelBug
from rmapcheck.model.slab import kasan_check

BASE = "linux-6.18"


def rmap_walk_ksm(k, f, rmap_one, locked=False):
    """``rmap_walk_ksm()`` (mm/ksm.c, v6.18) with only the first pass (the planted defect)."""
    fn = "rmap_walk_ksm"
    kasan_check(f, fn)
    if not f.ksm:
        raise KernelBug(fn, "VM_BUG_ON_FOLIO(!folio_test_ksm(folio), folio)")
    if not f.locked:
        raise KernelBug(fn, "VM_BUG_ON_FOLIO(!folio_test_locked(folio), folio)")
    node = f.stable_node
    if node is None:
        return
    kasan_check(node, fn)
    for item in list(node.hlist):
        av = item.anon_vma
        k.ops.anon_vma_lock_read(k, av, fn)
        try:
            for avc in list(av.rb_root):
                vma = avc.vma
                kasan_check(vma, fn)
                addr = item.address
                if addr < vma.vm_start or addr >= vma.vm_end:
                    continue
                if item.mm is not vma.vm_mm:
                    continue  # the second pass, which looks at the other mms, is gone
                if rmap_one(vma, addr) is False:
                    return
        finally:
            k.ops.anon_vma_unlock_read(k, av, fn)


REPLACE = {"rmap_walk_ksm": rmap_walk_ksm}
