"""The data's arch lists against the real CUDA torch wheels at hand.

Runs only where real wheels are: the folders pip already finds wheels in on this machine
($PIP_FIND_LINKS, and the local wheel folders tests/support/realtorch.py relies on). For each CUDA
torch wheel, its CUDA comes from its own METADATA (`cuda-toolkit==13.0.3`), its arch list from
the string `torch.cuda.get_arch_list()` returns, read out of libtorch_python.so
(service/envs/archscan.py), and that must be what knowledge.json says for (release, variant, OS,
machine). Skipped with the reason where no CUDA wheel is at hand.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from torchdoctor.service.envs.archscan import read_arch_flags
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.facts.variants import cuda_variant, machine_of_platform_tag
from torchdoctor.service.install.metadata import parse_metadata
from torchdoctor.service.models import Platform

KN = load_knowledge(Path("/nonexistent"))
_FOLDERS = (Path("/opt/wheels"), Path("/opt/pypi-more/files"), Path("/opt/pypi/files"))


def wheel_folders() -> list[Path]:
    listed = [Path(p) for p in os.environ.get("PIP_FIND_LINKS", "").split() if p and "://" not in p]
    return [p for p in dict.fromkeys([*listed, *_FOLDERS]) if p.is_dir()]


def cuda_torch_wheels() -> list[tuple[Path, str]]:
    """(wheel, CUDA minor) for every Linux CUDA torch wheel at hand."""
    found: list[tuple[Path, str]] = []
    for folder in wheel_folders():
        for wheel in sorted(folder.glob("torch-*.whl")):
            if "linux" not in wheel.name:
                continue
            with zipfile.ZipFile(wheel) as zf:
                names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
                if not names:
                    continue
                cuda = parse_metadata(zf.read(names[0]).decode("utf-8", "replace")).cuda_minor()
            if cuda is not None:
                found.append((wheel, cuda))
    return found


WHEELS = cuda_torch_wheels()


@pytest.mark.skipif(not WHEELS, reason="no real CUDA torch wheel is at hand (PIP_FIND_LINKS, /opt/wheels)")
@pytest.mark.parametrize(("wheel", "cuda"), WHEELS, ids=[w.name for w, _ in WHEELS])
def test_the_data_says_what_the_real_wheel_was_compiled_for(wheel: Path, cuda: str, tmp_path: Path) -> None:
    version = wheel.name.split("-")[1]
    platform_tag = wheel.name.removesuffix(".whl").split("-")[-1]
    with zipfile.ZipFile(wheel) as zf, zf.open("torch/lib/libtorch_python.so") as src:
        (tmp_path / "torch" / "lib").mkdir(parents=True)
        with (tmp_path / "torch" / "lib" / "libtorch_python.so").open("wb") as dst:
            shutil.copyfileobj(src, dst)
    measured = read_arch_flags(tmp_path / "torch")
    assert measured is not None, f"{wheel.name}: no arch list in libtorch_python.so"
    data = KN.arch_list(version, cuda_variant(cuda), Platform.LINUX, machine_of_platform_tag(platform_tag))
    assert data is not None and not data.inferred, (
        f"knowledge.json has no list for {version} {cuda_variant(cuda)}"
    )
    assert [str(c) for c in data.codes] == [str(c) for c in measured.codes], data.source
    assert data.ptx == measured.ptx, data.source
