"""The driver-update story the monitor and tray tests share: an RTX 4090 whose driver is rolled
back from CUDA 12.8 to 11.8, so a cu128 torch stops fitting and the cu118 build is the repair."""

from __future__ import annotations

from typing import Any, Final

from tests.support.standin import StandIn

GPU: Final = [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}]
NEW_DRIVER: Final = {"driver_version": "572.16", "cuda_driver_version": "12.8", "gpus": GPU}
OLD_DRIVER: Final = {"driver_version": "520.61.05", "cuda_driver_version": "11.8", "gpus": GPU}


def family(variant: str, **torch_kwargs: Any) -> list[StandIn]:
    """torch 2.7.1 and torchvision 0.22.1 built for `variant`, as stand-in wheels."""
    cuda = None if variant == "cpu" else f"{variant[2:4]}.{variant[4]}"
    return [
        StandIn("torch", f"2.7.1+{variant}", cuda=cuda, **torch_kwargs),
        StandIn("torchvision", f"0.22.1+{variant}"),
    ]
