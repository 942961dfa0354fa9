"""Autostart: the pure parts, Windows against a fake registry, Linux for real in a temporary XDG folder."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fake_winreg import REG_BINARY, REG_SZ, FakeWinreg
from torchdoctor.agent.autostart import (
    APPROVED_ENABLED,
    AUTOSTART_NAME,
    RUN_KEY,
    STARTUP_APPROVED_KEY,
    WINDOWS_DISABLED_REASON,
    AutostartError,
    Mechanism,
    RegistryRunAutostart,
    XdgAutostart,
    approval_from_data,
    autostart_status,
    backend_for,
    desktop_disabled_reason,
    disable_autostart,
    enable_autostart,
    escape_string_value,
    exec_command_line,
    launch_argv,
    parse_desktop_entry,
    quote_exec_arg,
    render_desktop_entry,
    split_exec,
    unescape_string_value,
    windows_command_line,
    windows_program,
    xdg_autostart_folder,
)

# --- the command line ------------------------------------------------------------------------------

VENV_PYTHON = r"C:\Users\Ana Lima\proj\.venv\Scripts\python.exe"
VENV_PYTHONW = r"C:\Users\Ana Lima\proj\.venv\Scripts\pythonw.exe"


def test_windows_uses_pythonw_beside_the_interpreter_so_no_console_opens() -> None:
    argv, notes = launch_argv(VENV_PYTHON, frozen=False, windows=True, exists={VENV_PYTHONW}.__contains__)
    assert argv == (VENV_PYTHONW, "-m", "torchdoctor.agent", "tray")
    assert notes == ()
    assert windows_command_line(argv) == f'"{VENV_PYTHONW}" -m torchdoctor.agent tray'


def test_windows_without_pythonw_falls_back_to_the_interpreter_and_says_so() -> None:
    argv, notes = launch_argv(VENV_PYTHON, frozen=False, windows=True, exists=lambda _: False)
    assert argv[0] == VENV_PYTHON
    assert len(notes) == 1
    assert "pythonw.exe" in notes[0]
    assert "console" in notes[0]


def test_a_frozen_build_runs_its_windowed_twin_on_windows_else_itself() -> None:
    exe = r"C:\Program Files\torchdoctor\torchdoctor.exe"
    twin = r"C:\Program Files\torchdoctor\torchdoctorw.exe"
    for running in (exe, twin):
        argv, _ = launch_argv(running, frozen=True, windows=True, exists=lambda p: p == twin)
        assert windows_command_line(argv) == f'"{twin}" tray'
    argv, _ = launch_argv(exe, frozen=True, windows=True, exists=lambda _: False)
    assert windows_command_line(argv) == f'"{exe}" tray'
    argv, _ = launch_argv("/opt/torchdoctor/torchdoctor", frozen=True, windows=False, exists=lambda _: True)
    assert argv == ("/opt/torchdoctor/torchdoctor", "tray")


def test_linux_runs_the_agent_module_with_the_interpreter_as_given() -> None:
    # The venv's python is a symlink; resolving it would leave the venv.
    argv, notes = launch_argv(
        "/home/ana/.venv/bin/python", frozen=False, windows=False, exists=lambda _: False
    )
    assert argv == ("/home/ana/.venv/bin/python", "-m", "torchdoctor.agent", "tray")
    assert notes == ()


@pytest.mark.parametrize(
    ("command", "program"),
    [
        (r'"C:\Program Files\x\pythonw.exe" -m torchdoctor.agent tray', r"C:\Program Files\x\pythonw.exe"),
        (r"C:\x\torchdoctor.exe tray", r"C:\x\torchdoctor.exe"),
        ("  torchdoctor  ", "torchdoctor"),
        ('"unterminated', None),
        ("", None),
    ],
)
def test_the_program_of_a_run_value(command: str, program: str | None) -> None:
    assert windows_program(command) == program


# --- StartupApproved -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "approved"),
    [
        (b"\x02" + bytes(11), True),
        (b"\x06" + bytes(11), True),
        (b"\x03\x00\x00\x00" + b"\x9a\x3c\x1e\x50\x11\x2b\xda\x01", False),  # with the FILETIME of the change
        (b"\x07" + bytes(11), False),
        (b"\x02\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08", True),
        (b"", None),
        (None, None),
        ("03000000", None),  # a string is not what Task Manager writes: no opinion
    ],
)
def test_startup_approved_bytes(data: object, approved: bool | None) -> None:
    assert approval_from_data(data) is approved


def test_the_enabled_flag_we_write_is_what_task_manager_writes() -> None:
    assert bytes.fromhex("020000000000000000000000") == APPROVED_ENABLED
    assert approval_from_data(APPROVED_ENABLED) is True


# --- Desktop Entry quoting and parsing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("-m", "-m"),
        ("torchdoctor.agent", "torchdoctor.agent"),
        ("/home/ana/my venv/bin/python", '"/home/ana/my venv/bin/python"'),
        ('say "hi"', r'"say \"hi\""'),
        ("$HOME", r'"\$HOME"'),
        ("a`b", r'"a\`b"'),
        ("back\\slash", r'"back\\slash"'),
        ("it's", '"it\'s"'),
        ("", '""'),
        ("50%", "50%%"),
        ("50% off", '"50%% off"'),
    ],
)
def test_exec_arguments_are_quoted_per_the_spec(arg: str, quoted: str) -> None:
    assert quote_exec_arg(arg) == quoted


def test_the_program_is_always_quoted() -> None:
    assert exec_command_line(["/usr/bin/python3", "-m", "torchdoctor.agent", "tray"]) == (
        '"/usr/bin/python3" -m torchdoctor.agent tray'
    )


def test_a_dollar_in_a_quoted_argument_reaches_the_file_as_the_spec_spells_it() -> None:
    """Spec: "a literal dollar sign in a quoted argument in a desktop entry file is unambiguously
    represented with ("\\\\$")", and a literal backslash with four of them."""
    line = render_desktop_entry(["/opt/a b/python", "$x", "c\\d"], icon=None)
    assert r'Exec="/opt/a b/python" "\\$x" "c\\\\d"' in line.splitlines()


