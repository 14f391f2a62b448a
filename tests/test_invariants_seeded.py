"""Each kind of violation seeded into a clean state gives its own finding.

``check_invariants`` (and the KSM checks it calls) run once per explored
state and are written for speed; these cases pin what each check reports: the
finding's class, the invariant named and the message, written here by hand
from the objects seeded. The pairs at the end pin which of two violations is
reported first (the order of the checks).

The state: P0 maps four mergeable pages, writes 5 to pages 0 and 1 (KSM merges
them into one KSM page) and 7 to page 2, forks P1, and P1 writes page 3.
"""

from __future__ import annotations

import pytest

from conftest import BASE

from rmapcheck.designs import make_kernel
from rmapcheck.model.findings import RmapFinding
from rmapcheck.model.invariants import check_invariants
from rmapcheck.model.ksm import ksm_full_scans, ksm_state_of
from rmapcheck.model.syscalls import spawn, sys_fork, sys_madvise, sys_mmap, user_write
from rmapcheck.model.uapi import MADV_MERGEABLE, MAP_FIXED_NOREPLACE, PROT_READ, PROT_WRITE
from rmapcheck.model.vma_init import vma_lookup


def state():
    k = make_kernel("linux-6.18")
    p0 = spawn(k, "P0")
    sys_mmap(k, p0, BASE, 4, PROT_READ | PROT_WRITE, MAP_FIXED_NOREPLACE)
    sys_madvise(k, p0, BASE, 4, MADV_MERGEABLE)
    user_write(k, p0, BASE + 0, 5)
    user_write(k, p0, BASE + 1, 5)
    user_write(k, p0, BASE + 2, 7)
    assert ksm_full_scans(k, 2) == 2
    p1 = sys_fork(k, p0, "P1")
    user_write(k, p1, BASE + 3, 9)
    check_invariants(k)
    return k


def vma(k, comm):
    return vma_lookup(k.tasks[comm].mm, BASE)


def page(k, comm, n):
    return k.tasks[comm].mm.pgtable[BASE + n][0]


def own_chain(k, comm):
    # the AVC linking comm's VMA to its own anon_vma
    v = vma(k, comm)
    return next(avc for avc in v.anon_vma_chain if avc.anon_vma is v.anon_vma)


def freed(obj):
    obj._live = False
    return obj


# -- the seeds: each mutates a clean state and returns (class, invariant, message) -----------------

def task_mm_freed(k):
    mm = freed(k.tasks["P1"].mm)
    return "UseAfterFree", "KASAN", f"task->mm points to freed {mm.kname()}"


def vma_freed(k):
    v = freed(vma(k, "P0"))
    return "UseAfterFree", "KASAN", f"mm VMA tree points to freed {v.kname()}"


def vma_of_other_mm(k):
    v = vma(k, "P0")
    v.vm_mm = k.tasks["P1"].mm
    return "InvariantViolation", "VMA tree", f"VMA {v.kname()} in P0 has vm_mm of another mm"


def vma_tree_unsorted(k):
    v = vma(k, "P0")
    v.vm_end = v.vm_start
    return "InvariantViolation", "VMA tree", "VMA tree of P0 is not sorted and disjoint"


def ksm_counter(k):
    st = ksm_state_of(k)
    shared, sharing, unshared, items = st.pages_shared, st.pages_sharing, st.pages_unshared, st.rmap_items
    st.pages_sharing += 1
    return "InvariantViolation", "ksm_invariants", (
        f"counters shared/sharing/unshared/rmap_items {shared}/{sharing + 1}/{unshared}/{items}, "
        f"structures hold {shared}/{sharing}/{unshared}/{items}")


def ksm_rmap_item_freed(k):
    item = freed(ksm_state_of(k).mm_list[0].rmap_list[0])
    return "UseAfterFree", "ksm_invariants", f"access to freed {item.kname()}"


def ksm_rmap_items_out_of_order(k):
    rl = ksm_state_of(k).mm_list[0].rmap_list
    rl[0], rl[1] = rl[1], rl[0]
    return "InvariantViolation", "ksm_invariants", f"{rl[1].kname()} out of order or of another mm"


