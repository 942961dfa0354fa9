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


# The os functions take the long-path strings `io_path` returns on Windows, as they are.
# ruff: noqa: PTH103, PTH104, PTH108, PTH112, PTH113, PTH114, PTH115, PTH123

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import psutil
from packaging.utils import canonicalize_name

from torchdoctor.service.install import fileops, killpoints
from torchdoctor.service.install.fileops import Owner, io_path
from torchdoctor.service.install.hashing import CHUNK
from torchdoctor.service.install.manifest import (
    STORE,
    DamagedSnapshotError,
    NotWritableError,
    RestoreFailedError,
    SavedFile,
    Snapshot,
    SnapshotError,
    SnapshotState,
    load_snapshot,
    write_manifest,
)
from torchdoctor.service.install.restore import discard_snapshot, prune_empty, restore_snapshot
from torchdoctor.service.install.survey import (
    Survey,
    inside,
    key,
    norm,
    scripts_dir,
    survey,
    to_rel,
)
from torchdoctor.service.install.survey import distinct as distinct_folders
from torchdoctor.service.install.survey import incoming as where_wheels_write
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

# The names callers use, wherever they now live.
__all__ = [
    "TORCH_FAMILY",
    "DamagedSnapshotError",
    "NotWritableError",
    "Recovery",
    "RestoreFailedError",
    "SavedFile",
    "SetAside",
    "Snapshot",
    "SnapshotError",
    "SnapshotState",
    "check_writable",
    "discard_snapshot",
    "load_snapshot",
    "pending_snapshots",
    "recover",
    "recover_interrupted",
    "restore_snapshot",
    "take_snapshot",
]

TORCH_FAMILY: Final = ("torch", "torchvision", "torchaudio")
# A file's change time is taken by the kernel's coarse clock; one second of margin makes "changed
# after the snapshot began" never miss a file written at its very start.
_CTIME_MARGIN_S: Final = 1.0
_MAX_LISTED: Final = 5


# ---------------------------------------------------------------------------------------------
# Taking a snapshot


def _copy_hashing(src: Path, dst: Path) -> str:
    digest = hashlib.sha256()
    with open(io_path(src), "rb") as fin, open(io_path(dst), "xb") as fout:
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            fout.write(chunk)
    shutil.copystat(io_path(src), io_path(dst))
    return digest.hexdigest()


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
    new = where_wheels_write(root, site_packages, env.platform, env.python_version, incoming)
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
        write_manifest(snapshot)
    except BaseException as exc:
        # Nothing in the environment changed; only our half-made copy has to go.
        shutil.rmtree(io_path(folder), ignore_errors=True)
        prune_empty(folder.parent)
        if isinstance(exc, OSError):
            raise SnapshotError(
                f"could not keep a copy of the current torch files: {exc.strerror or exc}",
                hint="nothing was changed; free some disk space or check permissions",
            ) from None
        raise
    killpoints.reached("snapshot-manifest-written")
    return snapshot


def _check_space(store: Path, needed: int) -> None:
    free = shutil.disk_usage(io_path(store)).free
    if free < needed + (256 << 20):
        raise SnapshotError(
            f"not enough disk space to keep a copy of the current torch files "
            f"({needed / 2**30:.1f} GiB needed, {free / 2**30:.1f} GiB free)",
            hint="nothing was changed; free some disk space and try again",
        )


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
        prune_empty(base)
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
