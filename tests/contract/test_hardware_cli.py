"""`torchdoctor hardware` through the real CLI in a subprocess: the JSON contract and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchdoctor.service.probe.hardware import HARDWARE_ENV, hardware_from_json

KEYS = [
    "source",
    "platform",
    "driver_version",
    "cuda_driver_version",
    "gpus",
    "state",
    "notes",
    "machine",
    "tegra",
]
GPU_KEYS = ["index", "name", "compute_capability", "memory_mib"]

WINDOWS_5090 = {
    "platform": "windows",
    "driver_version": "572.16",
    "cuda_driver_version": "12.8",
    "gpus": [{"name": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0", "memory_mib": 32607}],
}


def torchdoctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )


def hw_file(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def test_json_from_a_hardware_file_has_the_contract_shape(tmp_path: Path) -> None:
    result = torchdoctor("hardware", "--json", "--hardware", str(hw_file(tmp_path, WINDOWS_5090)))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert list(out) == KEYS
    assert list(out["gpus"][0]) == GPU_KEYS
    assert out == {
        "source": "file",
        "platform": "windows",
        "driver_version": "572.16",
        "cuda_driver_version": "12.8",
        "gpus": [
            {"index": 0, "name": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0", "memory_mib": 32607}
        ],
        "state": "ok",
        "notes": [],
        "machine": None,
        "tegra": False,
    }


def test_the_environment_variable_replaces_probing(tmp_path: Path) -> None:
    result = torchdoctor("hardware", "--json", env={HARDWARE_ENV: str(hw_file(tmp_path, WINDOWS_5090))})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"] == "file"


def test_the_real_probe_writes_a_valid_hardware_file(tmp_path: Path) -> None:
    result = torchdoctor("hardware", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert list(out) == KEYS
    assert out["source"] in ("nvml", "nvidia-smi", "none")
    assert out["state"] in ("ok", "no-gpu", "no-driver", "restart-needed", "partial", "error")
    # ... and feeding it back reads the same facts, now marked as coming from a file.
    saved = tmp_path / "probed.json"
    saved.write_text(result.stdout, encoding="utf-8")
    again = torchdoctor("hardware", "--json", "--hardware", str(saved))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {**out, "source": "file"}
    hardware_from_json(out, where="probe output")  # and it validates in-process too


def test_text_output_names_driver_cuda_and_each_gpu(tmp_path: Path) -> None:
    result = torchdoctor("hardware", "--hardware", str(hw_file(tmp_path, WINDOWS_5090)))
    assert result.returncode == 0, result.stderr
    assert "Driver:  572.16 (supports CUDA up to 12.8)" in result.stdout
    assert "GPU 0:   NVIDIA GeForce RTX 5090 (compute capability 12.0, 32607 MiB)" in result.stdout
    assert "State:   The NVIDIA driver and every GPU were read." in result.stdout
    assert "\x1b[" not in result.stdout  # NO_COLOR, and not a terminal


def test_text_output_says_when_to_restart(tmp_path: Path) -> None:
    content = {"driver_version": "550.144.03", "state": "restart-needed", "notes": ["NVML said so."]}
    result = torchdoctor("hardware", "--hardware", str(hw_file(tmp_path, content)), env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert (
        "The NVIDIA driver was updated but the old one is still loaded: restart the computer."
        in result.stdout
    )
    assert "  - NVML said so." in result.stdout
    assert "GPUs:    none found" in result.stdout


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            "{not json",
            "is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2",
        ),
        ({"gpus": [{"name": "X", "compute_capability": "86"}]}, 'gpus[0].compute_capability: expected "X.Y"'),
    ],
)
def test_a_bad_file_is_one_line_on_stderr_and_exit_2(tmp_path: Path, content: object, words: str) -> None:
    path = tmp_path / "hw.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    result = torchdoctor("hardware", "--json", "--hardware", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    (first,) = result.stderr.splitlines()  # one line, its hint included
    assert first.startswith(f"torchdoctor: hardware file {path}")
    assert words in first
    assert "Traceback" not in result.stderr


def test_a_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = torchdoctor("hardware", "--hardware", str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"torchdoctor: hardware file {tmp_path / 'nope.json'} does not exist"