@pytest.mark.parametrize(
    "argv",
    [
        ["/home/ana/my venv/bin/python", "-m", "torchdoctor.agent", "tray"],
        ['/opt/q"uote/py', "$HOME", "`x`", "back\\slash", "it's", "", "50%", "tab\there", "new\nline"],
        ["/p", "%%", "%u", "~", "a;b", "(x)", "#c", "*?", "<>|&"],
    ],
)
def test_exec_round_trips_through_the_file(argv: list[str]) -> None:
    entry = parse_desktop_entry(render_desktop_entry(argv, icon=None))
    assert split_exec(entry["Exec"]) == argv


@given(
    st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12), min_size=1, max_size=5)
)
def test_any_argv_round_trips(argv: list[str]) -> None:
    """Whatever the arguments, writing then reading the Exec line gives them back."""
    line = render_desktop_entry(argv, icon=None).split("\n")[4]
    assert line.startswith("Exec=")
    assert "\n" not in line
    assert split_exec(unescape_string_value(line.removeprefix("Exec="))) == argv


@pytest.mark.parametrize(
    "argv", [["/opt/my venv/python", "-m", "torchdoctor.agent", "tray"], ["/p", 'a"b', "c\\d", "it's"]]
)
def test_shlex_reads_our_exec_lines_the_same(argv: list[str]) -> None:
    # The spec's quoting is the POSIX shell's double quotes; shlex is an independent reader (it
    # leaves `\$` and a backslashed backtick as written, so those are left to the GLib test below).
    assert shlex.split(exec_command_line(argv)) == argv


def test_an_unterminated_quote_is_refused() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        split_exec('"/usr/bin/python -m x')


def test_string_escapes_round_trip() -> None:
    for text in ["a\\b", "new\nline", "tab\t", "cr\r", "\\n literally", "", " leading space"]:
        assert unescape_string_value(escape_string_value(text)) == text
    assert unescape_string_value(r"\sleading") == " leading"
    assert unescape_string_value(r"keep \q") == r"keep \q"


def test_parsing_reads_only_the_desktop_entry_group() -> None:
    text = (
        "# comment\n[Desktop Entry]\nName = torchdoctor\nExec=/bin/true\nHidden=false\n"
        "[Desktop Action x]\nExec=/bin/false\nHidden=true\n"
    )
    entry = parse_desktop_entry(text)
    assert entry == {"Name": "torchdoctor", "Exec": "/bin/true", "Hidden": "false"}
    assert desktop_disabled_reason(entry) is None


