"""Scenario files: good files, every kind of error with its line, round trips."""

import dataclasses
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmapcheck.scenario.ops import Op, Region
from rmapcheck.scenario.parse import (
    ScenarioError,
    dump_scenario,
    load_scenario,
    parse_scenario,
    parse_step,
)

EXAMPLE = """\
# A child writes a page it shares with its parent: copy-on-write.
name: fork-cow-child
regions:            # name: pages, or name: {pages: N, at: K}
  A: 4              # placed at arena page 0
  B: {pages: 2, at: 4}   # right after A (adjacent); default is one page after the previous region
steps:
  - mmap P0 A rw
  - write P0 A[0] 7
  - fork P0 P1
  - write P1 A[0] 8
  - read P0 A[0] => 7
  - exit P1
"""


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def without_lines(ops):
    return [dataclasses.replace(op, line=0) for op in ops]


# --- good files ------------------------------------------------------------------


def test_example_from_the_docs(tmp_path):
    s = load_scenario(write(tmp_path, EXAMPLE))
    assert s.name == "fork-cow-child"
    assert s.regions == {"A": Region("A", 4, 0), "B": Region("B", 2, 4)}
    assert s.arena_pages == 6
    assert s.ops == [
        Op("mmap", "P0", region="A", page=0, npages=4, prot="rw", line=7),
        Op("write", "P0", region="A", page=0, value=7, line=8),
        Op("fork", "P0", child="P1", line=9),
        Op("write", "P1", region="A", page=0, value=8, line=10),
        Op("read", "P0", region="A", page=0, expect="7", line=11),
        Op("exit", "P1", line=12),
    ]
    assert s.lines == {0: 7, 1: 8, 2: 9, 3: 10, 4: 11, 5: 12}
    assert s.source.endswith("s.yaml")


def test_default_name_placement_and_description(tmp_path):
    text = """\
description: |
  Two lines
  of text.
regions:
  A: 2
  B: 3
  C: {pages: 1, at: 20}
  D: 1
  E: {pages: 1}
steps:
  - mmap P0 D[0] r   # a comment
"""
    s = load_scenario(write(tmp_path, text, "my-scenario.yaml"))
    assert s.name == "my-scenario"
    assert s.description == "Two lines\nof text.\n"
    assert [(r.name, r.at, r.pages) for r in s.regions.values()] == [
        ("A", 0, 2), ("B", 3, 3), ("C", 20, 1), ("D", 22, 1), ("E", 24, 1),
    ]
    assert s.arena_pages == 25
    assert s.ops == [Op("mmap", "P0", region="D", page=0, npages=1, prot="r", line=11)]


def test_empty_regions_and_steps():
    s = parse_scenario("regions:\nsteps:\n", "x/empty.yaml")
    assert (s.name, s.regions, s.ops, s.arena_pages) == ("empty", {}, [], 0)
    assert parse_scenario("steps: []\n", "e.yaml").ops == []


REGIONS = {"A": Region("A", 4, 0), "B": Region("B", 2, 4)}

