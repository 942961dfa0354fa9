"""Start the tray at login: one per-user entry that the app writes, reads back and removes.

Windows: the value `torchdoctor` under `HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run`. It
needs no admin rights and shows in Task Manager -> Startup apps. When the user turns the entry off
there, Windows keeps the Run value and writes a flag under `...\\Explorer\\StartupApproved\\Run`;
rewriting the Run value does not turn it back on, so `status` reads that flag and `enable` (an
explicit user action) clears it.

Linux: `$XDG_CONFIG_HOME/autostart/torchdoctor.desktop` per the XDG Autostart spec; `Hidden=true` or
`X-GNOME-Autostart-enabled=false` in it means the user turned it off.

Both register an absolute, quoted command line that starts `torchdoctor tray` without a console:
the login session's PATH may not hold the venv, and `python -m torchdoctor` cannot work because
torchdoctor is a namespace package (`-m torchdoctor.agent` runs agent/__main__.py).

The pure parts (command lines, Desktop Entry quoting and parsing, the StartupApproved bytes) come
first; the two backends sit behind thin seams (a module with winreg's API; a folder) and
`backend_for` is the one place that reads `sys.platform`. `autostart_status()` is called by the tray
each time its menu opens, so it only reads a file or two registry values: no subprocess.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, ClassVar, Final, Protocol, TypeAlias

from torchdoctor.service.errors import EXIT_ATTENTION, TorchdoctorError

# The Windows installer writes and removes the same Run value, so the app and the installer agree.
AUTOSTART_NAME: Final = "torchdoctor"
AGENT_MODULE: Final = "torchdoctor.agent"
TRAY_COMMAND: Final = "tray"
# The frozen Windows app has a console torchdoctor.exe (the CLI) and this windowed twin beside it
# (packaging/windows/torchdoctor.spec); the Run value always names the twin, as the installer's does
# (packaging/windows/installer.nsi, held equal by tests/packaging/test_installer.py).
FROZEN_WINDOWED_PROGRAM: Final = "torchdoctorw.exe"

RUN_KEY: Final = r"Software\Microsoft\Windows\CurrentVersion\Run"
STARTUP_APPROVED_KEY: Final = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
# What Task Manager writes for an enabled entry: state 2, then a zero FILETIME.
APPROVED_ENABLED: Final = b"\x02" + bytes(11)

WINDOWS_DISABLED_REASON: Final = "disabled in Task Manager → Startup apps"
ENABLE_FIXES: Final = "`torchdoctor autostart enable` rewrites it"


class Mechanism(StrEnum):
    REGISTRY_RUN = "registry-run"
    XDG_AUTOSTART = "xdg-autostart"


@dataclass(frozen=True, slots=True)
class AutostartStatus:
    """Whether the tray starts at login, and what exactly is registered.

    `enabled`: an entry exists and the user has not turned it off. `disabled_by_user`: it exists but
    was turned off in Task Manager or the desktop's startup settings; then the first note says how.
    `stale`: the registered program no longer exists (a deleted venv), so nothing would start.
    `command` is what is registered (None when nothing is); `expected_command` is what `enable`
    would write now.
    """

    enabled: bool
    mechanism: Mechanism
    location: str
    command: str | None
    expected_command: str
    disabled_by_user: bool
    stale: bool
    notes: tuple[str, ...] = ()


class AutostartError(TorchdoctorError):
    """The autostart entry could not be written or removed (a read-only folder, registry access denied)."""

    code = "autostart-failed"
    exit_code = EXIT_ATTENTION


# --- the command that is registered -------------------------------------------------------------


def launch_argv(
    executable: str, *, frozen: bool, windows: bool, exists: Callable[[str], bool]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The argv that starts the tray with no console window, and notes on any fallback taken.

    A frozen build is its own program (on Windows its windowed twin, `torchdoctorw.exe`, when it is
    there). Otherwise the interpreter runs `-m torchdoctor.agent`; on
    Windows that is the `pythonw.exe` beside `executable` (`python.exe` would open a console at
    every login), falling back to `executable` itself when there is no pythonw.exe.
    """
    if frozen and windows:
        # Whichever of the two programs runs `autostart enable`, the entry is the same.
        windowed = str(PureWindowsPath(executable).parent / FROZEN_WINDOWED_PROGRAM)
        return ((windowed if exists(windowed) else executable), TRAY_COMMAND), ()
    if frozen:
        return (executable, TRAY_COMMAND), ()
    if not windows:
        return (executable, "-m", AGENT_MODULE, TRAY_COMMAND), ()
    pythonw = str(PureWindowsPath(executable).parent / "pythonw.exe")
    if exists(pythonw):
        return (pythonw, "-m", AGENT_MODULE, TRAY_COMMAND), ()
    note = f"there is no pythonw.exe beside {executable}, so a console window opens with the tray at login"
    return (executable, "-m", AGENT_MODULE, TRAY_COMMAND), (note,)


