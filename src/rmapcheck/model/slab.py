"""Slab caches with a KASAN-like shadow: ``mm/slub.c`` and ``mm/kasan/`` in miniature.

Every kernel object of the model (``anon_vma``, ``anon_vma_chain``,
``vm_area_struct``, ``mm_struct``, folios) comes from a :class:`kmem_cache`. The
cache records, for every object, which operation step and kernel function
allocated it and which freed it, so a finding can say "Allocated by / Freed by"
as KASAN does, and numbers its allocations: the object's name
(:meth:`SlabObject.kname`, ``anon_vma#3``: the cache's fourth allocation) stays
the same from its allocation to its free, and an allocation that reuses a
freed slot gets a new one.

Freed objects go to a LIFO freelist and are handed out again, as SLUB does. A
cache created with ``SLAB_TYPESAFE_BY_RCU`` (``anon_vma_cachep`` in
``anon_vma_init()``, mm/rmap.c) keeps the object's memory: a reused slot keeps
the field values of its previous life and the constructor
(``anon_vma_ctor()``) runs only on a fresh slot. A stale pointer to a reused
slot therefore sees the new object, as in the kernel; a pointer to a slot that
is free *now* is a use-after-free, reported by :func:`kasan_check`.
"""

from __future__ import annotations

import operator
from typing import Callable, Generic, TypeVar

from rmapcheck.model.findings import DoubleFree, UseAfterFree

__all__ = [
    "SLAB_TYPESAFE_BY_RCU",
    "FastPickle",
    "SlabObject",
    "kasan_check",
    "kmem_cache",
]

SLAB_TYPESAFE_BY_RCU = 0x00080000


class FastPickle:
    """Mixin: pickle a slotted object as the tuple of its slots.

    The model checker copies kernel states with :mod:`pickle`; a tuple state
    read by one ``operator.attrgetter`` and restored by one generated
    assignment is several times faster than pickle's default for
    ``__slots__`` (a dict of slot names per object). The checker's
    ``Snapshot`` puts a state back through the same two methods (or, in C,
    through the slots they name: ``slot_names`` on both functions), so every
    slotted kernel object derives from this class.
    """

    __slots__ = ()

    def __init_subclass__(cls, **kw: object) -> None:
        super().__init_subclass__(**kw)
        names: list[str] = []
        for c in reversed(cls.__mro__):
            for n in c.__dict__.get("__slots__", ()):
                if n not in ("__dict__", "__weakref__") and n not in names:
                    names.append(n)
        if not names:
            return
        get = operator.attrgetter(*names)
        if len(names) == 1:
            cls.__getstate__ = lambda self: (get(self),)  # type: ignore[method-assign]
        else:
            cls.__getstate__ = lambda self: get(self)  # type: ignore[method-assign]
        ns: dict[str, object] = {}
        exec("def __setstate__(self, st):\n    " + ", ".join(f"self.{n}" for n in names) + ", = st\n", ns)
        cls.__setstate__ = ns["__setstate__"]  # type: ignore[attr-defined]
        # what the two functions read and write, in order: the checker's
        # Snapshot in C reads and writes these slots directly while a class
        # keeps both functions (check/_snapshot.c)
        cls.__getstate__.slot_names = cls.__setstate__.slot_names = tuple(names)  # type: ignore[attr-defined]


class SlabObject(FastPickle):
    """Base of every slab-allocated kernel object.

    ``_slot`` is the object's stable number within its cache (its "address"),
    ``_live`` is False while the slot is free, ``_alloc`` and ``_free`` are
    ``(step, function, serial)`` of the last allocation and free, ``serial``
    numbering the cache's allocations from 0 (the free's is the serial of the
    allocation it ends).
    """

    __slots__ = ("_slot", "_live", "_alloc", "_free", "_cache")

    def __init__(self) -> None:
        self._slot = -1
        self._live = False
        self._alloc: tuple[int, str, int] | None = None
        self._free: tuple[int, str, int] | None = None
        self._cache: kmem_cache | None = None

    def kname(self) -> str:
        """The object's name in reports, such as ``anon_vma#3``: its cache and allocation serial.

        An object that no cache allocated is named by its slot (``?`` if none).
        """
        cache = self._cache.name if self._cache else type(self).__name__
        n = self._alloc[2] if self._alloc else self._slot
        return f"{cache}#{n if n >= 0 else '?'}"


