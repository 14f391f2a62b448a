"""VMA merge, split and expand: docs/kernel-rules.md A1-A24, plus live-kernel observations.

Expected values come from the document (the kernel's tools/testing/vma tests
and commit 879bca0a2c4f), not from the model. Where the userland test stubs
differ from the real anon_vma code (``unlink_anon_vmas()`` really clears
``vma->anon_vma``; a "cloned" VMA really gains an AVC), the assertion checks
the real effect and says so. Addresses are page numbers relative to
``BASE``, written like the kernel test's page indices.

    page:   0123456789abc
"""

from __future__ import annotations

import errno

import pytest

from rmapcheck.designs import make_kernel
from rmapcheck.model import rmap
from rmapcheck.model.findings import KernelError
from rmapcheck.model.invariants import check_invariants
from rmapcheck.model.kernel import FailAt
from rmapcheck.model.mm_types import (
    VM_ACCOUNT,
    VM_DONTEXPAND,
    VM_IO,
    VM_MAYREAD,
    VM_MAYWRITE,
    VM_MIXEDMAP,
    VM_PFNMAP,
    VM_READ,
    VM_SPECIAL,
    VM_WRITE,
)
from rmapcheck.model.syscalls import spawn, sys_exit, sys_fork, user_read, user_write
from rmapcheck.model.uapi import (
    MAP_FIXED_NOREPLACE,
    MREMAP_DONTUNMAP,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
)
from rmapcheck.model.vma import (
    VMA_MERGE_ERROR_NOMEM,
    VMA_MERGE_NOMERGE,
    VMA_MERGE_SUCCESS,
    VMG_VMA_STATE,
    copy_vma,
    vma_expand,
    vma_merge_existing_range,
    vma_merge_extend,
    vma_merge_new_range,
    vma_merge_struct,
    vma_modify_flags,
)
from rmapcheck.model.vma_init import vm_area_alloc, vma_iter_store
from rmapcheck.scenario.ops import ARENA_BASE

B = ARENA_BASE >> 12
RW = PROT_READ | PROT_WRITE
#: The flags of every VMA in the kernel's userland VMA tests.
TEST_FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE


@pytest.fixture
def k():
    kern = make_kernel("linux-6.18")
    spawn(kern, "P0")
    return kern


def mm_of(k, proc="P0"):
    return k.tasks[proc].mm


def alloc(k, start, end, pgoff=None, flags=TEST_FLAGS):
    """A VMA [start, end) (page indices) inserted in P0's tree, as alloc_and_link_vma()."""
    mm = mm_of(k)
    v = vm_area_alloc(k, mm)
    v.vm_start, v.vm_end = B + start, B + end
    v.vm_pgoff = B + (start if pgoff is None else pgoff)
    v.vm_flags = flags
    vma_iter_store(mm, v)
    return v


def new_root(k):
    """A fresh root anon_vma ("D"), as __anon_vma_prepare() makes one."""
    av = rmap.anon_vma_alloc(k)
    av.num_children += 1  # self-parent link for new root
    return av


def fault(k, vma, av):
    """Attach ``av`` to ``vma`` with one AVC (a singular chain)."""
    avc = rmap.anon_vma_chain_alloc(k)
    vma.anon_vma = av
    rmap.anon_vma_chain_link(k, vma, avc, av)
    av.num_active_vmas += 1


def layout(k, proc="P0"):
    return [(v.vm_start - B, v.vm_end - B, v.vm_pgoff - B) for v in mm_of(k, proc).mmap]


def existing(k, prev, vma, start, end):
    vmg = VMG_VMA_STATE(prev, vma, B + start, B + end)
    return vmg, vma_merge_existing_range(k, vmg)


def mmap(k, start, n, prot=RW, proc="P0"):
    return k.ops.do_mmap(k, mm_of(k, proc), B + start, n, prot, MAP_FIXED_NOREPLACE) - B


def chain(vma):
    return [avc.anon_vma for avc in vma.anon_vma_chain]


# -- A1 --------------------------------------------------------------------------------

