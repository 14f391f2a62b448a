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

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from rmapcheck.live.runner import LiveError

__all__ = [
    "COUNTERS",
    "KSM_DIR",
    "LOCK_FD_ENV",
    "LOCK_FILE",
    "SAVE_FILE",
    "SCENARIO_KNOBS",
    "SESSION_VALUES",
    "WRITABLE",
    "KsmSession",
    "KsmSettings",
    "active_settings",
    "exclusive",
    "other_mergeable_processes",
    "read_counters",
    "read_knob",
    "wait_full_scans",
]

#: Where the kernel puts KSM's knobs.
KSM_DIR = Path("/sys/kernel/mm/ksm")

#: Where :class:`KsmSettings` keeps the values to restore while it runs. On a
#: tmpfs, so that it disappears with a reboot just as the settings do.
SAVE_FILE = Path("/run/rmapcheck-ksm-saved.json")

#: Held (``flock``) by the process whose :class:`KsmSettings` is active, so
#: that two test runs on one machine take turns with the one global ksmd.
LOCK_FILE = Path("/run/rmapcheck-ksm.lock")

#: Environment variable naming an inherited descriptor of the held lock.
LOCK_FD_ENV = "RMAPCHECK_KSM_LOCK_FD"

#: Seconds :class:`KsmSettings` waits for another process's settings to end.
LOCK_TIMEOUT = 120.0

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
        self._lock_fd = -1

    @property
    def active(self) -> bool:
        """Whether the settings are in force (entered and not yet restored)."""
        return self._entered

    @property
    def saved(self) -> dict[str, str]:
        """The original value of every knob changed so far."""
        return dict(self._saved)

    def __enter__(self) -> KsmSettings:
        global _active
        if _active is not None:
            raise LiveError("KsmSettings already active in this process; use its set()")
        self._lock()
        try:
            self._recover_stale()
        except BaseException:
            self._unlock()
            raise
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
            self._unlock()

    def write(self, name: str, value: int | str) -> str:
        """Save knob ``name`` (if not yet saved) and write ``value`` to it as is.

        Unlike :meth:`set`, nothing else is written first (no ``run=2`` before
        ``max_page_sharing``): this is a scenario's ``ksm_set`` step.

        :returns: ``ok`` or the name of the errno the kernel refused it with
            (``EBUSY`` for ``max_page_sharing`` while KSM pages exist).
        """
        if not self._entered:
            raise LiveError("KsmSettings.write() outside its with-block")
        (name, text), = self._check({name: value}).items()
        touched = [name, *_ALSO_CHANGES.get(name, ())]
        fresh = {n: read_knob(n, self.ksm_dir) for n in touched if n not in self._saved}
        if fresh:
            self._saved.update(fresh)
            self._write_save_file()
        try:
            (self.ksm_dir / name).write_text(text)
        except OSError as e:
            return errno.errorcode.get(e.errno or 0, f"E{e.errno}")
        return "ok"

    # -- internals ---------------------------------------------------------

    def _lock(self) -> None:
        # Wait (bounded) for any other process's KSM settings to be restored.
        _acquire_lock()
        self._lock_fd = 1

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            self._lock_fd = -1
            _release_lock()

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


# The flock on LOCK_FILE: its descriptor and how often this process took it.
_lock_fd = -1
_lock_depth = 0


def _acquire_lock() -> None:
    global _lock_fd, _lock_depth
    if _lock_depth:
        _lock_depth += 1
        return
    inherited = os.environ.get(LOCK_FD_ENV)
    if inherited:
        # A parent holding the lock handed its descriptor down: same open
        # file description, so the flock below succeeds at once.
        fd = os.dup(int(inherited))
    else:
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise LiveError(f"another process held {LOCK_FILE} (KSM settings) "
                                f"for {LOCK_TIMEOUT:g}s") from None
            time.sleep(0.01)
    _lock_fd, _lock_depth = fd, 1


