"""The real CPU torch 2.13.0 wheel, read from disk without importing it and diagnosed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.hw import RTX_4090, hardware, no_gpu
from tests.support.realtorch import real_torch_python, venv_root  # noqa: F401 - fixture
from torchdoctor.service.envs.builds import read_build
from torchdoctor.service.envs.discover import environment_from_path
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.models import EnvStatus, Installer, VariantSource
from torchdoctor.service.rules.check import check_environment

pytestmark = pytest.mark.torch


def test_the_real_cpu_wheel_is_read_as_the_cpu_build(real_torch_python: Path) -> None:  # noqa: F811
    env = environment_from_path(venv_root())
    reading = read_build(env, load_knowledge(Path("/nonexistent")))
    assert reading is not None
    build = reading.build
    assert (build.version, build.variant, build.cuda) == ("2.13.0+cpu", "cpu", None)
    assert build.installer is Installer.PIP
    assert build.variant_source is VariantSource.LOCAL_LABEL
    assert build.problems == ()


def test_the_real_cpu_wheel_on_an_rtx_is_flagged_and_fine_without_a_gpu(real_torch_python: Path) -> None:  # noqa: F811
    env = environment_from_path(venv_root())
    kn = load_knowledge(Path("/nonexistent"))
    on_rtx = check_environment(env, hardware("572.16", "12.8", RTX_4090), kn)
    assert [f.code.value for f in on_rtx.findings] == ["cpu-build-with-gpu"]
    assert (
        "pip install torch==2.13.0+cu126 --index-url https://download.pytorch.org/whl/cu126"
        in on_rtx.findings[0].fix
    )
    assert check_environment(env, no_gpu(), kn).status is EnvStatus.OK
