"""remove_node_from_stable_tree() forgets to count down rmap_hlist_len for the last rmap_item.

``remove_node_from_stable_tree()`` (mm/ksm.c, v6.18) counts each rmap_item
it drops off the node (``stable_node->rmap_hlist_len--``) and
``free_stable_node()`` then checks the node is empty:
``VM_BUG_ON(stable_node->rmap_hlist_len && !is_stable_node_chain(stable_node))``.
This patch moves the decrement under the ``rmap_item->hlist.next`` test it
shares a branch with (the one that tells ``ksm_pages_sharing`` from
``ksm_pages_shared``), so the last rmap_item is not counted: an off-by-one
that ``free_stable_node()``'s ``VM_BUG_ON`` catches.

Why depth 8 from the empty start: ksmd drops a stable node only once it finds
it stale, after the KSM page it points to was freed. The merge takes five
actions (write, fork, a write that breaks COW so that two pages hold the same
value, two scans), freeing the KSM page two more (both of its mappings go: two
COW breaks, or one and an exit), and the scan that finds the node stale one:
``remove_node_from_stable_tree()`` runs for the first time at the eighth
action. Found by the ``ksm-fork`` phase.
"""

from rmapcheck.model.findings import KernelBug
from rmapcheck.model.ksm import ksm_state_of

BASE = "linux-6.18"


def remove_node_from_stable_tree(k, node):
    """``remove_node_from_stable_tree()`` (mm/ksm.c, v6.18), off by one (the planted defect)."""
    fn = "remove_node_from_stable_tree"
    st = ksm_state_of(k)
    if node.rmap_hlist_len < 0:
        raise KernelBug(fn, "BUG_ON(stable_node->rmap_hlist_len < 0)")
    items = list(node.hlist)
    for i, item in enumerate(items):
        if i + 1 < len(items):  # rmap_item->hlist.next
            st.pages_sharing -= 1
            node.rmap_hlist_len -= 1  # the defect: not for the last rmap_item
        else:
            st.pages_shared -= 1
        item.mm.ksm_merging_pages -= 1
        k.ops.put_anon_vma(k, item.anon_vma, fn)
        item.flags = 0  # rmap_item->address &= PAGE_MASK
    node.hlist = []
    k.ops.stable_node_dup_del(k, node)
    k.ops.free_stable_node(k, node)


REPLACE = {"remove_node_from_stable_tree": remove_node_from_stable_tree}
