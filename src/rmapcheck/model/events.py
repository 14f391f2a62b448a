"""What the kernel did in the last action, for the checker's sometimes-properties that are events.

Most sometimes-properties are judged on a state (a child anon_vma exists, a
page is shared). Some are about what happened: a merge that the state
after it cannot tell from a VMA mapped whole (docs/history.md B18: a faulted
range merged into an unfaulted neighbour leaves one VMA with an anon_vma, as
one ``mmap`` and one fault would). The checker's model wraps the design's
kernel functions with :data:`EVENTS_LAYER`, whose wrappers add the event's
name to ``Kernel.events`` when it happens; the checker clears the set before
each action and reads it after, so an event counts on every transition, to a
new state or to one seen before. The set is not part of the state
(``rmapcheck.check.world.EXCLUDED_FIELDS``).

The wrappers watch the functions' interfaces only (a ``vma_merge_struct`` in,
the merged VMA out), so they hold for a design that replaces the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from rmapcheck.model.kernel import Layer

if TYPE_CHECKING:
    from rmapcheck.model.kernel import Kernel
    from rmapcheck.model.vma import vma_merge_struct

__all__ = ["ANON_MERGE_INTO_UNFAULTED", "EVENTS_LAYER"]

#: a merge extended an unfaulted VMA (no anon_vma) over a range that has one
ANON_MERGE_INTO_UNFAULTED = "anon-merge-into-unfaulted"


def _wrap_merge(inner: Callable[..., Any]) -> Callable[..., Any]:
    def _merge_event(k: Kernel, vmg: vma_merge_struct) -> Any:
        # The range merged has an anon_vma (the VMA whose range it is, or
        # the VMA mremap() copies from); which neighbours have none.
        src = vmg.copied_from
        faulted = vmg.anon_vma is not None or (src is not None and src.anon_vma is not None)
        unfaulted = [v for v in (vmg.prev, vmg.next) if v is not None and v.anon_vma is None] if faulted else []
        target = inner(k, vmg)
        if target is not None and any(v is target for v in unfaulted):
            k.events.add(ANON_MERGE_INTO_UNFAULTED)
        return target
    return _merge_event


#: the checker's observation of the design's merges (not part of any design)
EVENTS_LAYER = Layer("events", {
    "vma_merge_existing_range": _wrap_merge,
    "vma_merge_new_range": _wrap_merge,
}, "the checker's event sometimes-properties: a faulted range merged into an unfaulted VMA")