def test_a1_merge_new_sequence(k):
    """A1: test_merge_new, every new range from mmap() (vma_merge_new_range, anon_vma NULL).

    ::

        0123456789abc
        AA*B   DD  C
    """
    mm = mm_of(k)
    mmap(k, 0, 2)
    mmap(k, 3, 1)
    mmap(k, 0xB, 1)
    a, b, c = mm.mmap
    d = new_root(k)
    # 1: new [7,9): no merge, a new "D-vma", map_count 4
    mmap(k, 7, 2)
    assert mm.map_count == 4
    dvma = mm.mmap[2]
    assert (dvma.vm_start - B, dvma.vm_end - B) == (7, 9)
    # 2: B faulted with D; new [2,3) -> A = [0,4) pgoff 0, anon_vma D, B deleted
    fault(k, b, d)
    mmap(k, 2, 1)
    assert layout(k)[0] == (0, 4, 0) and mm.mmap[0] is a
    assert a.anon_vma is d and not b._live and mm.map_count == 3
    # 3: new [4,5) -> A = [0,5)
    mmap(k, 4, 1)
    assert layout(k)[0] == (0, 5, 0) and a.anon_vma is d and mm.map_count == 3
    # 4: D-vma faulted with D; new [6,7) -> D-vma = [6,9) pgoff 6
    fault(k, dvma, d)
    mmap(k, 6, 1)
    assert (dvma.vm_start - B, dvma.vm_end - B, dvma.vm_pgoff - B) == (6, 9, 6)
    assert dvma.anon_vma is d and mm.map_count == 3
    # 5: new [5,6) -> A = [0,9), D-vma deleted
    mmap(k, 5, 1)
    assert layout(k)[0] == (0, 9, 0) and not dvma._live and mm.map_count == 2
    assert a.anon_vma is d
    # 6: C faulted with D; new [0xa,0xb) -> C = [0xa,0xc) pgoff 0xa
    fault(k, c, d)
    mmap(k, 0xA, 1)
    assert layout(k)[1] == (0xA, 0xC, 0xA) and mm.map_count == 2
    # 7: new [9,0xa) -> one VMA [0,0xc) pgoff 0, anon_vma D
    mmap(k, 9, 1)
    assert layout(k) == [(0, 0xC, 0)] and mm.mmap[0] is a and a.anon_vma is d
    assert chain(a) == [d] and d.num_active_vmas == 1
    check_invariants(k)


# -- A2-A7: merge_existing --------------------------------------------------------------

def test_a2_merge_right_partial_span(k):
    """A2: ``vvvvNNN`` modify [3,6) of vma [2,6) D, next [6,9) unfaulted."""
    vma = alloc(k, 2, 6)
    nxt = alloc(k, 6, 9)
    d = new_root(k)
    fault(k, vma, d)
    vmg, got = existing(k, vma, vma, 3, 6)
    assert got is nxt and vmg.state == VMA_MERGE_SUCCESS
    assert layout(k) == [(2, 3, 2), (3, 9, 3)]
    assert nxt.anon_vma is d and mm_of(k).map_count == 2
    assert chain(nxt) == [d], "Case 1: next must be cloned onto D"


def test_a3_merge_right_full_span(k):
    """A3: modify [2,6) of vma [2,6) D, next [6,9) -> next = [2,9) pgoff 2, vma deleted."""
    vma = alloc(k, 2, 6)
    nxt = alloc(k, 6, 9)
    d = new_root(k)
    fault(k, vma, d)
    _, got = existing(k, None, vma, 2, 6)
    assert got is nxt and layout(k) == [(2, 9, 2)] and nxt.anon_vma is d
    assert not vma._live and d.num_active_vmas == 1
    check_invariants(k)


def test_a4_merge_left_partial_span(k):
    """A4: prev [0,3) unfaulted, vma [3,7) D, modify [3,6) -> prev [0,6), vma [6,7) pgoff 6."""
    prev = alloc(k, 0, 3)
    vma = alloc(k, 3, 7)
    d = new_root(k)
    fault(k, vma, d)
    _, got = existing(k, prev, vma, 3, 6)
    assert got is prev and layout(k) == [(0, 6, 0), (6, 7, 6)]
    assert prev.anon_vma is d and mm_of(k).map_count == 2 and d.num_active_vmas == 2


def test_a5_merge_left_full_span(k):
    """A5: prev [0,3), vma [3,7) D, modify [3,7) -> prev [0,7) D, one VMA."""
    prev = alloc(k, 0, 3)
    vma = alloc(k, 3, 7)
    d = new_root(k)
    fault(k, vma, d)
    _, got = existing(k, prev, vma, 3, 7)
    assert got is prev and layout(k) == [(0, 7, 0)] and prev.anon_vma is d
    check_invariants(k)


