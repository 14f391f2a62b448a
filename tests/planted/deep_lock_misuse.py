"""rmap_walk_ksm() skips the rmap_items of exited mms in its second pass, with their anon_vma still locked.

``rmap_walk_ksm()`` (mm/ksm.c, v6.18) read-locks each rmap_item's anon_vma
and, in its second pass ("search_new_forks"), looks for VMAs of mms forked
since ksmd passed. This patch adds a shortcut to that pass: an rmap_item
whose mm has exited (ksmd has not removed it yet) cannot have forked
children since, so it is skipped. The ``continue`` comes after
``anon_vma_lock_read()``: the read lock is never dropped, and the root's
rwsem stays held on return to user space (lock-misuse, found by
``check_invariants``: I4).

Why depth 8 from the empty start: the second pass runs only when the first
one did not reach every mapping, that is for a KSM page mapped by a process
forked after the merge; the merge takes five actions (write, fork, a write
that breaks COW, two scans), the rmap_item of an exited mm and the child
forked after the merge two (exit, fork: two processes at most), and the
walk one (``reclaim_start``). Found by the ``ksm-fork`` phase.
"""

from rmapcheck.model.findings import KernelBug
from rmapcheck.model.slab import kasan_check

BASE = "linux-6.18"


def rmap_walk_ksm(k, f, rmap_one, locked=False):
    """``rmap_walk_ksm()`` (mm/ksm.c, v6.18) whose second pass skips exited mms without unlocking."""
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
    for search_new_forks in (False, True):
        for item in list(node.hlist):
            av = item.anon_vma
            k.ops.anon_vma_lock_read(k, av, fn)
            if search_new_forks and not item.mm.mm_users:
                continue  # the defect: an exited mm forks no more, but the lock is still held
            for avc in list(av.rb_root):
                vma = avc.vma
                kasan_check(vma, fn)
                addr = item.address
                if addr < vma.vm_start or addr >= vma.vm_end:
                    continue
                if (item.mm is vma.vm_mm) == search_new_forks:
                    continue
                if rmap_one(vma, addr) is False:
                    k.ops.anon_vma_unlock_read(k, av, fn)
                    return
            k.ops.anon_vma_unlock_read(k, av, fn)


REPLACE = {"rmap_walk_ksm": rmap_walk_ksm}
