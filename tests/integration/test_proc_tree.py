"""A killed verification or benchmark child is gone, with everything it started, before `run` returns.

A Windows venv's python.exe is a redirector that starts the base python as its child; the stand-in
here is a venv python that starts the base interpreter and waits for it, as the redirector does.
"""

from __future__ import annotations

import signal
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.envs import make_venv
from torchdoctor.service import proc
from torchdoctor.service.errors import SubprocessTimeoutError
from torchdoctor.service.models import PythonEnv

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

REDIRECTOR = """
import subprocess, sys
child = [sys.argv[1], "-c", "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)", sys.argv[2]]
if sys.argv[3] == "detach":  # a grandchild that left the process group
    subprocess.Popen(child, start_new_session=True).wait()
else:
    subprocess.call(child)
"""


@pytest.fixture
def venv(tmp_path: Path) -> PythonEnv:
    return make_venv(tmp_path / "venv")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:
        if not _gone(pid):
            psutil.Process(pid).kill()


@pytest.mark.parametrize("how", ["group", "detach"])
def test_a_timed_out_child_and_its_base_python_are_both_gone(
    tmp_path: Path, venv: PythonEnv, how: str, leftovers: list[int]
) -> None:
    pid_file = tmp_path / "base.pid"
    argv = [str(venv.python), "-c", REDIRECTOR, sys.executable, str(pid_file), how]
    with pytest.raises(SubprocessTimeoutError, match="did not finish within 10 s"):
        proc.run(argv, timeout=10)
    assert pid_file.exists(), "the base python never started (machine too slow for this test?)"
    base = int(pid_file.read_text())
    leftovers.append(base)
    assert _gone(base)


def test_ctrl_c_during_a_child_ends_its_whole_tree(
    tmp_path: Path, venv: PythonEnv, leftovers: list[int]
) -> None:
    pid_file = tmp_path / "base.pid"
    argv = [str(venv.python), "-c", REDIRECTOR, sys.executable, str(pid_file), "group"]

    def interrupt_once_started(_signum: int, _frame: types.FrameType | None) -> None:
        if not pid_file.exists() or not pid_file.read_text():
            signal.setitimer(signal.ITIMER_REAL, 0.1)  # not yet: look again
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt_once_started)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        with pytest.raises(KeyboardInterrupt):
            proc.run(argv, timeout=120)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    base = int(pid_file.read_text())
    leftovers.append(base)
    assert _gone(base)


def test_a_finished_child_s_output_is_returned_as_before(venv: PythonEnv) -> None:
    done = proc.run(
        [str(venv.python), "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    echoed = proc.run([str(venv.python), "-c", "print(input())"], timeout=60, input_text="hello\n")
    assert echoed.stdout == "hello\n"


FINISHES_LATER = """
import subprocess, sys
base = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(5); open(sys.argv[2], 'w')"
subprocess.call([sys.executable, "-c", base, sys.argv[1], sys.argv[2]])
"""


def test_ctrl_c_while_the_benchmark_runs_ends_it_and_what_it_started_at_once(
    tmp_path: Path, venv: PythonEnv, leftovers: list[int]
) -> None:
    # The benchmark's program is watched from this thread (proc.run_watched follows its progress
    # file between waits); Ctrl-C arrives here. Without ending the program and what it started,
    # leaving would wait for the benchmark to end by itself (the base python finishes, leaves a file).
    from torchdoctor.service.bench.run import _ProgressTail, _run_script

    pid_file, finished = tmp_path / "base.pid", tmp_path / "finished"
    argv = [str(venv.python), "-c", FINISHES_LATER, str(pid_file), str(finished)]

    def interrupt_once_started(_signum: int, _frame: types.FrameType | None) -> None:
        if not pid_file.exists() or not pid_file.read_text():
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt_once_started)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run_script(
                argv, timeout=120, import_timeout=120, tail=_ProgressTail(tmp_path / "progress", None)
            )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    base = int(pid_file.read_text())
    leftovers.append(base)
    assert _gone(base)
    assert not finished.exists()  # ended, not waited out
