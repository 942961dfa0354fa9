"""Reading the fleet's `--from` documents from disk, bounded.

A `--from` value is a file, a folder (its `*.json` files) or a glob pattern, expanded here so it
works where no shell expands it (cmd.exe, a scheduled task). Each file is read only if it is a
regular file no larger than `MAX_BYTES`; whatever is wrong with one becomes an `Unreadable` with
its reason, and the rest are read.
"""

from __future__ import annotations

import codecs
import glob
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from torchdoctor.agent.report.documents import DocumentError, parse_document
from torchdoctor.agent.report.model import MachineDoc, Unreadable

# A machine with fifty environments, each with findings, writes about 100 KB; 4 MiB is far past any
# real document and small enough that a wrong file (a log, a core dump) costs nothing to refuse.
MAX_BYTES: Final = 4 * 1024 * 1024
MAX_FILES: Final = 20_000
_GLOB_CHARS: Final = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Loaded:
    documents: tuple[MachineDoc, ...]
    unreadable: tuple[Unreadable, ...]


def expand(sources: Sequence[str]) -> tuple[list[Path], list[Unreadable]]:
    """The files the `--from` values name, each once, in the order given (a folder's sorted)."""
    files: list[Path] = []
    problems: list[Unreadable] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        key = os.path.normcase(path.absolute())
        if key not in seen:
            seen.add(key)
            files.append(path)

    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.json") if not p.is_dir())
            if not found:
                problems.append(Unreadable(source, "the folder has no .json files"))
            for p in found:
                add(p)
        elif path.exists():
            add(path)
        elif _GLOB_CHARS & set(source):
            matches = sorted(Path(m) for m in glob.glob(source))  # noqa: PTH207 - a user's pattern, any root
            if not matches:
                problems.append(Unreadable(source, "the pattern matches no file"))
            for p in matches:
                if p.is_dir():
                    for inner in sorted(p.glob("*.json")):
                        add(inner)
                else:
                    add(p)
        else:
            problems.append(Unreadable(source, "no such file or folder"))
    return files, problems


def decode(data: bytes) -> str:
    """UTF-8 (with or without a BOM), or UTF-16 with a BOM: what Windows PowerShell 5's `>` writes."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def read_one(path: Path, *, name: str, max_bytes: int = MAX_BYTES) -> MachineDoc | Unreadable:
    source = str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            # A FIFO or a device would block or never end; only plain files are documents.
            return Unreadable(source, "not a regular file")
        if info.st_size > max_bytes:
            return Unreadable(source, f"larger than {max_bytes // 1024} KiB ({info.st_size} bytes)")
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        return Unreadable(source, f"could not be read ({exc.strerror or exc})")
    if len(data) > max_bytes:
        return Unreadable(source, f"larger than {max_bytes // 1024} KiB")
    try:
        text = decode(data)
    except UnicodeDecodeError as exc:
        return Unreadable(source, f"not UTF-8 text (byte {exc.start})")
    modified = datetime.fromtimestamp(info.st_mtime, UTC)
    try:
        return parse_document(text, name=name, source=source, modified=modified)
    except DocumentError as exc:
        return Unreadable(source, str(exc))


def machine_names(files: Iterable[Path]) -> list[str]:
    """Each file's machine name: its stem (`gpu-node-17.json` is gpu-node-17), with the folder
    added where two folders hold the same stem."""
    paths = list(files)
    stems: dict[str, int] = {}
    for p in paths:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    return [p.stem if stems[p.stem] == 1 else f"{p.stem} ({p.parent.name or p.parent})" for p in paths]


def load(sources: Sequence[str], *, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> Loaded:
    files, problems = expand(sources)
    if len(files) > max_files:
        problems.append(
            Unreadable(f"{len(files) - max_files} more files", f"not read: at most {max_files} per report")
        )
        files = files[:max_files]
    documents: list[MachineDoc] = []
    for path, name in zip(files, machine_names(files), strict=True):
        result = read_one(path, name=name, max_bytes=max_bytes)
        if isinstance(result, Unreadable):
            problems.append(result)
        else:
            documents.append(result)
    return Loaded(tuple(documents), tuple(problems))
