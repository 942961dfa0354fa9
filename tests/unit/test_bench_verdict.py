"""The benchmark's verdict, tolerances, hints, peak table and history, on recorded and emulated results.

Recorded results live in tests/fixtures/bench/: `*-real.json` were recorded on this machine with
the real torch, `*-standin.json` / `*-realtorch.json` by running the script against stand-in
builds, `*-synthetic.json` follow the script's shape with made-up numbers (GPU runs, until a real
GPU result replaces them). Each file says which in its `_fixture` key.
"""

from __future__ import annotations

import copy
import json
import math
import random
import struct
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from torchdoctor.agent.commands.bench import figure_rows, render
from torchdoctor.service.bench import history as bench_history
from torchdoctor.service.bench.run import (
    HINTS,
    BenchCheck,
    BenchResult,
    arch_support,
    bench_from_json,
    bench_to_json,
    conv_tolerance,
    failure_result,
    hint,
    hints_for,
    load_peaks,
    match_peak,
    matmul_tolerance,
    parse_peaks,
    parse_report,
    verdict,
)
from torchdoctor.service.errors import KnowledgeError
from torchdoctor.service.models import ComputeCapability

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bench"
PEAKS_FILE = Path(__file__).resolve().parents[2] / "service" / "facts" / "data" / "gpu_peaks.json"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def judge(raw: dict[str, Any]) -> BenchResult:
    return verdict(raw, seconds=1.0, peaks=load_peaks())


def step(raw: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in raw["steps"] if s["name"] == name)
    return found


def check(result: BenchResult, name: str) -> BenchCheck:
    return next(c for c in result.checks if c.name == name)


def hint_codes(result: BenchResult) -> list[str]:
    return [h.code for h in result.hints]


# --- tolerances, checked against emulated low-precision arithmetic ----------------------------------


def _fp32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def _fp16(x: float) -> float:
    return float(struct.unpack("<e", struct.pack("<e", x))[0])


def _bf16(x: float) -> float:
    """Round to nearest even, as torch's float32 -> bfloat16 conversion does."""
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return float(struct.unpack("<f", struct.pack("<I", bits))[0])


def _tf32(x: float) -> float:
    """Keep 10 mantissa bits by truncation, the worst a tensor core may do."""
    bits = struct.unpack("<I", struct.pack("<f", x))[0] & 0xFFFFE000
    return float(struct.unpack("<f", struct.pack("<I", bits))[0])


ROUND: dict[str, Callable[[float], float]] = {"fp32": _fp32, "tf32": _fp32, "fp16": _fp16, "bf16": _bf16}


def emulated_error(
    dtype: str, *, k: int = 512, splits: int = 1, drop_tail: int = 0, product: str | None = None
) -> tuple[float, float]:
    """(e, null_err) of an 8 x k x 8 matmul done the way a device does it: inputs in `dtype`,
    products rounded per `product` (tf32: truncated inputs), fp32 sums over `splits` slices of k
    whose partial results are rounded to `dtype` (reduced-precision split-K), the output rounded to
    `dtype`. `drop_tail` leaves out the last terms: a kernel bug."""
    rng = random.Random(42)
    rnd = ROUND[dtype]
    a = [[rnd(rng.uniform(-1, 1)) for _ in range(k)] for _ in range(8)]
    b = [[rnd(rng.uniform(-1, 1)) for _ in range(8)] for _ in range(k)]
    cut = _tf32 if product == "tf32" else (lambda x: x)
    err = null = 0.0
    chunk = k // splits
    for i in range(8):
        for j in range(8):
            total = 0.0
            for s in range(splits):
                part = 0.0
                for t in range(s * chunk, min((s + 1) * chunk, k - drop_tail)):
                    part = _fp32(part + _fp32(cut(a[i][t]) * cut(b[t][j])))
                total = _fp32(total + (rnd(part) if splits > 1 else part))
            got = rnd(total)
            ref = math.fsum(a[i][t] * b[t][j] for t in range(k))
            bound = math.fsum(abs(a[i][t] * b[t][j]) for t in range(k))
            err = max(err, abs(got - ref) / bound)
            null = max(null, abs(ref) / bound)
    return err, null


