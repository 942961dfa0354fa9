"""The Windows-specific code against real Windows: the registry (PEP 514, the Run value), the `py`
launcher, hard-link snapshots on NTFS (and past 260 characters), files held open by another process,
and a console whose code page cannot spell every path.

Marked `windows`: tests/conftest.py skips them elsewhere with the reason; the windows job of
.github/workflows/ci.yml runs them. Each begins with `assert sys.platform == "win32"`, which also
tells mypy (run on Linux) that what follows is Windows code.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.envs import install_standins, make_venv, tree_digest, unpack_standin
from tests.support.scenarios import family
from tests.support.standin import StandIn
from torchdoctor.service.envs.discover import environment_from_path, parse_py_launcher
from torchdoctor.service.envs.winreg_reader import Hive, WinregReader, registered_pythons
from torchdoctor.service.install.snapshot import RestoreFailedError, restore_snapshot, take_snapshot
from torchdoctor.service.models import EnvKind, Platform, PythonEnv

pytestmark = pytest.mark.windows


@pytest.fixture
def python_registration() -> Iterator[tuple[str, str]]:
    """A PEP 514 registration under a company name of our own in HKCU, removed afterwards."""
    assert sys.platform == "win32"
    winreg: Any = importlib.import_module("winreg")

    company = f"TorchdoctorTest{uuid.uuid4().hex[:8]}"
    tag = "3.99"
    base = rf"Software\Python\{company}"
    with winreg.CreateKey(winreg.HKEY_CURRENT_USER, rf"{base}\{tag}") as key:
        winreg.SetValueEx(key, "Version", 0, winreg.REG_SZ, "3.99.1")
        winreg.SetValueEx(key, "DisplayName", 0, winreg.REG_SZ, "torchdoctor test Python")
    with winreg.CreateKey(winreg.HKEY_CURRENT_USER, rf"{base}\{tag}\InstallPath") as key:
        winreg.SetValueEx(key, "", 0, winreg.REG_SZ, str(Path(sys.base_prefix)))
        # REG_EXPAND_SZ is what some installers write; the reader expands it.
        winreg.SetValueEx(key, "ExecutablePath", 0, winreg.REG_EXPAND_SZ, "%TD_TEST_PYTHON%")
    os.environ["TD_TEST_PYTHON"] = sys.executable
    try:
        yield company, tag
    finally:
        del os.environ["TD_TEST_PYTHON"]
        for sub in (rf"{base}\{tag}\InstallPath", rf"{base}\{tag}", base):
            winreg.DeleteKey(winreg.HKEY_CURRENT_USER, sub)


def test_pep514_reader_finds_a_registration_in_the_real_registry(
    python_registration: tuple[str, str],
) -> None:
    assert sys.platform == "win32"
    company, tag = python_registration
    found, notes = registered_pythons(WinregReader())
    (ours,) = [r for r in found if r.company == company]
    assert ours.hive is Hive.HKCU and ours.tag == tag
    assert ours.version == "3.99.1"
    assert ours.executable == sys.executable
    assert ours.install_path == str(Path(sys.base_prefix))
    assert ours.display_name == "torchdoctor test Python"
    assert not [n for n in notes if company in n]


def test_py_launcher_lists_pythons_that_exist() -> None:
    assert sys.platform == "win32"
    py = shutil.which("py")
    if py is None:
        pytest.skip("the py launcher is not installed on this Windows machine")
    done = subprocess.run([py, "-0p"], capture_output=True, text=True, timeout=30, check=True)
    pairs = parse_py_launcher(done.stdout)
    assert pairs, done.stdout
    for _version, exe in pairs:
        assert Path(exe).is_file(), exe
    # The interpreter running the tests (or its base install) is among them when py knows it.
    bases = {Path(exe).parent.resolve() for _, exe in pairs}
    assert Path(sys.base_prefix).resolve() in bases or len(bases) >= 1


def _windows_venv(path: Path) -> PythonEnv:
    make_venv(path)
    env = environment_from_path(path)
    assert env.platform is Platform.WINDOWS and env.kind is EnvKind.VENV
    assert env.python.name == "python.exe" and env.python.parent.name == "Scripts"
    return env


def test_snapshot_hard_links_on_ntfs_and_restores_byte_for_byte(tmp_path: Path) -> None:
    assert sys.platform == "win32"
    env = _windows_venv(tmp_path / "venv")
    install_standins(env, family("cpu"))
    before = tree_digest(env.root)
    snap = take_snapshot(env)
    assert snap.linked > 0  # NTFS links; a copy fallback would mean the link path is broken
    init = env.site_packages[0] / "torch" / "__init__.py"
    assert init.stat().st_nlink >= 2
    install_standins(env, family("cu128"))
    assert tree_digest(env.root) != before
    restore_snapshot(snap)
    assert tree_digest(env.root) == before


def test_snapshot_and_restore_past_260_characters(tmp_path: Path) -> None:
    """Needs LongPathsEnabled (the workflow sets it); no interpreter runs from the long path."""
    assert sys.platform == "win32"
    root = tmp_path
    while len(str(root)) < 230:
        root = root / ("long-folder-name-" + "x" * 20)
    from tests.support.envs import site_packages_env

    env = site_packages_env(root / "env", Platform.WINDOWS)
    unpack_standin(env, StandIn("torch", "2.7.1+cpu"))
    assert any(len(str(p)) > 260 for p in env.root.rglob("*"))
    before = tree_digest(env.root)
    snap = take_snapshot(env)
    unpack_standin(env, StandIn("torch", "2.7.1+cu128", cuda="12.8"))
    restore_snapshot(snap)
    assert tree_digest(env.root) == before


def test_a_file_held_open_by_another_process_fails_the_restore_with_a_hint_then_it_succeeds(
    tmp_path: Path,
) -> None:
    """What a running python holding torch's DLLs does to a restore: Windows refuses to delete them."""
    assert sys.platform == "win32"
    env = _windows_venv(tmp_path / "venv")
    install_standins(env, family("cpu"))
    before = tree_digest(env.root)
    snap = take_snapshot(env)
    install_standins(env, family("cu128"))
    # A real DLL loaded by another process, inside the new torch: not deletable while it is mapped.
    dll = env.site_packages[0] / "torch" / "lib" / "held.dll"
    dll.parent.mkdir(exist_ok=True)
    shutil.copy2(Path(sys.base_prefix) / "python3.dll", dll)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import ctypes, sys; ctypes.WinDLL({str(dll)!r}); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RestoreFailedError) as failed:
            restore_snapshot(snap)
        assert "close programs" in (failed.value.hint or "")
    finally:
        holder.communicate("", timeout=30)
    # Safe to repeat once the other program is gone.
    restore_snapshot(snap)
    assert tree_digest(env.root) == before


