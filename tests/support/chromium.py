"""Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`).

The pipe needs no port and no extra package: Chromium reads JSON commands, each ended by a NUL
byte, on its fd 3 and writes answers and events on fd 4. Every wait has a timeout and the browser
is killed at the end whatever happened. What a test learns:
  requests   every URL the page asked for (Network.requestWillBeSent)
  problems   console errors and warnings, uncaught exceptions, log entries of level error
             (a CSP violation is one), and any alert() that opened a dialog
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

REQUIRE_ENV: Final = "TORCHDOCTOR_REQUIRE_DESKTOP"
CANDIDATES: Final = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S: Final = 30.0


def find_chromium() -> str | None:
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def require_chromium() -> str:
    """The browser's path; skips (fails under TORCHDOCTOR_REQUIRE_DESKTOP=1) when there is none."""
    path = find_chromium()
    if path is None:
        reason = "no Chromium here: scripts/desktop-deps installs Debian's `chromium`"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


class CdpError(RuntimeError):
    pass


@dataclass
class PageLog:
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


class Browser:
    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int) -> None:
        self.proc = proc
        self._out = to_browser
        self._in = from_browser
        self._next_id = 0
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        waiting = self._answers.get(message["id"])
                    if waiting is not None:
                        waiting.put(message)
                else:
                    self.events.put(message)

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout: float = TIMEOUT_S) -> dict[str, Any]:  # fmt: skip
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            box: queue.Queue[dict[str, Any]] = queue.Queue()
            self._answers[ident] = box
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        try:
            answer = box.get(timeout=timeout)
        except queue.Empty:
            raise CdpError(f"{method}: no answer within {timeout} s") from None
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error']}")
        return dict(answer.get("result", {}))

    def close(self) -> None:
        with suppress(CdpError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._out, self._in):
            with suppress(OSError):
                os.close(fd)


@contextmanager
def browser(tmp: Path) -> Iterator[Browser]:
    binary = require_chromium()
    cmd_read, cmd_write = os.pipe()  # we write commands; Chromium reads them on its fd 3
    ans_read, ans_write = os.pipe()  # Chromium writes on its fd 4; we read

    def plumb() -> None:
        os.dup2(cmd_read, 3)
        os.dup2(ans_write, 4)

    args = [
        binary, "--headless", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
        "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps", "--mute-audio",
        "--disable-dev-shm-usage",  # containers give /dev/shm 64 MB; Chromium then crashes on big pages
        f"--user-data-dir={tmp / 'chromium-profile'}", "--hide-scrollbars",
    ]  # fmt: skip
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    log = (tmp / "chromium-stderr.log").open("wb")
    proc = subprocess.Popen(
        [*args, "about:blank"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        pass_fds=(3, 4), preexec_fn=plumb,  # noqa: PLW1509 - single-threaded at this point in the test
    )  # fmt: skip
    os.close(cmd_read)
    os.close(ans_write)
    instance = Browser(proc, cmd_write, ans_read)
    try:
        instance.send("Browser.getVersion")
        yield instance
    finally:
        instance.close()
        log.close()


class Page:
    """One tab: load a file, look at it at a width, take its picture, print it."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self.log = PageLog()
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session)

    def _drain(self, until: str | None = None, timeout: float = TIMEOUT_S) -> None:
        """Record events; with `until`, wait for that event (raises on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self.browser.events.get(timeout=max(0.0, remaining) if until else 0.0)
            except queue.Empty:
                if until:
                    raise CdpError(f"no {until} within {timeout} s") from None
                return
            self._record(event)
            if until and event.get("method") == until and event.get("sessionId") == self.session:
                return

    def _record(self, event: dict[str, Any]) -> None:
        method = event.get("method", "")
        params = event.get("params", {})
        if method == "Network.requestWillBeSent":
            self.log.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.log.problems.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            self.log.problems.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            entry = params["entry"]
            self.log.problems.append(f"log {entry['level']}: {entry.get('text')} {entry.get('url', '')}")
        elif method == "Page.javascriptDialogOpening":
            self.log.dialogs.append(params.get("message", ""))
            self.call("Page.handleJavaScriptDialog", {"accept": True})

    def open(self, path: Path, *, width: int) -> None:
        self.resize(width)
        self.call("Page.navigate", {"url": path.absolute().as_uri()})
        self._drain(until="Page.loadEventFired")
        self.evaluate("1")  # let the page's script finish its first task
        self._drain()

    def resize(self, width: int, height: int = 900) -> None:
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, dest: Path, *, width: int, max_height: int = 12000) -> Path:
        """The whole page (up to `max_height` CSS pixels) at `width`, as a PNG."""
        self.resize(width)
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        clip = {"x": 0, "y": 0, "width": width, "height": min(height, max_height), "scale": 1}
        data = self.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(base64.b64decode(data["data"]))
        self._drain()
        return dest

    def pdf(self) -> bytes:
        data = self.call("Page.printToPDF", {"printBackground": False})
        self._drain()
        return base64.b64decode(data["data"])
