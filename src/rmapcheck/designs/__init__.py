"""Kernel designs: which kernel functions a :class:`~rmapcheck.model.kernel.Kernel` runs.

A design module exports ``OPS`` (kernel function name → function) and
``CONFIG`` (``CONFIG_*`` switches and sysctls). Later designs are the running
kernel's table with a few functions replaced, as a patch replaces them.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from rmapcheck.model.kernel import Kernel

__all__ = ["DESIGNS", "DesignError", "get_design", "make_kernel"]

#: design name → module under :mod:`rmapcheck.designs`
DESIGNS = {
    "linux-2.6.36-pre": "linux_2_6_36_pre",
    "linux-2.6.36-seed-0526": "linux_2_6_36_seed_0526",
    "linux-2.6.36": "linux_2_6_36",
    "linux-6.18.0": "linux_6_18_0",
    "linux-6.18": "linux_6_18",
}


class DesignError(ValueError):
    """An unknown design name."""


def get_design(name: str) -> tuple[dict[str, Callable[..., Any]], dict[str, Any]]:
    """The ``(OPS, CONFIG)`` of design ``name``.

    :raises DesignError: the name is not a known design.
    """
    mod = DESIGNS.get(name)
    if mod is None:
        raise DesignError(f"unknown design {name!r} (known: {', '.join(sorted(DESIGNS))})")
    m = importlib.import_module(f"rmapcheck.designs.{mod}")
    return m.OPS, m.CONFIG


def make_kernel(name: str = "linux-6.18", **config: Any) -> Kernel:
    """A fresh kernel of design ``name``; ``config`` overrides the design's switches."""
    ops, cfg = get_design(name)
    return Kernel(ops, {**cfg, **config}, design=name)
