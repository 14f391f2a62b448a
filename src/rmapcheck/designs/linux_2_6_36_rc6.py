"""Design ``linux-2.6.36-rc6``: v2.6.36-rc6, before "ksm: fix page_address_in_vma anon_vma oops" (docs/history.md B5).

Linux kernel commit 21d0d443cdc1 ("rmap: resurrect page_address_in_vma
anon_vma check", v2.6.36-rc1) made ``page_address_in_vma()`` (mm/rmap.c)
compare the roots of the VMA's and the page's anon_vmas:

.. code-block:: c

    if (PageAnon(page)) {
            if (vma->anon_vma->root != page_anon_vma(page)->root)
                    return -EFAULT;

``page_anon_vma()`` is ``NULL`` for a KSM page, and "occasionally KSM, when
enabled on a forked or forking process, will itself call
page_address_in_vma() on a "half-KSM" page left over from an earlier failed
attempt to merge - whose page_anon_vma() is NULL" (Hugh Dickins, "[PATCH]
ksm: fix page_address_in_vma anon_vma oops", 2010-10-02, against
2.6.36-rc6, in v2.6.36): a NULL pointer dereference in
``write_protect_page()``. The fix tests ``!vma->anon_vma ||
!page__anon_vma`` first.

BASE is :mod:`rmapcheck.designs.linux_2_6_36` (the release, which carries the
fix); this design reverts the fix, so the one function that differs is
``page_address_in_vma``. Everything else of -rc6 that the model runs is the
release's (f18194275c39, the fix of B4, went in at -rc3).
"""

from __future__ import annotations

from typing import Any

from rmapcheck.designs import linux_2_6_36
from rmapcheck.model.findings import KernelBug
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.mm_types import anon_vma, folio, vm_area_struct
from rmapcheck.model.rmap import vma_address
from rmapcheck.model.slab import kasan_check

__all__ = ["BASE", "REPLACE", "page_address_in_vma"]

BASE = "linux-2.6.36"


def page_address_in_vma(k: Kernel, f: folio, vma: vm_area_struct) -> int | None:
    """``page_address_in_vma()`` (mm/rmap.c, v2.6.36-rc1 to -rc6, after 21d0d443cdc1).

    ``if (vma->anon_vma->root != page_anon_vma(page)->root) return -EFAULT;``
    with neither pointer tested: ``page_anon_vma()`` of a KSM page (a
    half-KSM page left by a failed merge, with a ``NULL`` stable node,
    included) is ``NULL``.

    :returns: the address (a page number), or ``NULL`` (``-EFAULT``).
    """
    fn = "page_address_in_vma"
    page_av = f.mapping if (not f.ksm and isinstance(f.mapping, anon_vma)) else None  # page_anon_vma()
    if vma.anon_vma is None:
        raise KernelBug(fn, f"NULL pointer dereference: vma->anon_vma of {vma.kname()}")
    if page_av is None:
        raise KernelBug(fn, f"NULL pointer dereference: page_anon_vma(page) of {'KSM ' if f.ksm else ''}"
                            f"page {f.pfn()}")
    kasan_check(vma.anon_vma, fn)
    kasan_check(page_av, fn)
    if vma.anon_vma.root is not page_av.root:
        return None
    return vma_address(vma, f.index)


REPLACE: dict[str, Any] = {"page_address_in_vma": page_address_in_vma}

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "B5",
        "title": "KSM's page_address_in_vma() on a half-KSM page: NULL anon_vma",
        "fixed": "linux-2.6.36",
        # a parent and a child share two written pages (--forked); a page
        # isolated for migration keeps KSM's second merge from write-protecting
        # it, and break_cow() leaves the first page half-KSM in the child
        "args": ("--processes", "2", "--pages", "2", "--mergeable", "--forked", "--ops",
                 "write,exit,ksm_scan,migrate", "--depth", "6", "--no-rcu-windows"),
        "property": "vm-bug-on",
        "tuned": "RCU windows closed: with them open linux-2.6.36, the fixed side, shows B6 at these bounds",
        "fast": True,
    },
)

#: Bundled scenarios whose outcome on this design differs from linux-6.18's:
#: its base's (every bundled scenario was run on both and compared step by
#: step; the change of this design shows in none).
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = dict(linux_2_6_36.SCENARIO_DIFFERS)
