"""Finding Python environments, and reading one without starting its interpreter.

Where we look, in this order (the first source to find an environment decides its kind; duplicates are
recognised by the environment's resolved root folder, never by its interpreter, which every venv links
to):
  1. `environments` from config.toml (the only ones whose interpreter we may start, see below);
  2. the active environment: `VIRTUAL_ENV`, `CONDA_PREFIX`;
  3. conda/mamba/miniforge: `~/.conda/environments.txt`, the usual base folders and each base's `envs/`;
  4. pyenv (`$PYENV_ROOT` or `~/.pyenv`) and pyenv-win (`~/.pyenv/pyenv-win`): `versions/*` and
     pyenv-virtualenv's `versions/*/envs/*`;
  5. uv-managed Pythons: `$UV_PYTHON_INSTALL_DIR`, else `$XDG_DATA_HOME/uv/python` or
     `~/.local/share/uv/python` (`%APPDATA%\\uv\\python` and `%APPDATA%\\uv\\data\\python` on Windows);
     the venvs Poetry, Hatch and pipenv keep outside projects (`tool_venv_roots`);
  6. Windows: the PEP 514 registry (service/envs/winreg_reader.py) and the `py` launcher (`py -0p`,
     started by an absolute path, never from the current folder);
  7. interpreters on PATH (pyenv shims and other scripts skipped, Microsoft Store aliases skipped);
  8. a bounded search for venvs (`pyvenv.cfg`) and conda prefixes (`conda-meta`) under `roots` from
     config.toml and the home folder: breadth first, `scan_depth` levels, `scan_seconds` in all,
     without entering hidden folders, node_modules and the like, symlinks or a found environment.

Everything about an environment is read from its files: the Python version from `pyvenv.cfg`, conda's
`conda-meta/python-*.json`, `patchlevel.h`, pyenv/uv folder names or `lib/pythonX.Y`; site-packages
from the platform's layout; pip from its package folder. Starting an interpreter (5 s timeout) is the
last resort, and only for environments a person named.

The platform is an argument (default: the running OS), so the Windows layouts, the registry and the
`py` launcher are tested on Linux with folders built on disk and fakes at the boundaries.
"""

from __future__ import annotations

import contextlib
import locale
import os
import re
import stat
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Final

from torchdoctor.service import proc
from torchdoctor.service.config import Settings
from torchdoctor.service.envs.usersite import store_sites
from torchdoctor.service.envs.winreg_reader import RegistryReader, default_registry, registered_pythons
from torchdoctor.service.errors import (
    NotAnEnvironmentError,
    SubprocessTimeoutError,
    UnreadableError,
)
from torchdoctor.service.models import EnvKind, Platform, PythonEnv
from torchdoctor.service.proc import Completed

PYVENV_CFG: Final = "pyvenv.cfg"
CONDA_META: Final = "conda-meta"
INTERPRETER_TIMEOUT: Final = 5.0
PY_LAUNCHER_TIMEOUT: Final = 5.0

# Folders never entered while searching: big, never hold environments, or not ours to walk.
# Hidden folders (".git", ".cache", ".tox"...) are not entered either, but are still checked for
# being an environment themselves (".venv").
SKIPPED_FOLDERS: Final = frozenset(
    name.casefold()
    for name in (
        "node_modules",
        "__pycache__",
        "site-packages",
        "dist-packages",
        "bower_components",
        # Windows: AppData holds caches and Temp; the legacy junctions refuse listing anyway.
        "AppData",
        "Application Data",
        "Local Settings",
        "Cookies",
        "NetHood",
        "PrintHood",
        "Recent",
        "SendTo",
        "Start Menu",
        "Templates",
        "$Recycle.Bin",
        "System Volume Information",
        # macOS: ~/Library is application data.
        "Library",
        # Linux: snap's per-app homes.
        "snap",
    )
)

# Kernel and device filesystems, should someone add "/" to `roots`.
_PSEUDO_FILESYSTEMS: Final = frozenset({"/proc", "/sys", "/dev", "/run"})

_KIND_ORDER: Final = {
    EnvKind.VENV: 0,
    EnvKind.CONDA: 1,
    EnvKind.UV: 2,
    EnvKind.PYENV: 3,
    EnvKind.PY_LAUNCHER: 4,
    EnvKind.SYSTEM: 5,
}
_RELEASE_LEVELS: Final = {"alpha": "a", "beta": "b", "candidate": "rc", "final": ""}
_VERSION_RE: Final = re.compile(
    r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.?(alpha|beta|candidate|final|a|b|rc)\.?(\d+)?)?"
)
_CONDA_PYTHON_RE: Final = re.compile(r"^python-(\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?)-[^-]+\.json$")
_PATCHLEVEL_RE: Final = re.compile(r'^#define\s+PY_VERSION\s+"([^"]+)"', re.MULTILINE)
# uv: cpython-3.12.4-linux-x86_64-gnu, cpython-3.13.0+freethreaded-windows-x86_64-none, pypy-3.10.14-...
_UV_FOLDER_RE: Final = re.compile(
    r"^(?:cpython|pypy|graalpy)-(\d+\.\d+(?:\.\d+)?(?:(?:a|b|rc)\d+)?)[^-]*-(?:linux|windows|macos|darwin)-"
)
# pyenv: 3.12.1, 3.13.0t, 3.14.0rc1, pypy3.10-7.3.15, graalpy-..., miniforge3-latest (conda-meta).
_PYENV_FOLDER_RE: Final = re.compile(r"^(?:pypy)?(\d+\.\d+(?:\.\d+)?(?:(?:a|b|rc)\d+)?)")
_POSIX_PYTHON_NAME_RE: Final = re.compile(r"^python(?:3(?:\.\d+t?)?)?$")
_EXE_VERSION_RE: Final = re.compile(r"^python(\d\.\d+)t?$")
_LIB_VERSION_RE: Final = re.compile(r"^python(\d\.\d+)t?$")
_DLL_VERSION_RE: Final = re.compile(r"^python(\d)(\d+)t?\.dll$", re.IGNORECASE)
# `py -0p`: " -V:3.12 *        C:\...\python.exe" (launcher 3.11+) or " -3.9-64        C:\...\python.exe *".
_PY_LIST_LINE_RE: Final = re.compile(r"^\s*(-\S+)?\s*\*?\s*(.+?)\s*\*?\s*$")
# "-3.9-64", "-V:3.12", "-V:3.13t", "-V:Astral/CPython3.12.12", "-V:Astral\\CPython3.13.1": the version
# after the company, if any; "-V:ContinuumAnalytics/Anaconda39-64" names none (no dot), which is right.
_PY_TAG_VERSION_RE: Final = re.compile(r"^-(?:V:)?(?:.*[/\\])?[^\d/\\]*?(\d+\.\d+(?:\.\d+)?)")
_UNREADABLE_EXAMPLES: Final = 3
_WHAT_TO_GIVE: Final = "give an environment's folder (a venv, a conda prefix, a Python install) or its python"
_HOST_PLATFORMS: Final = {"win32": Platform.WINDOWS, "darwin": Platform.MACOS}


