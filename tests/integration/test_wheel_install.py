"""The built wheel, installed for real (not editable): package data is found and the CLI runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.envs import make_venv, uv_bin

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_its_data_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(REPO)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("torchdoctor-*.whl")
    env = make_venv(tmp_path / "venv")
    installed = subprocess.run(
        [uv_bin(), "pip", "install", "--quiet", "--python", str(env.python), str(wheel)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    probe = (
        "import importlib.resources as r, json\n"
        "f, b = r.files('torchdoctor.service.facts'), r.files('torchdoctor.service.bench')\n"
        "print(json.dumps([json.loads((f / 'data/knowledge.json').read_text())['schema'],"
        " (b / 'scripts/bench_env.py').is_file(), (r.files('torchdoctor.icons') / 'torchdoctor.ico').is_file()]))\n"
    )
    out = subprocess.run(
        [str(env.python), "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert json.loads(out.stdout) == [1, True, True], out.stderr
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps({"gpus": []}))
    cli = env.root / "bin" / "torchdoctor"
    check = subprocess.run(
        [str(cli), "check", "--json", "--no-discover", "--hardware", str(hw), "--env", str(env.root)],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["environments"][0]["torch"] is None
