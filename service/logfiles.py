"""Log files: a unique name per run, private to the user, and pruned so the folder stays small.

Names are `<kind>-<UTC stamp>-<pid>-<label>.log`, e.g. `fix-20260102T030405Z-4711-proj.log`, and
the file is created exclusively: two runs in the same second (the tray's fix and a fix from a
terminal) never share one. Every new log prunes its kind: the newest `LOG_KEEP` of a kind are
kept, and of those the ones older than `LOG_MAX_AGE_DAYS` go too, except the newest, which stays
however old (it is the one a bug report needs).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TextIO, cast

from torchdoctor.service import paths

LOG_KEEP: Final = 20
LOG_MAX_AGE_DAYS: Final = 30
_NAME_RE: Final = re.compile(r"^(?P<kind>[a-z]+(?:-[a-z]+)*)-(?P<stamp>\d{8}T\d{6}Z)(?:-[^/\\]*)?\.log$")
_LABEL_RE: Final = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class LogFile:
    path: Path
    kind: str
    mtime: float


def _label(text: str) -> str:
    cleaned = _LABEL_RE.sub("_", text).strip("_-")[:40]
    return cleaned or "run"


def create_log(kind: str, label: str = "", *, folder: Path | None = None) -> tuple[Path, TextIO]:
    """Create a new, never-before-used log of `kind` and open it for writing (0600).

    Older logs of the same kind are pruned first (`prune_logs`).
    """
    where = paths.private_dir(folder if folder is not None else paths.log_dir())
    prune_logs(where, kind)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix = f"-{_label(label)}" if label else ""
    for attempt in range(100):
        extra = f".{attempt}" if attempt else ""
        path = where / f"{kind}-{stamp}-{os.getpid()}{extra}{suffix}.log"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        except FileExistsError:
            continue
        return path, cast(TextIO, os.fdopen(fd, "w", encoding="utf-8"))
    raise FileExistsError(f"no unused log name for {kind} in {where}")


def list_logs(folder: Path) -> list[LogFile]:
    """The logs torchdoctor named in `folder`, newest first."""
    found: list[LogFile] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return found
    for entry in entries:
        match = _NAME_RE.match(entry.name)
        if match is None:
            continue
        with contextlib.suppress(OSError):
            found.append(LogFile(entry, match.group("kind"), entry.stat().st_mtime))
    found.sort(key=lambda log: log.mtime, reverse=True)
    return found


def logs_to_prune(
    logs: list[LogFile], *, keep: int = LOG_KEEP, max_age_days: float = LOG_MAX_AGE_DAYS, now: float
) -> list[LogFile]:
    """Which of `logs` (newest first) go: past the newest `keep` of their kind, or too old (pure)."""
    doomed: list[LogFile] = []
    rank: dict[str, int] = {}
    for log in logs:
        position = rank.get(log.kind, 0)
        rank[log.kind] = position + 1
        too_old = now - log.mtime > max_age_days * 86400
        if position >= keep or (too_old and position > 0):
            doomed.append(log)
    return doomed


def prune_logs(folder: Path, kind: str | None = None) -> list[Path]:
    """Remove the logs (of `kind`, or of every kind) that `logs_to_prune` picks; return them."""
    logs = [log for log in list_logs(folder) if kind is None or log.kind == kind]
    removed: list[Path] = []
    for log in logs_to_prune(logs, now=time.time()):
        with contextlib.suppress(OSError):
            log.path.unlink()
            removed.append(log.path)
    return removed
