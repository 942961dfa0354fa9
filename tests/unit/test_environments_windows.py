"""Windows layouts, the PEP 514 registry and the `py` launcher, tested on Linux.

The layouts are built on this disk with their Windows names and read with platform=WINDOWS; the
registry is a FakeRegistry and `py -0p` a FakeRun. Paths inside registry/launcher answers are this
disk's paths where the test needs the files, and real Windows strings where only parsing is tested.
"""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

import pytest

from tests.support import layouts
from tests.support.layouts import FakeRegistry, FakeRun, completed
from torchdoctor.service.config import Settings
from torchdoctor.service.envs.discover import (
    discover_environments,
    environment_from_path,
    is_store_alias,
    parse_py_launcher,
)
from torchdoctor.service.envs.winreg_reader import Hive, WinregReader, registered_pythons
from torchdoctor.service.errors import NotAnEnvironmentError, SubprocessTimeoutError
from torchdoctor.service.models import EnvKind, Platform

WINDOWS = Platform.WINDOWS

# `py --list-paths` of the 3.11+ launcher, as recorded in boston-terrier-kirin/python 027_venv/venv.md.
PY_LIST_PATHS_NEW = (
    " -V:3.12 *        C:\\Users\\kohei\\AppData\\Local\\Programs\\Python\\Python312\\python.exe\r\n"
    " -V:3.10          C:\\Users\\kohei\\AppData\\Local\\Programs\\Python\\Python310\\python.exe\r\n"
    " -V:ContinuumAnalytics/Anaconda39-64 D:\\dev\\anaconda3\\python.exe\r\n"
)
# The older launcher (3.7-3.10): a header, `-X.Y-BITS` tags and the default's `*` after the path
# (uv's PY_LIST_PATHS regex in crates/uv-python/src/py_launcher.rs accepts both forms).
PY_LIST_PATHS_OLD = (
    "Installed Pythons found by py Launcher for Windows\n"
    " -3.9-64        C:\\Program Files\\Python39\\python.exe *\n"
    " -3.8-32        C:\\Users\\ana\\AppData\\Local\\Programs\\Python\\Python38-32\\python.exe\n"
)


def test_py_launcher_output_of_the_current_launcher_is_parsed() -> None:
    assert parse_py_launcher(PY_LIST_PATHS_NEW) == (
        ("3.12", r"C:\Users\kohei\AppData\Local\Programs\Python\Python312\python.exe"),
        ("3.10", r"C:\Users\kohei\AppData\Local\Programs\Python\Python310\python.exe"),
        (None, r"D:\dev\anaconda3\python.exe"),
    )


def test_py_launcher_output_of_the_older_launcher_is_parsed() -> None:
    assert parse_py_launcher(PY_LIST_PATHS_OLD) == (
        ("3.9", r"C:\Program Files\Python39\python.exe"),
        ("3.8", r"C:\Users\ana\AppData\Local\Programs\Python\Python38-32\python.exe"),
    )


def test_py_launcher_lines_without_a_path_are_skipped() -> None:
    text = " *               Active venv\n -V:3.12 *        Python 3.12 (64-bit)\n\n"
    assert parse_py_launcher(text) == ()


@pytest.mark.parametrize(
    ("path", "alias"),
    [
        (r"C:\Users\ana\AppData\Local\Microsoft\WindowsApps\python.exe", True),
        (r"C:\Users\ana\AppData\Local\Microsoft\WindowsApps", True),
        (
            r"C:\Program Files\WindowsApps\PythonSoftwareFoundation.Python.3.12_3.12.1264.0_x64__qbz5n2kfra8p0",
            True,
        ),
        (r"c:\users\ana\appdata\local\microsoft\windowsapps\python3.exe", True),
        (r"C:\Users\ana\AppData\Local\Programs\Python\Python312\python.exe", False),
        (r"C:\Users\ana\WindowsAppsBackup\python.exe", False),
    ],
)
def test_store_aliases_are_recognised(path: str, alias: bool) -> None:
    assert is_store_alias(path, WINDOWS) is alias
    assert is_store_alias(path, Platform.LINUX) is False