STEPS = [
    ("mmap P0 A rw", Op("mmap", "P0", region="A", npages=4, prot="rw")),
    ("mmap P0 A[1:3] none fixed => EEXIST",
     Op("mmap", "P0", region="A", page=1, npages=2, prot="none",
        flags=frozenset({"fixed"}), expect="EEXIST")),
    ("munmap P0 B[1]", Op("munmap", "P0", region="B", page=1)),
    ("mprotect P0 A[0:1] rwx => ok",
     Op("mprotect", "P0", region="A", prot="rwx", expect="ok")),
    ("mremap P0 A[0:2] B[0]", Op("mremap", "P0", region="A", npages=2, to_region="B")),
    ("mremap P0 A[0:2] B[1] 1 dontunmap => EINVAL",
     Op("mremap", "P0", region="A", npages=2, to_region="B", to_page=1, new_pages=1,
        flags=frozenset({"dontunmap"}), expect="EINVAL")),
    ("mremap P0 A[0:2] 4", Op("mremap", "P0", region="A", npages=2, new_pages=4)),
    ("mremap P0 A[1:3]", Op("mremap", "P0", region="A", page=1, npages=2)),
    ("madvise P0 A[2:4] dontneed", Op("madvise", "P0", region="A", page=2, npages=2,
                                      advice="dontneed")),
    ("read P0 A[3] => SIGSEGV", Op("read", "P0", region="A", page=3, expect="SIGSEGV")),
    ("read P0 A[3] => 0x10", Op("read", "P0", region="A", page=3, expect="16")),
    ("write P0 B[0] 0x7fffffffffffffff",
     Op("write", "P0", region="B", value=2**63 - 1)),
    ("write P0 B[0] 0 => SIGSEGV", Op("write", "P0", region="B", expect="SIGSEGV")),
    ("fork P0 child_1 => ENOMEM", Op("fork", "P0", child="child_1", expect="ENOMEM")),
    ("mremap P0 A[0:2] B[0] => EWOULDBLOCK",
     Op("mremap", "P0", region="A", npages=2, to_region="B", expect="EAGAIN")),
    ("exit P3", Op("exit", "P3")),
    ("mmap P0 A rw noreserve populate fixed_noreplace thp_system",
     Op("mmap", "P0", region="A", npages=4, flags=frozenset({"noreserve", "populate", "fixed_noreplace",
                                                              "thp_system"}))),
    ("write P0 A[0:4] 0xcf", Op("write", "P0", region="A", npages=4, value=0xcf)),
    ("read P0 A[1:3] => 7", Op("read", "P0", region="A", page=1, npages=2, expect="7")),
    ("read P0 A[1:3] => 7,0x10", Op("read", "P0", region="A", page=1, npages=2, expect="7,16")),
    ("poke P0 B[1] 5 => EIO", Op("poke", "P0", region="B", page=1, value=5, expect="EIO")),
    ("prctl P0 get_merge => 1", Op("prctl", "P0", advice="get_merge", expect="1")),
    ("prctl P0 merge 1", Op("prctl", "P0", value=1)),
    # fault injection: the first attempt, the N-th, every one, the N-th and on
    ("fork P0 P1 fail=anon_vma_chain_alloc",
     Op("fork", "P0", child="P1", flags=frozenset({"fail=anon_vma_chain_alloc"}))),
    ("fork P0 P2 fail=anon_vma_chain_alloc@1 => ENOMEM",
     Op("fork", "P0", child="P2", flags=frozenset({"fail=anon_vma_chain_alloc"}), expect="ENOMEM")),
    ("mprotect P0 A[0] r fail=anon_vma_chain_alloc@2*",
     Op("mprotect", "P0", region="A", prot="r", flags=frozenset({"fail=anon_vma_chain_alloc@2*"}))),
    ("mmap P0 A rw fixed fail=vm_area_alloc* fail=vma_iter_prealloc@3",
     Op("mmap", "P0", region="A", npages=4, flags=frozenset({"fixed", "fail=vm_area_alloc*",
                                                              "fail=vma_iter_prealloc@3"}))),
    ("ksm_scan 1 fail=alloc_rmap_item*", Op("ksm_scan", "", value=1, flags=frozenset({"fail=alloc_rmap_item*"}))),
    ("kthread 0 fail=alloc_migration_target", Op("kthread", "", flags=frozenset({"fail=alloc_migration_target"}))),
]


@pytest.mark.parametrize(("text", "op"), STEPS, ids=[t for t, _ in STEPS])
def test_parse_step(text, op):
    # parse_step checks no processes: P3 may exit without ever being forked.
    assert parse_step(text, 9, REGIONS, "f.yaml") == dataclasses.replace(op, line=9)


def test_round_trip():
    head = "regions:\n  A: 4\n  B: {pages: 2, at: 4}\n  C: 1\nsteps:\n"
    body = "".join(f"  - {t}\n" for t, _ in STEPS if not t.startswith("exit"))
    s = parse_scenario(head + body + "  - exit child_1\n", "rt.yaml")
    text = dump_scenario(s)
    assert "  A: 4\n  B: {pages: 2, at: 4}\n  C: 1\n" in text
    back = parse_scenario(text, "rt2.yaml")
    assert back.name == s.name == "rt"
    assert back.regions == s.regions
    assert without_lines(back.ops) == without_lines(s.ops)
    assert dump_scenario(back) == text


