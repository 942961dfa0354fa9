"""Folders that are the operating system's, not a Python environment torchdoctor may change.

`fix --env /` once set out to snapshot and reinstall torch "in" the whole file system: a folder
that holds the system (/, /usr, C:\\, C:\\Windows) or a person's files (their home folder itself)
is refused with exit 2 before anything is locked, saved or installed. A Python *inside* such a
folder is fine (`/opt/conda`, `C:\\Program Files\\Python312`, `~/venvs/torch`); only the folder
itself, and anything under the Windows folder, is refused.

`system_folder_reason` is the pure predicate (the platform and the home folder are arguments);
`ensure_not_system_folder` is the I/O around it: it also judges the path with links resolved, so
a symlink to / is refused like / itself.
"""

from __future__ import annotations

import ntpath
import os
import posixpath
from pathlib import Path
from typing import Final

from torchdoctor.service.errors import BadInputError
from torchdoctor.service.models import Platform

# Folders whose contents belong to the system on Linux and macOS. /usr and /usr/local are where a
# distribution's (or Homebrew's) Python lives: torch goes into a venv made from it, not into it.
_POSIX_SYSTEM: Final = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/media",
        "/mnt",
        "/nix",
        "/nix/store",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/snap",
        "/srv",
        "/sys",
        "/tmp",  # noqa: S108 - a name to refuse, not a place we write
        "/usr",
        "/usr/bin",
        "/usr/lib",
        "/usr/lib64",
        "/usr/local",
        "/usr/local/bin",
        "/usr/local/lib",
        "/usr/sbin",
        "/usr/share",
        "/var",
        "/var/lib",
        "/var/tmp",  # noqa: S108
        "/Applications",
        "/Library",
        "/System",
        "/Users",
        "/private",
        "/opt/homebrew",
    }
)
# Below a drive letter, compared case-insensitively. `C:\Program Files\Python312` is a real Python
# install and allowed; `C:\Program Files` alone is not.
_WINDOWS_SYSTEM: Final = frozenset(
    {
        "program files",
        "program files (x86)",
        "programdata",
        "users",
        "users\\public",
        "users\\default",
    }
)
_POSIX_HOMES: Final = frozenset({"/home", "/Users"})  # every folder right under them is someone's home
_WINDOWS_FOLDER: Final = "windows"  # C:\Windows and everything in it
_HOME_PARTS_WINDOWS: Final = ("appdata", "appdata\\local", "appdata\\roaming", "appdata\\local\\programs")


class SystemFolderError(BadInputError):
    """--env names the system or a home folder itself, not an environment (exit 2)."""

    code = "system-folder"


def _posix_reason(path: str, home: str | None) -> str | None:
    norm = posixpath.normpath(path)
    if norm.startswith("//"):  # POSIX keeps a leading "//"; the kernel treats it as "/"
        norm = "/" + norm.lstrip("/")
    if norm == "/":
        return "the root of the file system"
    if home:
        home_norm = posixpath.normpath(home)
        if norm == home_norm:
            return "your home folder"
        if home_norm.startswith(norm.rstrip("/") + "/"):
            return "a folder that holds home folders"
    if norm in _POSIX_SYSTEM:
        return "a system folder"
    if posixpath.dirname(norm) in _POSIX_HOMES:
        return "a home folder"
    return None


def _windows_reason(path: str, home: str | None) -> str | None:
    norm = ntpath.normcase(ntpath.normpath(path.replace("/", "\\")))
    drive, rest = ntpath.splitdrive(norm)
    rest = rest.strip("\\")
    if not rest:
        return "the root of a drive" if not drive.startswith("\\\\") else "the root of a network share"
    if rest == _WINDOWS_FOLDER or rest.startswith(_WINDOWS_FOLDER + "\\"):
        return "the Windows folder"
    if home:
        home_norm = ntpath.normcase(ntpath.normpath(home.replace("/", "\\")))
        if norm == home_norm:
            return "your home folder"
        if home_norm.startswith(norm.rstrip("\\") + "\\"):
            return "a folder that holds home folders"
        for part in _HOME_PARTS_WINDOWS:
            if norm == ntpath.join(home_norm, part):
                return "a folder of your profile"
    if rest in _WINDOWS_SYSTEM:
        return "a system folder"
    if ntpath.dirname(rest) == "users":
        return "a home folder"
    return None


def system_folder_reason(path: str, *, platform: Platform, home: str | None) -> str | None:
    """Why `path` (absolute) is not an environment torchdoctor may change, or None if it may be.

    Pure: the platform decides the path rules (a Windows path is judged as Windows whatever runs
    this), and `home` is the person's home folder. The home folder itself and the folders above it
    are refused; a venv below it is not.
    """
    if platform is Platform.WINDOWS:
        return _windows_reason(path, home)
    return _posix_reason(path, home)


def ensure_not_system_folder(path: Path, *, platform: Platform, what: str = "change") -> None:
    """Raise SystemFolderError if `path`, as given or with its links resolved, is a system folder.

    Run before anything is locked or saved. `what` is the verb for the message ("change").
    """
    try:
        home: str | None = str(Path.home())
    except RuntimeError:  # no HOME and no passwd entry: nothing to compare with
        home = None
    given = str(Path(path).absolute())
    for candidate in dict.fromkeys((given, os.path.realpath(given))):
        reason = system_folder_reason(candidate, platform=platform, home=home)
        if reason is None:
            continue
        shown = given if candidate == given else f"{given} (which is {candidate})"
        raise SystemFolderError(
            f"torchdoctor will not {what} {shown}: it is {reason}, not a Python environment",
            hint="make a virtual environment (`python -m venv ~/venvs/torch`) and give that to --env",
        )
