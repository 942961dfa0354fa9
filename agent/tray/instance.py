"""One tray per user: a file lock, and a loopback door through which a second start asks the
running tray to check now (then exits 0), so double-clicking the launcher is never an error.

The door is a TCP socket on 127.0.0.1 with a random token, both written to a file only this user
can read: Windows has no Unix sockets everywhere we run, and the token keeps other local users
(who can connect to any loopback port) from poking the tray.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger("torchdoctor.instance")

LOCK_NAME = "tray.lock"
DOOR_NAME = "tray.door"
_MESSAGE = b"check-now"


class AlreadyRunning(Exception):
    """Another tray of this user holds the lock."""


class Instance:
    """Held for the tray's lifetime: `acquire()` first, `open_door()` once the tray can answer."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = FileLock(str(folder / LOCK_NAME), timeout=0)
        self._server: socket.socket | None = None
        self._stop = threading.Event()

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise AlreadyRunning(str(self.folder / LOCK_NAME)) from None

    def open_door(self, on_knock: Callable[[], None]) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.settimeout(1.0)
        self._server = server
        token = secrets.token_hex(16)
        _write_private(
            self.folder / DOOR_NAME,
            json.dumps({"port": server.getsockname()[1], "token": token, "pid": os.getpid()}),
        )
        threading.Thread(
            target=self._serve, args=(server, token, on_knock), name="torchdoctor-door", daemon=True
        ).start()

    def _serve(self, server: socket.socket, token: str, on_knock: Callable[[], None]) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                try:
                    data = conn.recv(256)
                except OSError:
                    continue
                given, _, message = data.strip().partition(b" ")
                if hmac.compare_digest(given, token.encode()) and message == _MESSAGE:
                    with contextlib.suppress(OSError):
                        conn.sendall(b"ok\n")
                    on_knock()
                else:
                    log.warning("ignored a knock with a wrong token")

    def release(self) -> None:
        self._stop.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        with contextlib.suppress(OSError):
            (self.folder / DOOR_NAME).unlink()
        self._lock.release()


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)


def knock(folder: Path, timeout: float = 3.0) -> bool:
    """Ask the running tray to check now. False when it could not be reached."""
    try:
        door = json.loads((folder / DOOR_NAME).read_text(encoding="utf-8"))
        port, token = int(door["port"]), str(door["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(token.encode() + b" " + _MESSAGE + b"\n")
            return conn.recv(16).startswith(b"ok")
    except OSError:
        return False
