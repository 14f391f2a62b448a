"""ASCII address maps of the model's state, in the style of tools/testing/vma.

The kernel's VMA tests draw each step as a hex ruler over the pages, one letter
per VMA and ``*`` under the range being operated on. :func:`address_map` draws
the arena of every process that way, with rows for protection, anon_vma
identity and the folio each page maps; :func:`anon_vma_tree` lists the
``anon_vma`` objects with their hierarchy and counters.

Example: regions ``A: 4`` and ``B: 2`` (placed at page 5), after ``mmap P0 A
rw``, ``write P0 A[0] 1``, ``read P0 A[1]``, ``fork P0 P1``, ``mmap P0 B r``
and ``write P1 A[2] 2``, highlighting that write::

    P0        A    B
              0123456
    op:         *
    vma:      AAAA.BB
    prot:     wwww.rr
    anon_vma: aaaa...
    pages:    0z.....

    P1        A    B
              0123456
    op:         *
    vma:      AAAA...
    prot:     wwww...
    anon_vma: bbbb...
    pages:    0z1....

An anon_vma's letter and a folio's symbol name one object in every process
block, in every step and in every report: they follow the object's allocation
serial in its slab cache (:func:`object_symbol`: ``anon_vma#0`` is ``a``,
``anon_vma#1`` is ``b``; ``page#0`` is ``0``), so an object keeps its symbol
from its allocation to its free and a reused slab slot gets a new one. An
object that no cache allocated (hand-built) takes the next symbol in order
of first appearance; past the end of the alphabet the symbol is ``?``.
"""

from __future__ import annotations

import string
from typing import Callable, Iterable

from rmapcheck.model.memory import migration_entry
from rmapcheck.model.mm_types import (
    PAGE_SHIFT,
    VM_EXEC,
    VM_READ,
    VM_WRITE,
    ZERO_PAGE,
    anon_vma,
    mm_struct,
    vm_area_struct,
)
from rmapcheck.scenario.ops import ARENA_BASE, Op, Scenario

__all__ = [
    "ARENA_BASE_VPN",
    "LEGEND",
    "address_map",
    "anon_vma_tree",
    "object_symbol",
    "op_pages",
    "vma_namer",
]

#: How to read an address map (docs/scenario-format.md and ``rmapcheck run --help`` show it).
LEGEND = """\
P0        A    B      the process; each region's name above its first page
          0123456     arena pages, in hex (the ruler repeats every 16)
op:         *         the pages the step acts on
vma:      AAAA.BB     a letter per VMA of the process, A, B, ... in address
                      order; '.' nothing mapped
prot:     wwww.rr     '-' none, 'r' read, 'w' read-write, 'x' read-exec,
                      'X' read-write-exec
anon_vma: aaaa...     the VMA's anon_vma, one letter per object, the same in
                      every process; '.' none yet
pages:    0z.....     what the page table maps: '.' nothing, 'z' the zero
                      page, 'm' a migration entry, else a digit or letter per
                      page frame, the same in every process (a shared frame:
                      copy-on-write after fork, or a KSM page)"""

#: Virtual page number of arena page 0.
ARENA_BASE_VPN = ARENA_BASE >> PAGE_SHIFT

_RULER = "0123456789abcdef"
_VMA_SYMBOLS = string.ascii_uppercase + string.ascii_lowercase
_AV_SYMBOLS = string.ascii_lowercase + string.ascii_uppercase
# 'z' is the zero page, so folios skip it.
_FOLIO_SYMBOLS = string.digits + string.ascii_lowercase[:-1] + string.ascii_uppercase
_LABEL_WIDTH = len("anon_vma: ")


def _symbol(alphabet: str, n: int) -> str:
    # The n-th symbol; '?' once the alphabet runs out.
    return alphabet[n] if n < len(alphabet) else "?"


def _serial(obj: object) -> int | None:
    # The object's allocation serial in its cache; its slot if no cache
    # allocated it; None if it has neither.
    alloc = getattr(obj, "_alloc", None)
    if alloc:
        return int(alloc[2])
    slot = getattr(obj, "_slot", -1)
    return slot if slot >= 0 else None


