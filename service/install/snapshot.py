"""Keeping the torch family's files so that a failed `fix` can put them back, offline and exactly.

Layout: `<env.root>/.torchdoctor/rollback/<id>/` holds `manifest.json` and `files/000000`, ...:
one flat, numbered name per saved file (short paths: torch's deep folders would otherwise meet
Windows' 260-character limit a second time). Files are **hard-linked** there: the environment and
the snapshot sit on the same filesystem, so keeping a 5 GB CUDA torch costs no copy and no time.
That is safe because pip and uv never rewrite an installed file in place (they unlink it and
write a new one), so the linked inode keeps the old bytes. Where linking fails (FAT, some network
drives, a root we cannot write: then the snapshot goes to `state_dir()/rollback/`), a file is
copied and its sha256 recorded.

What is saved, per site-packages folder, for each project (torch, torchvision, torchaudio):
  - every existing file its dist-info's RECORD lists, including `../../bin/torchrun`-style entries;
  - the whole dist-info folder;
  - everything under the project's top-level folders (`torch/`, `functorch/`, `torchgen/`, ...),
    RECORD or not: `__pycache__` written at run time, files other tools dropped there. A folder
    another distribution's RECORD also claims (a shared namespace) is limited to RECORD entries;
  - stray `~orch`-style folders: pip renames a folder it uninstalls to `~` + a mangled name and
    deletes it only when the uninstall commits, so a killed pip leaves `~orch/`,
    `~orch-2.7.1.dist-info/` behind. They are part of the state before the fix, so they are saved
    and restored like the rest (exactness); ones that appear *during* a fix are removed by
    `restore_snapshot`; and `discard_snapshot` (after a successful fix) deletes the recorded ones,
    because they are pip debris that makes every later pip run warn "Ignoring invalid
    distribution ~orch".

`take_snapshot` can be told the wheels about to be installed (`incoming`): their top-level
folders and scripts are recorded, so that `restore_snapshot` also clears what a killed installer
had written before it got to write a RECORD.

The manifest's `state` is "pending" from the moment the snapshot is complete until the fix
discards it; a pending snapshot whose process is gone (pid and start time checked, so a reused
pid does not count as alive) is what `recover_interrupted` restores.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import stat
import sys
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Final

import psutil
from packaging.utils import canonicalize_name

from torchdoctor.service import paths
from torchdoctor.service.errors import EXIT_NOT_RESTORED, TorchdoctorError
from torchdoctor.service.install.hashing import CHUNK, sha256_file
from torchdoctor.service.models import Platform, PythonEnv

TORCH_FAMILY: Final = ("torch", "torchvision", "torchaudio")
SCHEMA_VERSION: Final = 1
MANIFEST: Final = "manifest.json"
STORE: Final = "files"
_DIST_INFO_RE: Final = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)\.dist-info$", re.IGNORECASE)
# pip's AdjacentTempDirectory.LEADING_CHARS: the characters it puts after "~" in a stash name.
_PIP_LEADING: Final = "-~.=%0123456789"

_MAX_LISTED: Final = 5


class SnapshotError(TorchdoctorError):
    """The snapshot could not be taken; nothing in the environment was changed."""

    code = "snapshot-failed"


class RestoreFailedError(TorchdoctorError):
    """The previous torch could not be put back: the environment is left changed (exit 3)."""

    code = "restore-failed"
    exit_code = EXIT_NOT_RESTORED


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


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str
    folder: Path
    env_root: Path
    site_packages: tuple[str, ...]  # root-relative like SavedFile.path
    projects: tuple[str, ...]
    versions: dict[str, str]  # "torch" -> "2.7.1+cu128", as found in the dist-info names
    files: tuple[SavedFile, ...]
    dirs: tuple[str, ...]  # every folder inside the saved areas (empty ones included)
    areas: tuple[str, ...]  # top-level folders the projects own (saved and incoming ones)
    strays: tuple[str, ...]  # pip's `~orch` leftovers present when the snapshot was taken
    incoming_files: tuple[str, ...]  # scripts the incoming wheels would write outside site-packages
    created: float
    pid: int
    pid_started: float | None
    state: SnapshotState = SnapshotState.PENDING
    linked: int = 0  # how many files were hard-linked (the rest were copied)
    seconds: float = 0.0  # how long taking it took
    bytes_total: int = field(default=0)

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST


# ---------------------------------------------------------------------------------------------
# Paths


def _to_rel(root: Path, path: Path) -> str:
    try:
        return PurePosixPath(*path.relative_to(root).parts).as_posix()
    except ValueError:
        return str(path)


def _from_rel(root: Path, rel: str) -> Path:
    candidate = Path(rel)
    return candidate if candidate.is_absolute() else root.joinpath(*rel.split("/"))


def _norm(path: Path) -> Path:
    """Collapse `..` without following links (RECORD's `../../bin/x` is relative to site-packages)."""
    return Path(os.path.normpath(path))


def _key(path: Path) -> str:
    return os.path.normcase(os.fspath(_norm(path)))


def _distinct(folders: Iterable[Path]) -> list[Path]:
    """The folders once each, even when two names lead to one folder (`lib64 -> lib` in venvs)."""
    seen: set[str] = set()
    unique: list[Path] = []
    for folder in folders:
        real = os.path.normcase(os.path.realpath(folder))
        if real not in seen:
            seen.add(real)
            unique.append(_norm(folder))
    return unique


def _scripts_dir(root: Path, platform: Platform) -> Path:
    return root / ("Scripts" if platform is Platform.WINDOWS else "bin")


def _snapshot_bases(root: Path) -> list[Path]:
    """Where snapshots live: in the env root (same filesystem), else under our state folder."""
    digest = hashlib.sha256(os.path.normcase(os.path.realpath(root)).encode("utf-8", "surrogatepass"))
    return [root / ".torchdoctor" / "rollback", paths.state_dir() / "rollback" / digest.hexdigest()[:24]]


# ---------------------------------------------------------------------------------------------
# Reading what is installed


def _record_paths(dist_info: Path) -> list[str]:
    try:
        text = (dist_info / "RECORD").read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return []
    return [row[0] for row in csv.reader(io.StringIO(text)) if row and row[0]]


def _top_name(entry: str) -> str | None:
    """`torch/_C.so` -> "torch"; None for files at the top, `..` paths and dist-info folders."""
    parts = PurePosixPath(entry.replace("\\", "/")).parts
    if len(parts) < 2 or parts[0] in ("..", ".", "__pycache__") or parts[0].endswith(".dist-info"):
        return None
    return parts[0]


def _stray_pattern(names: Iterable[str]) -> re.Pattern[str]:
    """pip's stash names for `names`: "~orch", "~-rch", ..., "~" + LEADING* + name; with the
    dist-info forms "~orch-2.7.1.dist-info" (see pip's AdjacentTempDirectory._generate_names)."""
    leading = "[" + re.escape(_PIP_LEADING) + "]"
    options: list[str] = []
    for name in sorted(set(names)):
        for i in range(1, len(name)):
            options.append(f"{leading}{{{i - 1}}}{re.escape(name[i:])}")
        options.append(f"{leading}*{re.escape(name)}")
    return re.compile("^~(?:" + "|".join(options) + r")(?:-[^/\\]+\.dist-info)?$", re.IGNORECASE)


@dataclass(slots=True)
class _Survey:
    """What belongs to the projects right now (absolute, normalised paths)."""

    files: dict[str, Path] = field(default_factory=dict)  # _key -> path
    dirs: dict[str, Path] = field(default_factory=dict)
    areas: dict[str, Path] = field(default_factory=dict)
    strays: dict[str, Path] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    recorded: set[str] = field(default_factory=set)  # keys of files some RECORD of ours lists

    def add_file(self, path: Path) -> None:
        self.files.setdefault(_key(path), _norm(path))

    def add_tree(self, top: Path) -> None:
        """Every file and folder under `top` (links are entries, never followed)."""
        if top.is_symlink() or not top.is_dir():
            if top.is_symlink() or top.is_file():
                self.add_file(top)
            return
        self.dirs.setdefault(_key(top), _norm(top))
        for folder, subdirs, names in os.walk(top, followlinks=False):
            base = Path(folder)
            for name in subdirs:
                sub = base / name
                if sub.is_symlink():
                    self.add_file(sub)
                else:
                    self.dirs.setdefault(_key(sub), _norm(sub))
            for name in names:
                self.add_file(base / name)


def _inside(path: Path, folders: Iterable[Path]) -> bool:
    key = _key(path)
    return any(key.startswith(_key(f).rstrip(os.sep) + os.sep) for f in folders)


def _survey(
    site_packages: Sequence[Path],
    projects: Sequence[str],
    *,
    root: Path,
    extra_tops: Iterable[str] = (),
) -> _Survey:
    """The projects' files now. A RECORD entry outside the environment is ignored, as pip's
    uninstall ignores it: restoring must never delete a file elsewhere on the machine."""
    wanted = {canonicalize_name(p) for p in projects}
    allowed = [root, *site_packages]
    survey = _Survey()
    for sp in site_packages:
        try:
            entries = sorted(sp.iterdir())
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise SnapshotError(f"cannot read {sp}: {exc.strerror or exc}") from None
        ours: list[Path] = []
        claimed_by_others: set[str] = set()
        for entry in entries:
            match = _DIST_INFO_RE.match(entry.name)
            if not match or not entry.is_dir() or entry.name.startswith("~"):
                continue  # a `~orch-...dist-info` stash claims nothing: it is pip's debris
            if canonicalize_name(match.group("name")) in wanted:
                ours.append(entry)
            else:
                claimed_by_others.update(t for t in map(_top_name, _record_paths(entry)) if t)
        tops: set[str] = set(extra_tops)
        for dist_info in ours:
            match = _DIST_INFO_RE.match(dist_info.name)
            assert match is not None  # noqa: S101 (selected by this pattern above)
            survey.versions.setdefault(canonicalize_name(match.group("name")), match.group("version"))
            for rel in _record_paths(dist_info):
                path = _norm(sp / rel)
                if not _inside(path, allowed):
                    continue
                if path.is_file() or path.is_symlink():
                    survey.add_file(path)
                    survey.recorded.add(_key(path))
                top = _top_name(rel)
                if top is not None:
                    tops.add(top)
            survey.add_tree(dist_info)
        for top in sorted(tops - claimed_by_others):
            area = sp / top
            survey.areas.setdefault(_key(area), _norm(area))
            if area.exists() or area.is_symlink():
                survey.add_tree(area)
        stray_re = _stray_pattern({*tops, *(p.replace("-", "_") for p in wanted)})
        for entry in entries:
            if stray_re.match(entry.name):
                survey.strays.setdefault(_key(entry), _norm(entry))
                survey.add_tree(entry)
    return survey


@dataclass(frozen=True, slots=True)
class _WheelLayout:
    tops: frozenset[str]  # top-level folders it creates in site-packages
    scripts: frozenset[str]  # names it creates in the scripts folder
    members: frozenset[str]  # files it writes in site-packages, "/"-separated


def _wheel_layout(wheel: Path) -> _WheelLayout:
    """What an incoming wheel would create, read from its file list (nothing is extracted)."""
    tops: set[str] = set()
    scripts: set[str] = set()
    members: set[str] = set()
    try:
        with zipfile.ZipFile(wheel) as zf:
            # Names that could point outside site-packages are skipped: installers reject
            # them, and we must never plan to remove a file elsewhere because of them.
            names = [n for n in zf.namelist() if _safe_member(n)]
            for name in names:
                top = _top_name(name)
                if top is not None and not top.endswith(".data"):
                    tops.add(top)
                if not name.endswith("/") and not name.split("/", 1)[0].endswith(".data"):
                    members.add(name)
                parts = name.split("/")
                if len(parts) == 3 and parts[0].endswith(".data") and parts[1] == "scripts":
                    scripts.add(parts[2])
                if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "entry_points.txt":
                    scripts.update(_entry_point_scripts(zf.read(name).decode("utf-8", "replace")))
    except (OSError, zipfile.BadZipFile):
        # The installer will reject it; nothing it could half-write needs predicting.
        return _WheelLayout(frozenset(), frozenset(), frozenset())
    plain = frozenset(s for s in scripts if _safe_member(s) and "/" not in s and "\\" not in s)
    return _WheelLayout(frozenset(tops), plain, frozenset(members))


def _safe_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return bool(name) and not name.startswith("/") and ":" not in name and ".." not in parts


def _entry_point_scripts(text: str) -> set[str]:
    names: set[str] = set()
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section in ("console_scripts", "gui_scripts") and "=" in line:
            names.add(line.split("=", 1)[0].strip())
    return names


# ---------------------------------------------------------------------------------------------
# Saving and putting back one file


def _copy_hashing(src: Path, dst: Path) -> str:
    digest = hashlib.sha256()
    with src.open("rb") as fin, dst.open("xb") as fout:
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            fout.write(chunk)
    shutil.copystat(src, dst)
    return digest.hexdigest()


def _place(src: Path, dst: Path) -> bool:
    """Hard-link `src` to `dst`, else copy it; True when linked."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)
        return False
    return True


def _remove_file(path: Path) -> None:
    try:
        path.unlink()
    except PermissionError:
        # Windows refuses to delete read-only files; clear the flag and try once more.
        path.chmod(stat.S_IWRITE | stat.S_IREAD)
        path.unlink()


# ---------------------------------------------------------------------------------------------
# Manifest


def _write_manifest(snapshot: Snapshot) -> None:
    data = {
        "schema_version": SCHEMA_VERSION,
        "id": snapshot.id,
        "state": str(snapshot.state),
        "env_root": str(snapshot.env_root),
        "site_packages": list(snapshot.site_packages),
        "projects": list(snapshot.projects),
        "versions": snapshot.versions,
        "created": snapshot.created,
        "pid": snapshot.pid,
        "pid_started": snapshot.pid_started,
        "linked": snapshot.linked,
        "seconds": snapshot.seconds,
        "bytes_total": snapshot.bytes_total,
        "dirs": list(snapshot.dirs),
        "areas": list(snapshot.areas),
        "strays": list(snapshot.strays),
        "incoming_files": list(snapshot.incoming_files),
        "files": [{k: v for k, v in _file_dict(f).items() if v is not None} for f in snapshot.files],
    }
    tmp = snapshot.folder / (MANIFEST + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        json.dump(data, out, indent=1)
        out.flush()
        os.fsync(out.fileno())  # the manifest is what a later run trusts after a crash
    tmp.replace(snapshot.manifest_path)


def _file_dict(f: SavedFile) -> dict[str, object]:
    return {
        "path": f.path,
        "stored": f.stored,
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "sha256": f.sha256,
        "link_target": f.link_target,
    }


def load_snapshot(folder: Path) -> Snapshot:
    """Read a snapshot's manifest; SnapshotError when it is missing or not ours."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
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
            )
            for f in data["files"]
        )
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
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"cannot read the snapshot in {folder}: {exc}") from None
    _check_manifest_paths(snapshot)
    return snapshot


