"""Execute a scenario on the model and reduce each step to an :class:`Observation`.

Besides the kernel model, the runner keeps an *abstract memory*: per process,
the value each arena page must read, as the system calls define it (fork
copies, writes stay private, unmapping and ``MADV_DONTNEED`` make pages read
zero, ``mremap`` moves contents). Every read is checked against it, so
copy-on-write, KSM and migration must be invisible to user space.

A scenario that uses KSM (a KSM step or ``mergeable``/``unmergeable`` advice)
runs with the live runner's baseline (:data:`KSM_BASELINE`: ``smart_scan=0``)
and gives P0 one untouched mapping outside the arena, standing in for the live
worker's own mappings (without any, ksmd would drop a merge-any process from
its list at its first scan, which the live worker never sees). Its
observations also carry KSM's counters and each process's ``ksm_stat``.
"""

from __future__ import annotations

import errno

from rmapcheck.designs import make_kernel
from rmapcheck.model.findings import DataCorruption, KernelError, SegmentationFault
from rmapcheck.model.invariants import check_invariants
from rmapcheck.model.kernel import FailAt, Kernel
from rmapcheck.model.ksm import (
    ksm_counters, ksm_full_scans, ksm_stat, ksm_state_of, ksm_store, prctl_set_memory_merge,
)
from rmapcheck.model.mm_types import PAGE_SHIFT, VM_EXEC, VM_READ, VM_WRITE, ZERO_PAGE, folio, mm_struct, task_struct
from rmapcheck.model.syscalls import (
    spawn, sys_exit, sys_fork, sys_madvise, sys_mmap, sys_mprotect, sys_mremap, sys_munmap, sys_poke,
    sys_prctl_get_memory_merge, user_read, user_write,
)
from rmapcheck.model.uapi import (
    MADV_DONTNEED, MADV_MERGEABLE, MADV_UNMERGEABLE, MAP_FIXED_NOREPLACE,
    MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE,
)
from rmapcheck.model.vma_init import vma_lookup
from rmapcheck.scenario.ops import (
    ARENA_BASE, FAIL_FLAG, PROTS, Observation, Op, Scenario, mmap_flags, mmap_thp, parse_fail_flag, read_result,
)

__all__ = [
    "ADVICE",
    "ARENA_VPN",
    "KSM_BASELINE",
    "KSM_COUNTERS",
    "KSM_STAT_FIELDS",
    "ModelRunner",
    "model_observation",
    "uses_ksm",
]

ARENA_VPN = ARENA_BASE >> PAGE_SHIFT

#: madvise advice names of the scenario language
ADVICE = {"dontneed": MADV_DONTNEED, "mergeable": MADV_MERGEABLE, "unmergeable": MADV_UNMERGEABLE}

#: KSM knobs both sides set before a KSM scenario's first step (docs/kernel-rules.md §L)
KSM_BASELINE = {"smart_scan": 0}

#: the compared counters of /sys/kernel/mm/ksm
KSM_COUNTERS = ("ksm_zero_pages", "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")

#: the compared fields of /proc/<pid>/ksm_stat
KSM_STAT_FIELDS = ("ksm_merging_pages", "ksm_rmap_items", "ksm_zero_pages")

_KSM_STEPS = ("prctl", "ksm_scan", "ksm_settle", "ksm_set")

# P0's stand-in for the live worker's own mappings: one page far below the
# arena, never touched.
_WORKER_VPN = ARENA_VPN - (1 << 20)


def uses_ksm(scenario: Scenario) -> bool:
    """True if the scenario has a KSM step or ``mergeable``/``unmergeable`` advice."""
    return any(op.kind in _KSM_STEPS or (op.kind == "madvise" and op.advice in ("mergeable", "unmergeable"))
               for op in scenario.ops)


def _prot_str(flags: int) -> str:
    return ("r" if flags & VM_READ else "-") + ("w" if flags & VM_WRITE else "-") + \
        ("x" if flags & VM_EXEC else "-")


