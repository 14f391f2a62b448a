"""Kernel samepage merging: ``mm/ksm.c`` and ``include/linux/ksm.h``, v6.18.

KSM's scanner ``ksmd`` walks the mms that asked for merging (``MADV_MERGEABLE``
or ``prctl(PR_SET_MEMORY_MERGE)``), one ``ksm_rmap_item`` per scanned page,
and merges identical pages into write-protected KSM pages ("The stable tree
holds pointers to all the merged pages (ksm pages), sorted by their contents").
The anon_vma side is what this model is for: a merged page's rmap_item pins
``vma->anon_vma`` ("Must get reference to anon_vma while still holding
mmap_lock") until ``remove_rmap_item_from_tree()`` puts it, and
``rmap_walk_ksm()`` finds the mappings of a KSM folio through those anon_vmas,
forks made since ksmd passed included (``search_new_forks``).

What the model reduces, and why the outcome is the kernel's:

* A page's contents are one value (``folio.content``); ``memcmp_pages()``
  equality is equality of that value. ``calc_checksum()`` is ``content + 1``:
  ``kmem_cache_zalloc()`` leaves a fresh rmap_item's ``oldchecksum`` 0, and the
  xxhash32 of a real page practically never is 0, so a page needs two scans
  with unchanged contents before it may enter the unstable tree, as in the
  kernel.
* The stable and unstable rbtrees are dictionaries keyed by contents. A
  scenario runs whole full scans between user steps, so no page changes during
  a scan: every rbtree search finds exactly the node of equal contents, as the
  kernel's does. The kernel's walk also prunes stale stable nodes that merely
  lie on the search path; the model prunes them when their own rmap_items are
  next visited (at the latest in the same full scan), so counters agree at
  every step boundary.
* One NUMA node: ``merge_across_nodes`` can be set but changes nothing, and
  ``migrate_nodes`` stays empty.
* Time does not pass inside a scenario: ``stable_node_chains_prune_millisecs``
  elapses only when it is 0, so ``chain_prune()`` prunes (walks every dup and
  picks the fullest candidate) only then; the live runner sets an hour.
* The stable node keeps a ``kpfn`` (the folio's slot in the page allocator)
  and ``ksm_get_folio()`` checks the keyhole (``folio->mapping ==
  stable_node``) on whatever occupies that slot. Folio locks are taken where
  the kernel takes them; one that in-flight kernel work (a migration, a
  reclaim walk) holds is a :class:`~rmapcheck.model.findings.Deadlock` that
  the model checker turns into a wait (``folio_lock()``).
* A KSM-placed zero page is the kernel's dirty special zero PTE
  (``pte_mkdirty(pte_mkspecial(...))``, ``is_ksm_zero_pte()``): a
  :class:`ksm_zero_pte`, a 2-tuple that compares equal to the plain PTE.

The design table :data:`KSM_OPS` registers the entry points other code calls
through ``k.ops``: ``ksm_madvise``, ``ksm_vma_flags``, ``ksm_fork``,
``ksm_exit``, ``rmap_walk_ksm``, ``folio_migrate_ksm`` and the invariant hooks,
and the functions an older design would replace (``try_to_merge_with_ksm_page``,
which pins the anon_vma, ``remove_rmap_item_from_tree``, which puts it,
``break_cow``, ``cmp_and_merge_page``, ...), which KSM calls through ``k.ops``.
The layer :data:`KSM_LAYER` wraps a design's ``zap_vma_range``, ``do_wp_page``
and ``mprotect_fixup`` for the KSM zero-page accounting
(``ksm_might_unmap_zero_page()``), whichever functions the design has there.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.findings import InvariantViolation, KernelBug, KernelError, KernelWarning
from rmapcheck.model.kernel import Layer
from rmapcheck.model.memory import folio_lock, folio_put, folio_unlock
from rmapcheck.model.mm_types import (
    VM_DONTEXPAND, VM_IO, VM_MAYSHARE, VM_MERGEABLE, VM_MIXEDMAP, VM_PFNMAP, VM_SHARED, ZERO_PAGE,
    anon_vma, folio, mm_struct, vm_area_struct,
)
from rmapcheck.model.slab import SlabObject, kasan_check, kmem_cache
from rmapcheck.model.uapi import MADV_MERGEABLE, MADV_UNMERGEABLE
from rmapcheck.model.vma_init import vma_lookup

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel

__all__ = [
    "KSM_CONFIG",
    "KSM_GET_FOLIO_LOCK",
    "KSM_GET_FOLIO_NOLOCK",
    "KSM_GET_FOLIO_TRYLOCK",
    "KSM_KNOBS",
    "KSM_LAYER",
    "KSM_OPS",
    "MMF_INIT_MASK",
    "MMF_VM_MERGEABLE",
    "MMF_VM_MERGE_ANY",
    "STABLE_FLAG",
    "UNSTABLE_FLAG",
    "alloc_rmap_item",
    "alloc_stable_node",
    "alloc_stable_node_chain",
    "break_cow",
    "break_ksm",
    "calc_checksum",
    "cmp_and_merge_page",
    "find_mergeable_vma",
    "folio_migrate_ksm",
    "free_rmap_item",
    "free_stable_node",
    "free_stable_node_chain",
    "get_mergeable_page",
    "get_next_rmap_item",
    "is_ksm_zero_pte",
    "is_page_sharing_candidate",
    "ksm_add_vmas",
    "ksm_anon_vma_external_refs",
    "ksm_counters",
    "ksm_del_vmas",
    "ksm_disable_merge_any",
    "ksm_do_scan",
    "ksm_enable_merge_any",
    "__ksm_enter",
    "ksm_exit",
    "__ksm_exit",
    "ksm_folio_external_refs",
    "ksm_fork",
    "ksm_full_scans",
    "ksm_get_folio",
    "ksm_madvise",
    "ksm_might_unmap_zero_page",
    "ksm_mm_external_refs",
    "ksm_mm_slot",
    "ksm_rmap_item",
    "ksm_stable_node",
    "ksm_stat",
    "ksm_state",
    "ksm_state_of",
    "ksm_store",
    "ksm_vma_flags",
    "ksm_zero_pte",
    "prctl_set_memory_merge",
    "remove_all_stable_nodes",
    "remove_node_from_stable_tree",
    "remove_rmap_item_from_tree",
    "remove_stable_node",
    "remove_trailing_rmap_items",
    "replace_page",
    "rmap_walk_ksm",
    "scan_get_next_rmap_item",
    "should_skip_rmap_item",
    "__stable_node_chain",
    "stable_node_chain_add_dup",
    "stable_node_dup",
    "stable_node_dup_del",
    "stable_tree_append",
    "stable_tree_insert",
    "stable_tree_search",
    "try_to_merge_one_page",
    "try_to_merge_two_pages",
    "try_to_merge_with_ksm_page",
    "try_to_merge_with_zero_page",
    "unmerge_and_remove_all_rmap_items",
    "unmerge_ksm_pages",
    "unstable_tree_search_insert",
    "validate_ksm",
    "write_protect_page",
]

# include/linux/mm_types.h (MMF_* bit numbers), v6.18, as masks of mm->ksm_flags.
MMF_VM_MERGEABLE = 1 << 16  # KSM may merge identical pages
MMF_VM_MERGE_ANY = 1 << 30  # KSM may merge any compatible VMA (PR_SET_MEMORY_MERGE)
#: the mm flags a child inherits (MMF_INIT_MASK's MMF_VM_MERGE_ANY_MASK)
MMF_INIT_MASK = MMF_VM_MERGE_ANY

_VM_HUGETLB = 0x00400000
_VM_DROPPABLE = 0x0  # only on 64-bit with CONFIG_64BIT: never set on the model's VMAs

SEQNR_MASK = 0x0FF  # low bits of unstable tree seqnr
UNSTABLE_FLAG = 0x100  # is a node of the unstable tree
STABLE_FLAG = 0x200  # is listed from the stable tree

STABLE_NODE_CHAIN = -1024
_DUP_HEAD = "STABLE_NODE_DUP_HEAD"  # stable_node->head of a dup linked in a chain

KSM_RUN_STOP = 0
KSM_RUN_MERGE = 1
KSM_RUN_UNMERGE = 2

#: The KSM settings of mm/ksm.c v6.18 and their defaults, as ``k.config`` keys.
KSM_CONFIG: dict[str, Any] = {
    "ksm_run": KSM_RUN_STOP,
    "ksm_thread_pages_to_scan": 100,  # DEFAULT_PAGES_TO_SCAN
    "ksm_thread_sleep_millisecs": 20,
    "ksm_max_page_sharing": 256,
    "ksm_use_zero_pages": False,
    "ksm_smart_scan": True,  # "Default to true at least temporarily, for testing"
    "ksm_merge_across_nodes": 1,
    "ksm_stable_node_chains_prune_millisecs": 2000,
}

#: /sys/kernel/mm/ksm knob → ``k.config`` key, for ``ksm_set KNOB V``.
KSM_KNOBS = {
    "run": "ksm_run",
    "pages_to_scan": "ksm_thread_pages_to_scan",
    "sleep_millisecs": "ksm_thread_sleep_millisecs",
    "max_page_sharing": "ksm_max_page_sharing",
    "use_zero_pages": "ksm_use_zero_pages",
    "smart_scan": "ksm_smart_scan",
    "merge_across_nodes": "ksm_merge_across_nodes",
    "stable_node_chains_prune_millisecs": "ksm_stable_node_chains_prune_millisecs",
}


# -- structures -------------------------------------------------------------------

class ksm_rmap_item(SlabObject):
    """``struct ksm_rmap_item`` (mm/ksm.c, v6.18): reverse mapping item for one virtual address.

    ``flags`` holds what the kernel keeps in the low bits of ``address``
    (``SEQNR_MASK|UNSTABLE_FLAG|STABLE_FLAG``).
    """

    __slots__ = ("mm", "address", "flags", "anon_vma", "oldchecksum", "age", "remaining_skips",
                 "head", "key")

    def __init__(self) -> None:
        super().__init__()
        self.mm: mm_struct | None = None
        self.address = 0  # a virtual page number
        self.flags = 0
        self.anon_vma: anon_vma | None = None  # when stable
        self.oldchecksum = 0  # when unstable
        self.age = 0
        self.remaining_skips = 0
        self.head: ksm_stable_node | None = None  # when listed from the stable tree
        self.key: int | None = None  # contents under which it sits in the unstable tree


class ksm_stable_node(SlabObject):
    """``struct ksm_stable_node`` (mm/ksm.c, v6.18): a regular node, a chain, or a dup of a chain.

    ``hlist`` is the rmap_items using this KSM page (newest first, as
    ``hlist_add_head()`` leaves it) or, for a chain, its dups. ``head`` is
    ``None`` for a node of the stable tree and ``STABLE_NODE_DUP_HEAD`` for a
    dup; ``chain`` is the dup's chain (the model's stand-in for ``hlist_dup``).
    """

    __slots__ = ("hlist", "kpfn", "rmap_hlist_len", "head", "chain", "key", "nid")

    def __init__(self) -> None:
        super().__init__()
        self.hlist: list[Any] = []
        self.kpfn = -1
        self.rmap_hlist_len = 0
        self.head: str | None = None
        self.chain: ksm_stable_node | None = None
        self.key = 0  # the contents of its KSM page(s): its place in the tree
        self.nid = 0


class ksm_mm_slot(SlabObject):
    """``struct ksm_mm_slot`` (mm/ksm.c, v6.18): KSM's information per mm being scanned."""

    __slots__ = ("mm", "rmap_list")

    def __init__(self) -> None:
        super().__init__()
        self.mm: mm_struct | None = None
        self.rmap_list: list[ksm_rmap_item] = []  # sorted by address