def _check_manifest_paths(snapshot: Snapshot) -> None:
    """A restore writes where the manifest says: only inside the environment, only our names."""
    root = _norm(snapshot.env_root)
    allowed = [root, *(_from_rel(root, sp) for sp in snapshot.site_packages)]
    for rel in (
        *(f.path for f in snapshot.files),
        *snapshot.dirs,
        *snapshot.strays,
        *snapshot.incoming_files,
    ):
        if not _inside(_norm(_from_rel(root, rel)), allowed):
            raise SnapshotError(
                f"the snapshot in {snapshot.folder} names a path outside the environment: {rel}"
            )
    if any(not re.fullmatch(r"\d{6,}", f.stored) for f in snapshot.files):
        raise SnapshotError(f"the snapshot in {snapshot.folder} names a file outside its folder")


# ---------------------------------------------------------------------------------------------
# Public API


def _process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _new_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}-{secrets.token_hex(3)}"


def _make_folder(root: Path, snap_id: str) -> Path:
    errors: list[str] = []
    for base in _snapshot_bases(root):
        folder = base / snap_id
        try:
            (folder / STORE).mkdir(parents=True)
        except OSError as exc:
            errors.append(f"{base}: {exc.strerror or exc}")
            continue
        return folder
    raise SnapshotError(
        "cannot create a folder for the rollback copy: " + "; ".join(errors),
        hint="check that the environment's folder is writable",
    )


