"""What a snapshot is, on disk and in memory: the saved files' records and `manifest.json`.

A snapshot folder holds `manifest.json` and `files/000000`, ...; the manifest is what a later run
trusts after a crash, so it is written to a temporary name, flushed to disk and renamed into place,
and read back only after checking that every path it names lies inside the environment.
"""


# The os functions take the long-path strings `io_path` returns on Windows, as they are.
# ruff: noqa: PTH105, PTH123

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from torchdoctor.service.errors import EXIT_NOT_RESTORED, BadInputError, TorchdoctorError
from torchdoctor.service.install.fileops import Owner, io_path
from torchdoctor.service.install.survey import (
    from_rel,
    inside,
    norm,
)
from torchdoctor.service.rules.interrupted import (
    MANIFEST,
)

SCHEMA_VERSION: Final = 1
STORE: Final = "files"


class SnapshotError(TorchdoctorError):
    """The snapshot could not be taken; nothing in the environment was changed."""

    code = "snapshot-failed"


class NotWritableError(BadInputError):
    """The environment's folders cannot be written (read-only, immutable): exit 2, nothing changed."""

    code = "not-writable"


class RestoreFailedError(TorchdoctorError):
    """The previous torch could not be put back: the environment is left changed (exit 3)."""

    code = "restore-failed"
    exit_code = EXIT_NOT_RESTORED


class DamagedSnapshotError(RestoreFailedError):
    """The saved copy itself is incomplete; nothing in the environment was touched."""

    code = "snapshot-damaged"


class SnapshotState(StrEnum):
    PENDING = "pending"  # a fix is (or was, if its process is gone) changing the environment
    RESTORED = "restored"  # put back; only still on disk when the caller kept it


@dataclass(frozen=True, slots=True)
class SavedFile:
    path: str  # relative to the env root, "/"-separated; absolute when outside the root
    stored: str  # name under files/
    size: int
    mtime_ns: int
    sha256: str | None = None  # for copies; a hard link is the same inode, so the same bytes
    link_target: str | None = None  # a symbolic link: saved as its target text, not its contents
    owner: Owner | None = None  # None only in manifests written before owners were kept


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str
    folder: Path
    env_root: Path
    site_packages: tuple[str, ...]  # root-relative like SavedFile.path
    projects: tuple[str, ...]
    versions: dict[str, str]  # "torch" -> "2.7.1+cu128", as found in the dist-info names
    files: tuple[SavedFile, ...]
    dirs: tuple[str, ...]  # every folder inside the saved areas (empty ones included), and parents
    areas: tuple[str, ...]  # top-level folders the projects own (saved and incoming ones)
    strays: tuple[str, ...]  # pip's `~orch` leftovers present when the snapshot was taken
    incoming_files: tuple[str, ...]  # every file the incoming wheels would write
    created: float
    pid: int
    pid_started: float | None
    state: SnapshotState = SnapshotState.PENDING
    linked: int = 0  # how many files were hard-linked (the rest were copied)
    seconds: float = 0.0  # how long taking it took
    bytes_total: int = field(default=0)
    dir_owners: dict[str, Owner] = field(default_factory=dict)
    started: float = 0.0  # wall clock when taking it began, less a margin (see _CTIME_MARGIN_S)
    scripts: str = "bin"  # the scripts folder, root-relative

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST


# ---------------------------------------------------------------------------------------------
# Manifest


def _owner_list(owner: Owner | None) -> list[int] | None:
    return None if owner is None else [owner.mode, owner.uid, owner.gid]


def _owner_from(value: object) -> Owner | None:
    if not isinstance(value, list) or len(value) != 3:
        return None
    mode, uid, gid = (int(v) for v in value)
    return Owner(mode, uid, gid)


