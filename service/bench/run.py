"""`torchdoctor bench`: prove that an environment's torch really computes correctly on this machine.

Two halves:
- `scripts/bench_env.py` runs *inside* the environment (its own Python, any version from 3.8,
  stdlib + torch) and only measures: which checks ran, the errors it saw, the figures it timed.
- this module judges: tolerances per dtype, the compute-capability rule, the error-message hints
  and the published peaks all live here, as pure functions over the script's JSON, so they are
  unit-tested on recorded results and can change without touching what runs in the environment.

How the script is run, and why: `python -I <file>` on the script file as installed (package data
read through importlib.resources; `as_file` copies it to a temporary file only when the package
is zipped or frozen). A file rather than `python -c <source>`: the script is too long for the
32 KiB Windows command line to be a comfortable home, a file gives tracebacks with line numbers,
and multiprocessing/Inductor workers that re-import `__main__` find a real module with a
`__main__` guard. `-I` keeps the user's PYTHONPATH, user site-packages and the script's own folder
(our site-packages) out of the environment under test.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from torchdoctor.service import proc
from torchdoctor.service.errors import (
    BadInputError,
    KnowledgeError,
    NotAnEnvironmentError,
    SubprocessTimeoutError,
)
from torchdoctor.service.facts.knowledge import shipped_text
from torchdoctor.service.models import ComputeCapability

DEVICES: Final = ("auto", "cuda", "cpu")
SCHEMA_VERSION: Final = 1  # of bench_to_json's output
SCRIPT_SCHEMA: Final = 1  # of the script's report
DEFAULT_TIMEOUT_S: Final = 180.0

Progress = Callable[[str], None]

# --- tolerances ------------------------------------------------------------------------------------
#
# The script reports e = max |C - R| / (|A| @ |B|): R is the float64 CPU product of exactly the
# values the device multiplied (inputs are rounded to the dtype first), so e holds only what the
# device's arithmetic added: rounding in the products, the sums and the output. e is relative to
# the size of the terms, not of the result, so a tolerance does not depend on the data. A wrong
# answer scores near the script's `null_err` (what an all-zero result scores, ~0.25 here): every
# tolerance below sits two orders of magnitude under it.

_U_FP32: Final = 2.0**-24  # unit roundoff of each format
_U_FP16: Final = 2.0**-11
_U_BF16: Final = 2.0**-8


def matmul_tolerance(dtype: str, k: int) -> float:
    """The largest error `e` a correct matmul of inner size `k` in `dtype` may show.

    fp32: fp32 sums of k terms; rounding errors add up like a random walk, about sqrt(k)·u, with
          a factor 4 of margin (1024 -> 2^-17 = 7.6e-6). TF32 sneaking in (e around 1e-4) fails.
    tf32: each input is cut to 10 mantissa bits inside the tensor core (error up to 2^-10 each,
          truncating), so each product is off by at most 2^-9 of |a||b|: a worst case, any k.
          Tolerance twice that: 2^-8.
    fp16/bf16: fp32 accumulation, then the output rounded to the format (u), plus up to a few
          partial sums rounded to the format when cuBLAS splits k with reduced-precision
          reductions (torch allows them by default): 4·u.
    """
    if dtype == "fp32":
        return 4.0 * math.sqrt(max(k, 1)) * _U_FP32
    if dtype == "tf32":
        return 2.0**-8
    if dtype == "fp16":
        return 4.0 * _U_FP16
    if dtype == "bf16":
        return 4.0 * _U_BF16
    raise ValueError(f"no tolerance for dtype {dtype!r}")


def conv_tolerance(*, tf32: bool) -> float:
    """3x3 convolution, 288 terms per output. cuDNN may pick Winograd or FFT algorithms, whose
    transforms lose a few bits more than a direct sum: 2^-14 in fp32; 2^-7 when TF32 is allowed
    (cuDNN's default), i.e. the TF32 product bound 2^-9 with a factor 4 for the transforms."""
    return 2.0**-7 if tf32 else 2.0**-14


# --- hints -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hint:
    code: str
    message: str


HINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "no-torch": (
            "torch is not installed here; `torchdoctor plan --env PATH` says which build fits this machine."
        ),
        "vc-redist": (
            "a DLL that torch needs could not be loaded: install the latest Microsoft Visual C++ "
            "2015-2022 x64 Redistributable (https://aka.ms/vs/17/release/vc_redist.x64.exe); if that "
            "does not help, reinstall torch (`torchdoctor fix --env PATH`)."
        ),
        "undefined-symbol": (
            "torch's native libraries do not match each other or the package loading them (a "
            "half-finished or mixed install, or an extension built for another torch): reinstall "
            "torch and its companions together from one index (`torchdoctor fix --env PATH`)."
        ),
        "torchvision-mismatch": (
            "torchvision does not match the installed torch (its release or its CPU/CUDA variant): "
            "reinstall the torchvision paired with this torch from the same index "
            "(`torchdoctor fix --env PATH`)."
        ),
        "cuda-libs-missing": (
            "the CUDA libraries torch loads (the nvidia-* packages) are missing or incomplete: "
            "reinstall torch with its dependencies (`torchdoctor fix --env PATH`)."
        ),
        "glibc-too-old": (
            "the system C/C++ runtime is older than this torch needs, or a conda libstdc++ shadows "
            "the system one: install a torch built for this system, or update the env's libstdcxx."
        ),
        "numpy-abi": "a package was built against NumPy 1.x: install `numpy<2` or upgrade that package.",
        "cpu-build": (
            "this is a CPU-only torch on a machine with an NVIDIA GPU: install a CUDA build "
            "(`torchdoctor fix --env PATH`)."
        ),
        "gpu-arch-unsupported": (
            "this torch build has no kernels for this GPU's compute capability: install a variant "
            "whose architecture list covers it (`torchdoctor plan --env PATH`)."
        ),
        "driver-too-old": (
            "the NVIDIA driver is older than this torch build's CUDA needs: update the driver, or "
            "install a torch variant for an older CUDA (`torchdoctor plan --env PATH`)."
        ),
        "no-driver": (
            "no NVIDIA driver was found: install the driver from https://www.nvidia.com/Download/index.aspx."
        ),
        "restart-needed": (
            "the NVIDIA driver was updated but the old one is still loaded: restart the computer."
        ),
        "cuda-init-failed": (
            "the driver could not start the GPU: restart after a driver update, and check that "
            "CUDA_VISIBLE_DEVICES is unset or names a real GPU."
        ),
        "forward-compat": (
            "CUDA forward-compatibility libraries (cuda-compat) are on the library path, but they only "
            "work on data-center GPUs: remove them from LD_LIBRARY_PATH."
        ),
        "out-of-memory": "the GPU ran out of memory: close other programs using it and run the bench again.",
        "tf32-override": (
            "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE is set, so fp32 matmuls run in TF32: unset it for full "
            "fp32 precision."
        ),
        "wrong-results": (
            "results are wrong beyond rounding: update the NVIDIA driver and reinstall torch; if it "
            "persists, check the GPU itself (overclocking, temperature, power)."
        ),
        "cpu-instructions": (
            "the interpreter died on an illegal instruction: this torch build needs CPU features "
            "(AVX2/AVX-512) this processor lacks, or the install is damaged: reinstall torch."
        ),
        "python-too-old": (
            "this environment's Python is too old for the benchmark, which needs Python 3.8 or newer."
        ),
        "timeout": (
            "a hung driver, a busy GPU or a first torch.compile can take this long: run it again "
            "with a longer --timeout, and restart if the GPU stays unresponsive."
        ),
    }
)

