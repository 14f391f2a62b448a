"""Design ``linux-6.1``: Jann Horn's fix of CVE-2022-42703, 2555283eb40d, on ``linux-6.0``.

Linux kernel commit 2555283eb40d ("mm/rmap: Fix anon_vma->degree ambiguity
leading to double-reuse", v6.1-rc, backported to stable down to 4.9) replaced
``degree`` by ``num_children`` (anon_vmas whose ``parent`` is this one, a new
root counting itself) and ``num_active_vmas`` (VMAs whose ``anon_vma`` is
this one), and reuses on fork only "if it has no vma and only one anon_vma
child" (mm/rmap.c, v6.1, ``anon_vma_clone()``)::

    if (!dst->anon_vma && src->anon_vma &&
        anon_vma->num_children < 2 &&
        anon_vma->num_active_vmas == 0)
            dst->anon_vma = anon_vma;

BASE is ``linux-6.0``; the one function replaced is the reuse test, back to
the model's (:func:`rmapcheck.model.rmap.anon_vma_reusable`, unchanged in
substance from v6.1 to v6.18). The counters themselves need no replacement:
the model keeps v6.18's two, and ``degree`` counted exactly their sum (see
``linux-6.18-degree``). So this design behaves as ``linux-6.15`` does: the
anon_vma code of v6.1 with the merge rule that lasted until v6.16
(docs/history.md S11).
"""

from __future__ import annotations

from typing import Any

from rmapcheck.designs.linux_6_15 import SCENARIO_DIFFERS
from rmapcheck.model.rmap import anon_vma_reusable

__all__ = ["BASE", "REPLACE", "SCENARIO_DIFFERS", "anon_vma_reusable"]

BASE = "linux-6.0"

REPLACE: dict[str, Any] = {"anon_vma_reusable": anon_vma_reusable}

# SCENARIO_DIFFERS (imported): linux-6.15's, the merge rule before 879bca0a2c4f.
