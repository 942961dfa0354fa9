"""The check loop with a fake clock: start, interval, "Check now", resume from sleep, clock jumps.

`schedule` reads the wall clock itself (`datetime.datetime.now()`); the fake clock replaces it at
that boundary, so the real library decides when the interval is due.
"""

from __future__ import annotations

import datetime as real_datetime
import threading
import types
from collections.abc import Iterator

import pytest
import schedule

from torchdoctor.service.monitor.scheduler import CheckLoop, Reason, Timing

START_WALL = 1_800_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.wall_s = START_WALL
        self.mono_s = 1000.0

    def wall(self) -> float:
        return self.wall_s

    def monotonic(self) -> float:
        return self.mono_s

    def advance(self, seconds: float) -> None:
        """Time passing while the machine runs."""
        self.wall_s += seconds
        self.mono_s += seconds

    def suspend(self, seconds: float) -> None:
        """A sleep: the wall clock moves on, the monotonic clock (Linux) does not."""
        self.wall_s += seconds

    def set_wall(self, seconds: float) -> None:
        """Someone (NTP, a person, a time zone bug) changes the wall clock."""
        self.wall_s += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock()

    class FakeDatetime(real_datetime.datetime):
        @classmethod
        def now(cls, tz: real_datetime.tzinfo | None = None) -> FakeDatetime:
            return cls.fromtimestamp(fake.wall_s, tz)

    shim = types.SimpleNamespace(
        datetime=FakeDatetime,
        timedelta=real_datetime.timedelta,
        time=real_datetime.time,
        date=real_datetime.date,
    )
    monkeypatch.setattr(schedule, "datetime", shim)
    yield fake


class Recorder:
    def __init__(self, clock: FakeClock, takes: float = 0.0) -> None:
        self.clock = clock
        self.takes = takes
        self.reasons: list[Reason] = []
        self.during: list[bool] = []
        self.loop: CheckLoop | None = None

    def __call__(self, reason: Reason) -> None:
        self.reasons.append(reason)
        if self.loop is not None:
            self.during.append(self.loop.request_check())  # "Check now" pressed during this check
        self.clock.advance(self.takes)


TIMING = Timing(interval_s=1800, first_delay_s=5, resume_delay_s=30, poll_s=30, jump_s=90)


def make(clock: FakeClock, takes: float = 0.0) -> tuple[CheckLoop, Recorder]:
    recorder = Recorder(clock, takes)
    loop = CheckLoop(recorder, TIMING, clock)
    return loop, recorder


def tick(loop: CheckLoop, clock: FakeClock, seconds: float, step: float = 30) -> list[Reason | None]:
    """Run the loop for `seconds` of normal time, stepping as the real loop would."""
    out = []
    elapsed = 0.0
    while elapsed < seconds:
        wait = min(step, loop.seconds_to_next())
        loop._asked_wait = wait  # what the real loop asks `Event.wait` for
        clock.advance(wait or step)
        elapsed += wait or step
        out.append(loop.step())
    return out


def test_first_check_comes_soon_after_start_not_at_once(clock: FakeClock) -> None:
    loop, rec = make(clock)
    assert loop.step() is None  # the desktop is still logging in
    clock.advance(5)
    assert loop.step() is Reason.START
    assert rec.reasons == [Reason.START]


def test_then_every_interval_counted_from_the_last_check(clock: FakeClock) -> None:
    loop, _rec = make(clock)
    clock.advance(5)
    loop.step()
    reasons = [r for r in tick(loop, clock, 3 * 1800 + 10) if r is not None]
    assert reasons == [Reason.INTERVAL] * 3
    assert loop.seconds_to_next() <= 30  # never sleeps longer than a poll


def test_check_now_runs_at_once_and_restarts_the_interval(clock: FakeClock) -> None:
    loop, _rec = make(clock)
    clock.advance(5)
    loop.step()
    tick(loop, clock, 1000)
    assert loop.request_check() is True
    assert loop.step() is Reason.CHECK_NOW
    # the interval now counts from the "Check now": nothing due 1000 s later...
    assert [r for r in tick(loop, clock, 1000) if r] == []
    # ...but 1800 s after it
    assert [r for r in tick(loop, clock, 820) if r] == [Reason.INTERVAL]


def test_check_now_during_a_check_is_coalesced_not_queued(clock: FakeClock) -> None:
    loop, rec = make(clock, takes=20)
    rec.loop = loop
    clock.advance(5)
    assert loop.step() is Reason.START
    assert rec.during == [False]  # refused while the check ran: that check is the answer
    assert loop.step() is None  # nothing queued behind it


