"""The one-folder app PyInstaller builds from packaging/windows/torchdoctor.spec, run as a user runs it:
its own program, no Python of ours, and for `fix` the uv it carries (no uv on PATH)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import freeze
import pytest

from tests.support.envs import install_standins, make_venv
from tests.support.index_server import IndexServer, publish
from tests.support.scenarios import NEW_DRIVER, family
from torchdoctor.service.envs.builds import read_build
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.models import PythonEnv

pytestmark = [pytest.mark.slow, pytest.mark.packaging]

# A PATH with the system's tools and none of ours: no uv, no venv, so what runs is what the app carries.
BARE_PATH = os.pathsep.join(p for p in ("/usr/local/sbin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"))


def run_app(app: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "UV_"))}
    env |= {"PATH": BARE_PATH, "NO_COLOR": "1", "UV_CACHE_DIR": os.environ["UV_CACHE_DIR"]}
    return subprocess.run(
        [str(app / freeze.program_name(freeze.APP_NAME)), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


@pytest.fixture
def hardware_file(tmp_path: Path) -> Path:
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(NEW_DRIVER), encoding="utf-8")
    return path


@pytest.fixture
def cpu_env(tmp_path: Path) -> PythonEnv:
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cpu"))
    return env


@pytest.fixture
def index(tmp_path: Path) -> Iterator[IndexServer]:
    root = tmp_path / "index"
    for variant in ("cpu", "cu126", "cu128"):
        publish(root, family(variant), variant)
    with IndexServer(root) as server:
        yield server


def test_the_app_carries_uv_beside_its_program_and_our_data_files(frozen_app: Path) -> None:
    assert (frozen_app / freeze.program_name("uv")).is_file()
    contents = frozen_app / "_internal" / "torchdoctor"
    # Read at run time through importlib.resources: missing ones would fail only on those paths.
    for folder, dest in freeze.data_files():
        assert (frozen_app / "_internal" / dest / Path(folder).name).is_file(), folder
    assert (contents / "service" / "bench" / "scripts").is_dir()


def test_version_is_the_project_version(frozen_app: Path) -> None:
    proc = run_app(frozen_app, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"torchdoctor {freeze.project_version()}"


def test_check_json_reads_the_hardware_file_and_the_environment(
    frozen_app: Path, hardware_file: Path, cpu_env: PythonEnv
) -> None:
    proc = run_app(
        frozen_app,
        "check",
        "--json",
        "--hardware",
        str(hardware_file),
        "--env",
        str(cpu_env.root),
        "--no-discover",
    )
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["hardware"]["source"] == "file"
    assert doc["hardware"]["gpus"][0]["name"] == "NVIDIA GeForce RTX 4090"
    (env,) = doc["environments"]
    # Read by running the environment's own interpreter: the frozen app has none to lend it.
    assert env["torch"]["version"] == "2.7.1+cpu"
    # A CPU build on a machine with a CUDA GPU: the bundled knowledge tables said so.
    assert env["status"] != "ok"
    assert env["findings"], env
    assert "Traceback" not in proc.stderr


def test_fix_installs_from_the_index_with_the_bundled_uv(
    frozen_app: Path, hardware_file: Path, cpu_env: PythonEnv, index: IndexServer
) -> None:
    assert not cpu_env.has_pip  # nothing but the app's uv can install here
    proc = run_app(
        frozen_app,
        "fix",
        "--env",
        str(cpu_env.root),
        "--yes",
        "--no-bench",
        "--hardware",
        str(hardware_file),
        "--index-base",
        index.url,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reading = read_build(cpu_env, load_knowledge(Path("/nonexistent")))
    assert reading is not None
    assert (reading.build.version, reading.build.torchvision) == ("2.7.1+cu128", "0.22.1+cu128")
    log = Path(proc.stdout.split("log: ", 1)[1].strip())
    text = log.read_text(encoding="utf-8")
    assert str(frozen_app / "uv") in text, text
    assert "verification: ok=True" in text