@dataclass(frozen=True, slots=True)
class Discovery:
    environments: tuple[PythonEnv, ...]
    notes: tuple[str, ...] = ()


def host_platform() -> Platform:
    """The running OS (a lookup, not `if` chains, so mypy checks this file for every platform)."""
    return _HOST_PLATFORMS.get(sys.platform, Platform.LINUX)


# --- reading one environment -------------------------------------------------------------------


def _is_windows(platform: Platform) -> bool:
    return platform is Platform.WINDOWS


# Quiet probes: a folder we may not enter simply has no such file. The places where permission
# matters (an environment a person named, a folder we search) list folders and report it.
def _isfile(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _isdir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _lexists(path: Path) -> bool:
    # A venv whose base Python was removed keeps a dangling `bin/python`: still an environment
    # (a broken one the user should hear about).
    try:
        return path.is_symlink() or path.exists()
    except OSError:
        return False


def normalize_version(text: str | None) -> str | None:
    """A PEP 440-style version from "3.12.4", "3.12.1.final.0" (virtualenv) or "3.13.0.candidate.1".

    None for anything that does not start with a version."""
    if not text:
        return None
    match = _VERSION_RE.match(text)
    if not match:
        return None
    major, minor, micro, level, serial = match.groups()
    version = f"{major}.{minor}" + (f".{micro}" if micro is not None else "")
    if level:
        suffix = _RELEASE_LEVELS.get(level, level)
        if suffix:
            version += suffix + (serial or "0")
    return version


def read_pyvenv_cfg(root: Path) -> dict[str, str]:
    """`key = value` lines of `root/pyvenv.cfg`, keys lower-cased (the file has no sections)."""
    values: dict[str, str] = {}
    text = (root / PYVENV_CFG).read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    return values


def _patchlevel_version(path: Path) -> str | None:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            match = _PATCHLEVEL_RE.search(handle.read(16384))
    except OSError:
        return None
    return normalize_version(match.group(1)) if match else None


def _names(folder: Path) -> list[str]:
    try:
        return sorted(p.name for p in folder.iterdir())
    except OSError:
        return []


def _conda_python_version(root: Path) -> str | None:
    for name in _names(root / CONDA_META):
        match = _CONDA_PYTHON_RE.match(name)
        if match:
            return normalize_version(match.group(1))
    return None


def _lib_folders(root: Path, platform: Platform) -> list[Path]:
    """posix `lib/pythonX.Y` (and `lib64/...`, `lib/pypyX.Y`): the stdlib + site-packages parents."""
    if _is_windows(platform):
        return []
    folders: list[Path] = []
    for lib in ("lib", "lib64"):
        folders.extend(
            root / lib / name
            for name in _names(root / lib)
            if _LIB_VERSION_RE.match(name) or name.startswith("pypy")
        )
    return folders


def _minor(version: str | None) -> str | None:
    if version is None:
        return None
    parts = version.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else None


def _minor_of_folder(name: str) -> str | None:
    match = _LIB_VERSION_RE.match(name)
    if match:
        return match.group(1)
    match = re.match(r"^pypy(\d\.\d+)$", name)
    return match.group(1) if match else None


@dataclass(slots=True)
class _VersionEvidence:
    """Versions read from files, best first; the first full one (3.12.4) wins, else the first X.Y."""

    candidates: list[str] = field(default_factory=list)

    def add(self, version: str | None) -> None:
        if version:
            self.candidates.append(version)

    def best(self) -> str | None:
        for version in self.candidates:
            if version.count(".") >= 2:
                return version
        return self.candidates[0] if self.candidates else None

    def full(self) -> bool:
        return any(v.count(".") >= 2 for v in self.candidates)


def _exe_minor(python: Path) -> str | None:
    """The X.Y in `python3.12`, or in what `python3` links to (`/usr/bin/python3 -> python3.11`)."""
    match = _EXE_VERSION_RE.match(python.name)
    if match is None:
        try:
            match = _EXE_VERSION_RE.match(python.readlink().name)
        except (OSError, ValueError):  # not a link
            return None
    return match.group(1) if match else None


def _version_from_files(
    root: Path,
    platform: Platform,
    *,
    cfg: Mapping[str, str] | None,
    conda: bool,
    python: Path,
    hints: Sequence[str | None],
) -> str | None:
    evidence = _VersionEvidence()
    if cfg is not None:
        # uv and virtualenv write `version_info`, the stdlib venv writes `version`.
        evidence.add(normalize_version(cfg.get("version_info") or cfg.get("version")))
    if conda and not evidence.full():
        evidence.add(_conda_python_version(root))
    exe_minor = _exe_minor(python)
    if not evidence.full():
        if _is_windows(platform):
            evidence.add(_patchlevel_version(root / "include" / "patchlevel.h"))
        else:
            includes = [n for n in _names(root / "include") if _LIB_VERSION_RE.match(n)]
            if exe_minor is not None:
                includes = [n for n in includes if _minor_of_folder(n) == exe_minor]
            if len(includes) == 1:
                evidence.add(_patchlevel_version(root / "include" / includes[0] / "patchlevel.h"))
    if not evidence.full():
        for pattern in (_UV_FOLDER_RE, _PYENV_FOLDER_RE):
            match = pattern.match(root.name)
            if match:
                evidence.add(normalize_version(match.group(1)))
                break
    for hint in hints:
        evidence.add(normalize_version(hint))
    if not evidence.candidates:
        evidence.add(exe_minor)
    if not evidence.candidates:
        if _is_windows(platform):
            for name in _names(root):
                match = _DLL_VERSION_RE.match(name)
                if match:
                    evidence.add(f"{match.group(1)}.{match.group(2)}")
                    break
        else:
            minors = {m for m in (_minor_of_folder(f.name) for f in _lib_folders(root, platform)) if m}
            if len(minors) == 1:
                evidence.add(minors.pop())
    return evidence.best()


def _version_from_interpreter(python: Path, run: Callable[..., Completed]) -> str | None:
    """`python -c "import platform; print(platform.python_version())"`, 5 s; None on any failure."""
    try:
        done = run(
            [python, "-c", "import platform; print(platform.python_version())"],
            timeout=INTERPRETER_TIMEOUT,
        )
    except (OSError, SubprocessTimeoutError):
        return None
    return normalize_version(done.stdout.strip()) if done.ok else None


_FREE_THREADED_EXE_RE: Final = re.compile(r"^python\d\.\d+t(?:\.exe)?$", re.IGNORECASE)


def is_free_threaded(python: Path) -> bool:
    """`python3.13t` / `python3.13t.exe`: the free-threaded build, with its own `lib/python3.13t`."""
    return _FREE_THREADED_EXE_RE.match(python.name) is not None


def _site_packages(
    root: Path, platform: Platform, version: str | None, *, free_threaded: bool = False
) -> tuple[Path, ...]:
    """The environment's own site-packages folders that exist (never the user site).

    On posix a free-threaded interpreter reads `lib/python3.13t`, the default one `lib/python3.13`;
    where both builds share a prefix each gets only its own (on Windows both use Lib\\site-packages).
    """
    found: list[Path] = []
    if _is_windows(platform):
        found.append(root / "Lib" / "site-packages")
    else:
        minor = _minor(version)
        same_minor = [
            f
            for f in _lib_folders(root, platform)
            if minor is None or _minor_of_folder(f.name) in (minor, None)
        ]
        # A venv made from python3.13t has only lib/python3.13t, reached through a plain `python`.
        libs = [
            f for f in same_minor if not f.name.startswith("python") or f.name.endswith("t") == free_threaded
        ] or same_minor
        found.extend(lib / "site-packages" for lib in libs)
        # Debian/Ubuntu's system Python: pip and apt install into dist-packages.
        found.extend(lib / "dist-packages" for lib in libs)
        found.append(root / "lib" / "python3" / "dist-packages")
        if minor is not None and root == Path("/usr"):
            found.insert(0, Path("/usr/local/lib") / f"python{minor}" / "dist-packages")
    result: list[Path] = []
    seen: set[Path] = set()
    for folder in found:
        if not _isdir(folder):
            continue
        try:
            key = folder.resolve()
        except (OSError, RuntimeError):
            key = folder
        # lib64 is a symlink to lib in every venv: one folder, reported once.
        if key not in seen:
            seen.add(key)
            result.append(folder)
    return tuple(result)


def _has_pip(site_packages: Iterable[Path]) -> bool:
    for folder in site_packages:
        names = _names(folder)
        if "pip" in names or any(n.startswith("pip-") and n.endswith(".dist-info") for n in names):
            return True
    return False


def _python_in(root: Path, platform: Platform, *, plain_install: bool) -> Path | None:
    """The interpreter of an environment rooted at `root`, or None."""
    if _is_windows(platform):
        candidates = [root / "Scripts" / "python.exe", root / "python.exe", root / "Scripts" / "pypy3.exe"]
        return next((c for c in candidates if _lexists(c)), None)
    bin_dir = root / "bin"
    # In a plain install `python` may be Python 2 (or absent); in an environment it is the canonical name.
    order = ["python3", "python"] if plain_install else ["python", "python3"]
    names = _names(bin_dir)
    versioned = sorted((n for n in names if _POSIX_PYTHON_NAME_RE.match(n) and "." in n), reverse=True)
    versioned.sort(key=lambda n: n.endswith("t"))  # the default build before the free-threaded one
    for name in [*order, *versioned, "pypy3", "pypy"]:
        if name in names and _lexists(bin_dir / name):
            return bin_dir / name
    return None


def environment_key(env: PythonEnv) -> str:
    """What tells one environment from every other: its folder, or, for the free-threaded build
    that shares a folder with the default one (`python3.13t` beside `python3.13`), its interpreter.
    Both are what `--env` accepts, so the key is also what `fix --env` is given."""
    return str(env.python) if is_free_threaded(env.python) else str(env.root)


def free_threaded_sibling(env: PythonEnv) -> Path | None:
    """The free-threaded interpreter beside `env`'s default one (`python3.13t` next to `python3.13`,
    `python3.13t.exe` next to `python.exe`), or None."""
    if is_free_threaded(env.python):
        return None
    folder = env.python.parent
    names = _names(folder)
    wanted = [f"python{m}t" for m in [_minor(env.python_version)] if m]
    if _is_windows(env.platform):
        wanted = [n + ".exe" for n in wanted]
    else:
        # posix: only a prefix that really holds the second build (lib/python3.13t), not a stray link.
        wanted = [n for n in wanted if _isdir(env.root / "lib" / n)]
    folded = {n.casefold(): n for n in names}
    found = next((folded[w.casefold()] for w in wanted if w.casefold() in folded), None)
    return folder / found if found else None


def _has_stdlib(root: Path, platform: Platform) -> bool:
    """Does `root` look like a Python install (not just a folder with a `bin/python` link)?"""
    if _is_windows(platform):
        return _isdir(root / "Lib") or any(_DLL_VERSION_RE.match(n) for n in _names(root))
    # os.py, not just lib/pythonX.Y: Debian's /usr/local/lib/python3.11 holds only dist-packages, and
    # /usr/local/bin/python3 linking to /usr/bin/python3 belongs to /usr.
    return any(_isfile(folder / "os.py") for folder in _lib_folders(root, platform))


def _is_pyenv_version(root: Path) -> bool:
    versions = root.parent
    if versions.name != "versions":
        # pyenv-virtualenv: versions/3.12.1/envs/<name>
        return False
    base = versions.parent
    return base.name.casefold() in {".pyenv", "pyenv-win", "pyenv"} or _isfile(base / "libexec" / "pyenv")


def _is_uv_python(root: Path) -> bool:
    return bool(_UV_FOLDER_RE.match(root.name))


def _classify(root: Path, *, venv: bool, conda: bool, kind_hint: EnvKind | None) -> EnvKind:
    if venv:
        return EnvKind.VENV
    if conda:
        return EnvKind.CONDA
    if _is_pyenv_version(root):
        return EnvKind.PYENV
    if _is_uv_python(root):
        return EnvKind.UV
    return kind_hint or EnvKind.SYSTEM


def is_store_alias(path: str | Path, platform: Platform) -> bool:
    """True for the Microsoft Store's `...\\Microsoft\\WindowsApps\\python.exe` stubs and Store installs.

    The stubs open the Store instead of running Python; Store installs live under
    `C:\\Program Files\\WindowsApps` where nothing can be installed into them.
    """
    if not _is_windows(platform):
        return False
    text = str(path)
    parts = {p.casefold() for p in (*PureWindowsPath(text).parts, *PurePosixPath(text).parts)}
    return "windowsapps" in parts


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        return path.absolute()


def _inspect(
    root: Path,
    platform: Platform,
    *,
    python: Path | None = None,
    kind_hint: EnvKind | None = None,
    version_hints: Sequence[str | None] = (),
    run: Callable[..., Completed] | None = None,
) -> PythonEnv:
    """Read the environment rooted at `root`; `python` is a relative path inside it, when known.

    Raises NotAnEnvironmentError, or OSError (PermissionError) when the folder cannot be read.
    """
    root = _resolve(root)
    if not _isdir(root):
        raise NotAnEnvironmentError(f"{root} is not a Python environment: no such folder")
    # Touch the folder for real: a PermissionError here is the one a person needs to hear about.
    entries = {p.name for p in root.iterdir()}
    venv = PYVENV_CFG in entries and _isfile(root / PYVENV_CFG)
    conda = CONDA_META in entries and _isdir(root / CONDA_META)
    exe = root / python if python is not None else None
    if exe is None or not _lexists(exe):
        exe = _python_in(root, platform, plain_install=not (venv or conda))
    if exe is None:
        if conda:
            raise NotAnEnvironmentError(
                f"{root} is a conda environment without Python: no python executable found"
            )
        raise NotAnEnvironmentError(
            f"{root} is not a Python environment: no pyvenv.cfg, conda-meta or python executable found"
        )
    cfg = read_pyvenv_cfg(root) if venv else None
    version = _version_from_files(root, platform, cfg=cfg, conda=conda, python=exe, hints=version_hints)
    if (version is None or version.count(".") < 2) and run is not None and platform is host_platform():
        version = _version_from_interpreter(exe, run) or version
    site_packages = _site_packages(root, platform, version, free_threaded=is_free_threaded(exe))
    return PythonEnv(
        root=root,
        python=exe,
        python_version=version,
        kind=_classify(root, venv=venv, conda=conda, kind_hint=kind_hint),
        has_pip=_has_pip(site_packages),
        site_packages=site_packages,
        platform=platform,
    )


def _root_of_executable(exe: Path, platform: Platform) -> tuple[Path, Path] | None:
    """(root, the interpreter's path relative to it) for a python executable, or None."""
    # Resolve the folder, not the file: `/bin` -> `/usr/bin` must meet `/usr`, but a venv's
    # `bin/python` must stay inside the venv rather than lead to the Python it links to.
    folder = _resolve(exe.parent)
    if _is_windows(platform):
        if folder.name.casefold() == "scripts" and _isfile(folder.parent / PYVENV_CFG):
            return folder.parent, Path(folder.name) / exe.name
        if _isdir(folder / CONDA_META) or _isfile(folder / PYVENV_CFG) or _has_stdlib(folder, platform):
            return folder, Path(exe.name)
        return None
    if folder.name != "bin":
        return None
    root = folder.parent
    if _isfile(root / PYVENV_CFG) or _isdir(root / CONDA_META) or _has_stdlib(root, platform):
        return root, Path("bin") / exe.name
    return None


def _locate(path: Path, platform: Platform) -> tuple[Path, Path | None]:
    """(root, interpreter relative to the root or None) for a folder or an executable path."""
    if _isdir(path):
        return path, None
    located = _root_of_executable(path, platform)
    if located is None and path.is_symlink():
        # `~/bin/python3.12 -> ~/.pyenv/versions/3.12.1/bin/python3.12`: follow the link to its install.
        located = _root_of_executable(_resolve(path), platform)
    if located is None:
        raise NotAnEnvironmentError(
            f"{path} is not a Python environment: no pyvenv.cfg, conda-meta or python executable found",
            hint=_WHAT_TO_GIVE,
        )
    return located


def environment_from_path(
    path: Path,
    *,
    platform: Platform | None = None,
    run: Callable[..., Completed] | None = proc.run,
) -> PythonEnv:
    """The environment at `path`: its root folder or its python executable.

    Accepts a venv, a conda prefix, a Python install folder, or `.venv/bin/python`,
    `Scripts\\python.exe`, `python.exe` at a Windows install root, a `bin/python3.12` symlink.
    As a person named this environment, its interpreter may be started (5 s) when no file says its
    version; `run=None` forbids that. Raises NotAnEnvironmentError or UnreadableError.
    """
    platform = platform if platform is not None else host_platform()
    path = path.expanduser()
    if is_store_alias(path, platform):
        raise NotAnEnvironmentError(
            f"{path} is a Microsoft Store alias, not a Python environment",
            hint="give the folder of a real Python install or venv",
        )
    try:
        if not _lexists(path):
            raise NotAnEnvironmentError(f"{path} is not a Python environment: it does not exist")
        root, python = _locate(path, platform)
        try:
            return _inspect(root, platform, python=python, run=run)
        except NotAnEnvironmentError as exc:
            venv_inside = path / ".venv"
            if _isfile(venv_inside / PYVENV_CFG):
                exc.hint = f"did you mean {venv_inside}?"
            elif exc.hint is None:
                exc.hint = _WHAT_TO_GIVE
            raise
    except PermissionError as exc:
        where = exc.filename or path
        raise UnreadableError(
            f"cannot read the environment at {path}: permission denied on {where}",
            hint="run torchdoctor as a user who can read it, or leave it out",
        ) from exc
    except OSError as exc:
        raise UnreadableError(f"cannot read the environment at {path}: {exc.strerror or exc}") from exc


# --- finding environments ----------------------------------------------------------------------


def _getenv(environ: Mapping[str, str], name: str, platform: Platform) -> str | None:
    value = environ.get(name)
    if value is None and _is_windows(platform):
        # Windows variable names are case-insensitive; a plain dict (tests, services) is not.
        folded = name.casefold()
        value = next((v for k, v in environ.items() if k.casefold() == folded), None)
    return value or None


def _env_path(environ: Mapping[str, str], name: str, platform: Platform) -> Path | None:
    value = _getenv(environ, name, platform)
    return Path(value).expanduser() if value else None


def parse_py_launcher(output: str) -> tuple[tuple[str | None, str], ...]:
    """(version, executable) pairs from `py -0p` (also called `py --list-paths`).

    Both launcher generations are understood:
        " -V:3.12 *        C:\\Users\\me\\AppData\\Local\\Programs\\Python\\Python312\\python.exe"  (3.11+)
        " -V:ContinuumAnalytics/Anaconda39-64 D:\\dev\\anaconda3\\python.exe"
        " -3.9-64        C:\\Python39\\python.exe *"                                              (older)
    The header line ("Installed Pythons found by py Launcher for Windows") and lines without a
    path ("Active venv") are skipped.
    """
    found: list[tuple[str | None, str]] = []
    for line in output.splitlines():
        match = _PY_LIST_LINE_RE.match(line)
        if not match or not match.group(1):
            continue
        tag, rest = match.group(1), match.group(2)
        # The path starts like an absolute path: a drive, a UNC share (or, in tests on Linux, "/").
        path_match = re.search(r"([A-Za-z]:[\\/].*|\\\\.*|/.*)$", rest)
        if not path_match:
            continue
        version = _PY_TAG_VERSION_RE.match(tag)
        found.append((version.group(1) if version else None, path_match.group(1).strip()))
    return tuple(found)


@dataclass(slots=True)
class _Collector:
    platform: Platform
    home: Path
    exclude: tuple[Path, ...]
    found: dict[str, PythonEnv] = field(default_factory=dict)
    explicit: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)

    def key(self, root: Path) -> str:
        text = str(root)
        return text.casefold() if _is_windows(self.platform) else text

    def excluded(self, path: Path) -> bool:
        return any(path == ex or path.is_relative_to(ex) for ex in self.exclude)

    def known(self, root: Path) -> bool:
        return self.key(_resolve(root)) in self.found

    def add(self, env: PythonEnv, *, explicit: bool = False) -> None:
        key = self.key(Path(environment_key(env)))
        if key in self.found or self.excluded(env.root):
            return
        self.found[key] = env
        if explicit:
            self.explicit.append(key)

    def try_root(
        self,
        root: Path,
        *,
        python: Path | None = None,
        kind_hint: EnvKind | None = None,
        version_hints: Sequence[str | None] = (),
    ) -> None:
        """Add the environment at `root` if it is one; stay quiet if it is not (a stale list entry)."""
        if self.known(root) or self.excluded(_resolve(root)):
            return
        try:
            env = _inspect(
                root, self.platform, python=python, kind_hint=kind_hint, version_hints=version_hints
            )
        except NotAnEnvironmentError:
            return
        except PermissionError:
            self.unreadable.append(root)
            return
        except OSError:
            return
        self.add(env)
        sibling = free_threaded_sibling(env)
        if sibling is not None and not self.excluded(env.root):
            # Its own interpreter and its own lib/python3.13t: an environment of its own, told apart
            # from the default build in the same folder by its interpreter (`environment_key`).
            with contextlib.suppress(NotAnEnvironmentError, OSError):
                self.add(_inspect(root, self.platform, python=sibling, kind_hint=kind_hint))

    def try_executable(
        self, exe: Path, *, kind_hint: EnvKind | None = None, version_hints: Sequence[str | None] = ()
    ) -> None:
        if is_store_alias(exe, self.platform):
            return
        try:
            located = _root_of_executable(exe, self.platform)
            if located is None and exe.is_symlink():
                located = _root_of_executable(_resolve(exe), self.platform)
        except OSError:
            return
        if located is not None:
            self.try_root(located[0], python=located[1], kind_hint=kind_hint, version_hints=version_hints)

    def display(self, path: Path) -> str:
        if path == self.home:
            return "~"
        if path.is_relative_to(self.home):
            return "~" + os.sep + str(path.relative_to(self.home))
        return str(path)


