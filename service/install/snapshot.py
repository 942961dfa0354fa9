"""Keeping the files a fix may change so that a failed `fix` can put them back, offline and exactly.

Layout: `<env.root>/.torchdoctor/rollback/<id>/` holds `manifest.json` and `files/000000`, ...:
one flat, numbered name per saved file (short paths: torch's deep folders would otherwise meet
Windows' 260-character limit a second time). Files are **hard-linked** there: the environment and
the snapshot sit on the same filesystem, so keeping a 5 GB CUDA torch costs no copy and no time.
That is safe because pip and uv never rewrite an installed file in place (they unlink it and
write a new one), so the linked inode keeps the old bytes. Where linking fails (FAT, some network
drives, an immutable file, a root we cannot write: then the snapshot goes to
`state_dir()/rollback/`), a file is copied and its sha256 recorded; a copy that still matches
by size and hash counts as unchanged at restore time, as a link with the same inode does.

What is saved (`survey.py` finds it), per site-packages folder, for each project named (the torch
family and every project the installer may change for it, see fix.projects_to_save):
  - every existing file its dist-info's RECORD lists inside the environment, including
    `../../bin/torchrun`-style scripts and `<name>.data/` data and headers;
  - the whole dist-info folder, and everything under the project's top-level folders;
  - pip's `~orch`-style stashes (a killed pip's leftovers): saved and restored like the rest;
    ones that appear *during* a fix are removed by a restore, and a successful fix's discard
    deletes the recorded ones (they only make pip warn "Ignoring invalid distribution ~orch");
  - every file the incoming wheels will write that exists already (another package's script or
    data file), copied rather than linked, since no uninstall removes it first;
  - the mode and owner of every saved file and folder: when root repairs a user's environment,
    the user still owns it afterwards.

A restore touches only paths the snapshot knows: it removes files under the projects' own
folders, files the incoming wheels were predicted to write, and files inside the environment
that appeared after the snapshot was taken. A new RECORD naming `../../../bin/python` or
`pyvenv.cfg` costs nothing: those predate the snapshot and are never the projects' to delete.

The manifest's `state` is "pending" from the moment the snapshot is complete until the fix
discards it. Discarding renames the folder away (`<id>.discarded`) before deleting anything, so a
kill at any moment leaves a complete pending snapshot or none. A pending snapshot whose process
is gone is what `recover` restores; one whose saved copy is damaged is set aside (`<id>.damaged`)
with a message, so a damaged leftover never blocks every later fix.
"""

# The os functions take the `\\\\?\\` strings `io_path` returns on Windows, as they are.
# ruff: noqa: PTH103, PTH104, PTH105, PTH106, PTH108, PTH112, PTH113, PTH114, PTH115, PTH123, PTH211

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Final

import psutil
from packaging.utils import canonicalize_name

from torchdoctor.service.errors import EXIT_NOT_RESTORED, BadInputError, TorchdoctorError
from torchdoctor.service.install import fileops, killpoints
from torchdoctor.service.install.fileops import Owner, io_path
from torchdoctor.service.install.hashing import CHUNK, sha256_file
from torchdoctor.service.install.survey import (
    Incoming,
    Survey,
    from_rel,
    incoming,
    inside,
    key,
    norm,
    really_inside,
    scripts_dir,
    survey,
    to_rel,
)
from torchdoctor.service.install.survey import distinct as distinct_folders
from torchdoctor.service.models import PythonEnv
from torchdoctor.service.rules.interrupted import (
    DAMAGED_SUFFIX,
    DISCARDED_SUFFIX,
    ID_RE,
    MANIFEST,
    alive,
    leftovers,
    same_place,
    snapshot_bases,
    snapshot_folders,
)

TORCH_FAMILY: Final = ("torch", "torchvision", "torchaudio")
SCHEMA_VERSION: Final = 1
STORE: Final = "files"
# A file's change time is taken by the kernel's coarse clock; one second of margin makes "changed
# after the snapshot began" never miss a file written at its very start.
_CTIME_MARGIN_S: Final = 1.0
_MAX_LISTED: Final = 5
# Never the projects' to delete, whatever a RECORD says: the interpreter and the venv's marker.
_PROTECTED_RE: Final = re.compile(r"^(pyvenv\.cfg|pythonw?(\d+(\.\d+)?t?)?(_d)?(\.exe)?)$", re.IGNORECASE)


