"""Empatica E4 sessions (an E4 connect export, folder or ``.zip``) as a replay source.

An E4 export holds one CSV per signal. In each signal file the first line is the start
time (UNIX seconds, UTC) and the second the sample rate (Hz), once per column; the samples
follow, one row each:

===========  ============  ==========================================================
file         rate          values
===========  ============  ==========================================================
``EDA.csv``  4 Hz          skin conductance, µS
``BVP.csv``  64 Hz         blood volume pulse (PPG), arbitrary units
``TEMP.csv`` 4 Hz          skin temperature, °C
``ACC.csv``  32 Hz         3 columns (x, y, z), 1/64 g (the runtime's ``acc`` unit)
``HR.csv``   1 Hz          Empatica's own heart rate, bpm (optional; read, not replayed)
``IBI.csv``  -             first line: start time, ``IBI``; rows: offset s, interval s
                           (optional; read, not replayed)
``tags.csv`` -             one UNIX time per button press (optional, may be empty)
===========  ============  ==========================================================

These are WESAD's wrist rates (WESAD's wrist data came from an E4), so a session feeds
the physiology bundles as it is. :func:`read_e4_session` aligns the four signals on their
start times: the session starts at the earliest start, a later stream is NaN (missing)
until its first sample, and the session ends with the shortest stream. :class:`E4Replay`
plays it on the pipeline clock (``--source replay:e4:PATH``); each button press becomes a
sample of the ``tag`` stream (1 at the press, 0 elsewhere, 4 Hz) so it lands in the
window where it happened, and the presses replayed so far are counted in the source's
health, which every estimate carries (``Estimate.sources``).

Bad input raises :class:`~edgemer.errors.DatasetError` naming the file and the fix: a
missing file, a header that is not a time and a rate, rows of the wrong width, a rate
that is not the E4's, signals that do not overlap, a damaged or truncated zip.
"""
from __future__ import annotations

import io
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgemer.errors import DatasetError
from edgemer.sources import Emit, ThreadedSource
from edgemer.types import Chunk, StreamSpec

if TYPE_CHECKING:
    from edgemer.clock import PipelineClock

__all__ = ["E4_SIGNALS", "TAG_STREAM", "E4Session", "E4Replay", "read_e4_session", "write_e4_session"]

MAX_MEMBER_BYTES = 1 << 30
"""Largest uncompressed member of a session zip (1 GiB; a day of E4 CSVs is about 200 MB)."""
E4_SIGNALS = {"eda": ("EDA.csv", 4.0, 1), "bvp": ("BVP.csv", 64.0, 1), "temp": ("TEMP.csv", 4.0, 1),
              "acc": ("ACC.csv", 32.0, 3)}
"""stream name -> (file, rate Hz, columns): the signals an E4 session must have."""

TAG_STREAM = StreamSpec("tag", 4.0, 1, "button press")
WRIST = tuple(StreamSpec(name, rate, ch, unit) for (name, (_, rate, ch)), unit
              in zip(E4_SIGNALS.items(), ("uS", "a.u.", "degC", "g/64")))


@dataclass(frozen=True)
class E4Session:
    """An E4 export, aligned.

    start_unix: UNIX time of the session's first sample, s. streams: name -> float32
    ``[n, channels]`` at the rate of :data:`E4_SIGNALS` (NaN before a stream's own start).
    tags_s: button presses, s from ``start_unix``. hr_bpm: Empatica's 1 Hz heart rate
    (None when absent). ibi: ``[n, 2]`` (s from ``start_unix``, interval s) or None.
    source: the folder or zip it came from.
    """

    start_unix: float
    streams: dict[str, np.ndarray]
    tags_s: np.ndarray
    source: str
    hr_bpm: np.ndarray | None = field(default=None, repr=False)
    ibi: np.ndarray | None = field(default=None, repr=False)

    @property
    def duration_s(self) -> float:
        return min(a.shape[0] / E4_SIGNALS[n][1] for n, a in self.streams.items())


