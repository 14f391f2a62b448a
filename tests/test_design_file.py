"""A design is a file: a user's module outside the package, checked, replayed, refused when changed.

The design files here are written to ``tmp_path`` as a user would write
them, and driven through the command line in a subprocess: ``check`` finds
the planted bug and saves a trace, ``replay`` reproduces it, and after the
file changes (or goes) ``replay`` refuses the trace with one line naming the
file. Replacing a function that a layer wraps (KSM's around ``do_wp_page``)
keeps the layer; bad design files are one-line errors with exit status 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_cli import one_error_line, rmapcheck

from rmapcheck.check.checker import Checker
from rmapcheck.check.model import Bounds, KernelModel
from rmapcheck.commands.common import load
from rmapcheck.designs import DesignError, get_design, linux_6_18, load_design, make_kernel
from rmapcheck.model import memory
from rmapcheck.model.kernel import Kernel
from rmapcheck.model.ksm import KSM_LAYER, ksm_state_of
from rmapcheck.scenario.execute import ModelRunner


def bad_input(p: subprocess.CompletedProcess) -> str:
    # Bad input: one line on stderr, exit status 2.
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    return one_error_line(p)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


#: One kernel function replaced: the root's reference is never dropped when a
#: child anon_vma is freed (the root then outlives every user: a leak).
ROOT_PIN_LEAK = '''
    """__put_anon_vma() without the root's reference drop (a planted bug)."""
    BASE = "linux-6.18"


    def __put_anon_vma(k, av, function="__put_anon_vma"):
        k.ops.anon_vma_free(k, av, function)


    REPLACE = {"__put_anon_vma": __put_anon_vma}
'''


def test_a_design_file_is_checked_its_trace_replayed_and_a_changed_file_refused(tmp_path):
    design = write(tmp_path / "rootpin.py", ROOT_PIN_LEAK)
    traces = tmp_path / "traces"
    p = rmapcheck("check", "--design", str(design), "--preset", "small", "--save-dir", str(traces), "--json")
    assert p.returncode == 1, p.stderr
    res = json.loads(p.stdout)
    leaks = [f for f in res["findings"] if f["property"] == "leak"]
    assert leaks, res["findings"]
    trace = leaks[0]["trace"]
    assert Path(trace).name.startswith("rootpin-leak-")
    saved = json.loads(Path(trace).read_text())
    assert saved["design"] == str(design)
    assert [f["path"] for f in saved["design_files"]] == [str(design)]

    p = rmapcheck("replay", "--quiet", trace)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "reproduced: leak in check_invariants" in p.stdout

    design.write_text(design.read_text() + "# an edit after the check\n")
    err = bad_input(rmapcheck("replay", trace))
    assert f"design file {design} changed" in err and trace in err

    design.unlink()
    err = bad_input(rmapcheck("replay", trace))
    assert f"design file {design} is missing" in err


def test_a_design_file_based_on_another_records_both(tmp_path):
    base = write(tmp_path / "base.py", ROOT_PIN_LEAK)
    sub = tmp_path / "sub"
    sub.mkdir()
    top = write(sub / "top.py", '''
        """Based on ../base.py: KSM built out."""
        BASE = "../base.py"
        CONFIG = {"CONFIG_KSM": False}
    ''')
    d = load_design(str(top))
    assert d.base == str(base)
    assert [p for p, _ in d.files] == [str(top), str(base)]
    assert d.config["CONFIG_KSM"] is False
    assert d.ops["__put_anon_vma"].__module__.startswith("rmapcheck_design_base_")
    bounds = Bounds(processes=2, regions=1, pages=1, depth=5, ops=("write", "fork", "exit", "ksm_scan"))
    m = KernelModel(str(top), bounds)
    assert "ksm_scan" not in m.ops_enabled
    res = Checker(m).first_violation().spawn_bfs().join()
    assert res.findings
    # The base changing changes the design: its trace is refused.
    from rmapcheck.check.trace import TraceError, load_trace, save_trace

    path = tmp_path / "t.json"
    save_trace(str(path), m, res.findings[0])
    assert load_trace(str(path)).design == str(top)
    base.write_text(base.read_text() + "\n")
    with pytest.raises(TraceError, match=f"design file {base} changed"):
        load_trace(str(path))


KSM_ZERO_WRITE = "ksm-zero-pages-write-after"


def _ksm_zero_pages_after(kernel: Kernel) -> int:
    s = load(KSM_ZERO_WRITE)
    r = ModelRunner(s, "linux-6.18", kernel=kernel)
    for op in s.ops:
        r.step(op)
    return ksm_state_of(r.k).zero_pages


#: A patch to the write fault that KSM does not know about (here the same
#: code), declared in REPLACE or in REPLACE_OUTER.
WP_PATCH = '''
    """do_wp_page() replaced (by the same code)."""
    from rmapcheck.model import memory

    BASE = "linux-6.18"


    def do_wp_page(k, vma, vpn):
        memory.do_wp_page(k, vma, vpn)


    {declaration} = {{"do_wp_page": do_wp_page}}
