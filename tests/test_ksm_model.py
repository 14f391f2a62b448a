"""KSM in the model (mm/ksm.c v6.18) against the kernel's documented behaviour.

Expected values come from Documentation/admin-guide/mm/ksm.rst and the mm/ksm.c
comments (docs/kernel-rules.md §H, I25-I27), written here by hand: two identical
pages make one KSM page with ``pages_shared`` 1 and ``pages_sharing`` 1; a page
must keep its checksum over one full scan before it enters the unstable tree;
``max_page_sharing`` caps the sharers of one KSM page and needs no KSM pages to
change; a merged page's rmap_item pins its anon_vma until it leaves the stable
tree; ``rmap_walk_ksm()`` finds forks made after the merge on its second pass.
"""

from __future__ import annotations

import pytest

from conftest import BASE

from rmapcheck.model.invariants import check_invariants
from rmapcheck.model.ksm import (
    is_ksm_zero_pte, ksm_counters, ksm_full_scans, ksm_stat, ksm_state_of, ksm_store, rmap_walk_ksm,
)
from rmapcheck.model.mm_types import ZERO_PAGE
from rmapcheck.model.syscalls import sys_exit, sys_fork, sys_madvise, sys_mmap, sys_munmap, user_read, user_write
from rmapcheck.model.uapi import MADV_MERGEABLE, MADV_UNMERGEABLE, MAP_FIXED_NOREPLACE, PROT_READ, PROT_WRITE
from rmapcheck.model.vma_init import vma_lookup
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.generate import KSM_KINDS, random_scenario
from rmapcheck.scenario.parse import parse_scenario

RW = PROT_READ | PROT_WRITE


def mergeable(k, comm="P0", pages=4):
    t = k.tasks[comm]
    sys_mmap(k, t, BASE, pages, RW, MAP_FIXED_NOREPLACE)
    sys_madvise(k, t, BASE, pages, MADV_MERGEABLE)
    return t


def frame(k, comm, page):
    pte = k.tasks[comm].mm.pgtable.get(BASE + page)
    return None if pte is None else pte[0]


def counters(k):
    c = ksm_counters(k)
    return {n: c[n] for n in ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
                              "ksm_zero_pages")}


def scan(k, n=1):
    assert ksm_full_scans(k, n) == n
    check_invariants(k)


def test_two_identical_pages_merge_after_two_scans(k):
    t = mergeable(k)
    user_write(k, t, BASE + 0, 5)
    user_write(k, t, BASE + 1, 5)
    scan(k)
    # First sight of a page only records its checksum: nothing merges yet.
    assert frame(k, "P0", 0) is not frame(k, "P0", 1)
    assert counters(k) == {"pages_shared": 0, "pages_sharing": 0, "pages_unshared": 0,
                           "pages_volatile": 2, "ksm_zero_pages": 0}
    scan(k)
    f = frame(k, "P0", 0)
    assert f is frame(k, "P0", 1) and f.ksm
    assert counters(k) == {"pages_shared": 1, "pages_sharing": 1, "pages_unshared": 0,
                           "pages_volatile": 0, "ksm_zero_pages": 0}
    assert ksm_stat(t.mm) == {"ksm_merging_pages": 2, "ksm_rmap_items": 2, "ksm_zero_pages": 0}
    assert user_read(k, t, BASE + 1) == 5
    # Merged pages are write-protected.
    assert k.tasks["P0"].mm.pgtable[BASE][1] is False


def test_a_changed_page_does_not_enter_the_unstable_tree(k):
    t = mergeable(k)
    user_write(k, t, BASE + 0, 5)
    user_write(k, t, BASE + 1, 6)
    scan(k)
    user_write(k, t, BASE + 1, 5)  # its checksum changes
    scan(k)
    assert frame(k, "P0", 0) is not frame(k, "P0", 1)
    assert counters(k)["pages_unshared"] == 1 and counters(k)["pages_volatile"] == 1
    scan(k)
    assert frame(k, "P0", 0) is frame(k, "P0", 1)


