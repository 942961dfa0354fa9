# ruff: noqa: ANN401
# (torch is imported at run time inside the environment under test, so its objects are typed Any.)
"""torchdoctor's benchmark, run *inside* the environment under test.

torchdoctor starts it as `python -I bench_env.py --device auto|cuda|cpu [--expect-gpu]
[--progress FILE]` with the environment's own interpreter. It measures and reports; it does not
judge: the verdict (tolerances, hints, peaks) lives in torchdoctor's `service/bench/run.py`, so the
rules can change without touching what runs in someone else's environment.

Contract:
- It prints exactly one JSON object on stdout, whatever happens (torch missing, torch failing to
  import, a check raising). Anything else that writes to stdout (torch, Triton, C libraries) is
  sent to stderr by redirecting file descriptor 1 before torch is imported.
- It needs the standard library and torch, nothing else, and runs on Python 3.8 or newer (no
  `match`, no `X | Y` or `list[int]` types, only `typing` names in annotations, no 3.9+ APIs).
- Each step is isolated: an exception becomes that step's `error`, and the next step runs.
- Progress lines ("importing torch", "timing matmul bf16") are appended to --progress FILE so the
  caller can show what is happening while it waits.

Measurements:
- matmul correctness: inputs are drawn in float32 and rounded to the dtype under test, so the
  float64 CPU reference R = A64 @ B64 is computed from exactly the values the device sees. The
  error reported is max |C - R| / (|A| @ |B|), the componentwise error bound of numerical analysis
  (Higham, "Accuracy and Stability of Numerical Algorithms", sec. 3.5): it does not depend on the
  size of the result, so one tolerance per dtype fits every shape. `null_err` is what an all-zero
  answer would score, which shows the tolerance can tell garbage from rounding.
- speed: each figure is taken after a warm-up (clocks ramp up, cuBLAS picks its kernel) as the
  median of several samples, timed with CUDA events on the GPU and perf_counter on the CPU.
"""

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import re
import statistics
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

if sys.platform == "win32":
    import winreg

SCHEMA = 1
_T0 = time.perf_counter()

# Sizes. The CPU path must stay within a few seconds on a laptop.
GPU_CHECK_SIZE = (1024, 1024, 1024)  # m, k, n for the correctness checks on a GPU
CPU_CHECK_SIZE = (256, 512, 256)  # m, k, n on the CPU
CPU_BENCH_SIZES = (1024, 512)  # fp32 GFLOP/s: the first, or the second when the first is slow
GPU_MATMUL_SIZES = (2048, 4096, 8192)
MEMORY_SHARE = 0.7  # of the free device memory, for the allocation check
COMPILE_DEADLINE_S = 60.0

_DTYPE_NAMES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}
_ABANDONED: List[threading.Thread] = []


class _Report:
    """The JSON document under construction; every method is safe to call in any state."""

    def __init__(self, requested: str, expect_gpu: bool, progress_file: Optional[str]) -> None:
        self.data: Dict[str, Any] = {
            "schema": SCHEMA,
            "script": "torchdoctor-bench",
            "python": {
                "version": platform.python_version(),
                "executable": sys.executable,
                "prefix": sys.prefix,
                "platform": sys.platform,
                "machine": platform.machine(),
            },
            "requested_device": requested,
            "expect_gpu": expect_gpu,
            "device": None,
            "device_name": None,
            "torch": None,
            "steps": [],
            "skipped": [],
            "figures": {},
            "figure_notes": {},
            "warnings": [],
            "error": None,
            "seconds": None,
        }
        self._progress_file = Path(progress_file) if progress_file else None
        self.step_errors = 0

    def progress(self, text: str) -> None:
        if self._progress_file is None:
            return
        # Progress is a courtesy; a full disk or a vanished folder must not break the report.
        with contextlib.suppress(OSError), self._progress_file.open("a", encoding="utf-8") as fh:
            fh.write(text.replace("\n", " ") + "\n")

    def step(self, name: str, ok: Optional[bool], detail: str = "", **extra: Any) -> Dict[str, Any]:
        entry: Dict[str, Any] = {"name": name, "ok": ok, "detail": detail}
        entry.update(extra)
        self.data["steps"].append(entry)
        return entry

    def failed_step(self, name: str, exc: BaseException, **extra: Any) -> Dict[str, Any]:
        self.step_errors += 1
        return self.step(name, False, _exc_text(exc), error=_exc_info(exc), **extra)

    def skip(self, name: str, reason: str) -> None:
        self.data["skipped"].append({"name": name, "reason": reason})

    def figure(self, key: str, value: float, note: Optional[str] = None) -> None:
        if _finite(value):
            # Four significant digits, not four decimals: 151.3 TFLOP/s and a stand-in's 3.2e-05 alike
            # (rounding to decimals turned tiny figures into a misleading 0.0 under load).
            self.data["figures"][key] = float("%.4g" % float(value))
            if note:
                self.data["figure_notes"][key] = note

    def warn(self, caught: List[Any]) -> None:
        for w in caught:
            text = f"{w.category.__name__}: {w.message}"
            if text not in self.data["warnings"]:
                self.data["warnings"].append(text)