class SnapshotError(TorchdoctorError):
    """The snapshot could not be taken; nothing in the environment was changed."""

    code = "snapshot-failed"


class NotWritableError(BadInputError):
    """The environment's folders cannot be written (read-only, immutable): exit 2, nothing changed."""

    code = "env-not-writable"


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
# Saving and putting back one file


def _copy_hashing(src: Path, dst: Path) -> str:
    digest = hashlib.sha256()
    with open(io_path(src), "rb") as fin, open(io_path(dst), "xb") as fout:
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            fout.write(chunk)
    shutil.copystat(io_path(src), io_path(dst))
    return digest.hexdigest()


def _place(src: Path, dst: Path) -> bool:
    """Hard-link `src` to `dst`, else copy it; True when linked."""
    try:
        os.link(io_path(src), io_path(dst), follow_symlinks=False)
    except OSError:
        shutil.copy2(io_path(src), io_path(dst), follow_symlinks=False)
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Manifest


def _owner_list(owner: Owner | None) -> list[int] | None:
    return None if owner is None else [owner.mode, owner.uid, owner.gid]


def _owner_from(value: object) -> Owner | None:
    if not isinstance(value, list) or len(value) != 3:
        return None
    mode, uid, gid = (int(v) for v in value)
    return Owner(mode, uid, gid)


def _write_manifest(snapshot: Snapshot) -> None:
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


# ---------------------------------------------------------------------------------------------
# Taking a snapshot


def _process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _new_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}-{secrets.token_hex(3)}"


def _make_folder(root: Path, snap_id: str) -> Path:
    errors: list[str] = []
    for base in snapshot_bases(root):
        folder = base / snap_id
        try:
            os.makedirs(io_path(folder / STORE))
        except OSError as exc:
            errors.append(f"{base}: {exc.strerror or exc}")
            continue
        return folder
    raise SnapshotError(
        "cannot create a folder for the rollback copy: " + "; ".join(errors),
        hint="check that the environment's folder is writable",
    )


def check_writable(folders: Sequence[Path]) -> None:
    """NotWritableError (exit 2) if a file cannot be created in one of `folders` that exists.

    Tried, not inferred from permission bits: root ignores those, an immutable flag or a read-only
    mount does not care about them, and Windows ACLs are not bits at all.
    """
    for folder in folders:
        if not os.path.isdir(io_path(folder)):
            continue
        try:
            handle, name = tempfile.mkstemp(prefix=".torchdoctor-write-test-", dir=io_path(folder))
        except OSError as exc:
            raise NotWritableError(
                f"cannot write here: {folder} is not writable ({exc.strerror or exc})",
                hint="nothing was changed; run torchdoctor as the user who owns the environment, "
                "or make it writable (a read-only mount, an immutable flag)",
            ) from None
        os.close(handle)
        with contextlib.suppress(OSError):
            os.unlink(name)


@dataclass(slots=True)
class _Saved:
    files: list[SavedFile] = field(default_factory=list)
    linked: int = 0
    total: int = 0


def _save_files(items: Sequence[Path], root: Path, store: Path, copy_only: set[str]) -> _Saved:
    saved = _Saved()
    space_checked = False
    half = len(items) // 2
    for index, path in enumerate(items):
        if index == half:
            killpoints.reached("snapshot-half-saved")
        name = f"{index:06d}"
        st = os.lstat(io_path(path))
        rel = to_rel(root, path)
        owner = Owner.of(st)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(io_path(path))
            saved.files.append(SavedFile(rel, name, 0, st.st_mtime_ns, link_target=target, owner=owner))
            continue
        saved.total += st.st_size
        if key(path) not in copy_only:
            try:
                os.link(io_path(path), io_path(store / name), follow_symlinks=False)
            except OSError:
                pass  # another filesystem, FAT, an immutable file, a share without links: copy
            else:
                saved.linked += 1
                saved.files.append(SavedFile(rel, name, st.st_size, st.st_mtime_ns, owner=owner))
                continue
            if not space_checked:
                _check_space(store, sum(os.lstat(io_path(p)).st_size for p in items[index:]))
                space_checked = True
        sha = _copy_hashing(path, store / name)
        saved.files.append(SavedFile(rel, name, st.st_size, st.st_mtime_ns, sha, owner=owner))
    return saved