def _release_lock() -> None:
    global _lock_fd, _lock_depth
    if _lock_depth <= 0:
        return
    _lock_depth -= 1
    if _lock_depth == 0:
        fd, _lock_fd = _lock_fd, -1
        os.close(fd)  # releases the flock


@contextlib.contextmanager
def exclusive() -> Iterator[int]:
    """Hold KSM for this process: other processes' :class:`KsmSettings` wait.

    Re-entrant within the process (a :class:`KsmSettings` inside takes it
    again); for tests that compare the knobs before and after a run. Yields
    the lock's descriptor: a child started with it (``pass_fds``) and its
    number in the environment variable :data:`LOCK_FD_ENV` shares the lock.
    """
    _acquire_lock()
    try:
        yield _lock_fd
    finally:
        _release_lock()


def active_settings() -> KsmSettings | None:
    """The :class:`KsmSettings` active in this process, if any."""
    return _active


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


# -- ksmd under control: the live side of ksm_scan / ksm_settle / ksm_set -----

#: The global counters of /sys/kernel/mm/ksm an observation carries.
COUNTERS = ("ksm_zero_pages", "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")

#: The knobs a scenario may set with ``ksm_set`` (``run`` only to 0 or 2:
#: ``run=1`` would let ksmd scan on its own); ``sleep_millisecs``,
#: ``pages_to_scan`` and the advisor drive the scans and stay the runner's.
SCENARIO_KNOBS = ("max_page_sharing", "merge_across_nodes", "run", "smart_scan", "use_zero_pages",
                  "stable_node_chains_prune_millisecs")

#: ``sleep_millisecs`` between passes: long enough that ksmd never starts a
#: pass by itself while a scan is being stopped. Each pass is started by
#: writing a new value near it (``sleep_millisecs_store()`` wakes ksmd's
#: timed wait, whose condition is "the value changed").
SLEEP_BASE = 600_000

#: What a session sets on entry: the kernel's defaults for everything the
#: model reads, except ``smart_scan=0`` (it skips pages by age) and
#: ``stable_node_chains_prune_millisecs`` of an hour (the default 2000 decides
#: by wall-clock time whether a chain lookup prunes stale dups; an hour gives
#: what the default gives to any run shorter than 2 s: never pruned), and
#: ``pages_to_scan`` larger than any scenario's pages, so that every batch of
#: ksmd is exactly one full pass (``ksm_do_scan()`` stops at the end of a pass).
SESSION_VALUES: dict[str, int | str] = {
    "advisor_mode": "none",
    "max_page_sharing": 256,
    "merge_across_nodes": 1,
    "use_zero_pages": 0,
    "smart_scan": 0,
    "stable_node_chains_prune_millisecs": 3_600_000,
    "pages_to_scan": 1 << 20,
    "sleep_millisecs": SLEEP_BASE,
    "run": 0,
}

#: Values only a session writes, and the kernel's defaults (``mm/ksm.c``) a
#: session puts back when it finds one with no save file to restore from
#: (left by a run whose restore was lost, for example a test that read the
#: knobs while another run's session held them).
_RESIDUE = {
    "sleep_millisecs": (lambda v: SLEEP_BASE <= int(v) < SLEEP_BASE + 997, "20"),
    "pages_to_scan": (lambda v: int(v) == 1 << 20, "100"),
    "stable_node_chains_prune_millisecs": (lambda v: int(v) == 3_600_000, "2000"),
}

# include/uapi/asm-generic/mman-common.h
_MADV_MERGEABLE = 12
_PROT_NONE = 0
_MAP_PRIVATE_ANONYMOUS = 0x22
_sentinel: int | None = None


