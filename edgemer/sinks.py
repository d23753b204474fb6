"""Sinks hand estimates to the app: a callback, a (rotating) JSONL file, a Lab
Streaming Layer outlet, the terminal.

A sink is any object with ``write(estimate)`` and ``close()``. Sinks run on the
pipeline's worker thread, so keep ``write`` quick.
"""
from __future__ import annotations

import json
import logging
import sys
from collections import deque
from pathlib import Path
from typing import Callable, Protocol, TextIO

from edgemer._extras import require
from edgemer.errors import ConfigError
from edgemer.types import Estimate

log = logging.getLogger(__name__)


class Sink(Protocol):
    def write(self, estimate: Estimate) -> None: ...

    def close(self) -> None: ...


class CallbackSink:
    """Calls ``fn(estimate)`` for every estimate."""

    def __init__(self, fn: Callable[[Estimate], None]) -> None:
        self.fn = fn

    def write(self, estimate: Estimate) -> None:
        self.fn(estimate)

    def close(self) -> None:
        pass


class JsonlSink:
    """Writes one JSON object per line (:meth:`Estimate.to_dict`), flushed after each line.

    Parameters
    ----------
    path: the file. max_bytes: rotate when the file would exceed this size (None: never);
        rotated files are ``path.1`` (newest) ... ``path.N``. backups: rotated files kept.
    backlog: lines kept in memory while the disk refuses writes (full, removed); they are
        written first once it accepts them again. Failed writes are counted in
        ``write_errors`` and logged, never raised into the pipeline.
    """

    def __init__(self, path: str | Path, max_bytes: int | None = None, backups: int = 5,
                 backlog: int = 10_000) -> None:
        if max_bytes is not None and max_bytes < 1024:
            raise ConfigError(f"JsonlSink.max_bytes must be >= 1024 bytes, got {max_bytes}")
        if backups < 1:
            raise ConfigError(f"JsonlSink.backups must be >= 1, got {backups}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.write_errors = 0
        self.rotations = 0
        self._pending: deque[str] = deque(maxlen=backlog)
        self.lost_lines = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: TextIO = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open '{self.path}' for writing estimates: {exc.strerror or exc}") from exc
        self._size = 0

    def _rotate(self) -> None:
        self._f.close()
        for i in range(self.backups, 0, -1):
            src = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{i}"))
        self._f = open(self.path, "w", encoding="utf-8")
        self._size = 0
        self.rotations += 1

    def write(self, estimate: Estimate) -> None:
        if len(self._pending) == self._pending.maxlen:
            self.lost_lines += 1
        self._pending.append(json.dumps(estimate.to_dict(), separators=(",", ":")) + "\n")
        try:
            while self._pending:
                line = self._pending[0]
                if self.max_bytes is not None and self._size and self._size + len(line) > self.max_bytes:
                    self._rotate()
                self._f.write(line)
                self._f.flush()
                self._size += len(line)
                self._pending.popleft()
        except OSError as exc:
            self.write_errors += 1
            log.error("JSONL sink %s: write failed (%s); %d estimate(s) kept in memory until the disk accepts "
                      "them", self.path, exc.strerror or exc, len(self._pending))

    def close(self) -> None:
        try:
            self._f.close()
        except OSError as exc:
            log.error("JSONL sink %s: close failed (%s)", self.path, exc.strerror or exc)
        if self._pending:
            log.error("JSONL sink %s: %d estimate(s) could not be written", self.path, len(self._pending))


class LslSink:
    """Publishes estimates as a Lab Streaming Layer stream (needs ``pip install 'edgemer[lsl]'``).

    One irregular-rate float32 sample per estimate with channels ``stress``,
    ``arousal``, ``valence``, ``confidence``, one per class label, and one per measured
    physiology feature (``heart_rate_bpm``, ``hr_quality``, ``eda_tonic_uS``, ``scr_per_min``,
    ``scr_amplitude_uS``, ``temp_c``, ``motion_g``; :data:`edgemer.frontends.physio.FEATURES`),
    NaN where a value is unavailable, time-stamped with the estimate's time: at speed 1 the pipeline clock is
    ``time.monotonic()``, the same clock as ``pylsl.local_clock()`` on Linux, so lab
    recorders align it with their other LSL streams.
    """

    def __init__(self, labels: tuple[str, ...], name: str = "edgemer", source_id: str = "edgemer-estimates") -> None:
        pylsl = require("pylsl", "lsl", "The Lab Streaming Layer sink")
        from edgemer.frontends.physio import FEATURES

        self._features = FEATURES
        self.channels = (("stress", "arousal", "valence", "confidence") + tuple(f"p_{lab}" for lab in labels)
                         + FEATURES)
        info = pylsl.StreamInfo(name, "Estimates", len(self.channels), pylsl.IRREGULAR_RATE, "float32", source_id)
        chans = info.desc().append_child("channels")
        for c in self.channels:
            chans.append_child("channel").append_child_value("label", c)
        info.desc().append_child_value("producer", "edgemer")
        self._outlet = pylsl.StreamOutlet(info)
        self._labels = labels

    def write(self, e: Estimate) -> None:
        nan = float("nan")

        def val(x):
            return nan if x is None else float(x)

        sample = [val(e.stress_probability), val(e.arousal), val(e.valence), float(e.confidence)]
        sample += [val(e.probabilities.get(lab)) for lab in self._labels]
        phys = e.modalities.get("physio")
        feats = phys.extras.get("features", {}) if phys is not None else {}
        sample += [val(feats.get(f)) for f in self._features]
        self._outlet.push_sample(sample, e.t)

    def close(self) -> None:
        self._outlet = None


def _bar(p: float, width: int = 10) -> str:
    full = int(round(p * width))
    return "#" * full + "." * (width - full)


class TerminalSink:
    """One human-readable line per estimate (stress bar, classes, EDA forecast, the window's heart rate
    with its quality (or why it is missing), tonic EDA and SCR rate, latency)."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream

    def write(self, e: Estimate) -> None:
        if e.stress_probability is None:
            missing = ", ".join(f"{m} ({e.absent[m]})" if m in e.absent else m
                                for m, ok in e.available.items() if not ok)
            line = f"t={e.elapsed_s:7.1f}s  no estimate: {missing or 'no modality'} unavailable"
        else:
            classes = " ".join(f"{k} {v:.2f}" for k, v in e.probabilities.items())
            line = f"t={e.elapsed_s:7.1f}s  stress [{_bar(e.stress_probability)}] {e.stress_probability:.2f}  {classes}"
            phys = e.modalities.get("physio")
            if phys is not None and phys.extras.get("eda_forecast_uS"):
                fc = phys.extras["eda_forecast_uS"]
                horizon = len(fc) / phys.extras.get("eda_forecast_rate_hz", 4.0)
                line += f"  EDA +{horizon:.0f}s {fc[-1]:.2f} uS"
            feats = phys.extras.get("features") if phys is not None else None
            if feats:
                hr = feats.get("heart_rate_bpm")
                line += (f"  HR {hr:.0f} bpm (q {feats.get('hr_quality') or 0:.2f})" if hr is not None
                         else f"  HR -- ({feats.get('missing', {}).get('heart_rate_bpm', 'missing')})")
                if feats.get("eda_tonic_uS") is not None:
                    line += f"  tonic {feats['eda_tonic_uS']:.2f} uS, SCR {feats['scr_per_min']:.1f}/min"
            if e.reference is not None:
                line += f"  truth: {e.reference}"
            for m, why in e.absent.items():
                line += f"  {m}: {why}"
            line += f"  latency {e.latency_s * 1000:.1f} ms"
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        pass
