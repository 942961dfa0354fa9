"""The tray's states. Each has its own icon shape, so colour is never the only signal."""

from __future__ import annotations

from enum import StrEnum


class TrayStatus(StrEnum):
    OK = "ok"  # every environment fits
    ATTENTION = "attention"  # a warning somewhere, nothing broken
    BROKEN = "broken"  # an environment will fail on this machine
    CHECKING = "checking"  # a check cycle is running
    WORKING = "working"  # a reinstall or a benchmark is running
    NO_DRIVER = "no-driver"  # no NVIDIA driver (or GPU) on this machine
    ERROR = "error"  # the last check itself failed; the next cycle tries again
