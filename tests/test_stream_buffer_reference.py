"""StreamBuffer.push (slice copies) agrees sample for sample with a per-sample reference model
of the ring: contiguous, overlapping, late, gapped and oversized chunks, NaN samples, releases."""
import math

import numpy as np
import pytest

from edgemer.buffers import StreamBuffer
from edgemer.types import Chunk, StreamSpec


class ReferenceRing:
    """The ring semantics of StreamBuffer written one sample at a time (slow, obviously right)."""

    def __init__(self, rate_hz: float, channels: int, capacity: int) -> None:
        self.rate, self.capacity = rate_hz, capacity
        self.data = np.full((capacity, channels), np.nan, np.float32)
        self.arrival = np.zeros(capacity)
        self.origin = None
        self.head = 0
        self.released = -(1 << 62)
        self.dropped = self.late = self.nan = 0

    def push(self, c: Chunk) -> None:
        self.nan += sum(1 for row in c.samples if not np.all(np.isfinite(row)))
        if self.origin is None:
            self.origin = c.t0
        i0 = math.floor((c.t0 - self.origin) * self.rate + 0.5)
        i1 = i0 + c.samples.shape[0]
        if i1 > self.head:
            for idx in range(max(self.head, i1 - self.capacity), i1):
                slot = idx % self.capacity
                if idx - self.capacity >= self.released and np.all(np.isfinite(self.data[slot])):
                    self.dropped += 1
                self.data[slot] = np.nan
                self.arrival[slot] = 0.0
            self.head = i1
        for idx in range(i0, i1):
            if idx < self.head - self.capacity:
                self.late += 1
                continue
            self.data[idx % self.capacity] = c.samples[idx - i0]
            self.arrival[idx % self.capacity] = c.arrival

    def release_before(self, t: float) -> None:
        if self.origin is not None:
            self.released = max(self.released, math.floor((t - self.origin) * self.rate + 0.5))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_push_matches_the_per_sample_reference(seed, channels):
    rate = 8.0
    spec = StreamSpec("x", rate, channels)
    buf = StreamBuffer(spec, capacity_s=5.0)  # 40 slots
    ref = ReferenceRing(rate, channels, buf.capacity)
    rng = np.random.default_rng(seed)
    t = 100.0
    for k in range(300):
        n = int(rng.choice([1, 3, 8, 17, 39, 40, 41, 95]))
        move = rng.choice(["next", "gap", "overlap", "late", "repeat"], p=[0.5, 0.15, 0.15, 0.1, 0.1])
        if move == "gap":
            t += rng.integers(1, 60) / rate
        elif move == "overlap":
            t -= rng.integers(1, 10) / rate
        elif move == "late":
            t -= rng.integers(30, 120) / rate
        x = rng.standard_normal((n, channels)).astype(np.float32)
        if rng.random() < 0.2:
            x[rng.integers(0, n, size=2), rng.integers(0, channels)] = rng.choice([np.nan, np.inf])
        c = Chunk("x", rate, t, x, seq=k, arrival=float(k))
        assert buf.push(c)
        ref.push(c)
        if move != "repeat":
            t = c.t_end
        if rng.random() < 0.3:
            r = t - rng.integers(0, 50) / rate
            buf.release_before(r)
            ref.release_before(r)
        assert np.array_equal(buf._data, ref.data, equal_nan=True)
        assert np.array_equal(buf._arrival, ref.arrival)
        assert (buf.stats.dropped_samples, buf.stats.late_samples, buf.stats.nan_samples) == \
            (ref.dropped, ref.late, ref.nan)
    assert ref.dropped > 0 and ref.late > 0 and ref.nan > 0  # every path was exercised


def test_chunk_larger_than_the_ring_keeps_its_newest_samples():
    buf = StreamBuffer(StreamSpec("x", 4.0), capacity_s=2.0)  # 8 slots
    x = np.arange(20, dtype=np.float32)[:, None]
    buf.push(Chunk("x", 4.0, 0.0, x))
    samples, coverage, _ = buf.window(t_end=5.0, length_s=2.0)
    assert coverage == 1.0 and np.array_equal(samples[:, 0], np.arange(12, 20, dtype=np.float32))
    assert buf.stats.late_samples == 12
