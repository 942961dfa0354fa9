"""Nobody running from an environment while `fix` changes it, and no installer left over.

A running interpreter keeps torch's DLLs (`.pyd`/`.dll`) locked on Windows and pip fails half-way
through replacing torch; on Linux the running program would silently keep the old build mapped.
Either way we refuse and name the programs: their process name and pid, never their command
lines (other people's arguments may hold tokens, paths, URLs).

How a process is tied to the environment, cheapest test first (`cheap_reason`, pure):
  - its executable is inside the root (a conda env's python, a Windows venv's redirector);
  - its argv[0] is, taken as the kernel and CPython take it: relative to its working folder if it
    has a separator, else the first match on *its own* PATH. A Linux venv's python shows the base
    interpreter as its executable, and `python` typed in an activated venv has a bare argv[0];
    CPython finds its venv exactly this way (getpath: argv[0] through PATH, then pyvenv.cfg);
  - it is a Python interpreter whose VIRTUAL_ENV (set by `activate`) is the environment;
  - it names the environment after `--python`/`--prefix`/`--target` (an installer at work).
Then, on Linux, what it has mapped (/proc/PID/maps: extension modules, libtorch) or open. On
Windows, one Restart Manager query for who holds the environment's torch DLLs and `.pyd` files
(`restartmgr`), instead of psutil's per-process open_files()/memory_maps() there.

What an interrupted fix started and left running is its orphan: its installer (pip, uv), which
survived its SIGKILLed parent and may still be writing, or its verification or benchmark child.
`settle_orphans` ends it (and its children) and waits until it is gone, so the restore that
follows is not overwritten behind its back. Anything else using the environment is a refusal.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

from torchdoctor.service import proc
from torchdoctor.service.errors import TorchdoctorError
from torchdoctor.service.install import restartmgr
from torchdoctor.service.models import Platform, PythonEnv

_PYTHON_OPTIONS: Final = ("--python", "-p", "--prefix", "--target")
_INSTALL_VERBS: Final = frozenset({"install", "uninstall", "sync"})
_INSTALLER_NAMES: Final = frozenset({"pip", "pip3", "uv"})
_PYTHON_NAME: Final = re.compile(r"python[\d.]*[tw]?(\.exe)?", re.IGNORECASE)
ORPHAN_TERM_WAIT_S: Final = 5.0  # pip and uv stop at once on SIGTERM
ORPHAN_KILL_WAIT_S: Final = 10.0
_CLOCK_SLACK_S: Final = 2.0  # a process's start time (from boot ticks) against time.time()

FileHolders = Callable[[Sequence[str]], list[restartmgr.Holder]]


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    name: str
    reason: str  # what ties it to the environment, for the log
    started: float | None = None  # psutil's create_time
    parent: int | None = None
    installer: bool = False  # its command line is pip/uv installing into the environment
    child_of: int | None = None  # the torchdoctor that started it (proc.CHILD_OF_VAR), if marked

    def describe(self) -> str:
        """`python (pid 4242)`: the program's name, never its arguments."""
        return f"{self.name} (pid {self.pid})"


class EnvironmentInUseError(TorchdoctorError):
    code = "environment-in-use"

    def __init__(
        self, env_root: Path, processes: Iterable[ProcessInfo], *, message: str | None = None
    ) -> None:
        self.processes = tuple(processes)
        names = [p.describe() for p in self.processes]
        if message is not None:
            pass
        elif len(names) == 1:
            message = f"{names[0]} is running from this environment; close it first"
        else:
            listed = "; ".join(names)
            message = f"{len(names)} programs are running from this environment: {listed}; close them first"
        super().__init__(message, hint=f"torch cannot be replaced in {env_root} while a program is using it")


# ---------------------------------------------------------------------------------------------
# Pure decisions


