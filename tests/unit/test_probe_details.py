"""Probe outputs that used to read wrong: the Windows driver version form, nvidia-smi without the
driver's libraries, and a `--query-gpu` table where one GPU's row is an error line.

The runner is faked (tests/unit/test_hardware_probe.py's FakeSmi, answering with files from
tests/fixtures/nvidia-smi); the parsers and the probe chain run for real.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import fake_nvml as fk
from tests.support.windows import windows_only
from tests.unit.test_hardware_probe import LINUX_SMI, NO_PATH, QUERY, WIN_SMI, FakeSmi, done, recorded
from torchdoctor.service.errors import HardwareFileError
from torchdoctor.service.models import HardwareSource, Platform, ProbeState
from torchdoctor.service.probe.hardware import (
    driver_version_from_windows,
    load_hardware_file,
    probe_hardware,
    split_smi_failed_rows,
)


@pytest.mark.parametrize(
    ("windows_form", "driver"),
    [
        ("32.0.15.7216", "572.16"),  # the brief's example: 15|7216 -> 57216
        ("32.0.15.6094", "560.94"),
        ("27.21.14.5671", "456.71"),  # a 456 driver on Windows 10
        ("31.0.15.1694", "516.94"),
        ("32.0.15.8129", "581.29"),
    ],
)
def test_the_windows_file_version_becomes_the_driver_version(windows_form: str, driver: str) -> None:
    assert driver_version_from_windows(windows_form) == driver


@pytest.mark.parametrize("native", ["572.16", "550.144.03", "384.98", "610.57.04"])
def test_nvidia_versions_pass_unchanged(native: str) -> None:
    assert driver_version_from_windows(native) == native


@pytest.mark.parametrize("bad", ["32.0.1.5", "1.2.3.45678", "32.0.0.216"])
def test_a_four_field_version_without_a_driver_version_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"572\.16"):
        driver_version_from_windows(bad)


def _hw_file(tmp_path: Path, driver: str) -> Path:
    path = tmp_path / "hw.json"
    path.write_text(
        json.dumps({"driver_version": driver, "gpus": [{"name": "RTX 4090", "compute_capability": "8.9"}]}),
        encoding="utf-8",
    )
    return path


def test_a_hardware_file_with_the_windows_form_reads_as_the_driver_version(tmp_path: Path) -> None:
    hw = load_hardware_file(_hw_file(tmp_path, "32.0.15.7216"))
    assert hw.driver_version == "572.16"


def test_a_hardware_file_with_an_unusable_four_field_version_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(HardwareFileError, match="driver_version") as caught:
        load_hardware_file(_hw_file(tmp_path, "32.0.1.5"))
    assert caught.value.exit_code == 2


def test_the_cli_rejects_it_with_exit_2_and_one_line(tmp_path: Path) -> None:
    done_ = subprocess.run(
        [
            sys.executable,
            "-m",
            "torchdoctor.agent",
            "hardware",
            "--hardware",
            str(_hw_file(tmp_path, "9.9.9.9")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done_.returncode == 2
    assert len(done_.stderr.strip().splitlines()) == 1
    assert "driver_version" in done_.stderr


def test_nvidia_smi_reporting_the_windows_form_is_converted(tmp_path: Path) -> None:
    row = "0, NVIDIA GeForce RTX 4090, 8.9, 24564, 32.0.15.7216\n"
    run = FakeSmi(WIN_SMI, {QUERY: done(row), "": done(recorded("smi-windows-591.86.txt"))})
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER), run=run, platform=Platform.WINDOWS, environ={}
    )
    assert hw.driver_version == "572.16"


def test_nvidia_smi_without_the_driver_libraries_is_its_own_state(tmp_path: Path) -> None:
    run = FakeSmi(LINUX_SMI, {QUERY: done(recorded("error-libnvidia-ml-missing.txt"), returncode=12)})
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.state is ProbeState.DRIVER_LIBS_MISSING
    assert any("libnvidia-ml.so" in n and "--gpus all" in n for n in hw.notes)
    assert not hw.gpus_known


def test_not_communicating_with_the_driver_is_still_no_driver(tmp_path: Path) -> None:
    run = FakeSmi(LINUX_SMI, {QUERY: done(recorded("error-no-driver.txt"), returncode=9)})
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.state is ProbeState.NO_DRIVER


COMPOSED = "composed-query-one-gpu-unreadable-520.61.05.csv"


def test_the_failed_row_is_split_from_the_table() -> None:
    table, failed = split_smi_failed_rows(recorded(COMPOSED))
    assert [f.bus_id for f in failed] == ["0000:0B:00.0"]
    assert failed[0].reason == "Unknown Error"
    assert "Unable" not in table and table.count("RTX 2080 Ti") == 2


def test_one_unreadable_gpu_keeps_the_others_and_names_it(tmp_path: Path) -> None:
    run = FakeSmi(
        LINUX_SMI,
        {QUERY: done(recorded(COMPOSED), returncode=15), "": done(recorded("smi-windows-591.86.txt"))},
    )
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.source is HardwareSource.NVIDIA_SMI
    assert hw.state is ProbeState.PARTIAL
    assert [g.index for g in hw.gpus] == [0, 2]
    assert hw.driver_version == "520.61.05"
    assert any("0000:0B:00.0" in n and "Unknown Error" in n for n in hw.notes)


def test_every_gpu_unreadable_is_an_error_naming_them(tmp_path: Path) -> None:
    text = "Unable to determine the device handle for GPU0000:02:00.0: Unknown Error\n"
    run = FakeSmi(LINUX_SMI, {QUERY: done(text, returncode=15)})
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.state is ProbeState.ERROR
    assert any("0000:02:00.0" in n for n in hw.notes)


@windows_only
def test_the_real_probe_on_windows_reports_nvidias_driver_form() -> None:
    hw = probe_hardware()
    if hw.driver_version is not None:
        assert int(hw.driver_version.split(".")[0]) >= 100  # never the "32" of 32.0.15.7216