@pytest.mark.parametrize(
    ("keys", "disabled"),
    [
        ({"Hidden": "true"}, True),
        ({"Hidden": "True"}, True),
        ({"X-GNOME-Autostart-enabled": "false"}, True),
        ({"X-GNOME-Autostart-enabled": "0"}, True),
        ({"X-GNOME-Autostart-enabled": "true", "Hidden": "false"}, False),
        ({}, False),
    ],
)
def test_what_counts_as_turned_off_by_the_user(keys: dict[str, str], disabled: bool) -> None:
    assert (desktop_disabled_reason(keys) is not None) is disabled


# --- Windows, against the fake registry ------------------------------------------------------------


def windows(registry: FakeWinreg, *, existing: set[str] | None = None) -> RegistryRunAutostart:
    files = {VENV_PYTHON, VENV_PYTHONW} if existing is None else existing
    return RegistryRunAutostart(registry, VENV_PYTHON, frozen=False, exists=files.__contains__)


EXPECTED_WINDOWS = f'"{VENV_PYTHONW}" -m torchdoctor.agent tray'


def test_windows_status_with_nothing_registered() -> None:
    registry = FakeWinreg()
    status = autostart_status(windows(registry))
    assert status.enabled is False
    assert status.command is None
    assert status.disabled_by_user is False
    assert status.stale is False
    assert status.mechanism is Mechanism.REGISTRY_RUN
    assert str(status.mechanism) == "registry-run"
    assert status.location == rf"HKCU\Software\Microsoft\Windows\CurrentVersion\Run\{AUTOSTART_NAME}"
    assert status.expected_command == EXPECTED_WINDOWS
    assert registry.open_handles == 0


def test_windows_enable_writes_the_run_value_and_status_reads_it_back() -> None:
    registry = FakeWinreg()
    status = enable_autostart(windows(registry))
    assert registry.get(RUN_KEY, "torchdoctor") == (EXPECTED_WINDOWS, REG_SZ)
    assert status.enabled is True
    assert status.command == EXPECTED_WINDOWS
    assert status.notes == ()
    # Not created when there is nothing to clear.
    assert registry.get(STARTUP_APPROVED_KEY, "torchdoctor") is None
    assert registry.open_handles == 0


def test_windows_off_in_task_manager_is_reported_and_enable_turns_it_back_on() -> None:
    registry = FakeWinreg()
    backend = windows(registry)
    enable_autostart(backend)
    # What Task Manager writes when the user disables the entry: state 3 and the time of the change.
    registry.set_value(
        STARTUP_APPROVED_KEY, "TorchDoctor", bytes.fromhex("030000009a3c1e50112bda01"), REG_BINARY
    )

    status = autostart_status(backend)
    assert status.enabled is False
    assert status.disabled_by_user is True
    assert status.command == EXPECTED_WINDOWS
    assert status.notes[0] == WINDOWS_DISABLED_REASON

    status = enable_autostart(backend)
    assert registry.get(STARTUP_APPROVED_KEY, "torchdoctor") == (b"\x02" + bytes(11), REG_BINARY)
    assert status.enabled is True
    assert status.disabled_by_user is False
    assert registry.open_handles == 0


def test_windows_an_enabled_approval_flag_is_left_as_it_is() -> None:
    registry = FakeWinreg()
    flag = bytes.fromhex("060000000000000000000000")
    registry.set_value(STARTUP_APPROVED_KEY, "torchdoctor", flag, REG_BINARY)
    enable_autostart(windows(registry))
    assert registry.get(STARTUP_APPROVED_KEY, "torchdoctor") == (flag, REG_BINARY)


def test_windows_disable_removes_the_value_and_the_old_flag_and_is_idempotent() -> None:
    registry = FakeWinreg()
    backend = windows(registry)
    enable_autostart(backend)
    registry.set_value(STARTUP_APPROVED_KEY, "torchdoctor", b"\x03" + bytes(11), REG_BINARY)
    registry.set_value(RUN_KEY, "OneDrive", '"C:\\OneDrive.exe" /background', REG_SZ)

    status = disable_autostart(backend)
    assert status.enabled is False
    assert status.command is None
    assert registry.get(RUN_KEY, "torchdoctor") is None
    assert registry.get(STARTUP_APPROVED_KEY, "torchdoctor") is None
    assert registry.get(RUN_KEY, "OneDrive") is not None  # only ours

    assert disable_autostart(backend) == status
    assert disable_autostart(windows(FakeWinreg())).enabled is False  # no keys at all
    assert registry.open_handles == 0


