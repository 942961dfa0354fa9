"""Reading torch builds from site-packages layouts, without importing torch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.envs import site_packages_env, unpack_standin
from tests.support.standin import StandIn, cuda_requires
from torchdoctor.service.envs.builds import parse_version_py, read_build
from torchdoctor.service.facts.knowledge import Knowledge, load_knowledge
from torchdoctor.service.models import Installer, Platform, VariantSource


@pytest.fixture(scope="module")
def kn() -> Knowledge:
    return load_knowledge(Path("/nonexistent"))


REAL_VERSION_PY_2_14_1 = """from typing import Optional

__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip', 'rocm', 'xpu']
__version__ = '2.14.1+cu130'
debug = False
cuda: Optional[str] = '13.0'
git_version = '5c4886908584029761b579af026dcfb627c84070'
hip: Optional[str] = None
rocm: Optional[str] = None
xpu: Optional[str] = None
"""


def test_parse_version_py_reads_the_real_2_14_1_file_without_executing_it() -> None:
    fields = parse_version_py(REAL_VERSION_PY_2_14_1)
    assert fields["__version__"] == "2.14.1+cu130"
    assert fields["cuda"] == "13.0"
    assert fields["hip"] is None
    assert "debug" not in fields  # a bool, not a string


def test_parse_version_py_ignores_code_and_survives_garbage() -> None:
    assert parse_version_py("import os\nos.system('boom')\n__version__ = '1'\n") == {"__version__": "1"}
    assert parse_version_py("def (:\n") == {}


@pytest.mark.parametrize(
    ("spec", "platform", "variant", "cuda", "source"),
    [
        (
            StandIn("torch", "2.7.1+cu128", cuda="12.8"),
            Platform.LINUX,
            "cu128",
            "12.8",
            VariantSource.LOCAL_LABEL,
        ),
        (StandIn("torch", "2.5.1+cpu"), Platform.WINDOWS, "cpu", None, VariantSource.LOCAL_LABEL),
        (
            StandIn("torch", "2.6.0+rocm6.2.4", hip="6.2.41133"),
            Platform.LINUX,
            "rocm6.2.4",
            None,
            VariantSource.LOCAL_LABEL,
        ),
        (
            StandIn("torch", "2.8.0+xpu", xpu="20250101"),
            Platform.WINDOWS,
            "xpu",
            None,
            VariantSource.LOCAL_LABEL,
        ),
        # Unlabelled Windows/macOS wheels from PyPI are the CPU build.
        (
            StandIn("torch", "2.7.1", files={"torch/version.py": "__version__ = '2.7.1'\n"}),
            Platform.WINDOWS,
            "cpu",
            None,
            VariantSource.PYPI_DEFAULT,
        ),
        # Unlabelled Linux wheel whose version.py still names CUDA (as the real 2.14.1 does).
        (
            StandIn("torch", "2.14.1", files={"torch/version.py": REAL_VERSION_PY_2_14_1}),
            Platform.LINUX,
            "cu130",
            "13.0",
            VariantSource.LOCAL_LABEL,
        ),
    ],
)
def test_variant_is_read_from_the_strongest_evidence(
    tmp_path: Path,
    kn: Knowledge,
    spec: StandIn,
    platform: Platform,
    variant: str,
    cuda: str | None,
    source: VariantSource,
) -> None:
    env = site_packages_env(tmp_path, platform)
    unpack_standin(env, spec)
    reading = read_build(env, kn)
    assert reading is not None
    assert reading.build.variant == variant
    assert reading.build.cuda == cuda
    assert reading.build.variant_source is source
    assert reading.build.problems == ()


@pytest.mark.parametrize(("major", "variant"), [(12, "cu128"), (13, "cu130")])
def test_unlabelled_linux_wheel_is_read_from_its_nvidia_dependencies(
    tmp_path: Path, kn: Knowledge, major: int, variant: str
) -> None:
    # An old-style version.py without the cuda field: only Requires-Dist tells the CUDA major.
    version = "2.9.1" if major == 12 else "2.11.0"
    spec = StandIn(
        "torch",
        version,
        requires=cuda_requires(major),
        files={"torch/version.py": f"__version__ = '{version}'\n"},
    )
    env = site_packages_env(tmp_path)
    unpack_standin(env, spec)
    reading = read_build(env, kn)
    assert reading is not None
    assert (reading.build.variant, reading.build.variant_source) == (variant, VariantSource.REQUIRES_DIST)


def test_companions_and_their_torch_requirement_are_read(tmp_path: Path, kn: Knowledge) -> None:
    env = site_packages_env(tmp_path)
    unpack_standin(env, StandIn("torch", "2.13.0+cu130", cuda="13.0"))
    unpack_standin(env, StandIn("torchvision", "0.28.0+cu130", requires=["numpy", "torch (==2.13.0)"]))
    unpack_standin(env, StandIn("torchaudio", "2.11.0+cu130", requires=["torch>=2.11"]), installer="uv")
    reading = read_build(env, kn)
    assert reading is not None
    assert reading.build.torchvision == "0.28.0+cu130"
    assert reading.torchvision is not None and reading.torchvision.requires_torch == "==2.13.0"
    assert reading.torchaudio is not None and reading.torchaudio.requires_torch == ">=2.11"
    assert reading.build.installer is Installer.PIP


def test_no_torch_at_all_is_none(tmp_path: Path, kn: Knowledge) -> None:
    env = site_packages_env(tmp_path)
    unpack_standin(env, StandIn("torchvision", "0.22.1"))
    assert read_build(env, kn) is None


def test_torch_folder_without_metadata_is_unreadable(tmp_path: Path, kn: Knowledge) -> None:
    env = site_packages_env(tmp_path)
    unpack_standin(env, StandIn("torch", "2.7.1+cu128", cuda="12.8"))
    shutil.rmtree(env.site_packages[0] / "torch-2.7.1+cu128.dist-info")
    reading = read_build(env, kn)
    assert reading is not None
    assert any("interrupted" in p for p in reading.build.problems)


def test_metadata_without_the_package_folder_is_unreadable(tmp_path: Path, kn: Knowledge) -> None:
    env = site_packages_env(tmp_path)
    unpack_standin(env, StandIn("torch", "2.7.1+cu128", cuda="12.8"))
    shutil.rmtree(env.site_packages[0] / "torch")
    reading = read_build(env, kn)
    assert reading is not None
    assert any("package folder is missing" in p for p in reading.build.problems)


def test_files_of_two_installs_mixed_are_unreadable(tmp_path: Path, kn: Knowledge) -> None:
    env = site_packages_env(tmp_path)
    unpack_standin(env, StandIn("torch", "2.7.1+cu128", cuda="12.8"))
    (env.site_packages[0] / "torch" / "version.py").write_text("__version__ = '2.5.1+cu124'\ncuda = '12.4'\n")
    reading = read_build(env, kn)
    assert reading is not None
    assert any("does not match" in p for p in reading.build.problems)


def test_two_recorded_torch_versions_are_unreadable(tmp_path: Path, kn: Knowledge) -> None:
    env = site_packages_env(tmp_path)
    unpack_standin(env, StandIn("torch", "2.7.1+cu128", cuda="12.8"))
    shutil.copytree(
        env.site_packages[0] / "torch-2.7.1+cu128.dist-info", env.site_packages[0] / "torch-2.5.1.dist-info"
    )
    reading = read_build(env, kn)
    assert reading is not None
    assert any("several torch installations" in p for p in reading.build.problems)


def _conda_record(root: Path, build: str) -> None:
    meta = root / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    record = {
        "name": "pytorch",
        "version": "2.5.1",
        "build": build,
        "channel": "https://conda.anaconda.org/pytorch",
    }
    (meta / f"pytorch-2.5.1-{build}.json").write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("build", "variant"),
    [
        ("py3.12_cuda12.4_cudnn9.1.0_0", "cu124"),
        ("cuda126_generic_py312_h1234567_201", "cu126"),
        ("py3.12_cpu_0", "cpu"),
    ],
)
def test_conda_installed_torch_is_recognised(tmp_path: Path, kn: Knowledge, build: str, variant: str) -> None:
    env = site_packages_env(tmp_path)
    unpack_standin(env, StandIn("torch", "2.5.1", cuda=None), installer="conda")
    _conda_record(tmp_path, build)
    reading = read_build(env, kn)
    assert reading is not None
    assert reading.build.installer is Installer.CONDA
    assert reading.build.variant == variant


def test_pip_over_conda_reports_the_pip_files(tmp_path: Path, kn: Knowledge) -> None:
    env = site_packages_env(tmp_path)
    unpack_standin(env, StandIn("torch", "2.7.1+cu128", cuda="12.8"), installer="pip")
    _conda_record(tmp_path, "py3.12_cuda12.4_cudnn9.1.0_0")
    reading = read_build(env, kn)
    assert reading is not None
    assert (reading.build.installer, reading.build.variant) == (Installer.PIP, "cu128")


def test_an_invalid_torch_version_is_unreadable_not_a_crash(tmp_path: Path, kn: Knowledge) -> None:
    env = site_packages_env(tmp_path)
    unpack_standin(
        env,
        StandIn(
            "torch", "2.7.1", files={"torch/version.py": "__version__ = 'garbage+cu128'\ncuda = '12.8'\n"}
        ),
    )
    reading = read_build(env, kn)
    assert reading is not None
    assert any("not a valid version" in p for p in reading.build.problems)


@pytest.mark.parametrize(
    ("tag", "machine"),
    [
        ("cp311-cp311-manylinux_2_28_aarch64", "aarch64"),
        ("cp311-cp311-linux_x86_64", "x86_64"),
        ("cp312-cp312-win_amd64", "x86_64"),
        ("py3-none-any", None),  # a pure tag says nothing: the host's machine decides
    ],
)
def test_the_installed_wheels_machine_comes_from_its_wheel_tags(
    tmp_path: Path, tag: str, machine: str | None
) -> None:
    env = site_packages_env(tmp_path)
    unpack_standin(env, StandIn("torch", "2.9.0+cu126", cuda="12.6", tag=tag))
    reading = read_build(env, load_knowledge(Path("/nonexistent")))
    assert reading is not None and reading.machine == machine
