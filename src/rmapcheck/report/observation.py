"""Text views of an :class:`~rmapcheck.scenario.ops.Observation`.

The same view serves the model and the live kernel, so a difference shows as
two maps that can be read against each other::

    P0  0123456789
        AAA.BB       VMAs (one letter each, '.' unmapped)
        rrr.ww       protection of each page ('-' none, 'r', 'w', 'x')
        z01.2.       frames: '.' none, 'z' zero page, else the frame number
"""

from __future__ import annotations

from rmapcheck.scenario.ops import Observation, Scenario

__all__ = ["describe_difference", "ksm_summary", "observation_map"]

_SYMS = "0123456789abcdefghijklmnopqrstuvwxy"


def _frame_sym(n: int | None, ksm: frozenset[int]) -> str:
    if n is None:
        return "."
    if n < 0:
        return "z"
    s = _SYMS[n % len(_SYMS)]
    return s.upper() if n in ksm else s


def observation_map(obs: Observation, scenario: Scenario, indent: str = "  ") -> str:
    """The observation as rows of one character per arena page, per process."""
    n = scenario.arena_pages
    ruler = "".join("0123456789abcdef"[i % 16] for i in range(n))
    names = [" "] * n
    for r in scenario.regions.values():
        names[r.at] = r.name[0]
    lines = [f"{indent}{'':4}{''.join(names)}", f"{indent}{'':4}{ruler}"]
    frames = dict(obs.frames)
    for proc, vmas in obs.layout:
        letters = ["."] * n
        prot = ["."] * n
        for i, (s, e, p) in enumerate(vmas):
            for j in range(s, e):
                letters[j] = chr(ord("A") + i % 26)
                prot[j] = "w" if p.startswith("rw") else ("x" if p[2] == "x" else
                                                          ("r" if p[0] == "r" else "-"))
        row = "".join(_frame_sym(x, obs.ksm) for x in frames.get(proc, ()))
        lines.append(f"{indent}{proc:<4}{''.join(letters)}   vmas")
        lines.append(f"{indent}{'':4}{''.join(prot)}   prot")
        lines.append(f"{indent}{'':4}{row}   frames")
    return "\n".join(lines)


def describe_difference(model: Observation, live: Observation) -> str:
    """One line naming what differs between the model's and the live kernel's view."""
    parts = []
    if model.result != live.result:
        parts.append(f"result: model {model.result}, live {live.result}")
    if model.layout != live.layout:
        parts.append(f"VMA layout: model {dict(model.layout)}, live {dict(live.layout)}")
    if model.frames != live.frames:
        parts.append("frames differ")
    if model.ksm != live.ksm:
        parts.append(f"KSM pages: model {sorted(model.ksm)}, live {sorted(live.ksm)}")
    return "; ".join(parts) or "no difference"


def ksm_summary(obs: Observation) -> str:
    """KSM's counters and each process's ``ksm_stat`` as two lines ("" if the run uses no KSM)::

        ksm: ksm_zero_pages 0  pages_shared 1  pages_sharing 1  pages_unshared 0  pages_volatile 0
        ksm_stat: P0 ksm_merging_pages 1 ksm_rmap_items 2 ksm_zero_pages 0; P1 ...
    """
    if not obs.counters:
        return ""
    counters = "  ".join(f"{k} {v}" for k, v in obs.counters)
    stats = "; ".join(f"{proc} " + " ".join(f"{k} {v}" for k, v in fields) for proc, fields in obs.ksm_stat)
    return f"ksm: {counters}\nksm_stat: {stats}"
