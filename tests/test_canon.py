"""The canonical walk in C (``check/_canon.c``) writes the bytes the Python walk's form marshals to.

Both are run on the states of random walks of every design under every
preset and seed bound, with and without symmetry, and compared as the bytes
the fingerprint hashes.
"""

from __future__ import annotations

import marshal

import pytest

from rmapcheck.check import world
from rmapcheck.check.model import PRESETS, KernelModel
from rmapcheck.designs import DESIGNS
from walks import walk_states


def test_the_walk_in_c_is_built() -> None:
    # make installs the package with its C walk; without it every run is slower
    assert world.CANONICAL_WALK == "C", "rmapcheck.check._canon is not built (pip install -e . needs a C compiler)"


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_c_and_python_walks_agree(design: str) -> None:
    if world._canon is None:
        pytest.fail("rmapcheck.check._canon is not built")
    compared = 0
    for m, _rng, s in walk_states(design, walks=12, steps=14):
        for sym in (True, False):
            py = marshal.dumps(world.canonical(s, sym), 2)
            c = world._canon.marshalled(s, sym)
            assert c == py, (design, m.bounds, sym)
            compared += 1
    assert compared > 500


class _Plain:
    # an object with a __dict__ and no encoder of its own
    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


def test_c_walk_agrees_on_what_no_encoder_knows() -> None:
    # Objects that hash by value (two equal named tuples are one key of the
    # Python walk's dict), plain objects, sets, dicts keyed by objects and
    # floats hung on the kernel: the generic paths of both walks.
    from rmapcheck.model.kernel import FailAt

    m = KernelModel("linux-6.18", PRESETS["standard"])
    s = m.init_state()
    for op in m.actions(s):
        if op.kind == "write":
            m.apply(s, op)
            break
    vma = next(iter(s.k.tasks.values())).mm.mmap[0]
    s.k.extra = [FailAt(1, False), FailAt(1, False), FailAt(2, True),
                 _Plain(vma=vma, n=3, f=0.5, s={vma, 4}, d={vma: "x", "k": (1, vma)}), frozenset({1, 2})]
    for sym in (True, False):
        assert world._canon.marshalled(s, sym) == marshal.dumps(world.canonical(s, sym), 2)


def test_table_of_fingerprints_judged_clean() -> None:
    import mmap

    table = mmap.mmap(-1, 4 * 16)  # four slots
    fps = [bytes([i]) * 12 for i in range(1, 6)]
    assert not world._canon.judged_clean(table, fps[0])
    assert world._canon.judge_clean(table, fps[0])
    assert world._canon.judged_clean(table, fps[0])
    assert world._canon.judge_clean(table, fps[0])  # already there
    for fp in fps[1:4]:
        assert world._canon.judge_clean(table, fp)
    assert all(world._canon.judged_clean(table, fp) for fp in fps[:4])
    # full: the fifth has no room, and is never answered clean
    assert not world._canon.judge_clean(table, fps[4])
    assert not world._canon.judged_clean(table, fps[4])
    with pytest.raises(ValueError):
        world._canon.judged_clean(mmap.mmap(-1, 3 * 16), fps[0])
    with pytest.raises(TypeError):
        world._canon.judged_clean(table, b"short")


def test_two_partitions_judge_each_state_once() -> None:
    # What the table spares: a state both workers reach is judged by one
    # (the standard preset's first five levels, both partitions in turn).
    from dataclasses import replace

    from rmapcheck.check.parallel import Partition, judged_table

    m = KernelModel("linux-6.18", replace(PRESETS["standard"], depth=5))
    table = judged_table()
    parts = [Partition(m, i, 2, judged=table) for i in range(2)]
    judged = []
    judge = m.judge
    m.judge = lambda out: (judged.append(1), judge(out))[1]  # type: ignore[method-assign]
    level = 0
    while any(p.frontier for p in parts):
        msgs = [p.expand(level, lambda path: False) for p in parts]
        for i, p in enumerate(parts):
            p.receive([msgs[j][i] for j in range(2)])
        level += 1
    distinct = sum(p.report.distinct for p in parts)
    assert len(judged) == distinct - 1  # every state but the start state, once


def test_pure_python_gives_the_same_exploration() -> None:
    # RMAPCHECK_PURE_PYTHON=1 runs the Python walks (as an install without a
    # C compiler does): the same fingerprints, so the same states and result.
    import json
    import os
    import subprocess
    import sys

    code = ("import json; from rmapcheck.check import world; from rmapcheck.check.checker import Checker; "
            "from rmapcheck.check.model import KernelModel, SEED_BOUNDS; "
            "m = KernelModel('linux-2.6.36-pre', SEED_BOUNDS['ksm']); s = m.init_state(); "
            "r = Checker(m).parallel(1).spawn_bfs().join(); "
            "print(json.dumps([world.CANONICAL_WALK, world.SNAPSHOT_WALK, world.fingerprint(s).hex(), "
            "r.distinct, r.verdict, sorted(f.trace_length for f in r.findings)]))")
    got = {}
    for pure in ("", "1"):
        env = {**os.environ, "RMAPCHECK_PURE_PYTHON": pure}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        got[pure] = json.loads(out.stdout)
    assert got[""][:2] == ["C", "C"] and got["1"][:2] == ["Python", "Python"]
    assert got[""][2:] == got["1"][2:]
    assert got[""][3] > 1 and got[""][4] == "violation"
