"""The benchmark history: one JSON line per run in `state_dir()/bench-history.jsonl`.

Append-only so a crash mid-write loses at most that line (a torn last line is skipped when
read); bounded, so years of tray-triggered runs do not grow it without end: once it holds more
than `MAX_RECORDS` lines it is rewritten with the newest ones (atomically, through a temporary
file). A file lock serialises writers: the tray and a CLI run may finish at the same moment.

Each line: {"schema_version": 1, "env": ROOT, "python": PATH, "at": ISO-8601 UTC, "result": {...}}
with `result` in `bench_to_json`'s shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from filelock import FileLock

from torchdoctor.service import paths
from torchdoctor.service.bench.run import (
    DEFAULT_TIMEOUT_S,
    BenchResult,
    Progress,
    bench_from_json,
    bench_to_json,
    run_bench,
)
from torchdoctor.service.models import PythonEnv

HISTORY_NAME: Final = "bench-history.jsonl"
MAX_RECORDS: Final = 500
SCHEMA_VERSION: Final = 1
_LOCK_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class BenchRecord:
    env_root: Path
    python: Path | None
    at: datetime  # timezone-aware, UTC
    result: BenchResult


def history_file() -> Path:
    return paths.state_dir() / HISTORY_NAME


def env_key(env_root: Path) -> str:
    """How environments are compared: absolute, and case-folded where the OS ignores case.
    Not resolved: following links could stall on a network drive and would merge a venv with
    the interpreter it links to."""
    return os.path.normcase(_absolute(env_root))


def _absolute(path: Path) -> str:
    return os.path.normpath(Path(path).absolute())


def _lock(path: Path) -> FileLock:
    return FileLock(str(path) + ".lock", timeout=_LOCK_TIMEOUT_S)


def append(
    env_root: Path,
    result: BenchResult,
    *,
    python: Path | None = None,
    at: datetime | None = None,
    max_records: int = MAX_RECORDS,
) -> BenchRecord:
    """Add one run to the history and return it as a record."""
    when = (at or datetime.now(UTC)).astimezone(UTC)
    record = BenchRecord(Path(_absolute(env_root)), python, when, result)
    line = json.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "env": str(record.env_root),
            "python": str(python) if python is not None else None,
            "at": when.isoformat(),
            "result": bench_to_json(result),
        },
        ensure_ascii=True,
    )
    path = history_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock(path):
        with path.open("a", encoding="utf-8", newline="\n") as fh:
            fh.write(line + "\n")
        _trim(path, max_records)
    return record


def _trim(path: Path, max_records: int) -> None:
    """Keep the newest `max_records` lines; the caller holds the lock."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if len(lines) <= max_records:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines[-max_records:]) + "\n", encoding="utf-8", newline="\n")
    tmp.replace(path)


def _parse(line: str) -> BenchRecord | None:
    try:
        data = json.loads(line)
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            return None
        at = datetime.fromisoformat(str(data["at"]))
        python = data.get("python")
        return BenchRecord(
            Path(str(data["env"])),
            Path(python) if isinstance(python, str) else None,
            at if at.tzinfo else at.replace(tzinfo=UTC),
            bench_from_json(data["result"]),
        )
    except (ValueError, KeyError, TypeError):
        return None  # a torn or foreign line: skip it, keep the rest


def _lines_newest_first(path: Path) -> Iterator[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    yield from reversed(text.splitlines())


def records(env_root: Path | None = None) -> list[BenchRecord]:
    """Readable records, oldest first; only `env_root`'s when given."""
    key = env_key(env_root) if env_root is not None else None
    found = []
    for line in _lines_newest_first(history_file()):
        record = _parse(line)
        if record is not None and (key is None or env_key(record.env_root) == key):
            found.append(record)
    return found[::-1]


def last_result(env_root: Path) -> BenchRecord | None:
    """The newest benchmark of the environment at `env_root` (what the tray shows), or None."""
    key = env_key(env_root)
    for line in _lines_newest_first(history_file()):
        record = _parse(line)
        if record is not None and env_key(record.env_root) == key:
            return record
    return None


def bench_and_record(
    env: PythonEnv,
    *,
    device: str = "auto",
    expect_gpu: bool,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: Progress | None = None,
) -> BenchResult:
    """run_bench on `env`, then append the result to the history: what the CLI, the tray and
    `fix` call, so every benchmark a person sees is also the tray's "last benchmark"."""
    result = run_bench(env.python, device=device, expect_gpu=expect_gpu, timeout=timeout, progress=progress)
    append(env.root, result, python=env.python)
    return result
