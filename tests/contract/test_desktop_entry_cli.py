"""`torchdoctor install-desktop-entry` through the real CLI, into a data home under tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from torchdoctor.agent.autostart import parse_desktop_entry, split_exec
from torchdoctor.agent.desktop_entry import (
    ICON_SIZES,
    data_home,
    install_desktop_entry,
    render_application_entry,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="desktop entries are Linux")


def run_cli(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "XDG_DATA_HOME"} | environ
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", "install-desktop-entry", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env | {"NO_COLOR": "1"},
    )


def test_it_writes_the_entry_and_every_icon_size_under_xdg_data_home(tmp_path: Path) -> None:
    base = tmp_path / "data"
    proc = run_cli({"XDG_DATA_HOME": str(base), "HOME": str(tmp_path / "home")}, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    entry_path = base / "applications" / "torchdoctor.desktop"
    assert doc["entry"] == str(entry_path)
    entry = parse_desktop_entry(entry_path.read_text(encoding="utf-8"))
    assert entry["Type"] == "Application" and entry["Icon"] == "torchdoctor"
    # The same command autostart registers: this interpreter running the agent's tray.
    assert split_exec(entry["Exec"]) == [sys.executable, "-m", "torchdoctor.agent", "tray"]
    assert doc["command"] == entry["Exec"]
    for size in ICON_SIZES:
        icon = base / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "torchdoctor.png"
        with Image.open(icon) as image:
            assert image.format == "PNG" and image.size == (size, size)
    assert not (tmp_path / "home").exists()  # nothing went to ~/.local/share


def test_twice_gives_the_same_files(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path / "home")}
    assert run_cli(env).returncode == 0
    first = {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()}
    proc = run_cli(env)
    assert proc.returncode == 0, proc.stderr
    assert "Application menu entry:" in proc.stdout
    assert {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()} == first


def test_a_relative_xdg_data_home_is_ignored_for_home_local_share(tmp_path: Path) -> None:
    assert data_home({"XDG_DATA_HOME": "relative/data"}, tmp_path) == tmp_path / ".local" / "share"
    assert data_home({}, tmp_path) == tmp_path / ".local" / "share"
    assert data_home({"XDG_DATA_HOME": str(tmp_path / "d")}, Path("/x")) == tmp_path / "d"
    proc = run_cli({"XDG_DATA_HOME": "relative/data", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / ".local" / "share" / "applications" / "torchdoctor.desktop").is_file()


def test_a_file_where_the_folder_should_be_is_one_line_and_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    proc = run_cli({"XDG_DATA_HOME": str(blocker), "HOME": str(tmp_path / "home")})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not write" in lines[0] and "hint:" in lines[0], proc.stderr


def test_a_frozen_app_runs_itself_and_paths_with_spaces_survive(tmp_path: Path) -> None:
    exe = "/opt/my apps/torchdoctor/torchdoctor"
    installed = install_desktop_entry(tmp_path, exe, frozen=True)
    entry = parse_desktop_entry(installed.entry.read_text(encoding="utf-8"))
    assert split_exec(entry["Exec"]) == [exe, "tray"]
    assert render_application_entry([exe, "tray"]).count("\n") == len(
        render_application_entry([exe, "tray"]).splitlines()
    )