class _Files:
    """Reads member files of a folder or a zip (members may sit in one sub-folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: dict[str, bytes] | None = None
        if path.is_file():
            try:
                with zipfile.ZipFile(path) as z:
                    members = [i for i in z.infolist() if not i.is_dir()]
                    big = [i.filename for i in members if i.file_size > MAX_MEMBER_BYTES]
                    if big:  # checked before inflating: a few KiB of zip can declare gigabytes
                        raise DatasetError(f"{path}: member {big[0][:80]!r} declares more than {MAX_MEMBER_BYTES} "
                                           f"bytes uncompressed; refused (not an E4 connect export)")
                    self._zip = {Path(i.filename).name: z.read(i) for i in members}
            except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile, zlib.error, NotImplementedError,
                    RuntimeError, ValueError) as exc:  # damaged deflate data, unknown method, encrypted
                raise DatasetError(f"{path}: not a readable zip ({type(exc).__name__}: {exc}); the download may be "
                                   f"truncated: export the session from E4 connect again") from exc
        elif not path.is_dir():
            raise DatasetError(f"{path}: no such E4 export (give the session's folder or its .zip)")

    def text(self, name: str, required: bool = True) -> str | None:
        if self._zip is not None:
            data = self._zip.get(name)
        else:
            f = self.path / name
            data = f.read_bytes() if f.is_file() else None
        if data is None:
            if required:
                raise DatasetError(f"{self.path}: {name} is missing; an E4 session needs EDA.csv, BVP.csv, TEMP.csv "
                                   f"and ACC.csv (export the whole session from E4 connect)")
            return None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{self.path}/{name}: not a text file ({exc})") from exc


def _signal(files: _Files, name: str, rate_hz: float, columns: int) -> tuple[float, np.ndarray]:
    """(start UNIX s, samples ``[n, columns]``) of one E4 signal file."""
    text = files.text(name)
    where = f"{files.path}/{name}"
    try:
        rows = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise DatasetError(f"{where}: not numbers in rows of {columns} column(s) ({exc}); the file is damaged") from exc
    if rows.shape[0] < 2 or rows.shape[1] != columns:
        raise DatasetError(f"{where}: expected a start-time row, a sample-rate row and samples in {columns} column(s), "
                           f"got {rows.shape[0]} row(s) of {rows.shape[1]}")
    start, rate = rows[0], rows[1]
    if not (np.all(start == start[0]) and 1e8 < start[0] < 1e10):
        raise DatasetError(f"{where}: the first line must be the session's start time in UNIX seconds "
                           f"(e.g. 1495437325), got {rows[0].tolist()}")
    if not np.all(rate == rate_hz):
        raise DatasetError(f"{where}: the second line must be the sample rate {rate_hz:g} Hz (the E4's), got "
                           f"{rows[1].tolist()}; resample the signal to {rate_hz:g} Hz")
    return float(start[0]), rows[2:].astype(np.float32)


def read_e4_session(path: str | Path) -> E4Session:
    """Read and align an E4 connect export (folder or ``.zip``); see the module docstring."""
    files = _Files(Path(path))
    starts, raw = {}, {}
    for stream, (name, rate, cols) in E4_SIGNALS.items():
        starts[stream], raw[stream] = _signal(files, name, rate, cols)
    t0 = min(starts.values())
    ends = {s: starts[s] + raw[s].shape[0] / E4_SIGNALS[s][1] for s in raw}
    end = min(ends.values())
    if end - max(starts.values()) <= 0:
        raise DatasetError(f"{files.path}: the signals do not overlap in time (starts "
                           f"{ {s: round(v - t0, 1) for s, v in starts.items()} } s, lengths "
                           f"{ {s: round(ends[s] - starts[s], 1) for s in raw} } s); were the files taken from "
                           f"different sessions?")
    streams = {}
    for s, a in raw.items():
        rate = E4_SIGNALS[s][1]
        lead = int(round((starts[s] - t0) * rate))
        n = int(np.floor((end - t0) * rate + 1e-6))
        out = np.full((n, a.shape[1]), np.nan, np.float32)
        take = max(0, min(a.shape[0], n - lead))
        out[lead:lead + take] = a[:take]
        streams[s] = out
    tags_text = files.text("tags.csv", required=False)
    tags = np.zeros(0)
    if tags_text and tags_text.strip():
        try:
            tags = np.loadtxt(io.StringIO(tags_text), delimiter=",", ndmin=1, dtype=np.float64).reshape(-1) - t0
        except ValueError as exc:
            raise DatasetError(f"{files.path}/tags.csv: expected one UNIX time per line ({exc})") from exc
    hr = None
    hr_text = files.text("HR.csv", required=False)
    if hr_text:
        _, hr_rows = _signal(files, "HR.csv", 1.0, 1)
        hr = hr_rows[:, 0]
    ibi = None
    ibi_text = files.text("IBI.csv", required=False)
    if ibi_text and len(ibi_text.splitlines()) > 1:
        lines = ibi_text.splitlines()
        try:
            ibi_start = float(lines[0].split(",")[0])
            ibi = np.loadtxt(io.StringIO("\n".join(lines[1:])), delimiter=",", ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise DatasetError(f"{files.path}/IBI.csv: expected a start-time line then 'offset, interval' rows "
                               f"({exc})") from exc
        ibi[:, 0] += ibi_start - t0
    return E4Session(start_unix=t0, streams=streams, tags_s=np.sort(tags), source=str(path), hr_bpm=hr, ibi=ibi)


def write_e4_session(folder: str | Path, start_unix: float, streams: dict[str, np.ndarray],
                     tags_unix: np.ndarray | None = None) -> Path:
    """Write ``streams`` (name -> ``[n, channels]`` at the E4 rates) as an E4 export folder; returns it.

    For tests and for converting recordings into the E4 layout; ``acc`` in 1/64 g.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for s, (name, rate, cols) in E4_SIGNALS.items():
        a = np.asarray(streams[s], np.float64).reshape(-1, cols)
        head = ", ".join([f"{start_unix:.6f}"] * cols) + "\n" + ", ".join([f"{rate:.6f}"] * cols) + "\n"
        body = "\n".join(", ".join(f"{v:.6g}" for v in row) for row in a)
        (folder / name).write_text(head + body + "\n", encoding="utf-8")
    tags = np.asarray(tags_unix if tags_unix is not None else [], np.float64).reshape(-1)
    (folder / "tags.csv").write_text("".join(f"{t:.2f}\n" for t in tags), encoding="utf-8")
    return folder


