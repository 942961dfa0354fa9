"""The in-environment benchmark script keeps four significant digits of every figure: a tiny figure
(a stand-in GPU on a busy CPU) must not round to a misleading 0.0, a big one keeps its size."""

from __future__ import annotations

import importlib.util
from importlib import resources
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def bench_env() -> ModuleType:
    source = resources.files("torchdoctor.service.bench").joinpath("scripts/bench_env.py")
    with resources.as_file(source) as path:
        spec = importlib.util.spec_from_file_location("bench_env_under_test", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("value", "kept"),
    [(151.34567, 151.3), (3.212345e-05, 3.212e-05), (0.00004999, 4.999e-05), (1234567.0, 1235000.0)],
)
def test_figures_keep_four_significant_digits(bench_env: ModuleType, value: float, kept: float) -> None:
    report = bench_env._Report("cpu", False, None)
    report.figure("matmul_fp32_tflops", value)
    assert report.data["figures"]["matmul_fp32_tflops"] == kept
    assert report.data["figures"]["matmul_fp32_tflops"] > 0


def test_a_figure_that_is_not_finite_is_left_out(bench_env: ModuleType) -> None:
    report = bench_env._Report("cpu", False, None)
    report.figure("matmul_fp32_tflops", float("nan"))
    assert "matmul_fp32_tflops" not in report.data["figures"]
