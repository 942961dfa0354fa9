"""When to check: `schedule` inside one worker loop of ours, which also notices sleep and clock jumps.

`schedule` keeps the periodic job (every `interval` seconds, counted from the last check of any
kind). What it cannot know, this loop adds:
  - a check soon after start (not at once: the desktop is still logging in);
  - "Check now" at once; pressed during a check it is coalesced into the running check, because
    that check is already the answer, and pressed twice it is still one check;
  - a check soon after a resume from sleep or a wall-clock jump: the wall clock moved much more
    (or less) than the monotonic clock, or much more than the loop waited. Soon, not at once:
    after a resume the driver and the network need a few seconds;
  - holds: while a reinstall runs, checks wait (they would read half-installed files) and the one
    that came due runs when the hold ends.
One check at a time, always on this loop's thread, never on the UI thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import schedule

from torchdoctor.service.config import DEFAULT_INTERVAL

log = logging.getLogger("torchdoctor.scheduler")

DEFAULT_INTERVAL_S = float(DEFAULT_INTERVAL)  # config.toml's `interval` default


class Reason(StrEnum):
    START = "start"
    INTERVAL = "interval"
    CHECK_NOW = "check-now"
    RESUME = "resume"  # after sleep or a clock jump
    AFTER_HOLD = "after-hold"


class Clock(Protocol):
    def wall(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True, slots=True)
class Timing:
    interval_s: float = DEFAULT_INTERVAL_S
    first_delay_s: float = 5.0
    resume_delay_s: float = 30.0
    poll_s: float = 30.0  # the longest the loop sleeps, so a suspend is noticed within this
    jump_s: float = 90.0  # wall and monotonic time disagreeing by more than this is a jump


class CheckLoop:
    """Calls `check(reason)` when one is due. `run()` is the worker thread's body; tests drive
    `step()` with a fake clock."""

    def __init__(
        self, check: Callable[[Reason], None], timing: Timing = Timing(), clock: Clock | None = None
    ) -> None:
        self._check = check
        self.timing = timing
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._running = False
        self._holds = 0
        self._now_requested = False
        self._due_from_interval = False
        self._one_offs: dict[Reason, float] = {Reason.START: self._clock.monotonic() + timing.first_delay_s}
        self._scheduler = schedule.Scheduler()
        self._job = self._new_job()
        self._last_wall = self._clock.wall()
        self._last_mono = self._clock.monotonic()
        self._asked_wait = 0.0
        self.checks_run = 0

    def _new_job(self) -> schedule.Job:
        # schedule counts whole seconds; sub-second intervals make no sense for a tray anyway.
        job: schedule.Job = self._scheduler.every(max(1, round(self.timing.interval_s))).seconds
        job.do(self._interval_due)
        return job

    def _interval_due(self) -> None:
        self._due_from_interval = True

    # --- what other threads call ---------------------------------------------------------------

    def request_check(self) -> bool:
        """ "Check now". False when it was coalesced into a check that is running or already asked for."""
        with self._lock:
            if self._running or self._now_requested:
                return False
            self._now_requested = True
        self._wake.set()
        return True

    @property
    def checking(self) -> bool:
        return self._running

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """No check starts while held (a reinstall is changing files); one runs when released."""
        with self._lock:
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                if self._holds == 0:
                    self._one_offs.setdefault(Reason.AFTER_HOLD, self._clock.monotonic())
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # --- the loop -------------------------------------------------------------------------------

    def _notice_jump(self, wall: float, mono: float) -> None:
        waited_wall = wall - self._last_wall
        waited_mono = mono - self._last_mono
        self._last_wall, self._last_mono = wall, mono
        slept = waited_wall > self._asked_wait + self.timing.jump_s
        skewed = abs(waited_wall - waited_mono) > self.timing.jump_s
        if slept or skewed:
            log.info(
                "the clock jumped (wall %+.0f s, monotonic %+.0f s): a check follows in %.0f s",
                waited_wall,
                waited_mono,
                self.timing.resume_delay_s,
            )
            self._one_offs.setdefault(Reason.RESUME, mono + self.timing.resume_delay_s)
            # schedule counts in wall time, which just jumped: start its count again from now.
            self._scheduler.cancel_job(self._job)
            self._job = self._new_job()

    def _due(self, mono: float) -> Reason | None:
        if self._now_requested:
            return Reason.CHECK_NOW
        for reason, at in sorted(self._one_offs.items(), key=lambda item: item[1]):
            if mono >= at:
                return reason
        self._scheduler.run_pending()
        return Reason.INTERVAL if self._due_from_interval else None

    def step(self) -> Reason | None:
        """One turn of the loop: notice jumps, then run at most one check. Returns why it ran."""
        wall, mono = self._clock.wall(), self._clock.monotonic()
        self._notice_jump(wall, mono)
        with self._lock:
            if self._holds:
                return None
            reason = self._due(mono)
            if reason is None:
                return None
            self._running = True
        try:
            self._check(reason)
        except Exception:  # the check reports its own failures; this only keeps the loop alive
            log.exception("a check raised")
        finally:
            with self._lock:
                self._running = False
                # Everything that was due is answered by this check (coalesced), and the interval
                # counts from now.
                self._now_requested = False
                self._due_from_interval = False
                now = self._clock.monotonic()
                self._one_offs = {r: at for r, at in self._one_offs.items() if at > now}
                self._scheduler.cancel_job(self._job)
                self._job = self._new_job()
            self.checks_run += 1
            self._last_wall, self._last_mono = self._clock.wall(), self._clock.monotonic()
        return reason

    def seconds_to_next(self) -> float:
        """How long the loop may sleep: until the next due check, at most `poll_s`."""
        mono = self._clock.monotonic()
        waits = [self.timing.poll_s, *(at - mono for at in self._one_offs.values())]
        idle = self._scheduler.idle_seconds
        if idle is not None:
            waits.append(idle)
        return max(0.0, min(waits))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            wait = self.seconds_to_next()
            self._asked_wait = wait
            if stop.is_set():
                break
            self._wake.wait(wait)
            self._wake.clear()