@dataclass(frozen=True, slots=True)
class _Incoming:
    """Where the wheels about to be installed will write."""

    tops: frozenset[str]  # top-level folders in site-packages
    targets: tuple[Path, ...]  # every file path in site-packages and the scripts folder
    scripts: tuple[Path, ...]  # the scripts-folder part of `targets`


def _incoming(
    root: Path, site_packages: Sequence[Path], platform: Platform, wheels: Sequence[Path]
) -> _Incoming:
    tops: set[str] = set()
    names: set[str] = set()
    members: set[str] = set()
    for wheel in wheels:
        layout = _wheel_layout(wheel)
        tops |= layout.tops
        names |= layout.scripts
        members |= layout.members
    folder = _scripts_dir(root, platform)
    scripts = [folder / s for s in sorted(names)]
    if platform is Platform.WINDOWS:
        scripts += [folder / f"{s}.exe" for s in sorted(names)]  # console-script launchers
    targets = [sp / m for sp in site_packages for m in sorted(members)] + scripts
    return _Incoming(frozenset(tops), tuple(targets), tuple(scripts))


@dataclass(slots=True)
class _Saved:
    files: list[SavedFile] = field(default_factory=list)
    linked: int = 0
    total: int = 0


def _save_files(items: Sequence[Path], root: Path, store: Path, copy_only: set[str]) -> _Saved:
    saved = _Saved()
    space_checked = False
    for index, path in enumerate(items):
        name = f"{index:06d}"
        st = path.lstat()
        rel = _to_rel(root, path)
        if stat.S_ISLNK(st.st_mode):
            saved.files.append(SavedFile(rel, name, 0, st.st_mtime_ns, link_target=str(path.readlink())))
            continue
        saved.total += st.st_size
        if _key(path) not in copy_only:
            try:
                os.link(path, store / name, follow_symlinks=False)
            except OSError:
                pass  # another filesystem, FAT, a share without links: copy below
            else:
                saved.linked += 1
                saved.files.append(SavedFile(rel, name, st.st_size, st.st_mtime_ns))
                continue
            if not space_checked:
                _check_space(store, sum(p.lstat().st_size for p in items[index:]))
                space_checked = True
        sha = _copy_hashing(path, store / name)
        saved.files.append(SavedFile(rel, name, st.st_size, st.st_mtime_ns, sha))
    return saved


