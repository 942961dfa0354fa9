"""A torch outside the environment's site-packages that its Python still imports: the user site, and
a Microsoft Store Python's private site-packages. Layouts are built on disk (tests/support); the
checker and discovery run for real over them, and the CLI in a subprocess for the JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import layouts
from tests.support.envs import site_packages_env, unpack_standin
from tests.support.hw import hardware
from tests.support.layouts import FakeRegistry, FakeRun
from tests.support.standin import StandIn
from tests.support.windows import windows_only
from torchdoctor.service.config import Settings
from torchdoctor.service.envs.discover import discover_environments, environment_from_path
from torchdoctor.service.envs.usersite import user_site_applies, user_site_folder
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.models import EnvKind, EnvStatus, FindingCode, Platform, PythonEnv, Severity
from torchdoctor.service.rules.check import check_environment

KN = load_knowledge(Path("/nonexistent"))
HW = hardware("572.16", "12.8")
WINDOWS = Platform.WINDOWS


def _env(kind: EnvKind, platform: Platform = Platform.LINUX, python: str = "python3.12") -> PythonEnv:
    return PythonEnv(Path("/e"), Path("/e/bin") / python, "3.12.4", kind, True, (), platform)


def test_the_user_site_folder_follows_the_site_module_rules(tmp_path: Path) -> None:
    home = Path("/home/ana")
    assert user_site_folder(_env(EnvKind.SYSTEM), home=home, environ={}) == Path(
        "/home/ana/.local/lib/python3.12/site-packages"
    )
    assert user_site_folder(_env(EnvKind.SYSTEM, python="python3.13t"), home=home, environ={}) == Path(
        "/home/ana/.local/lib/python3.12t/site-packages"
    )
    assert user_site_folder(_env(EnvKind.SYSTEM), home=home, environ={"PYTHONUSERBASE": "/u"}) == Path(
        "/u/lib/python3.12/site-packages"
    )
    appdata = {"APPDATA": str(tmp_path / "Roaming")}
    assert user_site_folder(_env(EnvKind.SYSTEM, WINDOWS), home=home, environ=appdata) == (
        tmp_path / "Roaming" / "Python" / "Python312" / "site-packages"
    )


def test_the_running_pythons_user_site_is_where_site_puts_it() -> None:
    env = environment_from_path(Path(sys.executable), run=None)
    if env.kind is EnvKind.VENV:
        env = PythonEnv(env.root, env.python, env.python_version, EnvKind.SYSTEM, True, env.site_packages)
    # Asked of a fresh interpreter with this environment (tests set PYTHONUSERBASE after this one
    # started, so this process's own `site` answers for the environment it started with).
    real = subprocess.run(
        [sys.executable, "-c", "import site; print(site.getusersitepackages())"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    assert user_site_folder(env, home=Path.home(), environ=os.environ) == Path(real)


def test_a_venv_reads_the_user_site_only_with_system_site_packages() -> None:
    assert user_site_applies(_env(EnvKind.SYSTEM), None)
    assert user_site_applies(_env(EnvKind.CONDA), None)
    assert not user_site_applies(_env(EnvKind.VENV), {"include-system-site-packages": "false"})
    assert user_site_applies(_env(EnvKind.VENV), {"include-system-site-packages": "true"})


def _user_torch(home: Path, version: str = "2.5.1+cpu") -> Path:
    folder = home / ".local" / "lib" / "python3.12" / "site-packages"
    unpack_standin(
        PythonEnv(home, home, "3.12.4", EnvKind.SYSTEM, True, (folder,)), StandIn("torch", version)
    )
    return folder


def _install(tmp_path: Path, *, torch: str | None) -> PythonEnv:
    root = layouts.posix_install(tmp_path / "py312", "3.12.4")
    env = environment_from_path(root, platform=Platform.LINUX, run=None)
    if torch is not None:
        unpack_standin(env, StandIn("torch", torch, cuda="12.8"))
    return env


def test_a_user_site_torch_shadows_the_installs_own(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = _user_torch(home)
    env = _install(tmp_path, torch="2.7.1+cu128")
    report = check_environment(env, HW, KN, home=home, environ={})
    (finding,) = [f for f in report.findings if f.code is FindingCode.TORCH_IN_USER_SITE]
    assert finding.severity is Severity.WARN
    assert (
        "2.5.1+cpu" in finding.message and "2.7.1+cu128" in finding.message and str(folder) in finding.message
    )
    assert "pip uninstall torch" in finding.fix
    assert report.status is EnvStatus.WARN


def test_a_torch_only_in_the_user_site_is_reported(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _user_torch(home)
    report = check_environment(_install(tmp_path, torch=None), HW, KN, home=home, environ={})
    assert [(f.code, f.severity) for f in report.findings] == [
        (FindingCode.TORCH_IN_USER_SITE, Severity.WARN)
    ]
    assert report.torch is None  # what site-packages holds; the finding says what is imported


def _venv(tmp_path: Path, *, include_system: bool, torch: str | None) -> PythonEnv:
    env = site_packages_env(tmp_path / "venv")
    layouts.pyvenv_cfg(
        env.root, ["home = /usr/bin", f"include-system-site-packages = {str(include_system).lower()}"]
    )
    if torch is not None:
        unpack_standin(env, StandIn("torch", torch, cuda="12.8"))
    return env


def test_a_venv_without_system_site_packages_ignores_the_user_site(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _user_torch(home)
    report = check_environment(
        _venv(tmp_path, include_system=False, torch=None), HW, KN, home=home, environ={}
    )
    assert report.findings == ()


def test_a_venvs_own_torch_shadows_the_user_sites(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _user_torch(home)
    env = _venv(tmp_path, include_system=True, torch="2.7.1+cu128")
    report = check_environment(env, HW, KN, home=home, environ={})
    (finding,) = [f for f in report.findings if f.code is FindingCode.TORCH_IN_USER_SITE]
    assert finding.severity is Severity.INFO and "shadowed by torch 2.7.1+cu128" in finding.message


def test_a_venv_with_system_site_packages_and_no_torch_imports_the_user_sites(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _user_torch(home)
    report = check_environment(
        _venv(tmp_path, include_system=True, torch=None), HW, KN, home=home, environ={}
    )
    assert [f.severity for f in report.findings] == [Severity.WARN]


def test_check_json_names_the_user_site_torch(tmp_path: Path) -> None:
    userbase = tmp_path / "userbase"
    folder = _user_torch(userbase)
    assert folder == userbase / ".local" / "lib" / "python3.12" / "site-packages"
    env = _install(tmp_path, torch="2.7.1+cu128")
    hw_file = tmp_path / "hw.json"
    hw_file.write_text(
        json.dumps({"driver_version": "572.16", "cuda_driver_version": "12.8"}), encoding="utf-8"
    )
    environ = {**os.environ, "PYTHONUSERBASE": str(userbase / ".local")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torchdoctor.agent",
            "check",
            "--json",
            "--no-discover",
            "--env",
            str(env.root),
            "--hardware",
            str(hw_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environ,
    )
    data = json.loads(done.stdout)
    codes = [f["code"] for f in data["environments"][0]["findings"]]
    assert "torch-in-user-site" in codes
    assert done.returncode == 1


def test_a_store_python_is_a_note_naming_its_torch(tmp_path: Path) -> None:
    home = tmp_path / "Users" / "ana"
    local = home / "AppData" / "Local"
    package = local / "Packages" / "PythonSoftwareFoundation.Python.3.12_qbz5n2kfra8p0"
    store_site = package / "LocalCache" / "local-packages" / "Python312" / "site-packages"
    unpack_standin(
        PythonEnv(package, package, "3.12.4", EnvKind.SYSTEM, True, (store_site,)), StandIn("torch", "2.5.1")
    )
    (
        local / "Packages" / "PythonSoftwareFoundation.Python.3.11_qbz5n2kfra8p0"
    ).mkdir()  # never started: no packages
    found = discover_environments(
        Settings(scan_depth=0),
        home=home,
        platform=WINDOWS,
        environ={},
        registry=FakeRegistry(),
        run=FakeRun(),
    )
    assert found.notes == (
        "skipped the Microsoft Store Python 3.12: torchdoctor cannot change a Store app "
        f"(its packages are in {store_site}; it has torch 2.5.1 there)",
    )


@windows_only
def test_the_real_user_site_on_windows_is_where_site_puts_it() -> None:
    env = environment_from_path(Path(sys.base_prefix), run=None)
    # Asked of a fresh interpreter with this environment (tests set PYTHONUSERBASE after this one
    # started, so this process's own `site` answers for the environment it started with).
    real = subprocess.run(
        [sys.executable, "-c", "import site; print(site.getusersitepackages())"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    assert user_site_folder(env, home=Path.home(), environ=os.environ) == Path(real)