def _folders_to_keep(found: Survey, root: Path, targets: Sequence[Path]) -> dict[str, Path]:
    """The survey's folders, every folder above a saved file, and every existing folder above a
    file the incoming wheels will write, up to the root: a restore recreates them with their owner
    and mode, and removes only empty folders that are not among them."""
    folders = dict(found.dirs)
    for path in [*found.files.values(), *targets]:
        parent = path.parent
        while inside(parent, [root]) and key(parent) not in folders:
            if os.path.isdir(io_path(parent)) and not os.path.islink(io_path(parent)):
                folders[key(parent)] = parent
            parent = parent.parent
    return folders


def take_snapshot(
    env: PythonEnv, projects: Sequence[str] = TORCH_FAMILY, *, incoming: Sequence[Path] = ()
) -> Snapshot:
    """Save every file of `projects` as installed now (see the module docstring for what and how).

    `incoming`: the wheel files the fix is about to install, so a restore can also clear what a
    killed installer wrote before recording it. Raises NotWritableError (exit 2) for an
    environment that cannot be written, SnapshotError for anything else; either way the
    environment is untouched and no snapshot is left.
    """
    started = time.monotonic()
    started_wall = time.time() - _CTIME_MARGIN_S
    root = norm(env.root)
    site_packages = distinct_folders(env.site_packages)
    scripts = scripts_dir(root, env.platform)
    check_writable([*site_packages, scripts])
    new = _incoming_of(env, root, site_packages, incoming)
    found = survey(site_packages, projects, root=root, extra_tops=new.tops)
    # What the new wheels will write is part of the state before, wherever it lies (a script of
    # the same name from another package, a data file, a module file at the top of site-packages).
    for path in new.targets:
        if os.path.lexists(io_path(path)):
            found.add_file(path)
    if found.unreadable:
        shown = "; ".join(found.unreadable[:_MAX_LISTED])
        raise SnapshotError(
            f"cannot read {len(found.unreadable)} entries that a restore would need: {shown}",
            hint="nothing was changed; check the permissions of those files",
        )
    # Such a file that no RECORD lists is not uninstalled first, so an installer may overwrite it
    # in place, and a hard link would then see the new bytes: those few are copied instead.
    copy_only = {key(p) for p in new.targets} - found.recorded
    folders = _folders_to_keep(found, root, new.targets)
    snap_id = _new_id()
    folder = _make_folder(root, snap_id)
    try:
        killpoints.reached("snapshot-folder-made")
        saved = _save_files(sorted(found.files.values()), root, folder / STORE, copy_only)
        dir_owners = {to_rel(root, d): Owner.of(os.lstat(io_path(d))) for d in folders.values()}
        snapshot = Snapshot(
            id=snap_id,
            folder=folder,
            env_root=root,
            site_packages=tuple(to_rel(root, sp) for sp in site_packages),
            projects=tuple(canonicalize_name(p) for p in projects),
            versions=dict(sorted(found.versions.items())),
            files=tuple(saved.files),
            dirs=tuple(sorted(dir_owners)),
            areas=tuple(sorted(to_rel(root, a) for a in found.areas.values())),
            strays=tuple(sorted(to_rel(root, s) for s in found.strays.values())),
            incoming_files=tuple(sorted(to_rel(root, p) for p in new.targets)),
            created=time.time(),
            pid=os.getpid(),
            pid_started=_process_started(os.getpid()),
            linked=saved.linked,
            seconds=round(time.monotonic() - started, 3),
            bytes_total=saved.total,
            dir_owners=dir_owners,
            started=started_wall,
            scripts=to_rel(root, scripts),
        )
        _write_manifest(snapshot)
    except BaseException as exc:
        # Nothing in the environment changed; only our half-made copy has to go.
        shutil.rmtree(io_path(folder), ignore_errors=True)
        _prune_empty(folder.parent)
        if isinstance(exc, OSError):
            raise SnapshotError(
                f"could not keep a copy of the current torch files: {exc.strerror or exc}",
                hint="nothing was changed; free some disk space or check permissions",
            ) from None
        raise
    killpoints.reached("snapshot-manifest-written")
    return snapshot


def _incoming_of(
    env: PythonEnv, root: Path, site_packages: Sequence[Path], wheels: Sequence[Path]
) -> Incoming:
    return incoming(root, site_packages, env.platform, env.python_version, wheels)