def test_pages_merge_across_fork(k):
    t = mergeable(k)
    user_write(k, t, BASE, 1)
    sys_fork(k, t, "P1")  # ksm_fork(): the child enters KSM too
    user_write(k, t, BASE, 7)
    user_write(k, k.tasks["P1"], BASE, 7)
    assert frame(k, "P0", 0) is not frame(k, "P1", 0)
    scan(k, 2)
    f = frame(k, "P0", 0)
    assert f is frame(k, "P1", 0) and f.ksm
    assert (counters(k)["pages_shared"], counters(k)["pages_sharing"]) == (1, 1)
    assert ksm_stat(k.tasks["P1"].mm)["ksm_merging_pages"] == 1


def test_unmerge_gives_each_mapping_its_own_page(k):
    t = mergeable(k)
    for i in range(3):
        user_write(k, t, BASE + i, 9)
    scan(k, 2)
    assert len({id(frame(k, "P0", i)) for i in range(3)}) == 1
    sys_madvise(k, t, BASE, 4, MADV_UNMERGEABLE)
    check_invariants(k)
    fs = [frame(k, "P0", i) for i in range(3)]
    assert len({id(f) for f in fs}) == 3 and not any(f.ksm for f in fs)
    assert [user_read(k, t, BASE + i) for i in range(3)] == [9, 9, 9]
    assert not vma_lookup(t.mm, BASE).vm_flags & 0x80000000  # VM_MERGEABLE cleared
    # "it's easier to leave that to the next pass of ksmd": counters drop then.
    assert counters(k)["pages_shared"] == 1
    scan(k)
    assert counters(k) == dict.fromkeys(counters(k), 0)


def test_write_to_a_merged_page_copies_it(k):
    t = mergeable(k)
    user_write(k, t, BASE + 0, 3)
    user_write(k, t, BASE + 1, 3)
    scan(k, 2)
    kpage = frame(k, "P0", 0)
    user_write(k, t, BASE + 0, 4)
    check_invariants(k)
    assert frame(k, "P0", 0) is not kpage and frame(k, "P0", 1) is kpage
    assert (user_read(k, t, BASE + 0), user_read(k, t, BASE + 1)) == (4, 3)
    assert kpage.ksm and kpage._mapcount == 1


def test_use_zero_pages_merges_with_the_zero_page(k):
    assert ksm_store(k, "use_zero_pages", 1) == 0
    t = mergeable(k)
    user_write(k, t, BASE + 0, 0)
    user_write(k, t, BASE + 1, 0)
    user_write(k, t, BASE + 2, 0)
    scan(k, 2)
    assert all(frame(k, "P0", i) is ZERO_PAGE for i in range(3))
    assert all(is_ksm_zero_pte(t.mm.pgtable[BASE + i]) for i in range(3))
    assert counters(k)["ksm_zero_pages"] == 3 and counters(k)["pages_shared"] == 0
    assert ksm_stat(t.mm)["ksm_zero_pages"] == 3
    # A write breaks one; unmerging breaks another; unmapping drops the last.
    user_write(k, t, BASE + 0, 8)
    assert counters(k)["ksm_zero_pages"] == 2
    sys_madvise(k, t, BASE + 1, 1, MADV_UNMERGEABLE)
    assert frame(k, "P0", 1) is not ZERO_PAGE and counters(k)["ksm_zero_pages"] == 1
    sys_munmap(k, t, BASE + 2, 1)
    check_invariants(k)
    assert counters(k)["ksm_zero_pages"] == 0 and ksm_stat(t.mm)["ksm_zero_pages"] == 0


