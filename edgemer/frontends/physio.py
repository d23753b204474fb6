"""Wrist physiology front-end: EDA, BVP, TEMP and ACC windows -> a 4 Hz feature matrix.

Feature channels (rows of the ``[4, window_s * 4]`` matrix, before normalisation):

==========  =====  ====================================================================
channel     unit   how
==========  =====  ====================================================================
eda         µS     the 4 Hz EDA stream
hr          bpm    beats from the BVP (:mod:`edgemer.frontends.heart`), kept only where a
                   beat-to-beat interval is clean; the clean rates interpolated onto the
                   4 Hz grid. A window with too few clean beats has no heart rate: the
                   channel is NaN and flagged (``info["heart_rate"]``).
temp        °C     the 4 Hz skin-temperature stream
motion      g      per 0.25 s block, standard deviation of each ACC axis, averaged
==========  =====  ====================================================================

Each channel is then standardised with the training set's mean and standard deviation
(``front_end.normalisation`` in the manifest). A missing heart rate (NaN) becomes the
training mean (0 after standardisation) in :meth:`WristFrontEnd.normalise`, which the
training windows (``edgemer.export.physio.windows``) go through too: the model was trained
with the same stand-in for windows whose pulse it could not read, and ``channel_stats``
leaves those windows out of the mean and standard deviation. The model's EDA outputs are
in the same standardised units; :meth:`WristFrontEnd.interpret` turns them back into µS.

Every estimate carries the window's measured features in ``extras["features"]``
(:func:`window_features`): ``heart_rate_bpm``, ``hr_quality`` (0..1), ``eda_tonic_uS``,
``scr_per_min``, ``scr_amplitude_uS``, ``temp_c``, ``motion_g``; a value is None when it
could not be measured, with the reason in ``extras["features"]["missing"]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from edgemer.bundle import Manifest
from edgemer.errors import ConfigError, InputError, ManifestError, SampleRateError
from edgemer.frontends.eda import eda_features
from edgemer.frontends.heart import HeartRate, HeartRateConfig, ppg_heart_rate
from edgemer.types import ModalityEstimate, StreamSpec, Window

CHANNELS = ("eda", "hr", "temp", "motion")
FEATURES = ("heart_rate_bpm", "hr_quality", "eda_tonic_uS", "scr_per_min", "scr_amplitude_uS", "temp_c", "motion_g")
"""The measured features every physiology estimate carries in ``extras["features"]`` (:func:`window_features`)."""
BASELINE_CHANNELS = ("eda", "hr", "temp")
"""Channels a personal baseline (:mod:`edgemer.calibration`) re-centres."""
FEATURE_RATE_HZ = 4.0
STREAM_RATES_HZ = {"eda": 4.0, "bvp": 64.0, "temp": 4.0, "acc": 32.0}
STREAM_CHANNELS = {"eda": 1, "bvp": 1, "temp": 1, "acc": 3}
ACC_UNITS_PER_G = 64.0

# Circumplex anchors (arousal, valence) in [-1, 1] for the physiology classes: a
# heuristic mapping, documented in the README, not a trained regression.
CIRCUMPLEX = {"baseline": (-0.2, 0.1), "stress": (0.7, -0.6), "amusement": (0.5, 0.6), "meditation": (-0.6, 0.3)}


def feature_samples(seconds: float) -> int:
    """Samples at the 4 Hz feature rate in ``seconds`` (s), rounded."""
    return int(round(seconds * FEATURE_RATE_HZ))


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
        return feature_samples(self.window_s)

    @property
    def n_forecast(self) -> int:
        """Forecast samples at 4 Hz."""
        return feature_samples(self.forecast_s)

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


def heart_rate_series(hr: HeartRate, rate_hz: float, n_out: int, out_rate_hz: float = FEATURE_RATE_HZ) -> np.ndarray:
    """Beat-to-beat rate (bpm) of the clean intervals of ``hr`` on a ``[n_out]`` grid at ``out_rate_hz``.

    Each clean interval's rate sits at its midpoint; the grid is interpolated between them
    (held flat beyond the first and last). All NaN when ``hr`` is flagged.
    """
    if hr.flagged:
        return np.full(n_out, np.nan, np.float32)
    beat_t = hr.beats / float(rate_hz)
    mid_t = ((beat_t[1:] + beat_t[:-1]) / 2)[hr.ibi_clean]
    grid = (np.arange(n_out) + 0.5) / out_rate_hz
    return np.interp(grid, mid_t, 60.0 / hr.ibi_s[hr.ibi_clean]).astype(np.float32)


def heart_rate_from_bvp(bvp: np.ndarray, rate_hz: float, n_out: int, out_rate_hz: float = FEATURE_RATE_HZ,
                        config: HeartRateConfig = HeartRateConfig()) -> tuple[np.ndarray, int]:
    """Heart rate in bpm on a ``out_rate_hz`` grid of ``n_out`` samples from a BVP segment.

    ``bvp``: 1-D PPG samples at ``rate_hz`` (gaps already filled). Returns ``(hr_bpm [n_out],
    n_beats)``; all-NaN when the window's heart rate is flagged (too few clean beats, see
    :func:`edgemer.frontends.heart.heart_rate`).
    """
    hr = ppg_heart_rate(bvp, rate_hz, config)
    return heart_rate_series(hr, rate_hz, n_out, out_rate_hz), hr.n_beats


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
    hr = ppg_heart_rate(arrays["bvp"][:, 0], STREAM_RATES_HZ["bvp"])
    info["beats"] = hr.n_beats
    info["heart_rate"] = hr
    acc_blocks = arrays["acc"].reshape(n, -1, 3) / ACC_UNITS_PER_G
    motion = acc_blocks.std(axis=1).mean(axis=1)
    hr_series = heart_rate_series(hr, STREAM_RATES_HZ["bvp"], n)
    feats = np.stack([arrays["eda"][:, 0], hr_series, arrays["temp"][:, 0], motion]).astype(np.float32)
    return feats, info


def window_features(feats: np.ndarray, info: Mapping[str, Any]) -> dict[str, Any]:
    """The measured features of one window, in physical units, for ``extras["features"]``.

    ``feats``/``info`` as :func:`wrist_features` returns them. Keys: ``heart_rate_bpm``
    (60 / mean clean interval), ``hr_quality`` (0..1), ``eda_tonic_uS``, ``scr_per_min``,
    ``scr_amplitude_uS`` (:func:`edgemer.frontends.eda.eda_features`), ``temp_c`` (median),
    ``motion_g`` (median), and ``missing``: feature name -> reason for each None.
    """
    out: dict[str, Any] = {}
    missing: dict[str, str] = {}
    hr: HeartRate | None = info.get("heart_rate")
    if hr is None or hr.flagged:
        out["heart_rate_bpm"] = None
        missing["heart_rate_bpm"] = hr.reason if hr is not None else "no BVP in this window"
    else:
        out["heart_rate_bpm"] = round(hr.bpm, 2)
    out["hr_quality"] = None if hr is None else hr.quality
    eda = feats[CHANNELS.index("eda")].astype(np.float64)
    if np.isfinite(eda).all() and eda.size >= 2:
        out.update({k: round(v, 4) for k, v in eda_features(eda, FEATURE_RATE_HZ).items()})
    else:
        out.update(eda_tonic_uS=None, scr_per_min=None, scr_amplitude_uS=None)
        missing["eda_tonic_uS"] = missing["scr_per_min"] = missing["scr_amplitude_uS"] = "no EDA in this window"
    for key, channel in (("temp_c", "temp"), ("motion_g", "motion")):
        v = feats[CHANNELS.index(channel)]
        out[key] = round(float(np.median(v)), 4) if np.isfinite(v).any() else None
        if out[key] is None:
            missing[key] = f"no {channel} in this window"
    out["missing"] = missing
    return out


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
        self._features: dict[str, Any] | None = None
        # The heart-rate and EDA features use scipy.signal, imported where used so that `import edgemer`
        # stays light. Importing it costs about 1 CPU second; here (pipeline start-up, before the
        # sources run) instead of inside the first window, where it stalled the worker mid-stream
        # (frames dropped, other modalities late; counted in `edgemer bench cpu`).
        import scipy.signal  # noqa: F401

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "WristFrontEnd":
        cfg = WristFrontEndConfig.from_dict(manifest.front_end)
        return cls(cfg, manifest.labels, manifest.inputs[0].name, manifest.raw.get("physics"))

    def normalise(self, feats: np.ndarray) -> np.ndarray:
        """Standardise a ``[4, n]`` physical feature matrix; HR left NaN (no beats) becomes the mean."""
        z = (feats - self._mean) / self._std
        return np.nan_to_num(z, nan=0.0).astype(np.float32)

    def prepare(self, window: Window) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Model feeds for one window; ``info["levels"]`` holds its median EDA, HR and TEMP, and
        ``info["features"]`` its measured features (also put in the next :meth:`interpret`'s extras)."""
        feats, info = wrist_features(window.streams, self.config.window_s)
        info["features"] = self._features = window_features(feats, info)
        rows = {name: feats[CHANNELS.index(name)] for name in BASELINE_CHANNELS}
        info["levels"] = {name: float(np.nanmedian(r)) if np.isfinite(r).any() else float("nan")
                          for name, r in rows.items()}
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
        if self._features is not None:  # the window prepare() measured last (one worker runs both)
            extras["features"], self._features = self._features, None
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
