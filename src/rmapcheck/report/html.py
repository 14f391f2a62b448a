"""A counterexample as one self-contained HTML page that steps through it.

``rmapcheck replay TRACE --html OUT.html`` and ``rmapcheck run FILE --html
OUT.html`` write it. The page holds everything inline (the data, the
stylesheet, the script: no network, so it opens from a mail attachment) and
is built in two parts:

* the data: one snapshot per step (:func:`~rmapcheck.report.snapshot.kernel_snapshot`,
  plain JSON) with the step's operation, result and findings, and the
  findings with their objects, call chains and where the objects were
  allocated and freed (:func:`record`);
* a small script (``html_assets/page.js``) that draws the current step from
  its snapshot: each process's VMAs on an address line, the pages with their
  folios and the anon_vma each folio's ``mapping`` points to, the anon_vma
  forest, KSM's trees and rmap_items, the kernel threads in flight and the
  holders of the finding's objects. Keyboard (arrows, ``j``/``k``,
  ``Home``/``End``) and buttons step through; an object keeps its name and
  colour in every step, and the object of a finding is outlined wherever it
  appears, with its allocation, free and bad access marked on their steps.

Why plain string templating and a hand-written layout rather than a
template engine or a graph-layout library: docs/html.md.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rmapcheck.check.trace import Trace, judged_run
from rmapcheck.report.finding import finding_chain, format_finding
from rmapcheck.report.holders import find_object, involved_objects
from rmapcheck.report.provenance import FindingSummary, Provenance, provenance
from rmapcheck.report.snapshot import kernel_snapshot, object_name
from rmapcheck.scenario.ops import Scenario

__all__ = ["FindingRecord", "Recording", "record", "render_page", "scenario_page", "trace_page"]


@dataclass(frozen=True)
class FindingRecord:
    """A finding as the page shows it (all plain data).

    :param object: the name of its object (``None``: it names none).
    :param involved: the names of the objects it involves, its own first.
    :param allocated: ``[step, function]`` of the object's allocation, or ``None``.
    :param freed: ``[step, function]`` of its free, or ``None``; with ``reused`` the
        free of the slot's previous object (the slot was allocated again since).
    :param report: the KASAN-style report, as ``rmapcheck run`` prints it.
    """

    step: int
    property: str
    function: str
    message: str
    chain: tuple[str, ...]
    detector: str
    object: str | None
    involved: tuple[str, ...]
    allocated: tuple[int, str] | None
    freed: tuple[int, str] | None
    reused: bool
    report: str

    def as_dict(self) -> dict[str, Any]:
        """The finding as the page's data has it."""
        return {"step": self.step, "property": self.property, "function": self.function,
                "message": self.message, "chain": list(self.chain), "detector": self.detector,
                "object": self.object, "involved": list(self.involved),
                "allocated": list(self.allocated) if self.allocated else None,
                "freed": list(self.freed) if self.freed else None, "reused": self.reused,
                "report": self.report}


@dataclass
class Recording:
    """A run recorded for the page: the scenario, one snapshot per step, the findings."""

    scenario: Scenario
    design: str
    steps: list[dict[str, Any]]
    findings: list[FindingRecord]


def _site(site: tuple[Any, ...] | None) -> tuple[int, str] | None:
    return (int(site[0]), str(site[1])) if site else None