class ksm_state:
    """KSM's globals of mm/ksm.c (v6.18): caches, lists, trees, the scan cursor, counters.

    ``scan_mm_slot`` is ``ksm_scan.mm_slot`` (``None`` standing for
    ``&ksm_mm_head``), ``scan_address`` is ``ksm_scan.address`` and
    ``scan_rmap_pos`` the index ``ksm_scan.rmap_list`` points at.
    """

    def __init__(self, k: Kernel) -> None:
        self.rmap_item_cache: kmem_cache[ksm_rmap_item] = kmem_cache("ksm_rmap_item", ksm_rmap_item, k.clock)
        self.stable_node_cache: kmem_cache[ksm_stable_node] = kmem_cache(
            "ksm_stable_node", ksm_stable_node, k.clock)
        self.mm_slot_cache: kmem_cache[ksm_mm_slot] = kmem_cache("ksm_mm_slot", ksm_mm_slot, k.clock)
        self.mm_slots_hash: dict[mm_struct, ksm_mm_slot] = {}
        self.mm_list: list[ksm_mm_slot] = []  # ksm_mm_head.slot.mm_node
        self.scan_mm_slot: ksm_mm_slot | None = None
        self.scan_address = 0
        self.scan_rmap_pos = 0
        self.seqnr = 0
        self.root_stable_tree: dict[int, ksm_stable_node] = {}
        self.root_unstable_tree: dict[int, ksm_rmap_item] = {}
        self.pages_scanned = 0
        self.pages_shared = 0
        self.pages_sharing = 0
        self.pages_unshared = 0
        self.rmap_items = 0
        self.stable_node_chains = 0
        self.stable_node_dups = 0
        self.pages_skipped = 0
        self.zero_pages = 0


def ksm_state_of(k: Kernel) -> ksm_state:
    """The kernel's KSM globals, created on first use (``ksm_init()``, mm/ksm.c, v6.18)."""
    st = k.ksm
    if st is None:
        st = k.ksm = ksm_state(k)
    return st


def _cfg(k: Kernel, key: str) -> Any:
    return k.config.get(key, KSM_CONFIG[key])


class ksm_zero_pte(tuple):  # type: ignore[type-arg]
    """A PTE of the zero page that KSM placed: ``pte_mkdirty(pte_mkspecial(...))`` (``replace_page()``, v6.18).

    Equal to the plain ``(ZERO_PAGE, writable)`` PTE; only
    :func:`is_ksm_zero_pte` tells them apart, as the dirty bit does.
    """

    __slots__ = ()


def is_ksm_zero_pte(pte: object) -> bool:
    """``is_ksm_zero_pte()`` (include/linux/ksm.h, v6.18)."""
    return isinstance(pte, ksm_zero_pte)


def ksm_might_unmap_zero_page(k: Kernel, mm: mm_struct, pte: object) -> None:
    """``ksm_might_unmap_zero_page()`` (include/linux/ksm.h, v6.18)."""
    if is_ksm_zero_pte(pte):
        ksm_state_of(k).zero_pages -= 1
        mm.ksm_zero_pages -= 1


# -- allocation ----------------------------------------------------------------------

def alloc_rmap_item(k: Kernel) -> ksm_rmap_item | None:
    """``alloc_rmap_item()`` (mm/ksm.c, v6.18): ``kmem_cache_zalloc(GFP_KERNEL | __GFP_NORETRY | __GFP_NOWARN)``.

    :returns: ``struct ksm_rmap_item *`` (``NULL`` on allocation failure).
    """
    if k.should_fail("alloc_rmap_item"):
        return None
    st = ksm_state_of(k)
    item = st.rmap_item_cache.alloc("alloc_rmap_item")
    st.rmap_items += 1
    return item


def free_rmap_item(k: Kernel, item: ksm_rmap_item) -> None:
    """``free_rmap_item()`` (mm/ksm.c, v6.18)."""
    st = ksm_state_of(k)
    st.rmap_items -= 1
    if item.mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("free_rmap_item", "NULL pointer dereference: item.mm")
    item.mm.ksm_rmap_items -= 1
    item.mm = None  # debug safety
    st.rmap_item_cache.free(item, "free_rmap_item")


def alloc_stable_node(k: Kernel) -> ksm_stable_node | None:
    """``alloc_stable_node()`` (mm/ksm.c, v6.18): ``GFP_KERNEL | __GFP_HIGH``.

    :returns: ``struct ksm_stable_node *`` (``NULL`` on allocation failure).
    """
    if k.should_fail("alloc_stable_node"):
        return None
    return ksm_state_of(k).stable_node_cache.alloc("alloc_stable_node")


def free_stable_node(k: Kernel, node: ksm_stable_node) -> None:
    """``free_stable_node()`` (mm/ksm.c, v6.18)."""
    if node.rmap_hlist_len and node.rmap_hlist_len != STABLE_NODE_CHAIN:
        raise KernelBug("free_stable_node", "VM_BUG_ON(stable_node->rmap_hlist_len && !chain)")
    ksm_state_of(k).stable_node_cache.free(node, "free_stable_node")


def _is_chain(node: ksm_stable_node) -> bool:
    return node.rmap_hlist_len == STABLE_NODE_CHAIN


def _is_dup(node: ksm_stable_node) -> bool:
    return node.head == _DUP_HEAD


def stable_node_chain_add_dup(k: Kernel, dup: ksm_stable_node, chain: ksm_stable_node) -> None:
    """``stable_node_chain_add_dup()`` (mm/ksm.c, v6.18): link a dup into a chain."""
    dup.head = _DUP_HEAD
    dup.chain = chain
    chain.hlist.insert(0, dup)  # hlist_add_head(&dup->hlist_dup, &chain->hlist)
    ksm_state_of(k).stable_node_dups += 1


def stable_node_dup_del(k: Kernel, dup: ksm_stable_node) -> None:
    """``stable_node_dup_del()`` (mm/ksm.c, v6.18): unlink a dup from its chain, or erase a regular node."""
    st = ksm_state_of(k)
    if _is_dup(dup):
        if dup.chain is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("stable_node_dup_del", "NULL pointer dereference: dup.chain")
        dup.chain.hlist.remove(dup)
        st.stable_node_dups -= 1
    elif st.root_stable_tree.get(dup.key) is dup:
        del st.root_stable_tree[dup.key]
    dup.head = None
    dup.chain = None


def alloc_stable_node_chain(k: Kernel, dup: ksm_stable_node) -> ksm_stable_node | None:
    """``alloc_stable_node_chain()`` (mm/ksm.c, v6.18): a chain in place of node ``dup``.

    "Put the stable node chain in the first dimension of the stable tree and
    at the same time remove the old stable node." Then "Move the old stable
    node to the second dimension queued in the hlist_dup. The invariant is
    that all dup stable_nodes in the chain->hlist point to pages that are
    write protected and have the exact same content."

    :returns: ``struct ksm_stable_node *`` (``NULL`` on allocation failure).
    """
    chain = k.ops.alloc_stable_node(k)
    if chain is None:
        return None
    st = ksm_state_of(k)
    chain.hlist = []
    chain.rmap_hlist_len = STABLE_NODE_CHAIN
    chain.key = dup.key
    chain.head = None
    chain.chain = None
    st.stable_node_chains += 1
    st.root_stable_tree[dup.key] = chain  # rb_replace_node(&dup->node, &chain->node)
    k.ops.stable_node_chain_add_dup(k, dup, chain)
    return chain


def free_stable_node_chain(k: Kernel, chain: ksm_stable_node) -> None:
    """``free_stable_node_chain()`` (mm/ksm.c, v6.18)."""
    st = ksm_state_of(k)
    if st.root_stable_tree.get(chain.key) is chain:
        del st.root_stable_tree[chain.key]  # rb_erase
    k.ops.free_stable_node(k, chain)
    st.stable_node_chains -= 1


# -- the stable tree -------------------------------------------------------------------

def _folio_stable_node(f: folio) -> ksm_stable_node | None:
    # folio_stable_node(): folio_test_ksm(folio) ? folio_raw_mapping(folio) : NULL
    if f is ZERO_PAGE or not f.ksm:
        return None
    return f.stable_node  # type: ignore[return-value]


def _folio_set_stable_node(f: folio, node: ksm_stable_node | None) -> None:
    # folio_set_stable_node(): folio->mapping = stable_node | PAGE_MAPPING_KSM
    if f.anon_exclusive:
        raise KernelWarning("folio_set_stable_node", "VM_WARN_ON_FOLIO(PageAnonExclusive)")
    f.ksm = True
    f.stable_node = node
    f.mapping = node


def remove_node_from_stable_tree(k: Kernel, node: ksm_stable_node) -> None:
    """``remove_node_from_stable_tree()`` (mm/ksm.c, v6.18): drop a node and its rmap_items.

    Each rmap_item leaves the stable tree and puts its anon_vma.
    """
    fn = "remove_node_from_stable_tree"
    st = ksm_state_of(k)
    if node.rmap_hlist_len < 0:
        raise KernelBug(fn, "BUG_ON(stable_node->rmap_hlist_len < 0)")
    items = list(node.hlist)
    for i, item in enumerate(items):
        if i + 1 < len(items):  # rmap_item->hlist.next
            st.pages_sharing -= 1
        else:
            st.pages_shared -= 1
        if item.mm is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("remove_node_from_stable_tree", "NULL pointer dereference: item.mm")
        item.mm.ksm_merging_pages -= 1
        node.rmap_hlist_len -= 1
        if item.anon_vma is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("remove_node_from_stable_tree", "NULL pointer dereference: item.anon_vma")
        k.ops.put_anon_vma(k, item.anon_vma, fn)
        item.flags = 0  # rmap_item->address &= PAGE_MASK
    node.hlist = []
    k.ops.stable_node_dup_del(k, node)
    k.ops.free_stable_node(k, node)


def _pfn_folio(k: Kernel, pfn: int) -> folio | None:
    # pfn_folio(): whatever occupies the page allocator's slot now.
    objs: Any = k.page_alloc.objects
    if isinstance(objs, dict):
        return objs.get(pfn)  # type: ignore[no-any-return]
    return objs[pfn] if 0 <= pfn < len(objs) else None  # type: ignore[no-any-return]


# enum ksm_get_folio_flags (mm/ksm.c, v6.18)
KSM_GET_FOLIO_NOLOCK = 0
KSM_GET_FOLIO_LOCK = 1
KSM_GET_FOLIO_TRYLOCK = 2