# --- helpers -------------------------------------------------------------------------------------


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: they become null (allow_nan=False would raise instead)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _exc_text(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# Windows error numbers whose (localized) text Python's "DLL load failed while importing X: <text>"
# may carry: 126 module not found, 127 procedure not found, 193 not a valid Win32 application,
# 1114 a DLL's initialisation failed.
_DLL_ERRORS = (126, 127, 193, 1114)
_WINERROR_TAG = re.compile(r"\[WinError (\d+)\]")
_DLL_LOAD_FAILED = re.compile(r"DLL load failed while importing [^:]+: (.+)", re.DOTALL)


def _system_messages() -> Optional[Callable[[int], str]]:
    """ctypes.FormatError: the system's own text for an error number, in the system's language."""
    try:
        import ctypes  # noqa: PLC0415  (Windows only: FormatError exists there alone)

        return getattr(ctypes, "FormatError", None)
    except Exception:
        return None


def winerror_of(exc: BaseException, format_error: Optional[Callable[[int], str]] = None) -> Optional[int]:
    """The Windows error number behind `exc` or the exceptions it was raised from, else None.

    Hints are decided on this number, never on the message, which a German or Russian Windows words
    in its own language. OSError carries it as `winerror` ("[WinError 126]" in its text); Python's
    ImportError for a failed DLL load carries only the localized text, which is matched against the
    system's own text for each number (`format_error`, ctypes.FormatError on Windows).
    """
    seen = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        number = getattr(current, "winerror", None)
        if isinstance(number, int) and not isinstance(number, bool):
            return number
        text = str(current)
        tag = _WINERROR_TAG.search(text)
        if tag:
            return int(tag.group(1))
        failed = _DLL_LOAD_FAILED.search(text)
        fmt = format_error if format_error is not None else _system_messages()
        if failed and fmt is not None:
            said = failed.group(1).strip().rstrip(".").casefold()
            for candidate in _DLL_ERRORS:
                with contextlib.suppress(Exception):
                    if fmt(candidate).strip().rstrip(".").casefold() == said:
                        return candidate
        current = current.__cause__ or current.__context__
    return None


def _exc_info(exc: BaseException) -> Dict[str, Any]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:4000],
        "module": getattr(exc, "name", None) if isinstance(exc, ImportError) else None,
        "winerror": winerror_of(exc),
        "traceback": tb[-4000:],
    }


