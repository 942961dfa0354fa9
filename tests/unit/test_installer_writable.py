"""pip never falls back to the user's site: an environment we cannot write is refused first, and
pip's long-path HINT survives into the one line the user sees."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath

import pytest

from torchdoctor.service.errors import EXIT_BAD_INPUT
from torchdoctor.service.install.installers import (
    NotWritableError,
    PipBackend,
    check_writable,
    failure_line,
    installer_environ,
)
from torchdoctor.service.models import EnvKind, Platform, PythonEnv


def _env(site: Path, *, platform: Platform = Platform.LINUX) -> PythonEnv:
    return PythonEnv(
        root=site.parent,
        python=site.parent / "bin" / "python",
        python_version="3.12.1",
        kind=EnvKind.VENV,
        has_pip=True,
        site_packages=(site,),
        platform=platform,
    )


def test_an_unwritable_site_packages_is_refused_with_exit_2() -> None:
    """The Windows case through the seam: C:\\Program Files refuses the probe file (ACLs)."""
    site = Path(PureWindowsPath(r"C:\Program Files\Python312\Lib\site-packages"))

    def denied(folder: Path) -> None:
        raise PermissionError(13, "Access is denied", str(folder))

    with pytest.raises(NotWritableError) as caught:
        check_writable(_env(site, platform=Platform.WINDOWS), probe=denied)
    assert caught.value.exit_code == EXIT_BAD_INPUT and caught.value.code == "not-writable"
    assert str(caught.value).startswith("cannot write here: ")
    assert "Access is denied" in str(caught.value)
    assert "never installs into the user's own site-packages" in (caught.value.hint or "")


def test_a_writable_site_packages_passes_and_leaves_nothing(tmp_path: Path) -> None:
    check_writable(_env(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A real read-only mount: even root cannot write it (chmod would not stop root)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a read-only tmpfs needs root on Linux")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30, check=False)


def test_a_real_read_only_site_packages_is_refused(read_only_folder: Path) -> None:
    with pytest.raises(NotWritableError, match="Read-only file system"):
        check_writable(_env(read_only_folder))


def test_pip_runs_without_the_user_site() -> None:
    assert installer_environ({"PATH": "/bin"})["PYTHONNOUSERSITE"] == "1"
    argv = PipBackend(host_python="/host/python").pip_argv(_env(Path("/e/lib/site-packages")))
    assert argv[1:4] == ["-s", "-m", "pip"]


@pytest.mark.windows
@pytest.mark.skipif(sys.platform != "win32", reason="needs Windows: a Program Files install and its ACLs")
def test_a_program_files_python_is_refused_on_real_windows() -> None:
    site = Path(os.environ.get("PROGRAMFILES", r"C:\Program Files")) / "Python312" / "Lib" / "site-packages"
    if not site.is_dir():
        pytest.skip(f"no system-wide Python at {site}")
    with pytest.raises(NotWritableError, match="cannot write here"):
        check_writable(_env(site, platform=Platform.WINDOWS))


PIP_LONG_PATH_FAILURE = """\
Processing c:\\users\\ana\\torch-2.7.1+cu128-cp312-cp312-win_amd64.whl
Installing collected packages: torch
ERROR: Could not install packages due to an OSError: [Errno 2] No such file or directory: 'C:\\\\Users\\\\ana\\\\AppData\\\\Local\\\\proj\\\\.venv\\\\Lib\\\\site-packages\\\\torch\\\\include\\\\ATen\\\\native\\\\cuda\\\\very_long_name.cuh'
HINT: This error might have occurred since this system does not have Windows Long Path support enabled. You can find information on how to enable this at https://pip.pypa.io/warnings/enable-long-paths
"""


def test_pips_long_path_hint_is_kept_in_the_failure_line() -> None:
    line = failure_line(PIP_LONG_PATH_FAILURE.splitlines())
    assert line.startswith("Could not install packages due to an OSError")
    assert "does not have Windows Long Path support enabled" in line
    assert "https://pip.pypa.io/warnings/enable-long-paths" in line


def test_other_hints_do_not_pad_the_line() -> None:
    lines = ["ERROR: No matching distribution found for tddep", "HINT: you may want --pre"]
    assert failure_line(lines) == "No matching distribution found for tddep"