def test_max_page_sharing_two_makes_a_chain_of_dups(k):
    assert ksm_store(k, "max_page_sharing", 1) < 0  # "The minimum value is 2"
    assert ksm_store(k, "max_page_sharing", 2) == 0
    t = mergeable(k, pages=5)
    for i in range(5):
        user_write(k, t, BASE + i, 6)
    scan(k, 3)
    # Each KSM page has at most 2 sharers: 2 KSM pages of 2, the fifth page
    # waits in the unstable tree for a partner.
    c = ksm_counters(k)
    assert (c["pages_shared"], c["pages_sharing"], c["pages_unshared"]) == (2, 2, 1)
    assert (c["stable_node_chains"], c["stable_node_dups"]) == (1, 2)
    ksm_pages = {id(frame(k, "P0", i)) for i in range(5) if frame(k, "P0", i).ksm}
    assert len(ksm_pages) == 2
    # "can be changed only when there are no ksm shared pages"
    assert ksm_store(k, "max_page_sharing", 3) == -16  # EBUSY
    assert ksm_store(k, "run", 2) == 0
    assert ksm_store(k, "max_page_sharing", 3) == 0


def test_rmap_item_pins_anon_vma_until_released(k):
    t = mergeable(k)
    user_write(k, t, BASE + 0, 2)
    user_write(k, t, BASE + 1, 2)
    av = vma_lookup(t.mm, BASE).anon_vma
    scan(k, 2)
    # "Must get reference to anon_vma while still holding mmap_lock": one per
    # rmap_item in the stable tree, on top of the tree's own reference.
    assert av.refcount == 1 + 2
    sys_munmap(k, t, BASE, 4)
    check_invariants(k)
    assert av._live and av.refcount == 2 and not av.rb_root
    scan(k)  # the rmap_items leave the stable tree and put the anon_vma
    assert not av._live
    assert counters(k) == dict.fromkeys(counters(k), 0)


def test_rmap_walk_ksm_finds_a_fork_made_after_the_merge(k):
    t = mergeable(k)
    user_write(k, t, BASE + 0, 4)
    user_write(k, t, BASE + 1, 4)
    scan(k, 2)
    kpage = frame(k, "P0", 0)
    sys_fork(k, t, "P1")  # before ksmd rescans: no rmap_item of P1 yet
    assert ksm_stat(k.tasks["P1"].mm)["ksm_rmap_items"] == 0
    seen = []
    kpage.locked = True
    rmap_walk_ksm(k, kpage, lambda vma, addr: seen.append((vma.vm_mm.owner, addr - BASE)))
    kpage.locked = False
    # First pass: P0's own VMA for each rmap_item; second (search_new_forks): P1's.
    assert seen == [("P0", 1), ("P0", 0), ("P1", 1), ("P1", 0)]


def test_rmap_walk_ksm_needs_the_folio_lock(k):
    t = mergeable(k)
    user_write(k, t, BASE + 0, 4)
    user_write(k, t, BASE + 1, 4)
    scan(k, 2)
    with pytest.raises(Exception, match="folio_test_locked"):
        rmap_walk_ksm(k, frame(k, "P0", 0), lambda vma, addr: None)


def test_exit_of_a_merged_process(k):
    t = mergeable(k)
    user_write(k, t, BASE + 0, 4)
    sys_fork(k, t, "P1")
    user_write(k, k.tasks["P1"], BASE + 0, 5)
    user_write(k, k.tasks["P1"], BASE + 1, 5)
    scan(k, 2)
    p1_mm = k.tasks["P1"].mm
    assert (counters(k)["pages_shared"], counters(k)["pages_sharing"]) == (1, 1)
    sys_exit(k, k.tasks["P1"])
    check_invariants(k)
    # The mm_slot (with its rmap_items) stays for ksmd to free; it keeps the mm.
    assert p1_mm._live and p1_mm in ksm_state_of(k).mm_slots_hash
    assert counters(k)["pages_shared"] == 1
    scan(k)
    assert not p1_mm._live
    assert (counters(k)["pages_shared"], counters(k)["pages_sharing"]) == (0, 0)
    assert user_read(k, t, BASE) == 4


