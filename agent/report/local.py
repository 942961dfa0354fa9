"""This machine's history, for the one-machine report: benchmarks, fixes and drivers.

Each source is read where it already lives, and nothing here writes:
  benchmarks  service/bench/history.py's bench-history.jsonl (what `bench` and `fix` append)
  fixes       the `fix-<UTC stamp>-<name>.log` files `fix` writes in the log folder. They are the
              only record a fix leaves; `parse_fix_log` reads the lines fix writes at fixed points
  drivers     the tray's monitor-state.json (the driver it saw last, and when), and the
              `event: driver-changed` lines of its rotating tray.log (when the driver changed)
The parsers are pure; `gather` is the I/O around them. A source that cannot be read is a note.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from torchdoctor.agent.report.model import (
    CPU_FIGURES,
    BenchPoint,
    BenchSeries,
    DriverEvent,
    FixEvent,
    LocalHistory,
)
from torchdoctor.service import paths
from torchdoctor.service.bench import history
from torchdoctor.service.monitor.state import SCHEMA_VERSION as STATE_SCHEMA
from torchdoctor.service.monitor.state import MonitorState, state_file, state_from_json

# fix's log names and lines (agent/commands/fix.py, service/install/fix.py).
_FIX_NAME: Final = re.compile(r"^fix-(\d{8}T\d{6}Z)-.*\.log$")
_MAX_FIX_LOGS: Final = 200  # the newest; older fixes are history nobody scrolls to
_MAX_LOG_BYTES: Final = 2 * 1024 * 1024
# The tray's log lines (agent/tray/logs.py format, agent/tray/app.py message), in local time.
_DRIVER_LINE: Final = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ INFO torchdoctor\.tray: "
    r"event: driver-changed driver: (.*?) -> (.*)$"
)
# The figures the chart draws, and the peak each is measured against (service/bench/run.py).
PEAK_OF: Final = {
    "matmul_fp32_tflops": "fp32",
    "matmul_tf32_tflops": "tf32",
    "matmul_fp16_tflops": "fp16",
    "matmul_bf16_tflops": "bf16",
    "device_memory_gbps": "memory_gbps",
}


def bench_series(records: Iterable[history.BenchRecord]) -> tuple[BenchSeries, ...]:
    """The history's records grouped per environment, oldest first within each."""
    grouped: dict[str, list[BenchPoint]] = {}
    for record in records:
        result = record.result
        peaks: dict[str, float] = {}
        if result.peak is not None:
            peaks = {f: result.peak.peaks[k] for f, k in PEAK_OF.items() if k in result.peak.peaks}
        point = BenchPoint(
            at=record.at,
            passed=result.passed,
            device=result.device,
            device_name=result.device_name,
            torch_version=result.torch_version,
            figures={k: v for k, v in result.figures.items() if k in PEAK_OF or k in CPU_FIGURES},
            peaks=peaks,
            reason=result.reason,
        )
        grouped.setdefault(str(record.env_root), []).append(point)
    return tuple(
        BenchSeries(env, tuple(sorted(points, key=lambda p: p.at))) for env, points in sorted(grouped.items())
    )


def parse_fix_log(text: str, *, log: str, at: datetime | None) -> FixEvent | None:
    """One fix's log as an event; None for a file that is not a fix log."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("torchdoctor fix "):
        return None
    env = lines[0].removeprefix("torchdoctor fix ")
    installed = ""
    before: str | None = None
    failed: str | None = None
    restored = verified = False
    for line in lines[1:]:
        if line.startswith("plan: "):
            installed = line.removeprefix("plan: ").split(" from ", 1)[0]
        elif line.startswith("before: "):
            before = line.removeprefix("before: ")
        elif line.startswith("FAILED: "):
            failed = line.removeprefix("FAILED: ")
        elif line.startswith("restored snapshot "):
            restored = True
        elif line.startswith("check: "):
            verified = True
    if failed is not None:
        outcome = "failed, restored" if restored or "restored exactly" in failed else "failed, NOT restored"
        if "before anything was changed" in failed or "nothing was changed" in failed:
            outcome = "failed, nothing changed"
        return FixEvent(at, env, installed, outcome, failed, log, before)
    if verified:
        return FixEvent(at, env, installed, "installed", None, log, before)
    # No end line: still running, or killed, in which case the next fix restores it first.
    early = "the log ends early (still running, or killed)"
    return FixEvent(at, env, installed, "unfinished", early, log, before)


def fix_time(name: str) -> datetime | None:
    match = _FIX_NAME.match(name)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def driver_events(lines: Iterable[str]) -> tuple[DriverEvent, ...]:
    """The tray log's driver changes, oldest first. Its times are the machine's local time."""
    events = []
    for line in lines:
        match = _DRIVER_LINE.match(line.rstrip("\r\n"))
        if match is None:
            continue
        at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").astimezone()
        old, new = (None if v == "None" else v for v in (match.group(2), match.group(3)))
        events.append(DriverEvent(at, old, new))
    return tuple(sorted(events, key=lambda e: e.at or datetime.min.replace(tzinfo=UTC)))


def _read_text(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            return fh.read(_MAX_LOG_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None


def _fix_events(log_dir: Path, notes: list[str]) -> tuple[FixEvent, ...]:
    try:
        logs = sorted((p for p in log_dir.glob("fix-*.log") if fix_time(p.name)), key=lambda p: p.name)
    except OSError as exc:
        notes.append(f"the fix logs in {log_dir} could not be listed ({exc})")
        return ()
    events = []
    for path in logs[-_MAX_FIX_LOGS:]:
        text = _read_text(path)
        event = parse_fix_log(text, log=str(path), at=fix_time(path.name)) if text is not None else None
        if event is not None:
            events.append(event)
    return tuple(events)


def _tray_log_lines(log_dir: Path) -> list[str]:
    # tray.log.5 is the oldest of the rotated files; read oldest first.
    names: Sequence[str] = [f"tray.log.{i}" for i in range(5, 0, -1)] + ["tray.log"]
    lines: list[str] = []
    for name in names:
        text = _read_text(log_dir / name)
        if text is not None:
            lines.extend(line for line in text.splitlines() if "driver-changed" in line)
    return lines


def _monitor_state(notes: list[str]) -> MonitorState | None:
    """The tray's state, read only: monitor/state.load_state would set a bad file aside, and a
    report must change nothing."""
    path = state_file()
    text = _read_text(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != STATE_SCHEMA:
            notes.append(f"the tray's state {path} has schema_version {version!r}, not {STATE_SCHEMA}")
            return None
        return state_from_json(data)
    except (ValueError, AttributeError) as exc:
        notes.append(f"the tray's state {path} could not be read ({exc})")
        return None


def gather() -> LocalHistory:
    """Read every history this machine keeps; what is missing is empty, what is broken a note."""
    notes: list[str] = []
    records = history.records()
    log_dir = paths.log_dir()
    state = _monitor_state(notes)
    hardware = state.hardware if state is not None else None
    return LocalHistory(
        bench=bench_series(records),
        fixes=_fix_events(log_dir, notes),
        drivers=driver_events(_tray_log_lines(log_dir)),
        driver_now=hardware.driver_version if hardware is not None else None,
        driver_checked_at=state.checked_at if state is not None else None,
        notes=tuple(notes),
    )
