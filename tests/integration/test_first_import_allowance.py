"""A slow first `import torch` (Windows Defender scanning a fresh install's DLLs: 15-30 s) has its own
allowance, apart from the time the work after it gets, in fix's verification and in the benchmark.

Real venvs with stand-in torch builds whose import sleeps (tests/support/standin.py), run by the real
verification and benchmark code with small budgets: the import sleeps longer than the work's budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.envs import install_standins, make_venv
from tests.support.standin import StandIn
from tests.support.windows import windows_only
from torchdoctor.service.bench.run import FIRST_IMPORT_TIMEOUT_S, run_bench, staged_limit
from torchdoctor.service.install.verify import verify_build
from torchdoctor.service.models import PythonEnv

pytestmark = pytest.mark.slow

SLOW_IMPORT_S = 4  # longer than every work budget below
CPU_TORCH = "from torch.version import __version__\nfrom torch import version\n"


def env_with_torch(tmp_path: Path, init: str) -> PythonEnv:
    env = make_venv(tmp_path / "env")
    install_standins(env, [StandIn("torch", "2.7.1+cpu", files={"torch/__init__.py": init})])
    return env


def slow_import(seconds: float = SLOW_IMPORT_S) -> str:
    return f"import time\ntime.sleep({seconds})\n" + CPU_TORCH


def test_the_limit_is_the_import_allowance_then_the_timeout_from_the_import() -> None:
    assert staged_limit(100.0, None, import_timeout=60, timeout=5) == 60
    assert staged_limit(100.0, 125.0, import_timeout=60, timeout=5) == 30  # 25 s importing, then 5
    assert FIRST_IMPORT_TIMEOUT_S >= 60  # Defender's 15-30 s with room to spare


def test_a_slow_first_import_still_verifies(tmp_path: Path) -> None:
    env = env_with_torch(tmp_path, slow_import())
    result = verify_build(
        env, expected_version="2.7.1+cpu", expected_cuda=None, check_gpus=False, timeout=2, import_timeout=60
    )
    assert result.ok, result.problems


def test_an_import_past_its_allowance_fails_naming_the_import(tmp_path: Path) -> None:
    env = env_with_torch(tmp_path, slow_import(60))
    result = verify_build(
        env, expected_version="2.7.1+cpu", expected_cuda=None, check_gpus=False, timeout=60, import_timeout=2
    )
    assert not result.ok
    assert result.problems == ("importing torch did not finish within 2 s",)


def test_work_after_the_import_has_its_own_timeout(tmp_path: Path) -> None:
    # Imports at once, then hangs in the GPU check: the work's timeout, not the import's, ends it.
    init = CPU_TORCH + (
        "class _Cuda:\n"
        "    @staticmethod\n"
        "    def is_available():\n"
        "        import time\n"
        "        time.sleep(60)\n"
        "cuda = _Cuda()\n"
    )
    env = env_with_torch(tmp_path, init)
    result = verify_build(
        env, expected_version="2.7.1+cpu", expected_cuda=None, check_gpus=True, timeout=2, import_timeout=60
    )
    assert result.problems == ("the check did not finish within 2 s after importing torch",)


def test_the_benchmark_does_not_count_a_slow_import_against_its_timeout(tmp_path: Path) -> None:
    env = env_with_torch(tmp_path, slow_import())
    result = run_bench(env.python, device="cpu", expect_gpu=False, timeout=2, import_timeout=60)
    # The stand-in cannot compute, so the benchmark fails, but on its checks, not on time.
    assert result.reason is not None and "did not finish" not in result.reason
    (imported,) = [c for c in result.checks if c.name == "torch-import"]
    assert imported.passed


def test_the_benchmark_names_the_import_when_it_outlives_its_allowance(tmp_path: Path) -> None:
    env = env_with_torch(tmp_path, slow_import(60))
    result = run_bench(env.python, device="cpu", expect_gpu=False, timeout=60, import_timeout=2)
    assert result.reason == "the benchmark did not finish within 2 s (it was importing torch)"


@windows_only
def test_a_real_first_import_on_windows_is_timed_apart(tmp_path: Path) -> None:
    env = env_with_torch(tmp_path, slow_import(1))
    result = verify_build(env, expected_version="2.7.1+cpu", expected_cuda=None, check_gpus=False, timeout=1)
    assert result.ok, result.problems