def record(scenario: Scenario, design: str, until: tuple[str, str] | None = None) -> Recording:
    """Run ``scenario`` on ``design`` as ``rmapcheck run`` does and snapshot every step.

    A first run finds the findings and their objects; a second takes the
    snapshots, listing in each the holders of those objects (found by name,
    as ``rmapcheck replay`` does).

    :param until: ``(property, function)``: stop after the step where that
        finding appears (a trace's own, as :func:`~rmapcheck.check.trace.replay` stops).
    :raises DesignError: a switch of the scenario's header the design does not have.
    """
    findings: list[FindingRecord] = []
    idents: dict[tuple[str, int], None] = {}
    texts: list[str] = []
    last = len(scenario.ops)
    for i, op, out in judged_run(scenario, design):
        texts.append(op.text())
        for prop, fn, msg, err in out.findings:
            obj = getattr(err, "obj", None)
            involved = involved_objects(err)
            for o in involved:
                if o._cache is not None and o._alloc:
                    idents.setdefault((o._cache.name, o._alloc[2]), None)
            findings.append(FindingRecord(
                step=i, property=prop, function=fn, message=msg, chain=finding_chain(err),
                detector=getattr(err, "detector", ""),
                object=object_name(obj) if obj is not None and hasattr(obj, "_alloc") else None,
                involved=tuple(object_name(o) for o in involved),
                allocated=_site(getattr(obj, "_alloc", None)), freed=_site(getattr(obj, "_free", None)),
                reused=bool(getattr(obj, "_live", False) and getattr(obj, "_free", None)),
                report=format_finding(err, list(texts), i, out.state.k, scenario)))
            if until is not None and (prop, fn) == until:
                last = i
        if i >= last:
            break
    steps: list[dict[str, Any]] = []
    for i, op, out in judged_run(scenario, design):
        k = out.state.k
        objs = [o for o in (find_object(k, *ident) for ident in idents) if o is not None]
        snap = kernel_snapshot(k, scenario, design, objs)
        snap.update(step=i, op=op.text(), line=op.line, result=out.result or "stopped",
                    fatal=out.fatal, findings=[f.as_dict() for f in findings if f.step == i])
        steps.append(snap)
        if i >= last:
            break
    return Recording(scenario, design, steps, findings)


def _asset(name: str) -> str:
    return resources.files("rmapcheck.report").joinpath("html_assets", name).read_text(encoding="utf-8")


def render_page(rec: Recording, prov: Provenance, setup: int = 0, name: str = "") -> str:
    """The whole page: data, stylesheet and script inline.

    :param setup: how many of the first steps are the checker's setup (shown as such).
    :param name: what the title calls the run (default: the scenario's name).
    """
    s = rec.scenario
    data = {
        "title": f"{name or s.name} on {rec.design}",
        "provenance": prov.lines(),
        "design": rec.design,
        "hash": prov.hash,
        "verdict": prov.verdict(),
        "pages": s.arena_pages,
        "regions": [{"name": r.name, "at": r.at, "pages": r.pages} for r in s.regions.values()],
        "setup": setup,
        "findings": [f.as_dict() for f in rec.findings],
        "steps": rec.steps,
    }
    # Inside <script>, "</" would end the element: JSON allows "<\/" for it.
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(data["title"])
    head = "".join(f"<p>{html.escape(line)}</p>" for line in prov.lines())
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"generator\" content=\"rmapcheck\"><title>{title}</title>"
            f"<style>{_asset('page.css')}</style></head>\n<body>"
            f"<header><h1>{title}</h1><div id=\"provenance\">{head}</div></header>\n"
            f"{_asset('page.html')}\n"
            f"<script type=\"application/json\" id=\"rmapcheck-data\">{blob}</script>\n"
            f"<script>{_asset('page.js')}</script>\n</body></html>\n")


def trace_page(path: str, t: Trace) -> str:
    """The page of trace ``t`` read from ``path``: up to the step where its own finding reproduces."""
    rec = record(t.scenario, t.design, until=(t.property, t.function))
    prov = provenance("trace", path, t.scenario, t.design, _summaries(rec), t.config)
    return render_page(rec, prov, t.setup, Path(path).stem)


def scenario_page(path: str, s: Scenario, design: str) -> str:
    """The page of scenario ``s`` (read from ``path``) run on ``design``."""
    rec = record(s, design)
    prov = provenance("scenario", path, s, design, _summaries(rec))
    return render_page(rec, prov)


def _summaries(rec: Recording) -> list[FindingSummary]:
    return [FindingSummary(f.step, f.property, f.function, f.message) for f in rec.findings]
