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
    ├── InvariantViolation           a structural invariant of the anon_vma hierarchy (docs/history.md §5)
    └── DataCorruption               a process reads what it never wrote

    KernelError                      a system call failed with an errno (not a finding)
    SegmentationFault                a user access faulted with SIGSEGV (not a finding)

Findings are raised as exceptions at the site that detects them, so the step
that triggered them is known; a checker catches them by class.

Where a finding happens
-----------------------

A finding records the kernel call chain it was raised in, innermost first
(``RmapFinding.chain``: ``anon_vma_free``, ``__put_anon_vma``,
``put_anon_vma``, ``remove_node_from_stable_tree``, ``ksm_do_scan``, ...),
read from the Python stack when the finding is created (only then: nothing is
recorded on the way there) and ``RmapFinding.function`` is its first entry,
the kernel function where the bad access happens. The stack is read up to the
first frame of the model's own machinery outside the kernel (the scenario
runner, the checker, the commands). Which frames are kernel functions, and
under which name (:func:`kernel_function_name`):

- frames of ``rmapcheck.model`` and ``rmapcheck.designs`` modules, and of any
  module that put a function into a kernel's ``ops`` table (a design loaded
  from a file, a test's design); not ``findings`` and ``slab`` (KASAN's
  shadow), nor ``kthreads`` (the checker's scheduler of kernel threads);
- a function of the project is the kernel function its docstring (or, for a
  private helper, the comment that opens its body) cites: its own name when
  it cites it (``_free_stable_node``, "free_stable_node()", is
  ``free_stable_node``), else the function cited first in its first sentence
  ("The second half of ``folio_get_anon_vma()``" is ``folio_get_anon_vma``);
  one that cites none is model machinery and is left out (``check_rmap_walk``,
  ``page_table_mappings``), unless a kernel's ``ops`` table has it under a name;
- a function of another module (a user's design) is the name its kernel's
  ``ops`` table gives it, else its own name if that is public.

A finding created inside the model's checks between steps
(:mod:`rmapcheck.model.invariants`, the checker's data-integrity check) is
not a kernel access: its chain is empty and ``RmapFinding.detector`` names the
check (``check_invariants``), ``RmapFinding.invariant`` the invariant. A
finding raised by a model helper that checks a kernel function which just
returned (``check_rmap_walk`` after ``try_to_migrate()``) heads its chain with
the function it names.
"""

from __future__ import annotations

import errno as _errno
import linecache
import re
import sys
from types import CodeType, FrameType
from typing import Any, Callable, Iterable

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
    "kernel_chain",
    "kernel_function_name",
    "register_kernel_functions",
]


class RmapFinding(Exception):
    """Base class of every finding.

    :param function: the kernel function the raising site names; replaced by
        the innermost kernel function of the call chain when there is one.
    :param message: one line, in the kernel's words where it has some.
    :param obj: the object the finding is about; by default the kernel object
        of the raising function's variables that the message names first
        (``anon_vma#3``, ``page 5``), ``None`` if none.
    :ivar chain: the kernel functions of the call stack, innermost first
        (empty for a finding of a check between steps).
    :ivar where: ``(file, line)`` of the innermost kernel frame, or ``None``.
    :ivar detector: the model's check that found it (``check_invariants``),
        ``""`` for a finding raised in a kernel function.
    :ivar invariant: the invariant a check between steps found violated.
    :ivar site: ``function`` as the raising site named it.
    """

    property_name = "finding"

    def __init__(self, function: str, message: str, obj: object = None) -> None:
        frame = sys._getframe(1)
        chain, where, detector, invariant = _capture(frame, function)
        if obj is None:
            obj = _named_object(frame, message)
        self.site = function
        self.chain: tuple[str, ...] = chain
        self.where = where
        self.detector = detector
        self.invariant = invariant
        self.function = chain[0] if chain else (detector or function)
        self.message = message
        self.obj = obj
        super().__init__(f"{self.function}: {message}")


class UseAfterFree(RmapFinding):
    """An access through a reference to a freed object (KASAN use-after-free)."""

    property_name = "use-after-free"


class DoubleFree(UseAfterFree):
    """``kmem_cache_free()`` of an object that is already free."""

    property_name = "double-free"


class Leak(RmapFinding):
    """An object nothing references any more that was never freed (kmemleak)."""

    property_name = "leak"


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


# --- the kernel call chain of a finding ---------------------------------------------

#: module prefixes whose functions are kernel functions
_KERNEL_PACKAGES = ("rmapcheck.model.", "rmapcheck.designs.")
#: modules of the kernel packages that are the model's machinery, not the kernel
_MACHINERY = frozenset({"rmapcheck.model.findings", "rmapcheck.model.slab", "rmapcheck.model.kthreads",
                        "rmapcheck.model.events"})
#: modules of the model's checks between steps: a finding made there is no kernel access
_DETECTORS = frozenset({"rmapcheck.model.invariants", "rmapcheck.check.properties"})
#: modules outside the project that gave a kernel an ``ops`` entry (a design file)
_DESIGN_MODULES: set[str] = set()
#: code object -> the ``ops`` name it was installed under
_OPS_NAMES: dict[CodeType, str] = {}
# code object -> how _capture treats its frames (see _classify)
_KINDS: dict[CodeType, Any] = {}
_SKIP, _STOP, _DETECT = object(), object(), object()

_CITE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\(")
_SENTENCE = re.compile(r"\.(?:\s|$)")


def register_kernel_functions(ops: dict[str, Callable[..., Any]]) -> None:
    """Make the functions of a kernel's ``ops`` table known by their names there.

    :class:`~rmapcheck.model.kernel.Kernel` calls it with its design's table,
    so a design loaded from a file names its functions in call chains.
    """
    added = False
    for name, fn in ops.items():
        fn = getattr(fn, "func", fn)  # functools.partial
        code = getattr(fn, "__code__", None)
        if code is None or code in _OPS_NAMES:
            continue
        _OPS_NAMES[code] = name
        mod = getattr(fn, "__module__", None) or ""
        if not mod.startswith("rmapcheck."):
            _DESIGN_MODULES.add(mod)
        added = True
    if added:
        _KINDS.clear()


def _doc_text(code: CodeType, module_globals: dict[str, Any]) -> str:
    # The docstring, else the comment block that opens the body (private
    # helpers carry "# kernel_function(): ..." comments).
    fn = module_globals.get(code.co_name)
    doc = fn.__doc__ if getattr(fn, "__code__", None) is code else (
        code.co_consts[0] if code.co_consts and isinstance(code.co_consts[0], str) else None)
    if doc:
        return doc.strip()
    body = [ln for _s, _e, ln in code.co_lines() if ln is not None and ln > code.co_firstlineno]
    if not body:
        return ""
    lines: list[str] = []
    n = min(body) - 1
    while n > code.co_firstlineno:
        text = linecache.getline(code.co_filename, n).strip()
        if not text.startswith("#"):
            break
        lines.insert(0, text.lstrip("#").strip())
        n -= 1
    return " ".join(lines)


def kernel_function_name(code: CodeType, module: str, module_globals: dict[str, Any]) -> str | None:
    """The kernel function a frame of ``code`` in ``module`` stands for (``None``: not a kernel function).

    See the module docstring for the rules.
    """
    name = code.co_name
    if name.startswith("<"):
        return None
    if module.startswith("rmapcheck."):
        text = _doc_text(code, module_globals)
        cited = _CITE.findall(text)
        own = name.lstrip("_") if name.startswith("_") and not name.startswith("__") else name
        if own in cited:
            return own
        first = _CITE.findall(_SENTENCE.split(text, 1)[0])
        if first:
            return first[0]
        return _OPS_NAMES.get(code)
    if code in _OPS_NAMES:
        return _OPS_NAMES[code]
    return None if name.startswith("_") else name


def _classify(code: CodeType, module_globals: dict[str, Any]) -> Any:
    # _STOP (the runner, the checker), _DETECT (a check between steps),
    # _SKIP (no kernel function) or the kernel function's name.
    kind = _KINDS.get(code)
    if kind is None:
        module = module_globals.get("__name__", "") or ""
        if module in _DETECTORS:
            kind = _DETECT
        elif module in _MACHINERY:
            kind = _SKIP
        elif module.startswith(_KERNEL_PACKAGES) or module in _DESIGN_MODULES:
            kind = kernel_function_name(code, module, module_globals) or _SKIP
        elif module.startswith("rmapcheck."):
            kind = _STOP
        else:
            kind = _SKIP  # the standard library, a test calling the kernel
        _KINDS[code] = kind
    return kind


def _capture(frame: FrameType | None, site: str) -> tuple[tuple[str, ...], tuple[str, int] | None, str, str]:
    # (chain, where, detector, invariant) of a finding created in ``frame``.
    names: list[str] = []
    where: tuple[str, int] | None = None
    detector = invariant = ""
    raiser: Any = None
    while frame is not None:
        code = frame.f_code
        kind = _classify(code, frame.f_globals)
        if kind is _STOP:
            break
        if kind is _DETECT:
            detector = code.co_name
            if names and not invariant:
                invariant = names[0]  # a kernel hook the check called (ksm_invariants)
            names.clear()
            where = None
        elif kind is not _SKIP:
            if not names:
                where = (code.co_filename, frame.f_lineno)
            if not names or names[-1] != kind:
                names.append(kind)
        if raiser is None and frame.f_globals.get("__name__") not in _MACHINERY:
            raiser = kind
        frame = frame.f_back
    if not detector and raiser is _SKIP and site not in names and site.isidentifier():
        # A model helper checking a kernel function that has returned
        # (check_rmap_walk after the walk): that function heads the chain.
        names.insert(0, site)
    return tuple(names), where, detector, invariant


def _named_object(frame: FrameType | None, message: str) -> object:
    # The slab object among the raising frame's variables that ``message``
    # names first: by its report name (anon_vma#3) or, a page, by its frame
    # number ("page 5").
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    if frame is None:
        return None
    best: tuple[int, object] | None = None
    for v in list(frame.f_locals.values()):
        if not hasattr(v, "_alloc") or not hasattr(v, "kname"):
            continue
        names = [v.kname()]
        if hasattr(v, "pfn"):
            names.append(f"page {v.pfn()}")
        for name in names:
            for m in re.finditer(re.escape(name) + r"(?![0-9])", message):
                if best is None or m.start() < best[0]:
                    best = (m.start(), v)
                break
    return best[1] if best is not None else None


def kernel_chain(frames: Iterable[tuple[CodeType, dict[str, Any]]]) -> tuple[str, ...]:
    """The kernel functions of ``(code, globals)`` frames given innermost first.

    For a Python exception of the model (``model-error``), whose traceback
    gives the frames.
    """
    names: list[str] = []
    for code, g in frames:
        kind = _classify(code, g)
        if kind is _STOP or kind is _DETECT:
            break
        if kind is not _SKIP and (not names or names[-1] != kind):
            names.append(kind)
    return tuple(names)
