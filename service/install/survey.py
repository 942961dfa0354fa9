"""What a snapshot has to keep: the files of some projects as installed now, and where the wheels
about to be installed will write. Reads only; `snapshot.py` saves and puts back.

Everything is bounded by the environment's install scheme (pip's and uv's `sysconfig` scheme of a
venv or prefix): site-packages (purelib, platlib), the scripts folder, the headers folder and the
data root, which is the environment's root. A RECORD entry or wheel member that leads outside the
root, or through a link out of it, is ignored, as pip's uninstall ignores it: a restore must never
delete a file elsewhere on the machine. An entry that cannot be read is reported (`unreadable`),
never silently left out: a snapshot that misses a file cannot restore it.
"""

# The os functions take the long-path strings `io_path` returns on Windows, as they are.
# ruff: noqa: PTH208

from __future__ import annotations

import csv
import io
import os
import re
import stat
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Final

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from torchdoctor.service.install.fileops import io_path, short_path
from torchdoctor.service.models import Platform

DIST_INFO_RE: Final = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)\.dist-info$", re.IGNORECASE)
# pip's AdjacentTempDirectory.LEADING_CHARS: the characters it puts after "~" in a stash name.
_PIP_LEADING: Final = "-~.=%0123456789"
# The wheel spec's `<name>.data/<scheme>/` folders (PEP 427) and where each one installs.
_SITE_SCHEMES: Final = frozenset({"purelib", "platlib"})


# ---------------------------------------------------------------------------------------------
# Paths


def to_rel(root: Path, path: Path) -> str:
    try:
        return PurePosixPath(*path.relative_to(root).parts).as_posix()
    except ValueError:
        return str(path)


def from_rel(root: Path, rel: str) -> Path:
    candidate = Path(rel)
    return candidate if candidate.is_absolute() else root.joinpath(*rel.split("/"))


def norm(path: Path) -> Path:
    """Collapse `..` without following links (RECORD's `../../bin/x` is relative to site-packages)."""
    return Path(os.path.normpath(path))


def key(path: Path) -> str:
    return os.path.normcase(os.fspath(norm(path)))


def inside(path: Path, folders: Iterable[Path]) -> bool:
    k = key(path)
    return any(k.startswith(key(f).rstrip(os.sep) + os.sep) for f in folders)


def really_inside(path: Path, folders: Sequence[Path]) -> bool:
    """Inside one of `folders` by name *and* once links are followed: a RECORD entry that reaches
    through `bin -> /usr/bin` is outside, however its name reads."""
    if not inside(path, folders):
        return False
    real_parent = os.path.normcase(os.path.realpath(path.parent)) + os.sep
    return any(
        real_parent.startswith(os.path.normcase(os.path.realpath(f)).rstrip(os.sep) + os.sep) for f in folders
    )


def distinct(folders: Iterable[Path]) -> list[Path]:
    """The folders once each, even when two names lead to one folder (`lib64 -> lib` in venvs)."""
    seen: set[str] = set()
    unique: list[Path] = []
    for folder in folders:
        real = os.path.normcase(os.path.realpath(folder))
        if real not in seen:
            seen.add(real)
            unique.append(norm(folder))
    return unique


def scripts_dir(root: Path, platform: Platform) -> Path:
    return root / ("Scripts" if platform is Platform.WINDOWS else "bin")


def headers_dir(root: Path, platform: Platform, python_version: str | None, project: str) -> Path:
    """pip's and uv's `headers` path of a venv or prefix: include/site/pythonX.Y/<project>."""
    parts = (python_version or "").split(".")
    short = ".".join(parts[:2]) if len(parts) >= 2 else "3"
    include = "Include" if platform is Platform.WINDOWS else "include"
    return root / include / "site" / f"python{short}" / project


# ---------------------------------------------------------------------------------------------
# Reading what is installed


def record_paths(dist_info: Path, unreadable: list[str]) -> list[str]:
    """A dist-info's RECORD entries; a RECORD that exists but cannot be read goes to `unreadable`."""
    try:
        text = Path(io_path(dist_info / "RECORD")).read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return []  # a half-written dist-info: its folder is saved whole anyway
    except OSError as exc:
        unreadable.append(f"{dist_info / 'RECORD'}: {exc.strerror or exc}")
        return []
    return [row[0] for row in csv.reader(io.StringIO(text)) if row and row[0]]