def _claim_stdout() -> int:
    """Keep the real stdout for our JSON and point fd 1 (and sys.stdout) at stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return saved


def _emit(fd: int, report: _Report) -> None:
    report.data["seconds"] = round(time.perf_counter() - _T0, 3)
    data = (json.dumps(_clean(report.data), allow_nan=False) + "\n").encode("utf-8")
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _cpu_name() -> Optional[str]:
    if sys.platform == "win32":
        with contextlib.suppress(OSError):
            key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0")
            return str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()
    if sys.platform.startswith("linux"):
        cpuinfo = Path("/proc/cpuinfo")
        with contextlib.suppress(OSError), cpuinfo.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _with_deadline(fn: Callable[[], Any], seconds: float) -> Any:
    """Run fn in a daemon thread; raise TimeoutError if it outlives `seconds` (it is abandoned)."""
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name="torchdoctor-deadline", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        _ABANDONED.append(thread)
        raise TimeoutError(f"did not finish within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _fmt_err(err: Optional[float]) -> str:
    return f"{err:.3g}" if err is not None else "n/a (non-finite values)"


# --- correctness ---------------------------------------------------------------------------------


def _inputs(torch: Any, size: Tuple[int, int, int], *, dtype: Any, seed: int) -> Tuple[Any, Any]:
    m, k, n = size
    gen = torch.Generator().manual_seed(seed)
    a = (torch.rand(m, k, generator=gen, dtype=torch.float32) * 2 - 1).to(dtype)
    b = (torch.rand(k, n, generator=gen, dtype=torch.float32) * 2 - 1).to(dtype)
    return a, b


def _relative_error(torch: Any, got: Any, ref: Any, bound: Any) -> Tuple[Optional[float], float, bool]:
    """(max |got-ref|/bound or None when got has NaN/inf, what a zero answer scores, all finite?)."""
    got64 = got.to(device="cpu", dtype=torch.float64)
    bound = bound.clamp_min(1e-300)
    finite = bool(torch.isfinite(got64).all())
    err = float(((got64 - ref).abs() / bound).max()) if finite else None
    return err, float((ref.abs() / bound).max()), finite


class _Float32Precision:
    """fp32 means real fp32 (no TF32); tf32 means TF32 allowed; the setting is restored after."""

    def __init__(self, torch: Any, label: str) -> None:
        self.torch = torch
        self.label = label
        self.saved: Optional[Tuple[str, Any]] = None

    def __enter__(self) -> "_Float32Precision":
        torch = self.torch
        if self.label not in ("fp32", "tf32"):
            return self
        if hasattr(torch, "get_float32_matmul_precision"):
            self.saved = ("precision", torch.get_float32_matmul_precision())
            torch.set_float32_matmul_precision("highest" if self.label == "fp32" else "high")
        else:  # torch < 1.12
            self.saved = ("flag", torch.backends.cuda.matmul.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = self.label == "tf32"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is None:
            return
        kind, value = self.saved
        if kind == "precision":
            self.torch.set_float32_matmul_precision(value)
        else:
            self.torch.backends.cuda.matmul.allow_tf32 = value


def check_matmul(torch: Any, report: _Report, *, device: str, label: str, size: Tuple[int, int, int]) -> None:
    """One dtype's matmul against the float64 CPU reference; the verdict applies the tolerance."""
    name = "matmul-" + label
    report.progress(f"checking matmul {label} against a float64 CPU reference")
    m, k, n = size
    extra: Dict[str, Any] = {"dtype": label, "m": m, "k": k, "n": n, "device": device}
    if label == "fp32":
        # This variable makes cuBLAS use TF32 for fp32 work behind torch's back.
        extra["tf32_override"] = os.environ.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE")
    try:
        dtype = getattr(torch, _DTYPE_NAMES[label])
        a, b = _inputs(torch, size, dtype=dtype, seed=1000 + len(report.data["steps"]))
        with _Float32Precision(torch, label):
            c = torch.matmul(a.to(device), b.to(device))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
        a64, b64 = a.to(torch.float64), b.to(torch.float64)
        err, null_err, finite = _relative_error(torch, c, a64 @ b64, a64.abs() @ b64.abs())
        detail = f"max error {_fmt_err(err)}, a zero result would score {null_err:.3g}"
        report.step(name, finite, detail, max_err=err, null_err=null_err, finite=finite, **extra)
    except Exception as exc:
        report.failed_step(name, exc, **extra)


def check_conv(torch: Any, report: _Report, device: str) -> None:
    """A 3x3 convolution (cuDNN on a GPU, oneDNN/native on the CPU) against float64 on the CPU."""
    on_gpu = device.startswith("cuda")
    name = "conv2d-cudnn" if on_gpu else "conv2d"
    report.progress("checking a convolution against the CPU")
    extra: Dict[str, Any] = {"device": device, "tf32": False}
    try:
        functional = torch.nn.functional
        gen = torch.Generator().manual_seed(7)
        x = torch.rand(4, 32, 32, 32, generator=gen) * 2 - 1
        w = torch.rand(64, 32, 3, 3, generator=gen) * 2 - 1
        if on_gpu:
            if not torch.backends.cudnn.is_available():
                report.step(name, False, "cuDNN is not available in this torch build", **extra)
                return
            extra["cudnn_version"] = torch.backends.cudnn.version()
            # cuDNN allows TF32 for fp32 convolutions by default; the verdict's tolerance follows.
            extra["tf32"] = bool(torch.backends.cudnn.allow_tf32)
        y = functional.conv2d(x.to(device), w.to(device), padding=1)
        if on_gpu:
            torch.cuda.synchronize()
        x64, w64 = x.to(torch.float64), w.to(torch.float64)
        ref = functional.conv2d(x64, w64, padding=1)
        bound = functional.conv2d(x64.abs(), w64.abs(), padding=1)
        err, null_err, finite = _relative_error(torch, y, ref, bound)
        backend = f"cuDNN {extra['cudnn_version']}" if on_gpu else "CPU"
        detail = f"{backend}, max error {_fmt_err(err)}"
        report.step(name, finite, detail, max_err=err, null_err=null_err, finite=finite, **extra)
    except Exception as exc:
        report.failed_step(name, exc, **extra)


