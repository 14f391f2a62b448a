"""No file of the repository refers to a document or file the repository does not have.

Every text file of the repository (what ``git ls-files`` lists, tracked or new
but not ignored; without git, the tree without hidden and build directories)
is searched for two kinds of reference:

* a document name (``*.md``, ``*.rst``, ``*.txt``), with or without a
  directory: it must name a file of the repository, either as a path (from the
  repository's root, from ``src/`` or ``src/rmapcheck/``, or relative to the referring
  file) or, for a bare name, by its file name;
* a path into the repository (``docs/checker.md``, ``tests/test_check.py``,
  ``model/slab.py``, ``src/rmapcheck/scenarios/``, ``designs/*.py``): a token
  with a ``/`` whose first directory is a directory of the repository must
  match a file or directory of it;
* in Markdown, a link's target must be a file or directory at that path,
  relative to the document, as a reader following the link gets there.

Kernel sources (``mm/rmap.c``, ``include/linux/rmap.h``,
``Documentation/mm/ksm.rst``, ``tools/testing/vma``) and URLs are public
references, not files of the repository, and are left alone; so are paths of
the running system (``/proc``, ``/sys``). Paths of the machine the project was
written on are refused wherever they appear. A line that only shows a
reference, as an example or a test's input, ends in ``# not-a-reference``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Top-level directories of the Linux source tree: a path that starts with one
# of them is a kernel reference.
KERNEL_DIRS = {
    "arch", "block", "certs", "crypto", "Documentation", "drivers", "fs", "include", "init", "io_uring",
    "ipc", "kernel", "lib", "mm", "net", "rust", "samples", "scripts", "security", "sound", "tools",
    "usr", "virt",
}
DOC_SUFFIXES = (".md", ".rst", ".txt")
# what a build leaves behind, named by the Makefile's clean target
GENERATED = (".egg-info", "__pycache__")
TEXT_SUFFIXES = {".py", ".md", ".rst", ".txt", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".json", ""}

URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")
# A path-like token: word characters, dots, dashes and glob stars, split by
# slashes; it may not continue a longer token on its left.
TOKEN = re.compile(r"(?<![\w./*-])(?:\.{1,2}/)*[\w*-][\w.*-]*(?:/[\w.*-]+)*/?")
MACHINE = re.compile(r"/work/|shared/docs")  # not-a-reference
#: a line that shows a reference without making one (an example, a test's input) says so
PRAGMA = "not-a-reference"
LINK = re.compile(r"\]\(([^)\s#]+)[^)]*\)")


def repository_files(root: Path) -> list[str]:
    """The repository's files, as POSIX paths relative to ``root``."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=root, capture_output=True, check=True)
        files = [f for f in out.stdout.decode().split("\0") if f]
        if files:
            return [f for f in files if (root / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        pass
    skip = {"build", "dist", "__pycache__"}
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in skip
                       and not d.endswith(".egg-info")]
        files += [Path(dirpath, f).relative_to(root).as_posix() for f in filenames]
    return files


class Repository:
    """The files and directories of a repository, and how a reference resolves in it."""

    def __init__(self, files: list[str]) -> None:
        self.files = set(files)
        self.dirs = {str(p) for f in files for p in PurePosixPath(f).parents if str(p) != "."}
        self.names = {PurePosixPath(f).name for f in files}
        self.dir_names = {PurePosixPath(d).name for d in self.dirs}
        # where a path written without the leading directories may start
        self.bases = ["", "src/", "src/rmapcheck/"]

    def exists(self, path: str) -> bool:
        path = path.rstrip("/")
        everything = self.files | self.dirs
        if any(c in path for c in "*?["):
            return any(fnmatch.fnmatchcase(p, base + path) for base in self.bases for p in everything)
        return any(base + path in everything for base in self.bases)

    def resolves(self, token: str, referrer: str) -> bool:
        """Whether ``token``, written in file ``referrer``, names something of the repository."""
        here = PurePosixPath(referrer).parent
        if token.startswith(("./", "../")):
            path = os.path.normpath(here / token)
            return not path.startswith("..") and self.exists(PurePosixPath(path).as_posix())
        if "/" not in token.rstrip("/"):
            return token.rstrip("/") in self.names | self.dir_names
        return self.exists(token) or self.exists((here / token).as_posix())

    def link_resolves(self, target: str, referrer: str) -> bool:
        """Whether a Markdown link to ``target`` in ``referrer`` reaches a file or directory."""
        path = os.path.normpath(PurePosixPath(referrer).parent / target)
        return not path.startswith("..") and PurePosixPath(path).as_posix() in self.files | self.dirs

    def is_reference(self, token: str) -> bool:
        """Whether ``token`` is a reference that must resolve (see the module docstring)."""
        parts = token.strip("/").split("/")
        if parts[0] in KERNEL_DIRS:
            return False
        if token.endswith(DOC_SUFFIXES) and re.search(r"[A-Za-z0-9]", parts[-1][:-4]):
            return True
        if len(parts) < 2 or parts[-1].endswith(GENERATED):
            return False
        # a file (with a suffix), a directory (a trailing slash), a glob or a
        # deeper path; "src/dst" in prose is none of these
        looks_like_a_path = ("." in parts[-1] or token.endswith("/") or "*" in token or len(parts) > 2)
        # "./mypatch.py" names a user's file in an example, a relative path  # not-a-reference
        # whose first directory is one of the repository's a place of it
        first = next((p for p in parts if p not in (".", "..")), "")
        return looks_like_a_path and first in self.dir_names


def dangling_references(root: Path, files: list[str]) -> list[str]:
    """``file:line: token`` for every reference in ``files`` that the repository does not resolve."""
    repo = Repository(files)
    found = []
    for f in sorted(files):
        if PurePosixPath(f).suffix not in TEXT_SUFFIXES:
            continue
        try:
            text = (root / f).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if PRAGMA in line:
                continue
            if machine := MACHINE.search(line):
                found.append(f"{f}:{lineno}: a path of the machine ({machine.group()})")
            for m in TOKEN.finditer(URL.sub(" ", line)):
                token = m.group().rstrip(".")
                if repo.is_reference(token) and not repo.resolves(token, f):
                    found.append(f"{f}:{lineno}: {token}")
            if f.endswith(".md"):
                # a link outside code spans (`f["x"](y)` in code is a call)
                for target in LINK.findall(re.sub(r"`[^`]*`", " ", line)):
                    if not URL.match(target) and not target.startswith("mailto:") \
                            and not repo.link_resolves(target, f):
                        found.append(f"{f}:{lineno}: link to {target}")
    return found


def test_every_reference_resolves():
    dangling = dangling_references(ROOT, repository_files(ROOT))
    assert dangling == [], "references to what the repository does not have:\n" + "\n".join(dangling)


def _repo(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return sorted(files)


@pytest.mark.parametrize("line, dangling", [
    ("see kernel-history.md B4", ["kernel-history.md"]),  # not-a-reference
    ("(docs/kernel-history.md, §2)", ["docs/kernel-history.md"]),  # not-a-reference
    ("from ../shared/docs/kernel-history.md", ["a path of the machine", "../shared/docs/kernel-history.md"]),  # not-a-reference
    ("see docs/history.md B4 and checker.md", []),
    ("the model of src/rmapcheck/model/slab.py and model/vma.py", []),
    ("model/nothing.py and tests/test_gone.py", ["model/nothing.py", "tests/test_gone.py"]),  # not-a-reference
    ("each designs/*.py", []),
    ("a copy from src/dst, rm -rf src/*.egg-info", []),
    ("no scenarios/*.json", ["scenarios/*.json"]),  # not-a-reference
    ("mm/rmap.c, include/linux/rmap.h, Documentation/mm/ksm.rst, tools/testing/vma", []),
    ("https://lore.kernel.org/r/x/notes.md /proc/kpageflags read/write", []),
    ("[the history](docs/history.md#b4), [checker](docs/)", []),
    ("[the history](history.md)", ["link to history.md"]),  # not-a-reference
    ("see kernel-history.md  # not-a-reference", []),  # not-a-reference
])
def test_a_reference_to_a_missing_document_is_found(tmp_path, line, dangling):
    files = _repo(tmp_path, {
        "README.md": line + "\n",
        "docs/history.md": "", "docs/checker.md": "",
        "src/rmapcheck/model/slab.py": "", "src/rmapcheck/model/vma.py": "",
        "src/rmapcheck/designs/linux_6_18.py": "", "src/rmapcheck/scenarios/fork-cow-child.yaml": "",
        "tests/test_check.py": "",
    })
    found = dangling_references(tmp_path, files)
    assert len(found) == len(dangling), found
    for f, d in zip(found, dangling):
        assert f.startswith("README.md:1: ") and d in f


def test_without_git_the_tree_is_walked(tmp_path):
    _repo(tmp_path, {"README.md": "", "docs/history.md": "", ".venv/lib/site.py": "",
                     "src/x.egg-info/PKG-INFO": "", "src/rmapcheck/__pycache__/a.pyc": ""})  # not-a-reference
    assert sorted(repository_files(tmp_path)) == ["README.md", "docs/history.md"]
