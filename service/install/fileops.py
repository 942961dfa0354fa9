"""The file operations a snapshot and a restore are made of, hardened for Windows.

Three Windows facts shape them (each handled here so that `snapshot.py` reads as the algorithm):
  - MAX_PATH. A site-packages prefix over ~88 characters puts torch's deepest file (171 characters
    of RECORD path) past 260. Every operation goes through `io_path`, which on Windows gives the
    `\\\\?\\` absolute form (`long_path`, pure) that the Win32 file API accepts up to ~32k.
  - Transient locks. An antivirus scan, the search indexer or a closing program holds a file for a
    moment: deleting or replacing it fails with WinError 5 (access denied) or 32 (sharing
    violation). `retry_locked` waits those out with backoff for at least 10 s, as pip's rmtree
    does, judging by `exc.winerror`, never by the message text.
  - A loaded DLL cannot be deleted, but can be renamed. A file a failed install wrote that still
    cannot be removed is moved into `<env>/.torchdoctor/trash/`, which the next run empties.
"""

# The os functions take the long-path strings `io_path` returns on Windows, as they are.
# ruff: noqa: PTH101, PTH103, PTH104, PTH106, PTH108

from __future__ import annotations

import contextlib
import ntpath
import os
import secrets
import shutil
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

T = TypeVar("T")

WINDOWS: Final = sys.platform == "win32"
LONG_PREFIX: Final = "\\\\?\\"
_UNC_LONG_PREFIX: Final = "\\\\?\\UNC\\"
# ERROR_ACCESS_DENIED, ERROR_SHARING_VIOLATION: what a briefly held file answers.
TRANSIENT_WINERRORS: Final = frozenset({5, 32})
TRASH: Final = ("trash",)  # under <env>/.torchdoctor/


def long_path(path: str) -> str:
    """The `\\\\?\\` form of an absolute Windows path (pure; Windows path rules on any OS).

    `C:\\a\\..\\b` -> `\\\\?\\C:\\b`; `\\\\server\\share\\x` -> `\\\\?\\UNC\\server\\share\\x`;
    a path already in that form is returned as it is. The prefix turns off the API's own
    normalisation, so `/`, `.` and `..` are resolved here first. A relative path is a bug of the
    caller (the prefix would make it mean something else): ValueError.
    """
    if path.startswith(LONG_PREFIX):
        return path
    if not ntpath.isabs(path) or not ntpath.splitdrive(path)[0]:
        raise ValueError(f"not an absolute Windows path: {path!r}")
    full = ntpath.normpath(path)
    if full.startswith("\\\\"):
        return _UNC_LONG_PREFIX + full[2:]
    return LONG_PREFIX + full


def short_path(text: str) -> str:
    """`long_path` undone: the form the rest of the program compares and shows."""
    if text.startswith(_UNC_LONG_PREFIX):
        return "\\\\" + text[len(_UNC_LONG_PREFIX) :]
    if text.startswith(LONG_PREFIX):
        return text[len(LONG_PREFIX) :]
    return text


def io_path(path: Path | str, *, windows: bool = WINDOWS) -> str:
    """What to hand the OS for `path`: the long form on Windows, the path itself elsewhere."""
    text = os.fspath(path)
    return long_path(ntpath.abspath(text)) if windows else text