def _explicit(settings: Settings, collector: _Collector, run: Callable[..., Completed] | None) -> None:
    where = settings.source.name if settings.source else "config.toml"
    for path in settings.environments:
        try:
            env = environment_from_path(path, platform=collector.platform, run=run)
        except (NotAnEnvironmentError, UnreadableError) as exc:
            collector.notes.append(f"{where} lists {path}, but {exc}")
            continue
        collector.add(env, explicit=True)


def _active(environ: Mapping[str, str], collector: _Collector) -> None:
    for name in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        path = _env_path(environ, name, collector.platform)
        if path is not None:
            collector.try_root(path)


def _conda_bases(home: Path, environ: Mapping[str, str], platform: Platform) -> list[Path]:
    names = ("miniconda3", "anaconda3", "miniforge3", "mambaforge", "micromamba", "miniconda", "anaconda")
    bases = [home / n for n in names]
    for var in ("MAMBA_ROOT_PREFIX", "CONDA_ROOT"):
        path = _env_path(environ, var, platform)
        if path is not None:
            bases.append(path)
    conda_exe = _env_path(environ, "CONDA_EXE", platform)
    if conda_exe is not None:
        # bin/conda (posix) or Scripts\conda.exe (Windows) -> the base prefix
        bases.append(conda_exe.parent.parent)
    if _is_windows(platform):
        local = _env_path(environ, "LOCALAPPDATA", platform) or home / "AppData" / "Local"
        bases.extend(local / n for n in names[:4])
        program_data = _env_path(environ, "ProgramData", platform)
        if program_data is not None:
            bases.extend(program_data / n for n in names[:4])
    else:
        bases.append(home / ".local" / "share" / "mamba")  # micromamba 2's default root
        bases.extend(Path("/opt") / n for n in ("conda", "miniconda3", "anaconda3", "miniforge3"))
        if platform is Platform.MACOS:
            bases.extend(home / "opt" / n for n in names[:2])
    return bases