def ksm_mm_rmap_items(k):
    slot = ksm_state_of(k).mm_list[0]
    slot.mm.ksm_rmap_items += 1
    n = len(slot.rmap_list)
    return "InvariantViolation", "ksm_invariants", f"mm {slot.mm.owner}: ksm_rmap_items {n + 1}, has {n}"


def ksm_page_and_node_disagree(k):
    f = page(k, "P0", 0)
    f.stable_node.kpfn += 100
    return "InvariantViolation", "ksm_invariants", f"KSM page {f.pfn()} and its stable node disagree"


def chain_avc_freed(k):
    avc = freed(own_chain(k, "P1"))
    return "UseAfterFree", "KASAN", f"vma->anon_vma_chain points to freed {avc.kname()}"


def chain_anon_vma_freed(k):
    av = freed(vma(k, "P1").anon_vma)
    return "UseAfterFree", "KASAN", f"anon_vma_chain->anon_vma points to freed {av.kname()}"


def chain_of_other_vma(k):
    avc = own_chain(k, "P1")
    avc.vma = vma(k, "P0")
    return ("InvariantViolation", "chains",
            f"{avc.kname()} on {vma(k, 'P1').kname()}'s chain has vma {avc.vma.kname()}")


def chain_not_in_tree(k):
    avc = own_chain(k, "P1")
    avc.anon_vma.rb_root.remove(avc)
    return "InvariantViolation", "chains", f"{avc.kname()} missing from {avc.anon_vma.kname()}'s interval tree"


def chained_twice(k):
    v = vma(k, "P1")
    v.anon_vma_chain.append(own_chain(k, "P1"))
    return "InvariantViolation", "chains", f"{v.kname()} is chained twice to one anon_vma"


def chain_without_anon_vma(k):
    v = vma(k, "P1")
    v.anon_vma = None
    return "InvariantViolation", "chains", f"{v.kname()} has a chain but no anon_vma"


def anon_vma_not_on_chain(k):
    v = vma(k, "P0")
    v.anon_vma = vma(k, "P1").anon_vma
    return "InvariantViolation", "chains", f"{v.kname()}->anon_vma {v.anon_vma.kname()} is not on its chain"


def different_chains(k):
    a = vma(k, "P0").anon_vma
    vma(k, "P1").anon_vma = a
    return ("InvariantViolation", "I2",
            f"VMAs sharing {a.kname()} have different anon_vma chains (is_mergeable_anon_vma assumption)")


def tree_avc_on_no_chain(k):
    v = vma(k, "P1")
    avc = next(avc for avc in v.anon_vma_chain if avc.anon_vma is not v.anon_vma)
    v.anon_vma_chain.remove(avc)
    return ("InvariantViolation", "chains",
            f"{avc.kname()} in {avc.anon_vma.kname()}'s tree is on no live VMA's chain")


def anon_vma_leak(k):
    a = k.anon_vma_cachep.alloc("test")
    return "Leak", "kmemleak", f"unreferenced object {a.kname()} (refcount {a.refcount})"


def num_active_vmas(k):
    a = vma(k, "P1").anon_vma
    a.num_active_vmas += 1
    return "InvariantViolation", "I3", f"{a.kname()}: num_active_vmas 2 but 1 VMAs point to it"


def num_children(k):
    a = vma(k, "P1").anon_vma
    n = a.num_children
    a.num_children += 1
    return "InvariantViolation", "I3", f"{a.kname()}: num_children {n + 1} but {n} children"


def anon_vma_refcount(k):
    a = vma(k, "P1").anon_vma
    want = a.refcount
    a.refcount += 1
    return "InvariantViolation", "I3", f"{a.kname()}: refcount {want + 1}, expected {want}"


def anon_vma_underflow(k):
    a = vma(k, "P0").anon_vma
    a.num_children = -1
    return "RefcountUnderflow", "I6", f"num_children of {a.kname()} is -1"


def rwsem_held(k):
    a = vma(k, "P0").anon_vma
    a.rwsem_readers = 1
    return "LockMisuse", "I4", f"rwsem of {a.kname()} held on return to user space"


def pte_folio_freed(k):
    f = freed(page(k, "P0", 2))
    return "UseAfterFree", "KASAN", f"a PTE points to freed {f.kname()}"


