"""Kernel designs: which kernel functions a :class:`~rmapcheck.model.kernel.Kernel` runs.

A design is the running kernel (``linux-6.18``: the plain kernel functions,
the layers that wrap some of them, and ``CONFIG``) or a base design with
kernel functions replaced by name, as a patch replaces them: a module of
this package registered in :data:`DESIGNS`, or a design file anywhere
(``rmapcheck check --design mybug.py``). :mod:`rmapcheck.designs.design`
describes what a design module declares; docs/writing-a-design.md how to
write one.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from rmapcheck.designs.design import Design, DesignError, design_label, is_design_file, load_design
from rmapcheck.model.kernel import Kernel

__all__ = ["DESIGNS", "Design", "DesignError", "config_text", "design_config", "design_label", "get_design",
           "is_design_file", "load_design", "make_kernel"]

#: design name → module under :mod:`rmapcheck.designs`
DESIGNS = {
    "linux-2.6.34": "linux_2_6_34",
    "linux-2.6.36-pre": "linux_2_6_36_pre",
    "linux-2.6.36-seed-0526": "linux_2_6_36_seed_0526",
    "linux-2.6.36-rc6": "linux_2_6_36_rc6",
    "linux-2.6.36": "linux_2_6_36",
    "linux-2.6.37": "linux_2_6_37",
    "linux-3.0": "linux_3_0",
    "linux-3.16-rc": "linux_3_16_rc",
    "linux-3.16": "linux_3_16",
    "linux-3.18": "linux_3_18",
    "linux-3.19-rc": "linux_3_19_rc",
    "linux-3.19": "linux_3_19",
    "linux-4.0": "linux_4_0",
    "linux-4.7-mm": "linux_4_7_mm",
    "linux-5.4-next": "linux_5_4_next",
    "linux-6.0": "linux_6_0",
    "linux-6.1": "linux_6_1",
    "linux-6.15": "linux_6_15",
    "linux-6.18.0": "linux_6_18_0",
    "linux-6.18-degree": "linux_6_18_degree",
    "linux-6.18": "linux_6_18",
}


def get_design(name: str) -> tuple[dict[str, Callable[..., Any]], dict[str, Any]]:
    """The resolved ``(ops, config)`` of design ``name`` (a registered name or a design file's path).

    :raises DesignError: the design is unknown or does not load.
    """
    d = load_design(name)
    return d.ops, dict(d.config)


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


def make_kernel(name: str | Design = "linux-6.18", **config: Any) -> Kernel:
    """A fresh kernel of design ``name`` (or of a design loaded already); ``config`` overrides its switches."""
    d = name if isinstance(name, Design) else load_design(name)
    return Kernel(d.ops, {**d.config, **config}, design=d.spec if isinstance(name, Design) else name)