class Roots:
    """The environment root, as written and with links resolved, compared the way the OS does."""

    def __init__(self, root: Path) -> None:
        forms = {os.path.normcase(os.path.normpath(root)), os.path.normcase(os.path.realpath(root))}
        self.prefixes = tuple(f.rstrip(os.sep) + os.sep for f in forms)

    def contains_canonical(self, path: str) -> bool:
        """`contains` for a path the kernel wrote (/proc/PID/maps): absolute and normalized already."""
        return path.startswith(self.prefixes)

    def contains(self, path: str | None) -> bool:
        if not path:
            return False
        text = path.removesuffix(" (deleted)")
        if not os.path.isabs(text):  # noqa: PTH117 - called for every mapped file: strings, not Paths
            return False
        norm = os.path.normcase(os.path.normpath(text))
        return any(norm.startswith(p) or norm + os.sep == p for p in self.prefixes)


def program_path(
    argv0: str, *, cwd: str | None, path_var: str | None, is_program: Callable[[str], bool]
) -> str | None:
    """The file `argv0` named when it was started, as CPython's getpath works it out.

    With a separator: relative to the process's working folder. Without one: the first match on
    the process's own PATH (an empty entry is its working folder). None when it cannot be told.
    """
    if os.sep in argv0 or (os.altsep is not None and os.altsep in argv0):
        if os.path.isabs(argv0):  # noqa: PTH117 - strings: this runs for every process
            return argv0
        return os.path.join(cwd, argv0) if cwd else None  # noqa: PTH118
    if path_var is None:
        return None  # its variables are not ours to read: no telling which file it found
    for entry in path_var.split(os.pathsep):
        folder = entry or cwd
        if not folder:
            continue
        candidate = os.path.join(folder, argv0)  # noqa: PTH118
        if is_program(candidate):
            return candidate
    return None


def is_installer(cmdline: Sequence[str]) -> bool:
    """pip or uv changing packages: `uv pip install …`, `python -m pip install …`, `pip3 uninstall`."""
    # Either separator: a Windows process list is judged the same on any OS.
    names = [re.split(r"[\\/]", a)[-1].lower().removesuffix(".exe") for a in cmdline[:4]]
    return any(n in _INSTALLER_NAMES for n in names) and any(a in _INSTALL_VERBS for a in cmdline[1:6])


def looks_like_python(exe: str | None, name: str | None) -> bool:
    return any(_PYTHON_NAME.fullmatch(re.split(r"[\\/]", t)[-1]) for t in (exe, name) if t)


@dataclass(frozen=True, slots=True)
class Seen:
    """What one look at a process shows, enough for the cheap tests."""

    exe: str | None
    name: str | None
    cmdline: tuple[str, ...]
    cwd: str | None
    environ: Mapping[str, str] | None  # None: not ours to read


def cheap_reason(roots: Roots, seen: Seen, *, is_program: Callable[[str], bool]) -> str | None:
    """Why this process uses the environment, from its exe, argv, folder and variables; or None."""
    if roots.contains(seen.exe):
        return "its program is in the environment"
    environ = seen.environ or {}
    if seen.cmdline:
        started_as = program_path(
            seen.cmdline[0], cwd=seen.cwd, path_var=environ.get("PATH"), is_program=is_program
        )
        if roots.contains(started_as):
            return "it runs the environment's interpreter"
    if looks_like_python(seen.exe, seen.name) and roots.contains(environ.get("VIRTUAL_ENV")):
        return "it is a python started in the activated environment"
    cmdline = seen.cmdline
    for i, arg in enumerate(cmdline[1:], start=1):
        option, sep, value = arg.partition("=")
        if sep and option in _PYTHON_OPTIONS and roots.contains(value):
            return "an installer is working on the environment"
        if arg in _PYTHON_OPTIONS and i + 1 < len(cmdline) and roots.contains(cmdline[i + 1]):
            return "an installer is working on the environment"
    return None


@dataclass(frozen=True, slots=True)
class Interrupted:
    """A fix that died with its snapshot pending: its pid, and when it took the snapshot."""

    pid: int
    created: float


