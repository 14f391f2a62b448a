"""A counterexample as a C program that performs its steps on a real kernel: ``rmapcheck repro``.

:func:`repro_program` writes one self-contained C file (no library beyond
libc; ``cc -O2 -o repro repro.c`` builds it) that does what the live runner
(:mod:`rmapcheck.live.runner`) does for the same scenario, without Python:

* one worker process per scenario process, forked as the scenario forks
  (``fork P0 P1`` is a ``fork()`` in P0's worker), each performing its
  steps' system calls at the scenario's addresses in the same arena:
  ``mmap`` (``MAP_FIXED_NOREPLACE`` and ``MADV_NOHUGEPAGE`` unless the step
  says otherwise), 8-byte loads and stores at each page's start (after a
  look at ``/proc/self/maps``, so a forbidden access is the answer
  ``SIGSEGV`` and not a crash), ``pwrite()`` to ``/proc/self/mem``,
  ``munmap``, ``mprotect``, ``mremap``, ``madvise``, ``prctl``, ``_exit``;
* KSM driven through ``/sys/kernel/mm/ksm`` as the live runner's session does
  (:class:`~rmapcheck.live.ksm.KsmSession`: every knob saved before it is
  changed, one full ksmd pass per scanned step, merge-any workers' own memory
  advised unmergeable before each scan, everything restored at the end, on an
  error and on ``SIGINT``/``SIGTERM``, the same lock and save file);
* ``migrate`` as ``move_pages(2)`` of the page to node 0;
* after every step the observation the live runner computes, printed as one
  JSON line (the object ``rmapcheck live --json`` has per step), and the
  step's result checked: the stated one (``=> X``), else the one the model of
  the running kernel (``linux-6.18``) predicts.

The steps the model checker's kernel threads take in phases
(``migrate_start``, ``reclaim_start``, ``kthread N``, ``reclaim``, ``ksmd
N``) cannot be scheduled from user space. The program says so at each of
them and does the closest thing a user can: a racer process that migrates
the page back and forth between the online nodes (or walks its rmap through
``page_idle`` and ``MADV_PAGEOUT``) while the steps that follow run, stopped
after the step where the model's thread finishes; one ksmd batch of N pages.
It never claims to force the interleaving. The model-only settings of a
trace's header (``rcu_windows``, ``config``, ``ksm_baseline``) are noted:
the kernel runs as it is built.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from importlib import resources
from rmapcheck.check.trace import judged_run
from rmapcheck.designs import DesignError
from rmapcheck.live.ksm import SCENARIO_KNOBS
from rmapcheck.live.runner import ADVICE, SETTLE_SCANS, uses_ksm
from rmapcheck.model.uapi import (
    MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_NORESERVE, MAP_POPULATE, MAP_PRIVATE, MREMAP_DONTUNMAP,
    MREMAP_FIXED, MREMAP_MAYMOVE,
)
from rmapcheck.report.provenance import RUNNING, Provenance
from rmapcheck.scenario.ops import (
    ARENA_BASE, MODEL_ONLY_KINDS, PROTS, Observation, Op, Scenario, Settings, mmap_flags, mmap_thp, returns_value,
)

__all__ = ["RACE_SECONDS", "ReproError", "predicted_results", "read_observations", "repro_program"]

#: the longest a racer runs (it is stopped after the step where the model's thread ends)
RACE_SECONDS = 20


class ReproError(ValueError):
    """A step the program cannot perform as the live runner would (one line)."""


_PROT_BITS = (("PROT_READ", 1), ("PROT_WRITE", 2), ("PROT_EXEC", 4))
_MAP_BITS = (("MAP_FIXED", MAP_FIXED), ("MAP_FIXED_NOREPLACE", MAP_FIXED_NOREPLACE),
             ("MAP_NORESERVE", MAP_NORESERVE), ("MAP_POPULATE", MAP_POPULATE))
_MREMAP_BITS = (("MREMAP_MAYMOVE", MREMAP_MAYMOVE), ("MREMAP_FIXED", MREMAP_FIXED),
                ("MREMAP_DONTUNMAP", MREMAP_DONTUNMAP))
_U64 = (1 << 64) - 1


def _bits(value: int, names: tuple[tuple[str, int], ...], zero: str) -> str:
    out = [n for n, b in names if value & b]
    return " | ".join(out) if out else zero


def _c(text: str) -> str:
    # A C string literal (the texts are ASCII; JSON's escapes are C's).
    return json.dumps(text)


def _comment(text: str) -> str:
    return text.replace("*/", "* /")


@dataclass
class _Race:
    """A racer standing in for a kernel thread the model runs in phases."""

    number: int
    start: int
    stop: int


def predicted_results(s: Scenario) -> list[str | None]:
    """The result of each step on ``linux-6.18`` run as the live kernel runs it (``None``: unknown).

    Model-only settings dropped (the live kernel runs as built); the steps
    after a fatal finding, and model-only steps, have no prediction.
    """
    plain = Scenario(s.name, s.regions, s.ops, s.source, settings=Settings())
    out: list[str | None] = [None] * len(s.ops)
    try:
        for i, op, o in judged_run(plain, RUNNING):
            if op.kind not in MODEL_ONLY_KINDS and not o.fatal:
                out[i - 1] = o.result
    except DesignError:
        pass
    return out


def _races(s: Scenario, design: str) -> dict[int, _Race]:
    # For each migrate_start / reclaim_start step, the step after which the
    # model's thread it starts is no longer in flight (the last step if never).
    races: dict[int, _Race] = {}
    live: dict[int, _Race] = {}  # id() of the model's thread -> race
    try:
        for i, op, o in judged_run(s, design):
            k = o.state.k
            now = {id(t): t for t in [*k.migrations, *k.walks]}
            for key in list(live):
                if key not in now:
                    live.pop(key).stop = i
            if op.kind in ("migrate_start", "reclaim_start"):
                race = races[i] = _Race(len(races), i, len(s.ops))
                for key in now:
                    if key not in live and all(r is not race for r in live.values()):
                        live[key] = race
                        break
                else:
                    race.stop = i  # it finished (or failed) at once
            if o.fatal:
                break
    except DesignError:
        pass
    for i, op in enumerate(s.ops, 1):
        if op.kind in ("migrate_start", "reclaim_start") and i not in races:
            races[i] = _Race(len(races), i, len(s.ops))
    return races


def repro_program(s: Scenario, prov: Provenance) -> str:
    """The C program of scenario ``s`` (see the module docstring).

    :param prov: what the program's header says about the counterexample.
    :raises ReproError: a step the live runner refuses (``ksm_set run 1``, a knob
        a scenario may not set on the live kernel).
    """
    predictions = predicted_results(s)
    races = _races(s, prov.design)
    channels: list[str] = ["P0"]
    current: dict[str, int] = {"P0": 0}
    body: list[str] = []
    stops: dict[int, list[int]] = {}
    notes: list[str] = []
    for i, op in enumerate(s.ops, 1):
        ch = current.get(op.proc, -1)
        if op.kind == "fork":
            current[op.child] = len(channels)
            channels.append(op.child)
        body += _step_code(s, i, op, ch, current.get(op.child, -1), predictions[i - 1], races.get(i), notes)
        if op.kind == "exit":
            current.pop(op.proc, None)
        for number in stops.get(i, []):
            body.append(f"\trc_race_stop({number});")
        race = races.get(i)
        if race is not None:
            stops.setdefault(race.stop, []).append(race.number)
            if race.stop == i:
                body.append(f"\trc_race_stop({race.number});")
    header = _header(s, prov, notes)
    needs_ksm = uses_ksm(s) or any(op.kind == "ksmd" for op in s.ops)
    errnames = ", ".join(f'[{n}] = "{name}"' for n, name in sorted(errno.errorcode.items()))
    defs = [
        f"#define RC_ARENA_BASE {ARENA_BASE:#x}ULL",
        f"#define RC_ARENA_PAGES {max(s.arena_pages, 1)}",
        f"#define RC_CHANNELS {len(channels)}  /* the processes the scenario creates, P0 included */",
        f"#define RC_USES_KSM {int(uses_ksm(s))}  /* observations carry KSM's counters and ksm_stat */",
        f"#define RC_NEEDS_KSM {int(needs_ksm)}",
        f"#define RC_RACERS {len(races)}",
        f"#define RC_RACE_SECONDS {RACE_SECONDS}",
        "static const char *const rc_names[RC_CHANNELS] = {" + ", ".join(_c(n) for n in channels) + "};",
        f"static const char *const rc_errnames[] = {{{errnames}}};",
    ]
    runtime = resources.files("rmapcheck.live").joinpath("repro_runtime.c").read_text(encoding="utf-8")
    steps = "\n".join(["static void run_steps(void)", "{", *body, "}"])
    return "\n".join([header, *defs, "", runtime, steps, ""])


def _header(s: Scenario, prov: Provenance, notes: list[str]) -> str:
    lines = [f"rmapcheck reproducer: {s.name}", ""] + prov.lines() + [
        "",
        "Build and run (as root: pagemap gives frame numbers to root only, and KSM's knobs are root's):",
        "    cc -O2 -Wall -o repro repro.c && sudo ./repro",
        "",
        "It performs the steps below with real system calls, one worker process per",
        "scenario process, in the arena at %#x, and after each step prints the" % ARENA_BASE,
        "observation rmapcheck's live runner computes, as one JSON line: the step's",
        "result, each process's VMAs in the arena with their protection, the frame of",
        "each page (the same number: the same frame; -1 the zero page), the KSM pages,",
        "and with KSM in play KSM's counters and each process's ksm_stat. A step whose",
        "result is not the expected one (the stated one, else the one the model of",
        f"{RUNNING} predicts) is marked UNEXPECTED and the exit status is 1.",
        "KSM's knobs are saved before they change and restored at the end, on an",
        "error and on SIGINT/SIGTERM.",
        "",
        "On a kernel under test (a KASAN or lockdep build in a VM), run it and read",
        "the kernel log (dmesg): a use-after-free or a lock the kernel notices is",
        "reported there, not by this program.",
    ]
    settings = s.settings.model_only()
    if settings:
        lines += ["", "Model-only settings of the trace, which a real kernel cannot honour (it runs",
                  "as it is built): " + "; ".join(settings) + ".",
                  "KSM runs from the live runner's baseline (smart_scan 0) whatever",
                  "ksm_baseline says; a config switch names what the kernel under test must be",
                  "built with to match the model."]
    if notes:
        lines += ["", *notes]
    return "/*\n" + "\n".join((" * " + _comment(x)).rstrip() for x in lines) + "\n */"


def _expect(op: Op, prediction: str | None) -> tuple[str, int]:
    expect = op.expect if op.expect is not None else prediction
    return ("NULL" if expect is None else _c(expect)), int(returns_value(op))


def _step_code(s: Scenario, i: int, op: Op, ch: int, child: int, prediction: str | None, race: _Race | None,
               notes: list[str]) -> list[str]:
    """The C lines of step ``i``: a comment with its system call, the call, the check and observation."""
    text = op.text()
    page = s.regions[op.region].at + op.page if op.region else 0
    head = [f"\t/* step {i} (line {op.line}): {_comment(text)}"]
    where = f"arena page {page}" + (f", {op.npages} pages" if op.npages != 1 else "")
    if op.kind in MODEL_ONLY_KINDS:
        return head + _model_only(i, op, ch, page, race, notes)
    k = op.kind
    if k == "mmap":
        prot = _bits(PROTS[op.prot], _PROT_BITS, "PROT_NONE")
        flags = mmap_flags(op.flags) & ~(MAP_PRIVATE | MAP_ANONYMOUS)
        thp = mmap_thp(op.flags)
        cflags = _bits(flags, _MAP_BITS, "0")
        head.append(f"\t * {op.proc}: mmap({where}, {prot}, MAP_PRIVATE | MAP_ANONYMOUS | {cflags})"
                    + (", madvise(MADV_NOHUGEPAGE)" if thp is not None else ", THP as the system says") + " */")
        call = f"rc_mmap({ch}, {page}, {op.npages}, {prot}, {cflags}, {-1 if thp is None else thp}, {_c(text)})"
    elif k == "munmap":
        head.append(f"\t * {op.proc}: munmap({where}) */")
        call = f"rc_munmap({ch}, {page}, {op.npages}, {_c(text)})"
    elif k == "mprotect":
        prot = _bits(PROTS[op.prot], _PROT_BITS, "PROT_NONE")
        head.append(f"\t * {op.proc}: mprotect({where}, {prot}) */")
        call = f"rc_mprotect({ch}, {page}, {op.npages}, {prot}, {_c(text)})"
    elif k == "madvise":
        if op.advice not in ADVICE:
            raise ReproError(f"step {i}: '{text}': unknown madvise advice {op.advice!r}")
        head.append(f"\t * {op.proc}: madvise({where}, MADV_{op.advice.upper()}) */")
        call = f"rc_madvise({ch}, {page}, {op.npages}, {ADVICE[op.advice]} /* MADV_{op.advice.upper()} */, {_c(text)})"
    elif k == "mremap":
        flags = MREMAP_DONTUNMAP if "dontunmap" in op.flags else 0
        to = 0
        if op.to_region:
            flags |= MREMAP_MAYMOVE | MREMAP_FIXED
            to = s.regions[op.to_region].at + op.to_page
        new = op.new_pages or op.npages
        cflags = _bits(flags, _MREMAP_BITS, "0")
        head.append(f"\t * {op.proc}: mremap({where}, {new} pages, {cflags}"
                    + (f", arena page {to})" if op.to_region else ")") + " */")
        call = f"rc_mremap({ch}, {page}, {op.npages}, {new}, {cflags}, {to}, {_c(text)})"
    elif k in ("read", "write", "poke"):
        what = {"read": "load 8 bytes at the start of each page",
                "write": f"store {op.value} (8 bytes) at the start of each page",
                "poke": f"pwrite() {op.value} to /proc/self/mem at each page's start"}[k]
        head.append(f"\t * {op.proc}: {what} of {where} */")
        cmd = {"read": "C_READ", "write": "C_WRITE", "poke": "C_POKE"}[k]
        call = f"rc_access({ch}, {cmd}, {page}, {op.npages}, {op.value & _U64}ULL, {_c(text)})"
    elif k == "fork":
        head.append(f"\t * {op.proc}: fork(); the child is {op.child} */")
        call = f"rc_fork({ch}, {child}, {_c(text)})"
    elif k == "exit":
        head.append(f"\t * {op.proc}: _exit(0), waited for until its address space is gone */")
        call = f"rc_exit({ch}, {_c(text)})"
    elif k == "prctl" and op.advice == "get_merge":
        head.append(f"\t * {op.proc}: prctl(PR_GET_MEMORY_MERGE) */")
        call = f"rc_prctl_get({ch}, {_c(text)})"
    elif k == "prctl":
        head.append(f"\t * {op.proc}: prctl(PR_SET_MEMORY_MERGE, {op.value}) */")
        call = f"rc_prctl_merge({ch}, {op.value}, {_c(text)})"
    elif k in ("ksm_scan", "ksm_settle"):
        n = op.value if k == "ksm_scan" else SETTLE_SCANS
        head.append(f"\t * ksmd: {n} full pass(es), run=1 then run=0 (ksm_settle: two, as the KSM selftests wait) */")
        call = f"rc_ksm_scan({n})"
    elif k == "ksm_set":
        if op.advice not in SCENARIO_KNOBS:
            raise ReproError(f"step {i}: '{text}': not a knob a scenario may set on the live kernel "
                             f"(one of {', '.join(SCENARIO_KNOBS)})")
        if op.advice == "run" and op.value == 1:
            raise ReproError(f"step {i}: '{text}': ksmd would scan on its own; use ksm_scan or ksm_settle")
        head.append(f"\t * write {op.value} to /sys/kernel/mm/ksm/{op.advice} (saved first) */")
        call = f"rc_ksm_set({_c(op.advice)}, {_c(str(op.value))})"
    elif k == "migrate":
        head.append(f"\t * move_pages({op.proc}, arena page {page} to node 0, MPOL_MF_MOVE_ALL) */")
        call = f"rc_migrate({ch}, {page}, {_c(text)})"
    else:
        raise ReproError(f"step {i}: '{text}': no system call for a {k!r} step")
    expect, value = _expect(op, prediction)
    return head + [f"\trc_step({i}, {op.line}, {_c(text)}, {expect}, {value}, {call});"]


def _model_only(i: int, op: Op, ch: int, page: int, race: _Race | None, notes: list[str]) -> list[str]:
    # A kernel thread's step: said so, and the closest a user can do.
    text = op.text()
    k = op.kind
    if not notes:
        notes += ["Steps of kernel threads the model checker runs in phases (marked below) cannot",
                  "be scheduled from user space: this program does not force their interleaving.",
                  "It does the closest thing a user can, said at each, and prints the observation",
                  "after it with the result \"model-only\"."]
    if k == "migrate_start":
        stop = f"step {race.stop}" if race is not None else "the end"
        lines = ["\t * The model's migration of this page runs in phases (isolate, pin the anon_vma,",
                 "\t * unmap, move, remap, unpin), each at a 'kthread' step. A program cannot",
                 "\t * stop the kernel's migration between them: a racer migrates the page over and",
                 "\t * over (between the online nodes; with one node the kernel leaves it in place)",
                 f"\t * while the steps that follow run, until {stop}. */"]
        call = f"rc_race({race.number if race else 0}, 1, {ch}, {page});"
        what = "a racer migrates the page meanwhile"
    elif k == "reclaim_start":
        stop = f"step {race.stop}" if race is not None else "the end"
        lines = ["\t * The model's reclaim walk of this page (folio_referenced()) runs in phases,",
                 "\t * each at a 'kthread' step. A program cannot stop reclaim between them: a racer",
                 "\t * walks the page's rmap over and over (a write to page_idle/bitmap with",
                 "\t * CONFIG_IDLE_PAGE_TRACKING; MADV_PAGEOUT by process_madvise(), which walks it",
                 f"\t * when the kernel has swap) while the steps that follow run, until {stop}. */"]
        call = f"rc_race({race.number if race else 0}, 0, {ch}, {page});"
        what = "a racer walks the page's rmap meanwhile"
    elif k == "reclaim":
        lines = ["\t * The model's reclaim rmap walk of the page, whole: one walk as above. */"]
        call = f"rc_reclaim_once({ch}, {page});"
        what = "one rmap walk through page_idle and MADV_PAGEOUT"
    elif k == "ksmd":
        lines = [f"\t * ksmd scans {op.value} page(s), one ksm_do_scan() batch: pages_to_scan {op.value} for",
                 "\t * one wake-up, stopped when pages_scanned moved that far or a pass ended;",
                 "\t * where a batch ends in the kernel is not exact. */"]
        call = f"rc_ksmd({op.value});"
        what = f"one ksmd batch of about {op.value} page(s)"
    else:
        lines = ["\t * The next phase of kernel work in flight: the kernel runs it by itself; the",
                 "\t * racer started for it keeps going. */"]
        call = ""
        what = "the kernel thread's phase runs on its own"
    out = lines + ([f"\t{call}"] if call else [])
    return out + [f"\trc_step_model_only({i}, {op.line}, {_c(text)}, {_c(what)});"]



def read_observations(output: str) -> list[Observation]:
    """The observations a program printed (its JSON lines), in step order.

    The inverse of :meth:`~rmapcheck.scenario.ops.Observation.as_dict`.
    """
    out = []
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        out.append(Observation(
            result=d["result"],
            layout=tuple((p, tuple((a, b, prot) for a, b, prot in vmas)) for p, vmas in d["layout"].items()),
            frames=tuple((p, tuple(row)) for p, row in d["frames"].items()),
            ksm=frozenset(d["ksm"]),
            counters=tuple(sorted(d.get("counters", {}).items())),
            ksm_stat=tuple((p, tuple(sorted(f.items()))) for p, f in d.get("ksm_stat", {}).items()),
        ))
    return out
