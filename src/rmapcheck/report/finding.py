"""Findings as the kernel prints them: KASAN, kmemleak, WARN and BUG reports.

A finding raised in a kernel function names that function (the innermost of
its call chain) and prints the chain::

    BUG: KASAN: use-after-free in anon_vma_free: access to freed anon_vma#0
      call chain: anon_vma_free <- __put_anon_vma <- put_anon_vma <- remove_node_from_stable_tree <- ...
      object: anon_vma#0 (a)
      Allocated by: step 3 (write P0 A[0] 1: __anon_vma_prepare)
      Freed by: step 10 (munmap P1 A[0]: unlink_anon_vmas)
      Accessed by: step 11 (ksm_scan 1), at rmapcheck/model/rmap.py:171

A finding of the model's checks between steps says which check found it and
which invariant it violates, not a kernel function::

    kmemleak: unreferenced object anon_vma#1 (refcount -1)
      found by check_invariants after step 6 (munmap P0 A[0]): a check of the state between steps
      invariant: kmemleak: every allocated object is reachable
      object: anon_vma#1 (b)
      Allocated by: step 5 (write P0 A[0] 1: anon_vma_prepare)

Given the kernel the finding was raised in, the report ends with every holder
of a reference to its object (:mod:`rmapcheck.report.holders`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rmapcheck
from rmapcheck.model.findings import RmapFinding, UseAfterFree, kernel_chain
from rmapcheck.model.invariants import INVARIANTS
from rmapcheck.report.holders import Namer, format_holders, involved_objects
from rmapcheck.scenario.ops import Scenario

__all__ = ["finding_chain", "finding_place", "format_finding"]

_HEADS = {"use-after-free": "BUG: KASAN: use-after-free", "double-free": "BUG: KASAN: double-free",
          "leak": "kmemleak", "vm-bug-on": "kernel BUG", "vm-warn-on": "WARNING"}


def _site(site: tuple | None, steps: list[str]) -> str:
    if site is None:
        return "unknown"
    step, fn = site[0], site[1]
    what = steps[step - 1] if 0 < step <= len(steps) else "setup"
    return f"step {step} ({what}: {fn})"


def finding_chain(e: BaseException) -> tuple[str, ...]:
    """The kernel functions ``e`` was raised in, innermost first.

    A finding records them when it is made; a Python exception of the model
    (``model-error``) has them in its traceback.
    """
    if isinstance(e, RmapFinding):
        return e.chain
    frames = [(fs.tb_frame.f_code, fs.tb_frame.f_globals) for fs in _tracebacks(e)]
    return kernel_chain(reversed(frames))


def _tracebacks(e: BaseException) -> list[Any]:
    tb, out = e.__traceback__, []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


def finding_place(e: BaseException) -> str:
    """Where ``e`` happened, in a few words: ``in anon_vma_free``, ``found by check_invariants``."""
    if isinstance(e, RmapFinding) and e.detector:
        return f"found by {e.detector}"
    chain = finding_chain(e)
    return f"in {chain[0]}" if chain else f"in {getattr(e, 'function', type(e).__name__)}"


def _source(where: tuple[str, int] | None) -> str:
    # ", at rmapcheck/model/rmap.py:168": the innermost kernel frame's line,
    # a design file's by its own path.
    if where is None:
        return ""
    path = Path(where[0])
    package = Path(rmapcheck.__file__).resolve().parent
    if path.resolve().is_relative_to(package):
        path = path.resolve().relative_to(package.parent)
    return f", at {path}:{where[1]}"


def _object_lines(obj: Any, steps: list[str], name: Namer) -> list[str]:
    # The object with its allocation history, as KASAN's report has it.
    if obj is None or not hasattr(obj, "_alloc"):
        return []
    lines = [f"  object: {name(obj)}"]
    if obj._alloc is not None:
        lines.append(f"  Allocated by: {_site(obj._alloc, steps)}")
    if obj._free is not None:
        if not obj._live:
            lines.append(f"  Freed by: {_site(obj._free, steps)}")
        else:
            # The slot was freed and allocated again: a stale pointer to the
            # object freed then now reaches this one.
            freed = obj._free
            was = f", as {obj._cache.name}#{freed[2]}" if obj._cache is not None and len(freed) > 2 else ""
            lines.append(f"  Freed before by: {_site(freed, steps)}{was} (the slot was reused)")
    return lines


def format_finding(e: BaseException, steps: list[str], step: int, k: Any = None,
                   scenario: Scenario | None = None) -> str:
    """A multi-line report of finding ``e`` raised at ``step``.

    :param steps: the text of each step so far, so allocation and free sites
        can be named by their operation.
    :param k: the kernel the finding was raised in: the report then lists
        who holds references to the objects involved (:func:`~rmapcheck.report.holders.involved_objects`;
        ``None``: it does not).
    :param scenario: names pages by region in that list.
    """
    here = steps[step - 1] if 0 < step <= len(steps) else "setup"
    if not isinstance(e, RmapFinding):
        lines = [f"model error: {type(e).__name__}: {e}"]
        chain = finding_chain(e)
        if chain:
            lines.append(f"  call chain: {' <- '.join(chain)}")
        lines.append(f"  in step {step} ({here}): a bug of the model, not of the kernel")
        return "\n".join(lines)
    name = Namer({c: t.mm for c, t in k.tasks.items()} if k is not None else {}, scenario)
    head = _HEADS.get(e.property_name, e.property_name)
    if e.detector:
        lines = [f"{head}: {e.message}",
                 f"  found by {e.detector} after step {step} ({here}): a check of the state between "
                 f"steps, not a kernel access"]
        if e.invariant:
            words = INVARIANTS.get(e.invariant)
            lines.append(f"  invariant: {e.invariant}" + (f": {words}" if words else ""))
    else:
        lines = [f"{head} in {e.function}: {e.message}"]
        if e.chain:
            lines.append(f"  call chain: {' <- '.join(e.chain)}")
    lines += _object_lines(e.obj, steps, name)
    if not e.detector:
        what = "Accessed by" if isinstance(e, UseAfterFree) else "at"
        lines.append(f"  {what}: step {step} ({here}){_source(e.where)}")
    if k is not None:
        lines += [format_holders(k, o, name) for o in involved_objects(e)]
    return "\n".join(lines)
