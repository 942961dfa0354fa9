"""The NVML wrapper against a fake pynvml per driver, and the real pynvml where no driver exists."""

from __future__ import annotations

import sys
from pathlib import Path

import pynvml
import pytest

from tests.support import fake_nvml as fk
from torchdoctor.service.models import ComputeCapability, Gpu, ProbeState
from torchdoctor.service.probe import nvml


@pytest.mark.parametrize(
    ("value", "text"),
    [(12080, "12.8"), (11040, "11.4"), (13000, "13.0"), (12020, "12.2"), (10010, "10.1"), (9020, "9.2")],
)
def test_cuda_driver_version_numbers_read_as_major_minor(value: int, text: str) -> None:
    assert nvml.cuda_version_from_int(value) == text


@pytest.mark.parametrize("value", [0, -1, 999, True])
def test_nonsense_cuda_numbers_are_refused(value: int) -> None:
    with pytest.raises(ValueError, match="not a CUDA driver version"):
        nvml.cuda_version_from_int(value)


@pytest.mark.parametrize(
    ("code", "state", "words"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, ProbeState.NO_GPU, "No NVIDIA driver is installed"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, ProbeState.NO_DRIVER, "installed but not running"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, ProbeState.RESTART_NEEDED, "restart the computer"),
        (pynvml.NVML_ERROR_GPU_IS_LOST, ProbeState.ERROR, "stopped responding"),
        (pynvml.NVML_ERROR_NO_PERMISSION, ProbeState.ERROR, "not allowed"),
        (pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, ProbeState.ERROR, "too old"),
        (pynvml.NVML_ERROR_UNKNOWN, ProbeState.ERROR, "unknown error"),
    ],
)
def test_each_real_nvml_error_class_maps_to_a_state_and_one_sentence(
    code: int, state: ProbeState, words: str
) -> None:
    error = pynvml.NVMLError(code)  # the binding picks the NVMLError_<Name> subclass
    assert type(error).__name__.startswith("NVMLError_")
    got_state, sentence = nvml.explain_nvml_error(error)
    assert got_state is state
    assert words in sentence
    assert sentence.endswith(".")
    assert "\n" not in sentence


def test_an_error_we_do_not_know_is_reported_with_the_drivers_own_words() -> None:
    state, sentence = nvml.explain_nvml_error(pynvml.NVMLError(pynvml.NVML_ERROR_IN_USE))
    assert state is ProbeState.ERROR
    assert sentence.startswith("The NVIDIA driver answered with an error (")


def test_the_bindings_version_mismatch_error_reads_as_function_not_found() -> None:
    error = pynvml.NVMLLibraryMismatchError("Unversioned function called ...")
    assert nvml.error_code(error) == pynvml.NVML_ERROR_FUNCTION_NOT_FOUND


def test_a_current_windows_driver_is_read_completely() -> None:
    fake = fk.FakeNvml(fk.WINDOWS_572)
    reading = nvml.read_nvml(fake)
    assert reading.available
    assert reading.state is ProbeState.OK
    assert reading.driver_version == "572.16"
    assert reading.cuda_driver_version == "12.8"
    assert reading.gpus == (Gpu(0, "NVIDIA GeForce RTX 5090", ComputeCapability(12, 0), 32607),)
    assert reading.notes == ()
    assert fake.calls[0] == "nvmlInit"
    assert fake.calls[-1] == "nvmlShutdown"
    assert not fake.initialised


def test_every_gpu_of_a_multi_gpu_machine_is_listed_in_index_order() -> None:
    reading = nvml.read_nvml(fk.FakeNvml(fk.LINUX_550_TWO_GPUS))
    assert [(g.index, g.name, str(g.compute_capability), g.memory_mib) for g in reading.gpus] == [
        (0, "NVIDIA GeForce RTX 4090", "8.9", 24564),
        (1, "NVIDIA GeForce RTX 3090", "8.6", 24576),
    ]
    assert reading.cuda_driver_version == "12.4"


def test_a_470_driver_without_the_v2_cuda_query_falls_back_to_v1() -> None:
    fake = fk.FakeNvml(fk.LINUX_470)
    reading = nvml.read_nvml(fake)
    assert reading.cuda_driver_version == "11.4"
    assert reading.state is ProbeState.OK
    assert reading.notes == ()
    v2 = fake.calls.index("nvmlSystemGetCudaDriverVersion_v2")
    assert fake.calls.index("nvmlSystemGetCudaDriverVersion") > v2


def test_v2_that_cannot_find_libcuda_falls_back_to_v1() -> None:
    reading = nvml.read_nvml(fk.FakeNvml(fk.NO_LIBCUDA_535))
    assert reading.cuda_driver_version == "12.2"
    assert reading.notes == ()


def test_an_old_binding_without_v2_and_with_bytes_strings_still_reads_text() -> None:
    fake = fk.FakeNvml(fk.OLD_BINDING_450)
    reading = nvml.read_nvml(fake)
    assert reading.driver_version == "450.80.02"
    assert reading.gpus[0].name == "Quadro RTX 4000"
    assert isinstance(reading.gpus[0].name, str)
    assert reading.cuda_driver_version == "11.0"
    assert "nvmlSystemGetCudaDriverVersion_v2" not in fake.calls


def test_no_cuda_query_at_all_leaves_cuda_unknown_with_a_note() -> None:
    driver = fk.FakeDriver(
        "550.144.03",
        12040,
        (fk.RTX_4090,),
        missing=frozenset({"nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"}),
    )
    reading = nvml.read_nvml(fk.FakeNvml(driver))
    assert reading.cuda_driver_version is None
    assert reading.state is ProbeState.OK  # the GPUs are what matters; the note says what is missing
    assert reading.notes == ("The driver's CUDA version is unknown. " + nvml._MEANINGS[13][1],)


