"""The values that flow between layers: hardware, environments, builds, findings, reports.

Everything here is immutable and free of I/O, so the decision logic can be fed by hand in tests
and by the probes in production.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final


class Platform(StrEnum):
    WINDOWS = "windows"
    LINUX = "linux"
    MACOS = "macos"


class HardwareSource(StrEnum):
    NVML = "nvml"
    NVIDIA_SMI = "nvidia-smi"
    FILE = "file"
    NONE = "none"


class ProbeState(StrEnum):
    """What the probe could tell, in terms a person can act on."""

    OK = "ok"
    NO_GPU = "no-gpu"  # no NVIDIA GPU or driver was found
    NO_DRIVER = "no-driver"  # NVML library present but the kernel driver is not loaded
    RESTART_NEEDED = "restart-needed"  # driver updated without a reboot: library and kernel differ
    PARTIAL = "partial"  # some GPUs or fields could not be read
    ERROR = "error"  # the driver answered with an error we cannot interpret
    DRIVER_LIBS_MISSING = "driver-libs-missing"  # nvidia-smi present, the driver's libraries not


_CC_RE: Final = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\s*$")


@dataclass(frozen=True, slots=True, order=True)
class ComputeCapability:
    """An NVIDIA compute capability such as 8.6 (sm_86)."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> ComputeCapability:
        """Parse "8.6"; raises ValueError for anything else."""
        match = _CC_RE.match(text)
        if not match:
            raise ValueError(f"not a compute capability: {text!r} (expected e.g. '8.6')")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def from_sm(cls, sm: int) -> ComputeCapability:
        """sm_120 -> 12.0, sm_86 -> 8.6."""
        return cls(sm // 10, sm % 10)

    @property
    def sm(self) -> int:
        return self.major * 10 + self.minor

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    name: str
    compute_capability: ComputeCapability | None
    memory_mib: int | None = None


@dataclass(frozen=True, slots=True)
class Hardware:
    """What the machine has: the NVIDIA driver and its GPUs (empty `gpus`: no NVIDIA GPU)."""

    source: HardwareSource
    platform: Platform
    driver_version: str | None
    cuda_driver_version: str | None  # the newest CUDA the driver supports, "12.8"
    gpus: tuple[Gpu, ...]
    state: ProbeState = ProbeState.OK
    notes: tuple[str, ...] = ()  # what went wrong while probing, one sentence each
    # A Jetson (Tegra) board: its driver file reports an L4T release (35.3.1), not a desktop
    # driver version, and desktop driver floors do not apply to it.
    tegra: bool = False
    machine: str | None = None  # "x86_64" or "aarch64"; None: not probed (taken as x86_64)

    @property
    def has_nvidia_gpu(self) -> bool:
        return bool(self.gpus)

    @property
    def gpus_known(self) -> bool:
        """False when the driver answered but its GPUs could not be listed (or it did not answer):
        an empty `gpus` is then not "no GPU", and nothing may be decided from it."""
        return bool(self.gpus) or self.state in (ProbeState.OK, ProbeState.NO_GPU)

    @property
    def driver_known(self) -> bool:
        return bool(self.driver_version or self.cuda_driver_version)

    @property
    def probed(self) -> bool:
        """True when the facts come from this machine's driver, not from a file."""
        return self.source in (HardwareSource.NVML, HardwareSource.NVIDIA_SMI)


class EnvKind(StrEnum):
    VENV = "venv"
    CONDA = "conda"
    SYSTEM = "system"
    PYENV = "pyenv"
    UV = "uv"
    PY_LAUNCHER = "py-launcher"


@dataclass(frozen=True, slots=True)
class PythonEnv:
    """A Python environment: where its packages live and which interpreter runs it."""

    root: Path
    python: Path
    python_version: str | None
    kind: EnvKind
    has_pip: bool
    site_packages: tuple[Path, ...] = ()
    platform: Platform = Platform.LINUX


class Installer(StrEnum):
    PIP = "pip"
    CONDA = "conda"
    UV = "uv"
    UNKNOWN = "unknown"


class VariantSource(StrEnum):
    """How the build's variant was learned; the weaker ones are said in messages."""

    LOCAL_LABEL = "local-label"  # 2.7.1+cu128
    VERSION_PY = "version.py"  # torch/version.py cuda/hip/xpu fields
    REQUIRES_DIST = "requires-dist"  # nvidia-*-cu12 dependencies of an unlabelled Linux wheel
    PYPI_DEFAULT = "pypi-default"  # an unlabelled Windows/macOS wheel is the CPU build
    CONDA = "conda"  # conda-meta/pytorch-*.json build string
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class TorchBuild:
    """A torch installation as read from disk, without importing it."""

    version: str | None  # "2.7.1+cu128"; None when unreadable
    variant: str | None  # "cpu", "cu128", "rocm6.2", "xpu"
    cuda: str | None  # "12.8"
    hip: str | None = None
    torchvision: str | None = None
    torchaudio: str | None = None
    installer: Installer = Installer.UNKNOWN
    variant_source: VariantSource = VariantSource.UNKNOWN
    problems: tuple[str, ...] = ()  # why the build is unreadable or inconsistent

    @property
    def release(self) -> str | None:
        """The public version without the local label: "2.7.1"."""
        if self.version is None:
            return None
        return self.version.split("+", 1)[0]


class Severity(StrEnum):
    ERROR = "error"
    WARN = "warn"
    INFO = "info"


class FindingCode(StrEnum):
    CPU_BUILD_WITH_GPU = "cpu-build-with-gpu"
    DRIVER_TOO_OLD = "driver-too-old"
    GPU_ARCH_UNSUPPORTED = "gpu-arch-unsupported"
    COMPANION_MISMATCH = "companion-mismatch"
    VARIANT_MISMATCH = "variant-mismatch"
    TORCH_UNREADABLE = "torch-unreadable"
    CUDA_BUILD_WITHOUT_GPU = "cuda-build-without-gpu"
    DRIVER_MINOR_COMPAT = "driver-minor-compat"
    NEWER_VARIANT_AVAILABLE = "newer-variant-available"
    TORCH_IN_USER_SITE = "torch-in-user-site"
    FIX_INTERRUPTED = "fix-interrupted"


SEVERITY: Final[dict[FindingCode, Severity]] = {
    FindingCode.CPU_BUILD_WITH_GPU: Severity.ERROR,
    FindingCode.DRIVER_TOO_OLD: Severity.ERROR,
    FindingCode.GPU_ARCH_UNSUPPORTED: Severity.ERROR,
    FindingCode.COMPANION_MISMATCH: Severity.ERROR,
    FindingCode.VARIANT_MISMATCH: Severity.ERROR,
    FindingCode.TORCH_UNREADABLE: Severity.ERROR,
    FindingCode.CUDA_BUILD_WITHOUT_GPU: Severity.WARN,
    FindingCode.DRIVER_MINOR_COMPAT: Severity.WARN,
    FindingCode.NEWER_VARIANT_AVAILABLE: Severity.INFO,
    FindingCode.TORCH_IN_USER_SITE: Severity.WARN,
    FindingCode.FIX_INTERRUPTED: Severity.ERROR,
}


@dataclass(frozen=True, slots=True)
class Finding:
    code: FindingCode
    message: str  # one sentence a person understands
    fix: str  # what to do, ideally the command to run
    # Only a lower severity than the code's own, where the rule knows nothing can be done about it
    # (driver-minor-compat with no better build: info). None: SEVERITY[code].
    severity_override: Severity | None = None

    @property
    def severity(self) -> Severity:
        return self.severity_override or SEVERITY[self.code]


class EnvStatus(StrEnum):
    OK = "ok"
    WARN = "warn"
    BROKEN = "broken"
    NO_TORCH = "no-torch"


class OverallStatus(StrEnum):
    OK = "ok"
    WARN = "warn"
    BROKEN = "broken"


def env_status(torch: TorchBuild | None, findings: tuple[Finding, ...]) -> EnvStatus:
    """broken if any error, warn if any warn, ok otherwise; no-torch where torch is absent."""
    severities = {f.severity for f in findings}
    if Severity.ERROR in severities:
        return EnvStatus.BROKEN
    if torch is None:
        return EnvStatus.NO_TORCH
    if Severity.WARN in severities:
        return EnvStatus.WARN
    return EnvStatus.OK


@dataclass(frozen=True, slots=True)
class EnvReport:
    env: PythonEnv
    torch: TorchBuild | None
    findings: tuple[Finding, ...]

    @property
    def status(self) -> EnvStatus:
        return env_status(self.torch, self.findings)


@dataclass(frozen=True, slots=True)
class CheckReport:
    hardware: Hardware
    environments: tuple[EnvReport, ...]
    notes: tuple[str, ...] = field(default=())  # discovery problems worth telling

    @property
    def status(self) -> OverallStatus:
        statuses = {e.status for e in self.environments}
        if EnvStatus.BROKEN in statuses:
            return OverallStatus.BROKEN
        if EnvStatus.WARN in statuses:
            return OverallStatus.WARN
        return OverallStatus.OK