def is_transient_lock(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and getattr(exc, "winerror", None) in TRANSIENT_WINERRORS


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait out a transient lock. `sleep` and `clock` are seams for tests."""

    total_s: float = 10.0
    first_delay_s: float = 0.05
    max_delay_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


# The policy every operation here uses unless given one; a module global so tests can swap in a
# fake clock (never a real 10 s wait in a test).
RETRY = RetryPolicy()


def retry_locked(op: Callable[[], T], policy: RetryPolicy | None = None) -> T:
    """Run `op`; while it fails with a transient lock, wait and try again for `policy.total_s`."""
    policy = policy if policy is not None else RETRY
    started = policy.clock()
    delay = policy.first_delay_s
    while True:
        try:
            return op()
        except OSError as exc:
            if not is_transient_lock(exc) or policy.clock() - started >= policy.total_s:
                raise
        policy.sleep(delay)
        delay = min(delay * 2, policy.max_delay_s)


def _unlink_writable(path: Path) -> None:
    target = io_path(path)
    try:
        os.unlink(target)
    except PermissionError:
        # Windows refuses to delete a read-only file: clear the flag, then try again. Where the
        # chmod itself is refused, the first error is the one that explains.
        try:
            st = os.lstat(target)
        except OSError:
            raise
        if stat.S_ISLNK(st.st_mode) or st.st_mode & stat.S_IWRITE:
            raise
        os.chmod(target, stat.S_IWRITE | stat.S_IREAD)
        os.unlink(target)


def remove_file(path: Path, policy: RetryPolicy | None = None) -> None:
    retry_locked(lambda: _unlink_writable(path), policy)


def remove_tree(path: Path, policy: RetryPolicy | None = None) -> None:
    """Remove a folder and everything in it (a link or a file: just that entry)."""
    target = io_path(path)
    st = os.lstat(target)
    if not stat.S_ISDIR(st.st_mode):
        remove_file(path, policy)
        return

    def again(func: Callable[[str], object], name: str, _exc: BaseException) -> None:
        with contextlib.suppress(OSError):
            os.chmod(name, stat.S_IWRITE | stat.S_IREAD | stat.S_IEXEC)
        retry_locked(lambda: func(name), policy)

    if sys.version_info >= (3, 12):
        retry_locked(lambda: shutil.rmtree(target, onexc=again), policy)
    else:
        retry_locked(lambda: shutil.rmtree(target, onerror=lambda f, n, i: again(f, n, i[1])), policy)


def trash_dir(root: Path) -> Path:
    return root.joinpath(".torchdoctor", *TRASH)


def move_to_trash(path: Path, root: Path) -> Path:
    """Rename `path` into the environment's trash folder (a loaded DLL can be renamed, not deleted)."""
    trash = trash_dir(root)
    os.makedirs(io_path(trash), exist_ok=True)
    dest = trash / f"{secrets.token_hex(4)}-{path.name}"
    os.rename(io_path(path), io_path(dest))
    return dest


def remove_or_trash(path: Path, root: Path, policy: RetryPolicy | None = None) -> Path | None:
    """Remove `path`; if it stays locked past the retries, move it to the trash (returned)."""
    try:
        remove_tree(path, policy)
    except OSError as exc:
        if not is_transient_lock(exc):
            raise
        return move_to_trash(path, root)
    return None


def empty_trash(root: Path) -> list[Path]:
    """Remove what earlier runs moved to the trash; return what is still locked (kept for later)."""
    trash = trash_dir(root)
    kept: list[Path] = []
    try:
        entries = sorted(Path(short_path(str(p))) for p in Path(io_path(trash)).iterdir())
    except OSError:
        return kept
    quick = RetryPolicy(total_s=0.0)
    for entry in entries:
        try:
            remove_tree(entry, quick)
        except OSError:
            kept.append(entry)
    if not kept:
        with contextlib.suppress(OSError):
            os.rmdir(io_path(trash))
    return kept


@dataclass(frozen=True, slots=True)
class Owner:
    """A file's or folder's permission bits and owner, as they were when the snapshot was taken."""

    mode: int  # the permission bits only (stat.S_IMODE)
    uid: int
    gid: int

    @classmethod
    def of(cls, st: os.stat_result) -> Owner:
        return cls(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def restore_owner(path: Path, want: Owner, *, is_link: bool) -> None:
    """Give `path` back its mode and owner where they differ (root repairing a user's env)."""
    target = io_path(path)
    st = os.lstat(target)
    chown = getattr(os, "lchown", None)  # absent on Windows, where st_uid means nothing
    if chown is not None and (st.st_uid, st.st_gid) != (want.uid, want.gid):
        chown(target, want.uid, want.gid)
    if not is_link and stat.S_IMODE(st.st_mode) != want.mode:
        # After the chown: changing the owner clears set-uid/set-gid bits.
        os.chmod(target, want.mode)


def owner_differs(st: os.stat_result, want: Owner, *, is_link: bool) -> str | None:
    """What differs from `want`, in words, or None."""
    if hasattr(os, "lchown") and (st.st_uid, st.st_gid) != (want.uid, want.gid):
        return f"is owned by {st.st_uid}:{st.st_gid}, not {want.uid}:{want.gid}"
    if not is_link and stat.S_IMODE(st.st_mode) != want.mode:
        return f"has mode {stat.S_IMODE(st.st_mode):o}, not {want.mode:o}"
    return None