def _check_space(store: Path, needed: int) -> None:
    free = shutil.disk_usage(io_path(store)).free
    if free < needed + (256 << 20):
        raise SnapshotError(
            f"not enough disk space to keep a copy of the current torch files "
            f"({needed / 2**30:.1f} GiB needed, {free / 2**30:.1f} GiB free)",
            hint="nothing was changed; free some disk space and try again",
        )


# ---------------------------------------------------------------------------------------------
# Restoring


def _verify_store(snapshot: Snapshot) -> None:
    """Refuse before touching the environment if the saved copy is not intact."""
    bad: list[str] = []
    for saved in snapshot.files:
        if saved.link_target is not None:
            continue
        path = snapshot.folder / STORE / saved.stored
        try:
            st = os.lstat(io_path(path))
        except OSError:
            bad.append(saved.path)
            continue
        if st.st_size != saved.size:
            bad.append(saved.path)
        elif saved.sha256 is None and st.st_mtime_ns != saved.mtime_ns:
            bad.append(saved.path)  # a link: the same inode, so a new time means new bytes
        elif saved.sha256 is not None and sha256_file(Path(io_path(path))) != saved.sha256:
            bad.append(saved.path)
    if bad:
        raise DamagedSnapshotError(
            f"the saved copy of the previous torch is damaged ({len(bad)} files, e.g. {bad[0]})",
            hint=f"reinstall torch by hand; the saved files are in {snapshot.folder}",
        )


def _unchanged(path: Path, saved: SavedFile, stored: Path) -> bool:
    """Is the file in the environment still the one we saved?

    A link: the same inode, size and time. A copy (links were impossible): the same size and
    sha256, so a read-only environment whose files nobody could change needs no write at all.
    """
    try:
        here = os.lstat(io_path(path))
    except OSError:
        return False
    if saved.link_target is not None:
        return stat.S_ISLNK(here.st_mode) and os.readlink(io_path(path)) == saved.link_target
    if stat.S_ISLNK(here.st_mode) or here.st_size != saved.size:
        return False
    if saved.sha256 is not None:
        try:
            return sha256_file(Path(io_path(path))) == saved.sha256
        except OSError:
            return False
    try:
        kept = os.lstat(io_path(stored))
    except OSError:
        return False
    same_inode = (here.st_ino, here.st_dev) == (kept.st_ino, kept.st_dev) and here.st_ino != 0
    return same_inode and here.st_mtime_ns == saved.mtime_ns


def restore_snapshot(snapshot: Snapshot, *, discard: bool = True) -> None:
    """Put the saved files back exactly, with their owners and modes; RestoreFailedError (exit 3)
    if that fails, DamagedSnapshotError (before touching anything) if the saved copy is not whole.

    Removes what the failed fix wrote (see the module docstring for which files count), then links
    or copies the saved files back, recreating folders, and checks the result. Files still
    identical to the saved ones are left in place, so restoring right after a failure that changed
    little is quick. Needs no network. Safe to repeat: a restore that is itself interrupted can be
    run again.
    """
    killpoints.reached("restore-start")
    root = snapshot.env_root
    _verify_store(snapshot)
    site_packages = [from_rel(root, sp) for sp in snapshot.site_packages]
    now = survey(site_packages, snapshot.projects, root=root, extra_tops=_area_names(snapshot))
    if now.unreadable:
        raise RestoreFailedError(
            f"cannot read {len(now.unreadable)} entries: " + "; ".join(now.unreadable[:_MAX_LISTED]),
            hint=f"check their permissions and run `torchdoctor fix` again; the saved files are in "
            f"{snapshot.folder}",
        )
    wanted: dict[str, tuple[Path, SavedFile]] = {}
    for saved in snapshot.files:
        path = norm(from_rel(root, saved.path))
        wanted[key(path)] = (path, saved)
    failures: list[str] = []
    kept = _clear_current(snapshot, now, wanted, failures)
    killpoints.reached("restore-cleared")
    _put_back(snapshot, wanted, kept, failures)
    killpoints.reached("restore-placed")
    _restore_owners(snapshot, wanted, failures)
    if not failures:
        failures = _check_restored(snapshot, site_packages, wanted)
    if failures:
        shown = "; ".join(failures[:_MAX_LISTED])
        raise RestoreFailedError(
            f"could not put back the previous torch ({len(failures)} problems: {shown})",
            hint=f"close programs using the environment and run `torchdoctor fix` again; "
            f"the saved files are in {snapshot.folder}",
        )
    killpoints.reached("restore-checked")
    if discard:
        discard_snapshot(snapshot, remove_strays=False)
    else:
        _write_manifest(dataclasses.replace(snapshot, state=SnapshotState.RESTORED))