def test_a_store_alias_named_as_an_environment_is_refused() -> None:
    with pytest.raises(NotAnEnvironmentError, match="Microsoft Store alias"):
        environment_from_path(
            Path(r"C:\Users\ana\AppData\Local\Microsoft\WindowsApps\python.exe"), platform=WINDOWS
        )


def test_a_windows_venv_reads_from_its_root_and_from_scripts_python(tmp_path: Path) -> None:
    root = layouts.windows_venv(tmp_path / "proj" / ".venv", "3.12.4")
    by_root = environment_from_path(root, platform=WINDOWS, run=None)
    by_exe = environment_from_path(root / "Scripts" / "python.exe", platform=WINDOWS, run=None)
    assert by_root == by_exe
    assert by_root.kind is EnvKind.VENV
    assert by_root.python == root / "Scripts" / "python.exe"
    assert by_root.python_version == "3.12.4"
    assert by_root.site_packages == (root / "Lib" / "site-packages",)
    assert by_root.has_pip
    assert by_root.platform is WINDOWS


@pytest.mark.parametrize(("with_patchlevel", "version"), [(True, "3.11.9"), (False, "3.11")])
def test_a_windows_install_reads_patchlevel_else_its_dll(
    tmp_path: Path, with_patchlevel: bool, version: str
) -> None:
    root = layouts.windows_install(tmp_path / "Python311", "3.11.9", with_patchlevel=with_patchlevel)
    env = environment_from_path(root / "python.exe", platform=WINDOWS, run=None)
    assert env.root == root
    assert env.kind is EnvKind.SYSTEM
    assert env.python == root / "python.exe"
    assert env.python_version == version
    assert env.site_packages == (root / "Lib" / "site-packages",)


def test_a_windows_interpreter_is_never_started_on_another_os(tmp_path: Path) -> None:
    root = layouts.windows_install(tmp_path / "Python311", "3.11.9")
    run = FakeRun({"python.exe": completed("3.11.9\n")})
    assert environment_from_path(root, platform=WINDOWS, run=run).python_version == "3.11"
    assert run.calls == []


def test_a_windows_conda_prefix(tmp_path: Path) -> None:
    root = layouts.conda_prefix(tmp_path / "miniconda3", "3.12.4", windows=True)
    env = environment_from_path(root / "python.exe", platform=WINDOWS, run=None)
    assert (env.root, env.kind, env.python_version) == (root, EnvKind.CONDA, "3.12.4")
    assert env.python == root / "python.exe"
    assert env.site_packages == (root / "Lib" / "site-packages",)


def test_pyenv_win_and_uv_windows_pythons_have_their_kinds(tmp_path: Path) -> None:
    pyenv = layouts.pyenv_win_root(tmp_path, ["3.10.11"])
    uv = layouts.uv_pythons(tmp_path / "uv" / "python", ["cpython-3.12.4-windows-x86_64-none"])
    env = environment_from_path(pyenv / "versions" / "3.10.11", platform=WINDOWS, run=None)
    assert (env.kind, env.python_version) == (EnvKind.PYENV, "3.10.11")
    env = environment_from_path(uv / "cpython-3.12.4-windows-x86_64-none", platform=WINDOWS, run=None)
    assert (env.kind, env.python_version) == (EnvKind.UV, "3.12.4")
    assert env.python.name == "python.exe"


def _registry_with_windows_strings() -> FakeRegistry:
    reg = FakeRegistry()
    reg.register(
        Hive.HKCU,
        "PythonCore",
        "3.12",
        install_path=r"C:\Users\ana\AppData\Local\Programs\Python\Python312\\",
        executable=r"C:\Users\ana\AppData\Local\Programs\Python\Python312\python.exe",
        version="3.12.4",
        sys_version="3.12",
    )
    # An old all-users 32-bit install: no ExecutablePath, no Version, registered under WOW6432Node.
    reg.register(
        Hive.HKLM,
        "PythonCore",
        "3.9-32",
        install_path=r"C:\Program Files (x86)\Python39-32",
        base=r"Software\WOW6432Node\Python",
    )
    reg.register(
        Hive.HKLM,
        "ContinuumAnalytics",
        "Anaconda39-64",
        install_path=r'"C:\ProgramData\Anaconda3"',
        sys_version="3.9",
    )
    # The launcher registers itself; it is not an interpreter.
    reg.set(Hive.HKLM, r"Software\Python\PyLauncher", {"": r"C:\Windows\py.exe"})
    reg.register(Hive.HKLM, "PyLauncher", "Default", install_path=r"C:\Windows")
    # A tag without InstallPath is not an install.
    reg.set(Hive.HKCU, r"Software\Python\Broken\1.0", {"Version": "1.0"})
    return reg