def test_prctl_merge_any_marks_new_vmas_and_is_inherited():
    s = parse_scenario("""
regions:
  A: 2
  B: 2
steps:
  - mmap P0 A rw
  - prctl P0 merge 1
  - mmap P0 B rw
  - write P0 A[0] 3
  - write P0 B[1] 3
  - ksm_settle
  - fork P0 P1
  - mmap P1 A rw fixed
  - write P1 A[1] 3
  - ksm_settle
  - prctl P0 merge 0
""")
    r = ModelRunner(s)
    obs = [r.step(op) for op in s.ops]
    assert dict(obs[5].frames)["P0"] == (0, None, None, None, 0)  # B is placed after a gap
    assert dict(obs[5].counters)["pages_sharing"] == 1
    # The child inherits MMF_VM_MERGE_ANY: its new VMA merges too.
    assert dict(obs[9].frames)["P1"][1] == dict(obs[9].frames)["P0"][0]
    # Disabling unmerges P0's pages; P1 keeps its merged page.
    assert dict(obs[10].frames)["P0"][0] != dict(obs[10].frames)["P0"][4]
    assert dict(obs[10].frames)["P1"][1] in obs[10].ksm


def test_observations_carry_ksm_counters_only_for_ksm_scenarios():
    plain = parse_scenario("regions: {A: 1}\nsteps:\n  - mmap P0 A rw\n")
    ksm = parse_scenario("regions: {A: 1}\nsteps:\n  - mmap P0 A rw\n  - ksm_scan 1\n")
    o = ModelRunner(plain).step(plain.ops[0])
    assert o.counters == () and o.ksm_stat == ()
    r = ModelRunner(ksm)
    o = r.step(ksm.ops[0])
    assert [n for n, _ in o.counters] == ["ksm_zero_pages", "pages_shared", "pages_sharing",
                                           "pages_unshared", "pages_volatile"]
    assert o.ksm_stat == (("P0", (("ksm_merging_pages", 0), ("ksm_rmap_items", 0), ("ksm_zero_pages", 0))),)


def test_ksm_set_refusals_in_scenarios():
    s = parse_scenario("""
regions: {A: 2}
steps:
  - ksm_set max_page_sharing 1 => EINVAL
  - ksm_set run 3 => EINVAL
  - ksm_set use_zero_pages 2 => EINVAL
  - mmap P0 A rw
  - madvise P0 A mergeable
  - write P0 A[0] 1
  - write P0 A[1] 1
  - ksm_settle
  - ksm_set max_page_sharing 16 => EBUSY
  - ksm_set merge_across_nodes 0 => EBUSY
  - ksm_set run 2
  - ksm_set max_page_sharing 16
""")
    r = ModelRunner(s)
    results = [r.step(op).result for op in s.ops]
    assert results == ["EINVAL", "EINVAL", "EINVAL", "ok", "ok", "ok", "ok", "ok", "EBUSY", "EBUSY", "ok", "ok"]


def test_random_ksm_scenarios_keep_the_invariants_and_merge():
    merged = 0
    for seed in range(60):
        s = random_scenario(seed, kinds=KSM_KINDS)
        r = ModelRunner(s)
        merged += any(r.step(op).ksm for op in s.ops)
    # sometimes("ksm_merge_reached"): the mix does reach KSM pages.
    assert merged >= 8


