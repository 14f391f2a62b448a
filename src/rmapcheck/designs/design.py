"""A design: the kernel functions a kernel runs, as a base design changed by a patch.

A design is a Python module, bundled (registered by name in
:data:`rmapcheck.designs.DESIGNS`) or a file of the user's (``--design
mybug.py``). It declares, at module level:

``BASE``
    the design it changes: a registered name (``"linux-6.18"``) or the path of
    another design file, relative to this one.
``REPLACE``
    ``{"kernel_function": replacement}``: kernel functions of the base replaced
    by name, as the patch changes them. A replacement takes the arguments the
    base's function takes. Every layer of the base still wraps it.
``ADD``
    kernel functions the patch introduces (that the base does not have), so
    that a design based on this one can replace them too.
``CONFIG``
    ``{"CONFIG_KSM": False}``: switches of the base set otherwise.
``LAYERS``
    layers (:class:`~rmapcheck.model.kernel.Layer`) added after the base's.
``REPLACE_OUTER``
    ``{"kernel_function": f}``: ``f`` replaces what the kernel calls under that
    name *after* the layers, dropping their wrappers there (only for a patch
    that changes what a layer does too).

A registered design may also declare, as plain data read by the tests and
``rmapcheck history`` rather than by the kernel:

``HISTORY``
    the catalog rows it is the buggy side of (:mod:`rmapcheck.check.catalog`).
``SCENARIO_DIFFERS``
    ``{"scenario": (what, reason)}``: the bundled scenarios whose outcome on
    it differs from linux-6.18's, ``what`` being ``"maps"`` or a property,
    ``reason`` citing the commit (``tests/test_design_eras.py``).

The root design (``linux-6.18``) declares ``FUNCTIONS`` (the plain kernel
functions), ``LAYERS`` and ``CONFIG`` instead of ``BASE``. A module with a flat
``OPS`` table and ``CONFIG`` (how designs were written before) still loads, as
a root design without layers.

The kernel's table is resolved once per design
(:func:`rmapcheck.model.kernel.resolve_ops`): the functions with the
replacements, each layer in order, then ``REPLACE_OUTER``.

A design file is identified by its absolute path; :attr:`Design.files` holds
the SHA-256 of its bytes and of every design file it bases on, which traces
record so that a replay refuses a changed file.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import ModuleType
from typing import Any, Callable, Mapping

from rmapcheck.model.kernel import Layer, resolve_ops

__all__ = ["DECLARATIONS", "Design", "DesignError", "design_label", "file_sha256", "is_design_file",
           "load_design", "registered", "signature"]

#: The names a design module may declare.
DECLARATIONS = ("BASE", "REPLACE", "ADD", "CONFIG", "LAYERS", "REPLACE_OUTER", "FUNCTIONS", "OPS", "HISTORY",
                "SCENARIO_DIFFERS")


class DesignError(ValueError):
    """An unknown design, a design file that does not load, or a switch it does not have.

    ``str()`` is one line, naming the file (and line) where there is one.
    """


@dataclass(frozen=True, eq=False)
class Design:
    """One design, loaded.

    :param spec: what :func:`load_design` takes to load it again: the
        registered name, or the design file's absolute path.
    :param base: the ``spec`` of the design it changes (``None`` for a root).
    :param functions: the plain kernel functions, replacements applied.
    :param layers: applied over ``functions`` in order.
    :param outer: ``REPLACE_OUTER``, applied after the layers.
    :param config: every switch, with its value in this design.
    :param files: ``(absolute path, SHA-256)`` of the design file and of each
        design file it bases on, this one first (empty for a bundled design).
    :param changed: the kernel functions this design replaced or added.
    :param doc: the first line of the module's docstring.
    :param about: the rest of the docstring: which kernel version and
        commits the design is, and which functions differ from its base.
    """

    spec: str
    base: str | None
    functions: Mapping[str, Callable[..., Any]]
    layers: tuple[Layer, ...]
    outer: Mapping[str, Callable[..., Any]]
    config: Mapping[str, Any]
    files: tuple[tuple[str, str], ...] = ()
    changed: frozenset[str] = field(default_factory=frozenset)
    doc: str = ""
    about: str = ""

    @cached_property
    def ops(self) -> dict[str, Callable[..., Any]]:
        """The table the kernel calls (``Kernel.ops``), resolved once."""
        return resolve_ops(self.functions, self.layers, self.outer)

    @property
    def name(self) -> str:
        """The registered name, or the design file's name without ``.py``."""
        return design_label(self.spec)

    def wrapped_by(self, function: str) -> list[str]:
        """The names of the layers that wrap ``function``, innermost first."""
        return [layer.name for layer in self.layers if function in layer.wraps]


