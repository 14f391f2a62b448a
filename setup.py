"""The C extensions of rmapcheck; everything else is declared in pyproject.toml.

``rmapcheck.check._canon`` writes the canonical form a state's fingerprint
hashes (docs/scaling.md, "The canonical walk in C"); ``rmapcheck.check._snapshot``
records and restores the explored states' copies (docs/scaling.md, "Copies
and restores in C"). Both are optional: without a C compiler the install goes
on and the checker runs the same walks in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("rmapcheck.check._canon", ["src/rmapcheck/check/_canon.c"], optional=True),
    Extension("rmapcheck.check._snapshot", ["src/rmapcheck/check/_snapshot.c"], optional=True),
])
