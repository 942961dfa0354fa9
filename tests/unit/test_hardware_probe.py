"""The probe chain: NVML -> nvidia-smi -> Linux driver files -> none.

Fakes stand only at the boundary: the pynvml module (tests/support/fake_nvml.py), the subprocess
runner (`FakeSmi` below, answering with recorded outputs where one exists), and the filesystem root.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support import fake_nvml as fk
from torchdoctor.service.errors import SubprocessTimeoutError
from torchdoctor.service.models import ComputeCapability, Gpu, HardwareSource, Platform, ProbeState
from torchdoctor.service.probe import nvml
from torchdoctor.service.probe.hardware import SMI_FIELDS, SMI_FIELDS_OLD_DRIVER, probe_hardware
from torchdoctor.service.proc import Completed

SMI = Path(__file__).resolve().parent.parent / "fixtures" / "nvidia-smi"
PROC = Path(__file__).resolve().parent.parent / "fixtures" / "proc-driver"

QUERY = f"--query-gpu={','.join(SMI_FIELDS)}"
OLD_QUERY = f"--query-gpu={','.join(SMI_FIELDS_OLD_DRIVER)}"
WIN_SMI = r"C:\Windows\System32\nvidia-smi.exe"
LINUX_SMI = "/usr/bin/nvidia-smi"
NO_PATH = {"PATH": ""}


def recorded(name: str) -> str:
    return (SMI / name).read_text(encoding="utf-8")


class FakeSmi:
    """A `proc.run` stand-in: nvidia-smi exists only at `path` and answers from `answers`.

    `answers` maps the first argument after the program ("" for plain `nvidia-smi`, or the
    --query-gpu argument) to a Completed or an exception to raise.
    """

    def __init__(self, path: str | None, answers: dict[str, Completed | BaseException]) -> None:
        self.path = path
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], *, timeout: float) -> Completed:
        args = [str(a) for a in argv]
        self.calls.append(args)
        assert timeout > 0
        if args[0] != self.path:
            raise FileNotFoundError(2, "No such file or directory", args[0])
        answer = self.answers[args[1] if len(args) > 1 else ""]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def done(stdout: str, returncode: int = 0, stderr: str = "") -> Completed:
    return Completed(("nvidia-smi",), returncode, stdout, stderr)


NOTHING = FakeSmi(None, {})


def test_nvml_answers_first_and_nvidia_smi_is_not_run(tmp_path: Path) -> None:
    run = FakeSmi(LINUX_SMI, {})
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LINUX_550_TWO_GPUS),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.source is HardwareSource.NVML
    assert hw.state is ProbeState.OK
    assert hw.driver_version == "550.144.03"
    assert hw.cuda_driver_version == "12.4"
    assert [g.name for g in hw.gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3090"]
    assert run.calls == []


def test_a_lost_gpu_in_nvml_is_a_partial_result_from_nvml(tmp_path: Path) -> None:
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.ONE_GPU_LOST_535),
        run=NOTHING,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.source is HardwareSource.NVML
    assert hw.state is ProbeState.PARTIAL
    assert [g.index for g in hw.gpus] == [0]
    assert any("GPU 1" in n for n in hw.notes)


def test_windows_falls_back_to_nvidia_smi_in_system32_with_a_recorded_machine() -> None:
    # NVML unusable (e.g. nvml.dll failed to load); nvidia-smi answers with the recorded 591.86
    # query (header, every field, units) and header, both from the same RTX 2080 SUPER machine.
    run = FakeSmi(
        WIN_SMI,
        {
            QUERY: done(recorded("query-all-header-windows-591.86.csv")),
            "": done(recorded("smi-windows-591.86.txt")),
        },
    )
    environ = {"SystemRoot": r"C:\Windows", "PATH": r".;C:\Users\ana\proj"}
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER), run=run, platform=Platform.WINDOWS, environ=environ
    )
    assert hw.source is HardwareSource.NVIDIA_SMI
    assert hw.platform is Platform.WINDOWS
    assert hw.state is ProbeState.OK
    assert hw.driver_version == "591.86"
    assert hw.cuda_driver_version == "13.1"
    assert hw.gpus == (Gpu(0, "NVIDIA GeForce RTX 2080 SUPER", ComputeCapability(7, 5), 8192),)
    assert hw.notes == ("NVML could not be used, so these facts come from nvidia-smi.",)
    assert run.calls[0] == [WIN_SMI, QUERY, "--format=csv,noheader,nounits"]
    assert run.calls[1] == [WIN_SMI]


def test_a_planted_nvidia_smi_in_the_current_folder_is_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = tmp_path / "nvidia-smi"
    planted.write_text("#!/bin/sh\necho pwned\n")
    monkeypatch.chdir(tmp_path)
    run = FakeSmi(str(planted), {QUERY: done("0, Evil GPU, 9.0, 1, 999.99\n"), "": done("")})
    environ = {"PATH": f".:{tmp_path}:bin:"}
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=run,
        platform=Platform.LINUX,
        environ=environ,
        fs_root=tmp_path,
    )
    assert hw.source is HardwareSource.NONE
    assert hw.gpus == ()
    tried = [call[0] for call in run.calls]
    assert tried == [LINUX_SMI]  # only the trusted absolute fallback; nothing relative, not the cwd


def test_an_old_driver_is_asked_again_without_compute_cap(tmp_path: Path) -> None:
    run = FakeSmi(
        LINUX_SMI,
        {
            QUERY: done(recorded("query-compute-cap-rejected-470.256.02.txt"), returncode=2),
            # Synthetic rows in the exact shape of the fallback query (no recording of it was found).
            OLD_QUERY: done("0, NVIDIA GeForce GTX 1080 Ti, 11264, 470.182.03\n"),
            "": done(recorded("smi-snap-470.256.02-driver-580.95.05.txt")),
        },
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
    assert hw.gpus == (Gpu(0, "NVIDIA GeForce GTX 1080 Ti", None, 11264),)
    assert hw.driver_version == "470.182.03"
    assert any("cannot report compute capability" in n for n in hw.notes)
    assert [c[1] for c in run.calls if len(c) > 1] == [QUERY, OLD_QUERY]


def test_restart_needed_after_an_update_keeps_the_loaded_driver_version(tmp_path: Path) -> None:
    (tmp_path / "sys/module/nvidia").mkdir(parents=True)
    (tmp_path / "sys/module/nvidia/version").write_text("550.144.03\n")
    run = FakeSmi(
        LINUX_SMI, {QUERY: done(recorded("error-driver-library-mismatch-570.124.txt"), returncode=18)}
    )
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.MISMATCH_AFTER_UPDATE),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.state is ProbeState.RESTART_NEEDED
    assert hw.source is HardwareSource.NONE
    assert hw.driver_version == "550.144.03"
    assert hw.notes[0] == nvml.RESTART_NEEDED  # once, though NVML and nvidia-smi both said it
    assert hw.notes.count(nvml.RESTART_NEEDED) == 1
    assert "550.144.03 is loaded (/sys/module/nvidia/version)" in hw.notes[1]


def test_driver_not_running_from_both_sources(tmp_path: Path) -> None:
    run = FakeSmi(LINUX_SMI, {QUERY: done(recorded("error-no-driver.txt"), returncode=9)})
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.DRIVER_NOT_LOADED_DRIVER),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.state is ProbeState.NO_DRIVER
    assert hw.notes == (nvml.DRIVER_NOT_LOADED,)
    assert hw.gpus == ()


def test_nvidia_smi_errors_outrank_a_missing_nvml_library(tmp_path: Path) -> None:
    # NVML could not even be loaded, but nvidia-smi reached the driver and learnt it needs a restart.
    run = FakeSmi(LINUX_SMI, {QUERY: done(recorded("error-driver-library-mismatch.txt"), returncode=18)})
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.state is ProbeState.RESTART_NEEDED


def test_a_later_vaguer_failure_does_not_hide_restart_needed(tmp_path: Path) -> None:
    run = FakeSmi(LINUX_SMI, {QUERY: SubprocessTimeoutError("nvidia-smi did not finish within 15 s")})
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.MISMATCH_AFTER_UPDATE),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.state is ProbeState.RESTART_NEEDED
    assert hw.notes[0] == nvml.RESTART_NEEDED
    assert "did not answer" in hw.notes[1]


def test_no_driver_anywhere_is_no_gpu(tmp_path: Path) -> None:
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=NOTHING,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.source is HardwareSource.NONE
    assert hw.state is ProbeState.NO_GPU
    assert hw.driver_version is None
    assert hw.gpus == ()
    assert hw.notes == (nvml.NO_DRIVER_INSTALLED,)


def test_a_loaded_kernel_driver_without_nvml_or_smi_is_partial_with_its_version(tmp_path: Path) -> None:
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "proc/driver/nvidia/version").write_bytes(
        (PROC / "proc-565.57.01-open-ubuntu.txt").read_bytes()
    )
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=NOTHING,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.state is ProbeState.PARTIAL
    assert hw.driver_version == "565.57.01"
    assert hw.gpus == ()
    assert "its GPUs could not be listed" in hw.notes[-1]


def test_driver_files_are_not_read_on_windows(tmp_path: Path) -> None:
    (tmp_path / "sys/module/nvidia").mkdir(parents=True)
    (tmp_path / "sys/module/nvidia/version").write_text("550.144.03\n")
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=NOTHING,
        platform=Platform.WINDOWS,
        environ={},
        fs_root=tmp_path,
    )
    assert hw.driver_version is None
    assert hw.state is ProbeState.NO_GPU


def test_a_hung_nvidia_smi_is_an_error_state_not_a_hang(tmp_path: Path) -> None:
    run = FakeSmi(LINUX_SMI, {QUERY: SubprocessTimeoutError("nvidia-smi did not finish within 15 s")})
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.state is ProbeState.ERROR
    assert any("did not answer" in n for n in hw.notes)


def test_nvidia_smi_seeing_no_devices(tmp_path: Path) -> None:
    run = FakeSmi(LINUX_SMI, {QUERY: done(recorded("error-no-devices.txt"), returncode=6)})
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.state is ProbeState.NO_GPU
    assert "sees no GPU" in " ".join(hw.notes)


def test_unreadable_nvidia_smi_output_is_an_error_with_its_first_line(tmp_path: Path) -> None:
    run = FakeSmi(LINUX_SMI, {QUERY: done("Segmentation fault\n", returncode=139)})
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.state is ProbeState.ERROR
    assert "nvidia-smi failed: Segmentation fault" in hw.notes


def test_a_cuda_version_nvidia_smi_cannot_tell_is_unknown_with_a_note(tmp_path: Path) -> None:
    run = FakeSmi(
        LINUX_SMI,
        {
            QUERY: done("0, NVIDIA GeForce RTX 3060 Laptop GPU, 8.6, 6144, 546.80\n"),
            "": done(recorded("smi-wsl-546.80-cuda-err-truncated.txt")),
        },
    )
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=run,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.source is HardwareSource.NVIDIA_SMI
    assert hw.cuda_driver_version is None
    assert "nvidia-smi did not say which CUDA version the driver supports." in hw.notes


def test_nvml_knowing_the_driver_but_not_the_gpus_keeps_the_version(tmp_path: Path) -> None:
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.COUNT_FAILS_550),
        run=NOTHING,
        platform=Platform.LINUX,
        environ=NO_PATH,
        fs_root=tmp_path,
    )
    assert hw.state is ProbeState.ERROR
    assert hw.driver_version == "550.144.03"
    assert hw.cuda_driver_version == "12.4"


@pytest.mark.skipif(
    Path("/proc/driver/nvidia/version").exists(), reason="needs a machine without an NVIDIA driver"
)
def test_the_real_probe_on_this_machine_never_raises() -> None:
    hw = probe_hardware()  # real pynvml, real proc.run, real filesystem
    assert hw.source in (HardwareSource.NVML, HardwareSource.NVIDIA_SMI, HardwareSource.NONE)
    assert hw.state is ProbeState.NO_GPU
    assert hw.notes