def top_name(entry: str) -> str | None:
    """`torch/_C.so` -> "torch"; None for files at the top, `..` paths and dist-info folders."""
    parts = PurePosixPath(entry.replace("\\", "/")).parts
    if len(parts) < 2 or parts[0] in ("..", ".", "__pycache__") or parts[0].endswith(".dist-info"):
        return None
    return parts[0]


def stray_pattern(names: Iterable[str]) -> re.Pattern[str]:
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
class Survey:
    """What belongs to the projects right now (absolute, normalised paths)."""

    files: dict[str, Path] = field(default_factory=dict)  # key -> path
    dirs: dict[str, Path] = field(default_factory=dict)
    areas: dict[str, Path] = field(default_factory=dict)
    strays: dict[str, Path] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    recorded: set[str] = field(default_factory=set)  # keys of files some RECORD of ours lists
    owned: list[Path] = field(default_factory=list)  # dist-info folders, areas and strays
    unreadable: list[str] = field(default_factory=list)  # "path: reason", never silently dropped

    def add_file(self, path: Path) -> None:
        self.files.setdefault(key(path), norm(path))

    def add_tree(self, top: Path) -> None:
        """Every file and folder under `top` (links are entries, never followed)."""
        kind = _kind(top)
        if kind != "dir":
            if kind is not None:
                self.add_file(top)
            return
        self.dirs.setdefault(key(top), norm(top))

        def report(exc: OSError) -> None:
            self.unreadable.append(f"{short_path(str(exc.filename))}: {exc.strerror or exc}")

        for folder, subdirs, names in os.walk(io_path(top), followlinks=False, onerror=report):
            base = Path(short_path(folder))
            for name in subdirs:
                sub = base / name
                if _kind(sub) == "link":
                    self.add_file(sub)
                else:
                    self.dirs.setdefault(key(sub), norm(sub))
            for name in names:
                self.add_file(base / name)


def _kind(path: Path) -> str | None:
    """ "dir", "link", "file" (anything else that is not a folder) or None, links not followed."""
    try:
        mode = os.lstat(io_path(path)).st_mode
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        return "link"
    return "dir" if stat.S_ISDIR(mode) else "file"


def survey(
    site_packages: Sequence[Path],
    projects: Sequence[str],
    *,
    root: Path,
    extra_tops: Iterable[str] = (),
) -> Survey:
    """The projects' files now: their RECORD entries inside the root, their dist-info folders,
    their top-level folders in site-packages (unless another project's RECORD claims one too: a
    shared namespace is limited to RECORD entries) and pip's `~orch` stashes of them."""
    wanted = {canonicalize_name(p) for p in projects}
    allowed = [root, *site_packages]
    found = Survey()
    for sp in site_packages:
        try:
            entries = sorted(sp / name for name in os.listdir(io_path(sp)))
        except FileNotFoundError:
            continue
        except OSError as exc:
            found.unreadable.append(f"{sp}: {exc.strerror or exc}")
            continue
        ours: list[Path] = []
        claimed_by_others: set[str] = set()
        for entry in entries:
            match = DIST_INFO_RE.match(entry.name)
            if not match or _kind(entry) != "dir" or entry.name.startswith("~"):
                continue  # a `~orch-...dist-info` stash claims nothing: it is pip's debris
            if canonicalize_name(match.group("name")) in wanted:
                ours.append(entry)
            else:
                claimed_by_others.update(t for t in map(top_name, record_paths(entry, [])) if t)
        tops: set[str] = set(extra_tops)
        for dist_info in ours:
            match = DIST_INFO_RE.match(dist_info.name)
            assert match is not None  # noqa: S101 (selected by this pattern above)
            found.versions.setdefault(canonicalize_name(match.group("name")), match.group("version"))
            for rel in record_paths(dist_info, found.unreadable):
                path = norm(sp / rel)
                if not really_inside(path, allowed):
                    continue
                if _kind(path) in ("file", "link"):
                    found.add_file(path)
                    found.recorded.add(key(path))
                top = top_name(rel)
                if top is not None:
                    tops.add(top)
            found.owned.append(norm(dist_info))
            found.add_tree(dist_info)
        for top in sorted(tops - claimed_by_others):
            area = sp / top
            found.areas.setdefault(key(area), norm(area))
            found.owned.append(norm(area))
            if _kind(area) is not None:
                found.add_tree(area)
        strays = stray_pattern({*tops, *(p.replace("-", "_") for p in wanted)})
        for entry in entries:
            if strays.match(entry.name):
                found.strays.setdefault(key(entry), norm(entry))
                found.owned.append(norm(entry))
                found.add_tree(entry)
    return found