def raw_with(step_data: dict[str, Any]) -> dict[str, Any]:
    raw = load("cpu-torch-2.13.0-real.json")
    raw["steps"] = [step(raw, "torch-import"), step_data]
    return raw


def matmul_step(dtype: str, err: float, null: float, *, k: int = 512) -> dict[str, Any]:
    return {
        "name": f"matmul-{dtype}",
        "ok": True,
        "max_err": err,
        "null_err": null,
        "finite": True,
        "dtype": dtype,
        "m": 8,
        "k": k,
        "n": 8,
    }


def test_tolerances_have_the_documented_values() -> None:
    assert matmul_tolerance("fp32", 1024) == 2.0**-17
    assert matmul_tolerance("fp32", 256) == 2.0**-18  # grows with sqrt(k)
    assert matmul_tolerance("tf32", 1024) == matmul_tolerance("tf32", 16) == 2.0**-8
    assert matmul_tolerance("fp16", 1024) == 2.0**-9
    assert matmul_tolerance("bf16", 1024) == 2.0**-6
    assert conv_tolerance(tf32=False) == 2.0**-14
    assert conv_tolerance(tf32=True) == 2.0**-7
    with pytest.raises(ValueError, match="fp8"):
        matmul_tolerance("fp8", 1024)


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("splits", [1, 4])
def test_correct_low_precision_arithmetic_passes(dtype: str, splits: int) -> None:
    err, null = emulated_error(dtype, splits=splits)
    result = judge(raw_with(matmul_step(dtype, err, null)))
    assert result.passed, check(result, f"matmul-{dtype}").detail
    # ... and the tolerance sits far below what a zero answer scores: garbage cannot pass.
    assert matmul_tolerance(dtype, 512) < null / 10


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_a_kernel_that_drops_terms_fails(dtype: str) -> None:
    err, null = emulated_error(dtype, drop_tail=16)
    result = judge(raw_with(matmul_step(dtype, err, null)))
    assert not result.passed
    assert f"max error {err:.2g} > tolerance" in check(result, f"matmul-{dtype}").detail
    assert result.reason is not None and result.reason.startswith(f"matmul-{dtype} gave wrong results")
    assert "wrong-results" in hint_codes(result)


def test_tf32_passes_as_tf32_but_fails_as_fp32() -> None:
    """Truncated TF32 inputs are fine for a tf32 check and caught when fp32 was asked for."""
    err, null = emulated_error("fp32", product="tf32")
    assert judge(raw_with(matmul_step("tf32", err, null))).passed
    as_fp32 = matmul_step("fp32", err, null)
    as_fp32["tf32_override"] = "1"
    result = judge(raw_with(as_fp32))
    assert not result.passed
    assert hint_codes(result)[:2] == ["tf32-override", "wrong-results"]


def test_the_boundary_is_inclusive() -> None:
    tol = matmul_tolerance("bf16", 512)
    assert judge(raw_with(matmul_step("bf16", tol, 0.25))).passed
    assert not judge(raw_with(matmul_step("bf16", math.nextafter(tol, 1.0), 0.25))).passed


# --- the recorded real CPU run ---------------------------------------------------------------------


def test_recorded_cpu_run_passes_with_its_figures() -> None:
    raw = load("cpu-torch-2.13.0-real.json")
    result = judge(raw)
    assert result.passed and result.reason is None and result.hints == ()
    assert [c.name for c in result.checks] == [
        "torch-import",
        "matmul-fp32",
        "matmul-fp16",
        "matmul-bf16",
        "conv2d",
    ]
    assert result.device == "cpu" and result.torch_version == "2.13.0+cpu"
    assert result.figures["matmul_fp32_gflops"] == raw["figures"]["matmul_fp32_gflops"]
    assert result.peak is None and not any(k.endswith("_of_peak") for k in result.figures)
    for name in ("matmul-fp32", "matmul-fp16", "matmul-bf16"):
        s = step(raw, name)
        assert s["max_err"] < matmul_tolerance(s["dtype"], s["k"]) < s["null_err"] / 10


