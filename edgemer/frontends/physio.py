"""Wrist physiology front-end: EDA, BVP, TEMP and ACC windows -> a 4 Hz feature matrix.

Feature channels (rows of the ``[4, window_s * 4]`` matrix, before normalisation):

==========  =====  ====================================================================
channel     unit   how
==========  =====  ====================================================================
eda         µS     the 4 Hz EDA stream
hr          bpm    BVP band-passed 0.7-3.0 Hz, systolic peaks, beat-to-beat rate
                   interpolated onto the 4 Hz grid
temp        °C     the 4 Hz skin-temperature stream
motion      g      per 0.25 s block, standard deviation of each ACC axis, averaged
==========  =====  ====================================================================

Each channel is then standardised with the training set's mean and standard deviation
(``front_end.normalisation`` in the manifest). The model's EDA outputs are in the same
standardised units; :meth:`WristFrontEnd.interpret` turns them back into µS.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from edgemer.bundle import Manifest
from edgemer.errors import ConfigError, InputError, ManifestError, SampleRateError
from edgemer.types import ModalityEstimate, StreamSpec, Window

CHANNELS = ("eda", "hr", "temp", "motion")
BASELINE_CHANNELS = ("eda", "hr", "temp")
"""Channels a personal baseline (:mod:`edgemer.calibration`) re-centres."""
FEATURE_RATE_HZ = 4.0
STREAM_RATES_HZ = {"eda": 4.0, "bvp": 64.0, "temp": 4.0, "acc": 32.0}
STREAM_CHANNELS = {"eda": 1, "bvp": 1, "temp": 1, "acc": 3}
ACC_UNITS_PER_G = 64.0

# Circumplex anchors (arousal, valence) in [-1, 1] for the physiology classes: a
# heuristic mapping, documented in the README, not a trained regression.
CIRCUMPLEX = {"baseline": (-0.2, 0.1), "stress": (0.7, -0.6), "amusement": (0.5, 0.6), "meditation": (-0.6, 0.3)}


@dataclass(frozen=True)
class WristFrontEndConfig:
    """Front-end parameters, as stored in ``manifest.front_end``.

    window_s: window length, seconds. hop_s: time between windows, seconds.
    forecast_s: EDA forecast horizon, seconds. min_coverage: fraction of samples a
    stream must have in a window for the window to be used (0..1). mean/std: per
    feature channel standardisation, in the channel's unit.
    """

    window_s: float = 60.0
    hop_s: float = 5.0
    forecast_s: float = 10.0
    min_coverage: float = 0.8
    mean: tuple[float, ...] = (3.0, 70.0, 33.5, 0.05)
    std: tuple[float, ...] = (1.5, 10.0, 0.5, 0.05)
    stream_rates_hz: Mapping[str, float] = field(default_factory=lambda: dict(STREAM_RATES_HZ))

    def __post_init__(self) -> None:
        if self.window_s <= 0 or abs(self.window_s * FEATURE_RATE_HZ - round(self.window_s * FEATURE_RATE_HZ)) > 1e-9:
            raise ConfigError(f"front_end.window_s must be a positive multiple of 0.25 s, got {self.window_s}")
        if self.hop_s <= 0:
            raise ConfigError(f"front_end.hop_s must be > 0 s, got {self.hop_s}")
        if self.forecast_s < 0:
            raise ConfigError(f"front_end.forecast_s must be >= 0 s, got {self.forecast_s}")
        if not 0 < self.min_coverage <= 1:
            raise ConfigError(f"front_end.min_coverage must be in (0, 1], got {self.min_coverage}")
        if len(self.mean) != len(CHANNELS) or len(self.std) != len(CHANNELS) or min(self.std) <= 0:
            raise ConfigError(f"front_end.normalisation needs {len(CHANNELS)} means and positive stds")
        for name, rate in STREAM_RATES_HZ.items():
            if self.stream_rates_hz.get(name) != rate:
                raise ConfigError(f"front_end.streams.{name} must be {rate} Hz (WESAD wrist layout), "
                                  f"got {self.stream_rates_hz.get(name)}")

    @property
    def n_samples(self) -> int:
        """Feature samples per window (``window_s * 4``)."""
        return int(round(self.window_s * FEATURE_RATE_HZ))

    @property
    def n_forecast(self) -> int:
        return int(round(self.forecast_s * FEATURE_RATE_HZ))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "wrist_physio",
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "forecast_s": self.forecast_s,
            "min_coverage": self.min_coverage,
            "feature_rate_hz": FEATURE_RATE_HZ,
            "channels": list(CHANNELS),
            "streams": {n: {"rate_hz": r, "channels": STREAM_CHANNELS[n]} for n, r in self.stream_rates_hz.items()},
            "normalisation": {"mean": list(self.mean), "std": list(self.std)},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WristFrontEndConfig":
        try:
            return cls(window_s=float(d["window_s"]), hop_s=float(d["hop_s"]), forecast_s=float(d["forecast_s"]),
                       min_coverage=float(d.get("min_coverage", 0.8)),
                       mean=tuple(float(x) for x in d["normalisation"]["mean"]),
                       std=tuple(float(x) for x in d["normalisation"]["std"]),
                       stream_rates_hz={n: float(v["rate_hz"]) for n, v in d["streams"].items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"front_end section is malformed ({type(exc).__name__}: {exc}); re-export the bundle") from exc


def fill_gaps(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Linearly interpolate NaNs in a 1-D array (edges hold the nearest value).

    Returns the filled array and the number of samples filled. An all-NaN input is
    returned unchanged.
    """
    bad = ~np.isfinite(x)
    n_bad = int(bad.sum())
    if n_bad == 0 or n_bad == x.size:
        return x, n_bad if n_bad < x.size else 0
    idx = np.arange(x.size)
    out = x.copy()
    out[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    return out, n_bad


@lru_cache(maxsize=8)
def _pulse_band_filter(rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Second-order Butterworth band-pass (as second-order sections), 0.7-3.0 Hz (42-180 bpm),
    and its steady-state initial conditions for a unit input."""
    from scipy import signal  # imported where used, so `import edgemer` stays light

    sos = signal.butter(2, [0.7, 3.0], btype="bandpass", fs=rate_hz, output="sos")
    return sos, signal.sosfilt_zi(sos)


def heart_rate_from_bvp(bvp: np.ndarray, rate_hz: float, n_out: int, out_rate_hz: float = FEATURE_RATE_HZ
                        ) -> tuple[np.ndarray, int]:
    """Heart rate in bpm on a ``out_rate_hz`` grid of ``n_out`` samples from a BVP segment.

    The band-pass is causal (one pass, started in steady state on the first sample): it
    delays every beat alike, so beat-to-beat intervals are unchanged, at a fifth of the
    cost of a zero-phase filter.

    Parameters
    ----------
    bvp: 1-D PPG samples at ``rate_hz`` (gaps already filled).

    Returns ``(hr_bpm [n_out], n_beats)``; all-NaN when fewer than two beats are found.
    """
    from scipy import signal

    sos, zi_unit = _pulse_band_filter(float(rate_hz))
    filtered, _ = signal.sosfilt(sos, bvp, zi=zi_unit * bvp[0])
    spread = float(np.std(filtered))
    if spread == 0.0:
        return np.full(n_out, np.nan), 0
    peaks, _ = signal.find_peaks(filtered, distance=max(1, int(0.3 * rate_hz)), prominence=spread)
    if peaks.size < 2:
        return np.full(n_out, np.nan), int(peaks.size)
    beat_t = peaks / rate_hz
    ibi = np.diff(beat_t)
    hr = 60.0 / ibi
    ok = (hr > 30) & (hr < 220)
    if ok.sum() < 1:
        return np.full(n_out, np.nan), int(peaks.size)
    mid_t = (beat_t[1:] + beat_t[:-1])[ok] / 2
    grid = (np.arange(n_out) + 0.5) / out_rate_hz
    return np.interp(grid, mid_t, hr[ok]).astype(np.float32), int(peaks.size)


def wrist_features(streams: Mapping[str, np.ndarray], window_s: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Physical feature matrix ``[4, window_s * 4]`` (eda µS, hr bpm, temp °C, motion g).

    Parameters
    ----------
    streams: ``eda`` [window_s*4, 1], ``bvp`` [window_s*64, 1], ``temp`` [window_s*4, 1],
        ``acc`` [window_s*32, 3]; NaN marks missing samples.

    Returns the matrix and an info dict (samples filled per stream, beats found).

    Raises
    ------
    InputError: a stream has the wrong length (sample rate) or no usable sample.
    """
    n = int(round(window_s * FEATURE_RATE_HZ))
    info: dict[str, Any] = {"filled": {}}
    arrays = {}
    for name, rate in STREAM_RATES_HZ.items():
        if name not in streams:
            raise InputError(f"wrist front-end: stream '{name}' is missing from the window")
        x = np.asarray(streams[name], dtype=np.float64)
        want = (int(round(window_s * rate)), STREAM_CHANNELS[name])
        if x.shape != want:
            raise SampleRateError(f"wrist front-end: stream '{name}' window has shape {x.shape}, expected {want} "
                                  f"({rate} Hz x {window_s} s, {want[1]} channel(s)); resample the stream to {rate} Hz")
        cols = []
        filled = 0
        for c in range(x.shape[1]):
            col, k = fill_gaps(x[:, c])
            if not np.isfinite(col).all():
                raise InputError(f"wrist front-end: stream '{name}' has no finite sample in this window")
            cols.append(col)
            filled += k
        arrays[name] = np.stack(cols, axis=1)
        info["filled"][name] = filled
    hr, beats = heart_rate_from_bvp(arrays["bvp"][:, 0], STREAM_RATES_HZ["bvp"], n)
    info["beats"] = beats
    acc_blocks = arrays["acc"].reshape(n, -1, 3) / ACC_UNITS_PER_G
    motion = acc_blocks.std(axis=1).mean(axis=1)
    feats = np.stack([arrays["eda"][:, 0], hr, arrays["temp"][:, 0], motion]).astype(np.float32)
    return feats, info


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class WristFrontEnd:
    """Front-end and output interpreter for ``wrist_physio`` bundles (see module docstring)."""

    modality = "physio"

    def __init__(self, config: WristFrontEndConfig, labels: tuple[str, ...], input_name: str = "signals",
                 physics: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.labels = labels
        self.input_name = input_name
        self.physics = dict(physics or {})
        self.window_s = config.window_s
        self.hop_s = config.hop_s
        self.min_coverage = config.min_coverage
        self.streams = tuple(StreamSpec(n, r, STREAM_CHANNELS[n]) for n, r in config.stream_rates_hz.items())
        self._mean = np.asarray(config.mean, np.float32)[:, None]
        self._std = np.asarray(config.std, np.float32)[:, None]
        self._baseline_shift = np.zeros((len(CHANNELS), 1), np.float32)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "WristFrontEnd":
        cfg = WristFrontEndConfig.from_dict(manifest.front_end)
        return cls(cfg, manifest.labels, manifest.inputs[0].name, manifest.raw.get("physics"))

    def normalise(self, feats: np.ndarray) -> np.ndarray:
        """Standardise a ``[4, n]`` physical feature matrix; HR left NaN (no beats) becomes the mean."""
        z = (feats - self._mean) / self._std
        return np.nan_to_num(z, nan=0.0).astype(np.float32)

    def prepare(self, window: Window) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Model feeds for one window; ``info["levels"]`` holds its median EDA, HR and TEMP."""
        feats, info = wrist_features(window.streams, self.config.window_s)
        info["levels"] = {name: float(np.nanmedian(feats[CHANNELS.index(name)])) for name in BASELINE_CHANNELS}
        feats = feats - self._baseline_shift
        return {self.input_name: self.normalise(feats)[None]}, info

    def apply_baseline(self, levels: Mapping[str, float]) -> None:
        """Shift later windows so the wearer's resting ``levels`` map onto the training mean."""
        shift = np.zeros((len(CHANNELS), 1), np.float32)
        for name in BASELINE_CHANNELS:
            if name in levels and np.isfinite(levels[name]):
                i = CHANNELS.index(name)
                shift[i, 0] = float(levels[name]) - float(self._mean[i, 0])
        self._baseline_shift = shift

    def interpret(self, outputs: Mapping[str, np.ndarray], t_end: float, bundle: str) -> ModalityEstimate:
        # The PINN's outputs by name; a plain classifier (edgemer export onnx) gives its logits first.
        logits = outputs["class_logits"] if "class_logits" in outputs else next(iter(outputs.values()))
        probs = softmax(np.asarray(logits, np.float64).reshape(-1))
        probabilities = {lab: float(p) for lab, p in zip(self.labels, probs)}
        stress = probabilities.get("stress", 0.0)
        arousal = sum(p * CIRCUMPLEX.get(lab, (0.0, 0.0))[0] for lab, p in probabilities.items())
        valence = sum(p * CIRCUMPLEX.get(lab, (0.0, 0.0))[1] for lab, p in probabilities.items())
        extras: dict[str, Any] = {"physics": self.physics}
        if "eda" in outputs:
            eda_mean, eda_std = float(self._mean[0, 0]), float(self._std[0, 0])
            eda = np.asarray(outputs["eda"], np.float64).reshape(-1) * eda_std + eda_mean
            extras["eda_forecast_uS"] = eda[self.config.n_samples:].round(4).tolist()
            extras["eda_forecast_rate_hz"] = FEATURE_RATE_HZ
        if "drive" in outputs:
            extras["drive"] = float(np.asarray(outputs["drive"]).reshape(-1)[self.config.n_samples - 1])
        confidence = float(probs.max())
        return ModalityEstimate(modality=self.modality, bundle=bundle, t_end=t_end, probabilities=probabilities,
                                stress_probability=stress, arousal=float(arousal), valence=float(valence),
                                confidence=confidence, extras=extras)
