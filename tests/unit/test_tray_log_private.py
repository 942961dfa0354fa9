"""The tray's log names environments and what was installed: only its user may read it."""

from __future__ import annotations

import logging
import os
import stat
import sys

import pytest

from torchdoctor.agent.tray.logs import log_file, setup_logging

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")


def test_the_tray_log_and_its_rollovers_are_0600_whatever_the_umask() -> None:
    old_umask = os.umask(0o022)  # the usual umask: a plain open() would give 0644
    try:
        path = setup_logging()
        assert path is not None
        logger = logging.getLogger("torchdoctor.test")
        logger.info("x" * 1000)
        handler = next(h for h in logging.getLogger("torchdoctor").handlers if hasattr(h, "doRollover"))
        handler.doRollover()
        logger.info("after the rollover")
    finally:
        os.umask(old_umask)
        for h in list(logging.getLogger("torchdoctor").handlers):
            h.close()
            logging.getLogger("torchdoctor").removeHandler(h)
    for file in (log_file(), log_file().with_name(log_file().name + ".1")):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