def test_a6_merge_both(k):
    """A6: ``PPPVVVVNN`` modify [3,7) -> prev [0,9) D; vma and next deleted."""
    prev = alloc(k, 0, 3)
    vma = alloc(k, 3, 7)
    nxt = alloc(k, 7, 9)
    d = new_root(k)
    fault(k, vma, d)
    _, got = existing(k, prev, vma, 3, 7)
    assert got is prev and layout(k) == [(0, 9, 0)] and prev.anon_vma is d
    assert not vma._live and not nxt._live
    check_invariants(k)


@pytest.mark.parametrize("start,end", [(4, 5), (5, 6), (6, 7), (4, 7), (4, 6)])
def test_a7_no_merge_strictly_inside(k, start, end):
    """A7: a range strictly inside vma [3,8) never merges (merge_existing does not split)."""
    alloc(k, 0, 3)
    vma = alloc(k, 3, 8)
    alloc(k, 8, 0xA)
    vmg, got = existing(k, vma, vma, start, end)
    assert got is None and vmg.state == VMA_MERGE_NOMERGE
    assert layout(k) == [(0, 3, 0), (3, 8, 3), (8, 0xA, 8)]


# -- A8-A9: incompatible prev/next anon_vmas --------------------------------------------

def test_a8_prev_next_incompatible_existing(k):
    """A8: prev D1, vma unfaulted, next D2 -> prev+vma only; next untouched."""
    prev = alloc(k, 0, 3)
    vma = alloc(k, 3, 7)
    nxt = alloc(k, 7, 9)
    d1, d2 = new_root(k), new_root(k)
    fault(k, prev, d1)
    fault(k, nxt, d2)
    _, got = existing(k, prev, vma, 3, 7)
    assert got is prev and layout(k) == [(0, 7, 0), (7, 9, 7)]
    assert nxt.anon_vma is d2 and chain(nxt) == [d2]


def test_a9_prev_next_incompatible_new(k):
    """A9: prev D1, next D2, new [3,7) -> prev = [0,7), 2 VMAs."""
    prev = alloc(k, 0, 3)
    nxt = alloc(k, 7, 9)
    d1, d2 = new_root(k), new_root(k)
    fault(k, prev, d1)
    fault(k, nxt, d2)
    vmg = vma_merge_struct(mm=mm_of(k), start=B + 3, end=B + 7, pgoff=B + 3,
                           vm_flags=TEST_FLAGS, prev=prev, next=nxt)
    assert vma_merge_new_range(k, vmg) is prev
    assert layout(k) == [(0, 7, 0), (7, 9, 7)] and nxt.anon_vma is d2


# -- A10-A14: dup_anon_vma ---------------------------------------------------------------

def test_a10_expand_over_faulted_next(k):
    """A10: expand unfaulted prev [0,3) over next [3,5) D -> 0, prev.anon_vma == D, cloned."""
    prev = alloc(k, 0, 3)
    nxt = alloc(k, 3, 5)
    d = new_root(k)
    fault(k, nxt, d)
    vmg = vma_merge_struct(mm=mm_of(k), start=B, end=B + 5, pgoff=B, vm_flags=TEST_FLAGS,
                           prev=prev, next=nxt, target=prev)
    assert vma_expand(k, vmg) == 0
    assert prev.anon_vma is d and chain(prev) == [d]
    assert layout(k) == [(0, 5, 0)] and d.num_active_vmas == 1
    check_invariants(k)


@pytest.mark.parametrize("faulted", ["next", "middle"])
def test_a11_a12_three_way_one_faulted(k, faulted):
    """A11/A12: prev [0,3), vma [3,5), next [5,8); one of next/middle has D -> prev [0,8) D."""
    prev = alloc(k, 0, 3)
    vma = alloc(k, 3, 5)
    nxt = alloc(k, 5, 8)
    d = new_root(k)
    fault(k, nxt if faulted == "next" else vma, d)
    _, got = existing(k, prev, vma, 3, 5)
    assert got is prev and layout(k) == [(0, 8, 0)]
    assert prev.anon_vma is d and chain(prev) == [d] and d.num_active_vmas == 1
    check_invariants(k)