def take_snapshot(
    env: PythonEnv, projects: Sequence[str] = TORCH_FAMILY, *, incoming: Sequence[Path] = ()
) -> Snapshot:
    """Save every file of `projects` as installed now (see the module docstring for what and how).

    `incoming`: the wheel files the fix is about to install, so a restore can also clear what a
    killed installer wrote before recording it. Raises SnapshotError (the environment untouched).
    """
    started = time.monotonic()
    root = _norm(env.root)
    site_packages = _distinct(env.site_packages)
    new = _incoming(root, site_packages, env.platform, incoming)
    survey = _survey(site_packages, projects, root=root, extra_tops=new.tops)
    # What the new wheels will write is part of the state before, wherever it lies (a script of
    # the same name from another package, a module file at the top of site-packages).
    for path in new.targets:
        if path.is_file() or path.is_symlink():
            survey.add_file(path)
    # Such a file that no RECORD lists is not uninstalled first, so an installer may overwrite it
    # in place, and a hard link would then see the new bytes: those few are copied instead.
    copy_only = {_key(p) for p in new.targets} - survey.recorded
    snap_id = _new_id()
    folder = _make_folder(root, snap_id)
    try:
        saved = _save_files(sorted(survey.files.values()), root, folder / STORE, copy_only)
        snapshot = Snapshot(
            id=snap_id,
            folder=folder,
            env_root=root,
            site_packages=tuple(_to_rel(root, sp) for sp in site_packages),
            projects=tuple(canonicalize_name(p) for p in projects),
            versions=dict(sorted(survey.versions.items())),
            files=tuple(saved.files),
            dirs=tuple(sorted(_to_rel(root, d) for d in survey.dirs.values())),
            areas=tuple(sorted(_to_rel(root, a) for a in survey.areas.values())),
            strays=tuple(sorted(_to_rel(root, s) for s in survey.strays.values())),
            incoming_files=tuple(sorted(_to_rel(root, _norm(p)) for p in new.scripts)),
            created=time.time(),
            pid=os.getpid(),
            pid_started=_process_started(os.getpid()),
            linked=saved.linked,
            seconds=round(time.monotonic() - started, 3),
            bytes_total=saved.total,
        )
        _write_manifest(snapshot)
    except BaseException as exc:
        # Nothing in the environment changed; only our half-made copy has to go.
        shutil.rmtree(folder, ignore_errors=True)
        _prune_empty(folder.parent)
        if isinstance(exc, OSError):
            raise SnapshotError(
                f"could not keep a copy of the current torch files: {exc.strerror or exc}",
                hint="nothing was changed; free some disk space or check permissions",
            ) from None
        raise
    return snapshot