# (code, pattern) in order; the first rule that names a code wins its place in the list.
_HINT_RULES: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (code, re.compile(pattern, re.IGNORECASE))
    for code, pattern in (
        ("no-torch", r"No module named '?torch'?(?![._\w])"),
        ("vc-redist", r"WinError 126|WinError 1114|DLL load failed|Error loading \"[^\"]+\.dll\""),
        (
            "undefined-symbol",
            r"undefined symbol|symbol lookup error|The specified procedure could not be found",
        ),
        (
            "torchvision-mismatch",
            r"operator torchvision::\w+ does not exist|No such operator torchvision::"
            r"|Could not run 'torchvision::",
        ),
        (
            "cuda-libs-missing",
            r"lib(cudart|cublas\w*|cudnn\w*|nvrtc|cusparse\w*|cufft|curand|nccl|nvJitLink)",
        ),
        ("glibc-too-old", r"GLIBC(XX)?_[\d.]+'? not found"),
        ("numpy-abi", r"compiled using NumPy 1\.x cannot be run in\s+NumPy 2|_ARRAY_API not found"),
        ("cpu-build", r"Torch not compiled with CUDA enabled"),
        (
            "gpu-arch-unsupported",
            r"no kernel image is available|is not compatible with the current PyTorch installation"
            r"|which is of (cuda|compute) capability|PyTorch no longer supports this GPU",
        ),
        ("driver-too-old", r"NVIDIA driver on your system is too old|CUDA driver version is insufficient"),
        ("no-driver", r"Found no NVIDIA driver"),
        ("restart-needed", r"Driver/library version mismatch|LIB_RM_VERSION_MISMATCH"),
        ("cuda-init-failed", r"CUDA driver initialization failed|CUDA unknown error"),
        ("forward-compat", r"forward compatibility was attempted on non supported HW"),
        ("out-of-memory", r"out of memory"),
    )
)


