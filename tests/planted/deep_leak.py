"""remove_node_from_stable_tree() drops each rmap_item's anon_vma reference with atomic_dec().

Each rmap_item of a stable node pins the anon_vma it was merged under
(``get_anon_vma()`` in ``try_to_merge_with_ksm_page()``), and
``remove_node_from_stable_tree()`` (mm/ksm.c, v6.18) drops that pin with
``put_anon_vma()``. This patch drops it with a bare ``atomic_dec()`` of the
refcount: when the rmap_item's pin was the last reference (its process has
exited, so no VMA links the anon_vma any more), the count reaches zero and
nothing frees the anon_vma: kmemleak reports it (``check_invariants``).

Why depth 8 from the empty start: ksmd drops a stable node only once it finds
it stale, after the KSM page it points to was freed. The merge takes five
actions (write, fork, a write that breaks COW so that two pages hold the same
value, two scans), freeing the KSM page two more (both of its mappings go: two
COW breaks, or one and an exit), and the scan that finds the node stale one:
``remove_node_from_stable_tree()`` runs for the first time at the eighth
action. Found by the ``ksm-fork`` phase.

The leak needs the exit: with both processes alive the count never reaches
zero here.
"""

from rmapcheck.model.findings import KernelBug
from rmapcheck.model.ksm import ksm_state_of

BASE = "linux-6.18"


def remove_node_from_stable_tree(k, node):
    """``remove_node_from_stable_tree()`` (mm/ksm.c, v6.18), with ``atomic_dec()`` (the planted defect)."""
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
        # the defect: atomic_dec(&anon_vma->refcount), no __put_anon_vma() at zero
        item.anon_vma.refcount -= 1
        item.flags = 0  # rmap_item->address &= PAGE_MASK
    node.hlist = []
    k.ops.stable_node_dup_del(k, node)
    k.ops.free_stable_node(k, node)


REPLACE = {"remove_node_from_stable_tree": remove_node_from_stable_tree}
