"""Kernel designs: which kernel functions a :class:`~rmapcheck.model.kernel.Kernel` runs.

A design module exports ``OPS`` (kernel function name → function) and
``CONFIG`` (``CONFIG_*`` switches and sysctls). Later designs are the running
kernel's table with a few functions replaced, as a patch replaces them.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable

from rmapcheck.model.kernel import Kernel

__all__ = ["DESIGNS", "DesignError", "config_text", "design_config", "get_design", "make_kernel"]

#: design name → module under :mod:`rmapcheck.designs`
DESIGNS = {
    "linux-2.6.36-pre": "linux_2_6_36_pre",
    "linux-2.6.36-seed-0526": "linux_2_6_36_seed_0526",
    "linux-2.6.36": "linux_2_6_36",
    "linux-6.18.0": "linux_6_18_0",
    "linux-6.18-degree": "linux_6_18_degree",
    "linux-6.18": "linux_6_18",
}


class DesignError(ValueError):
    """An unknown design name, or a switch it does not have."""


def get_design(name: str) -> tuple[dict[str, Callable[..., Any]], dict[str, Any]]:
    """The ``(OPS, CONFIG)`` of design ``name``.

    :raises DesignError: the name is not a known design.
    """
    mod = DESIGNS.get(name)
    if mod is None:
        raise DesignError(f"unknown design {name!r} (known: {', '.join(sorted(DESIGNS))})")
    m = importlib.import_module(f"rmapcheck.designs.{mod}")
    return m.OPS, m.CONFIG


_TRUE = ("y", "yes", "true", "1")
_FALSE = ("n", "no", "false", "0")


def design_config(name: str, settings: Iterable[str]) -> dict[str, Any]:
    """``NAME=VALUE`` settings of the switches of design ``name``, typed as the design's own.

    The switches are the design's ``CONFIG_*`` options (``y`` or ``n``) and
    sysctls (``sysctl_*``, integers).

    :raises DesignError: one line naming a malformed setting, a switch the
        design does not have, or a value of the wrong kind.
    """
    _, cfg = get_design(name)
    known = sorted(k for k in cfg if k.startswith(("CONFIG_", "sysctl_")))
    out: dict[str, Any] = {}
    for s in settings:
        key, sep, val = s.partition("=")
        if not sep or not key:
            raise DesignError(f"config {s!r}: expected NAME=VALUE, such as CONFIG_KSM=n")
        if key not in known:
            raise DesignError(f"config {key}: design {name} has no such switch (known: {', '.join(known)})")
        default = cfg[key]
        if isinstance(default, bool):
            if val.lower() not in _TRUE + _FALSE:
                raise DesignError(f"config {key}={val}: expected y or n")
            out[key] = val.lower() in _TRUE
        else:
            try:
                out[key] = int(val)
            except ValueError:
                raise DesignError(f"config {key}={val}: expected an integer") from None
    return out


def config_text(config: dict[str, Any]) -> str:
    """Settings as :func:`design_config` reads them: ``CONFIG_KSM=n, sysctl_max_map_count=10``."""
    return ", ".join(f"{k}={'y' if v is True else 'n' if v is False else v}" for k, v in sorted(config.items()))


def make_kernel(name: str = "linux-6.18", **config: Any) -> Kernel:
    """A fresh kernel of design ``name``; ``config`` overrides the design's switches."""
    ops, cfg = get_design(name)
    return Kernel(ops, {**cfg, **config}, design=name)
