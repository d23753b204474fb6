"""Bounded per-stream ring buffers and window cutting.

Each source thread pushes :class:`~edgemer.types.Chunk` objects; the scheduler cuts
windows on a uniform sample grid. A :class:`StreamBuffer` is a fixed numpy ring indexed
by grid position (``round((t - origin) * rate_hz)``), so pushing a chunk and cutting a
window are slice copies with no per-chunk or per-sample Python loop. A buffer never
blocks its writer: when new samples need the space of old ones, the old ones go.
Samples the scheduler has released (older than every future window) leave silently;
samples overwritten before the scheduler used them are counted as ``dropped_samples``
and logged, since that means inference is falling behind the sources. Missing samples
stay NaN in the window, and the window reports its coverage.
"""
from __future__ import annotations

import logging
import math
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
    late_samples: int = 0


class StreamBuffer:
    """A thread-safe ring of one stream's samples on its sample grid.

    Parameters
    ----------
    spec: the stream's name, rate (Hz) and channel count; chunks that disagree are rejected and counted.
    capacity_s: seconds of samples kept.

    A sample lands in the grid slot its timestamp rounds to (a later sample for the same
    slot replaces it). Samples older than the ring's span when they arrive are counted as
    ``late_samples`` and not stored.
    """

    def __init__(self, spec: StreamSpec, capacity_s: float) -> None:
        self.spec = spec
        self.capacity = max(1, int(round(capacity_s * spec.rate_hz)))
        self.stats = StreamStats()
        self._data = np.full((self.capacity, spec.channels), np.nan, dtype=np.float32)
        self._arrival = np.zeros(self.capacity, dtype=np.float64)
        self._origin: float | None = None   # time of grid index 0, seconds
        self._head = 0                      # grid index just after the newest slot
        self._latest = float("-inf")
        self._released_index = -(1 << 62)   # grid slots below this were used by the scheduler
        self._lock = threading.Lock()

    def _spans(self, i0: int, i1: int) -> list[tuple[int, int, int]]:
        """Ring slices covering grid indices [i0, i1) (at most ``capacity`` of them):
        (ring start, ring stop, offset from i0)."""
        a = i0 % self.capacity
        n = i1 - i0
        if a + n <= self.capacity:
            return [(a, a + n, 0)]
        first = self.capacity - a
        return [(a, self.capacity, 0), (0, n - first, first)]

    def _count_unused(self, lo: int, i1: int) -> int:
        """Samples in the slots of grid indices [lo, i1) that hold data the scheduler has not
        released (their grid index is ``capacity`` less): what advancing the ring over them drops."""
        n = 0
        first_unused = self._released_index + self.capacity  # grid index of the first such slot
        for a, b, off in self._spans(lo, i1):
            a = max(a, a + first_unused - (lo + off))
            if a < b:
                n += int(np.count_nonzero(np.isfinite(self._data[a:b]).all(axis=1)))
        return n

    def push(self, chunk: Chunk) -> bool:
        """Add a chunk; returns False (and counts it) if its rate or channel count is wrong.

        Costs a few slice copies whatever the chunk's length (about 10 numpy calls; no
        per-sample work in Python), so a source's CPU per second falls with its chunk rate.
        """
        samples = chunk.samples
        if chunk.rate_hz != self.spec.rate_hz or samples.ndim != 2 or samples.shape[1] != self.spec.channels:
            with self._lock:
                self.stats.rejected_chunks += 1
            log.warning("stream '%s': rejected a chunk of %s samples at %s Hz (expected [n, %d] at %s Hz)",
                        self.spec.name, samples.shape, chunk.rate_hz, self.spec.channels, self.spec.rate_hz)
            return False
        n = samples.shape[0]
        # One sum tells whether every sample is finite (float64: a sum of float32 cannot overflow);
        # only a chunk holding NaN/inf (or float64 samples near the top of their range) is counted row by row.
        n_nan = 0
        if n and not math.isfinite(samples.sum(dtype=np.float64)):
            n_nan = int(np.count_nonzero(~np.isfinite(samples).all(axis=1)))
        with self._lock:
            if n_nan:
                if self.stats.nan_samples == 0:
                    log.warning("stream '%s': %d sample(s) with NaN/inf at t=%.2f s; they count as missing "
                                "(check the sensor contact)", self.spec.name, n_nan, chunk.t0)
                self.stats.nan_samples += n_nan
            self.stats.chunks += 1
            self.stats.samples += n
            if chunk.flags & 1:
                self.stats.gaps += 1
            if self._origin is None:
                self._origin = chunk.t0
                self._head = 0
            i0 = math.floor((chunk.t0 - self._origin) * self.spec.rate_hz + 0.5)
            i1 = i0 + n
            keep_from = max(i0, i1 - self.capacity, self._head - self.capacity)  # older slots are gone
            if i1 > self._head:
                # Advance the ring: slots [lo, i1) now belong to new grid positions. The chunk
                # fills [keep_from, i1); only the slots before it (a gap) are emptied.
                lo = max(self._head, i1 - self.capacity)
                n_unused = self._count_unused(lo, i1)
                if n_unused:
                    if self.stats.dropped_samples == 0:
                        log.warning("stream '%s': ring buffer full, dropping samples not yet used "
                                    "(inference is slower than the sources)", self.spec.name)
                    self.stats.dropped_samples += n_unused
                if lo < keep_from:
                    for a, b, _ in self._spans(lo, keep_from):
                        self._data[a:b] = np.nan
                        self._arrival[a:b] = 0.0
                self._head = i1
            if keep_from > i0:
                self.stats.late_samples += min(keep_from, i1) - i0
            if keep_from < i1:
                for a, b, off in self._spans(keep_from, i1):
                    start = keep_from - i0 + off
                    self._data[a:b] = samples[start:start + b - a]
                    self._arrival[a:b] = chunk.arrival
            self._latest = max(self._latest, chunk.t_end)
        return True

    def release_before(self, t: float) -> None:
        """Mark samples before stream time ``t`` as used: overwriting them is not a drop."""
        with self._lock:
            if self._origin is not None:
                self._released_index = max(self._released_index,
                                           int(np.floor((t - self._origin) * self.spec.rate_hz + 0.5)))

    def latest_time(self) -> float:
        """End time of the newest sample (stream seconds), ``-inf`` before any data."""
        with self._lock:
            return self._latest

    def window(self, t_end: float, length_s: float) -> tuple[np.ndarray, float, float]:
        """Samples on the grid ``t_end - length_s + k / rate_hz``, k = 0 .. n-1.

        Returns ``(samples [n, channels] float32 with NaN where missing, coverage 0..1,
        newest arrival wall time)``.
        """
        rate = self.spec.rate_hz
        n = int(round(length_s * rate))
        out = np.full((n, self.spec.channels), np.nan, dtype=np.float32)
        with self._lock:
            if self._origin is None or n == 0:
                return out, 0.0, 0.0
            j0 = int(np.floor((t_end - length_s - self._origin) * rate + 0.5))
            lo, hi = max(j0, self._head - self.capacity), min(j0 + n, self._head)
            last_arrival = 0.0
            for a, b, off in (self._spans(lo, hi) if lo < hi else ()):
                start = lo - j0 + off
                out[start:start + b - a] = self._data[a:b]
                last_arrival = max(last_arrival, float(self._arrival[a:b].max()))
        coverage = float(np.isfinite(out).all(axis=1).mean())
        return out, coverage, last_arrival