def ksm_get_folio(k: Kernel, node: ksm_stable_node, flags: int = KSM_GET_FOLIO_NOLOCK) -> folio | None:
    """``ksm_get_folio()`` (mm/ksm.c, v6.18): the node's KSM folio, through the keyhole.

    "access to the ksm page from the stable node peeps out through its keyhole
    to see if that page still holds the right key, pointing back to this
    stable node." A stale node is removed from the stable tree.

    With ``KSM_GET_FOLIO_LOCK`` the folio is returned locked, after sleeping
    in ``folio_lock()`` while someone else (a migration between its unmap and
    its remap, a reclaim walk) holds it; the kernel then looks through the
    keyhole again, and a node whose folio was migrated meanwhile follows
    ``stable_node->kpfn`` to the new folio. The model does not sleep inside a
    step: ``folio_lock()`` raises :class:`~rmapcheck.model.findings.Deadlock`
    and the model checker runs the step once the holder has let go, when the
    second look finds what the first does.

    :param flags: ``KSM_GET_FOLIO_NOLOCK``, ``KSM_GET_FOLIO_LOCK`` or
        ``KSM_GET_FOLIO_TRYLOCK``.
    :returns: ``struct folio *`` with a reference taken (the caller puts it;
        locked unless ``NOLOCK``, the caller unlocks it), or ``None`` if the
        node was stale (and is now freed).
    :raises KernelError: ``EBUSY`` for a trylock of a locked folio.
    :raises Deadlock: ``KSM_GET_FOLIO_LOCK`` of a locked folio.
    """
    fn = "ksm_get_folio"
    kasan_check(node, fn)
    f = _pfn_folio(k, node.kpfn)
    if f is None or not f._live or not f.ksm or f.stable_node is not node:
        k.ops.remove_node_from_stable_tree(k, node)  # stale
        return None
    if flags == KSM_GET_FOLIO_TRYLOCK:
        if f.locked:  # !folio_trylock(): folio_put() and ERR_PTR(-EBUSY)
            raise KernelError(errno.EBUSY, fn, "folio_trylock failed")
        f.locked = True
    elif flags == KSM_GET_FOLIO_LOCK:
        folio_lock(k, f, fn)
    f._refcount += 1  # folio_try_get()
    return f


def _put(k: Kernel, f: folio | None) -> None:
    if f is not None:
        folio_put(k, f, "ksm")


def is_page_sharing_candidate(k: Kernel, node: ksm_stable_node, offset: int = 0) -> bool:
    """``__is_page_sharing_candidate()`` (mm/ksm.c, v6.18).

    "Check that at least one mapping still exists, otherwise there's no much
    point to merge and share with this stable_node, as the underlying
    tree_page of the other sharer is going to be freed soon."

    :param offset: 0 (``is_page_sharing_candidate()``) or 1.
    """
    if node.rmap_hlist_len < 0:
        raise KernelBug("is_page_sharing_candidate", "VM_BUG_ON(stable_node->rmap_hlist_len < 0)")
    return bool(node.rmap_hlist_len) and node.rmap_hlist_len + offset < _cfg(k, "ksm_max_page_sharing")


def stable_node_dup(k: Kernel, chain: ksm_stable_node, prune: bool) -> tuple[
        folio | None, ksm_stable_node | None, ksm_stable_node]:
    """``stable_node_dup()`` (mm/ksm.c, v6.18): the best dup of a chain.

    A chain of one dup collapses to that dup; a chain left without dups is
    freed. No time passes in a scenario: the prune interval has elapsed only
    when it is 0.

    :returns: ``(tree_folio, dup, node)``, ``node`` being the chain or the
        collapsed dup now in its place.
    """
    st = ksm_state_of(k)
    if _cfg(k, "ksm_stable_node_chains_prune_millisecs") != 0:
        prune = False
    found: ksm_stable_node | None = None
    tree_folio: folio | None = None
    found_len = 0
    for dup in list(chain.hlist):
        f = k.ops.ksm_get_folio(k, dup)
        if f is None:
            continue
        # Pick the best candidate if possible.
        if found is None or (k.ops.is_page_sharing_candidate(k, dup) and (
                not k.ops.is_page_sharing_candidate(k, found) or dup.rmap_hlist_len > found_len)):
            if found is not None:
                _put(k, tree_folio)
            found = dup
            found_len = dup.rmap_hlist_len
            tree_folio = f
            # skip put_page for found candidate
            if not prune and k.ops.is_page_sharing_candidate(k, found):
                break
            continue
        _put(k, f)
    if found is not None:
        if len(chain.hlist) == 1 and chain.hlist[0] is found:
            # "There's just one entry and it is below the deduplication limit
            # so drop the chain."
            st.root_stable_tree[chain.key] = found  # rb_replace_node
            chain.hlist = []
            k.ops.free_stable_node(k, chain)
            st.stable_node_chains -= 1
            st.stable_node_dups -= 1
            found.head = None
            found.chain = None
            return tree_folio, found, found
        if chain.hlist[0] is not found and k.ops.is_page_sharing_candidate(k, found, 1):
            # "put it there so next search will be quicker"
            chain.hlist.remove(found)
            chain.hlist.insert(0, found)
    else:
        # Its hlist must be empty if no one found.
        k.ops.free_stable_node_chain(k, chain)
    return tree_folio, found, chain


def __stable_node_chain(k: Kernel, node: ksm_stable_node, prune: bool) -> tuple[
        folio | None, ksm_stable_node | None, ksm_stable_node]:
    """``__stable_node_chain()`` (mm/ksm.c, v6.18): ``chain_prune()`` (``prune``) or ``chain()``.

    ``stable_tree_search()`` prunes, ``stable_tree_insert()`` does not.

    :returns: ``(tree_folio, dup, node)`` as :func:`stable_node_dup`.
    """
    if not _is_chain(node):
        return k.ops.ksm_get_folio(k, node), node, node
    return k.ops.stable_node_dup(k, node, prune)


def stable_tree_search(k: Kernel, page: folio) -> folio | None:
    """``stable_tree_search()`` (mm/ksm.c, v6.18): a KSM folio with ``page``'s contents.

    "This function returns the stable tree node of identical content if found,
    -EBUSY if the stable node's page is being migrated, NULL otherwise."
    A KSM page of a fork ("ksm page forked") is returned as it is.

    :returns: ``struct folio *`` with a reference, or ``None``.
    :raises KernelError: ``EBUSY``.
    """
    st = ksm_state_of(k)
    page_node = _folio_stable_node(page)
    if page_node is not None:
        # ksm page forked (no migrate_nodes with one NUMA node)
        page._refcount += 1
        return page
    while True:  # again:
        node = st.root_stable_tree.get(page.content)
        if node is None:
            return None
        tree_folio, dup, node = k.ops.__stable_node_chain(k, node, True)
        if tree_folio is None:
            # "If we walked over a stale stable_node, ksm_get_folio() will
            # call rb_erase() and it may rebalance the tree from under us. So
            # restart the search from scratch."
            continue
        _put(k, tree_folio)  # after memcmp_pages(): equal
        if dup is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("stable_tree_search", "NULL pointer dereference: dup")
        if not k.ops.is_page_sharing_candidate(k, dup):
            # "we need to wait the scanned page to find itself a match in the
            # unstable tree to create a brand new KSM page to add later to the
            # dups of this stable_node."
            return None
        # "Lock and unlock the stable_node's page (which might already have
        # been migrated) so that page migration is sure to notice its raised
        # count."
        tree_folio = k.ops.ksm_get_folio(k, dup, KSM_GET_FOLIO_TRYLOCK)
        if tree_folio is None:
            continue  # "The tree may have been rebalanced, so re-evaluate parent and new."
        folio_unlock(k, tree_folio, "stable_tree_search")
        return tree_folio


def stable_tree_insert(k: Kernel, kfolio: folio) -> ksm_stable_node | None:
    """``stable_tree_insert()`` (mm/ksm.c, v6.18): a new stable node for a new KSM folio.

    Equal contents already in the tree make (or extend) a chain of dups.

    :returns: ``struct ksm_stable_node *`` (``NULL`` on allocation failure).
    """
    st = ksm_state_of(k)
    need_chain = False
    node: ksm_stable_node | None = None
    while True:  # again:
        node = st.root_stable_tree.get(kfolio.content)
        if node is None:
            break
        tree_folio, _dup, node = k.ops.__stable_node_chain(k, node, False)
        if tree_folio is None:
            continue
        _put(k, tree_folio)
        need_chain = True
        break
    dup = k.ops.alloc_stable_node(k)
    if dup is None:
        return None
    dup.hlist = []
    dup.kpfn = kfolio.pfn()
    dup.rmap_hlist_len = 0
    dup.key = kfolio.content
    dup.head = None
    dup.chain = None
    if not need_chain:
        st.root_stable_tree[dup.key] = dup  # rb_link_node + rb_insert_color
    else:
        if node is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("stable_tree_insert", "NULL pointer dereference: node")
        if not _is_chain(node):
            # chain is missing so create it
            chain = k.ops.alloc_stable_node_chain(k, node)
            if chain is None:
                k.ops.free_stable_node(k, dup)
                return None
            node = chain
        k.ops.stable_node_chain_add_dup(k, dup, node)
    _folio_set_stable_node(kfolio, dup)
    return dup


def stable_tree_append(k: Kernel, item: ksm_rmap_item, node: ksm_stable_node, bypass: bool) -> None:
    """``stable_tree_append()`` (mm/ksm.c, v6.18): add an rmap_item to a node's list.

    "rmap won't find this mapping if we don't insert the rmap_item in the right
    stable_node duplicate."
    """
    fn = "stable_tree_append"
    st = ksm_state_of(k)
    if node.rmap_hlist_len < 0:
        raise KernelBug(fn, "BUG_ON(stable_node->rmap_hlist_len < 0)")
    node.rmap_hlist_len += 1
    if not bypass and node.rmap_hlist_len > _cfg(k, "ksm_max_page_sharing"):
        # possibly non fatal but unexpected overflow, only warn
        k.warnings.append(KernelWarning(fn, "WARN_ON_ONCE(rmap_hlist_len > ksm_max_page_sharing)"))
    item.head = node
    item.flags |= STABLE_FLAG
    node.hlist.insert(0, item)  # hlist_add_head
    if len(node.hlist) > 1:  # rmap_item->hlist.next
        st.pages_sharing += 1
    else:
        st.pages_shared += 1
    if item.mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("stable_tree_append", "NULL pointer dereference: item.mm")
    item.mm.ksm_merging_pages += 1


def remove_rmap_item_from_tree(k: Kernel, item: ksm_rmap_item) -> None:
    """``remove_rmap_item_from_tree()`` (mm/ksm.c, v6.18): take an rmap_item out of its tree.

    From the stable tree it also puts the anon_vma it pinned; from the
    unstable tree it is erased only if inserted by this scan ("Usually ksmd can
    and must skip the rb_erase, because root_unstable_tree was already reset").
    """
    fn = "remove_rmap_item_from_tree"
    st = ksm_state_of(k)
    if item.flags & STABLE_FLAG:
        node = item.head
        if node is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("remove_rmap_item_from_tree", "NULL pointer dereference: node")
        f = k.ops.ksm_get_folio(k, node, KSM_GET_FOLIO_LOCK)
        if f is None:
            return  # remove_node_from_stable_tree() did it all
        node.hlist.remove(item)
        folio_unlock(k, f, fn)
        _put(k, f)
        if node.hlist:
            st.pages_sharing -= 1
        else:
            st.pages_shared -= 1
        if item.mm is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("remove_rmap_item_from_tree", "NULL pointer dereference: item.mm")
        item.mm.ksm_merging_pages -= 1
        if node.rmap_hlist_len <= 0:
            raise KernelBug(fn, "VM_BUG_ON(stable_node->rmap_hlist_len <= 0)")
        node.rmap_hlist_len -= 1
        if item.anon_vma is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("remove_rmap_item_from_tree", "NULL pointer dereference: item.anon_vma")
        k.ops.put_anon_vma(k, item.anon_vma, fn)
        item.head = None
        item.flags = 0
    elif item.flags & UNSTABLE_FLAG:
        age = (st.seqnr - (item.flags & SEQNR_MASK)) & 0xFF
        if age > 1:
            raise KernelBug(fn, "BUG_ON(age > 1)")
        if not age and item.key is not None and st.root_unstable_tree.get(item.key) is item:
            del st.root_unstable_tree[item.key]  # rb_erase
        st.pages_unshared -= 1
        item.key = None
        item.flags = 0