def windows_command_line(argv: Sequence[str]) -> str:
    """`"C:\\…\\pythonw.exe" -m torchdoctor.agent tray`.

    The program is always quoted: Windows splits an unquoted path at its first space, and
    `C:\\Program Files\\…` is common. A Windows path cannot hold `"`, so plain quotes suffice; the
    arguments follow the C runtime's rules (`subprocess.list2cmdline`).
    """
    program, *args = argv
    return f'"{program}"' + (" " + subprocess.list2cmdline(args) if args else "")


def windows_program(command: str) -> str | None:
    """The program of a Run value: the quoted first part, else up to the first space."""
    text = command.strip()
    if text.startswith('"'):
        end = text.find('"', 1)
        return text[1:end] if end > 1 else None
    return text.split(maxsplit=1)[0] if text else None


def approval_from_data(data: object) -> bool | None:
    """What a StartupApproved value says: True enabled, False disabled by the user, None no usable flag.

    Task Manager writes 12 bytes: a little-endian state (02 or 06 enabled, 03 or 07 disabled, so an
    odd first byte means off), then the FILETIME of the change. A missing or malformed value leaves
    the Run value in charge, as Windows does.
    """
    if isinstance(data, bytes | bytearray) and data:
        return data[0] % 2 == 0
    return None


# --- Desktop Entry files (https://specifications.freedesktop.org/desktop-entry/latest/) ----------

# The spec's reserved characters: an argument holding one must be quoted.
_RESERVED: Final = frozenset(" \t\n\"'\\><~|&;$*?#()`")
# Inside quotes these take a backslash.
_ESCAPED_IN_QUOTES: Final = frozenset('"`$\\')
_ASCII_SPACE: Final = " \t\r\f\v"
_STRING_ESCAPES: Final = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def quote_exec_arg(arg: str, *, always: bool = False) -> str:
    """One Exec argument: quoted in whole when it holds a reserved character, is empty, or `always`.

    Inside the quotes `"`, backtick, `$` and `\\` take a backslash. A literal `%` is written `%%`,
    since `%` starts a field code. The result still needs `escape_string_value` for the file.
    """
    text = arg.replace("%", "%%")
    # Any other whitespace is quoted too: readers trim it at a value's ends, or split on it.
    if text and not always and not any(c in _RESERVED or c.isspace() for c in text):
        return text
    return '"' + "".join("\\" + c if c in _ESCAPED_IN_QUOTES else c for c in text) + '"'


def exec_command_line(argv: Sequence[str]) -> str:
    """An Exec command line; the program is always quoted, as the Windows one is."""
    program, *args = argv
    return " ".join([quote_exec_arg(program, always=True), *(quote_exec_arg(a) for a in args)])


def split_exec(command: str) -> list[str]:
    """The argv of an Exec command line (already string-unescaped): quoting undone, `%%` made `%`.

    Raises ValueError on an unterminated quote. Field codes other than `%%` are left as they are:
    we never write them, and only the program matters when reading an entry back.
    """
    args: list[str] = []
    i, n = 0, len(command)
    while i < n:
        if command[i] in " \t\n":
            i += 1
            continue
        word: list[str] = []
        while i < n and command[i] not in " \t\n":
            if command[i] != '"':
                word.append(command[i])
                i += 1
                continue
            i += 1
            while i < n and command[i] != '"':
                if command[i] == "\\" and i + 1 < n and command[i + 1] in _ESCAPED_IN_QUOTES:
                    i += 1
                word.append(command[i])
                i += 1
            if i >= n:
                raise ValueError(f"unterminated quote in {command!r}")
            i += 1
        args.append("".join(word).replace("%%", "%"))
    return args


