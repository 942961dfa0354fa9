"""What a person is told when a tray job ends: pure words over the exit code, output and history."""

from __future__ import annotations

from pathlib import Path

from torchdoctor.agent.tray.jobs import JobRequest, figure_words, job_argv, outcome, progress_text
from torchdoctor.agent.tray.menu import JobKind
from torchdoctor.service.bench import history
from torchdoctor.service.bench.run import BenchResult

GPU_RESULT = BenchResult(
    device="cuda:0",
    device_name="NVIDIA GeForce RTX 4090",
    torch_version="2.7.1+cu128",
    passed=True,
    checks=(),
    figures={"matmul_fp32_tflops": 52.1, "matmul_fp16_tflops": 151.3, "matmul_fp16_tflops_of_peak": 0.917},
    seconds=4.2,
)
CPU_RESULT = BenchResult("cpu", None, "2.13.0+cpu", True, (), {"matmul_fp32_gflops": 97.4}, 3.0)


def test_the_headline_figure_prefers_fp16_and_says_the_share_of_peak() -> None:
    assert figure_words(GPU_RESULT) == "matmul fp16 151 TFLOP/s, 92 % of this GPU's peak"
    assert figure_words(CPU_RESULT) == "matmul fp32 97.4 GFLOP/s"
    bare = BenchResult("cuda:0", "GPU", "x", True, (), {}, 1.0)
    assert figure_words(bare) == "all checks passed on GPU"


def test_a_probed_reinstall_quotes_the_benchmark_the_fix_recorded(td_dirs: dict[str, Path]) -> None:
    env = "/w/proj/.venv"
    history.append(Path(env), GPU_RESULT)
    request = JobRequest(JobKind.REINSTALL, env, "torch 2.7.1+cu128")
    done = outcome(request, 0, "", ["[6] Running the sanity benchmark"], cancelled=False)
    assert done.ok and done.title == "torch 2.7.1+cu128 installed and verified"
    assert done.body == "proj/.venv: matmul fp16 151 TFLOP/s, 92 % of this GPU's peak"


def test_failures_quote_our_one_line_error_and_exit_3_is_never_softened() -> None:
    request = JobRequest(JobKind.REINSTALL, "/w/proj/.venv", "torch 2.7.1+cu128")
    lines = ["[1] Downloading torch", "torchdoctor: could not download torch-2.7.1 (hint: check the network)"]
    failed = outcome(request, 1, "", lines, cancelled=False)
    assert failed.title == "Reinstall failed; proj/.venv is unchanged"
    assert failed.body == "could not download torch-2.7.1 (hint: check the network)"
    lost = outcome(request, 3, "", ["torchdoctor: restore failed: disk full"], cancelled=True)
    assert lost.title == "Reinstall failed and proj/.venv could NOT be restored" and not lost.ok


def test_the_child_is_our_cli_with_the_trays_hardware_and_index() -> None:
    request = JobRequest(JobKind.REINSTALL, "/e", "torch x", Path("/hw.json"), "https://mirror.example/whl")
    assert job_argv(request, ["td"]) == [
        "td", "fix", "--env", "/e", "--yes", "--index-base", "https://mirror.example/whl",
        "--hardware", "/hw.json", "--no-bench", "--tray-child",
    ]  # fmt: skip
    probed = JobRequest(JobKind.REINSTALL, "/e", "torch x", None, "https://download.pytorch.org/whl")
    assert "--no-bench" not in job_argv(probed, ["td"])  # a real GPU: the fix ends with the benchmark
    bench = JobRequest(JobKind.BENCH, "/e", "torch x")
    assert job_argv(bench, ["td"]) == ["td", "bench", "--env", "/e", "--json", "--tray-child"]


def test_progress_lines_are_the_fix_steps_downloads_and_bench_stages() -> None:
    assert progress_text("[3] Installing with uv") == "Installing with uv"
    assert (
        progress_text("    downloaded 40% of 2.4 GB (torch-2.7.1.whl)")
        == "downloaded 40% of 2.4 GB (torch-2.7.1.whl)"
    )
    assert progress_text("  [  1.2 s] timing fp32 matmul on the CPU") == "timing fp32 matmul on the CPU"
    assert progress_text("  installer: uv (found on PATH)") is None