def model_observation(k: Kernel, scenario: Scenario, result: str) -> Observation:
    """Reduce the model's state to the canonical observables of the live kernel."""
    lo = ARENA_VPN
    hi = ARENA_VPN + scenario.arena_pages
    layout = []
    raw: dict[str, list[object | None]] = {}
    ksm_keys = set()
    for comm in sorted(k.tasks):
        mm = k.tasks[comm].mm
        vmas = tuple((max(v.vm_start, lo) - lo, min(v.vm_end, hi) - lo, _prot_str(v.vm_flags))
                     for v in mm.mmap if v.vm_end > lo and v.vm_start < hi)
        layout.append((comm, vmas))
        pt = mm.pgtable
        row: list[object | None] = []
        for vpn in range(lo, hi):
            pte = pt.get(vpn)
            if pte is None:
                row.append(None)
            else:
                f = pte[0]
                if type(f) is not folio and f is not ZERO_PAGE:
                    # A migration entry (only between the model checker's
                    # migration phases): the page it stands for.
                    f = f.folio
                row.append(f)
                if f.ksm:
                    ksm_keys.add(f)
        raw[comm] = row
    frames = Observation.canonical_frames(raw, ZERO_PAGE)
    ksm: frozenset[int] = frozenset()
    if ksm_keys:
        nums = {}
        for comm in sorted(raw):
            for key, n in zip(raw[comm], dict(frames)[comm]):
                if key is not None and n is not None:
                    nums[key] = n
        ksm = frozenset(nums[f] for f in ksm_keys if f in nums)
    if not uses_ksm(scenario):
        return Observation(result, tuple(layout), frames, ksm)
    c = ksm_counters(k)
    counters = tuple(sorted((name, c[name]) for name in KSM_COUNTERS))
    stats = tuple((comm, tuple(sorted(ksm_stat(k.tasks[comm].mm).items()))) for comm in sorted(k.tasks))
    return Observation(result, tuple(layout), frames, ksm, counters, stats)