'''


def test_replacing_do_wp_page_keeps_ksms_wrapper(tmp_path):
    # The write to a KSM zero page must still uncount it (the live kernel's
    # ksm_zero_pages drops from 2 to 1 in this scenario).
    write(tmp_path / "wp.py", WP_PATCH.format(declaration="REPLACE"))
    d = load_design(str(tmp_path / "wp.py"))
    assert d.wrapped_by("do_wp_page") == ["ksm"]
    assert d.ops["do_wp_page"] is not d.functions["do_wp_page"]
    assert _ksm_zero_pages_after(make_kernel(str(tmp_path / "wp.py"))) == 1
    assert _ksm_zero_pages_after(make_kernel("linux-6.18")) == 1
    # The flat table of before, {**OPS, "do_wp_page": f}, drops KSM's wrapper:
    # the zero page stays counted.
    flat = Kernel({**linux_6_18.OPS, "do_wp_page": d.functions["do_wp_page"]}, dict(linux_6_18.CONFIG))
    assert _ksm_zero_pages_after(flat) == 2


def test_replace_outer_replaces_the_wrapped_function(tmp_path):
    # After the layers: KSM's wrapper is then the design's business.
    write(tmp_path / "outer.py", WP_PATCH.format(declaration="REPLACE_OUTER"))
    d = load_design(str(tmp_path / "outer.py"))
    assert d.ops["do_wp_page"] is d.outer["do_wp_page"]
    assert _ksm_zero_pages_after(make_kernel(str(tmp_path / "outer.py"))) == 2
    # Keeping the layer by hand: wrap the outer function with KSM's wrapper.
    write(tmp_path / "outer2.py", '''
        from rmapcheck.model import memory
        from rmapcheck.model.ksm import KSM_LAYER

        BASE = "linux-6.18"
        REPLACE_OUTER = {"do_wp_page": KSM_LAYER.wraps["do_wp_page"](memory.do_wp_page)}
    ''')
    assert _ksm_zero_pages_after(make_kernel(str(tmp_path / "outer2.py"))) == 1
    assert KSM_LAYER.name == "ksm"
    # A design based on one that replaced an outer function cannot silently
    # replace the inner one underneath it.
    write(tmp_path / "inner.py", '''
        BASE = "outer.py"
        from rmapcheck.model import memory
        REPLACE = {"do_wp_page": memory.do_wp_page}
    ''')
    with pytest.raises(DesignError, match="REPLACE_OUTER"):
        load_design(str(tmp_path / "inner.py"))


def test_add_and_layers(tmp_path):
    write(tmp_path / "layered.py", '''
        from rmapcheck.model.kernel import Layer

        BASE = "linux-6.18"
        CALLS = []


        def anon_vma_fork_helper(k, vma, pvma):
            return 0


        def counting(inner):
            def anon_vma_clone(k, dst, src):
                CALLS.append(dst)
                return inner(k, dst, src)
            return anon_vma_clone


        ADD = {"anon_vma_fork_helper": anon_vma_fork_helper}
        LAYERS = [Layer("count-clones", {"anon_vma_clone": counting})]
    ''')
    d = load_design(str(tmp_path / "layered.py"))
    assert "anon_vma_fork_helper" in d.ops and d.changed == {"anon_vma_fork_helper"}
    assert d.wrapped_by("anon_vma_clone") == ["count-clones"]
    assert [layer.name for layer in d.layers] == ["ksm", "migration-refs", "count-clones"]
    s = load("fork-cow-child")
    r = ModelRunner(s, str(tmp_path / "layered.py"))
    for op in s.ops:
        r.step(op)
    calls = sys.modules[d.ops["anon_vma_clone"].__module__].CALLS
    assert len(calls) == 1  # the fork
    write(tmp_path / "add-existing.py", '''
        from rmapcheck.model import rmap
        BASE = "linux-6.18"
        ADD = {"anon_vma_clone": rmap.anon_vma_clone}
    ''')
    with pytest.raises(DesignError, match="already has: replace it in REPLACE"):
        load_design(str(tmp_path / "add-existing.py"))


BAD = {
    # name: (file text, line the error names, words the message must contain)
    "unknown-function": ('BASE = "linux-6.18"\n\ndef f(k, dst, src):\n    return 0\n\nREPLACE = {\n'
                         '    "anon_vma_clon": f,\n}\n', 7,
                         "REPLACE names 'anon_vma_clon', not a kernel function of linux-6.18 "
                         "(did you mean 'anon_vma_clone'?"),
    "syntax-error": ('BASE = "linux-6.18"\n\ndef f(k, dst, src)\n    return 0\n', 3, "syntax error"),
    "import-error": ('BASE = "linux-6.18"\nfrom rmapcheck.model.rmap import no_such_helper\n', 2, "ImportError"),
    "exception": ('BASE = "linux-6.18"\nREPLACE = {"anon_vma_clone": undefined_name}\n', 2, "NameError"),
    "wrong-arguments": ('BASE = "linux-6.18"\n\ndef f(k, dst):\n    return 0\n\nREPLACE = {"anon_vma_clone": f}\n',
                        6, "f(k, dst) cannot be called as anon_vma_clone(k, dst, src)"),
    "misspelt-declaration": ('BASE = "linux-6.18"\nREPLACES = {}\n', 2, "did you mean REPLACE?"),
    "no-base": ('REPLACE = {}\n', None, "no BASE"),
    "unknown-base": ('BASE = "linux-9.9"\n', 1, "unknown design 'linux-9.9'"),
    "unknown-switch": ('BASE = "linux-6.18"\nCONFIG = {"CONFIG_KMS": False}\n', 2, "not a switch of linux-6.18"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", ["check", "run", "diff"])
def test_a_bad_design_file_is_one_line_exit_2(tmp_path, case, command):
    text, line, words = BAD[case]
    design = tmp_path / f"{case}.py"
    design.write_text(text)
    args = ["--preset", "small"] if command == "check" else ["fork-cow-child"]
    err = bad_input(rmapcheck(command, *args, "--design", str(design)))
    assert f"{design}:{line}:" in err if line else f"{design}:" in err, err
    assert words in err, err


def test_a_missing_design_file(tmp_path):
    err = bad_input(rmapcheck("check", "--preset", "small", "--design", str(tmp_path / "nothere.py")))
    assert f"{tmp_path / 'nothere.py'}: no such design file" in err


def test_designs_lists_the_replaceable_functions(tmp_path):
    p = rmapcheck("designs")
    assert p.returncode == 0
    for name in ("linux-6.18", "linux-6.18-degree", "linux-6.18.0", "linux-2.6.36-pre"):
        assert name in p.stdout
    p = rmapcheck("designs", "linux-6.18")
    assert p.returncode == 0
    ops, _ = get_design("linux-6.18")
    assert f"kernel functions ({len(ops)})" in p.stdout
    assert "  do_wp_page(k, vma, vpn)" in p.stdout and "wrapped by ksm" in p.stdout
    assert "  anon_vma_chain_free(k, avc[, function])" in p.stdout
    design = write(tmp_path / "rootpin.py", ROOT_PIN_LEAK)
    p = rmapcheck("designs", str(design), "--changed")
    assert p.returncode == 0
    assert "changes: __put_anon_vma" in p.stdout and f"design file {design}" in p.stdout
    assert bad_input(rmapcheck("designs", "linux-9")).startswith("rmapcheck: unknown design")


def test_bundled_designs_read_as_their_patch():
    # Each bundled design after linux-6.18 is a base and the functions its patch changes.
    changed = {name: sorted(load_design(name).changed) for name in ("linux-6.18.0", "linux-6.18-degree",
                                                                     "linux-2.6.36")}
    assert changed == {"linux-6.18.0": ["vma_merge_copied_range"], "linux-6.18-degree": ["anon_vma_reusable"],
                       "linux-2.6.36": ["anon_vma_unlink_drop_root", "folio_lock_anon_vma_root"]}
    assert load_design("linux-2.6.36").base == "linux-2.6.36-seed-0526"
    assert memory.do_wp_page is load_design("linux-6.18").functions["do_wp_page"]
