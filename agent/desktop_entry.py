"""Linux: put torchdoctor in the desktop's application menu, per user.

Writes `$XDG_DATA_HOME/applications/torchdoctor.desktop` (the Desktop Entry spec) and the app icon
as `$XDG_DATA_HOME/icons/hicolor/<N>x<N>/apps/torchdoctor.png` (the Icon Theme spec), so the entry
names its icon by theme name and any size the desktop asks for is drawn, not scaled. XDG_DATA_HOME
unset, empty or relative means `~/.local/share`, as the Base Directory spec says. The entry starts
the tray with the same command the autostart entry uses (`launch_argv`), so the menu and the login
start the same program. Writing it twice gives the same files.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image

from torchdoctor.agent.autostart import (
    AUTOSTART_NAME,
    escape_string_value,
    exec_command_line,
    launch_argv,
)
from torchdoctor.agent.tray.icons import app_icon
from torchdoctor.service.errors import EXIT_ATTENTION, BadInputError, TorchdoctorError

ENTRY_NAME: Final = f"{AUTOSTART_NAME}.desktop"
ICON_NAME: Final = AUTOSTART_NAME
# The sizes hicolor themes ship for applications; each is drawn at its size.
ICON_SIZES: Final = (16, 24, 32, 48, 64, 128, 256)


class DesktopEntryError(TorchdoctorError):
    """The entry or an icon could not be written (a read-only folder, a file where a folder should be)."""

    code = "desktop-entry-failed"
    exit_code = EXIT_ATTENTION


class NotLinuxError(BadInputError):
    """Desktop entries are a Linux (freedesktop) thing."""

    code = "not-linux"


@dataclass(frozen=True, slots=True)
class InstalledEntry:
    entry: Path
    icons: tuple[Path, ...]
    command: str


def data_home(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """`$XDG_DATA_HOME`; unset, empty or relative (the spec says to ignore it): `~/.local/share`."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME", "")
    if base and Path(base).is_absolute():
        return Path(base)
    return (home or Path.home()) / ".local" / "share"


def render_application_entry(argv: Sequence[str]) -> str:
    """The menu entry that runs `argv` (the tray)."""
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        f"Name={AUTOSTART_NAME}",
        "GenericName=PyTorch GPU doctor",
        "Comment=Keeps every Python environment's PyTorch build matched to this machine's GPU (tray icon)",
        f"Exec={escape_string_value(exec_command_line(argv))}",
        f"Icon={ICON_NAME}",
        "Terminal=false",
        "Categories=Development;Utility;",
        "Keywords=pytorch;cuda;gpu;nvidia;torch;",
        # A second start asks the running tray to check now: one window-less process either way.
        "StartupNotify=false",
    ]
    return "\n".join(lines) + "\n"


def icon_path(base: Path, size: int) -> Path:
    return base / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write` fills a temp file in the same folder, then a rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o644)  # mkstemp's 0600; an entry and an icon hold no secret
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _png_writer(image: Image.Image) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        image.save(tmp, format="PNG")

    return write


def _text_writer(text: str) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8", newline="\n")

    return write


def install_desktop_entry(
    base: Path,
    executable: str,
    *,
    frozen: bool,
    draw: Callable[[int], Image.Image] = app_icon,
) -> InstalledEntry:
    """Writes the entry and the icons under `base` (a data home); raises DesktopEntryError."""
    if not executable:
        raise DesktopEntryError(
            "cannot tell which program runs torchdoctor (sys.executable is empty)",
            hint="run `torchdoctor install-desktop-entry` from the environment torchdoctor is installed in",
        )
    argv, _ = launch_argv(executable, frozen=frozen, windows=False, exists=os.path.exists)
    entry = base / "applications" / ENTRY_NAME
    icons = tuple(icon_path(base, size) for size in ICON_SIZES)
    text = render_application_entry(argv)
    try:
        for size, path in zip(ICON_SIZES, icons, strict=True):
            _write_atomically(path, _png_writer(draw(size)))
        _write_atomically(entry, _text_writer(text))
    except OSError as exc:
        where = exc.filename or base
        raise DesktopEntryError(
            f"could not write {where}: {exc.strerror or exc}",
            hint=f"check that {base} is a folder you can write to (it is XDG_DATA_HOME, else ~/.local/share)",
        ) from exc
    return InstalledEntry(entry, icons, exec_command_line(argv))


def install_for_this_user(platform: str | None = None) -> InstalledEntry:
    """The entry for the program running now, in this user's data home."""
    name = sys.platform if platform is None else platform
    if not name.startswith("linux"):
        raise NotLinuxError(
            "install-desktop-entry is for Linux desktops",
            hint="on Windows the installer adds the Start-menu entry (README, Install)",
        )
    executable = os.path.abspath(sys.executable) if sys.executable else ""  # noqa: PTH100 - a str is kept
    return install_desktop_entry(data_home(), executable, frozen=bool(getattr(sys, "frozen", False)))
