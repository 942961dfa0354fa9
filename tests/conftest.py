"""Suite-wide safety: no test may read or write the real user's torchdoctor folders."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# uv and pip write their caches into the user's folders (~/.cache/uv, ~/.cache/pip) by default: the
# tests' installs use a cache inside the repository instead, kept across sessions (it is what makes
# the second run fast) and never the real user's.
_REPO_CACHE = Path(__file__).resolve().parents[1] / ".cache"
os.environ["UV_CACHE_DIR"] = str(_REPO_CACHE / "test-uv-cache")
os.environ["PIP_CACHE_DIR"] = str(_REPO_CACHE / "test-pip-cache")

WINDOWS_SKIP_REASON = (
    "needs Windows (the real registry, NTFS, the py launcher); runs in the windows job of "
    ".github/workflows/ci.yml"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `windows` are collected everywhere (so a typo in one fails here too) and skipped
    with their reason off Windows."""
    if sys.platform == "win32":
        return
    skip = pytest.mark.skip(reason=WINDOWS_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("windows") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    base = tmp_path_factory.mktemp("td-home")
    for name in ("CONFIG", "STATE", "CACHE", "LOG", "LOCK"):  # LOCK: the machine-wide fix locks
        folder = base / name.lower()
        folder.mkdir()
        monkeypatch.setenv(f"TORCHDOCTOR_{name}_DIR", str(folder))
    monkeypatch.delenv("TORCHDOCTOR_HARDWARE", raising=False)
    # The user site (~/.local/lib/pythonX.Y/site-packages) is read by check: a torch the real user
    # keeps there must not change a test's verdict, nor may a test's install land in it.
    monkeypatch.setenv("PYTHONUSERBASE", str(base / "userbase"))
    yield


@pytest.fixture
def td_dirs() -> dict[str, Path]:
    return {n: Path(os.environ[f"TORCHDOCTOR_{n.upper()}_DIR"]) for n in ("config", "state", "cache", "log")}
