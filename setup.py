"""The C extension of rmapcheck; everything else is declared in pyproject.toml.

``rmapcheck.check._canon`` writes the canonical form a state's fingerprint
hashes (docs/scaling.md, "The canonical walk in C"). It is optional: without
a C compiler the install goes on and the checker runs the same walk in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("rmapcheck.check._canon", ["src/rmapcheck/check/_canon.c"], optional=True),
])
