"""Properties by name: what the checker judges every state against.

``always`` properties must hold in every reachable state; each is violated by
one class of finding (:mod:`rmapcheck.model.findings`) that the model raises
at the site that detects it, or by a check of the state here. ``sometimes``
properties must hold in at least one reachable state; most are vacuity checks
(the exploration did reach KSM merges, child anon_vmas, frees...), and the
summary warns when one was never reached. A sometimes-property may be an
*event* instead, something an action did rather than a shape of the state
after it (:mod:`rmapcheck.model.events`); it holds once any transition had
it. Any sometimes-property can be *required* (``rmapcheck check --require
NAME``): an exhaustive exploration that never reaches it reports ``never
reached: NAME`` as a finding (exit 1). That is how a property of liveness
rather than safety is checked, such as a merge that must happen
(docs/history.md B18).

Limits: properties are judged on states between actions (and at the sites
inside actions that raise findings); a property of the middle of a kernel
function is only seen if that function raises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rmapcheck.model.findings import (
    DataCorruption, DoubleFree, InvariantViolation, KernelBug, KernelWarning, Leak, LockMisuse,
    MissedRmapWalk, RefcountUnderflow, RmapFinding, UseAfterFree,
)
from rmapcheck.model.events import ANON_MERGE_INTO_UNFAULTED
from rmapcheck.model.mm_types import ZERO_PAGE
from rmapcheck.scenario.execute import ModelRunner

__all__ = ["ALWAYS", "EVENTS", "FATAL", "SEVERITY", "Property", "SOMETIMES", "data_integrity", "property_of",
           "sometimes_property"]


@dataclass(frozen=True, slots=True)
class Property:
    """A named property: ``kind`` is ``always`` or ``sometimes``.

    :param check: a sometimes-property of the state: whether it holds in a state.
    :param event: a sometimes-property that is an event: the name a kernel
        function adds to ``Kernel.events`` when it happens.
    :param vacuity: the summary warns when the exploration never reached it
        (a sanity check of the bounds); otherwise only when it is required.
    """

    name: str
    kind: str
    doc: str
    check: Callable[[ModelRunner], bool] | None = None
    event: str = ""
    vacuity: bool = True


#: always-properties, each named by the finding class that violates it
ALWAYS = (
    Property(UseAfterFree.property_name, "always", "no access through a reference to a freed object (KASAN)"),
    Property(DoubleFree.property_name, "always", "no object is freed twice"),
    Property(Leak.property_name, "always", "every allocated object stays referenced until freed (kmemleak)"),
    Property(RefcountUnderflow.property_name, "always", "no reference count or counter below zero"),
    Property(KernelBug.property_name, "always", "no VM_BUG_ON/BUG_ON at a kernel site fires"),
    Property(KernelWarning.property_name, "always", "no VM_WARN_ON/WARN_ON_ONCE at a kernel site fires"),
    Property(LockMisuse.property_name, "always",
             "no release of a lock not held, no lock held on return to user space, no deadlock"),
    Property(MissedRmapWalk.property_name, "always",
             "an rmap walk reaches every mapping of its folio it promises (of a KSM folio, those its "
             "rmap_items cover) unless it stopped by its own rule (reclaim: folio_mapcount() found); a "
             "migration's remap restores every entry its unmap made"),
    Property(InvariantViolation.property_name, "always",
             "the invariants of the anon_vma hierarchy (docs/history.md §5) hold"),
    Property(DataCorruption.property_name, "always",
             "every process reads what the abstract memory says it wrote (COW, KSM, migration invisible)"),
    Property("model-error", "always", "the model itself does not fail (a Python exception in a kernel function)"),
)

#: properties from the most to the least severe, for ordering reports
SEVERITY = ("use-after-free", "double-free", "leak", "lock-misuse", "vm-bug-on", "missed-rmap-walk",
            "data-corruption", "counter-underflow", "invariant", "vm-warn-on", "model-error")

#: findings after which the kernel cannot go on (KASAN and BUG reports, deadlocks)
FATAL = ("use-after-free", "double-free", "vm-bug-on", "lock-misuse", "model-error")



def _child_anon_vma(r: ModelRunner) -> bool:
    return any(a.root is not a for a in r.k.anon_vma_cachep.live())


def _ksm_page(r: ModelRunner) -> bool:
    return any(f.ksm for f in r.k.page_alloc.live())


def _pinned_without_vma(r: ModelRunner) -> bool:
    # an anon_vma kept alive only by an external reference (KSM, migration)
    return any(not a.rb_root for a in r.k.anon_vma_cachep.live())


def _shared_page(r: ModelRunner) -> bool:
    return any(f._mapcount > 1 for f in r.k.page_alloc.live())


SOMETIMES = (
    Property("child-anon-vma", "sometimes", "a fork created a child anon_vma", _child_anon_vma),
    Property("shared-page", "sometimes", "a page is mapped by two processes", _shared_page),
    Property("ksm-page", "sometimes", "ksmd merged a page", _ksm_page),
    Property("anon-vma-held-without-vma", "sometimes",
             "an anon_vma outlives its VMAs, held by KSM or migration", _pinned_without_vma),
    Property(ANON_MERGE_INTO_UNFAULTED, "sometimes",
             "a merge extended an unfaulted VMA over a range with an anon_vma (mprotect, mremap; "
             "refused before v6.16, docs/history.md B18)", event=ANON_MERGE_INTO_UNFAULTED, vacuity=False),
)

#: the sometimes-properties that are events, by the event's name
EVENTS = {p.event: p.name for p in SOMETIMES if p.event}


def sometimes_property(name: str) -> Property:
    """The sometimes-property called ``name``.

    :raises KeyError: with the known names, if there is none.
    """
    for p in SOMETIMES:
        if p.name == name:
            return p
    raise KeyError(f"unknown sometimes-property {name!r} (known: {', '.join(p.name for p in SOMETIMES)})")


def property_of(e: BaseException) -> str:
    """The name of the property a finding violates."""
    if isinstance(e, RmapFinding):
        return e.property_name
    return "model-error"


def data_integrity(r: ModelRunner) -> None:
    """Every mapped page holds what its process last wrote there (abstract memory).

    :raises DataCorruption: naming the process, the page and both values.
    """
    for comm, t in r.k.tasks.items():
        mem = r.memory.get(comm, {})
        for vpn, pte in t.mm.pgtable.items():
            f = pte[0]
            if not hasattr(f, "content"):
                f = getattr(f, "folio", None)
                if f is None:
                    continue
            value = 0 if f is ZERO_PAGE else f.content
            want = mem.get(vpn, 0)
            if value != want:
                raise DataCorruption("data_integrity",
                                     f"{comm} would read {value} at page {vpn:#x}, but wrote {want}")


