"""Putting a snapshot back, and discarding one: the other half of snapshot.py.

A restore touches only paths the snapshot knows: it removes files under the projects' own
folders, files the incoming wheels were predicted to write, and files inside the environment
that appeared after the snapshot was taken; never the interpreter or `pyvenv.cfg`, never through a
link out of the environment. It puts back bytes, links, modes and owners, and checks the result.
Discarding renames the folder away before deleting anything (see `discard_snapshot`).
"""


# The os functions take the long-path strings `io_path` returns on Windows, as they are.
# ruff: noqa: PTH103, PTH104, PTH106, PTH115, PTH211

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Final

from torchdoctor.service.install import fileops, killpoints
from torchdoctor.service.install.fileops import io_path
from torchdoctor.service.install.hashing import sha256_file
from torchdoctor.service.install.manifest import (
    STORE,
    DamagedSnapshotError,
    RestoreFailedError,
    SavedFile,
    Snapshot,
    SnapshotState,
    write_manifest,
)
from torchdoctor.service.install.survey import (
    Survey,
    from_rel,
    inside,
    key,
    norm,
    really_inside,
    survey,
)
from torchdoctor.service.rules.interrupted import (
    DISCARDED_SUFFIX,
)

_CTIME_MARGIN_S: Final = 1.0
_MAX_LISTED: Final = 5
# Never the projects' to delete, whatever a RECORD says: the interpreter and the venv's marker.
_PROTECTED_RE: Final = re.compile(r"^(pyvenv\.cfg|pythonw?(\d+(\.\d+)?t?)?(_d)?(\.exe)?)$", re.IGNORECASE)


def _place(src: Path, dst: Path) -> bool:
    """Hard-link `src` to `dst`, else copy it; True when linked."""
    try:
        os.link(io_path(src), io_path(dst), follow_symlinks=False)
    except OSError:
        shutil.copy2(io_path(src), io_path(dst), follow_symlinks=False)
        return False
    return True


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
        write_manifest(dataclasses.replace(snapshot, state=SnapshotState.RESTORED))


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


def prune_empty(base: Path) -> None:
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
        write_manifest(dataclasses.replace(snapshot, state=SnapshotState.RESTORED))
        trash = snapshot.folder
    killpoints.reached("discard-renamed")
    shutil.rmtree(io_path(trash), ignore_errors=True)
    prune_empty(snapshot.folder.parent)
