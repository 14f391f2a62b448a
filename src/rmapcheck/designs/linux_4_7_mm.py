"""Design ``linux-4.7-mm``: 4.7-rc7-mm1 with the KSM patch Hugh Dickins NAKed in July 2016.

zhouxianrong's "[PATCH] ksm: set anon_vma of first rmap_item of ksm page to
page's anon_vma other than vma's anon_vma" (23 June 2016, carried in mmotm,
dropped after Hugh Dickins' NAK of 19 July 2016, Message-ID
<alpine.LSU.2.11.1607191602590.5225@eggly.anvils>) recorded in the first
rmap_item of a new KSM page the anon_vma of the page, so that the KSM rmap
walk would find the VMAs forked from it (mm/ksm.c)::

    err = try_to_merge_one_page(vma, page, kpage, &anon_vma);
    ...
    /* Must get reference to anon_vma while still holding mmap_sem */
    if (anon_vma != NULL)
            rmap_item->anon_vma = anon_vma;
    else
            rmap_item->anon_vma = vma->anon_vma;
    get_anon_vma(vma->anon_vma);

``try_to_merge_one_page()`` set ``*anon_vma = page_anon_vma(page)`` only
where it upgrades the page itself to a KSM page (``kpage`` ``NULL``). The
reference is still taken on ``vma->anon_vma``, and
``remove_rmap_item_from_tree()`` later puts ``rmap_item->anon_vma``: a get
on one anon_vma and a put on another whenever the page was filed under an
ancestor's anon_vma (a page a child has not copied yet). Hugh, on 4.7-rc7-mm1
with KSM under swapping load: ``VM_WARN_ON(anon_vma->degree)`` in
``unlink_anon_vmas()``, "cache `anon_vma': double free detected", and
``kernel BUG at mm/migrate.c:1019!`` (docs/history.md B14). The patch's
other hunk, returning early from ``cmp_and_merge_page()`` for a forked KSM
page, is not modelled: it changes which rmap_items reach the stable tree, not
what they pin.

BASE is ``linux-6.0`` (the ``degree`` reuse rule of 2016; KSM is v6.18's).
Replaced: ``try_to_merge_with_ksm_page()``, which takes the snapshot before
calling ``try_to_merge_one_page()``, as Hugh suggested the patch do ("just to
take a snapshot of page_anon_vma(page) before calling it"); the fixed design
is ``linux-6.0``.
"""

from __future__ import annotations

import errno
from typing import Any

from rmapcheck.designs import linux_6_0
from rmapcheck.model.findings import KernelBug
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.ksm import ksm_rmap_item
from rmapcheck.model.mm_types import anon_vma, folio

__all__ = ["BASE", "HISTORY", "REPLACE", "SCENARIO_DIFFERS", "try_to_merge_with_ksm_page"]

BASE = "linux-6.0"


def try_to_merge_with_ksm_page(k: Kernel, item: ksm_rmap_item, page: folio, kpage: folio | None) -> int:
    """``try_to_merge_with_ksm_page()`` (mm/ksm.c, 4.7-rc7-mm1 with the patch): pin one anon_vma, record another.

    :returns: 0 if merged, ``-EFAULT`` otherwise.
    """
    fn = "try_to_merge_with_ksm_page"
    if item.mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug(fn, "NULL pointer dereference: item.mm")
    vma = k.ops.find_mergeable_vma(k, item.mm, item.address)
    if vma is None:
        return -errno.EFAULT
    # *anon_vma = page_anon_vma(page), where the page becomes the KSM page
    page_av = page.mapping if kpage is None and isinstance(page.mapping, anon_vma) else None
    err = k.ops.try_to_merge_one_page(k, vma, page, kpage)
    if err:
        return err
    # Unstable nid is in union with stable anon_vma: remove first
    k.ops.remove_rmap_item_from_tree(k, item)
    if vma.anon_vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug(fn, "NULL pointer dereference: vma.anon_vma")
    # Must get reference to anon_vma while still holding mmap_sem
    item.anon_vma = page_av if page_av is not None else vma.anon_vma
    k.ops.get_anon_vma(k, vma.anon_vma, fn)
    return 0


REPLACE: dict[str, Any] = {"try_to_merge_with_ksm_page": try_to_merge_with_ksm_page}

#: Catalog rows this design is the buggy side of (``rmapcheck history``).
HISTORY = (
    {
        "bug": "B14",
        "title": "KSM pins vma->anon_vma but records the page's anon_vma (mmotm, July 2016)",
        "fixed": "linux-6.0",
        # a parent writes, forks and writes again (copy-on-write): the
        # child's page stays filed under the parent's anon_vma; ksmd merges
        "args": ("--processes", "2", "--pages", "1", "--mergeable", "--ops", "write,fork,exit,ksm_scan",
                 "--depth", "6"),
        "property": "invariant",
        "tuned": "",
        "fast": True,
    },
)

#: Bundled scenarios whose outcome on this design differs from linux-6.18's (those of its base:
#: no bundled KSM scenario merges a page filed under another anon_vma than its VMA's).
SCENARIO_DIFFERS: dict[str, tuple[str, str]] = dict(linux_6_0.SCENARIO_DIFFERS)