# What a hint says instead when the benchmark ran on the CPU of a machine where the probe found no
# NVIDIA GPU: nothing there may blame a driver or a GPU that is not there.
CPU_HINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "timeout": (
            "the benchmark timed out: a busy CPU, a slow disk on the first import of torch or a first "
            "torch.compile can take this long: run it again with a longer --timeout."
        ),
        "wrong-results": (
            "results on the CPU are wrong beyond rounding: reinstall torch "
            "(`torchdoctor fix --env PATH`); if it persists, check the machine (memory, overclocking)."
        ),
        "out-of-memory": "the computer ran out of memory: close other programs and run the bench again.",
        "cpu-build": (
            "this is a CPU-only torch, and no NVIDIA GPU was found on this machine: run the benchmark "
            "with --device cpu."
        ),
    }
)
# Hints about a GPU or its driver, left out where the probe found no NVIDIA GPU.
_GPU_ONLY: Final = frozenset(
    {"gpu-arch-unsupported", "driver-too-old", "restart-needed", "cuda-init-failed", "forward-compat"}
)


def hint(code: str) -> Hint:
    return Hint(code, HINTS[code])


def env_argument(python: str | Path) -> str:
    """What `--env` should name for the environment of `python`, quoted for a shell: its root for a
    venv or conda layout (`<root>/bin/python`, `<root>/Scripts/python.exe`), else the interpreter."""
    path = Path(python)
    root = path.parent.parent if path.parent.name in ("bin", "Scripts") else path.parent
    is_env = (root / "pyvenv.cfg").is_file() or (root / "conda-meta").is_dir()
    chosen = str(root if is_env else path)
    if path.suffix.lower() == ".exe":
        return f'"{chosen}"' if any(c in chosen for c in " &()[]{}^=;!+,`~") else chosen
    return shlex.quote(chosen)


def personal(hints: Iterable[Hint], *, python: str | None, gpu: bool) -> tuple[Hint, ...]:
    """The hints as they apply here: `--env PATH` names the real environment, and on a machine
    without an NVIDIA GPU the CPU wording is used and GPU-only advice is left out."""
    out: list[Hint] = []
    for h in hints:
        if not gpu and h.code in _GPU_ONLY:
            continue
        message = h.message if gpu else CPU_HINTS.get(h.code, h.message)
        if python is not None:
            message = message.replace("--env PATH", f"--env {env_argument(python)}")
        out.append(Hint(h.code, message))
    return tuple(dict.fromkeys(out))


def hints_for(texts: str | Iterable[str]) -> tuple[Hint, ...]:
    """The hints that error texts (an import error, a failed check, a warning) call for.

    Table-driven and pure: `_HINT_RULES` maps a pattern of the message torch, the loader or the
    driver prints (facts/torch-cuda-compat.md §6) to one of `HINTS`.
    """
    items = [texts] if isinstance(texts, str) else list(texts)
    found: list[str] = []
    for code, pattern in _HINT_RULES:
        if code not in found and any(pattern.search(text) for text in items):
            found.append(code)
    # cuda-libs-missing is only meant for the loader's "cannot open shared object file".
    if "cuda-libs-missing" in found and not any(
        re.search(r"cannot open shared object|could not be found|No such file", t, re.IGNORECASE)
        for t in items
    ):
        found.remove("cuda-libs-missing")
    return tuple(hint(code) for code in found)


# --- compute capability -----------------------------------------------------------------------------

_ARCH_RE: Final = re.compile(r"^(sm|compute)_(\d{2,3})([af]?)$")
_JETSON_SM: Final = frozenset({53, 62, 72, 87})  # integrated GPUs: only their own code runs


@dataclass(frozen=True, slots=True)
class ArchSupport:
    covered: bool | None  # None: the build did not say (empty arch list)
    how: str


