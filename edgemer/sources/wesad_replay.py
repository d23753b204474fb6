"""Replay of a WESAD-layout recording (real WESAD or ``edgemer data synth-wesad`` output).

Wrist streams are replayed in chunks on the pipeline clock; the 700 Hz label array is
replayed as a 4 Hz ``condition`` stream so estimates can be compared with the truth.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from edgemer.clock import Clock
from edgemer.errors import ConfigError, DatasetError
from edgemer.simulate import WRIST_STREAMS
from edgemer.sources import Emit, ThreadedSource
from edgemer.sources.simulated import CONDITION_STREAM
from edgemer.types import Chunk
from edgemer.wesad import find_subjects, load_subject


class WesadReplay(ThreadedSource):
    """Replays one subject of a WESAD-layout folder (or one subject pickle).

    Parameters
    ----------
    path: WESAD folder (``S2/S2.pkl`` ...) or a subject ``.pkl``.
    subject: subject id in the folder, e.g. ``"S5"``; default the first.
    speed: stream seconds per wall second (``inf``: as fast as the pipeline consumes, on the
        :class:`~edgemer.clock.LockstepClock`).
    start_s: offset into the recording, seconds. duration_s: seconds to replay (None: to the end).
    chunk_s: seconds per emitted chunk.
    """

    streams = WRIST_STREAMS + (CONDITION_STREAM,)
    live = False
    steppable = True

    def __init__(self, path: str | Path, subject: str | None = None, speed: float = 1.0, start_s: float = 0.0,
                 duration_s: float | None = None, chunk_s: float = 1.0) -> None:
        super().__init__(speed)
        path = Path(path)
        if path.is_dir():
            files = find_subjects(path)
            if subject is not None:
                files = [f for f in files if f.stem == subject]
                if not files:
                    raise DatasetError(f"{path}: no subject '{subject}' (have "
                                       f"{', '.join(f.stem for f in find_subjects(path))})")
            path = files[0]
        self.recording = load_subject(path)
        self.name = f"replay:{self.recording.subject}"
        if chunk_s <= 0 or abs(chunk_s * 4 - round(chunk_s * 4)) > 1e-9:
            raise ConfigError(f"WesadReplay.chunk_s must be a positive multiple of 0.25 s, got {chunk_s}")
        if start_s < 0 or start_s >= self.recording.duration_s:
            raise ConfigError(f"WesadReplay.start_s must be in [0, {self.recording.duration_s:.0f}) s, got {start_s}")
        self.chunk_s = float(chunk_s)
        self.start_s = float(start_s)
        end = self.recording.duration_s if duration_s is None else min(self.recording.duration_s, start_s + duration_s)
        self.end_s = end
        self._labels_4hz = self.recording.labels_at(4.0).astype(np.float32)[:, None]

    def _run(self, clock: Clock, emit: Emit, stop: threading.Event) -> None:
        t_rec = self.start_s
        seq = 0
        while not stop.is_set() and t_rec < self.end_s - 1e-9:
            step = min(self.chunk_s, self.end_s - t_rec)
            t0 = clock.start + (t_rec - self.start_s)
            if not clock.sleep_until(t0 + step, stop):
                return
            arrival = time.monotonic()
            for spec in WRIST_STREAMS:
                a, b = int(round(t_rec * spec.rate_hz)), int(round((t_rec + step) * spec.rate_hz))
                emit(Chunk(spec.name, spec.rate_hz, t0, self.recording.wrist[spec.name][a:b], seq=seq, arrival=arrival))
            a, b = int(round(t_rec * 4)), int(round((t_rec + step) * 4))
            emit(Chunk("condition", 4.0, t0, self._labels_4hz[a:b], seq=seq, arrival=arrival))
            t_rec += step
            seq += 1
