"""The benchmark's failure paths, each for real: real venvs holding stand-in torch builds that fail
the way real ones do (tests/support/standin.py), a real Python 3.8, and overlays of the real CPU
torch with a broken torchvision or a deliberately wrong fp16 matmul."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.support.envs import install_standins, make_venv
from tests.support.realtorch import overlay_venv
from tests.support.standin import StandIn
from torchdoctor.agent.cli import main
from torchdoctor.service.bench import history as bench_history
from torchdoctor.service.bench.run import BenchResult, run_bench
from torchdoctor.service.errors import BadInputError, NotAnEnvironmentError
from torchdoctor.service.models import PythonEnv

pytestmark = pytest.mark.slow

WINERROR_126 = (
    "[WinError 126] The specified module could not be found. Error loading "
    '"C:\\Users\\ana\\proj\\.venv\\Lib\\site-packages\\torch\\lib\\fbgemm.dll" or one of its dependencies.'
)
UNDEFINED_SYMBOL = (
    "/venv/lib/python3.12/site-packages/torch/lib/libtorch_cuda.so: undefined symbol: ncclCommRegister"
)
DRIVER_TOO_OLD = (
    "CUDA initialization: The NVIDIA driver on your system is too old (found version 12020). Please "
    "update your GPU driver by downloading and installing a new version from the URL: "
    "http://www.nvidia.com/Download/index.aspx"
)


def torch_with(
    init: str, *, version: str = "2.7.1+cu128", cuda: str | None = "12.8", cuda_module: str | None = None
) -> StandIn:
    """A stand-in torch whose `torch/__init__.py` is `init`, with `cuda_module` as torch/cuda."""
    files = {"torch/__init__.py": init}
    if cuda_module is not None:
        files["torch/cuda/__init__.py"] = cuda_module
    return StandIn("torch", version, cuda=cuda, files=files)


def fake_cuda(*, warn: str | None = None) -> str:
    """torch/cuda/__init__.py of a build that finds no usable GPU, optionally warning as torch does."""
    lines = ["import warnings", "def is_available():"]
    if warn:
        lines.append(f"    warnings.warn({warn!r}, UserWarning)")
    lines += ["    return False", "def device_count():", "    return 0", ""]
    return "\n".join(lines)


WITH_CUDA = "from torch.version import __version__\nfrom torch import version, cuda\n"


def env_with(tmp_path: Path, *specs: StandIn, python: str | None = None) -> PythonEnv:
    env = make_venv(tmp_path / "env", python=python)
    install_standins(env, specs)
    return env


def python38() -> str:
    found = sorted((Path.home() / ".pyenv" / "versions").glob("3.8.*/bin/python"))
    if not found:
        pytest.skip("no Python 3.8 interpreter on this machine")
    return str(found[-1])


def codes(result: BenchResult) -> list[str]:
    return [h.code for h in result.hints]


# --- torch missing or not importable ----------------------------------------------------------------


def test_no_torch(tmp_path: Path) -> None:
    env = make_venv(tmp_path / "env")
    seen: list[str] = []
    result = run_bench(env.python, expect_gpu=False, progress=seen.append)
    assert not result.passed
    assert result.reason == "torch is not installed in this environment"
    assert codes(result) == ["no-torch"]
    assert result.torch_version is None and result.figures == {}
    assert seen[0] == "importing torch" and seen[-1] == "done"


def test_a_torch_folder_without_init_is_not_torch(tmp_path: Path) -> None:
    env = make_venv(tmp_path / "env")
    (env.site_packages[0] / "torch" / "lib").mkdir(parents=True)  # a half-deleted install
    result = run_bench(env.python, expect_gpu=False)
    assert not result.passed
    (check,) = [c for c in result.checks if c.name == "torch-import"]
    assert not check.passed and "empty folder" in check.detail


def test_windows_dll_failure_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init = f"raise OSError({WINERROR_126!r})\n"
    env = env_with(tmp_path, torch_with(init, version="2.5.1+cu124", cuda="12.4"))
    rc = main(["bench", "--env", str(env.root), "--json", "--device", "cuda"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert data["reason"] == f"import torch failed: OSError: {WINERROR_126}"
    assert [h["code"] for h in data["hints"]] == ["vc-redist"]
    assert "Visual C++" in data["hints"][0]["message"]


def test_undefined_symbol_through_the_cli_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # the message is the point here, not the wrapping
    env = env_with(tmp_path, StandIn("torch", "2.7.1+cu128", cuda="12.8", import_error=UNDEFINED_SYMBOL))
    rc = main(["bench", "--env", str(env.root), "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "FAILED" in captured.out
    assert f"why: import torch failed: ImportError: {UNDEFINED_SYMBOL}" in captured.out
    assert "hint: torch's native libraries do not match" in captured.out
    assert "importing torch" in captured.err  # progress goes to stderr, the table to stdout
    record = bench_history.last_result(env.root)
    assert record is not None and not record.result.passed


# --- CUDA unavailable where a GPU is expected --------------------------------------------------------


def test_driver_too_old(tmp_path: Path) -> None:
    spec = torch_with(
        WITH_CUDA, version="2.11.0+cu130", cuda="13.0", cuda_module=fake_cuda(warn=DRIVER_TOO_OLD)
    )
    env = env_with(tmp_path, spec)
    result = run_bench(env.python, device="auto", expect_gpu=True)
    assert not result.passed and result.device == "cuda:0"
    assert result.reason is not None
    assert result.reason.startswith(
        "CUDA is not available: torch.cuda.is_available() is False (built with CUDA 13.0)"
    )
    assert "found version 12020" in result.reason
    assert codes(result) == ["driver-too-old"]


def test_no_gpu_expected_and_none_found_is_not_a_cuda_failure(tmp_path: Path) -> None:
    """auto on a machine without a GPU: a CUDA build that finds none is not the failure; here the
    stand-in has no tensors, so the CPU checks are what fail."""
    env = env_with(tmp_path, torch_with(WITH_CUDA, cuda_module=fake_cuda()))
    result = run_bench(env.python, device="auto", expect_gpu=False)
    assert "cuda-available" in [s.name for s in result.skipped]
    assert "cuda-available" not in [c.name for c in result.checks]
    assert result.device == "cpu" and not result.passed
    assert result.reason is not None and result.reason.startswith("matmul-fp32 failed: AttributeError")


def test_the_script_runs_on_python_38(tmp_path: Path) -> None:
    env = env_with(tmp_path, torch_with(WITH_CUDA, cuda_module=fake_cuda()), python=python38())
    result = run_bench(env.python, device="cuda", expect_gpu=True)
    assert result.reason == "CUDA is not available: torch.cuda.is_available() is False (built with CUDA 12.8)"
    assert result.torch_version == "2.7.1+cu128"


def test_no_torch_on_python_38(tmp_path: Path) -> None:
    env = make_venv(tmp_path / "env", python=python38())
    result = run_bench(env.python, device="auto", expect_gpu=False)
    assert result.reason == "torch is not installed in this environment"


def test_python_2_is_told_it_is_too_old() -> None:
    found = sorted((Path.home() / ".pyenv" / "versions").glob("2.7.*/bin/python"))
    if not found:
        pytest.skip("no Python 2.7 interpreter on this machine")
    result = run_bench(found[-1], device="cpu", expect_gpu=False)
    assert result.reason == "this Python cannot run the benchmark script (it needs Python 3.8 or newer)"
    assert codes(result) == ["python-too-old"]


# --- the process misbehaves --------------------------------------------------------------------------


def test_stray_output_on_stdout_does_not_hide_the_report(tmp_path: Path) -> None:
    init = (
        "import os\n"
        "print('hello from a chatty torch')\n"
        "os.write(1, b'raw bytes on file descriptor 1\\n')\n"
        "raise ImportError('broken on purpose')\n"
    )
    env = env_with(tmp_path, torch_with(init))
    result = run_bench(env.python, device="cpu", expect_gpu=False)
    assert result.reason == "import torch failed: ImportError: broken on purpose"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(("signal_name", "hint_code"), [("SIGSEGV", None), ("SIGILL", "cpu-instructions")])
def test_a_crash_is_a_failure_with_a_reason(tmp_path: Path, signal_name: str, hint_code: str | None) -> None:
    init = f"import os, signal\nos.kill(os.getpid(), signal.{signal_name})\n"
    env = env_with(tmp_path, torch_with(init))
    result = run_bench(env.python, device="cpu", expect_gpu=False)
    assert not result.passed
    assert result.reason == f"the benchmark process crashed ({signal_name}) before reporting"
    assert codes(result) == ([hint_code] if hint_code else [])


def test_a_hang_times_out_naming_the_stage(tmp_path: Path) -> None:
    env = env_with(tmp_path, torch_with("import time\ntime.sleep(120)\n"))
    started = time.monotonic()
    result = run_bench(env.python, device="cpu", expect_gpu=False, timeout=3, import_timeout=3)
    assert time.monotonic() - started < 30
    assert result.reason == "the benchmark did not finish within 3 s (it was importing torch)"
    assert codes(result) == ["timeout"]


# --- bad input ----------------------------------------------------------------------------------------


def test_run_bench_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(NotAnEnvironmentError):
        run_bench(tmp_path / "nope" / "python", expect_gpu=False)
    with pytest.raises(BadInputError, match="unknown device"):
        run_bench(Path(sys.executable), device="gpu", expect_gpu=False)
    with pytest.raises(BadInputError, match="positive"):
        run_bench(Path(sys.executable), expect_gpu=False, timeout=0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "/nonexistent/env"], "is not a Python environment"),
        (["--env", ".", "--device", "gpu"], "invalid choice"),
        (["--env", ".", "--timeout", "0"], "--timeout must be a positive number"),
        (["--device", "cpu"], "required: --env"),
    ],
)
def test_cli_bad_input_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        rc = main(["bench", *argv])
    except SystemExit as exc:  # argparse's usage errors
        rc = int(exc.code or 0)
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err


# --- the real torch, broken around it ------------------------------------------------------------------

FP16_DROPS_TERMS = """\
import torch

