"""The pure parsers on real recorded outputs (tests/fixtures/*/README.md names each source)."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchdoctor.service.models import ComputeCapability, Platform, ProbeState
from torchdoctor.service.probe import hardware as hwmod
from torchdoctor.service.probe import nvml
from torchdoctor.service.probe.hardware import (
    SMI_FIELDS,
    SmiGpu,
    classify_smi_failure,
    nvidia_smi_candidates,
    parse_proc_driver_version,
    parse_smi_csv,
    parse_smi_cuda_version,
    parse_sys_module_version,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SMI = FIXTURES / "nvidia-smi"
PROC = FIXTURES / "proc-driver"


def smi(name: str) -> str:
    return (SMI / name).read_text(encoding="utf-8")


def proc(name: str) -> str:
    return (PROC / name).read_text(encoding="utf-8")


# ---- nvidia-smi --query-gpu CSV ---------------------------------------------------------------


def test_a_two_gpu_table_with_a_header_in_its_own_column_order() -> None:
    gpus = parse_smi_csv(smi("query-header-2gpu-linux-570.86.15.csv"))
    assert gpus == (
        SmiGpu(0, "NVIDIA TITAN V", ComputeCapability(7, 0), None, "570.86.15"),
        SmiGpu(1, "NVIDIA RTX 5880 Ada Generation", ComputeCapability(8, 9), None, "570.86.15"),
    )


def test_the_full_windows_query_with_units_picks_out_our_columns() -> None:
    gpus = parse_smi_csv(smi("query-all-header-windows-591.86.csv"))
    assert gpus == (SmiGpu(0, "NVIDIA GeForce RTX 2080 SUPER", ComputeCapability(7, 5), 8192, "591.86"),)


def test_a_noheader_nounits_row_is_read_by_the_fields_asked_for() -> None:
    # The --query-gpu list from the report, verbatim.
    query = (
        "power.limit,power.min_limit,power.max_limit,memory.total,vbios_version,driver_version,name,"
        "gpu_uuid,power.draw,temperature.gpu,temperature.memory,clocks.current.graphics,clocks.sm,"
        "clocks.mem,utilization.gpu,utilization.memory,fan.speed,pcie.link.width.current,pstate"
    )
    fields = query.split(",")
    gpus = parse_smi_csv(smi("query-noheader-nounits-linux-440.64.csv"), fields)
    assert gpus == (SmiGpu(None, "GeForce RTX 2080", None, 7979, "440.64"),)


def test_a_compute_cap_only_table() -> None:
    gpus = parse_smi_csv(smi("query-compute-cap-linux-570.133.07.csv"))
    assert [g.compute_capability for g in gpus] == [ComputeCapability(8, 9)]


def test_our_own_query_shape_with_missing_values() -> None:
    # Synthetic, in the exact shape SMI_FIELDS asks for: "[N/A]" memory, a product name with a comma.
    text = (
        "0, NVIDIA GeForce RTX 4090, 8.9, 24564, 550.144.03\n1, NVIDIA A100, PCIe, 8.0, [N/A], 550.144.03\n"
    )
    assert parse_smi_csv(text, SMI_FIELDS) == (
        SmiGpu(0, "NVIDIA GeForce RTX 4090", ComputeCapability(8, 9), 24564, "550.144.03"),
        SmiGpu(1, "NVIDIA A100, PCIe", ComputeCapability(8, 0), None, "550.144.03"),
    )


def test_kmd_version_from_610_drivers_counts_as_the_driver_version() -> None:
    assert parse_smi_csv("kmd_version, name\n610.57.04, NVIDIA GeForce RTX 2080 SUPER\n")[
        0
    ].driver_version == ("610.57.04")


def test_empty_output_is_no_gpus() -> None:
    assert parse_smi_csv("\n") == ()


@pytest.mark.parametrize(
    "fixture",
    [
        "query-compute-cap-rejected-470.256.02.txt",
        "error-driver-library-mismatch.txt",
        "error-driver-library-mismatch-570.124.txt",
        "error-no-driver.txt",
        "error-no-devices.txt",
    ],
)
def test_error_messages_are_not_mistaken_for_a_table(fixture: str) -> None:
    with pytest.raises(ValueError, match="row 1"):
        parse_smi_csv(smi(fixture))


def test_a_row_with_a_bad_compute_capability_is_refused() -> None:
    with pytest.raises(ValueError, match="row 1 is not a GPU"):
        parse_smi_csv("0, NVIDIA GeForce RTX 4090, 89, 24564, 550.144.03")


def test_an_old_driver_rejecting_compute_cap_is_recognised() -> None:
    assert hwmod._compute_cap_rejected(smi("query-compute-cap-rejected-470.256.02.txt"))
    assert not hwmod._compute_cap_rejected(smi("query-header-2gpu-linux-570.86.15.csv"))


# ---- nvidia-smi failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "state"),
    [
        ("error-driver-library-mismatch.txt", ProbeState.RESTART_NEEDED),
        ("error-driver-library-mismatch-570.124.txt", ProbeState.RESTART_NEEDED),
        ("error-no-driver.txt", ProbeState.NO_DRIVER),
        ("error-no-driver-wsl.txt", ProbeState.NO_DRIVER),
        ("error-no-devices.txt", ProbeState.NO_GPU),
    ],
)
def test_recorded_nvidia_smi_failures_are_classified(fixture: str, state: ProbeState) -> None:
    found = classify_smi_failure(smi(fixture))
    assert found is not None
    assert found[0] is state
    assert found[1].endswith(".")


def test_a_restart_reads_the_same_from_nvidia_smi_as_from_nvml() -> None:
    found = classify_smi_failure(smi("error-driver-library-mismatch.txt"))
    assert found == (ProbeState.RESTART_NEEDED, nvml.RESTART_NEEDED)


@pytest.mark.parametrize(
    "fixture",
    ["query-header-2gpu-linux-570.86.15.csv", "smi-windows-591.86.txt", "smi-linux-610.57.04-kmd.txt"],
)
def test_normal_output_is_not_a_failure(fixture: str) -> None:
    assert classify_smi_failure(smi(fixture)) is None


# ---- the CUDA version in nvidia-smi's header --------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "cuda"),
    [
        ("smi-windows-591.86.txt", "13.1"),
        ("smi-windows-517.48-2gpu-truncated.txt", "11.7"),
        ("smi-linux-610.57.04-kmd.txt", "13.3"),  # "CUDA UMD Version" from the 610 drivers on
        ("version-linux-610.57.04.txt", "13.3"),  # skips 'CUDA version : Deprecated, see …'
        ("smi-snap-470.256.02-driver-580.95.05.txt", "13.0"),
        ("smi-linux-331.62-3gpu-no-cuda-truncated.txt", None),  # before the field existed
        ("smi-wsl-546.80-cuda-err-truncated.txt", None),  # "CUDA Version: ERR!"
        ("smi-575.64.03-cuda-na.txt", None),  # "CUDA Version: N/A"
    ],
)
def test_the_cuda_version_from_recorded_headers(fixture: str, cuda: str | None) -> None:
    assert parse_smi_cuda_version(smi(fixture)) == cuda


# ---- Linux driver files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "version"),
    [
        ("proc-375.74-proprietary.txt", "375.74"),
        ("proc-384.98-proprietary.txt", "384.98"),
        ("proc-525.60.11-open-arch.txt", "525.60.11"),
        ("proc-550.144.03-open.txt", "550.144.03"),
        ("proc-555.58-open-gentoo-nvrm-line-only.txt", "555.58"),
        ("proc-565.57.01-open-ubuntu.txt", "565.57.01"),
        ("proc-jetson-35.3.1-aarch64.txt", "35.3.1"),  # Jetson reports its L4T release here
    ],
)
def test_the_driver_version_from_recorded_proc_files(fixture: str, version: str) -> None:
    assert parse_proc_driver_version(proc(fixture)) == version


@pytest.mark.parametrize("text", ["", "GCC version:  gcc version 12.2.0 (GCC)\n", "NVRM version: garbage\n"])
def test_proc_text_without_a_version_gives_none(text: str) -> None:
    assert parse_proc_driver_version(text) is None


def test_the_sys_module_file_holds_just_the_version() -> None:
    assert parse_sys_module_version(proc("sys-module-550.144.03.txt")) == "550.144.03"
    assert parse_sys_module_version("not a version\n") is None
    assert parse_sys_module_version("") is None


# ---- where nvidia-smi may be run from ---------------------------------------------------------


def test_windows_tries_trusted_folders_first_and_never_the_current_one() -> None:
    environ = {
        "SystemRoot": r"C:\WINDOWS",
        "ProgramFiles": r"C:\Program Files",
        # ".", an empty entry, a relative one and the current folder itself (other case, trailing
        # backslash) are all ways a planted nvidia-smi.exe beside a project would run.
        "Path": r"C:\Users\ana\proj;.;;tools\bin;c:\users\ANA\proj\;C:\Tools;C:\WINDOWS\system32",
    }
    assert nvidia_smi_candidates(Platform.WINDOWS, environ, r"C:\Users\ana\proj") == [
        r"C:\WINDOWS\System32\nvidia-smi.exe",
        r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe",
        r"C:\Tools\nvidia-smi.exe",
    ]


def test_windows_defaults_when_the_folders_are_not_in_the_environment() -> None:
    assert nvidia_smi_candidates(Platform.WINDOWS, {}, r"C:\x") == [
        r"C:\Windows\System32\nvidia-smi.exe",
        r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe",
    ]


def test_linux_uses_absolute_path_entries_other_than_the_current_folder() -> None:
    environ = {"PATH": "/usr/local/bin::.:bin:/home/u/proj:/usr/bin"}
    assert nvidia_smi_candidates(Platform.LINUX, environ, "/home/u/proj") == [
        "/usr/local/bin/nvidia-smi",
        "/usr/bin/nvidia-smi",
    ]


def test_every_candidate_is_absolute() -> None:
    environ = {"PATH": ".:./bin:relative"}
    assert all(c.startswith("/") for c in nvidia_smi_candidates(Platform.LINUX, environ, "/home/u"))