class E4Replay(ThreadedSource):
    """Replays an E4 session (folder or ``.zip``) as the wrist streams plus a ``tag`` stream.

    Parameters
    ----------
    path: the export (folder or .zip).
    speed: stream seconds per wall second.
    duration_s: seconds to replay (None: the whole session).
    chunk_s: seconds per chunk (a multiple of 0.25 s).
    """

    streams = WRIST + (TAG_STREAM,)
    live = False
    steppable = True

    def __init__(self, path: str | Path, speed: float = 1.0, duration_s: float | None = None,
                 chunk_s: float = 1.0) -> None:
        super().__init__(speed)
        if chunk_s <= 0 or abs(chunk_s * 4 - round(chunk_s * 4)) > 1e-9:
            raise DatasetError(f"E4Replay.chunk_s must be a positive multiple of 0.25 s, got {chunk_s}")
        self.session = read_e4_session(path)
        self.name = f"replay:e4:{Path(path).name}"
        self.chunk_s = float(chunk_s)
        self.end_s = self.session.duration_s if duration_s is None else min(self.session.duration_s, duration_s)
        n_tag = int(round(self.session.duration_s * TAG_STREAM.rate_hz))
        self._tags = np.zeros((n_tag, 1), np.float32)
        idx = np.round(self.session.tags_s * TAG_STREAM.rate_hz).astype(int)
        self._tags[idx[(idx >= 0) & (idx < n_tag)], 0] = 1.0
        self._tags_sent, self._last_tag_s = 0, None

    def health(self) -> dict:
        """Button presses replayed so far and the newest one's time (s into the session; None before any):
        every estimate carries them in ``Estimate.sources``."""
        return {"tags": self._tags_sent, "last_tag_s": self._last_tag_s}

    def _run(self, clock: "PipelineClock", emit: Emit, stop: threading.Event) -> None:
        t_rec, seq, end = 0.0, 0, self.end_s
        data = dict(self.session.streams, tag=self._tags)
        while not stop.is_set() and t_rec < end - 1e-9:
            step = min(self.chunk_s, end - t_rec)
            t0 = clock.start + t_rec
            if not clock.sleep_until(t0 + step, stop):
                return
            arrival = time.monotonic()
            for spec in self.streams:
                a, b = int(round(t_rec * spec.rate_hz)), int(round((t_rec + step) * spec.rate_hz))
                emit(Chunk(spec.name, spec.rate_hz, t0, data[spec.name][a:b], seq=seq, arrival=arrival))
            done = self.session.tags_s[(self.session.tags_s >= t_rec) & (self.session.tags_s < t_rec + step)]
            if done.size:
                self._tags_sent += int(done.size)
                self._last_tag_s = round(float(done[-1]), 2)
            t_rec += step
            seq += 1
