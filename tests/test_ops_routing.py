"""Every kernel function of the design table is replaceable on its own.

A design replaces a kernel function by name in ``k.ops``; a caller that calls
the function directly (by its Python name) would keep the base's, and the
replacement would silently not run there. These tests read the model's
source: no model module calls a function of the linux-6.18 table other than
through ``k.ops``, every function of the table is public (in its module's
``__all__``) and takes the kernel first, and the functions left out of the
table are the primitives listed here.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import types

import pytest

import rmapcheck.model
from rmapcheck.designs import load_design

TABLE = load_design("linux-6.18").functions
REGISTERED = {id(f): name for name, f in TABLE.items()}
MODEL_MODULES = sorted(m.name for m in pkgutil.iter_modules(rmapcheck.model.__path__))
#: modules outside model/ that call kernel functions
CALLERS = [f"rmapcheck.model.{m}" for m in MODEL_MODULES] + ["rmapcheck.scenario.execute", "rmapcheck.check.model"]

#: Public functions of the model that take the kernel and are not in the table,
#: by kind: the model's own data structures and primitives, not code a patch
#: to the anon_vma or VMA code changes.
NOT_REPLACEABLE = {
    # rwsem primitives: the lock semantics of the model (deadlock, misuse)
    "down_write", "up_write", "up_read",
    # the folio lock: its semantics (sleeping on a kernel thread's lock, deadlock)
    "folio_lock", "folio_unlock",
    # the page allocator's reference count
    "folio_put",
    # the maple tree's node preallocation (a fault-injection site)
    "vma_iter_prealloc",
    # debug checks and the model's views of the state
    "validate_mm", "check_invariants", "page_table_mappings", "check_rmap_walk", "rmap_walk_promised",
    "migration_anon_vma_refs", "migration_folio_refs", "reclaim_folio_refs", "reclaim_held_roots",
    "migrations", "ksm_state_of", "ksm_counters",
    # kernel threads as the checker steps them (their kernel functions are in the table)
    "migrate_prepare", "migrate_step", "migrate_folio_unmap", "migrate_folio_move",
    "reclaim_prepare", "reclaim_step", "kthreads", "kthread_step", "kthread_holds",
    # system call and sysfs entry points of the scenario language
    "spawn", "sys_mmap", "sys_munmap", "sys_mprotect", "sys_mremap", "sys_madvise", "sys_fork", "sys_exit",
    "user_read", "user_write", "sys_poke", "sys_prctl_get_memory_merge", "ksm_full_scans", "ksm_store", "prctl_set_memory_merge",
}


def _calls(modname: str):
    # (line, called object) of every call by name or module.attribute in the module.
    mod = importlib.import_module(modname)
    tree = ast.parse(inspect.getsource(mod))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        obj = None
        if isinstance(f, ast.Name):
            obj = getattr(mod, f.id, None)
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            owner = getattr(mod, f.value.id, None)
            if isinstance(owner, types.ModuleType):
                obj = getattr(owner, f.attr, None)
        if obj is not None:
            yield node.lineno, obj


@pytest.mark.parametrize("modname", CALLERS)
def test_table_functions_are_called_through_k_ops(modname):
    direct = [f"{modname}:{line}: {REGISTERED[id(obj)]}()" for line, obj in _calls(modname)
              if id(obj) in REGISTERED]
    assert direct == [], "called directly, so a design's replacement would not run there"


def test_table_functions_are_public_and_take_the_kernel_first():
    bad = []
    for name, f in TABLE.items():
        mod = importlib.import_module(f.__module__)
        params = list(inspect.signature(f).parameters)
        if not params or params[0] != "k":
            bad.append(f"{name}: first parameter {params[:1]}")
        if f.__name__ not in getattr(mod, "__all__", ()) and not f.__name__.startswith("_"):
            bad.append(f"{name}: {f.__module__}.{f.__name__} not in __all__")
    assert bad == []


def test_the_functions_left_out_are_primitives():
    left = set()
    for m in MODEL_MODULES:
        mod = importlib.import_module(f"rmapcheck.model.{m}")
        for name, obj in vars(mod).items():
            if (inspect.isfunction(obj) and obj.__module__ == mod.__name__ and not name.startswith("_")
                    and id(obj) not in REGISTERED
                    and list(inspect.signature(obj).parameters)[:1] == ["k"]):
                left.add(name)
    assert left == NOT_REPLACEABLE