def _check_space(store: Path, needed: int) -> None:
    free = shutil.disk_usage(store).free
    if free < needed + (256 << 20):
        raise SnapshotError(
            f"not enough disk space to keep a copy of the current torch files "
            f"({needed / 2**30:.1f} GiB needed, {free / 2**30:.1f} GiB free)",
            hint="nothing was changed; free some disk space and try again",
        )


def _verify_store(snapshot: Snapshot) -> None:
    """Refuse before touching the environment if the saved copy is not intact."""
    bad: list[str] = []
    for saved in snapshot.files:
        if saved.link_target is not None:
            continue
        path = snapshot.folder / STORE / saved.stored
        try:
            st = path.lstat()
        except OSError:
            bad.append(saved.path)
            continue
        if st.st_size != saved.size:
            bad.append(saved.path)
        elif saved.sha256 is None and st.st_mtime_ns != saved.mtime_ns:
            bad.append(saved.path)  # a link: the same inode, so a new time means new bytes
        elif saved.sha256 is not None and sha256_file(path) != saved.sha256:
            bad.append(saved.path)
    if bad:
        raise RestoreFailedError(
            f"the saved copy of the previous torch is damaged ({len(bad)} files, e.g. {bad[0]})",
            hint=f"reinstall torch by hand; the saved files are in {snapshot.folder}",
        )


