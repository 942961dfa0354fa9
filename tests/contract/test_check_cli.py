"""`torchdoctor check` through the real CLI, over real venvs holding stand-in torch builds.

The JSON document is the contract scripts outside the project depend on (DESIGN.md); this file
freezes its keys and types, the exit codes, and the one-line error rule for bad input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.envs import install_standins, make_venv
from tests.support.standin import StandIn

TOP_KEYS = {"schema_version", "hardware", "environments", "status", "notes"}
HW_KEYS = {
    "source",
    "platform",
    "driver_version",
    "cuda_driver_version",
    "gpus",
    "state",
    "notes",
    "machine",
    "tegra",
}
GPU_KEYS = {"index", "name", "compute_capability", "memory_mib"}
ENV_KEYS = {"path", "python", "python_version", "kind", "torch", "status", "findings"}
TORCH_KEYS = {"version", "variant", "cuda", "torchvision", "torchaudio", "installer"}
FINDING_KEYS = {"code", "severity", "message", "fix"}
CODES = {
    "cpu-build-with-gpu",
    "driver-too-old",
    "gpu-arch-unsupported",
    "companion-mismatch",
    "variant-mismatch",
    "torch-unreadable",
    "cuda-build-without-gpu",
    "driver-minor-compat",
    "newer-variant-available",
    "torch-in-user-site",
    "fix-interrupted",
}

RTX_4090_572 = {
    "driver_version": "572.16",
    "cuda_driver_version": "12.8",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9", "memory_mib": 24564}],
}


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("check-envs")
    made = {}
    good = make_venv(base / "good")
    install_standins(
        good, [StandIn("torch", "2.7.1+cu128", cuda="12.8"), StandIn("torchvision", "0.22.1+cu128")]
    )
    made["good"] = good.root
    cpu = make_venv(base / "cpu")
    install_standins(cpu, [StandIn("torch", "2.5.1+cpu")])
    made["cpu"] = cpu.root
    mixed = make_venv(base / "mixed")
    install_standins(
        mixed, [StandIn("torch", "2.7.1+cu128", cuda="12.8"), StandIn("torchvision", "0.20.1+cu124")]
    )
    made["mixed"] = mixed.root
    made["empty"] = make_venv(base / "empty").root
    return made


def _hardware_file(tmp_path: Path, content: dict[str, Any] | str) -> Path:
    path = tmp_path / "hw.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def cli(*args: str | Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS=str(columns))
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def check_json(hw: Path, *roots: Path) -> tuple[int, dict[str, Any]]:
    args: list[str | Path] = ["check", "--json", "--no-discover", "--hardware", hw]
    for root in roots:
        args += ["--env", root]
    proc = cli(*args)
    assert proc.stderr == "" or "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_the_json_document_has_the_contract_shape(tmp_path: Path, envs: dict[str, Path]) -> None:
    hw = _hardware_file(tmp_path, RTX_4090_572)
    rc, doc = check_json(hw, envs["good"], envs["cpu"], envs["mixed"], envs["empty"])
    assert rc == 1
    assert set(doc) == TOP_KEYS and doc["schema_version"] == 1
    assert set(doc["hardware"]) == HW_KEYS
    assert doc["hardware"]["source"] == "file"
    (gpu,) = doc["hardware"]["gpus"]
    assert set(gpu) == GPU_KEYS and gpu["compute_capability"] == "8.9"
    by_path = {Path(e["path"]).name: e for e in doc["environments"]}
    assert list(by_path) == ["good", "cpu", "mixed", "empty"]
    for entry in doc["environments"]:
        assert set(entry) == ENV_KEYS
        assert entry["kind"] == "venv"
        assert (
            entry["python_version"]
            == f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
        )
        assert Path(entry["python"]).name.startswith("python")
        if entry["torch"] is not None:
            assert set(entry["torch"]) == TORCH_KEYS
        for finding in entry["findings"]:
            assert set(finding) == FINDING_KEYS
            assert finding["code"] in CODES
            assert finding["severity"] in {"error", "warn", "info"}
    assert by_path["good"]["status"] == "ok" and by_path["good"]["findings"] == []
    assert by_path["good"]["torch"] == {
        "version": "2.7.1+cu128",
        "variant": "cu128",
        "cuda": "12.8",
        "torchvision": "0.22.1+cu128",
        "torchaudio": None,
        "installer": "uv",
    }
    assert [f["code"] for f in by_path["cpu"]["findings"]] == ["cpu-build-with-gpu"]
    assert by_path["cpu"]["status"] == "broken"
    assert sorted(f["code"] for f in by_path["mixed"]["findings"]) == [
        "companion-mismatch",
        "variant-mismatch",
    ]
    assert by_path["empty"] == {**by_path["empty"], "torch": None, "status": "no-torch", "findings": []}
    assert doc["status"] == "broken"


def test_all_good_exits_0(tmp_path: Path, envs: dict[str, Path]) -> None:
    rc, doc = check_json(_hardware_file(tmp_path, RTX_4090_572), envs["good"], envs["empty"])
    assert (rc, doc["status"]) == (0, "ok")


def test_a_warning_exits_1_with_status_warn(tmp_path: Path, envs: dict[str, Path]) -> None:
    rc, doc = check_json(_hardware_file(tmp_path, {"gpus": []}), envs["good"])
    assert (rc, doc["status"]) == (1, "warn")
    assert doc["environments"][0]["findings"][0]["code"] == "cuda-build-without-gpu"


def test_the_same_environment_named_twice_is_reported_once(tmp_path: Path, envs: dict[str, Path]) -> None:
    python = envs["good"] / "bin" / "python"
    _, doc = check_json(_hardware_file(tmp_path, RTX_4090_572), envs["good"], python)
    assert len(doc["environments"]) == 1


def test_hardware_json_output_is_a_valid_hardware_file(tmp_path: Path, envs: dict[str, Path]) -> None:
    probed = cli("hardware", "--json")
    assert probed.returncode == 0
    hw = _hardware_file(tmp_path, probed.stdout)
    rc, doc = check_json(hw, envs["good"])
    assert doc["hardware"]["gpus"] == json.loads(probed.stdout)["gpus"]
    assert rc in (0, 1)


def test_the_text_report_names_each_environment_and_its_verdict(
    tmp_path: Path, envs: dict[str, Path]
) -> None:
    hw = _hardware_file(tmp_path, RTX_4090_572)
    # Wide enough that no cell is shortened (test_output_width.py covers narrow terminals).
    proc = cli(
        "check", "--no-discover", "--hardware", hw, "--env", envs["good"], "--env", envs["cpu"], columns=300
    )
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("GPU: NVIDIA GeForce RTX 4090 (sm_89, 24 GiB)")
    row = next(line for line in lines if line.startswith(f"{envs['cpu']} "))
    assert "2.5.1+cpu" in row and row.rstrip().endswith("broken")
    assert any("cpu-build-with-gpu" in line for line in lines)
    assert any("fix: run `torchdoctor fix --env" in line for line in lines)
    assert "\033[" not in proc.stdout  # NO_COLOR


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("missing-hardware", "hw.json"),
        ("corrupt-hardware", "not valid JSON"),
        ("bad-gpu", "compute_capability"),
        ("not-an-env", "is not a Python environment"),
        ("unreadable", "cannot read"),
        ("bad-flag", "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_readable_line_and_exit_2(
    tmp_path: Path, envs: dict[str, Path], setup: str, fragment: str
) -> None:
    hw = tmp_path / "hw.json"
    args: list[str | Path] = ["check", "--no-discover", "--hardware", hw, "--env", envs["good"]]
    if setup != "missing-hardware":
        hw.write_text(json.dumps(RTX_4090_572))
    if setup == "corrupt-hardware":
        hw.write_text('{"gpus": [')
    elif setup == "bad-gpu":
        hw.write_text(json.dumps({"gpus": [{"name": "x", "compute_capability": "eight"}]}))
    elif setup == "not-an-env":
        (tmp_path / "plain").mkdir()
        args += ["--env", tmp_path / "plain"]
    elif setup == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads every folder; the permission check cannot fail")
    elif setup == "bad-flag":
        args.append("--frobnicate")
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment in proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1  # one line, its hint included


def test_every_command_has_help_and_the_top_level_lists_them() -> None:
    top = cli("--help")
    assert top.returncode == 0
    for name in ("check", "hardware", "envs", "plan", "fix", "bench"):
        assert name in top.stdout
        sub = cli(name, "--help")
        assert sub.returncode == 0 and sub.stdout.startswith(f"usage: torchdoctor {name}")