@pytest.mark.parametrize("name", ["matmul-fp32", "matmul-fp16", "matmul-bf16", "conv2d"])
def test_recorded_cpu_run_with_one_error_above_tolerance_fails(name: str) -> None:
    raw = load("cpu-torch-2.13.0-real.json")
    s = step(raw, name)
    tol = matmul_tolerance(s["dtype"], s["k"]) if name.startswith("matmul") else conv_tolerance(tf32=False)
    s["max_err"] = tol * 1.5
    result = judge(raw)
    assert not result.passed
    assert [c.name for c in result.checks if not c.passed] == [name]
    assert result.reason is not None and name in result.reason


def test_non_finite_results_fail() -> None:
    raw = load("cpu-torch-2.13.0-real.json")
    s = step(raw, "matmul-fp16")
    s.update(max_err=None, finite=False, ok=False)
    result = judge(raw)
    assert not result.passed and "NaN or infinity" in check(result, "matmul-fp16").detail


def test_a_step_that_raised_fails_with_its_error() -> None:
    raw = load("cpu-torch-2.13.0-real.json")
    s = step(raw, "conv2d")
    s["error"] = {"type": "RuntimeError", "message": "CUDA error: out of memory", "module": None}
    result = judge(raw)
    assert check(result, "conv2d").detail == "RuntimeError: CUDA error: out of memory"
    assert "out-of-memory" in hint_codes(result)


def test_a_report_without_any_computation_is_not_a_pass() -> None:
    raw = load("cpu-torch-2.13.0-real.json")
    raw["steps"] = [step(raw, "torch-import")]
    result = judge(raw)
    assert not result.passed and result.reason == "no computation was checked"


def test_a_script_crash_midway_fails() -> None:
    raw = load("cpu-torch-2.13.0-real.json")
    raw["error"] = {"type": "KeyboardInterrupt", "message": ""}
    result = judge(raw)
    assert not result.passed and check(result, "bench-script").detail.endswith("KeyboardInterrupt")


def test_an_optional_failure_does_not_fail_the_bench() -> None:
    raw = load("h100-cu130-pass-synthetic.json")
    compile_step = step(raw, "torch-compile")
    compile_step.update(ok=False, detail="max difference 0.3")
    result = judge(raw)
    assert result.passed
    assert check(result, "torch-compile") == BenchCheck("torch-compile", False, "max difference 0.3", True)


# --- recorded failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "reason_start", "hint"),
    [
        ("no-torch-py38-real.json", "torch is not installed in this environment", "no-torch"),
        ("import-winerror126-standin.json", "import torch failed: OSError: [WinError 126]", "vc-redist"),
        ("import-undefined-symbol-standin.json", "import torch failed: ImportError: ", "undefined-symbol"),
        (
            "cuda-unavailable-driver-too-old-standin.json",
            "CUDA is not available: torch.cuda.is_available() is False (built with CUDA 13.0)",
            "driver-too-old",
        ),
        (
            "cuda-expected-cpu-build-real.json",
            "CUDA is not available: this torch is a CPU-only build",
            "cpu-build",
        ),
        ("torchvision-operator-missing-realtorch.json", "torchvision is broken: ", "torchvision-mismatch"),
        (
            "rtx5090-cu126-no-kernel-synthetic.json",
            "this torch build cannot run on this GPU: no kernels for sm_120",
            "gpu-arch-unsupported",
        ),
    ],
)
def test_recorded_failures(fixture: str, reason_start: str, hint: str) -> None:
    result = judge(load(fixture))
    assert not result.passed
    assert result.reason is not None and result.reason.startswith(reason_start), result.reason
    assert hint in hint_codes(result)
    assert bench_to_json(result)["passed"] is False