def write_manifest(snapshot: Snapshot) -> None:
    data = {
        "schema_version": SCHEMA_VERSION,
        "id": snapshot.id,
        "state": str(snapshot.state),
        "env_root": str(snapshot.env_root),
        "site_packages": list(snapshot.site_packages),
        "scripts": snapshot.scripts,
        "projects": list(snapshot.projects),
        "versions": snapshot.versions,
        "created": snapshot.created,
        "started": snapshot.started,
        "pid": snapshot.pid,
        "pid_started": snapshot.pid_started,
        "linked": snapshot.linked,
        "seconds": snapshot.seconds,
        "bytes_total": snapshot.bytes_total,
        "dirs": list(snapshot.dirs),
        "dir_owners": {d: _owner_list(o) for d, o in snapshot.dir_owners.items()},
        "areas": list(snapshot.areas),
        "strays": list(snapshot.strays),
        "incoming_files": list(snapshot.incoming_files),
        "files": [{k: v for k, v in _file_dict(f).items() if v is not None} for f in snapshot.files],
    }
    tmp = snapshot.folder / (MANIFEST + ".tmp")
    with open(io_path(tmp), "w", encoding="utf-8") as out:
        json.dump(data, out, indent=1)
        out.flush()
        os.fsync(out.fileno())  # the manifest is what a later run trusts after a crash
    os.replace(io_path(tmp), io_path(snapshot.manifest_path))


def _file_dict(f: SavedFile) -> dict[str, object]:
    return {
        "path": f.path,
        "stored": f.stored,
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "sha256": f.sha256,
        "link_target": f.link_target,
        "owner": _owner_list(f.owner),
    }


def load_snapshot(folder: Path) -> Snapshot:
    """Read a snapshot's manifest; SnapshotError when it is missing or not ours."""
    try:
        data = json.loads(Path(io_path(folder / MANIFEST)).read_text(encoding="utf-8"))
        if data.get("schema_version") != SCHEMA_VERSION:
            raise SnapshotError(f"{folder} has an unknown manifest version")
        files = tuple(
            SavedFile(
                path=str(f["path"]),
                stored=str(f["stored"]),
                size=int(f["size"]),
                mtime_ns=int(f["mtime_ns"]),
                sha256=f.get("sha256"),
                link_target=f.get("link_target"),
                owner=_owner_from(f.get("owner")),
            )
            for f in data["files"]
        )
        dir_owners = {str(d): o for d, v in dict(data.get("dir_owners", {})).items() if (o := _owner_from(v))}
        snapshot = Snapshot(
            id=str(data["id"]),
            folder=folder,
            env_root=Path(data["env_root"]),
            site_packages=tuple(data["site_packages"]),
            projects=tuple(data["projects"]),
            versions=dict(data["versions"]),
            files=files,
            dirs=tuple(data["dirs"]),
            areas=tuple(data["areas"]),
            strays=tuple(data["strays"]),
            incoming_files=tuple(data.get("incoming_files", ())),
            created=float(data["created"]),
            pid=int(data["pid"]),
            pid_started=data.get("pid_started"),
            state=SnapshotState(data["state"]),
            linked=int(data.get("linked", 0)),
            seconds=float(data.get("seconds", 0.0)),
            bytes_total=int(data.get("bytes_total", 0)),
            dir_owners=dir_owners,
            started=float(data.get("started", 0.0)),
            scripts=str(data.get("scripts", "bin")),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"cannot read the snapshot in {folder}: {exc}") from None
    _check_manifest_paths(snapshot)
    return snapshot


def _check_manifest_paths(snapshot: Snapshot) -> None:
    """A restore writes where the manifest says: only inside the environment, only our names."""
    root = norm(snapshot.env_root)
    allowed = [root, *(from_rel(root, sp) for sp in snapshot.site_packages)]
    for rel in (
        *(f.path for f in snapshot.files),
        *snapshot.dirs,
        *snapshot.strays,
        *snapshot.incoming_files,
    ):
        if not inside(norm(from_rel(root, rel)), allowed):
            raise SnapshotError(
                f"the snapshot in {snapshot.folder} names a path outside the environment: {rel}"
            )
    if any(not re.fullmatch(r"\d{6,}", f.stored) for f in snapshot.files):
        raise SnapshotError(f"the snapshot in {snapshot.folder} names a file outside its folder")
