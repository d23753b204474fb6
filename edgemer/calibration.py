"""Personal baselines: a calibration phase records the wearer's resting levels.

During the first ``duration_s`` of stream time (default 2 minutes, the wearer at rest)
the pipeline collects each front-end's per-window resting levels (physiology: tonic
EDA in µS, heart rate in bpm, skin temperature in °C). Their median is the wearer's
:class:`Baseline`; from then on front-ends shift later windows so that this wearer's
rest maps onto the training population's average, and the model sees changes from the
wearer's own rest rather than differences between people. A baseline is saved as JSON
per user and can be loaded to skip the phase next time.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from edgemer.errors import ConfigError

FORMAT = "edgemer.baseline/1"


@dataclass(frozen=True)
class Baseline:
    """A wearer's resting levels: modality -> channel -> value (in the channel's unit)."""

    user: str
    levels: Mapping[str, Mapping[str, float]]
    duration_s: float
    windows: int
    created_utc: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "user": self.user, "levels": {m: dict(v) for m, v in self.levels.items()},
                "duration_s": self.duration_s, "windows": self.windows, "created_utc": self.created_utc}
        path.write_text(json.dumps(data, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Baseline":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the baseline ({exc}); record a new one with a calibration "
                              f"phase") from exc
        if data.get("format") != FORMAT:
            raise ConfigError(f"{path}: baseline format {data.get('format')!r}, expected {FORMAT}")
        return cls(user=str(data["user"]), levels=data["levels"], duration_s=float(data["duration_s"]),
                   windows=int(data["windows"]), created_utc=str(data.get("created_utc", "")))

    @classmethod
    def from_windows(cls, user: str, per_window: Mapping[str, list[Mapping[str, float]]],
                     duration_s: float) -> "Baseline":
        """Median of each channel's per-window level over the calibration windows."""
        levels: dict[str, dict[str, float]] = {}
        for modality, rows in per_window.items():
            if rows:
                keys = rows[0].keys()
                levels[modality] = {k: float(np.nanmedian([r[k] for r in rows])) for k in keys}
        return cls(user=user, levels=levels, duration_s=duration_s,
                   windows=max((len(r) for r in per_window.values()), default=0))


@dataclass(frozen=True)
class CalibrationConfig:
    """duration_s: resting phase at the start, stream seconds (> 0). user: whose baseline.
    save_to: write the baseline there when the phase ends. load_from: use a saved
    baseline and skip the phase."""

    duration_s: float = 120.0
    user: str = "default"
    save_to: Path | None = None
    load_from: Path | None = None

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ConfigError(f"CalibrationConfig.duration_s must be > 0 s, got {self.duration_s}")
        if not self.user:
            raise ConfigError("CalibrationConfig.user must not be empty")
