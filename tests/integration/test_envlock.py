"""The per-environment fix lock, with real processes, real links and, where possible, a real second user."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchdoctor.service.install.envlock import (
    LOCK_DIR_VAR,
    EnvironmentLockedError,
    LockUnsafeError,
    env_lock,
    folder_is_safe,
    in_env_lock_path,
    lock_path,
    machine_lock_dir,
    machine_lock_path,
    parse_owner,
)
from torchdoctor.service.models import EnvKind, Platform, PythonEnv

REPO = Path(__file__).resolve().parents[2]

HOLD_LOCK = """
import sys, time
from pathlib import Path
from torchdoctor.service.install.envlock import env_lock
from torchdoctor.service.models import EnvKind, Platform, PythonEnv

root = Path(sys.argv[1])
env = PythonEnv(root, root / "bin" / "python", None, EnvKind.VENV, False, (), Platform.LINUX)
with env_lock(env):
    print("locked", flush=True)
    time.sleep(120)
"""


def plain_env(root: Path) -> PythonEnv:
    root.mkdir(parents=True, exist_ok=True)
    return PythonEnv(root, root / "bin" / "python", None, EnvKind.VENV, False, (), Platform.LINUX)


def hold(
    root: Path, *, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [*prefix, sys.executable, "-c", HOLD_LOCK, str(root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "locked":
        child.kill()
        _, err = child.communicate(timeout=30)
        pytest.fail(f"the holder did not lock: {line!r} {err}")
    return child


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        child.kill()
        child.communicate(timeout=30)


def test_a_lock_held_by_another_process_is_refused_at_once_naming_it(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    env = plain_env(tmp_path / "proj" / ".venv")
    child = hold(env.root)
    holders.append(child)
    with pytest.raises(EnvironmentLockedError) as info, env_lock(env):
        pytest.fail("the lock should not have been acquired")
    assert str(info.value) == (
        f"another torchdoctor fix (pid {child.pid}) is already changing {env.root}; wait for it to finish"
    )
    assert info.value.holder_pid == child.pid
    assert info.value.exit_code == 1


def test_the_lock_is_free_once_its_holder_is_killed(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    env = plain_env(tmp_path / "venv")
    child = hold(env.root)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=30)
    with env_lock(env):
        assert lock_path(env).exists()
    with env_lock(env):  # released, so it can be taken again
        pass


def test_a_symlinked_path_and_the_real_one_exclude_each_other(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    real = plain_env(tmp_path / "real")
    (tmp_path / "alias").symlink_to(real.root)
    alias = PythonEnv(
        tmp_path / "alias", tmp_path / "alias/bin/python", None, EnvKind.VENV, False, (), Platform.LINUX
    )
    assert lock_path(real) == lock_path(alias)
    assert lock_path(real) != lock_path(plain_env(tmp_path / "other"))
    holders.append(hold(alias.root))
    with pytest.raises(EnvironmentLockedError), env_lock(real):
        pytest.fail("locked through the link, so the real path must be refused")


def test_the_environment_s_own_lock_file_excludes_without_the_machine_wide_one(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    # Two containers, or a bind mount, see different machine-wide folders but the same files in the
    # environment: each process here gets a lock folder of its own, so only the in-env lock is shared.
    env = plain_env(tmp_path / "venv")
    other_folder = tmp_path / "other-machine"
    other_folder.mkdir()
    holders.append(hold(env.root, env={**os.environ, LOCK_DIR_VAR: str(other_folder)}))
    assert (env.root / ".torchdoctor" / "fix.lock").is_file()
    with pytest.raises(EnvironmentLockedError), env_lock(env):
        pytest.fail("the in-environment lock is held")


def test_the_lock_file_names_the_holder_and_nothing_else(tmp_path: Path) -> None:
    env = plain_env(tmp_path / "venv")
    with env_lock(env):
        for path in (machine_lock_path(env), in_env_lock_path(env)):
            assert path is not None
            record = json.loads(path.read_text())
            assert set(record) == {"pid", "started", "program"}
            assert record["pid"] == os.getpid() and record["program"] == "torchdoctor fix"
            assert str(tmp_path) not in path.read_text()  # no paths, no argv, no URLs
    # Released: the record is cleared, so a later refusal never names a finished fix.
    assert in_env_lock_path(env).read_text() == ""


def test_a_planted_symlink_is_never_followed(tmp_path: Path) -> None:
    env = plain_env(tmp_path / "venv")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = machine_lock_path(env)
    assert target is not None
    target.symlink_to(victim)
    with pytest.raises(LockUnsafeError), env_lock(env):
        pytest.fail("must not lock through a link")
    assert victim.read_text() == "precious"


def test_a_hard_linked_lock_file_is_refused(tmp_path: Path) -> None:
    env = plain_env(tmp_path / "venv")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = machine_lock_path(env)
    assert target is not None
    os.link(victim, target)
    with pytest.raises(LockUnsafeError), env_lock(env):
        pytest.fail("must not write into a file with another name")
    assert victim.read_text() == "precious"


@pytest.mark.parametrize(
    ("mode", "owner", "safe"),
    [
        (stat.S_IFDIR | 0o1777, 0, True),  # /tmp, /run/lock
        (stat.S_IFDIR | 0o0777, 0, False),  # anyone could swap a lock file
        (stat.S_IFDIR | 0o0755, 0, True),
        (stat.S_IFDIR | 0o0700, 1000, True),  # our own folder (uid 1000 below)
        (stat.S_IFDIR | 0o1777, 1234, False),  # another user's folder
        (stat.S_IFREG | 0o0644, 0, False),
    ],
)
def test_which_lock_folders_are_safe(mode: int, owner: int, safe: bool) -> None:
    assert folder_is_safe(mode, owner, 1000) is safe


def test_the_default_lock_folder_is_fixed_and_machine_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOCK_DIR_VAR)
    monkeypatch.setenv("TMPDIR", "/nonexistent-per-user-tmp")  # never used: users may differ
    folder = machine_lock_dir()
    assert folder is not None and str(folder) in ("/run/lock", "/var/lock", "/tmp")  # noqa: S108


def test_an_unsafe_lock_folder_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)  # world-writable without the sticky bit
    monkeypatch.setenv(LOCK_DIR_VAR, str(open_folder))
    env = plain_env(tmp_path / "venv")
    assert machine_lock_dir() is None
    with env_lock(env):  # the environment's own lock still excludes
        assert not list(open_folder.iterdir())
        assert in_env_lock_path(env).is_file()


def test_owner_records_are_read_defensively() -> None:
    assert parse_owner(b"") is None
    assert parse_owner(b"\xff") is None
    assert parse_owner(b'{"pid": "1"}') is None
    owner = parse_owner(b'{"pid": 7, "started": 1.5, "program": "torchdoctor fix"}')
    assert owner is not None and owner.pid == 7 and owner.started == 1.5


NOBODY = 65534


def _drop_to_nobody() -> tuple[str, ...]:
    if os.geteuid() != 0:
        pytest.skip("needs root, to run a second process as another user")
    tool = shutil.which("setpriv")
    if tool is None:
        pytest.skip("needs setpriv to run a process as another user")
    prefix = (tool, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    # The other user runs this checkout's interpreter and package: a checkout under a private
    # folder (a 0700 mktemp dir, a home folder) is out of its reach, and the test cannot run there.
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import torchdoctor.service.install.envlock"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        pytest.skip(
            f"user {NOBODY} cannot run this checkout's torchdoctor (a folder above it is private): {last}"
        )
    return prefix


@pytest.fixture
def shared_lock_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A sticky, world-writable folder like /run/lock, that another user can reach."""
    folder = Path(tempfile.mkdtemp(prefix="td-locks-", dir="/tmp"))  # reachable by nobody, unlike tmp_path
    folder.chmod(0o1777)
    monkeypatch.setenv(LOCK_DIR_VAR, str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def shared_env() -> Iterator[PythonEnv]:
    """An environment root owns, which the other user can see but not write into."""
    root = Path(tempfile.mkdtemp(prefix="td-env-", dir="/tmp"))
    root.chmod(0o755)
    yield plain_env(root)
    shutil.rmtree(root, ignore_errors=True)


def test_root_and_another_user_exclude_each_other(
    shared_lock_dir: Path, shared_env: PythonEnv, holders: list[subprocess.Popen[str]]
) -> None:
    as_nobody = _drop_to_nobody()
    # The other user holds it: it cannot write into the environment, so only the machine-wide lock.
    child = hold(shared_env.root, prefix=as_nobody)
    holders.append(child)
    lock = machine_lock_path(shared_env)
    assert lock is not None and lock.stat().st_uid == NOBODY
    with pytest.raises(EnvironmentLockedError) as info, env_lock(shared_env):
        pytest.fail("root must be refused while the other user's fix runs")
    assert info.value.holder_pid == child.pid
    child.kill()
    child.communicate(timeout=30)
    holders.clear()

    # Root holds it: the other user may open root's lock file only read-only, which locks as well.
    with env_lock(shared_env):
        code = (
            "import sys\n"
            "from pathlib import Path\n"
            "from torchdoctor.service.install.envlock import env_lock, EnvironmentLockedError\n"
            "from torchdoctor.service.models import EnvKind, Platform, PythonEnv\n"
            "root = Path(sys.argv[1])\n"
            "env = PythonEnv(root, root / 'bin/python', None, EnvKind.VENV, False, (), Platform.LINUX)\n"
            "try:\n"
            "    with env_lock(env):\n"
            "        print('acquired')\n"
            "except EnvironmentLockedError as exc:\n"
            "    print('refused', exc.holder_pid)\n"
        )
        done = subprocess.run(
            [*as_nobody, sys.executable, "-c", code, str(shared_env.root)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.stdout.split() == ["refused", str(os.getpid())], done.stderr


def test_root_s_fix_leaves_a_user_s_environment_the_user_s(
    shared_lock_dir: Path, shared_env: PythonEnv
) -> None:
    as_nobody = _drop_to_nobody()
    os.chown(shared_env.root, NOBODY, NOBODY)
    with env_lock(shared_env):
        pass
    folder = shared_env.root / ".torchdoctor"
    assert (folder.stat().st_uid, in_env_lock_path(shared_env).stat().st_uid) == (NOBODY, NOBODY)
    # The user's own fix can still take both locks and write its record beside them.
    code = (
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "from torchdoctor.service.install.envlock import env_lock, in_env_lock_path\n"
        "from torchdoctor.service.models import EnvKind, Platform, PythonEnv\n"
        "root = Path(sys.argv[1])\n"
        "env = PythonEnv(root, root / 'bin/python', None, EnvKind.VENV, False, (), Platform.LINUX)\n"
        "with env_lock(env):\n"
        "    print(json.loads(in_env_lock_path(env).read_text())['pid'] == os.getpid())\n"
    )
    done = subprocess.run(
        [*as_nobody, sys.executable, "-c", code, str(shared_env.root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "True", done.stderr


def test_with_no_place_for_a_lock_the_fix_says_so(shared_env: PythonEnv) -> None:
    as_nobody = _drop_to_nobody()
    unsafe = Path(tempfile.mkdtemp(prefix="td-open-", dir="/tmp"))
    unsafe.chmod(0o777)  # no sticky bit: not used
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from torchdoctor.service.install.envlock import env_lock, LockUnavailableError\n"
        "from torchdoctor.service.models import EnvKind, Platform, PythonEnv\n"
        "root = Path(sys.argv[1])\n"
        "env = PythonEnv(root, root / 'bin/python', None, EnvKind.VENV, False, (), Platform.LINUX)\n"
        "try:\n"
        "    with env_lock(env):\n"
        "        print('acquired')\n"
        "except LockUnavailableError as exc:\n"
        "    print(exc.code)\n"
    )
    try:
        done = subprocess.run(
            [*as_nobody, sys.executable, "-c", code, str(shared_env.root)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, LOCK_DIR_VAR: str(unsafe)},
        )
    finally:
        shutil.rmtree(unsafe, ignore_errors=True)
    assert done.stdout.strip() == "lock-unavailable", done.stderr
