"""The pipeline clock: one time base for every source, buffer and estimate.

Live sources stamp samples with ``time.monotonic()``. Replay and simulated sources
can run faster than real time: the clock then advances ``speed`` stream seconds per
wall second, and every part of the pipeline reads time from the same clock object,
so faster-than-real-time runs go through exactly the same code as live ones.
"""
from __future__ import annotations

import math
import threading
import time

from edgemer.errors import ConfigError


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

    def sleep_until(self, t: float, stop: threading.Event) -> bool:
        """Sleep until stream time ``t``; return False early if ``stop`` is set."""
        delay = self.wall_seconds(t - self.now())
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()
