"""Who is using an environment, and what an interrupted fix left running, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest

from tests.support.envs import install_standins, make_venv, tree_digest
from tests.support.scenarios import family
from torchdoctor.service.install import envguard
from torchdoctor.service.install.envguard import (
    EnvironmentInUseError,
    ensure_not_in_use,
    processes_using,
    windows_held_files,
)
from torchdoctor.service.install.fix import fix_session
from torchdoctor.service.install.index import IndexFile
from torchdoctor.service.install.restartmgr import Holder
from torchdoctor.service.install.snapshot import pending_snapshots
from torchdoctor.service.models import Platform, PythonEnv

REPO = Path(__file__).resolve().parents[2]
SLEEP = "import time; print('ready', flush=True); time.sleep(120)"


@pytest.fixture
def venv(tmp_path: Path) -> PythonEnv:
    return make_venv(tmp_path / "venv")


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        child.kill()
        child.communicate(timeout=30)


def start(
    children: list[subprocess.Popen[str]], argv: Sequence[str], *, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    child = subprocess.Popen([*argv], stdout=subprocess.PIPE, text=True, env=env)
    children.append(child)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


@pytest.mark.slow
def test_a_python_running_from_the_venv_is_named_without_its_arguments(
    venv: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    child = start(children, [str(venv.python), "-c", SLEEP, "--token=hunter2"])

    assert [p.pid for p in processes_using(venv)] == [child.pid]
    with pytest.raises(EnvironmentInUseError) as info:
        ensure_not_in_use(venv)
    name = psutil.Process(child.pid).name()
    assert str(info.value) == f"{name} (pid {child.pid}) is running from this environment; close it first"
    assert "hunter2" not in str(info.value) and "hunter2" not in str(info.value.hint)

    child.kill()
    child.communicate(timeout=30)
    assert processes_using(venv) == []
    ensure_not_in_use(venv)


@pytest.mark.slow
def test_python_typed_in_an_activated_venv_is_named(
    venv: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    # `source .venv/bin/activate; python`: argv[0] is the bare word "python", and on Linux the
    # executable is the base interpreter the venv's python links to. Only the PATH it was found
    # through ties it to the venv (VIRTUAL_ENV left out here, to prove that).
    path = f"{venv.root / 'bin'}{os.pathsep}{os.environ['PATH']}"
    environ = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PATH": path}
    child = start(children, ["python", "-c", SLEEP], env=environ)
    shown = psutil.Process(child.pid)
    assert shown.cmdline()[0] == "python"
    assert not shown.exe().startswith(str(venv.root))  # the base interpreter

    (found,) = processes_using(venv)
    assert found.pid == child.pid and found.reason == "it runs the environment's interpreter"


@pytest.mark.slow
def test_a_python_with_the_venv_activated_is_named(
    venv: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    environ = dict(os.environ, VIRTUAL_ENV=str(venv.root))
    child = start(children, [sys.executable, "-c", SLEEP], env=environ)
    (found,) = processes_using(venv)
    assert found.pid == child.pid and found.reason == "it is a python started in the activated environment"


@pytest.mark.slow
def test_the_shell_that_activated_the_venv_is_not_named(
    venv: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    # A terminal with the venv activated holds nothing of it: refusing because of it would mean
    # "close every terminal first".
    path = f"{venv.root / 'bin'}{os.pathsep}{os.environ['PATH']}"
    environ = dict(os.environ, VIRTUAL_ENV=str(venv.root), PATH=path)
    shell = subprocess.Popen(
        ["sh", "-c", "echo ready; exec sleep 120"], stdout=subprocess.PIPE, text=True, env=environ
    )
    children.append(shell)
    assert shell.stdout is not None and shell.stdout.readline().strip() == "ready"
    assert processes_using(venv) == []


@pytest.mark.slow
def test_a_process_with_a_file_of_the_env_open_is_named(
    venv: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    # The base interpreter (not the venv's) holding a file of the environment open: only the
    # open-files check can tie it to the environment.
    held = venv.site_packages[0] / "held.bin"
    held.write_bytes(b"x")
    child = start(children, [sys.executable, "-c", f"f = open({str(held)!r}, 'rb'); {SLEEP}"])
    start(children, [sys.executable, "-c", SLEEP])  # unrelated: must not be named

    (found,) = processes_using(venv)
    assert found.pid == child.pid and found.reason == f"it has {held} open"


@pytest.mark.slow
def test_an_installer_working_on_the_env_is_named(
    venv: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    # What `uv pip install --python ENV_PY` looks like in the process list.
    child = start(children, [sys.executable, "-c", SLEEP, "pip", "install", "--python", str(venv.python)])
    (found,) = processes_using(venv)
    assert found.pid == child.pid and found.reason == "an installer is working on the environment"
    assert found.installer


@pytest.mark.slow
def test_our_own_process_is_never_named(venv: PythonEnv) -> None:
    held = venv.site_packages[0] / "mine.bin"
    held.write_bytes(b"x")
    with held.open("rb"):
        assert os.getpid() not in [p.pid for p in processes_using(venv)]


@pytest.mark.slow
def test_on_windows_the_restart_manager_is_asked_instead_of_each_process(
    venv: PythonEnv, children: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    site = venv.site_packages[0]
    (site / "torch" / "lib").mkdir(parents=True)
    (site / "torch" / "lib" / "torch_cpu.dll").write_bytes(b"MZ")
    (site / "torch" / "_C.cp311-win_amd64.pyd").write_bytes(b"MZ")
    (site / "numpy").mkdir()
    (site / "numpy" / "_core.pyd").write_bytes(b"MZ")
    (site / "numpy" / "other.dll").write_bytes(b"MZ")  # not torch's: not asked about
    holder = start(children, [sys.executable, "-c", SLEEP])

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("open_files/memory_maps must not be called on Windows")

    monkeypatch.setattr(psutil.Process, "open_files", forbidden)
    monkeypatch.setattr(psutil.Process, "memory_maps", forbidden)
    monkeypatch.setattr(envguard, "_mapped_paths", forbidden)
    asked: list[Sequence[str]] = []

    def restart_manager(files: Sequence[str]) -> list[Holder]:
        asked.append(files)
        return [Holder(holder.pid, "Python", 133_000_000_000_000_000), Holder(os.getpid(), "pytest", 1)]

    found = processes_using(venv, platform=Platform.WINDOWS, file_holders=restart_manager)

    assert asked == [windows_held_files(venv)]
    assert sorted(Path(f).name for f in asked[0]) == ["_C.cp311-win_amd64.pyd", "_core.pyd", "torch_cpu.dll"]
    assert [(p.pid, p.describe()) for p in found] == [(holder.pid, f"Python (pid {holder.pid})")]


# ---------------------------------------------------------------------------------------------
# An interrupted fix's installer, still writing


WRITER = """
import sys, time
from pathlib import Path
torch = Path(sys.argv[-1])
print("ready", flush=True)
n = 0
while True:  # what pip does to torch/ while it replaces it (new files, never in place), forever
    n += 1
    for name, text in (("__init__.py", f"# half-written by the orphan {n}\\n"), ("orphan-wrote.txt", str(n))):
        part = torch / (name + ".part")
        part.write_text(text)
        part.replace(torch / name)
    time.sleep(0.02)
