"""KSM's sysfs knobs, changed for a run and always put back.

Mirrors the ``/sys/kernel/mm/ksm`` attributes of ``mm/ksm.c`` (``run_store()``,
``max_page_sharing_store()``, ``merge_across_nodes_store()``,
``advisor_mode_store()``, ...), documented in
``Documentation/admin-guide/mm/ksm.rst``. What the kernel enforces and this
module therefore orders around:

* ``max_page_sharing`` and ``merge_across_nodes`` can only change while there
  are no KSM pages (``-EBUSY`` otherwise): ``run=2`` (unmerge everything) is
  written first when either really changes, and ``run`` is restored last.
* Writing ``advisor_mode`` resets ``pages_to_scan`` (``set_advisor_defaults()``):
  ``advisor_mode`` goes first, and ``pages_to_scan`` is saved with it.

Every value is saved, to memory and to a save file, before anything is
written; the values are restored on leaving the ``with`` block, on an
exception, and on ``SIGINT``/``SIGTERM``; a save file left by a killed run is
restored from when the next :class:`KsmSettings` is entered.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from rmapcheck.live.runner import LiveError

__all__ = [
    "KSM_DIR",
    "SAVE_FILE",
    "WRITABLE",
    "KsmSettings",
    "read_knob",
    "wait_full_scans",
]

#: Where the kernel puts KSM's knobs.
KSM_DIR = Path("/sys/kernel/mm/ksm")

#: Where :class:`KsmSettings` keeps the values to restore while it runs. On a
#: tmpfs, so that it disappears with a reboot just as the settings do.
SAVE_FILE = Path("/run/rmapcheck-ksm-saved.json")

#: The writable knobs, in the order they are written (``run`` last).
WRITABLE = (
    "advisor_mode",
    "max_page_sharing",
    "merge_across_nodes",
    "advisor_max_cpu",
    "advisor_min_pages_to_scan",
    "advisor_max_pages_to_scan",
    "advisor_target_scan_time",
    "sleep_millisecs",
    "pages_to_scan",
    "use_zero_pages",
    "smart_scan",
    "stable_node_chains_prune_millisecs",
    "run",
)

# Knobs that need no KSM pages to change, and knobs that change others.
_NEED_UNMERGED = ("max_page_sharing", "merge_across_nodes")
_ALSO_CHANGES = {
    "advisor_mode": ("pages_to_scan",),
    "max_page_sharing": ("run",),
    "merge_across_nodes": ("run",),
}
_RUN_UNMERGE = "2"

# The KsmSettings active in this process (at most one).
_active: KsmSettings | None = None

_Handler = Callable[[int, FrameType | None], Any] | int | None


def read_knob(name: str, ksm_dir: Path = KSM_DIR) -> str:
    """The value of knob ``name``; for a choice (``[none] scan-time``) the chosen one."""
    text = (ksm_dir / name).read_text().strip()
    if "[" in text:
        return text[text.index("[") + 1:text.index("]")]
    return text


def _write_knob(name: str, value: str, ksm_dir: Path) -> None:
    try:
        (ksm_dir / name).write_text(value)
    except OSError as e:
        raise LiveError(f"writing {value!r} to {ksm_dir / name} failed: {e.strerror or e}") from e


def _ordered(names: Mapping[str, str]) -> list[str]:
    return [n for n in WRITABLE if n in names]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _apply(values: Mapping[str, str], ksm_dir: Path, errors: list[str] | None = None) -> None:
    """Write ``values`` in the kernel's order, ``run`` last.

    Unmerges first (``run=2``) when a knob that needs no KSM pages really
    changes; ``run`` then ends as ``values["run"]`` or, without one, as it was.
    With ``errors`` given, a refused write is noted there and the rest still
    written (for restoring); otherwise it raises :class:`LiveError`.
    """

    def write(name: str, value: str) -> None:
        try:
            _write_knob(name, value, ksm_dir)
        except LiveError as e:
            if errors is None:
                raise
            errors.append(str(e))

    run_before = read_knob("run", ksm_dir)
    unmerged = False
    for name in _ordered(values):
        value = values[name]
        if name == "run" or read_knob(name, ksm_dir) == value:
            continue
        if name in _NEED_UNMERGED and not unmerged:
            write("run", _RUN_UNMERGE)
            unmerged = True
        write(name, value)
    run = values.get("run", run_before)
    if unmerged or read_knob("run", ksm_dir) != run:
        write("run", run)


class KsmSettings:
    """Change KSM knobs for the duration of a ``with`` block.

    ::

        with KsmSettings(run=1, sleep_millisecs=1, smart_scan=0) as ksm:
            ...
            ksm.set(run=0)

    :param save_file: where the saved values are kept until restored.
    :param ksm_dir: the knobs' directory.
    :param values: knob name (one of :data:`WRITABLE`) to new value, written
        on entry.
    :raises LiveError: an unknown knob, a value the kernel refused, or a save
        file held by another running process.
    """

    def __init__(self, save_file: Path | str = SAVE_FILE, ksm_dir: Path | str = KSM_DIR,
                 **values: int | str) -> None:
        self.save_file = Path(save_file)
        self.ksm_dir = Path(ksm_dir)
        self._initial = self._check(values)
        self._saved: dict[str, str] = {}
        self._entered = False
        self._old_handlers: dict[int, _Handler] = {}

    @property
    def saved(self) -> dict[str, str]:
        """The original value of every knob changed so far."""
        return dict(self._saved)

    def __enter__(self) -> KsmSettings:
        global _active
        if _active is not None:
            raise LiveError("KsmSettings already active in this process; use its set()")
        self._recover_stale()
        _active = self
        self._entered = True
        self._install_handlers()
        try:
            self.set(**self._initial)
        except BaseException:
            self.restore()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()

    def set(self, **values: int | str) -> None:
        """Save (if not yet saved) and then write the knobs in ``values``."""
        if not self._entered:
            raise LiveError("KsmSettings.set() outside its with-block")
        new = self._check(values)
        touched = set(new)
        for name in new:
            touched.update(_ALSO_CHANGES.get(name, ()))
        fresh = {n: read_knob(n, self.ksm_dir) for n in _ordered(dict.fromkeys(touched, ""))
                 if n not in self._saved}
        if fresh:
            self._saved.update(fresh)
            self._write_save_file()
        _apply(new, self.ksm_dir)

    def restore(self) -> None:
        """Put every saved knob back, ``run`` last, and delete the save file.

        Safe to call more than once (also from a signal handler).
        """
        global _active
        if not self._entered:
            return
        errors: list[str] = []
        try:
            if self._saved:
                _apply(self._saved, self.ksm_dir, errors)
            if errors:
                # Keep the save file: the next run retries from it.
                raise LiveError(f"restoring KSM settings: {'; '.join(errors)}")
            self.save_file.unlink(missing_ok=True)
            self._saved.clear()
        finally:
            self._entered = False
            if _active is self:
                _active = None
            self._uninstall_handlers()

    # -- internals ---------------------------------------------------------

    def _check(self, values: Mapping[str, int | str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in values.items():
            if name not in WRITABLE:
                raise LiveError(f"{name!r} is not a writable KSM knob (one of {', '.join(WRITABLE)})")
            out[name] = str(value)
        return out

    def _write_save_file(self) -> None:
        tmp = self.save_file.with_name(self.save_file.name + f".{os.getpid()}.tmp")
        data = {"pid": os.getpid(), "ksm_dir": str(self.ksm_dir), "saved": self._saved}
        with open(tmp, "w") as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.save_file)

    def _recover_stale(self) -> None:
        # A save file left by a run that was killed before it could restore.
        try:
            data = json.loads(self.save_file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            raise LiveError(f"unreadable KSM save file {self.save_file}: {e}") from e
        pid = data.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
            raise LiveError(f"KSM settings are held by running process {pid} "
                            f"(save file {self.save_file}); remove the file if that is wrong")
        saved = data.get("saved")
        if not isinstance(saved, dict):
            raise LiveError(f"KSM save file {self.save_file} has no 'saved' table")
        _apply(self._check(saved), Path(data.get("ksm_dir", self.ksm_dir)))
        self.save_file.unlink(missing_ok=True)

    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            old = signal.getsignal(signum)
            if old == signal.SIG_IGN:
                continue
            self._old_handlers[signum] = old
            signal.signal(signum, self._on_signal)

    def _uninstall_handlers(self) -> None:
        handlers, self._old_handlers = self._old_handlers, {}
        for signum, old in handlers.items():
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, old if old is not None else signal.SIG_DFL)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Restore first, then do what the signal would have done.
        old = self._old_handlers.get(signum, signal.SIG_DFL)
        self.restore()
        if callable(old):
            old(signum, frame)
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def wait_full_scans(n: int = 2, timeout: float = 5.0, ksm_dir: Path | str = KSM_DIR) -> int:
    """Wait until ksmd's ``full_scans`` has advanced by ``n``; bounded by ``timeout``.

    :returns: the new ``full_scans`` count.
    :raises LiveError: it did not advance in time (with ``run`` not 1, it never will).
    """
    root = Path(ksm_dir)
    start = int(read_knob("full_scans", root))
    deadline = time.monotonic() + timeout
    while True:
        now = int(read_knob("full_scans", root))
        if now >= start + n:
            return now
        if time.monotonic() > deadline:
            raise LiveError(f"ksmd did {now - start} of {n} full scans within {timeout:g}s "
                            f"(run={read_knob('run', root)})")
        time.sleep(0.001)
