"""The tray's long actions: a reinstall (`fix`) or a benchmark (`bench`), run as our own CLI.

A child process, not a thread: Cancel then works exactly as Ctrl-C does in a terminal (the fix
restores the environment and exits 1), a crash in an installer cannot take the tray down, and
the tray does not keep torch-sized imports in memory. The child's stderr lines are its progress.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from torchdoctor.agent.commands.bench import FIGURE_LABELS, figure_number, figure_unit
from torchdoctor.agent.tray.menu import JobKind, env_name
from torchdoctor.service.bench.history import last_result
from torchdoctor.service.bench.run import BenchResult, bench_from_json
from torchdoctor.service.errors import EXIT_NOT_RESTORED, EXIT_OK
from torchdoctor.service.install.urlsecrets import child_environ
from torchdoctor.service.proc import no_window_flags

log = logging.getLogger("torchdoctor.jobs")

CANCEL_GRACE_S = 600.0  # a restore of a 5 GB CUDA torch by hard links takes seconds; copies take longer
BENCH_TIMEOUT_S = 900.0
# The figure a notification quotes: the first of these the benchmark measured.
_HEADLINE_FIGURES = ("matmul_fp16_tflops", "matmul_bf16_tflops", "matmul_fp32_tflops", "matmul_fp32_gflops")


def own_command() -> list[str]:
    """How to start our own CLI: the frozen exe, or this interpreter with `-m torchdoctor.agent`
    (`-m torchdoctor` cannot work: torchdoctor is a namespace package)."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "torchdoctor.agent"]


@dataclass(frozen=True, slots=True)
class JobRequest:
    kind: JobKind
    env: str
    label: str  # "torch 2.7.1+cu128"
    hardware_file: Path | None = None
    index_base: str | None = None


@dataclass(frozen=True, slots=True)
class JobOutcome:
    ok: bool
    cancelled: bool
    exit_code: int
    title: str
    body: str


def job_argv(request: JobRequest, prefix: Sequence[str]) -> list[str]:
    argv = [*prefix, "fix" if request.kind is JobKind.REINSTALL else "bench", "--env", request.env]
    if request.kind is JobKind.REINSTALL:
        argv.append("--yes")
        if request.index_base:
            argv += ["--index-base", request.index_base]
        if request.hardware_file is not None:
            # The benchmark proves a build on this machine's GPU; when the GPU is only described by
            # a file (support, tests), that proof would be about some other machine.
            argv += ["--hardware", str(request.hardware_file), "--no-bench"]
    else:
        argv.append("--json")
    argv.append("--tray-child")
    return argv


def figure_words(result: BenchResult) -> str:
    """ "fp16 matmul 38 TFLOP/s, 92 % of this GPU's peak", or what the CPU did."""
    for key in _HEADLINE_FIGURES:
        value = result.figures.get(key)
        if value is None:
            continue
        text = f"{FIGURE_LABELS[key]} {figure_number(value)} {figure_unit(key)}"
        ratio = result.figures.get(f"{key}_of_peak")
        if ratio is not None:
            text += f", {ratio * 100:.0f} % of this GPU's peak"
        return text
    return f"all checks passed on {result.device_name or result.device}"


def _last_error_line(lines: Sequence[str]) -> str:
    for line in reversed(lines):
        if line.startswith("torchdoctor: "):
            return line.removeprefix("torchdoctor: ")
    return lines[-1].strip() if lines else "no output"


