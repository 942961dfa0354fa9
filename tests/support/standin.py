"""Stand-in torch / torchvision / torchaudio wheels: real wheel files, tiny contents.

They carry what torchdoctor reads (dist-info METADATA, WHEEL, RECORD, `torch/version.py`) and a
small importable package, so pip and uv install them for real and our readers see real layouts.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ANY_TAG = "py3-none-any"


@dataclass(frozen=True)
class StandIn:
    name: str  # "torch", "torchvision", "torchaudio"
    version: str  # "2.7.1+cu128"
    tag: str = ANY_TAG
    cuda: str | None = None  # torch/version.py `cuda`
    hip: str | None = None
    xpu: str | None = None
    requires: Sequence[str] = ()
    requires_python: str | None = None
    # Extra files inside the wheel, path -> text. Overrides the default package files.
    files: Mapping[str, str] = field(default_factory=dict)
    # When set, importing the package raises this (an ImportError-like failure).
    import_error: str | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.tag}.whl"

    @property
    def dist_info(self) -> str:
        return f"{self.name}-{self.version}.dist-info"


def torch_version_py(version: str, cuda: str | None, hip: str | None, xpu: str | None) -> str:
    """The text `tools/generate_torch_version.py` writes (same fields, same annotations)."""
    lines = [
        "from typing import Optional",
        "",
        "__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip', 'xpu']",
        f"__version__ = {version!r}",
        "debug = False",
        f"cuda: Optional[str] = {cuda!r}",
        "git_version = 'e2d141dbde55c2a4370fac5165b0561b6af4798b'",
        f"hip: Optional[str] = {hip!r}",
        f"xpu: Optional[str] = {xpu!r}",
        "",
    ]
    return "\n".join(lines)


def _package_files(spec: StandIn) -> dict[str, str]:
    pkg = spec.name
    init = f"__version__ = {spec.version!r}\n"
    if spec.import_error is not None:
        init = f"raise ImportError({spec.import_error!r})\n"
    files = {f"{pkg}/__init__.py": init}
    if spec.name == "torch":
        files["torch/version.py"] = torch_version_py(spec.version, spec.cuda, spec.hip, spec.xpu)
        if spec.import_error is None:
            files["torch/__init__.py"] = "from torch.version import __version__\nfrom torch import version\n"
    files.update(spec.files)
    return files


def _metadata(spec: StandIn) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {spec.name}",
        f"Version: {spec.version}",
        "Summary: stand-in built by the torchdoctor test suite",
    ]
    if spec.requires_python:
        lines.append(f"Requires-Python: {spec.requires_python}")
    lines += [f"Requires-Dist: {r}" for r in spec.requires]
    return "\n".join(lines) + "\n\n"


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(spec: StandIn, dest: Path) -> Path:
    """Write the wheel into `dest` and return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    contents: dict[str, bytes] = {k: v.encode() for k, v in _package_files(spec).items()}
    di = spec.dist_info
    contents[f"{di}/METADATA"] = _metadata(spec).encode()
    contents[f"{di}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: torchdoctor-tests\nRoot-Is-Purelib: false\nTag: {spec.tag}\n\n"
    ).encode()
    record = [f"{p},{_record_hash(d)},{len(d)}" for p, d in contents.items()]
    record.append(f"{di}/RECORD,,")
    contents[f"{di}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = dest / spec.filename
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
    return path


def cuda_requires(major: int) -> list[str]:
    """`Requires-Dist` lines of an unlabelled Linux PyPI CUDA wheel, trimmed.

    CUDA 12 wheels name `nvidia-*-cu12` packages; the real torch 2.14.1 (cu130) wheel on this
    machine names `cuda-toolkit[...]==13.0.3` and `nvidia-cudnn-cu13`.
    """
    marker = '; platform_system == "Linux"'
    if major == 12:
        return [
            f"nvidia-cuda-runtime-cu12==12.8.57{marker}",
            f"nvidia-cudnn-cu12==9.7.1.26{marker}",
            f"nvidia-cublas-cu12==12.8.3.14{marker}",
        ]
    return [
        f"cuda-toolkit[cublas,cudart,cufft]=={major}.0.3{marker}",
        f"nvidia-cudnn-cu{major}==9.24.0.43{marker}",
        f"nvidia-nccl-cu{major}==2.30.7{marker}",
    ]