def _area_names(snapshot: Snapshot) -> set[str]:
    return {PurePosixPath(a).name for a in snapshot.areas}


def _appeared_after(path: Path, snapshot: Snapshot) -> bool:
    """Created (or changed) after the snapshot began: the creation time where the OS keeps one
    (Windows, macOS), else the inode change time, which creating, replacing or rewriting sets."""
    try:
        st = os.lstat(io_path(path))
    except OSError:
        return False
    born = getattr(st, "st_birthtime", None)
    return (born if isinstance(born, float) and born > 0 else st.st_ctime) >= snapshot.started


def _removable(path: Path, snapshot: Snapshot, now: Survey, predicted: set[str]) -> bool:
    """May a restore delete `path`, which the snapshot does not hold? Only where it is sure the
    failed fix wrote it: under the projects' own folders, where an incoming wheel was predicted to
    write, or inside the environment and newer than the snapshot. Never the interpreter or
    pyvenv.cfg, never through a link out of the environment."""
    root = snapshot.env_root
    if not really_inside(path, [root]):
        return False
    if _PROTECTED_RE.match(path.name) and (
        path.parent == root or key(path.parent) == key(from_rel(root, snapshot.scripts))
    ):
        return False
    if inside(path, now.owned) or key(path) in predicted:
        return True
    return _appeared_after(path, snapshot)


def _clear_current(
    snapshot: Snapshot, now: Survey, wanted: Mapping[str, tuple[Path, SavedFile]], failures: list[str]
) -> set[str]:
    """Remove what is there now and was not saved; return the keys of saved files still in place."""
    root = snapshot.env_root
    saved_strays = {key(from_rel(root, s)) for s in snapshot.strays}
    # Strays that appeared during the fix go as a whole (they may hold unreadable halves).
    for k, stray in now.strays.items():
        if k not in saved_strays:
            _remove(stray, root, failures)
    predicted: set[str] = set()
    candidates = dict(now.files)
    for rel in snapshot.incoming_files:
        path = norm(from_rel(root, rel))
        predicted.add(key(path))
        candidates.setdefault(key(path), path)
    kept: set[str] = set()
    for k, path in candidates.items():
        if not os.path.lexists(io_path(path)):
            continue  # never written, or it went with a stray above
        entry = wanted.get(k)
        if entry is not None:
            if _unchanged(path, entry[1], snapshot.folder / STORE / entry[1].stored):
                kept.add(k)
                continue
        elif not _removable(path, snapshot, now, predicted):
            continue  # named by a new RECORD, but older than the snapshot: not the fix's
        _remove(path, root, failures)
    # Folders that did not exist before (the fix made them for files it wrote), deepest first,
    # and only once they are empty.
    saved_dirs = {key(from_rel(root, d)) for d in snapshot.dirs}
    made = dict(now.dirs)
    for path in candidates.values():
        parent = path.parent
        while inside(parent, [root]) and key(parent) not in saved_dirs and key(parent) not in made:
            made[key(parent)] = parent
            parent = parent.parent
    for k, folder in sorted(made.items(), key=lambda kv: -len(kv[1].parts)):
        if k not in saved_dirs:
            with contextlib.suppress(OSError):
                os.rmdir(io_path(folder))
    return kept


def _remove(path: Path, root: Path, failures: list[str]) -> None:
    """Delete, waiting out transient locks; a file still locked (a loaded DLL) goes to the trash."""
    try:
        fileops.remove_or_trash(path, root)
    except FileNotFoundError:
        pass
    except OSError as exc:
        failures.append(f"{path}: {exc.strerror or exc}")


def _put_back(
    snapshot: Snapshot, wanted: Mapping[str, tuple[Path, SavedFile]], kept: set[str], failures: list[str]
) -> None:
    root = snapshot.env_root
    for rel in snapshot.dirs:
        try:
            os.makedirs(io_path(from_rel(root, rel)), exist_ok=True)
        except OSError as exc:
            failures.append(f"{rel}: {exc.strerror or exc}")
    todo = [(k, entry) for k, entry in wanted.items() if k not in kept]
    half = len(todo) // 2
    for index, (_k, (path, saved)) in enumerate(todo):
        if index == half:
            killpoints.reached("restore-half-placed")
        try:
            os.makedirs(io_path(path.parent), exist_ok=True)
            if os.path.lexists(io_path(path)):
                fileops.remove_or_trash(path, root)
            if saved.link_target is not None:
                os.symlink(saved.link_target, io_path(path))
            else:
                _place(snapshot.folder / STORE / saved.stored, path)
        except OSError as exc:
            failures.append(f"{path}: {exc.strerror or exc}")