def object_symbol(obj: object, unnumbered: dict[int, int] | None = None) -> str:
    """The one-character name of an ``anon_vma`` (a letter) or a folio (a digit or letter) in maps.

    It follows the object's allocation serial (see the module docstring).

    :param unnumbered: numbers given to objects without a serial, by ``id()``,
        in order of first appearance (updated); ``None``: such objects are ``?``.
    """
    alphabet = _AV_SYMBOLS if isinstance(obj, anon_vma) else _FOLIO_SYMBOLS
    n = _serial(obj)
    if n is None:
        if unnumbered is None:
            return "?"
        n = unnumbered.setdefault(id(obj), len(unnumbered))
    return _symbol(alphabet, n)


def _prot(vm_flags: int) -> str:
    # One character for a page's protection: r, w (rw), x (rx), X (rwx), - (none).
    acc = vm_flags & (VM_READ | VM_WRITE | VM_EXEC)
    if acc & VM_EXEC:
        return "X" if acc & VM_WRITE else "x"
    if acc & VM_WRITE:
        return "w"
    return "r" if acc & VM_READ else "-"


def _arena_vmas(mm: mm_struct, npages: int) -> list[vm_area_struct]:
    # The VMAs of mm that meet the arena, in address order.
    end = ARENA_BASE_VPN + npages
    return sorted(
        (v for v in mm.mmap if v.vm_start < end and v.vm_end > ARENA_BASE_VPN),
        key=lambda v: v.vm_start,
    )


def address_map(
    mm_by_proc: dict[str, mm_struct],
    scenario: Scenario,
    highlight: tuple[int, int] | None = None,
) -> str:
    """Draw the arena of each process, one block per process in name order.

    Each block has these rows, one column per arena page:

    - the process name, then each region's name above its first page;
    - a hex ruler of the page numbers (``0123456789abcdef0123...``);
    - ``op:``, only with ``highlight``: ``*`` under the pages being operated on;
    - ``vma:`` a letter per VMA, ``A``, ``B``, ... in address order within the
      process, ``.`` where nothing is mapped;
    - ``prot:`` each page's protection: ``r``, ``w`` (rw), ``x`` (rx), ``X``
      (rwx), ``-`` (none);
    - ``anon_vma:`` the VMA's ``anon_vma``, its letter (:func:`object_symbol`),
      ``.`` where there is none;
    - ``pages:`` what the page table maps: ``.`` nothing, ``z`` the zero page, ``m`` a
      migration entry,
      else the folio's digit or letter (:func:`object_symbol`).

    Blocks are separated by a blank line; the text has no trailing newline.

    :param mm_by_proc: the ``struct mm_struct *`` of each process, by name.
    :param scenario: gives the arena's size and the regions' names and places.
    :param highlight: arena pages ``[start, end)`` to mark with ``*``, or ``None``.
    """
    npages = scenario.arena_pages
    procs = sorted(mm_by_proc)
    width = max([_LABEL_WIDTH] + [len(p) + 1 for p in procs])
    av_names: dict[int, int] = {}
    folio_names: dict[int, int] = {}

    names = [" "] * (npages + max((len(r) for r in scenario.regions), default=0))
    starts = sorted((r.at, r.name) for r in scenario.regions.values())
    for i, (at, name) in enumerate(starts):
        room = starts[i + 1][0] - at if i + 1 < len(starts) else len(name) + 1
        if len(name) >= room:
            # Keep a space before the next region's name when there is room for one.
            name = name[: max(room - 1, 1)]
        names[at : at + len(name)] = name
    region_row = "".join(names)
    ruler = "".join(_RULER[k % 16] for k in range(npages))
    op_row = ""
    if highlight is not None:
        lo, hi = max(highlight[0], 0), min(highlight[1], npages)
        op_row = " " * lo + "*" * max(hi - lo, 0)

    blocks = []
    for proc in procs:
        mm = mm_by_proc[proc]
        vma_row = ["."] * npages
        prot_row = ["."] * npages
        av_row = ["."] * npages
        for i, vma in enumerate(_arena_vmas(mm, npages)):
            letter = _symbol(_VMA_SYMBOLS, i)
            prot = _prot(vma.vm_flags)
            av = "."
            if vma.anon_vma is not None:
                av = object_symbol(vma.anon_vma, av_names)
            first = max(vma.vm_start - ARENA_BASE_VPN, 0)
            for k in range(first, min(vma.vm_end - ARENA_BASE_VPN, npages)):
                vma_row[k] = letter
                prot_row[k] = prot
                av_row[k] = av
        page_row = ["."] * npages
        for k in range(npages):
            pte = mm.pgtable.get(ARENA_BASE_VPN + k)
            if pte is None:
                continue
            f = pte[0]
            if f is ZERO_PAGE:
                page_row[k] = "z"
                continue
            if isinstance(f, migration_entry):
                page_row[k] = "m"  # a migration entry (between migration phases)
                continue
            page_row[k] = object_symbol(f, folio_names)
        rows = [(proc, region_row), ("", ruler)]
        if highlight is not None:
            rows.append(("op:", op_row))
        rows += [
            ("vma:", "".join(vma_row)),
            ("prot:", "".join(prot_row)),
            ("anon_vma:", "".join(av_row)),
            ("pages:", "".join(page_row)),
        ]
        blocks.append("\n".join((label.ljust(width) + row).rstrip() for label, row in rows))
    return "\n\n".join(blocks)


