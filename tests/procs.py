"""Processes a test left behind: children of a process, or members of its process group."""

from __future__ import annotations

import os


def children(pid: int, group: bool = False) -> list[int]:
    """Live processes whose parent is ``pid``, or (``group``) in the process group ``pid`` leads."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2 if group else 1]) == pid and int(d) != pid:
            out.append(int(d))
    return out