def folio_anon_vma_freed(k):
    f = page(k, "P1", 3)
    a = f.mapping = k.anon_vma_cachep.alloc("test")
    freed(a)
    return "UseAfterFree", "KASAN", f"folio->mapping points to freed {a.kname()}"


def folio_anon_vma_not_on_chain(k):
    f = page(k, "P0", 2)
    a = f.mapping = vma(k, "P1").anon_vma
    return ("InvariantViolation", "I1",
            f"page {f.pfn()} mapped by {vma(k, 'P0').kname()} of P0 but its anon_vma "
            f"{a.kname()} is not on the VMA's chain (rmap walk would miss it)")


def folio_index(k):
    f = page(k, "P1", 3)
    f.index += 1
    return ("InvariantViolation", "I1",
            f"page {f.pfn()} index {f.index:#x} does not match {vma(k, 'P1').kname()} at {BASE + 3:#x}")


def folio_without_anon_vma(k):
    f = page(k, "P1", 3)
    f.mapping = None
    return "InvariantViolation", "I1", f"mapped page {f.pfn()} has no anon_vma"


def folio_locked(k):
    f = page(k, "P0", 2)
    f.locked = True
    return "LockMisuse", "", f"page {f.pfn()} locked on return to user space"


def folio_mapcount(k):
    f = page(k, "P0", 2)
    f._mapcount += 1
    return "InvariantViolation", "page counts", f"page {f.pfn()}: mapcount 3, mapped 2 times"


def folio_refcount(k):
    f = page(k, "P0", 2)
    f._refcount += 1
    return "InvariantViolation", "page counts", f"page {f.pfn()}: refcount 3, expected 2"


def folio_leak(k):
    f = k.page_alloc.alloc("test")
    f._refcount = 1
    return "Leak", "kmemleak", f"unreferenced object page {f.pfn()} (refcount 1)"


def vma_leak(k):
    v = k.vm_area_cachep.alloc("test")
    return "Leak", "kmemleak", f"unreferenced object {v.kname()}"


def avc_leak(k):
    avc = k.anon_vma_chain_cachep.alloc("test")
    return "Leak", "kmemleak", f"unreferenced object {avc.kname()}"


def mm_leak(k):
    mm = k.mm_cachep.alloc("test")
    return "Leak", "kmemleak", f"unreferenced object {mm.kname()}"


SEEDS = [task_mm_freed, vma_freed, vma_of_other_mm, vma_tree_unsorted, ksm_counter, ksm_rmap_item_freed,
         ksm_rmap_items_out_of_order, ksm_mm_rmap_items, ksm_page_and_node_disagree, chain_avc_freed,
         chain_anon_vma_freed, chain_of_other_vma, chain_not_in_tree, chained_twice, chain_without_anon_vma,
         anon_vma_not_on_chain, different_chains, tree_avc_on_no_chain, anon_vma_leak, num_active_vmas,
         num_children, anon_vma_refcount, anon_vma_underflow, rwsem_held, pte_folio_freed,
         folio_anon_vma_freed, folio_anon_vma_not_on_chain, folio_index, folio_without_anon_vma, folio_locked,
         folio_mapcount, folio_refcount, folio_leak, vma_leak, avc_leak, mm_leak]


def found(k):
    with pytest.raises(RmapFinding) as e:
        check_invariants(k)
    return type(e.value).__name__, e.value.invariant, e.value.message


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s.__name__)
def test_each_seeded_violation_gives_its_finding(seed):
    k = state()
    want = seed(k)
    assert found(k) == want


#: two violations, the one checked first named first
PAIRS = [(vma_tree_unsorted, ksm_counter), (ksm_counter, chain_not_in_tree), (chained_twice, different_chains),
         (tree_avc_on_no_chain, num_active_vmas), (anon_vma_leak, folio_mapcount),
         (anon_vma_underflow, rwsem_held), (rwsem_held, folio_index), (folio_index, folio_locked),
         (folio_locked, folio_mapcount), (folio_refcount, vma_leak), (vma_leak, avc_leak), (avc_leak, mm_leak),
         (ksm_mm_rmap_items, mm_leak), (pte_folio_freed, folio_leak)]


@pytest.mark.parametrize("first, second", PAIRS, ids=lambda s: s.__name__)
def test_the_first_check_reports_first(first, second):
    k = state()
    want = first(k)
    second(k)
    assert found(k) == want
