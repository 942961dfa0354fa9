"""A hung or broken interpreter: one InterpreterError naming it, one line and one exit code from
every command, and never the probe script pasted into a message.

The interpreters here are real programs standing in for an environment's python: one that never
answers, one that fails with a message, one that prints garbage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchdoctor.service import proc
from torchdoctor.service.envs.tags import FACTS_MARKER, FACTS_SCRIPT, interpreter_facts
from torchdoctor.service.errors import EXIT_ATTENTION, InterpreterError, ProbeError, SubprocessTimeoutError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the stand-in interpreters are sh scripts")

HANGS = "exec sleep 600\n"
FAILS = 'echo "Fatal Python error: init_fs_encoding: failed to get the Python codec" >&2\nexit 1\n'
RAISES = (
    'echo "Traceback (most recent call last):" >&2\n'
    'echo "  File \\"<string>\\", line 2, in <module>" >&2\n'
    "echo \"ModuleNotFoundError: No module named 'encodings'\" >&2\n"
    "exit 1\n"
)
GARBAGE = "printf 'Welcome to conda! \\033[1m%s\\033[0m\\n' activate\n"
RTX_4090 = {
    "driver_version": "572.16",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}],
}
# Words of the probe script that must never reach a person.
SCRIPT_WORDS = ("import json", "sysconfig", "def glibc", FACTS_MARKER.strip())


def fake_python(folder: Path, body: str) -> Path:
    """An executable `folder/bin/python` that runs `body` (sh)."""
    python = folder / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text("#!/bin/sh\n" + body)
    python.chmod(0o755)
    return python


def fake_venv(root: Path, body: str) -> Path:
    """A venv as discovery sees it (pyvenv.cfg, site-packages) whose python is `body`."""
    (root / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.7\n")
    fake_python(root, body)
    return root


def assert_no_script(text: str) -> None:
    assert " -c " not in text
    for word in SCRIPT_WORDS:
        assert word not in text


# --- proc: a timeout names the program, not its script -----------------------------------------


def test_shown_command_stops_at_an_inline_script() -> None:
    assert (
        proc.shown_command(["/env/bin/python", "-I", "-c", FACTS_SCRIPT, "x"]) == "/env/bin/python -I -c ..."
    )
    assert proc.shown_command([Path("nvidia-smi"), "--query-gpu=name"]) == "nvidia-smi --query-gpu=name"
    assert proc.shown_command(["tool", "a\nb", "z" * 500, "end"]) == "tool ... ... end"


def test_a_timeout_hint_shows_the_program_and_not_the_script(tmp_path: Path) -> None:
    python = fake_python(tmp_path, HANGS)
    with pytest.raises(SubprocessTimeoutError) as info:
        proc.run([python, "-I", "-c", FACTS_SCRIPT], timeout=0.3)
    assert str(info.value) == "python did not finish within 0.3 s"
    assert info.value.hint == f"the program may be hung; try again, or check it by hand: {python} -I -c ..."


# --- interpreter_facts against real stand-ins ----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (HANGS, "The interpreter {python} did not answer within 0.5 s."),
        (
            FAILS,
            "The interpreter {python} failed (exit status 1): "
            "Fatal Python error: init_fs_encoding: failed to get the Python codec.",
        ),
        (
            RAISES,
            "The interpreter {python} failed (exit status 1): ModuleNotFoundError: No module named 'encodings'.",
        ),
        ("exit 3\n", "The interpreter {python} failed (exit status 3) and printed nothing on stderr."),
        (
            GARBAGE,
            "The interpreter {python} did not describe itself (it printed 'Welcome to conda! ?[1mactivate?[0m').",
        ),
        (
            f"echo '{FACTS_MARKER}{{\"version\": [3]}}'\n",
            "The interpreter {python} described itself in a way we cannot read: bad 'version': [3].",
        ),
    ],
    ids=["hangs", "fails", "raises", "silent", "garbage", "bad-facts"],
)
def test_every_broken_interpreter_is_one_interpreter_error_naming_it(
    tmp_path: Path, body: str, expected: str
) -> None:
    python = fake_python(tmp_path, body)
    with pytest.raises(InterpreterError) as info:
        interpreter_facts(python, timeout=0.5)
    assert str(info.value) == expected.format(python=python)
    assert info.value.code == "interpreter-failed"
    assert info.value.exit_code == EXIT_ATTENTION
    assert isinstance(info.value, ProbeError)
    assert "Traceback" not in str(info.value)
    assert_no_script(f"{info.value} {info.value.hint}")


def test_a_missing_interpreter_is_the_same_error(tmp_path: Path) -> None:
    with pytest.raises(InterpreterError, match="Could not start the interpreter"):
        interpreter_facts(tmp_path / "bin" / "python")


def test_a_long_line_of_output_is_cut_short(tmp_path: Path) -> None:
    python = fake_python(tmp_path, f"echo '{'x' * 5000}' >&2\nexit 1\n")
    with pytest.raises(InterpreterError) as info:
        interpreter_facts(python)
    assert len(str(info.value)) < len(str(python)) + 250
    assert str(info.value).endswith("....")


# --- the CLI: one line, one exit code, whichever command meets the interpreter -----------------


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(RTX_4090))
    argv = [sys.executable, "-m", "torchdoctor.agent", *args, "--hardware", str(hw)]
    # An index nobody listens on: the interpreter must fail first, before any page is asked for.
    argv += ["--index-base", "http://127.0.0.1:9"]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ, NO_COLOR="1")
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "says"),
    [
        (HANGS, "did not answer within 10 s"),
        (FAILS, "failed (exit status 1): Fatal Python error"),
        (RAISES, "failed (exit status 1): ModuleNotFoundError: No module named 'encodings'"),
        (GARBAGE, "did not describe itself"),
    ],
    ids=["hangs", "fails", "raises", "garbage"],
)
@pytest.mark.parametrize("command", [["plan"], ["fix", "--dry-run"]], ids=["plan", "fix"])
def test_plan_and_fix_say_one_line_with_one_exit_code(
    tmp_path: Path, body: str, says: str, command: list[str]
) -> None:
    root = fake_venv(tmp_path / "venv", body)
    done = run_cli(tmp_path, *command, "--env", str(root))
    assert done.returncode == EXIT_ATTENTION, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"torchdoctor: The interpreter {root / 'bin' / 'python'} {says}")
    assert "Traceback" not in done.stderr + done.stdout
    assert_no_script(done.stderr + done.stdout)
    assert "127.0.0.1:9" not in done.stderr  # the index was never the problem


@pytest.mark.slow
def test_plan_json_names_the_interpreter_error_code(tmp_path: Path) -> None:
    root = fake_venv(tmp_path / "venv", FAILS)
    done = run_cli(tmp_path, "plan", "--json", "--env", str(root))
    assert done.returncode == EXIT_ATTENTION
    doc = json.loads(done.stdout)
    assert doc["error"] == "interpreter-failed"
    assert "Fatal Python error" in doc["reason"]
    assert_no_script(done.stdout)
