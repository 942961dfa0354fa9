"""What a wheel on the index declares about itself, read without downloading the wheel.

A torchvision or torchaudio wheel names the torch it works with (`Requires-Dist: torch==2.13.0`,
or `torch>=2.14.0` for the stable-ABI ones), and a CUDA torch wheel names its toolkit
(`cuda-toolkit[...]==13.2.2`, before CUDA 13 `nvidia-cuda-runtime-cu12==12.8.90`). Reading these
lets a release torchdoctor has never heard of be paired and judged by what it says, not by a table.

How, in order (what pip does):
  1. PEP 658 / 714: the index marks the link with `data-dist-info-metadata` / `data-core-metadata`
     (JSON: `core-metadata`) and serves the METADATA at `<wheel URL>.metadata`; its sha256 is
     checked when the index gives one.
  2. HTTP range requests on the wheel itself ("lazy wheel"): the zip's end record, its central
     directory and the METADATA member, a few small requests, never the whole wheel. An index
     that ignores `Range` (answers 200) is not read further.
What was read is cached on disk, keyed by the wheel's sha256 (its URL where the index gives no
hash), so a second plan reads nothing. Anything that fails is a note and `None`: metadata helps
the decision, it is never required for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import threading
import urllib.error
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from email.parser import HeaderParser
from http.client import HTTPException
from pathlib import Path
from typing import Final

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from torchdoctor.service.errors import TorchdoctorError
from torchdoctor.service.install.index import IndexClient, IndexFile

_CACHE_FORMAT: Final = 1
_MAX_METADATA_BYTES: Final = 1024 * 1024  # torch's METADATA is ~10 kB
_TAIL_BYTES: Final = 64 * 1024  # the zip end record plus, usually, the whole central directory
_MAX_RANGE_BYTES: Final = 16 * 1024 * 1024  # all ranges of one wheel together
_CONTENT_RANGE_RE: Final = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+)$")
# Before CUDA 13 the toolkit came as nvidia-*-cuXX wheels; the runtime's version is X.Y.patch.
_CUDA_RUNTIME_RE: Final = re.compile(r"^nvidia-cuda-runtime-cu(\d+)$")


@dataclass(frozen=True, slots=True)
class WheelMetadata:
    """The parts of a wheel's METADATA torchdoctor decides with."""

    requires_dist: tuple[str, ...]

    def requirement_on(self, project: str) -> SpecifierSet | None:
        """The version range this wheel requires of `project` (an empty set: any version); None
        when it does not require it (requirements behind an `extra` do not count)."""
        wanted = canonicalize_name(project)
        for line in self.requires_dist:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if canonicalize_name(req.name) != wanted:
                continue
            if req.marker is not None and "extra" in str(req.marker):
                continue
            return req.specifier
        return None

    def cuda_toolkit(self) -> str | None:
        """The CUDA toolkit a torch wheel was built with, as it pins it: "13.2.2" from
        `cuda-toolkit[...]==13.2.2`, "12.8.90" from `nvidia-cuda-runtime-cu12==12.8.90`."""
        for line in self.requires_dist:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            name = canonicalize_name(req.name)
            if name != "cuda-toolkit" and not _CUDA_RUNTIME_RE.match(name):
                continue
            for spec in req.specifier:
                if spec.operator in ("==", "==="):
                    return spec.version
        return None

    def cuda_minor(self) -> str | None:
        """ "13.2" for a wheel built with CUDA 13.2.x; None for a CPU wheel."""
        toolkit = self.cuda_toolkit()
        if toolkit is None:
            return None
        parts = toolkit.split(".")
        return f"{parts[0]}.{parts[1]}" if len(parts) >= 2 else None


def parse_metadata(text: str) -> WheelMetadata:
    """A METADATA file's headers (RFC 822 style; the body is the description)."""
    headers = HeaderParser().parsestr(text, headersonly=True)
    return WheelMetadata(tuple(v.strip() for v in headers.get_all("Requires-Dist") or ()))


def admits(spec: SpecifierSet, version: Version) -> bool:
    """Whether a requirement admits `version` (its public part: 2.13.0 for 2.13.0+cu130)."""
    return spec.contains(Version(version.public), prereleases=True)


class _Unreadable(Exception):
    """This way of reading the METADATA did not work; the message says why, for the notes."""


