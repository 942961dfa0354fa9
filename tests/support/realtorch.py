"""The real CPU torch in a venv, built once and cached under `<repo>/.cache/` across test sessions.

`torch==2.13.0+cpu` from the PyTorch CPU index: on our machines pip finds that exact wheel in its
local wheel folder (PIP_FIND_LINKS) and the index itself is unreachable, so a few quick
connection warnings are expected (`--retries 1` keeps them few); elsewhere the CPU index serves
it. A plain `torch==2.13.0` would pull the multi-GB CUDA build from PyPI on Linux.

The venv is keyed by a stamp (requirement, Python, base interpreter) written last, so an
interrupted build is redone, and built under a file lock, so two pytest processes (xdist
workers, two terminals) wait for one build instead of racing.

Overlays give tests a changed torch without touching the cached venv: a small venv whose
site-packages points at the cached one through a `.pth` file, plus files of its own (a stand-in
torchvision, a module that breaks one torch operation on purpose).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import pytest
from filelock import FileLock

from tests.support.envs import make_venv
from torchdoctor.service import proc

TORCH_VERSION: Final = "2.13.0"
TORCH_REQUIREMENT: Final = f"torch=={TORCH_VERSION}+cpu"
CPU_INDEX: Final = "https://download.pytorch.org/whl/cpu"
STAMP_NAME: Final = ".torchdoctor-stamp"
_BUILD_TIMEOUT_S: Final = 1800.0


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def venv_root() -> Path:
    return repo_root() / ".cache" / f"torch-venv-{TORCH_VERSION}"


def venv_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _stamp() -> str:
    return (
        f"requirement={TORCH_REQUIREMENT}\n"
        f"python={sys.version_info.major}.{sys.version_info.minor}\n"
        f"base={sys.base_prefix}\n"
    )


def _ready(root: Path) -> bool:
    stamp = root / STAMP_NAME
    return stamp.is_file() and stamp.read_text() == _stamp() and venv_python(root).exists()


def _check(completed: proc.Completed, what: str) -> None:
    if not completed.ok:
        tail = (completed.stdout + completed.stderr)[-3000:]
        raise RuntimeError(f"{what} failed (exit {completed.returncode}):\n{tail}")


def ensure_real_torch() -> Path:
    """The python of a venv holding the real CPU torch; builds it on first use (about 20 s)."""
    root = venv_root()
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock", timeout=_BUILD_TIMEOUT_S):
        python = venv_python(root)
        if _ready(root):
            return python
        shutil.rmtree(root, ignore_errors=True)
        _check(proc.run([sys.executable, "-m", "venv", root], timeout=300), "creating the torch venv")
        install: list[str | Path] = [
            python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--retries",
            "1",
            "--timeout",
            "15",
            TORCH_REQUIREMENT,
            "--extra-index-url",
            CPU_INDEX,
        ]
        _check(proc.run(install, timeout=_BUILD_TIMEOUT_S), f"pip install {TORCH_REQUIREMENT}")
        probe = proc.run([python, "-c", "import torch; print(torch.__version__)"], timeout=120)
        _check(probe, "importing the installed torch")
        if probe.stdout.strip() != f"{TORCH_VERSION}+cpu":
            raise RuntimeError(f"expected torch {TORCH_VERSION}+cpu, got {probe.stdout.strip()!r}")
        (root / STAMP_NAME).write_text(_stamp())
        return python


def site_packages(python: Path) -> Path:
    probe = proc.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], timeout=60)
    _check(probe, "asking for site-packages")
    return Path(probe.stdout.strip())


def overlay_venv(dest: Path, *, files: Mapping[str, str] = {}) -> Path:
    """A venv at `dest` that imports the cached real torch and, before it, `files` (relative to
    its own site-packages). Returns its python."""
    base = site_packages(ensure_real_torch())
    env = make_venv(dest)
    own = env.site_packages[0]
    # .pth files run in name order: the path first, then any `import` line in td_*.pth files.
    (own / "td_000_realtorch.pth").write_text(f"{base}\n")
    for rel, text in files.items():
        target = own / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return env.python


@pytest.fixture(scope="session")
def real_torch_python() -> Path:
    """Session-scoped: the python of the cached real-CPU-torch venv."""
    return ensure_real_torch()
