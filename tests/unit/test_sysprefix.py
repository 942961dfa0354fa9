"""Which folders `fix` refuses as the system's or a home folder, on both platforms' path rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchdoctor.service.envs.sysprefix import (
    SystemFolderError,
    ensure_not_system_folder,
    system_folder_reason,
)
from torchdoctor.service.models import Platform

POSIX_HOME = "/home/ana"
WINDOWS_HOME = r"C:\Users\ana"

REFUSED_POSIX = [
    ("/", "the root of the file system"),
    ("//", "the root of the file system"),
    ("/usr", "a system folder"),
    ("/usr/", "a system folder"),
    ("/usr/local", "a system folder"),
    ("/usr/local/../local", "a system folder"),
    ("/bin", "a system folder"),
    ("/etc", "a system folder"),
    ("/opt", "a system folder"),
    ("/var", "a system folder"),
    ("/root", "a system folder"),
    ("/tmp", "a system folder"),  # noqa: S108 - a name to refuse
    ("/home", "a folder that holds home folders"),
    ("/home/ana", "your home folder"),
    ("/home/ana/", "your home folder"),
    ("/home/bob", "a home folder"),
    ("/Users/bob", "a home folder"),
]
ALLOWED_POSIX = [
    "/opt/conda",
    "/opt/venv",
    "/venv",
    "/usr/local/python3.12-env",
    "/home/ana/.venv",
    "/home/ana/proj/.venv",
    "/home/bob/venvs/torch",
    "/tmp/td-env",  # noqa: S108 - a name to judge
    "/usrx",
]
REFUSED_WINDOWS = [
    ("C:\\", "the root of a drive"),
    ("C:", "the root of a drive"),
    ("d:/", "the root of a drive"),
    (r"\\server\share", "the root of a network share"),
    (r"C:\Windows", "the Windows folder"),
    (r"c:\windows\System32", "the Windows folder"),
    (r"C:\Windows\py.exe\..", "the Windows folder"),
    (r"C:\Program Files", "a system folder"),
    (r"C:\Program Files (x86)\\", "a system folder"),
    (r"C:\ProgramData", "a system folder"),
    (r"C:\Users", "a folder that holds home folders"),
    (r"C:\Users\Public", "a system folder"),
    (r"c:\users\ANA", "your home folder"),
    (r"C:\Users\bob", "a home folder"),
    (r"C:\Users\ana\AppData\Local", "a folder of your profile"),
    (r"C:\Users\ana\AppData\Local\Programs", "a folder of your profile"),
]
ALLOWED_WINDOWS = [
    r"C:\Program Files\Python312",
    r"C:\Users\ana\AppData\Local\Programs\Python\Python312",
    r"C:\Users\ana\proj\.venv",
    r"C:\ProgramData\miniconda3",
    r"D:\envs\torch",
    r"C:\Windowsx",
]


@pytest.mark.parametrize(("path", "reason"), REFUSED_POSIX)
def test_posix_system_folders_are_refused(path: str, reason: str) -> None:
    assert system_folder_reason(path, platform=Platform.LINUX, home=POSIX_HOME) == reason


@pytest.mark.parametrize("path", ALLOWED_POSIX)
def test_posix_environments_are_allowed(path: str) -> None:
    assert system_folder_reason(path, platform=Platform.LINUX, home=POSIX_HOME) is None


@pytest.mark.parametrize(("path", "reason"), REFUSED_WINDOWS)
def test_windows_system_folders_are_refused(path: str, reason: str) -> None:
    assert system_folder_reason(path, platform=Platform.WINDOWS, home=WINDOWS_HOME) == reason


@pytest.mark.parametrize("path", ALLOWED_WINDOWS)
def test_windows_environments_are_allowed(path: str) -> None:
    assert system_folder_reason(path, platform=Platform.WINDOWS, home=WINDOWS_HOME) is None


def test_without_a_known_home_the_system_and_home_folders_are_still_refused() -> None:
    assert system_folder_reason("/home/ana", platform=Platform.LINUX, home=None) == "a home folder"
    assert system_folder_reason("/srv/ana", platform=Platform.LINUX, home=None) is None
    assert system_folder_reason("/usr", platform=Platform.LINUX, home=None) == "a system folder"


def test_a_link_to_a_system_folder_is_refused_as_what_it_points_to(tmp_path: Path) -> None:
    link = tmp_path / "looks-like-a-venv"
    link.symlink_to("/usr")
    with pytest.raises(SystemFolderError) as info:
        ensure_not_system_folder(link, platform=Platform.LINUX)
    assert str(info.value) == (
        f"torchdoctor will not change {link} (which is /usr): it is a system folder, not a Python environment"
    )
    assert info.value.exit_code == 2 and info.value.code == "system-folder"


def test_the_home_folder_itself_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SystemFolderError, match="it is your home folder"):
        ensure_not_system_folder(tmp_path, platform=Platform.LINUX)
    ensure_not_system_folder(tmp_path / ".venv", platform=Platform.LINUX)