class _RangeFile(io.RawIOBase):
    """A remote wheel as a seekable file: each read asks the index for the bytes it needs."""

    def __init__(self, reader: MetadataReader, url: str) -> None:
        super().__init__()
        self._reader = reader
        self._url = url
        self._pos = 0
        self._fetched = 0
        self._blocks: dict[int, bytes] = {}
        start, data, size = self._get(f"bytes=-{_TAIL_BYTES}")
        self._size = size
        self._blocks[start] = data

    def _get(self, byte_range: str) -> tuple[int, bytes, int]:
        try:
            with self._reader.client.open_file(self._url, {"Range": byte_range}) as response:
                status = getattr(response, "status", 200)
                if status != 206:
                    raise _Unreadable("the index does not answer range requests")
                match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", "").strip())
                if not match:
                    raise _Unreadable("the index answered a range request without Content-Range")
                start, end, size = (int(g) for g in match.groups())
                data = response.read(end - start + 1)
        except (urllib.error.URLError, HTTPException, OSError, TorchdoctorError) as exc:
            raise _Unreadable(str(getattr(exc, "reason", exc))) from exc
        self._fetched += len(data)
        if self._fetched > _MAX_RANGE_BYTES:
            raise _Unreadable(f"more than {_MAX_RANGE_BYTES} bytes would be needed")
        return start, data, size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # io's buffer type
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        data = self._span(self._pos, want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _span(self, pos: int, length: int) -> bytes:
        for start, block in self._blocks.items():
            if start <= pos and pos + length <= start + len(block):
                return block[pos - start : pos - start + length]
        # Read a little ahead: zipfile reads a member's local header, then its data.
        end = min(self._size, pos + max(length, 64 * 1024)) - 1
        start, block, _ = self._get(f"bytes={pos}-{end}")
        self._blocks[start] = block
        return block[pos - start : pos - start + length]


class MetadataReader:
    """Reads and caches wheels' METADATA through an IndexClient (its opener, timeout, TLS rules).

    `cache_dir`: where what was read is kept (default: the client's cache folder's `metadata/`).
    Thread-safe: plan reads several companions' metadata at once.
    """

    def __init__(self, client: IndexClient, *, cache_dir: Path | None = None) -> None:
        self.client = client
        self.cache_dir = cache_dir if cache_dir is not None else client.cache_dir / "metadata"
        self._lock = threading.Lock()
        self._memory: dict[str, WheelMetadata | None] = {}
        self._notes: list[str] = []

    @property
    def notes(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._notes)

    def read(self, file: IndexFile) -> WheelMetadata | None:
        """The wheel's METADATA, or None (with a note) when the index cannot give it."""
        key = file.sha256 or hashlib.sha256(file.url.encode()).hexdigest()
        with self._lock:
            if key in self._memory:
                return self._memory[key]
        found = self._from_cache(key)
        if found is None:
            found = self._fetch(file)
            if found is not None:
                self._to_cache(key, file.url, found)
        with self._lock:
            self._memory[key] = found
        return found

    def _fetch(self, file: IndexFile) -> WheelMetadata | None:
        why: list[str] = []
        if file.metadata_url is not None:
            try:
                return parse_metadata(self._metadata_file(file, file.metadata_url))
            except _Unreadable as exc:
                why.append(f"{file.metadata_url}: {exc}")
        try:
            return parse_metadata(self._from_wheel(file.url))
        except _Unreadable as exc:
            why.append(f"{file.url}: {exc}")
        with self._lock:
            self._notes.append(f"could not read the metadata of {file.filename} ({'; '.join(why)})")
        return None

    def _metadata_file(self, file: IndexFile, url: str) -> str:
        try:
            with self.client.open_file(url) as response:
                data = response.read(_MAX_METADATA_BYTES + 1)
        except (urllib.error.URLError, HTTPException, OSError, TorchdoctorError) as exc:
            raise _Unreadable(str(getattr(exc, "reason", exc))) from exc
        if len(data) > _MAX_METADATA_BYTES:
            raise _Unreadable(f"larger than {_MAX_METADATA_BYTES} bytes")
        if file.metadata_sha256 and hashlib.sha256(data).hexdigest() != file.metadata_sha256.lower():
            raise _Unreadable("its sha256 is not the one the index page gives")
        return data.decode("utf-8", errors="replace")

    def _from_wheel(self, url: str) -> str:
        remote = _RangeFile(self, url)
        try:
            with zipfile.ZipFile(io.BufferedReader(remote, buffer_size=64 * 1024)) as zf:
                names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
                if not names:
                    raise _Unreadable("the wheel has no .dist-info/METADATA")
                info = zf.getinfo(names[0])
                if info.file_size > _MAX_METADATA_BYTES:
                    raise _Unreadable(f"its METADATA is larger than {_MAX_METADATA_BYTES} bytes")
                return zf.read(info).decode("utf-8", errors="replace")
        except zipfile.BadZipFile as exc:
            raise _Unreadable(f"not a readable zip ({exc})") from exc

    # The cache: one small JSON file per wheel, written atomically.

    def _path(self, key: str) -> Path:
        return self.cache_dir / f"{key[:40]}.json"

    def _from_cache(self, key: str) -> WheelMetadata | None:
        # Keyed by content: the same wheel from a mirror has the same metadata.
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
            if data["format"] != _CACHE_FORMAT or data["key"] != key:
                return None
            requires = data["requires_dist"]
            if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return WheelMetadata(tuple(requires))

    def _to_cache(self, key: str, url: str, found: WheelMetadata) -> None:
        path = self._path(key)
        record: Mapping[str, object] = {
            "format": _CACHE_FORMAT,
            "key": key,
            "url": url,
            "requires_dist": list(found.requires_dist),
        }
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(record), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()  # a cache that cannot be written only costs a re-read next time