def test_a13_prev_extends_middle_shrinks(k):
    """A13: prev [0,3), vma [3,8) D, modify [3,5) -> prev [0,5) D (cloned), vma [5,8)."""
    prev = alloc(k, 0, 3)
    vma = alloc(k, 3, 8)
    d = new_root(k)
    fault(k, vma, d)
    _, got = existing(k, prev, vma, 3, 5)
    assert got is prev and layout(k) == [(0, 5, 0), (5, 8, 5)]
    assert prev.anon_vma is d and chain(prev) == [d] and d.num_active_vmas == 2


def test_a14_next_extends_backwards(k):
    """A14: vma [0,5) D, next [5,8), modify [3,5) -> next [3,8) D (cloned), vma [0,3)."""
    vma = alloc(k, 0, 5)
    nxt = alloc(k, 5, 8)
    d = new_root(k)
    fault(k, vma, d)
    _, got = existing(k, vma, vma, 3, 5)
    assert got is nxt and layout(k) == [(0, 3, 0), (3, 8, 3)]
    assert nxt.anon_vma is d and chain(nxt) == [d]


# -- A15-A16: OOM rollback ---------------------------------------------------------------

def test_a15_prealloc_fail_existing_rolls_back(k):
    """A15: merge_existing with maple preallocation failing -> NULL, NOMEM; clone undone.

    The userland stub of unlink_anon_vmas() leaves ``prev->anon_vma`` set; the
    real one (v6.18) clears it, so "cloned and unlinked" shows as: prev has no
    AVC and D counts one VMA again.
    """
    prev = alloc(k, 0, 3)
    vma = alloc(k, 3, 5)
    d = new_root(k)
    fault(k, vma, d)
    k.fail_sites["vma_iter_prealloc"] = FailAt()
    vmg, got = existing(k, prev, vma, 3, 5)
    assert got is None and vmg.state == VMA_MERGE_ERROR_NOMEM
    assert chain(prev) == [] and d.num_active_vmas == 1 and d.num_children == 1
    assert layout(k) == [(0, 3, 0), (3, 5, 3)]
    check_invariants(k)


def test_a16_prealloc_fail_expand_rolls_back(k):
    """A16: expand prev [0,3) over vma [3,5) D with preallocation failing -> -ENOMEM, NOMEM."""
    prev = alloc(k, 0, 3)
    vma = alloc(k, 3, 5)
    d = new_root(k)
    fault(k, vma, d)
    k.fail_sites["vma_iter_prealloc"] = FailAt()
    vmg = vma_merge_struct(mm=mm_of(k), start=B, end=B + 5, pgoff=B, vm_flags=TEST_FLAGS,
                           prev=prev, next=vma, target=prev)
    assert vma_expand(k, vmg) == -errno.ENOMEM and vmg.state == VMA_MERGE_ERROR_NOMEM
    assert chain(prev) == [] and d.num_active_vmas == 1
    assert layout(k) == [(0, 3, 0), (3, 5, 3)]
    check_invariants(k)


@pytest.mark.skip(reason="A17/A18: no VMA of the model has vm_ops (all are private anonymous), "
                         "so close hooks never block a merge")
def test_a17_a18_close_hooks():
    pass


# -- A19 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("special", [VM_IO, VM_DONTEXPAND, VM_PFNMAP, VM_MIXEDMAP])
def test_a19_special_flags(k, special):
    """A19: VM_IO, VM_DONTEXPAND, VM_PFNMAP, VM_MIXEDMAP are VM_SPECIAL and never merge."""
    assert VM_SPECIAL == VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP
    flags = TEST_FLAGS | special
    prev = alloc(k, 0, 2, flags=flags)
    vmg = vma_merge_struct(mm=mm_of(k), start=B + 2, end=B + 3, pgoff=B + 2, vm_flags=flags,
                           prev=prev)
    assert vma_merge_new_range(k, vmg) is None and vmg.state == VMA_MERGE_NOMERGE
    vma = alloc(k, 2, 3, flags=flags)
    vmg, got = existing(k, prev, vma, 2, 3)
    assert got is None and vmg.state == VMA_MERGE_NOMERGE
    assert mm_of(k).map_count == 2


# -- A20-A23 -----------------------------------------------------------------------------

def test_a20_merge_extend(k):
    """A20: vma [0,1), other [3,4); vma_merge_extend(vma, 2 pages) -> vma [0,4), one VMA."""
    vma = alloc(k, 0, 1)
    alloc(k, 3, 4)
    assert vma_merge_extend(k, vma, 2) is vma
    assert layout(k) == [(0, 4, 0)]


