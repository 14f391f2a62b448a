"""Design ``linux-6.18.0``: v6.18 as released, before the January 2026 mremap fix.

"mm/vma: fix anon_vma UAF on mremap() faulted, unfaulted merge" (Cc: stable,
carried by the live 6.18.44 kernel and by design ``linux-6.18``) adds
``vmg->copied_from``. Without it, an mremap() that moves a faulted VMA next to
an unfaulted one with contiguous ``vm_pgoff`` merges them into a VMA that has
no anon_vma while the moved folios still point to the source's anon_vma
(docs/history.md: the 2026 mremap use-after-free). The diff against
:mod:`rmapcheck.designs.linux_6_18`: ``copy_vma()``.
"""

from __future__ import annotations

from typing import Any

from rmapcheck.designs.linux_6_18 import CONFIG as LINUX_6_18_CONFIG
from rmapcheck.designs.linux_6_18 import OPS as LINUX_6_18
from rmapcheck.model.vma import VMA_OPS_V6_18_0

__all__ = ["CONFIG", "OPS"]

OPS: dict[str, Any] = {**LINUX_6_18, **VMA_OPS_V6_18_0}

CONFIG: dict[str, Any] = dict(LINUX_6_18_CONFIG)
