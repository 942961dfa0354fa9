"""Real environments, read from their files, checked against what their own interpreters say.

Made once per module: a `python -m venv` (with pip) and `uv venv`s (no pip, `version_info` in
pyvenv.cfg) for each Python this machine has (pyenv's 3.10, 3.12, 3.13 where present). The truth
comes from running each interpreter: `platform.python_version()`, `sysconfig`'s purelib, `sys.prefix`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.envs import uv_bin
from torchdoctor.service.config import Settings
from torchdoctor.service.envs.discover import discover_environments, environment_from_path
from torchdoctor.service.models import EnvKind

pytestmark = pytest.mark.slow

_TRUTH = (
    "import json, platform, sys, sysconfig, importlib.util;"
    "print(json.dumps({'version': platform.python_version(), 'prefix': sys.prefix,"
    " 'purelib': sysconfig.get_paths()['purelib'], 'pip': importlib.util.find_spec('pip') is not None}))"
)


@dataclass(frozen=True)
class Truth:
    version: str
    prefix: Path
    purelib: Path
    pip: bool


def truth(python: Path) -> Truth:
    out = subprocess.run(
        [str(python), "-c", _TRUTH], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    data = json.loads(out)
    return Truth(data["version"], Path(data["prefix"]), Path(data["purelib"]), data["pip"])


def real_python(minor: str) -> Path | None:
    """An installed (not shimmed) python<minor>: pyenv's versions first, then PATH."""
    for found in sorted((Path.home() / ".pyenv" / "versions").glob(f"{minor}.*/bin/python{minor}")):
        return found
    which = shutil.which(f"python{minor}")
    if which and "shims" not in Path(which).parts:
        return Path(which)
    return None


PYTHONS = {m: p for m in ("3.10", "3.12", "3.13") if (p := real_python(m)) is not None}


@dataclass(frozen=True)
class RealEnvs:
    home: Path
    pip_venv: Path
    uv_venvs: dict[str, Path]

    @property
    def all(self) -> list[Path]:
        return [self.pip_venv, *self.uv_venvs.values()]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> RealEnvs:
    home = tmp_path_factory.mktemp("real-home")
    pip_venv = home / "proj" / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(pip_venv)], check=True, timeout=300)
    uv_venvs: dict[str, Path] = {}
    for minor, python in PYTHONS.items():
        target = home / "code" / f"uv-{minor}" / ".venv"
        subprocess.run(
            [uv_bin(), "venv", "--quiet", "--no-config", "--python", str(python), str(target)],
            check=True,
            timeout=120,
            capture_output=True,
        )
        uv_venvs[minor] = target
    return RealEnvs(home, pip_venv, uv_venvs)


def test_every_real_venv_reads_as_its_interpreter_says(real: RealEnvs) -> None:
    for root in real.all:
        env = environment_from_path(root, run=None)  # files only
        said = truth(root / "bin" / "python")
        assert env.root == said.prefix.resolve() == root.resolve()
        assert env.kind is EnvKind.VENV
        assert env.python_version == said.version
        assert env.site_packages == (said.purelib,)
        assert env.has_pip is said.pip
    assert environment_from_path(real.pip_venv).has_pip is True
    assert all(not environment_from_path(v).has_pip for v in real.uv_venvs.values())


def test_each_python_link_of_a_real_venv_names_the_same_environment(real: RealEnvs) -> None:
    for root in real.all:
        by_root = environment_from_path(root, run=None)
        for link in sorted((root / "bin").glob("python*")):
            by_link = environment_from_path(link, run=None)
            assert by_link.root == by_root.root, link
            assert by_link.python == link


def test_discovery_finds_every_real_venv_in_a_home_folder(real: RealEnvs) -> None:
    found = discover_environments(Settings(), home=real.home, environ={"PATH": ""})
    assert [e.root for e in found.environments] == sorted(p.resolve() for p in real.all)
    assert found.notes == ()


@pytest.mark.skipif("3.12" not in PYTHONS, reason="needs a real Python 3.12")
def test_the_interpreter_is_asked_only_for_named_environments(tmp_path: Path) -> None:
    root = tmp_path / "home" / "old"
    subprocess.run(
        [uv_bin(), "venv", "--quiet", "--no-config", "--python", str(PYTHONS["3.12"]), str(root)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    cfg = root / "pyvenv.cfg"
    cfg.write_text(
        "".join(line for line in cfg.read_text().splitlines(keepends=True) if "version" not in line)
    )
    full = truth(root / "bin" / "python").version
    assert environment_from_path(root).python_version == full  # named: the interpreter answers
    assert environment_from_path(root, run=None).python_version == "3.12"  # files only: lib/python3.12
    found = discover_environments(Settings(), home=tmp_path / "home", environ={"PATH": ""})
    assert [e.python_version for e in found.environments] == ["3.12"]
    found = discover_environments(
        Settings(environments=(root,)), home=tmp_path / "home", environ={"PATH": ""}
    )
    assert [e.python_version for e in found.environments] == [full]


@pytest.mark.parametrize("minor", sorted(PYTHONS))
def test_installed_pythons_read_as_their_interpreters_say(minor: str) -> None:
    python = PYTHONS[minor]
    env = environment_from_path(python, run=None)
    said = truth(python)
    assert env.root == said.prefix.resolve()
    assert env.python_version == said.version
    assert said.purelib in env.site_packages
    assert env.has_pip is said.pip
    if ".pyenv" in python.parts:
        assert env.kind is EnvKind.PYENV


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system Python here")
def test_the_system_python_reads_as_it_says() -> None:
    env = environment_from_path(Path("/usr/bin/python3"), run=None)
    said = truth(Path("/usr/bin/python3"))
    assert env.root == said.prefix.resolve()
    assert env.kind is EnvKind.SYSTEM
    assert env.python_version == said.version
    assert said.purelib in env.site_packages or not said.purelib.exists()
