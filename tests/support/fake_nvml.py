"""A hand-written stand-in for nvidia-ml-py's `pynvml` module, one instance per modelled driver.

It is injected (`read_nvml(FakeNvml(...))`, `probe_hardware(nvml=...)`), never patched over the
real module. It raises the real binding's exception classes (`pynvml.NVMLError(code)` picks the
`NVMLError_<Name>` subclass), so our code sees exactly what production sees; importing `pynvml`
does not load any NVIDIA library.

What a driver does differently is data (`FakeDriver`), gpustat-style:
  - which NVML functions exist (a 470 driver has no `nvmlSystemGetCudaDriverVersion_v2`);
  - which binding era we model (nvidia-ml-py before 11.515 returned bytes, and older still had no
    `_v2` wrapper at all);
  - which call fails with which NVML error, for the system or for one GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import pynvml as _real

MIB: Final = 1024 * 1024

# NVML return codes (nvmlReturn_t), as in pynvml.py.
NOT_SUPPORTED: Final = _real.NVML_ERROR_NOT_SUPPORTED
NO_PERMISSION: Final = _real.NVML_ERROR_NO_PERMISSION
DRIVER_NOT_LOADED: Final = _real.NVML_ERROR_DRIVER_NOT_LOADED
LIBRARY_NOT_FOUND: Final = _real.NVML_ERROR_LIBRARY_NOT_FOUND
FUNCTION_NOT_FOUND: Final = _real.NVML_ERROR_FUNCTION_NOT_FOUND
GPU_IS_LOST: Final = _real.NVML_ERROR_GPU_IS_LOST
LIB_RM_VERSION_MISMATCH: Final = _real.NVML_ERROR_LIB_RM_VERSION_MISMATCH
UNKNOWN: Final = _real.NVML_ERROR_UNKNOWN


@dataclass(frozen=True)
class FakeGpu:
    name: str
    cc: tuple[int, int]
    memory_mib: int
    # NVML function name -> error code this GPU answers with, e.g. {"nvmlDeviceGetName": GPU_IS_LOST}
    fails: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeDriver:
    version: str
    cuda: int  # what nvmlSystemGetCudaDriverVersion(_v2) return, e.g. 12080
    gpus: tuple[FakeGpu, ...] = ()
    # NVML function name -> error code, for system-level calls ("nvmlInit", "nvmlDeviceGetCount"…)
    fails: dict[str, int] = field(default_factory=dict)
    # NVML C functions this driver lacks: calling them raises FunctionNotFound, as pynvml does.
    missing: frozenset[str] = frozenset()
    # Binding era: nvidia-ml-py < 11.515 returned bytes; very old ones had no `_v2` wrapper.
    returns_bytes: bool = False
    binding_lacks: frozenset[str] = frozenset()


class FakeHandle:
    def __init__(self, index: int) -> None:
        self.index = index


class FakeNvml:
    """Behaves like the `pynvml` module for the calls torchdoctor makes; records them in `calls`."""

    NVMLError = _real.NVMLError
    NVMLLibraryMismatchError = _real.NVMLLibraryMismatchError

    def __init__(self, driver: FakeDriver) -> None:
        self.driver = driver
        self.calls: list[str] = []
        self.initialised = False

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not defined below: the NVMLError_* classes, and nothing else.
        if name.startswith("NVMLError_"):
            return getattr(_real, name)
        raise AttributeError(name)

    def __getattribute__(self, name: str) -> Any:
        if name in object.__getattribute__(self, "driver").binding_lacks:
            raise AttributeError(name)  # this nvidia-ml-py version has no such wrapper
        return object.__getattribute__(self, name)

    # -- helpers --------------------------------------------------------------------------
    def _enter(self, function: str, gpu: FakeGpu | None = None) -> None:
        self.calls.append(function)
        if function in self.driver.missing:
            raise _real.NVMLError(FUNCTION_NOT_FOUND)
        code = self.driver.fails.get(function)
        if code is None and gpu is not None:
            code = gpu.fails.get(function)
        if code is not None:
            raise _real.NVMLError(code)
        if function != "nvmlInit" and not self.initialised:
            raise _real.NVMLError(_real.NVML_ERROR_UNINITIALIZED)

    def _str(self, value: str) -> str | bytes:
        return value.encode() if self.driver.returns_bytes else value

    def _gpu(self, handle: object) -> FakeGpu:
        assert isinstance(handle, FakeHandle), f"not a handle from this fake: {handle!r}"
        return self.driver.gpus[handle.index]

    # -- the pynvml API ---------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        self._enter("nvmlSystemGetDriverVersion")
        return self._str(self.driver.version)

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.driver.cuda

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion_v2")
        return self.driver.cuda

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.driver.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        if not 0 <= index < len(self.driver.gpus):
            self.calls.append("nvmlDeviceGetHandleByIndex")
            raise _real.NVMLError(_real.NVML_ERROR_INVALID_ARGUMENT)
        self._enter("nvmlDeviceGetHandleByIndex", self.driver.gpus[index])
        return FakeHandle(index)

    def nvmlDeviceGetName(self, handle: object) -> str | bytes:
        gpu = self._gpu(handle)
        self._enter("nvmlDeviceGetName", gpu)
        return self._str(gpu.name)

    def nvmlDeviceGetCudaComputeCapability(self, handle: object) -> tuple[int, int]:
        gpu = self._gpu(handle)
        self._enter("nvmlDeviceGetCudaComputeCapability", gpu)
        return gpu.cc

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> _real.c_nvmlMemory_t:
        gpu = self._gpu(handle)
        self._enter("nvmlDeviceGetMemoryInfo", gpu)
        info = _real.c_nvmlMemory_t()  # the real ctypes structure, fields in bytes
        info.total = gpu.memory_mib * MIB
        info.free = info.total
        info.used = 0
        return info


# ---- Drivers modelled on real machines (names, capabilities and memory from public reports) ----

RTX_5090: Final = FakeGpu("NVIDIA GeForce RTX 5090", (12, 0), 32607)
RTX_4090: Final = FakeGpu("NVIDIA GeForce RTX 4090", (8, 9), 24564)
RTX_3090: Final = FakeGpu("NVIDIA GeForce RTX 3090", (8, 6), 24576)
QUADRO_RTX_4000: Final = FakeGpu("Quadro RTX 4000", (7, 5), 8192)
GTX_1080_TI: Final = FakeGpu("NVIDIA GeForce GTX 1080 Ti", (6, 1), 11264)

# A current Windows driver on an RTX 5090: everything answers.
WINDOWS_572: Final = FakeDriver("572.16", 12080, (RTX_5090,))

# A Linux workstation with two different GPUs.
LINUX_550_TWO_GPUS: Final = FakeDriver("550.144.03", 12040, (RTX_4090, RTX_3090))

# A 470 driver: no nvmlSystemGetCudaDriverVersion_v2 in its NVML, so v1 must answer.
LINUX_470: Final = FakeDriver(
    "470.182.03", 11040, (GTX_1080_TI,), missing=frozenset({"nvmlSystemGetCudaDriverVersion_v2"})
)

# nvidia-ml-py from the 450 era: no `_v2` wrapper in the binding, and strings come back as bytes.
OLD_BINDING_450: Final = FakeDriver(
    "450.80.02",
    11000,
    (QUADRO_RTX_4000,),
    returns_bytes=True,
    binding_lacks=frozenset({"nvmlSystemGetCudaDriverVersion_v2"}),
)

# v2 reads libcuda and answers LibraryNotFound where libcuda is missing; v1 still answers.
NO_LIBCUDA_535: Final = FakeDriver(
    "535.129.03",
    12020,
    (QUADRO_RTX_4000,),
    fails={"nvmlSystemGetCudaDriverVersion_v2": LIBRARY_NOT_FOUND},
)

# Two GPUs, the second fell off the bus: the first still counts.
ONE_GPU_LOST_535: Final = FakeDriver(
    "535.129.03",
    12020,
    (
        QUADRO_RTX_4000,
        FakeGpu("Quadro RTX 4000", (7, 5), 8192, fails={"nvmlDeviceGetHandleByIndex": GPU_IS_LOST}),
    ),
)

# One GPU whose compute capability query is not supported: named, capability unknown.
CC_NOT_SUPPORTED_550: Final = FakeDriver(
    "550.144.03",
    12040,
    (
        RTX_4090,
        FakeGpu(
            "NVIDIA GeForce RTX 3090",
            (8, 6),
            24576,
            fails={"nvmlDeviceGetCudaComputeCapability": NOT_SUPPORTED},
        ),
    ),
)

# Memory not supported (integrated / unified-memory GPUs): no note, still OK.
MEMORY_NOT_SUPPORTED_580: Final = FakeDriver(
    "580.95.05",
    13000,
    (FakeGpu("NVIDIA GB10", (12, 1), 0, fails={"nvmlDeviceGetMemoryInfo": NOT_SUPPORTED}),),
)

# The driver loads but there are no GPUs (e.g. all excluded, or a passthrough gone wrong).
NO_DEVICES_550: Final = FakeDriver("550.144.03", 12040, ())

# Failures at nvmlInit.
LIBRARY_NOT_FOUND_DRIVER: Final = FakeDriver("", 0, fails={"nvmlInit": LIBRARY_NOT_FOUND})
DRIVER_NOT_LOADED_DRIVER: Final = FakeDriver("", 0, fails={"nvmlInit": DRIVER_NOT_LOADED})
# Driver updated from 550 to 570 without a reboot: the new library meets the old kernel module.
MISMATCH_AFTER_UPDATE: Final = FakeDriver("", 0, fails={"nvmlInit": LIB_RM_VERSION_MISMATCH})
UNKNOWN_ERROR_DRIVER: Final = FakeDriver("", 0, fails={"nvmlInit": UNKNOWN})
NO_PERMISSION_DRIVER: Final = FakeDriver("", 0, fails={"nvmlInit": NO_PERMISSION})

# Initialises, knows its version, but cannot count its GPUs.
COUNT_FAILS_550: Final = FakeDriver("550.144.03", 12040, (RTX_4090,), fails={"nvmlDeviceGetCount": UNKNOWN})