def arch_support(capability: ComputeCapability, arch_list: Sequence[str]) -> ArchSupport:
    """Can a build with `arch_list` (torch.cuda.get_arch_list()) run on a GPU of `capability`?

    facts/torch-cuda-compat.md §3: SASS `sm_XY` runs on the same major with minor >= Y; PTX
    `compute_XY` is compiled by the driver for any capability >= XY; `a` (arch-specific) code runs
    only on exactly that capability, `f` (family) code within the major. Jetson iGPUs (5.3, 6.2,
    7.2, 8.7) run only code built for them.
    """
    dev = capability.sm
    sass: list[str] = []
    ptx: list[str] = []
    for token in arch_list:
        match = _ARCH_RE.match(token.strip())
        if not match:
            continue
        kind, number, suffix = match.group(1), int(match.group(2)), match.group(3)
        code = ComputeCapability.from_sm(number)
        if dev in _JETSON_SM or suffix == "a":
            runs = number == dev
        elif kind == "sm" or suffix == "f":
            # SASS, and family-portable PTX, stay within the major.
            runs = code.major == capability.major and code.minor <= capability.minor
        else:
            runs = number <= dev and number not in _JETSON_SM
        if runs:
            (sass if kind == "sm" else ptx).append(token)
    listed = " ".join(arch_list) if arch_list else "(none)"
    if not arch_list:
        return ArchSupport(None, "the build did not report its architecture list")
    if sass:
        return ArchSupport(True, f"compute capability {capability} runs {sass[-1]} kernels (build: {listed})")
    if ptx:
        return ArchSupport(
            True, f"compute capability {capability} runs through PTX {ptx[-1]}, JIT-compiled by the driver"
        )
    return ArchSupport(False, f"no kernels for sm_{dev} and no PTX that can run on it (build: {listed})")


# --- peaks ----------------------------------------------------------------------------------------

_PEAK_FIELDS: Final = ("fp32", "tf32", "fp16", "bf16", "memory_gbps")
_FIGURE_PEAK: Final[Mapping[str, str]] = MappingProxyType(
    {
        "matmul_fp32_tflops": "fp32",
        "matmul_tf32_tflops": "tf32",
        "matmul_fp16_tflops": "fp16",
        "matmul_bf16_tflops": "bf16",
        "device_memory_gbps": "memory_gbps",
    }
)


@dataclass(frozen=True, slots=True)
class GpuPeak:
    """A GPU's published dense peaks (TFLOP/s; memory in GB/s) and where they come from."""

    name: str
    match: re.Pattern[str]
    peaks: Mapping[str, float]
    source: str
    grade: str

    def for_figure(self, figure: str) -> float | None:
        key = _FIGURE_PEAK.get(figure)
        return self.peaks.get(key) if key else None


