"""A scenario process on the live kernel: one worker per scenario process.

Mirrors, from user space, the system calls a scenario step names
(``mmap``/``munmap`` in ``mm/mmap.c`` and ``mm/vma.c``, ``mprotect`` in
``mm/mprotect.c``, ``mremap`` in ``mm/mremap.c``, ``madvise`` in
``mm/madvise.c``, ``fork`` in ``kernel/fork.c``, ``_exit`` in
``kernel/exit.c``), issued through libc at exact addresses.

Started as ``python -m rmapcheck.live.worker ADDRESS NAME``: the worker
connects to the controller's Unix stream socket (``@name`` stands for an
abstract address), says hello (``{"hello": NAME, "pid": PID}``) and then
serves one JSON line per command, answering each with one JSON line::

    {"cmd": "mmap", "addr": A, "len": L, "prot": P, "flags": F, "thp": T}
    {"cmd": "munmap", "addr": A, "len": L}
    {"cmd": "mprotect", "addr": A, "len": L, "prot": P}
    {"cmd": "mremap", "addr": A, "len": L, "new_len": N, "flags": F, "new_addr": B}
    {"cmd": "madvise", "addr": A, "len": L, "advice": V}
    {"cmd": "read", "addr": A, "pages": N}      -> {"result": "ok", "values": [V, ...]}
    {"cmd": "write", "addr": A, "pages": N, "value": V}
    {"cmd": "poke", "addr": A, "pages": N, "value": V}
    {"cmd": "prctl", "option": O, "arg": V, "standin": S, "keep": [[A, B], ...]}
    {"cmd": "prctl_get", "option": O}          -> {"result": "<value in decimal>"}
    {"cmd": "unmerge_outside", "keep": [[A, B], ...]}
    {"cmd": "fork", "child": NAME}              -> {"result": "ok", "pid": PID}
    {"cmd": "exit"}                             -> no answer: _exit(0)

``result`` is ``ok``, an errno name (``EEXIST``) or ``SIGSEGV``; a command the
worker cannot understand gets ``{"error": "<message>"}``. ``mmap`` takes the
``MAP_*`` flags besides ``MAP_PRIVATE|MAP_ANONYMOUS`` and the madvise advice
that follows it (``MADV_NOHUGEPAGE``, or none: ``null``). ``read``/``write``
take ``N`` pages from ``A`` in turn, checking ``/proc/self/maps`` before each
and answering ``SIGSEGV`` without touching that page when no VMA covers it or
its protection forbids the access, so a worker never crashes. ``poke`` writes
through ``/proc/self/mem`` (``FOLL_FORCE``): its failure is ``EIO``. A forked child closes its copy of the parent's
connection, connects anew and says hello with its own name. Every worker
ignores ``SIGCHLD`` (children are reaped by the kernel, never left as zombies)
and ``SIGINT`` (the controller handles Ctrl-C), and exits as soon as its
connection reaches end of file, so no worker outlives its controller.

``prctl(PR_SET_MEMORY_MERGE, 1)`` (``kernel/sys.c``, ``ksm_enable_merge_any()``
in ``mm/ksm.c``) makes every VMA of the worker mergeable, the interpreter's
own heap and stacks included, and every VMA mapped later. So that KSM's
counters count only the scenario's pages, ``unmerge_outside`` advises
``MADV_UNMERGEABLE`` on everything outside the ``keep`` ranges (the arena
and the stand-in page): ``madvise()`` walks every VMA of a range and, across
holes, still applies the advice before failing with ``ENOMEM``, which is
expected and ignored. The worker does it right after
``prctl(PR_SET_MEMORY_MERGE, 1)`` and the controller asks for it again before
every KSM scan (the interpreter may have mapped new memory since).

A merge-any process needs one mergeable VMA of its own outside the arena:
ksmd drops an mm with no ``VM_MERGEABLE`` VMA from its list and clears
``MMF_VM_MERGE_ANY`` (``scan_get_next_rmap_item()``), which a real process,
with mergeable memory of its own, never sees. So ``prctl`` first maps the
``standin`` page (never touched: no ``anon_vma``, so no rmap_item), as the
model gives P0 one (``rmapcheck.scenario.execute``), and keeps it mergeable.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
import sys
from typing import Any

__all__ = [
    "PR_SET_MEMORY_MERGE",
    "TASK_SIZE",
    "SYS_mremap",
    "main",
    "socket_address",
]

# The uapi constants are the model's (include/uapi/asm-generic/mman-common.h,
# include/uapi/linux/mman.h): rmapcheck.model.uapi imports nothing else, so a
# worker stays small.
from rmapcheck.model.uapi import (  # noqa: E402
    MADV_UNMERGEABLE, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE, MAP_PRIVATE, PR_SET_MEMORY_MERGE,
)

#: The end of user space on x86_64 (``TASK_SIZE_MAX`` with 4-level paging).
TASK_SIZE = 0x7FFF_FFFF_F000
#: arch/x86/entry/syscalls/syscall_64.tbl
SYS_mremap = 25

_MAP_FAILED = ctypes.c_void_p(-1).value
_PAGE_SIZE = 4096
_U64 = (1 << 64) - 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mprotect.restype = ctypes.c_int
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.restype = ctypes.c_int
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


def socket_address(text: str) -> str:
    """The ``AF_UNIX`` address that ``text`` names; ``@x`` is the abstract ``\\0x``."""
    return "\0" + text[1:] if text.startswith("@") else text


def _errname(err: int) -> str:
    # errno.errorcode gives one name per number (EAGAIN, not EWOULDBLOCK).
    return errno.errorcode.get(err, f"E{err}")


def _check(ret: int) -> str:
    # A libc call's -1 becomes the errno's name.
    return _errname(ctypes.get_errno()) if ret == -1 else "ok"


def _mmap(cmd: dict[str, Any]) -> dict[str, Any]:
    addr, length = int(cmd["addr"]), int(cmd["len"])
    flags = MAP_PRIVATE | MAP_ANONYMOUS | int(cmd["flags"])
    ctypes.set_errno(0)
    got = _libc.mmap(addr, length, int(cmd["prot"]), flags, -1, 0)
    if got == _MAP_FAILED or got is None:
        return {"result": _errname(ctypes.get_errno())}
    if got != addr:
        # Only a kernel without MAP_FIXED_NOREPLACE (before 4.17) treats it as a hint.
        _libc.munmap(got, length)
        return {"error": f"mmap placed {length:#x} bytes at {got:#x}, not at {addr:#x}"}
    # By default keep transparent huge pages (and mTHP) out: one frame per page.
    thp = cmd.get("thp")
    if thp is not None and _libc.madvise(addr, length, int(thp)) == -1:
        return {"error": f"madvise({thp}) after mmap failed: {_errname(ctypes.get_errno())}"}
    return {"result": "ok"}


def _munmap(cmd: dict[str, Any]) -> dict[str, Any]:
    ctypes.set_errno(0)
    return {"result": _check(_libc.munmap(int(cmd["addr"]), int(cmd["len"])))}


def _mprotect(cmd: dict[str, Any]) -> dict[str, Any]:
    ctypes.set_errno(0)
    return {"result": _check(_libc.mprotect(int(cmd["addr"]), int(cmd["len"]), int(cmd["prot"])))}


def _mremap(cmd: dict[str, Any]) -> dict[str, Any]:
    # Through syscall(2): glibc's mremap() only passes new_address with MREMAP_FIXED.
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(SYS_mremap), ctypes.c_ulong(int(cmd["addr"])),
                        ctypes.c_ulong(int(cmd["len"])), ctypes.c_ulong(int(cmd["new_len"])),
                        ctypes.c_ulong(int(cmd["flags"])), ctypes.c_ulong(int(cmd.get("new_addr", 0))))
    return {"result": _check(ret)}


def _madvise(cmd: dict[str, Any]) -> dict[str, Any]:
    ctypes.set_errno(0)
    return {"result": _check(_libc.madvise(int(cmd["addr"]), int(cmd["len"]), int(cmd["advice"])))}


def _unmerge_outside(keep: list[tuple[int, int]]) -> str:
    """``MADV_UNMERGEABLE`` on every VMA outside the ``keep`` ranges; ``ok`` or the errno name.

    ``ENOMEM`` (the ranges have holes) is expected: the advice was still applied.
    """
    start = 0
    gaps = []
    for lo, hi in sorted(keep):
        gaps.append((start, lo))
        start = max(start, hi)
    gaps.append((start, TASK_SIZE))
    for start, end in gaps:
        if end <= start:
            continue
        ctypes.set_errno(0)
        if _libc.madvise(start, end - start, MADV_UNMERGEABLE) == -1:
            err = ctypes.get_errno()
            if err != errno.ENOMEM:
                return _errname(err)
    return "ok"


def _keep(cmd: dict[str, Any]) -> list[tuple[int, int]]:
    return [(int(lo), int(hi)) for lo, hi in cmd.get("keep", ())]


def _prctl(cmd: dict[str, Any]) -> dict[str, Any]:
    option, arg = int(cmd["option"]), int(cmd["arg"])
    merge_any = option == PR_SET_MEMORY_MERGE and arg
    if merge_any and "standin" in cmd:
        addr = int(cmd["standin"])
        ctypes.set_errno(0)
        got = _libc.mmap(addr, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
        if got in (_MAP_FAILED, None) and ctypes.get_errno() != errno.EEXIST:
            return {"error": f"mapping the stand-in page failed: {_errname(ctypes.get_errno())}"}
        if got not in (_MAP_FAILED, None) and got != addr:
            return {"error": f"stand-in page placed at {got:#x}, not at {addr:#x}"}
    ctypes.set_errno(0)
    result = _check(_libc.prctl(option, arg, 0, 0, 0))
    if result == "ok" and merge_any and "keep" in cmd:
        out = _unmerge_outside(_keep(cmd))
        if out != "ok":
            return {"error": f"MADV_UNMERGEABLE outside the arena failed: {out}"}
    return {"result": result}


def _unmerge_cmd(cmd: dict[str, Any]) -> dict[str, Any]:
    out = _unmerge_outside(_keep(cmd))
    if out != "ok":
        return {"error": f"MADV_UNMERGEABLE outside the arena failed: {out}"}
    return {"result": "ok"}


def _accessible(addr: int, need: str) -> bool:
    """Whether a VMA of this process covers ``addr`` with permission ``need``.

    Read before every access (the access before may have changed nothing,
    but the maps are the kernel's to say) so that a forbidden access becomes
    the answer ``SIGSEGV`` instead of a real fault in the worker.
    """
    with open("/proc/self/maps", "rb") as f:
        for line in f:
            rng, perms = line.split(b" ", 2)[:2]
            lo, hi = (int(x, 16) for x in rng.split(b"-"))
            if lo <= addr and addr + 8 <= hi:
                index = 0 if need == "r" else 1
                return perms[index:index + 1] == need.encode()
            if lo > addr:
                break
    return False


def _pages(cmd: dict[str, Any]) -> range:
    # The page addresses of a read, write or poke, in order.
    addr = int(cmd["addr"])
    return range(addr, addr + int(cmd.get("pages", 1)) * _PAGE_SIZE, _PAGE_SIZE)


def _read(cmd: dict[str, Any]) -> dict[str, Any]:
    values = []
    for addr in _pages(cmd):
        if not _accessible(addr, "r"):
            return {"result": "SIGSEGV"}
        values.append(int.from_bytes(ctypes.string_at(addr, 8), "little"))
    return {"result": "ok", "values": values}


def _write(cmd: dict[str, Any]) -> dict[str, Any]:
    data = (int(cmd["value"]) & _U64).to_bytes(8, "little")
    for addr in _pages(cmd):
        if not _accessible(addr, "w"):
            return {"result": "SIGSEGV"}
        ctypes.memmove(addr, data, 8)
    return {"result": "ok"}


def _poke(cmd: dict[str, Any]) -> dict[str, Any]:
    # pwrite() to /proc/self/mem: mem_rw() with FOLL_FORCE | FOLL_WRITE.
    data = (int(cmd["value"]) & _U64).to_bytes(8, "little")
    fd = os.open("/proc/self/mem", os.O_RDWR)
    try:
        for addr in _pages(cmd):
            try:
                os.pwrite(fd, data, addr)
            except OSError as e:
                return {"result": _errname(e.errno or 0)}
    finally:
        os.close(fd)
    return {"result": "ok"}


def _prctl_get(cmd: dict[str, Any]) -> dict[str, Any]:
    ctypes.set_errno(0)
    ret = _libc.prctl(int(cmd["option"]), 0, 0, 0, 0)
    return {"result": _errname(ctypes.get_errno()) if ret == -1 else str(ret)}


_HANDLERS = {
    "mmap": _mmap,
    "munmap": _munmap,
    "mprotect": _mprotect,
    "mremap": _mremap,
    "madvise": _madvise,
    "read": _read,
    "write": _write,
    "poke": _poke,
    "prctl": _prctl,
    "prctl_get": _prctl_get,
    "unmerge_outside": _unmerge_cmd,
}


def _connect(address: str, name: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_address(address))
    sock.sendall(json.dumps({"hello": name, "pid": os.getpid()}).encode() + b"\n")
    return sock


def _serve(address: str, name: str) -> None:
    """Serve commands until ``exit`` or end of file; never returns normally."""
    sock = _connect(address, name)
    buf = bytearray()
    while True:
        nl = buf.find(b"\n")
        if nl < 0:
            chunk = sock.recv(65536)
            if not chunk:
                # The controller is gone (or closed us): so are we.
                os._exit(0)
            buf += chunk
            continue
        line = bytes(buf[:nl])
        del buf[:nl + 1]
        try:
            cmd = json.loads(line)
            kind = cmd["cmd"]
        except (ValueError, KeyError, TypeError) as e:
            reply: dict[str, Any] = {"error": f"bad command {line[:80]!r}: {e}"}
        else:
            if kind == "exit":
                os._exit(0)
            if kind == "fork":
                child = str(cmd["child"])
                try:
                    pid = os.fork()
                except OSError as e:
                    reply = {"result": _errname(e.errno or 0)}
                else:
                    if pid == 0:
                        # The child: drop the parent's connection (close our
                        # copy of the descriptor; a shutdown() would cut the
                        # parent off too) and introduce ourselves.
                        sock.close()
                        buf.clear()
                        name = child
                        try:
                            sock = _connect(address, name)
                        except OSError:
                            os._exit(1)
                        continue
                    reply = {"result": "ok", "pid": pid}
            else:
                handler = _HANDLERS.get(kind)
                if handler is None:
                    reply = {"error": f"unknown command {kind!r}"}
                else:
                    try:
                        reply = handler(cmd)
                    except (KeyError, TypeError, ValueError, OverflowError) as e:
                        reply = {"error": f"bad {kind} command: {e!r}"}
        sock.sendall(json.dumps(reply).encode() + b"\n")


def main(argv: list[str] | None = None) -> None:
    """Run a worker: ``worker ADDRESS NAME``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m rmapcheck.live.worker ADDRESS NAME\n")
        sys.exit(2)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _serve(args[0], args[1])
    except OSError:
        # Connection reset or refused: the controller is gone.
        os._exit(1)


if __name__ == "__main__":
    main()
