"""Packages outside an environment's own site-packages that its Python still imports: the user site
(`pip install --user`), and a Microsoft Store Python's private one. Read only; never changed.

Where they are (the `site` module's rules, https://docs.python.org/3/library/site.html):
  - Windows: `%APPDATA%\\Python\\PythonXY\\site-packages` (`PythonXYt` for a free-threaded build);
  - Linux/macOS: `~/.local/lib/pythonX.Y/site-packages` (`pythonX.Yt`);
  - `PYTHONUSERBASE` replaces `%APPDATA%\\Python` and `~/.local`;
  - a Store Python: `%LOCALAPPDATA%\\Packages\\PythonSoftwareFoundation.Python.3.X_<id>\\LocalCache\\
    local-packages\\PythonXY\\site-packages`, since its own folder under WindowsApps is read-only.
Which comes first on sys.path: for a Python that is not a venv, the user site comes before
site-packages, so a torch there wins. A venv ignores the user site unless its pyvenv.cfg says
`include-system-site-packages = true`, and then its own site-packages comes first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from torchdoctor.service.models import EnvKind, Platform, PythonEnv

_TORCH_DIST_INFO: Final = re.compile(r"^torch-([^-]+)\.dist-info$", re.IGNORECASE)
_STORE_PACKAGE: Final = re.compile(r"^PythonSoftwareFoundation\.Python\.(3\.\d+)_", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class UserSiteTorch:
    """A torch outside the environment's own site-packages that its Python can import."""

    folder: Path  # the site-packages folder holding it
    version: str  # "2.5.1+cpu", from its dist-info folder's name
    imported_first: bool  # True: Python finds this one before the environment's own site-packages


@dataclass(frozen=True, slots=True)
class StoreSite:
    """A Microsoft Store Python's private site-packages."""

    minor: str  # "3.12"
    folder: Path
    torch_version: str | None


def _getenv(environ: Mapping[str, str], name: str) -> str | None:
    folded = name.casefold()
    return next((v for k, v in environ.items() if k.casefold() == folded and v), None)


def _minor(version: str | None) -> str | None:
    parts = (version or "").split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and all(p.isdigit() for p in parts[:2]) else None


def _free_threaded(env: PythonEnv) -> bool:
    return re.search(r"\d\.\d+t(?:\.exe)?$", env.python.name) is not None


def user_site_folder(env: PythonEnv, *, home: Path, environ: Mapping[str, str]) -> Path | None:
    """The user site that `env`'s Python version would use (whether or not it exists); None when
    the version is unknown."""
    minor = _minor(env.python_version)
    if minor is None:
        return None
    suffix = "t" if _free_threaded(env) else ""
    base = _getenv(environ, "PYTHONUSERBASE")
    if env.platform is Platform.WINDOWS:
        appdata = _getenv(environ, "APPDATA")
        root = Path(base) if base else (Path(appdata) if appdata else home / "AppData" / "Roaming") / "Python"
        return root / f"Python{minor.replace('.', '')}{suffix}" / "site-packages"
    root = Path(base) if base else home / ".local"
    return root / "lib" / f"python{minor}{suffix}" / "site-packages"


def user_site_applies(env: PythonEnv, pyvenv_cfg: Mapping[str, str] | None) -> bool:
    """Does `env`'s Python put the user site on sys.path? Not a venv's, unless the venv includes
    the system site-packages."""
    if env.kind is EnvKind.VENV:
        return (pyvenv_cfg or {}).get("include-system-site-packages", "").strip().lower() == "true"
    return True


def torch_version_in(folder: Path) -> str | None:
    """The version of the torch installed in a site-packages folder, from its dist-info's name."""
    try:
        names = sorted(entry.name for entry in folder.iterdir())
    except OSError:
        return None
    for name in names:
        match = _TORCH_DIST_INFO.match(name)
        if match:
            return match.group(1)
    return None


def user_site_torch(
    env: PythonEnv, *, pyvenv_cfg: Mapping[str, str] | None, home: Path, environ: Mapping[str, str]
) -> UserSiteTorch | None:
    """A torch in the user site that `env`'s Python imports; None when there is none, or when this
    Python does not read the user site (a venv without system site-packages)."""
    if not user_site_applies(env, pyvenv_cfg):
        return None
    folder = user_site_folder(env, home=home, environ=environ)
    if folder is None or folder in env.site_packages:
        return None
    version = torch_version_in(folder)
    if version is None:
        return None
    return UserSiteTorch(folder=folder, version=version, imported_first=env.kind is not EnvKind.VENV)


def store_sites(*, home: Path, environ: Mapping[str, str]) -> tuple[StoreSite, ...]:
    """Every Microsoft Store Python's private site-packages under `%LOCALAPPDATA%\\Packages`."""
    local = _getenv(environ, "LOCALAPPDATA")
    packages = (Path(local) if local else home / "AppData" / "Local") / "Packages"
    try:
        names = sorted(entry.name for entry in packages.iterdir())
    except OSError:
        return ()
    found: list[StoreSite] = []
    for name in names:
        match = _STORE_PACKAGE.match(name)
        if not match:
            continue
        minor = match.group(1)
        folder = (
            packages
            / name
            / "LocalCache"
            / "local-packages"
            / f"Python{minor.replace('.', '')}"
            / "site-packages"
        )
        if folder.is_dir():
            found.append(StoreSite(minor=minor, folder=folder, torch_version=torch_version_in(folder)))
    return tuple(found)
