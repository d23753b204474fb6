"""Record raw chunks to a folder and replay them bit-exact through the same pipeline.

Layout of a recording folder::

    REC/
      meta.json        format version, stream specs, start time, edgemer version
      chunks.jsonl     one line per chunk: stream, t0_s (relative to the start), n, seq,
                       flags, arrival_s (relative), offset (sample index into the stream file)
      <stream>.f32     the stream's samples, little-endian float32, [n_total, channels]

Raw audio and video (``StreamSpec.media``) are never recorded unless named in
``include_media``. Samples are stored as float32 exactly as the sources emitted them,
so :class:`RecordingReplay` hands the pipeline bit-identical chunks.
"""
from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from edgemer.clock import Clock
from edgemer.errors import ConfigError, DatasetError
from edgemer.sources import Emit, ThreadedSource
from edgemer.types import Chunk, StreamSpec

FORMAT = "edgemer.recording/1"


class Recorder:
    """Writes chunks of the given streams into a recording folder (see module docstring).

    Parameters
    ----------
    path: folder to create (must not exist, or be empty).
    streams: every stream the sources provide; media streams are skipped unless named in
        ``include_media``.
    """

    def __init__(self, path: str | Path, streams: Sequence[StreamSpec], include_media: Iterable[str] = ()) -> None:
        self.path = Path(path)
        if self.path.exists() and any(self.path.iterdir()):
            raise ConfigError(f"recording folder '{self.path}' exists and is not empty; choose a new folder")
        include = set(include_media)
        frames = sorted(s.name for s in streams if s.frames and s.name in include)
        if frames:
            raise ConfigError(f"cannot record the video stream(s) {frames}: this recorder stores sample streams "
                              f"as float32 and does not record camera frames; leave them out of record_media")
        self.specs = {s.name: s for s in streams if not s.media or s.name in include}
        self.skipped_media = sorted(s.name for s in streams if s.media and s.name not in include)
        self.path.mkdir(parents=True, exist_ok=True)
        self._files = {name: open(self.path / f"{name}.f32", "wb") for name in self.specs}
        self._offsets = {name: 0 for name in self.specs}
        self._index = open(self.path / "chunks.jsonl", "w", encoding="utf-8")
        self._lock = threading.Lock()
        self._t_start: float | None = None
        self.chunks = 0

    def start(self, clock: Clock) -> None:
        """Fix the recording's time origin (the pipeline clock's start) and write meta.json."""
        from edgemer import __version__

        self._t_start = clock.start
        self._wall_start = clock.wall_start
        speed = clock.speed if math.isfinite(clock.speed) else "max"  # strict JSON has no inf
        meta = {"format": FORMAT, "edgemer": __version__, "speed": speed,
                "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "streams": [{"name": s.name, "rate_hz": s.rate_hz, "channels": s.channels, "unit": s.unit,
                             "media": s.media} for s in self.specs.values()],
                "skipped_media_streams": self.skipped_media}
        (self.path / "meta.json").write_text(json.dumps(meta, indent=2))

    def write(self, chunk: Chunk) -> None:
        """Append one chunk (called from source threads; thread-safe)."""
        if chunk.stream not in self.specs or self._t_start is None:
            return
        data = np.ascontiguousarray(chunk.samples, dtype="<f4")
        with self._lock:
            offset = self._offsets[chunk.stream]
            self._files[chunk.stream].write(data.tobytes())
            self._offsets[chunk.stream] = offset + chunk.n
            self._index.write(json.dumps({"stream": chunk.stream, "t0_s": chunk.t0 - self._t_start, "n": chunk.n,
                                          "seq": chunk.seq, "flags": chunk.flags,
                                          "arrival_s": chunk.arrival - self._wall_start, "offset": offset}) + "\n")
            self.chunks += 1

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._index.close()


class RecordingReplay(ThreadedSource):
    """Replays a recording folder written by :class:`Recorder`, chunk for chunk.

    Parameters
    ----------
    path: the recording folder. speed: stream seconds per wall second.
    duration_s: stream seconds to play (None: to the end, or forever with ``loop``).
    loop: start again at the end; lap ``k`` is shifted by ``k`` times the recording's
        length (s) and its sequence numbers continue, so the streams stay on one grid.
    """

    live = False
    steppable = True

    def __init__(self, path: str | Path, speed: float = 1.0, duration_s: float | None = None,
                 loop: bool = False) -> None:
        super().__init__(speed)
        if duration_s is not None and duration_s <= 0:
            raise ConfigError(f"RecordingReplay.duration_s must be > 0 s or None, got {duration_s}")
        self.path = Path(path)
        self.duration_s = duration_s
        self.loop = loop
        try:
            meta = json.loads((self.path / "meta.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{self.path}: not an edgemer recording (meta.json unreadable: {exc})") from exc
        if meta.get("format") != FORMAT:
            raise DatasetError(f"{self.path}: recording format {meta.get('format')!r}, this edgemer reads {FORMAT}")
        self.name = f"recording:{self.path.name}"
        self.streams = tuple(StreamSpec(s["name"], s["rate_hz"], s["channels"], s.get("unit", ""),
                                        s.get("media", False)) for s in meta["streams"])
        self._data = {}
        for spec in self.streams:
            raw = np.fromfile(self.path / f"{spec.name}.f32", dtype="<f4")
            if raw.size % spec.channels:
                raise DatasetError(f"{self.path / (spec.name + '.f32')}: size is not a whole number of "
                                   f"{spec.channels}-channel samples; the recording is truncated")
            self._data[spec.name] = raw.reshape(-1, spec.channels)
        with open(self.path / "chunks.jsonl", encoding="utf-8") as f:
            self._index = [json.loads(line) for line in f if line.strip()]
        for row in self._index:
            if row["offset"] + row["n"] > self._data[row["stream"]].shape[0]:
                raise DatasetError(f"{self.path}: chunk index points past the end of {row['stream']}.f32; "
                                   f"the recording is truncated")
        rates = {s.name: s.rate_hz for s in self.streams}
        self.length_s = max((row["t0_s"] + row["n"] / rates[row["stream"]] for row in self._index), default=0.0)
        if loop and self.length_s <= 0:
            raise DatasetError(f"{self.path}: the recording holds no samples; nothing to loop")

    def _run(self, clock: Clock, emit: Emit, stop: threading.Event) -> None:
        rates = {s.name: s.rate_hz for s in self.streams}
        seq_span = max((row["seq"] for row in self._index), default=-1) + 1
        lap = 0
        while True:
            shift = lap * self.length_s
            for row in self._index:
                rate = rates[row["stream"]]
                t_rel = shift + row["t0_s"]
                if self.duration_s is not None and t_rel >= self.duration_s - 1e-9:
                    return
                t0 = clock.start + t_rel
                if not clock.sleep_until(t0 + row["n"] / rate, stop):
                    return
                samples = self._data[row["stream"]][row["offset"]:row["offset"] + row["n"]]
                seq = row["seq"] + lap * seq_span if row["seq"] >= 0 else row["seq"]
                emit(Chunk(row["stream"], rate, t0, samples, seq=seq, flags=row["flags"], arrival=time.monotonic()))
            if not self.loop:
                return
            lap += 1