def check_memory(torch: Any, report: _Report, device: str) -> None:
    """Allocate a good share of the free memory, write all of it, and read it back."""
    report.progress(f"allocating {int(MEMORY_SHARE * 100)}% of the free GPU memory")
    try:
        free, total = _mem_info(torch, device)
        target = int(free * MEMORY_SHARE) >> 20 << 20
        block = torch.empty(target, dtype=torch.uint8, device=device)
        block.fill_(1)
        total_sum = int(block.sum(dtype=torch.int64))
        torch.cuda.synchronize()
        del block
        torch.cuda.empty_cache()
        ok = total_sum == target
        detail = (
            f"allocated {target / 2**30:.1f} GiB of {free / 2**30:.1f} GiB free "
            f"({total / 2**30:.1f} GiB total), {'read back intact' if ok else 'read back WRONG'}"
        )
        report.step("memory-alloc", ok, detail, bytes=target, free=free, total=total)
    except Exception as exc:
        report.failed_step("memory-alloc", exc)
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()


def _mem_info(torch: Any, device: str) -> Tuple[int, int]:
    if hasattr(torch.cuda, "mem_get_info"):
        free, total = torch.cuda.mem_get_info(device)
        return int(free), int(total)
    total = torch.cuda.get_device_properties(device).total_memory
    return int(total - torch.cuda.memory_reserved(device)), int(total)


def check_compile(torch: Any, report: _Report, device: str) -> None:
    """Optional: torch.compile through Inductor and Triton, compared with eager."""
    if not hasattr(torch, "compile"):
        report.skip("torch-compile", "this torch has no torch.compile")
        return
    if importlib.util.find_spec("triton") is None:
        report.skip("torch-compile", "Triton is not installed")
        return
    report.progress("compiling a small function with torch.compile (optional)")

    def smoke() -> float:
        def fn(x: Any) -> Any:
            return torch.sin(x) * 2.0 + torch.cos(x) * x

        compiled = torch.compile(fn, fullgraph=True)
        x = torch.linspace(-3, 3, 4096, device=device)
        got = compiled(x)
        want = fn(x)
        torch.cuda.synchronize()
        return float((got - want).abs().max())

    started = time.perf_counter()
    try:
        diff = _with_deadline(smoke, COMPILE_DEADLINE_S)
        detail = (
            f"compiled and ran in {time.perf_counter() - started:.1f} s, max difference from eager {diff:.2g}"
        )
        report.step("torch-compile", diff <= 1e-4, detail, optional=True, max_diff=diff)
    except Exception as exc:
        report.failed_step("torch-compile", exc, optional=True)


# --- speed ---------------------------------------------------------------------------------------


def _median_cpu(fn: Callable[[], Any], samples: int = 5, min_warmup_s: float = 0.05) -> float:
    start = time.perf_counter()
    calls = 0
    while calls < 2 or (time.perf_counter() - start < min_warmup_s and calls < 50):
        fn()
        calls += 1
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _median_cuda(
    torch: Any, fn: Callable[[], Any], samples: int = 7, min_warmup_s: float = 0.15, sample_s: float = 0.02
) -> float:
    """Median seconds per call of fn, timed with CUDA events after a warm-up."""
    start = time.perf_counter()
    calls = 0
    while calls < 3 or (time.perf_counter() - start < min_warmup_s and calls < 500):
        fn()
        torch.cuda.synchronize()
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    # Short calls are batched per sample so that launch overhead and event resolution do not count.
    inner = int(max(1, min(200, sample_s / max(per_call, 1e-7))))
    times = []
    for _ in range(samples):
        begin = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end) / 1000.0 / inner)
    return statistics.median(times)


