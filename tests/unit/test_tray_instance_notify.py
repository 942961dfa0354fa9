"""Single instance (a real file lock, a real loopback door) and the notifier's fallback chain."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from torchdoctor.agent.tray.instance import DOOR_NAME, AlreadyRunning, Instance, knock
from torchdoctor.agent.tray.notify import Notifier


def test_a_second_instance_is_refused_and_its_knock_reaches_the_first(tmp_path: Path) -> None:
    first = Instance(tmp_path)
    first.acquire()
    knocked = threading.Event()
    first.open_door(knocked.set)
    try:
        with pytest.raises(AlreadyRunning):
            Instance(tmp_path).acquire()
        assert knock(tmp_path) is True
        assert knocked.wait(5)
        assert (tmp_path / DOOR_NAME).stat().st_mode & 0o077 == 0  # the token is this user's alone
    finally:
        first.release()
    assert not (tmp_path / DOOR_NAME).exists()
    second = Instance(tmp_path)
    second.acquire()  # released: the next start gets it
    second.release()


def test_a_knock_with_the_wrong_token_is_ignored(tmp_path: Path) -> None:
    inst = Instance(tmp_path)
    inst.acquire()
    knocked = threading.Event()
    inst.open_door(knocked.set)
    try:
        door = json.loads((tmp_path / DOOR_NAME).read_text())
        door["token"] = "0" * 32
        (tmp_path / DOOR_NAME).write_text(json.dumps(door))
        assert knock(tmp_path) is False
        assert not knocked.wait(0.5)
    finally:
        inst.release()


def test_knocking_where_nobody_answers_is_false_not_an_error(tmp_path: Path) -> None:
    assert knock(tmp_path) is False
    (tmp_path / DOOR_NAME).write_text("{garbage")
    assert knock(tmp_path) is False
    (tmp_path / DOOR_NAME).write_text(json.dumps({"port": 1, "token": "x"}))
    assert knock(tmp_path, timeout=1) is False


def test_the_lock_is_freed_when_its_holder_is_killed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from torchdoctor.agent.tray.instance import Instance;"
         f"i = Instance(Path({str(tmp_path)!r})); i.acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(AlreadyRunning):
            Instance(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    inst = Instance(tmp_path)
    inst.acquire()
    inst.release()


def test_notifications_use_the_primary_then_fall_back_and_are_always_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[tuple[str, str]] = []
    fallback: list[tuple[str, str]] = []

    def broken_primary(title: str, body: str) -> None:
        raise RuntimeError("no D-Bus session")

    calls = iter([lambda t, b: sent.append((t, b)), broken_primary])
    notifier = Notifier(primary=lambda: next(calls), fallback=lambda t, b: fallback.append((t, b)))
    with caplog.at_level("INFO", logger="torchdoctor.notify"):
        notifier.send("one", "first")
        notifier.close()
    assert sent == [("one", "first")] and notifier.delivered == [("desktop-notifier", "one", "first")]
    assert "notification: one — first" in caplog.text

    failing = Notifier(primary=lambda: broken_primary, fallback=lambda t, b: fallback.append((t, b)))
    failing.send("two", "second")
    failing.send("three", "third")
    failing.close()
    assert fallback == [("two", "second"), ("three", "third")]
    assert [c for c, _, _ in failing.delivered] == ["tray", "tray"]


def test_when_nothing_can_show_a_notification_it_is_still_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unavailable() -> None:
        raise ImportError("desktop_notifier")

    def no_tray(title: str, body: str) -> None:
        raise RuntimeError("this tray backend cannot show notifications")

    notifier = Notifier(primary=unavailable, fallback=no_tray)  # type: ignore[arg-type]
    with caplog.at_level("INFO", logger="torchdoctor.notify"):
        notifier.send("Driver updated", "2 environments no longer fit")
        notifier.close()
    assert notifier.delivered == [("none", "Driver updated", "2 environments no longer fit")]
    assert "Driver updated — 2 environments no longer fit" in caplog.text