def remove_trailing_rmap_items(k: Kernel, slot: ksm_mm_slot, pos: int) -> None:
    """``remove_trailing_rmap_items()`` (mm/ksm.c, v6.18): free the mm's rmap_items from ``pos`` on."""
    while len(slot.rmap_list) > pos:
        item = slot.rmap_list.pop(pos)
        k.ops.remove_rmap_item_from_tree(k, item)
        k.ops.free_rmap_item(k, item)


# -- merging ------------------------------------------------------------------------------

def find_mergeable_vma(k: Kernel, mm: mm_struct, addr: int) -> vm_area_struct | None:
    """``find_mergeable_vma()`` (mm/ksm.c, v6.18): the ``VM_MERGEABLE`` VMA with an anon_vma at ``addr``.

    :returns: ``struct vm_area_struct *`` (``NULL`` if none, or the mm exits).
    """
    if mm.mm_users == 0:  # ksm_test_exit()
        return None
    vma = vma_lookup(mm, addr)
    if vma is None or not vma.vm_flags & VM_MERGEABLE or vma.anon_vma is None:
        return None
    return vma


def write_protect_page(k: Kernel, vma: vm_area_struct, f: folio) -> tuple[int, Any]:
    """``write_protect_page()`` (mm/ksm.c, v6.18): make the page's PTE read-only.

    The folio's refcount must be its mapcount plus KSM's own reference
    ("Check that no O_DIRECT or similar I/O is in progress on the page"); an
    exclusive page becomes shared (``folio_try_share_anon_rmap_pte()``).

    :returns: ``(0, orig_pte)`` or ``(-EFAULT, None)``.
    """
    mm = vma.vm_mm
    if mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("write_protect_page", "NULL pointer dereference: mm")
    addr = k.ops.page_address_in_vma(k, f, vma)
    if addr is None:
        return -errno.EFAULT, None
    pte = mm.pgtable.get(addr)
    if pte is None or pte[0] is not f:  # !page_vma_mapped_walk()
        return -errno.EFAULT, None
    if pte[1] or f.anon_exclusive:
        if f._mapcount + 1 != f._refcount:
            return -errno.EFAULT, None
        f.anon_exclusive = False  # folio_try_share_anon_rmap_pte()
        pte = (f, False)  # pte_wrprotect(pte_mkclean(entry))
        mm.pgtable[addr] = pte
    return 0, pte


def replace_page(k: Kernel, vma: vm_area_struct, page: folio, kpage: folio, orig_pte: Any) -> int:
    """``replace_page()`` (mm/ksm.c, v6.18): map ``kpage`` where ``page`` was.

    The zero page is mapped as a KSM zero PTE and counted
    (``ksm_map_zero_page()``); a KSM folio gains a reference and a mapping.

    :returns: 0, or ``-EFAULT``.
    """
    fn = "replace_page"
    mm = vma.vm_mm
    if mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("replace_page", "NULL pointer dereference: mm")
    addr = k.ops.page_address_in_vma(k, page, vma)
    if addr is None:
        return -errno.EFAULT
    pte = mm.pgtable.get(addr)
    if pte is None or pte != orig_pte or pte[0] is not page:  # !pte_same()
        return -errno.EFAULT
    if page.anon_exclusive:
        raise KernelBug(fn, "VM_BUG_ON_PAGE(PageAnonExclusive(page), page)")
    if kpage is not ZERO_PAGE:
        kpage._refcount += 1  # folio_get(kfolio)
        kpage._mapcount += 1  # folio_add_anon_rmap_pte(kfolio, kpage, vma, addr, RMAP_NONE)
        mm.pgtable[addr] = (kpage, False)  # mk_pte(kpage, vma->vm_page_prot)
    else:
        # "Use pte_mkdirty to mark the zero page mapped by KSM, and then we can
        # easily track all KSM-placed zero pages by checking if the dirty bit
        # in zero page's PTE is set."
        mm.pgtable[addr] = ksm_zero_pte((ZERO_PAGE, False))
        ksm_state_of(k).zero_pages += 1  # ksm_map_zero_page()
        mm.ksm_zero_pages += 1
    k.ops.folio_remove_rmap_pte(k, page, vma)
    folio_put(k, page, fn)
    return 0


def try_to_merge_one_page(k: Kernel, vma: vm_area_struct, page: folio, kpage: folio | None) -> int:
    """``try_to_merge_one_page()`` (mm/ksm.c, v6.18): take two pages and merge them into one.

    With ``kpage`` ``NULL`` the page itself is upgraded to a KSM folio with a
    ``NULL`` stable node ("stable_tree_insert() will update stable_node").

    :returns: 0 if merged, ``-EFAULT`` otherwise.
    """
    if page is kpage:  # ksm page forked
        return 0
    if page is ZERO_PAGE or not (page.ksm or isinstance(page.mapping, anon_vma)):  # !folio_test_anon
        return -errno.EFAULT
    if page.locked:  # !folio_trylock()
        return -errno.EFAULT
    err = -errno.EFAULT
    # "If this anonymous page is mapped only here, its pte may need to be
    # write-protected. If it's mapped elsewhere, all of its ptes are
    # necessarily already write-protected. But in either case, we need to lock
    # and check page_count is not raised."
    wp, orig_pte = k.ops.write_protect_page(k, vma, page)
    if wp == 0:
        if kpage is None:
            # "While we hold folio lock, upgrade folio from anon to a NULL
            # stable_node with the KSM flag set"
            _folio_set_stable_node(page, None)
            err = 0
        elif page.content == kpage.content:  # pages_identical()
            err = k.ops.replace_page(k, vma, page, kpage, orig_pte)
    return err


def try_to_merge_with_zero_page(k: Kernel, item: ksm_rmap_item, page: folio) -> int:
    """``try_to_merge_with_zero_page()`` (mm/ksm.c, v6.18).

    :returns: 0 if merged or no longer a candidate (VMA stale), ``-EFAULT`` otherwise.
    """
    err = -errno.EFAULT
    if _cfg(k, "ksm_use_zero_pages") and item.oldchecksum == _calc_checksum_of(0):
        if item.mm is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("try_to_merge_with_zero_page", "NULL pointer dereference: item.mm")
        vma = k.ops.find_mergeable_vma(k, item.mm, item.address)
        if vma is not None:
            err = k.ops.try_to_merge_one_page(k, vma, page, ZERO_PAGE)
        else:
            # "If the vma is out of date, we do not need to continue."
            err = 0
    return err


def try_to_merge_with_ksm_page(k: Kernel, item: ksm_rmap_item, page: folio, kpage: folio | None) -> int:
    """``try_to_merge_with_ksm_page()`` (mm/ksm.c, v6.18).

    On success the rmap_item pins the VMA's anon_vma: "Must get reference to
    anon_vma while still holding mmap_lock".

    :returns: 0 if merged, ``-EFAULT`` otherwise.
    """
    fn = "try_to_merge_with_ksm_page"
    if item.mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("try_to_merge_with_ksm_page", "NULL pointer dereference: item.mm")
    vma = k.ops.find_mergeable_vma(k, item.mm, item.address)
    if vma is None:
        return -errno.EFAULT
    err = k.ops.try_to_merge_one_page(k, vma, page, kpage)
    if err:
        return err
    # Unstable nid is in union with stable anon_vma: remove first
    k.ops.remove_rmap_item_from_tree(k, item)
    if vma.anon_vma is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("try_to_merge_with_ksm_page", "NULL pointer dereference: vma.anon_vma")
    item.anon_vma = vma.anon_vma
    k.ops.get_anon_vma(k, vma.anon_vma, fn)
    return 0


def break_cow(k: Kernel, item: ksm_rmap_item) -> None:
    """``break_cow()`` (mm/ksm.c, v6.18): undo a merge of one rmap_item.

    "It is not an accident that whenever we want to break COW to undo, we also
    need to drop a reference to the anon_vma."
    """
    if item.anon_vma is None or item.mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("break_cow", "NULL pointer dereference: item.anon_vma or item.mm")
    k.ops.put_anon_vma(k, item.anon_vma, "break_cow")
    vma = k.ops.find_mergeable_vma(k, item.mm, item.address)
    if vma is not None:
        k.ops.break_ksm(k, vma, item.address)


def try_to_merge_two_pages(k: Kernel, item: ksm_rmap_item, page: folio, tree_item: ksm_rmap_item,
                           tree_page: folio) -> folio | None:
    """``try_to_merge_two_pages()`` (mm/ksm.c, v6.18): make ``page`` a KSM page for both.

    :returns: the new KSM folio, or ``None``.
    """
    err = k.ops.try_to_merge_with_ksm_page(k, item, page, None)
    if not err:
        err = k.ops.try_to_merge_with_ksm_page(k, tree_item, tree_page, page)
        # "If that fails, we have a ksm page with only one pte pointing to it:
        # so break it."
        if err:
            k.ops.break_cow(k, item)
    return None if err else page


def _calc_checksum_of(content: int) -> int:
    return content + 1


def calc_checksum(page: folio) -> int:
    """``calc_checksum()`` (mm/ksm.c, v6.18): ``xxhash(page, PAGE_SIZE, 0)``, modelled as ``content + 1``."""
    return _calc_checksum_of(0 if page is ZERO_PAGE else page.content)


def get_mergeable_page(k: Kernel, item: ksm_rmap_item) -> folio | None:
    """``get_mergeable_page()`` (mm/ksm.c, v6.18): the anon page at the rmap_item's address.

    :returns: ``struct folio *`` with a reference (``NULL`` if none).
    """
    if item.mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("get_mergeable_page", "NULL pointer dereference: item.mm")
    vma = k.ops.find_mergeable_vma(k, item.mm, item.address)
    if vma is None:
        return None
    pte = item.mm.pgtable.get(item.address)
    if pte is None or pte[0] is ZERO_PAGE or not isinstance(pte[0], folio):
        return None
    f = pte[0]
    if not (f.ksm or isinstance(f.mapping, anon_vma)):
        return None
    f._refcount += 1
    return f


def unstable_tree_search_insert(k: Kernel, item: ksm_rmap_item, page: folio) -> tuple[ksm_rmap_item | None,
                                                                                     folio | None]:
    """``unstable_tree_search_insert()`` (mm/ksm.c, v6.18).

    :returns: the identical tree rmap_item and its page (with a reference), or
        ``(None, None)`` after inserting ``item`` ("This function does both
        searching and inserting, because they share the same walking algorithm
        in an rbtree").
    """
    st = ksm_state_of(k)
    tree_item = st.root_unstable_tree.get(page.content)
    if tree_item is not None:
        tree_page = k.ops.get_mergeable_page(k, tree_item)
        if tree_page is None:
            return None, None
        # Don't substitute a ksm page for a forked page.
        if tree_page is page:
            _put(k, tree_page)
            return None, None
        if tree_page.content == page.content:  # memcmp_pages() == 0
            return tree_item, tree_page
        # The contents under the node changed since it was inserted: the
        # kernel's walk would go left or right from here; with no changes
        # inside a scan this is never reached.
        _put(k, tree_page)
        return None, None
    item.flags |= UNSTABLE_FLAG | (st.seqnr & SEQNR_MASK)
    item.key = page.content
    st.root_unstable_tree[page.content] = item
    st.pages_unshared += 1
    return None, None