def bench_cpu_matmul(torch: Any, report: _Report) -> None:
    report.progress("timing fp32 matmul on the CPU")
    try:
        for size in CPU_BENCH_SIZES:
            a, b = _inputs(torch, (size, size, size), dtype=torch.float32, seed=5)
            c = torch.empty(size, size)
            seconds = _median_cpu(lambda a=a, b=b, c=c: torch.matmul(a, b, out=c))
            if seconds < 0.25:
                break
        note = f"{size} x {size} x {size}, {torch.get_num_threads()} threads"
        report.figure("matmul_fp32_gflops", 2.0 * size**3 / seconds / 1e9, note)
    except Exception as exc:
        report.failed_step("matmul-fp32-timing", exc)


def _square(torch: Any, size: int, dtype: Any, device: str) -> Tuple[Any, Any, Any]:
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    return a, b, torch.empty(size, size, device=device, dtype=dtype)


def bench_gpu_matmul(torch: Any, report: _Report, *, device: str, label: str, free_bytes: int) -> None:
    dtype = getattr(torch, _DTYPE_NAMES[label])
    report.progress(f"timing matmul {label}")
    with _Float32Precision(torch, label):
        small, size, big = GPU_MATMUL_SIZES
        a, b, c = _square(torch, size, dtype, device)
        # One timed call picks a size that keeps the GPU busy in steady state without taking long.
        torch.matmul(a, b, out=c)
        torch.cuda.synchronize()
        t = time.perf_counter()
        torch.matmul(a, b, out=c)
        torch.cuda.synchronize()
        one = time.perf_counter() - t
        if one < 0.004 and 3 * big * big * c.element_size() < 0.5 * free_bytes:
            size = big
        elif one > 0.1:
            size = small
        if size != a.shape[0]:
            del a, b, c
            a, b, c = _square(torch, size, dtype, device)
        seconds = _median_cuda(torch, lambda: torch.matmul(a, b, out=c))
    report.figure(f"matmul_{label}_tflops", 2.0 * size**3 / seconds / 1e12, f"{size} x {size} x {size}")


