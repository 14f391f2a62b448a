"""Observing a live process through procfs, reduced to the scenario's arena.

Mirrors the kernel's procfs views of memory: ``/proc/<pid>/maps``
(``show_map_vma()`` in ``fs/proc/task_mmu.c``), ``/proc/<pid>/pagemap``
(``pagemap_read()`` and ``pte_to_pagemap_entry()`` in ``fs/proc/task_mmu.c``,
format in ``Documentation/admin-guide/mm/pagemap.rst``) and
``/proc/kpageflags``/``/proc/kpagecount`` (``fs/proc/page.c``,
``include/uapi/linux/kernel-page-flags.h``).

Measured on the 6.18 kernel here (x86_64): a read fault on fresh private
anonymous memory (``mmap`` then a load) shows in pagemap as present
(bit 63) with the PFN of the shared zero page; ``/proc/kpageflags`` for that
PFN has ``KPF_ZERO_PAGE`` (bit 24) and ``KPF_RESERVED`` (bit 32) set
(0x101000000; PFN 0x3b32 here) and ``/proc/kpagecount`` reports 0 for it. A write fault gives
a frame of its own (present, bit 56 "exclusively mapped" set, kpagecount 1,
flags without ZERO_PAGE). So the zero page is recognised by its kpageflags
bit, never by a remembered PFN.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass

from rmapcheck.scenario.ops import ARENA_BASE, Observation

__all__ = [
    "KPF_KSM",
    "KPF_ZERO_PAGE",
    "PAGE_SIZE",
    "PM_PFRAME_MASK",
    "PM_PRESENT",
    "PM_SWAP",
    "ZERO_PAGE",
    "Frame",
    "KPageReader",
    "ProcessView",
    "observe",
    "observe_process",
    "read_frames",
    "read_layout",
]

PAGE_SIZE = 4096

# Documentation/admin-guide/mm/pagemap.rst
PM_PRESENT = 1 << 63
PM_SWAP = 1 << 62
PM_PFRAME_MASK = (1 << 55) - 1

# include/uapi/linux/kernel-page-flags.h
KPF_KSM = 21
KPF_ZERO_PAGE = 24

#: The frame key :meth:`Observation.canonical_frames` reads as the zero page.
ZERO_PAGE = "zero-page"

# A page under migration shows as a (migration) swap entry for a moment; on a
# machine without swap any swap entry is one. Re-read pagemap for up to this
# long before taking it as what the page maps.
_MIGRATION_WAIT = 0.05


@dataclass(frozen=True, slots=True)
class Frame:
    """The physical frame behind one present page.

    ``pfn`` is the page frame number (``-1`` with ``swap`` set: a swap entry,
    whose bits stand in ``swap``); ``flags`` is the page's ``/proc/kpageflags``
    word and ``count`` its ``/proc/kpagecount`` (the page's map count; 0 for
    the zero page).
    """

    pfn: int
    flags: int
    count: int
    swap: int = 0

    @property
    def zero(self) -> bool:
        """Whether this is the shared zero page (``KPF_ZERO_PAGE``)."""
        return bool(self.flags >> KPF_ZERO_PAGE & 1)

    @property
    def ksm(self) -> bool:
        """Whether this is a KSM page (``KPF_KSM``)."""
        return bool(self.flags >> KPF_KSM & 1)

    @property
    def key(self) -> object:
        """What identifies the frame in :meth:`Observation.canonical_frames`."""
        if self.zero:
            return ZERO_PAGE
        if self.swap:
            return ("swap", self.swap)
        return self.pfn


@dataclass(frozen=True, slots=True)
class ProcessView:
    """One process seen through procfs, restricted to the arena.

    ``layout`` has the private VMAs that meet the arena as ``(start, end,
    prot)`` in arena pages, clipped to it; ``frames`` one entry per arena page
    (``None``: nothing mapped).
    """

    layout: tuple[tuple[int, int, str], ...]
    frames: tuple[Frame | None, ...]


class KPageReader:
    """Reads ``/proc/kpageflags`` and ``/proc/kpagecount`` (root only).

    A context manager holding both files open; results are cached per PFN, so
    use one reader per observation (frames change between steps).
    """

    def __init__(self) -> None:
        self._flags = os.open("/proc/kpageflags", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._count = os.open("/proc/kpagecount", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(self._flags)
            raise
        self._cache: dict[int, tuple[int, int]] = {}

    def __enter__(self) -> KPageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close both files."""
        if self._flags >= 0:
            os.close(self._flags)
            os.close(self._count)
            self._flags = self._count = -1

    def read(self, pfn: int) -> tuple[int, int]:
        """The kpageflags word and kpagecount of frame ``pfn``."""
        got = self._cache.get(pfn)
        if got is None:
            flags = struct.unpack("<Q", os.pread(self._flags, 8, pfn * 8))[0]
            count = struct.unpack("<Q", os.pread(self._count, 8, pfn * 8))[0]
            got = self._cache[pfn] = (flags, count)
        return got


