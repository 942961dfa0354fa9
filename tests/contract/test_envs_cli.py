"""`torchdoctor envs` through the real CLI: the JSON list's shape, the table, exit codes, stderr.

The JSON keys are a contract (scripts read them); this file freezes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import layouts
from torchdoctor.agent.cli import main
from torchdoctor.service import paths

ENV_KEYS = {"path", "python", "python_version", "kind", "has_pip", "site_packages"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli-home")
    layouts.posix_venv(home / "proj" / ".venv", "3.12.4")
    layouts.posix_venv(home / "code" / "tool" / ".venv", "3.11.9", writer="uv")
    layouts.conda_base(home / "miniforge3", "3.12.4", envs={"ml": "3.11.9"})
    return home


def cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """The installed CLI in a child process, with this home folder and no PATH interpreters."""
    env = dict(os.environ)  # keeps the suite's TORCHDOCTOR_*_DIR isolation
    env.update({"HOME": str(home), "PATH": "", "NO_COLOR": "1"})
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYENV_ROOT", "XDG_DATA_HOME", "UV_PYTHON_INSTALL_DIR"):
        env.pop(var, None)
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_envs_json_is_a_list_of_environments_with_the_contract_keys(home: Path) -> None:
    done = cli(["envs", "--json"], home)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, list)
    assert [e["path"] for e in data] == [
        str(home / "code" / "tool" / ".venv"),
        str(home / "proj" / ".venv"),
        str(home / "miniforge3"),
        str(home / "miniforge3" / "envs" / "ml"),
    ]
    for entry in data:
        assert set(entry) == ENV_KEYS
        assert isinstance(entry["path"], str)
        assert isinstance(entry["python"], str)
        assert entry["kind"] in {"venv", "conda", "system", "pyenv", "uv", "py-launcher"}
        assert isinstance(entry["has_pip"], bool)
        assert all(isinstance(p, str) for p in entry["site_packages"])
    first = data[0]
    assert first == {
        "path": str(home / "code" / "tool" / ".venv"),
        "python": str(home / "code" / "tool" / ".venv" / "bin" / "python"),
        "python_version": "3.11.9",
        "kind": "venv",
        "has_pip": False,
        "site_packages": [str(home / "code" / "tool" / ".venv" / "lib" / "python3.11" / "site-packages")],
    }
    assert done.stderr == ""


def test_envs_table_shows_path_kind_version_and_pip(home: Path) -> None:
    done = cli(["envs"], home)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["PATH", "KIND", "PYTHON", "PIP"]
    # The home folder reads `~` for people (the JSON above keeps full paths).
    assert lines[1].split() == ["~/code/tool/.venv", "venv", "3.11.9", "no"]
    assert lines[2].split() == ["~/proj/.venv", "venv", "3.12.4", "yes"]
    assert lines[-1] == "4 environments"


def test_a_bad_env_is_one_line_on_stderr_and_exit_2(home: Path) -> None:
    done = cli(["envs", "--json", "--env", str(home / "nothing-here")], home)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        f"torchdoctor: {home / 'nothing-here'} is not a Python environment: it does not exist"
    )
    assert "Traceback" not in done.stderr


def test_env_and_no_discover_list_exactly_the_named_environments(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    venv = home / "proj" / ".venv"
    assert main(["envs", "--json", "--no-discover", "--env", str(venv / "bin" / "python")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [e["path"] for e in data] == [str(venv)]
    assert data[0]["python"] == str(venv / "bin" / "python")


def test_config_environments_are_listed_and_bad_ones_are_notes_on_stderr(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = paths.config_file()
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'environments = ["{home / "proj" / ".venv"}", "{tmp_path / "gone"}"]\n')
    assert main(["envs", "--no-discover"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1].split()[0] == str(home / "proj" / ".venv")
    assert out.splitlines()[-1] == "1 environment"
    # A note longer than the terminal wraps with a hanging indent.
    assert all(line.startswith("      ") for line in err.splitlines()[1:])
    assert (
        " ".join(line.strip() for line in err.splitlines())
        == f"note: config.toml lists {tmp_path / 'gone'}, but {tmp_path / 'gone'} is not a Python environment: it does not exist"
    )


def test_nothing_found_is_said_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envs", "--no-discover"]) == 0
    assert capsys.readouterr().out == "No Python environments found.\n"
    assert main(["envs", "--no-discover", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