def test_a_console_code_page_that_cannot_spell_a_path_does_not_crash_the_cli(tmp_path: Path) -> None:
    """stdout piped under cp1252 (what a redirect gets on a Western Windows): an environment whose
    path holds characters cp1252 lacks must still be listed, and nothing may end in a traceback."""
    assert sys.platform == "win32"
    env = _windows_venv(tmp_path / "环境-ümlaut")
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8")}
    environ |= {"PYTHONIOENCODING": "cp1252", "PYTHONUTF8": "0", "NO_COLOR": "1"}
    for extra in ((), ("--json",)):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "torchdoctor.agent",
                "envs",
                "--env",
                str(env.root),
                "--no-discover",
                *extra,
            ],
            capture_output=True,
            timeout=120,
            check=False,
            env=environ,
        )
        err = done.stderr.decode("cp1252", errors="replace")
        assert "Traceback" not in err, err
        assert done.returncode == 0, err
        if extra:
            # JSON escapes what the code page cannot hold, so the path survives exactly.
            (listed,) = json.loads(done.stdout.decode("cp1252"))
            assert listed["path"] == str(env.root)


def test_autostart_round_trip_in_the_real_registry() -> None:
    """Writes the real HKCU Run value, so only in CI (a throwaway runner), and puts back what was there."""
    assert sys.platform == "win32"
    if not os.environ.get("CI"):
        pytest.skip("writes the user's real Run value; runs only in CI")
    winreg: Any = importlib.import_module("winreg")

    from torchdoctor.agent.autostart import AUTOSTART_NAME, RUN_KEY, backend_for

    with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
        try:
            saved: object = winreg.QueryValueEx(key, AUTOSTART_NAME)
        except FileNotFoundError:
            saved = None
    backend = backend_for("win32")
    try:
        status = backend.enable()
        assert status.enabled and not status.stale
        assert status.command == status.expected_command
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            value, kind = winreg.QueryValueEx(key, AUTOSTART_NAME)
        assert kind == winreg.REG_SZ and value == status.expected_command
        assert not backend.disable().enabled
    finally:
        with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            if isinstance(saved, tuple):
                winreg.SetValueEx(key, AUTOSTART_NAME, 0, saved[1], saved[0])
