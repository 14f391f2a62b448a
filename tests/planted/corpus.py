"""The planted-defect corpus: for each always-property, two design files with one planted bug each.

``deep_<property>.py`` needs eight actions or more from the empty start (the
checker's setup: the first process maps the regions) at the bounds of the
default's phase that finds it; ``persistent_<property>.py`` needs an
allocation failure on every attempt from the N-th on (``--fault-mode
persistent``): failing one attempt (``first``, ``nth``) does not reach it.
Each file says what is broken and why it needs what it needs.
``tests/test_planted.py`` runs each through its phase; ``make bench``
proves the depth (``planted_*`` figures); docs/checker.md has the figures.
"""

#: design file → (the property its bug violates, the default's phase that finds it)
DEEP = {
    "deep_use_after_free.py": ("use-after-free", "ksm-fork"),
    "deep_double_free.py": ("double-free", "ksm-fork"),
    "deep_leak.py": ("leak", "ksm-fork"),
    "deep_counter_underflow.py": ("counter-underflow", "ksm-fork"),
    "deep_vm_bug_on.py": ("vm-bug-on", "ksm-fork"),
    "deep_vm_warn_on.py": ("vm-warn-on", "cow"),
    "deep_lock_misuse.py": ("lock-misuse", "ksm-fork"),
    "deep_missed_rmap_walk.py": ("missed-rmap-walk", "ksm-fork"),
    "deep_invariant.py": ("invariant", "ksm-fork"),
    "deep_data_corruption.py": ("data-corruption", "cow"),
    "deep_model_error.py": ("model-error", "ksm-fork"),
}

#: design file → (the property its bug violates, the default's phase that finds it)
PERSISTENT = {
    "persistent_use_after_free.py": ("use-after-free", "faults"),
    "persistent_double_free.py": ("double-free", "faults"),
    "persistent_leak.py": ("leak", "faults"),
    "persistent_counter_underflow.py": ("counter-underflow", "faults"),
    "persistent_vm_bug_on.py": ("vm-bug-on", "faults"),
    "persistent_vm_warn_on.py": ("vm-warn-on", "faults"),
    "persistent_lock_misuse.py": ("lock-misuse", "faults"),
    "persistent_missed_rmap_walk.py": ("missed-rmap-walk", "migration-faults"),
    "persistent_invariant.py": ("invariant", "faults"),
    "persistent_data_corruption.py": ("data-corruption", "faults"),
    "persistent_model_error.py": ("model-error", "faults"),
}
