"""The frozen app, built once per set of sources into .cache/frozen/ (packaging/freeze.py) and shared."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
# packaging/ holds scripts, not a package (and `packaging` is also a PyPI name): import them by path.
sys.path.insert(0, str(PACKAGING))

import freeze  # noqa: E402


def require(condition: bool, reason: str) -> None:
    """Skip where the tool is missing, except in CI, which installs it (scripts/test): fail there."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it through scripts/test)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def frozen_app() -> Path:
    installed = importlib.util.find_spec("PyInstaller") is not None
    require(installed, "PyInstaller is not installed (the `test` extra installs it)")
    if sys.platform == "win32":
        # The windows job builds the Windows app as its own step; the Linux one is what runs here.
        pytest.skip("the frozen app's tests run on Linux; the windows job builds it as an artefact")
    return freeze.cached_app()
