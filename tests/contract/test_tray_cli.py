"""`torchdoctor tray`'s input contract: bad input is one line and exit 2, before any icon shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def tray(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", "tray", *args],
        capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "0"], "--interval must be a number of seconds of at least 1, not 0"),
        (["--interval", "nan"], "--interval must be a number of seconds"),
        (["--interval", "soon"], "invalid float value: 'soon'"),
        (["--index-base", "http://example.com/whl"], "https"),
        (["--hardware", "/nonexistent/hw.json"], "--hardware /nonexistent/hw.json: no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = tray(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_without_a_desktop_it_says_so_instead_of_crashing(td_dirs: dict[str, Path]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = tray("--no-discover", env=env)
    assert proc.returncode == 2
    assert "no desktop to show a tray icon on (DISPLAY is not set)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (td_dirs["state"] / "tray.door").exists()  # and it let go of the single-instance lock


def test_a_bad_interval_in_config_toml_is_named_with_its_line(td_dirs: dict[str, Path]) -> None:
    (td_dirs["config"] / "config.toml").write_text("roots = []\ninterval = 0\n")
    proc = tray("--no-discover")
    assert proc.returncode == 2
    assert "config.toml, line 2: `interval` must be" in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_the_documented_options() -> None:
    proc = tray("--help")
    assert proc.returncode == 0
    for option in ("--hardware", "--env", "--no-discover", "--interval", "--index-base"):
        assert option in proc.stdout
    assert "--first-check-after" not in proc.stdout  # a test knob, not part of the contract