def test_one_lost_gpu_gives_a_partial_reading_not_a_crash() -> None:
    fake = fk.FakeNvml(fk.ONE_GPU_LOST_535)
    reading = nvml.read_nvml(fake)
    assert reading.available
    assert reading.state is ProbeState.PARTIAL
    assert [g.index for g in reading.gpus] == [0]
    assert len(reading.notes) == 1
    assert reading.notes[0].startswith("GPU 1 could not be read.")
    assert "stopped responding" in reading.notes[0]
    assert fake.calls[-1] == "nvmlShutdown"


def test_an_unsupported_compute_capability_keeps_the_gpu_with_capability_unknown() -> None:
    reading = nvml.read_nvml(fk.FakeNvml(fk.CC_NOT_SUPPORTED_550))
    assert reading.state is ProbeState.PARTIAL
    assert [g.compute_capability for g in reading.gpus] == [ComputeCapability(8, 9), None]
    assert reading.gpus[1].name == "NVIDIA GeForce RTX 3090"
    assert reading.notes[0].startswith("The compute capability of GPU 1 is unknown.")


def test_unsupported_memory_is_unknown_without_a_note() -> None:
    reading = nvml.read_nvml(fk.FakeNvml(fk.MEMORY_NOT_SUPPORTED_580))
    assert reading.state is ProbeState.OK
    assert reading.gpus == (Gpu(0, "NVIDIA GB10", ComputeCapability(12, 1), None),)
    assert reading.cuda_driver_version == "13.0"
    assert reading.notes == ()


def test_a_driver_that_sees_no_gpu_says_so() -> None:
    reading = nvml.read_nvml(fk.FakeNvml(fk.NO_DEVICES_550))
    assert reading.available
    assert reading.state is ProbeState.NO_GPU
    assert reading.gpus == ()
    assert reading.notes == ("The NVIDIA driver is running but sees no GPU.",)


@pytest.mark.parametrize(
    ("driver", "state", "sentence"),
    [
        (fk.LIBRARY_NOT_FOUND_DRIVER, ProbeState.NO_GPU, nvml.NO_DRIVER_INSTALLED),
        (fk.DRIVER_NOT_LOADED_DRIVER, ProbeState.NO_DRIVER, nvml.DRIVER_NOT_LOADED),
        (fk.MISMATCH_AFTER_UPDATE, ProbeState.RESTART_NEEDED, nvml.RESTART_NEEDED),
        (fk.UNKNOWN_ERROR_DRIVER, ProbeState.ERROR, nvml._MEANINGS[999][1]),
        (fk.NO_PERMISSION_DRIVER, ProbeState.ERROR, nvml._MEANINGS[4][1]),
    ],
)
def test_init_failures_become_states_and_skip_shutdown(
    driver: fk.FakeDriver, state: ProbeState, sentence: str
) -> None:
    fake = fk.FakeNvml(driver)
    reading = nvml.read_nvml(fake)
    assert not reading.available
    assert reading.state is state
    assert reading.notes == (sentence,)
    assert fake.calls == ["nvmlInit"]  # nothing else, and no shutdown of what never started


def test_a_driver_that_cannot_count_its_gpus_still_reports_its_version() -> None:
    fake = fk.FakeNvml(fk.COUNT_FAILS_550)
    reading = nvml.read_nvml(fake)
    assert not reading.available
    assert reading.state is ProbeState.ERROR
    assert reading.driver_version == "550.144.03"
    assert reading.notes[-1].startswith("The GPUs could not be listed.")
    assert fake.calls[-1] == "nvmlShutdown"


def test_a_library_that_ctypes_cannot_load_is_an_error_state_not_a_crash() -> None:
    class UnloadableLibrary(fk.FakeNvml):
        def nvmlInit(self) -> None:
            raise OSError("libnvidia-ml.so.1: wrong ELF class: ELFCLASS32")

    reading = nvml.read_nvml(UnloadableLibrary(fk.WINDOWS_572))
    assert not reading.available
    assert reading.state is ProbeState.ERROR
    assert "wrong ELF class" in reading.notes[0]


def test_a_missing_binding_is_a_note_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml, "load_pynvml", lambda: None)
    reading = nvml.read_nvml()
    assert not reading.available
    assert reading.notes == ("The nvidia-ml-py package is missing, so NVML could not be asked.",)


@pytest.mark.skipif(
    sys.platform == "win32" or Path("/proc/driver/nvidia/version").exists(),
    reason="needs a machine without an NVIDIA driver",
)
def test_the_real_pynvml_without_a_driver_reads_as_no_driver_installed() -> None:
    reading = nvml.read_nvml()  # the real nvidia-ml-py, whose nvmlInit raises LibraryNotFound here
    assert not reading.available
    assert reading.state is ProbeState.NO_GPU
    assert reading.notes == (nvml.NO_DRIVER_INSTALLED,)


@pytest.mark.gpu
@pytest.mark.skipif(not Path("/proc/driver/nvidia/version").exists(), reason="needs an NVIDIA driver")
def test_the_real_pynvml_on_a_gpu_machine_reads_every_gpu() -> None:
    reading = nvml.read_nvml()
    assert reading.available, reading.notes
    assert reading.state is ProbeState.OK, reading.notes
    assert reading.driver_version
    assert reading.cuda_driver_version
    assert reading.gpus
    assert all(g.compute_capability is not None and g.memory_mib for g in reading.gpus)