def split_orphans(
    found: Sequence[ProcessInfo], interrupted: Collection[Interrupted]
) -> tuple[list[ProcessInfo], list[ProcessInfo]]:
    """(orphans of an interrupted fix, everything else). Pure.

    An orphan is a process the dead fix started (its verification or benchmark child, marked with
    the fix's pid through `proc.child_environ`), an installer working on the environment that
    started after an interrupted fix took its snapshot (a fix installs only after snapshotting, and
    ours is the only fix: we hold the lock), or a child of either (uv runs the environment's python
    to ask it questions). Without an interrupted fix, an installer at work is a person's: that is a
    refusal, never ours to end.
    """
    if not interrupted:
        return [], list(found)
    since = min(i.created for i in interrupted) - _CLOCK_SLACK_S
    dead = {i.pid for i in interrupted}
    orphans = {
        p.pid
        for p in found
        if p.child_of in dead or (p.installer and p.started is not None and p.started >= since)
    }
    grew = True
    while grew:
        grew = False
        for p in found:
            if p.pid not in orphans and p.parent in orphans:
                orphans.add(p.pid)
                grew = True
    return [p for p in found if p.pid in orphans], [p for p in found if p.pid not in orphans]


# ---------------------------------------------------------------------------------------------
# Looking at the processes


def _own_lineage() -> set[int]:
    """Our pid and our parents': the CLI may itself run from the environment it repairs."""
    pids = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        pids.update(p.pid for p in psutil.Process().parents())
    return pids


def _is_program(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)  # noqa: PTH113 - hot loop, str paths


