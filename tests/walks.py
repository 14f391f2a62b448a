"""Random walks of a design under every preset and seed bound: states to compare two implementations on."""

from __future__ import annotations

import random
from collections.abc import Iterator

from rmapcheck.check.model import PRESETS, SEED_BOUNDS, KernelModel
from rmapcheck.scenario.execute import ModelRunner

#: the presets and the bounds of ``rmapcheck seed``
BOUNDS = {**PRESETS, **{f"seed-{n}": b for n, b in SEED_BOUNDS.items()}}


def walk_states(design: str, walks: int, steps: int) -> Iterator[tuple[KernelModel, random.Random, ModelRunner]]:
    """Each state of ``walks`` random walks of at most ``steps`` actions, under every bound of :data:`BOUNDS`.

    With the state come its model and the walk's random numbers (seeded by
    the design and the bounds). A caller may apply actions to the state and
    put it back before the walk goes on; the walk ends at a state without
    actions or after an action that is fatal or blocked.
    """
    for name, b in BOUNDS.items():
        m = KernelModel(design, b)
        rng = random.Random(f"{design}/{name}")
        for _ in range(walks):
            s = m.init_state()
            for _ in range(steps):
                yield m, rng, s
                acts = m.actions(s)
                if not acts:
                    break
                out = m.apply(s, rng.choice(acts))
                if out.fatal or out.blocked:
                    break