def _unchanged(path: Path, saved: SavedFile, stored: Path) -> bool:
    """Is the file in the environment the very one we saved? (The same inode, not rewritten.)"""
    try:
        here = path.lstat()
    except OSError:
        return False
    if saved.link_target is not None:
        return stat.S_ISLNK(here.st_mode) and str(path.readlink()) == saved.link_target
    try:
        kept = stored.lstat()
    except OSError:
        return False
    same_inode = (here.st_ino, here.st_dev) == (kept.st_ino, kept.st_dev) and here.st_ino != 0
    return same_inode and here.st_size == saved.size and here.st_mtime_ns == saved.mtime_ns


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        _remove_file(path)
        return

    def retry_writable(func: object, target: str, _exc: BaseException) -> None:
        Path(target).chmod(stat.S_IWRITE | stat.S_IREAD)
        if callable(func):
            func(target)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry_writable)
    else:
        shutil.rmtree(path, onerror=lambda func, target, info: retry_writable(func, target, info[1]))


def restore_snapshot(snapshot: Snapshot, *, discard: bool = True) -> None:
    """Put the projects' files back exactly as saved; RestoreFailedError (exit 3) if that fails.

    Removes every file of the projects installed now (by their RECORDs, plus anything under their
    top-level folders, the incoming wheels' folders and scripts, and `~orch` folders that were not
    there before), then links or copies the saved files back, recreating folders, and checks the
    result. Files still identical to the saved ones (same inode, same size and time) are left in
    place, so restoring right after a failure that changed little is quick. Needs no network.
    Safe to repeat: a restore that is itself interrupted can be run again.
    """
    root = snapshot.env_root
    _verify_store(snapshot)
    site_packages = [_from_rel(root, sp) for sp in snapshot.site_packages]
    try:
        now = _survey(site_packages, snapshot.projects, root=root, extra_tops=_area_names(snapshot))
    except SnapshotError as exc:
        raise RestoreFailedError(str(exc), hint=f"the saved files are in {snapshot.folder}") from None
    wanted: dict[str, tuple[Path, SavedFile]] = {}
    for saved in snapshot.files:
        path = _norm(_from_rel(root, saved.path))
        wanted[_key(path)] = (path, saved)
    failures: list[str] = []
    kept = _clear_current(snapshot, now, wanted, failures)
    _put_back(snapshot, wanted, kept, failures)
    if not failures:
        failures = _check_restored(snapshot, site_packages, wanted)
    if failures:
        shown = "; ".join(failures[:_MAX_LISTED])
        raise RestoreFailedError(
            f"could not put back the previous torch ({len(failures)} problems: {shown})",
            hint=f"close programs using the environment and run `torchdoctor fix` again; "
            f"the saved files are in {snapshot.folder}",
        )
    if discard:
        discard_snapshot(snapshot, remove_strays=False)
    else:
        _write_manifest(dataclasses.replace(snapshot, state=SnapshotState.RESTORED))


