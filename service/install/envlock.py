"""One `fix` per environment, whoever runs it and however they name the environment.

The lock belongs to the environment, not to a user's state folder: root and a user, or one
person through a symlink or a bind mount, must exclude each other. `env_lock` therefore takes
two OS file locks (flock on POSIX, a byte-range lock on Windows), machine-wide first:
  1. `<machine lock folder>/torchdoctor-<sha256 of the real path>.lock`: seen by every user. The
     folder is /run/lock (else /var/lock, /tmp) on POSIX, `%ProgramData%\\torchdoctor\\locks` on
     Windows; `TORCHDOCTOR_LOCK_DIR` replaces it (tests, support). A folder others can write
     into is used only when it has the sticky bit, so nobody can swap another user's lock file.
  2. `<env root>/.torchdoctor/fix.lock`, when we can write there: the same file through any
     path to the environment, a bind mount or another container included.
Either one held elsewhere refuses at once (no waiting). The OS frees both when the holder dies,
even by SIGKILL, so a crashed fix never blocks the next; nothing here ever deletes a lock file
(deleting one that another process is about to lock splits the lock in two).

Files are opened without following a symlink at the last step (O_NOFOLLOW) and must be plain
files with one link: root never writes through a link a user planted. The lock file holds what
the refusal message needs and nothing else: pid, process start time, program name (no command
line, no index URL).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

from torchdoctor.service.errors import TorchdoctorError
from torchdoctor.service.models import PythonEnv

LOCK_DIR_VAR: Final = "TORCHDOCTOR_LOCK_DIR"
# Fixed paths, not $TMPDIR, which may differ per user. All three are root's and sticky.
_POSIX_LOCK_DIRS: Final = ("/run/lock", "/var/lock", "/tmp")  # noqa: S108
_IN_ENV: Final = (".torchdoctor", "fix.lock")
_PROGRAM: Final = "torchdoctor fix"
_WINDOWS_LOCK_OFFSET: Final = 1 << 30  # lock a byte far past the owner text, which stays readable


class EnvironmentLockedError(TorchdoctorError):
    code = "environment-locked"

    def __init__(self, message: str, *, hint: str | None = None, holder_pid: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder_pid = holder_pid


class LockUnavailableError(TorchdoctorError):
    """No lock can be placed: no safe machine-wide folder, and the environment is not writable."""

    code = "lock-unavailable"


class LockUnsafeError(TorchdoctorError):
    """A lock path is a link, a folder, or a file with other names: someone may be tampering."""

    code = "lock-unsafe"


@dataclass(frozen=True, slots=True)
class Owner:
    pid: int
    started: float | None
    program: str


def lock_key(root: Path) -> str:
    """sha256 of the real, case-folded path: one key however the environment is named."""
    resolved = os.path.normcase(os.path.realpath(root))
    return hashlib.sha256(resolved.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def folder_is_safe(mode: int, owner_uid: int, my_uid: int) -> bool:
    """May lock files live in a folder with this mode and owner? Pure.

    Ours or root's, and if others may write into it, sticky (only a file's owner may remove or
    rename it), so no other user can swap the lock file we are about to open.
    """
    if not stat.S_ISDIR(mode) or owner_uid not in (0, my_uid):
        return False
    others_write = mode & (stat.S_IWGRP | stat.S_IWOTH)
    return not others_write or bool(mode & stat.S_ISVTX)


def machine_lock_dir() -> Path | None:
    """The machine-wide lock folder every user sees, or None if there is no safe one."""
    override = os.environ.get(LOCK_DIR_VAR)
    if sys.platform == "win32":
        programdata = Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData"))
        base = Path(override) if override else programdata / "torchdoctor" / "locks"
        with contextlib.suppress(OSError):
            base.mkdir(parents=True, exist_ok=True)
            return base
        return None
    for candidate in (override,) if override else _POSIX_LOCK_DIRS:
        try:
            info = Path(candidate).stat()  # /var/lock is a link to /run/lock; the folder is what counts
        except OSError:
            continue
        if folder_is_safe(info.st_mode, info.st_uid, os.getuid()) and os.access(candidate, os.W_OK):
            return Path(candidate)
    return None


def machine_lock_path(env: PythonEnv) -> Path | None:
    folder = machine_lock_dir()
    return folder / f"torchdoctor-{lock_key(env.root)}.lock" if folder is not None else None


def in_env_lock_path(env: PythonEnv) -> Path:
    return Path(os.path.realpath(env.root)).joinpath(*_IN_ENV)


def lock_path(env: PythonEnv) -> Path:
    """The machine-wide lock file (the in-environment one where there is no machine-wide folder)."""
    return machine_lock_path(env) or in_env_lock_path(env)


# ---------------------------------------------------------------------------------------------
# One lock file


@dataclass(slots=True)
class _Held:
    fd: int
    path: Path
    writable: bool


def _open(path: Path) -> tuple[int, bool]:
    """Open (creating) `path` without following a link; read-only if it is another user's file."""
    # O_NOFOLLOW/O_CLOEXEC on POSIX; O_BINARY/O_NOINHERIT on Windows (no newline translation, and
    # no child inherits the lock).
    flags = 0
    for name in ("O_NOFOLLOW", "O_CLOEXEC", "O_BINARY", "O_NOINHERIT"):
        flags |= getattr(os, name, 0)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
        writable = True
    except PermissionError:
        # Another user's lock file in the shared folder: a read-only descriptor locks as well.
        fd = os.open(path, os.O_RDONLY | flags)
        writable = False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockUnsafeError(f"the lock file {path} is a symbolic link; refusing to follow it") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise LockUnsafeError(
            f"the lock file {path} is not a plain file of its own (a link or a folder); refusing to use it",
            hint="remove it if nothing is running, then try again",
        )
    return fd, writable


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        """Take the OS lock on `fd` without waiting; False if another process holds it."""
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        """Take the OS lock on `fd` without waiting; False if another process holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def owner_record(pid: int, started: float | None) -> bytes:
    """What a lock file says about its holder: enough to name it, nothing that could be private."""
    return json.dumps({"pid": pid, "started": started, "program": _PROGRAM}).encode("utf-8")


def parse_owner(data: bytes) -> Owner | None:
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None
    started = record.get("started")
    program = record.get("program")
    return Owner(
        record["pid"],
        float(started) if isinstance(started, int | float) else None,
        program if isinstance(program, str) else _PROGRAM,
    )


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _live_owner(fd: int) -> Owner | None:
    """The holder the lock file names, if that process is still the one that wrote it."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        owner = parse_owner(os.read(fd, 4096))
    except OSError:
        return None
    if owner is None:
        return None
    now = _started(owner.pid)
    if now is None or (owner.started is not None and abs(now - owner.started) > 1.0):
        return None  # a stale record from an earlier holder that could not clear it, or a reused pid
    return owner