def test_a21_copy_vma(k):
    """A21: copy_vma to a free range makes a new VMA; next to a compatible one it merges."""
    vma = alloc(k, 3, 5)
    new, src, _ = copy_vma(k, vma, B + 0, 2, B + 0)
    assert new is not None and new is not vma and src is vma
    assert (new.vm_start - B, new.vm_end - B, new.vm_pgoff - B) == (0, 2, 0)

    k2 = make_kernel("linux-6.18")
    spawn(k2, "P0")
    vma = alloc(k2, 0, 2)
    nxt = alloc(k2, 6, 8)
    new, _, _ = copy_vma(k2, vma, B + 4, 2, B + 4)
    assert new is nxt and (nxt.vm_start - B, nxt.vm_end - B, nxt.vm_pgoff - B) == (4, 8, 4)


def test_a22_simple_modify_split_pgoff(k):
    """A22: vma_modify_flags on [1,2) of [0,3) -> [0,1) pgoff 0, [1,2) pgoff 1 (the original), [2,3) pgoff 2."""
    vma = alloc(k, 0, 3)
    got = vma_modify_flags(k, vma, vma, B + 1, B + 2, VM_READ | VM_MAYREAD)
    assert got is vma
    assert layout(k) == [(0, 1, 0), (1, 2, 1), (2, 3, 2)]


def test_a23_simple_merge_expand_shrink_expand_only(k):
    """A23: simple merge, expand, shrink (munmap of the tail), expand-only mode."""
    mm = mm_of(k)
    mmap(k, 0, 1)
    mmap(k, 2, 1)
    mmap(k, 1, 1)
    assert layout(k) == [(0, 3, 0)]
    k.ops.do_munmap(k, mm, B + 1, 2)
    assert layout(k) == [(0, 1, 0)]
    vmg = vma_merge_struct(mm=mm, start=B, end=B + 3, pgoff=B, vm_flags=mm.mmap[0].vm_flags,
                           target=mm.mmap[0])
    assert vma_expand(k, vmg) == 0 and layout(k) == [(0, 3, 0)]

    k2 = make_kernel("linux-6.18")
    spawn(k2, "P0")
    alloc(k2, 0, 2)
    prev = alloc(k2, 3, 5)
    vmg = vma_merge_struct(mm=mm_of(k2), start=B + 5, end=B + 9, pgoff=B + 5,
                           vm_flags=TEST_FLAGS, prev=prev, just_expand=True)
    assert vma_merge_new_range(k2, vmg) is prev
    assert layout(k2) == [(0, 2, 0), (3, 9, 3)]


# -- A24: the 879bca0a2c4f rule, at system-call level with fork --------------------------

def test_a24_case2_fork_child_target_refused(k):
    """A24 Case 2: a new range next to a faulted fork child stays separate (live 6.18: same).

    In the parent (singular chain) the same mmap merges.
    """
    mmap(k, 0, 2)
    user_write(k, k.tasks["P0"], B, 5)
    sys_fork(k, k.tasks["P0"], "P1")
    mmap(k, 2, 1, proc="P1")
    assert layout(k, "P1") == [(0, 2, 0), (2, 3, 2)]
    mmap(k, 2, 1, proc="P0")
    assert layout(k, "P0") == [(0, 3, 0)]
    check_invariants(k)


def test_a24_case1_fork_child_source_refused(k):
    """A24 Case 1: a faulted fork-child middle is not duplicated into an unfaulted prev.

    ``PPM``: prev [0,2) rw unfaulted, middle [2,3) rwx faulted; mprotect middle
    rw. Live 6.18: the child keeps two VMAs, the parent merges to [0,3).
    """
    p0 = k.tasks["P0"]
    mmap(k, 0, 2)
    mmap(k, 2, 1, RW | PROT_EXEC)
    user_write(k, p0, B + 2, 7)
    c = sys_fork(k, p0, "P1")
    k.ops.do_mprotect_pkey(k, c.mm, B + 2, 1, RW)
    assert [v[:2] for v in layout(k, "P1")] == [(0, 2), (2, 3)]
    k.ops.do_mprotect_pkey(k, p0.mm, B + 2, 1, RW)
    assert [v[:2] for v in layout(k, "P0")] == [(0, 3)]
    assert user_read(k, p0, B + 2) == 7 and user_read(k, c, B + 2) == 7
    check_invariants(k)


