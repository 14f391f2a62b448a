"""Design ``linux-3.18``: ``linux-3.16`` with Linux kernel commit c4ea95d7cd08.

"mm: fix anon_vma_clone() error treatment" (Daniel Forrest, posted 26
November 2014): "I did an audit of callers of anon_vma_clone() and
discovered an actual bug where the error return was being lost. In
__split_vma(), between Linux 3.11 and 3.12 the code was changed so the err
variable is used before the call to anon_vma_clone() and the default
initial value of -ENOMEM is overwritten. So a failure of anon_vma_clone()
will return success since err at this point is now zero." The patch also
passes the clone's error on in ``vma_adjust()`` and ``anon_vma_fork()``,
which returned ``-ENOMEM`` already (docs/history.md B11).

The diff against :mod:`rmapcheck.designs.linux_3_16`: ``__split_vma()``
(mm/mmap.c) does ``err = anon_vma_clone(new, vma); if (err) goto
out_free_mpol;``, as v6.18's ``__split_vma()`` (mm/vma.c) still does. The
last design before ``degree`` (7a3ef208e662, ``linux-3.19-rc``).
"""

from __future__ import annotations

from typing import Any

from rmapcheck.model.vma import __split_vma

__all__ = ["BASE", "REPLACE", "SCENARIO_DIFFERS"]

BASE = "linux-3.16"

REPLACE: dict[str, Any] = {"__split_vma": __split_vma}

#: Bundled scenarios whose outcome on this design differs from linux-6.18's.
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = {}