def _acquire(path: Path, root: Path, *, give_to: tuple[int, int] | None = None) -> _Held:
    fd, writable = _open(path)
    if not _try_lock(fd):
        owner = _live_owner(fd)
        os.close(fd)
        who = f" (pid {owner.pid})" if owner is not None else ""
        raise EnvironmentLockedError(
            f"another torchdoctor fix{who} is already changing {root}; wait for it to finish",
            hint="if no fix is running, the lock is freed by the system; try again in a moment",
            holder_pid=owner.pid if owner is not None else None,
        )
    if writable and give_to is not None and os.fstat(fd).st_uid == 0:
        with contextlib.suppress(OSError):
            os.fchown(fd, *give_to)
    if writable:
        # Best effort: the lock works without it; it only names the holder in a refusal.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, owner_record(os.getpid(), _started(os.getpid())))
    return _Held(fd, path, writable)


def _release(held: _Held) -> None:
    try:
        if held.writable:
            with contextlib.suppress(OSError):
                os.ftruncate(held.fd, 0)  # no stale pid for the next refusal to name
        _unlock(held.fd)
    finally:
        os.close(held.fd)


def env_owner(root: Path) -> tuple[int, int] | None:
    """(uid, gid) of the environment when we are root and it is another user's, else None.

    Root's fix gives that user the `.torchdoctor` folder and lock file it makes there, so the
    user's own fixes can still write their records and snapshots beside them. Never an escalation:
    the user owns the folder they are in.
    """
    if sys.platform == "win32" or os.geteuid() != 0:
        return None
    try:
        info = root.stat()
    except OSError:
        return None
    return (info.st_uid, info.st_gid) if info.st_uid != 0 else None


def _in_env_dir(lock: Path, give_to: tuple[int, int] | None) -> bool:
    """Make `.torchdoctor` in the environment if we may; False if we cannot write there."""
    folder = lock.parent
    try:
        folder.mkdir(exist_ok=True)
        if give_to is not None and folder.lstat().st_uid == 0 and not folder.is_symlink():
            os.chown(folder, *give_to, follow_symlinks=False)
    except OSError:
        return False
    return not folder.is_symlink() and folder.is_dir()


@contextlib.contextmanager
def env_lock(env: PythonEnv) -> Iterator[None]:
    """Hold the environment's fix lock, or raise EnvironmentLockedError at once.

    Raises LockUnsafeError if a lock file was replaced by a link, and LockUnavailableError when no
    lock could be placed at all (no safe machine-wide folder, and the environment is read-only).
    """
    held: list[_Held] = []
    machine, in_env = machine_lock_path(env), in_env_lock_path(env)
    # Always machine-wide first, then the environment's: one order everywhere, so no deadlock.
    give_to = env_owner(in_env.parent.parent)
    wanted = [p for p in (machine, in_env if _in_env_dir(in_env, give_to) else None) if p is not None]
    try:
        for path in wanted:
            try:
                held.append(_acquire(path, env.root, give_to=give_to if path == in_env else None))
            except PermissionError:
                continue  # not ours to write, nor to read: the other lock covers this caller
        if not held:
            raise LockUnavailableError(
                f"cannot lock {env.root}: neither the environment nor a machine-wide lock folder is writable",
                hint=f"set {LOCK_DIR_VAR} to a folder every user of this machine can write to",
            )
        yield
    finally:
        for item in reversed(held):
            _release(item)
