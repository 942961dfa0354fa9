"""Guards around changing an environment: one `fix` at a time, and nobody running from it.

- `env_lock(env)`: a per-environment file lock (filelock) under `state_dir()/locks/`. The OS frees
  it when its holder dies, even by `kill -9`, so a crashed fix never blocks the next one. A sidecar
  JSON beside the lock names the holder's pid for the refusal message.
- `processes_using(env)` / `ensure_not_in_use(env)`: psutil. On Windows a running interpreter keeps
  its DLLs (torch's `.pyd`/`.dll` files) locked and pip fails half-way through replacing torch; on
  Linux the running program would silently keep the old build mapped. Either way we refuse and
  name the programs instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import filelock
import psutil

from torchdoctor.service import paths
from torchdoctor.service.errors import TorchdoctorError
from torchdoctor.service.install.urlsecrets import redact_argv
from torchdoctor.service.models import PythonEnv

_CMDLINE_SHOWN: Final = 80
_PYTHON_OPTIONS: Final = ("--python", "-p", "--prefix", "--target")


class EnvironmentLockedError(TorchdoctorError):
    code = "environment-locked"

    def __init__(self, message: str, *, hint: str | None = None, holder_pid: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder_pid = holder_pid


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    name: str
    cmdline: tuple[str, ...]
    reason: str  # what ties it to the environment, for the log

    def describe(self) -> str:
        """`python (pid 4242: python train.py)`."""
        if self.cmdline:
            shown = " ".join([Path(self.cmdline[0]).name, *self.cmdline[1:]])
            if len(shown) > _CMDLINE_SHOWN:
                shown = shown[: _CMDLINE_SHOWN - 1] + "…"
            return f"{self.name} (pid {self.pid}: {shown})"
        return f"{self.name} (pid {self.pid})"


class EnvironmentInUseError(TorchdoctorError):
    code = "environment-in-use"

    def __init__(self, env_root: Path, processes: Iterable[ProcessInfo]) -> None:
        self.processes = tuple(processes)
        names = [p.describe() for p in self.processes]
        if len(names) == 1:
            message = f"{names[0]} is running from this environment; close it first"
        else:
            listed = "; ".join(names)
            message = f"{len(names)} programs are running from this environment: {listed}; close them first"
        super().__init__(message, hint=f"torch cannot be replaced in {env_root} while a program is using it")


# ---------------------------------------------------------------------------------------------
# The lock


def _root_key(root: Path) -> str:
    resolved = os.path.normcase(os.path.realpath(root))
    return hashlib.sha256(resolved.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def lock_path(env: PythonEnv) -> Path:
    """`state_dir()/locks/<sha256 of the resolved root>.lock`: one lock however the env is named."""
    return paths.state_dir() / "locks" / f"{_root_key(env.root)}.lock"


def _owner_path(lock: Path) -> Path:
    return lock.with_suffix(".owner.json")


def _read_holder(lock: Path) -> int | None:
    try:
        data = json.loads(_owner_path(lock).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pid = data.get("pid") if isinstance(data, dict) else None
    return pid if isinstance(pid, int) else None


@contextlib.contextmanager
def env_lock(env: PythonEnv) -> Iterator[None]:
    """Hold the environment's install lock, or raise EnvironmentLockedError at once (timeout 0)."""
    path = lock_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        holder = _read_holder(path)
        who = f" (pid {holder})" if holder is not None else ""
        raise EnvironmentLockedError(
            f"another torchdoctor fix{who} is already changing {env.root}; wait for it to finish",
            hint="if no fix is running, the lock is freed by the system; try again in a moment",
            holder_pid=holder,
        ) from None
    owner = _owner_path(path)
    try:
        record = {
            "pid": os.getpid(),
            "since": time.time(),
            "root": str(env.root),
            "argv": redact_argv(sys.argv),
        }
        # Best effort: the lock works without it; it only improves the refusal message.
        with contextlib.suppress(OSError):
            owner.write_text(json.dumps(record), encoding="utf-8")
        yield
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


# ---------------------------------------------------------------------------------------------
# Processes


