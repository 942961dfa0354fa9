"""File digests, read in chunks: wheels and torch libraries run to gigabytes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

CHUNK: Final = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
