"""Notifications: desktop-notifier (WinRT toasts on Windows, D-Bus on Linux), else pystray's own.

Every notification is also written to the log first, so a toast the OS swallowed (Windows 11
hides them until the user allows the app; a Linux session without a notification daemon) is
never lost. Sending happens on one thread of its own: desktop-notifier's sync API keeps an event
loop that must always be driven from the same thread, and a slow D-Bus must not hold up a check.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path

log = logging.getLogger("torchdoctor.notify")

APP_NAME = "torchdoctor"


Sender = Callable[[str, str], None]  # (title, body)


def _icon_path() -> Path | None:
    try:
        path = Path(str(resources.files("torchdoctor.icons").joinpath("torchdoctor.png")))
    except (ModuleNotFoundError, TypeError):
        return None
    return path if path.is_file() else None


def desktop_notifier_sender() -> Sender:
    """Raises ImportError (or what the backend raises) when desktop-notifier cannot work here."""
    from desktop_notifier import DesktopNotifierSync, Icon  # noqa: PLC0415 - heavy, and optional at run time

    icon_path = _icon_path()
    notifier = DesktopNotifierSync(app_name=APP_NAME, app_icon=Icon(path=icon_path) if icon_path else None)

    def send(title: str, body: str) -> None:
        notifier.send(title=title, message=body)

    return send


class Notifier:
    """`send()` returns at once; a worker thread delivers, falling back once the primary fails."""

    def __init__(
        self,
        *,
        primary: Callable[[], Sender] = desktop_notifier_sender,
        fallback: Sender | None = None,
    ) -> None:
        self._make_primary = primary
        self.fallback = fallback
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._deliver, name="torchdoctor-notify", daemon=True)
        self._thread.start()
        self.delivered: list[tuple[str, str, str]] = []  # (channel, title, body), for the log and tests

    def send(self, title: str, body: str) -> None:
        log.info("notification: %s — %s", title, body)
        self._queue.put((title, body))

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _deliver(self) -> None:
        primary: Sender | None = None
        primary_failed = False
        while (item := self._queue.get()) is not None:
            title, body = item
            if primary is None and not primary_failed:
                try:
                    primary = self._make_primary()
                except Exception as exc:  # ImportError, no D-Bus session, no WinRT: use the fallback
                    primary_failed = True
                    log.warning("desktop notifications are unavailable (%s); using the tray's own", exc)
            channel = "none"
            if primary is not None:
                try:
                    primary(title, body)
                    channel = "desktop-notifier"
                except Exception as exc:
                    log.warning("a desktop notification failed (%s); using the tray's own", exc)
                    primary, primary_failed = None, True
            if channel == "none" and self.fallback is not None:
                try:
                    self.fallback(title, body)
                    channel = "tray"
                except Exception as exc:
                    log.warning("the tray's notification failed too (%s); it is in this log only", exc)
            self.delivered.append((channel, title, body))
