"""`torchdoctor bench --env PATH [--json] [--device auto|cuda|cpu] [--timeout S]`.

Proves that an environment's torch computes correctly on this machine and how fast. While the
benchmark runs (seconds, longer on a first torch.compile) each stage is reported on stderr; the
result is a summary table, or DESIGN's JSON with --json. Exit 0 passed, 1 failed, 2 bad input.
Every run is added to the benchmark history, which the tray shows.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Final, TextIO

from torchdoctor.agent.child import add_tray_child_argument, cancel_on_stdin_eof
from torchdoctor.agent.output import (
    Fit,
    display_path,
    home_text,
    paint,
    table,
    terminal_width,
    use_colour,
    wrap,
    write_json,
)
from torchdoctor.service.bench.history import bench_and_record
from torchdoctor.service.bench.run import (
    DEFAULT_TIMEOUT_S,
    DEVICES,
    FIRST_IMPORT_TIMEOUT_S,
    BenchResult,
    bench_to_json,
)
from torchdoctor.service.envs.discover import environment_from_path
from torchdoctor.service.errors import EXIT_ATTENTION, EXIT_OK, BadInputError, ProbeError
from torchdoctor.service.probe.hardware import resolve_hardware

FIGURE_LABELS: Final = {
    "matmul_fp32_tflops": "matmul fp32",
    "matmul_tf32_tflops": "matmul tf32",
    "matmul_fp16_tflops": "matmul fp16",
    "matmul_bf16_tflops": "matmul bf16",
    "matmul_fp32_gflops": "matmul fp32",
    "h2d_pinned_gbps": "host to device (pinned)",
    "d2h_pinned_gbps": "device to host (pinned)",
    "device_memory_gbps": "device memory (copy)",
}
_UNITS: Final = (("_tflops", "TFLOP/s"), ("_gflops", "GFLOP/s"), ("_gbps", "GB/s"))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="prove that an environment's torch computes correctly on this GPU, and how fast",
        description=(
            "Run a short benchmark inside the environment: torch imports, CUDA works on this GPU, "
            "matmuls (fp32, tf32, fp16, bf16) and a convolution match a float64 CPU reference, and "
            "how fast matmuls and memory copies run against the GPU's published peak."
        ),
    )
    parser.add_argument(
        "--env", required=True, type=Path, metavar="PATH", help="the environment's folder or its python"
    )
    parser.add_argument("--json", action="store_true", help="write JSON instead of a table")
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="auto: the GPU when this machine has one (and then it must work), else the CPU",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=(
            f"give up after S seconds (default {DEFAULT_TIMEOUT_S:g}), counted once torch is imported; "
            f"the first import has {FIRST_IMPORT_TIMEOUT_S:g} s of its own"
        ),
    )
    add_tray_child_argument(parser)
    parser.set_defaults(handler=run)


class _Progress:
    """Stage lines on stderr while the benchmark runs, with the seconds elapsed."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        if text == "done":
            return
        self.stream.write(f"  [{time.monotonic() - self.started:5.1f} s] {text}\n")
        self.stream.flush()


def _expect_gpu(device: str, progress: _Progress) -> bool:
    """Whether a GPU must work: --device cuda says so; auto asks the hardware probe."""
    if device != "auto":
        return device == "cuda"
    try:
        hardware = resolve_hardware(None)
    except ProbeError as exc:
        progress(f"could not probe the GPU ({exc}); using CUDA only if torch finds it")
        return False
    return hardware.has_nvidia_gpu


def run(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise BadInputError(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
    env = environment_from_path(args.env)
    progress = _Progress(sys.stderr)
    if args.tray_child:
        cancel_on_stdin_eof()
    expect_gpu = _expect_gpu(args.device, progress)
    if expect_gpu:
        target = "the GPU"
    elif args.device == "cpu":
        target = "the CPU"
    else:
        target = "the GPU if torch finds one, else the CPU"
    progress(f"benchmarking {env.python} on {target} (this takes a few seconds)")
    result = bench_and_record(
        env, device=args.device, expect_gpu=expect_gpu, timeout=args.timeout, progress=progress
    )
    if args.json:
        write_json(bench_to_json(result))
    else:
        for line in render(result, env_root=env.root, colour=use_colour(sys.stdout)):
            print(line)
    return EXIT_OK if result.passed else EXIT_ATTENTION


# --- the table ---------------------------------------------------------------------------------


def figure_unit(key: str) -> str:
    return next((unit for suffix, unit in _UNITS if key.endswith(suffix)), "")


def figure_number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def figure_rows(result: BenchResult) -> list[list[str]]:
    """[label, value with unit, share of the published peak] per figure (ratios are folded in)."""
    rows = []
    for key, value in result.figures.items():
        if key.endswith("_of_peak"):
            continue
        ratio = result.figures.get(f"{key}_of_peak")
        peak = ""
        if ratio is not None and result.peak is not None:
            published = value / ratio if ratio else 0.0
            peak = f"{ratio:.0%} of {figure_number(published)}"
        note = result.figure_notes.get(key, "")
        label = FIGURE_LABELS.get(key, key)
        rows.append([label, f"{figure_number(value)} {figure_unit(key)}".strip(), peak, note])
    return rows


def render(result: BenchResult, *, env_root: Path, colour: bool, width: int | None = None) -> list[str]:
    """The summary a person reads, in `width` columns (the terminal's by default); pure, so tests
    read it without a terminal."""
    cols = width if width is not None else terminal_width()
    verdict = paint("PASSED", "green", colour) if result.passed else paint("FAILED", "red", colour)
    where = result.device if not result.device_name else f"{result.device} ({result.device_name})"
    torch = f"torch {result.torch_version}" if result.torch_version else "torch"
    lines = [
        *wrap(f"{torch} on {where}: {verdict} in {result.seconds:.1f} s", cols, rest="  "),
        *wrap(display_path(env_root), cols, first="environment: "),
        "",
    ]

    shown: list[list[str]] = []
    for check in result.checks:
        state = "pass" if check.passed else "FAIL"
        if check.optional:
            state += " (optional)"
        hue = "green" if check.passed else ("yellow" if check.optional else "red")
        shown.append([check.name, paint(state, hue, colour), home_text(check.detail)])
    lines += table(shown, ["CHECK", "RESULT", "DETAIL"], width=cols, fit=(Fit.END, Fit.KEEP, Fit.WRAP))

    rows = figure_rows(result)
    if rows:
        lines.append("")
        lines += table(
            rows,
            ["FIGURE", "VALUE", "OF PEAK", "MEASURED ON"],
            width=cols,
            fit=(Fit.END, Fit.KEEP, Fit.KEEP, Fit.WRAP),
        )
        if result.peak is not None:
            peaks = f"{result.peak.gpu}, from {result.peak.source}"
            lines += [paint(line, "dim", colour) for line in wrap(peaks, cols, first="peaks: ")]
    if result.skipped:
        lines.append("")
        skipped = "; ".join(f"{s.name} ({s.reason})" for s in result.skipped)
        lines += wrap(home_text(skipped), cols, first="skipped: ", rest="  ")
    if not result.passed:
        lines.append("")
        lines += [
            paint(line, "bold", colour) for line in wrap(home_text(result.reason or ""), cols, first="why: ")
        ]
    for h in result.hints:
        lines += wrap(home_text(h.message), cols, first="  hint: ")
    return lines
