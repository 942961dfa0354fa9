"""The one NVML wrapper: every call into `pynvml` (NVIDIA's nvidia-ml-py) goes through here.

The binding is injected (`read_nvml(nvml=...)`) so tests hand in a fake module with per-driver
behaviour; production imports `pynvml` lazily, because the import itself is cheap but the library
behind it (`nvml.dll` / `libnvidia-ml.so.1`) may be missing, old, or out of step with the kernel.

Each NVML error becomes a `ProbeState` and one sentence a person can act on (`explain_nvml_error`).
What the error codes mean, from NVML's `nvmlReturn_t` (pynvml.py names them `NVMLError_<Name>`):

  LibraryNotFound (12)     no NVIDIA driver installed: there is no NVML library to load.
  DriverNotLoaded (9)      the driver's files are installed but the kernel driver is not running.
  LibRmVersionMismatch(18) the driver was updated without a reboot: the new user-space library
                           talks to the old kernel module ("Driver/library version mismatch").
  FunctionNotFound (13)    the installed driver predates this call (e.g. a 470 driver and
                           `nvmlSystemGetCudaDriverVersion_v2`); we fall back or leave it unknown.
  NotSupported (3)         this GPU or driver cannot answer this query (e.g. memory on some SoCs).
  GpuIsLost (15)           one GPU stopped answering (fell off the bus): the others still count.
  NoPermission (4), OperatingSystem (17), Unknown (999) and the rest: the driver answered, but
                           with an error we can only report.

Each wrapper's docstring names the `nvidia-smi` query that reads the same value, which is what
`service/probe/hardware.py` falls back to when NVML is unusable.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from torchdoctor.service.models import ComputeCapability, Gpu, ProbeState

# NVML return codes (nvmlReturn_t). They are part of NVML's stable C API, so we key on the numbers
# rather than on the binding's class objects, which differ between a real and a fake module.
NVML_ERROR_NOT_SUPPORTED: Final = 3
NVML_ERROR_NO_PERMISSION: Final = 4
NVML_ERROR_DRIVER_NOT_LOADED: Final = 9
NVML_ERROR_TIMEOUT: Final = 10
NVML_ERROR_LIBRARY_NOT_FOUND: Final = 12
NVML_ERROR_FUNCTION_NOT_FOUND: Final = 13
NVML_ERROR_GPU_IS_LOST: Final = 15
NVML_ERROR_RESET_REQUIRED: Final = 16
NVML_ERROR_OPERATING_SYSTEM: Final = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH: Final = 18
NVML_ERROR_UNKNOWN: Final = 999

# Shared with the nvidia-smi fallback, so the same problem reads the same wherever it was seen.
NO_DRIVER_INSTALLED: Final = "No NVIDIA driver is installed (the NVIDIA management library was not found)."
DRIVER_NOT_LOADED: Final = (
    "The NVIDIA driver is installed but not running: restart the computer, "
    "and reinstall the driver if that does not help."
)
RESTART_NEEDED: Final = "The NVIDIA driver was updated but the old one is still loaded: restart the computer."

_MEANINGS: Final[Mapping[int, tuple[ProbeState, str]]] = {
    NVML_ERROR_LIBRARY_NOT_FOUND: (ProbeState.NO_GPU, NO_DRIVER_INSTALLED),
    NVML_ERROR_DRIVER_NOT_LOADED: (ProbeState.NO_DRIVER, DRIVER_NOT_LOADED),
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: (ProbeState.RESTART_NEEDED, RESTART_NEEDED),
    NVML_ERROR_FUNCTION_NOT_FOUND: (
        ProbeState.ERROR,
        "The installed NVIDIA driver is too old to answer this query.",
    ),
    NVML_ERROR_NOT_SUPPORTED: (ProbeState.ERROR, "The GPU or its driver does not support this query."),
    NVML_ERROR_NO_PERMISSION: (
        ProbeState.ERROR,
        "This user is not allowed to query the NVIDIA driver.",
    ),
    NVML_ERROR_OPERATING_SYSTEM: (
        ProbeState.ERROR,
        "The operating system blocked the query to the NVIDIA driver.",
    ),
    NVML_ERROR_GPU_IS_LOST: (
        ProbeState.ERROR,
        "The GPU stopped responding to the driver: restart the computer, "
        "and check the card's power and seating if it happens again.",
    ),
    NVML_ERROR_RESET_REQUIRED: (ProbeState.ERROR, "The GPU needs a reset: restart the computer."),
    NVML_ERROR_TIMEOUT: (ProbeState.ERROR, "The NVIDIA driver did not answer in time."),
    NVML_ERROR_UNKNOWN: (
        ProbeState.ERROR,
        "The NVIDIA driver reported an unknown error: restart the computer "
        "(inside a container, check that the GPU devices are passed through).",
    ),
}


@dataclass(frozen=True, slots=True)
class NvmlReading:
    """What NVML told us. `available` is False when NVML could not list the GPUs at all."""

    available: bool
    state: ProbeState
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpus: tuple[Gpu, ...] = ()
    notes: tuple[str, ...] = ()


def error_code(error: BaseException) -> int | None:
    """The NVML return code carried by a pynvml exception (`NVMLError.value`), if any."""
    value = getattr(error, "value", None)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if type(error).__name__ == "NVMLLibraryMismatchError":
        # pynvml raises this instead of FunctionNotFound for an unversioned call the library lacks.
        return NVML_ERROR_FUNCTION_NOT_FOUND
    return None


def explain_nvml_error(error: BaseException) -> tuple[ProbeState, str]:
    """Map a pynvml exception to a probe state and one sentence a person understands."""
    code = error_code(error)
    if code is not None and code in _MEANINGS:
        return _MEANINGS[code]
    detail = str(error).strip().rstrip(".") or type(error).__name__
    return ProbeState.ERROR, f"The NVIDIA driver answered with an error ({detail})."


def cuda_version_from_int(value: int) -> str:
    """NVML's CUDA driver version integer to "major.minor": 12080 -> "12.8", 11040 -> "11.4".

    NVML_CUDA_DRIVER_VERSION_MAJOR(v) is v / 1000; the minor is (v % 1000) / 10.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1000:
        raise ValueError(f"not a CUDA driver version number: {value!r} (expected e.g. 12080)")
    return f"{value // 1000}.{(value % 1000) // 10}"


