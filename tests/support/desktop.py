"""A real, private Linux desktop for the tray's end-to-end tests: the `desktop` fixture.

Each test gets its own world, started in about a second and torn down by process group:

  Xvfb          on a free display number (`-displayfd`), 800x600, 24 bit
  dbus-daemon   a private session bus at $XDG_RUNTIME_DIR/bus (appindicator, notifications, AT-SPI)
  openbox       window manager: tint2 maps neither its panel nor its tray without one
  tint2         the tray host (desktop_files/tint2rc): a 40 px panel along the bottom holding only
                the system tray; icons are 32x32, the first at (4, 564)
  dunst         the notification daemon (desktop_files/dunstrc): bubbles top-right, never expiring

HOME and every XDG_* folder point into the test's tmp folder, XDG_RUNTIME_DIR is a 0700 folder
under /tmp (a short path: a unix socket's path must stay under 108 bytes), so nothing touches the
real user's files. `Desktop.env` is what a program under test is started with (`Desktop.spawn`
does that and tears it down too); PYSTRAY_BACKEND is removed from it, a test sets it.

Readiness is polled, never slept for: Xvfb writes its display number when it accepts clients, the
window manager sets `_NET_SUPPORTING_WM_CHECK` on the root window, tint2 owns the
`_NET_SYSTEM_TRAY_S0` selection and maps its panel, dunst owns `org.freedesktop.Notifications`.
A timeout raises DesktopError with the tail of every process's log.

How the pieces behave (measured, pystray 0.19.5 appindicator backend, Debian 12):
- With no StatusNotifierItem host, libayatana-appindicator falls back to a GtkStatusIcon, an
  XEmbed icon that tint2 docks. It docks twice at start (a first window is replaced by the final
  one, named after the icon's title), so `wait_for_tray_icon` waits for the tray to settle.
- Any click on that icon (left or right) opens the menu; there is no default action.
- The menu is an override-redirect popup window (`_NET_WM_WINDOW_TYPE_POPUP_MENU`); a submenu is a
  second one, opened by hovering its parent item. GTK activates an item on button release.
- Menu items are found by name through AT-SPI (the accessibility bus GTK 3 talks to, activated on
  our private session bus): `menu_items()` lists the items now on screen with their names, roles
  and rectangles in root coordinates. If that ever breaks, the geometry fallback is: the menu
  window has 4 px of padding at the top and bottom, every item row is 25 px high (Adwaita, DejaVu
  Sans 10 at 96 dpi), a separator is 1 px; so row i (0-based, no separator above it) is centred
  at y = menu.top + 4 + 25 * i + 12, and `menu.height == 8 + 25 * items + separators`.
- pystray's `notify(message, title)` shows `title` as the summary and `message` as the body; the
  appname is empty. dunst moves a notification into `dunstctl history` only when its bubble
  closes: screenshot first, then `wait_for_notification()`, which closes the bubbles.

Screenshots (ImageMagick `import -window root`, ~30 ms) go to `Desktop.artifacts`, which the
fixture prints; a last one, `teardown.png`, is taken whether the test passed or not.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import psutil
import pytest
from PIL import Image, ImageChops

if TYPE_CHECKING:
    # python-xlib is installed with pystray on Linux only, so it is imported where it is used.
    from Xlib.xobject.drawable import Window as XWindow

T = TypeVar("T")

SCREEN: Final = (800, 600)
REQUIRE_ENV: Final = "TORCHDOCTOR_REQUIRE_DESKTOP"
MARKER_ENV: Final = "TORCHDOCTOR_DESKTOP_ID"  # every process of one desktop carries it (teardown)
FILES: Final = Path(__file__).with_name("desktop_files")
REPO: Final = Path(__file__).resolve().parents[2]
PROGRAMS: Final = ("Xvfb", "dbus-daemon", "dbus-send", "busctl", "openbox", "tint2", "dunst", "dunstctl",
                   "xdotool", "import")  # fmt: skip
_TINT2_START_S: Final = 6.0  # a panel that has not mapped by then will not (see _start_tint2)
_TOOL_TIMEOUT_S: Final = 15.0  # any one xdotool/import/dunstctl call; they take milliseconds
_START_TIMEOUT_S: Final = 20.0  # each component's readiness; all of them take ~1 s together
_POLL_S: Final = 0.02
_MENU_TYPES: Final = ("_NET_WM_WINDOW_TYPE_POPUP_MENU", "_NET_WM_WINDOW_TYPE_DROPDOWN_MENU",
                      "_NET_WM_WINDOW_TYPE_MENU")  # fmt: skip


class DesktopError(RuntimeError):
    """The desktop did not come up or did not do what was waited for; the message has the logs."""


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rect:
    """A rectangle in root-window (screen) coordinates."""

    x: int
    y: int
    width: int
    height: int

    @property
    def center(self) -> tuple[int, int]:
        return (self.x + self.width // 2, self.y + self.height // 2)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom), what PIL's `Image.crop` takes."""
        return (self.x, self.y, self.x + self.width, self.y + self.height)

    def contains(self, x: int, y: int) -> bool:
        return self.x <= x < self.x + self.width and self.y <= y < self.y + self.height


