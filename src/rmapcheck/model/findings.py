"""Findings: what the model reports when the kernel it runs goes wrong.

The taxonomy, as a tree::

    RmapFinding                      a property of the kernel state was violated
    ├── UseAfterFree                 access through a stale reference (KASAN)
    │   └── DoubleFree               kmem_cache_free() of a freed object
    ├── Leak                         unreferenced object never freed (kmemleak)
    ├── RefcountUnderflow            a counter went below zero
    ├── KernelBug                    VM_BUG_ON() / BUG_ON() at a kernel site
    ├── KernelWarning                VM_WARN_ON() / WARN_ON_ONCE() at a kernel site
    ├── LockMisuse                   unlock of a lock not held, wrong root, bad order
    │   └── Deadlock                 a lock taken that is held already
    ├── MissedRmapWalk               an rmap walk did not visit a mapping
    ├── InvariantViolation           a structural invariant of kernel-behaviour.md
    └── DataCorruption               a process reads what it never wrote

    KernelError                      a system call failed with an errno (not a finding)
    SegmentationFault                a user access faulted with SIGSEGV (not a finding)

Findings are raised as exceptions at the site that detects them, so the step
that triggered them is known; a checker catches them by class.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "DataCorruption",
    "Deadlock",
    "DoubleFree",
    "InvariantViolation",
    "KernelBug",
    "KernelError",
    "KernelWarning",
    "Leak",
    "LockMisuse",
    "MissedRmapWalk",
    "RefcountUnderflow",
    "RmapFinding",
    "SegmentationFault",
    "UseAfterFree",
]


class RmapFinding(Exception):
    """Base class of every finding.

    :param function: the kernel function in which the finding was detected.
    :param message: one line, in the kernel's words where it has some.
    """

    property_name = "finding"

    def __init__(self, function: str, message: str) -> None:
        super().__init__(f"{function}: {message}")
        self.function = function
        self.message = message


class UseAfterFree(RmapFinding):
    """An access through a reference to a freed object (KASAN use-after-free)."""

    property_name = "use-after-free"

    def __init__(self, function: str, message: str, obj: object = None) -> None:
        super().__init__(function, message)
        self.obj = obj
        #: the kernel function that called ``function`` ("" if the same)
        self.caller = ""


class DoubleFree(UseAfterFree):
    """``kmem_cache_free()`` of an object that is already free."""

    property_name = "double-free"


class Leak(RmapFinding):
    """An object nothing references any more that was never freed (kmemleak)."""

    property_name = "leak"

    def __init__(self, function: str, message: str, obj: object = None) -> None:
        super().__init__(function, message)
        self.obj = obj


class RefcountUnderflow(RmapFinding):
    """A reference count or counter went below zero."""

    property_name = "counter-underflow"


class KernelBug(RmapFinding):
    """A ``VM_BUG_ON()`` or ``BUG_ON()`` at a kernel site fired."""

    property_name = "vm-bug-on"


class KernelWarning(RmapFinding):
    """A ``VM_WARN_ON()`` or ``WARN_ON_ONCE()`` at a kernel site fired."""

    property_name = "vm-warn-on"


class LockMisuse(RmapFinding):
    """A lock released that is not held, a different root unlocked, or order broken.

    :param obj: the object whose lock was misused (``None`` if not known).
    """

    property_name = "lock-misuse"

    def __init__(self, function: str, message: str, obj: object = None) -> None:
        super().__init__(function, message)
        self.obj = obj


class Deadlock(LockMisuse):
    """A lock taken that is held already: the model runs one thread at a time, so nothing releases it.

    :param lock: the object whose lock is held: a ``struct anon_vma *`` for
        its root's rwsem, a ``struct folio *`` for ``PG_locked`` (``None``
        for another lock). When a preempted kernel thread of the model checker
        holds it, the operation is not a deadlock but a task that would sleep
        until the thread runs on; the checker then does not start it.
    """

    def __init__(self, function: str, message: str, lock: object = None) -> None:
        super().__init__(function, message, lock)
        self.lock = lock


class MissedRmapWalk(RmapFinding):
    """An rmap walk did not visit a VMA that maps the folio."""

    property_name = "missed-rmap-walk"


class InvariantViolation(RmapFinding):
    """A structural invariant of the anon_vma hierarchy does not hold."""

    property_name = "invariant"


class DataCorruption(RmapFinding):
    """A process reads a value that the abstract memory model says it cannot."""

    property_name = "data-corruption"


class KernelError(Exception):
    """A system call failed; ``errno`` is the kernel's error number name.

    Not a finding: the kernel refusing an operation is correct behaviour that the
    live kernel shows too.
    """

    def __init__(self, errno: int, function: str, why: str = "") -> None:
        self.errno = errno
        self.function = function
        self.why = why
        name = _errno.errorcode.get(errno, str(errno))
        super().__init__(f"{function}: {name}" + (f" ({why})" if why else ""))

    @property
    def name(self) -> str:
        """The errno's symbolic name, such as ``ENOMEM``."""
        return _errno.errorcode.get(self.errno, str(self.errno))


class SegmentationFault(Exception):
    """A user access that the kernel answers with ``SIGSEGV``."""

    def __init__(self, function: str, why: str) -> None:
        super().__init__(f"{function}: SIGSEGV ({why})")
        self.function = function
        self.why = why
