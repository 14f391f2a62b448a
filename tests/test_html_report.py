"""Snapshots of the kernel state, the provenance of a counterexample, and the HTML page built from them."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from fuzzing import invoke

from rmapcheck.check.trace import judged_run, load_trace
from rmapcheck.commands.common import BUNDLED, BUNDLED_TRACES
from rmapcheck.report.html import record, scenario_page, trace_page
from rmapcheck.report.snapshot import ERA_FIELDS, anon_vma_fields, kernel_snapshot
from rmapcheck.scenario.execute import model_observation
from rmapcheck.scenario.parse import load_scenario

TRACES = sorted(BUNDLED_TRACES.glob("*.json"))
MREMAP = BUNDLED_TRACES / "linux-6.18.0-use-after-free-check_invariants-497a5d7d.json"
MIGRATION = BUNDLED_TRACES / "linux-2.6.36-pre-use-after-free-anon_vma_lock_read-1db99869.json"


def _blob(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="rmapcheck-data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


@pytest.mark.parametrize("name", ["fork-cow-mprotect-merge", "mremap-faulted-unfaulted-merge", "ksm-fork-after-merge",
                                  "split-mprotect-middle", "ksm-migrate-ksm-page-after-fork"])
def test_snapshot_shows_what_the_observation_shows(name):
    # Every step: the snapshot's VMAs and page table entries are the observation's.
    s = load_scenario(str(BUNDLED / f"{name}.yaml"))
    for _i, _op, out in judged_run(s, "linux-6.18"):
        k = out.state.k
        snap = kernel_snapshot(k, s)
        obs = model_observation(k, s, out.result)
        assert [(p["name"], tuple((v["start"], v["end"], v["prot"]) for v in p["vmas"])) for p in snap["processes"]] \
            == [(proc, vmas) for proc, vmas in obs.layout]
        frames = dict(obs.frames)
        for p in snap["processes"]:
            present = {e["page"] for e in p["ptes"]}
            assert present == {i for i, f in enumerate(frames[p["name"]]) if f is not None}
            assert {e["page"] for e in p["ptes"] if e["zero"]} == {i for i, f in enumerate(frames[p["name"]]) if f == -1}
        # every folio a page table maps, with the anon_vma (or KSM node) its mapping points to, is listed
        folios = {f["name"]: f for f in snap["folios"]}
        avs = {a["name"] for a in snap["anon_vmas"]}
        for p in snap["processes"]:
            for e in p["ptes"]:
                if not e["zero"]:
                    f = folios[e["folio"]]
                    assert f["mapping_kind"] == "ksm" or f["mapping"] in avs
        json.dumps(snap)  # plain data


def test_names_are_stable_across_steps_and_the_freed_object_is_kept():
    t = load_trace(str(MREMAP))
    rec = record(t.scenario, t.design, until=(t.property, t.function))
    assert [s["step"] for s in rec.steps] == list(range(1, 7))
    (f,) = rec.findings
    assert (f.object, f.allocated[0], f.freed[0], f.step) == ("anon_vma#0", 3, 6, 6)
    present = [s["step"] for s in rec.steps if any(a["name"] == "anon_vma#0" for a in s["anon_vmas"])]
    assert present == [3, 4, 5, 6]
    last = rec.steps[-1]
    (av,) = [a for a in last["anon_vmas"] if a["name"] == "anon_vma#0"]
    assert av["freed"] and av["chains"] == []
    # the page still points to it: the use-after-free
    (page,) = last["folios"]
    assert page["mapping"] == "anon_vma#0"
    assert last["processes"][0]["vmas"][0]["anon_vma"] is None
    holders = {h["object"]: h for h in last["holders"]}
    assert [x["field"] for x in holders["anon_vma#0"]["holders"]] == ["mapping"]


def test_era_fields():
    assert anon_vma_fields("linux-6.18") == ERA_FIELDS["linux-6.18"]
    assert anon_vma_fields("linux-6.18.0") == ERA_FIELDS["linux-6.18"]
    for d in ("linux-2.6.36-pre", "linux-2.6.36-seed-0526", "linux-2.6.36"):
        assert anon_vma_fields(d) == (("refcount", "external_refcount"),)
    t = load_trace(str(MIGRATION))
    rec = record(t.scenario, t.design, until=(t.property, t.function))
    counters = {c[0] for s in rec.steps for a in s["anon_vmas"] for c in a["counters"]}
    assert counters == {"external_refcount"}


def test_migration_in_flight_and_its_references():
    t = load_trace(str(MIGRATION))
    rec = record(t.scenario, t.design, until=(t.property, t.function))
    by_step = {s["step"]: s for s in rec.steps}
    assert t.scenario.ops[5].kind == "migrate_start"
    (m,) = by_step[6]["migrations"]
    assert m["kind"] == "migration" and m["phase"] != "done"
    assert any(r["object"] == m["folio"] and r["field"] == "src" for r in m["references"])
    pinned = [s for s in rec.steps if any(r["field"] == "anon_vma" for x in s["migrations"] for r in x["references"])]
    assert pinned, "the migration's anon_vma pin is never shown"


def test_ksm_trees_and_rmap_items():
    s = load_scenario(str(BUNDLED / "ksm-fork-after-merge.yaml"))
    for _i, _op, out in judged_run(s, "linux-6.18"):
        snap = kernel_snapshot(out.state.k, s)
    obs = model_observation(out.state.k, s, out.result)
    k = snap["ksm"]
    items = sum(dict(fields)["ksm_rmap_items"] for _p, fields in obs.ksm_stat)
    assert len(k["rmap_items"]) == items
    (node,) = k["stable_tree"]
    assert node["kind"] == "node" and sorted(node["items"]) == sorted(r["name"] for r in k["rmap_items"]
                                                                     if r["stable_node"] == node["name"])
    assert dict(obs.counters)["pages_shared"] == k["counters"]["pages_shared"] == 1


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.stem)
def test_trace_page_is_self_contained_and_says_where_it_comes_from(path):
    t = load_trace(str(path))
    page = trace_page(str(path), t)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha[:8] in path.name  # the HASH of the saved trace's name is the file's
    head = page[:page.index("<script")]
    assert sha[:8] in head and t.design in head and "The bug belongs to " + t.design in head
    # nothing is fetched: no external script, stylesheet, image or font
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\((?!#)", page)
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page)) <= {"http://www.w3.org/2000/svg"}
    data = _blob(page)
    assert data["design"] == t.design and data["hash"] == sha[:8]
    # up to the step where the trace's own finding reproduces
    assert data["steps"][-1]["step"] == data["findings"][-1]["step"]
    assert data["findings"][-1]["property"] == t.property and data["findings"][-1]["function"] == t.function


def test_scenario_page_names_no_bug_when_clean():
    p = BUNDLED / "fork-cow-child.yaml"
    s = load_scenario(str(p))
    data = _blob(scenario_page(str(p), s, "linux-6.18"))
    assert data["findings"] == [] and data["verdict"].startswith("No finding: linux-6.18")
    assert len(data["steps"]) == len(s.ops)


def test_run_and_replay_write_pages(tmp_path):
    out = tmp_path / "run.html"
    o = invoke("run", "mremap-faulted-unfaulted-merge", "--design", "linux-6.18.0", "--quiet", "--html", str(out))
    assert o.status == 1, o.err  # the finding
    data = _blob(out.read_text())
    assert data["findings"] and data["design"] == "linux-6.18.0"
    assert "linux-6.18, the kernel the live comparison checks, runs the same steps clean" in data["verdict"]
    out2 = tmp_path / "replay.html"
    o = invoke("replay", MREMAP.stem, "--quiet", "--html", str(out2))
    assert o.status == 0, o.err
    assert _blob(out2.read_text())["findings"][0]["object"] == "anon_vma#0"
    o = invoke("replay", MREMAP.stem, "--quiet", "--html", str(tmp_path / "no" / "such" / "dir.html"))
    assert o.status == 2 and o.err.count("\n") == 1 and "cannot write" in o.err
