"""The NSIS installer script compiles with the real makensis, and writes the Run value autostart writes."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path, PureWindowsPath

import freeze
import installer
import pytest

from tests.packaging.conftest import require
from torchdoctor.agent.autostart import (
    AUTOSTART_NAME,
    FROZEN_WINDOWED_PROGRAM,
    RUN_KEY,
    STARTUP_APPROVED_KEY,
    launch_argv,
    windows_command_line,
)

DEFINES = installer.defines()
INSTDIR = r"C:\Users\Ana Lima\AppData\Local\Programs\torchdoctor"


def test_the_run_value_is_the_one_autostart_writes() -> None:
    assert DEFINES["RUN_KEY"] == RUN_KEY
    assert DEFINES["STARTUP_APPROVED_KEY"] == STARTUP_APPROVED_KEY
    assert DEFINES["RUN_VALUE"] == AUTOSTART_NAME
    installed = installer.expand(DEFINES["RUN_COMMAND"], {**DEFINES, "INSTDIR": INSTDIR})
    # `autostart enable` run from either program of the installed app (a path with a space in it).
    for program in (DEFINES["CLI_EXE"], DEFINES["WINDOWED_EXE"]):
        running = str(PureWindowsPath(INSTDIR) / program)
        argv, _ = launch_argv(running, frozen=True, windows=True, exists=lambda _: True)
        assert windows_command_line(argv) == installed


def test_the_installer_names_the_programs_the_spec_builds() -> None:
    assert DEFINES["WINDOWED_EXE"] == FROZEN_WINDOWED_PROGRAM == f"{freeze.WINDOWED_NAME}.exe"
    assert DEFINES["CLI_EXE"] == f"{freeze.APP_NAME}.exe"


def test_it_installs_per_user_without_elevation() -> None:
    text = installer.SCRIPT.read_text(encoding="utf-8")
    assert "RequestExecutionLevel user" in text
    assert 'InstallDir "$LOCALAPPDATA\\Programs\\${APP_NAME}"' in text
    # Only the user's own hive is written.
    assert "HKLM" not in text


def _section(text: str, title: str) -> str:
    start = (
        text.index(f"Section {title}") if f"Section {title}" in text else text.index(f"Section /o {title}")
    )
    return text[start : text.index("SectionEnd", start)]


def test_the_uninstaller_stops_the_tray_removes_the_run_value_and_keeps_data_unless_asked() -> None:
    text = installer.SCRIPT.read_text(encoding="utf-8")
    uninstall = _section(text, '"un.torchdoctor"')
    assert "!insertmacro StopTray" in uninstall
    assert uninstall.index("StopTray") < uninstall.index('RMDir /r "$INSTDIR"')
    assert 'DeleteRegValue HKCU "${RUN_KEY}" "${RUN_VALUE}"' in uninstall
    assert "DATA_DIR" not in uninstall
    # Logs and settings go only with the box ticked; `/o` leaves it unticked.
    assert 'Section /o "un.Remove logs and settings"' in text
    assert 'RMDir /r "${DATA_DIR}"' in _section(text, '"un.Remove logs and settings"')
    assert installer.expand(installer.defines()["DATA_DIR"], {"LOCALAPPDATA": "L"}) == "L\\torchdoctor"
    autostart = _section(text, '"Start torchdoctor at login"')
    assert 'WriteRegStr HKCU "${RUN_KEY}" "${RUN_VALUE}" \'${RUN_COMMAND}\'' in autostart


@pytest.mark.packaging
def test_the_script_compiles_with_a_placeholder_app(tmp_path: Path) -> None:
    require(shutil.which("makensis") is not None, "makensis is not installed (Debian: nsis)")
    app = installer.placeholder_app(tmp_path / "app")
    out = installer.compile_installer(app, tmp_path / "torchdoctor-test-setup.exe", freeze.project_version())
    data = out.read_bytes()
    # A Windows program: the DOS header, then the PE header where it points.
    assert data[:2] == b"MZ"
    pe = int.from_bytes(data[0x3C:0x40], "little")
    assert data[pe : pe + 4] == b"PE\0\0"


@pytest.mark.packaging
def test_a_script_error_is_reported_with_makensis_own_words(tmp_path: Path) -> None:
    require(shutil.which("makensis") is not None, "makensis is not installed (Debian: nsis)")
    # The payload folder does not exist: `File /r` finds nothing, which -WX makes an error.
    with pytest.raises(installer.InstallerError, match="makensis exited"):
        installer.compile_installer(tmp_path / "missing", tmp_path / "torchdoctor-test-setup.exe", "0.1.0")


def test_versions_become_what_makensis_accepts() -> None:
    assert installer.nsis_version("0.1.0") == "0.1.0"
    assert installer.nsis_version("1.2") == "1.2.0"
    assert installer.nsis_version("2.0.1.dev3+g1234") == "2.0.1"
    assert freeze.windows_version_tuple("0.1.0") == (0, 1, 0, 0)
    assert freeze.windows_version_tuple("1.2.3.4.5") == (1, 2, 3, 4)


def test_hidden_imports_name_every_command_and_the_os_backends() -> None:
    from torchdoctor.agent.cli import COMMANDS, command_module

    for platform in ("win32", "linux"):
        names = freeze.hidden_imports(platform)
        assert {f"torchdoctor.agent.commands.{command_module(c)}" for c in COMMANDS} <= set(names)
    assert "pystray._win32" in freeze.hidden_imports("win32")
    assert "pystray._appindicator" in freeze.hidden_imports("linux")
    # The bench scripts run in the target environment: data files, never modules of the app.
    assert not [n for n in freeze.our_modules() if ".bench.scripts" in n]
    assert sys.modules.get("freeze") is freeze


def test_the_winget_manifests_fill_into_valid_yaml_that_agrees_with_the_installer(tmp_path: Path) -> None:
    import winget
    import yaml

    setup = tmp_path / "torchdoctor-0.1.0-setup.exe"
    setup.write_bytes(b"MZ stand-in installer")
    url = "https://example.org/torchdoctor-0.1.0-setup.exe"
    written = winget.write_manifests(tmp_path / "m", version="0.1.0", url=url, sha256=winget.sha256_of(setup))
    docs = {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in written}
    assert len(docs) == 3
    assert {d["ManifestType"] for d in docs.values()} == {"version", "installer", "defaultLocale"}
    assert {d["PackageIdentifier"] for d in docs.values()} == {"torchdoctor.torchdoctor"}
    assert {d["PackageVersion"] for d in docs.values()} == {"0.1.0"}
    (entry,) = docs["torchdoctor.installer.yaml"]["Installers"]
    assert entry["InstallerUrl"] == url
    assert entry["InstallerSha256"] == hashlib.sha256(setup.read_bytes()).hexdigest().upper()
    # The installer is per-user (RequestExecutionLevel user), and winget must be told so.
    assert docs["torchdoctor.installer.yaml"]["Scope"] == "user"
    assert docs["torchdoctor.installer.yaml"]["InstallerType"] == "nullsoft"
    assert "{{" not in "".join(p.read_text(encoding="utf-8") for p in written)
