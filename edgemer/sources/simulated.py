"""A simulated wrist wearable: EDA 4 Hz, BVP 64 Hz, TEMP 4 Hz, ACC 32 Hz (and the true condition).

Signals come from :class:`edgemer.simulate.WristSimulator`. The source also emits a
``condition`` stream (4 Hz, WESAD label code) so apps and the demo can compare
estimates with the ground truth; bundles do not consume it.
"""
from __future__ import annotations

import threading
import time
from typing import Sequence

import numpy as np

from edgemer.clock import Clock
from edgemer.errors import ConfigError
from edgemer.simulate import DEMO_SCENARIO, WRIST_STREAMS, EdaDynamics, SubjectTraits, WristSimulator
from edgemer.sources import Emit, ThreadedSource
from edgemer.types import Chunk, StreamSpec

CONDITION_STREAM = StreamSpec("condition", 4.0, 1, "wesad-code")


class SimulatedWearable(ThreadedSource):
    """Streams simulated wrist signals in chunks of ``chunk_s`` stream seconds.

    Parameters
    ----------
    speed: stream seconds per wall second (1 = real time; ``inf``: as fast as the pipeline consumes,
        on the :class:`~edgemer.clock.LockstepClock`).
    duration_s: stream seconds to produce; None runs until stopped.
    chunk_s: seconds per chunk (a multiple of 0.25 s), like a wearable's BLE packet cadence.
    seed, scenario, dynamics, traits: passed to :class:`~edgemer.simulate.WristSimulator`.
    """

    name = "simulated"
    streams = WRIST_STREAMS + (CONDITION_STREAM,)
    live = False
    steppable = True

    def __init__(self, speed: float = 1.0, duration_s: float | None = None, chunk_s: float = 1.0, seed: int = 0,
                 scenario: Sequence[tuple[int, float]] = DEMO_SCENARIO, dynamics: EdaDynamics = EdaDynamics(),
                 traits: SubjectTraits = SubjectTraits()) -> None:
        super().__init__(speed)
        if duration_s is not None and duration_s <= 0:
            raise ConfigError(f"SimulatedWearable.duration_s must be > 0 s, got {duration_s}")
        if chunk_s <= 0 or abs(chunk_s * 4 - round(chunk_s * 4)) > 1e-9:
            raise ConfigError(f"SimulatedWearable.chunk_s must be a positive multiple of 0.25 s, got {chunk_s}")
        self.duration_s = duration_s
        self.chunk_s = float(chunk_s)
        self.simulator = WristSimulator(scenario=scenario, dynamics=dynamics, traits=traits, seed=seed, loop=True)

    def _run(self, clock: Clock, emit: Emit, stop: threading.Event) -> None:
        t_sim = 0.0
        seq = 0
        while not stop.is_set() and (self.duration_s is None or t_sim < self.duration_s - 1e-9):
            step = self.chunk_s if self.duration_s is None else min(self.chunk_s, self.duration_s - t_sim)
            block = self.simulator.generate(step)
            t0 = clock.start + t_sim
            t_sim += step
            # A wearable sends a packet once its samples exist: wait until the chunk's end.
            if not clock.sleep_until(clock.start + t_sim, stop):
                return
            arrival = time.monotonic()
            for spec in WRIST_STREAMS:
                emit(Chunk(spec.name, spec.rate_hz, t0, block[spec.name], seq=seq, arrival=arrival))
            emit(Chunk("condition", 4.0, t0, block["label"].astype(np.float32)[:, None], seq=seq, arrival=arrival))
            seq += 1
