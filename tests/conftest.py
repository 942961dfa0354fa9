"""Suite-wide safety: no test may read or write the real user's torchdoctor folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# uv and pip write their caches into the user's folders (~/.cache/uv, ~/.cache/pip) by default: the
# tests' installs use a cache inside the repository instead, kept across sessions (it is what makes
# the second run fast) and never the real user's.
_REPO_CACHE = Path(__file__).resolve().parents[1] / ".cache"
os.environ["UV_CACHE_DIR"] = str(_REPO_CACHE / "test-uv-cache")
os.environ["PIP_CACHE_DIR"] = str(_REPO_CACHE / "test-pip-cache")


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
    yield


@pytest.fixture
def td_dirs() -> dict[str, Path]:
    return {n: Path(os.environ[f"TORCHDOCTOR_{n.upper()}_DIR"]) for n in ("config", "state", "cache", "log")}