def test_fork_accounts_inherited_ksm_zero_pages(k):
    # ksm_fork() after commit "mm/ksm: fix incorrect KSM counter handling in
    # mm_struct during fork": the child's rmap_items and merging pages start
    # at 0, the KSM zero PTEs it inherits count for it and globally.
    assert ksm_store(k, "use_zero_pages", 1) == 0
    t = mergeable(k)
    user_write(k, t, BASE + 0, 0)
    user_write(k, t, BASE + 1, 0)
    user_write(k, t, BASE + 2, 1)
    user_write(k, t, BASE + 3, 1)
    scan(k, 2)
    assert ksm_stat(t.mm) == {"ksm_merging_pages": 2, "ksm_rmap_items": 4, "ksm_zero_pages": 2}
    sys_fork(k, t, "P1")
    check_invariants(k)
    assert ksm_stat(k.tasks["P1"].mm) == {"ksm_merging_pages": 0, "ksm_rmap_items": 0, "ksm_zero_pages": 2}
    assert counters(k)["ksm_zero_pages"] == 4
    sys_exit(k, k.tasks["P1"])
    assert counters(k)["ksm_zero_pages"] == 2


def test_validate_ksm_reports_corruption(k):
    from rmapcheck.model.findings import InvariantViolation

    t = mergeable(k)
    user_write(k, t, BASE + 0, 5)
    user_write(k, t, BASE + 1, 5)
    scan(k, 2)
    kpage = frame(k, "P0", 0)
    kpage.content = 6  # a write that bypassed the write protection
    with pytest.raises(InvariantViolation, match="changed contents"):
        check_invariants(k)
    kpage.content = 5
    ksm_state_of(k).pages_sharing += 1
    with pytest.raises(InvariantViolation, match="counters"):
        check_invariants(k)


@pytest.mark.parametrize("step, message", [
    ("ksm_scan 0", "at least 1"),
    ("ksm_scan", "usage: ksm_scan N"),
    ("ksm_settle 2", "usage: ksm_settle"),
    ("ksm_set pages_to_scan 5", "unknown KSM knob"),
    ("ksm_set run 1", "ksm_scan N or ksm_settle"),
    ("prctl P0 merge 2", "expected 0 or 1"),
    ("prctl P0 thp 1", "unknown prctl"),
    ("migrate P0 A[0:2]", "one page"),
    ("madvise P0 A mergeable2", "unknown madvise advice"),
])
def test_ksm_step_parse_errors(step, message):
    from rmapcheck.scenario.parse import ScenarioError

    with pytest.raises(ScenarioError, match=message):
        parse_scenario(f"regions: {{A: 2}}\nsteps:\n  - {step}\n")


def test_ksm_steps_round_trip():
    from rmapcheck.scenario.parse import dump_scenario

    text = """regions: {A: 2}
steps:
  - mmap P0 A rw
  - madvise P0 A mergeable
  - prctl P0 merge 1
  - ksm_scan 3
  - ksm_settle
  - ksm_set max_page_sharing 2 => EBUSY
  - migrate P0 A[1] => ENOENT
  - madvise P0 A[0] unmergeable
"""
    s = parse_scenario(text)
    assert [op.proc for op in s.ops][3:6] == ["", "", ""]
    assert [op.text() for op in parse_scenario(dump_scenario(s)).ops] == [op.text() for op in s.ops]


def test_a_merge_that_does_not_pin_the_anon_vma_is_found(k):
    # docs/history.md S1: "each rmap_item in the stable tree which refers to
    # an anon_vma needs to take a reference to it". A design that forgets it
    # frees the anon_vma under the rmap_item.
    from rmapcheck.model import ksm
    from rmapcheck.model.findings import RmapFinding

    def no_pin(k, item, page, kpage):
        vma = ksm.find_mergeable_vma(k, item.mm, item.address)
        if vma is None:
            return -14
        err = k.ops.try_to_merge_one_page(k, vma, page, kpage)
        if not err:
            k.ops.remove_rmap_item_from_tree(k, item)
            item.anon_vma = vma.anon_vma  # no get_anon_vma()
        return err

    k.ops.try_to_merge_with_ksm_page = no_pin
    t = mergeable(k)
    user_write(k, t, BASE + 0, 2)
    user_write(k, t, BASE + 1, 2)
    assert ksm_full_scans(k, 2) == 2
    with pytest.raises(RmapFinding, match="refcount 1, expected 3"):
        check_invariants(k)