def test_windows_enable_twice_is_the_same_as_once() -> None:
    registry = FakeWinreg()
    first = enable_autostart(windows(registry))
    assert enable_autostart(windows(registry)) == first
    assert len(registry.keys[(registry.HKEY_CURRENT_USER, RUN_KEY.casefold())]) == 1


def test_windows_a_run_value_pointing_at_a_deleted_venv_is_stale() -> None:
    registry = FakeWinreg()
    gone = r'"C:\Users\ana\old\.venv\Scripts\pythonw.exe" -m torchdoctor.agent tray'
    registry.set_value(RUN_KEY, "torchdoctor", gone, REG_SZ)
    status = autostart_status(windows(registry))
    assert status.enabled is True  # registered and not turned off, but it would start nothing
    assert status.stale is True
    assert status.command == gone
    assert any("no longer exists" in note for note in status.notes)

    status = enable_autostart(windows(registry))
    assert status.stale is False
    assert status.command == EXPECTED_WINDOWS


def test_windows_a_different_but_existing_command_is_not_stale_but_noted() -> None:
    registry = FakeWinreg()
    other = r'"C:\Other\pythonw.exe" -m torchdoctor.agent tray'
    registry.set_value(RUN_KEY, "torchdoctor", other, REG_SZ)
    status = autostart_status(windows(registry, existing={VENV_PYTHONW, r"C:\Other\pythonw.exe"}))
    assert status.stale is False
    assert any("differs" in note for note in status.notes)
    # Windows paths ignore case: the same command in other case is the same.
    registry.set_value(RUN_KEY, "torchdoctor", EXPECTED_WINDOWS.upper(), REG_SZ)
    status = autostart_status(windows(registry, existing={VENV_PYTHONW.upper(), VENV_PYTHONW}))
    assert status.notes == ()


def test_windows_a_non_string_run_value_is_off_with_a_note() -> None:
    registry = FakeWinreg()
    registry.set_value(RUN_KEY, "torchdoctor", b"\x00\x01", REG_BINARY)
    status = autostart_status(windows(registry))
    assert status.enabled is False
    assert status.command is None
    assert any("not a string" in note for note in status.notes)


def test_windows_an_unreadable_run_key_is_a_note_not_an_error() -> None:
    registry = FakeWinreg()
    registry.deny(RUN_KEY)
    status = autostart_status(windows(registry))
    assert status.enabled is False
    assert any("Access is denied" in note for note in status.notes)


def test_windows_a_denied_write_is_an_autostart_error_with_a_hint() -> None:
    registry = FakeWinreg()
    registry.set_value(RUN_KEY, "other", "x", REG_SZ)
    registry.make_read_only(RUN_KEY)
    with pytest.raises(
        AutostartError, match=r"could not write the registry value .*Access is denied"
    ) as info:
        enable_autostart(windows(registry))
    assert info.value.exit_code == 1
    assert info.value.hint
    with pytest.raises(AutostartError, match="could not remove"):
        disable_autostart(windows(registry))
    assert registry.open_handles == 0


def test_windows_the_fallback_note_appears_in_status() -> None:
    status = autostart_status(windows(FakeWinreg(), existing={VENV_PYTHON}))
    assert status.expected_command == f'"{VENV_PYTHON}" -m torchdoctor.agent tray'
    assert any("pythonw.exe" in note for note in status.notes)


def test_the_platform_is_chosen_in_one_place_and_can_be_overridden() -> None:
    registry = FakeWinreg()
    backend = backend_for("win32", registry=registry)
    assert isinstance(backend, RegistryRunAutostart)
    assert backend.registry is registry
    assert backend.executable == sys.executable
    assert isinstance(backend_for("linux"), XdgAutostart)
    with pytest.raises(AutostartError, match="macOS"):
        backend_for("darwin")
    if sys.platform != "win32":
        with pytest.raises(AutostartError, match="only on Windows"):
            backend_for("win32")


# --- Linux, for real in a temporary XDG folder -----------------------------------------------------


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME and XDG_CONFIG_HOME in tmp_path: the real user's autostart folder is never touched."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "autostart"


def linux() -> XdgAutostart:
    backend = backend_for("linux")
    assert isinstance(backend, XdgAutostart)
    return backend


