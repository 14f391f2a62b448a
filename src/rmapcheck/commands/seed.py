"""``rmapcheck seed``: the 2010 review question, answered by running it.

"anon_vma_fork keeps the refcount around during fork but what about during
exit?" (Mel Gorman on "[PATCH 5/5] extend KSM refcounts to the anon_vma root",
2010-05-13). The three designs of the root series are checked at the bounds of
:data:`rmapcheck.check.model.SEED_BOUNDS`, once per path to the question
(KSM, migration, slab reuse): without 5/5 the root is freed under a held
child (B0), 5/5 as reposted on 2010-05-26 over-drops the root and leaks after
slab reuse (B1), the merged commit 76545066c852 is clean. A fourth path, a
reclaim walk interleaved at its lock, shows the bug the series itself brought
in, which both postings have and v2.6.36 fixed (B4, f18194275c39): the
walker's anon_vma is freed and reused with another root, and
``page_unlock_anon_vma()`` unlocks a lock it never took.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rmapcheck.check.model import SEED_BOUNDS
from rmapcheck.commands.check import print_result, run_check
from rmapcheck.report.finding import finding_place

__all__ = ["SEED_DESIGNS", "command", "run_seed"]

SEED_DESIGNS = ("linux-2.6.36-pre", "linux-2.6.36-seed-0526", "linux-2.6.36")

#: what each design must show: (path, property) pairs that must be found
EXPECTED = {
    "linux-2.6.36-pre": {("ksm", "use-after-free"), ("migration", "use-after-free"), ("reclaim", "lock-misuse")},
    "linux-2.6.36-seed-0526": {("reuse", "leak"), ("reclaim", "lock-misuse")},
    "linux-2.6.36": set(),
}


def run_seed(designs: tuple[str, ...] = SEED_DESIGNS) -> list[tuple[str, str, object, object]]:
    """Check every design at every seed bound; return ``(design, path, model, result)`` rows."""
    rows = []
    for d in designs:
        for path, b in SEED_BOUNDS.items():
            m, res = run_check(d, b)
            rows.append((d, path, m, res))
    return rows


@click.command("seed")
@click.option("--save-dir", default="rmapcheck-traces", show_default=True, help="where traces are saved")
@click.option("--quiet", is_flag=True, help="print the table only")
def command(save_dir: str, quiet: bool) -> None:
    """Run the three designs of the 2010 root anon_vma series and print what each one does."""
    rows = run_seed()
    click.echo("The seed question (LKML, 2010-05-13): can exit free the root anon_vma while KSM or")
    click.echo("page migration still holds a child whose lock lives in that root?")
    click.echo("")
    hdr = f"{'design':<24} {'path':<10} {'verdict':<10} {'finding':<44} {'trace':>5} {'states':>7} {'seconds':>8}"
    click.echo(hdr)
    click.echo("-" * len(hdr))
    ok = True
    for d, path, _m, res in rows:
        findings = res.findings  # type: ignore[attr-defined]
        if findings:
            f = findings[0]
            what = f"{f.property} {finding_place(f.error)}" if f.error is not None else f.property
            if len(findings) > 1:
                what += f" (+{len(findings) - 1})"
            tl = str(f.trace_length)
        else:
            what, tl = "-", "-"
        click.echo(f"{d:<24} {path:<10} {res.verdict:<10} {what:<44} {tl:>5} "  # type: ignore[attr-defined]
                   f"{res.distinct:>7} {res.seconds:>8.2f}")  # type: ignore[attr-defined]
        got = {(path, f.property) for f in findings}
        want = {w for w in EXPECTED.get(d, set()) if w[0] == path}
        if not want <= got or (not EXPECTED.get(d) and findings) or not res.exhausted:  # type: ignore[attr-defined]
            ok = False
    click.echo("")
    click.echo("bounds:")
    for p, b in SEED_BOUNDS.items():
        click.echo(f"  {p}: {b.text()}")
    if not quiet:
        for d, path, m, res in rows:
            if res.findings:  # type: ignore[attr-defined]
                click.echo("")
                click.echo(f"== {d}, {path} path")
                print_result(m, res, Path(save_dir) / path)  # type: ignore[arg-type]
    verdict = "as the history says" if ok else "NOT as the history says"
    click.echo("")
    click.echo(f"seed: B0 on linux-2.6.36-pre, B1 on linux-2.6.36-seed-0526, B4 on both, "
               f"linux-2.6.36 clean: {verdict}")
    if not ok:
        sys.exit(1)