T = TypeVar("T", bound=SlabObject)


class StepClock(FastPickle):
    """The current operation step, shared by all caches of one kernel."""

    __slots__ = ("step", "what")

    def __init__(self) -> None:
        self.step = 0
        self.what = ""


class kmem_cache(FastPickle, Generic[T]):
    """A slab cache (``struct kmem_cache``).

    :param name: the cache's name, as in ``/proc/slabinfo``.
    :param factory: builds a fresh, zeroed object.
    :param ctor: the constructor run on fresh slots only (``NULL`` if none).
    :param flags: ``SLAB_TYPESAFE_BY_RCU`` or 0.
    """

    __slots__ = ("name", "factory", "ctor", "flags", "objects", "freelist", "clock", "nr_live",
                 "next_slot", "nr_allocs")

    def __init__(
        self,
        name: str,
        factory: Callable[[], T],
        clock: StepClock,
        ctor: Callable[[T], None] | None = None,
        flags: int = 0,
    ) -> None:
        self.name = name
        self.factory = factory
        self.ctor = ctor
        self.flags = flags
        #: slot -> object: the allocated objects, and the freed ones a
        #: type-safe cache keeps
        self.objects: dict[int, T] = {}
        #: freed objects (type-safe cache) or freed slot numbers, reused LIFO
        self.freelist: list = []
        self.next_slot = 0
        self.clock = clock
        self.nr_live = 0
        #: allocations so far: the serial of the next one (history, not state)
        self.nr_allocs = 0

    def alloc(self, function: str) -> T:
        """``kmem_cache_alloc()``: a reused slot if one is free, else a fresh one."""
        if self.freelist:
            slot = self.freelist.pop()
            if self.flags & SLAB_TYPESAFE_BY_RCU:
                obj = slot  # type: ignore[assignment]
            else:
                # Without SLAB_TYPESAFE_BY_RCU the memory is not type-stable:
                # model it as fresh, zeroed memory in the same slot.
                obj = self.factory()
                obj._slot = slot  # type: ignore[assignment]
                if self.ctor is not None:
                    self.ctor(obj)
            self.objects[obj._slot] = obj
        else:
            obj = self.factory()
            obj._slot = self.next_slot
            self.next_slot += 1
            self.objects[obj._slot] = obj
            if self.ctor is not None:
                self.ctor(obj)
        obj._cache = self
        obj._live = True
        obj._alloc = (self.clock.step, function, self.nr_allocs)
        self.nr_allocs += 1
        self.nr_live += 1
        return obj

    def free(self, obj: T, function: str) -> None:
        """``kmem_cache_free()``; freeing a free object is a double free.

        A type-safe cache keeps the freed object (its memory) for reuse; any
        other cache keeps only the slot number, so a stale pointer still sees
        the freed object and KASAN reports it.
        """
        if not obj._live:
            raise DoubleFree(function, f"double-free of {obj.kname()}", obj)
        obj._live = False
        obj._free = (self.clock.step, function, obj._alloc[2] if obj._alloc else -1)
        if self.flags & SLAB_TYPESAFE_BY_RCU:
            self.freelist.append(obj)
        else:
            del self.objects[obj._slot]
            self.freelist.append(obj._slot)  # type: ignore[arg-type]
        self.nr_live -= 1

    def live(self) -> list[T]:
        """Every allocated object, in slot order."""
        return [o for o in self.objects.values() if o._live]


def kasan_check(obj: SlabObject | None, function: str) -> None:
    """Report an access to ``obj`` from ``function`` if the object is free.

    Mirrors the check KASAN's instrumentation makes on every load and store
    (``__asan_load8`` and friends, mm/kasan/generic.c). The finding names the
    kernel function of the call stack that made the access
    (:class:`~rmapcheck.model.findings.RmapFinding`), ``function`` where
    there is none.
    """
    if obj is not None and not obj._live:
        raise UseAfterFree(function, f"access to freed {obj.kname()}", obj)
