"""`torchdoctor cache clean [--json] [--dry-run]` through the real CLI (docs/contract.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, NO_COLOR="1"),
    )


@pytest.fixture
def filled(td_dirs: dict[str, Path]) -> dict[str, Path]:
    wheels = td_dirs["cache"] / "wheels"
    index = td_dirs["cache"] / "index"
    wheels.mkdir()
    index.mkdir()
    files = {
        "wheel": wheels / "torch-2.7.1+cu128-py3-none-any.whl",
        "page": index / ("a" * 40 + ".json"),
        "stale": wheels / "torch-2.7.1+cu128-py3-none-any.whl.999999999.part",
        # This test process is alive: its partial belongs to a download still running.
        "live": wheels / f"torchvision-0.22.1+cu128-py3-none-any.whl.{os.getpid()}.part",
    }
    for i, path in enumerate(files.values()):
        path.write_bytes(b"x" * (100 * (i + 1)))
    return files


def test_dry_run_lists_and_removes_nothing(filled: dict[str, Path]) -> None:
    done = _cli("cache", "clean", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema_version"] == 1 and doc["dry_run"] is True
    removed = {Path(item["path"]) for item in doc["removed"]}
    assert removed == {filled["wheel"], filled["page"], filled["stale"]}
    assert doc["bytes"] == 100 + 200 + 300
    assert doc["in_use"] == [str(filled["live"])]
    assert all(path.exists() for path in filled.values())


def test_clean_removes_all_but_a_running_downloads_partial(filled: dict[str, Path]) -> None:
    done = _cli("cache", "clean")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "Removed 3 files (600 B)."
    assert [p for p in filled.values() if p.exists()] == [filled["live"]]
    again = json.loads(_cli("cache", "clean", "--json").stdout)
    assert again["removed"] == [] and again["dry_run"] is False


def test_cache_without_an_action_is_a_usage_error() -> None:
    done = _cli("cache")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_full_disk_is_one_line_not_an_internal_error(td_dirs: dict[str, Path]) -> None:
    with Path("/dev/full").open("w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "torchdoctor.agent", "cache", "clean", "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "torchdoctor: the disk is full (No space left on device) "
        "(hint: free some space, e.g. with `torchdoctor cache clean`, and try again)"
    ]
    assert not list(td_dirs["log"].glob("crash-*.log"))
