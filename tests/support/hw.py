"""Building Hardware and BuildReading values for rule tests."""

from __future__ import annotations

from pathlib import Path

from torchdoctor.service.envs.builds import BuildReading, CompanionInfo
from torchdoctor.service.models import (
    ComputeCapability,
    EnvKind,
    Gpu,
    Hardware,
    HardwareSource,
    Platform,
    ProbeState,
    PythonEnv,
    TorchBuild,
)

RTX_5090 = ("NVIDIA GeForce RTX 5090", "12.0")
RTX_4090 = ("NVIDIA GeForce RTX 4090", "8.9")
RTX_3090 = ("NVIDIA GeForce RTX 3090", "8.6")
GTX_1080 = ("NVIDIA GeForce GTX 1080", "6.1")
GTX_970 = ("NVIDIA GeForce GTX 970", "5.2")
TESLA_P100 = ("Tesla P100-PCIE-16GB", "6.0")
V100 = ("Tesla V100-SXM2-16GB", "7.0")
H100 = ("NVIDIA H100 80GB HBM3", "9.0")
K80 = ("Tesla K80", "3.7")
GTX_780 = ("NVIDIA GeForce GTX 780", "3.5")


def hardware(
    driver: str | None,
    cuda: str | None,
    *gpus: tuple[str, str],
    platform: Platform = Platform.LINUX,
    state: ProbeState = ProbeState.OK,
) -> Hardware:
    return Hardware(
        source=HardwareSource.FILE,
        platform=platform,
        driver_version=driver,
        cuda_driver_version=cuda,
        gpus=tuple(Gpu(i, name, ComputeCapability.parse(cc), 24576) for i, (name, cc) in enumerate(gpus)),
        state=state,
    )


def no_gpu(platform: Platform = Platform.LINUX) -> Hardware:
    return Hardware(HardwareSource.FILE, platform, None, None, (), ProbeState.NO_GPU)


def env(platform: Platform = Platform.LINUX) -> PythonEnv:
    if platform is Platform.WINDOWS:
        root = Path("C:/Users/ana/proj/.venv")
        return PythonEnv(root, root / "Scripts/python.exe", "3.12.4", EnvKind.VENV, True, (), platform)
    root = Path("/home/ana/proj/.venv")
    return PythonEnv(root, root / "bin/python", "3.12.4", EnvKind.VENV, True, (), platform)


def reading(
    version: str,
    *,
    variant: str | None = None,
    cuda: str | None = None,
    torchvision: str | None = None,
    torchvision_requires: str | None = None,
    torchaudio: str | None = None,
    torchaudio_requires: str | None = None,
    problems: tuple[str, ...] = (),
) -> BuildReading:
    """A build as the reader would return it; variant/cuda default from the local label."""
    label = version.split("+", 1)[1] if "+" in version else None
    variant = variant if variant is not None else label
    if cuda is None and variant and variant.startswith("cu"):
        cuda = f"{variant[2:-1]}.{variant[-1]}"
    tv = CompanionInfo(torchvision, torchvision_requires) if torchvision else None
    ta = CompanionInfo(torchaudio, torchaudio_requires) if torchaudio else None
    build = TorchBuild(
        version=version,
        variant=variant,
        cuda=cuda,
        torchvision=torchvision,
        torchaudio=torchaudio,
        problems=problems,
    )
    return BuildReading(build, tv, ta)