def test_pep514_registrations_are_parsed_from_every_hive_and_view() -> None:
    entries, notes = registered_pythons(_registry_with_windows_strings())
    assert notes == ()
    summary = [(e.hive, e.company, e.tag, e.install_path, e.executable, e.version) for e in entries]
    assert summary == [
        (
            Hive.HKCU,
            "PythonCore",
            "3.12",
            "C:\\Users\\ana\\AppData\\Local\\Programs\\Python\\Python312\\\\",
            r"C:\Users\ana\AppData\Local\Programs\Python\Python312\python.exe",
            "3.12.4",
        ),
        (Hive.HKLM, "ContinuumAnalytics", "Anaconda39-64", r"C:\ProgramData\Anaconda3", None, "3.9"),
        (Hive.HKLM, "PythonCore", "3.9-32", r"C:\Program Files (x86)\Python39-32", None, "3.9"),
    ]
    assert PureWindowsPath(entries[0].install_path or "").name == "Python312"


def test_an_unreadable_registry_company_is_a_note_and_the_rest_still_count() -> None:
    reg = _registry_with_windows_strings()
    reg.deny(Hive.HKLM, r"Software\Python\ContinuumAnalytics")
    entries, notes = registered_pythons(reg)
    assert [e.company for e in entries] == ["PythonCore", "PythonCore"]
    assert notes == (
        "could not read the registry key HKEY_LOCAL_MACHINE\\Software\\Python\\ContinuumAnalytics: "
        "Access is denied",
    )


def test_the_real_registry_reader_reads_nothing_off_windows() -> None:
    reader = WinregReader()
    assert reader.subkeys(Hive.HKCU, r"Software\Python") == ()
    assert reader.value(Hive.HKCU, r"Software\Python", "") is None


@pytest.fixture
def windows_machine(tmp_path: Path) -> dict[str, Path]:
    """A Windows user's folders, on this disk."""
    home = tmp_path / "Users" / "ana"
    appdata = home / "AppData"
    places = {
        "home": home,
        "py312": layouts.windows_install(appdata / "Local" / "Programs" / "Python" / "Python312", "3.12.4"),
        "py310": layouts.windows_install(tmp_path / "Python310", "3.10.11"),
        "anaconda": layouts.conda_base(
            tmp_path / "ProgramData" / "Anaconda3", "3.9.19", envs={"torch": "3.11.9"}, windows=True
        ),
        "miniforge_env": layouts.conda_prefix(home / "miniforge3" / "envs" / "cv", "3.12.4", windows=True),
        "venv": layouts.windows_venv(home / "code" / "app" / ".venv", "3.12.4"),
        "active": layouts.windows_venv(tmp_path / "D" / "work" / "env", "3.11.9", pip=False),
        "pyenv_win": layouts.pyenv_win_root(home, ["3.10.11", "3.13.0"]),
        "uv": layouts.uv_pythons(
            appdata / "Roaming" / "uv" / "data" / "python", ["cpython-3.13.1-windows-x86_64-none"]
        ),
        "store": appdata / "Local" / "Microsoft" / "WindowsApps",
    }
    layouts.stub_exe(places["store"] / "python.exe", layouts.MZ_STUB)
    layouts.stub_exe(places["store"] / "python3.exe", layouts.MZ_STUB)
    layouts.environments_txt(home, [places["anaconda"], places["anaconda"] / "envs" / "torch"])
    # The per-user launcher's place; discovery runs it by this absolute path, never as "py".
    places["py_launcher"] = layouts.stub_exe(
        appdata / "Local" / "Programs" / "Python" / "Launcher" / "py.exe", layouts.MZ_STUB
    )
    return places


