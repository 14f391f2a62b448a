"""Design ``linux-6.0``: the anon_vma reuse rule of v3.19 to v6.0 (``degree``), with v6.15's merge rule.

Linux kernel commit 7a3ef208e662 ("mm: prevent endless growth of anon_vma
hierarchy", v3.19) reused an anon_vma on fork when its ``degree`` (VMAs plus
child anon_vmas) was below two; Jann Horn's 2555283eb40d ("mm/rmap: Fix
anon_vma->degree ambiguity leading to double-reuse", v6.1, CVE-2022-42703)
split the counter because "it is possible to reuse an anon_vma for one VMA
while it is still tied to another VMA" (docs/history.md S9, S11, B16).

BASE is ``linux-6.15``: v6.0 had the merge rule of 965f55dea0e3 (refused
until 879bca0a2c4f, v6.16), which ``linux-6.15`` has, and none of the 2026
mremap code. The one function replaced is the reuse test of
``anon_vma_clone()`` (mm/rmap.c, v6.0)::

    if (!dst->anon_vma && src->anon_vma &&
        anon_vma != src->anon_vma && anon_vma->degree < 2)
            dst->anon_vma = anon_vma;

It is the test of ``linux-6.18-degree`` ("v6.18 with 2555283eb40d
reverted"), which keeps v6.18's merge rule; this design is the same revert
on the merge rule v6.0 had. The VMA and folio code around it is today's, not
v6.0's: this is "v6.15 with 2555283eb40d reverted".

From the empty start the checker's hunting strategy finds CVE-2022-42703
here (HISTORY below); ``linux-6.1`` is clean at the same arguments.
"""

from __future__ import annotations

from typing import Any

from rmapcheck.designs import linux_6_15
from rmapcheck.designs.linux_6_18_degree import anon_vma_reusable

__all__ = ["BASE", "HISTORY", "REPLACE", "SCENARIO_DIFFERS", "anon_vma_reusable"]

BASE = "linux-6.15"

REPLACE: dict[str, Any] = {"anon_vma_reusable": anon_vma_reusable}

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "B16",
        "title": "CVE-2022-42703: degree ambiguity, an anon_vma reused twice (7a3ef208e662 to 2555283eb40d)",
        "fixed": "linux-6.1",
        # from the empty start; one worker and a fixed seed make the walks,
        # the finding and its shrunk trace the same on every run (the
        # finding comes after some 2,000 states, under a second); the fixed
        # design is hunted for the whole budget
        "args": ("--processes", "6", "--ops", "write,fork,exit,mprotect", "--strategy", "hunt", "--first",
                 "--seed", "1", "--workers", "1", "--budget", "10"),
        "property": "invariant",
        "tuned": "",
        "fast": True,
    },
)

_DEGREE = "the degree reuse of 7a3ef208e662 (v3.19) reuses an anon_vma twice, fixed by 2555283eb40d (v6.1)"

#: Bundled scenarios whose outcome on this design differs from linux-6.18's.
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = {
    **linux_6_15.SCENARIO_DIFFERS,
    "anon-vma-double-reuse": ("invariant", _DEGREE),
    "fork-g3-double-reuse": ("maps", _DEGREE),
}