def test_torchvision_failure_leaves_the_torch_checks_standing() -> None:
    result = judge(load("torchvision-operator-missing-realtorch.json"))
    failed = [c.name for c in result.checks if not c.passed]
    assert failed == ["torchvision-import"]
    assert (
        check(result, "torchvision-import").detail == "RuntimeError: operator torchvision::nms does not exist"
    )


def test_no_kernel_image_reports_the_arch_list_and_skips_figures() -> None:
    result = judge(load("rtx5090-cu126-no-kernel-synthetic.json"))
    assert check(result, "arch-supported").detail.endswith(
        "(build: sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90)"
    )
    assert check(result, "matmul-bf16").detail.startswith("AcceleratorError: CUDA error: no kernel image")
    assert result.figures == {}
    assert "figures" in [s.name for s in result.skipped]
    assert hint_codes(result) == ["gpu-arch-unsupported"]


def test_synthetic_h100_run_passes_with_ratios_to_the_published_peak() -> None:
    raw = load("h100-cu130-pass-synthetic.json")
    result = judge(raw)
    assert result.passed and result.device == "cuda:0"
    assert check(result, "arch-supported").detail.startswith("compute capability 9.0 runs sm_90 kernels")
    table = {g["name"]: g for g in json.loads(PEAKS_FILE.read_text())["gpus"]}["H100 SXM5 80GB"]
    for figure, field in [("matmul_bf16_tflops", "bf16"), ("device_memory_gbps", "memory_gbps")]:
        assert result.figures[f"{figure}_of_peak"] == round(raw["figures"][figure] / table[field], 3)
    assert "h2d_pinned_gbps_of_peak" not in result.figures  # no published peak for PCIe here
    assert result.peak is not None and result.peak.gpu == "H100 SXM5 80GB"
    assert "nvidia-tensor-core-gpu-datasheet" in result.peak.source


def test_a_gpu_run_with_a_wrong_bf16_result_fails() -> None:
    raw = load("h100-cu130-pass-synthetic.json")
    step(raw, "matmul-bf16")["max_err"] = 0.08
    result = judge(raw)
    assert not result.passed and result.reason is not None and result.reason.startswith("matmul-bf16")


# --- compute capability ----------------------------------------------------------------------------

CU126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
CU128_27 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


@pytest.mark.parametrize(
    ("cc", "arch_list", "covered"),
    [
        ("8.6", CU126, True),  # exact SASS
        ("8.9", CU126, True),  # sm_86 SASS runs on 8.9 (same major)
        ("12.0", CU126, False),  # RTX 50xx on cu126: no sm_12x, no PTX
        ("12.0", CU128_27, True),
        ("6.1", CU128_27, False),  # Pascal on cu128: too old
        ("12.1", [*CU126, "compute_90"], True),  # PTX JIT forward
        ("7.5", ["sm_80", "compute_80"], False),  # PTX never runs backwards
        ("8.7", ["sm_80", "sm_86"], False),  # Jetson Orin runs only its own code
        ("8.7", ["sm_87"], True),
        ("9.0", ["sm_90a"], True),
        ("10.3", ["sm_100a"], False),  # arch-specific code: exact capability only
        ("10.3", ["sm_100f"], True),  # family code: within the major
        ("9.0", [], None),
    ],
)
def test_arch_support(cc: str, arch_list: list[str], covered: bool | None) -> None:
    assert arch_support(ComputeCapability.parse(cc), arch_list).covered is covered


def test_ptx_route_is_named() -> None:
    how = arch_support(ComputeCapability(12, 1), ["sm_90", "compute_90"]).how
    assert "PTX compute_90" in how


