"""rmapcheck: an executable model of the Linux kernel's anonymous reverse mapping.

The model (:mod:`rmapcheck.model`) mirrors the kernel's ``mm/`` functions one to
one; :mod:`rmapcheck.scenario` reads scenario files; :mod:`rmapcheck.live` runs
the same scenarios on the running kernel; the CLI (:mod:`rmapcheck.cli`) is the
only place that imports click and rich.
"""

__version__ = "0.1.0"