class FrameBuffer:
    """A thread-safe ring of the newest video frames of one stream (``StreamSpec.frames``).

    Frames are timestamped (``Chunk.t0`` = capture time) rather than on a sample grid,
    and a window is the newest frame inside it, so the analysis rate (the front-end's
    hop) is independent of the camera's frame rate. The buffer keeps the frames of two
    windows (at least 2): frames are large (640x480 BGR = 0.9 MB) and never leave
    memory. A frame evicted before any window covered it is counted in
    ``stats.dropped_samples`` (inference is slower than the camera); frames a window
    covered but did not use (the camera is faster than the analysis rate) are not.

    Parameters
    ----------
    spec: the stream; chunks must be uint8 ``[n, height, width, spec.channels]``, others
        are rejected and counted (e.g. a grey frame where BGR is expected).
    window_s: the longest window of the front-ends that read this stream, seconds.
    """

    def __init__(self, spec: StreamSpec, window_s: float) -> None:
        self.spec = spec
        self.capacity = max(2, int(np.ceil(2 * window_s * spec.rate_hz)) + 1)
        self.stats = StreamStats()
        self._frames: deque[tuple[float, float, np.ndarray]] = deque()  # (t0, arrival, [H, W, C] uint8)
        self._latest = float("-inf")
        self._covered_until = float("-inf")
        self._lock = threading.Lock()

    def push(self, chunk: Chunk) -> bool:
        """Add the frames of a chunk; returns False (and counts it) if their shape or dtype is wrong."""
        x = chunk.samples
        if x.ndim != 4 or x.shape[-1] != self.spec.channels or x.dtype != np.uint8 or x.shape[0] < 1:
            with self._lock:
                self.stats.rejected_chunks += 1
            log.warning("stream '%s': rejected frames of shape %s dtype %s (expected uint8 [n, height, width, %d])",
                        self.spec.name, x.shape, x.dtype, self.spec.channels)
            return False
        period = 1.0 / chunk.rate_hz
        with self._lock:
            self.stats.chunks += 1
            self.stats.samples += x.shape[0]
            if chunk.flags & 1:
                self.stats.gaps += 1
            for i in range(x.shape[0]):
                self._frames.append((chunk.t0 + i * period, chunk.arrival, x[i]))
            self._latest = max(self._latest, chunk.t0 + x.shape[0] * period)
            while len(self._frames) > self.capacity:
                t0, _, _ = self._frames.popleft()
                if t0 >= self._covered_until:
                    if self.stats.dropped_samples == 0:
                        log.warning("stream '%s': frame buffer full, dropping frames no window used "
                                    "(inference is slower than the camera)", self.spec.name)
                    self.stats.dropped_samples += 1
        return True

    def release_before(self, t: float) -> None:
        """Frames before ``t`` may go: for frames, covering a window already marks them as used."""
        with self._lock:
            self._covered_until = max(self._covered_until, t)

    def latest_time(self) -> float:
        """End time of the newest frame's slot (``t0 + 1 / rate_hz``), ``-inf`` before any frame.

        One microsecond is added so that window ends summed hop by hop in floating point
        never miss the last frame.
        """
        with self._lock:
            return self._latest + 1e-6

    def window(self, t_end: float, length_s: float) -> tuple[np.ndarray, float, float]:
        """The newest frame with ``t_end - length_s <= t0 < t_end``.

        Returns ``(frames, coverage, arrival)``: ``frames`` is uint8 ``[1, H, W, C]`` with
        coverage 1, or ``[0, 0, 0, C]`` with coverage 0 when no frame fell in the window;
        ``arrival`` is the wall time the newest frame reached the host.
        """
        t_start = t_end - length_s
        eps = 1e-9
        with self._lock:
            inside = [f for f in self._frames if t_start - eps <= f[0] < t_end - eps]
            self._covered_until = max(self._covered_until, t_end - eps)
        if not inside:
            return np.zeros((0, 0, 0, self.spec.channels), np.uint8), 0.0, 0.0
        _, arrival, frame = inside[-1]
        return frame[None], 1.0, arrival
