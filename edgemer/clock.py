"""The pipeline clock: one time base for every source, buffer and estimate.

Two clocks, one interface (:class:`Clock`); :func:`clock_for` picks one from the
sources' speed:

- :class:`PipelineClock` (any finite speed): stream time runs on the wall clock,
  ``speed`` stream seconds per wall second. Live sources stamp samples with
  ``time.monotonic()``, which is this clock at speed 1. Faster-than-real-time replays go
  through exactly the same code as live sources, but how much of the stream the
  pipeline keeps up with then depends on how fast the machine is that minute.
- :class:`LockstepClock` (speed ``inf``, ``--speed max``): stream time advances only when
  the pipeline asks for more data and every source has delivered what it had up to the
  current time. Replayed and simulated sources then run as fast as the pipeline
  consumes them, and every run of the same input cuts the same windows: nothing is
  dropped and no window is cut late at any machine speed. Only sources that pace
  themselves through :meth:`Clock.sleep_until` (``steppable`` sources) can run on it.

Stream time is in seconds on the host monotonic clock's scale: both clocks start at
``time.monotonic()`` when they are made.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Protocol

from edgemer.errors import ConfigError

MAX_SPEED = math.inf
"""The speed of a run on the :class:`LockstepClock`: as fast as the pipeline processes."""


class Clock(Protocol):
    """What sources, the recorder and the pipeline read time from.

    start: stream time at which the run starts (s). wall_start: ``time.monotonic()`` then (s).
    speed: stream seconds per wall second (``inf`` on the lockstep clock).
    """

    start: float
    wall_start: float
    speed: float

    def now(self) -> float:
        """Current stream time, seconds."""
        ...

    def sleep_until(self, t: float, stop: threading.Event) -> bool:
        """Block a source until stream time ``t``; False when ``stop`` is set (or the clock closed)."""
        ...

    def stream_seconds(self, wall_s: float) -> float:
        """Stream seconds that pass during ``wall_s`` wall seconds of scheduling jitter."""
        ...

    def attach(self) -> None:
        """Count a source thread that paces itself with :meth:`sleep_until` (before it starts)."""
        ...

    def detach(self) -> None:
        """The thread counted by :meth:`attach` has ended."""
        ...

    def wait(self, cond: threading.Condition, t: float, deadline: float) -> None:
        """The pipeline worker (holding ``cond``) waits for data of the window ending at ``t``,
        which it will cut with what arrived at stream time ``deadline``."""
        ...

    def close(self) -> None:
        """Release every thread waiting on the clock (the run is stopping). Signal-safe."""
        ...


MAX_IDLE_WAIT_WALL_S = 0.25
"""Longest wall-clock wait of the pipeline worker with nothing to wake it (at speed 1; shorter at
higher speeds): how late the end of a source that ended early is noticed."""


class PipelineClock:
    """Stream time in seconds: ``start + (time.monotonic() - wall_start) * speed``.

    At ``speed=1`` the clock reads ``time.monotonic()`` exactly.
    """

    def __init__(self, speed: float = 1.0) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise ConfigError(f"speed must be a finite number > 0, got {speed!r}")
        self.speed = float(speed)
        self.wall_start = time.monotonic()
        self.start = self.wall_start

    def now(self) -> float:
        """Current stream time, seconds."""
        return self.start + (time.monotonic() - self.wall_start) * self.speed

    def wall_seconds(self, stream_seconds: float) -> float:
        """Wall seconds that ``stream_seconds`` of stream time take."""
        return stream_seconds / self.speed

    def stream_seconds(self, wall_s: float) -> float:
        """Stream seconds that pass in ``wall_s`` wall seconds."""
        return wall_s * self.speed

    def sleep_until(self, t: float, stop: threading.Event) -> bool:
        """Sleep until stream time ``t``; return False early if ``stop`` is set."""
        delay = self.wall_seconds(t - self.now())
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()

    def attach(self) -> None:
        """Nothing to count: wall time advances by itself."""

    def detach(self) -> None:
        """Nothing to count: wall time advances by itself."""

    def wait(self, cond: threading.Condition, t: float, deadline: float) -> None:
        """Wait on ``cond`` for new data (the pipeline notifies it when data of the window arrives):
        until the window's end ``t`` while it is ahead, then until the late-data ``deadline``; at
        most :data:`MAX_IDLE_WAIT_WALL_S` divided by the speed, so that a source that ended (which
        notifies nobody) is noticed. Every wake-up costs CPU (about 0.1 ms on a small VM), so the
        worker sleeps until something can have changed instead of polling."""
        now = self.now()
        until = t if now < t else deadline
        cap = MAX_IDLE_WAIT_WALL_S / max(1.0, self.speed)
        cond.wait(timeout=min(cap, max(0.001, self.wall_seconds(until - now))))

    def close(self) -> None:
        """Nothing to release: sleeps end with their ``stop`` event."""


class LockstepClock:
    """Stream time that advances only when the pipeline needs more data.

    Sources call :meth:`sleep_until` as on the wall clock; it returns once stream time
    has reached ``t``. Stream time moves in :meth:`wait` (called by the pipeline worker
    when a window is not ready), and only when every attached source is blocked in
    :meth:`sleep_until` at a later time or has ended (the sources are *settled*, so every
    sample stamped before now has been delivered). It then moves to the earliest of:
    the window's end ``t`` (or, once ``t`` has passed, the late-data ``deadline``) and
    the next time a source waits for. So the sources never run further ahead of the
    worker than the window it waits for, and a window is cut late only when its data
    truly is not there (a gap in a recording), never because the machine was busy.

    ``speed`` is ``inf`` and ``stream_seconds`` of any jitter is 0. One clock serves one run.
    Waits poll every 50 ms for ``stop`` events and :meth:`close`.
    """

    speed = MAX_SPEED

    def __init__(self) -> None:
        self.wall_start = time.monotonic()
        self.start = self.wall_start
        self._now = self.start
        self._cond = threading.Condition()
        self._attached = 0
        self._waiting: dict[int, float] = {}   # thread id -> stream time it sleeps until
        self._closed = False

    def now(self) -> float:
        """Current stream time, seconds."""
        return self._now

    def stream_seconds(self, wall_s: float) -> float:
        """0: wall-clock jitter never moves lockstep time."""
        return 0.0

    def attach(self) -> None:
        """Count one more source thread; time waits for it from now on."""
        with self._cond:
            self._attached += 1

    def detach(self) -> None:
        """A counted source thread ended; time no longer waits for it."""
        with self._cond:
            self._attached -= 1
            self._waiting.pop(threading.get_ident(), None)
            self._cond.notify_all()

    def sleep_until(self, t: float, stop: threading.Event) -> bool:
        """Block until stream time reaches ``t``; False when ``stop`` is set or the clock is closed."""
        with self._cond:
            me = threading.get_ident()
            try:
                while self._now < t:
                    if stop.is_set() or self._closed:
                        return False
                    if self._waiting.get(me) != t:
                        self._waiting[me] = t
                        self._cond.notify_all()  # the worker may be waiting for the sources to settle
                    self._cond.wait(0.05)
            finally:
                self._waiting.pop(me, None)
            return not stop.is_set()

    def advance_to(self, t: float) -> None:
        """Move stream time forward to ``t`` (never back) and wait until the sources have
        delivered everything up to it. The pipeline does this itself; tests driving sources
        without a pipeline may call it."""
        with self._cond:
            if self._settle() and t > self._now:
                self._now = t
                self._cond.notify_all()
                self._settle()

    def wait(self, cond: threading.Condition, t: float, deadline: float) -> None:
        """Advance to the next event the worker can act on (see the class docstring); ``cond``
        is released meanwhile so that sources can notify it."""
        cond.release()
        try:
            with self._cond:
                if not self._settle():
                    return
                target = t if self._now < t else deadline
                step = min(target, min(self._waiting.values(), default=math.inf))
                if step > self._now:
                    self._now = step
                    self._cond.notify_all()
                    self._settle()
        finally:
            cond.acquire()

    def close(self) -> None:
        """End every wait: sleeping sources return False, the worker returns. Signal-safe."""
        self._closed = True
        if self._cond.acquire(blocking=False):
            try:
                self._cond.notify_all()
            finally:
                self._cond.release()

    def _settle(self) -> bool:
        """Wait (holding ``_cond``) until every attached source sleeps past now or has ended;
        False if the clock was closed first."""
        while not self._closed:
            if len(self._waiting) >= self._attached and all(t > self._now for t in self._waiting.values()):
                return True
            self._cond.wait(0.05)
        return False


def clock_for(speed: float) -> PipelineClock | LockstepClock:
    """The clock for sources playing at ``speed``: lockstep at ``inf``, wall-paced otherwise."""
    if speed == MAX_SPEED:
        return LockstepClock()
    return PipelineClock(speed)


def parse_speed(text: str | float) -> float:
    """A speed from the command line or a file: a number, or ``max`` / ``inf`` for :data:`MAX_SPEED`."""
    if isinstance(text, str) and text.strip().lower() in ("max", "inf", "infinity"):
        return MAX_SPEED
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"speed must be a number > 0 or 'max' (as fast as processed), got {text!r}") from None
