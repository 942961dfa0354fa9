"""The tray-test desktop itself (tests/support/desktop.py), proved with a tiny real pystray icon.

The icon runs on pystray's appindicator backend, as the agent does on Linux: it docks in tint2,
any click opens its GTK menu, "Check now" recolours it and calls `notify()`, "Quit" ends it.
Screenshots land in the folder the `desktop` fixture prints (shown with `-rP`, or on failure).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import psutil
import pytest

from tests.support.desktop import (  # noqa: F401 (desktop_fixture registers the `desktop` fixture)
    MARKER_ENV,
    Desktop,
    DesktopError,
    Spawned,
    Window,
    crop,
    desktop_fixture,
    mean_colour,
    pixel_difference,
    require_desktop,
)

pytestmark = pytest.mark.tray

TITLE = "torchdoctor harness"
ICON_SCRIPT = f"""
import pystray
from PIL import Image, ImageDraw

def disc(colour):
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((2, 2, 62, 62), fill=colour)
    return image

def clicked(icon, item):
    print("MENU CLICKED:", item.text, flush=True)

def check_now(icon, item):
    clicked(icon, item)
    icon.icon = disc("orange")
    icon.notify("Driver check finished", "GPU agent")

def quit_(icon, item):
    clicked(icon, item)
    icon.stop()

menu = pystray.Menu(
    pystray.MenuItem("Check now", check_now),
    pystray.MenuItem("Reinstall torch", pystray.Menu(
        pystray.MenuItem("py311-cu124", clicked),
        pystray.MenuItem("py312-cu126", clicked),
    )),
    pystray.MenuItem("Start at login", clicked, checked=lambda item: True),
    pystray.Menu.SEPARATOR,
    pystray.MenuItem("Quit", quit_),
)
icon = pystray.Icon("td-harness", disc("green"), {TITLE!r}, menu)
print("backend:", type(icon).__module__, flush=True)
icon.run()
print("run() returned", flush=True)
"""


def start_icon(desktop: Desktop, tmp_path: Path) -> tuple[Spawned, Window]:
    """The harness icon, running and docked."""
    script = tmp_path / "harness_icon.py"
    script.write_text(ICON_SCRIPT)
    app = desktop.spawn("icon", [sys.executable, script], env={"PYSTRAY_BACKEND": "appindicator"})
    icon = desktop.wait_for_tray_icon(title=TITLE)
    return app, icon


def test_the_desktop_is_private_and_up(desktop: Desktop) -> None:
    env = desktop.env
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        assert Path(env[name]).is_relative_to(desktop.base), name
    runtime = Path(env["XDG_RUNTIME_DIR"])
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    assert env["DBUS_SESSION_BUS_ADDRESS"].startswith(f"unix:path={runtime}/bus")
    assert env["DISPLAY"] == desktop.display != os.environ.get("DISPLAY")
    assert "PYSTRAY_BACKEND" not in env
    assert desktop.tray_icon_windows() == []
    assert desktop.menu_windows() == []
    assert desktop.notifications() == []

    shot = desktop.screenshot("empty.png")
    # tint2's panel: 40 px of #404040 along the bottom (desktop_files/tint2rc).
    assert mean_colour(crop(shot, (0, 560, 800, 600))) == (64, 64, 64)
    assert mean_colour(crop(shot, (0, 0, 800, 500))) == (0, 0, 0)


def test_a_pystray_icon_docks_opens_its_menu_notifies_and_quits(desktop: Desktop, tmp_path: Path) -> None:
    app, docked = start_icon(desktop, tmp_path)
    assert "backend: pystray._appindicator" in app.output()
    assert desktop.tray_icon_windows() == [docked]
    assert (docked.rect.x, docked.rect.y, docked.rect.width, docked.rect.height) == (4, 564, 32, 32)
    before = desktop.icon_image(docked, desktop.screenshot("1-docked.png"))
    red, green, blue = mean_colour(before)
    assert green > 80 and red < 60 and blue < 60, "a green disc on the grey panel"

    # Any click on the appindicator fallback icon opens the menu (the left one here).
    desktop.click(*docked.rect.center)
    menu = desktop.wait_for_menu()
    desktop.screenshot("2-menu.png")
    items = desktop.menu_items()
    assert [(i.name, i.role) for i in items] == [
        ("Check now", "menu item"),
        ("Reinstall torch", "menu"),
        ("Start at login", "check menu item"),
        ("", "separator"),
        ("Quit", "menu item"),
    ]
    assert next(i for i in items if i.name == "Start at login").checked
    # The geometry fallback in desktop.py's docstring: 4 px padding, 25 px rows, 1 px separators.
    assert all(menu.rect.contains(*i.rect.center) for i in items)
    rows = [i for i in items if i.role != "separator"]
    assert [i.rect.height for i in rows] == [25] * 4
    assert [i.rect.y - menu.rect.y for i in rows] == [4, 29, 54, 80]
    assert menu.rect.height == 8 + 25 * len(rows) + 1

    # Hovering the submenu's parent opens a second menu window beside it.
    desktop.hover_menu_item("Reinstall torch")
    submenu = desktop.wait_for_menu(count=2)
    entry = desktop.menu_item("py311-cu124")
    assert entry.path == ("Reinstall torch",)
    assert submenu.rect.contains(*entry.rect.center)
    assert submenu.rect.x >= menu.rect.x + menu.rect.width - 4
    desktop.screenshot("3-submenu.png")

    # "Check now" (back in the main menu, past the open submenu): recolour + notify.
    desktop.click_menu_item("Check now")
    desktop.wait_for_no_menu()
    after = desktop.wait_for_icon_change(docked, before)
    assert pixel_difference(before, after) > 0.5
    red, green, blue = mean_colour(after)
    assert red > 120 and blue < 60, "an orange disc"
    desktop.wait_for_bubble()
    desktop.screenshot("4-checked-and-notified.png")
    note = desktop.wait_for_notification(lambda n: n.summary == "GPU agent")
    assert note.body == "Driver check finished"
    assert "MENU CLICKED: Check now" in app.output()

    desktop.click(*docked.rect.center, button=3)  # the right button opens it too
    desktop.wait_for_menu()
    desktop.click_menu_item("Quit")
    assert app.wait(timeout=15) == 0
    assert "run() returned" in app.output()
    desktop.wait_until("the icon to leave the tray", lambda: not desktop.tray_icon_windows(), 10)
    desktop.screenshot("5-quit.png")
    print(f"screenshots: {desktop.artifacts}")


def test_teardown_stops_every_process_even_when_the_test_fails(tmp_path: Path) -> None:
    require_desktop()
    seen: list[psutil.Process] = []
    with pytest.raises(DesktopError, match="on purpose"), Desktop.start(tmp_path / "d") as desktop:
        # A child that leaves its process group, as a D-Bus-activated helper may.
        desktop.spawn("escapee", ["setsid", "--fork", "sleep", "600"])
        desktop.wait_until(
            "the escapee", lambda: any(p.name() == "sleep" for p in _marked(desktop.id)), timeout=10
        )
        seen = _marked(desktop.id)
        assert {"Xvfb", "dbus-daemon", "openbox", "tint2", "dunst", "sleep"} <= {p.name() for p in seen}
        raise DesktopError("the test fails on purpose")
    _, alive = psutil.wait_procs(seen, timeout=5)
    assert alive == []
    assert _marked(desktop.id) == []
    assert (tmp_path / "d" / "shots" / "teardown.png").is_file()
    assert not Path(desktop.env["XDG_RUNTIME_DIR"]).exists()


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER_ENV) == marker:
                found.append(proc)
        except psutil.Error:
            continue
    return found
