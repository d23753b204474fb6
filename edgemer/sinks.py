"""Sinks hand estimates to the app: a callback, a JSONL file, the terminal.

A sink is any object with ``write(estimate)`` and ``close()``. Sinks run on the
pipeline's worker thread, so keep ``write`` quick.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Protocol, TextIO

from edgemer.errors import ConfigError
from edgemer.types import Estimate


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
    """Writes one JSON object per line (:meth:`Estimate.to_dict`), flushed after each line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: TextIO = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open '{self.path}' for writing estimates: {exc.strerror or exc}") from exc

    def write(self, estimate: Estimate) -> None:
        self._f.write(json.dumps(estimate.to_dict(), separators=(",", ":")) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _bar(p: float, width: int = 10) -> str:
    full = int(round(p * width))
    return "#" * full + "." * (width - full)


class TerminalSink:
    """One human-readable line per estimate (stress bar, classes, EDA forecast, latency)."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream

    def write(self, e: Estimate) -> None:
        if e.stress_probability is None:
            missing = ", ".join(m for m, ok in e.available.items() if not ok)
            line = f"t={e.elapsed_s:7.1f}s  no estimate: {missing or 'no modality'} unavailable"
        else:
            classes = " ".join(f"{k} {v:.2f}" for k, v in e.probabilities.items())
            line = f"t={e.elapsed_s:7.1f}s  stress [{_bar(e.stress_probability)}] {e.stress_probability:.2f}  {classes}"
            phys = e.modalities.get("physio")
            if phys is not None and phys.extras.get("eda_forecast_uS"):
                fc = phys.extras["eda_forecast_uS"]
                horizon = len(fc) / phys.extras.get("eda_forecast_rate_hz", 4.0)
                line += f"  EDA +{horizon:.0f}s {fc[-1]:.2f} uS"
            if e.reference is not None:
                line += f"  truth: {e.reference}"
            line += f"  latency {e.latency_s * 1000:.1f} ms"
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        pass
