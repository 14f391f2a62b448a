"""What exhaustive search keeps per state: fingerprints, compressed frontier, lineage, --max-memory."""

from __future__ import annotations

import json

import pytest
from test_cli import one_error_line, rmapcheck

from rmapcheck.check.checker import Checker
from rmapcheck.check.compact import FINGERPRINT_BITS, Frontier, Lineage, fingerprint_key, parse_size
from rmapcheck.check.model import PRESETS, SEED_BOUNDS, KernelModel
from rmapcheck.check.world import Snapshot, _proc_signature, fingerprint


@pytest.mark.parametrize("text,size", [("2G", 2 << 30), ("500M", 500 << 20), ("1.5g", 3 << 29), ("64MiB", 64 << 20),
                                       ("4k", 4096), ("1000000", 1000000), (" 10 MB ", 10 << 20)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "2X", "G", "-1M", "0", "1e9", "2 G B"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_fingerprint_width():
    m = KernelModel("linux-6.18", PRESETS["small"])
    fp = fingerprint(m.init_state())
    assert len(fp) * 8 == FINGERPRINT_BITS
    assert fingerprint_key(fp).to_bytes(len(fp), "little") == fp


def _states(levels):
    # The pickles of every state of the first levels of the standard preset.
    m = KernelModel("linux-6.18", PRESETS["standard"])
    level, out = [m.dumps(m.init_state())], []
    for _ in range(levels):
        nxt = []
        for data in level:
            r = m.loads(data)
            snap = Snapshot(r)
            for op in m.actions(r):
                o = m.apply(r, op, judge=False)
                if not o.fatal and not o.blocked:
                    nxt.append(m.dumps(r))
                snap.restore()
        level = nxt
        out += nxt
    return out


def test_frontier_is_first_in_first_out():
    # Appends and takes interleaved, across chunks and partly filled ones.
    states = _states(3)
    assert len(states) > 3 * Frontier.CHUNK
    q = Frontier()
    taken = []
    for i, d in enumerate(states):
        q.append(d, i, i % 7)
        if i % 3 == 0:
            taken.append(q.popleft())
    while q:
        taken.append(q.popleft())
    assert taken == [(d, i, i % 7) for i, d in enumerate(states)]
    assert len(q) == 0
    with pytest.raises(IndexError):
        q.popleft()
    assert q.packed < sum(map(len, states))


def test_lineage_rebuilds_paths():
    m = KernelModel("linux-6.18", PRESETS["small"])
    ops = m.actions(m.init_state())
    lin = Lineage()
    a = lin.add(0, ops[0])
    b = lin.add(a, ops[1])
    c = lin.add(0, ops[1])
    d = lin.add(b, ops[0])
    assert lin.trace(0) == []
    assert lin.trace(a) == [ops[0]]
    assert lin.trace(c) == [ops[1]]
    assert lin.trace(d) == [ops[0], ops[1], ops[0]]
    assert lin.nbytes() >= 5 * 12


@pytest.mark.parametrize("path", ["ksm", "reuse"])
def test_bfs_traces_replay(path):
    # The traces breadth-first search rebuilds from its lineage reach their findings.
    design = "linux-2.6.36-pre" if path == "ksm" else "linux-2.6.36-seed-0526"
    m = KernelModel(design, SEED_BOUNDS[path])
    res = Checker(m).spawn_bfs().join()
    assert res.findings
    for f in res.findings:
        r = m.init_state()
        for op in f.trace[f.setup:]:
            out = m.apply(r, op)
        assert (f.property, f.function) in {(p, fn) for p, fn, _, _ in out.findings}


@pytest.mark.parametrize("strategy", ["spawn_bfs", "spawn_dfs"])
def test_memory_limit_stops_with_partial_result(strategy):
    m = KernelModel("linux-6.18", PRESETS["small"])
    full = getattr(Checker(m), strategy)().join()
    cut = getattr(Checker(m).memory_limit(1), strategy)().join()
    assert full.exhausted and not full.memory_stopped
    assert not cut.exhausted and cut.memory_stopped > 1
    assert cut.distinct < full.distinct
    assert [w for w in cut.warnings if "memory limit" in w] and not [w for w in full.warnings if "memory limit" in w]
    assert not [w for w in cut.warnings if "cut short" in w]


def test_max_memory_option(tmp_path):
    p = rmapcheck("check", "--design", "linux-6.18", "--preset", "small", "--max-memory", "1M", "--json",
                  "--save-dir", str(tmp_path))
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["memory_limit_reached"] is True and d["exhausted"] is False
    assert len([w for w in d["warnings"] if "memory limit" in w]) == 1
    p = rmapcheck("check", "--design", "linux-6.18", "--preset", "small", "--max-memory", "1M",
                  "--save-dir", str(tmp_path))
    assert p.returncode == 0 and "warning: the memory limit was reached" in p.stdout


@pytest.mark.parametrize("size", ["2X", "0", "lots"])
def test_bad_max_memory(size):
    p = rmapcheck("check", "--design", "linux-6.18", "--preset", "small", "--max-memory", size)
    assert p.returncode == 2
    assert "--max-memory" in one_error_line(p)


def test_renamed_processes_share_a_fingerprint():
    # Every two-process state of three levels of the standard preset whose
    # processes' signatures differ (a tie is broken by name), with the
    # names swapped: the same fingerprint, whether the cheap part of the
    # signatures tells the processes apart or not.
    m = KernelModel("linux-6.18", PRESETS["standard"])
    checked = 0
    for data in _states(3):
        r = m.loads(data)
        names = sorted(r.k.tasks)
        if len(names) != 2 or _proc_signature(r, names[0]) == _proc_signature(r, names[1]):
            continue
        s = m.loads(data)
        swap = dict(zip(names, reversed(names)))
        s.k.tasks = {swap[c]: t for c, t in s.k.tasks.items()}
        for c, t in s.k.tasks.items():
            t.comm = c
        s.memory = {swap.get(c, c): v for c, v in s.memory.items()}
        assert fingerprint(s) == fingerprint(r)
        checked += 1
    assert checked > 50


def test_configuration_encoding_is_remembered_exactly():
    # The configuration's encoding is remembered while the dict holds the
    # same scalars; a value equal but of another type (True == 1), another
    # value, another key order or a key of a str subclass is not the same
    # configuration, and going back gives the first fingerprint again.
    m = KernelModel("linux-6.18", PRESETS["small"])
    r = m.init_state()
    first = fingerprint(r)
    assert fingerprint(r) == first
    key = next(k for k, v in r.k.config.items() if v is True)
    seen = {first}
    for change in ({key: 1}, {key: False}, {key: 2}):
        r.k.config.update(change)
        fp = fingerprint(r)
        assert fp not in seen, change
        seen.add(fp)
        assert fingerprint(r) == fp
    r.k.config[key] = True
    assert fingerprint(r) == first
    reordered = {key: True, **{k: v for k, v in r.k.config.items() if k != key}}
    if list(reordered) != list(r.k.config):
        r.k.config = reordered  # the same items in another order: the same form
        assert fingerprint(r) == first

    class name(str):
        pass

    r.k.config = {name(k) if k == key else k: v for k, v in r.k.config.items()}
    assert fingerprint(r) != first