# ---------------------------------------------------------------------------------------------
# Where incoming wheels will write


@dataclass(frozen=True, slots=True)
class WheelLayout:
    project: str  # the name as the wheel file spells it (pip names the headers folder after it)
    tops: frozenset[str]  # top-level folders it creates in site-packages
    site: frozenset[str]  # files it writes in site-packages, "/"-separated (purelib and platlib)
    scripts: frozenset[str]  # names it creates in the scripts folder
    data: frozenset[str]  # files under the data root (the environment's root)
    headers: frozenset[str]  # files under its headers folder


def safe_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return bool(name) and not name.startswith("/") and ":" not in name and ".." not in parts


def entry_point_scripts(text: str) -> set[str]:
    names: set[str] = set()
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section in ("console_scripts", "gui_scripts") and "=" in line:
            names.add(line.split("=", 1)[0].strip())
    return names


def wheel_layout(wheel: Path) -> WheelLayout:
    """What an incoming wheel would create, read from its file list (nothing is extracted).

    Members under `<name>.data/<scheme>/` go where that scheme installs: purelib and platlib into
    site-packages, scripts into the scripts folder, data under the root, headers into the
    headers folder. Names that could point outside their folder are skipped: installers reject
    them, and we must never plan to remove a file elsewhere because of them.
    """
    try:
        project: str = parse_wheel_filename(wheel.name)[0]
    except InvalidWheelFilename:
        project = wheel.name.split("-", 1)[0]
    tops: set[str] = set()
    site: set[str] = set()
    scripts: set[str] = set()
    data: set[str] = set()
    headers: set[str] = set()
    try:
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if not safe_member(name) or name.endswith("/"):
                    continue
                first, _, rest = name.partition("/")
                if first.endswith(".data"):
                    scheme, _, inner = rest.partition("/")
                    if not inner:
                        continue
                    if scheme in _SITE_SCHEMES:
                        site.add(inner)
                        if (top := top_name(inner)) is not None:
                            tops.add(top)
                    elif scheme == "scripts" and "/" not in inner:
                        scripts.add(inner)
                    elif scheme == "data":
                        data.add(inner)
                    elif scheme == "headers":
                        headers.add(inner)
                    continue
                site.add(name)
                if (top := top_name(name)) is not None:
                    tops.add(top)
                if first.endswith(".dist-info") and rest == "entry_points.txt":
                    scripts.update(entry_point_scripts(zf.read(name).decode("utf-8", "replace")))
    except (OSError, zipfile.BadZipFile):
        # The installer will reject it; nothing it could half-write needs predicting.
        return WheelLayout(project, frozenset(), frozenset(), frozenset(), frozenset(), frozenset())
    plain = frozenset(s for s in scripts if safe_member(s) and "/" not in s and "\\" not in s)
    return WheelLayout(project, frozenset(tops), frozenset(site), plain, frozenset(data), frozenset(headers))


@dataclass(frozen=True, slots=True)
class Incoming:
    """Where the wheels about to be installed will write."""

    tops: frozenset[str]  # top-level folders in site-packages
    targets: tuple[Path, ...]  # every file they write, in every scheme folder


def incoming(
    root: Path,
    site_packages: Sequence[Path],
    platform: Platform,
    python_version: str | None,
    wheels: Sequence[Path],
) -> Incoming:
    tops: set[str] = set()
    targets: list[Path] = []
    folder = scripts_dir(root, platform)
    for wheel in wheels:
        layout = wheel_layout(wheel)
        tops |= layout.tops
        targets += [sp / m for sp in site_packages for m in sorted(layout.site)]
        for script in sorted(layout.scripts):
            targets.append(folder / script)
            if platform is Platform.WINDOWS:
                targets.append(folder / f"{script}.exe")  # console-script launchers
        targets += [root / d for d in sorted(layout.data)]
        headers = headers_dir(root, platform, python_version, layout.project)
        targets += [headers / h for h in sorted(layout.headers)]
    kept = [norm(t) for t in targets if really_inside(norm(t), [root, *site_packages])]
    return Incoming(frozenset(tops), tuple(dict.fromkeys(kept)))