def test_a24_prev_next_must_agree_both_sides(k):
    """A24: with prev and next both mergeable, prev->anon_vma and next->anon_vma must agree (A8)."""
    test_a8_prev_next_incompatible_existing(k)


def test_copied_from_fork_child_not_merged(k):
    """2026 mremap fix (live 6.18.44): a faulted fork-child VMA moved in front of an
    unfaulted VMA with contiguous pgoff does not merge."""
    p0 = k.tasks["P0"]
    mmap(k, 0, 1)
    user_write(k, p0, B, 5)
    mmap(k, 1, 1, PROT_READ)
    c = sys_fork(k, p0, "P1")
    mm = c.mm
    k.ops.do_mprotect_pkey(k, mm, B + 1, 1, RW)
    assert [v[:2] for v in layout(k, "P1")] == [(0, 1), (1, 2)]
    k.ops.do_mremap(k, mm, B, 1, 1, MREMAP_MAYMOVE | MREMAP_FIXED, B + 20)
    k.ops.do_mremap(k, mm, B + 20, 1, 1, MREMAP_MAYMOVE | MREMAP_FIXED, B)
    assert [v[:2] for v in layout(k, "P1")] == [(0, 1), (1, 2)]
    assert user_read(k, c, B) == 5
    check_invariants(k)


def test_copied_from_anon_vma_propagated(k):
    """2026 mremap fix (live 6.18.44): the merged VMA gets the moved folio's anon_vma,
    so a fork child afterwards still reads the data (vanilla v6.18: it reads 0)."""
    p0 = k.tasks["P0"]
    mm = mm_of(k)
    mmap(k, 0, 1)
    user_write(k, p0, B, 5)
    mmap(k, 1, 1, PROT_READ)
    k.ops.do_mremap(k, mm, B, 1, 1, MREMAP_MAYMOVE | MREMAP_FIXED, B + 20)
    k.ops.do_mprotect_pkey(k, mm, B + 1, 1, RW)
    k.ops.do_mremap(k, mm, B + 20, 1, 1, MREMAP_MAYMOVE | MREMAP_FIXED, B)
    assert [v[:2] for v in layout(k)] == [(0, 2)]
    assert mm.mmap[0].anon_vma is not None
    c = sys_fork(k, p0, "P1")
    assert user_read(k, c, B) == 5
    sys_exit(k, c)
    check_invariants(k)


# -- observed on the live 6.18.44 kernel ---------------------------------------------------

def test_live_mprotect_ro_drops_account_unfaulted(k):
    """Live: an unfaulted rw VMA made r loses VM_ACCOUNT and merges with an r neighbour;
    a faulted one keeps VM_ACCOUNT and does not."""
    mm = mm_of(k)
    mmap(k, 0, 1, PROT_READ)
    mmap(k, 1, 1, RW)
    assert mm.mmap[1].vm_flags & VM_ACCOUNT
    k.ops.do_mprotect_pkey(k, mm, B + 1, 1, PROT_READ)
    assert [v[:2] for v in layout(k)] == [(0, 2)] and not mm.mmap[0].vm_flags & VM_ACCOUNT

    k2 = make_kernel("linux-6.18")
    p = spawn(k2, "P0")
    mmap(k2, 0, 1, PROT_READ)
    mmap(k2, 1, 1, RW)
    user_write(k2, p, B + 1, 1)
    k2.ops.do_mprotect_pkey(k2, p.mm, B + 1, 1, PROT_READ)
    assert [v[:2] for v in layout(k2)] == [(0, 1), (1, 2)]
    assert p.mm.mmap[1].vm_flags & VM_ACCOUNT


def test_live_mprotect_hole_partial_enomem(k):
    """Live: mprotect over [rw rw . rw rw] changes the first VMA, then fails with ENOMEM."""
    mm = mm_of(k)
    mmap(k, 0, 2)
    mmap(k, 3, 2)
    with pytest.raises(KernelError) as e:
        k.ops.do_mprotect_pkey(k, mm, B, 5, PROT_READ)
    assert e.value.errno == errno.ENOMEM
    assert [v.vm_flags & VM_WRITE for v in mm.mmap] == [0, VM_WRITE]


