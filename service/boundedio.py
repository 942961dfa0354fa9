"""Reading data we do not control, with a limit on every axis that could hang or exhaust us.

Hardware files, the user's knowledge override, index pages and wheel METADATA all come from
somewhere torchdoctor does not trust. Each read here is bounded in size (a `/dev/zero` or an
endless body stops at the cap), refuses anything but a regular file *before* opening it (a FIFO
would block `open()` forever), opens non-blocking where the OS has that flag, and turns JSON
nested too deep for the parser (100,000 brackets: RecursionError) into a sentence.
A zip member is read by its declared size *and* its actual decompressed size: a zip bomb that
lies about its size still stops at the cap.

Every failure is one sentence naming the file, raised as `BoundedReadError` (a BadInputError,
exit 2) or as the caller's own BadInputError subclass (`error=HardwareFileError`), so each load
site keeps its error code.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Final, Protocol

from torchdoctor.service.errors import BadInputError

# Hardware files and knowledge overrides are a few KB (the shipped knowledge.json: 14 KB); a
# megabyte is seventy times that and still instant. 200,000 GPUs do not fit in it.
SMALL_FILE_LIMIT: Final = 1024 * 1024
# A torch METADATA is ~2 KB; the largest seen on PyPI are a few hundred KB of long descriptions.
METADATA_LIMIT: Final = 8 * 1024 * 1024
_CHUNK: Final = 1 << 16


class BoundedReadError(BadInputError):
    """Input that is too large, too deep, not a regular file, or not readable at all."""

    code = "unreadable-input"


def _regular_file_fd(path: Path, what: str, error: type[BadInputError]) -> int:
    """Open `path` for reading only if it is a regular file, without ever blocking in open()."""
    try:
        before = path.stat()
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(before.st_mode):
        raise error(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(before.st_mode):
        raise error(f"{what} {path} is not a regular file (a device, pipe or socket)")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    # The name may have been swapped for a FIFO between stat and open: check what we opened.
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(f"{what} {path} is not a regular file (a device, pipe or socket)")
    return fd


def read_bytes(
    path: Path,
    *,
    limit: int = SMALL_FILE_LIMIT,
    what: str = "file",
    error: type[BadInputError] = BoundedReadError,
) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; `error` (one sentence) otherwise."""
    fd = _regular_file_fd(path, what, error)
    try:
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{what} {path} is larger than {describe_size(limit)}; it cannot be what we expect")
    return data


def read_text(
    path: Path,
    *,
    limit: int = SMALL_FILE_LIMIT,
    what: str = "file",
    error: type[BadInputError] = BoundedReadError,
) -> str:
    """`read_bytes` decoded as UTF-8 (a byte order mark is dropped)."""
    data = read_bytes(path, limit=limit, what=what, error=error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text") from None


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def read_stream(stream: Readable, *, limit: int) -> bytes | None:
    """Read `stream` to its end; None as soon as it holds more than `limit` bytes."""
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        total += len(chunk)
        if total > limit:
            return None


def loads_json(text: str | bytes, *, what: str, error: type[BadInputError] = BoundedReadError) -> object:
    """`json.loads` that turns too-deep nesting into one sentence instead of a RecursionError.

    ValueError (json.JSONDecodeError) still comes through, for the caller to word with its line
    and column.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{what} nests too deeply to be a document we read") from None


def read_zip_member(archive: zipfile.ZipFile, name: str, *, limit: int = METADATA_LIMIT, what: str) -> bytes:
    """One member of a zip, refused when its declared or its actual uncompressed size passes `limit`."""
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise BoundedReadError(
            f"{what} says it unpacks to {describe_size(info.file_size)} "
            f"(more than {describe_size(limit)}); not read"
        )
    with archive.open(info) as member:
        data = read_stream(member, limit=limit)
    if data is None:
        raise BoundedReadError(f"{what} unpacks to more than {describe_size(limit)}; not read")
    return data


def describe_size(count: int) -> str:
    """ "3.5 GiB": a byte count for a sentence."""
    if count < 1024:
        return f"{count} bytes"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"
