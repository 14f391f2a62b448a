"""Findings as the kernel prints them: KASAN, kmemleak, WARN and BUG reports."""

from __future__ import annotations

from rmapcheck.model.findings import Leak, LockMisuse, RmapFinding, UseAfterFree

__all__ = ["format_finding"]


def _site(site: tuple[int, str] | None, steps: list[str]) -> str:
    if site is None:
        return "unknown"
    step, fn = site
    what = steps[step - 1] if 0 < step <= len(steps) else "setup"
    return f"step {step} ({what}: {fn})"


def format_finding(e: RmapFinding, steps: list[str], step: int) -> str:
    """A multi-line report of finding ``e`` raised at ``step``.

    :param steps: the text of each step so far, so allocation and free sites
        can be named by their operation.
    """
    here = steps[step - 1] if 0 < step <= len(steps) else "setup"
    if isinstance(e, UseAfterFree):
        obj = e.obj
        kind = "double-free" if e.property_name == "double-free" else "use-after-free"
        lines = [f"BUG: KASAN: {kind} in {e.function}"]
        if obj is not None:
            lines.append(f"  object: {obj.kname()}")
            lines.append(f"  Allocated by: {_site(obj._alloc, steps)}")
            lines.append(f"  Freed by: {_site(obj._free, steps)}")
        via = f"{e.caller} -> {e.function}" if getattr(e, "caller", "") else e.function
        lines.append(f"  Accessed by: step {step} ({here}: {via})")
        return "\n".join(lines)
    if isinstance(e, Leak):
        lines = [f"kmemleak: {e.message}"]
        if e.obj is not None:
            lines.append(f"  Allocated by: {_site(e.obj._alloc, steps)}")  # type: ignore[attr-defined]
        lines.append(f"  detected after step {step} ({here})")
        return "\n".join(lines)
    if isinstance(e, LockMisuse) and e.obj is not None and hasattr(e.obj, "_alloc"):
        # The object's last two lives: a slot freed and allocated again
        # under a lock holder is how a lock ends up on another object.
        obj = e.obj
        lines = [f"{e.property_name} in {e.function}: {e.message}", f"  object: {obj.kname()}"]
        lines.append(f"  Allocated by: {_site(obj._alloc, steps)}")  # type: ignore[attr-defined]
        if obj._free is not None:  # type: ignore[attr-defined]
            freed = "Freed by" if not obj._live else "Freed before by"  # type: ignore[attr-defined]
            lines.append(f"  {freed}: {_site(obj._free, steps)}")  # type: ignore[attr-defined]
        lines.append(f"  at step {step} ({here})")
        return "\n".join(lines)
    head = {"vm-bug-on": "kernel BUG", "vm-warn-on": "WARNING"}.get(e.property_name, e.property_name)
    return f"{head} in {e.function}: {e.message}\n  at step {step} ({here})"