class ModelRunner:
    """Run a scenario's operations on a fresh kernel of ``design``.

    :param check: check the kernel's invariants after every step.
    """

    def __init__(self, scenario: Scenario, design: str = "linux-6.18", check: bool = True,
                 kernel: Kernel | None = None) -> None:
        self.scenario = scenario
        self.k = kernel if kernel is not None else make_kernel(design)
        self.check = check
        p0 = spawn(self.k, "P0")
        #: abstract memory: process -> {vpn: value}; absent means zero
        self.memory: dict[str, dict[int, int]] = {"P0": {}}
        self.step_no = 0
        self.ksm = uses_ksm(scenario)
        if self.ksm:
            for knob, value in KSM_BASELINE.items():
                ksm_store(self.k, knob, value)
            sys_mmap(self.k, p0, _WORKER_VPN, 1, PROT_READ | PROT_WRITE, MAP_FIXED_NOREPLACE)

    def vpn(self, region: str, page: int) -> int:
        """The virtual page number of ``region[page]``."""
        return ARENA_VPN + self.scenario.regions[region].at + page

    def mms(self) -> dict[str, mm_struct]:
        """The live processes' mms by name."""
        return {c: t.mm for c, t in self.k.tasks.items()}

    def step(self, op: Op) -> Observation:
        """Perform one operation and observe; findings propagate as exceptions."""
        self.step_no += 1
        self.k.clock.step = self.step_no
        self.k.clock.what = op.text()
        result = self.perform(op)
        if self.check:
            check_invariants(self.k)
        return model_observation(self.k, self.scenario, result)

    def perform(self, op: Op) -> str:
        """Perform ``op``; return ``ok``, the errno name, ``SIGSEGV`` or a read's value.

        The step's ``fail=`` flags arm :attr:`Kernel.fail_sites` for this step
        only; :attr:`Kernel.alloc_attempts` counts the step's allocation
        attempts afresh.
        """
        k = self.k
        if k.alloc_attempts:
            k.alloc_attempts.clear()
        if not op.flags:
            return self._perform(op)
        for f in op.flags:
            if f.startswith(FAIL_FLAG):
                site, attempt, persistent = parse_fail_flag(f)
                k.fail_sites[site] = FailAt(attempt, persistent)
        try:
            return self._perform(op)
        finally:
            k.fail_sites.clear()

    def _perform(self, op: Op) -> str:
        k = self.k
        kind = op.kind
        if kind in ("ksm_scan", "ksm_settle", "ksm_set"):
            return self._ksm_step(op)
        if kind == "ksmd":
            # One ksm_do_scan() batch of op.value pages, as ksmd runs it
            # between two sleeps (when any mm is on KSM's list).
            if ksm_state_of(k).mm_list:
                k.ops.ksm_do_scan(k, op.value)
            return "ok"
        if kind == "kthread":
            # One phase of in-flight kernel work number op.value.
            from rmapcheck.model.kthreads import kthread_step, kthreads
            ws = kthreads(k)
            if not 0 <= op.value < len(ws):
                return "EINVAL"
            kthread_step(k, ws[op.value])
            return "ok"
        t = k.tasks[op.proc]
        mem = self.memory[op.proc]
        try:
            if kind == "read":
                # Page by page: a fault on one leaves the earlier ones read.
                values = []
                for i in range(op.npages):
                    vpn = self.vpn(op.region, op.page + i)
                    want = mem.get(vpn, 0)
                    try:
                        value = user_read(k, t, vpn)
                    except SegmentationFault:
                        # No VMA where the process wrote and unmapped
                        # nothing: the kernel dropped its mapping.
                        if want and vma_lookup(t.mm, vpn) is None:
                            raise DataCorruption(
                                "user_read", f"{op.proc} finds nothing mapped at {op.region}[{op.page + i}], "
                                             f"where it wrote {want} and never unmapped it") from None
                        raise
                    if value != want:
                        raise DataCorruption(
                            "user_read", f"{op.proc} reads {value} at {op.region}[{op.page + i}], wrote {want}")
                    values.append(value)
                return read_result(values)
            if kind in ("write", "poke"):
                # Page by page, each remembered as soon as it is written.
                for i in range(op.npages):
                    vpn = self.vpn(op.region, op.page + i)
                    if kind == "write":
                        user_write(k, t, vpn, op.value)
                    else:
                        sys_poke(k, t, vpn, op.value)
                    mem[vpn] = op.value
                return "ok"
            if kind == "prctl" and op.advice == "get_merge":
                return str(sys_prctl_get_memory_merge(k, t))
            start = self.vpn(op.region, op.page) if op.region else 0
            if kind == "mmap":
                sys_mmap(k, t, start, op.npages, PROTS[op.prot], mmap_flags(op.flags), mmap_thp(op.flags))
                self._clear(mem, start, op.npages)
            elif kind == "munmap":
                sys_munmap(k, t, start, op.npages)
                self._clear(mem, start, op.npages)
            elif kind == "mprotect":
                sys_mprotect(k, t, start, op.npages, PROTS[op.prot])
            elif kind == "madvise":
                if op.advice == "dontneed":
                    # The mapped parts are zapped even when a hole makes the
                    # call fail with ENOMEM; holes read nothing at all.
                    self._clear(mem, start, op.npages)
                sys_madvise(k, t, start, op.npages, ADVICE[op.advice])
            elif kind == "mremap":
                new_pages = op.new_pages or op.npages
                if op.to_region:
                    flags = MREMAP_MAYMOVE | MREMAP_FIXED
                    if "dontunmap" in op.flags:
                        flags |= MREMAP_DONTUNMAP
                    new = self.vpn(op.to_region, op.to_page)
                    # A move that keeps the size may span several VMAs (v6.17+):
                    # each moves on its own, and the target pages facing a hole
                    # in the source are left as they were.
                    holes = set()
                    if new_pages == op.npages:
                        holes = {i for i in range(op.npages) if vma_lookup(t.mm, start + i) is None}
                    sys_mremap(k, t, start, op.npages, new_pages, flags, new)
                    moved = {i: mem.get(start + i, 0) for i in range(min(op.npages, new_pages))
                             if i not in holes}
                    for i in range(max(op.npages, new_pages)):
                        if i not in holes:
                            if i < op.npages:
                                mem.pop(start + i, None)
                            if i < new_pages:
                                mem.pop(new + i, None)
                    for i, v in moved.items():
                        if v:
                            mem[new + i] = v
                else:
                    sys_mremap(k, t, start, op.npages, new_pages, 0, 0)
                    if new_pages < op.npages:
                        self._clear(mem, start + new_pages, op.npages - new_pages)
            elif kind == "fork":
                sys_fork(k, t, op.child)
                self.memory[op.child] = dict(mem)
            elif kind == "exit":
                sys_exit(k, t)
                del self.memory[op.proc]
            elif kind == "prctl":
                # prctl(PR_SET_MEMORY_MERGE, value, 0, 0, 0)
                err = prctl_set_memory_merge(k, t.mm, op.value)
                if err:
                    raise KernelError(-err, "prctl", "PR_SET_MEMORY_MERGE")
            elif kind == "migrate":
                migrate = getattr(k.ops, "migrate_page_at", None)
                if migrate is None:
                    raise KernelError(errno.ENOSYS, "migrate", "page migration is not modelled")
                # move_pages() of one page: its status is the step's result
                err = migrate(k, t.mm, self.vpn(op.region, op.page))
                if err:
                    raise KernelError(-err, "move_pages", "page not migrated")
            elif kind == "reclaim":
                # shrink_folio_list() → folio_check_references(): the reclaim
                # rmap walk, which must reach every mapping of the page.
                f = self._mapped_folio(t, op)
                if f.locked:
                    raise KernelError(errno.EBUSY, "reclaim", "folio_trylock() fails")
                k.ops.folio_check_references(k, f)
            elif kind == "reclaim_start":
                # The first phase of a reclaim walk that kthread steps continue.
                from rmapcheck.model.vmscan import reclaim_prepare, reclaim_step
                f = self._mapped_folio(t, op)
                st = reclaim_prepare(k, f)
                if st is None:
                    raise KernelError(errno.EBUSY, "reclaim_start", "folio_trylock() fails")
                reclaim_step(k, st)
            elif kind == "migrate_start":
                # The first phase of a migration that kthread steps continue.
                from rmapcheck.model.migrate import migrate_prepare, migrate_step
                if not k.config.get("CONFIG_MIGRATION", True):
                    raise KernelError(errno.ENOSYS, "migrate_start", "no CONFIG_MIGRATION")
                f = self._mapped_folio(t, op)
                st = migrate_prepare(k, f)
                if st is None:
                    raise KernelError(errno.EBUSY, "migrate_start")
                migrate_step(k, st)
            else:
                raise ValueError(f"unknown operation {kind!r}")
        except KernelError as e:
            if kind in ("mmap", "munmap", "mremap"):
                # A failed call may have unmapped what it was to replace or
                # move (mmap_region()'s abort after clearing the old PTEs):
                # what is no longer mapped was not lost by a kernel bug.
                for vpn in [v for v in mem if vma_lookup(t.mm, v) is None]:
                    del mem[vpn]
            return e.name
        except SegmentationFault:
            return "SIGSEGV"
        return "ok"

    def _mapped_folio(self, t: task_struct, op: Op) -> folio:
        # The folio a model-only kernel-thread step starts on: ENOENT if no
        # page is mapped there (or only the zero page, or a migration entry).
        pte = t.mm.pgtable.get(self.vpn(op.region, op.page))
        if pte is None or type(pte[0]) is not folio or pte[0] is ZERO_PAGE:
            raise KernelError(errno.ENOENT, op.kind)
        return pte[0]

    def _ksm_step(self, op: Op) -> str:
        # ksm_scan N: N full scans of ksmd; ksm_settle: two further full scans,
        # as the kernel's KSM selftests wait; ksm_set KNOB V: a sysfs write.
        k = self.k
        if op.kind == "ksm_scan":
            ksm_full_scans(k, op.value)
        elif op.kind == "ksm_settle":
            ksm_full_scans(k, 2)
        else:
            err = ksm_store(k, op.advice, op.value)
            if err:
                return errno.errorcode[-err]
        return "ok"

    @staticmethod
    def _clear(mem: dict[int, int], start: int, npages: int) -> None:
        for vpn in range(start, start + npages):
            mem.pop(vpn, None)
