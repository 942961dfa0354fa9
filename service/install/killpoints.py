"""A test seam: die by SIGKILL at a named point of a fix, to prove every point is recoverable.

`TORCHDOCTOR_TEST_KILL_AT=<point>` makes the process kill itself with SIGKILL (on Windows:
TerminateProcess, via os.kill) when it reaches `reached("<point>")`: the same as an external
`kill -9` landing exactly there, without a race. Unset (always, outside the test suite) it costs
one dictionary lookup. The points are listed in POINTS, in the order a fix passes them, so that
the SIGKILL matrix test (tests/integration/test_kill_matrix.py) can cover every one.
"""

from __future__ import annotations

import os
import signal
from typing import Final

ENV_VAR: Final = "TORCHDOCTOR_TEST_KILL_AT"

POINTS: Final = (
    "before-snapshot",  # wheels downloaded, nothing changed yet
    "snapshot-folder-made",  # an empty rollback folder, no manifest
    "snapshot-half-saved",  # half the files linked or copied, no manifest
    "snapshot-manifest-written",  # a complete pending snapshot, nothing installed yet
    "install-started",  # just before the installer runs
    "installed",  # the installer finished; stale records not yet removed
    "stale-removed",  # stale records removed; not verified yet
    "verified",  # verification and check passed; benchmark (if any) and discard ahead
    "discard-start",  # about to discard the snapshot of a successful fix
    "discard-strays-removed",  # pip's old stashes removed; the snapshot still pending
    "discard-renamed",  # the commit: the snapshot folder renamed away, its files still on disk
    "restore-start",  # a failed fix is about to put the old files back
    "restore-cleared",  # what the failed install wrote is gone; old files not back yet
    "restore-half-placed",  # half the old files back
    "restore-placed",  # every old file back, owners and modes not yet
    "restore-checked",  # restored and checked; the snapshot not yet discarded
)


def reached(point: str) -> None:
    if os.environ.get(ENV_VAR) == point:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