def _mapped_paths(pid: int) -> Iterator[str]:
    """Files a Linux process has mapped (shared libraries, extension modules).

    /proc/PID/maps is cheap; psutil's memory_maps reads smaps, which is slow on big processes.
    """
    try:
        text = Path(f"/proc/{pid}/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    seen: set[str] = set()  # a library is mapped several times (code, data, bss): judge it once
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/") and fields[5] not in seen:
            seen.add(fields[5])
            yield fields[5]


def _posix_file_reason(roots: Roots, process: psutil.Process) -> str | None:
    for path in _mapped_paths(process.pid):
        if roots.contains_canonical(path.removesuffix(" (deleted)")):
            return f"it has loaded {path}"
    with contextlib.suppress(psutil.Error, OSError):
        for opened in process.open_files():
            if roots.contains(opened.path):
                return f"it has {opened.path} open"
    return None


def windows_held_files(env: PythonEnv) -> list[str]:
    """What a Windows process using the environment must hold: torch's DLLs and every `.pyd`."""
    files: set[str] = set()
    for site in env.site_packages:
        with contextlib.suppress(OSError):
            files.update(str(p) for p in (site / "torch" / "lib").glob("*.dll"))
            files.update(str(p) for p in site.rglob("*.pyd"))
    return sorted(files)


def _environ(process: psutil.Process) -> dict[str, str] | None:
    try:
        return process.environ()
    except (psutil.Error, OSError):
        return None  # another user's process: the other tests still apply


def processes_using(
    env: PythonEnv,
    *,
    exclude: Iterable[int] = (),
    platform: Platform | None = None,
    file_holders: FileHolders | None = None,
) -> list[ProcessInfo]:
    """Every other process tied to the environment (see the module's docstring), by pid.

    `platform` and `file_holders` are seams: Windows asks `file_holders` (the Restart Manager)
    about `windows_held_files(env)` once, instead of looking into each process's files.
    Processes we may not inspect, or that exit meanwhile, are skipped.
    """
    windows = (platform or env.platform) is Platform.WINDOWS
    roots = Roots(env.root)
    skip = _own_lineage() | set(exclude)
    found: dict[int, ProcessInfo] = {}
    for process in psutil.process_iter(["pid", "ppid", "name", "exe", "cmdline", "cwd", "create_time"]):
        info = process.info
        pid = int(info["pid"])
        if pid in skip:
            continue
        cmdline = tuple(info.get("cmdline") or ())
        try:
            seen = Seen(info.get("exe"), info.get("name"), cmdline, info.get("cwd"), None)
            reason = cheap_reason(roots, seen, is_program=_is_program)
            if reason is None:
                seen = Seen(seen.exe, seen.name, cmdline, seen.cwd, _environ(process))
                reason = cheap_reason(roots, seen, is_program=_is_program)
            if reason is None and not windows:
                reason = _posix_file_reason(roots, process)
        except (psutil.Error, OSError):
            continue
        if reason is not None:
            environ = seen.environ if seen.environ is not None else _environ(process)
            marked = (environ or {}).get(proc.CHILD_OF_VAR, "")
            found[pid] = _info(
                info,
                reason,
                installer=is_installer(cmdline),
                child_of=int(marked) if marked.isdigit() else None,
            )
    if windows:
        holders = (file_holders or restartmgr.holders_of)(windows_held_files(env))
        for holder in holders:
            if holder.pid not in skip and holder.pid not in found:
                found[holder.pid] = ProcessInfo(holder.pid, holder.name, "it holds a file of the environment")
    return [found[pid] for pid in sorted(found)]


def _info(info: Mapping[str, object], reason: str, *, installer: bool, child_of: int | None) -> ProcessInfo:
    cmdline = info.get("cmdline") or ()
    first = cmdline[0] if isinstance(cmdline, list | tuple) and cmdline else "?"
    name = str(info.get("name") or Path(str(first)).name)
    started = info.get("create_time")
    parent = info.get("ppid")
    return ProcessInfo(
        int(str(info["pid"])),
        name,
        reason,
        started=float(started) if isinstance(started, int | float) else None,
        parent=parent if isinstance(parent, int) else None,
        installer=installer,
        child_of=child_of,
    )


def ensure_not_in_use(env: PythonEnv, *, exclude: Iterable[int] = ()) -> None:
    """Raise EnvironmentInUseError naming every process tied to the environment."""
    found = processes_using(env, exclude=exclude)
    if found:
        raise EnvironmentInUseError(env.root, found)


# ---------------------------------------------------------------------------------------------
# Orphaned installers


def _handles(orphans: Iterable[ProcessInfo]) -> list[psutil.Process]:
    """The orphans and their descendants, each checked to be the same process we saw."""
    handles: dict[int, psutil.Process] = {}
    for orphan in orphans:
        try:
            process = psutil.Process(orphan.pid)
            if orphan.started is not None and abs(process.create_time() - orphan.started) > 1.0:
                continue  # gone, and its pid reused by someone else
            handles[process.pid] = process
            for child in process.children(recursive=True):
                handles.setdefault(child.pid, child)
        except psutil.Error:
            continue
    return list(handles.values())


def settle_orphans(
    env: PythonEnv,
    orphans: Sequence[ProcessInfo],
    *,
    term_wait: float = ORPHAN_TERM_WAIT_S,
    kill_wait: float = ORPHAN_KILL_WAIT_S,
) -> None:
    """End an interrupted fix's installers, and wait (bounded) until none of them is left.

    Waiting for one to finish by itself would only let it write more: the restore that follows
    puts back every file it touched. Asked to stop first (SIGTERM; on Windows there is only
    TerminateProcess), killed after `term_wait`, waited for up to `kill_wait` more. Raises
    EnvironmentInUseError naming what still runs (another user's installer we may not end):
    nothing is restored under a live writer.
    """
    processes = _handles(orphans)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if sys.platform == "win32":
                process.kill()
            else:
                process.send_signal(signal.SIGTERM)
    alive = proc.wait_gone(processes, timeout=term_wait)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    left = {p.pid for p in proc.wait_gone(alive, timeout=kill_wait)}
    if left:
        still = [o for o in orphans if o.pid in left] or [
            ProcessInfo(pid, "installer", "a child of an interrupted fix's installer") for pid in sorted(left)
        ]
        listed = "; ".join(p.describe() for p in still)
        raise EnvironmentInUseError(
            env.root,
            still,
            message=f"what an interrupted fix left running could not be stopped: {listed}; end it, "
            "then try again",
        )