def read_environments_txt(path: Path, fallback_encoding: str | None = None) -> list[Path]:
    """The prefixes listed in conda's `environments.txt`.

    conda writes this file in the locale's encoding (cp1252, cp932... on Windows), not UTF-8, so a
    prefix with "é" in it is read with the locale's encoding when UTF-8 fails. A missing file is an
    empty list.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode(fallback_encoding or locale.getpreferredencoding(False), errors="replace")
    return [
        Path(line.strip()) for line in text.splitlines() if line.strip() and not line.strip().startswith("#")
    ]


def _conda(home: Path, environ: Mapping[str, str], collector: _Collector) -> None:
    listed = read_environments_txt(home / ".conda" / "environments.txt")
    bases = _conda_bases(home, environ, collector.platform)
    for base in [*listed, *bases]:
        collector.try_root(base)
    for parent in [*bases, home / ".conda"]:
        for name in _names(parent / "envs"):
            collector.try_root(parent / "envs" / name)


def _pyenv_roots(home: Path, environ: Mapping[str, str], platform: Platform) -> list[Path]:
    roots: list[Path] = []
    for var in ("PYENV_ROOT", "PYENV", "PYENV_HOME"):
        path = _env_path(environ, var, platform)
        if path is not None:
            roots.append(path)
    roots.append(home / ".pyenv")
    # pyenv-win keeps its versions one level down: ~/.pyenv/pyenv-win/versions
    return [r for root in roots for r in (root, root / "pyenv-win")]


def _pyenv(home: Path, environ: Mapping[str, str], collector: _Collector) -> None:
    for root in _pyenv_roots(home, environ, collector.platform):
        versions = root / "versions"
        for name in _names(versions):
            collector.try_root(versions / name, kind_hint=EnvKind.PYENV)
            # pyenv-virtualenv keeps its venvs inside the version they were made from.
            for env in _names(versions / name / "envs"):
                collector.try_root(versions / name / "envs" / env)


def uv_python_dirs(home: Path, environ: Mapping[str, str], platform: Platform) -> list[Path]:
    """Where uv installs managed Pythons (https://docs.astral.sh/uv/reference/storage/).

    On Windows uv's state folder is `%APPDATA%\\uv`, unless an older uv already made
    `%APPDATA%\\uv\\data`, which it then keeps using; both are read, since which one a given uv
    chose depends on what existed when it first ran.
    """
    override = _env_path(environ, "UV_PYTHON_INSTALL_DIR", platform)
    if override is not None:
        return [override]
    if _is_windows(platform):
        appdata = _env_path(environ, "APPDATA", platform) or home / "AppData" / "Roaming"
        return [appdata / "uv" / "python", appdata / "uv" / "data" / "python"]
    data = _env_path(environ, "XDG_DATA_HOME", platform) or home / ".local" / "share"
    return [data / "uv" / "python"]


def uv_python_dir(home: Path, environ: Mapping[str, str], platform: Platform) -> Path:
    """The folder a new uv would install into (the first of `uv_python_dirs`)."""
    return uv_python_dirs(home, environ, platform)[0]


def _uv(home: Path, environ: Mapping[str, str], collector: _Collector) -> None:
    for folder in uv_python_dirs(home, environ, collector.platform):
        for name in _names(folder):
            if _UV_FOLDER_RE.match(name):  # skips .lock, .cache, .temp and .gitignore
                collector.try_root(folder / name, kind_hint=EnvKind.UV)


# Project tools that keep their venvs outside the project: (tool, how deep below its folder a venv
# sits). Poetry: virtualenvs/<name>-<hash>-py3.12; pipenv: <name>-<hash>; Hatch:
# env/virtual/<project>/<hash>/<env>.
_TOOL_VENV_DEPTH: Final = {"poetry": 1, "pipenv": 1, "hatch": 3}


def tool_venv_roots(home: Path, environ: Mapping[str, str], platform: Platform) -> list[tuple[str, Path]]:
    """(tool, folder) where Poetry, Hatch and pipenv keep the venvs they make, each tool's own
    setting first (POETRY_VIRTUALENVS_PATH, HATCH_DATA_DIR, WORKON_HOME), then its default."""

    def var(name: str) -> Path | None:
        return _env_path(environ, name, platform)

    roots: list[tuple[str, Path]] = []
    if (poetry := var("POETRY_VIRTUALENVS_PATH")) is not None:
        roots.append(("poetry", poetry))
    if (poetry_cache := var("POETRY_CACHE_DIR")) is not None:
        roots.append(("poetry", poetry_cache / "virtualenvs"))
    if (hatch := var("HATCH_DATA_DIR")) is not None:
        roots.append(("hatch", hatch / "env" / "virtual"))
    if (workon := var("WORKON_HOME")) is not None:
        roots.append(("pipenv", workon))
    if _is_windows(platform):
        local = var("LOCALAPPDATA") or home / "AppData" / "Local"
        roots += [
            ("poetry", local / "pypoetry" / "Cache" / "virtualenvs"),
            ("hatch", local / "hatch" / "env" / "virtual"),
            ("pipenv", home / ".virtualenvs"),
        ]
    else:
        cache = var("XDG_CACHE_HOME") or home / ".cache"
        data = var("XDG_DATA_HOME") or home / ".local" / "share"
        roots += [
            ("poetry", cache / "pypoetry" / "virtualenvs"),
            ("hatch", data / "hatch" / "env" / "virtual"),
            ("pipenv", data / "virtualenvs"),
            ("pipenv", home / ".virtualenvs"),
        ]
        if platform is Platform.MACOS:
            roots += [
                ("poetry", home / "Library" / "Caches" / "pypoetry" / "virtualenvs"),
                ("hatch", home / "Library" / "Application Support" / "hatch" / "env" / "virtual"),
            ]
    return roots


def _tool_venvs(home: Path, environ: Mapping[str, str], collector: _Collector) -> None:
    for tool, root in tool_venv_roots(home, environ, collector.platform):
        level = [root]
        for _ in range(_TOOL_VENV_DEPTH[tool]):
            below: list[Path] = []
            for folder in level:
                for name in _names(folder):
                    child = folder / name
                    if _isfile(child / PYVENV_CFG):
                        collector.try_root(child)
                    elif not name.startswith(".") and _isdir(child):
                        below.append(child)
            level = below


def _windows_registry(registry: RegistryReader, collector: _Collector) -> None:
    entries, notes = registered_pythons(registry)
    collector.notes.extend(notes)
    for entry in entries:
        if any(is_store_alias(p, collector.platform) for p in (entry.install_path, entry.executable) if p):
            continue
        if entry.install_path:
            collector.try_root(
                Path(entry.install_path), kind_hint=EnvKind.PY_LAUNCHER, version_hints=(entry.version,)
            )
        elif entry.executable:
            collector.try_executable(
                Path(entry.executable), kind_hint=EnvKind.PY_LAUNCHER, version_hints=(entry.version,)
            )


def py_launcher_candidates(home: Path, environ: Mapping[str, str], cwd: Path | None) -> list[Path]:
    """Where `py.exe` may be, trusted places first: `%SystemRoot%\\py.exe` (an all-users launcher),
    `%LOCALAPPDATA%\\Programs\\Python\\Launcher\\py.exe` (a per-user one), then PATH without
    relative entries and without the current folder. Never the bare name: Windows would look in the
    current folder first, where anyone could have put a py.exe."""
    platform = Platform.WINDOWS
    system_root = _env_path(environ, "SystemRoot", platform) or _env_path(environ, "WINDIR", platform)
    local = _env_path(environ, "LOCALAPPDATA", platform) or home / "AppData" / "Local"
    found: list[Path] = [
        (system_root or Path("C:\\Windows")) / "py.exe",
        local / "Programs" / "Python" / "Launcher" / "py.exe",
    ]
    found += [
        folder / "py.exe"
        for folder in proc.trusted_path_entries(_getenv(environ, "PATH", platform), cwd, ";")
    ]
    return list(dict.fromkeys(found))


def _py_launcher(run: Callable[..., Completed], collector: _Collector, environ: Mapping[str, str]) -> None:
    """`py -0p`: what the Windows launcher knows (PEP 514 plus, in newer launchers, more)."""
    try:
        cwd: Path | None = Path.cwd()
    except OSError:
        cwd = None
    launcher = next((c for c in py_launcher_candidates(collector.home, environ, cwd) if _isfile(c)), None)
    if launcher is None:
        return  # no launcher installed: nothing to learn from it
    try:
        done = run([launcher, "-0p"], timeout=PY_LAUNCHER_TIMEOUT)
    except OSError:
        return
    except SubprocessTimeoutError:
        collector.notes.append(f"`py -0p` did not answer within {PY_LAUNCHER_TIMEOUT:g} s; skipped it")
        return
    if not done.ok:
        return
    for version, exe in parse_py_launcher(done.stdout):
        collector.try_executable(Path(exe), kind_hint=EnvKind.PY_LAUNCHER, version_hints=(version,))


def _store_pythons(home: Path, environ: Mapping[str, str], collector: _Collector) -> None:
    """A Microsoft Store Python is skipped (its install under WindowsApps cannot be changed), but
    never silently: a note names it, and the torch in its private site-packages if there is one."""
    for site in store_sites(home=home, environ=environ):
        torch = f"; it has torch {site.torch_version} there" if site.torch_version else ""
        collector.notes.append(
            f"skipped the Microsoft Store Python {site.minor}: torchdoctor cannot change a Store app "
            f"(its packages are in {site.folder}{torch})"
        )


def _is_script(path: Path) -> bool:
    """pyenv shims and similar wrappers are scripts; a real interpreter is a binary (or a link to one)."""
    try:
        with path.open("rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return True


def _path_interpreters(environ: Mapping[str, str], collector: _Collector) -> None:
    platform = collector.platform
    value = _getenv(environ, "PATH", platform) or ""
    separator = ";" if _is_windows(platform) else ":"
    seen_dirs: set[str] = set()
    for raw in value.split(separator):
        entry = raw.strip().strip('"')
        if not entry or entry in seen_dirs or is_store_alias(entry, platform):
            continue
        seen_dirs.add(entry)
        folder = Path(entry)
        if not folder.is_absolute():
            continue
        if _is_windows(platform):
            candidates = [folder / "python.exe"] if _isfile(folder / "python.exe") else []
        else:
            names = [n for n in _names(folder) if _POSIX_PYTHON_NAME_RE.match(n)]
            # python3 first: it names the interpreter a person means; python3.X points at the same root.
            names.sort(key=lambda n: (n != "python3", n != "python", n))
            candidates = [folder / n for n in names]
        for exe in candidates:
            if not _isfile(exe) or (not _is_windows(platform) and _is_script(exe)):
                continue
            if not _is_windows(platform) and not os.access(exe, os.X_OK):
                continue
            collector.try_executable(exe, kind_hint=EnvKind.SYSTEM)


if sys.platform == "win32":

    def _hidden_by_attribute(entry: os.DirEntry[str]) -> bool:
        """Hidden folders, and junctions (reparse points), which is_symlink() does not report."""
        try:
            attributes = entry.stat(follow_symlinks=False).st_file_attributes
        except OSError:
            return True
        return bool(attributes & (stat.FILE_ATTRIBUTE_HIDDEN | stat.FILE_ATTRIBUTE_REPARSE_POINT))

else:

    def _hidden_by_attribute(entry: os.DirEntry[str]) -> bool:
        return False


def _is_hidden_or_link(entry: os.DirEntry[str]) -> bool:
    return entry.name.startswith(".") or entry.is_symlink() or _hidden_by_attribute(entry)


def _is_env_folder(path: Path) -> bool:
    return _isfile(path / PYVENV_CFG) or _isdir(path / CONDA_META)


@dataclass(slots=True)
class _Walk:
    collector: _Collector
    depth: int
    deadline: float
    clock: Callable[[], float]
    visited: set[tuple[int, int]] = field(default_factory=set)

    def out_of_time(self) -> bool:
        return self.clock() > self.deadline

    def search(self, start: Path) -> bool:
        """Breadth first below `start`; False when the time ran out."""
        queue: deque[tuple[Path, int]] = deque([(start, 0)])
        while queue:
            if self.out_of_time():
                return False
            folder, depth = queue.popleft()
            try:
                info = folder.stat()
            except OSError:
                continue
            # Bind mounts and junctions can make a loop even without following symlinks.
            identity = (info.st_dev, info.st_ino)
            if identity in self.visited:
                continue
            self.visited.add(identity)
            try:
                with os.scandir(folder) as scan:
                    entries = sorted(scan, key=lambda e: e.name)
            except PermissionError:
                self.collector.unreadable.append(folder)
                continue
            except OSError:
                continue
            names = {e.name for e in entries}
            if (PYVENV_CFG in names or CONDA_META in names) and _is_env_folder(folder):
                self.collector.try_root(folder)
                continue  # never search inside an environment
            if depth >= self.depth:
                continue
            for count, entry in enumerate(entries):
                if count % 256 == 255 and self.out_of_time():
                    return False
                if not self._is_dir(entry) or entry.name.casefold() in SKIPPED_FOLDERS:
                    continue
                child = Path(entry.path)
                if self.collector.excluded(child) or entry.path in _PSEUDO_FILESYSTEMS:
                    continue
                if _is_hidden_or_link(entry) or depth + 1 >= self.depth:
                    # Not entered, but it may be an environment itself (`.venv`, a linked venv).
                    if _is_env_folder(child):
                        self.collector.try_root(child)
                else:
                    queue.append((child, depth + 1))
        return True

    @staticmethod
    def _is_dir(entry: os.DirEntry[str]) -> bool:
        try:
            return entry.is_dir()
        except OSError:
            return False


def _search(settings: Settings, home: Path, collector: _Collector, clock: Callable[[], float]) -> None:
    walk = _Walk(collector, settings.scan_depth, clock() + settings.scan_seconds, clock)
    for given in [*settings.roots, home]:
        start = _resolve(given)
        if collector.excluded(start):
            continue
        if not _isdir(start):
            if start != home:
                collector.notes.append(f"`roots` in config.toml lists {start}, which is not a folder here")
            continue
        if not walk.search(start):
            collector.notes.append(
                f"stopped searching {collector.display(start)} after {settings.scan_seconds:g} s; "
                "add folders to `roots` in config.toml to look further"
            )
            return


def _unreadable_note(collector: _Collector) -> None:
    folders = sorted({str(p) for p in collector.unreadable})
    if not folders:
        return
    examples = ", ".join(folders[:_UNREADABLE_EXAMPLES])
    more = f" and {len(folders) - _UNREADABLE_EXAMPLES} more" if len(folders) > _UNREADABLE_EXAMPLES else ""
    plural = "s" if len(folders) > 1 else ""
    collector.notes.append(
        f"could not read {len(folders)} folder{plural} (permission denied): {examples}{more}"
    )


def discover_environments(
    settings: Settings,
    *,
    home: Path | None = None,
    platform: Platform | None = None,
    environ: Mapping[str, str] | None = None,
    registry: RegistryReader | None = None,
    run: Callable[..., Completed] = proc.run,
    clock: Callable[[], float] = time.monotonic,
) -> Discovery:
    """Every Python environment we can find, explicit ones (config.toml) first, then by kind and path.

    Never raises for what it finds: problems become `notes`, one sentence each. `registry` defaults
    to the real Windows registry when `platform` is Windows and this is Windows; `run` starts
    `py -0p` (Windows only) and the interpreters of environments listed in config.toml.
    """
    platform = platform if platform is not None else host_platform()
    home = _resolve(home if home is not None else Path.home())
    environ = environ if environ is not None else os.environ
    if registry is None and _is_windows(platform) and host_platform() is Platform.WINDOWS:
        registry = default_registry()
    collector = _Collector(platform=platform, home=home, exclude=tuple(_resolve(p) for p in settings.exclude))
    _explicit(settings, collector, run)
    _active(environ, collector)
    _conda(home, environ, collector)
    _pyenv(home, environ, collector)
    _uv(home, environ, collector)
    _tool_venvs(home, environ, collector)
    if _is_windows(platform):
        if registry is not None:
            _windows_registry(registry, collector)
        _py_launcher(run, collector, environ)
        _store_pythons(home, environ, collector)
    _path_interpreters(environ, collector)
    _search(settings, home, collector, clock)
    _unreadable_note(collector)
    return Discovery(environments=_ordered(collector), notes=tuple(collector.notes))


def _natural(text: str) -> tuple[tuple[int, str], ...]:
    """Sort key that puts versions/3.9.18 before versions/3.10.13."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", text))


