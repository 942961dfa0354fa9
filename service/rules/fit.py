"""Does a (torch version, variant) build fit this machine? Pure functions over the knowledge.

A build *fits* when every GPU is covered by its compiled architectures (native code of the same
major, or PTX the driver can JIT) and the driver meets its CUDA major's minor-version-compatibility
floor; it fits *fully* when the driver supports the CUDA minor it was built with. Where the
driver's own CUDA version is known (NVML `nvmlSystemGetCudaDriverVersion`, nvidia-smi's header, a
hardware file's `cuda_driver_version`) that decides: build CUDA <= driver CUDA fits fully. Only a
driver number is known: NVIDIA's table of the first driver of each CUDA minor (its GA driver)
decides. `diagnose` judges installed builds with this; `plan` chooses new ones with it, so both
give one answer for one machine.

On a Jetson (Tegra) the driver file reports an L4T release, not a desktop driver, so desktop
floors do not apply; the PyPI / download.pytorch.org aarch64 wheels built before CUDA 13 are for
servers (SBSA) and do not run on Jetson at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from torchdoctor.service.facts.knowledge import ArchList, Coverage, DriverFloor, DriverVersion, Knowledge
from torchdoctor.service.facts.variants import cuda_key, cuda_tuple, variant_cuda
from torchdoctor.service.models import ComputeCapability, Gpu, Hardware, Platform

# The first CUDA major whose aarch64 wheels (SBSA) also run on Jetson (Thor, JetPack 7).
JETSON_FIRST_CUDA_MAJOR: Final = 13


class DriverLevel(StrEnum):
    FULL = "full"  # the driver supports the build's CUDA minor
    MINOR_COMPAT = "minor-compat"  # runs through CUDA minor-version compatibility
    TOO_OLD = "too-old"
    UNKNOWN = "unknown"  # the driver version is not known (e.g. a hardware file without it)


@dataclass(frozen=True, slots=True)
class DriverVerdict:
    level: DriverLevel
    floor: DriverFloor
    have: str | None  # what we compared: "572.16" or "CUDA 12.8"

    def needed(self) -> str:
        """The driver that would make this build run fully, in words."""
        target = self.floor.toolkit or self.floor.mvc
        return f"{target}" if target is not None else f"one supporting CUDA {self.floor.cuda}"


class FitLevel(StrEnum):
    FULL = "full"
    MINOR_COMPAT = "minor-compat"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class GpuCoverage:
    gpu: Gpu
    coverage: Coverage | None  # None: the GPU's compute capability is unknown


@dataclass(frozen=True, slots=True)
class Fit:
    level: FitLevel
    driver: DriverVerdict
    arch: ArchList | None
    gpus: tuple[GpuCoverage, ...]
    not_for_jetson: bool = False  # a pre-CUDA-13 aarch64 wheel on a Jetson: it cannot run there

    @property
    def uncovered(self) -> tuple[Gpu, ...]:
        """GPUs this build cannot run on (PTX counts only with a full driver)."""
        jit_ok = self.driver.level in (DriverLevel.FULL, DriverLevel.UNKNOWN)
        return tuple(
            g.gpu
            for g in self.gpus
            if g.coverage is Coverage.NONE or (g.coverage is Coverage.PTX and not jit_ok)
        )


def _parse_driver(text: str | None) -> DriverVersion | None:
    if not text:
        return None
    try:
        return DriverVersion.parse(text)
    except ValueError:
        return None


def driver_verdict(knowledge: Knowledge, cuda: str, hardware: Hardware) -> DriverVerdict:
    """Judge the installed driver against a build's CUDA version.

    The driver's own CUDA version, where known, is the test: a driver reporting CUDA X.y runs
    X.y and older builds fully, newer X.z through minor-version compatibility (when its number
    also meets the major's floor), and nothing of a newer major. Otherwise the driver number is
    compared with NVIDIA's per-OS tables; a CUDA minor without a known first driver can then be
    called minor-version compatible at best. On a Jetson the number is an L4T release, so only
    the CUDA version counts.
    """
    floor = knowledge.driver_floor(cuda, hardware.platform)
    have = None if hardware.tegra else _parse_driver(hardware.driver_version)
    driver_cuda = cuda_tuple(hardware.cuda_driver_version)
    build_cuda = cuda_tuple(cuda)
    if driver_cuda is not None and build_cuda is not None:
        have_text = f"CUDA {hardware.cuda_driver_version}"
        if have is not None:
            have_text = f"{hardware.driver_version} (CUDA {hardware.cuda_driver_version})"
        if driver_cuda[0] < build_cuda[0] or (
            have is not None and floor.mvc is not None and have < floor.mvc
        ):
            return DriverVerdict(DriverLevel.TOO_OLD, floor, have_text)
        if driver_cuda < build_cuda:
            return DriverVerdict(DriverLevel.MINOR_COMPAT, floor, have_text)
        return DriverVerdict(DriverLevel.FULL, floor, have_text)
    if have is not None and floor.mvc is not None:
        if have < floor.mvc:
            return DriverVerdict(DriverLevel.TOO_OLD, floor, hardware.driver_version)
        if floor.toolkit is None or have < floor.toolkit:
            return DriverVerdict(DriverLevel.MINOR_COMPAT, floor, hardware.driver_version)
        return DriverVerdict(DriverLevel.FULL, floor, hardware.driver_version)
    return DriverVerdict(DriverLevel.UNKNOWN, floor, hardware.driver_version)


def _inferred_coverage(
    knowledge: Knowledge, arch: ArchList, device: ComputeCapability, cuda: str | None
) -> Coverage:
    """For a release the data does not know: alarm only on what the toolkit itself rules out."""
    measured = knowledge.coverage(arch, device, cuda)
    if measured is not Coverage.NONE or cuda is None:
        return measured
    oldest, newest = knowledge.cuda_min_arch(cuda), knowledge.cuda_max_arch(cuda)
    if oldest is not None and device < oldest:
        return Coverage.NONE
    if newest is not None and device.major > newest.major:
        return Coverage.NONE
    return Coverage.SASS  # a newer release may well have added it; do not cry wolf


def gpu_coverage(
    knowledge: Knowledge, arch: ArchList | None, cuda: str | None, gpus: tuple[Gpu, ...]
) -> tuple[GpuCoverage, ...]:
    result: list[GpuCoverage] = []
    for gpu in gpus:
        cc = gpu.compute_capability
        if cc is None:
            result.append(GpuCoverage(gpu, None))
        elif arch is None:
            # Unknown variant: only the CUDA major's hard floor is certain.
            oldest = knowledge.cuda_min_arch(cuda) if cuda else None
            result.append(GpuCoverage(gpu, Coverage.NONE if oldest and cc < oldest else None))
        elif arch.inferred:
            result.append(GpuCoverage(gpu, _inferred_coverage(knowledge, arch, cc, cuda)))
        else:
            result.append(GpuCoverage(gpu, knowledge.coverage(arch, cc, cuda)))
    return tuple(result)


def build_fit(
    knowledge: Knowledge,
    version: str,
    variant: str,
    hardware: Hardware,
    *,
    arch: ArchList | None = None,
    platform: Platform | None = None,
    machine: str | None = None,
) -> Fit:
    """How well a CUDA build (`variant` "cu128") of torch `version` fits `hardware`.

    `arch`: the build's own architecture list when it was read from the installed files; by
    default the knowledge's list for (version, variant, `platform`, `machine`). `platform` and
    `machine` are what the wheel is for (the environment's tags; by default the hardware's);
    driver floors always use the hardware's.
    """
    cuda = variant_cuda(variant)
    if cuda is None:
        raise ValueError(f"build_fit needs a CUDA variant, got {variant!r}")
    driver = driver_verdict(knowledge, cuda, hardware)
    if arch is None:
        arch = knowledge.arch_list(
            version, variant, platform or hardware.platform, machine or hardware.machine
        )
    coverage = gpu_coverage(knowledge, arch, cuda, hardware.gpus)
    build_cuda = cuda_tuple(cuda)
    if hardware.tegra and build_cuda is not None and build_cuda[0] < JETSON_FIRST_CUDA_MAJOR:
        return Fit(FitLevel.NONE, driver, arch, coverage, not_for_jetson=True)
    fit = Fit(FitLevel.FULL, driver, arch, coverage)
    if driver.level is DriverLevel.TOO_OLD or fit.uncovered:
        return Fit(FitLevel.NONE, driver, arch, coverage)
    if driver.level is DriverLevel.MINOR_COMPAT:
        return Fit(FitLevel.MINOR_COMPAT, driver, arch, coverage)
    return fit


def best_variant(
    knowledge: Knowledge,
    version: str,
    hardware: Hardware,
    *,
    candidates: tuple[str, ...] | None = None,
    platform: Platform | None = None,
    machine: str | None = None,
) -> tuple[str, Fit] | None:
    """The newest CUDA variant of `version` that fits fully, else the newest that fits at all.

    `candidates` limits the choice (e.g. to what the index publishes); by default the release's
    variants from the knowledge. None when nothing fits.
    """
    release = knowledge.release(version)
    wheel_os = platform or hardware.platform
    pool = candidates if candidates is not None else (release.variants_for(wheel_os) if release else ())
    cuda_variants = sorted((v for v in pool if v.startswith("cu")), key=cuda_key)
    fits = [
        (v, build_fit(knowledge, version, v, hardware, platform=platform, machine=machine))
        for v in reversed(cuda_variants)
    ]
    for wanted in (FitLevel.FULL, FitLevel.MINOR_COMPAT):
        for variant, fit in fits:
            if fit.level is wanted:
                return variant, fit
    return None