def escape_string_value(value: str) -> str:
    """A value as a desktop file stores it: `\\` doubled, newline, tab and CR as `\\n`, `\\t`, `\\r`.

    Applied after Exec quoting, so a literal `$` in a quoted argument ends up as `\\\\$` in the file,
    exactly as the spec spells it.
    """
    text = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    # Readers trim a value's leading spaces; the spec's `\s` keeps one.
    return "\\s" + text[1:] if text.startswith(" ") else text


def unescape_string_value(value: str) -> str:
    """The reverse of `escape_string_value`, plus `\\s` (a space); an unknown escape is kept as written."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[value[i + 1]])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def render_desktop_entry(argv: Sequence[str], *, icon: str | None) -> str:
    """The autostart file that runs `argv` at login."""
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        f"Name={AUTOSTART_NAME}",
        "Comment=Keeps PyTorch installs matched to this machine's GPU (tray icon)",
        f"Exec={escape_string_value(exec_command_line(argv))}",
    ]
    if icon:
        lines.append(f"Icon={escape_string_value(icon)}")
    lines += ["Terminal=false", "X-GNOME-Autostart-enabled=true"]
    return "\n".join(lines) + "\n"


def parse_desktop_entry(text: str) -> dict[str, str]:
    """The keys of the `[Desktop Entry]` group, values string-unescaped; other groups are skipped."""
    entry: dict[str, str] = {}
    in_group = False
    # Only "\n" ends a line here (str.splitlines would also split at form feeds and the like), and
    # only ASCII whitespace is trimmed, as GLib does.
    for raw in text.split("\n"):
        line = raw.strip(_ASCII_SPACE)
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            in_group = line == "[Desktop Entry]"
            continue
        key, sep, value = line.partition("=")
        if in_group and sep:
            entry[key.strip(_ASCII_SPACE)] = unescape_string_value(value.strip(_ASCII_SPACE))
    return entry


def _boolean(value: str | None) -> bool | None:
    # GLib, which reads these files on GNOME, also takes 1 and 0.
    text = (value or "").strip().lower()
    return True if text in {"true", "1"} else False if text in {"false", "0"} else None


def desktop_disabled_reason(entry: Mapping[str, str]) -> str | None:
    """Why the user's desktop will skip this entry at login, or None when it will run it."""
    if _boolean(entry.get("Hidden")) is True:
        return "turned off in the desktop's startup settings (Hidden=true)"
    if _boolean(entry.get("X-GNOME-Autostart-enabled")) is False:
        return "turned off in the desktop's startup settings (X-GNOME-Autostart-enabled=false)"
    return None


# --- what both backends say about a registered command --------------------------------------------


def _registered_notes(
    command: str, expected: str, program: str | None, *, stale: bool, same: bool
) -> list[str]:
    if program is None:
        return [f"the registered command cannot be read ({command!r}); {ENABLE_FIXES}"]
    if stale:
        return [f"the registered program {program} no longer exists (a deleted environment?); {ENABLE_FIXES}"]
    if not same:
        return [f"the registered command differs from what `enable` writes now ({expected}); {ENABLE_FIXES}"]
    return []


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class AutostartBackend(Protocol):
    def status(self) -> AutostartStatus: ...

    def enable(self) -> AutostartStatus: ...

    def disable(self) -> AutostartStatus: ...


# --- Windows: the HKCU Run key --------------------------------------------------------------------

# winreg's HKEYType, or a predefined HKEY_* int: opaque to us, only passed back to the registry.
_Key: TypeAlias = Any