def parse_peaks(data: object) -> tuple[GpuPeak, ...]:
    """Validate `gpu_peaks.json`; raises KnowledgeError naming what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("gpus"), list):
        raise KnowledgeError("gpu_peaks.json: expected an object with a `gpus` list")
    sources = data.get("sources", {})
    out: list[GpuPeak] = []
    for i, entry in enumerate(data["gpus"]):
        where = f"gpu_peaks.json gpus[{i}]"
        if not isinstance(entry, dict):
            raise KnowledgeError(f"{where}: expected an object")
        name, pattern, source = entry.get("name"), entry.get("match"), entry.get("source")
        if not (isinstance(name, str) and isinstance(pattern, str) and isinstance(source, str)):
            raise KnowledgeError(f"{where}: `name`, `match` and `source` must be strings")
        if source not in sources:
            raise KnowledgeError(f"{where}: source {source!r} is not listed under `sources`")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise KnowledgeError(f"{where}: bad `match` pattern: {exc}") from exc
        peaks: dict[str, float] = {}
        for key in _PEAK_FIELDS:
            value = entry.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise KnowledgeError(f"{where}: `{key}` must be a positive number")
            peaks[key] = float(value)
        out.append(
            GpuPeak(
                name, compiled, MappingProxyType(peaks), str(sources[source]), str(entry.get("grade", "?"))
            )
        )
    return tuple(out)


_PEAKS_LOCK = threading.Lock()
_PEAKS_CACHE: list[tuple[GpuPeak, ...]] = []


def load_peaks() -> tuple[GpuPeak, ...]:
    """The shipped peak table (read once)."""
    with _PEAKS_LOCK:
        if not _PEAKS_CACHE:
            _PEAKS_CACHE.append(parse_peaks(json.loads(shipped_text("gpu_peaks.json"))))
        return _PEAKS_CACHE[0]


def match_peak(device_name: str | None, peaks: Sequence[GpuPeak]) -> GpuPeak | None:
    if not device_name:
        return None
    name = device_name.strip()
    return next((p for p in peaks if p.match.search(name)), None)


# --- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenchCheck:
    name: str
    passed: bool
    detail: str
    optional: bool = False  # shown, but does not decide `passed`


@dataclass(frozen=True, slots=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class PeakRef:
    """Which peak-table entry the ratios use, so a reader can check it."""

    gpu: str
    source: str
    grade: str
    peaks: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class BenchResult:
    device: str  # "cuda:0" or "cpu"
    device_name: str | None
    torch_version: str | None
    passed: bool
    checks: tuple[BenchCheck, ...]
    figures: Mapping[str, float]
    seconds: float
    reason: str | None = None  # one sentence, when not passed
    hints: tuple[Hint, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    peak: PeakRef | None = None
    warnings: tuple[str, ...] = ()
    python: str | None = None
    figure_notes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


# --- reading the script's report (untrusted JSON from another interpreter) ------------------------


def _str(d: Mapping[str, Any], key: str) -> str | None:
    value = d.get(key)
    return value if isinstance(value, str) else None


def _num(d: Mapping[str, Any], key: str) -> float | None:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _error_text(step: Mapping[str, Any]) -> str | None:
    error = step.get("error")
    if not isinstance(error, dict):
        return None
    kind = _str(error, "type") or "Error"
    message = _str(error, "message") or ""
    return f"{kind}: {message}" if message else kind


def _judge_measured(step: Mapping[str, Any], tolerance: float, what: str) -> tuple[bool, str]:
    """A matmul/conv step with max_err: pass when finite and within the tolerance."""
    err = _num(step, "max_err")
    null_err = _num(step, "null_err")
    if step.get("finite") is False:
        return False, f"{what}: the result holds NaN or infinity"
    if err is None:
        return False, f"{what}: no error was measured"
    garbage = f"; a zero result would score {null_err:.2g}" if null_err is not None else ""
    if err <= tolerance:
        return True, f"{what}: max error {err:.2g} <= tolerance {tolerance:.2g}"
    return False, f"{what}: max error {err:.2g} > tolerance {tolerance:.2g}, wrong results{garbage}"


def _judge_step(step: Mapping[str, Any]) -> BenchCheck | None:
    name = _str(step, "name")
    if not name:
        return None
    optional = step.get("optional") is True
    detail = _str(step, "detail") or ""
    error = _error_text(step)
    if error is not None:
        return BenchCheck(name, False, _first_line(error, 500), optional)
    if name.startswith("matmul-") and "max_err" in step:
        dtype = _str(step, "dtype") or name.removeprefix("matmul-")
        k = int(_num(step, "k") or 1)
        m, n = int(_num(step, "m") or 0), int(_num(step, "n") or 0)
        try:
            tolerance = matmul_tolerance(dtype, k)
        except ValueError:
            return BenchCheck(name, False, f"unknown dtype {dtype!r}", optional)
        shape = f"{m}x{k}x{n}"
        passed, text = _judge_measured(step, tolerance, f"{dtype} {shape} vs float64 CPU")
        return BenchCheck(name, passed, text, optional)
    if name.startswith("conv2d") and "max_err" in step:
        tf32 = step.get("tf32") is True
        cudnn = step.get("cudnn_version")
        backend = f"cuDNN {cudnn}" if cudnn else "3x3 conv"
        what = f"{backend}{', TF32 allowed,' if tf32 else ''} vs float64 CPU"
        passed, text = _judge_measured(step, conv_tolerance(tf32=tf32), what)
        return BenchCheck(name, passed, text, optional)
    if name == "arch-supported":
        cap = step.get("capability")
        arch_list = step.get("arch_list")
        if (
            isinstance(cap, list)
            and len(cap) == 2
            and all(isinstance(c, int) for c in cap)
            and isinstance(arch_list, list)
        ):
            support = arch_support(ComputeCapability(cap[0], cap[1]), [str(a) for a in arch_list])
            return BenchCheck(name, support.covered is not False, support.how, optional)
        return BenchCheck(
            name, False, "the GPU's capability or the build's arch list was not reported", optional
        )
    if name == "torch-import" and step.get("ok") is not True:
        return BenchCheck(name, False, detail or "import torch failed", optional)
    return BenchCheck(name, step.get("ok") is True, detail, optional)


_REASONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "torch-import": "import torch failed: {detail}",
        "torchvision-import": "torchvision is broken: {detail}",
        "cuda-available": "CUDA is not available: {detail}",
        "device": "the GPU could not be read: {detail}",
        "arch-supported": "this torch build cannot run on this GPU: {detail}",
        "memory-alloc": "allocating GPU memory failed: {detail}",
        "host-device-copy": "copying between host and GPU failed: {detail}",
        "bench-script": "{detail}",
    }
)


def _reason(check: BenchCheck, raw_steps: Sequence[Mapping[str, Any]]) -> str:
    if check.name == "torch-import":
        step = next((s for s in raw_steps if s.get("name") == "torch-import"), {})
        error = step.get("error")
        if (
            isinstance(error, dict)
            and error.get("type") == "ModuleNotFoundError"
            and error.get("module") == "torch"
        ):
            return "torch is not installed in this environment"
    if check.name.startswith(("matmul-", "conv2d")) and "tolerance" in check.detail:
        return f"{check.name} gave wrong results ({check.detail})"
    template = _REASONS.get(check.name, "{name} failed: {detail}")
    return template.format(name=check.name, detail=check.detail)


def _structured_hints(checks: Sequence[BenchCheck], steps: Sequence[Mapping[str, Any]]) -> list[str]:
    """Hints that follow from what failed, beyond what the error texts say."""
    codes: list[str] = []
    by_name = {s.get("name"): s for s in steps}
    for check in checks:
        if check.passed or check.optional:
            continue
        step = by_name.get(check.name, {})
        if check.name == "torch-import":
            error = step.get("error")
            if isinstance(error, dict) and error.get("module") == "torch":
                codes.append("no-torch")
        elif check.name == "cuda-available" and step.get("cpu_build") is True:
            codes.append("cpu-build")
        elif check.name == "arch-supported":
            codes.append("gpu-arch-unsupported")
        elif check.name.startswith(("matmul-", "conv2d")) and "error" not in step:
            if step.get("tf32_override"):
                codes.append("tf32-override")
            codes.append("wrong-results")
    return codes


def verdict(
    raw: Mapping[str, Any],
    *,
    seconds: float,
    peaks: Sequence[GpuPeak] = (),
    python: str | None = None,
) -> BenchResult:
    """Judge the script's report: which checks passed, why not, what to do, and the figures."""
    steps = _dicts(raw.get("steps"))
    checks = [c for c in (_judge_step(s) for s in steps) if c is not None]
    script_error = raw.get("error")
    if isinstance(script_error, dict):
        text = _error_text({"error": script_error}) or "unknown error"
        checks.append(BenchCheck("bench-script", False, f"the benchmark script failed: {_first_line(text)}"))
    if not any(c.name.startswith("matmul-") for c in checks) and all(c.passed for c in checks):
        # Nothing failed, but nothing was computed either: not a proof.
        checks.append(BenchCheck("bench-script", False, "no computation was checked"))
    required = [c for c in checks if not c.optional]
    passed = all(c.passed for c in required)
    failed = next((c for c in required if not c.passed), None)

    warnings = (
        tuple(w for w in raw.get("warnings", []) if isinstance(w, str))
        if isinstance(raw.get("warnings"), list)
        else ()
    )
    codes = _structured_hints(checks, steps)
    if not passed:
        texts = [c.detail for c in checks if not c.passed]
        texts += [t for t in (_error_text(s) for s in steps) if t]
        texts += [str(m) for s in steps for m in (s.get("messages") or []) if isinstance(m, str)]
        texts += list(warnings)
        codes += [h.code for h in hints_for(texts)]
    gpu = bool(raw.get("expect_gpu")) or str(raw.get("device", "")).startswith("cuda")
    hints = personal((hint(code) for code in dict.fromkeys(codes)), python=python, gpu=gpu)

    device_name = _str(raw, "device_name")
    figures: dict[str, float] = {}
    raw_figures = raw.get("figures")
    if isinstance(raw_figures, dict):
        figures = {
            k: v
            for k in sorted(raw_figures)
            if isinstance(k, str) and (v := _num(raw_figures, k)) is not None
        }
    gpu_peak = match_peak(device_name, peaks) if str(raw.get("device", "")).startswith("cuda") else None
    peak_ref = None
    if gpu_peak is not None:
        for key, value in list(figures.items()):
            peak = gpu_peak.for_figure(key)
            if peak:
                figures[f"{key}_of_peak"] = round(value / peak, 3)
        peak_ref = PeakRef(gpu_peak.name, gpu_peak.source, gpu_peak.grade, gpu_peak.peaks)
    notes_raw = raw.get("figure_notes")
    notes = {k: v for k, v in notes_raw.items() if isinstance(v, str)} if isinstance(notes_raw, dict) else {}

    torch_info = raw.get("torch")
    torch_version = _str(torch_info, "version") if isinstance(torch_info, dict) else None
    device = _str(raw, "device") or ("cpu" if raw.get("requested_device") == "cpu" else "cuda:0")
    return BenchResult(
        device=device,
        device_name=device_name,
        torch_version=torch_version,
        passed=passed,
        checks=tuple(checks),
        figures=MappingProxyType(figures),
        seconds=round(seconds, 3),
        reason=None if failed is None else _reason(failed, steps),
        hints=hints,
        skipped=tuple(
            Skipped(n, r)
            for s in _dicts(raw.get("skipped"))
            if (n := _str(s, "name")) and (r := _str(s, "reason"))
        ),
        peak=peak_ref,
        warnings=warnings,
        python=python,
        figure_notes=MappingProxyType(notes),
    )