def load_pynvml() -> object | None:
    """Import nvidia-ml-py's `pynvml`; None when it is not installed.

    Importing does not load the NVML library; `nvmlInit` does, so a machine without a driver
    imports fine and fails at init with LibraryNotFound.
    """
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


def _text(value: object) -> str:
    # nvidia-ml-py before 11.515 returned bytes from string queries; newer versions return str.
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip()
    return str(value).strip()


class Nvml:
    """A pynvml-like module behind the few calls we make. Methods raise the module's NVMLError."""

    def __init__(self, module: object) -> None:
        # The binding is untyped and may be a fake: attribute access is checked at run time.
        self._lib: Any = module
        found: list[type[BaseException]] = []
        for name in ("NVMLError", "NVMLLibraryMismatchError"):
            cls = getattr(module, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
        # ctypes raises OSError when the library exists but cannot be loaded (wrong architecture).
        found.append(OSError)
        self.errors: tuple[type[BaseException], ...] = tuple(found)

    def init(self) -> None:
        """`nvmlInit`: loads nvml.dll / libnvidia-ml.so.1 and connects to the kernel driver."""
        self._lib.nvmlInit()

    def shutdown(self) -> None:
        """`nvmlShutdown`."""
        self._lib.nvmlShutdown()

    def driver_version(self) -> str:
        """The display driver version, e.g. "572.16" or "550.144.03".

        `nvmlSystemGetDriverVersion`; nvidia-smi: `--query-gpu=driver_version` (`kmd_version` from
        the 610 drivers on).
        """
        return _text(self._lib.nvmlSystemGetDriverVersion())

    def cuda_driver_version(self) -> tuple[str | None, str | None]:
        """The newest CUDA the driver supports, e.g. "12.8", and a note when it could not be read.

        `nvmlSystemGetCudaDriverVersion_v2` (read from libcuda itself), falling back to
        `nvmlSystemGetCudaDriverVersion` when the driver or binding lacks v2 (470-era drivers) or
        when v2 cannot find libcuda. nvidia-smi: "CUDA Version: 12.8" in plain `nvidia-smi`'s header.
        """
        catch: tuple[type[BaseException], ...] = (*self.errors, ValueError)
        last: BaseException | None = None
        for name in ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"):
            function = getattr(self._lib, name, None)
            if function is None:
                continue  # an old nvidia-ml-py without this wrapper
            try:
                return cuda_version_from_int(int(function())), None
            except catch as exc:
                last = exc
        if last is None:
            return None, "This version of nvidia-ml-py cannot ask for the driver's CUDA version."
        if isinstance(last, ValueError):
            return None, "The NVIDIA driver reported a CUDA version that makes no sense."
        return None, f"The driver's CUDA version is unknown. {explain_nvml_error(last)[1]}"

    def device_count(self) -> int:
        """How many GPUs the driver sees. `nvmlDeviceGetCount`; nvidia-smi: `--query-gpu=count`."""
        return int(self._lib.nvmlDeviceGetCount())

    def device_handle(self, index: int) -> object:
        """`nvmlDeviceGetHandleByIndex`; nvidia-smi: `--id=INDEX`."""
        handle: object = self._lib.nvmlDeviceGetHandleByIndex(index)
        return handle

    def device_name(self, handle: object) -> str:
        """The product name, e.g. "NVIDIA GeForce RTX 4090".

        `nvmlDeviceGetName`; nvidia-smi: `--query-gpu=name`.
        """
        return _text(self._lib.nvmlDeviceGetName(handle))

    def compute_capability(self, handle: object) -> ComputeCapability:
        """The CUDA compute capability, e.g. 8.9.

        `nvmlDeviceGetCudaComputeCapability`; nvidia-smi: `--query-gpu=compute_cap` (which drivers
        before the 510 branch reject as "not a valid field to query").
        """
        major, minor = self._lib.nvmlDeviceGetCudaComputeCapability(handle)
        return ComputeCapability(int(major), int(minor))

    def memory_total_mib(self, handle: object) -> int:
        """Total GPU memory in MiB.

        `nvmlDeviceGetMemoryInfo(handle).total` (bytes); nvidia-smi:
        `--query-gpu=memory.total --format=csv,nounits` (MiB).
        """
        return int(self._lib.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024)


def _read_gpu(lib: Nvml, index: int) -> tuple[Gpu | None, list[str]]:
    """One GPU; an error here costs this GPU (or one of its fields), never the whole probe."""
    try:
        handle = lib.device_handle(index)
        name = lib.device_name(handle)
    except lib.errors as exc:
        return None, [f"GPU {index} could not be read. {explain_nvml_error(exc)[1]}"]
    notes: list[str] = []
    cc: ComputeCapability | None
    try:
        cc = lib.compute_capability(handle)
    except lib.errors as exc:
        cc = None
        notes.append(f"The compute capability of GPU {index} is unknown. {explain_nvml_error(exc)[1]}")
    memory: int | None
    try:
        memory = lib.memory_total_mib(handle)
    except lib.errors:
        # Memory is informative only (and unsupported on some integrated GPUs): no note, no PARTIAL.
        memory = None
    return Gpu(index=index, name=name, compute_capability=cc, memory_mib=memory), notes


def read_nvml(nvml: object | None = None) -> NvmlReading:
    """Ask NVML for the driver, its CUDA version and every GPU. Never raises for driver problems.

    `nvml` is a pynvml-like module or object; None imports the real `pynvml`.
    """
    module = nvml if nvml is not None else load_pynvml()
    if module is None:
        return NvmlReading(
            available=False,
            state=ProbeState.NO_GPU,
            notes=("The nvidia-ml-py package is missing, so NVML could not be asked.",),
        )
    lib = Nvml(module)
    try:
        lib.init()
    except lib.errors as exc:
        state, sentence = explain_nvml_error(exc)
        return NvmlReading(available=False, state=state, notes=(sentence,))
    try:
        return _read_initialised(lib)
    finally:
        # Nothing useful to do if shutdown fails: the reading is already taken.
        with contextlib.suppress(*lib.errors):
            lib.shutdown()


def _read_initialised(lib: Nvml) -> NvmlReading:
    try:
        driver = lib.driver_version()
    except lib.errors as exc:
        state, sentence = explain_nvml_error(exc)
        return NvmlReading(available=False, state=state, notes=(sentence,))
    cuda, cuda_note = lib.cuda_driver_version()
    notes: list[str] = [cuda_note] if cuda_note else []
    try:
        count = lib.device_count()
    except lib.errors as exc:
        state, sentence = explain_nvml_error(exc)
        return NvmlReading(
            available=False,
            state=state,
            driver_version=driver,
            cuda_driver_version=cuda,
            notes=(*notes, f"The GPUs could not be listed. {sentence}"),
        )
    gpus: list[Gpu] = []
    partial = False
    for index in range(count):
        gpu, gpu_notes = _read_gpu(lib, index)
        notes.extend(gpu_notes)
        partial = partial or bool(gpu_notes)
        if gpu is not None:
            gpus.append(gpu)
    if count == 0:
        state = ProbeState.NO_GPU
        notes.append("The NVIDIA driver is running but sees no GPU.")
    elif partial:
        state = ProbeState.PARTIAL
    else:
        state = ProbeState.OK
    return NvmlReading(
        available=True,
        state=state,
        driver_version=driver,
        cuda_driver_version=cuda,
        gpus=tuple(gpus),
        notes=tuple(notes),
    )