@settings(max_examples=200, deadline=None)
@given(name=st.text(min_size=1), description=st.text())
def test_round_trip_quotes_any_text(name, description):
    s = parse_scenario("regions: {A: 1}\nsteps: [mmap P0 A r]\n", "q.yaml")
    s.name, s.description = name, description
    back = parse_scenario(dump_scenario(s), "q.yaml")
    assert (back.name, back.description) == (name, description)


def test_dump_plain_and_quoted_names():
    s = parse_scenario("name: fork-cow\nsteps: []\n", "a.yaml")
    assert dump_scenario(s) == "name: fork-cow\nregions: {}\nsteps: []\n"
    s.name = "yes"
    assert dump_scenario(s).startswith('name: "yes"\n')


# --- errors ---------------------------------------------------------------------

HEAD = """\
name: t
regions:
  A: 4
  B: {pages: 2, at: 4}
steps:
  - mmap P0 A rw
"""

STEP_ERRORS = [
    ("frob P0 A", "unknown operation 'frob'"),
    ("", "empty step"),
    ("mmap P0 C rw", "unknown region 'C'; the regions are A, B"),
    ("read P0 A[4]", "page 4 is out of range of region A (pages 0..3)"),
    ("munmap P0 A[2:2]", "empty range A[2:2]"),
    ("munmap P0 A[3:1]", "empty range A[3:1]"),
    ("munmap P0 A[1:5]", "A[1:5] is out of range of region A"),
    ("munmap P0 A[1", "bad range 'A[1'"),
    ("mprotect P0 A rwxx", "unknown PROT 'rwxx'"),
    ("mmap P0 A rw fixd", "unknown mmap flag 'fixd'"),
    ("mprotect P0 A rw fixed", "wrong number of arguments to mprotect"),
    ("mmap P0", "wrong number of arguments to mmap; usage: mmap P R[i:j] PROT [fixed|fixed_noreplace] "
                "[noreserve] [populate] [nohugepage|thp_system]"),
    ("mmap P0 A rw populate populate", "mmap flag populate given twice"),
    ("mmap P0 A rw fixed fixed_noreplace", "mmap flags fixed and fixed_noreplace exclude each other"),
    ("mmap P0 A rw nohugepage thp_system", "mmap flags nohugepage and thp_system exclude each other"),
    ("mmap P0 A w", "unknown PROT 'w'"),
    ("prctl P0 get_merge 1", "wrong number of arguments to prctl"),
    ("prctl P0 get_merge => ok", "prctl's result is its value, not ok"),
    ("prctl P0 merge 1 => 1", "only a read or prctl get_merge returns a value"),
    ("read P0 A[0:3] => 1,2", "2 values for a read of 3 pages"),
    ("poke P0 A[0] 1 => SIGSEGV", "poke cannot raise SIGSEGV"),
    ("poke P0 A[0]", "wrong number of arguments to poke"),
    ("exit", "wrong number of arguments to exit"),
    ("fork P0", "wrong number of arguments to fork"),
    ("migrate P0 A[0:2]", "migrate takes one page"),
    ("madvise P0 A free", "unknown madvise advice 'free'"),
    ("write P0 A[0] -1", "bad value '-1'"),
    ("write P0 A[0] 1.5", "bad value '1.5'"),
    ("write P0 A[0] 9223372036854775808", "must be below 2**63"),
    ("write P0 0[0] 1", "bad range '0[0]'"),
    ("fork P0 P-1", "bad process name 'P-1'"),
    ("mremap P0 A[0:2] B[1]", "mremap target B[1:3] is out of range of region B"),
    ("mremap P0 A[0:2] B[0] 3", "mremap target B[0:3] is out of range of region B"),
    ("mremap P0 A[2:4] 3", "mremap resized range A[2:5] is out of range of region A"),
    ("mremap P0 A[0:2] 0", "N must be at least 1"),
    ("mremap P0 A[0:2] dontunmap", "dontunmap needs a target"),
    ("mremap P0 A[0:2] B", "bad mremap target 'B'"),
    ("mremap P0 A[0:2] B[0:1]", "bad mremap target 'B[0:1]'"),
    ("mremap P0 A[0:2] C[0]", "unknown region 'C'"),
    ("mremap P0 A[0:2] B[0] 1 fixed", "unexpected 'fixed' in mremap"),
    ("mmap P0 A rw => EFOO", "unknown errno name 'EFOO'"),
    ("mmap P0 A rw => fine", "bad result 'fine'"),
    ("mmap P0 A rw =>", "expected one result after '=>'"),
    ("mmap P0 A rw => ok ok", "expected one result after '=>'"),
    ("mmap P0 A rw => ok => ok", "at most one '=> RESULT'"),
    ("read P0 A[0] => ok", "a read's result is its value or SIGSEGV, not ok"),
    ("mmap P0 A rw => 7", "only a read or prctl get_merge returns a value"),
    ("mmap P0 A rw => SIGSEGV", "mmap cannot raise SIGSEGV"),
    ("write P0 A[0] 1 => ENOMEM", "write is a memory access"),
    ("read P0 A[0] => 9223372036854775808", "must be below 2**63"),
    ("read P1 A[0]", "process P1 does not exist here (live processes: P0)"),
    ("fork P2 P3", "process P2 does not exist here"),
    ("fork P0 P0", "fork: process P0 already exists"),
    ("fork P0 P1 fail=kmalloc", "unknown allocation site 'kmalloc' in 'fail=kmalloc'; the sites are anon_vma_alloc"),
    ("fork P0 P1 fail=anon_vma_alloc@0", "bad fault flag 'fail=anon_vma_alloc@0': expected fail=SITE"),
    ("fork P0 P1 fail=anon_vma_alloc@", "bad fault flag 'fail=anon_vma_alloc@'"),
    ("fork P0 P1 fail=anon_vma_alloc**", "bad fault flag 'fail=anon_vma_alloc**'"),
    ("fork P0 P1 fail=", "bad fault flag 'fail='"),
    ("fork P0 P1 fail=anon_vma_alloc fail=anon_vma_alloc@2*",
     "two fault flags for anon_vma_alloc in one step (fail=anon_vma_alloc and 'fail=anon_vma_alloc@2*')"),
    ("fork P0 fail=anon_vma_alloc", "wrong number of arguments to fork"),
]


