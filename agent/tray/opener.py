"""Opening a file or folder with the OS's default program (the one thin OS seam of the tray)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("torchdoctor.opener")

OPENER_GRACE_S = 3.0


def open_path(path: Path) -> bool:
    """Hand `path` to the desktop; False (and a log line) when there is nothing to hand it to."""
    try:
        if sys.platform == "win32":
            os.startfile(path)  # type: ignore[attr-defined]  # noqa: S606 - a file of ours, no arguments
            return True
        opener = shutil.which("open" if sys.platform == "darwin" else "xdg-open")
        if opener is None:
            log.warning("cannot open %s: no xdg-open on this system", path)
            return False
        # A new session, so that the viewer outlives the tray and never gets our Ctrl-C.
        child = subprocess.Popen(
            [opener, str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        log.warning("cannot open %s: %s", path, exc)
        return False
    # xdg-open fails fast when no program handles the file (exit 3 or 4), but may also run the
    # viewer in the foreground: a quick failure is a failure, anything still running is a viewer.
    try:
        code = child.wait(timeout=OPENER_GRACE_S)
    except subprocess.TimeoutExpired:
        return True
    if code != 0:
        log.warning("cannot open %s: %s exited with %d", path, opener, code)
    return code == 0
