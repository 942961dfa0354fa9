"""The download caches, kept to a size: wheels and index pages, least recently used out first.

  wheels  `<cache>/wheels`, at most WHEEL_CACHE_MAX_BYTES (three CUDA torch wheels and their
          companions); a reused wheel is touched, so the wheel a retried fix needs stays.
  index   `<cache>/index`, at most INDEX_CACHE_MAX_BYTES of project pages.
After each download or page write the folder is trimmed to its cap, oldest modification time
first, never removing the file just written. `clean` empties both (`torchdoctor cache clean`);
a `.part` file another running download is writing is left alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

from torchdoctor.service import paths
from torchdoctor.service.errors import TorchdoctorError

WHEEL_CACHE_MAX_BYTES: Final = 12 * 1024**3
INDEX_CACHE_MAX_BYTES: Final = 256 * 1024**2
PART_SUFFIX: Final = ".part"


def wheel_cache() -> Path:
    return paths.cache_dir() / "wheels"


def index_cache() -> Path:
    return paths.cache_dir() / "index"


class CacheCleanError(TorchdoctorError):
    """A cached file could not be removed (permissions, a file held open on Windows)."""

    code = "cache-clean-failed"


@dataclass(frozen=True, slots=True)
class CachedFile:
    path: Path
    size: int
    mtime: float


@dataclass(frozen=True, slots=True)
class CleanResult:
    removed: tuple[CachedFile, ...]
    in_use: tuple[Path, ...]  # .part files of downloads still running
    dry_run: bool

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.removed)


def _files(folder: Path) -> list[CachedFile]:
    found: list[CachedFile] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return found
    for entry in entries:
        with contextlib.suppress(OSError):
            info = entry.stat()
            if entry.is_file():
                found.append(CachedFile(entry, info.st_size, info.st_mtime))
    return found


def to_evict(files: Iterable[CachedFile], *, max_bytes: int, keep: frozenset[Path]) -> list[CachedFile]:
    """Which files go so the rest fit in `max_bytes`: least recently used first, `keep` never (pure)."""
    ordered = sorted(files, key=lambda f: f.mtime)
    total = sum(f.size for f in ordered)
    doomed: list[CachedFile] = []
    for item in ordered:
        if total <= max_bytes:
            break
        if item.path in keep:
            continue
        doomed.append(item)
        total -= item.size
    return doomed


def trim(folder: Path, *, max_bytes: int, keep: Iterable[Path] = ()) -> list[Path]:
    """Evict from `folder` down to `max_bytes` (`.part` files are not counted or touched)."""
    files = [f for f in _files(folder) if not f.path.name.endswith(PART_SUFFIX)]
    removed: list[Path] = []
    for item in to_evict(files, max_bytes=max_bytes, keep=frozenset(keep)):
        with contextlib.suppress(OSError):
            item.path.unlink()
            removed.append(item.path)
    return removed


def touch(path: Path) -> None:
    """Mark a cached file as just used (atime is unreliable: noatime, relatime)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def part_owner_running(part: Path) -> bool:
    """True when `<name>.<pid>.part` belongs to a process that is still running (not this one)."""
    owner = part.name[: -len(PART_SUFFIX)].rpartition(".")[2]
    return owner.isdigit() and int(owner) != os.getpid() and psutil.pid_exists(int(owner))


def clean(*, dry_run: bool = False, folders: Iterable[Path] | None = None) -> CleanResult:
    """Remove every cached wheel and index page (and stale `.part` files); with `dry_run`, only say which."""
    removed: list[CachedFile] = []
    in_use: list[Path] = []
    for folder in folders if folders is not None else (wheel_cache(), index_cache()):
        for item in sorted(_files(folder), key=lambda f: f.path.name):
            if item.path.name.endswith(PART_SUFFIX) and part_owner_running(item.path):
                in_use.append(item.path)
                continue
            if not dry_run:
                try:
                    item.path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise CacheCleanError(
                        f"could not remove {item.path}: {exc.strerror or exc}",
                        hint=f"{len(removed)} files were removed before it; close what uses it and try again",
                    ) from None
            removed.append(item)
    return CleanResult(tuple(removed), tuple(in_use), dry_run)