def outcome(
    request: JobRequest, code: int, stdout: str, stderr_lines: Sequence[str], cancelled: bool
) -> JobOutcome:
    """What the person is told when a job ends. Pure, apart from reading the benchmark history."""
    name = env_name(request.env)
    if request.kind is JobKind.REINSTALL:
        if code == EXIT_OK:
            record = last_result(Path(request.env)) if request.hardware_file is None else None
            if record is not None and record.result.passed:
                detail = figure_words(record.result)
            elif request.hardware_file is not None:
                detail = "verified; not benchmarked, as the hardware was read from a file"
            else:
                detail = "verified"
            return JobOutcome(
                True, False, code, f"{request.label} installed and verified", f"{name}: {detail}"
            )
        if code == EXIT_NOT_RESTORED:
            return JobOutcome(
                False,
                cancelled,
                code,
                f"Reinstall failed and {name} could NOT be restored",
                _last_error_line(stderr_lines),
            )
        if cancelled:
            return JobOutcome(
                False, True, code, "Reinstall cancelled", f"{name} was restored exactly as it was."
            )
        return JobOutcome(
            False, False, code, f"Reinstall failed; {name} is unchanged", _last_error_line(stderr_lines)
        )
    if cancelled:
        return JobOutcome(False, True, code, "Benchmark cancelled", name)
    try:
        result = bench_from_json(json.loads(stdout))
    except (ValueError, TypeError, KeyError):
        return JobOutcome(
            False, False, code, f"Benchmark of {name} did not finish", _last_error_line(stderr_lines)
        )
    # A machine without a usable GPU benchmarks on the CPU; calling that a GPU benchmark would lie.
    what = "GPU benchmark" if result.device.startswith("cuda") else "Benchmark (on the CPU)"
    if result.passed:
        return JobOutcome(True, False, code, f"{what} passed: {name}", figure_words(result))
    return JobOutcome(False, False, code, f"{what} failed: {name}", result.reason or "see the log")


class JobRunner:
    """Runs one job to its end in the calling thread; `cancel()` may be called from any thread."""

    def __init__(
        self, request: JobRequest, *, on_progress: Callable[[str], None], prefix: Sequence[str] | None = None
    ) -> None:
        self.request = request
        self._on_progress = on_progress
        self._prefix = list(prefix) if prefix is not None else own_command()
        self._proc: subprocess.Popen[bytes] | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Like Ctrl-C: the child restores the environment, then exits."""
        self._cancelled.set()
        with self._lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        log.info("cancelling %s in %s", self.request.kind.value, self.request.env)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if sys.platform == "win32":
            # The child's wait for pip/uv cannot be interrupted on Windows: end the installer so the
            # child's KeyboardInterrupt arrives and it restores.
            _end_grandchildren(proc.pid)

    def run(self) -> JobOutcome:
        argv = job_argv(self.request, self._prefix)
        log.info("starting: %s", " ".join(argv))
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        env |= child_environ()  # index credentials: the argv holds the URL without them
        with self._lock:
            if self._cancelled.is_set():
                return outcome(self.request, 1, "", [], cancelled=True)
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                creationflags=no_window_flags(),
            )
        proc = self._proc
        assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - pipes were asked for
        stdout_chunks: list[bytes] = []
        reader = threading.Thread(target=_read_all, args=(proc.stdout, stdout_chunks), daemon=True)
        reader.start()
        lines: list[str] = []
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            lines.append(line)
            log.info("%s: %s", self.request.kind.value, line)
            progress = progress_text(line)
            if progress is not None:
                self._on_progress(progress)
        timeout = BENCH_TIMEOUT_S if self.request.kind is JobKind.BENCH else None
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        reader.join(5)
        stdout = b"".join(stdout_chunks).decode("utf-8", "replace")
        result = outcome(self.request, code, stdout, lines, cancelled=self._cancelled.is_set())
        log.info("finished: exit %d: %s — %s", code, result.title, result.body)
        return result


def _read_all(stream: IO[bytes], into: list[bytes]) -> None:
    into.append(stream.read())


def progress_text(line: str) -> str | None:
    """The fix's step lines ("[3] Installing with uv") and download tenths become the tooltip's
    progress; the benchmark's stage lines ("  [ 1.2 s] matmul") likewise."""
    text = line.strip()
    if text.startswith("[") and "]" in text:
        head, _, rest = text.partition("]")
        if head[1:].strip().isdigit() or head[1:].strip().endswith("s"):
            return rest.strip() or None
    if text.startswith("downloaded "):
        return text
    return None


def _end_grandchildren(pid: int) -> None:
    try:
        import psutil  # noqa: PLC0415 - only when cancelling on Windows

        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.terminate()
    except Exception as exc:  # cancelling must not raise in the tray
        log.warning("could not end the installer processes: %s", exc)