class _Roots:
    """The environment root, as written and with links resolved, compared the way the OS does."""

    def __init__(self, root: Path) -> None:
        forms = {os.path.normcase(os.path.normpath(root)), os.path.normcase(os.path.realpath(root))}
        self.prefixes = tuple(f.rstrip(os.sep) + os.sep for f in forms)

    def contains(self, path: str | None) -> bool:
        if not path:
            return False
        text = path.removesuffix(" (deleted)")
        if not Path(text).is_absolute():
            return False
        norm = os.path.normcase(os.path.normpath(text))
        return any(norm.startswith(p) or norm + os.sep == p for p in self.prefixes)


def _own_lineage() -> set[int]:
    """Our pid and our parents': the CLI may itself run from the environment it repairs."""
    pids = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        pids.update(p.pid for p in psutil.Process().parents())
    return pids


def _cheap_reason(roots: _Roots, exe: str | None, cmdline: list[str], cwd: str | None) -> str | None:
    if roots.contains(exe):
        return "its program is in the environment"
    if cmdline:
        first = cmdline[0]
        if not Path(first).is_absolute() and os.sep in first and cwd:
            first = str(Path(cwd, first))
        if roots.contains(first):
            return "it runs the environment's interpreter"
    for i, arg in enumerate(cmdline[1:], start=1):
        option, sep, value = arg.partition("=")
        if sep and option in _PYTHON_OPTIONS and roots.contains(value):
            return "an installer is working on the environment"
        if arg in _PYTHON_OPTIONS and i + 1 < len(cmdline) and roots.contains(cmdline[i + 1]):
            return "an installer is working on the environment"
    return None


def _mapped_paths(process: psutil.Process) -> Iterator[str]:
    """Files the process has mapped (loaded DLLs, shared libraries, extension modules)."""
    if sys.platform.startswith("linux"):
        # /proc/PID/maps is cheap; psutil's memory_maps reads smaps, which is slow on big processes.
        try:
            text = Path(f"/proc/{process.pid}/maps").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        for line in text.splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/"):
                yield fields[5]
    else:
        with contextlib.suppress(psutil.Error, OSError, NotImplementedError):
            for mapping in process.memory_maps(grouped=True):
                yield mapping.path


def _expensive_reason(roots: _Roots, process: psutil.Process) -> str | None:
    for path in _mapped_paths(process):
        if roots.contains(path):
            return f"it has loaded {path}"
    with contextlib.suppress(psutil.Error, OSError):
        for opened in process.open_files():
            if roots.contains(opened.path):
                return f"it has {opened.path} open"
    return None


def processes_using(env: PythonEnv, *, exclude: Iterable[int] = ()) -> list[ProcessInfo]:
    """Every other process tied to the environment, cheap checks first.

    A process counts when its executable or its first argument lies inside `env.root` (a venv's
    python shows its base interpreter as exe on Linux, but keeps the venv path as argv[0]), when it
    names the environment after `--python`/`--prefix`/`--target` (an installer at work, perhaps one
    left running by a killed fix), or when it has a file under the root mapped or open (a program
    that imported torch from it). Processes we may not inspect, or that exit meanwhile, are skipped.
    """
    roots = _Roots(env.root)
    skip = _own_lineage() | set(exclude)
    found: list[ProcessInfo] = []
    for process in psutil.process_iter(["pid", "name", "exe", "cmdline", "cwd"]):
        info = process.info
        pid = int(info["pid"])
        if pid in skip:
            continue
        cmdline = list(info.get("cmdline") or [])
        try:
            reason = _cheap_reason(roots, info.get("exe"), cmdline, info.get("cwd"))
            if reason is None:
                reason = _expensive_reason(roots, process)
        except (psutil.Error, OSError):
            continue
        if reason is not None:
            name = str(info.get("name") or (Path(cmdline[0]).name if cmdline else "?"))
            found.append(ProcessInfo(pid, name, tuple(cmdline), reason))
    return sorted(found, key=lambda p: p.pid)


def ensure_not_in_use(env: PythonEnv, *, exclude: Iterable[int] = ()) -> None:
    """Raise EnvironmentInUseError naming every process tied to the environment."""
    found = processes_using(env, exclude=exclude)
    if found:
        raise EnvironmentInUseError(env.root, found)