def test_the_xdg_folder_follows_the_spec(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert xdg_autostart_folder({}, home) == home / ".config" / "autostart"
    assert xdg_autostart_folder({"XDG_CONFIG_HOME": ""}, home) == home / ".config" / "autostart"
    assert xdg_autostart_folder({"XDG_CONFIG_HOME": "relative/cfg"}, home) == home / ".config" / "autostart"
    assert xdg_autostart_folder({"XDG_CONFIG_HOME": "/c"}, home) == Path("/c/autostart")


def test_linux_enable_writes_a_valid_entry_with_an_absolute_existing_program(xdg: Path) -> None:
    status = enable_autostart(linux())
    path = xdg / "torchdoctor.desktop"
    assert status.location == str(path)
    assert status.enabled is True
    assert status.stale is False
    assert status.notes == ()
    assert status.mechanism == "xdg-autostart"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("[Desktop Entry]\n")
    entry = parse_desktop_entry(text)
    assert entry["Type"] == "Application"
    assert entry["Name"] == "torchdoctor"
    assert entry["Comment"]
    assert entry["Terminal"] == "false"
    assert entry["X-GNOME-Autostart-enabled"] == "true"
    program, *args = split_exec(entry["Exec"])
    assert Path(program).is_absolute()
    assert Path(program).exists()
    assert args == ["-m", "torchdoctor.agent", "tray"]
    assert entry["Exec"] == status.command == status.expected_command
    icon = Path(entry["Icon"])
    assert icon.is_absolute()
    assert icon.is_file()
    assert icon.name == "torchdoctor.png"
    # Written atomically: no temporary file is left beside it.
    assert sorted(p.name for p in xdg.iterdir()) == ["torchdoctor.desktop"]


def test_linux_the_exec_line_runs_torchdoctor(xdg: Path) -> None:
    enable_autostart(linux())
    entry = parse_desktop_entry((xdg / "torchdoctor.desktop").read_text(encoding="utf-8"))
    argv = shlex.split(entry["Exec"])
    assert argv[-1] == "tray"
    result = subprocess.run(
        [*argv[:-1], "--version"], capture_output=True, text=True, timeout=60, check=False, env=os.environ
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("torchdoctor ")


@pytest.mark.skipif(shutil.which("gio") is None, reason="needs GLib's `gio` tool")
def test_glib_launches_our_entry_with_the_arguments_we_meant(tmp_path: Path) -> None:
    """GLib, which GNOME uses to start autostart entries, undoes our quoting to the same argv."""
    out = tmp_path / "argv.txt"
    args = ["a b", "c$d", "back\\slash", 'q"uote', "tick`", "50%", "semi;colon", "", "it's", "%u"]
    script = f'for a in "$@"; do printf "[%s]\\n" "$a"; done > {shlex.quote(str(out))}.tmp && mv {shlex.quote(str(out))}.tmp {shlex.quote(str(out))}'
    entry = tmp_path / "probe.desktop"
    entry.write_text(
        render_desktop_entry(["/bin/sh", "-c", script, "sh", *args], icon=None), encoding="utf-8"
    )
    result = subprocess.run(
        ["gio", "launch", str(entry)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 10
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.read_text(encoding="utf-8") == "".join(f"[{a}]\n" for a in args)


def test_linux_hidden_or_gnome_disabled_is_off_by_the_user_and_enable_clears_it(xdg: Path) -> None:
    enable_autostart(linux())
    path = xdg / "torchdoctor.desktop"
    original = path.read_text(encoding="utf-8")
    for extra in ("Hidden=true\n", "X-GNOME-Autostart-enabled=false\n"):
        path.write_text(original + extra, encoding="utf-8")
        status = autostart_status(linux())
        assert status.enabled is False
        assert status.disabled_by_user is True
        assert extra.strip() in status.notes[0]
        assert status.command is not None

    status = enable_autostart(linux())
    assert status.enabled is True
    assert status.disabled_by_user is False
    assert "Hidden" not in path.read_text(encoding="utf-8")


def test_linux_disable_removes_the_file_and_is_idempotent(xdg: Path) -> None:
    enable_autostart(linux())
    other = xdg / "someone-else.desktop"
    other.write_text("[Desktop Entry]\nExec=/bin/true\n", encoding="utf-8")
    status = disable_autostart(linux())
    assert status.enabled is False
    assert status.command is None
    assert not (xdg / "torchdoctor.desktop").exists()
    assert other.exists()
    assert disable_autostart(linux()) == status


def test_linux_enable_rewrites_a_stale_entry(xdg: Path, tmp_path: Path) -> None:
    xdg.mkdir(parents=True)
    path = xdg / "torchdoctor.desktop"
    gone = tmp_path / "deleted venv" / "bin" / "python"
    path.write_text(
        render_desktop_entry([str(gone), "-m", "torchdoctor.agent", "tray"], icon=None), encoding="utf-8"
    )
    status = autostart_status(linux())
    assert status.enabled is True
    assert status.stale is True
    assert status.command == f'"{gone}" -m torchdoctor.agent tray'
    assert status.command != status.expected_command
    assert any("no longer exists" in note for note in status.notes)

    status = enable_autostart(linux())
    assert status.stale is False
    assert status.command == status.expected_command
    assert str(gone) not in path.read_text(encoding="utf-8")


def test_linux_a_bare_program_name_is_noted(xdg: Path) -> None:
    xdg.mkdir(parents=True)
    (xdg / "torchdoctor.desktop").write_text("[Desktop Entry]\nExec=sh -c true\n", encoding="utf-8")
    status = autostart_status(linux())
    assert status.stale is False  # sh is on PATH here
    assert any("PATH" in note for note in status.notes)
    (xdg / "torchdoctor.desktop").write_text(
        "[Desktop Entry]\nExec=no-such-program-td tray\n", encoding="utf-8"
    )
    assert autostart_status(linux()).stale is True


def test_linux_a_broken_entry_is_described_not_raised(xdg: Path) -> None:
    xdg.mkdir(parents=True)
    path = xdg / "torchdoctor.desktop"
    path.write_text("[Desktop Entry]\nName=torchdoctor\n", encoding="utf-8")
    status = autostart_status(linux())
    assert status.enabled is False
    assert any("no Exec line" in note for note in status.notes)
    path.write_text('[Desktop Entry]\nExec="/unterminated\n', encoding="utf-8")
    status = autostart_status(linux())
    assert status.stale is True
    assert any("cannot be read" in note for note in status.notes)
    path.write_bytes(b"[Desktop Entry]\nExec=\xff\xfe\n")
    status = autostart_status(linux())
    assert status.enabled is False
    assert any("not UTF-8" in note for note in status.notes)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_linux_a_read_only_autostart_folder_is_a_readable_error(xdg: Path) -> None:
    xdg.mkdir(parents=True)
    xdg.chmod(0o555)
    try:
        with pytest.raises(
            AutostartError, match=r"could not write .*torchdoctor\.desktop: Permission denied"
        ) as info:
            enable_autostart(linux())
        assert info.value.exit_code == 1
        assert str(xdg) in (info.value.hint or "")
        assert list(xdg.iterdir()) == []
    finally:
        xdg.chmod(0o755)


def test_linux_a_file_where_the_folder_should_be_is_a_readable_error(xdg: Path) -> None:
    # Fails for root too, unlike a read-only folder.
    xdg.parent.mkdir(parents=True)
    xdg.write_text("not a folder", encoding="utf-8")
    with pytest.raises(AutostartError, match="could not write") as info:
        enable_autostart(linux())
    assert info.value.hint


def test_linux_a_failed_rename_leaves_the_old_entry_and_no_temporary_file(
    xdg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enable_autostart(linux())
    path = xdg / "torchdoctor.desktop"
    before = path.read_text(encoding="utf-8")

    def refuse(self: Path, target: Path) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(AutostartError, match="Permission denied"):
        enable_autostart(linux())
    assert path.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in xdg.iterdir()) == ["torchdoctor.desktop"]


def test_linux_an_icon_that_is_not_a_real_file_is_left_out(xdg: Path) -> None:
    backend = XdgAutostart(xdg, sys.executable, frozen=False, icon=lambda: None)
    enable_autostart(backend)
    assert "Icon" not in parse_desktop_entry((xdg / "torchdoctor.desktop").read_text(encoding="utf-8"))


def test_status_is_cheap_it_starts_no_process(xdg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    enable_autostart(linux())

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("autostart_status started a process")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    monkeypatch.setattr(os, "posix_spawn", no_process, raising=False)
    assert autostart_status(linux()).enabled is True
    assert autostart_status(windows(FakeWinreg())).enabled is False


def test_an_empty_interpreter_path_cannot_be_registered(xdg: Path) -> None:
    with pytest.raises(AutostartError, match=r"sys\.executable is empty"):
        enable_autostart(XdgAutostart(xdg, "", frozen=False))
    with pytest.raises(AutostartError, match=r"sys\.executable is empty"):
        enable_autostart(RegistryRunAutostart(FakeWinreg(), "", frozen=False))
