"""The tray end to end, for real: `torchdoctor tray` on pystray's appindicator backend in a private
desktop (Xvfb + openbox + tint2 + dunst, tests/support/desktop.py), a real venv with stand-in torch
wheels, a real local index, and a hardware file rewritten the way a driver update changes the machine.

The story a user lives through: the icon is green; the driver is rolled back and the icon turns
red with a notification naming what broke; right-click → the environment → "Reinstall torch …";
the environment is fixed on disk, the icon is green again and the result arrives as a notification.
Screenshots of every step are in the folder the `desktop` fixture prints (kept with the test output).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.desktop import (  # noqa: F401 (desktop_fixture registers the `desktop` fixture)
    Desktop,
    Spawned,
    desktop_fixture,
    pixel_difference,
)
from tests.support.envs import install_standins, make_venv, tree_digest, venv_env
from tests.support.index_server import IndexServer, publish
from tests.support.scenarios import NEW_DRIVER, OLD_DRIVER, family
from torchdoctor.service.envs.builds import read_build
from torchdoctor.service.facts.knowledge import load_knowledge

pytestmark = [pytest.mark.tray, pytest.mark.slow]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[IndexServer]:
    root = tmp_path / "index"
    for variant in ("cu118", "cu126", "cu128"):
        publish(root, family(variant), variant)
    with IndexServer(root) as server:
        yield server


def torch_version(root: Path) -> str | None:
    reading = read_build(venv_env(root), load_knowledge(Path("/nonexistent")))
    return reading.build.version if reading else None


def td_env() -> dict[str, str]:
    """The isolated torchdoctor folders of this test (tests/conftest.py), for the tray process."""
    return {k: v for k, v in os.environ.items() if k.startswith("TORCHDOCTOR_")}


def wait_for_log(log: Path, text: str, tray: Spawned, timeout: float = 30.0, after: int = 0) -> int:
    """Until the tray's log holds `text` past offset `after`; returns the offset after it."""
    deadline = time.monotonic() + timeout
    while True:
        content = log.read_text(errors="replace") if log.exists() else ""
        found = content.find(text, after)
        if found >= 0:
            return found + len(text)
        assert tray.process.poll() is None, f"the tray exited:\n{tray.output()}\n{content}"
        assert time.monotonic() < deadline, (
            f"no {text!r} in the tray log:\n{content[-3000:]}\n{tray.output()}"
        )
        time.sleep(0.1)


def start_tray(
    desktop: Desktop,
    hw: Path,
    env_root: Path,
    index: IndexServer,
    *,
    backend: str = "appindicator",
    interval: str | None = "3600",
) -> Spawned:
    argv = [
        sys.executable, "-m", "torchdoctor.agent", "tray", "--hardware", str(hw), "--env", str(env_root),
        "--no-discover", "--index-base", index.url, "--first-check-after", "0",
        *(["--interval", interval] if interval else []),
    ]  # fmt: skip
    return desktop.spawn(f"tray-{backend}", argv, env={"PYSTRAY_BACKEND": backend, **td_env()})


def open_menu(desktop: Desktop, icon_center: tuple[int, int]) -> None:
    desktop.click(*icon_center, button=3)
    desktop.wait_for_menu()


def test_driver_update_notifies_and_one_click_reinstall_fixes_it(
    desktop: Desktop, index: IndexServer, tmp_path: Path, td_dirs: dict[str, Path]
) -> None:
    env = make_venv(tmp_path / "proj" / ".venv")
    install_standins(env, family("cu128"))
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(NEW_DRIVER))
    log = td_dirs["log"] / "tray.log"
    tray = start_tray(desktop, hw, env.root, index)

    # 1. The icon docks and turns "ok" after the first check.
    offset = wait_for_log(log, "status: ok", tray)
    icon = desktop.wait_for_tray_icon()
    ok_image = desktop.icon_image(icon, desktop.screenshot("1-ok.png"))

    # 2. The driver is rolled back; "Check now" from the menu sees it.
    hw.write_text(json.dumps(OLD_DRIVER))
    open_menu(desktop, icon.rect.center)
    desktop.screenshot("2-menu-ok.png")
    desktop.click_menu_item("Check now")
    offset = wait_for_log(log, "status: broken", tray, after=offset)
    broken_image = desktop.wait_for_icon_change(icon, ok_image)
    assert pixel_difference(ok_image, broken_image) > 0.2  # the badge changed, not a pixel or two
    desktop.wait_for_bubble()
    desktop.screenshot("3-broken-and-notified.png")
    note = desktop.wait_for_notification(lambda n: "no longer fits" in n.summary)
    assert note.summary == "NVIDIA driver 572.16 → 520.61.05: 1 environment no longer fits"
    assert note.body.startswith("proj/.venv: torch 2.7.1+cu128 needs NVIDIA driver")
    assert note.appname == "torchdoctor"

    # 3. Right-click → the environment → "Reinstall torch 2.7.1+cu118 (…)": one click, no dialog.
    open_menu(desktop, icon.rect.center)
    desktop.hover_menu_item("proj/.venv: broken")
    reinstall = next(
        (i for i in desktop.menu_items() if i.name.startswith("Reinstall torch 2.7.1+cu118 (")), None
    )
    assert reinstall is not None, [i.name for i in desktop.menu_items()]
    assert reinstall.enabled
    desktop.screenshot("4-reinstall-offered.png")
    desktop.click_menu_item(reinstall.name)

    # 4. Fixed on disk, the icon back to ok, and the result as a notification.
    offset = wait_for_log(log, "status: working", tray, after=offset)
    desktop.wait_for_bubble(timeout=120)
    desktop.screenshot("5-result-notified.png")
    done = desktop.wait_for_notification(lambda n: "installed and verified" in n.summary, timeout=120)
    assert done.summary == "torch 2.7.1+cu118 installed and verified"
    assert done.body.startswith("proj/.venv: verified")
    assert torch_version(env.root) == "2.7.1+cu118"
    wait_for_log(log, "status: ok", tray, after=offset)
    fixed_image = desktop.icon_image(icon, desktop.screenshot("6-fixed.png"))
    assert pixel_difference(ok_image, fixed_image) < 0.05

    # 5. Quit from the menu ends the process cleanly.
    open_menu(desktop, icon.rect.center)
    desktop.click_menu_item("Quit")
    assert tray.wait(20) == 0
    assert "Traceback" not in log.read_text()
    keep_screenshots(desktop, "tray-e2e")


