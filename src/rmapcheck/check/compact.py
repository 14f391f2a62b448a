"""What an exhaustive search keeps per state, kept small (``docs/scaling.md``, "Memory per state").

* The visited set holds each state's fingerprint as one integer
  (:func:`fingerprint_key`): 96 bits of a hash of the canonical form, so two
  distinct states of a run of ``N`` share one with probability about
  ``N²/2^97`` (SPIN's hash compaction reasoning), 6·10⁻¹⁴ at 10⁸ states.
* The states waiting in the frontier are pickles compressed with zlib, as
  one stream per chunk of states in the order they wait (:class:`Frontier`):
  a state resembles the states queued just before it (its siblings), and
  most of a state's bytes (class names, the design's function names in
  allocation records, the layout of the kernel's roots) are in every state.
* A trace is rebuilt from the path of actions (:class:`Lineage`): per
  expanded state the index of its parent and of its action, 8 bytes.
* :func:`resident_bytes` reads the process's resident memory, for
  ``--max-memory`` (:func:`parse_size`).
"""

from __future__ import annotations

import os
import re
import resource
import sys
import zlib
from array import array
from collections import deque
from typing import Any

from rmapcheck.scenario.ops import Op

__all__ = ["FINGERPRINT_BITS", "Frontier", "Lineage", "fingerprint_key", "parse_size", "resident_bytes",
           "set_bytes"]

#: width of a fingerprint (``world.fingerprint`` digests this many bits)
FINGERPRINT_BITS = 96


def fingerprint_key(fp: bytes) -> int:
    """The visited set's key for fingerprint ``fp``: an int takes 40 bytes, as 8 or 12 bytes do."""
    return int.from_bytes(fp, "little")


class Frontier:
    """The states waiting to be expanded, first in first out, compressed as a stream.

    Breadth-first search takes states out in the order it put them in, so
    they are compressed as one zlib stream per chunk of :attr:`CHUNK` states:
    each state is compressed against the states before it in its chunk (the
    siblings and cousins it resembles), and a chunk is decompressed at once
    when its first state is taken out. A state costs its share of the
    compressed chunk plus 14 bytes (its index, its depth and its length).
    """

    __slots__ = ("_chunks", "_compress", "_depths", "_indices", "_len", "_lengths", "_parts", "_ready", "packed")

    #: states per compressed chunk
    CHUNK = 256
    #: zlib's level: about as fast as pickling, a pickle of 2.3 KB becomes about 0.2 KB
    LEVEL = 3

    def __init__(self) -> None:
        #: closed chunks: (compressed bytes, indices, depths, lengths)
        self._chunks: deque[tuple[bytes, array, array, array]] = deque()
        self._compress: Any = None
        self._parts: list[bytes] = []
        self._indices = array("q")
        self._depths = array("H")
        self._lengths = array("I")
        #: decompressed states of the chunk being taken out: (state, index, depth)
        self._ready: deque[tuple[bytes, int, int]] = deque()
        self._len = 0
        #: compressed bytes of every chunk closed so far, and the 14 bytes per state
        self.packed = 0

    def __len__(self) -> int:
        return self._len

    def append(self, data: bytes, index: int, depth: int) -> None:
        """Put the pickled state ``data`` (``index`` in the lineage, at ``depth``) at the end."""
        if self._compress is None:
            self._compress = zlib.compressobj(self.LEVEL)
        self._parts.append(self._compress.compress(data))
        self._indices.append(index)
        self._depths.append(depth)
        self._lengths.append(len(data))
        self._len += 1
        if len(self._indices) >= self.CHUNK:
            self._close()

    def popleft(self) -> tuple[bytes, int, int]:
        """The first state: ``(pickled state, index, depth)``."""
        if not self._ready:
            if not self._chunks:
                self._close()
            packed, indices, depths, lengths = self._chunks.popleft()
            raw = zlib.decompress(packed)
            pos = 0
            for index, depth, n in zip(indices, depths, lengths):
                self._ready.append((raw[pos:pos + n], index, depth))
                pos += n
        self._len -= 1
        return self._ready.popleft()

    def _close(self) -> None:
        # The chunk being filled, compressed to its end, joins the closed ones.
        if self._compress is None:
            raise IndexError("popleft from an empty Frontier")
        self._parts.append(self._compress.flush())
        packed = b"".join(self._parts)
        n = len(self._indices)
        self.packed += len(packed) + n * (self._indices.itemsize + self._depths.itemsize + self._lengths.itemsize)
        self._chunks.append((packed, self._indices, self._depths, self._lengths))
        self._compress, self._parts = None, []
        self._indices, self._depths, self._lengths = array("q"), array("H"), array("I")


class Lineage:
    """How each stored state was reached: its parent's index and its action's.

    Index 0 is the initial state. :meth:`trace` follows the parents back,
    so a counterexample is the path of actions from the initial state.
    """

    __slots__ = ("_op_index", "_ops", "actions", "parents")

    def __init__(self) -> None:
        #: per state: the index of the state it was reached from (-1: none)
        self.parents = array("q", [-1])
        #: per state: the index in ``_ops`` of the action that reached it
        self.actions = array("I", [0])
        self._ops: list[Op | None] = [None]
        self._op_index: dict[Op, int] = {}

    def add(self, parent: int, op: Op) -> int:
        """Record a state reached from state ``parent`` by ``op``; its index."""
        i = self._op_index.get(op)
        if i is None:
            i = self._op_index[op] = len(self._ops)
            self._ops.append(op)
        self.parents.append(parent)
        self.actions.append(i)
        return len(self.parents) - 1

    def trace(self, index: int) -> list[Op]:
        """The actions from the initial state to state ``index``."""
        ops: list[Op] = []
        parents, actions, table = self.parents, self.actions, self._ops
        while parents[index] >= 0:
            ops.append(table[actions[index]])  # type: ignore[arg-type]
            index = parents[index]
        ops.reverse()
        return ops

    def nbytes(self) -> int:
        """Bytes held per state (the two arrays; the table of actions is per action, not per state)."""
        return (self.parents.buffer_info()[1] * self.parents.itemsize
                + self.actions.buffer_info()[1] * self.actions.itemsize)


def set_bytes(keys: set[int]) -> int:
    """Bytes a visited set of integer keys takes: the table and each key."""
    return sys.getsizeof(keys) + sum(map(sys.getsizeof, keys))


_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)i?[bB]?")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes in a size such as ``2G``, ``500M``, ``1.5g``, ``64MiB`` or ``1000000``.

    :raises ValueError: not a size, or not a positive one.
    """
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a size: {text!r} (a number with K, M, G or T, such as 2G or 500M)")
    size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if size <= 0:
        raise ValueError(f"not a positive size: {text!r}")
    return size


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """The resident memory of this process (``/proc/self/statm``; the peak where there is no ``/proc``)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
