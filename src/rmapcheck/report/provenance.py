"""Where a counterexample comes from: its file's hash, its design, and which kernel its bug belongs to.

The HTML step-through (:mod:`rmapcheck.report.html`) and the C reproducer
(:mod:`rmapcheck.live.repro`) both open with these lines, so a page or a
program mailed on its own still says what it shows: the trace or scenario
file and the first eight hex digits of the SHA-256 of its bytes (for a trace
saved by ``rmapcheck check``, the ``HASH`` of its file name), the design it
was found on with the first line of that design's docstring and the designs
it is based on, and a verdict: the finding's kernel, or that the design runs
the steps clean. For a design other than ``linux-6.18`` (the kernel this
project checks against the live machine) the verdict also says whether
``linux-6.18`` runs the same steps clean, which is what a reproducer run on a
fixed kernel should show.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rmapcheck

from rmapcheck.designs import DesignError, config_text, load_design

__all__ = ["FindingSummary", "Provenance", "design_line", "file_hash", "provenance", "shown_path"]

#: the design of the running kernel, which the live comparison checks
RUNNING = "linux-6.18"


@dataclass(frozen=True)
class FindingSummary:
    """One finding of a run: at which step, which property, in which function, with what message."""

    step: int
    property: str
    function: str
    message: str


@dataclass(frozen=True)
class Provenance:
    """What a page or a program says about the counterexample it shows.

    :param kind: ``trace`` or ``scenario``.
    :param source: the file as it was named.
    :param sha256: the SHA-256 of its bytes (hex).
    :param design: the design the steps ran on.
    :param design_doc: the first line of that design's docstring.
    :param based_on: the designs it is based on, nearest first.
    :param settings: model-only settings of the run (``rcu_windows: false`` ...).
    :param findings: the findings of the run on ``design``.
    :param running_clean: whether ``linux-6.18`` runs the steps without a
        finding (``None``: not asked, the design is ``linux-6.18`` or its
        switches are not ``linux-6.18``'s).
    """

    kind: str
    source: str
    sha256: str
    design: str
    design_doc: str
    based_on: tuple[str, ...]
    settings: tuple[str, ...]
    findings: tuple[FindingSummary, ...] = ()
    running_clean: bool | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def hash(self) -> str:
        """The short hash: the first eight hex digits of :attr:`sha256`."""
        return self.sha256[:8]

    def verdict(self) -> str:
        """One sentence: which kernel the bug belongs to, or that there is none."""
        where = design_line(self.design, self.design_doc, self.based_on)
        if not self.findings:
            return f"No finding: {where} runs these steps clean."
        f = self.findings[0]
        text = (f"The bug belongs to {where}: {f.property} in {f.function} at step {f.step} "
                f"({f.message}).")
        if self.running_clean is True:
            text += f" {RUNNING}, the kernel the live comparison checks, runs the same steps clean."
        elif self.running_clean is False:
            text += f" {RUNNING}, the kernel the live comparison checks, fails on the same steps too."
        return text

    def lines(self) -> list[str]:
        """The header lines: source and hash, design, settings, verdict."""
        out = [f"{self.kind} {shown_path(self.source)} (sha256 {self.hash}, {self.sha256})",
               f"design: {design_line(self.design, self.design_doc, self.based_on)}"]
        if self.settings:
            out.append("model settings: " + "; ".join(self.settings))
        out.append(self.verdict())
        return out + list(self.notes)


def design_line(design: str, doc: str, based_on: tuple[str, ...]) -> str:
    """``linux-6.18.0 (v6.18 as released, ...; based on linux-6.18)``: a design, its docstring's first line, its bases."""
    text = doc.replace("``", "").strip().rstrip(".")
    for prefix in (f"Design {design}:", f"{design}:"):
        if text.startswith(prefix):
            text = text[len(prefix):].strip()
    bits = [text] if text else []
    if based_on:
        bits.append("based on " + ", based on ".join(based_on))
    return f"{design} ({'; '.join(bits)})" if bits else design


def shown_path(path: str) -> str:
    """``path`` as a page or program shows it: a file of the package (a bundled trace or
    scenario) relative to the package's parent (``rmapcheck/scenarios/fork-cow-child.yaml``),
    anything else as given, so no path of the machine that wrote it shows."""
    package = Path(rmapcheck.__file__).resolve().parent
    p = Path(path).resolve()
    return str(p.relative_to(package.parent)) if p.is_relative_to(package) else path


def file_hash(path: str) -> str:
    """The SHA-256 of the bytes of ``path`` (hex)."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def provenance(kind: str, source: str, scenario: Any, design: str,
               findings: list[FindingSummary], config: dict[str, Any] | None = None) -> Provenance:
    """The :class:`Provenance` of ``scenario`` (loaded from ``source``) run on ``design`` with these findings.

    :raises DesignError: ``design`` does not load.
    """
    d = load_design(design)
    based_on: list[str] = []
    base = d.base
    while base is not None:
        based_on.append(base)
        base = load_design(base).base
    settings = list(scenario.settings.model_only())
    if config and not scenario.settings.config:
        settings.append(config_text(config))
    running: bool | None = None
    if findings and design != RUNNING:
        running = _clean_on(scenario, RUNNING)
    return Provenance(kind, source, file_hash(source), design, d.doc, tuple(based_on), tuple(settings),
                      tuple(findings), running)


def _clean_on(scenario: Any, design: str) -> bool | None:
    # Whether design runs the steps with no finding (None: its switches differ).
    from rmapcheck.check.trace import judged_run

    try:
        for _i, _op, out in judged_run(scenario, design):
            if out.findings:
                return False
    except DesignError:
        return None
    return True