# --- hints -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        ("ModuleNotFoundError: No module named 'torch'", ["no-torch"]),
        ("No module named 'torch._C'", []),
        ("No module named 'torchvision'", []),
        (
            'OSError: [WinError 126] Error loading "C:\\x\\torch\\lib\\c10.dll" or one of its dependencies.',
            ["vc-redist"],
        ),
        (
            "ImportError: DLL load failed while importing _C: The specified module could not be found.",
            ["vc-redist"],
        ),
        (
            "OSError: [WinError 1114] A dynamic link library (DLL) initialization routine failed.",
            ["vc-redist"],
        ),
        ("libtorch_cuda.so: undefined symbol: ncclCommRegister", ["undefined-symbol"]),
        ("RuntimeError: operator torchvision::nms does not exist", ["torchvision-mismatch"]),
        (
            "NotImplementedError: Could not run 'torchvision::nms' with arguments from the 'CUDA' backend",
            ["torchvision-mismatch"],
        ),
        (
            "libcudnn_graph.so.9: cannot open shared object file: No such file or directory",
            ["cuda-libs-missing"],
        ),
        ("cuDNN 91002, libcudnn version", []),
        ("/lib64/libc.so.6: version `GLIBC_2.28' not found", ["glibc-too-old"]),
        ("AssertionError: Torch not compiled with CUDA enabled", ["cpu-build"]),
        ("CUDA error: no kernel image is available for execution on the device", ["gpu-arch-unsupported"]),
        ("The NVIDIA driver on your system is too old (found version 11040).", ["driver-too-old"]),
        ("Found no NVIDIA driver on your system.", ["no-driver"]),
        ("Failed to initialize NVML: Driver/library version mismatch", ["restart-needed"]),
        ("CUDA error 804: forward compatibility was attempted on non supported HW", ["forward-compat"]),
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", ["out-of-memory"]),
        ("everything is fine", []),
    ],
)
def test_hints_for(text: str, codes: list[str]) -> None:
    assert [h.code for h in hints_for(text)] == codes


def test_every_hint_rule_names_a_known_hint() -> None:
    texts = [
        "No module named 'torch'",
        "WinError 126",
        "undefined symbol",
        "operator torchvision::x does not exist",
        "Torch not compiled with CUDA enabled",
    ]
    assert all(h.code in HINTS and h.message == HINTS[h.code] for h in hints_for(texts))


def test_warnings_give_hints_only_when_the_bench_failed() -> None:
    raw = load("cpu-torch-2.13.0-real.json")
    raw["warnings"].append("UserWarning: CUDA initialization: Found no NVIDIA driver on your system.")
    assert judge(raw).hints == ()
    step(raw, "matmul-fp16")["max_err"] = 1.0
    assert "no-driver" in hint_codes(judge(raw))


# --- the peak table --------------------------------------------------------------------------------


def test_peak_table_loads_and_cites_a_source_per_entry() -> None:
    peaks = load_peaks()
    raw = json.loads(PEAKS_FILE.read_text())
    assert len(peaks) == len(raw["gpus"]) >= 8
    for entry in raw["gpus"]:
        assert entry["source"] in raw["sources"] and entry["grade"] in {"A", "B", "C"} and entry["read_in"]
        # dense tensor-core fp16 is never below the CUDA-core fp32 figure, tf32 sits in between
        assert entry["fp16"] >= entry["tf32"] >= entry["fp32"] > 0


@pytest.mark.parametrize(
    ("device_name", "entry"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM5 80GB"),
        ("NVIDIA H100 PCIe", "H100 PCIe 80GB"),
        ("NVIDIA H200", "H200 SXM 141GB"),
        ("NVIDIA H200 NVL", None),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB"),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB"),
        ("NVIDIA A100-PCIE-40GB", "A100 40GB (SXM4 or PCIe)"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", None),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"),
        ("NVIDIA GeForce RTX 4090 D", None),
        ("NVIDIA GeForce RTX 3090 Ti", None),
        ("NVIDIA GeForce RTX 3090", "GeForce RTX 3090"),
        ("NVIDIA GeForce RTX 5090", "GeForce RTX 5090"),
        (None, None),
    ],
)
def test_match_peak(device_name: str | None, entry: str | None) -> None:
    found = match_peak(device_name, load_peaks())
    assert (found.name if found else None) == entry


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda g: g.update(source="NOWHERE"), "not listed under `sources`"),
        (lambda g: g.update(match="(unclosed"), "bad `match` pattern"),
        (lambda g: g.update(bf16=-1), "`bf16` must be a positive number"),
        (lambda g: g.pop("name"), "must be strings"),
    ],
)
def test_parse_peaks_rejects_bad_entries(mutate: Callable[[dict[str, Any]], object], message: str) -> None:
    raw = json.loads(PEAKS_FILE.read_text())
    mutate(raw["gpus"][0])
    with pytest.raises(KnowledgeError, match=message):
        parse_peaks(raw)