def _restore_owners(
    snapshot: Snapshot, wanted: Mapping[str, tuple[Path, SavedFile]], failures: list[str]
) -> None:
    """Modes and owners as saved: a copy made by root belongs to root until this gives it back."""
    for path, saved in wanted.values():
        if saved.owner is not None:
            try:
                fileops.restore_owner(path, saved.owner, is_link=saved.link_target is not None)
            except OSError as exc:
                failures.append(f"{path}: {exc.strerror or exc}")
    # Folders last and deepest first: a folder made read-only must not block its own files.
    for rel in sorted(snapshot.dir_owners, key=lambda r: -r.count("/")):
        try:
            fileops.restore_owner(from_rel(snapshot.env_root, rel), snapshot.dir_owners[rel], is_link=False)
        except OSError as exc:
            failures.append(f"{rel}: {exc.strerror or exc}")


def _check_restored(
    snapshot: Snapshot, site_packages: Sequence[Path], wanted: Mapping[str, tuple[Path, SavedFile]]
) -> list[str]:
    """Survey again: the same set of files, each with the saved size, mode and owner."""
    after = survey(site_packages, snapshot.projects, root=snapshot.env_root, extra_tops=_area_names(snapshot))
    problems = [f"cannot read {u}" for u in after.unreadable]
    problems += [f"{after.files[k]} should not be there" for k in after.files.keys() - wanted.keys()]
    for path, saved in wanted.values():
        try:
            st = os.lstat(io_path(path))
        except OSError:
            problems.append(f"{path} is missing")
            continue
        if saved.link_target is None and st.st_size != saved.size:
            problems.append(f"{path} has the wrong size")
        elif saved.owner is not None and (
            why := fileops.owner_differs(st, saved.owner, is_link=saved.link_target is not None)
        ):
            problems.append(f"{path} {why}")
    for rel, owner in snapshot.dir_owners.items():
        path = from_rel(snapshot.env_root, rel)
        try:
            st = os.lstat(io_path(path))
        except OSError:
            problems.append(f"{path} is missing")
            continue
        if why := fileops.owner_differs(st, owner, is_link=False):
            problems.append(f"{path} {why}")
    return problems


# ---------------------------------------------------------------------------------------------
# Discarding, recovering


def _prune_empty(base: Path) -> None:
    """Remove a snapshot base (`rollback/` or `rollback/<digest>`) and `.torchdoctor/` once they
    are empty (never anything else)."""
    for candidate in (base, base.parent):
        if candidate.name in ("rollback", ".torchdoctor") or candidate.parent.name == "rollback":
            with contextlib.suppress(OSError):
                os.rmdir(io_path(candidate))


def discard_snapshot(snapshot: Snapshot, *, remove_strays: bool = True) -> None:
    """Delete the saved copy (after a successful fix, or after a restore), atomically.

    With `remove_strays`, the `~orch`-style folders pip had left before the fix go first: the fix
    replaced the projects cleanly, and those folders only make pip warn. (First, because the
    snapshot still holds them: a kill here is restored to the state before the fix.) Then the
    folder is renamed to `<id>.discarded`, which no run treats as a snapshot: that rename is the
    commit. A kill before it leaves a complete pending snapshot (the next run restores from it;
    after a successful fix that means the state before it), a kill after it leaves only trash
    that the next run deletes.
    """
    killpoints.reached("discard-start")
    if remove_strays:
        for rel in snapshot.strays:
            with contextlib.suppress(OSError):
                fileops.remove_tree(from_rel(snapshot.env_root, rel))
    killpoints.reached("discard-strays-removed")
    trash = snapshot.folder.with_name(snapshot.folder.name + DISCARDED_SUFFIX)
    try:
        fileops.retry_locked(lambda: os.rename(io_path(snapshot.folder), io_path(trash)))
    except FileNotFoundError:
        return
    except OSError:
        # A handle inside it (Windows) keeps the name: still never leave it pending.
        _write_manifest(dataclasses.replace(snapshot, state=SnapshotState.RESTORED))
        trash = snapshot.folder
    killpoints.reached("discard-renamed")
    shutil.rmtree(io_path(trash), ignore_errors=True)
    _prune_empty(snapshot.folder.parent)


