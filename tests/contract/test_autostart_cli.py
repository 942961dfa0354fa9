"""`torchdoctor autostart` through the real CLI in a subprocess: JSON keys, exit codes, and an entry that runs.

HOME and XDG_CONFIG_HOME point into tmp_path, so the real user's autostart folder is never touched.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from torchdoctor.agent.autostart import parse_desktop_entry

KEYS = [
    "schema_version",
    "enabled",
    "mechanism",
    "location",
    "command",
    "expected_command",
    "disabled_by_user",
    "stale",
    "notes",
]
CLI = Path(sys.executable).parent / "torchdoctor"

# Off Linux, `status` would read the real user's registry; only the `-m` test runs there.
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG flow runs on Linux")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir()
    return {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "NO_COLOR": "1",
    }


def torchdoctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60, env=env, check=False)


def entry_path(env: dict[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "autostart" / "torchdoctor.desktop"


@linux_only
def test_status_enable_disable_json_through_the_cli(env: dict[str, str]) -> None:
    result = torchdoctor(env, "autostart", "status", "--json")
    assert result.returncode == 0, result.stderr
    off = json.loads(result.stdout)
    assert list(off) == KEYS
    assert off["schema_version"] == 1
    assert off["enabled"] is False
    assert off["mechanism"] == "xdg-autostart"
    assert off["location"] == str(entry_path(env))
    assert off["command"] is None
    assert off["disabled_by_user"] is False
    assert off["stale"] is False
    assert off["notes"] == []
    assert off["expected_command"].startswith('"/')

    result = torchdoctor(env, "autostart", "enable", "--json")
    assert result.returncode == 0, result.stderr
    on = json.loads(result.stdout)
    assert list(on) == KEYS
    assert on["enabled"] is True
    assert on["command"] == on["expected_command"] == off["expected_command"]
    assert entry_path(env).is_file()

    # Idempotent: a second enable changes nothing.
    again = torchdoctor(env, "autostart", "enable", "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout) == on

    result = torchdoctor(env, "autostart", "disable", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == off
    assert not entry_path(env).exists()
    assert torchdoctor(env, "autostart", "disable").returncode == 0


@linux_only
def test_the_human_lines(env: dict[str, str]) -> None:
    result = torchdoctor(env, "autostart", "status")
    assert result.returncode == 0
    assert result.stdout == "Start at login: off; `torchdoctor autostart enable` turns it on\n"

    result = torchdoctor(env, "autostart", "enable")
    assert result.returncode == 0
    # Outside HOME, so the full path.
    assert result.stdout == f"Start at login: on ({entry_path(env)})\n"

    with entry_path(env).open("a", encoding="utf-8") as handle:
        handle.write("Hidden=true\n")
    result = torchdoctor(env, "autostart", "status")
    assert result.returncode == 0  # status: 0 whatever the state
    assert result.stdout.startswith(
        "Start at login: off: turned off in the desktop's startup settings (Hidden=true)"
    )
    assert "`torchdoctor autostart enable` turns it back on" in result.stdout


@linux_only
def test_an_entry_under_home_is_shown_with_a_tilde(env: dict[str, str]) -> None:
    env = {**env, "XDG_CONFIG_HOME": ""}  # the default: ~/.config
    result = torchdoctor(env, "autostart", "enable")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Start at login: on (~/.config/autostart/torchdoctor.desktop)\n"
    assert (Path(env["HOME"]) / ".config" / "autostart" / "torchdoctor.desktop").is_file()


@linux_only
def test_the_registered_exec_line_starts_torchdoctor(env: dict[str, str]) -> None:
    assert torchdoctor(env, "autostart", "enable").returncode == 0
    entry = parse_desktop_entry(entry_path(env).read_text(encoding="utf-8"))
    argv = shlex.split(entry["Exec"])
    assert Path(argv[0]).is_absolute()
    assert argv[1:] == ["-m", "torchdoctor.agent", "tray"]
    # `--version` in place of `tray`: the same interpreter and module, without starting a tray.
    result = subprocess.run(
        [*argv[:-1], "--version"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("torchdoctor ")


def test_python_dash_m_torchdoctor_agent_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("torchdoctor ")


@linux_only
@pytest.mark.parametrize("args", [["autostart"], ["autostart", "on"], ["autostart", "status", "--bogus"]])
def test_bad_input_is_exit_2_on_one_line(env: dict[str, str], args: list[str]) -> None:
    result = torchdoctor(env, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


@linux_only
def test_an_unwritable_autostart_folder_is_one_line_and_exit_1(env: dict[str, str]) -> None:
    # A file where the folder should be: refused for root too, unlike a chmod'ed folder.
    folder = entry_path(env).parent
    folder.parent.mkdir(parents=True)
    folder.write_text("not a folder", encoding="utf-8")
    for action in ("enable", "disable"):
        result = torchdoctor(env, "autostart", action)
        assert result.returncode == 1, result
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"torchdoctor: could not {'write' if action == 'enable' else 'remove'} ")
        assert "(hint: " in lines[0]
        assert "Traceback" not in result.stderr
    # status still answers, with the reason in a note.
    result = torchdoctor(env, "autostart", "status", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["enabled"] is False


@linux_only
def test_the_module_runs_without_console_streams_as_under_pythonw(env: dict[str, str]) -> None:
    # pythonw.exe, which the Windows entry uses, gives the program sys.stdout = sys.stderr = None.
    code = (
        "import runpy, sys; sys.stdout = sys.stderr = None; "
        "sys.argv = ['torchdoctor', 'autostart', 'status']; "
        "runpy.run_module('torchdoctor.agent', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
