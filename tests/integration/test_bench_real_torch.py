"""The benchmark for real: the real CPU torch 2.13.0 in a cached venv, the real script, the real CLI.

The full CPU benchmark runs twice in this module: once as the bare script (its stdout contract)
and once through `torchdoctor bench` (the CLI, the hardware probe's answer, the history).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest

from tests.support import realtorch
from torchdoctor.agent.cli import main
from torchdoctor.service import proc
from torchdoctor.service.bench import history as bench_history
from torchdoctor.service.bench.run import bench_from_json, load_peaks, matmul_tolerance, parse_report, verdict

pytestmark = [pytest.mark.torch, pytest.mark.slow]

DESIGN_KEYS = {"device", "device_name", "torch_version", "passed", "checks", "figures", "seconds"}


@pytest.fixture(scope="session")
def torch_python() -> Path:
    return realtorch.ensure_real_torch()


@dataclass(frozen=True)
class ScriptRun:
    completed: proc.Completed
    seconds: float


@pytest.fixture(scope="module")
def script_run(torch_python: Path) -> ScriptRun:
    """bench_env.py --device cpu, started the way run_bench starts it."""
    source = resources.files("torchdoctor.service.bench").joinpath("scripts/bench_env.py")
    with resources.as_file(source) as script:
        started = time.monotonic()
        completed = proc.run([torch_python, "-I", script, "--device", "cpu"], timeout=120)
    return ScriptRun(completed, time.monotonic() - started)


@dataclass(frozen=True)
class CliRun:
    rc: int
    stdout: str
    stderr: str
    state_dir: Path
    env_root: Path


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def cli_run(torch_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliRun]:
    """`torchdoctor bench --env ROOT --json` with --device auto on a machine the hardware file
    says has no NVIDIA GPU: the CPU path. Module-scoped, so it sets its own state folder (the
    suite's per-test isolation is set up after module fixtures)."""
    base = tmp_path_factory.mktemp("bench-cli")
    hw = base / "hardware.json"
    hw.write_text(json.dumps({"platform": "linux", "gpus": []}))
    env_root = torch_python.parent.parent
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCHDOCTOR_STATE_DIR", str(base / "state"))
        mp.setenv("TORCHDOCTOR_HARDWARE", str(hw))
        rc, out, err = _cli(["bench", "--env", str(env_root), "--json"])
    yield CliRun(rc, out, err, base / "state", env_root)


# --- the script itself -----------------------------------------------------------------------------


def test_script_prints_exactly_one_json_object(script_run: ScriptRun) -> None:
    out = script_run.completed.stdout
    assert script_run.completed.returncode == 0
    assert out.endswith("\n") and out.count("\n") == 1  # one line: the report and nothing else
    report = json.loads(out)
    assert report == parse_report(out)
    assert report["torch"]["version"] == f"{realtorch.TORCH_VERSION}+cpu"
    assert report["device"] == "cpu" and report["error"] is None


def test_real_cpu_torch_computes_within_tolerance(script_run: ScriptRun) -> None:
    report = json.loads(script_run.completed.stdout)
    for s in report["steps"]:
        if s["name"].startswith("matmul-"):
            # well inside the tolerance, and the tolerance well below a garbage answer
            assert s["finite"] and s["max_err"] < matmul_tolerance(s["dtype"], s["k"]) / 4
            assert matmul_tolerance(s["dtype"], s["k"]) < s["null_err"] / 10
    result = verdict(report, seconds=script_run.seconds, peaks=load_peaks())
    assert result.passed, result.reason
    assert {c.name for c in result.checks} == {
        "torch-import",
        "matmul-fp32",
        "matmul-fp16",
        "matmul-bf16",
        "conv2d",
    }
    assert result.figures["matmul_fp32_gflops"] > 1.0


def test_cpu_bench_takes_seconds(script_run: ScriptRun) -> None:
    assert script_run.seconds < 20, f"the CPU benchmark took {script_run.seconds:.1f} s"


# --- through the CLI -------------------------------------------------------------------------------


def test_cli_json_follows_design(cli_run: CliRun) -> None:
    assert cli_run.rc == 0, cli_run.stderr
    data = json.loads(cli_run.stdout)
    assert data.keys() >= DESIGN_KEYS
    assert data["passed"] is True and data["device"] == "cpu" and data["reason"] is None
    assert data["torch_version"] == f"{realtorch.TORCH_VERSION}+cpu"
    assert [c["name"] for c in data["checks"]] == [
        "torch-import",
        "matmul-fp32",
        "matmul-fp16",
        "matmul-bf16",
        "conv2d",
    ]
    assert data["figures"]["matmul_fp32_gflops"] > 1.0
    # auto on a machine without an NVIDIA GPU: the CUDA check is skipped, not failed
    assert any(s["name"] == "cuda-available" for s in data["skipped"])


def test_cli_reports_progress_on_stderr(cli_run: CliRun) -> None:
    lines = cli_run.stderr.splitlines()
    stages = [line.split("] ", 1)[1] for line in lines if "] " in line]
    assert stages[0].startswith("benchmarking ")
    assert stages[1] == "importing torch"
    assert "checking matmul bf16 against a float64 CPU reference" in stages
    assert "timing fp32 matmul on the CPU" in stages


def test_cli_appends_to_the_history(cli_run: CliRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHDOCTOR_STATE_DIR", str(cli_run.state_dir))
    record = bench_history.last_result(cli_run.env_root)
    assert record is not None
    assert record.result == bench_from_json(json.loads(cli_run.stdout))
    assert record.python == cli_run.env_root / "bin" / "python"


def test_cli_with_a_gpu_expected_fails_on_the_cpu_build(
    torch_python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--device auto on a machine with an NVIDIA GPU: a CPU torch is a failure, with the fix."""
    hw = tmp_path / "hardware.json"
    hw.write_text(json.dumps({"gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}]}))
    monkeypatch.setenv("TORCHDOCTOR_HARDWARE", str(hw))
    rc = main(["bench", "--env", str(torch_python), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert data["reason"].startswith("CUDA is not available: this torch is a CPU-only build")
    assert [h["code"] for h in data["hints"]] == ["cpu-build"]
    assert data["device"] == "cuda:0" and data["figures"] == {}


# --- the GPU path's logic, driven on the CPU --------------------------------------------------------

# No GPU is lent to every session, so the script's GPU path also runs here with a stand-in
# `torch.cuda` (events timed by perf_counter, fixed properties) over the real CPU torch, and small
# sizes: this proves the path's own logic (sizes, timing, the steps it reports, the verdict on
# them), not CUDA. benchmarks/gpu_device_check.sh proves the rest on a real GPU.
FAKE_GPU_DRIVER = """
import importlib.util, json, sys, time, types
import torch

spec = importlib.util.spec_from_file_location("bench_env", sys.argv[1])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
bench.GPU_CHECK_SIZE = (96, 128, 96)
bench.GPU_MATMUL_SIZES = (32, 64, 128)


class Event:
    def __init__(self, enable_timing=False):
        self.t = None

    def record(self):
        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return (end.t - self.t) * 1000.0


props = types.SimpleNamespace(name="Fake GPU", total_memory=1 << 30, multi_processor_count=4)
fake_cuda = types.SimpleNamespace(
    Event=Event,
    synchronize=lambda *a: None,
    empty_cache=lambda: None,
    mem_get_info=lambda *a: (64 << 20, 1 << 30),
    memory_reserved=lambda *a: 0,
    get_device_properties=lambda d: props,
    get_device_capability=lambda d: (9, 0),
    get_arch_list=lambda: ["sm_80", "sm_90"],
    current_device=lambda: 0,
)


class Torch:
    cuda = fake_cuda

    def __getattr__(self, name):
        return getattr(torch, name)

    def empty(self, *args, **kwargs):
        kwargs.pop("pin_memory", None)  # pinned memory needs a real GPU
        return torch.empty(*args, **kwargs)


report = bench._Report("cuda", True, None)
bench.run_cuda(Torch(), report, device="cpu")
print(json.dumps(bench._clean(report.data)))
"""


def test_gpu_path_logic_with_a_stand_in_cuda(torch_python: Path) -> None:
    source = resources.files("torchdoctor.service.bench").joinpath("scripts/bench_env.py")
    with resources.as_file(source) as script:
        completed = proc.run([torch_python, "-I", "-c", FAKE_GPU_DRIVER, script], timeout=120)
    assert completed.ok, completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    assert report["error"] is None
    assert [s["name"] for s in report["steps"]] == [
        "device",
        "arch-supported",
        "matmul-fp32",
        "matmul-tf32",
        "matmul-fp16",
        "matmul-bf16",
        "conv2d",
        "memory-alloc",
        "host-device-copy",
    ]
    assert step_named(report, "matmul-bf16")["k"] == 128
    assert step_named(report, "memory-alloc")["bytes"] == int((64 << 20) * 0.7) >> 20 << 20
    assert set(report["figures"]) == {
        "matmul_fp32_tflops",
        "matmul_tf32_tflops",
        "matmul_fp16_tflops",
        "matmul_bf16_tflops",
        "h2d_pinned_gbps",
        "d2h_pinned_gbps",
        "device_memory_gbps",
    }
    assert all(v > 0 for v in report["figures"].values())
    sizes = {f"{n} x {n} x {n}" for n in (32, 64, 128)}  # which one depends on this CPU's speed
    assert all(
        report["figure_notes"][f"matmul_{d}_tflops"] in sizes for d in ("fp32", "tf32", "fp16", "bf16")
    )
    assert [s["name"] for s in report["skipped"]] == ["torch-compile"]  # no Triton in the CPU wheel
    result = verdict(report, seconds=1.0, peaks=load_peaks())
    assert result.passed, result.reason
    assert result.device_name == "Fake GPU"
    assert "runs sm_90 kernels" in next(c.detail for c in result.checks if c.name == "arch-supported")


def step_named(report: dict[str, object], name: str) -> dict[str, object]:
    steps = report["steps"]
    assert isinstance(steps, list)
    found: dict[str, object] = next(s for s in steps if s["name"] == name)
    return found
