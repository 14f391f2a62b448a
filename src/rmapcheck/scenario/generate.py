"""Random scenarios: at most 4 live processes, 4 regions and 30 operations.

The generator draws from every operation of the scenario language, mostly
valid, sometimes one the kernel refuses (which both sides must refuse alike).
It is seeded and deterministic: ``random_scenario(seed)`` is the same scenario
on every machine. :data:`KSM_KINDS` adds the KSM steps; the default mix and the
scenarios it draws are unchanged by them.
"""

from __future__ import annotations

import random

from rmapcheck.scenario.ops import Op, Region, Scenario

__all__ = ["KINDS", "KSM_KINDS", "random_scenario"]

#: operation kind -> weight in the mix
KINDS = {
    "write": 8, "read": 5, "mmap": 4, "mprotect": 5, "munmap": 2, "mremap": 4,
    "madvise": 2, "fork": 3, "exit": 1,
}

#: the mix for KSM and migration: :data:`KINDS` plus the KSM steps
#: (``random_scenario(seed, kinds=KSM_KINDS)``); ``madvise`` then also draws
#: ``mergeable``/``unmergeable`` advice
KSM_KINDS = {
    **KINDS, "write": 14, "madvise": 4, "prctl": 1, "ksm_scan": 3, "ksm_settle": 4, "ksm_set": 1,
    "migrate": 1,
}

#: knob -> values ``ksm_set`` draws from (some refused: max_page_sharing 1 is EINVAL)
_KSM_SET_VALUES = {
    "max_page_sharing": (1, 2, 3, 256),
    "use_zero_pages": (0, 1),
    "smart_scan": (0, 1),
    "run": (2,),
}

_PROTS = ("rw", "rw", "r", "none", "rx")


def _regions(rng: random.Random) -> dict[str, Region]:
    regions: dict[str, Region] = {}
    at = 0
    for i in range(rng.randint(1, 4)):
        pages = rng.randint(1, 4)
        name = "ABCD"[i]
        regions[name] = Region(name, pages, at)
        at += pages + rng.choice((0, 0, 1))
    return regions


def _range(rng: random.Random, r: Region) -> tuple[int, int]:
    first = rng.randrange(r.pages)
    return first, rng.randint(1, r.pages - first)


def random_scenario(seed: int, max_ops: int = 30, kinds: dict[str, int] | None = None) -> Scenario:
    """The random scenario of ``seed``.

    :param kinds: operation weights (default :data:`KINDS`); issues that add
        operations pass their own table.
    """
    rng = random.Random(seed)
    weights = kinds or KINDS
    names, wts = zip(*weights.items())
    regions = _regions(rng)
    rlist = list(regions.values())
    live = ["P0"]
    born = 1
    ops: list[Op] = []
    # Start with every region mapped in P0 most of the time, so later steps act
    # on memory rather than on holes.
    for r in rlist:
        if rng.random() < 0.8:
            ops.append(Op("mmap", "P0", r.name, 0, r.pages, prot="rw"))
    if "ksm_scan" in weights:
        # Most KSM scenarios start with mergeable memory, so merges happen.
        if rng.random() < 0.2:
            ops.append(Op("prctl", "P0", value=1))
        else:
            for op in list(ops):
                if rng.random() < 0.8:
                    ops.append(Op("madvise", "P0", op.region, 0, op.npages, advice="mergeable"))
    n = rng.randint(max(1, max_ops // 3), max_ops)
    while len(ops) < n:
        kind = rng.choices(names, wts)[0]
        proc = rng.choice(live)
        r = rng.choice(rlist)
        page, npages = _range(rng, r)
        if kind == "fork":
            if len(live) >= 4:
                continue
            child = f"P{born}"
            born += 1
            live.append(child)
            ops.append(Op("fork", proc, child=child))
        elif kind == "exit":
            if len(live) <= 1:
                continue
            live.remove(proc)
            ops.append(Op("exit", proc))
        elif kind == "write":
            ops.append(Op("write", proc, r.name, page, 1, value=rng.randint(0, 3)))
            if "ksm_scan" in weights and rng.random() < 0.5:
                # a second page of the same contents: something to merge
                other = rng.choice(rlist)
                ops.append(Op("write", rng.choice(live), other.name, rng.randrange(other.pages), 1,
                              value=ops[-1].value))
        elif kind == "read":
            ops.append(Op("read", proc, r.name, page, 1))
        elif kind == "mmap":
            flags = frozenset(("fixed",)) if rng.random() < 0.5 else frozenset()
            ops.append(Op("mmap", proc, r.name, page, npages, prot=rng.choice(_PROTS), flags=flags))
        elif kind == "munmap":
            ops.append(Op("munmap", proc, r.name, page, npages))
        elif kind == "mprotect":
            ops.append(Op("mprotect", proc, r.name, page, npages, prot=rng.choice(_PROTS)))
        elif kind == "madvise":
            advice = "dontneed"
            if "ksm_scan" in weights:
                advice = rng.choice(("dontneed", "mergeable", "mergeable", "unmergeable"))
            ops.append(Op("madvise", proc, r.name, page, npages, advice=advice))
        elif kind == "prctl":
            ops.append(Op("prctl", proc, value=rng.choice((1, 1, 0))))
        elif kind == "ksm_scan":
            ops.append(Op("ksm_scan", "", value=rng.randint(1, 3)))
        elif kind == "ksm_settle":
            ops.append(Op("ksm_settle", ""))
        elif kind == "ksm_set":
            knob = rng.choice(sorted(_KSM_SET_VALUES))
            ops.append(Op("ksm_set", "", advice=knob, value=rng.choice(_KSM_SET_VALUES[knob])))
        elif kind == "migrate":
            ops.append(Op("migrate", proc, r.name, page, 1))
        elif kind == "mremap":
            if rng.random() < 0.25:
                new_pages = rng.randint(1, r.pages - page)
                ops.append(Op("mremap", proc, r.name, page, npages, new_pages=new_pages))
                continue
            t = rng.choice(rlist)
            to_page = rng.randrange(t.pages)
            new_pages = rng.randint(1, t.pages - to_page)
            flags = frozenset()
            if rng.random() < 0.3:
                flags = frozenset(("dontunmap",))
                npages = min(npages, new_pages)
                new_pages = npages
            ops.append(Op("mremap", proc, r.name, page, npages, to_region=t.name, to_page=to_page,
                          new_pages=0 if new_pages == npages else new_pages, flags=flags))
        else:
            ops.append(Op(kind, proc))
    return Scenario(f"random-{seed}", regions, ops, source=f"<random {seed}>")
