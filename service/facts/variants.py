"""Variant names: `cpu`, `cu128`, `rocm6.2`, `xpu`, the CUDA versions they stand for, and the
index that serves one sub-index per variant (`<base>/<variant>/`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

DEFAULT_INDEX_BASE: Final = "https://download.pytorch.org/whl"

_CUDA_RE: Final = re.compile(r"^(\d+)\.(\d+)")
_LABEL_RE: Final = re.compile(r"^(cpu|cu\d{2,3}|rocm\d+(?:\.\d+){1,2}|xpu)$")


def local_label(version: str) -> str | None:
    """ "2.7.1+cu128" -> "cu128"; None for a bare version or a label that is not a variant."""
    if "+" not in version:
        return None
    label = version.split("+", 1)[1].lower()
    return label if _LABEL_RE.match(label) else None


def variant_cuda(variant: str | None) -> str | None:
    """ "cu128" -> "12.8", "cu118" -> "11.8"; None for cpu/rocm/xpu."""
    if variant is None or not variant.startswith("cu"):
        return None
    digits = variant[2:]
    return f"{digits[:-1]}.{digits[-1]}"


def cuda_variant(cuda: str) -> str:
    """ "12.8" -> "cu128"."""
    major, _, minor = cuda.partition(".")
    return f"cu{major}{minor[:1] or '0'}"


def cuda_tuple(text: str | None) -> tuple[int, int] | None:
    """ "12.8" (or "12.8.1") -> (12, 8); None for anything else."""
    match = _CUDA_RE.match(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def cuda_key(variant: str) -> tuple[int, int]:
    """Sort key: cu118 < cu126 < cu128 < cu130; non-CUDA variants sort first."""
    return cuda_tuple(variant_cuda(variant)) or (0, 0)


def machine_of_platform_tag(platform_tag: str) -> str:
    """ "manylinux_2_28_aarch64" / "linux_aarch64" / "win_arm64" -> "aarch64"; everything else
    (x86_64, win_amd64, any) -> "x86_64", the machine every arch list is for unless marked."""
    tag = platform_tag.lower()
    return "aarch64" if tag.endswith(("aarch64", "arm64")) else "x86_64"


def machine_of_tags(platform_tags: Iterable[str]) -> str:
    """The machine an interpreter's wheel tags are for: its most preferred platform tag that names
    one (pure-Python "any" tags say nothing)."""
    for tag in platform_tags:
        if tag != "any":
            return machine_of_platform_tag(tag)
    return "x86_64"