def cmp_and_merge_page(k: Kernel, page: folio, item: ksm_rmap_item) -> None:
    """``cmp_and_merge_page()`` (mm/ksm.c, v6.18): merge one scanned page if it can be.

    "first see if page can be merged into the stable tree; if not, compare
    checksum to previous and if it's the same, see if page can be inserted
    into the unstable tree, or merged with a page already there and both
    transferred to the stable tree." In v6.18 a page that is not yet KSM must
    first show an unchanged checksum (and may merge with the zero page) before
    the stable tree is searched.
    """
    fn = "cmp_and_merge_page"
    bypass = False
    node = _folio_stable_node(page)
    if node is not None:
        if item.head is node:
            return
        # "If it's a KSM fork, allow it to go over the sharing limit without
        # warnings."
        if not k.ops.is_page_sharing_candidate(k, node):
            bypass = True
    else:
        k.ops.remove_rmap_item_from_tree(k, item)
        # "If the hash value of the page has changed from the last time we
        # calculated it, this page is changing frequently: therefore we don't
        # want to insert it in the unstable tree, and we don't want to waste
        # our time searching for something identical to it there."
        checksum = calc_checksum(page)
        if item.oldchecksum != checksum:
            item.oldchecksum = checksum
            return
        if not k.ops.try_to_merge_with_zero_page(k, item, page):
            return

    # Start by searching for the folio in the stable tree
    try:
        kfolio = k.ops.stable_tree_search(k, page)
    except KernelError:
        kfolio = None
        busy = True
    else:
        busy = False
    if kfolio is page and item.head is node:
        _put(k, kfolio)
        return
    k.ops.remove_rmap_item_from_tree(k, item)
    if busy:
        return
    if kfolio is not None:
        err = k.ops.try_to_merge_with_ksm_page(k, item, page, kfolio)
        if not err:
            # "The page was successfully merged: add its rmap_item to the
            # stable tree."
            folio_lock(k, kfolio, fn)
            knode = _folio_stable_node(kfolio)
            if knode is None:  # the kernel would oops on a NULL pointer here
                raise KernelBug("cmp_and_merge_page", "NULL pointer dereference: knode")
            k.ops.stable_tree_append(k, item, knode, bypass)
            folio_unlock(k, kfolio, fn)
        _put(k, kfolio)
        return

    tree_item, tree_page = k.ops.unstable_tree_search_insert(k, item, page)
    if tree_item is not None:
        if tree_page is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("cmp_and_merge_page", "NULL pointer dereference: tree_page")
        kf = k.ops.try_to_merge_two_pages(k, item, page, tree_item, tree_page)
        _put(k, tree_page)
        if kf is not None:
            # "The pages were successfully merged: insert new node in the
            # stable tree and add both rmap_items."
            folio_lock(k, kf, fn)
            snode = k.ops.stable_tree_insert(k, kf)
            if snode is not None:
                k.ops.stable_tree_append(k, tree_item, snode, False)
                k.ops.stable_tree_append(k, item, snode, False)
            folio_unlock(k, kf, fn)
            if snode is None:
                # "If we fail to insert the page into the stable tree, we will
                # have 2 virtual addresses that are pointing to a ksm page left
                # outside the stable tree, in which case we need to break_cow
                # on both."
                k.ops.break_cow(k, tree_item)
                k.ops.break_cow(k, item)


# -- the scanner ------------------------------------------------------------------------------

def get_next_rmap_item(k: Kernel, slot: ksm_mm_slot, pos: int, addr: int) -> tuple[ksm_rmap_item | None, int]:
    """``get_next_rmap_item()`` (mm/ksm.c, v6.18): the rmap_item of ``addr`` at or after ``pos``.

    The rmap_items of addresses passed over are freed; a missing one is
    allocated.

    :returns: ``(item or NULL, its index)``.
    """
    lst = slot.rmap_list
    while pos < len(lst):
        item = lst[pos]
        if item.address == addr:
            return item, pos
        if item.address > addr:
            break
        lst.pop(pos)
        k.ops.remove_rmap_item_from_tree(k, item)
        k.ops.free_rmap_item(k, item)
    item = k.ops.alloc_rmap_item(k)
    if item is not None:
        # It has already been zeroed
        item.mm = slot.mm
        if slot.mm is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("get_next_rmap_item", "NULL pointer dereference: slot.mm")
        slot.mm.ksm_rmap_items += 1
        item.address = addr
        lst.insert(pos, item)
    return item, pos


def _skip_age(age: int) -> int:
    # skip_age()
    if age <= 3:
        return 1
    if age <= 5:
        return 2
    if age <= 8:
        return 4
    return 8


def should_skip_rmap_item(k: Kernel, f: folio, item: ksm_rmap_item) -> bool:
    """``should_skip_rmap_item()`` (mm/ksm.c, v6.18): smart scan's skipping.

    "Never skip pages that are already KSM"; "Smaller ages are not skipped,
    they need to get a chance to go through the different phases of the KSM
    merging."
    """
    if not _cfg(k, "ksm_smart_scan"):
        return False
    if f.ksm:
        return False
    age = item.age
    if age != 0xFF:
        item.age += 1
    if age < 3:
        return False
    if not item.remaining_skips:
        item.remaining_skips = _skip_age(age)
        return False
    ksm_state_of(k).pages_skipped += 1
    item.remaining_skips -= 1
    k.ops.remove_rmap_item_from_tree(k, item)
    return True


def _slot_next(st: ksm_state, slot: ksm_mm_slot) -> ksm_mm_slot | None:
    i = st.mm_list.index(slot)
    return st.mm_list[i + 1] if i + 1 < len(st.mm_list) else None


def scan_get_next_rmap_item(k: Kernel) -> tuple[ksm_rmap_item, folio] | None:
    """``scan_get_next_rmap_item()`` (mm/ksm.c, v6.18): the next page for ksmd.

    Walks the mm list from the cursor, each mm's ``VM_MERGEABLE`` VMAs with an
    anon_vma in address order, and their present anonymous pages. At the
    start of a full scan the unstable tree is reset; at the end of an mm its
    trailing rmap_items are freed, and an mm with no ``VM_MERGEABLE`` VMA left
    (or exiting) leaves the list. At the end of the list ``seqnr`` (the
    ``full_scans`` count) advances and ``NULL`` is returned.

    :returns: ``(rmap_item, page)`` with a reference on the page, or ``None``.
    """
    fn = "scan_get_next_rmap_item"
    st = ksm_state_of(k)
    if not st.mm_list:
        return None
    slot = st.scan_mm_slot
    if slot is None:
        # lru_add_drain_all(): the model has no per-CPU LRU caches.
        st.root_unstable_tree.clear()  # root_unstable_tree[nid] = RB_ROOT
        slot = st.mm_list[0]
        st.scan_mm_slot = slot
        st.scan_address = 0
        st.scan_rmap_pos = 0
    while True:  # next_mm:
        mm = slot.mm
        if mm is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("scan_get_next_rmap_item", "NULL pointer dereference: mm")
        kasan_check(mm, fn)
        if mm.mm_users != 0:  # !ksm_test_exit(mm)
            for vma in list(mm.mmap):
                if vma.vm_end <= st.scan_address:
                    continue
                if not vma.vm_flags & VM_MERGEABLE:
                    continue
                if st.scan_address < vma.vm_start:
                    st.scan_address = vma.vm_start
                if vma.anon_vma is None:
                    st.scan_address = vma.vm_end
                while st.scan_address < vma.vm_end:
                    addr = st.scan_address
                    pte = mm.pgtable.get(addr)
                    f = None
                    if pte is not None and isinstance(pte[0], folio) and pte[0] is not ZERO_PAGE and (
                            pte[0].ksm or isinstance(pte[0].mapping, anon_vma)):
                        f = pte[0]
                        f._refcount += 1  # folio_get()
                    if f is not None:
                        item, pos = k.ops.get_next_rmap_item(k, slot, st.scan_rmap_pos, addr)
                        if item is not None:
                            st.scan_rmap_pos = pos + 1
                            if k.ops.should_skip_rmap_item(k, f, item):
                                _put(k, f)
                                st.scan_address += 1
                                continue
                            st.scan_address += 1
                            return item, f
                        _put(k, f)
                        return None
                    st.scan_address += 1
        else:
            # no_vmas:
            st.scan_address = 0
            st.scan_rmap_pos = 0
        if mm.mm_users == 0:
            st.scan_address = 0
            st.scan_rmap_pos = 0
        # "Nuke all the rmap_items that are above this current rmap: because
        # there were no VM_MERGEABLE vmas with such addresses."
        k.ops.remove_trailing_rmap_items(k, slot, st.scan_rmap_pos)
        nxt = _slot_next(st, slot)
        st.scan_mm_slot = nxt
        if st.scan_address == 0:
            # "We've completed a full scan of all vmas, holding mmap_lock
            # throughout, and found no VM_MERGEABLE: so do the same as
            # __ksm_exit does to remove this mm from all our lists now."
            _free_mm_slot(k, st, slot, mm, fn)
        # Repeat until we've completed scanning the whole list
        if nxt is None:
            break
        slot = nxt
        st.scan_address = 0
        st.scan_rmap_pos = 0
    st.seqnr += 1
    return None


def ksm_do_scan(k: Kernel, scan_npages: int) -> None:
    """``ksm_do_scan()`` (mm/ksm.c, v6.18): one batch of ksmd, up to ``scan_npages`` pages.

    Without ``CONFIG_KSM`` there is no ksmd: nothing is scanned.
    """
    if not k.config.get("CONFIG_KSM", True):
        return
    st = ksm_state_of(k)
    while scan_npages:
        scan_npages -= 1
        nxt = k.ops.scan_get_next_rmap_item(k)
        if nxt is None:
            return
        item, page = nxt
        k.ops.cmp_and_merge_page(k, page, item)
        _put(k, page)
        st.pages_scanned += 1


def ksm_full_scans(k: Kernel, n: int) -> int:
    """``ksm_scan_thread()`` (mm/ksm.c, v6.18) until ``n`` more full scans completed.

    ksmd runs with ``run=1`` for the duration and is stopped afterwards, as
    the live runner does (docs/kernel-rules.md §L). With no mm on KSM's list
    ksmd does not run (``ksmd_should_run()``) and no scan completes. A batch
    that moves the scan on by nothing (``alloc_rmap_item()`` failing on every
    attempt: ``scan_get_next_rmap_item()`` returns ``NULL`` where it stood)
    ends the run: ksmd would sleep and retry until memory comes back, which
    within one step it does not.

    :returns: the number of full scans completed (0 without ``CONFIG_KSM``:
        there is no ksmd).
    """
    if not k.config.get("CONFIG_KSM", True):
        return 0
    st = ksm_state_of(k)
    done = 0
    k.config["ksm_run"] = KSM_RUN_MERGE
    try:
        while done < n:
            if not st.mm_list:  # !ksmd_should_run()
                break
            start = st.seqnr
            while st.seqnr == start and st.mm_list:
                where = (st.pages_scanned, st.scan_mm_slot, st.scan_address, st.scan_rmap_pos)
                k.ops.ksm_do_scan(k, max(1, int(_cfg(k, "ksm_thread_pages_to_scan"))))
                if st.seqnr == start and where == (st.pages_scanned, st.scan_mm_slot, st.scan_address,
                                                   st.scan_rmap_pos):
                    return done  # no progress: ksmd sleeps
            if st.seqnr != start:
                done += 1
    finally:
        k.config["ksm_run"] = KSM_RUN_STOP
    return done


def _free_mm_slot(k: Kernel, st: Any, slot: Any, mm: mm_struct, fn: str) -> None:
    # An exited (or no longer mergeable) mm leaves KSM, as
    # scan_get_next_rmap_item() and unmerge_and_remove_all_rmap_items() both
    # write it (mm/ksm.c, v6.18): hash_del(), list_del(), mm_slot_free(),
    # clear_bit(MMF_VM_MERGEABLE), clear_bit(MMF_VM_MERGE_ANY), mmdrop().
    del st.mm_slots_hash[mm]
    st.mm_list.remove(slot)
    st.mm_slot_cache.free(slot, fn)
    mm.ksm_flags &= ~(MMF_VM_MERGEABLE | MMF_VM_MERGE_ANY)
    k.ops.mmdrop(k, mm)


