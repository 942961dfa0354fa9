"""The `windows` marker with its skip: a test that only means something on a real Windows machine.

Each Windows behaviour is tested here on Linux through fakes at the boundary (the registry, ctypes,
the process table); the test marked with `windows_only` runs the same behaviour for real there.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import pytest

_F = TypeVar("_F", bound=Callable[..., object])

ON_WINDOWS = sys.platform == "win32"


def windows_only(test: _F) -> _F:
    marked: _F = pytest.mark.windows(pytest.mark.skipif(not ON_WINDOWS, reason="needs Windows")(test))
    return marked
