"""Shared fixtures: a 6.18 kernel with one process, and helpers in page units."""

from __future__ import annotations

import pytest

from rmapcheck.designs import make_kernel
from rmapcheck.model.mm_types import PAGE_SHIFT
from rmapcheck.model.syscalls import spawn
from rmapcheck.scenario.ops import ARENA_BASE

#: virtual page number of arena page 0
BASE = ARENA_BASE >> PAGE_SHIFT


@pytest.fixture
def k():
    kern = make_kernel("linux-6.18")
    spawn(kern, "P0")
    return kern
