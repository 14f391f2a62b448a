"""stable_node_dup_del() frees the node it unlinks, and remove_node_from_stable_tree() frees it again.

``stable_node_dup_del()`` (mm/ksm.c, v6.18) takes a stable node out of the
stable tree (``rb_erase()``), or a dup out of its chain; its callers free the
node afterwards when they mean to (``remove_node_from_stable_tree()`` calls
``free_stable_node()``). This patch makes ``stable_node_dup_del()`` free the
node itself, as a cleanup for one of its callers, and misses that
``remove_node_from_stable_tree()`` still frees it: a double free of the
``ksm_stable_node`` when ksmd drops a stale node.

Why depth 8 from the empty start: ksmd drops a stable node only once it finds
it stale, after the KSM page it points to was freed. The merge takes five
actions (write, fork, a write that breaks COW so that two pages hold the same
value, two scans), freeing the KSM page two more (both of its mappings go),
and the scan that finds the node stale one: ``stable_node_dup_del()`` runs
for the first time at the eighth action. Found by the ``ksm-fork`` phase.
"""

from rmapcheck.model import ksm

BASE = "linux-6.18"


def stable_node_dup_del(k, dup):
    """``stable_node_dup_del()`` (mm/ksm.c, v6.18) that also frees the node (the planted defect)."""
    ksm.stable_node_dup_del(k, dup)
    k.ops.free_stable_node(k, dup)


REPLACE = {"stable_node_dup_del": stable_node_dup_del}
