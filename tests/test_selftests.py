"""Cases of the kernel's own selftests, translated into bundled scenarios.

tools/testing/selftests/mm/merge.c asserts, with PROCMAP_QUERY, which VMA
covers its buffer at the end of each case; the scenario of each case must
end with the same VMAs (the spans below are the selftest's ``vma_start`` and
``vma_end`` in pages of the 30-page carve-out). That the live kernel agrees
with the model on every step is tested for every bundled scenario in
``test_scenarios.py``.
"""

from __future__ import annotations

import pytest

from rmapcheck.commands.common import BUNDLED
from rmapcheck.scenario.execute import ModelRunner
from rmapcheck.scenario.parse import load_scenario

#: scenario -> the VMAs the selftest asserts, as (start, end) carve-out pages;
#: the carve-out's PROT_NONE rest lies around them
MERGE_C = {
    # ASSERT_EQ(vma_start, ptr); ASSERT_EQ(vma_end, ptr + 10 * page_size)
    "merge-mprotect-unfaulted-left": [(1, 11)],
    "merge-mprotect-unfaulted-right": [(1, 11)],
    # ptr = &carveout[2 * page_size], nine pages
    "merge-mprotect-unfaulted-both": [(2, 11)],
    "merge-mprotect-faulted-left-unfaulted-right": [(2, 11)],
    "merge-mprotect-unfaulted-left-faulted-right": [(2, 11)],
    # without MAP_NORESERVE: VM_ACCOUNT differs, the selftest's reason for it
    "merge-mprotect-unfaulted-left-accounted": [(1, 6), (6, 11)],
    # "Make sure not merged": ptr2's VMA is [ptr2, ptr2 + 5 pages)
    "merge-forked-source-vma": [(1, 6), (6, 11)],
    "merge-forked-target-vma": [(1, 6), (6, 11)],
}


def final_layout(name: str, proc: str) -> list[tuple[int, int, str]]:
    s = load_scenario(str(BUNDLED / f"{name}.yaml"))
    r = ModelRunner(s)
    obs = None
    for op in s.ops:
        obs = r.step(op)
        assert op.expect is None or obs.result == op.expect
    assert obs is not None
    return list(dict(obs.layout)[proc])


@pytest.mark.parametrize("name", sorted(MERGE_C))
def test_merge_c_case(name):
    proc = "P1" if "forked" in name else "P0"
    vmas = final_layout(name, proc)
    carveout = [v for v in vmas if v[2] == "---"]
    buffer = [(s, e) for s, e, prot in vmas if prot != "---"]
    assert buffer == MERGE_C[name]
    # the carve-out's PROT_NONE VMAs before and after the buffer
    assert carveout[0][:2] == (0, MERGE_C[name][0][0])
    assert carveout[-1][:2] == (MERGE_C[name][-1][1], 30)


def test_merge_c_cases_map_with_noreserve():
    # The mprotect cases map their buffer MAP_NORESERVE, as merge.c does.
    for name in MERGE_C:
        s = load_scenario(str(BUNDLED / f"{name}.yaml"))
        buffers = [op for op in s.ops if op.kind == "mmap" and op.prot != "none"]
        noreserve = all("noreserve" in op.flags for op in buffers)
        assert noreserve == (name not in ("merge-mprotect-unfaulted-left-accounted", "merge-forked-target-vma"))