def keep_screenshots(desktop: Desktop, name: str) -> None:
    """Copy the screenshots beside the test output (.cache/artifacts/), where CI and people find them."""
    target = Path(__file__).resolve().parents[2] / ".cache" / "artifacts" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(desktop.artifacts, target)
    print(f"screenshots kept in {target}")


def test_a_second_start_asks_the_running_tray_to_check_and_exits_0(
    desktop: Desktop, index: IndexServer, tmp_path: Path, td_dirs: dict[str, Path]
) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cu128"))
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(NEW_DRIVER))
    log = td_dirs["log"] / "tray.log"
    tray = start_tray(desktop, hw, env.root, index)
    offset = wait_for_log(log, "status: ok", tray)
    second = start_tray(desktop, hw, env.root, index)
    assert second.wait(30) == 0
    assert "already running; asked it to check now" in second.output()
    wait_for_log(log, "check (check-now)", tray, after=offset)
    assert len(desktop.tray_icon_windows()) == 1


def test_quit_during_a_reinstall_cancels_it_restores_the_environment_then_quits(
    desktop: Desktop, tmp_path: Path, td_dirs: dict[str, Path]
) -> None:
    root = tmp_path / "index"
    marker = tmp_path / "verifying"
    hang = f"import pathlib, time\npathlib.Path({str(marker)!r}).write_text('x')\ntime.sleep(120)\n"
    publish(root, family("cu118", files={"torch/__init__.py": hang}), "cu118")
    env = make_venv(tmp_path / "proj" / ".venv")
    install_standins(env, family("cu128"))
    before = tree_digest(env.root)
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(OLD_DRIVER))  # broken from the start
    log = td_dirs["log"] / "tray.log"
    with IndexServer(root) as index:
        tray = start_tray(desktop, hw, env.root, index)
        wait_for_log(log, "status: broken", tray)
        icon = desktop.wait_for_tray_icon()
        first = desktop.wait_for_notification(lambda n: "broken" in n.summary)
        assert (
            first.summary == "1 environment is broken on this machine"
        )  # the first start: only what is broken
        open_menu(desktop, icon.rect.center)
        desktop.hover_menu_item("proj/.venv: broken")
        reinstall = next(i for i in desktop.menu_items() if i.name.startswith("Reinstall torch 2.7.1+cu118"))
        desktop.click_menu_item(reinstall.name)
        deadline = time.monotonic() + 60
        while not marker.exists():  # installed, now verifying: the middle of the fix
            assert time.monotonic() < deadline and tray.process.poll() is None, tray.output()
            time.sleep(0.05)
        open_menu(desktop, icon.rect.center)
        desktop.screenshot("working-menu.png")
        desktop.click_menu_item("Cancel and quit")
        assert tray.wait(60) == 0
    assert tree_digest(env.root) == before  # restored byte for byte before the tray went away
    text = log.read_text()
    assert "notification: Reinstall cancelled — proj/.venv was restored exactly as it was." in text
    assert "Traceback" not in text


def test_on_the_menu_less_xorg_backend_the_tray_says_so_once_and_keeps_checking(
    desktop: Desktop, index: IndexServer, tmp_path: Path, td_dirs: dict[str, Path]
) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cu128"))
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(NEW_DRIVER))
    log = td_dirs["log"] / "tray.log"
    (td_dirs["config"] / "config.toml").write_text("interval = 900\n")  # no --interval: config.toml's
    tray = start_tray(desktop, hw, env.root, index, backend="xorg", interval=None)
    wait_for_log(log, "status: ok", tray)
    assert desktop.wait_for_tray_icon().rect.width > 1  # a real icon, docked
    note = desktop.wait_for_notification(lambda n: "no tray menu" in n.summary)
    assert note.summary == "torchdoctor has no tray menu here"
    assert "linux-tray" in note.body
    text = log.read_text()
    assert text.count("WARNING torchdoctor.tray: This desktop offers torchdoctor no tray menu") == 1
    assert text.count("notification: torchdoctor has no tray menu here") == 1
    assert "tray starting (backend xorg, check every 900 s)" in text
