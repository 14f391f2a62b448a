"""The anon_vma functions of mm/rmap.c against docs/kernel-rules.md §G (G2–G7).

Expected values are the ones the document derives from the kernel code, written
here by hand.
"""

from __future__ import annotations

from conftest import BASE

from rmapcheck.model.invariants import check_invariants
from rmapcheck.model.syscalls import (
    sys_exit, sys_fork, sys_mmap, sys_mprotect, sys_munmap, user_write,
)
from rmapcheck.model.uapi import MAP_FIXED_NOREPLACE, PROT_EXEC, PROT_READ, PROT_WRITE
from rmapcheck.model.vma_init import vma_lookup

RW = PROT_READ | PROT_WRITE


def chain(vma):
    return [avc.anon_vma for avc in vma.anon_vma_chain]


def vma_of(k, comm, page=0):
    return vma_lookup(k.tasks[comm].mm, BASE + page)


def g2(k):
    """G2 steps 1-5; returns the anon_vmas R, X, Y."""
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 3, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p0, BASE, 1)
    R = vma_of(k, "P0").anon_vma
    assert (R.root, R.parent, R.num_children, R.num_active_vmas, R.refcount) == (R, R, 1, 1, 1)
    assert chain(vma_of(k, "P0")) == [R]
    sys_fork(k, p0, "C1")
    X = vma_of(k, "C1").anon_vma
    assert X is not R
    assert (X.parent, X.root, X.num_active_vmas) == (R, R, 1)
    assert (R.refcount, R.num_children) == (2, 2)
    assert chain(vma_of(k, "C1")) == [X, R]
    sys_fork(k, k.tasks["C1"], "C2")
    Y = vma_of(k, "C2").anon_vma
    assert Y not in (R, X)
    assert (Y.parent, X.num_children, R.refcount) == (X, 1, 3)
    assert chain(vma_of(k, "C2")) == [Y, X, R]
    sys_munmap(k, k.tasks["C1"], BASE, 3)
    assert X.num_active_vmas == 0
    assert (X.num_children, R.num_children, R.refcount) == (1, 2, 3)
    assert X._live and Y._live
    nr = k.anon_vma_cachep.nr_live
    sys_fork(k, k.tasks["C2"], "C3")
    assert vma_of(k, "C3").anon_vma is X, "G2 step 5: C3 reuses X"
    assert X.num_active_vmas == 1
    assert k.anon_vma_cachep.nr_live == nr, "no new anon_vma allocated"
    assert (X.num_children, R.refcount) == (1, 3)
    assert chain(vma_of(k, "C3")) == [Y, X, R]
    check_invariants(k)
    return R, X, Y


def test_g2_fork_chain_reuse_of_abandoned_anon_vma(k):
    g2(k)


def test_g3_no_double_reuse(k):
    R, X, Y = g2(k)
    sys_exit(k, k.tasks["C2"])
    assert Y._live, "Y's tree still holds C3's AVC"
    assert (X.num_children, Y.num_active_vmas) == (1, 0)
    c3 = k.tasks["C3"]
    sys_mprotect(k, c3, BASE + 1, 1, PROT_READ)
    s1, s2, s3 = c3.mm.mmap
    assert [v.anon_vma for v in (s1, s2, s3)] == [X, X, X]
    assert [chain(v) for v in (s1, s2, s3)] == [[Y, X, R]] * 3
    assert X.num_active_vmas == 3
    sys_fork(k, c3, "T")
    t1, t2, t3 = k.tasks["T"].mm.mmap
    assert t1.anon_vma is Y and Y.num_active_vmas == 1
    assert t2.anon_vma not in (R, X, Y) and t2.anon_vma.parent is X
    assert t3.anon_vma not in (R, X, Y, t2.anon_vma) and t3.anon_vma.parent is X
    assert X.num_children == 3  # Y, and the fresh anon_vmas of t2 and t3
    check_invariants(k)


def test_g4_unlink_frees_child_then_root(k):
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 1, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p0, BASE, 1)
    R = vma_of(k, "P0").anon_vma
    sys_fork(k, p0, "C")
    X = vma_of(k, "C").anon_vma
    assert R.refcount == 2
    sys_exit(k, k.tasks["C"])
    assert not X._live and X._free[1] == "unlink_anon_vmas"
    assert (R.num_children, R.refcount) == (1, 1)
    sys_exit(k, p0)
    assert not R._live
    assert k.anon_vma_cachep.nr_live == 0 and k.anon_vma_chain_cachep.nr_live == 0
    assert k.page_alloc.nr_live == 0


def test_g5_split_clones_exactly(k):
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 3, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p0, BASE, 1)
    sys_fork(k, p0, "C")
    c = k.tasks["C"]
    X = vma_of(k, "C").anon_vma
    before = chain(vma_of(k, "C"))
    sys_mprotect(k, c, BASE + 2, 1, PROT_READ)
    a, b = c.mm.mmap
    assert a.anon_vma is X and b.anon_vma is X
    assert chain(a) == before and chain(b) == before
    assert X.num_active_vmas == 2
    check_invariants(k)


def test_g6_neighbour_reuse_in_anon_vma_prepare(k):
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 2, RW, MAP_FIXED_NOREPLACE)
    sys_mprotect(k, p0, BASE + 1, 1, RW | PROT_EXEC)
    a, b = p0.mm.mmap
    assert b.vm_pgoff == a.vm_pgoff + 1
    user_write(k, p0, BASE, 1)
    R = a.anon_vma
    user_write(k, p0, BASE + 1, 2)
    assert b.anon_vma is R
    assert R.num_active_vmas == 2
    assert chain(b) == [R]
    check_invariants(k)


def test_g6_no_neighbour_reuse_from_a_fork_child(k):
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 1, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p0, BASE, 1)
    sys_fork(k, p0, "C")
    c = k.tasks["C"]
    sys_mmap(k, c, BASE + 1, 1, RW | PROT_EXEC, MAP_FIXED_NOREPLACE)
    a, b = c.mm.mmap
    assert len(a.anon_vma_chain) == 2
    user_write(k, c, BASE + 1, 2)
    assert b.anon_vma is not a.anon_vma
    assert b.anon_vma.root is b.anon_vma, "a new root"
    check_invariants(k)


def test_g7_page_moves_to_the_faulting_anon_vma_on_reuse(k):
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 1, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p0, BASE, 1)
    R = vma_of(k, "P0").anon_vma
    page = p0.mm.pgtable[BASE][0]
    assert page.mapping is R and page.anon_exclusive
    sys_fork(k, p0, "C")
    assert not page.anon_exclusive, "fork clears PageAnonExclusive"
    sys_exit(k, k.tasks["C"])
    user_write(k, p0, BASE, 2)
    assert p0.mm.pgtable[BASE][0] is page, "reused, not copied"
    assert page.mapping is R and page.anon_exclusive
    check_invariants(k)


def test_g7_cow_in_child_maps_into_childs_anon_vma(k):
    p0 = k.tasks["P0"]
    sys_mmap(k, p0, BASE, 1, RW, MAP_FIXED_NOREPLACE)
    user_write(k, p0, BASE, 1)
    sys_fork(k, p0, "C")
    c = k.tasks["C"]
    X = vma_of(k, "C").anon_vma
    user_write(k, c, BASE, 2)
    new = c.mm.pgtable[BASE][0]
    assert new is not p0.mm.pgtable[BASE][0]
    assert new.mapping is X and new.index == BASE
    assert p0.mm.pgtable[BASE][0].content == 1 and new.content == 2
    check_invariants(k)