def bench_gpu_transfers(torch: Any, report: _Report, device: str, free_bytes: int) -> None:
    """Pinned host<->device bandwidth, with a round-trip check that the bytes arrive intact."""
    report.progress("timing host<->device copies (pinned memory)")
    nbytes = 256 << 20 if free_bytes > (2 << 30) else 64 << 20
    try:
        host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        back = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        # A varied byte pattern (the bytes of 0, 1, 2, ... as int32), cheap to make.
        host.copy_(torch.arange(nbytes // 4, dtype=torch.int32).view(torch.uint8))
        dev = torch.empty(nbytes, dtype=torch.uint8, device=device)
        h2d = _median_cuda(torch, lambda: dev.copy_(host, non_blocking=True), samples=5)
        d2h = _median_cuda(torch, lambda: back.copy_(dev, non_blocking=True), samples=5)
        torch.cuda.synchronize()
        same = bool(torch.equal(host, back))
        note = f"{nbytes >> 20} MiB, pinned"
        report.figure("h2d_pinned_gbps", nbytes / h2d / 1e9, note)
        report.figure("d2h_pinned_gbps", nbytes / d2h / 1e9, note)
        detail = f"{nbytes >> 20} MiB to the GPU and back, {'intact' if same else 'CHANGED'}"
        report.step("host-device-copy", same, detail, bytes=nbytes)
    except Exception as exc:
        report.failed_step("host-device-copy", exc)


def bench_gpu_memory(torch: Any, report: _Report, device: str, free_bytes: int) -> None:
    report.progress("timing device memory bandwidth")
    nbytes = int(min(1 << 30, free_bytes // 8)) // 4 * 4
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    seconds = _median_cuda(torch, lambda: dst.copy_(src))
    # A copy reads and writes every byte once.
    report.figure("device_memory_gbps", 2.0 * nbytes / seconds / 1e9, f"{nbytes >> 20} MiB copy")


# --- the paths -----------------------------------------------------------------------------------


def run_cpu(torch: Any, report: _Report) -> None:
    report.data["device"] = "cpu"
    report.data["device_name"] = _cpu_name()
    for label in ("fp32", "fp16", "bf16"):
        check_matmul(torch, report, device="cpu", label=label, size=CPU_CHECK_SIZE)
    check_conv(torch, report, "cpu")
    report.skip("matmul-tf32", "TF32 is a GPU tensor-core format")
    report.skip("torch-compile", "the torch.compile smoke test runs on CUDA only")
    bench_cpu_matmul(torch, report)


def _describe_gpu(torch: Any, report: _Report, device: str) -> Optional[List[int]]:
    """The `device` and `arch-supported` steps; the capability, or None when unreadable."""
    report.progress("reading the GPU's properties")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            props = torch.cuda.get_device_properties(device)
            capability = list(torch.cuda.get_device_capability(device))
            arch_list = list(torch.cuda.get_arch_list())
        report.warn(caught)
        report.data["device_name"] = props.name
        free, _total = _mem_info(torch, device)
        detail = (
            f"{props.name}, compute capability {capability[0]}.{capability[1]}, "
            f"{props.total_memory / 2**30:.1f} GiB, {props.multi_processor_count} SMs"
        )
        report.step(
            "device",
            True,
            detail,
            capability=capability,
            total_memory=int(props.total_memory),
            sm_count=int(props.multi_processor_count),
            free_memory=free,
        )
        # Judged by the verdict from the capability and the build's arch list.
        report.step("arch-supported", None, "", capability=capability, arch_list=arch_list)
        return capability
    except Exception as exc:
        report.failed_step("device", exc)
        return None


def run_cuda(torch: Any, report: _Report, device: Optional[str] = None) -> None:
    """The GPU path. `device` is for tests that drive this path's logic on the CPU."""
    try:
        device = device or f"cuda:{torch.cuda.current_device()}"
    except Exception as exc:
        report.data["device"] = "cuda:0"
        report.failed_step("device", exc)
        return
    report.data["device"] = device
    capability = _describe_gpu(torch, report, device)
    if capability is None:
        return
    labels = ["fp32"]
    if capability[0] >= 8:
        labels += ["tf32", "fp16", "bf16"]
    else:
        labels += ["fp16"]
        report.skip("matmul-tf32", "TF32 needs compute capability 8.0 or newer")
        report.skip("matmul-bf16", "bfloat16 tensor cores need compute capability 8.0 or newer")
    for label in labels:
        check_matmul(torch, report, device=device, label=label, size=GPU_CHECK_SIZE)
    check_conv(torch, report, device)
    check_memory(torch, report, device)

    if report.step_errors:
        # A kernel that failed can leave the CUDA context unusable; timings would only repeat it.
        report.skip("figures", "a check failed with an error, so nothing was timed")
    else:
        free, _total = _mem_info(torch, device)
        for label in labels:
            try:
                bench_gpu_matmul(torch, report, device=device, label=label, free_bytes=free)
            except Exception as exc:
                report.failed_step(f"matmul-{label}-timing", exc)
        bench_gpu_transfers(torch, report, device, free)
        try:
            bench_gpu_memory(torch, report, device, free)
        except Exception as exc:
            report.failed_step("device-memory-timing", exc)
    check_compile(torch, report, device)


def _import_torch(report: _Report) -> Any:
    report.progress("importing torch")
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            import torch  # noqa: PLC0415  (the point of the step: its failure is the finding)
        except BaseException as exc:  # an import can raise anything, even SystemExit
            report.warn(caught)
            report.failed_step("torch-import", exc, seconds=round(time.perf_counter() - started, 3))
            return None
    report.warn(caught)
    tv = getattr(torch, "version", None)
    version = getattr(torch, "__version__", None)
    torch_file = getattr(torch, "__file__", None)
    info: Dict[str, Any] = {
        "version": str(version) if version is not None else None,
        "cuda": getattr(tv, "cuda", None),
        "hip": getattr(tv, "hip", None),
        "git_version": getattr(tv, "git_version", None),
        "path": str(Path(torch_file).parent) if torch_file else None,
        "num_threads": None,
    }
    with contextlib.suppress(Exception):
        info["num_threads"] = torch.get_num_threads()
    report.data["torch"] = info
    if info["cuda"]:
        build = f"CUDA {info['cuda']}"
    elif info["hip"]:
        build = f"ROCm {info['hip']}"
    else:
        build = "CPU"
    if version is None or torch_file is None:
        # A torch folder without __init__.py imports as an empty namespace package: not torch.
        where = ", ".join(getattr(torch, "__path__", []) or []) or "?"
        detail = f"'import torch' found only an empty folder ({where}), not an installed torch"
        report.step("torch-import", False, detail, seconds=round(time.perf_counter() - started, 3))
        return None
    detail = f"torch {info['version']} ({build} build) from {info['path']}"
    report.step("torch-import", True, detail, seconds=round(time.perf_counter() - started, 3))
    return torch


def check_torchvision(torch: Any, report: _Report, device: str) -> None:
    """Import torchvision when it is installed, and run one of its C++ operators on the device."""
    if importlib.util.find_spec("torchvision") is None:
        return
    report.progress("importing torchvision")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import torchvision  # noqa: PLC0415  (optional companion: only when installed)
            from torchvision.ops import nms  # noqa: PLC0415
        report.warn(caught)
        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
        scores = torch.tensor([0.9, 0.8, 0.7])
        kept = nms(boxes.to(device), scores.to(device), 0.5).cpu().tolist()
        ok = kept == [0, 2]
        result = "correct" if ok else f"WRONG: kept {kept}"
        detail = f"torchvision {getattr(torchvision, '__version__', '?')}, nms on {device} {result}"
        report.step("torchvision-import", ok, detail)
    except BaseException as exc:  # an import can raise anything
        report.failed_step("torchvision-import", exc)


def _cuda_state(torch: Any, report: _Report) -> Tuple[bool, str, Dict[str, Any]]:
    """(available, detail, data), with the warnings CUDA initialisation gave."""
    data: Dict[str, Any] = {"built_with": getattr(torch.version, "cuda", None), "device_count": 0}
    error: Optional[BaseException] = None
    available = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            available = bool(torch.cuda.is_available())
            data["device_count"] = int(torch.cuda.device_count()) if available else 0
        except Exception as exc:
            error = exc
    report.warn(caught)
    messages = [str(w.message) for w in caught]
    data["messages"] = messages
    if available:
        detail = f"CUDA {data['built_with']}, {data['device_count']} device(s)"
    elif error is not None:
        detail = f"torch.cuda failed: {_exc_text(error)}"
        data["error"] = _exc_info(error)
    elif not data["built_with"]:
        detail = "this torch is a CPU-only build (torch.version.cuda is None)"
        data["cpu_build"] = True
    else:
        detail = f"torch.cuda.is_available() is False (built with CUDA {data['built_with']})"
        if messages:
            detail += ": " + messages[-1].strip().splitlines()[0]
    return available, detail, data


def _run(args: argparse.Namespace, report: _Report) -> None:
    torch = _import_torch(report)
    if torch is None:
        return
    if args.device == "cpu":
        check_torchvision(torch, report, "cpu")
        run_cpu(torch, report)
        return
    report.progress("initialising CUDA")
    available, detail, data = _cuda_state(torch, report)
    wanted = args.device == "cuda" or args.expect_gpu
    if wanted or available:
        report.step("cuda-available", available, detail, **data)
    else:
        report.skip("cuda-available", "no NVIDIA GPU expected; " + detail)
    if available:
        check_torchvision(torch, report, "cuda")
        run_cuda(torch, report)
    elif wanted:
        report.data["device"] = "cuda:0"  # what was asked for; nothing runs without CUDA
    else:
        check_torchvision(torch, report, "cpu")
        run_cpu(torch, report)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_env.py")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--expect-gpu", action="store_true")
    parser.add_argument("--progress", default=None)
    args = parser.parse_args(argv)

    out = _claim_stdout()
    report = _Report(args.device, args.expect_gpu, args.progress)
    # One compile worker: the smoke test compiles one tiny kernel, a worker pool only adds start-up.
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    try:
        _run(args, report)
    except BaseException as exc:  # the report must still come out
        report.data["error"] = _exc_info(exc)
    report.progress("done")
    _emit(out, report)
    sys.stderr.flush()
    if _ABANDONED:
        # A hung torch.compile thread must not keep the process alive after the report.
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