@pytest.mark.parametrize("old,new,flags,to,err", [
    (4, 5, MREMAP_MAYMOVE | MREMAP_FIXED, 100, errno.EFAULT),   # move+resize over two VMAs
    (3, 5, 0, None, errno.EFAULT),                               # in-place expand over two
    (0, 1, MREMAP_MAYMOVE, None, errno.EINVAL),                  # old_len 0, private
    (1, 1, MREMAP_FIXED, 50, errno.EINVAL),                      # fixed without maymove
    (1, 2, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 50, errno.EINVAL),  # DONTUNMAP resizes
    (2, 2, MREMAP_MAYMOVE | MREMAP_FIXED, 1, errno.EINVAL),      # overlap
    (2, 0, 0, None, errno.EINVAL),                               # new_len 0
])
def test_live_mremap_errnos(k, old, new, flags, to, err):
    """Live: the errno of each mremap refusal over rw [0,2) + r [2,4)."""
    mmap(k, 0, 2)
    mmap(k, 2, 2, PROT_READ)
    with pytest.raises(KernelError) as e:
        k.ops.do_mremap(k, mm_of(k), B, old, new, flags, B + to if to is not None else 0)
    assert e.value.errno == err
    assert [v[:2] for v in layout(k)] == [(0, 2), (2, 4)]


def test_live_mremap_move_multiple_vmas(k):
    """Live (v6.17+): a move-only MREMAP_FIXED over two VMAs with a gap moves both, keeping the gap."""
    mmap(k, 0, 2)
    mmap(k, 3, 2, PROT_READ)
    got = k.ops.do_mremap(k, mm_of(k), B, 5, 5, MREMAP_MAYMOVE | MREMAP_FIXED, B + 100)
    assert got == B + 100
    assert [v[:2] for v in layout(k)] == [(100, 102), (103, 105)]


def test_live_mremap_in_place_shrink_across_vmas(k):
    """Live: an in-place shrink over two VMAs unmaps the tail."""
    mmap(k, 0, 2)
    mmap(k, 2, 2, PROT_READ)
    assert k.ops.do_mremap(k, mm_of(k), B, 4, 1, 0, 0) == B
    assert [v[:2] for v in layout(k)] == [(0, 1)]


def test_live_dontunmap_keeps_account(k):
    """Live: MREMAP_DONTUNMAP leaves the old VMA accounted, so a new rw mapping merges with it."""
    p0 = k.tasks["P0"]
    mmap(k, 0, 1)
    user_write(k, p0, B, 1)
    got = k.ops.do_mremap(k, mm_of(k), B, 1, 1, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
                          B + 50)
    assert got == B + 50
    mmap(k, 1, 1)
    assert [v[:2] for v in layout(k)] == [(0, 2), (50, 51)]
    assert user_read(k, p0, B) == 0 and user_read(k, p0, B + 50) == 1
    check_invariants(k)


def test_live_moved_faulted_vma_keeps_pgoff(k):
    """Live: a faulted VMA moved next to an unfaulted one keeps its pgoff and does not merge;
    moved back next to its split-off neighbour it merges again."""
    p0 = k.tasks["P0"]
    mm = mm_of(k)
    mmap(k, 0, 3)
    user_write(k, p0, B, 1)
    k.ops.do_mremap(k, mm, B + 2, 1, 1, MREMAP_MAYMOVE | MREMAP_FIXED, B + 10)
    assert [v[:2] for v in layout(k)] == [(0, 2), (10, 11)]
    assert layout(k)[1][2] == 2
    k.ops.do_mremap(k, mm, B + 10, 1, 1, MREMAP_MAYMOVE | MREMAP_FIXED, B + 2)
    assert layout(k) == [(0, 3, 0)]
    check_invariants(k)


def test_live_dontunmap_onto_neighbour_merges_with_source(k):
    """Live: mremap [1,2) of rw [0,2) onto r-x [2,3) with MREMAP_DONTUNMAP unmaps the target,
    and the unfaulted copy merges with its own source: one rw VMA [0,3) (conform seed 5180)."""
    mmap(k, 0, 3)
    k.ops.do_mprotect_pkey(k, mm_of(k), B + 2, 1, PROT_READ | PROT_EXEC)
    got = k.ops.do_mremap(k, mm_of(k), B + 1, 1, 1,
                          MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, B + 2)
    assert got == B + 2
    assert [v[:2] for v in layout(k)] == [(0, 3)]
    check_invariants(k)
