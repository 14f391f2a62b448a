"""remove_node_from_stable_tree() frees a stale stable node without erasing it from the stable tree.

``remove_node_from_stable_tree()`` (mm/ksm.c, v6.18) ends with
``stable_node_dup_del()`` (``rb_erase()`` of a regular node) and
``free_stable_node()``. This patch loses the erase: the freed node stays in
the stable tree, and ksmd's next lookup in the tree (the same scan goes on
to the next page) reads it: a use-after-free of the ``ksm_stable_node``,
reported in ``ksm_get_folio()``.

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
    """``remove_node_from_stable_tree()`` (mm/ksm.c, v6.18), without the erase (the planted defect)."""
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
        k.ops.put_anon_vma(k, item.anon_vma, fn)
        item.flags = 0  # rmap_item->address &= PAGE_MASK
    node.hlist = []
    # the defect: no stable_node_dup_del(): the node stays in the stable tree
    k.ops.free_stable_node(k, node)


REPLACE = {"remove_node_from_stable_tree": remove_node_from_stable_tree}
