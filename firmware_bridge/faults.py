"""Link faults on demand: bit flips, dropped bytes, truncated frames, garbage bursts.

Each rate is a probability per frame (0..1) and draws are seeded, so a corrupted run can
be replayed. Faults apply to the bytes on the wire, delimiters included. A garbage burst
goes *before* a frame's leading delimiter, so it never damages the frame itself: a
correct decoder must still recover that frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from edgemer.errors import ConfigError


@dataclass(frozen=True)
class FaultConfig:
    """Probabilities per frame (0..1) of each fault, and the seed of the draws.

    bit_flips: one random bit of the frame is inverted. dropped_bytes: one random byte is
    lost. truncated: the frame loses 1..n-3 bytes at its end (its trailing delimiter is
    kept). garbage: a burst of 1..``garbage_max_bytes`` random bytes (which may contain
    0x00) precedes the frame.
    """

    bit_flips: float = 0.0
    dropped_bytes: float = 0.0
    truncated: float = 0.0
    garbage: float = 0.0
    garbage_max_bytes: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("bit_flips", "dropped_bytes", "truncated", "garbage"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"FaultConfig.{name} must be a probability in [0, 1], got {value!r}")
        if self.garbage_max_bytes < 1:
            raise ConfigError(f"FaultConfig.garbage_max_bytes must be >= 1, got {self.garbage_max_bytes}")

    @property
    def any(self) -> bool:
        return any(getattr(self, n) > 0 for n in ("bit_flips", "dropped_bytes", "truncated", "garbage"))


@dataclass
class FaultCounts:
    frames: int = 0
    damaged_frames: int = 0
    bit_flips: int = 0
    dropped_bytes: int = 0
    truncated: int = 0
    garbage_bursts: int = 0
    garbage_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class FaultInjector:
    """Applies :class:`FaultConfig` to frames on their way out. ``apply`` returns the
    bytes to send and sets ``last_damaged`` (True if the frame's own bytes changed)."""

    def __init__(self, config: FaultConfig = FaultConfig()) -> None:
        self.config = config
        self.counts = FaultCounts()
        self.last_damaged = False
        self._rng = np.random.default_rng(config.seed)

    def apply(self, wire: bytes) -> bytes:
        cfg, rng, n = self.config, self._rng, self.counts
        n.frames += 1
        self.last_damaged = False
        if not cfg.any:
            return wire
        r = rng.random(4)
        prefix = b""
        if r[3] < cfg.garbage:
            size = int(rng.integers(1, cfg.garbage_max_bytes + 1))
            prefix = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            n.garbage_bursts += 1
            n.garbage_bytes += size
        if not (r[0] < cfg.bit_flips or r[1] < cfg.dropped_bytes or r[2] < cfg.truncated):
            return prefix + wire
        data = bytearray(wire)
        if r[2] < cfg.truncated and len(data) > 4:
            cut = int(rng.integers(1, len(data) - 2))  # keep the leading delimiter and one byte at least
            del data[len(data) - 1 - cut:len(data) - 1]
            n.truncated += 1
        if r[0] < cfg.bit_flips:
            i = int(rng.integers(0, len(data)))
            data[i] ^= 1 << int(rng.integers(0, 8))
            n.bit_flips += 1
        if r[1] < cfg.dropped_bytes and len(data) > 1:
            del data[int(rng.integers(0, len(data)))]
            n.dropped_bytes += 1
        self.last_damaged = bytes(data) != wire
        if self.last_damaged:
            n.damaged_frames += 1
        return prefix + bytes(data)


__all__ = ["FaultConfig", "FaultCounts", "FaultInjector"]
