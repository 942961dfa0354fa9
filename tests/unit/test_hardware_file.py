"""Hardware files: the JSON shape, its round trip, one-sentence errors, and the override order."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from torchdoctor.service.errors import HardwareFileError
from torchdoctor.service.models import ComputeCapability, Gpu, Hardware, HardwareSource, Platform, ProbeState
from torchdoctor.service.probe.hardware import (
    HARDWARE_ENV,
    hardware_from_json,
    hardware_to_json,
    load_hardware_file,
    resolve_hardware,
    running_platform,
)

RTX_5090 = Gpu(0, "NVIDIA GeForce RTX 5090", ComputeCapability(12, 0), 32607)

MACHINES = [
    Hardware(HardwareSource.NVML, Platform.WINDOWS, "572.16", "12.8", (RTX_5090,)),
    Hardware(
        HardwareSource.NVIDIA_SMI,
        Platform.LINUX,
        "470.182.03",
        "11.4",
        (
            Gpu(0, "NVIDIA GeForce GTX 1080 Ti", None, 11264),
            Gpu(3, "Tesla K80", ComputeCapability(3, 7), None),
        ),
        ProbeState.PARTIAL,
        ("This driver's nvidia-smi cannot report compute capability.",),
    ),
    Hardware(
        HardwareSource.NONE, Platform.LINUX, "550.144.03", None, (), ProbeState.RESTART_NEEDED, ("a", "b")
    ),
    Hardware(HardwareSource.NONE, Platform.WINDOWS, None, None, (), ProbeState.NO_GPU),
    Hardware(HardwareSource.FILE, Platform.MACOS, None, None, (), ProbeState.NO_GPU),
]


def write(tmp_path: Path, content: object, name: str = "hw.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_the_json_shape_is_designs_hardware_plus_state_and_notes() -> None:
    assert hardware_to_json(MACHINES[0]) == {
        "source": "nvml",
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


@pytest.mark.parametrize("hw", MACHINES, ids=lambda hw: f"{hw.source}-{hw.state}")
def test_json_round_trips_through_a_file_with_source_file(hw: Hardware, tmp_path: Path) -> None:
    path = write(tmp_path, hardware_to_json(hw))
    assert load_hardware_file(path) == dataclasses.replace(hw, source=HardwareSource.FILE)
    assert hardware_from_json(hardware_to_json(hw), where="x") == dataclasses.replace(
        hw, source=HardwareSource.FILE
    )


def test_a_minimal_file_fills_in_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, {"gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}]})
    hw = load_hardware_file(path)
    assert hw == Hardware(
        source=HardwareSource.FILE,
        platform=running_platform(),
        driver_version=None,
        cuda_driver_version=None,
        gpus=(Gpu(0, "NVIDIA GeForce RTX 4090", ComputeCapability(8, 9), None),),
        state=ProbeState.OK,
    )
    assert not hw.probed


def test_a_file_without_gpus_is_a_machine_without_an_nvidia_gpu(tmp_path: Path) -> None:
    hw = load_hardware_file(write(tmp_path, {"platform": "windows"}))
    assert hw.gpus == ()
    assert not hw.has_nvidia_gpu
    assert hw.state is ProbeState.NO_GPU
    assert hw.platform is Platform.WINDOWS


def test_a_powershell_utf16_file_loads(tmp_path: Path) -> None:
    # `torchdoctor hardware --json > hw.json` in Windows PowerShell 5 writes UTF-16 with a BOM.
    path = tmp_path / "hw.json"
    path.write_bytes(json.dumps(hardware_to_json(MACHINES[0])).encode("utf-16"))
    assert load_hardware_file(path).driver_version == "572.16"


def test_a_utf8_file_with_a_bom_loads(tmp_path: Path) -> None:
    path = tmp_path / "hw.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"driver_version": "572.16"}).encode())
    assert load_hardware_file(path).driver_version == "572.16"


GPU = {"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is not valid JSON: Expecting value at line 1, column 1"),
        ('{\n  "gpus": [\n    {"name": "x",}\n  ]\n}', "is not valid JSON: Expecting property name"),
        ([GPU], "top level: expected a JSON object, got ["),
        ({"gpu": [GPU]}, "gpu: unknown field (known fields: source, platform,"),
        (
            {"gpus": [GPU, {"name": "B", "compute_capability": "86"}]},
            'gpus[1].compute_capability: expected "X.Y" like "8.6", got "86"',
        ),
        (
            {"gpus": [{"name": "B", "compute_capability": 8.6}]},
            'gpus[0].compute_capability: expected "X.Y" like "8.6", got 8.6',
        ),
        (
            {"gpus": [{"name": "B"}]},
            'gpus[0].compute_capability: missing (write "8.6", or null when unknown)',
        ),
        ({"gpus": [{"compute_capability": "8.6"}]}, "gpus[0].name: expected the GPU's name"),
        ({"gpus": [{**GPU, "memory": 24564}]}, "gpus[0].memory: unknown field"),
        ({"gpus": [{**GPU, "index": True}]}, "gpus[0].index: expected a whole number of 0 or more, got true"),
        ({"gpus": [{**GPU, "memory_mib": -1}]}, "gpus[0].memory_mib: expected a whole number of 0 or more"),
        ({"gpus": [{**GPU, "index": 1}, {**GPU, "index": 1}]}, "gpus: index 1 appears more than once"),
        ({"gpus": {"0": GPU}}, "gpus: expected a list of GPUs"),
        ({"platform": "Windows"}, 'platform: expected one of "windows", "linux", "macos", got "Windows"'),
        ({"source": "nvml-ish"}, 'source: expected one of "nvml", "nvidia-smi", "file", "none"'),
        ({"state": "broken"}, "state: expected one of"),
        ({"driver_version": 560.7}, 'driver_version: expected a version string like "572.16", got 560.7'),
        ({"driver_version": "latest"}, 'driver_version: expected a version string like "572.16"'),
        ({"cuda_driver_version": "12"}, 'cuda_driver_version: expected a version string like "12.8"'),
        ({"notes": "restart"}, "notes: expected a list of sentences"),
    ],
)
def test_bad_files_get_one_readable_sentence_naming_the_field(
    tmp_path: Path, content: object, message: str
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(HardwareFileError) as caught:
        load_hardware_file(path)
    text = str(caught.value)
    assert message in text
    assert text.startswith(f"hardware file {path}")
    assert "\n" not in text
    assert caught.value.exit_code == 2


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HardwareFileError, match=r"hardware file .*nope\.json does not exist$"):
        load_hardware_file(tmp_path / "nope.json")


def test_a_folder_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(HardwareFileError, match=r"is a folder, not a file$"):
        load_hardware_file(tmp_path)


def test_a_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "hw.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(HardwareFileError, match=r"is not text \(expected UTF-8 JSON\)$"):
        load_hardware_file(path)


def test_the_argument_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = write(tmp_path, {"driver_version": "572.16"}, "given.json")
    from_env = write(tmp_path, {"driver_version": "470.182.03"}, "env.json")
    monkeypatch.setenv(HARDWARE_ENV, str(from_env))
    assert resolve_hardware(given).driver_version == "572.16"
    assert resolve_hardware(None).driver_version == "470.182.03"


def test_a_bad_environment_file_says_where_the_path_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HARDWARE_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(HardwareFileError, match=f"from {HARDWARE_ENV}"):
        resolve_hardware(None)


def test_without_file_or_environment_the_machine_is_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HARDWARE_ENV, "  ")  # blank counts as unset
    assert resolve_hardware(None).source is not HardwareSource.FILE