def pending_snapshots(env: PythonEnv) -> list[Snapshot]:
    """Snapshots left by a fix whose process is gone: still "pending", pid not alive. Oldest first.

    One whose manifest cannot be read is not listed here: `recover` sets it aside.
    """
    found: list[Snapshot] = []
    for folder in snapshot_folders(env.root):
        if not os.path.isfile(io_path(folder / MANIFEST)):
            continue
        try:
            snapshot = load_snapshot(folder)
        except SnapshotError:
            continue
        if not same_place(snapshot.env_root, env.root):
            continue  # the environment folder was copied or moved: that snapshot is not for this one
        if snapshot.state is SnapshotState.PENDING and not alive(snapshot.pid, snapshot.pid_started):
            found.append(snapshot)
    return sorted(found, key=lambda s: s.created)


@dataclass(frozen=True, slots=True)
class SetAside:
    """A leftover snapshot that could not be used, renamed for a person to look at."""

    folder: Path  # where it is now
    reason: str

    def message(self) -> str:
        return (
            f"an earlier fix was interrupted and its saved copy cannot be used ({self.reason}); "
            f"it was set aside in {self.folder}. The environment may be half-installed: this fix "
            "plans from what is there now; delete that folder once torch works"
        )


@dataclass(frozen=True, slots=True)
class Recovery:
    restored: Snapshot | None  # the snapshot put back, if an interrupted fix left one
    set_aside: tuple[SetAside, ...] = ()


def _set_aside(folder: Path, reason: str) -> SetAside:
    dest = folder.with_name(folder.name + DAMAGED_SUFFIX)
    try:
        os.rename(io_path(folder), io_path(dest))
    except OSError:
        # Cannot even rename it: delete it, so that it cannot block every later fix.
        shutil.rmtree(io_path(folder), ignore_errors=True)
        return SetAside(folder, reason + "; it could not be renamed, so it was deleted")
    return SetAside(dest, reason)


def recover(env: PythonEnv) -> Recovery:
    """Restore the environment from the oldest interrupted fix's snapshot, if there is one.

    Only the oldest one is restored (it holds the state before the first interrupted fix; later
    ones hold what that fix had half-done); all of them are discarded. Also clears what killed
    runs leave that holds nothing: folders without a manifest (killed while taking the snapshot,
    before changing anything), `<id>.discarded` folders (killed while discarding) and the trash.
    A snapshot that cannot be read or whose copy is damaged is set aside, never retried forever.
    Call it while holding `env_lock`.
    """
    root = env.root
    fileops.empty_trash(root)
    for trash in leftovers(root, DISCARDED_SUFFIX):
        shutil.rmtree(io_path(trash), ignore_errors=True)
    set_aside: list[SetAside] = []
    for folder in snapshot_folders(root):
        has_manifest = os.path.isfile(io_path(folder / MANIFEST))
        if not has_manifest and not _alive_owner(folder):
            shutil.rmtree(io_path(folder), ignore_errors=True)
        elif has_manifest and not _alive_owner(folder):
            try:
                load_snapshot(folder)
            except SnapshotError as exc:
                set_aside.append(_set_aside(folder, str(exc)))
    for base in snapshot_bases(root):
        _prune_empty(base)
    pending = pending_snapshots(env)
    if not pending:
        return Recovery(None, tuple(set_aside))
    oldest = pending[0]
    restored: Snapshot | None = oldest
    try:
        restore_snapshot(oldest, discard=True)
    except DamagedSnapshotError as exc:
        set_aside.append(_set_aside(oldest.folder, exc.message))
        restored = None
    for later in pending[1:]:
        discard_snapshot(later, remove_strays=False)
    return Recovery(restored, tuple(set_aside))


def recover_interrupted(env: PythonEnv) -> Snapshot | None:
    """`recover`, for callers that only need the snapshot restored (None if there was none)."""
    return recover(env).restored


def _alive_owner(folder: Path) -> bool:
    """A snapshot folder is being written (or used) by a live process (its id carries the pid)."""
    match = ID_RE.match(folder.name)
    return match is not None and alive(int(match.group("pid")), None)
