"""The one way we start other programs: an argument list, a timeout, captured text output.

Never `shell=True`; never without a timeout (a hung `nvidia-smi` or a broken interpreter in some
environment must not hang the agent).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

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
    SubprocessTimeoutError when it outlives `timeout` (the process is killed).
    """
    args = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            check=False,
            creationflags=no_window_flags(),
        )
    except subprocess.TimeoutExpired as exc:
        raise SubprocessTimeoutError(
            f"{Path(args[0]).name} did not finish within {timeout:g} s",
            hint="the program may be hung; try again, or check it by hand: " + shown_command(args),
        ) from exc
    return Completed(tuple(args), proc.returncode, proc.stdout or "", proc.stderr or "")


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
    gives the seconds allowed since the start as of now; past it, the program is killed and
    SubprocessTimeoutError raised. So a first `import torch` that Windows Defender slows down can
    have its own allowance, and the work after it its own timeout, measured from when it began.
    """
    args = [os.fspath(a) for a in argv]
    started = time.monotonic()
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=dict(env) if env is not None else None,
        cwd=cwd,
        creationflags=no_window_flags(),
    )
    with process:
        try:
            while True:
                try:
                    stdout, stderr = process.communicate(timeout=interval)
                    break
                except subprocess.TimeoutExpired:
                    watch()
                    allowed = limit()
                    if time.monotonic() - started > allowed:
                        process.kill()
                        process.communicate()
                        raise SubprocessTimeoutError(
                            f"{Path(args[0]).name} did not finish within {allowed:g} s",
                            hint="the program may be hung; try again, or check it by hand: "
                            + shown_command(args),
                        ) from None
        except BaseException:
            process.kill()  # Ctrl-C or a bug of ours: never leave it running
            raise
    watch()
    return Completed(tuple(args), process.returncode, stdout or "", stderr or "")
