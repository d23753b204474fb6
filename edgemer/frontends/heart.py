"""Heart rate you can trust: beats from PPG or ECG, a quality index per beat and per
window, inter-beat intervals cleaned, heart rate from clean beats only.

The steps (each a function, ``sampling_rate``/``rate_hz`` always explicit):

1. :func:`ppg_peaks` / :func:`ecg_peaks`: beat times. PPG: causal 0.7-3.0 Hz Butterworth
   band-pass (42-180 bpm), systolic maxima at least 0.3 s apart with a prominence of one
   standard deviation of the filtered window. ECG: 5-20 Hz band-pass, squared slope
   integrated over 0.15 s (the QRS energy), maxima at least 0.3 s apart above a third of
   the window's robust energy level, each moved to the largest filtered sample nearby.
2. :func:`beat_quality`: per beat, the correlation (0..1) of the beat's waveform with the
   window's median beat (template matching, as in Orphanidou et al. 2015 and neurokit2's
   ``ppg_quality(method="templatematch")``). A motion artifact rarely looks like a pulse.
3. :func:`ibi_clean`: inter-beat intervals (s) between two consecutive good beats, kept
   when inside physiological limits (default 0.33-1.5 s, 40-180 bpm) and within
   ``max_change`` (default 20 %) of the median of their six neighbours (a successive-difference
   rule that catches missed and extra beats).
4. :func:`heart_rate`: the window's rate (bpm) = 60 / mean clean interval, with a window
   quality (0..1) = the fraction of the window covered by clean intervals times the mean
   beat quality. Too few clean beats (fewer than ``min_clean_beats``, or a quality below
   ``min_quality``) makes the rate missing (NaN) and flagged, with the reason; the app
   never sees a confident wrong number.

Arrays are 1-D float64 ``[n_samples]``; beat indices are sample indices into them.
:mod:`scipy.signal` is imported inside the functions that use it, so ``import edgemer``
stays light.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from edgemer.errors import ConfigError, InputError

__all__ = ["HeartRateConfig", "HeartRate", "ppg_peaks", "ecg_peaks", "beat_quality", "ibi_clean", "heart_rate",
           "ppg_heart_rate", "ecg_heart_rate"]


@dataclass(frozen=True)
class HeartRateConfig:
    """Rules for beats, cleaning and the missing-rate flag.

    min_bpm, max_bpm: physiological limits of one interval, bpm. max_change: largest
    relative difference of an interval from the median of its neighbours (0..1).
    min_beat_quality: template correlation a beat needs to count (0..1).
    min_clean_beats: clean intervals a window needs for a rate. min_quality: window
    quality (0..1) below which the rate is missing and flagged.
    """

    min_bpm: float = 40.0
    max_bpm: float = 180.0
    max_change: float = 0.2
    min_beat_quality: float = 0.8
    min_clean_beats: int = 10
    min_quality: float = 0.5

    def __post_init__(self) -> None:
        if not 20 <= self.min_bpm < self.max_bpm <= 250:
            raise ConfigError(f"HeartRateConfig.min_bpm/max_bpm must satisfy 20 <= min < max <= 250 bpm, "
                              f"got {self.min_bpm} / {self.max_bpm}")
        if not 0 < self.max_change < 1:
            raise ConfigError(f"HeartRateConfig.max_change must be in (0, 1), got {self.max_change}")
        if not 0 <= self.min_beat_quality < 1:
            raise ConfigError(f"HeartRateConfig.min_beat_quality must be in [0, 1), got {self.min_beat_quality}")
        if self.min_clean_beats < 2:
            raise ConfigError(f"HeartRateConfig.min_clean_beats must be >= 2, got {self.min_clean_beats}")
        if not 0 <= self.min_quality <= 1:
            raise ConfigError(f"HeartRateConfig.min_quality must be in [0, 1], got {self.min_quality}")


@dataclass(frozen=True)
class HeartRate:
    """A window's heart rate and how far to trust it.

    bpm: 60 / mean clean interval, NaN when flagged. quality: window quality 0..1.
    flagged: True when the rate is missing. reason: why (None when not flagged).
    beats: beat sample indices ``[n_beats]``. beat_quality: ``[n_beats]`` 0..1.
    ibi_s: every interval between consecutive beats ``[n_beats - 1]``, seconds.
    ibi_clean: ``[n_beats - 1]`` bool, the intervals the rate uses.
    """

    bpm: float
    quality: float
    flagged: bool
    reason: str | None
    beats: np.ndarray = field(repr=False)
    beat_quality: np.ndarray = field(repr=False)
    ibi_s: np.ndarray = field(repr=False)
    ibi_clean: np.ndarray = field(repr=False)

    @property
    def n_beats(self) -> int:
        return int(self.beats.size)

    @property
    def n_clean(self) -> int:
        return int(self.ibi_clean.sum())


@lru_cache(maxsize=16)
def _band_pass(low_hz: float, high_hz: float, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Second-order Butterworth band-pass sections and their unit-step initial states."""
    from scipy import signal  # imported where used: see the module docstring

    if not 0 < low_hz < high_hz < rate_hz / 2:
        raise ConfigError(f"band-pass {low_hz}-{high_hz} Hz needs a sample rate above {2 * high_hz:g} Hz, "
                          f"got {rate_hz:g} Hz")
    sos = signal.butter(2, [low_hz, high_hz], btype="bandpass", fs=rate_hz, output="sos")
    return sos, signal.sosfilt_zi(sos)


