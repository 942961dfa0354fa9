"""The Windows registry behind a two-method reader, and PEP 514 parsing over any reader.

PEP 514 (https://peps.python.org/pep-0514/) says where Python installs register themselves:

    HKEY_CURRENT_USER\\Software\\Python\\<Company>\\<Tag>
    HKEY_LOCAL_MACHINE\\Software\\Python\\<Company>\\<Tag>               (64-bit, or all-users)
    HKEY_LOCAL_MACHINE\\Software\\WOW6432Node\\Python\\<Company>\\<Tag>   (32-bit on 64-bit Windows)

with the values `Version` ("3.12.4"), `SysVersion` ("3.12") and `DisplayName` on the tag key, and a
subkey `InstallPath` whose default value is the install folder and whose `ExecutablePath` value is
the interpreter. `PythonCore` is python.org's company name; `PyLauncher` is the `py` launcher itself
(not an interpreter) and is skipped; Anaconda registers as `ContinuumAnalytics`.

The parsing is pure over a `RegistryReader`, so it is tested on Linux with a fake; `WinregReader` is
the real one (on any other OS it finds nothing).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol


class Hive(StrEnum):
    HKCU = "HKEY_CURRENT_USER"
    HKLM = "HKEY_LOCAL_MACHINE"


class RegistryReader(Protocol):
    """Read-only access to the registry.

    Both methods answer "nothing" (an empty sequence, None) for a key or value that does not exist;
    they may raise OSError for anything else (access denied), which the caller treats per key.
    """

    def subkeys(self, hive: Hive, key: str) -> Sequence[str]:
        """The names of the direct subkeys of `hive\\key`."""
        ...

    def value(self, hive: Hive, key: str, name: str) -> str | None:
        """A string value of `hive\\key`; `name=""` is the key's default value. Non-strings: None."""
        ...


# Where PEP 514 registrations live, in the order the `py` launcher searches them (per-user first).
PEP514_KEYS: Final[tuple[tuple[Hive, str], ...]] = (
    (Hive.HKCU, r"Software\Python"),
    (Hive.HKLM, r"Software\Python"),
    (Hive.HKLM, r"Software\WOW6432Node\Python"),
)
SKIPPED_COMPANIES: Final = frozenset({"pylauncher"})
_VERSION_RE: Final = re.compile(r"^\d+\.\d+(\.\d+)?([abc]|rc)?\d*$")
_TAG_VERSION_RE: Final = re.compile(r"^(\d+\.\d+)")


@dataclass(frozen=True, slots=True)
class RegisteredPython:
    """One PEP 514 registration; paths are Windows paths as written in the registry."""

    hive: Hive
    company: str
    tag: str
    install_path: str | None  # the folder, as written (a Windows path)
    executable: str | None  # `ExecutablePath`; None when only the folder is registered
    version: str | None  # "3.12.4" (Version), else "3.12" (SysVersion or the tag)
    display_name: str | None = None


def _clean_version(*candidates: str | None) -> str | None:
    for text in candidates:
        if text and _VERSION_RE.match(text.strip()):
            return text.strip()
    return None


def _path(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    # Some installers quote the path.
    return text.strip().strip('"')


def _read_tag(reader: RegistryReader, hive: Hive, base: str, company: str, tag: str) -> RegisteredPython:
    tag_key = rf"{base}\{company}\{tag}"
    install_key = rf"{tag_key}\InstallPath"
    install = _path(reader.value(hive, install_key, ""))
    # Older PythonCore registrations (and some third-party ones) give only the folder; the caller
    # looks for python.exe in it, as the `py` launcher does.
    executable = _path(reader.value(hive, install_key, "ExecutablePath"))
    tag_version = _TAG_VERSION_RE.match(tag)
    version = _clean_version(
        reader.value(hive, tag_key, "Version"),
        reader.value(hive, tag_key, "SysVersion"),
        tag_version.group(1) if tag_version else None,
    )
    return RegisteredPython(
        hive=hive,
        company=company,
        tag=tag,
        install_path=install,
        executable=executable,
        version=version,
        display_name=reader.value(hive, tag_key, "DisplayName"),
    )


def registered_pythons(reader: RegistryReader) -> tuple[tuple[RegisteredPython, ...], tuple[str, ...]]:
    """All PEP 514 registrations with an install folder or executable, and notes on keys we could not read.

    Companies and tags that cannot be read (access denied) are skipped with a note; the rest still count.
    """
    found: list[RegisteredPython] = []
    notes: list[str] = []
    for hive, base in PEP514_KEYS:
        try:
            companies = list(reader.subkeys(hive, base))
        except OSError as exc:
            notes.append(f"could not read the registry key {hive}\\{base}: {exc.strerror or exc}")
            continue
        for company in companies:
            if company.casefold() in SKIPPED_COMPANIES:
                continue
            try:
                tags = list(reader.subkeys(hive, rf"{base}\{company}"))
                entries = [_read_tag(reader, hive, base, company, tag) for tag in tags]
            except OSError as exc:
                notes.append(
                    f"could not read the registry key {hive}\\{base}\\{company}: {exc.strerror or exc}"
                )
                continue
            found.extend(e for e in entries if e.install_path is not None or e.executable is not None)
    return tuple(found), tuple(notes)


if sys.platform == "win32":
    import winreg

    # The 64-bit view, so a 32-bit agent sees the same `Software\Python` as a 64-bit one; the
    # WOW6432Node key is read by its name.
    _ACCESS: Final = winreg.KEY_READ | winreg.KEY_WOW64_64KEY

    class WinregReader:
        """The real registry, through the stdlib `winreg` module."""

        def subkeys(self, hive: Hive, key: str) -> Sequence[str]:
            try:
                handle = winreg.OpenKey(_hive(hive), key, 0, _ACCESS)
            except FileNotFoundError:
                return ()
            names: list[str] = []
            with handle:
                index = 0
                while True:
                    try:
                        names.append(winreg.EnumKey(handle, index))
                    except OSError:  # ERROR_NO_MORE_ITEMS ends the enumeration
                        break
                    index += 1
            return tuple(names)

        def value(self, hive: Hive, key: str, name: str) -> str | None:
            try:
                with winreg.OpenKey(_hive(hive), key, 0, _ACCESS) as handle:
                    data, kind = winreg.QueryValueEx(handle, name)
            except FileNotFoundError:
                return None
            if kind == winreg.REG_EXPAND_SZ and isinstance(data, str):
                return winreg.ExpandEnvironmentStrings(data)
            return data if kind == winreg.REG_SZ and isinstance(data, str) else None

    def _hive(hive: Hive) -> int:
        return winreg.HKEY_CURRENT_USER if hive is Hive.HKCU else winreg.HKEY_LOCAL_MACHINE

else:

    class WinregReader:
        """Off Windows there is no registry: every key is missing."""

        def subkeys(self, hive: Hive, key: str) -> Sequence[str]:
            return ()

        def value(self, hive: Hive, key: str, name: str) -> str | None:
            return None


def default_registry() -> RegistryReader | None:
    """The real registry on Windows; None elsewhere (nothing to read)."""
    return WinregReader() if sys.platform == "win32" else None
