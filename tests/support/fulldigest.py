"""A full digest of an environment: every entry's path, kind, size, mode, owner and sha256.

Comparing two proves "restored exactly" in the strongest sense the tests can check: the same
entries, the same bytes, the same link targets, the same permission bits and owners (of folders
too). Timestamps are left out: a folder's changes whenever an entry is added and removed again.
torchdoctor's own `.torchdoctor/` (rollback copies, trash, lock) is left out as well.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def full_digest(root: Path) -> dict[str, tuple[object, ...]]:
    result: dict[str, tuple[object, ...]] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == root:
            dirs[:] = [d for d in dirs if d != ".torchdoctor"]
        for name in [*dirs, *files]:
            path = here / name
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            owner = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("link", str(path.readlink()), *owner[1:])
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir", *owner)
            else:
                result[rel] = ("file", st.st_size, *owner, hashlib.sha256(path.read_bytes()).hexdigest())
    return result


def differences(before: dict[str, tuple[object, ...]], after: dict[str, tuple[object, ...]]) -> list[str]:
    """Each differing path with both values, for a readable assertion message."""
    return [
        f"{k}: {before.get(k)} -> {after.get(k)}"
        for k in sorted(before.keys() | after.keys())
        if before.get(k) != after.get(k)
    ]
