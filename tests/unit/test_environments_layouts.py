"""environment_from_path on Linux layouts built on disk: roots, executables, versions, site-packages, pip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import layouts
from tests.support.layouts import FakeRun, completed
from torchdoctor.service.envs.discover import environment_from_path, normalize_version
from torchdoctor.service.errors import NotAnEnvironmentError, UnreadableError
from torchdoctor.service.models import EnvKind, Platform, PythonEnv

LINUX = Platform.LINUX


def read(path: Path, run: FakeRun | None = None) -> PythonEnv:
    return environment_from_path(path, platform=LINUX, run=run)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3.12.4", "3.12.4"),
        ("3.12", "3.12"),
        ("3.12.1.final.0", "3.12.1"),  # virtualenv's version_info
        ("3.13.0.candidate.1", "3.13.0rc1"),
        ("3.14.0.alpha.7", "3.14.0a7"),
        ("3.13.0rc2", "3.13.0rc2"),
        ("3.13.0+", "3.13.0"),  # a development build's PY_VERSION
        (" 3.11.7 \n", "3.11.7"),
        ("", None),
        (None, None),
        ("python", None),
    ],
)
def test_versions_are_normalised(text: str | None, expected: str | None) -> None:
    assert normalize_version(text) == expected


@pytest.mark.parametrize(
    ("writer", "version", "has_pip"),
    [("venv", "3.12.4", True), ("uv", "3.12.4", False), ("virtualenv", "3.12.4", True)],
)
def test_a_venv_reads_the_same_from_its_root_and_from_its_python(
    tmp_path: Path, writer: str, version: str, has_pip: bool
) -> None:
    root = layouts.posix_venv(tmp_path / "proj" / ".venv", version, writer=writer)
    run = FakeRun()
    by_root = environment_from_path(root, platform=LINUX, run=run)
    by_exe = environment_from_path(root / "bin" / "python", platform=LINUX, run=run)
    by_exe3 = environment_from_path(root / "bin" / "python3.12", platform=LINUX, run=run)
    assert by_root.root == root
    assert by_root.python == root / "bin" / "python"
    assert by_root.kind is EnvKind.VENV
    assert by_root.python_version == version
    assert by_root.has_pip is has_pip
    # lib64 -> lib: one folder, not two
    assert by_root.site_packages == (root / "lib" / "python3.12" / "site-packages",)
    assert by_root.platform is LINUX
    assert by_exe == by_root
    assert by_exe3.root == root
    assert by_exe3.python == root / "bin" / "python3.12"
    assert run.calls == []  # every version came from a file


def test_a_venv_is_never_confused_with_the_python_it_links_to(tmp_path: Path) -> None:
    base = layouts.posix_install(tmp_path / "base", "3.11.9")
    root = layouts.posix_venv(tmp_path / "env", "3.11.9", base=base / "bin" / "python3.11")
    env = environment_from_path(root / "bin" / "python", platform=LINUX, run=None)
    assert env.root == root
    assert env.python == root / "bin" / "python"
    assert env.site_packages == (root / "lib" / "python3.11" / "site-packages",)


def test_the_interpreter_is_started_only_when_no_file_gives_the_full_version(tmp_path: Path) -> None:
    root = layouts.posix_venv(tmp_path / "old", "3.12.4", writer="none")
    assert environment_from_path(root, platform=LINUX, run=None).python_version == "3.12"
    run = FakeRun({"python": completed("3.12.4\n")})
    env = environment_from_path(root, platform=LINUX, run=run)
    assert env.python_version == "3.12.4"
    assert run.calls == [
        (str(root / "bin" / "python"), "-c", "import platform; print(platform.python_version())")
    ]


def test_a_failing_interpreter_leaves_the_version_from_files(tmp_path: Path) -> None:
    root = layouts.posix_venv(tmp_path / "old", "3.12.4", writer="none")
    assert read(root, FakeRun({"python": completed("", returncode=1)})).python_version == "3.12"
    assert read(root, FakeRun({"python": OSError(8, "Exec format error")})).python_version == "3.12"


def test_a_venv_whose_base_python_is_gone_is_still_an_environment(tmp_path: Path) -> None:
    root = layouts.posix_venv(tmp_path / "env", "3.10.14", base=tmp_path / "removed" / "python3.10")
    env = environment_from_path(root, platform=LINUX, run=None)
    assert env.python == root / "bin" / "python"
    assert env.python_version == "3.10.14"


@pytest.mark.parametrize("pip_as", ["package", "dist-info"])
def test_pip_is_found_as_a_package_or_as_its_metadata(tmp_path: Path, pip_as: str) -> None:
    root = layouts.posix_venv(tmp_path / "env", pip=False)
    layouts.fill_site_packages(root / "lib" / "python3.12" / "site-packages", pip=True, pip_as=pip_as)
    assert environment_from_path(root, platform=LINUX, run=None).has_pip


def test_a_conda_prefix_reads_its_python_record(tmp_path: Path) -> None:
    root = layouts.conda_prefix(tmp_path / "miniforge3" / "envs" / "ml", "3.11.9")
    env = environment_from_path(root, platform=LINUX, run=None)
    assert env.kind is EnvKind.CONDA
    assert env.python_version == "3.11.9"  # not python_abi-3.12 or python-dateutil-2.9.0
    assert env.python == root / "bin" / "python"
    assert env.site_packages == (root / "lib" / "python3.11" / "site-packages",)
    assert env.has_pip
    assert environment_from_path(root / "bin" / "python3.11", platform=LINUX, run=None).root == root


def test_a_conda_environment_without_python_is_refused_with_that_reason(tmp_path: Path) -> None:
    root = layouts.conda_prefix(tmp_path / "envs" / "r-only", None)
    with pytest.raises(NotAnEnvironmentError, match="conda environment without Python"):
        environment_from_path(root, platform=LINUX)


def test_a_pyenv_version_reads_its_patchlevel(tmp_path: Path) -> None:
    pyenv = layouts.pyenv_root(tmp_path, ["3.12.1"])
    root = pyenv / "versions" / "3.12.1"
    env = environment_from_path(root, platform=LINUX, run=None)
    assert env.kind is EnvKind.PYENV
    assert env.python_version == "3.12.1"
    assert env.python == root / "bin" / "python3"  # a plain install: python3, never a python2 `python`
    assert env.site_packages == (root / "lib" / "python3.12" / "site-packages",)


def test_a_pyenv_folder_name_gives_the_version_when_headers_are_missing(tmp_path: Path) -> None:
    root = layouts.posix_install(tmp_path / ".pyenv" / "versions" / "3.13.0", "3.13.0", with_patchlevel=False)
    env = environment_from_path(root, platform=LINUX, run=None)
    assert (env.kind, env.python_version) == (EnvKind.PYENV, "3.13.0")


def test_a_symlink_to_an_interpreter_leads_to_its_install(tmp_path: Path) -> None:
    pyenv = layouts.pyenv_root(tmp_path, ["3.12.1"])
    target = pyenv / "versions" / "3.12.1" / "bin" / "python3.12"
    shortcut = layouts.link(tmp_path / "bin" / "python3.12", target)
    env = environment_from_path(shortcut, platform=LINUX, run=None)
    assert env.root == pyenv / "versions" / "3.12.1"
    assert env.python == target
    assert env.kind is EnvKind.PYENV


def test_a_uv_managed_python_is_recognised_by_its_folder(tmp_path: Path) -> None:
    folder = layouts.uv_pythons(tmp_path / "uv" / "python", ["cpython-3.12.4-linux-x86_64-gnu"])
    env = environment_from_path(folder / "cpython-3.12-linux-x86_64-gnu", platform=LINUX, run=None)
    assert env.root == folder / "cpython-3.12.4-linux-x86_64-gnu"  # the minor link, resolved
    assert (env.kind, env.python_version) == (EnvKind.UV, "3.12.4")


def test_a_uv_folder_name_gives_a_prerelease_version(tmp_path: Path) -> None:
    root = layouts.posix_install(
        tmp_path / "cpython-3.14.0rc2-linux-x86_64-gnu", "3.14.0rc2", with_patchlevel=False
    )
    assert environment_from_path(root, platform=LINUX, run=None).python_version == "3.14.0rc2"


def test_a_system_prefix_reads_debian_dist_packages(tmp_path: Path) -> None:
    usr = tmp_path / "usr"
    layouts.stub_exe(usr / "bin" / "python3.11")
    layouts.link(usr / "bin" / "python3", "python3.11")
    (usr / "lib" / "python3.11").mkdir(parents=True)
    (usr / "lib" / "python3.11" / "os.py").write_text("# stdlib\n")
    layouts.fill_site_packages(usr / "lib" / "python3" / "dist-packages", pip=True)
    layouts.patchlevel(usr / "include" / "python3.11" / "patchlevel.h", "3.11.2")
    # Debian's /usr/local: dist-packages only, and a python3 link to /usr/bin/python3.
    (usr / "local" / "lib" / "python3.11" / "dist-packages").mkdir(parents=True)
    layouts.link(usr / "local" / "bin" / "python3", usr / "bin" / "python3")
    assert environment_from_path(usr / "local" / "bin" / "python3", platform=LINUX, run=None).root == usr
    env = environment_from_path(usr / "bin" / "python3", platform=LINUX, run=None)
    assert (env.root, env.kind, env.python_version) == (usr, EnvKind.SYSTEM, "3.11.2")
    assert env.python == usr / "bin" / "python3"
    assert env.site_packages == (usr / "lib" / "python3" / "dist-packages",)
    assert env.has_pip


def test_two_pythons_in_one_prefix_read_the_one_named(tmp_path: Path) -> None:
    prefix = tmp_path / "local"
    layouts.posix_install(prefix, "3.11.9")
    layouts.stub_exe(prefix / "bin" / "python3.12")
    layouts.fill_site_packages(prefix / "lib" / "python3.12" / "site-packages", pip=False)
    layouts.patchlevel(prefix / "include" / "python3.12" / "patchlevel.h", "3.12.3")
    env = environment_from_path(prefix / "bin" / "python3.12", platform=LINUX, run=None)
    assert env.python_version == "3.12.3"
    assert env.site_packages == (prefix / "lib" / "python3.12" / "site-packages",)
    assert not env.has_pip
    # python3 links to python3.11: the link's target names the version.
    assert environment_from_path(prefix, platform=LINUX, run=None).python_version == "3.11.9"


def test_free_threaded_lib_folders_belong_to_their_version(tmp_path: Path) -> None:
    root = tmp_path / "ft"
    layouts.pyvenv_cfg(root, ["home = /opt/py/bin", "version_info = 3.13.1"])
    layouts.stub_exe(root / "bin" / "python")
    layouts.fill_site_packages(root / "lib" / "python3.13t" / "site-packages", pip=True)
    env = environment_from_path(root, platform=LINUX, run=None)
    assert env.site_packages == (root / "lib" / "python3.13t" / "site-packages",)


@pytest.mark.parametrize("name", ["empty", "file.txt", "missing"])
def test_what_is_not_an_environment_says_so_in_one_sentence(tmp_path: Path, name: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(NotAnEnvironmentError) as caught:
        environment_from_path(tmp_path / name, platform=LINUX)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / name))
    assert "is not a Python environment" in message
    assert "\n" not in message
    if name != "missing":
        assert "no pyvenv.cfg, conda-meta or python executable found" in message


def test_a_project_folder_points_at_its_venv(tmp_path: Path) -> None:
    layouts.posix_venv(tmp_path / "proj" / ".venv")
    with pytest.raises(NotAnEnvironmentError) as caught:
        environment_from_path(tmp_path / "proj", platform=LINUX)
    assert caught.value.hint == f"did you mean {tmp_path / 'proj' / '.venv'}?"


def test_a_folder_that_cannot_be_listed_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = layouts.posix_venv(tmp_path / "locked")
    real_iterdir = Path.iterdir

    def iterdir(self: Path) -> Iterator[Path]:
        if self == root:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    with pytest.raises(UnreadableError) as caught:
        environment_from_path(root, platform=LINUX)
    assert str(caught.value) == f"cannot read the environment at {root}: permission denied on {root}"


def test_the_home_shortcut_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    root = layouts.posix_venv(tmp_path / "env")
    assert environment_from_path(Path("~/env"), platform=LINUX, run=None).root == root