class WinregApi(Protocol):
    """The part of the stdlib `winreg` module used here; tests pass a fake with the same surface.

    As winreg does, a missing key or value raises FileNotFoundError and anything else (access
    denied) another OSError.
    """

    @property
    def HKEY_CURRENT_USER(self) -> int: ...
    @property
    def KEY_READ(self) -> int: ...
    @property
    def KEY_SET_VALUE(self) -> int: ...
    @property
    def REG_SZ(self) -> int: ...
    @property
    def REG_BINARY(self) -> int: ...

    def OpenKey(self, key: _Key, sub_key: str, reserved: int, access: int, /) -> _Key: ...
    def CreateKeyEx(self, key: _Key, sub_key: str, reserved: int, access: int, /) -> _Key: ...
    def QueryValueEx(self, key: _Key, name: str, /) -> tuple[Any, int]: ...
    def SetValueEx(self, key: _Key, name: str, reserved: int, type: int, value: str | bytes, /) -> None: ...
    def DeleteValue(self, key: _Key, value: str, /) -> None: ...
    def CloseKey(self, key: _Key, /) -> None: ...


@dataclass(frozen=True, slots=True)
class RegistryRunAutostart:
    """The Run value, through `registry` (the winreg module, or a fake)."""

    registry: WinregApi
    executable: str
    frozen: bool
    exists: Callable[[str], bool] = os.path.exists

    mechanism: ClassVar[Mechanism] = Mechanism.REGISTRY_RUN
    location: ClassVar[str] = rf"HKCU\{RUN_KEY}\{AUTOSTART_NAME}"

    def _expected(self) -> tuple[str, tuple[str, ...]]:
        argv, notes = launch_argv(self.executable, frozen=self.frozen, windows=True, exists=self.exists)
        return windows_command_line(argv), notes

    def _read(self, key: str, name: str) -> object | None:
        """A value's data; None when the key or the value does not exist."""
        reg = self.registry
        try:
            handle = reg.OpenKey(reg.HKEY_CURRENT_USER, key, 0, reg.KEY_READ)
        except FileNotFoundError:
            return None
        try:
            data: object = reg.QueryValueEx(handle, name)[0]
        except FileNotFoundError:
            return None
        finally:
            reg.CloseKey(handle)
        return data

    def _write(self, key: str, name: str, kind: int, value: str | bytes) -> None:
        reg = self.registry
        handle = reg.CreateKeyEx(reg.HKEY_CURRENT_USER, key, 0, reg.KEY_SET_VALUE)
        try:
            reg.SetValueEx(handle, name, 0, kind, value)
        finally:
            reg.CloseKey(handle)

    def _delete(self, key: str, name: str) -> None:
        """Removes a value; one that is already gone is fine (idempotent)."""
        reg = self.registry
        try:
            handle = reg.OpenKey(reg.HKEY_CURRENT_USER, key, 0, reg.KEY_SET_VALUE)
        except FileNotFoundError:
            return
        try:
            reg.DeleteValue(handle, name)
        except FileNotFoundError:
            pass
        finally:
            reg.CloseKey(handle)

    def status(self) -> AutostartStatus:
        expected, fallback_notes = self._expected()
        notes: list[str] = []
        try:
            data = self._read(RUN_KEY, AUTOSTART_NAME)
        except OSError as exc:
            notes.append(rf"could not read HKCU\{RUN_KEY}: {_reason(exc)}")
            data = None
        command = data if isinstance(data, str) else None
        if data is not None and command is None:
            notes.append(f"the Run value is not a string (REG_SZ); {ENABLE_FIXES}")
        approved: bool | None = None
        if command is not None:
            try:
                approved = approval_from_data(self._read(STARTUP_APPROVED_KEY, AUTOSTART_NAME))
            except OSError as exc:
                notes.append(rf"could not read HKCU\{STARTUP_APPROVED_KEY}: {_reason(exc)}")
        disabled = approved is False
        stale = False
        if command is not None:
            program = windows_program(command)
            # A bare name is found through App Paths and PATH at login: too costly to check here.
            absolute = program is not None and PureWindowsPath(program).is_absolute()
            stale = program is None or (absolute and not self.exists(program))
            # Windows paths ignore case.
            same = command.casefold() == expected.casefold()
            notes += _registered_notes(command, expected, program, stale=stale, same=same)
        return AutostartStatus(
            enabled=command is not None and not disabled,
            mechanism=self.mechanism,
            location=self.location,
            command=command,
            expected_command=expected,
            disabled_by_user=disabled,
            stale=stale,
            notes=tuple([WINDOWS_DISABLED_REASON] if disabled else []) + tuple(notes) + fallback_notes,
        )

    def enable(self) -> AutostartStatus:
        _require_executable(self.executable)
        expected, _ = self._expected()
        try:
            # The user's explicit "on" overrides an earlier "off" in Task Manager, which rewriting the
            # Run value alone would not.
            approved = approval_from_data(self._read(STARTUP_APPROVED_KEY, AUTOSTART_NAME))
            self._write(RUN_KEY, AUTOSTART_NAME, self.registry.REG_SZ, expected)
            if approved is False:
                self._write(STARTUP_APPROVED_KEY, AUTOSTART_NAME, self.registry.REG_BINARY, APPROVED_ENABLED)
        except OSError as exc:
            raise _registry_error("write", exc) from exc
        return self.status()

    def disable(self) -> AutostartStatus:
        try:
            self._delete(RUN_KEY, AUTOSTART_NAME)
            # Leave nothing behind: an old "off" flag would otherwise silently keep a later entry
            # (the installer's, or ours after a reinstall) from starting, the very gotcha above.
            self._delete(STARTUP_APPROVED_KEY, AUTOSTART_NAME)
        except OSError as exc:
            raise _registry_error("remove", exc) from exc
        return self.status()