def test_cpu_results_get_no_ratio_even_for_a_known_name() -> None:
    raw = load("cpu-torch-2.13.0-real.json")
    raw["device_name"] = "NVIDIA H100 80GB HBM3"
    assert judge(raw).peak is None


# --- JSON shape and round trip -----------------------------------------------------------------------

DESIGN_KEYS = {"device", "device_name", "torch_version", "passed", "checks", "figures", "seconds"}


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_json_shape_follows_design_and_round_trips(fixture: str) -> None:
    result = judge(load(fixture))
    data = bench_to_json(result)
    assert data.keys() >= DESIGN_KEYS
    assert isinstance(data["passed"], bool) and isinstance(data["seconds"], float)
    assert data["device"] == "cpu" or data["device"].startswith("cuda:")
    for c in data["checks"]:
        assert {"name", "passed", "detail"} <= c.keys() and isinstance(c["passed"], bool)
    assert all(isinstance(v, float) for v in data["figures"].values())
    assert (data["reason"] is None) is data["passed"]
    text = json.dumps(data, allow_nan=False)
    assert bench_from_json(json.loads(text)) == result


def test_bench_from_json_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="malformed"):
        bench_from_json({"device": "cpu"})
    with pytest.raises(ValueError, match="JSON object"):
        bench_from_json([])


def test_parse_report() -> None:
    raw = (FIXTURES / "cpu-torch-2.13.0-real.json").read_text()
    one_line = json.dumps(json.loads(raw))
    assert parse_report(one_line) is not None
    assert parse_report("noise from a library\n" + one_line + "\n") is not None
    assert parse_report('{"script": "something else"}') is None
    assert parse_report("") is None
    assert parse_report("Segmentation fault") is None


def test_failure_result() -> None:
    result = failure_result("the benchmark did not finish within 5 s", seconds=5.01, device="cuda:0")
    data = bench_to_json(result)
    assert data["passed"] is False and data["reason"] == "the benchmark did not finish within 5 s"
    assert data["checks"] == [{"name": "bench-script", "passed": False, "detail": data["reason"]}]


# --- the summary table -----------------------------------------------------------------------------


def test_render_pass_and_fail() -> None:
    ok = judge(load("h100-cu130-pass-synthetic.json"))
    lines = render(ok, env_root=Path("/home/ana/proj/.venv"), colour=False)
    assert lines[0].startswith("torch 2.13.0+cu130 on cuda:0 (NVIDIA H100 80GB HBM3): PASSED")
    assert any(line.startswith("torch-compile") and "pass (optional)" in line for line in lines)
    rows = {r[0]: r for r in figure_rows(ok)}
    assert rows["matmul bf16"][1] == "722 TFLOP/s"
    assert rows["matmul bf16"][2] == "73% of 989"
    bad = judge(load("import-winerror126-standin.json"))
    text = "\n".join(render(bad, env_root=Path("C:/proj/.venv"), colour=False))
    assert "FAILED" in text and "why: import torch failed" in text and "Visual C++" in text
    assert "\033[" not in text


# --- history ---------------------------------------------------------------------------------------


def _result(passed: bool, seconds: float = 1.0) -> BenchResult:
    result = judge(load("cpu-torch-2.13.0-real.json"))
    return result if passed else failure_result("boom", seconds=seconds, device="cpu")


