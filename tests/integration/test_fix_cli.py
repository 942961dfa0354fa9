"""`torchdoctor fix` end to end: real venvs, real uv and pip, a real local index, the real CLI.

Every failure path must leave the environment exactly as it was, proven by a byte-for-byte digest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.envs import install_standins, make_venv, tree_digest
from tests.support.index_server import IndexServer, publish
from tests.support.scenarios import family
from tests.support.standin import StandIn
from torchdoctor.agent.report.local import parse_fix_log
from torchdoctor.service.envs.builds import read_build
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.install.envlock import lock_path
from torchdoctor.service.models import PythonEnv

pytestmark = pytest.mark.slow

RTX_4090 = {
    "driver_version": "572.16",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}],
}
KN = load_knowledge(Path("/nonexistent"))


@pytest.fixture
def index(tmp_path: Path) -> Iterator[IndexServer]:
    root = tmp_path / "index"
    for variant in ("cpu", "cu126", "cu128"):
        publish(root, family(variant), variant)
    with IndexServer(root) as server:
        yield server


def cpu_env(path: Path, *, seed_pip: bool = False) -> PythonEnv:
    env = make_venv(path, seed_pip=seed_pip)
    install_standins(env, family("cpu"))
    return env


def installed(env: PythonEnv) -> tuple[str | None, str | None]:
    reading = read_build(env, KN)
    assert reading is not None
    return reading.build.version, reading.build.torchvision


def fix_argv(tmp_path: Path, env: PythonEnv, base: str, *extra: str) -> list[str]:
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(RTX_4090))
    return [
        sys.executable, "-m", "torchdoctor.agent", "fix", "--env", str(env.root),
        "--hardware", str(hw), "--index-base", base, *extra,
    ]  # fmt: skip


def fix(
    tmp_path: Path, env: PythonEnv, base: str, *extra: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fix_argv(tmp_path, env, base, *extra),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        input=stdin,
        env=dict(os.environ, NO_COLOR="1"),
    )


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_the_good_path_installs_the_planned_builds(
    tmp_path: Path, index: IndexServer, installer: str
) -> None:
    # A venv made without pip: the pip backend must drive it through `pip --python`.
    env = cpu_env(tmp_path / "venv")
    assert not env.has_pip
    proc = fix(tmp_path, env, index.url, "--yes", "--no-bench", "--installer", installer)
    assert proc.returncode == 0, proc.stderr
    assert installed(env) == ("2.7.1+cu128", "0.22.1+cu128")
    assert "Installed torch 2.7.1+cu128" in proc.stdout
    assert "[1] Downloading torch-2.7.1+cu128" in proc.stderr
    assert not list((env.root / ".torchdoctor" / "rollback").glob("*"))  # snapshot discarded
    log = Path(proc.stdout.split("log: ", 1)[1].strip())
    assert "verification: ok=True" in log.read_text()
    # The report's fix history reads this real log: what was there before, and what came.
    event = parse_fix_log(log.read_text(), log=str(log), at=None)
    assert event is not None
    assert (event.before, event.outcome) == ("torch 2.7.1+cpu", "installed")
    assert event.installed.startswith("torch==2.7.1+cu128")


def test_dry_run_changes_nothing_and_shows_the_commands(tmp_path: Path, index: IndexServer) -> None:
    env = cpu_env(tmp_path / "venv")
    before = tree_digest(env.root)
    proc = fix(tmp_path, env, index.url, "--dry-run", "--installer", "uv")
    assert proc.returncode == 0, proc.stderr
    assert "would run:" in proc.stdout and "--python" in proc.stdout
    assert tree_digest(env.root) == before


def test_without_yes_and_without_a_terminal_nothing_happens(tmp_path: Path, index: IndexServer) -> None:
    env = cpu_env(tmp_path / "venv")
    before = tree_digest(env.root)
    proc = fix(tmp_path, env, index.url, stdin="")
    assert proc.returncode == 2
    assert "--yes" in proc.stderr and "Traceback" not in proc.stderr
    assert tree_digest(env.root) == before


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
def test_declining_at_the_prompt_exits_1_and_changes_nothing(tmp_path: Path, index: IndexServer) -> None:
    """Said no on a terminal: not a usage error (2) but "still needs attention" (1)."""
    import pty  # here, not at the top: POSIX only

    env = cpu_env(tmp_path / "venv")
    before = tree_digest(env.root)
    leader, follower = pty.openpty()
    try:
        os.write(leader, b"n\n")  # typed ahead: the terminal buffers it until fix reads
        proc = subprocess.run(
            fix_argv(tmp_path, env, index.url, "--no-bench"),
            stdin=follower,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            env=dict(os.environ, NO_COLOR="1"),
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "nothing was changed (not confirmed)" in proc.stderr and "Traceback" not in proc.stderr
    assert tree_digest(env.root) == before


def test_nothing_to_do_when_the_environment_already_fits(tmp_path: Path, index: IndexServer) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cu128"))
    proc = fix(tmp_path, env, index.url, "--yes")
    assert proc.returncode == 0
    assert "Nothing to do" in proc.stdout


def test_a_new_build_that_fails_to_import_is_rolled_back_exactly(tmp_path: Path) -> None:
    root = tmp_path / "index"
    publish(root, family("cu128", import_error="DLL load failed while importing _C"), "cu128")
    env = cpu_env(tmp_path / "venv")
    before = tree_digest(env.root)
    with IndexServer(root) as server:
        proc = fix(tmp_path, env, server.url, "--yes", "--no-bench")
    assert proc.returncode == 1, proc.stderr
    assert "failed verification" in proc.stderr and "restored exactly" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree_digest(env.root) == before
    assert installed(env) == ("2.7.1+cpu", "0.22.1+cpu")


def test_the_index_going_away_mid_install_is_rolled_back_exactly(tmp_path: Path) -> None:
    """Our downloads come from one host; the installer's dependency from the index, which is gone."""
    files_root, index_root = tmp_path / "files", tmp_path / "index"
    dep = StandIn("td-helper-dep", "1.0")
    specs = [
        StandIn("torch", "2.7.1+cu128", cuda="12.8", requires=["td-helper-dep"]),
        StandIn("torchvision", "0.22.1+cu128"),
    ]
    for root in (files_root, index_root):
        publish(root, specs, "cu128")
        publish(root, [dep], "cu128")
    env = cpu_env(tmp_path / "venv")
    before = tree_digest(env.root)
    with IndexServer(files_root) as files, IndexServer(index_root, files_base=files.url) as index:
        index.set(drop_files=True)  # pages still answer; every file download from the index dies
        # The wheels we plan come from `files` (absolute links); the dependency only via the index.
        proc = fix(tmp_path, env, index.url, "--yes", "--no-bench", "--installer", "uv")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "restored exactly" in proc.stderr
    assert tree_digest(env.root) == before


