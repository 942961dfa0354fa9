"""The one way we start other programs: an argument list, a timeout, captured text output.

Never `shell=True`; never without a timeout (a hung `nvidia-smi` or a broken interpreter in some
environment must not hang the agent).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

from torchdoctor.service.errors import SubprocessTimeoutError


@dataclass(frozen=True, slots=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def no_window_flags() -> int:
    # A console window flashing up for every probe would be unacceptable for a tray app.
    if sys.platform == "win32":
        return subprocess.CREATE_NO_WINDOW
    return 0


TREE_WAIT_S: Final = 10.0  # how long a killed program's tree may take to vanish
CHILD_OF_VAR: Final = "TORCHDOCTOR_CHILD_OF"
_RUNNING: set[subprocess.Popen[str]] = set()  # what `run` waits for now, in every thread
_RUNNING_LOCK = threading.Lock()

# A script given inline (`python -c SCRIPT`) is code, not something to read in a message.
_SCRIPT_FLAGS: Final = frozenset({"-c"})
_LONGEST_SHOWN_ARG: Final = 200


def shown_command(argv: Sequence[str | Path]) -> str:
    """`argv` as a person may read it in a message: the program and its options, never a script.

    Everything after `-c` (the script and its arguments) is shown as "...", and so is any argument
    that spans lines or is very long: `python -I -c ...`, not a hundred lines of probe code.
    """
    shown: list[str] = []
    for arg in (os.fspath(a) for a in argv):
        if "\n" in arg or len(arg) > _LONGEST_SHOWN_ARG:
            shown.append("...")
            continue
        shown.append(arg)
        if arg in _SCRIPT_FLAGS:
            shown.append("...")
            break
    return " ".join(shown)


def wait_gone(processes: Sequence[psutil.Process], *, timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` s until none of `processes` runs; return those still running.

    A zombie counts as gone: it will never run again, and in a container whose first process does
    not reap, it would otherwise be waited for until the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for process in processes:
            with contextlib.suppress(psutil.Error):
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    left.append(process)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def end_tree(popen: subprocess.Popen[str], *, wait: float = TREE_WAIT_S) -> None:
    """Kill `popen` and everything it started, and wait (bounded) until they are gone.

    A Windows venv's python.exe is a redirector that starts the base python as its child; killing
    the redirector alone would leave the real interpreter running, holding torch's DLLs while a
    restore replaces them. The descendants are listed before anything is killed, while the
    parent links still lead to them (a grandchild that started its own session included).
    """
    try:
        tree = psutil.Process(popen.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    with contextlib.suppress(OSError):
        popen.kill()
    for process in tree:
        with contextlib.suppress(psutil.Error):
            process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=wait)
    wait_gone(tree, timeout=wait)


def child_environ(env: Mapping[str, str] | None) -> dict[str, str]:
    """`env` (else ours) marked with our pid, so a later run can tell our orphans from a person's
    programs: a child still running after its torchdoctor was SIGKILLed is ours to end."""
    marked = dict(env if env is not None else os.environ)
    marked[CHILD_OF_VAR] = str(os.getpid())
    return marked


def trusted_path_entries(path_value: str | None, cwd: Path | None, separator: str = os.pathsep) -> list[Path]:
    """The folders of a PATH value a program may be started from: absolute ones, never the current
    folder. Windows' CreateProcess and `shutil.which` look in the current folder (and "." or "" in
    PATH means it too), so a planted py.exe or uv.exe beside a project would run otherwise."""
    here = os.path.normcase(os.fspath(cwd)) if cwd is not None else None
    folders: list[Path] = []
    for raw in (path_value or "").split(separator):
        entry = raw.strip().strip('"')
        if not entry or not Path(entry).is_absolute():
            continue
        if here is not None and os.path.normcase(entry.rstrip("/\\")) == here.rstrip("/\\"):
            continue
        folders.append(Path(entry))
    return folders


def run(
    argv: Sequence[str | Path],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    input_text: str | None = None,
) -> Completed:
    """Run `argv` and capture its output as text.

    Raises FileNotFoundError/PermissionError when the program cannot be started and
    SubprocessTimeoutError when it outlives `timeout`. On a timeout, and on any exception here
    (Ctrl-C), the program and every process it started are killed and waited for before this
    returns (`end_tree`): a benchmark or verification child must be gone before a restore starts.
    The child's environment carries `TORCHDOCTOR_CHILD_OF=<our pid>` (`child_environ`).
    """
    args = [os.fspath(a) for a in argv]
    popen = _start(args, env=env, cwd=cwd, with_input=input_text is not None)
    try:
        stdout, stderr = popen.communicate(input=input_text, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _end_and_drain(popen)
        raise _timed_out(args, timeout) from exc
    except BaseException:
        _end_and_drain(popen)
        raise
    finally:
        _forget(popen)
    return Completed(tuple(args), popen.returncode, stdout or "", stderr or "")


def run_watched(
    argv: Sequence[str | Path],
    *,
    limit: Callable[[], float],
    watch: Callable[[], None] = lambda: None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    interval: float = 0.1,
) -> Completed:
    """Like `run`, but the time allowed may change while the program runs.

    Every `interval` seconds `watch()` is called (to read a progress file, say) and then `limit()`
    gives the seconds allowed since the start as of now; past it, the program and everything it
    started are ended (`end_tree`) and SubprocessTimeoutError raised. So a first `import torch`
    that Windows Defender slows down can have its own allowance, and the work after it its own
    timeout, measured from when it began. Ctrl-C ends the tree too, before it propagates.
    """
    args = [os.fspath(a) for a in argv]
    started = time.monotonic()
    popen = _start(args, env=env, cwd=cwd, with_input=False)
    try:
        while True:
            try:
                stdout, stderr = popen.communicate(timeout=interval)
                break
            except subprocess.TimeoutExpired:
                watch()
                allowed = limit()
                if time.monotonic() - started > allowed:
                    _end_and_drain(popen)
                    raise _timed_out(args, allowed) from None
    except SubprocessTimeoutError:
        raise
    except BaseException:
        _end_and_drain(popen)  # Ctrl-C or a bug of ours: never leave it running
        raise
    finally:
        _forget(popen)
    watch()
    return Completed(tuple(args), popen.returncode, stdout or "", stderr or "")


def _start(
    args: list[str], *, env: Mapping[str, str] | None, cwd: Path | None, with_input: bool
) -> subprocess.Popen[str]:
    """Start `args` with captured text output, marked as ours, and known to `end_running`."""
    popen = subprocess.Popen(
        args,
        stdin=subprocess.PIPE if with_input else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=child_environ(env),
        cwd=cwd,
        creationflags=no_window_flags(),
    )
    with _RUNNING_LOCK:
        _RUNNING.add(popen)
    return popen


def _forget(popen: subprocess.Popen[str]) -> None:
    with _RUNNING_LOCK:
        _RUNNING.discard(popen)


def _timed_out(args: Sequence[str], seconds: float) -> SubprocessTimeoutError:
    return SubprocessTimeoutError(
        f"{Path(args[0]).name} did not finish within {seconds:g} s",
        hint="the program may be hung; try again, or check it by hand: " + shown_command(args),
    )


def end_running() -> None:
    """End every program `run` is waiting for, in any thread, with everything each one started.

    For a Ctrl-C that reaches the main thread while a worker thread waits in `run` (the benchmark
    follows its progress file from the main thread): without this, leaving would wait for the
    worker, that is for the benchmark to finish on its own, before the restore could start. The
    worker's `run` then returns the killed program's exit status.
    """
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for popen in running:
        end_tree(popen)


def _end_and_drain(popen: subprocess.Popen[str]) -> None:
    end_tree(popen)
    with contextlib.suppress(subprocess.TimeoutExpired, OSError, ValueError):
        popen.communicate(timeout=TREE_WAIT_S)  # close the pipes