# -- unmerging --------------------------------------------------------------------------------

def break_ksm(k: Kernel, vma: vm_area_struct, addr: int) -> int:
    """``break_ksm()`` (mm/ksm.c, v6.18): replace a KSM page by an exclusive anonymous page.

    A KSM folio or a KSM zero PTE at ``addr`` takes an unsharing fault
    (``handle_mm_fault(FAULT_FLAG_UNSHARE | FAULT_FLAG_REMOTE)``): ``do_wp_page()``
    cannot reuse it and copies (``wp_page_copy()``), leaving a read-only PTE
    of a new exclusive folio.

    :returns: 0, or ``-ENOMEM``.
    """
    mm = vma.vm_mm
    if mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("break_ksm", "NULL pointer dereference: mm")
    pte = mm.pgtable.get(addr)
    if pte is None or not isinstance(pte[0], folio):
        return 0
    old = pte[0]
    if not (is_ksm_zero_pte(pte) or (old is not ZERO_PAGE and old.ksm)):
        return 0
    # do_wp_page() with FAULT_FLAG_UNSHARE: a KSM folio is never reused
    # (wp_can_reuse_anon_folio()), so wp_page_copy() runs.
    try:
        k.ops.wp_page_copy(k, vma, addr, old, unshare=True)
    except KernelError:
        return -errno.ENOMEM
    if old is ZERO_PAGE:
        k.ops.ksm_might_unmap_zero_page(k, mm, pte)
    return 0


def unmerge_ksm_pages(k: Kernel, vma: vm_area_struct, start: int, end: int) -> int:
    """``unmerge_ksm_pages()`` (mm/ksm.c, v6.18): break every KSM page of ``[start, end)``.

    "although we'd like to remove rmap_items (so updating counts and freeing
    memory) when unmerging an area, it's easier to leave that to the next pass
    of ksmd".

    :returns: 0, or ``-ENOMEM``.
    """
    err = 0
    addr = start
    while addr < end and not err:
        if vma.vm_mm is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("unmerge_ksm_pages", "NULL pointer dereference: vma.vm_mm")
        if vma.vm_mm.mm_users == 0:  # ksm_test_exit()
            break
        err = k.ops.break_ksm(k, vma, addr)
        addr += 1
    return err


def remove_stable_node(k: Kernel, node: ksm_stable_node) -> int:
    """``remove_stable_node()`` (mm/ksm.c, v6.18): drop a node unless its KSM page is still mapped.

    The folio is locked while its node goes (``KSM_GET_FOLIO_LOCK``).

    :returns: 0, or ``-EBUSY``.
    """
    f = k.ops.ksm_get_folio(k, node, KSM_GET_FOLIO_LOCK)
    if f is None:
        return 0  # ksm_get_folio did remove_node_from_stable_tree itself.
    err = -errno.EBUSY
    if f._mapcount == 0:
        _folio_set_stable_node(f, None)
        k.ops.remove_node_from_stable_tree(k, node)
        err = 0
    folio_unlock(k, f, "remove_stable_node")
    _put(k, f)
    return err


def remove_all_stable_nodes(k: Kernel) -> int:
    """``remove_all_stable_nodes()`` (mm/ksm.c, v6.18).

    :returns: 0, or ``-EBUSY`` if some KSM page is still mapped.
    """
    st = ksm_state_of(k)
    err = 0
    for node in list(st.root_stable_tree.values()):
        if not node._live or st.root_stable_tree.get(node.key) is not node:
            continue
        if not _is_chain(node):
            if k.ops.remove_stable_node(k, node):
                return -errno.EBUSY
            continue
        for dup in list(node.hlist):
            if k.ops.remove_stable_node(k, dup):
                return -errno.EBUSY
        k.ops.free_stable_node_chain(k, node)
    return err


def unmerge_and_remove_all_rmap_items(k: Kernel) -> int:
    """``unmerge_and_remove_all_rmap_items()`` (mm/ksm.c, v6.18): ``run=2``.

    Unmerges every ``VM_MERGEABLE`` VMA of every mm, frees all rmap_items,
    drops exiting mms from the list and removes the stable nodes.

    :returns: 0, or the error of an unmerge.
    """
    fn = "unmerge_and_remove_all_rmap_items"
    st = ksm_state_of(k)
    st.scan_mm_slot = st.mm_list[0] if st.mm_list else None
    while st.scan_mm_slot is not None:
        slot = st.scan_mm_slot
        mm = slot.mm
        if mm is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("unmerge_and_remove_all_rmap_items", "NULL pointer dereference: mm")
        if mm.mm_users != 0:
            for vma in list(mm.mmap):
                if not vma.vm_flags & VM_MERGEABLE or vma.anon_vma is None:
                    continue
                err = k.ops.unmerge_ksm_pages(k, vma, vma.vm_start, vma.vm_end)
                if err:
                    st.scan_mm_slot = None
                    return err
        k.ops.remove_trailing_rmap_items(k, slot, 0)
        st.scan_mm_slot = _slot_next(st, slot)
        if mm.mm_users == 0:
            _free_mm_slot(k, st, slot, mm, fn)
    # Clean up stable nodes, but don't worry if some are still busy
    k.ops.remove_all_stable_nodes(k)
    st.seqnr = 0
    return 0


# -- entering and leaving -------------------------------------------------------------------

def __ksm_enter(k: Kernel, mm: mm_struct) -> int:
    """``__ksm_enter()`` (mm/ksm.c, v6.18): put the mm on ksmd's list.

    "When KSM_RUN_MERGE (or KSM_RUN_STOP), insert just behind the scanning
    cursor, to let the area settle down a little"; with ``KSM_RUN_UNMERGE`` at
    the end of the list.

    :returns: 0, or ``-ENOMEM``.
    """
    fn = "__ksm_enter"
    if k.should_fail("mm_slot_alloc"):
        return -errno.ENOMEM
    st = ksm_state_of(k)
    slot = st.mm_slot_cache.alloc(fn)
    slot.mm = mm
    slot.rmap_list = []
    st.mm_slots_hash[mm] = slot
    if _cfg(k, "ksm_run") & KSM_RUN_UNMERGE or st.scan_mm_slot is None:
        st.mm_list.append(slot)  # list_add_tail(..., &ksm_mm_head.slot.mm_node)
    else:
        # list_add_tail(&slot->mm_node, &ksm_scan.mm_slot->slot.mm_node)
        st.mm_list.insert(st.mm_list.index(st.scan_mm_slot), slot)
    mm.ksm_flags |= MMF_VM_MERGEABLE
    k.ops.mmgrab(k, mm)
    return 0


def __ksm_exit(k: Kernel, mm: mm_struct) -> None:
    """``__ksm_exit()`` (mm/ksm.c, v6.18): an mm with ``MMF_VM_MERGEABLE`` exits.

    "if it's straightforward (as is the case when ksmd was never running),
    free mm_slot immediately. But if it's at the cursor or has rmap_items
    linked to it, use mmap_lock to synchronize with any break_cows before
    pagetables are freed, and leave the mm_slot on the list for ksmd to free."
    The slot moves just after the cursor, to be freed first by ksmd.
    """
    fn = "__ksm_exit"
    st = ksm_state_of(k)
    slot = st.mm_slots_hash.get(mm)
    easy_to_free = False
    if slot is not None and st.scan_mm_slot is not slot:
        if not slot.rmap_list:
            del st.mm_slots_hash[mm]
            st.mm_list.remove(slot)
            easy_to_free = True
        else:
            st.mm_list.remove(slot)
            at = 0 if st.scan_mm_slot is None else st.mm_list.index(st.scan_mm_slot) + 1
            st.mm_list.insert(at, slot)  # list_move(&slot->mm_node, &ksm_scan.mm_slot->slot.mm_node)
    if easy_to_free:
        if slot is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("__ksm_exit", "NULL pointer dereference: slot")
        st.mm_slot_cache.free(slot, fn)
        mm.ksm_flags &= ~(MMF_VM_MERGE_ANY | MMF_VM_MERGEABLE)
        k.ops.mmdrop(k, mm)


def ksm_fork(k: Kernel, mm: mm_struct, oldmm: mm_struct) -> int:
    """``ksm_fork()`` (include/linux/ksm.h, v6.18): "Adding mm to ksm is best effort on fork."

    ``dup_mm()`` copied the parent's counters; the child has no rmap_items and
    merges nothing yet, but the KSM zero PTEs it inherited count, globally too:
    Linux kernel commit ("mm/ksm: fix incorrect KSM counter handling in
    mm_struct during fork") (in v6.18; observed on the live 6.18.44 kernel).
    A child of a parent that left KSM's list keeps the copied counters.
    """
    if oldmm.ksm_flags & MMF_VM_MERGEABLE:
        nr_ksm_zero_pages = mm.ksm_zero_pages
        mm.ksm_merging_pages = 0
        mm.ksm_rmap_items = 0
        ksm_state_of(k).zero_pages += nr_ksm_zero_pages
        k.ops.__ksm_enter(k, mm)
    return 0


def ksm_exit(k: Kernel, mm: mm_struct) -> None:
    """``ksm_exit()`` (include/linux/ksm.h, v6.18)."""
    if mm.ksm_flags & MMF_VM_MERGEABLE:
        k.ops.__ksm_exit(k, mm)


def _ksm_compatible(vm_flags: int) -> bool:
    # ksm_compatible() / vma_ksm_compatible(): "just ignore the advice" for
    # shared, special and hugetlb mappings (no file, no DAX in the model).
    return not vm_flags & (VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_DONTEXPAND
                           | _VM_HUGETLB | VM_MIXEDMAP | _VM_DROPPABLE)


def ksm_vma_flags(k: Kernel, mm: mm_struct, vm_flags: int) -> int:
    """``ksm_vma_flags()`` (mm/ksm.c, v6.18): ``VM_MERGEABLE`` for a new VMA of a merge-any mm."""
    if mm.ksm_flags & MMF_VM_MERGE_ANY and not vm_flags & VM_MERGEABLE and _ksm_compatible(vm_flags):
        vm_flags |= VM_MERGEABLE
    return vm_flags


def ksm_add_vmas(k: Kernel, mm: mm_struct) -> None:
    """``ksm_add_vmas()`` / ``__ksm_add_vma()`` (mm/ksm.c, v6.18): ``VM_MERGEABLE`` in place, no merge or split."""
    for vma in mm.mmap:
        if not vma.vm_flags & VM_MERGEABLE and _ksm_compatible(vma.vm_flags):
            vma.vm_flags |= VM_MERGEABLE


def ksm_del_vmas(k: Kernel, mm: mm_struct) -> int:
    """``ksm_del_vmas()`` / ``__ksm_del_vma()`` (mm/ksm.c, v6.18): unmerge and clear ``VM_MERGEABLE``.

    :returns: 0, or the error of an unmerge.
    """
    for vma in list(mm.mmap):
        if not vma.vm_flags & VM_MERGEABLE:
            continue
        if vma.anon_vma is not None:
            err = k.ops.unmerge_ksm_pages(k, vma, vma.vm_start, vma.vm_end)
            if err:
                return err
        vma.vm_flags &= ~VM_MERGEABLE
    return 0


def ksm_enable_merge_any(k: Kernel, mm: mm_struct) -> int:
    """``ksm_enable_merge_any()`` (mm/ksm.c, v6.18): ``prctl(PR_SET_MEMORY_MERGE, 1)``.

    :returns: 0, or ``-ENOMEM``.
    """
    if mm.ksm_flags & MMF_VM_MERGE_ANY:
        return 0
    if not mm.ksm_flags & MMF_VM_MERGEABLE:
        err = k.ops.__ksm_enter(k, mm)
        if err:
            return err
    mm.ksm_flags |= MMF_VM_MERGE_ANY
    k.ops.ksm_add_vmas(k, mm)
    return 0


