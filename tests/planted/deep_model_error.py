"""A design whose free_stable_node() reads a field the model's stable node does not have.

``model-error`` is a Python exception raised in a kernel function: a bug of
the model or of a design file, not of the kernel. This design adds a check
to ``free_stable_node()`` (mm/ksm.c, v6.18), as a patch might add
``VM_WARN_ON(stable_node->rmap_hlist_len)``, and misspells the field: the
line runs only when ksmd frees a stable node, so nothing but a run that
gets there shows the ``AttributeError``.

Why depth 8 from the empty start: ksmd frees a stable node only once it finds
it stale, after the KSM page it points to was freed. The merge takes five
actions (write, fork, a write that breaks COW so that two pages hold the same
value, two scans), freeing the KSM page two more (both of its mappings go),
and the scan that finds the node stale one: ``free_stable_node()`` runs for
the first time at the eighth action. Found by the ``ksm-fork`` phase.
"""

from rmapcheck.model import ksm
from rmapcheck.model.findings import KernelWarning

BASE = "linux-6.18"


def free_stable_node(k, node):
    """``free_stable_node()`` (mm/ksm.c, v6.18) with an added check, misspelt (the planted defect)."""
    if node.rmap_hlist_length > 0:  # the defect: the field is rmap_hlist_len
        k.warnings.append(KernelWarning("free_stable_node", "VM_WARN_ON(stable_node->rmap_hlist_len)"))
    ksm.free_stable_node(k, node)


REPLACE = {"free_stable_node": free_stable_node}