@pytest.mark.parametrize(("step", "message"), STEP_ERRORS, ids=[s for s, _ in STEP_ERRORS])
def test_step_errors(tmp_path, step, message):
    path = write(tmp_path, HEAD + f"  - mmap P0 B rw\n  - {step}\n  - exit P0\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    e = info.value
    assert (e.source, e.line) == (path, 8)
    assert str(e) == f"{path}:8: {e.message}"
    assert message in e.message, e.message


def test_process_lifetimes(tmp_path):
    steps = ["fork P0 P1", "fork P1 P2", "exit P1", "fork P2 P1", "exit P1", "read P1 A[0]"]
    path = write(tmp_path, HEAD + "".join(f"  - {s}\n" for s in steps))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == (
        f"{path}:12: process P1 does not exist here (live processes: P0, P2)"
    )
    path = write(tmp_path, HEAD + "  - exit P0\n  - fork P0 P1\n")
    live = r":8: process P0 does not exist here \(live processes: none\)"
    with pytest.raises(ScenarioError, match=live):
        load_scenario(path)


FILE_ERRORS = [
    ("name: t\nregions: [A\nsteps: []\n", 3, "YAML syntax error: expected ',' or ']'"),
    ("name: t\nsteps:\n  - mmap P0 A rw\n\t- x\n", 4, "YAML syntax error"),
    ("name: t\nsteps: []\n\x01\n", 3, "YAML syntax error: special characters are not allowed"),
    ("", 1, "empty scenario"),
    ("# only a comment\n", 1, "empty scenario"),
    ("\n\n- mmap P0 A rw\n", 3, "a scenario is a mapping"),
    ("name: t\nregions: {}\n", 1, "the scenario has no 'steps'"),
    ("name: t\nstep: []\n", 2, "unknown key 'step' in the scenario"),
    ("name: t\nname: u\nsteps: []\n", 2, "duplicate key 'name'"),
    ("1: t\nsteps: []\n", 1, "keys of the scenario must be strings"),
    ("name: [t]\nsteps: []\n", 1, "name must be a string"),
    ("name: ''\nsteps: []\n", 1, "name must not be empty"),
    ("name: 12\nsteps: []\n", 1, "name must be a string"),
    ("description: {a: 1}\nsteps: []\n", 1, "description must be a string"),
    ("regions: [A]\nsteps: []\n", 1, "regions must be a mapping"),
    ("regions:\n  A: 0\nsteps: []\n", 2, "pages of region A must be at least 1, not 0"),
    ("regions:\n  A: true\nsteps: []\n", 2, "region A: expected a page count"),
    ("regions:\n  A: '4'\nsteps: []\n", 2, "region A: expected a page count"),
    ("regions:\n  A: {pages: 2,\n      where: 3}\nsteps: []\n", 3,
     "unknown key 'where' in region A; expected pages, at"),
    ("regions:\n  A: {at: 3}\nsteps: []\n", 2, "region A has no 'pages'"),
    ("regions:\n  A: {pages: 2, at: -1}\nsteps: []\n", 2, "'at' of region A must be at least 0"),
    ("regions:\n  A: {pages: x}\nsteps: []\n", 2, "pages of region A must be an integer"),
    ("regions:\n  A-1: 2\nsteps: []\n", 2, "bad region name 'A-1'"),
    ("regions:\n  A: 2\n  A: 3\nsteps: []\n", 3, "duplicate region 'A'"),
    ("regions:\n  A: 4\n  B: 2\n  C: {pages: 2, at: 3}\nsteps: []\n", 4,
     "region C (pages 3..4) overlaps region A (pages 0..3, line 2)"),
    ("regions:\n  A: {pages: 2, at: 65535}\nsteps: []\n", 2, "ends past the arena"),
    ("regions:\n  A: 2\n  B: {pages: 1, after: C}\nsteps: []\n", 3,
     "'after' of region B: unknown region 'C'; the regions are A"),
    ("regions:\n  A: 2\n  B: {pages: 1, at: A-1}\nsteps: []\n", 3, "A-1 is before the arena's first page"),
    ("regions:\n  A: 2\n  B: {pages: 1, after: A-1}\nsteps: []\n", 3, "'after' of region B must be R or R+K"),
    ("regions:\n  A: 2\n  B: {pages: 1, after: A, at: 5}\nsteps: []\n", 3, "has both 'at' and 'after'"),
    ("regions:\n  A: 2\n  B: {pages: 1, at: A+1}\nsteps: []\n", 3, "region B (pages 1..1) overlaps region A"),
    ("regions:\n  A: 2\n  B: {pages: 1, at: [A]}\nsteps: []\n", 3, "'at' of region B must be a page number"),
    ("steps: mmap P0 A rw\n", 1, "steps must be a list of strings"),
    ("steps:\n  - exit P0\n  - {mmap: P0}\n", 3, "a step must be a string"),
    ("steps:\n  - exit P0\n  - 5\n", 3, "a step must be a string"),
    ("steps:\n  - !!python/object:os.system echo\n", 2, "a step must be a string"),
]


@pytest.mark.parametrize(("text", "line", "message"), FILE_ERRORS,
                         ids=[str(i) for i in range(len(FILE_ERRORS))])
def test_file_errors(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    e = info.value
    assert str(e).startswith(f"{path}:{line}: "), str(e)
    assert message in str(e)
    assert "\n" not in str(e)


def test_regions_placed_relative_to_another():
    s = parse_scenario("regions:\n  A: 4\n  B: {pages: 2, after: A}\n  C: {pages: 1, after: B+3}\n"
                       "  D: {pages: 1, at: C-2}\n  E: {pages: 1, at: A+6}\nsteps: []\n", "r.yaml")
    assert [(r.name, r.at) for r in s.regions.values()] == [("A", 0), ("B", 4), ("C", 9), ("D", 7), ("E", 6)]


def test_unreadable_file(tmp_path):
    path = str(tmp_path / "missing.yaml")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.line == 0
    assert str(info.value).startswith(f"{path}: cannot read scenario: ")


def test_error_pickles():
    e = ScenarioError("f.yaml", 3, "bad")
    back = pickle.loads(pickle.dumps(e))
    assert (back.source, back.line, back.message) == ("f.yaml", 3, "bad")
    assert str(back) == "f.yaml:3: bad"


def test_parse_step_errors_name_source_and_line():
    with pytest.raises(ScenarioError) as info:
        parse_step("read P0 Z[0]", 42, REGIONS, "gen.yaml")
    assert str(info.value) == "gen.yaml:42: unknown region 'Z'; the regions are A, B"
