"""remove_node_from_stable_tree() drops the reference of an anon_vma without VMAs twice.

``unlink_anon_vmas()`` drops an anon_vma's own reference when the last VMA
leaves its interval tree; an rmap_item of KSM may keep it alive past that,
with the pin it took. This patch makes ``remove_node_from_stable_tree()``
(mm/ksm.c, v6.18) also drop "the reference of the emptied tree" of such an
anon_vma before putting the rmap_item's pin, as if ``unlink_anon_vmas()`` had
left it to KSM: the refcount goes from one to zero without the free, and the
rmap_item's ``put_anon_vma()`` takes it below zero (``RefcountUnderflow`` in
``put_anon_vma()``).

Why depth 8 from the empty start: ksmd drops a stable node only once it finds
it stale, after the KSM page it points to was freed. The merge takes five
actions (write, fork, a write that breaks COW so that two pages hold the same
value, two scans), freeing the KSM page two more (both of its mappings go: two
COW breaks, or one and an exit), and the scan that finds the node stale one:
``remove_node_from_stable_tree()`` runs for the first time at the eighth
action. Found by the ``ksm-fork`` phase.

The underflow needs the anon_vma to have no VMA left, so the process that
merged the page must have exited (two COW breaks leave both VMAs linked).
"""

from rmapcheck.model.findings import KernelBug
from rmapcheck.model.ksm import ksm_state_of

BASE = "linux-6.18"


def remove_node_from_stable_tree(k, node):
    """``remove_node_from_stable_tree()`` (mm/ksm.c, v6.18), dropping twice (the planted defect)."""
    fn = "remove_node_from_stable_tree"
    st = ksm_state_of(k)
    if node.rmap_hlist_len < 0:
        raise KernelBug(fn, "BUG_ON(stable_node->rmap_hlist_len < 0)")
    items = list(node.hlist)
    for i, item in enumerate(items):
        if i + 1 < len(items):  # rmap_item->hlist.next
            st.pages_sharing -= 1
        else:
            st.pages_shared -= 1
        item.mm.ksm_merging_pages -= 1
        node.rmap_hlist_len -= 1
        if not item.anon_vma.rb_root:
            # the defect: the emptied tree's reference, which unlink_anon_vmas() dropped already
            item.anon_vma.refcount -= 1
        k.ops.put_anon_vma(k, item.anon_vma, fn)
        item.flags = 0  # rmap_item->address &= PAGE_MASK
    node.hlist = []
    k.ops.stable_node_dup_del(k, node)
    k.ops.free_stable_node(k, node)


REPLACE = {"remove_node_from_stable_tree": remove_node_from_stable_tree}
