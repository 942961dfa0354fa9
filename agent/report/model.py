"""The values the report's templates read: what a `check --json` document says, and the histories.

Every string here came from an environment or a document someone else wrote (paths, versions,
messages) and is untrusted: the templates autoescape it and charts are sanitised (charts.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

STATUSES: Final = ("ok", "warn", "broken", "no-torch")
# Worst first: the order tables start in, so a page read without script still leads with trouble.
STATUS_RANK: Final = {"broken": 0, "warn": 1, "ok": 2, "no-torch": 3}
SEVERITIES: Final = ("error", "warn", "info")
# The benchmark figures the chart draws (service/bench/run.py's names) -> their labels, in order.
FIGURES: Final = {
    "matmul_fp32_tflops": "FP32",
    "matmul_tf32_tflops": "TF32",
    "matmul_fp16_tflops": "FP16",
    "matmul_bf16_tflops": "BF16",
}
# A benchmark on the CPU (`bench --device cpu`, or a CPU build) measures GFLOP/s instead.
CPU_FIGURES: Final = {"matmul_fp32_gflops": "CPU FP32"}


@dataclass(frozen=True, slots=True)
class GpuView:
    name: str
    compute_capability: str | None
    memory_mib: int | None


@dataclass(frozen=True, slots=True)
class HardwareView:
    source: str | None
    platform: str | None
    driver_version: str | None
    cuda_driver_version: str | None
    gpus: tuple[GpuView, ...]
    state: str | None
    notes: tuple[str, ...]

    @property
    def gpu_model(self) -> str:
        """How a fleet groups machines: the GPU names, counted ("2 x NVIDIA H100"), or "no GPU"."""
        if not self.gpus:
            return "no NVIDIA GPU"
        counts: dict[str, int] = {}
        for gpu in self.gpus:
            counts[gpu.name] = counts.get(gpu.name, 0) + 1
        return " + ".join(name if n == 1 else f"{n} x {name}" for name, n in counts.items())


@dataclass(frozen=True, slots=True)
class FindingView:
    code: str
    severity: str
    message: str
    fix: str


@dataclass(frozen=True, slots=True)
class EnvView:
    path: str
    python: str | None
    python_version: str | None
    kind: str | None
    torch: str | None
    variant: str | None
    cuda: str | None
    torchvision: str | None
    torchaudio: str | None
    installer: str | None
    status: str
    findings: tuple[FindingView, ...]

    @property
    def needs_attention(self) -> bool:
        return self.status in ("warn", "broken")


@dataclass(frozen=True, slots=True)
class MachineDoc:
    """One machine's `check --json` document, read and validated."""

    name: str  # the file's name without .json for a fleet; the host name for this machine
    source: str  # where it was read from (a path), or "this machine"
    hardware: HardwareView
    environments: tuple[EnvView, ...]
    status: str
    notes: tuple[str, ...]
    modified: datetime | None = None  # the file's time: how old the fleet's view of it is

    @property
    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(STATUSES, 0)
        for env in self.environments:
            found[env.status] += 1
        return found


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A `--from` file that is not a document this version can read, and why, in one line."""

    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class BenchPoint:
    at: datetime
    passed: bool
    device: str
    device_name: str | None
    torch_version: str | None
    figures: dict[str, float]
    peaks: dict[str, float]  # the GPU's datasheet peak per figure name (matmul_fp16_tflops ...)
    reason: str | None


@dataclass(frozen=True, slots=True)
class BenchSeries:
    """One environment's benchmark runs, oldest first."""

    env: str
    points: tuple[BenchPoint, ...]


@dataclass(frozen=True, slots=True)
class FixEvent:
    """One `fix`, read from its log: when, where, what it installed, and how it ended."""

    at: datetime | None
    env: str
    installed: str  # the planned requirements, as the log says them
    outcome: str  # "installed", "failed, restored", "failed, NOT restored", "unfinished"
    detail: str | None
    log: str  # the log file's path, for the person who wants the whole story
    before: str | None = None  # what was installed before ("torch 2.5.1+cu124"); older logs lack it


@dataclass(frozen=True, slots=True)
class DriverEvent:
    at: datetime | None
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class LocalHistory:
    """What this machine remembers; each part may be empty, and `notes` say what could not be read."""

    bench: tuple[BenchSeries, ...] = ()
    fixes: tuple[FixEvent, ...] = ()
    drivers: tuple[DriverEvent, ...] = ()
    driver_now: str | None = None  # the tray's last-seen driver
    driver_checked_at: str | None = None  # when the tray last checked
    notes: tuple[str, ...] = ()