def ksm_disable_merge_any(k: Kernel, mm: mm_struct) -> int:
    """``ksm_disable_merge_any()`` (mm/ksm.c, v6.18): ``prctl(PR_SET_MEMORY_MERGE, 0)``.

    "Disabling merging implies unmerging any merged pages, like setting
    MADV_UNMERGEABLE would. If unmerging fails, the whole operation fails and
    merging on all compatible VMA's remains enabled."
    """
    if not mm.ksm_flags & MMF_VM_MERGE_ANY:
        return 0
    err = k.ops.ksm_del_vmas(k, mm)
    if err:
        k.ops.ksm_add_vmas(k, mm)
        return err
    mm.ksm_flags &= ~MMF_VM_MERGE_ANY
    return 0


def ksm_madvise(k: Kernel, vma: vm_area_struct, start: int, end: int, advice: int,
                vm_flags: int) -> tuple[int, int]:
    """``ksm_madvise()`` (mm/ksm.c, v6.18): ``MADV_MERGEABLE`` / ``MADV_UNMERGEABLE``.

    :param vm_flags: the VMA's flags (``unsigned long *vm_flags`` in).
    :returns: ``(0 or -errno, new vm_flags)``.
    """
    mm = vma.vm_mm
    if mm is None:  # the kernel would oops on a NULL pointer here
        raise KernelBug("ksm_madvise", "NULL pointer dereference: mm")
    if advice == MADV_MERGEABLE:
        if vma.vm_flags & VM_MERGEABLE:
            return 0, vm_flags
        if not _ksm_compatible(vma.vm_flags):
            return 0, vm_flags
        if not mm.ksm_flags & MMF_VM_MERGEABLE:
            err = k.ops.__ksm_enter(k, mm)
            if err:
                return err, vm_flags
        vm_flags |= VM_MERGEABLE
    elif advice == MADV_UNMERGEABLE:
        if not vm_flags & VM_MERGEABLE:
            return 0, vm_flags  # just ignore the advice
        if vma.anon_vma is not None:
            err = k.ops.unmerge_ksm_pages(k, vma, start, end)
            if err:
                return err, vm_flags
        vm_flags &= ~VM_MERGEABLE
    return 0, vm_flags


def prctl_set_memory_merge(k: Kernel, mm: mm_struct, arg2: int) -> int:
    """``prctl(PR_SET_MEMORY_MERGE, arg2)`` (kernel/sys.c, v6.18).

    Without ``CONFIG_KSM`` the option does not exist: ``-EINVAL``.

    :returns: 0 or a negative errno.
    """
    if not k.config.get("CONFIG_KSM", True):
        return -errno.EINVAL
    if arg2:
        return k.ops.ksm_enable_merge_any(k, mm)
    return k.ops.ksm_disable_merge_any(k, mm)


# -- reverse mapping -------------------------------------------------------------------------

def rmap_walk_ksm(k: Kernel, f: folio, rmap_one: Callable[[vm_area_struct, int], Any],
                  locked: bool = False) -> None:
    """``rmap_walk_ksm()`` (mm/ksm.c, v6.18): visit every VMA that may map KSM folio ``f``.

    For each rmap_item of the folio's stable node, walks
    ``rmap_item->anon_vma``'s interval tree over all offsets (root rwsem held
    for read) and calls ``rmap_one(vma, address)`` for each VMA covering the
    rmap_item's address: "Initially we examine only the vma which covers this
    rmap_item; but later, if there is still work to do, we examine covering
    vmas in other mms: in case they were forked from the original since ksmd
    passed." A ``False`` return stops the walk, as in :func:`rmap_walk_anon`.

    :param f: ``struct folio *``, a KSM folio, locked (``PG_locked``).
    :param locked: accepted for the :func:`rmap_walk_anon` contract; the KSM
        walk always takes each anon_vma's lock itself.
    :raises KernelBug: ``f`` is not KSM, or not locked.
    """
    fn = "rmap_walk_ksm"
    kasan_check(f, fn)
    if not f.ksm:
        raise KernelBug(fn, "VM_BUG_ON_FOLIO(!folio_test_ksm(folio), folio)")
    # "Rely on the page lock to protect against concurrent modifications to
    # that page's node of the stable tree."
    if not f.locked:
        raise KernelBug(fn, "VM_BUG_ON_FOLIO(!folio_test_locked(folio), folio)")
    node = _folio_stable_node(f)
    if node is None:
        return
    kasan_check(node, fn)
    for search_new_forks in (False, True):
        for item in list(node.hlist):
            av = item.anon_vma
            if av is None:  # the kernel would oops on a NULL pointer here
                raise KernelBug("rmap_walk_ksm", "NULL pointer dereference: av")
            k.ops.anon_vma_lock_read(k, av, fn)
            try:
                for avc in list(av.rb_root):  # anon_vma_interval_tree_foreach(.., 0, ULONG_MAX)
                    vma = avc.vma
                    kasan_check(vma, fn)
                    addr = item.address  # Ignore the stable/unstable/sqnr flags
                    if addr < vma.vm_start or addr >= vma.vm_end:
                        continue
                    if (item.mm is vma.vm_mm) == search_new_forks:
                        continue
                    if rmap_one(vma, addr) is False:
                        return
            finally:
                k.ops.anon_vma_unlock_read(k, av, fn)


def folio_migrate_ksm(k: Kernel, newfolio: folio, old: folio) -> None:
    """``folio_migrate_ksm()`` (mm/ksm.c, v6.18): the stable node follows a migrated KSM folio.

    ``newfolio->mapping`` must already equal ``folio->mapping``; the node's
    ``kpfn`` moves to the new folio and the old folio loses its stable node.
    """
    fn = "folio_migrate_ksm"
    if newfolio.mapping is not old.mapping:
        raise KernelBug(fn, "VM_BUG_ON_FOLIO(newfolio->mapping != folio->mapping, newfolio)")
    node = _folio_stable_node(old)
    if node is not None:
        if node.kpfn != old.pfn():
            raise KernelBug(fn, "VM_BUG_ON_FOLIO(stable_node->kpfn != folio_pfn(folio), folio)")
        node.kpfn = newfolio.pfn()
        newfolio.ksm = True
        newfolio.stable_node = node
        old.anon_exclusive = False
        _folio_set_stable_node(old, None)


# -- sysfs, procfs ------------------------------------------------------------------------------

def _kstrtobool(value: int) -> bool | None:
    # kstrtobool() looks at the first character only.
    s = str(value)
    if s[0] in "1":
        return True
    if s[0] in "0":
        return False
    return None


def ksm_store(k: Kernel, knob: str, value: int) -> int:
    """A write of ``value`` to ``/sys/kernel/mm/ksm/<knob>`` (the ``*_store()`` of mm/ksm.c, v6.18).

    ``max_page_sharing`` and ``merge_across_nodes`` refuse a change with
    ``EBUSY`` while KSM pages exist; ``max_page_sharing`` below 2 is
    ``EINVAL`` ("When a KSM page is created it is shared by 2 mappings");
    ``run`` above 2 is ``EINVAL`` and ``run=2`` unmerges everything.

    :returns: 0 or a negative errno.
    """
    st = ksm_state_of(k)
    if knob not in KSM_KNOBS:
        return -errno.ENOENT
    key = KSM_KNOBS[knob]
    if knob in ("use_zero_pages", "smart_scan"):
        b = _kstrtobool(value)
        if b is None:
            return -errno.EINVAL
        k.config[key] = b
        return 0
    if knob in ("pages_to_scan", "sleep_millisecs", "stable_node_chains_prune_millisecs"):
        if value >= 1 << 32:
            return -errno.EINVAL
        k.config[key] = value
        return 0
    if knob == "max_page_sharing":
        if value >= 1 << 31:
            return -errno.ERANGE  # kstrtoint()
        if value < 2:
            return -errno.EINVAL
        if _cfg(k, key) == value:
            return 0
        if st.pages_shared or k.ops.remove_all_stable_nodes(k):
            return -errno.EBUSY
        k.config[key] = value
        return 0
    if knob == "merge_across_nodes":
        if value >= 1 << 64:
            return -errno.ERANGE
        if value > 1:
            return -errno.EINVAL
        if _cfg(k, key) != value:
            if st.pages_shared or k.ops.remove_all_stable_nodes(k):
                return -errno.EBUSY
            k.config[key] = value
        return 0
    # run
    if value >= 1 << 32 or value > KSM_RUN_UNMERGE:
        return -errno.EINVAL
    if _cfg(k, key) != value:
        k.config[key] = value
        if value & KSM_RUN_UNMERGE:
            err = k.ops.unmerge_and_remove_all_rmap_items(k)
            if err:
                k.config[key] = KSM_RUN_STOP
                return err
    return 0


def ksm_counters(k: Kernel) -> dict[str, int]:
    """The read-only counters of ``/sys/kernel/mm/ksm`` (mm/ksm.c, v6.18).

    ``pages_volatile`` is ``ksm_rmap_items - pages_shared - pages_sharing -
    pages_unshared``, never shown below 0; ``full_scans`` is ``ksm_scan.seqnr``.
    """
    st = ksm_state_of(k)
    volatile = st.rmap_items - st.pages_shared - st.pages_sharing - st.pages_unshared
    return {
        "full_scans": st.seqnr,
        "ksm_zero_pages": st.zero_pages,
        "pages_scanned": st.pages_scanned,
        "pages_shared": st.pages_shared,
        "pages_sharing": st.pages_sharing,
        "pages_skipped": st.pages_skipped,
        "pages_unshared": st.pages_unshared,
        "pages_volatile": max(volatile, 0),
        "stable_node_chains": st.stable_node_chains,
        "stable_node_dups": st.stable_node_dups,
    }


def ksm_stat(mm: mm_struct) -> dict[str, int]:
    """The counters of ``/proc/<pid>/ksm_stat`` the model keeps (fs/proc/base.c, v6.18)."""
    return {
        "ksm_merging_pages": mm.ksm_merging_pages,
        "ksm_rmap_items": mm.ksm_rmap_items,
        "ksm_zero_pages": mm.ksm_zero_pages,
    }


# -- invariants ----------------------------------------------------------------------------------

def ksm_anon_vma_external_refs(k: Kernel) -> dict[anon_vma, int]:
    """References on anon_vmas held outside the VMAs: one per rmap_item in the stable tree.

    ``try_to_merge_with_ksm_page()`` takes them, ``remove_rmap_item_from_tree()``,
    ``remove_node_from_stable_tree()`` and ``break_cow()`` put them (mm/ksm.c, v6.18).
    """
    refs: dict[anon_vma, int] = {}
    st = k.ksm
    if st is None:
        return refs
    for slot in st.mm_list:
        for item in slot.rmap_list:
            if item.flags & STABLE_FLAG and item.anon_vma is not None:
                refs[item.anon_vma] = refs.get(item.anon_vma, 0) + 1
    return refs


def ksm_folio_external_refs(k: Kernel) -> dict[folio, int]:
    """KSM holds no folio reference between steps: a stable node's is a "keyhole reference".

    (``ksm_get_folio()``, mm/ksm.c, v6.18.)
    """
    return {}


def ksm_mm_external_refs(k: Kernel) -> set[mm_struct]:
    """The mms KSM's mm_slots keep (``mmgrab()`` in ``__ksm_enter()``, mm/ksm.c, v6.18), exited ones included."""
    st = k.ksm
    return set() if st is None else set(st.mm_slots_hash)


