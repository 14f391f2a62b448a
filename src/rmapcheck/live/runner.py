"""Running a scenario on the live kernel: the live twin of the model's executor.

Where the model (:mod:`rmapcheck.model`) performs a scenario step on its
mirror of ``mm/``, :class:`LiveRunner` performs it in real processes, one
worker (:mod:`rmapcheck.live.worker`) per scenario process, and reduces the
result to the same :class:`~rmapcheck.scenario.ops.Observation` through
procfs (:mod:`rmapcheck.live.procfs`).

The controller (this process) listens on an abstract Unix socket; every
worker, including each one a ``fork`` step creates, connects to it and says
hello. The controller makes itself a child subreaper
(``PR_SET_CHILD_SUBREAPER``, ``kernel/sys.c``) so that a worker whose parent
exited is reparented to it and can be reaped; it holds a pidfd per worker, so
it never signals or waits for a recycled pid. Every wait is bounded; a
timeout raises :class:`LiveError`.

KSM (``mm/ksm.c``). The steps ``madvise P R mergeable|unmergeable`` and
``prctl P merge V`` (``PR_SET_MEMORY_MERGE``) are system calls of a worker;
``ksm_scan N``, ``ksm_settle`` (two full scans, as the kernel's KSM
selftests wait) and ``ksm_set KNOB V`` act on ksmd through a
:class:`~rmapcheck.live.ksm.KsmSession`, which the runner opens when the
scenario uses KSM (or lazily at the first KSM step), keeps for the whole run
and closes (unmerging what is left and restoring every knob) in
:meth:`LiveRunner.close`. Between steps ksmd is always stopped, never in the
middle of a pass. A worker that set ``PR_SET_MEMORY_MERGE`` has its own
(interpreter) memory advised unmergeable again before every scan, so the
counters count exactly the scenario's pages. Observations of a run that uses
KSM carry the global counters (``/sys/kernel/mm/ksm``) and, per process,
``/proc/<pid>/ksm_stat``.

``migrate P R[i]`` is ``move_pages(2)`` of that one page to node 0
(``MPOL_MF_MOVE_ALL``, as the model assumes of a privileged caller). This
machine has one NUMA node, so the kernel moves nothing
(``add_folio_for_migration()`` finds the folio already on the node) and
answers ``0`` for a mapped page, ``-ENOENT`` for an unpopulated one and
``-EFAULT`` for the zero page or an address outside any VMA: the step is a
no-op with the kernel's own result, and comparing it with the model checks
that a migration in the model is invisible.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import json
import os
import secrets
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from rmapcheck.live import procfs
from rmapcheck.model.uapi import (
    MADV_DONTNEED, MAP_ANONYMOUS, MAP_PRIVATE, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, PR_GET_MEMORY_MERGE,
    PR_SET_MEMORY_MERGE,
)
from rmapcheck.scenario.ops import (
    ARENA_BASE, FAIL_FLAG, MODEL_ONLY_KINDS, Observation, Op, PROTS, Scenario, mmap_flags, mmap_thp, read_result,
)

__all__ = [
    "ADVICE",
    "DEFAULT_TIMEOUT",
    "KSM_ADVICE",
    "KSM_STAT_FIELDS",
    "KSM_STEPS",
    "LiveError",
    "LiveRunner",
    "read_ksm_stat",
    "uses_ksm",
]

#: Seconds any single wait (a reply, a hello, an exit, the final reaping) may take.
DEFAULT_TIMEOUT = 5.0

#: madvise advice names of the scenario language and their ``MADV_*`` values
#: (``include/uapi/asm-generic/mman-common.h``).
ADVICE = {
    "normal": 0,
    "willneed": 3,
    "dontneed": MADV_DONTNEED,
    "free": 8,
    "dontfork": 10,
    "dofork": 11,
    "mergeable": 12,
    "unmergeable": 13,
    "wipeonfork": 18,
    "keeponfork": 19,
    "cold": 20,
    "pageout": 21,
    "populate_read": 22,
    "populate_write": 23,
}

#: Steps that act on KSM rather than on memory (``migrate`` is not one: a
#: scenario with only migrations observes no KSM counters).
KSM_STEPS = ("prctl", "ksm_scan", "ksm_settle", "ksm_set")

#: madvise advice that makes a scenario use KSM.
KSM_ADVICE = ("mergeable", "unmergeable")

#: The fields of ``/proc/<pid>/ksm_stat`` an observation carries.
KSM_STAT_FIELDS = ("ksm_merging_pages", "ksm_rmap_items", "ksm_zero_pages")

#: Full scans of ``ksm_settle``: the kernel's KSM selftests wait for two.
SETTLE_SCANS = 2

#: Where ``unmerge_outside`` stops: the arena and a tebibyte after it are the
#: scenario's, everything else is the interpreter's.
_ARENA_SPAN = 1 << 40

#: A merge-any worker's stand-in page: 4 GiB below the arena, where the model
#: puts P0's (``_WORKER_VPN`` of :mod:`rmapcheck.scenario.execute`).
STANDIN_ADDR = ARENA_BASE - (1 << 32)

_KEEP = [[STANDIN_ADDR, STANDIN_ADDR + 4096], [ARENA_BASE, ARENA_BASE + _ARENA_SPAN]]

# mm/migrate.c: move_pages(2); include/uapi/linux/mempolicy.h
_SYS_move_pages = 279
_MPOL_MF_MOVE_ALL = 4

# include/uapi/linux/prctl.h
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.restype = ctypes.c_int
_libc.syscall.restype = ctypes.c_long

# How many runners are open in this process, and the subreaper setting found
# before the first one made this process a subreaper.
_open_runners = 0
_saved_subreaper = 0


def uses_ksm(scenario: Scenario) -> bool:
    """Whether ``scenario`` has a KSM step or mergeable/unmergeable advice."""
    return any(op.kind in KSM_STEPS or (op.kind == "madvise" and op.advice in KSM_ADVICE)
               for op in scenario.ops)


#: the system's THP setting
_THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _check_thp_setting(op: Op) -> None:
    # thp_system leaves THP to the system: with "always" a fault may map a
    # huge page, which the model has not; "madvise" and "never" map none
    # without MADV_HUGEPAGE.
    try:
        setting = _THP_ENABLED.read_text()
    except OSError:
        return  # a kernel without THP
    if "[always]" in setting:
        raise LiveError(f"'{op.text()}': {_THP_ENABLED} is 'always', so a fault may map a transparent huge "
                        "page, which the model has not; thp_system needs 'madvise' or 'never'")


def _is_ksm_op(op: Op) -> bool:
    return op.kind in KSM_STEPS or (op.kind == "madvise" and op.advice in KSM_ADVICE)


def read_ksm_stat(pid: int) -> tuple[tuple[str, int], ...]:
    """The :data:`KSM_STAT_FIELDS` of ``/proc/<pid>/ksm_stat``, sorted."""
    got: dict[str, int] = {}
    with open(f"/proc/{pid}/ksm_stat") as f:
        for line in f:
            name, _, value = line.partition(" ")
            if name in KSM_STAT_FIELDS:
                got[name] = int(value)
    missing = [n for n in KSM_STAT_FIELDS if n not in got]
    if missing:
        raise OSError(f"/proc/{pid}/ksm_stat lacks {missing}")
    return tuple(sorted(got.items()))


class LiveError(Exception):
    """The live kernel could not be driven: a worker timed out, died or was misused.

    The message is one line, naming the process and the step.
    """


def _prctl(option: int, arg: int | ctypes.c_void_p) -> None:
    ctypes.set_errno(0)
    if _libc.prctl(option, arg, 0, 0, 0) == -1:
        err = ctypes.get_errno()
        raise LiveError(f"prctl({option}) failed: {errno.errorcode.get(err, err)}")


def _become_subreaper() -> None:
    global _open_runners, _saved_subreaper
    if _open_runners == 0:
        value = ctypes.c_int(0)
        _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.cast(ctypes.pointer(value), ctypes.c_void_p))
        _saved_subreaper = value.value
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _open_runners += 1


def _leave_subreaper() -> None:
    global _open_runners
    _open_runners -= 1
    if _open_runners == 0 and not _saved_subreaper:
        _prctl(_PR_SET_CHILD_SUBREAPER, 0)


@dataclass(slots=True)
class _Worker:
    """The controller's end of one worker process."""

    name: str
    pid: int
    pidfd: int
    sock: socket.socket | None
    buf: bytearray = field(default_factory=bytearray)
    gone: bool = False  # exited and reaped (or reaped by someone else)