def _ensure_sentinel() -> None:
    """Keep one mergeable mm registered with KSM for the life of this process.

    ksmd only runs while its mm list is non-empty (``ksmd_should_run()``), so
    without this a ``ksm_scan`` after the scenario's last mergeable mm went
    would wait for a pass that never comes. The sentinel is one never-touched
    ``PROT_NONE`` page advised ``MADV_MERGEABLE`` in this (the controller's)
    process: it has no ``anon_vma``, so ksmd keeps its slot but never makes an
    rmap_item for it, and no counter changes.
    """
    global _sentinel
    if _sentinel is not None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    addr = libc.mmap(None, 4096, _PROT_NONE, _MAP_PRIVATE_ANONYMOUS, -1, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise LiveError(f"mmap of the KSM sentinel page failed: errno {ctypes.get_errno()}")
    if libc.madvise(addr, 4096, _MADV_MERGEABLE) != 0:
        raise LiveError(f"MADV_MERGEABLE on the KSM sentinel page failed: errno {ctypes.get_errno()}")
    _sentinel = addr


def _mergeable_anon_kib(pid: str) -> int:
    # Anonymous memory in the VM_MERGEABLE VMAs (smaps VmFlags "mg") of ``pid``.
    total = anon = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                anon = int(line.split()[1])
            elif line.startswith("VmFlags:"):
                if " mg" in line:
                    total += anon
                anon = 0
    return total


def other_mergeable_processes() -> list[tuple[int, str]]:
    """Processes other than this one with anonymous memory in a ``VM_MERGEABLE`` VMA.

    ksmd would scan those pages too, so the global counters would not be the
    run's alone. Children of this process count (a live run has none yet).
    Another controller's sentinel (a mergeable VMA without pages) does not.
    """
    me = os.getpid()
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/ksm_stat") as f:
                text = f.read()
            if "ksm_mergeable: yes" not in text or not _mergeable_anon_kib(entry.name):
                continue
            with open(f"/proc/{entry.name}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue  # gone, a kernel thread, or no mm
        out.append((int(entry.name), comm))
    return out


def read_counters(ksm_dir: Path | str = KSM_DIR) -> tuple[tuple[str, int], ...]:
    """The :data:`COUNTERS` as sorted ``(name, value)`` pairs."""
    root = Path(ksm_dir)
    return tuple((name, int(read_knob(name, root))) for name in COUNTERS)


class KsmSession:
    """ksmd under the runner's control for one live run.

    On entry it takes a :class:`KsmSettings` (its own, or the one already
    active in this process, which then restores), writes
    :data:`SESSION_VALUES` and makes sure no KSM pages of anyone else are
    counted (``run=2`` unmerges them if any are). ksmd then stays stopped
    (``run=0``) except inside :meth:`scan`, which makes it do exactly the
    number of full passes asked for:

    * ``pages_to_scan`` exceeds every page a scan can meet, so one batch of
      ``ksm_do_scan()`` is one whole pass (it returns when
      ``scan_get_next_rmap_item()`` finishes the pass);
    * a pass is started by writing a fresh ``sleep_millisecs`` (wakes the
      timed wait) and then ``run=1`` (wakes the idle wait); after the batch
      ksmd sleeps :data:`SLEEP_BASE` ms, so it starts no second pass;
    * once ``full_scans`` moved, ``run=0`` is written: ``run_store()`` takes
      ``ksm_thread_mutex``, which ksmd holds for the whole batch, so when it
      returns no pass is running and none will start. ``full_scans`` read
      then is final: one more than before (else the pass is retried; two more
      raises :class:`LiveError`). No pass is ever left half done.

    On leaving, after the runner's processes are gone, ``run=2`` removes
    every rmap_item and stable node they left (an exited mm's items stay until
    ksmd passes again), and the settings are restored.
    """

    def __init__(self, save_file: Path | str = SAVE_FILE, ksm_dir: Path | str = KSM_DIR,
                 timeout: float = 5.0) -> None:
        self.save_file = Path(save_file)
        self.ksm_dir = Path(ksm_dir)
        self.timeout = timeout
        self.settings: KsmSettings | None = None
        self._own = False
        self._kick = 0
        #: full passes done, and seconds spent in them
        self.passes = 0
        self.scan_seconds = 0.0

    def __enter__(self) -> KsmSession:
        if not (self.ksm_dir / "run").exists():
            raise LiveError(f"no KSM in this kernel ({self.ksm_dir} missing)")
        borrowed = active_settings()
        if borrowed is not None:
            self.settings = borrowed
        else:
            self.settings = KsmSettings(self.save_file, self.ksm_dir)
            self.settings.__enter__()
            self._own = True
        try:
            _ensure_sentinel()
            if self._own:
                self._repair_residue()
            self.settings.set(**SESSION_VALUES)
            if any(v for _, v in read_counters(self.ksm_dir)):
                # Someone's KSM pages (or a killed run's): unmerge them all.
                self.settings.set(run=2)
                self.settings.set(run=0)
                left = [(n, v) for n, v in read_counters(self.ksm_dir) if v]
                if left:
                    raise LiveError(f"KSM counters not zero after run=2: {left}")
            others = other_mergeable_processes()
            if others:
                raise LiveError("processes with mergeable memory would be counted by KSM's "
                                "global counters: " + ", ".join(f"{pid} ({comm})" for pid, comm in others))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Unmerge what is left (``run=2``) and restore the settings."""
        settings, self.settings = self.settings, None
        if settings is None:
            return
        try:
            # Already restored (by SIGINT/SIGTERM, or by a borrowed owner):
            # nothing of ours is in force any more.
            if settings.active:
                settings.set(run=2)
                settings.set(run=0)
        finally:
            if self._own:
                settings.restore()

    def _repair_residue(self) -> None:
        for name, (is_residue, default) in _RESIDUE.items():
            if is_residue(read_knob(name, self.ksm_dir)):
                _write_knob(name, default, self.ksm_dir)

    def counters(self) -> tuple[tuple[str, int], ...]:
        """The global KSM counters now."""
        return read_counters(self.ksm_dir)

    def set_knob(self, name: str, value: int) -> str:
        """A scenario's ``ksm_set NAME VALUE``: ``ok`` or the errno name."""
        if self.settings is None:
            raise LiveError("KSM session closed")
        if name not in SCENARIO_KNOBS:
            raise LiveError(f"ksm_set {name}: not a knob a scenario may set on the live kernel "
                            f"(one of {', '.join(SCENARIO_KNOBS)}): the runner drives ksmd with it")
        if name == "run" and str(value) == "1":
            raise LiveError("ksm_set run 1: ksmd would scan on its own; use ksm_scan or ksm_settle")
        return self.settings.write(name, value)

    def scan(self, n: int) -> None:
        """Make ksmd do exactly ``n`` full passes; ksmd is stopped again after."""
        t0 = time.perf_counter()
        try:
            for _ in range(n):
                self._one_pass()
                self.passes += 1
        finally:
            self.scan_seconds += time.perf_counter() - t0

    def _write(self, name: str, value: int) -> None:
        _write_knob(name, str(value), self.ksm_dir)

    def _full_scans(self) -> int:
        with open(self.ksm_dir / "full_scans", "rb") as f:
            return int(f.read())

    def _one_pass(self) -> None:
        start = self._full_scans()
        patience = 0.25
        deadline = time.monotonic() + self.timeout
        while True:
            # A value ksmd cannot have captured for its current sleep.
            self._kick += 1
            self._write("sleep_millisecs", SLEEP_BASE + self._kick % 997)
            self._write("run", 1)
            wait_until = min(time.monotonic() + patience, deadline)
            while self._full_scans() == start and time.monotonic() < wait_until:
                time.sleep(0.0002)
            self._write("run", 0)  # waits for a running batch to end
            now = self._full_scans()
            if now == start + 1:
                return
            if now > start + 1:
                raise LiveError(f"ksmd did {now - start} full scans where one was started")
            if time.monotonic() >= deadline:
                raise LiveError(f"ksmd did not complete a full scan within {self.timeout:g}s")
            # The wake-up was lost (ksmd read the new sleep_millisecs before it
            # slept) or ksmd got no CPU: start it again, more patiently.
            patience *= 2