def validate_ksm(k: Kernel) -> None:
    """Check KSM's structures (mm/ksm.c, v6.18) between steps; raise the first violation.

    * the mm list and the hash hold the same slots, each once; every
      rmap_list is sorted by address and its items belong to the slot's mm;
    * every rmap_item in the stable tree is on its node's ``hlist`` and pins a
      live anon_vma; every node's ``rmap_hlist_len`` is its ``hlist``'s length;
    * the counters equal what the structures hold;
    * every mapped KSM folio's stable node is live and points back to it;
    * "there cannot be KSM page content duplicates in the stable tree itself"
      (Documentation/mm/ksm.rst): each top-level node has its own contents, and
      every dup of a chain has the chain's.
    """
    fn = "validate_ksm"
    st = k.ksm
    if st is None:
        return
    mm_list = st.mm_list
    if len(set(map(id, mm_list))) != len(mm_list) or set(st.mm_slots_hash.values()) != set(mm_list):
        raise InvariantViolation(fn, "ksm_mm_head list and mm_slots_hash disagree")
    shared = sharing = unshared = 0
    items = 0
    # KASAN's check is made in line on the objects every state has (slots,
    # rmap_items): this runs once per state the checker explores.
    for slot in mm_list:
        if slot is not None and not slot._live:
            kasan_check(slot, fn)
        rmap_list = slot.rmap_list
        mm = slot.mm
        prev = -1
        for item in rmap_list:
            if item is not None and not item._live:
                kasan_check(item, fn)
            if item.mm is not mm or item.address <= prev:
                raise InvariantViolation(fn, f"{item.kname()} out of order or of another mm")
            prev = item.address
            if item.flags & STABLE_FLAG:
                node = item.head
                if node is None or item not in node.hlist:
                    raise InvariantViolation(fn, f"{item.kname()} is stable but not on its node's hlist")
                kasan_check(node, fn)
                kasan_check(item.anon_vma, fn)
            elif item.flags & UNSTABLE_FLAG:
                unshared += 1
        items += len(rmap_list)
        if mm is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("validate_ksm", "NULL pointer dereference: slot.mm")
        if mm.ksm_rmap_items != len(rmap_list):
            raise InvariantViolation(fn, f"mm {mm.owner}: ksm_rmap_items {mm.ksm_rmap_items}, has {len(rmap_list)}")
    nodes: list[ksm_stable_node] = []
    chains = dups = 0
    for key, top in st.root_stable_tree.items():
        kasan_check(top, fn)
        if top.key != key:
            raise InvariantViolation(fn, f"{top.kname()} filed under other contents")
        if _is_chain(top):
            chains += 1
            dups += len(top.hlist)
            for dup in top.hlist:
                kasan_check(dup, fn)
                if dup.key != key or dup.chain is not top:
                    raise InvariantViolation(fn, f"dup {dup.kname()} of {top.kname()} has other contents")
                nodes.append(dup)
        else:
            nodes.append(top)
    for node in nodes:
        if node.rmap_hlist_len != len(node.hlist):
            raise InvariantViolation(fn, f"{node.kname()}: rmap_hlist_len {node.rmap_hlist_len}, "
                                         f"hlist {len(node.hlist)}")
        if node.hlist:
            shared += 1
            sharing += len(node.hlist) - 1
        f = _pfn_folio(k, node.kpfn)
        if f is not None and f._live and f.stable_node is node and f.content != node.key:
            raise InvariantViolation(fn, f"KSM page {f.pfn()} of {node.kname()} changed contents")
    if (shared, sharing, unshared, items) != (st.pages_shared, st.pages_sharing, st.pages_unshared,
                                              st.rmap_items):
        raise InvariantViolation(
            fn, f"counters shared/sharing/unshared/rmap_items {st.pages_shared}/{st.pages_sharing}/"
                f"{st.pages_unshared}/{st.rmap_items}, structures hold {shared}/{sharing}/{unshared}/{items}")
    if (chains, dups) != (st.stable_node_chains, st.stable_node_dups):
        raise InvariantViolation(fn, f"stable_node_chains/dups {st.stable_node_chains}/{st.stable_node_dups}, "
                                     f"tree holds {chains}/{dups}")
    for f in k.page_alloc.objects.values():
        if f._live and f.ksm and f._mapcount:
            node = f.stable_node
            # A NULL stable node is a state the kernel allows: try_to_merge_two_pages()
            # upgrades the page to KSM with a NULL stable node first, and when the
            # second merge fails (the tree page is locked, e.g. under migration)
            # break_cow() unshares only the scanning mapping; other mappings of a
            # forked page keep the KSM folio. A freed stable node is never allowed.
            if node is not None and not node._live:  # type: ignore[attr-defined]
                raise InvariantViolation(fn, f"mapped KSM page {f.pfn()} points to a freed stable node")
            if node is not None and (node.kpfn != f.pfn() or f.mapping is not node):  # type: ignore[attr-defined]
                raise InvariantViolation(fn, f"KSM page {f.pfn()} and its stable node disagree")


# -- wrappers for the KSM zero page ------------------------------------------------------------

def _wrap_zap(inner: Callable[..., Any]) -> Callable[..., Any]:
    def zap_vma_range(k: Kernel, vma: vm_area_struct, start: int, end: int) -> None:
        """``zap_pte_range()`` (mm/memory.c, v6.18) with ``ksm_might_unmap_zero_page()``."""
        mm = vma.vm_mm
        if mm is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("zap_vma_range", "NULL pointer dereference: mm")
        for vpn in range(max(start, vma.vm_start), min(end, vma.vm_end)):
            pte = mm.pgtable.get(vpn)
            if pte is not None:
                k.ops.ksm_might_unmap_zero_page(k, mm, pte)
        inner(k, vma, start, end)
    return zap_vma_range


def _wrap_do_wp_page(inner: Callable[..., Any]) -> Callable[..., Any]:
    def do_wp_page(k: Kernel, vma: vm_area_struct, vpn: int) -> None:
        """``do_wp_page()`` (mm/memory.c, v6.18); ``wp_page_copy()`` of a KSM zero PTE uncounts it."""
        mm = vma.vm_mm
        if mm is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("do_wp_page", "NULL pointer dereference: mm")
        pte = mm.pgtable.get(vpn)
        inner(k, vma, vpn)
        if is_ksm_zero_pte(pte) and mm.pgtable.get(vpn) is not pte:
            k.ops.ksm_might_unmap_zero_page(k, mm, pte)
    return do_wp_page


def _wrap_mprotect_fixup(inner: Callable[..., Any]) -> Callable[..., Any]:
    def mprotect_fixup(k: Kernel, vma: vm_area_struct, prev: vm_area_struct | None, start: int, end: int,
                       newflags: int) -> Any:
        """``mprotect_fixup()`` (mm/mprotect.c, v6.18): ``change_pte_range()`` keeps the dirty bit."""
        mm = vma.vm_mm
        if mm is None:  # the kernel would oops on a NULL pointer here
            raise KernelBug("mprotect_fixup", "NULL pointer dereference: mm")
        marked = [vpn for vpn in range(start, end) if is_ksm_zero_pte(mm.pgtable.get(vpn))]
        res = inner(k, vma, prev, start, end, newflags)
        for vpn in marked:
            pte = mm.pgtable.get(vpn)
            if pte is not None and pte[0] is ZERO_PAGE and not is_ksm_zero_pte(pte):
                mm.pgtable[vpn] = ksm_zero_pte(pte)
        return res
    return mprotect_fixup


#: The KSM entries of a design table: KSM's kernel functions, the entry points
#: other code calls through ``k.ops`` and the invariant hooks.
KSM_OPS: dict[str, Callable[..., Any]] = {
    "__ksm_enter": __ksm_enter,
    "__ksm_exit": __ksm_exit,
    "__stable_node_chain": __stable_node_chain,
    "alloc_rmap_item": alloc_rmap_item,
    "alloc_stable_node": alloc_stable_node,
    "alloc_stable_node_chain": alloc_stable_node_chain,
    "break_cow": break_cow,
    "break_ksm": break_ksm,
    "cmp_and_merge_page": cmp_and_merge_page,
    "find_mergeable_vma": find_mergeable_vma,
    "folio_migrate_ksm": folio_migrate_ksm,
    "free_rmap_item": free_rmap_item,
    "free_stable_node": free_stable_node,
    "free_stable_node_chain": free_stable_node_chain,
    "get_mergeable_page": get_mergeable_page,
    "get_next_rmap_item": get_next_rmap_item,
    "is_page_sharing_candidate": is_page_sharing_candidate,
    "ksm_add_vmas": ksm_add_vmas,
    "ksm_del_vmas": ksm_del_vmas,
    "ksm_disable_merge_any": ksm_disable_merge_any,
    "ksm_do_scan": ksm_do_scan,
    "ksm_enable_merge_any": ksm_enable_merge_any,
    "ksm_exit": ksm_exit,
    "ksm_fork": ksm_fork,
    "ksm_get_folio": ksm_get_folio,
    "ksm_madvise": ksm_madvise,
    "ksm_might_unmap_zero_page": ksm_might_unmap_zero_page,
    "ksm_vma_flags": ksm_vma_flags,
    "remove_all_stable_nodes": remove_all_stable_nodes,
    "remove_node_from_stable_tree": remove_node_from_stable_tree,
    "remove_rmap_item_from_tree": remove_rmap_item_from_tree,
    "remove_stable_node": remove_stable_node,
    "remove_trailing_rmap_items": remove_trailing_rmap_items,
    "replace_page": replace_page,
    "rmap_walk_ksm": rmap_walk_ksm,
    "scan_get_next_rmap_item": scan_get_next_rmap_item,
    "should_skip_rmap_item": should_skip_rmap_item,
    "stable_node_chain_add_dup": stable_node_chain_add_dup,
    "stable_node_dup": stable_node_dup,
    "stable_node_dup_del": stable_node_dup_del,
    "stable_tree_append": stable_tree_append,
    "stable_tree_insert": stable_tree_insert,
    "stable_tree_search": stable_tree_search,
    "try_to_merge_one_page": try_to_merge_one_page,
    "try_to_merge_two_pages": try_to_merge_two_pages,
    "try_to_merge_with_ksm_page": try_to_merge_with_ksm_page,
    "try_to_merge_with_zero_page": try_to_merge_with_zero_page,
    "unmerge_and_remove_all_rmap_items": unmerge_and_remove_all_rmap_items,
    "unmerge_ksm_pages": unmerge_ksm_pages,
    "unstable_tree_search_insert": unstable_tree_search_insert,
    "write_protect_page": write_protect_page,
    # the invariant checker's hooks
    "anon_vma_external_refs": ksm_anon_vma_external_refs,
    "folio_external_refs": ksm_folio_external_refs,
    "ksm_invariants": validate_ksm,
    "mm_external_refs": ksm_mm_external_refs,
}

#: What v6.18 does for KSM zero pages in mm/memory.c and mm/mprotect.c, around
#: whatever ``zap_vma_range``, ``do_wp_page`` and ``mprotect_fixup`` a design has:
#: ``ksm_might_unmap_zero_page()`` in ``zap_pte_range()`` and ``wp_page_copy()``,
#: and the dirty bit that ``change_pte_range()`` keeps.
KSM_LAYER = Layer("ksm", {
    "zap_vma_range": _wrap_zap,
    "do_wp_page": _wrap_do_wp_page,
    "mprotect_fixup": _wrap_mprotect_fixup,
}, "KSM zero pages: ksm_might_unmap_zero_page() on zap and COW, the dirty bit kept by mprotect")
