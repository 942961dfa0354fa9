"""Where a fix keeps its rollback copies, and which of them an interrupted fix left behind.

Read-only: `check` uses it to report an environment a killed `fix` left half-changed, and must
not write anything to do so. The writing side (taking, restoring, discarding) is
`install/snapshot.py`, which imports the locations from here so that the two never disagree.
It sits in `rules` because `check` does (`install` is above `rules` and may use it; not the other
way round).

A rollback folder is `<base>/<id>/` with `manifest.json`; `<id>` is `YYYYmmddTHHMMSS-<pid>-<hex>`.
Anything else in a base (`<id>.discarded` on its way out, `<id>.damaged` set aside for a person)
is not a snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

from torchdoctor.service import paths

ID_RE: Final = re.compile(r"^\d{8}T\d{6}-(?P<pid>\d+)-[0-9a-f]{6}$")
MANIFEST: Final = "manifest.json"
PENDING: Final = "pending"
DISCARDED_SUFFIX: Final = ".discarded"
DAMAGED_SUFFIX: Final = ".damaged"


def snapshot_bases(root: Path) -> list[Path]:
    """Where snapshots live: in the env root (same filesystem), else under our state folder."""
    digest = hashlib.sha256(os.path.normcase(os.path.realpath(root)).encode("utf-8", "surrogatepass"))
    return [root / ".torchdoctor" / "rollback", paths.state_dir() / "rollback" / digest.hexdigest()[:24]]


def snapshot_folders(root: Path) -> Iterator[Path]:
    """Every folder that is (or is becoming) a snapshot of `root`, oldest id first."""
    for base in snapshot_bases(root):
        with contextlib.suppress(OSError):
            yield from sorted(p for p in base.iterdir() if ID_RE.match(p.name) and p.is_dir())


def leftovers(root: Path, suffix: str) -> list[Path]:
    """Folders in the bases whose name is an id plus `suffix` (discarded or set aside)."""
    found: list[Path] = []
    for base in snapshot_bases(root):
        with contextlib.suppress(OSError):
            found += sorted(
                p for p in base.iterdir() if p.name.endswith(suffix) and ID_RE.match(p.name[: -len(suffix)])
            )
    return found


def alive(pid: int, started: float | None) -> bool:
    """Is the process that wrote a snapshot still running (a reused pid does not count)?"""
    try:
        process = psutil.Process(pid)
        now_started = process.create_time()
        if process.status() == psutil.STATUS_ZOMBIE:
            return False  # killed, not yet reaped by its parent: it will never write again
    except psutil.Error:
        return False
    return started is None or abs(now_started - started) < 1.0


def same_place(a: Path, b: Path) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


@dataclass(frozen=True, slots=True)
class Interrupted:
    """A fix that stopped half-way: its snapshot is still pending and its process is gone."""

    folder: Path
    created: float | None
    torch_before: str | None  # the torch version the snapshot holds; None: there was none
    readable: bool  # False: the manifest cannot be read (the next fix sets it aside)


def find_interrupted(root: Path) -> list[Interrupted]:
    """The pending snapshots of `root` whose fix is no longer running, oldest first. Reads only."""
    found: list[Interrupted] = []
    for folder in snapshot_folders(root):
        manifest = folder / MANIFEST
        if not manifest.is_file():
            continue  # being written, or killed before it changed anything
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            state, pid = str(data["state"]), int(data["pid"])
            started = data.get("pid_started")
            env_root = Path(str(data["env_root"]))
            versions = data.get("versions") or {}
            created = float(data["created"])
        except (OSError, ValueError, KeyError, TypeError):
            match = ID_RE.match(folder.name)
            if match and not alive(int(match.group("pid")), None):
                found.append(Interrupted(folder, None, None, readable=False))
            continue
        if state != PENDING or not same_place(env_root, root):
            continue
        if alive(pid, float(started) if isinstance(started, (int, float)) else None):
            continue
        torch = versions.get("torch") if isinstance(versions, dict) else None
        found.append(Interrupted(folder, created, str(torch) if torch else None, readable=True))
    return found