def failure_result(
    reason: str,
    *,
    seconds: float,
    device: str,
    hints: Iterable[Hint] = (),
    python: str | None = None,
    gpu: bool = True,
) -> BenchResult:
    """A result for a benchmark that produced no report (it crashed, hung or could not start).

    `gpu`: the machine has an NVIDIA GPU (the probe found one, or one was asked for); without one
    the hints use their CPU wording."""
    return BenchResult(
        device=device,
        device_name=None,
        torch_version=None,
        passed=False,
        checks=(BenchCheck("bench-script", False, reason),),
        figures=MappingProxyType({}),
        seconds=round(seconds, 3),
        reason=reason,
        hints=personal(hints, python=python, gpu=gpu),
        python=python,
    )


# --- JSON -----------------------------------------------------------------------------------------


def bench_to_json(result: BenchResult) -> dict[str, Any]:
    """DESIGN's `bench --json` shape; the keys after `seconds` are additions."""
    checks: list[dict[str, Any]] = []
    for c in result.checks:
        item: dict[str, Any] = {"name": c.name, "passed": c.passed, "detail": c.detail}
        if c.optional:
            item["optional"] = True
        checks.append(item)
    return {
        "schema_version": SCHEMA_VERSION,
        "device": result.device,
        "device_name": result.device_name,
        "torch_version": result.torch_version,
        "passed": result.passed,
        "checks": checks,
        "figures": dict(result.figures),
        "seconds": result.seconds,
        "reason": result.reason,
        "hints": [{"code": h.code, "message": h.message} for h in result.hints],
        "skipped": [{"name": s.name, "reason": s.reason} for s in result.skipped],
        "peak": None
        if result.peak is None
        else {
            "gpu": result.peak.gpu,
            "source": result.peak.source,
            "grade": result.peak.grade,
            "peaks": dict(result.peak.peaks),
        },
        "figure_notes": dict(result.figure_notes),
        "warnings": list(result.warnings),
        "python": result.python,
    }