@dataclass(frozen=True, slots=True)
class Window:
    """An X window: docked tray icons and open menus."""

    id: int
    name: str  # WM_NAME; a pystray tray icon's is the icon's title
    wm_class: tuple[str, ...]
    rect: Rect


@dataclass(frozen=True, slots=True)
class MenuItem:
    """A menu entry on screen, as AT-SPI reports it."""

    name: str  # the label, e.g. "Check now"; "" for a separator
    role: str  # "menu item", "check menu item", "radio menu item", "menu" (has a submenu), "separator"
    rect: Rect
    path: tuple[str, ...]  # the submenus it sits in: () at the top, ("Reinstall torch",) below that
    enabled: bool
    checked: bool
    selected: bool  # highlighted (hovered)
    app: str  # the application's name, e.g. the icon script's file name


@dataclass(frozen=True, slots=True)
class Notification:
    """One entry of `dunstctl history`."""

    id: int
    appname: str
    summary: str
    body: str
    raw: Mapping[str, object] = field(repr=False)


@dataclass
class Spawned:
    """A program started in the desktop; its stdout and stderr go to `log`."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait(self, timeout: float) -> int:
        """The exit status; DesktopError (with the log) when it is still running after `timeout`."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DesktopError(f"{self.name} still running after {timeout:.0f}s\n{_tail(self)}") from None

    def wait_for_output(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise DesktopError(f"{self.name} never printed {text!r}\n{_tail(self)}")
            time.sleep(_POLL_S)


def _tail(p: Spawned, lines: int = 25) -> str:
    state = "running" if p.process.poll() is None else f"exited {p.process.returncode}"
    text = "\n".join(p.output().splitlines()[-lines:])
    return f"--- {p.name} (pid {p.pid}, {state}), {p.log}:\n{text}"


# --- images ------------------------------------------------------------------------------------


def crop(path: Path, box: Rect | tuple[int, int, int, int]) -> Image.Image:
    """The part of a screenshot inside `box` (a Rect, or PIL's (left, top, right, bottom)), as RGB."""
    with Image.open(path) as image:
        return image.convert("RGB").crop(box.box if isinstance(box, Rect) else box)


def pixel_difference(a: Image.Image, b: Image.Image, *, tolerance: int = 24) -> float:
    """The share (0..1) of pixels whose colour differs by more than `tolerance` in any channel.

    The tolerance absorbs antialiasing noise; a recoloured 32 px icon gives ~0.6-0.8, the same
    icon 0.0.
    """
    if a.size != b.size:
        raise ValueError(f"images differ in size: {a.size} vs {b.size}")
    red, green, blue = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).split()
    worst = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    histogram = worst.histogram()
    return sum(histogram[tolerance + 1 :]) / (a.width * a.height)


