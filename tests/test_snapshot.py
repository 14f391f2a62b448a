"""The snapshot in C (``check/_snapshot.c``) records and restores what the Python snapshot does.

Both are taken of the states of random walks of every design under every
preset and seed bound and compared object for object (the same objects in
the same order, the same values by identity); each then puts the state back
after an action, and a fresh Python snapshot of the state put back must
record what the first one recorded. Hand-made objects cover the ways the C
walk leaves the slots alone (a class with its own ``__setstate__``, a
property over a slot) and what both refuse. The pickles of those states are
the same bytes with and without the reduction in C that ``world`` registers.
"""

from __future__ import annotations

import copyreg
from types import SimpleNamespace
from typing import Any

import pytest

from rmapcheck.check import world
from rmapcheck.designs import DESIGNS
from rmapcheck.model.slab import FastPickle
from walks import walk_states


needs_c = pytest.mark.skipif(world._snapshot is None, reason="rmapcheck.check._snapshot is not built "
                             "(test_the_snapshot_in_c_is_built fails)")


def test_the_snapshot_in_c_is_built() -> None:
    # make installs the package with its C snapshot; without it every run is slower
    assert world.SNAPSHOT_WALK == "C", "rmapcheck.check._snapshot is not built (pip install -e . needs a C compiler)"
    assert world.Snapshot is world.SnapshotC


def recorded_py(snap: world.SnapshotPy) -> tuple:
    return ([(f.__self__, st) for f, st in zip(snap._setters, snap._states)],
            list(zip(snap._dicts, snap._dict_saved)), list(zip(snap._lists, snap._list_saved)),
            list(zip(snap._sets, snap._set_saved)))


def recorded_c(snap: world.SnapshotC) -> tuple:
    objs, dicts, lists, sets = snap._saved.contents()
    return [(o, st) for o, st, _ in objs], dicts, lists, sets


def ids(saved: Any) -> list[int]:
    # what a state or a saved copy holds, by identity (== would take a
    # ksm_zero_pte for the plain PTE it equals); a set's order is its table's
    if isinstance(saved, (set, frozenset)):
        return sorted(map(id, saved))
    if isinstance(saved, dict):
        return [id(x) for item in saved.items() for x in item]
    return list(map(id, saved))


def same(a: tuple, b: tuple) -> bool:
    # the same objects in the same order, holding the same values
    return all(len(part_a) == len(part_b) and all(oa is ob and ids(sa) == ids(sb)
                                                  for (oa, sa), (ob, sb) in zip(part_a, part_b))
               for part_a, part_b in zip(a, b))


@needs_c
@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_c_and_python_snapshots_agree(design: str) -> None:
    compared = by_slots = 0
    for m, rng, r in walk_states(design, walks=6, steps=12):
        snap_py, snap_c = world.SnapshotPy(r), world.SnapshotC(r)
        before = recorded_py(snap_py)
        assert same(recorded_c(snap_c), before), (design, m.bounds)
        by_slots += sum(s for _, _, s in snap_c._saved.contents()[0])
        acts = m.actions(r)
        for snap in (snap_c, snap_py):
            for op in rng.sample(acts, min(2, len(acts))):
                m.apply(r, op)
                snap.restore()
                assert same(recorded_py(world.SnapshotPy(r)), before), (design, m.bounds, op.text())
        compared += 1
    assert compared > 100
    assert by_slots > compared  # the slots were read in place, not through __getstate__


@needs_c
@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_the_reduction_in_c_pickles_the_same_bytes(design: str) -> None:
    registered = {cls: f for cls, f in copyreg.dispatch_table.items() if f is world._snapshot.reduce}
    assert registered, "world registers no reduction in C"
    states, models = [], []
    for m, _rng, r in walk_states(design, walks=2, steps=12):
        states.append(m.loads(m.dumps(r)))
        models.append(m)
    in_c = [m.dumps(r) for m, r in zip(models, states)]
    try:
        for cls in registered:
            del copyreg.dispatch_table[cls]
        default = [m.dumps(r) for m, r in zip(models, states)]
    finally:
        copyreg.dispatch_table.update(registered)
    assert in_c == default


class Pair(FastPickle):
    __slots__ = ("a", "b")

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b


class OwnSetstate(Pair):
    # its own __setstate__: restored by calling it
    __slots__ = ("c",)

    def __init__(self, a: Any, b: Any, c: Any) -> None:
        super().__init__(a, b)
        self.c = c


SETSTATE_CALLS: list[OwnSetstate] = []


def _own_setstate(self: OwnSetstate, st: tuple) -> None:
    self.a, self.b, self.c = st
    SETSTATE_CALLS.append(self)


OwnSetstate.__setstate__ = _own_setstate  # type: ignore[method-assign]


class Shadowed(Pair):
    # b is a property now, not the slot: read and written through the methods
    __slots__ = ("_b",)

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self._b = a, b

    @property  # type: ignore[override]
    def b(self) -> Any:
        return self._b

    @b.setter
    def b(self, v: Any) -> None:
        self._b = v


class ListKind(list):
    pass


def runner(**objs: Any) -> SimpleNamespace:
    return SimpleNamespace(k=SimpleNamespace(ops={"skipped": [1]}, **objs), scenario=object())


@needs_c
def test_hand_made_objects_are_recorded_and_restored_alike() -> None:
    own, shadow = OwnSetstate([1], {2: 3}, {4}), Shadowed(Pair(5, [6]), (7, [8]))
    r = runner(own=own, shadow=shadow, named=SimpleNamespace(x=[9]), code=len, fn=runner,
               seq=(Pair(1, 2), frozenset({Pair(3, 4)})))
    snap_py, snap_c = world.SnapshotPy(r), world.SnapshotC(r)
    before = recorded_py(snap_py)
    assert same(recorded_c(snap_c), before)
    kinds = {type(o): s for o, _, s in snap_c._saved.contents()[0]}
    assert kinds == {OwnSetstate: False, Shadowed: False, Pair: True}
    for snap in (snap_c, snap_py):
        SETSTATE_CALLS.clear()
        own.a.append(0)
        own.a, own.c = [], None
        shadow.a.b.append(7)
        shadow.a.a = shadow.b = None
        r.k.named.x.clear()
        r.k.extra = 1
        snap.restore()
        assert SETSTATE_CALLS == [own]
        assert same(recorded_py(world.SnapshotPy(r)), before)
        assert not hasattr(r.k, "extra")


@needs_c
@pytest.mark.parametrize("obj", [ListKind([1]), Pair.__new__(Pair), lambda: 0, object()])
def test_what_python_refuses_c_refuses(obj: Any) -> None:
    # an unset slot, a container subclass, a lambda (a function, skipped),
    # an object with neither slots it names nor a __dict__
    outcomes = []
    for cls in (world.SnapshotPy, world.SnapshotC):
        try:
            cls(runner(obj=obj))
            outcomes.append(None)
        except (TypeError, AttributeError) as e:
            outcomes.append((type(e), str(e)))
    assert outcomes[0] == outcomes[1]