def read_layout(pid: int, arena_pages: int) -> tuple[tuple[int, int, str], ...]:
    """The private VMAs of ``pid`` meeting the arena, in arena pages.

    :param pid: the process.
    :param arena_pages: the arena's length; it starts at ``ARENA_BASE``.
    :returns: ``(start, end, prot)`` per VMA in address order, clipped to the
        arena; ``prot`` is the first three characters of the maps permissions.
    """
    lo_arena = ARENA_BASE
    hi_arena = ARENA_BASE + arena_pages * PAGE_SIZE
    out: list[tuple[int, int, str]] = []
    with open(f"/proc/{pid}/maps", "rb") as f:
        for line in f:
            rng, perms = line.split(b" ", 2)[:2]
            lo, hi = (int(x, 16) for x in rng.split(b"-"))
            if lo >= hi_arena:
                break
            if hi <= lo_arena or perms[3:4] != b"p":
                continue
            out.append(((max(lo, lo_arena) - lo_arena) // PAGE_SIZE,
                        (min(hi, hi_arena) - lo_arena) // PAGE_SIZE,
                        perms[:3].decode()))
    return tuple(out)


def _read_pagemap(pid: int, arena_pages: int) -> tuple[int, ...]:
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = arena_pages * 8
        data = os.pread(fd, size, ARENA_BASE // PAGE_SIZE * 8)
    finally:
        os.close(fd)
    if len(data) != size:
        raise OSError(f"short read of /proc/{pid}/pagemap: {len(data)} of {size} bytes")
    return struct.unpack(f"<{arena_pages}Q", data)


def read_frames(pid: int, arena_pages: int, kpage: KPageReader) -> tuple[Frame | None, ...]:
    """The frame behind each arena page of ``pid`` (``None``: no page).

    Reads the arena's pagemap entries in one ``pread``; a swap entry (on this
    machine a page caught mid-migration) is re-read for a short while and, if
    it stays, kept as a :class:`Frame` with ``swap`` set.
    """
    if arena_pages <= 0:
        return ()
    entries = _read_pagemap(pid, arena_pages)
    deadline = time.monotonic() + _MIGRATION_WAIT
    while any(e & PM_SWAP for e in entries) and time.monotonic() < deadline:
        time.sleep(0.001)
        entries = _read_pagemap(pid, arena_pages)
    out: list[Frame | None] = []
    for e in entries:
        if e & PM_PRESENT:
            pfn = e & PM_PFRAME_MASK
            flags, count = kpage.read(pfn)
            out.append(Frame(pfn, flags, count))
        elif e & PM_SWAP:
            out.append(Frame(-1, 0, 0, swap=e & PM_PFRAME_MASK))
        else:
            out.append(None)
    return tuple(out)


def observe_process(pid: int, arena_pages: int, kpage: KPageReader) -> ProcessView:
    """Layout and frames of one process (see :class:`ProcessView`)."""
    return ProcessView(read_layout(pid, arena_pages), read_frames(pid, arena_pages, kpage))


def observe(result: str, pids: Mapping[str, int], arena_pages: int) -> Observation:
    """Reduce the live processes ``pids`` (name to pid) to an :class:`Observation`.

    Processes are taken in name order; frames are numbered by
    :meth:`Observation.canonical_frames` and ``ksm`` holds the numbers of the
    frames whose kpageflags carry ``KPF_KSM``.

    :raises OSError: a process vanished while it was read.
    """
    views: dict[str, ProcessView] = {}
    with KPageReader() as kpage:
        for name in sorted(pids):
            views[name] = observe_process(pids[name], arena_pages, kpage)
    raw: dict[str, list[object | None]] = {
        name: [None if f is None else f.key for f in v.frames] for name, v in views.items()
    }
    frames = Observation.canonical_frames(raw, ZERO_PAGE)
    ksm: set[int] = set()
    for name, row in frames:
        for number, frame in zip(row, views[name].frames):
            if frame is not None and number is not None and number >= 0 and frame.ksm:
                ksm.add(number)
    layout = tuple((name, views[name].layout) for name in sorted(views))
    return Observation(result=result, layout=layout, frames=frames, ksm=frozenset(ksm))
