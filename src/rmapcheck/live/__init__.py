"""The live kernel: run scenarios in real processes and observe them through procfs.

The live twin of :mod:`rmapcheck.model`: :class:`LiveRunner`
(:mod:`~rmapcheck.live.runner`) drives one worker process
(:mod:`~rmapcheck.live.worker`) per scenario process and reduces the kernel's
state to the model's :class:`~rmapcheck.scenario.ops.Observation` with
:mod:`~rmapcheck.live.procfs`; :mod:`~rmapcheck.live.ksm` changes KSM's sysfs
knobs (``mm/ksm.c``) and always puts them back.

Names are imported lazily, so that a worker (``python -m
rmapcheck.live.worker``) starts without loading the rest of the package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rmapcheck.live.ksm import KsmSettings, wait_full_scans
    from rmapcheck.live.procfs import observe
    from rmapcheck.live.runner import LiveError, LiveRunner

__all__ = [
    "KsmSettings",
    "LiveError",
    "LiveRunner",
    "observe",
    "wait_full_scans",
]

_HOMES = {
    "KsmSettings": "ksm",
    "LiveError": "runner",
    "LiveRunner": "runner",
    "observe": "procfs",
    "wait_full_scans": "ksm",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
