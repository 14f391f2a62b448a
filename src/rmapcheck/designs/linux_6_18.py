"""Design ``linux-6.18``: the running kernel (v6.18), the ground truth of the live tests."""

from __future__ import annotations

from typing import Any, Callable

from rmapcheck.model.fork import FORK_OPS
from rmapcheck.model.invariants import INVARIANT_OPS
from rmapcheck.model.ksm import KSM_CONFIG, KSM_OPS
from rmapcheck.model.madvise import MADVISE_OPS
from rmapcheck.model.memory import MEMORY_OPS
from rmapcheck.model.migrate import MIGRATE_OPS, with_migration_refs
from rmapcheck.model.mmap import MMAP_OPS
from rmapcheck.model.mprotect import MPROTECT_OPS
from rmapcheck.model.mremap import MREMAP_OPS
from rmapcheck.model.rmap import RMAP_OPS
from rmapcheck.model.vma import VMA_OPS
from rmapcheck.model.vmscan import VMSCAN_OPS

__all__ = ["CONFIG", "OPS"]

OPS: dict[str, Callable[..., Any]] = {
    **RMAP_OPS, **MEMORY_OPS, **FORK_OPS, **INVARIANT_OPS,
    **VMA_OPS, **MMAP_OPS, **MPROTECT_OPS, **MREMAP_OPS, **MADVISE_OPS,
    # KSM last: it wraps v6.18's zap_vma_range, do_wp_page and mprotect_fixup.
    **KSM_OPS,
}
# Page migration and reclaim walks; in-flight migrations' references count for the invariants.
OPS = with_migration_refs({**OPS, **MIGRATE_OPS, **VMSCAN_OPS})

CONFIG: dict[str, Any] = {
    "CONFIG_KSM": True,
    "CONFIG_MIGRATION": True,
    "sysctl_max_map_count": 65530,
    # /sys/kernel/mm/ksm at boot (mm/ksm.c, v6.18)
    **KSM_CONFIG,
}
