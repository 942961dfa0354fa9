"""The Windows console: colour only once VT processing is on, JSON as UTF-8 whatever the code page,
and every command working when sys.stdout and sys.stderr are None (pythonw, a windowed build).

kernel32 is faked (`FakeConsole`) at the ConsoleModes seam; the JSON and None-stream tests run the
real CLI in a real subprocess over a real venv.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from tests.support.envs import make_venv
from tests.support.windows import windows_only
from torchdoctor.agent import output
from torchdoctor.agent.output import ENABLE_VIRTUAL_TERMINAL_PROCESSING, enable_vt, use_colour, write_json

HW = {"driver_version": "572.16", "gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}]}


class FakeConsole:
    """GetConsoleMode/SetConsoleMode as Windows answers: `modes` per standard handle (None: not a
    console), and whether SetConsoleMode accepts the VT flag (Windows 7/8 do not)."""

    def __init__(self, modes: dict[int, int | None], *, accepts_vt: bool = True) -> None:
        self.modes = modes
        self.accepts_vt = accepts_vt
        self.set_calls: list[tuple[int, int]] = []

    def get_mode(self, std_handle: int) -> int | None:
        return self.modes.get(std_handle)

    def set_mode(self, std_handle: int, mode: int) -> bool:
        self.set_calls.append((std_handle, mode))
        if mode & ENABLE_VIRTUAL_TERMINAL_PROCESSING and not self.accepts_vt:
            return False
        self.modes[std_handle] = mode
        return True


class Terminal(io.StringIO):
    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd


@pytest.fixture(autouse=True)
def _fresh_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "_vt_enabled", {})
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


def test_vt_processing_is_turned_on_before_colour() -> None:
    console = FakeConsole({-11: 0x0003})  # ENABLE_PROCESSED_OUTPUT | ENABLE_WRAP_AT_EOL_OUTPUT
    assert use_colour(Terminal(1), windows=True, console=console)
    assert console.set_calls == [(-11, 0x0003 | ENABLE_VIRTUAL_TERMINAL_PROCESSING)]


def test_stderr_has_its_own_handle() -> None:
    console = FakeConsole({-11: None, -12: 0x0003})
    assert use_colour(Terminal(2), windows=True, console=console)
    assert console.set_calls == [(-12, 0x0003 | ENABLE_VIRTUAL_TERMINAL_PROCESSING)]


def test_a_console_that_refuses_vt_gets_no_colour() -> None:
    console = FakeConsole({-11: 0x0003}, accepts_vt=False)
    assert not use_colour(Terminal(1), windows=True, console=console)


def test_no_console_behind_the_handle_gets_no_colour() -> None:
    assert not use_colour(Terminal(1), windows=True, console=FakeConsole({-11: None}))


def test_vt_already_on_is_left_alone() -> None:
    console = FakeConsole({-11: 0x0007})
    assert use_colour(Terminal(1), windows=True, console=console)
    assert console.set_calls == []


def test_a_stream_that_is_not_stdout_or_stderr_gets_no_colour_on_windows() -> None:
    assert not enable_vt(Terminal(7), FakeConsole({-11: 0x0003}))


def test_other_systems_need_no_console_mode() -> None:
    assert use_colour(Terminal(1), windows=False, console=FakeConsole({}))
    assert not use_colour(io.StringIO(), windows=False)
    assert not use_colour(None)


def test_json_is_utf8_on_a_cp1252_stream() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="cp1252")
    payload = {"path": "C:\\Users\\Zoë\\日本\\.venv"}
    write_json(payload, stream)
    assert json.loads(raw.getvalue().decode("utf-8")) == payload


def _cli(
    args: list[str], *, env: dict[str, str] | None = None, prelude: str = "", stdout: IO[bytes] | None = None
) -> subprocess.CompletedProcess[bytes]:
    code = f"import sys\n{prelude}from torchdoctor.agent.cli import main\nraise SystemExit(main({args!r}))\n"
    return subprocess.run(
        [sys.executable, "-c", code],
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=120,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def non_ascii_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("console")
    env = make_venv(base / "naïve Zoë 日本" / ".venv")
    return env.root


@pytest.fixture
def hw_file(tmp_path: Path) -> Path:
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(HW), encoding="utf-8")
    return path


def test_check_json_redirected_under_cp1252_is_utf8(
    non_ascii_venv: Path, hw_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    environ = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    args = ["check", "--json", "--no-discover", "--env", str(non_ascii_venv), "--hardware", str(hw_file)]
    with out.open("wb") as handle:
        done = _cli(args, env=environ, stdout=handle)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_bytes().decode("utf-8"))
    assert data["environments"][0]["path"] == str(non_ascii_venv)


def test_human_output_under_cp1252_does_not_crash_on_a_path_it_cannot_spell(
    non_ascii_venv: Path, hw_file: Path
) -> None:
    environ = {**os.environ, "PYTHONIOENCODING": "cp1252", "COLUMNS": "200"}
    done = _cli(["envs", "--no-discover", "--env", str(non_ascii_venv)], env=environ)
    assert done.returncode == 0, done.stderr
    assert b"internal error" not in done.stderr
    assert "naïve Zoë".encode("cp1252") in done.stdout  # what cp1252 can spell stays as it is


NO_STREAMS = "sys.stdout = None\nsys.stderr = None\n"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["check", "--json", "--no-discover"], 0),
        (["check", "--no-discover"], 0),
        (["hardware"], 0),
        (["envs", "--json", "--no-discover"], 0),
        (["hardware", "--hardware", "/nonexistent/hw.json"], 2),
        (["plan"], 2),
        (["autostart", "status"], 0),
    ],
)
def test_every_command_works_without_stdout_and_stderr(args: list[str], code: int, hw_file: Path) -> None:
    environ = {**os.environ, "TORCHDOCTOR_HARDWARE": str(hw_file)}
    done = _cli(args, env=environ, prelude=NO_STREAMS)
    assert done.returncode == code, done.stderr
    assert done.stdout == b"" and b"Traceback" not in done.stderr


@windows_only
def test_the_real_console_accepts_vt_processing() -> None:
    if not sys.stdout.isatty():
        pytest.skip("stdout is not a console here")
    assert use_colour(sys.stdout)