def mean_colour(image: Image.Image) -> tuple[int, int, int]:
    """The average RGB colour, e.g. to tell a green status icon from an orange one."""
    rgb = image.convert("RGB")
    pixels = rgb.width * rgb.height
    totals = [sum(i * n for i, n in enumerate(rgb.getchannel(c).histogram())) for c in "RGB"]
    return (totals[0] // pixels, totals[1] // pixels, totals[2] // pixels)


# --- whether we can run at all -----------------------------------------------------------------


@functools.cache  # once per session: the packages do not come and go while pytest runs
def missing_reason() -> str | None:
    """Why no desktop can start here, in the words of scripts/desktop-deps; None when it can."""
    if not sys.platform.startswith("linux"):
        return "the tray test desktop is X11 (Xvfb) and runs on Linux only"
    check = subprocess.run(
        [REPO / "scripts" / "desktop-deps", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check.returncode != 0:
        return (check.stdout + check.stderr).strip() or "scripts/desktop-deps --check failed"
    absent = [p for p in PROGRAMS if shutil.which(p) is None]
    if absent:
        return f"not on PATH: {', '.join(absent)} (scripts/desktop-deps installs them)"
    if importlib.util.find_spec("gi") is None:
        return (
            "PyGObject is not installed in this Python (the `linux-tray` extra, which scripts/test "
            "installs: pip install -e '.[test,linux-tray]')"
        )
    return None


def required() -> bool:
    """TORCHDOCTOR_REQUIRE_DESKTOP=1 (scripts/test sets it in CI): a missing desktop fails, not skips."""
    return os.environ.get(REQUIRE_ENV) == "1"


# --- the desktop -------------------------------------------------------------------------------

# Run with the test's Python in the desktop's environment: AT-SPI binds to the session bus of the
# first call in a process, and every test has its own bus, so the query is its own process.
# Prints one JSON list of the menu entries that are showing, in every application.
_ATSPI_QUERY: Final = r"""
import json, gi
gi.require_version("Atspi", "2.0")
from gi.repository import Atspi
S = Atspi.StateType
ROLES = {"menu item", "check menu item", "radio menu item", "menu", "separator", "tearoff menu item"}
out = []
def walk(node, app, path):
    for i in range(node.get_child_count()):
        child = node.get_child_at_index(i)
        if child is None:
            continue
        role = child.get_role_name()
        states = child.get_state_set()
        if role in ROLES and states.contains(S.SHOWING):
            e = child.get_extents(Atspi.CoordType.SCREEN)
            out.append({"name": child.get_name() or "", "role": role, "x": e.x, "y": e.y,
                        "width": e.width, "height": e.height, "path": path, "app": app,
                        "enabled": states.contains(S.SENSITIVE), "checked": states.contains(S.CHECKED),
                        "selected": states.contains(S.SELECTED)})
        if role == "menu" and child.get_name():
            walk(child, app, path + [child.get_name()])
        else:
            walk(child, app, path)
desktop = Atspi.get_desktop(0)
for i in range(desktop.get_child_count()):
    app = desktop.get_child_at_index(i)
    if app is not None:
        walk(app, app.get_name() or "", [])
print(json.dumps(out))
"""


class Desktop:
    """A running private desktop. Start it with `Desktop.start(folder)` (a context manager)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.artifacts = base / "shots"
        self.logs = base / "logs"
        self.id = uuid.uuid4().hex
        self.display = ""
        self.bus_address = ""
        self.env: dict[str, str] = {}
        self.size = SCREEN
        self._runtime = Path(tempfile.mkdtemp(prefix="tdd-"))  # short: the bus socket lives here
        self._procs: list[Spawned] = []  # everything started, for teardown
        self._daemons: list[Spawned] = []  # the desktop itself: none of these may exit
        self._shots = 0
        self._x: _X | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def start(cls, base: Path) -> Iterator[Desktop]:
        """Start everything under `base` (HOME, XDG folders, logs, screenshots); stop it on exit."""
        desktop = cls(base)
        try:
            desktop._start()
            yield desktop
        finally:
            desktop.close()

    def _start(self) -> None:
        for sub in ("home", "config", "data", "state", "cache"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        for folder in (self.artifacts, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self._runtime.chmod(0o700)  # what XDG_RUNTIME_DIR must be; dbus and dconf check
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env |= {
            "HOME": str(self.base / "home"),
            "XDG_CONFIG_HOME": str(self.base / "config"),
            "XDG_DATA_HOME": str(self.base / "data"),
            "XDG_STATE_HOME": str(self.base / "state"),
            "XDG_CACHE_HOME": str(self.base / "cache"),
            "XDG_RUNTIME_DIR": str(self._runtime),
            "GDK_BACKEND": "x11",
            # GSettings would otherwise start dconf on our bus and write into XDG_CONFIG_HOME.
            "GSETTINGS_BACKEND": "memory",
            # Same rendering (fonts, decimal separators) on every machine.
            "LC_ALL": "C.UTF-8",
            MARKER_ENV: self.id,
        }
        self.env = env
        self._start_xvfb()
        self._start_bus()
        self._x = _X(self.display)
        self._run_daemon("openbox", ["openbox", "--sm-disable"])
        self.wait_until("the window manager (openbox)", self._x.wm_ready)
        self._start_tint2()
        # dunst's D-Bus activation file would also start a dunst on the first notify, with the
        # default config: ours is started first and with our file, and it is also where an
        # activated one would look ($XDG_CONFIG_HOME/dunst/dunstrc).
        (self.base / "config" / "dunst").mkdir(exist_ok=True)
        shutil.copyfile(FILES / "dunstrc", self.base / "config" / "dunst" / "dunstrc")
        self._run_daemon("dunst", ["dunst", "-config", str(FILES / "dunstrc")])
        self.wait_until("the notification daemon (dunst on the bus)", self._dunst_ready)

    def _start_tint2(self, attempts: int = 3) -> None:
        """tint2, restarted when its panel never maps. Under load (2 cores, both busy) about one
        start in six has tint2 own the tray selection while its panel stays unmapped for good: the
        map request races openbox's start. A new tint2 then maps at once (facts/libraries.md §2
        saw the same: "a restarted tint2 worked fine")."""
        what = "the tray (tint2 owning _NET_SYSTEM_TRAY_S0 with its panel mapped)"
        for attempt in range(1, attempts + 1):
            tint2 = self._run_daemon("tint2", ["tint2", "-c", str(FILES / "tint2rc")])
            try:
                self.wait_until(
                    what, self.x.tray_ready, _TINT2_START_S if attempt < attempts else _START_TIMEOUT_S
                )
                return
            except DesktopError:
                if attempt == attempts:
                    raise
            self._daemons.remove(tint2)
            _stop_group(tint2.process)

    def _start_xvfb(self) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self._run_daemon(
                "Xvfb",
                [
                    "Xvfb",
                    "-displayfd",
                    str(write_fd),
                    "-screen",
                    "0",
                    f"{SCREEN[0]}x{SCREEN[1]}x24",
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ],
                pass_fds=(write_fd,),
            )
            os.close(write_fd)
            write_fd = -1
            number = self._read_line(read_fd, "Xvfb's display number (-displayfd)")
        finally:
            os.close(read_fd)
            if write_fd != -1:
                os.close(write_fd)
        self.display = f":{int(number)}"
        self.env["DISPLAY"] = self.display

    def _start_bus(self) -> None:
        read_fd, write_fd = os.pipe()
        address = f"unix:path={self._runtime / 'bus'}"
        try:
            self._run_daemon(
                "dbus-daemon",
                [
                    "dbus-daemon",
                    "--session",
                    "--nofork",
                    f"--address={address}",
                    f"--print-address={write_fd}",
                ],
                pass_fds=(write_fd,),
            )
            os.close(write_fd)
            write_fd = -1
            self.bus_address = self._read_line(read_fd, "the session bus address")
        finally:
            os.close(read_fd)
            if write_fd != -1:
                os.close(write_fd)
        self.env["DBUS_SESSION_BUS_ADDRESS"] = self.bus_address

    def _read_line(self, fd: int, what: str) -> str:
        deadline = time.monotonic() + _START_TIMEOUT_S
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, min(left, 0.2)))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break  # the writer exited or closed it
                data += chunk
            elif left <= 0:
                break
            self._check_alive(what)
        if not data.strip():
            raise DesktopError(f"no {what} after {_START_TIMEOUT_S:.0f}s\n{self.logs_tail()}")
        return data.decode().strip()

    def close(self) -> None:
        """Stop every process of this desktop, newest first, by process group, then any stragglers
        that carry its marker in their environment (D-Bus-activated helpers, a test's children)."""
        if self._x is not None and self.display:
            with contextlib.suppress(Exception):
                self.screenshot("teardown.png")
            self._x.close()
            self._x = None
        for proc in reversed(self._procs):
            _stop_group(proc.process)
        _stop_marked(self.id)
        shutil.rmtree(self._runtime, ignore_errors=True)

    def spawn(
        self, name: str, argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None
    ) -> Spawned:
        """Start a program in this desktop (own process group, output to logs/<name>.log); it is
        stopped at teardown if it is still running. `env` is added to `Desktop.env`."""
        return self._run(name, argv, extra_env=env)

    def _run_daemon(self, name: str, argv: Sequence[str | Path], *, pass_fds: Sequence[int] = ()) -> Spawned:
        spawned = self._run(name, argv, pass_fds=pass_fds)
        self._daemons.append(spawned)
        return spawned

    def _run(
        self,
        name: str,
        argv: Sequence[str | Path],
        *,
        extra_env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> Spawned:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [os.fspath(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.env, **(extra_env or {})},
                cwd=self.base,
                start_new_session=True,  # its own process group: teardown kills it and its children
                pass_fds=tuple(pass_fds),
            )
        spawned = Spawned(name, process, log)
        self._procs.append(spawned)
        return spawned

    def logs_tail(self) -> str:
        return "\n".join(_tail(p) for p in self._procs)

    def _check_alive(self, waiting_for: str) -> None:
        for proc in self._daemons:  # a test's own programs may exit, the desktop may not
            if proc.process.poll() is not None:
                raise DesktopError(
                    f"{proc.name} exited ({proc.process.returncode}) while waiting for {waiting_for}\n"
                    f"{self.logs_tail()}"
                )

    def wait_until(self, what: str, ready: Callable[[], T | None], timeout: float = _START_TIMEOUT_S) -> T:
        """Poll `ready` until it returns something other than None/False, and return that; on
        timeout, or when one of the desktop's own processes dies, DesktopError naming `what`, with
        every log's tail."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(what)
            value = ready()
            if value is not None and value is not False:
                return value
            if time.monotonic() > deadline:
                raise DesktopError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs_tail()}")
            time.sleep(_POLL_S)

    @property
    def x(self) -> _X:
        if self._x is None:
            raise DesktopError("the desktop is not running")
        return self._x

    # --- tools -------------------------------------------------------------------------------

    def tool(self, argv: Sequence[str | Path], *, timeout: float = _TOOL_TIMEOUT_S) -> str:
        """Run a short tool (xdotool, dunstctl, xprop, ...) in the desktop; its stdout, or
        DesktopError with its stderr when it fails."""
        args = [os.fspath(a) for a in argv]
        try:
            done = subprocess.run(
                args, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise DesktopError(f"{' '.join(args)} did not finish in {timeout:.0f}s") from None
        if done.returncode != 0:
            raise DesktopError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def screenshot(self, path: Path | str | None = None) -> Path:
        """The whole screen as PNG: `path` (relative ones go into `artifacts`), or NN.png there."""
        self._shots += 1
        target = self.artifacts / (path if path is not None else f"{self._shots:02d}.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.tool(["import", "-window", "root", target])
        return target

    def move(self, x: int, y: int) -> None:
        """Move the pointer (hover); returns once the server has moved it."""
        self.tool(["xdotool", "mousemove", "--sync", str(x), str(y)])

    def click(self, x: int, y: int, button: int = 1) -> None:
        """Move there, then press and release `button` (1 left, 2 middle, 3 right)."""
        self.move(x, y)
        self.tool(["xdotool", "click", str(button)])

    def key(self, *keys: str) -> None:
        """Press keys by X keysym name, e.g. `key("Escape")`, `key("Down", "Return")`, `key("ctrl+q")`."""
        self.tool(["xdotool", "key", "--clearmodifiers", *keys])

    # --- tray icons --------------------------------------------------------------------------

    def tray_icon_windows(self) -> list[Window]:
        """The windows docked in tint2's tray now (XEmbed clients), left to right."""
        return self.x.tray_icons()

    def wait_for_tray_icon(
        self, timeout: float = 10.0, *, title: str | None = None, settle: float = 0.3
    ) -> Window:
        """The docked icon (the one whose title is `title`, if given), once the tray has stayed the
        same for `settle` seconds: the appindicator fallback docks a first window and replaces it."""
        last: list[Window] = []
        since = time.monotonic()

        def settled() -> Window | None:
            nonlocal last, since
            icons = [w for w in self.tray_icon_windows() if title is None or w.name == title]
            if icons != last:
                last, since = icons, time.monotonic()
                return None
            if icons and icons[-1].rect.width > 1 and time.monotonic() - since >= settle:
                return icons[-1]
            return None

        return self.wait_until(f"a tray icon{f' titled {title!r}' if title else ''}", settled, timeout)

    def icon_image(self, icon: Window, shot: Path | None = None) -> Image.Image:
        """The icon's pixels: from `shot`, or from a new screenshot."""
        return crop(shot or self.screenshot(), icon.rect)

    def wait_for_icon_change(
        self, icon: Window, before: Image.Image, timeout: float = 10.0, *, threshold: float = 0.2
    ) -> Image.Image:
        """The icon's new pixels, once more than `threshold` of them differ from `before`."""

        def changed() -> Image.Image | None:
            now = self.icon_image(icon, self.screenshot("icon-change.png"))
            return now if pixel_difference(before, now) > threshold else None

        return self.wait_until(f"the tray icon at {icon.rect} to change", changed, timeout)

    # --- menus -------------------------------------------------------------------------------

    def menu_windows(self) -> list[Window]:
        """The popup menus on screen, bottom to top: [menu] or [menu, submenu, ...]."""
        return self.x.menus()

    def wait_for_menu(self, timeout: float = 10.0, *, count: int = 1) -> Window:
        """The topmost menu, once at least `count` menus are on screen."""
        return self.wait_until(
            f"{count} open menu window(s)",
            lambda: m[-1] if len(m := self.menu_windows()) >= count else None,
            timeout,
        )

    def wait_for_no_menu(self, timeout: float = 10.0) -> None:
        self.wait_until("every menu to close", lambda: not self.menu_windows(), timeout)

    def menu_items(self) -> list[MenuItem]:
        """The menu entries on screen now (all open menus), top to bottom, found through AT-SPI."""
        out = self.tool([sys.executable, "-c", _ATSPI_QUERY], timeout=30)
        items = [
            MenuItem(
                name=str(raw["name"]),
                role=str(raw["role"]),
                rect=Rect(int(raw["x"]), int(raw["y"]), int(raw["width"]), int(raw["height"])),
                path=tuple(str(p) for p in raw["path"]),
                enabled=bool(raw["enabled"]),
                checked=bool(raw["checked"]),
                selected=bool(raw["selected"]),
                app=str(raw["app"]),
            )
            for raw in json.loads(out)
        ]
        # Showing but placed nowhere: the entries of a submenu that is not open. An unnamed "menu"
        # is the menu itself, not an entry.
        return [
            i for i in items if i.rect.width > 1 and i.rect.x >= 0 and not (i.role == "menu" and not i.name)
        ]

    def menu_item(self, name: str, timeout: float = 10.0) -> MenuItem:
        """The entry labelled `name` once it is on screen (e.g. a submenu's, after hovering its parent)."""
        return self.wait_until(
            f"the menu entry {name!r} on screen",
            lambda: next((i for i in self.menu_items() if i.name == name), None),
            timeout,
        )

    def hover_menu_item(self, name: str, timeout: float = 10.0) -> MenuItem:
        """Point at the entry and wait until GTK highlights it (a submenu then opens)."""
        item = self.menu_item(name, timeout)
        x, y = item.rect.center
        tries = 0

        def highlighted() -> MenuItem | None:
            # After a submenu opened, GTK ignores pointer motion toward a sibling of its parent for a
            # while (the "submenu triangle"), and a warped pointer sends one motion event, not a
            # stream: so when a first move did not highlight the entry, leave the menus and come back.
            nonlocal tries
            if tries:
                self.move(*self._outside_menus())
            tries += 1
            self.move(x, y)
            return next((i for i in self.menu_items() if i.name == name and i.selected), None)

        return self.wait_until(f"the menu entry {name!r} to highlight", highlighted, timeout)

    def _outside_menus(self) -> tuple[int, int]:
        menus = [m.rect for m in self.menu_windows()]
        corners = [(self.size[0] // 2, 0), (0, 0), (self.size[0] - 1, self.size[1] // 2)]
        return next((c for c in corners if not any(r.contains(*c) for r in menus)), corners[0])

    def click_menu_item(self, name: str, timeout: float = 10.0) -> MenuItem:
        """Hover the entry until it is highlighted, then click it (GTK activates on release)."""
        item = self.hover_menu_item(name, timeout)
        self.tool(["xdotool", "click", "1"])
        return item

    # --- notifications -----------------------------------------------------------------------

    def _dunst_ready(self) -> bool:
        # NameHasOwner, not a call to the name itself, which would D-Bus-activate a second dunst.
        out = self.tool(
            ["dbus-send", "--session", "--print-reply=literal", "--dest=org.freedesktop.DBus",
             "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", "string:org.freedesktop.Notifications"]
        )  # fmt: skip
        return out.split()[-1:] == ["true"]

    def bubbles(self) -> int:
        """How many notification bubbles are on screen now."""
        return int(self.tool(["dunstctl", "count", "displayed"]).strip())

    def wait_for_bubble(self, count: int = 1, timeout: float = 10.0) -> None:
        """Until at least `count` bubbles are on screen (then a screenshot shows them)."""
        self.wait_until(f"{count} notification bubble(s) on screen", lambda: self.bubbles() >= count, timeout)

    def notifications(self) -> list[Notification]:
        """`dunstctl history`, newest first: notifications whose bubble has closed."""
        data = json.loads(self.tool(["dunstctl", "history"]))
        entries: list[dict[str, dict[str, object]]] = data["data"][0]
        return [
            Notification(
                id=int(str(e["id"]["data"])),
                appname=str(e["appname"]["data"]),
                summary=str(e["summary"]["data"]),
                body=str(e["body"]["data"]),
                raw={k: v["data"] for k, v in e.items()},
            )
            for e in entries
        ]

    def wait_for_notification(
        self, predicate: Callable[[Notification], bool] = lambda _: True, timeout: float = 10.0
    ) -> Notification:
        """The newest notification that `predicate` accepts. Closes the bubbles on screen to move
        them into the history (dunst lists only closed ones), so take screenshots first."""

        def found() -> Notification | None:
            if self.bubbles():
                self.tool(["dunstctl", "close-all"])
            return next((n for n in self.notifications() if predicate(n)), None)

        return self.wait_until("a matching notification in dunst's history", found, timeout)


_DROPPED_ENV: Final = frozenset(
    {
        "PYSTRAY_BACKEND",  # each test picks the backend it means
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "XAUTHORITY",
        "DBUS_SESSION_BUS_ADDRESS",
        "SESSION_MANAGER",
        "XDG_SESSION_TYPE",
        "XDG_CURRENT_DESKTOP",
        "DESKTOP_SESSION",
        "NO_AT_BRIDGE",  # menu_items() needs GTK's accessibility bridge
        "GTK_MODULES",
    }
)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after 3 s, and reap the leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=3)
    # The group may outlive its leader (a child that ignored SIGTERM): make sure.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _stop_marked(marker: str) -> None:
    """Kill what carries MARKER_ENV=marker and escaped its process group (setsid'd helpers)."""
    mine: list[psutil.Process] = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(MARKER_ENV) == marker:
                mine.append(proc)
    for proc in mine:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(mine, timeout=3)


# --- X11 queries (python-xlib) -----------------------------------------------------------------


class _X:
    """One connection to the desktop's X server for looking at windows."""

    def __init__(self, display_name: str) -> None:
        from Xlib import display as xdisplay

        self.display = xdisplay.Display(display_name)
        self.root = self.display.screen().root

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.display.close()

    def atom(self, name: str) -> int:
        return self.display.intern_atom(name)

    def wm_ready(self) -> bool:
        from Xlib import X

        prop = self.root.get_full_property(self.atom("_NET_SUPPORTING_WM_CHECK"), X.AnyPropertyType)
        return prop is not None and len(prop.value) > 0

    def tray_ready(self) -> bool:
        from Xlib import X

        owner = self.display.get_selection_owner(self.atom("_NET_SYSTEM_TRAY_S0"))
        if owner == X.NONE:
            return False
        return any(self._viewable(w) for w in self._tint2_windows())

    def _tint2_windows(self) -> list[XWindow]:
        from Xlib.error import XError

        found: list[XWindow] = []

        # openbox reparents the panel into a frame window, so look below the top level too.
        def walk(window: XWindow, depth: int) -> None:
            try:
                children = window.query_tree().children
            except XError:
                return
            for child in children:
                try:
                    is_tint2 = "tint2" in (child.get_wm_class() or ())
                except XError:
                    continue
                if is_tint2:
                    found.append(child)
                elif depth < 2:
                    walk(child, depth + 1)

        walk(self.root, 0)
        return found

    def _viewable(self, window: XWindow) -> bool:
        from Xlib import X
        from Xlib.error import XError

        try:
            return bool(window.get_attributes().map_state == X.IsViewable)
        except XError:
            return False

    def _describe(self, window: XWindow) -> Window | None:
        from Xlib.error import XError

        try:
            geometry = window.get_geometry()
            origin = self.root.translate_coords(window, 0, 0)
            name = window.get_wm_name()
            wm_class = window.get_wm_class() or ()
        except XError:
            return None  # gone while we looked
        return Window(
            id=int(window.id),
            name=name if isinstance(name, str) else (name or b"").decode(errors="replace"),
            wm_class=tuple(wm_class),
            rect=Rect(int(origin.x), int(origin.y), int(geometry.width), int(geometry.height)),
        )

    def tray_icons(self) -> list[Window]:
        from Xlib import X
        from Xlib.error import XError

        xembed = self.atom("_XEMBED_INFO")
        icons: list[Window] = []

        def walk(window: XWindow) -> None:
            try:
                children = window.query_tree().children
            except XError:
                return
            for child in children:
                try:
                    embedded = child.get_full_property(xembed, X.AnyPropertyType) is not None
                except XError:
                    continue
                if embedded and self._viewable(child):
                    described = self._describe(child)
                    if described is not None:
                        icons.append(described)
                else:
                    walk(child)

        for panel in self._tint2_windows():
            walk(panel)
        return sorted(icons, key=lambda w: (w.rect.x, w.rect.y))

    def menus(self) -> list[Window]:
        from Xlib import X
        from Xlib.error import XError

        wanted = {self.atom(n) for n in _MENU_TYPES}
        kind = self.atom("_NET_WM_WINDOW_TYPE")
        found: list[Window] = []
        for window in self.root.query_tree().children:  # bottom to top
            try:
                prop = window.get_full_property(kind, X.AnyPropertyType)
            except XError:
                continue
            if prop is not None and wanted & set(prop.value) and self._viewable(window):
                described = self._describe(window)
                if described is not None:
                    found.append(described)
        return found


# --- the fixture -------------------------------------------------------------------------------


def require_desktop() -> None:
    """Skip the calling test when no desktop can run here; fail it under TORCHDOCTOR_REQUIRE_DESKTOP=1."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the tray test desktop is X11 (Xvfb) and runs on Linux only")
    reason = missing_reason()
    if reason is not None:
        if required():
            pytest.fail(f"{REQUIRE_ENV}=1 but no desktop can start: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(name="desktop")
def desktop_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    """A fresh private desktop per test (about a second to start). Skips when the machine lacks
    the packages (scripts/desktop-deps says which), fails instead under TORCHDOCTOR_REQUIRE_DESKTOP=1."""
    require_desktop()
    base = tmp_path_factory.mktemp("desktop")
    print(f"desktop screenshots: {base / 'shots'}  logs: {base / 'logs'}")
    with Desktop.start(base) as desktop:
        yield desktop