def op_pages(scenario: Scenario, op: Op) -> tuple[int, int] | None:
    """The arena pages ``[start, end)`` step ``op`` operates on (``None`` for a step of no range).

    What :func:`address_map` marks with ``*`` for the step.
    """
    if not op.region:
        return None
    first = scenario.regions[op.region].at + op.page
    return first, first + op.npages


def vma_namer(
    mm_by_proc: dict[str, mm_struct], scenario: Scenario
) -> Callable[[vm_area_struct], str]:
    """A function naming a VMA as :func:`address_map` draws it: ``P0 B``.

    A VMA of no listed process is named by its mm's ``owner`` (``?`` if none),
    a VMA outside the arena gets the letter ``?``.

    :param mm_by_proc: the ``struct mm_struct *`` of each process, by name.
    :param scenario: gives the arena's size.
    """
    names: dict[int, str] = {}
    for proc in sorted(mm_by_proc):
        for i, vma in enumerate(_arena_vmas(mm_by_proc[proc], scenario.arena_pages)):
            names[id(vma)] = f"{proc} {_symbol(_VMA_SYMBOLS, i)}"

    def name(vma: vm_area_struct) -> str:
        known = names.get(id(vma))
        if known is not None:
            return known
        owner = vma.vm_mm.owner if vma.vm_mm is not None and vma.vm_mm.owner else "?"
        return f"{owner} ?"

    return name


def anon_vma_tree(
    anon_vmas: Iterable[anon_vma], vma_name: Callable[[vm_area_struct], str]
) -> str:
    """List anon_vmas with their hierarchy, counters and the VMAs they map.

    One line per ``anon_vma``, then one indented line per ``anon_vma_chain`` in
    its ``rb_root``: the VMA's name, its pages ``[start,end)`` in arena pages,
    and its ``vm_pgoff`` as an arena page when that differs from ``start``::

        a anon_vma#0: root=a parent=a refcount=2 num_children=2 num_active_vmas=1
            P0 A [0,4)
        b anon_vma#1: root=a parent=a refcount=1 num_children=1 num_active_vmas=1
            P1 A [0,4)

    An anon_vma is named by its letter in the address maps and, at the start
    of its line, its name in reports (:meth:`~rmapcheck.model.slab.SlabObject.kname`);
    one that is freed is marked ``(freed)``.

    :param anon_vmas: the ``struct anon_vma *`` objects to list, in this order.
    :param vma_name: names a ``struct vm_area_struct *``, such as the function
        :func:`vma_namer` returns.
    """
    unnamed: dict[int, int] = {}

    def name(av: anon_vma) -> str:
        return object_symbol(av, unnamed)

    out = []
    for av in anon_vmas:
        line = (
            f"{name(av)} {av.kname()}: root={name(av.root)} parent={name(av.parent)} "
            f"refcount={av.refcount} num_children={av.num_children} "
            f"num_active_vmas={av.num_active_vmas}"
        )
        if av._cache is not None and not av._live:
            line += " (freed)"
        out.append(line)
        for avc in av.rb_root:
            vma = avc.vma
            if vma is None:
                out.append("    (anon_vma_chain without a vma)")
                continue
            start = vma.vm_start - ARENA_BASE_VPN
            entry = f"    {vma_name(vma)} [{start},{vma.vm_end - ARENA_BASE_VPN})"
            if vma.vm_pgoff != vma.vm_start:
                entry += f" pgoff {vma.vm_pgoff - ARENA_BASE_VPN}"
            out.append(entry)
    return "\n".join(out)
