"""The kernel state of the model, and the design that decides which functions run.

A :class:`Kernel` owns the slab caches (``mm_cachep``, ``vm_area_cachep``,
``anon_vma_cachep``, ``anon_vma_chain_cachep``, and the page allocator as a
cache of folios), the processes, and ``ops``: the table of replaceable kernel
functions of its design. Kernel functions are module-level functions taking the
kernel as their first argument; where a design may replace a callee, the call
goes through ``k.ops`` (``k.ops.anon_vma_clone(k, dst, src)``), so a design
module is a handful of replacement functions, as a patch is.

The table is built in two stages (:func:`resolve_ops`): the plain kernel
functions, with a design's replacements, and then the layers
(:class:`Layer`): wrappers that a subsystem puts around functions of another
(KSM's zero-page accounting around ``do_wp_page``), applied in order over
whatever function the first stage left there. Replacing a wrapped function
therefore keeps the wrapper.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from rmapcheck.model.findings import register_kernel_functions
from rmapcheck.model.mm_types import anon_vma, anon_vma_chain, folio, mm_struct, task_struct, vm_area_struct
from rmapcheck.model.slab import SLAB_TYPESAFE_BY_RCU, StepClock, kmem_cache

__all__ = ["ALLOC_SITES", "FailAt", "Kernel", "Layer", "resolve_ops"]


class Layer:
    """Wrappers around kernel functions, applied after a design's replacements.

    A subsystem that adds work to functions of another (KSM's
    ``ksm_might_unmap_zero_page()`` in ``zap_pte_range()`` and
    ``wp_page_copy()``, in-flight migrations' references in the invariant
    hooks) is a layer rather than a replacement: it wraps whatever function
    the design has under that name, the design's own replacement included.

    :param name: what the layer is, for listings (``"ksm"``).
    :param wraps: kernel function name → ``wrap(inner)``, which returns the
        function the kernel calls under that name (it calls ``inner``).
    :param doc: one line saying what the layer adds.
    """

    __slots__ = ("name", "wraps", "doc")

    def __init__(self, name: str, wraps: Mapping[str, Callable[[Callable[..., Any]], Callable[..., Any]]],
                 doc: str = "") -> None:
        self.name = name
        self.wraps = dict(wraps)
        self.doc = doc

    def __repr__(self) -> str:
        return f"Layer({self.name!r}: {', '.join(self.wraps)})"


def resolve_ops(functions: Mapping[str, Callable[..., Any]], layers: Iterable[Layer] = (),
                outer: Mapping[str, Callable[..., Any]] | None = None) -> dict[str, Callable[..., Any]]:
    """The table a kernel calls: ``functions`` wrapped by each layer in order, then ``outer``.

    :param functions: the plain kernel functions by name, replacements applied.
    :param layers: applied first to last; each wraps the function the previous
        stage left under each of its names.
    :param outer: functions that replace the wrapped ones outright (a design
        that means to replace a layer's work too).
    :raises KeyError: a layer wraps a name ``functions`` does not have.
    """
    table = dict(functions)
    for layer in layers:
        for name, wrap in layer.wraps.items():
            table[name] = wrap(table[name])
    if outer:
        table.update(outer)
    return table


#: the allocation sites of the model: the ``site`` of every
#: :meth:`Kernel.should_fail` call (the anon_vma and chain allocations, VMAs,
#: folios, the maple tree preallocation, memory accounting, KSM's rmap_items,
#: stable nodes and mm slots, and the migration target)
ALLOC_SITES = ("anon_vma_alloc", "anon_vma_chain_alloc", "vm_area_alloc", "vm_area_dup", "vma_alloc_folio",
               "vma_iter_prealloc", "security_vm_enough_memory_mm", "alloc_rmap_item", "alloc_stable_node",
               "mm_slot_alloc", "alloc_migration_target")


class FailAt(NamedTuple):
    """Which attempts of one allocation site fail within one operation.

    :param attempt: the first attempt that fails, counted from 1 within the
        operation.
    :param persistent: every later attempt fails too (memory stays short);
        otherwise only ``attempt`` does, and a retry succeeds.
    """

    attempt: int = 1
    persistent: bool = False


def anon_vma_ctor(av: anon_vma) -> None:
    """``anon_vma_ctor()`` (mm/rmap.c, v6.18): runs on fresh slab slots only.

    Initialises the rwsem and a zero refcount; a reused slot keeps whatever its
    previous life left (``SLAB_TYPESAFE_BY_RCU``).
    """
    av.rwsem_writer = False
    av.rwsem_readers = 0
    av.refcount = 0
    av.rb_root = []


class Kernel:
    """One kernel instance: caches, processes and the design's function table.

    :param ops: the design's kernel functions by name (see
        :func:`rmapcheck.designs.get_design`).
    :param config: ``CONFIG_*`` switches and sysctls of the design, such as
        ``CONFIG_KSM`` or ``sysctl_max_map_count``.
    """

    def __init__(self, ops: dict[str, Callable[..., Any]], config: dict[str, Any] | None = None,
                 design: str = "linux-6.18") -> None:
        self.design = design
        self.ops = SimpleNamespace(**ops)
        # findings name the functions of the table, a design file's too
        register_kernel_functions(ops)
        self.config: dict[str, Any] = {"sysctl_max_map_count": 65530}
        if config:
            self.config.update(config)
        self.clock = StepClock()
        self.mm_cachep: kmem_cache[mm_struct] = kmem_cache("mm_struct", mm_struct, self.clock)
        self.vm_area_cachep: kmem_cache[vm_area_struct] = kmem_cache(
            "vm_area_struct", vm_area_struct, self.clock)
        self.anon_vma_cachep: kmem_cache[anon_vma] = kmem_cache(
            "anon_vma", anon_vma, self.clock, ctor=anon_vma_ctor, flags=SLAB_TYPESAFE_BY_RCU)
        self.anon_vma_chain_cachep: kmem_cache[anon_vma_chain] = kmem_cache(
            "anon_vma_chain", anon_vma_chain, self.clock)
        self.page_alloc: kmem_cache[folio] = kmem_cache("page", folio, self.clock)
        self.tasks: dict[str, task_struct] = {}
        self.next_pid = 1
        #: fault injection for the operation being run: allocation site →
        #: the attempts there that fail (empty between operations)
        self.fail_sites: dict[str, FailAt] = {}
        #: allocation attempts per site in the operation being run (what
        #: :meth:`should_fail` was asked); the operation's runner resets it
        self.alloc_attempts: dict[str, int] = {}
        #: findings recorded by WARN-style checks that do not stop the kernel
        self.warnings: list[Exception] = []
        #: events of the operation being run, for the checker's event
        #: sometimes-properties (:mod:`rmapcheck.model.events`); not state
        self.events: set[str] = set()
        #: KSM's globals (``ksm_state``, mm/ksm.c), created on first use
        self.ksm: Any = None
        #: page migrations in flight (``MigrationState``, mm/migrate.c)
        self.migrations: list[Any] = []
        #: reclaim rmap walks in flight (``ReclaimWalk``, mm/vmscan.c)
        self.walks: list[Any] = []
        #: kernel threads in phases (migration, reclaim walks) stop inside their
        #: RCU read-side sections, between reading ``folio->mapping`` and
        #: locking or pinning its anon_vma (the model checker's
        #: ``Bounds.rcu_windows``)
        self.rcu_windows = True

    def should_fail(self, site: str) -> bool:
        """Fault injection: whether this allocation attempt at ``site`` fails.

        Each call is one attempt; :attr:`alloc_attempts` counts them per site.
        The attempt fails if :attr:`fail_sites` names the site with this
        attempt, or with an earlier one and ``persistent``: a kernel retry
        (``anon_vma_clone()``'s ``GFP_KERNEL`` after ``GFP_NOWAIT``) then
        fails too, and the error path behind it runs.
        """
        n = self.alloc_attempts.get(site, 0) + 1
        self.alloc_attempts[site] = n
        at = self.fail_sites.get(site)
        return at is not None and (n == at.attempt or (at.persistent and n > at.attempt))
