"""discover_environments on a Linux home folder built on disk: every source, dedupe, bounds, settings."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import layouts
from tests.support.layouts import FakeRun, completed
from torchdoctor.service.config import Settings
from torchdoctor.service.envs.discover import Discovery, collect_environments, discover_environments
from torchdoctor.service.errors import NotAnEnvironmentError
from torchdoctor.service.models import EnvKind, Platform

LINUX = Platform.LINUX


class Machine:
    """A Linux machine's folders under tmp: a home with every kind of environment, and a PATH."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.home = base / "home" / "ana"
        h = self.home
        self.project_venv = layouts.posix_venv(h / "proj" / ".venv", "3.12.4")
        self.deep_venv = layouts.posix_venv(h / "code" / "org" / "team" / "venv", "3.11.9", writer="uv")
        self.too_deep = layouts.posix_venv(h / "a" / "b" / "c" / "d" / ".venv", "3.10.14")
        self.in_node_modules = layouts.posix_venv(h / "web" / "node_modules" / "x" / ".venv")
        self.in_hidden = layouts.posix_venv(h / ".local" / "pipx" / "venvs" / "black")
        self.nested = layouts.posix_venv(
            self.project_venv / "lib" / "python3.12" / "site-packages" / "t" / "env"
        )
        self.prefix_env = layouts.conda_prefix(h / "ml" / "env", "3.10.14")  # conda create -p ./env
        self.outside = layouts.posix_venv(base / "data" / "shared-venv", "3.12.4")
        layouts.link(h / "envs" / "shared", self.outside)
        layouts.link(h / "loop", h)  # a symlink loop must not hang the search
        self.miniforge = layouts.conda_base(
            h / "miniforge3", "3.12.4", envs={"torch": "3.11.9", "r-only": None}
        )
        self.elsewhere = layouts.conda_prefix(base / "opt" / "envs" / "team", "3.12.4")
        layouts.environments_txt(h, [self.miniforge, self.elsewhere, base / "deleted" / "env", "# a comment"])
        self.pyenv = layouts.pyenv_root(h, ["3.12.1", "3.11.7"], virtualenvs={"tools": "3.12.1"})
        self.uv = layouts.uv_pythons(
            h / ".local" / "share" / "uv" / "python",
            ["cpython-3.12.4-linux-x86_64-gnu", "cpython-3.13.0+freethreaded-linux-x86_64-gnu"],
        )
        self.system = layouts.posix_install(base / "usr", "3.11.2")
        self.active = layouts.posix_venv(base / "work" / "active", "3.13.0", pip=False)

    @property
    def environ(self) -> dict[str, str]:
        path = [
            str(self.pyenv / "shims"),  # scripts: skipped
            str(self.active / "bin"),
            str(self.system / "bin"),
            str(self.pyenv / "versions" / "3.11.7" / "bin"),
            "relative/bin",
            "",
        ]
        return {"PATH": os.pathsep.join(path), "VIRTUAL_ENV": str(self.active)}

    def discover(
        self,
        settings: Settings | None = None,
        *,
        run: FakeRun | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Discovery:
        return discover_environments(
            settings or Settings(),
            home=self.home,
            platform=LINUX,
            environ=self.environ,
            run=run if run is not None else FakeRun(),
            clock=clock,
        )


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Machine:
    return Machine(tmp_path_factory.mktemp("machine"))


def roots(found: Discovery) -> list[Path]:
    return [e.root for e in found.environments]


def test_every_source_is_found_once_with_its_kind(machine: Machine) -> None:
    m = machine
    run = FakeRun()
    found = m.discover(run=run)
    pyenv = m.pyenv / "versions"
    expected = {
        m.project_venv: EnvKind.VENV,
        m.deep_venv: EnvKind.VENV,
        m.outside: EnvKind.VENV,  # through a symlink in home, reported at its real place
        m.active: EnvKind.VENV,
        pyenv / "3.12.1" / "envs" / "tools": EnvKind.VENV,  # pyenv-virtualenv, and its link
        m.prefix_env: EnvKind.CONDA,
        m.miniforge: EnvKind.CONDA,
        m.miniforge / "envs" / "torch": EnvKind.CONDA,
        m.elsewhere: EnvKind.CONDA,
        m.uv / "cpython-3.12.4-linux-x86_64-gnu": EnvKind.UV,
        m.uv / "cpython-3.13.0+freethreaded-linux-x86_64-gnu": EnvKind.UV,
        pyenv / "3.12.1": EnvKind.PYENV,
        pyenv / "3.11.7": EnvKind.PYENV,  # also on PATH: still pyenv
        m.system: EnvKind.SYSTEM,
    }
    assert {e.root: e.kind for e in found.environments} == expected
    assert len(found.environments) == len(expected)
    assert found.notes == ()
    assert run.calls == []  # discovery reads files; it starts no interpreter


def test_what_discovery_must_not_report(machine: Machine) -> None:
    found = set(roots(machine.discover()))
    assert machine.too_deep not in found  # depth 5 > scan_depth 4
    assert machine.in_node_modules not in found
    assert machine.in_hidden not in found  # hidden folders are not entered
    assert machine.nested not in found  # nothing inside a found environment
    assert machine.miniforge / "envs" / "r-only" not in found  # conda env without Python


def test_each_environment_carries_its_files_facts(machine: Machine) -> None:
    by_root = {e.root: e for e in machine.discover().environments}
    env = by_root[machine.deep_venv]
    assert (env.python_version, env.has_pip) == ("3.11.9", False)
    assert env.site_packages == (machine.deep_venv / "lib" / "python3.11" / "site-packages",)
    env = by_root[machine.uv / "cpython-3.13.0+freethreaded-linux-x86_64-gnu"]
    assert env.python_version == "3.13.0"
    env = by_root[machine.system]
    assert env.python == machine.system / "bin" / "python3"
    assert env.python_version == "3.11.2"
    assert by_root[machine.miniforge / "envs" / "torch"].python_version == "3.11.9"


def test_the_order_is_by_kind_then_natural_path(machine: Machine) -> None:
    found = machine.discover().environments
    rank = [EnvKind.VENV, EnvKind.CONDA, EnvKind.UV, EnvKind.PYENV, EnvKind.PY_LAUNCHER, EnvKind.SYSTEM]
    assert [e.kind for e in found] == sorted((e.kind for e in found), key=rank.index)
    pyenvs = [e.root.name for e in found if e.kind is EnvKind.PYENV]
    assert pyenvs == ["3.11.7", "3.12.1"]
    assert machine.discover().environments == found  # stable


def test_scan_depth_reaches_further_when_asked(machine: Machine) -> None:
    assert machine.too_deep in roots(machine.discover(Settings(scan_depth=5)))
    shallow = roots(machine.discover(Settings(scan_depth=2)))
    assert machine.project_venv in shallow  # ~/proj/.venv is two levels down
    assert machine.deep_venv not in shallow  # ~/code/org/team/venv is four
    assert machine.project_venv not in roots(machine.discover(Settings(scan_depth=1)))


def test_explicit_environments_come_first_in_their_order_and_may_start_an_interpreter(
    machine: Machine, tmp_path: Path
) -> None:
    old = layouts.posix_venv(tmp_path / "old-tool", "3.9.19", writer="none")
    settings = Settings(environments=(old, machine.deep_venv))
    run = FakeRun({"python": completed("3.9.19\n")})
    found = machine.discover(settings, run=run)
    assert roots(found)[:2] == [old, machine.deep_venv]
    assert roots(found).count(machine.deep_venv) == 1
    assert found.environments[0].python_version == "3.9.19"
    assert run.programs() == ["python"]  # only for the named environment


def test_a_bad_explicit_environment_is_a_note_not_a_failure(machine: Machine, tmp_path: Path) -> None:
    source = tmp_path / "config.toml"
    found = machine.discover(Settings(environments=(tmp_path / "gone",), source=source))
    assert found.notes == (
        f"config.toml lists {tmp_path / 'gone'}, but {tmp_path / 'gone'} is not a Python environment: "
        "it does not exist",
    )
    assert machine.project_venv in roots(found)


def test_extra_roots_are_searched_and_a_missing_root_is_a_note(machine: Machine, tmp_path: Path) -> None:
    extra = layouts.posix_venv(tmp_path / "srv" / "apps" / "site" / ".venv")
    found = machine.discover(Settings(roots=(tmp_path / "srv", tmp_path / "nowhere")))
    assert extra in roots(found)
    assert found.notes == (
        f"`roots` in config.toml lists {tmp_path / 'nowhere'}, which is not a folder here",
    )


def test_excluded_paths_are_neither_reported_nor_searched(machine: Machine) -> None:
    settings = Settings(exclude=(machine.home / "code", machine.pyenv / "versions" / "3.12.1"))
    found = roots(machine.discover(settings))
    assert machine.deep_venv not in found
    assert machine.pyenv / "versions" / "3.12.1" not in found
    assert machine.pyenv / "versions" / "3.12.1" / "envs" / "tools" not in found  # inside an excluded path
    assert machine.project_venv in found


def test_the_time_budget_stops_the_search_with_a_note(machine: Machine) -> None:
    ticks: Iterator[float] = iter(float(i) for i in range(10_000))
    found = machine.discover(Settings(scan_seconds=3.0), clock=lambda: next(ticks))
    assert found.notes == (
        "stopped searching ~ after 3 s; add folders to `roots` in config.toml to look further",
    )
    # What the other sources found is still there; the search got a few folders in.
    assert machine.pyenv / "versions" / "3.12.1" in roots(found)
    assert machine.deep_venv not in roots(found)


def test_unreadable_folders_are_summed_up_in_one_note(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_scandir = os.scandir
    locked = {str(machine.home / "code"), str(machine.home / "web")}

    def scandir(path: str | os.PathLike[str]) -> object:
        if os.fspath(path) in locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = machine.discover()
    assert found.notes == (
        f"could not read 2 folders (permission denied): {machine.home / 'code'}, {machine.home / 'web'}",
    )
    assert machine.project_venv in roots(found)


def test_uv_python_dir_follows_xdg_data_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    data = layouts.uv_pythons(tmp_path / "xdg" / "uv" / "python", ["cpython-3.12.4-linux-x86_64-gnu"])
    environ = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "PATH": ""}
    found = discover_environments(Settings(), home=home, platform=LINUX, environ=environ)
    assert roots(found) == [data / "cpython-3.12.4-linux-x86_64-gnu"]
    environ = {"UV_PYTHON_INSTALL_DIR": str(tmp_path / "xdg" / "uv" / "python"), "PATH": ""}
    assert roots(discover_environments(Settings(), home=home, platform=LINUX, environ=environ)) == roots(
        found
    )


def test_pyenv_root_and_conda_variables_are_honoured(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    pyenv = layouts.pyenv_root(tmp_path / "opt", ["3.12.1"])
    mamba = layouts.conda_base(tmp_path / "mamba", "3.12.4", envs={"dl": "3.11.9"})
    environ = {"PYENV_ROOT": str(pyenv), "MAMBA_ROOT_PREFIX": str(mamba), "PATH": ""}
    found = discover_environments(Settings(), home=home, platform=LINUX, environ=environ)
    assert set(roots(found)) == {pyenv / "versions" / "3.12.1", mamba, mamba / "envs" / "dl"}


def test_collect_puts_env_arguments_first_and_refuses_bad_ones(machine: Machine, tmp_path: Path) -> None:
    found = collect_environments(
        Settings(),
        [machine.system / "bin" / "python3"],
        home=machine.home,
        platform=LINUX,
        environ=machine.environ,
    )
    assert roots(found)[0] == machine.system
    assert roots(found).count(machine.system) == 1
    with pytest.raises(NotAnEnvironmentError):
        collect_environments(Settings(), [tmp_path], home=machine.home, platform=LINUX, environ={})


def test_no_discover_keeps_only_the_named_environments(machine: Machine) -> None:
    settings = Settings(environments=(machine.deep_venv,))
    found = collect_environments(
        settings, [machine.project_venv / "bin" / "python"], discover=False, platform=LINUX
    )
    assert roots(found) == [machine.project_venv, machine.deep_venv]