def registered() -> dict[str, str]:
    """The registry: design name → module under :mod:`rmapcheck.designs`."""
    from rmapcheck.designs import DESIGNS

    return DESIGNS


def is_design_file(spec: str) -> bool:
    """Whether ``spec`` names a design file rather than a registered design."""
    return spec not in registered() and (spec.endswith(".py") or os.sep in spec or os.path.isfile(spec))


def design_label(spec: str) -> str:
    """A short name for output and file names: the registered name, or the file's stem."""
    if is_design_file(spec):
        return os.path.splitext(os.path.basename(spec))[0]
    return spec


def file_sha256(path: str) -> str | None:
    """The SHA-256 of the bytes of ``path`` (``None`` if it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None


def load_design(spec: str) -> Design:
    """The design ``spec`` names: a registered name or the path of a design file.

    :raises DesignError: one line: an unknown name, a missing file, a file
        that does not load (``file:line``), or a declaration that is wrong.
    """
    return _load(spec, ())


# -- loading ------------------------------------------------------------------------

#: registered name → (module it was built from, design)
_BUILTIN: dict[str, tuple[ModuleType, Design]] = {}
#: absolute path → (SHA-256 of the file, design)
_FILES: dict[str, tuple[str, Design]] = {}


def _load(spec: str, loading: tuple[str, ...]) -> Design:
    reg = registered()
    if spec in reg:
        modname = f"rmapcheck.designs.{reg[spec]}"
        mod = sys.modules.get(modname)
        hit = _BUILTIN.get(spec)
        if hit is not None and mod is hit[0]:
            return hit[1]
        mod = importlib.import_module(modname)
        d = _from_namespace(vars(mod), spec, getattr(mod, "__file__", None) or modname, None, loading + (spec,))
        _BUILTIN[spec] = (mod, d)
        return d
    if not is_design_file(spec):
        raise DesignError(f"unknown design {spec!r} (known: {', '.join(sorted(reg))}; "
                          f"or the path of a design file, such as mybug.py)")
    path = os.path.abspath(spec)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise DesignError(f"{spec}: no such design file") from None
    except OSError as e:
        raise DesignError(f"{spec}: cannot read: {e.strerror}") from None
    sha = hashlib.sha256(data).hexdigest()
    hit2 = _FILES.get(path)
    if hit2 is not None and hit2[0] == sha and all(file_sha256(p) == h for p, h in hit2[1].files[1:]):
        return hit2[1]
    if path in loading:
        raise DesignError(f"a cycle of design files: {' -> '.join(loading + (path,))}")
    ns = _exec_file(path, data, sha)
    d = _from_namespace(ns, path, path, data.decode("utf-8", "replace"), loading + (path,))
    d = replace(d, files=((path, sha), *d.files))
    _FILES[path] = (sha, d)
    return d


def _exec_file(path: str, data: bytes, sha: str) -> dict[str, Any]:
    # A module of its own, in sys.modules (pickle and dataclasses look
    # functions and classes up there), named after the file and its contents.
    stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(path))[0])
    modname = f"rmapcheck_design_{stem}_{sha[:12]}"
    try:
        code = compile(data, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise DesignError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except ValueError as e:  # source with NUL bytes
        raise DesignError(f"{path}: cannot compile: {e}") from None
    spec = importlib.util.spec_from_loader(modname, loader=None, origin=path)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    mod.__file__ = path
    sys.modules[modname] = mod
    try:
        exec(code, vars(mod))
    except Exception as e:
        del sys.modules[modname]
        raise DesignError(f"{_where(e, path)}: {_one_line(e)}") from None
    except SystemExit:
        del sys.modules[modname]
        raise DesignError(f"{path}: the design file called exit()") from None
    return vars(mod)


def _where(e: BaseException, path: str) -> str:
    # The innermost line of the design file the exception passed through.
    if isinstance(e, SyntaxError) and e.filename:  # in a module the file imports
        return f"{e.filename}:{e.lineno}"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
    return f"{path}:{frames[-1].lineno}" if frames else path


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    text = msg[0] if msg else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _line_of(source: str | None, declaration: str, key: str | None = None) -> int | None:
    # The line of a declaration (or of one key of it) in the design file.
    if source is None:
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        if not any(isinstance(t, ast.Name) and t.id == declaration for t in targets):
            continue
        if key is not None:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Constant) and sub.value == key:
                    return sub.lineno
        return node.lineno
    return None


def _from_namespace(ns: Mapping[str, Any], spec: str, where: str, source: str | None,
                    loading: tuple[str, ...]) -> Design:
    def bad(msg: str, declaration: str | None = None, key: str | None = None) -> DesignError:
        line = _line_of(source, declaration, key) if declaration else None
        return DesignError(f"{where}:{line}: {msg}" if line else f"{where}: {msg}")

    doc = inspect.cleandoc(ns.get("__doc__") or "").splitlines()
    first = doc[0] if doc else ""
    about = "\n".join(doc[1:]).strip()
    for name in ns:
        if name.isupper() and name not in DECLARATIONS:
            close = difflib.get_close_matches(name, DECLARATIONS, 1, 0.85)
            if close:
                raise bad(f"{name}: not a declaration of a design (did you mean {close[0]}?)", name)
    if "BASE" in ns:
        for whole in ("FUNCTIONS", "OPS"):
            if whole in ns:
                raise bad(f"{whole} with BASE: a design based on another replaces kernel functions in "
                          f"REPLACE; a whole table is not read", whole)
        return replace(_derive(ns, spec, source, loading, bad, first), about=about)
    if "FUNCTIONS" in ns or "OPS" in ns:
        key = "FUNCTIONS" if "FUNCTIONS" in ns else "OPS"
        functions = _table(ns[key], key, bad)
        layers = _layers(ns.get("LAYERS", ()), functions, bad) if key == "FUNCTIONS" else ()
        config = ns.get("CONFIG", {})
        if not isinstance(config, dict):
            raise bad("CONFIG must be a dict of switch: value", "CONFIG")
        return Design(spec, None, functions, layers, {}, dict(config), (), frozenset(), first, about)
    raise bad("no BASE: a design file names the design it changes, such as BASE = \"linux-6.18\", "
              "and the kernel functions it replaces, such as REPLACE = {\"anon_vma_clone\": anon_vma_clone}")


def _table(table: Any, declaration: str, bad: Callable[..., DesignError]) -> dict[str, Callable[..., Any]]:
    if not isinstance(table, dict):
        raise bad(f"{declaration} must be a dict of kernel function name: function", declaration)
    for name, fn in table.items():
        if not isinstance(name, str):
            raise bad(f"{declaration}: the key {name!r} is not a kernel function name", declaration)
        if not callable(fn):
            raise bad(f"{declaration}[{name!r}]: {fn!r} is not a function", declaration, name)
    return dict(table)


def _layers(layers: Any, functions: Mapping[str, Any], bad: Callable[..., DesignError]) -> tuple[Layer, ...]:
    if not isinstance(layers, (list, tuple)) or not all(isinstance(x, Layer) for x in layers):
        raise bad("LAYERS must be a list of rmapcheck.model.kernel.Layer", "LAYERS")
    for layer in layers:
        for name in layer.wraps:
            if name not in functions:
                raise bad(f"LAYERS: layer {layer.name!r} wraps {name!r}, not a kernel function of the design",
                          "LAYERS")
    return tuple(layers)


def _derive(ns: Mapping[str, Any], spec: str, source: str | None, loading: tuple[str, ...],
            bad: Callable[..., DesignError], doc: str) -> Design:
    base_spec = ns["BASE"]
    if not isinstance(base_spec, str):
        raise bad("BASE must be a design name or the path of a design file", "BASE")
    if base_spec not in registered() and is_design_file(base_spec) and not os.path.isabs(base_spec) \
            and os.path.isfile(spec):
        base_spec = os.path.join(os.path.dirname(spec), base_spec)
    try:
        base = _load(base_spec, loading)
    except DesignError as e:
        raise bad(f"BASE: {e}", "BASE") from None
    label = base.name

    functions = dict(base.functions)
    replacements = _table(ns.get("REPLACE", {}), "REPLACE", bad)
    for name, fn in replacements.items():
        if name not in functions:
            close = difflib.get_close_matches(name, functions, 1, 0.8)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise bad(f"REPLACE names {name!r}, not a kernel function of {label} "
                      f"({hint}rmapcheck designs {base.spec} lists them)", "REPLACE", name)
        if name in base.outer:
            raise bad(f"REPLACE names {name!r}, whose outer function {label} replaces (REPLACE_OUTER): "
                      f"replace it in REPLACE_OUTER too", "REPLACE", name)
        err = _signature_mismatch(functions[name], fn, name)
        if err:
            raise bad(f"REPLACE[{name!r}]: {err}", "REPLACE", name)
    functions.update(replacements)
    add = _table(ns.get("ADD", {}), "ADD", bad)
    for name in add:
        if name in functions:
            raise bad(f"ADD names {name!r}, which {label} already has: replace it in REPLACE", "ADD", name)
    functions.update(add)

    config = dict(base.config)
    changes = ns.get("CONFIG", {})
    if not isinstance(changes, dict):
        raise bad("CONFIG must be a dict of switch: value", "CONFIG")
    for key, value in changes.items():
        if key not in config:
            known = ", ".join(sorted(k for k in config if isinstance(k, str) and k.startswith(("CONFIG_", "sysctl_"))))
            raise bad(f"CONFIG names {key!r}, not a switch of {label} (known: {known})", "CONFIG", key)
        if type(value) is not type(config[key]):
            raise bad(f"CONFIG[{key!r}] = {value!r}: {label} has {type(config[key]).__name__} there",
                      "CONFIG", key)
    config.update(changes)

    layers = base.layers + _layers(ns.get("LAYERS", ()), functions, bad)
    outer = dict(base.outer)
    replace_outer = _table(ns.get("REPLACE_OUTER", {}), "REPLACE_OUTER", bad)
    for name in replace_outer:
        if name not in functions:
            raise bad(f"REPLACE_OUTER names {name!r}, not a kernel function of {label}", "REPLACE_OUTER", name)
    outer.update(replace_outer)
    changed = frozenset(replacements) | frozenset(add) | frozenset(replace_outer)
    return Design(spec, base.spec, functions, layers, outer, config, base.files, changed, doc)


def _signature_mismatch(old: Callable[..., Any], new: Callable[..., Any], name: str) -> str | None:
    # Callers pass the base function's positional arguments, with or without
    # its optional ones: the replacement must take both counts.
    try:
        before = inspect.signature(old)
        after = inspect.signature(new)
    except (TypeError, ValueError):
        return None
    positional = [p for p in before.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    for n in sorted({len(required), len(positional)}):
        try:
            after.bind(*range(n))
        except TypeError:
            fname = getattr(new, "__name__", repr(new))
            return (f"{signature(fname, new)} cannot be called as {signature(name, old)} "
                    f"(with {n} arguments)")
    return None


def signature(name: str, fn: Callable[..., Any]) -> str:
    """``name(k, vma[, function])``: the parameters of ``fn``, optional ones in brackets."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return f"{name}(...)"
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p.name for p in params if p.default is p.empty and p.kind in positional]
    optional = [p.name for p in params if p.default is not p.empty]
    rest = ["*" + p.name for p in params if p.kind is p.VAR_POSITIONAL]
    return f"{name}({', '.join(required + rest)}{''.join(f'[, {o}]' for o in optional)})"