"""

DEAD_FIX = """
import subprocess, sys, time
from pathlib import Path
from tests.support.envs import venv_env
from torchdoctor.service.install.snapshot import take_snapshot

env = venv_env(Path(sys.argv[1]))
take_snapshot(env)
installer = [sys.executable, sys.argv[2], "install", "--python", str(env.python), str(env.site_packages[0] / "torch")]
orphan = subprocess.Popen(installer, stdout=subprocess.PIPE, text=True, start_new_session=True)
assert orphan.stdout.readline().strip() == "ready"
print(orphan.pid, flush=True)
time.sleep(120)
"""


class Steps:
    def __init__(self) -> None:
        self.steps: list[str] = []

    def step(self, text: str) -> None:
        self.steps.append(text)

    def detail(self, text: str) -> None:
        pass

    def download(self, file: IndexFile, done: int, total: int | None) -> None:
        pass


@pytest.fixture
def cpu_env(tmp_path: Path) -> PythonEnv:
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cpu"))
    return env


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_the_next_fix_ends_a_dead_fix_s_installer_before_restoring(
    tmp_path: Path, cpu_env: PythonEnv
) -> None:
    before = tree_digest(cpu_env.root)
    writer = tmp_path / "pip"
    writer.write_text(WRITER)
    dead_fix = subprocess.Popen(
        [sys.executable, "-c", DEAD_FIX, str(cpu_env.root), str(writer)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert dead_fix.stdout is not None
    orphan_pid = int(dead_fix.stdout.readline())
    try:
        os.kill(dead_fix.pid, signal.SIGKILL)  # the fix dies; its installer does not
        dead_fix.communicate(timeout=30)
        assert not _gone(orphan_pid)
        assert tree_digest(cpu_env.root) != before  # it is still writing

        reporter = Steps()
        with fix_session(cpu_env, reporter) as recovered:
            assert _gone(orphan_pid)
            assert recovered is not None
    finally:
        if not _gone(orphan_pid):
            os.kill(orphan_pid, signal.SIGKILL)

    assert reporter.steps[0].startswith("Stopping what an interrupted fix left running: python")
    assert reporter.steps[0].endswith(f"(pid {orphan_pid})")
    assert reporter.steps[1] == "An earlier fix was interrupted; restored torch 2.7.1+cpu first"
    assert tree_digest(cpu_env.root) == before
    time.sleep(0.3)  # a writer still alive would have changed something by now
    assert tree_digest(cpu_env.root) == before


@pytest.mark.slow
def test_a_person_s_own_installer_is_a_refusal_not_killed(
    tmp_path: Path, cpu_env: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    # No interrupted fix: an installer working on the environment is somebody's, and it is named.
    child = start(children, [sys.executable, "-c", SLEEP, "pip", "install", "--python", str(cpu_env.python)])
    with pytest.raises(EnvironmentInUseError) as info, fix_session(cpu_env, Steps()):
        pytest.fail("must refuse")
    assert f"(pid {child.pid})" in str(info.value)
    assert child.poll() is None  # still running: not ours to end


@pytest.mark.slow
def test_the_in_use_check_comes_before_the_recovery(
    tmp_path: Path, cpu_env: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    # An interrupted fix left a snapshot, and a program runs from the environment: nothing is
    # restored under it; the snapshot waits for the next run.
    snapshot_and_die = (
        "import sys; from pathlib import Path; from tests.support.envs import venv_env; "
        "from torchdoctor.service.install.snapshot import take_snapshot; "
        "take_snapshot(venv_env(Path(sys.argv[1])))"
    )
    subprocess.run(
        [sys.executable, "-c", snapshot_and_die, str(cpu_env.root)], cwd=REPO, check=True, timeout=120
    )
    (cpu_env.site_packages[0] / "torch" / "__init__.py").write_text("# half-installed\n")
    half = tree_digest(cpu_env.root)
    assert pending_snapshots(cpu_env)
    start(children, [str(cpu_env.python), "-c", SLEEP])

    with pytest.raises(EnvironmentInUseError), fix_session(cpu_env, Steps()):
        pytest.fail("must refuse")
    assert tree_digest(cpu_env.root) == half
    assert pending_snapshots(cpu_env)


STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"


def _orphan(child: subprocess.Popen[str]) -> envguard.ProcessInfo:
    return envguard.ProcessInfo(
        child.pid, "pip", "an installer", started=psutil.Process(child.pid).create_time(), installer=True
    )


@pytest.mark.slow
def test_an_orphan_that_ignores_sigterm_is_killed(
    cpu_env: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    child = start(children, [sys.executable, "-c", STUBBORN])
    envguard.settle_orphans(cpu_env, [_orphan(child)], term_wait=0.5, kill_wait=10)
    assert child.wait(timeout=10) == -signal.SIGKILL


@pytest.mark.slow
def test_an_orphan_that_cannot_be_ended_is_a_refusal(
    cpu_env: PythonEnv, children: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another user's installer, which we may not end: the process table refuses our kill.
    child = start(children, [sys.executable, "-c", STUBBORN])
    monkeypatch.setattr(psutil.Process, "kill", lambda _self: None)
    with pytest.raises(EnvironmentInUseError) as info:
        envguard.settle_orphans(cpu_env, [_orphan(child)], term_wait=0.2, kill_wait=0.2)
    assert str(info.value) == (
        f"what an interrupted fix left running could not be stopped: pip (pid {child.pid}); end it, then try again"
    )
    assert child.poll() is None


WINDOWS_HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("select", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)  # the copied .pyd is now loaded: its file is held open
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.windows
@pytest.mark.skipif(
    sys.platform != "win32", reason="needs Windows: the real Restart Manager and a loaded .pyd"
)
def test_on_windows_a_python_holding_a_pyd_of_the_env_is_named(
    venv: PythonEnv, children: list[subprocess.Popen[str]]
) -> None:
    import select
    import shutil

    from torchdoctor.service.envs.discover import environment_from_path

    venv = environment_from_path(venv.root)  # the Windows layout (Lib\site-packages, Scripts)
    pyd = venv.site_packages[0] / Path(str(select.__file__)).name
    shutil.copy2(str(select.__file__), pyd)
    holder = start(children, [sys.executable, "-c", WINDOWS_HOLDER, str(pyd)])  # the base python
    found = processes_using(venv)
    assert holder.pid in [p.pid for p in found]