def bench_from_json(data: object) -> BenchResult:
    """Read `bench_to_json` output back (the history file); raises ValueError when malformed."""
    if not isinstance(data, dict):
        raise ValueError("a bench result must be a JSON object")
    try:
        checks = tuple(
            BenchCheck(str(c["name"]), bool(c["passed"]), str(c["detail"]), bool(c.get("optional", False)))
            for c in data["checks"]
        )
        figures = {str(k): float(v) for k, v in dict(data.get("figures") or {}).items()}
        peak_data = data.get("peak")
        peak = (
            PeakRef(
                str(peak_data["gpu"]),
                str(peak_data["source"]),
                str(peak_data.get("grade", "?")),
                MappingProxyType({str(k): float(v) for k, v in dict(peak_data.get("peaks") or {}).items()}),
            )
            if isinstance(peak_data, dict)
            else None
        )
        return BenchResult(
            device=str(data["device"]),
            device_name=data.get("device_name") if isinstance(data.get("device_name"), str) else None,
            torch_version=data.get("torch_version") if isinstance(data.get("torch_version"), str) else None,
            passed=bool(data["passed"]),
            checks=checks,
            figures=MappingProxyType(figures),
            seconds=float(data["seconds"]),
            reason=data.get("reason") if isinstance(data.get("reason"), str) else None,
            hints=tuple(Hint(str(h["code"]), str(h["message"])) for h in data.get("hints") or []),
            skipped=tuple(Skipped(str(s["name"]), str(s["reason"])) for s in data.get("skipped") or []),
            peak=peak,
            warnings=tuple(str(w) for w in data.get("warnings") or []),
            python=data.get("python") if isinstance(data.get("python"), str) else None,
            figure_notes=MappingProxyType(
                {str(k): str(v) for k, v in dict(data.get("figure_notes") or {}).items()}
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"malformed bench result: {exc}") from exc


# --- running it -----------------------------------------------------------------------------------


def _script() -> Traversable:
    return resources.files("torchdoctor.service.bench").joinpath("scripts/bench_env.py")


def parse_report(stdout: str) -> dict[str, Any] | None:
    """The script's JSON object from its stdout, or None. The script prints exactly one object;
    the last line is tried too, in case something wrote to stdout before it took fd 1 over."""
    text = stdout.strip()
    for candidate in (text, text.splitlines()[-1] if text else ""):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("script") == "torchdoctor-bench":
            return data
    return None


def _signal_name(returncode: int) -> str | None:
    if returncode >= 0:
        return None
    import signal  # noqa: PLC0415  (only needed to name a crash)

    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _no_report(
    completed: proc.Completed, *, seconds: float, device: str, python: str, gpu: bool = True
) -> BenchResult:
    stderr = completed.stderr.strip()
    last = _first_line(stderr.splitlines()[-1]) if stderr else ""
    signal_name = _signal_name(completed.returncode)
    codes: list[Hint] = []
    if "SyntaxError" in stderr or "Unknown option: -I" in stderr:  # Python 2 and < 3.4 know no -I
        reason = "this Python cannot run the benchmark script (it needs Python 3.8 or newer)"
        return failure_result(
            reason, seconds=seconds, device=device, hints=[hint("python-too-old")], python=python, gpu=gpu
        )
    if signal_name is not None:
        reason = f"the benchmark process crashed ({signal_name}) before reporting"
        if signal_name == "SIGILL":
            codes.append(hint("cpu-instructions"))
    elif completed.returncode in (0xC0000005, -1073741819):  # Windows access violation
        reason = "the benchmark process crashed (access violation) before reporting"
    else:
        reason = f"the benchmark process ended without a report (exit code {completed.returncode})"
    if last:
        reason += f": {last}"
    codes += list(hints_for(stderr))
    return failure_result(reason, seconds=seconds, device=device, hints=codes, python=python, gpu=gpu)


class _ProgressTail:
    """Follows the script's progress file and hands each new complete line to `emit`."""

    def __init__(self, path: Path, emit: Progress | None) -> None:
        self.path = path
        self.emit = emit
        self.offset = 0
        self.pending = b""
        self.last: str | None = None

    def poll(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return
        self.offset += len(chunk)
        lines = (self.pending + chunk).split(b"\n")
        self.pending = lines.pop()
        for line in lines:
            text = line.decode("utf-8", "replace").strip()
            if text:
                self.last = text
                if self.emit is not None:
                    self.emit(text)


def _run_script(argv: Sequence[str | Path], timeout: float, tail: _ProgressTail) -> proc.Completed:
    """proc.run in a worker thread, so this thread can follow the progress file meanwhile."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="torchdoctor-bench") as pool:
        future = pool.submit(proc.run, argv, timeout=timeout)
        while True:
            try:
                completed = future.result(timeout=0.1)
                break
            except TimeoutError:
                tail.poll()
            except BaseException:
                proc.end_running()  # Ctrl-C: the benchmark must be gone before a restore starts
                tail.poll()
                raise
    tail.poll()
    return completed


def run_bench(
    python: Path,
    *,
    device: str = "auto",
    expect_gpu: bool,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: Progress | None = None,
    peaks: Sequence[GpuPeak] | None = None,
) -> BenchResult:
    """Run the benchmark in the environment of `python` and judge it.

    Runs `python -I <bench_env.py> --device DEVICE [--expect-gpu] --progress FILE` with a timeout.
    `expect_gpu`: the machine has an NVIDIA GPU, so a torch that cannot use CUDA fails (with
    device="auto"; device="cuda" always expects one). `progress` receives a line per stage while
    the script runs. A crash, a hang or a missing report gives a failed result, not an exception;
    BadInputError only for arguments that can never work.
    """
    if device not in DEVICES:
        raise BadInputError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if not timeout > 0:
        raise BadInputError(f"the timeout must be a positive number of seconds, not {timeout!r}")
    if not python.exists():
        raise NotAnEnvironmentError(
            f"{python} does not exist", hint="give the environment's python or its folder"
        )
    table = load_peaks() if peaks is None else peaks
    target = "cpu" if device == "cpu" else "cuda:0"
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="torchdoctor-bench-") as tmp,
        resources.as_file(_script()) as script,
    ):
        tail = _ProgressTail(Path(tmp) / "progress.txt", progress)
        argv: list[str | Path] = [python, "-I", script, "--device", device, "--progress", tail.path]
        if expect_gpu or device == "cuda":
            argv.append("--expect-gpu")
        try:
            completed = _run_script(argv, timeout, tail)
        except SubprocessTimeoutError:
            stage = f" (it was {tail.last})" if tail.last else ""
            return failure_result(
                f"the benchmark did not finish within {timeout:g} s{stage}",
                seconds=time.monotonic() - started,
                device=target,
                hints=[hint("timeout")],
                python=str(python),
                gpu=expect_gpu or device == "cuda",
            )
        except OSError as exc:
            return failure_result(
                f"could not start {python}: {exc.strerror or exc}",
                seconds=time.monotonic() - started,
                device=target,
                python=str(python),
                gpu=expect_gpu or device == "cuda",
            )
    seconds = time.monotonic() - started
    raw = parse_report(completed.stdout)
    if raw is None:
        return _no_report(
            completed, seconds=seconds, device=target, python=str(python), gpu=expect_gpu or device == "cuda"
        )
    return verdict(raw, seconds=seconds, peaks=table, python=str(python))
