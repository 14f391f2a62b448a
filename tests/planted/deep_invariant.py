"""remove_node_from_stable_tree() counts every dropped rmap_item as sharing.

A stable node's first rmap_item makes its page count in ``ksm_pages_shared``,
each further one in ``ksm_pages_sharing``; ``remove_node_from_stable_tree()``
(mm/ksm.c, v6.18) tells them apart by ``rmap_item->hlist.next`` while it
walks the list. This patch tests the list itself (``!hlist_empty()``, true
for every rmap_item still on it): every rmap_item is counted down from
``ksm_pages_sharing`` and ``ksm_pages_shared`` never is. KSM's counters no
longer match its structures (``check_invariants``, I5 through
``validate_ksm()``).

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
    """``remove_node_from_stable_tree()`` (mm/ksm.c, v6.18), miscounting (the planted defect)."""
    fn = "remove_node_from_stable_tree"
    st = ksm_state_of(k)
    if node.rmap_hlist_len < 0:
        raise KernelBug(fn, "BUG_ON(stable_node->rmap_hlist_len < 0)")
    items = list(node.hlist)
    for i, item in enumerate(items):
        if node.hlist:  # tests the list, not rmap_item->hlist.next
            st.pages_sharing -= 1
        else:
            st.pages_shared -= 1
        item.mm.ksm_merging_pages -= 1
        node.rmap_hlist_len -= 1
        k.ops.put_anon_vma(k, item.anon_vma, fn)
        item.flags = 0  # rmap_item->address &= PAGE_MASK
    node.hlist = []
    k.ops.stable_node_dup_del(k, node)
    k.ops.free_stable_node(k, node)


REPLACE = {"remove_node_from_stable_tree": remove_node_from_stable_tree}
