"""Discovery details that read wrong before: `py -0p` company tags, where uv, Poetry, Hatch and
pipenv keep their Pythons and venvs, conda's environments.txt in the locale's encoding, and
`py.exe` / `uv` started only from trusted absolute paths.

Folders are built on this disk (tests/support/layouts.py); the runner is a FakeRun that records
what would have been started. The Windows layouts are read with platform=WINDOWS.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.support import layouts
from tests.support.layouts import FakeRegistry, FakeRun, completed
from tests.support.windows import windows_only
from torchdoctor.service import proc
from torchdoctor.service.config import Settings
from torchdoctor.service.envs.discover import (
    discover_environments,
    environment_from_path,
    environment_key,
    free_threaded_sibling,
    parse_py_launcher,
    py_launcher_candidates,
    read_environments_txt,
    tool_venv_roots,
)
from torchdoctor.service.install import installers
from torchdoctor.service.models import EnvKind, Platform

WINDOWS = Platform.WINDOWS
LINUX = Platform.LINUX


def test_py_launcher_lines_with_company_tags_give_their_version() -> None:
    # uv-installed Pythons register under PEP 514's "Astral" company; py -0p shows both separators.
    text = (
        " -V:Astral/CPython3.12.12 *        C:\\Users\\ana\\AppData\\Roaming\\uv\\python\\cpython-3.12.12-windows-x86_64-none\\python.exe\r\n"
        " -V:Astral\\CPython3.13.1          C:\\Users\\ana\\AppData\\Roaming\\uv\\python\\cpython-3.13.1-windows-x86_64-none\\python.exe\r\n"
        " -V:3.13t         C:\\Program Files\\Python313\\python3.13t.exe\r\n"
        " -V:ContinuumAnalytics/Anaconda39-64 D:\\dev\\anaconda3\\python.exe\r\n"
    )
    assert [version for version, _ in parse_py_launcher(text)] == ["3.12.12", "3.13.1", "3.13", None]


def test_the_launcher_is_looked_for_in_trusted_places_first_and_never_in_the_current_folder(
    tmp_path: Path,
) -> None:
    cwd = tmp_path / "project"
    environ = {
        "SystemRoot": str(tmp_path / "Windows"),
        "LOCALAPPDATA": str(tmp_path / "Local"),
        "Path": ";".join([".", "", "relative\\bin", str(cwd), str(tmp_path / "bin")]),
    }
    assert py_launcher_candidates(tmp_path / "home", environ, cwd) == [
        tmp_path / "Windows" / "py.exe",
        tmp_path / "Local" / "Programs" / "Python" / "Launcher" / "py.exe",
        tmp_path / "bin" / "py.exe",
    ]


def test_a_py_exe_planted_in_the_current_folder_is_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    project = tmp_path / "project"
    layouts.stub_exe(project / "py.exe", layouts.MZ_STUB)
    monkeypatch.chdir(project)
    run = FakeRun({"py.exe": completed("")})
    environ = {"Path": f".;{project}", "LOCALAPPDATA": str(tmp_path / "Local"), "SystemRoot": str(tmp_path)}
    discover_environments(
        Settings(scan_depth=0), home=home, platform=WINDOWS, environ=environ, registry=FakeRegistry(), run=run
    )
    assert run.calls == []


def test_the_all_users_launcher_wins_and_is_started_by_its_absolute_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    system = layouts.stub_exe(tmp_path / "Windows" / "py.exe", layouts.MZ_STUB)
    layouts.stub_exe(
        home / "AppData" / "Local" / "Programs" / "Python" / "Launcher" / "py.exe", layouts.MZ_STUB
    )
    install = layouts.windows_install(tmp_path / "Python313", "3.13.1")
    run = FakeRun({"py.exe": completed(f" -V:3.13 *        {install / 'python.exe'}\n")})
    found = discover_environments(
        Settings(scan_depth=0),
        home=home,
        platform=WINDOWS,
        environ={"SystemRoot": str(tmp_path / "Windows")},
        registry=FakeRegistry(),
        run=run,
    )
    assert run.calls == [(str(system), "-0p")]
    assert [e.root for e in found.environments] == [install]


@pytest.mark.parametrize("folder", [("uv", "python"), ("uv", "data", "python")])
def test_uv_pythons_are_found_in_both_windows_folders(tmp_path: Path, folder: tuple[str, ...]) -> None:
    home = tmp_path / "home"
    roaming = home / "AppData" / "Roaming"
    data = layouts.uv_pythons(roaming.joinpath(*folder), ["cpython-3.12.4-windows-x86_64-none"])
    found = discover_environments(
        Settings(scan_depth=0),
        home=home,
        platform=WINDOWS,
        environ={},
        registry=FakeRegistry(),
        run=FakeRun(),
    )
    assert [(e.root, e.kind) for e in found.environments] == [
        (data / "cpython-3.12.4-windows-x86_64-none", EnvKind.UV)
    ]


def _tool_venvs_linux(home: Path) -> dict[str, Path]:
    return {
        "poetry": layouts.posix_venv(
            home / ".cache" / "pypoetry" / "virtualenvs" / "app-Xy12AbCd-py3.12", "3.12.4"
        ),
        "hatch": layouts.posix_venv(
            home / ".local" / "share" / "hatch" / "env" / "virtual" / "app" / "q1Bz2cDe" / "default", "3.12.4"
        ),
        "pipenv": layouts.posix_venv(home / ".local" / "share" / "virtualenvs" / "app-a1b2c3d4", "3.11.9"),
    }


def test_poetry_hatch_and_pipenv_venvs_are_found_on_linux(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = _tool_venvs_linux(home)
    # scan_depth=0: nothing is found by the bounded search, only by knowing where the tools keep them.
    found = discover_environments(Settings(scan_depth=0), home=home, platform=LINUX, environ={"PATH": ""})
    assert {e.root for e in found.environments} == set(made.values())
    assert all(e.kind is EnvKind.VENV for e in found.environments)


def test_poetry_hatch_and_pipenv_venvs_are_found_on_windows(tmp_path: Path) -> None:
    home = tmp_path / "Users" / "ana"
    local = home / "AppData" / "Local"
    made = {
        layouts.windows_venv(local / "pypoetry" / "Cache" / "virtualenvs" / "app-Xy12AbCd-py3.12"),
        layouts.windows_venv(local / "hatch" / "env" / "virtual" / "app" / "q1Bz2cDe" / "test"),
        layouts.windows_venv(home / ".virtualenvs" / "app-a1b2c3d4"),
    }
    found = discover_environments(
        Settings(scan_depth=0),
        home=home,
        platform=WINDOWS,
        environ={},
        registry=FakeRegistry(),
        run=FakeRun(),
    )
    assert {e.root for e in found.environments} == made


def test_each_tools_own_setting_comes_first(tmp_path: Path) -> None:
    environ = {
        "POETRY_VIRTUALENVS_PATH": str(tmp_path / "pv"),
        "HATCH_DATA_DIR": str(tmp_path / "hd"),
        "WORKON_HOME": str(tmp_path / "wh"),
    }
    roots = tool_venv_roots(tmp_path / "home", environ, LINUX)
    assert roots[:3] == [
        ("poetry", tmp_path / "pv"),
        ("hatch", tmp_path / "hd" / "env" / "virtual"),
        ("pipenv", tmp_path / "wh"),
    ]


def test_environments_txt_in_the_locales_encoding_is_read(tmp_path: Path) -> None:
    prefix = "C:\\Users\\José\\miniconda3\\envs\\café"
    file = tmp_path / "environments.txt"
    file.write_bytes((prefix + "\r\n").encode("cp1252"))
    assert read_environments_txt(file, "cp1252") == [Path(prefix)]
    file.write_bytes((prefix + "\n").encode("utf-8"))
    assert read_environments_txt(file, "cp1252") == [Path(prefix)]  # UTF-8 is tried first


def test_a_conda_env_with_a_non_ascii_name_listed_in_cp1252_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    env = layouts.conda_prefix(tmp_path / "Josés envs" / "café", "3.12.4")
    file = home / ".conda" / "environments.txt"
    file.parent.mkdir(parents=True)
    file.write_bytes((str(env) + "\n").encode("cp1252"))
    # This machine's locale is UTF-8; a Western-European Windows' is cp1252.
    monkeypatch.setattr("locale.getpreferredencoding", lambda _do_setlocale=True: "cp1252")
    found = discover_environments(Settings(scan_depth=0), home=home, platform=LINUX, environ={"PATH": ""})
    assert [e.root for e in found.environments] == [env]


def test_trusted_path_entries_drop_relative_ones_and_the_current_folder(tmp_path: Path) -> None:
    value = os.pathsep.join([".", "", "bin", str(tmp_path), str(tmp_path / "tools"), f'"{tmp_path / "q"}"'])
    assert proc.trusted_path_entries(value, tmp_path) == [tmp_path / "tools", tmp_path / "q"]


def test_uv_in_the_current_folder_is_not_picked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    planted = layouts.stub_exe(project / "uv")
    planted.chmod(planted.stat().st_mode | stat.S_IXUSR)
    tools = tmp_path / "tools"
    real = layouts.stub_exe(tools / "uv")
    real.chmod(real.stat().st_mode | stat.S_IXUSR)
    monkeypatch.chdir(project)
    monkeypatch.setenv("PATH", os.pathsep.join([".", str(project), str(tools)]))
    assert installers.find_uv() == str(real)


@windows_only
def test_the_real_launcher_is_found_at_an_absolute_path_and_its_list_parses() -> None:
    candidates = [c for c in py_launcher_candidates(Path.home(), os.environ, Path.cwd()) if c.is_file()]
    if not candidates:
        pytest.skip("no py launcher installed")
    done = proc.run([candidates[0], "-0p"], timeout=10)
    assert candidates[0].is_absolute()
    assert all(Path(exe).is_absolute() for _, exe in parse_py_launcher(done.stdout))


def _two_builds(root: Path) -> Path:
    """A prefix holding 3.13 and the free-threaded 3.13t (deadsnakes, python.org's macOS installer)."""
    layouts.posix_install(root, "3.13.1")
    layouts.stub_exe(root / "bin" / "python3.13t")
    (root / "lib" / "python3.13t").mkdir()
    (root / "lib" / "python3.13t" / "os.py").write_text("# stdlib\n")
    layouts.fill_site_packages(root / "lib" / "python3.13t" / "site-packages", pip=False)
    return root


def test_each_build_in_a_shared_prefix_reads_only_its_own_site_packages(tmp_path: Path) -> None:
    root = _two_builds(tmp_path / "py313")
    default = environment_from_path(root, platform=LINUX, run=None)
    threaded = environment_from_path(root / "bin" / "python3.13t", platform=LINUX, run=None)
    assert default.python.name == "python3"
    assert default.site_packages == (root / "lib" / "python3.13" / "site-packages",)
    assert threaded.python == root / "bin" / "python3.13t"
    assert threaded.site_packages == (root / "lib" / "python3.13t" / "site-packages",)
    assert threaded.python_version == "3.13.1"


def test_the_free_threaded_build_beside_a_found_python_is_an_environment_of_its_own(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    root = _two_builds(tmp_path / "py313")
    found = discover_environments(
        Settings(scan_depth=0), home=home, platform=LINUX, environ={"PATH": str(root / "bin")}
    )
    default, threaded = found.environments
    assert (default.root, threaded.root) == (root, root)
    assert default.site_packages == (root / "lib" / "python3.13" / "site-packages",)
    assert threaded.python == root / "bin" / "python3.13t"
    assert threaded.site_packages == (root / "lib" / "python3.13t" / "site-packages",)
    # Told apart by what `--env` accepts: the folder for one, the interpreter for the other.
    assert [environment_key(e) for e in found.environments] == [str(root), str(root / "bin" / "python3.13t")]
    assert found.notes == ()


def test_a_windows_install_with_python3_13t_exe_gives_two_environments(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    root = layouts.windows_install(tmp_path / "Python313", "3.13.1", with_patchlevel=True)
    layouts.stub_exe(root / "python3.13t.exe", layouts.MZ_STUB)
    found = discover_environments(
        Settings(scan_depth=0),
        home=home,
        platform=WINDOWS,
        environ={"Path": str(root)},
        registry=FakeRegistry(),
        run=FakeRun(),
    )
    assert [e.root for e in found.environments] == [root, root]
    assert [e.python.name.lower() for e in found.environments] == ["python.exe", "python3.13t.exe"]


def test_a_venv_made_from_a_free_threaded_python_finds_its_packages(tmp_path: Path) -> None:
    root = tmp_path / "venv"
    layouts.pyvenv_cfg(root, ["home = /usr/bin", "version_info = 3.13.1"])
    layouts.stub_exe(root / "bin" / "python")
    layouts.fill_site_packages(root / "lib" / "python3.13t" / "site-packages", pip=True)
    env = environment_from_path(root, platform=LINUX, run=None)
    assert env.site_packages == (root / "lib" / "python3.13t" / "site-packages",)
    assert free_threaded_sibling(env) is None
