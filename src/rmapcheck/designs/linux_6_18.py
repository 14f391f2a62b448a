"""Design ``linux-6.18``: the running kernel (v6.18), the ground truth of the live tests.

The root of every other design: ``FUNCTIONS`` are the plain kernel functions
of the model's modules, ``LAYERS`` the wrappers that KSM and in-flight
migrations put around some of them, applied over whatever a design based on
this one puts in their place.
"""

from __future__ import annotations

from typing import Any, Callable

from rmapcheck.model.fork import FORK_OPS
from rmapcheck.model.gup import GUP_OPS
from rmapcheck.model.invariants import INVARIANT_OPS
from rmapcheck.model.kernel import Layer, resolve_ops
from rmapcheck.model.ksm import KSM_CONFIG, KSM_LAYER, KSM_OPS
from rmapcheck.model.madvise import MADVISE_OPS
from rmapcheck.model.memory import MEMORY_OPS
from rmapcheck.model.migrate import MIGRATE_OPS, MIGRATION_REFS_LAYER
from rmapcheck.model.mmap import MMAP_OPS
from rmapcheck.model.mprotect import MPROTECT_OPS
from rmapcheck.model.mremap import MREMAP_OPS
from rmapcheck.model.rmap import RMAP_OPS
from rmapcheck.model.vma import VMA_OPS
from rmapcheck.model.vma_init import VMA_INIT_OPS
from rmapcheck.model.vmscan import VMSCAN_OPS

__all__ = ["CONFIG", "FUNCTIONS", "LAYERS", "OPS"]

FUNCTIONS: dict[str, Callable[..., Any]] = {
    **RMAP_OPS, **MEMORY_OPS, **FORK_OPS, **INVARIANT_OPS,
    **VMA_INIT_OPS, **VMA_OPS, **MMAP_OPS, **MPROTECT_OPS, **MREMAP_OPS, **MADVISE_OPS, **GUP_OPS,
    # KSM's own functions replace fork's and the invariants' no-KSM hooks.
    **KSM_OPS,
    # Page migration and reclaim walks.
    **MIGRATE_OPS, **VMSCAN_OPS,
}

LAYERS: tuple[Layer, ...] = (
    KSM_LAYER,
    # In-flight migrations' references count for the invariants, over the
    # design's own counting (KSM's included).
    MIGRATION_REFS_LAYER,
)

CONFIG: dict[str, Any] = {
    "CONFIG_KSM": True,
    "CONFIG_MIGRATION": True,
    "sysctl_max_map_count": 65530,
    # /sys/kernel/mm/ksm at boot (mm/ksm.c, v6.18)
    **KSM_CONFIG,
}

#: The resolved table (what ``Kernel.ops`` of this design holds).
OPS: dict[str, Callable[..., Any]] = resolve_ops(FUNCTIONS, LAYERS)
