"""The canonical walk in C (``check/_canon.c``) writes the bytes the Python walk's form marshals to.

Both are run on the states of random walks of every design under every
preset and seed bound, with and without symmetry, and compared as the bytes
the fingerprint hashes.
"""

from __future__ import annotations

import marshal
import random

import pytest

from rmapcheck.check import world
from rmapcheck.check.model import PRESETS, SEED_BOUNDS, KernelModel
from rmapcheck.designs import DESIGNS

BOUNDS = {**PRESETS, **{f"seed-{n}": b for n, b in SEED_BOUNDS.items()}}


def test_the_walk_in_c_is_built() -> None:
    # make installs the package with its C walk; without it every run is slower
    assert world.CANONICAL_WALK == "C", "rmapcheck.check._canon is not built (pip install -e . needs a C compiler)"


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_c_and_python_walks_agree(design: str) -> None:
    if world._canon is None:
        pytest.fail("rmapcheck.check._canon is not built")
    compared = 0
    for name, b in BOUNDS.items():
        m = KernelModel(design, b)
        rng = random.Random(f"{design}/{name}")
        for _ in range(12):
            s = m.init_state()
            for _ in range(14):
                for sym in (True, False):
                    py = marshal.dumps(world.canonical(s, sym), 2)
                    c = world._canon.marshalled(s, sym)
                    assert c == py, (design, name, sym)
                    compared += 1
                acts = m.actions(s)
                if not acts:
                    break
                out = m.apply(s, rng.choice(acts))
                if out.fatal or out.blocked:
                    break
    assert compared > 500