def _area_names(snapshot: Snapshot) -> set[str]:
    return {PurePosixPath(a).name for a in snapshot.areas}


def _clear_current(
    snapshot: Snapshot, now: _Survey, wanted: Mapping[str, tuple[Path, SavedFile]], failures: list[str]
) -> set[str]:
    """Remove what is there now and was not saved; return the keys of saved files still in place."""
    root = snapshot.env_root
    saved_strays = {_key(_from_rel(root, s)) for s in snapshot.strays}
    # Strays that appeared during the fix go as a whole (they may hold unreadable halves).
    for key, stray in now.strays.items():
        if key not in saved_strays:
            try:
                _remove_tree(stray)
            except OSError as exc:
                failures.append(f"{stray}: {exc.strerror or exc}")
    candidates = dict(now.files)
    for rel in snapshot.incoming_files:
        path = _norm(_from_rel(root, rel))
        candidates.setdefault(_key(path), path)
    kept: set[str] = set()
    for key, path in candidates.items():
        if not (path.exists() or path.is_symlink()):
            continue  # never written, or it went with a stray above
        entry = wanted.get(key)
        if entry is not None and _unchanged(path, entry[1], snapshot.folder / STORE / entry[1].stored):
            kept.add(key)
            continue
        try:
            _remove_file(path)
        except OSError as exc:
            failures.append(f"{path}: {exc.strerror or exc}")
    # Folders that did not exist before, deepest first, and only once they are empty.
    saved_dirs = {_key(_from_rel(root, d)) for d in snapshot.dirs}
    for key, folder in sorted(now.dirs.items(), key=lambda kv: -len(kv[1].parts)):
        if key not in saved_dirs:
            with contextlib.suppress(OSError):
                folder.rmdir()
    return kept


def _put_back(
    snapshot: Snapshot, wanted: Mapping[str, tuple[Path, SavedFile]], kept: set[str], failures: list[str]
) -> None:
    for rel in snapshot.dirs:
        try:
            _from_rel(snapshot.env_root, rel).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            failures.append(f"{rel}: {exc.strerror or exc}")
    for key, (path, saved) in wanted.items():
        if key in kept:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() or path.is_symlink():
                _remove_file(path)
            if saved.link_target is not None:
                path.symlink_to(saved.link_target)
            else:
                _place(snapshot.folder / STORE / saved.stored, path)
        except OSError as exc:
            failures.append(f"{path}: {exc.strerror or exc}")