class LiveRunner:
    """Runs the steps of ``scenario`` on the live kernel, one worker per process.

    Use as a context manager (or call :meth:`close`)::

        with LiveRunner(scenario) as live:
            for op in scenario.ops:
                obs = live.step(op)

    :param scenario: the scenario; its regions give the addresses.
    :param timeout: seconds any single wait may take.
    :param ksm_save_file: where the KSM session keeps the knobs to restore
        (default :data:`rmapcheck.live.ksm.SAVE_FILE`).
    :ivar op_seconds: time spent performing steps (not observing them).
    :raises LiveError: the first worker did not come up in time, or the
        scenario's header has a model-only setting (``rcu_windows: false``...).
    """

    def __init__(self, scenario: Scenario, timeout: float = DEFAULT_TIMEOUT,
                 ksm_save_file: Path | str | None = None) -> None:
        model_only = scenario.settings.model_only()
        if model_only:
            raise LiveError(f"'{model_only[0]}' is a model-only setting: the live kernel runs as it is built")
        self.scenario = scenario
        self.timeout = timeout
        self.op_seconds = 0.0
        self._ksm_save_file = ksm_save_file
        self._ksm: Any = None  # the KsmSession, once a KSM step needs it
        self._merge_any: set[str] = set()  # workers with PR_SET_MEMORY_MERGE
        self._workers: dict[str, _Worker] = {}  # live scenario processes by name
        self._started: list[_Worker] = []  # every worker ever started
        self._closed = False
        self._listener: socket.socket | None = None
        _become_subreaper()
        try:
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._address = f"@rmapcheck-{os.getpid()}-{secrets.token_hex(8)}"
            self._listener.bind("\0" + self._address[1:])
            self._listener.listen(16)
            if uses_ksm(scenario):
                self._ksm_session()
            self._spawn("P0")
        except BaseException:
            self.close()
            raise

    # -- context manager ---------------------------------------------------

    def __enter__(self) -> LiveRunner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- public API --------------------------------------------------------

    @property
    def pids(self) -> dict[str, int]:
        """The live scenario processes: name to pid."""
        return {name: w.pid for name, w in sorted(self._workers.items())}

    @property
    def started_pids(self) -> tuple[int, ...]:
        """The pid of every worker this runner ever started."""
        return tuple(w.pid for w in self._started)

    def step(self, op: Op) -> Observation:
        """Perform ``op`` in its process and observe the world afterwards.

        :raises LiveError: unknown process or region, or a worker failed to
            answer in time.
        """
        t0 = time.perf_counter()
        try:
            result = self.perform(op)
        finally:
            self.op_seconds += time.perf_counter() - t0
        return self.observe(result)

    def perform(self, op: Op) -> str:
        """Perform ``op`` without observing; returns its result string."""
        if self._closed:
            raise LiveError(f"runner closed before '{op.text()}'")
        kind = op.kind
        if kind in MODEL_ONLY_KINDS:
            raise LiveError(f"'{op.text()}' is a model-only step: the live kernel cannot run it on demand")
        if any(f.startswith(FAIL_FLAG) for f in op.flags):
            raise LiveError(f"'{op.text()}' injects an allocation failure: only the model can")
        if _is_ksm_op(op):
            ksm = self._ksm_session()
            if kind in ("ksm_scan", "ksm_settle"):
                self._unmerge_interpreters(op)
                ksm.scan(op.value if kind == "ksm_scan" else SETTLE_SCANS)
                return "ok"
            if kind == "ksm_set":
                return str(ksm.set_knob(op.advice, op.value))
        worker = self._workers.get(op.proc)
        if worker is None:
            raise LiveError(f"no live process {op.proc!r} for '{op.text()}'")
        if kind == "fork":
            result = self._fork(worker, op)
            if result == "ok" and op.proc in self._merge_any:
                self._merge_any.add(op.child)  # MMF_VM_MERGE_ANY is inherited
            return result
        if kind == "exit":
            self._exit(worker, op)
            self._merge_any.discard(op.proc)
            return "ok"
        if kind == "migrate":
            return self._migrate(worker, op)
        if kind == "prctl" and op.advice == "get_merge":
            return str(self._request(worker, {"cmd": "prctl_get", "option": PR_GET_MEMORY_MERGE}, op)["result"])
        if kind == "prctl":
            cmd = {"cmd": "prctl", "option": PR_SET_MEMORY_MERGE, "arg": op.value,
                   "standin": STANDIN_ADDR, "keep": _KEEP}
            result = str(self._request(worker, cmd, op)["result"])
            if result == "ok":
                if op.value:
                    self._merge_any.add(op.proc)
                else:
                    self._merge_any.discard(op.proc)
            return result
        cmd: dict[str, Any] = {"cmd": kind}
        if kind in ("read", "write", "poke"):
            cmd["addr"] = self._addr(op.region, op.page, op)
            cmd["pages"] = op.npages
            if kind == "read":
                reply = self._request(worker, cmd, op)
                return read_result(reply["values"]) if reply["result"] == "ok" else str(reply["result"])
            cmd["value"] = op.value
        elif kind in ("mmap", "munmap", "mprotect", "madvise", "mremap"):
            cmd["addr"] = self._addr(op.region, op.page, op)
            cmd["len"] = op.npages * procfs.PAGE_SIZE
            if kind in ("mmap", "mprotect"):
                if op.prot not in PROTS:
                    raise LiveError(f"unknown protection {op.prot!r} in '{op.text()}'")
                cmd["prot"] = PROTS[op.prot]
                if kind == "mmap":
                    if "thp_system" in op.flags:
                        _check_thp_setting(op)
                    cmd["flags"] = mmap_flags(op.flags) & ~(MAP_PRIVATE | MAP_ANONYMOUS)
                    cmd["thp"] = mmap_thp(op.flags)
            elif kind == "madvise":
                if op.advice not in ADVICE:
                    raise LiveError(f"unknown madvise advice {op.advice!r} in '{op.text()}'")
                cmd["advice"] = ADVICE[op.advice]
            elif kind == "mremap":
                cmd["new_len"] = (op.new_pages or op.npages) * procfs.PAGE_SIZE
                flags = MREMAP_DONTUNMAP if "dontunmap" in op.flags else 0
                if op.to_region:
                    flags |= MREMAP_MAYMOVE | MREMAP_FIXED
                    cmd["new_addr"] = self._addr(op.to_region, op.to_page, op)
                cmd["flags"] = flags
        else:
            raise LiveError(f"unknown step kind {kind!r} in '{op.text()}'")
        return str(self._request(worker, cmd, op)["result"])

    def observe(self, result: str) -> Observation:
        """The :class:`Observation` of the live processes now, with ``result``.

        :raises LiveError: a process vanished while it was observed.
        """
        pids = self.pids
        try:
            obs = procfs.observe(result, pids, self.scenario.arena_pages)
            if self._ksm is None:
                return obs
            stat = tuple((name, read_ksm_stat(pid)) for name, pid in pids.items())
        except OSError as e:
            raise LiveError(f"observing {sorted(self._workers)} failed: {e}") from e
        return dataclasses.replace(obs, counters=self._ksm.counters(), ksm_stat=stat)

    @property
    def ksm(self) -> Any:
        """The :class:`~rmapcheck.live.ksm.KsmSession` of this run (``None`` before KSM is used)."""
        return self._ksm

    def close(self) -> None:
        """Kill (``SIGKILL``) and reap every worker ever started; bounded.

        :raises LiveError: some worker was still there after the timeout.
        """
        if self._closed:
            return
        self._closed = True
        try:
            for w in self._started:
                self._hang_up(w)
                if not w.gone:
                    try:
                        signal.pidfd_send_signal(w.pidfd, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + self.timeout
            left = [w for w in self._started if not w.gone]
            while left:
                for w in left:
                    self._try_reap(w)
                left = [w for w in left if not w.gone]
                if not left:
                    break
                if time.monotonic() > deadline:
                    pids = ", ".join(f"{w.name}={w.pid}" for w in left)
                    raise LiveError(f"workers still present {self.timeout:g}s after SIGKILL: {pids}")
                time.sleep(0.002)
        finally:
            for w in self._started:
                if w.pidfd >= 0:
                    os.close(w.pidfd)
                    w.pidfd = -1
            self._workers.clear()
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            try:
                # After the workers are gone: unmerge what they left, restore.
                ksm, self._ksm = self._ksm, None
                if ksm is not None:
                    ksm.close()
            finally:
                _leave_subreaper()

    # -- internals ---------------------------------------------------------

    def _ksm_session(self) -> Any:
        if self._ksm is None:
            from rmapcheck.live.ksm import SAVE_FILE, KsmSession

            session = KsmSession(self._ksm_save_file or SAVE_FILE, timeout=self.timeout)
            session.__enter__()
            self._ksm = session
        return self._ksm

    def _unmerge_interpreters(self, op: Op) -> None:
        # Keep the interpreters' own memory out of the scan (see the worker).
        for name in sorted(self._merge_any):
            w = self._workers.get(name)
            if w is not None:
                self._request(w, {"cmd": "unmerge_outside", "keep": _KEEP}, op)

    def _migrate(self, w: _Worker, op: Op) -> str:
        # move_pages(pid, 1, {addr}, {0}, status, MPOL_MF_MOVE_ALL): a no-op here.
        pages = (ctypes.c_void_p * 1)(self._addr(op.region, op.page, op))
        nodes = (ctypes.c_int * 1)(0)
        status = (ctypes.c_int * 1)(-errno.EINVAL - 1000)
        ctypes.set_errno(0)
        ret = _libc.syscall(ctypes.c_long(_SYS_move_pages), ctypes.c_long(w.pid), ctypes.c_ulong(1),
                            pages, nodes, status, ctypes.c_int(_MPOL_MF_MOVE_ALL))
        if ret < 0:
            err = ctypes.get_errno()
            raise LiveError(f"move_pages for '{op.text()}' failed: {errno.errorcode.get(err, err)}")
        if status[0] == 0:
            return "ok"
        if status[0] < 0:
            return errno.errorcode.get(-status[0], f"E{-status[0]}")
        raise LiveError(f"move_pages for '{op.text()}' put the page on node {status[0]}")

    def _addr(self, region: str, page: int, op: Op) -> int:
        r = self.scenario.regions.get(region)
        if r is None:
            raise LiveError(f"unknown region {region!r} in '{op.text()}'")
        return ARENA_BASE + (r.at + page) * procfs.PAGE_SIZE

    def _spawn(self, name: str) -> None:
        src = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", "rmapcheck.live.worker", self._address, name]
        try:
            pid = os.posix_spawn(sys.executable, argv, env)
        except OSError as e:
            raise LiveError(f"starting worker {name} ({sys.executable}) failed: {e}") from e
        self._track(name, pid, f"starting worker {name}", interpreter=True)

    def _track(self, name: str, pid: int, what: str, interpreter: bool = False) -> None:
        # A new worker: tracked at once (pidfd), so close() kills it even if
        # it never says hello, then connected and registered under ``name``.
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as e:
            raise LiveError(f"pidfd_open({pid}) for worker {name} failed in {what}: {e}") from e
        w = _Worker(name=name, pid=pid, pidfd=pidfd, sock=None)
        self._started.append(w)
        w.sock = self._accept(name, pid, what, interpreter=interpreter)
        self._workers[name] = w

    def _accept(self, name: str, pid: int, what: str, interpreter: bool = False) -> socket.socket:
        # Wait (bounded) for the connection and hello of worker ``name``/``pid``.
        # A fresh interpreter gets twice the time a fork does.
        listener = self._listener
        if listener is None:
            raise LiveError(f"runner closed while {what}")
        deadline = time.monotonic() + self.timeout * (2 if interpreter else 1)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LiveError(f"no hello from worker {name} (pid {pid}) within "
                                f"{self.timeout * (2 if interpreter else 1):g}s while {what}")
            listener.settimeout(left)
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            tmp = _Worker(name=name, pid=pid, pidfd=-1, sock=conn)
            try:
                hello = self._read_reply(tmp, deadline, what)
            except LiveError:
                conn.close()
                raise
            if hello.get("hello") != name or hello.get("pid") != pid:
                conn.close()
                raise LiveError(f"unexpected hello {hello} while {what} (wanted {name}, pid {pid})")
            if tmp.buf:
                conn.close()
                raise LiveError(f"worker {name} sent more than its hello while {what}")
            return conn

    def _read_reply(self, w: _Worker, deadline: float, what: str) -> dict[str, Any]:
        # One JSON line from ``w``, bounded by ``deadline``.
        sock = w.sock
        if sock is None:
            raise LiveError(f"worker {w.name} has no connection while {what}")
        while True:
            nl = w.buf.find(b"\n")
            if nl >= 0:
                line = bytes(w.buf[:nl])
                del w.buf[:nl + 1]
                try:
                    reply = json.loads(line)
                except ValueError as e:
                    raise LiveError(f"worker {w.name} sent {line[:80]!r} while {what}: {e}") from e
                if not isinstance(reply, dict):
                    raise LiveError(f"worker {w.name} sent {line[:80]!r} while {what}")
                return reply
            left = deadline - time.monotonic()
            if left <= 0:
                raise LiveError(f"worker {w.name} (pid {w.pid}) did not answer within "
                                f"{self.timeout:g}s while {what}")
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as e:
                raise LiveError(f"worker {w.name} (pid {w.pid}) connection failed while {what}: {e}") from e
            if not chunk:
                raise LiveError(f"worker {w.name} (pid {w.pid}) hung up while {what}")
            w.buf += chunk

    def _send(self, w: _Worker, cmd: dict[str, Any], op: Op) -> None:
        if w.sock is None:
            raise LiveError(f"worker {w.name} has no connection for '{op.text()}'")
        try:
            w.sock.settimeout(self.timeout)
            w.sock.sendall(json.dumps(cmd).encode() + b"\n")
        except OSError as e:
            raise LiveError(f"sending '{op.text()}' to worker {w.name} (pid {w.pid}) failed: {e}") from e

    def _request(self, w: _Worker, cmd: dict[str, Any], op: Op) -> dict[str, Any]:
        self._send(w, cmd, op)
        what = f"'{op.text()}'"
        reply = self._read_reply(w, time.monotonic() + self.timeout, what)
        if "error" in reply:
            raise LiveError(f"worker {w.name} could not perform {what}: {reply['error']}")
        if not isinstance(reply.get("result"), str):
            raise LiveError(f"worker {w.name} answered {reply} to {what}")
        return reply

    def _fork(self, parent: _Worker, op: Op) -> str:
        child = op.child
        if not child:
            raise LiveError(f"fork without a child name: '{op.text()}'")
        if child in self._workers:
            raise LiveError(f"process {child!r} already exists: '{op.text()}'")
        reply = self._request(parent, {"cmd": "fork", "child": child}, op)
        if reply["result"] != "ok":
            return str(reply["result"])
        pid = reply.get("pid")
        if not isinstance(pid, int):
            raise LiveError(f"worker {parent.name} answered {reply} to '{op.text()}'")
        self._track(child, pid, f"'{op.text()}'")
        return "ok"

    def _exit(self, w: _Worker, op: Op) -> None:
        self._send(w, {"cmd": "exit"}, op)
        del self._workers[w.name]
        self._hang_up(w)
        # Wait until the process has exited: its pidfd turns readable in
        # exit_notify(), after exit_mm() tore the address space down, i.e. once
        # it is a zombie or already reaped.
        poller = select.poll()
        poller.register(w.pidfd, select.POLLIN)
        if not poller.poll(self.timeout * 1000):
            raise LiveError(f"worker {w.name} (pid {w.pid}) still running {self.timeout:g}s "
                            f"after '{op.text()}'")
        self._try_reap(w)

    @staticmethod
    def _hang_up(w: _Worker) -> None:
        if w.sock is not None:
            w.sock.close()
            w.sock = None

    @staticmethod
    def _try_reap(w: _Worker) -> None:
        # Reap ``w`` if it is a zombie child of ours; note when it is gone.
        if w.gone or w.pidfd < 0:
            return
        try:
            os.waitid(os.P_PIDFD, w.pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            pass  # not (or not yet) our child: its parent worker reaps it
        try:
            signal.pidfd_send_signal(w.pidfd, 0)
        except ProcessLookupError:
            w.gone = True
