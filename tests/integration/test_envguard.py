"""The per-environment lock and the "is anything running from it?" check, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.envs import make_venv
from torchdoctor.service.install.envguard import (
    EnvironmentInUseError,
    EnvironmentLockedError,
    ensure_not_in_use,
    env_lock,
    lock_path,
    processes_using,
)
from torchdoctor.service.models import EnvKind, Platform, PythonEnv

REPO = Path(__file__).resolve().parents[2]

HOLD_LOCK = """
import sys, time
from pathlib import Path
from torchdoctor.service.install.envguard import env_lock
from torchdoctor.service.models import EnvKind, Platform, PythonEnv

root = Path(sys.argv[1])
env = PythonEnv(root, root / "bin" / "python", None, EnvKind.VENV, False, (), Platform.LINUX)
with env_lock(env):
    print("locked", flush=True)
    time.sleep(120)
"""


def plain_env(root: Path) -> PythonEnv:
    return PythonEnv(root, root / "bin" / "python", None, EnvKind.VENV, False, (), Platform.LINUX)


def wait_for_line(child: subprocess.Popen[str], expected: str) -> None:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip() == expected, line


@pytest.fixture
def lock_holder(tmp_path: Path) -> Iterator[tuple[PythonEnv, subprocess.Popen[str]]]:
    env = plain_env(tmp_path / "proj" / ".venv")
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(env.root)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        wait_for_line(child, "locked")
        yield env, child
    finally:
        child.kill()
        child.wait(timeout=30)


def test_a_lock_held_by_another_process_is_refused_clearly(
    lock_holder: tuple[PythonEnv, subprocess.Popen[str]],
) -> None:
    env, child = lock_holder
    began = time.monotonic()
    with pytest.raises(EnvironmentLockedError) as info, env_lock(env):
        pytest.fail("the lock should not have been acquired")
    assert time.monotonic() - began < 2  # refused at once, no waiting
    assert str(info.value) == (
        f"another torchdoctor fix (pid {child.pid}) is already changing {env.root}; wait for it to finish"
    )
    assert info.value.holder_pid == child.pid
    assert info.value.exit_code == 1


def test_the_lock_is_free_once_its_holder_is_killed(
    lock_holder: tuple[PythonEnv, subprocess.Popen[str]],
) -> None:
    env, child = lock_holder
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    with env_lock(env):
        assert lock_path(env).exists()


def test_one_lock_per_environment_however_it_is_named(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    assert lock_path(plain_env(real)) == lock_path(plain_env(tmp_path / "alias"))
    assert lock_path(plain_env(real)) != lock_path(plain_env(tmp_path / "other"))
    with env_lock(plain_env(real)):
        owner = lock_path(plain_env(real)).with_suffix(".owner.json")
        assert f'"pid": {os.getpid()}' in owner.read_text()
    assert not owner.exists()
    with env_lock(plain_env(real)):  # released, so it can be taken again
        pass


@pytest.fixture
def venv(tmp_path: Path) -> PythonEnv:
    return make_venv(tmp_path / "venv")


def start(argv: list[str]) -> subprocess.Popen[str]:
    child = subprocess.Popen([*argv], stdout=subprocess.PIPE, text=True)
    wait_for_line(child, "ready")
    return child


SLEEP = "import time; print('ready', flush=True); time.sleep(120)"


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        child.kill()
        child.wait(timeout=30)


@pytest.mark.slow
def test_a_python_running_from_the_venv_is_named(
    venv: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    child = start([str(venv.python), "-c", SLEEP])
    children.append(child)

    found = processes_using(venv)

    assert [p.pid for p in found] == [child.pid]
    with pytest.raises(EnvironmentInUseError) as info:
        ensure_not_in_use(venv)
    message = str(info.value)
    assert message.startswith("python") and f"(pid {child.pid}: python -c import time;" in message
    assert message.endswith("is running from this environment; close it first")

    child.kill()
    child.wait(timeout=30)
    assert processes_using(venv) == []
    ensure_not_in_use(venv)


@pytest.mark.slow
def test_a_process_with_a_file_of_the_env_open_is_named(
    venv: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    # The base interpreter (not the venv's) holding a file of the environment open: only the
    # open-files check can tie it to the environment.
    held = venv.site_packages[0] / "held.bin"
    held.write_bytes(b"x")
    code = f"f = open({str(held)!r}, 'rb'); {SLEEP}"
    child = start([sys.executable, "-c", code])
    children.append(child)
    other = start([sys.executable, "-c", SLEEP])  # unrelated: must not be named
    children.append(other)

    found = processes_using(venv)

    assert [p.pid for p in found] == [child.pid]
    assert found[0].reason == f"it has {held} open"


@pytest.mark.slow
def test_an_installer_working_on_the_env_is_named(
    venv: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    # What `uv pip install --python ENV_PY` looks like in the process list (left by a killed fix).
    child = start([sys.executable, "-c", SLEEP, "--python", str(venv.python)])
    children.append(child)
    (found,) = processes_using(venv)
    assert found.pid == child.pid and found.reason == "an installer is working on the environment"


@pytest.mark.slow
def test_our_own_process_is_never_named(venv: PythonEnv) -> None:
    held = venv.site_packages[0] / "mine.bin"
    held.write_bytes(b"x")
    with held.open("rb"):
        assert os.getpid() not in [p.pid for p in processes_using(venv)]