def _filtered(x: np.ndarray, low_hz: float, high_hz: float, rate_hz: float) -> np.ndarray:
    """Causal band-pass started in steady state on the first sample (delays every beat alike)."""
    from scipy import signal

    x = np.asarray(x, np.float64).reshape(-1)
    if x.size == 0 or not np.isfinite(x).all():
        raise InputError(f"heart rate: the signal must be non-empty and finite (got {x.size} samples, "
                         f"{int((~np.isfinite(x)).sum())} not finite); fill gaps first")
    sos, zi = _band_pass(float(low_hz), float(high_hz), float(rate_hz))
    return signal.sosfilt(sos, x, zi=zi * x[0])[0]


def ppg_peaks(ppg: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Systolic peaks of a PPG/BVP segment: ``(peak indices [n_beats], band-passed signal [n])``."""
    from scipy import signal

    filtered = _filtered(ppg, 0.7, 3.0, rate_hz)
    spread = float(np.std(filtered))
    if spread == 0.0:
        return np.zeros(0, np.intp), filtered
    peaks, _ = signal.find_peaks(filtered, distance=max(1, int(0.3 * rate_hz)), prominence=spread)
    return peaks, filtered


def ecg_peaks(ecg: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """R-peaks of an ECG segment: ``(peak indices [n_beats], band-passed signal [n])``.

    QRS energy = squared slope of the 5-20 Hz band-passed ECG, integrated over 0.15 s;
    beats are its maxima at least 0.3 s apart and above a third of its 99th percentile,
    each placed on the largest absolute filtered sample within 0.1 s before it (the
    integration lags the R wave). Needs ``rate_hz`` >= 50.
    """
    from scipy import signal

    filtered = _filtered(ecg, 5.0, 20.0, rate_hz)
    energy = np.convolve(np.gradient(filtered) ** 2, np.ones(max(1, int(0.15 * rate_hz))), mode="same")
    level = float(np.percentile(energy, 99))
    if level <= 0:
        return np.zeros(0, np.intp), filtered
    candidates, _ = signal.find_peaks(energy, distance=max(1, int(0.3 * rate_hz)), height=level / 3)
    reach = max(1, int(0.1 * rate_hz))
    polarity = 1.0 if np.abs(filtered.max()) >= np.abs(filtered.min()) else -1.0
    peaks = np.array([max(0, c - reach) + int(np.argmax(polarity * filtered[max(0, c - reach):c + reach + 1]))
                      for c in candidates.tolist()], np.intp)
    return np.unique(peaks), filtered


def beat_quality(filtered: np.ndarray, peaks: np.ndarray, rate_hz: float) -> np.ndarray:
    """Per beat, the correlation of its waveform with the window's median beat, clipped to 0..1.

    Each beat is the segment from 0.3 to 0.5 of the median interval around its peak
    (before and after); beats too close to the window's edges get the median of the others'
    quality. Fewer than three beats: all 0.
    """
    peaks = np.asarray(peaks, np.intp)
    n = peaks.size
    if n < 3:
        return np.zeros(n)
    med = float(np.median(np.diff(peaks)))
    before, after = int(round(0.3 * med)), int(round(0.5 * med))
    inside = (peaks - before >= 0) & (peaks + after < filtered.size)
    if inside.sum() < 3:
        return np.zeros(n)
    idx = peaks[inside][:, None] + np.arange(-before, after + 1)[None, :]
    beats = filtered[idx]
    beats = beats - beats.mean(axis=1, keepdims=True)
    template = np.median(beats, axis=0)
    template = template - template.mean()
    norm = np.linalg.norm(beats, axis=1) * np.linalg.norm(template)
    corr = np.where(norm > 0, beats @ template / np.where(norm > 0, norm, 1.0), 0.0)
    out = np.full(n, float(np.median(corr)))
    out[inside] = corr
    return np.clip(out, 0.0, 1.0)


def ibi_clean(beat_t: np.ndarray, good_beat: np.ndarray, config: HeartRateConfig = HeartRateConfig()
              ) -> tuple[np.ndarray, np.ndarray]:
    """Inter-beat intervals and which of them are clean: ``(ibi_s [n - 1], clean [n - 1] bool)``.

    An interval is clean when both its beats are good, it lies within the physiological
    limits, and it differs by at most ``max_change`` from the median of its neighbours:
    the three intervals before and the three after it that pass the first two tests (so
    two wrong intervals in a row, as an extra beat makes, do not outvote the right ones).
    """
    beat_t = np.asarray(beat_t, np.float64)
    good_beat = np.asarray(good_beat, bool)
    ibi = np.diff(beat_t)
    ok = good_beat[1:] & good_beat[:-1] & (ibi >= 60.0 / config.max_bpm) & (ibi <= 60.0 / config.min_bpm)
    clean = ok.copy()
    cand = ibi[ok]
    if cand.size >= 2:
        side = 3
        padded = np.concatenate([np.full(side, np.nan), cand, np.full(side, np.nan)])
        k = cand.size
        neighbours = np.stack([padded[j:j + k] for j in range(2 * side + 1) if j != side])
        ref = np.nanmedian(neighbours, axis=0)
        clean[np.flatnonzero(ok)] = np.abs(cand - ref) <= config.max_change * ref
    return ibi, clean


def heart_rate(beats: np.ndarray, qualities: np.ndarray, rate_hz: float, duration_s: float,
               config: HeartRateConfig = HeartRateConfig()) -> HeartRate:
    """A window's :class:`HeartRate` from its beats (sample indices) and their quality (0..1)."""
    beats = np.asarray(beats, np.intp)
    qualities = np.asarray(qualities, np.float64)
    good = qualities >= config.min_beat_quality
    ibi, clean = ibi_clean(beats / float(rate_hz), good, config)
    covered = float(ibi[clean].sum()) / duration_s if duration_s > 0 else 0.0
    quality = float(np.clip(covered, 0.0, 1.0) * (qualities.mean() if qualities.size else 0.0))
    reason = None
    if beats.size < 2:
        reason = f"{beats.size} beat(s) found"
    elif clean.sum() < config.min_clean_beats:
        reason = f"{int(clean.sum())} clean beat-to-beat intervals of {ibi.size} (need {config.min_clean_beats})"
    elif quality < config.min_quality:
        reason = f"signal quality {quality:.2f} < {config.min_quality:g} (artifacts or a weak pulse)"
    bpm = float("nan") if reason else float(60.0 / ibi[clean].mean())
    return HeartRate(bpm=bpm, quality=round(quality, 4), flagged=reason is not None, reason=reason, beats=beats,
                     beat_quality=qualities, ibi_s=ibi, ibi_clean=clean)


def ppg_heart_rate(ppg: np.ndarray, rate_hz: float, config: HeartRateConfig = HeartRateConfig()) -> HeartRate:
    """:class:`HeartRate` of one PPG/BVP window (``[n]`` finite samples at ``rate_hz``)."""
    peaks, filtered = ppg_peaks(ppg, rate_hz)
    return heart_rate(peaks, beat_quality(filtered, peaks, rate_hz), rate_hz, filtered.size / rate_hz, config)


def ecg_heart_rate(ecg: np.ndarray, rate_hz: float, config: HeartRateConfig = HeartRateConfig()) -> HeartRate:
    """:class:`HeartRate` of one ECG window (``[n]`` finite samples at ``rate_hz`` >= 50 Hz)."""
    peaks, filtered = ecg_peaks(ecg, rate_hz)
    return heart_rate(peaks, beat_quality(filtered, peaks, rate_hz), rate_hz, filtered.size / rate_hz, config)
