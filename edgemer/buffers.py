"""Bounded per-stream ring buffers and window cutting.

Each source thread pushes :class:`~edgemer.types.Chunk` objects; the scheduler cuts
windows on a uniform sample grid. A buffer never blocks its writer: when it holds more
than ``capacity_s`` seconds it drops the oldest chunks. Samples the scheduler has
released (older than every future window) leave silently; samples evicted before the
scheduler used them are counted as ``dropped_samples`` and logged, since that means
inference is falling behind the sources. Missing samples stay NaN in the window, and
the window reports its coverage.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from edgemer.types import Chunk, StreamSpec

log = logging.getLogger(__name__)


@dataclass
class StreamStats:
    """Counters for one stream (samples unless named otherwise)."""

    chunks: int = 0
    samples: int = 0
    dropped_samples: int = 0
    nan_samples: int = 0
    rejected_chunks: int = 0
    gaps: int = 0


class StreamBuffer:
    """A thread-safe ring buffer of one stream's chunks.

    Parameters
    ----------
    spec: the stream's name, rate (Hz) and channel count; chunks that disagree are rejected and counted.
    capacity_s: seconds of samples kept; older chunks are dropped (and counted).
    """

    def __init__(self, spec: StreamSpec, capacity_s: float) -> None:
        self.spec = spec
        self.capacity = max(1, int(round(capacity_s * spec.rate_hz)))
        self.stats = StreamStats()
        self._chunks: deque[Chunk] = deque()
        self._held = 0
        self._latest = float("-inf")
        self._released_before = float("-inf")
        self._lock = threading.Lock()

    def push(self, chunk: Chunk) -> bool:
        """Add a chunk; returns False (and counts it) if its rate or channel count is wrong."""
        samples = chunk.samples
        if chunk.rate_hz != self.spec.rate_hz or samples.ndim != 2 or samples.shape[1] != self.spec.channels:
            with self._lock:
                self.stats.rejected_chunks += 1
            log.warning("stream '%s': rejected a chunk of %s samples at %s Hz (expected [n, %d] at %s Hz)",
                        self.spec.name, samples.shape, chunk.rate_hz, self.spec.channels, self.spec.rate_hz)
            return False
        n_nan = int(np.count_nonzero(~np.isfinite(samples).all(axis=1)))
        with self._lock:
            if n_nan:
                if self.stats.nan_samples == 0:
                    log.warning("stream '%s': %d sample(s) with NaN/inf at t=%.2f s; they count as missing "
                                "(check the sensor contact)", self.spec.name, n_nan, chunk.t0)
                self.stats.nan_samples += n_nan
            self.stats.chunks += 1
            self.stats.samples += chunk.n
            if chunk.flags & 1:
                self.stats.gaps += 1
            self._chunks.append(chunk)
            self._held += chunk.n
            self._latest = max(self._latest, chunk.t_end)
            while self._held - self._chunks[0].n >= self.capacity:
                old = self._chunks.popleft()
                self._held -= old.n
                if old.t_end > self._released_before:
                    if self.stats.dropped_samples == 0:
                        log.warning("stream '%s': ring buffer full, dropping samples not yet used "
                                    "(inference is slower than the sources)", self.spec.name)
                    self.stats.dropped_samples += old.n
        return True

    def release_before(self, t: float) -> None:
        """Mark samples before stream time ``t`` as used: evicting them is not a drop."""
        with self._lock:
            self._released_before = max(self._released_before, t)

    def latest_time(self) -> float:
        """End time of the newest sample (stream seconds), ``-inf`` before any data."""
        with self._lock:
            return self._latest

    def window(self, t_end: float, length_s: float) -> tuple[np.ndarray, float, float]:
        """Samples on the grid ``t_end - length_s + k / rate_hz``, k = 0 .. n-1.

        Returns ``(samples [n, channels] float32 with NaN where missing, coverage 0..1,
        newest arrival wall time)``. A sample belongs to the grid slot its timestamp
        rounds to.
        """
        rate = self.spec.rate_hz
        n = int(round(length_s * rate))
        out = np.full((n, self.spec.channels), np.nan, dtype=np.float32)
        t_start = t_end - length_s
        last_arrival = 0.0
        with self._lock:
            chunks = list(self._chunks)
        for c in chunks:
            if c.t_end <= t_start or c.t0 >= t_end:
                continue
            first = int(np.floor((c.t0 - t_start) * rate + 0.5))
            lo, hi = max(first, 0), min(first + c.n, n)
            if lo >= hi:
                continue
            out[lo:hi] = c.samples[lo - first:hi - first]
            last_arrival = max(last_arrival, c.arrival)
        coverage = float(np.isfinite(out).all(axis=1).mean()) if n else 0.0
        return out, coverage, last_arrival
