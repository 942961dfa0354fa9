"""Where torchdoctor keeps its files (platformdirs), with environment overrides.

The overrides exist for tests, portable installs and support sessions: each names one folder.
  TORCHDOCTOR_CONFIG_DIR  settings (config.toml) and the user's knowledge override (knowledge.json)
  TORCHDOCTOR_STATE_DIR   state.json, benchmark history, install snapshots
  TORCHDOCTOR_CACHE_DIR   the index cache
  TORCHDOCTOR_LOG_DIR     logs

What torchdoctor writes there is the user's alone: index pages fetched with their credentials,
logs naming their environments. Folders are created 0700 and files 0600 (`private_dir`,
`open_private`), whatever the umask; a folder that already exists is left as it is (a user who
points TORCHDOCTOR_CACHE_DIR at a shared folder chose that). On Windows the modes are not
enforced by the OS; the folders live in the user's profile, which only they can read.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Any, Final, Literal

import platformdirs

APP = "torchdoctor"
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600


def _dir(env_var: str, default: str) -> Path:
    override = os.environ.get(env_var)
    return Path(override) if override else Path(default)


def config_dir() -> Path:
    return _dir("TORCHDOCTOR_CONFIG_DIR", platformdirs.user_config_dir(APP, appauthor=False))


def state_dir() -> Path:
    return _dir("TORCHDOCTOR_STATE_DIR", platformdirs.user_state_dir(APP, appauthor=False))


def cache_dir() -> Path:
    return _dir("TORCHDOCTOR_CACHE_DIR", platformdirs.user_cache_dir(APP, appauthor=False))


def log_dir() -> Path:
    return _dir("TORCHDOCTOR_LOG_DIR", platformdirs.user_log_dir(APP, appauthor=False))


def config_file() -> Path:
    return config_dir() / "config.toml"


def knowledge_override_file() -> Path:
    return config_dir() / "knowledge.json"


def private_dir(folder: Path) -> Path:
    """Create `folder` and any missing parents as 0700 (umask aside); return it."""
    missing: list[Path] = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another process made it first
        path.chmod(DIR_MODE)
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)  # raises the real reason (a file in the way)
    return folder


def open_private(path: Path, mode: Literal["w", "wb", "a"] = "w") -> IO[Any]:
    """Open `path` for writing, created 0600 (an existing file is also set to 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    # O_BINARY (Windows): newlines are translated by Python's text layer, not twice by the C runtime.
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0), FILE_MODE)
    if os.chmod in os.supports_fd:
        with contextlib.suppress(OSError):
            os.chmod(fd, FILE_MODE)  # noqa: PTH101 - by descriptor; O_CREAT's mode does not apply to a file that already existed
    if mode == "wb":
        return os.fdopen(fd, "wb")
    return os.fdopen(fd, mode, encoding="utf-8")


def write_private(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to a 0600 file."""
    with open_private(path, "w") as fh:
        fh.write(text)


def ensure_private_roots() -> None:
    """Create the state, cache and log folders 0700 if they are missing (at the CLI's start).

    Everything torchdoctor writes lives under them, so a file another module creates with the
    default umask (a snapshot, state.json) is still out of other users' reach. An unwritable
    home is not an error here: the command that needs a folder says so itself.
    """
    for folder in (state_dir(), cache_dir(), log_dir()):
        with contextlib.suppress(OSError):
            private_dir(folder)