def test_check_now_pressed_twice_is_one_check(clock: FakeClock) -> None:
    loop, rec = make(clock)
    clock.advance(5)
    loop.step()
    assert loop.request_check() is True
    assert loop.request_check() is False
    assert loop.step() is Reason.CHECK_NOW
    assert loop.step() is None
    assert rec.reasons == [Reason.START, Reason.CHECK_NOW]


def test_resume_from_sleep_checks_soon_after_and_once(clock: FakeClock) -> None:
    loop, rec = make(clock)
    clock.advance(5)
    loop.step()
    tick(loop, clock, 600)
    loop._asked_wait = 30
    clock.suspend(8 * 3600)  # the laptop slept through 16 intervals
    assert loop.step() is None  # not at once: the driver and network need a moment
    clock.advance(30)
    assert loop.step() is Reason.RESUME
    after = [r for r in tick(loop, clock, 1700) if r]
    assert after == []  # the missed intervals collapse into that one check
    assert rec.reasons == [Reason.START, Reason.RESUME]


def test_a_sleep_seen_only_as_a_long_wait_counts_too(clock: FakeClock) -> None:
    """Windows' monotonic clock may run through a sleep: the loop notices that it waited far longer
    than it asked to."""
    loop, _rec = make(clock)
    clock.advance(5)
    loop.step()
    loop._asked_wait = 30
    clock.advance(3 * 3600)
    assert loop.step() is None
    clock.advance(30)
    assert loop.step() is Reason.RESUME


@pytest.mark.parametrize("jump", [-3600.0, 7200.0])
def test_a_wall_clock_jump_either_way_is_noticed(clock: FakeClock, jump: float) -> None:
    loop, _rec = make(clock)
    clock.advance(5)
    loop.step()
    loop._asked_wait = 30
    clock.advance(30)
    clock.set_wall(jump)
    loop.step()
    clock.advance(30)
    assert loop.step() is Reason.RESUME
    # and the interval is counted again from there, not from the jumped wall time
    assert [r for r in tick(loop, clock, 1790) if r] == [Reason.INTERVAL]


def test_small_delays_are_not_jumps(clock: FakeClock) -> None:
    loop, rec = make(clock)
    clock.advance(5)
    loop.step()
    for _ in range(50):
        loop._asked_wait = 30
        clock.advance(30)
        clock.set_wall(5)  # NTP slewing, a busy machine
        loop.step()
    assert Reason.RESUME not in rec.reasons


def test_a_hold_defers_checks_and_one_runs_when_it_ends(clock: FakeClock) -> None:
    loop, rec = make(clock)
    clock.advance(5)
    loop.step()
    with loop.hold():
        assert loop.request_check() is True
        clock.advance(3600)
        assert loop.step() is None  # a reinstall is changing files: no check reads them now
        assert loop.step() is None
    assert loop.step() in (Reason.CHECK_NOW, Reason.AFTER_HOLD)
    assert loop.step() is None  # the deferred reasons were one check
    assert len(rec.reasons) == 2


def test_a_check_that_raises_does_not_stop_the_loop(clock: FakeClock) -> None:
    calls: list[Reason] = []

    def failing(reason: Reason) -> None:
        calls.append(reason)
        raise RuntimeError("boom")

    loop = CheckLoop(failing, TIMING, clock)
    clock.advance(5)
    assert loop.step() is Reason.START
    assert loop.request_check() is True
    assert loop.step() is Reason.CHECK_NOW
    assert calls == [Reason.START, Reason.CHECK_NOW]


def test_the_real_loop_runs_checks_on_its_own_thread_and_stops() -> None:
    threads: list[str] = []
    ran = threading.Event()

    def check(reason: Reason) -> None:
        threads.append(threading.current_thread().name)
        ran.set()

    loop = CheckLoop(check, Timing(interval_s=3600, first_delay_s=0, poll_s=0.05))
    stop = threading.Event()
    worker = threading.Thread(target=loop.run, args=(stop,), name="checks")
    worker.start()
    assert ran.wait(5)
    ran.clear()
    loop.request_check()
    assert ran.wait(5)  # woken at once, not after the poll
    stop.set()
    loop.wake()
    worker.join(5)
    assert not worker.is_alive()
    assert threads == ["checks", "checks"]
