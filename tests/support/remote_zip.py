"""Reading one member of a remote zip (a wheel) with HTTP range requests: the central directory at
the end, then that member's bytes, instead of the whole multi-gigabyte file."""

from __future__ import annotations

import io
import socket
import urllib.request
from typing import Final
from urllib.parse import urlsplit

_BLOCK: Final = 1 << 20


def reachable(url: str, timeout: float = 5.0) -> str | None:
    """None when `url`'s host answers on 443 within `timeout`, else why not (for a skip reason)."""
    host = urlsplit(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host} cannot be reached from this machine ({exc.strerror or exc})"


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over an https URL, fetched in 1 MiB blocks as zipfile asks."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        super().__init__()
        self.url = url
        self.timeout = timeout
        request = urllib.request.Request(url, method="HEAD")  # noqa: S310 - https only, asserted below
        assert url.startswith("https://")
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            self.size = int(answer.headers["Content-Length"])
        self.pos = 0
        self.blocks: dict[int, bytes] = {}
        self.fetched = 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _block(self, index: int) -> bytes:
        if index not in self.blocks:
            start = index * _BLOCK
            end = min(self.size, start + _BLOCK) - 1
            request = urllib.request.Request(self.url, headers={"Range": f"bytes={start}-{end}"})  # noqa: S310
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                self.blocks[index] = answer.read()
            self.fetched += len(self.blocks[index])
        return self.blocks[index]

    def read(self, size: int = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.pos + size)
        out = bytearray()
        while self.pos < end:
            block = self._block(self.pos // _BLOCK)
            offset = self.pos % _BLOCK
            chunk = block[offset : offset + (end - self.pos)]
            if not chunk:
                break
            out += chunk
            self.pos += len(chunk)
        return bytes(out)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
