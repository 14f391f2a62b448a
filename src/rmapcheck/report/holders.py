"""Who holds a reference to a kernel object: the one walk that replay, finding reports and views share.

:func:`reference_holders` walks every object reachable from the kernel (the
processes, their mms, VMAs and page tables, the slab caches' live objects,
KSM's trees, rmap_items and stable nodes, the migrations and reclaim walks in
flight) and lists each live object that points to the target, with the field
that does: for an ``anon_vma`` its chains (which VMA of which process), its
children (``->parent``, and ``->root``: their pin on it), the VMAs whose
``->anon_vma`` it is, the folios whose ``->mapping`` it is, KSM's rmap_items,
a migration's pin and a reclaim walk's lock; for a folio the page table
entries (and migration entries) that map it, KSM's stable node (whose
``kpfn`` is its page frame number) and the migrations and walks that
isolated it. The walk is generic: a structure added to the model later is
covered as soon as it is reachable from the kernel.

Objects are named as the reports and maps name them
(:class:`Namer`: ``anon_vma#2 (c)``, ``VMA P0 A [0,4)``, ``page#5 (pfn 3)``),
so a holder can be found in the address map of the same step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Iterator

from rmapcheck.model.mm_types import anon_vma, folio, mm_struct
from rmapcheck.model.slab import SlabObject, StepClock, kmem_cache
from rmapcheck.scenario.ops import Scenario
from rmapcheck.scenario.render import ARENA_BASE_VPN, object_symbol, vma_namer

__all__ = ["Holder", "Namer", "find_object", "format_holders", "involved_objects", "reference_holders"]

# The slab shadow of every object: history, not references.
_SHADOW = frozenset({"_slot", "_live", "_alloc", "_free", "_cache"})
_LEAVES = (int, str, bool, float, bytes, type(None))
_NUMBERS = re.compile(r"([0-9]+)")


@dataclass(frozen=True)
class Holder:
    """One reference to the target: ``holder``'s ``field`` points to it.

    :param holder: the object holding the reference.
    :param name: ``holder`` as reports name it.
    :param field: the field (``anon_vma``, ``rb_root``, ``pgtable[A[0]]``).
    """

    holder: object
    name: str
    field: str


class Namer:
    """Names kernel objects as the reports and address maps of one state do.

    :param mms: the live processes' ``struct mm_struct *`` by name (VMA names).
    :param scenario: the regions, for naming pages by ``R[i]`` (``None``: by number).
    """

    def __init__(self, mms: dict[str, mm_struct], scenario: Scenario | None) -> None:
        self.scenario = scenario
        self._vma = vma_namer(mms, scenario) if scenario is not None else None

    def place(self, vpn: int) -> str:
        """A virtual page as the scenario names it (``A[0]``), else its number."""
        if self.scenario is not None:
            at = self.scenario.region_of(vpn - ARENA_BASE_VPN)
            if at is not None:
                return f"{at[0]}[{at[1]}]"
        return f"{vpn:#x}"

    def __call__(self, o: Any) -> str:
        """``o`` as reports name it."""
        t = type(o).__name__
        if isinstance(o, anon_vma):
            return f"{o.kname()} ({object_symbol(o)})"
        if isinstance(o, folio):
            return f"{o.kname()} (pfn {o.pfn()}, {object_symbol(o)} in the maps)"
        if t == "vm_area_struct":
            where = ""
            if self._vma is not None and o.vm_mm is not None:
                s, e = o.vm_start - ARENA_BASE_VPN, o.vm_end - ARENA_BASE_VPN
                where = f" {self._vma(o)} [{s},{e})"
            return f"VMA{where} ({o.kname()})"
        if t == "anon_vma_chain":
            return f"{o.kname()} of {self(o.vma)}" if o.vma is not None else o.kname()
        if t == "mm_struct":
            return f"mm of {o.owner or '?'} ({o.kname()})"
        if t == "task_struct":
            return f"task {o.comm}"
        if t == "ksm_rmap_item":
            owner = o.mm.owner if o.mm is not None else "?"
            return f"{o.kname()} of {owner} at {self.place(o.address)}"
        if t == "ksm_mm_slot":
            return f"{o.kname()} of {o.mm.owner if o.mm is not None else '?'}"
        if t == "ksm_state":
            return "KSM"
        if t == "MigrationState":
            return f"the migration of {self(o.src)} (phase {o.phase})"
        if t == "ReclaimWalk":
            return f"the reclaim walk of {self(o.folio)} (phase {o.phase})"
        if t == "Kernel":
            return "the kernel"
        return o.kname() if isinstance(o, SlabObject) else t


def _fields(o: Any) -> Iterator[tuple[str, Any]]:
    # The named fields of a kernel object (its slots or attributes), shadow apart.
    if hasattr(o, "__slots__"):
        for c in type(o).__mro__:
            for n in c.__dict__.get("__slots__", ()):
                if n not in _SHADOW and hasattr(o, n):
                    yield n, getattr(o, n)
    if hasattr(o, "__dict__"):
        yield from vars(o).items()


def _walk(k: Any) -> Iterator[Any]:
    # Every object reachable from the kernel once (slab caches: their live
    # objects; the design's table, the clock, code and the findings recorded
    # in k.warnings are not walked).
    seen: set[int] = set()
    todo: list[Any] = [k]
    while todo:
        o = todo.pop()
        if isinstance(o, _LEAVES) or id(o) in seen or callable(o) or \
                isinstance(o, (SimpleNamespace, StepClock, BaseException)):
            continue
        seen.add(id(o))
        if isinstance(o, (list, tuple, set, frozenset)):
            todo.extend(o)
            continue
        if isinstance(o, dict):
            todo.extend(o)
            todo.extend(o.values())
            continue
        if isinstance(o, kmem_cache):
            todo.extend(o.objects.values())
            continue
        yield o
        todo.extend(v for _n, v in _fields(o))


def _refers(v: Any, target: Any, path: str, place: Callable[[int], str]) -> Iterator[str]:
    # The paths within field value v that point to target.
    if v is target:
        yield path
    elif isinstance(v, (list, tuple, set, frozenset)):
        for x in v:
            if x is target or isinstance(x, (list, tuple, dict)):
                yield from _refers(x, target, path, place)
            elif getattr(x, "folio", None) is target and type(x).__name__ == "migration_entry":
                yield f"{path} (migration entry)"
    elif isinstance(v, dict):
        for key, x in v.items():
            if key is target:
                yield f"{path} (key)"
            where = f"{path}[{place(key)}]" if path == "pgtable" and isinstance(key, int) else path
            yield from _refers(x, target, where, place)
            if getattr(x, "folio", None) is target and type(x).__name__ == "migration_entry":
                yield f"{where} (migration entry)"


def reference_holders(k: Any, target: Any, name: Namer) -> list[Holder]:
    """Every live object of kernel ``k`` that points to ``target``, with the field that does.

    A freed object is no holder (its memory holds nothing); a page is also
    held by a field named ``kpfn`` that holds its page frame number (KSM's
    stable nodes). Holders are sorted by name, numbers in numeric order.
    """
    out: list[Holder] = []
    pfn = target.pfn() if isinstance(target, folio) else None
    for o in _walk(k):
        if o is target or (isinstance(o, SlabObject) and not o._live) or type(o).__name__ == "migration_entry":
            continue  # a migration entry is named by the page table that holds it
        for field, v in _fields(o):
            for path in dict.fromkeys(_refers(v, target, field, name.place)):
                out.append(Holder(o, name(o), path))
            if field == "kpfn" and pfn is not None and v == pfn:
                out.append(Holder(o, name(o), "kpfn"))
    return sorted(out, key=lambda h: [(int(t) if t.isdigit() else 0, t) for t in _NUMBERS.split(h.name + " " + h.field)])


def involved_objects(e: BaseException, most: int = 4) -> list[Any]:
    """The objects a finding is about: its object, then the anon_vmas and folios its kernel functions worked on.

    The latter are read from the variables of the frames the finding was
    raised through (its traceback), innermost first: for a use-after-free of
    a root, the child anon_vma whose ``->root`` led there and the page whose
    walk started it. At most ``most`` objects, the zero page never.
    """
    out: list[Any] = []
    obj = getattr(e, "obj", None)
    if isinstance(obj, SlabObject):
        out.append(obj)
    frames = []
    tb = e.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for v in list(frame.f_locals.values()):
            if isinstance(v, (anon_vma, folio)) and v._cache is not None and all(v is not o for o in out):
                out.append(v)
    return out[:most]


def find_object(k: Any, cache: str, serial: int) -> Any:
    """The object of slab cache ``cache`` with allocation serial ``serial`` reachable from ``k`` (``None`` if none).

    A freed object is found while something still points to it (or while a
    ``SLAB_TYPESAFE_BY_RCU`` cache keeps its memory, not yet reused).
    """
    for o in _walk(k):
        if isinstance(o, SlabObject) and o._cache is not None and o._cache.name == cache \
                and o._alloc is not None and o._alloc[2] == serial:
            return o
    return None


def format_holders(k: Any, target: Any, name: Namer, indent: str = "  ") -> str:
    """The holders of ``target`` as lines: a heading with its state, then one line per holder."""
    state = "" if not isinstance(target, SlabObject) or target._live else ", freed"
    counts = ""
    if isinstance(target, anon_vma):
        counts = (f": refcount {target.refcount}, num_children {target.num_children}, "
                  f"num_active_vmas {target.num_active_vmas}")
    elif isinstance(target, folio):
        counts = f": mapcount {target._mapcount}, refcount {target._refcount}"
    holders = reference_holders(k, target, name)
    lines = [f"{indent}holders of {name(target)}{state}{counts}"
             + ("" if holders else " (nothing points to it)")]
    lines += [f"{indent}  {h.name} ->{h.field}" for h in holders]
    return "\n".join(lines)