def test_history_last_result_per_environment(tmp_path: Path, td_dirs: dict[str, Path]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    assert bench_history.last_result(a) is None
    bench_history.append(a, _result(True), python=a / "bin/python", at=t0)
    bench_history.append(b, _result(False), at=t0 + timedelta(minutes=1))
    bench_history.append(a, _result(False, seconds=2.0), at=t0 + timedelta(minutes=2))
    last_a = bench_history.last_result(tmp_path / "x" / ".." / "a")
    assert last_a is not None and not last_a.result.passed and last_a.result.seconds == 2.0
    assert last_a.at == t0 + timedelta(minutes=2)
    last_b = bench_history.last_result(b)
    assert last_b is not None and last_b.env_root == b and last_b.python is None
    assert [r.at for r in bench_history.records(a)] == [t0, t0 + timedelta(minutes=2)]
    assert bench_history.history_file().parent == td_dirs["state"]


def test_history_is_bounded_and_keeps_the_newest(tmp_path: Path) -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(7):
        bench_history.append(tmp_path, _result(True), at=t0 + timedelta(hours=i), max_records=3)
    lines = bench_history.history_file().read_text().splitlines()
    assert len(lines) == 3
    assert [r.at for r in bench_history.records()] == [t0 + timedelta(hours=h) for h in (4, 5, 6)]


def test_history_skips_torn_and_foreign_lines(tmp_path: Path) -> None:
    bench_history.append(tmp_path, _result(True))
    path = bench_history.history_file()
    with path.open("a") as fh:
        fh.write('{"schema_version": 1, "env": "/x", "at": "2026-11-01T00:00:00+00:00", "result": {"devi')
    assert bench_history.last_result(tmp_path) is not None
    assert len(bench_history.records()) == 1


def test_history_concurrent_writers_leave_whole_lines(tmp_path: Path) -> None:
    result = _result(True)

    def writer(i: int) -> None:
        for _ in range(5):
            bench_history.append(tmp_path / str(i), copy.copy(result))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bench_history.records()) == 20
    assert all(bench_history.last_result(tmp_path / str(i)) is not None for i in range(4))


def test_history_timestamps_are_utc() -> None:
    local = datetime(2026, 11, 1, 12, 0, tzinfo=UTC).astimezone()
    record = bench_history.append(Path("/env"), _result(True), at=local)
    assert record.at.tzinfo == UTC and record.at == local


# --- hints that work as printed ----------------------------------------------------------------------


def test_hints_name_the_real_environment_not_a_placeholder(tmp_path: Path) -> None:
    root = tmp_path / "my proj" / ".venv"
    (root / "bin").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("version = 3.12.4\n")
    result = verdict(
        load("import-undefined-symbol-standin.json"), seconds=1.0, python=str(root / "bin/python")
    )
    (undefined,) = [h for h in result.hints if h.code == "undefined-symbol"]
    assert f"`torchdoctor fix --env '{root}'`" in undefined.message
    assert all("PATH" not in h.message for h in result.hints)


def test_a_python_outside_any_environment_is_named_itself(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python3"
    result = failure_result("x", seconds=1.0, device="cpu", hints=[hint("cpu-build")], python=str(python))
    assert f"--env {python}" in result.hints[0].message


def test_a_timeout_without_a_gpu_is_called_a_timeout_not_a_hung_driver() -> None:
    cpu = failure_result("did not finish", seconds=180.0, device="cpu", hints=[hint("timeout")], gpu=False)
    (said,) = cpu.hints
    assert said.code == "timeout" and "timed out" in said.message
    assert "driver" not in said.message and "GPU" not in said.message
    gpu = failure_result("did not finish", seconds=180.0, device="cuda:0", hints=[hint("timeout")])
    assert gpu.hints[0].message == HINTS["timeout"]


def test_no_gpu_advice_where_the_probe_found_no_gpu() -> None:
    raw = load("rtx5090-cu126-no-kernel-synthetic.json")
    assert "gpu-arch-unsupported" in hint_codes(verdict(raw, seconds=1.0))
    raw["expect_gpu"], raw["device"] = False, "cpu"
    assert "gpu-arch-unsupported" not in hint_codes(verdict(raw, seconds=1.0))
