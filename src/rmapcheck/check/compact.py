"""What an exhaustive search keeps per state, kept small (``docs/scaling.md``, "Memory per state").

* The visited set holds each state's fingerprint as one integer
  (:func:`fingerprint_key`): 96 bits of a hash of the canonical form, so two
  distinct states of a run of ``N`` share one with probability about
  ``N²/2^97`` (SPIN's hash compaction reasoning), 6·10⁻¹⁴ at 10⁸ states.
* The states waiting in the frontier are pickles compressed with zlib
  against a dictionary of the model's first states (:class:`StateCodec`):
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
from typing import Any

from rmapcheck.scenario.ops import Op

__all__ = ["FINGERPRINT_BITS", "Lineage", "StateCodec", "fingerprint_key", "parse_size", "resident_bytes",
           "set_bytes"]

#: width of a fingerprint (``world.fingerprint`` digests this many bits)
FINGERPRINT_BITS = 96


def fingerprint_key(fp: bytes) -> int:
    """The visited set's key for fingerprint ``fp``: an int takes 40 bytes, as 8 or 12 bytes do."""
    return int.from_bytes(fp, "little")


class StateCodec:
    """Compresses pickled states against a dictionary of the model's first states.

    :param sample: pickles of typical states (the initial state and its
        successors); the last 32 KiB of their concatenation is the zlib
        dictionary, so the same model always gives the same codec.
    """

    __slots__ = ("_compress", "_decompress")

    #: zlib's window: a dictionary longer than this is cut to its end
    WINDOW = 32 * 1024

    def __init__(self, sample: list[bytes]) -> None:
        zdict = b"".join(sample)[-self.WINDOW:]
        self._compress = zlib.compressobj(3, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, zdict)
        self._decompress = zlib.decompressobj(15, zdict)

    @classmethod
    def for_model(cls, m: Any, init: Any) -> StateCodec:
        """The codec of model ``m``: its dictionary is ``init`` and the states its actions lead to."""
        from rmapcheck.check.world import Snapshot

        sample = [m.dumps(init)]
        snap = Snapshot(init)
        for op in m.actions(init):
            out = m.apply(init, op, judge=False)
            if not out.fatal and not out.blocked:
                sample.append(m.dumps(init))
            snap.restore()
        return cls(sample)

    def pack(self, data: bytes) -> bytes:
        """``data`` (a pickled state) compressed."""
        c = self._compress.copy()
        return c.compress(data) + c.flush()

    def unpack(self, packed: bytes) -> bytes:
        """The pickled state that :meth:`pack` compressed."""
        return self._decompress.copy().decompress(packed)


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