def _registry_error(verb: str, exc: OSError) -> AutostartError:
    return AutostartError(
        rf"could not {verb} the registry value HKCU\{RUN_KEY}\{AUTOSTART_NAME}: {_reason(exc)}",
        hint="your own HKCU keys are normally writable; a policy or security tool may be locking them",
    )


def _require_executable(executable: str) -> None:
    if not executable:
        raise AutostartError(
            "cannot tell which program runs torchdoctor (sys.executable is empty)",
            hint="run `torchdoctor autostart enable` from the environment torchdoctor is installed in",
        )


# --- Linux: an XDG autostart file -----------------------------------------------------------------


def xdg_autostart_folder(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """`$XDG_CONFIG_HOME/autostart`; unset, empty or relative (the spec says to ignore it): `~/.config`."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else (home or Path.home()) / ".config"
    return root / "autostart"


def shipped_icon() -> str | None:
    """The absolute path of the shipped torchdoctor.png, if it is a real file a desktop can show."""
    try:
        icon = resources.files("torchdoctor.icons") / "torchdoctor.png"
    except ModuleNotFoundError:
        return None
    # Inside a zip or a frozen archive there is no path to give.
    return str(icon) if isinstance(icon, Path) and icon.is_file() else None


def _posix_program_stale(program: str) -> bool:
    if PurePosixPath(program).is_absolute():
        return not Path(program).exists()
    return shutil.which(program) is None


def _write_atomically(path: Path, text: str) -> None:
    """Temp file in the same folder, then a rename: a crash leaves the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The `.tmp` suffix keeps a leftover from ever being read as an autostart entry.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes it 0600; the mode any editor would give. It holds no secret.
        tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@dataclass(frozen=True, slots=True)
class XdgAutostart:
    """`<folder>/torchdoctor.desktop`."""

    folder: Path
    executable: str
    frozen: bool
    icon: Callable[[], str | None] = shipped_icon

    mechanism: ClassVar[Mechanism] = Mechanism.XDG_AUTOSTART

    @property
    def path(self) -> Path:
        return self.folder / f"{AUTOSTART_NAME}.desktop"

    def _argv(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return launch_argv(self.executable, frozen=self.frozen, windows=False, exists=os.path.exists)

    def status(self) -> AutostartStatus:
        argv, notes = self._argv()
        expected = exec_command_line(argv)
        if "=" in argv[0]:
            notes += (
                f"the spec forbids `=` in an Exec program's path ({argv[0]}); some desktops may not run it",
            )
        location = str(self.path)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return AutostartStatus(False, self.mechanism, location, None, expected, False, False, notes)
        except (OSError, UnicodeDecodeError) as exc:
            why = _reason(exc) if isinstance(exc, OSError) else "not UTF-8"
            notes = (f"could not read {location}: {why}; {ENABLE_FIXES}", *notes)
            return AutostartStatus(False, self.mechanism, location, None, expected, False, False, notes)
        entry = parse_desktop_entry(text)
        command = entry.get("Exec")
        reason = desktop_disabled_reason(entry)
        registered: list[str] = []
        stale = False
        if command is None:
            registered.append(f"{location} has no Exec line; {ENABLE_FIXES}")
        else:
            try:
                words = split_exec(command)
            except ValueError:
                words = []
            program = words[0] if words else None
            stale = program is None or _posix_program_stale(program)
            registered += _registered_notes(command, expected, program, stale=stale, same=command == expected)
            if program is not None and not PurePosixPath(program).is_absolute():
                registered.append(
                    f"the entry runs `{program}` by name; the login session's PATH may not hold it"
                )
        return AutostartStatus(
            enabled=command is not None and reason is None,
            mechanism=self.mechanism,
            location=location,
            command=command,
            expected_command=expected,
            disabled_by_user=reason is not None,
            stale=stale,
            notes=((reason,) if reason else ()) + tuple(registered) + notes,
        )

    def enable(self) -> AutostartStatus:
        _require_executable(self.executable)
        argv, _ = self._argv()
        # Always rewritten in full: this fixes a stale Exec and clears a Hidden=true the user set,
        # since enabling is their explicit choice.
        try:
            _write_atomically(self.path, render_desktop_entry(argv, icon=self.icon()))
        except OSError as exc:
            raise AutostartError(
                f"could not write {self.path}: {_reason(exc)}",
                hint=f"check that {self.folder} is a folder you can write to",
            ) from exc
        return self.status()

    def disable(self) -> AutostartStatus:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise AutostartError(
                f"could not remove {self.path}: {_reason(exc)}",
                hint=f"check that you can write to {self.folder}",
            ) from exc
        return self.status()


# --- choosing the backend, and the API the tray and the CLI use -----------------------------------


def _winreg() -> WinregApi:
    if sys.platform == "win32":
        import winreg  # noqa: PLC0415 - the module exists only on Windows

        return winreg
    raise AutostartError("the Windows registry exists only on Windows")


def backend_for(platform: str | None = None, *, registry: WinregApi | None = None) -> AutostartBackend:
    """The backend for this OS. `platform` (a `sys.platform` value) and `registry` override it, for tests.

    The entry records the interpreter running now (not a resolved symlink: a venv's python is one),
    or the frozen program itself.
    """
    name = sys.platform if platform is None else platform
    frozen = bool(getattr(sys, "frozen", False))
    if name == "win32":
        return RegistryRunAutostart(registry if registry is not None else _winreg(), sys.executable, frozen)
    if name == "darwin":
        raise AutostartError(
            "start at login is not supported on macOS", hint="add torchdoctor to Login Items by hand"
        )
    executable = os.path.abspath(sys.executable) if sys.executable else ""  # noqa: PTH100 - a str is kept
    return XdgAutostart(xdg_autostart_folder(), executable, frozen)


def autostart_status(backend: AutostartBackend | None = None) -> AutostartStatus:
    """Whether the tray starts at login. Cheap (a file or two registry values), and never raises for
    an unreadable entry: that is a note."""
    return (backend if backend is not None else backend_for()).status()


def enable_autostart(backend: AutostartBackend | None = None) -> AutostartStatus:
    """Registers (or re-registers) the tray; clears the user's earlier "off". Raises AutostartError."""
    return (backend if backend is not None else backend_for()).enable()


def disable_autostart(backend: AutostartBackend | None = None) -> AutostartStatus:
    """Removes the entry; nothing to remove is fine. Raises AutostartError."""
    return (backend if backend is not None else backend_for()).disable()