def test_a_held_lock_is_refused_clearly(tmp_path: Path, index: IndexServer) -> None:
    env = cpu_env(tmp_path / "venv")
    lock = lock_path(env)
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import filelock,sys,time\nl=filelock.FileLock({str(lock)!r}); l.acquire()\nprint('held', flush=True)\ntime.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        proc = fix(tmp_path, env, index.url, "--yes", "--no-bench")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1
    assert "already" in proc.stderr and "Traceback" not in proc.stderr
    assert installed(env) == ("2.7.1+cpu", "0.22.1+cpu")


def test_a_process_running_from_the_environment_is_named(tmp_path: Path, index: IndexServer) -> None:
    env = cpu_env(tmp_path / "venv")
    busy = subprocess.Popen([str(env.python), "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.3)
        proc = fix(tmp_path, env, index.url, "--yes", "--no-bench")
    finally:
        busy.kill()
        busy.wait()
    assert proc.returncode == 1
    assert str(busy.pid) in proc.stderr and "Traceback" not in proc.stderr
    assert installed(env) == ("2.7.1+cpu", "0.22.1+cpu")


def _hanging_family(tmp_path: Path, root: Path) -> Path:
    """cu128 builds whose torch import signals a marker, then hangs (a stuck verification)."""
    marker = tmp_path / "importing"
    init = f"import pathlib, time\npathlib.Path({str(marker)!r}).write_text('x')\ntime.sleep(120)\n"
    publish(root, family("cu128", files={"torch/__init__.py": init}), "cu128")
    return marker


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "fix never reached verification"
        time.sleep(0.05)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_the_install_restores_exactly(tmp_path: Path) -> None:
    """Also where this test runs with SIGINT ignored (nohup, some CI runners): fix inherits that,
    and must still take Ctrl-C as "stop and restore"."""
    root = tmp_path / "index"
    marker = _hanging_family(tmp_path, root)
    env = cpu_env(tmp_path / "venv")
    before = tree_digest(env.root)
    with IndexServer(root) as server:
        proc = subprocess.Popen(
            fix_argv(tmp_path, env, server.url, "--yes", "--no-bench"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # so a hung run and its verification child can be killed together
        )
        try:
            _wait_for(marker, proc)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=30)
    assert proc.returncode == 1, out + err
    assert "interrupted" in err and "restored exactly" in err and "Traceback" not in err
    assert tree_digest(env.root) == before


def test_a_fix_killed_mid_install_is_recovered_by_the_next_fix(
    tmp_path: Path, td_dirs: dict[str, Path]
) -> None:
    bad_root, good_root = tmp_path / "bad-index", tmp_path / "good-index"
    marker = _hanging_family(tmp_path, bad_root)
    for variant in ("cpu", "cu128"):
        publish(good_root, family(variant), variant)
    env = cpu_env(tmp_path / "venv")
    with IndexServer(bad_root) as bad:
        proc = subprocess.Popen(
            fix_argv(tmp_path, env, bad.url, "--yes", "--no-bench"),
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for(marker, proc)
        os.killpg(proc.pid, signal.SIGKILL)  # the fix and its verification child, mid-way
        proc.communicate(timeout=30)
    assert installed(env)[0] == "2.7.1+cu128"  # the hanging build's files are in place...
    assert list((env.root / ".torchdoctor" / "rollback").iterdir())  # ...and a pending snapshot
    with IndexServer(good_root) as good:
        again = fix(tmp_path, env, good.url, "--yes", "--no-bench")
    assert again.returncode == 0, again.stderr
    assert "An earlier fix was interrupted; restored torch 2.7.1+cpu first" in again.stderr
    assert installed(env) == ("2.7.1+cu128", "0.22.1+cu128")
    verify = subprocess.run(
        [str(env.python), "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert verify.stdout.strip() == "2.7.1+cu128"  # the good build, not the hanging one


def test_a_build_failing_the_benchmark_is_rolled_back(tmp_path: Path, index: IndexServer) -> None:
    # Stand-in torch imports and verifies, but has no tensors: the benchmark must fail it.
    env = cpu_env(tmp_path / "venv")
    before = tree_digest(env.root)
    proc = fix(tmp_path, env, index.url, "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "sanity benchmark" in proc.stderr and "restored exactly" in proc.stderr
    assert tree_digest(env.root) == before


def test_conda_torch_needs_consent(tmp_path: Path, index: IndexServer) -> None:
    env = cpu_env(tmp_path / "venv")
    meta = env.root / "conda-meta"
    meta.mkdir()
    (meta / "pytorch-2.7.1-py3.11_cpu_0.json").write_text(
        json.dumps({"name": "pytorch", "version": "2.7.1", "build": "py3.11_cpu_0"})
    )
    for info in env.site_packages[0].glob("torch-*.dist-info"):
        (info / "INSTALLER").write_text("conda\n")
    proc = fix(tmp_path, env, index.url, "--yes", "--no-bench")
    assert proc.returncode == 1
    assert "--allow-conda-mix" in proc.stderr and "conda" in proc.stderr


def test_dry_run_does_not_restore_an_interrupted_fix(tmp_path: Path, index: IndexServer) -> None:
    env = cpu_env(tmp_path / "venv")
    # A pending snapshot as a killed fix leaves it: taken by a process that is gone.
    script = (
        "import sys; from pathlib import Path\n"
        "from torchdoctor.service.install.snapshot import take_snapshot\n"
        "from torchdoctor.service.envs.discover import environment_from_path\n"
        f"take_snapshot(environment_from_path(Path({str(env.root)!r})))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    install_standins(env, family("cu126"))  # what the killed fix had got to
    before = tree_digest(env.root)
    proc = fix(tmp_path, env, index.url, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "an earlier fix was interrupted" in proc.stdout
    assert tree_digest(env.root) == before
    assert list((env.root / ".torchdoctor" / "rollback").iterdir())


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_dependencies_the_installer_changed_are_rolled_back_too(tmp_path: Path, installer: str) -> None:
    """The new torch pins tdhelper 2.0 (1.0 is installed) and brings tdnew, which brings tdnewer;
    it then fails verification. Restoring "exactly" must put tdhelper 1.0 back and take the rest away."""
    root = tmp_path / "index"
    publish(
        root,
        [
            StandIn("tdhelper", "1.0"),
            StandIn("tdhelper", "2.0"),
            StandIn("tdnew", "1.0", requires=["tdnewer"]),
            StandIn("tdnewer", "1.0"),
        ],
        "cu128",
    )
    broken = StandIn(
        "torch", "2.7.1+cu128", cuda="12.8", requires=["tdhelper==2.0", "tdnew"], import_error="boom"
    )
    publish(root, [broken, StandIn("torchvision", "0.22.1+cu128")], "cu128")
    env = make_venv(tmp_path / "venv")
    install_standins(
        env,
        [
            StandIn("torch", "2.7.1+cpu", requires=["tdhelper==1.0"]),
            StandIn("torchvision", "0.22.1+cpu"),
            StandIn("tdhelper", "1.0"),
        ],
    )
    before = tree_digest(env.root)
    with IndexServer(root) as server:
        proc = fix(tmp_path, env, server.url, "--yes", "--no-bench", "--installer", installer)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "restored exactly" in proc.stderr
    assert tree_digest(env.root) == before


def test_a_torch_in_the_user_site_that_python_imports_is_refused_before_any_download(
    tmp_path: Path, index: IndexServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A venv with system site-packages and no torch of its own imports the user site's torch:
    # reinstalling into site-packages would change nothing that runs (check's torch-in-user-site).
    env = make_venv(tmp_path / "venv")
    cfg = env.root / "pyvenv.cfg"
    cfg.write_text(
        cfg.read_text().replace("include-system-site-packages = false", "include-system-site-packages = true")
    )
    userbase = tmp_path / "userbase"
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    user_site = userbase / "lib" / f"python{minor}" / "site-packages"
    user_site.mkdir(parents=True)
    (user_site / "torch").mkdir()
    (user_site / "torch" / "__init__.py").write_text("__version__ = '2.7.1+cpu'\n")
    info = user_site / "torch-2.7.1+cpu.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.7.1+cpu\n")
    monkeypatch.setenv("PYTHONUSERBASE", str(userbase))
    before = tree_digest(env.root)
    proc = fix(tmp_path, env, index.url, "--yes", "--no-bench")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "user site" in proc.stderr and "uninstall" in proc.stderr
    assert "Downloading" not in proc.stderr  # refused before any download
    assert tree_digest(env.root) == before
