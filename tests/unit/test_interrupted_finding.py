"""`fix-interrupted`, the pure rule: what it says and which command it gives."""

from __future__ import annotations

from pathlib import Path

from tests.support.envs import site_packages_env
from torchdoctor.service.models import FindingCode, Platform, Severity, env_status
from torchdoctor.service.rules.diagnose import interrupted_finding
from torchdoctor.service.rules.interrupted import Interrupted


def test_nothing_pending_is_no_finding(tmp_path: Path) -> None:
    assert interrupted_finding(site_packages_env(tmp_path), []) is None


def test_a_pending_snapshot_is_an_error_naming_what_restores_it(tmp_path: Path) -> None:
    env = site_packages_env(tmp_path / "my env")
    found = interrupted_finding(
        env, [Interrupted(tmp_path / "s", 1_767_225_600.0, "2.7.1+cu128", readable=True)]
    )
    assert found is not None
    assert found.code is FindingCode.FIX_INTERRUPTED and found.severity is Severity.ERROR
    assert "2026-01-01 at 00:00 UTC" in found.message and "torch 2.7.1+cu128" in found.message
    assert f"torchdoctor fix --env '{env.root}'" in found.fix  # quoted: the path has a space
    assert env_status(None, (found,)).value == "broken"  # never ok, not even "no-torch"


def test_windows_paths_are_quoted_for_windows(tmp_path: Path) -> None:
    env = site_packages_env(tmp_path / "with space", Platform.WINDOWS)
    found = interrupted_finding(env, [Interrupted(tmp_path / "s", None, None, readable=True)])
    assert found is not None
    assert f'torchdoctor fix --env "{env.root}"' in found.fix
    assert "without torch" in found.message


def test_an_unreadable_copy_says_it_will_be_set_aside(tmp_path: Path) -> None:
    env = site_packages_env(tmp_path)
    found = interrupted_finding(env, [Interrupted(tmp_path / "s", None, None, readable=False)])
    assert found is not None
    assert "cannot be read" in found.message and "sets the unreadable copy aside" in found.fix
