"""The README's commands: `scripts/run` acts on the caller's folder, and tests stay out of the
user's own folders."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.envs import make_venv

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_scripts_run_keeps_the_callers_folder_for_relative_paths(tmp_path: Path) -> None:
    make_venv(tmp_path / ".venv")
    proc = subprocess.run(
        [str(REPO / "scripts" / "run"), "envs", "--env", ".venv", "--no-discover", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (env,) = json.loads(proc.stdout)
    assert env["path"] == str(tmp_path / ".venv")  # the user's .venv, not torchdoctor's own


def test_installer_caches_are_not_the_users() -> None:
    home_cache = Path.home() / ".cache"
    for name in ("UV_CACHE_DIR", "PIP_CACHE_DIR"):
        folder = Path(os.environ[name])
        assert folder.is_relative_to(REPO / ".cache"), name
        assert not folder.is_relative_to(home_cache) or home_cache.is_relative_to(REPO), name
