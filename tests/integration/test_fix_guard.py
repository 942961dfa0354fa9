"""The real `torchdoctor fix` against the guards: system folders, and two fixes racing for one env."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.integration.test_fix_cli import _hanging_family, _wait_for, cpu_env, fix, fix_argv, installed
from tests.support.envs import tree_digest
from tests.support.index_server import IndexServer, publish
from tests.support.scenarios import family
from torchdoctor.service.models import EnvKind, PythonEnv


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, NO_COLOR="1"),
    )


@pytest.mark.parametrize(
    ("command", "path", "shown"),
    [
        ("fix", "/", "/: it is the root of the file system"),
        ("fix", "/usr", "/usr: it is a system folder"),
        ("plan", "/usr/local", "/usr/local: it is a system folder"),
    ],
)
def test_a_system_folder_is_refused_before_anything_is_locked(
    command: str, path: str, shown: str, td_dirs: dict[str, Path]
) -> None:
    extra = ["--yes"] if command == "fix" else []
    done = run_cli(command, "--env", path, "--index-base", "http://127.0.0.1:9/whl", *extra)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        f"torchdoctor: torchdoctor will not change {shown}, not a Python environment"
    )
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not list(Path(os.environ["TORCHDOCTOR_LOCK_DIR"]).iterdir())
    assert not list(td_dirs["log"].iterdir())


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs a system python in /usr")
def test_the_system_python_is_refused_as_the_folder_it_lives_in() -> None:
    done = run_cli("fix", "--env", "/usr/bin/python3", "--yes", "--index-base", "http://127.0.0.1:9/whl")
    assert done.returncode == 2, done.stderr
    assert "torchdoctor will not change /usr: it is a system folder" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and symlinks")
def test_two_fixes_racing_through_a_symlinked_path_exclude_each_other(tmp_path: Path) -> None:
    root = tmp_path / "index"
    marker = _hanging_family(tmp_path, root)
    env = cpu_env(tmp_path / "venv")
    before = tree_digest(env.root)
    alias = tmp_path / "alias"
    alias.symlink_to(env.root)
    aliased = PythonEnv(alias, alias / "bin" / "python", None, EnvKind.VENV, False, (), env.platform)
    with IndexServer(root) as server:
        first = subprocess.Popen(
            fix_argv(tmp_path, env, server.url, "--yes", "--no-bench"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _wait_for(marker, first)  # the first fix holds the lock, verifying a build that hangs
            second = subprocess.run(
                fix_argv(tmp_path, aliased, server.url, "--yes", "--no-bench"),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            first.send_signal(signal.SIGINT)
            out, err = first.communicate(timeout=60)
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
                first.communicate(timeout=30)
    assert second.returncode == 1, second.stderr
    assert f"another torchdoctor fix (pid {first.pid}) is already changing" in second.stderr
    assert first.returncode == 1, out + err
    assert "restored exactly" in err
    assert tree_digest(env.root) == before


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_fix_killed_alone_mid_verification_leaves_nothing_that_blocks_the_next(
    tmp_path: Path, td_dirs: dict[str, Path]
) -> None:
    # SIGKILL to the fix alone (not its group): its verification child, a python of the environment
    # hanging in `import torch`, survives it. The next fix knows it for the dead fix's own child,
    # ends it, and restores, instead of refusing because "python is running from this environment".
    bad_root, good_root = tmp_path / "bad-index", tmp_path / "good-index"
    marker = _hanging_family(tmp_path, bad_root)
    for variant in ("cpu", "cu128"):
        publish(good_root, family(variant), variant)
    env = cpu_env(tmp_path / "venv")
    with IndexServer(bad_root) as bad:
        first = subprocess.Popen(
            fix_argv(tmp_path, env, bad.url, "--yes", "--no-bench"),
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for(marker, first)
            verifying = [p.pid for p in psutil.Process(first.pid).children(recursive=True)]
            assert verifying
            os.kill(first.pid, signal.SIGKILL)
            first.communicate(timeout=30)
            assert any(psutil.pid_exists(pid) for pid in verifying)  # the orphan still runs
            with IndexServer(good_root) as good:
                again = fix(tmp_path, env, good.url, "--yes", "--no-bench")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(first.pid, signal.SIGKILL)
    assert again.returncode == 0, again.stderr
    assert "Stopping what an interrupted fix left running: python" in again.stderr
    assert "An earlier fix was interrupted; restored torch 2.7.1+cpu first" in again.stderr
    assert installed(env) == ("2.7.1+cu128", "0.22.1+cu128")