def _ordered(collector: _Collector) -> tuple[PythonEnv, ...]:
    explicit_keys = set(collector.explicit)
    explicit = [collector.found[k] for k in collector.explicit]
    rest = [env for key, env in collector.found.items() if key not in explicit_keys]
    rest.sort(key=lambda e: (_KIND_ORDER[e.kind], _natural(collector.key(e.root))))
    return (*explicit, *rest)


def collect_environments(
    settings: Settings,
    explicit: Sequence[Path] = (),
    *,
    discover: bool = True,
    home: Path | None = None,
    platform: Platform | None = None,
    environ: Mapping[str, str] | None = None,
    registry: RegistryReader | None = None,
    run: Callable[..., Completed] = proc.run,
    clock: Callable[[], float] = time.monotonic,
) -> Discovery:
    """What `envs`, `check` and `tray` work on: the `--env` paths first, then config.toml's
    `environments`, then (unless `--no-discover`) everything discovered, without duplicates.

    A bad `--env` raises NotAnEnvironmentError/UnreadableError (the person must fix it: exit 2); a bad
    entry in config.toml becomes a note, so a stale setting cannot stop the tray.
    """
    platform = platform if platform is not None else host_platform()
    named = [environment_from_path(p, platform=platform, run=run) for p in explicit]
    if discover:
        found = discover_environments(
            settings, home=home, platform=platform, environ=environ, registry=registry, run=run, clock=clock
        )
    else:
        collector = _Collector(
            platform=platform,
            home=home or Path.home(),
            exclude=tuple(_resolve(p) for p in settings.exclude),
        )
        _explicit(settings, collector, run)
        found = Discovery(environments=_ordered(collector), notes=tuple(collector.notes))
    keyed: dict[str, PythonEnv] = {}
    for env in [*named, *found.environments]:
        key = str(env.root).casefold() if platform is Platform.WINDOWS else str(env.root)
        keyed.setdefault(key, env)
    return Discovery(environments=tuple(keyed.values()), notes=found.notes)


def envs_to_json(envs: Iterable[PythonEnv]) -> list[dict[str, object]]:
    """The `envs --json` list; the same fields open each environment of `check --json`."""
    return [
        {
            "path": str(env.root),
            "python": str(env.python),
            "python_version": env.python_version,
            "kind": env.kind.value,
            "has_pip": env.has_pip,
            "site_packages": [str(p) for p in env.site_packages],
        }
        for env in envs
    ]