def _check_restored(
    snapshot: Snapshot, site_packages: Sequence[Path], wanted: Mapping[str, tuple[Path, SavedFile]]
) -> list[str]:
    """Survey again: the same set of files, each with the saved size (and time, for links)."""
    after = _survey(
        site_packages, snapshot.projects, root=snapshot.env_root, extra_tops=_area_names(snapshot)
    )
    problems = [f"{after.files[k]} should not be there" for k in after.files.keys() - wanted.keys()]
    for path, saved in wanted.values():
        try:
            st = path.lstat()
        except OSError:
            problems.append(f"{path} is missing")
            continue
        if saved.link_target is None and st.st_size != saved.size:
            problems.append(f"{path} has the wrong size")
    return problems


def _prune_empty(folder: Path) -> None:
    """Remove `rollback/` and `.torchdoctor/` once they are empty (never anything else)."""
    for candidate in (folder, folder.parent):
        if candidate.name in ("rollback", ".torchdoctor") or candidate.parent.name == "rollback":
            with contextlib.suppress(OSError):
                candidate.rmdir()


def discard_snapshot(snapshot: Snapshot, *, remove_strays: bool = True) -> None:
    """Delete the saved copy (after a successful fix, or after a restore).

    With `remove_strays`, also delete the `~orch`-style folders pip had left before the fix: the
    fix replaced the projects cleanly, and those folders only make pip warn from now on.
    """
    if remove_strays:
        for rel in snapshot.strays:
            stray = _from_rel(snapshot.env_root, rel)
            with contextlib.suppress(OSError):
                _remove_tree(stray)
    shutil.rmtree(snapshot.folder, ignore_errors=True)
    _prune_empty(snapshot.folder.parent)


def _alive(pid: int, started: float | None) -> bool:
    try:
        process = psutil.Process(pid)
        now_started = process.create_time()
        if process.status() == psutil.STATUS_ZOMBIE:
            return False  # killed, not yet reaped by its parent: it will never write again
    except psutil.Error:
        return False
    # A different start time is a different process that got the same (reused) pid.
    return started is None or abs(now_started - started) < 1.0


def _iter_snapshot_folders(root: Path) -> Iterator[Path]:
    for base in _snapshot_bases(root):
        with contextlib.suppress(OSError):
            yield from sorted(p for p in base.iterdir() if p.is_dir())


def _same_place(a: Path, b: Path) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def pending_snapshots(env: PythonEnv) -> list[Snapshot]:
    """Snapshots left by a fix whose process is gone: still "pending", pid not alive. Oldest first."""
    found: list[Snapshot] = []
    for folder in _iter_snapshot_folders(env.root):
        if not (folder / MANIFEST).is_file():
            continue
        try:
            snapshot = load_snapshot(folder)
        except SnapshotError:
            continue
        if not _same_place(snapshot.env_root, env.root):
            continue  # the environment folder was copied or moved: that snapshot is not for this one
        if snapshot.state is SnapshotState.PENDING and not _alive(snapshot.pid, snapshot.pid_started):
            found.append(snapshot)
    return sorted(found, key=lambda s: s.created)


def recover_interrupted(env: PythonEnv) -> Snapshot | None:
    """Restore the environment from the oldest interrupted fix's snapshot, if there is one.

    The caller says "an earlier fix was interrupted; restoring the previous torch first" when this
    returns a snapshot. Only the oldest one is restored (it holds the state before the first
    interrupted fix; later ones hold what that fix had half-done); all of them are discarded.
    Folders without a manifest (a run killed while taking its snapshot, before changing anything)
    are removed. Call it while holding `env_lock`.
    """
    for folder in _iter_snapshot_folders(env.root):
        if not (folder / MANIFEST).is_file() and not _alive_owner(folder):
            shutil.rmtree(folder, ignore_errors=True)
            _prune_empty(folder.parent)
    pending = pending_snapshots(env)
    if not pending:
        return None
    oldest = pending[0]
    restore_snapshot(oldest, discard=True)
    for later in pending[1:]:
        discard_snapshot(later, remove_strays=False)
    return oldest


def _alive_owner(folder: Path) -> bool:
    """A manifest-less folder is being written by a live process (its id carries the pid)."""
    parts = folder.name.split("-")
    if len(parts) >= 3 and parts[1].isdigit():
        return _alive(int(parts[1]), None)
    return False