def test_discovery_on_windows_merges_every_source_without_duplicates(
    windows_machine: dict[str, Path],
) -> None:
    m = windows_machine
    reg = FakeRegistry()
    reg.register(
        Hive.HKCU,
        "PythonCore",
        "3.12",
        install_path=m["py312"],
        executable=m["py312"] / "python.exe",
        version="3.12.4",
    )
    reg.register(Hive.HKLM, "ContinuumAnalytics", "Anaconda39-64", install_path=m["anaconda"])
    # A Store install registers itself too; it is skipped.
    reg.register(
        Hive.HKCU,
        "PythonCore",
        "3.11",
        install_path=r"C:\Program Files\WindowsApps\PythonSoftwareFoundation.Python.3.11_qbz5n2kfra8p0",
    )
    py_output = (
        f" -V:3.12 *        {m['py312'] / 'python.exe'}\n -V:3.10          {m['py310'] / 'python.exe'}\n"
    )
    run = FakeRun({"py.exe": completed(py_output)})
    environ = {
        # Windows names are case-insensitive: "Path", not "PATH".
        "Path": ";".join(
            [str(m["store"]), str(m["active"] / "Scripts"), str(m["py312"]), str(m["py312"] / "Scripts"), ""]
        ),
        "VIRTUAL_ENV": str(m["active"]),
        "APPDATA": str(m["home"] / "AppData" / "Roaming"),
    }
    found = discover_environments(
        Settings(), home=m["home"], platform=WINDOWS, environ=environ, registry=reg, run=run
    )
    kinds = {e.root: e.kind for e in found.environments}
    assert kinds == {
        m["venv"]: EnvKind.VENV,
        m["active"]: EnvKind.VENV,
        m["anaconda"]: EnvKind.CONDA,
        m["anaconda"] / "envs" / "torch": EnvKind.CONDA,
        m["miniforge_env"]: EnvKind.CONDA,
        m["uv"] / "cpython-3.13.1-windows-x86_64-none": EnvKind.UV,
        m["pyenv_win"] / "versions" / "3.10.11": EnvKind.PYENV,
        m["pyenv_win"] / "versions" / "3.13.0": EnvKind.PYENV,
        m["py312"]: EnvKind.PY_LAUNCHER,
        m["py310"]: EnvKind.PY_LAUNCHER,
    }
    assert len(found.environments) == len(kinds)  # each once, though found by several sources
    assert all(e.platform is WINDOWS for e in found.environments)
    assert all(e.python.name == "python.exe" for e in found.environments)
    py312 = next(e for e in found.environments if e.root == m["py312"])
    assert py312.python_version == "3.12.4"  # the registry's Version, as the files give only 3.12
    py310 = next(e for e in found.environments if e.root == m["py310"])
    assert py310.python_version == "3.10"
    assert run.calls == [(str(m["py_launcher"]), "-0p")]  # no interpreter was started
    assert found.notes == ()
    # Sorted by kind, then path.
    order = [e.kind for e in found.environments]
    assert order == sorted(
        order, key=[EnvKind.VENV, EnvKind.CONDA, EnvKind.UV, EnvKind.PYENV, EnvKind.PY_LAUNCHER].index
    )


def test_a_missing_or_hung_py_launcher_does_not_stop_discovery(windows_machine: dict[str, Path]) -> None:
    m = windows_machine
    for answer, notes in [
        (None, ()),
        (
            SubprocessTimeoutError("py did not finish within 5 s"),
            ("`py -0p` did not answer within 5 s; skipped it",),
        ),
    ]:
        run = FakeRun({"py.exe": answer} if answer is not None else {})
        found = discover_environments(
            Settings(), home=m["home"], platform=WINDOWS, environ={}, registry=FakeRegistry(), run=run
        )
        assert m["venv"] in {e.root for e in found.environments}
        assert found.notes == notes
