"""The slab caches and their KASAN shadow."""

from __future__ import annotations

import pytest

from rmapcheck.model.findings import DoubleFree, UseAfterFree
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.slab import kasan_check


def test_typesafe_by_rcu_reuse_keeps_memory_and_skips_ctor():
    k = Kernel({})
    a = k.anon_vma_cachep.alloc("anon_vma_alloc")
    a.num_children = 7
    a.rwsem_readers = 0
    k.anon_vma_cachep.free(a, "anon_vma_free")
    with pytest.raises(UseAfterFree) as e:
        kasan_check(a, "drop_anon_vma")
    assert e.value.obj is a and a._free == (0, "anon_vma_free", 0)
    a.refcount = 5  # as if the freed memory held a stale count
    b = k.anon_vma_cachep.alloc("anon_vma_alloc")
    assert b is a, "the same slot comes back (LIFO freelist)"
    assert b.num_children == 7 and b.refcount == 5, "constructor does not run on reuse"
    kasan_check(b, "drop_anon_vma")


def test_non_typesafe_cache_hands_out_fresh_memory():
    k = Kernel({})
    c = k.anon_vma_chain_cachep.alloc("anon_vma_chain_alloc")
    c.vma = object()
    k.anon_vma_chain_cachep.free(c, "anon_vma_chain_free")
    d = k.anon_vma_chain_cachep.alloc("anon_vma_chain_alloc")
    assert d._slot == c._slot and d.vma is None


def test_double_free():
    k = Kernel({})
    a = k.anon_vma_cachep.alloc("x")
    k.anon_vma_cachep.free(a, "anon_vma_free")
    with pytest.raises(DoubleFree):
        k.anon_vma_cachep.free(a, "anon_vma_free")
