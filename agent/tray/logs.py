"""The tray's log: rotating, in the platform's log folder, and safe under pythonw (no stderr)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from torchdoctor.service import paths

LOG_NAME = "tray.log"


def log_file() -> Path:
    return paths.log_dir() / LOG_NAME


class PrivateRotatingFileHandler(RotatingFileHandler):
    """Each file it opens, the first and every one after a rollover, is readable by its user only
    (0600): the log names environments, paths and what was installed."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if hasattr(os, "fchmod"):  # POSIX: a file an older version made with the umask's mode
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


def setup_logging() -> Path | None:
    """File logging (1 MB x 5), plus stderr when there is one; returns the file, None if unwritable."""
    root = logging.getLogger("torchdoctor")
    root.setLevel(logging.INFO)
    for old in list(root.handlers):
        root.removeHandler(old)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    path: Path | None = log_file()
    try:
        target = log_file()
        paths.private_dir(target.parent)
        rotating = PrivateRotatingFileHandler(target, maxBytes=1_000_000, backupCount=5, encoding="utf-8")
        rotating.setFormatter(fmt)
        root.addHandler(rotating)
    except OSError:
        path = None
    # pythonw and a windowed frozen build have sys.stderr None: a StreamHandler would crash on it.
    if sys.stderr is not None:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        root.addHandler(stream)
    return path