_matmul = torch.matmul


def matmul(a, b, *args, **kwargs):
    # A kernel bug: fp16 products leave out the last 16 terms of each dot product.
    if a.dtype == torch.float16 and a.dim() == 2 and a.shape[1] > 16:
        return _matmul(a[:, :-16], b[:-16, :], *args, **kwargs)
    return _matmul(a, b, *args, **kwargs)


torch.matmul = matmul
"""


@pytest.mark.torch
def test_wrong_fp16_results_are_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    python = overlay_venv(
        tmp_path / "faulty", files={"td_fault.py": FP16_DROPS_TERMS, "td_zz_fault.pth": "import td_fault\n"}
    )
    rc = main(["bench", "--env", str(python), "--json", "--device", "cpu"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 1
    failed = [c["name"] for c in data["checks"] if not c["passed"]]
    assert failed == ["matmul-fp16"]
    assert data["reason"].startswith("matmul-fp16 gave wrong results")
    assert [h["code"] for h in data["hints"]] == ["wrong-results"]


@pytest.mark.torch
def test_broken_torchvision_beside_a_working_torch(tmp_path: Path) -> None:
    tv = "raise RuntimeError('operator torchvision::nms does not exist')\n"
    python = overlay_venv(tmp_path / "tv", files={"torchvision/__init__.py": tv})
    result = run_bench(python, device="cpu", expect_gpu=False)
    assert [c.name for c in result.checks if not c.passed] == ["torchvision-import"]
    assert result.reason == "torchvision is broken: RuntimeError: operator torchvision::nms does not exist"
    assert codes(result) == ["torchvision-mismatch"]
