"""Electrodermal activity on the device: tonic/phasic decomposition and skin-conductance
responses (SCRs) at 4 Hz.

- :func:`eda_phasic`: tonic level = the EDA low-passed at 0.05 Hz (zero-phase second-order
  Butterworth, so a 20 s and slower drift), phasic = EDA - tonic (the high-pass method of
  Biopac's AcqKnowledge, also neurokit2's default). Units: µS in, µS out.
- :func:`eda_peaks`: SCRs in the phasic component: each peak is a local maximum of the
  phasic signal that rises at least ``min_amplitude_uS`` above the trough between it and
  the local maximum before it (its onset); for each: onset and peak time (s), amplitude (µS), rise time
  (onset to peak, s) and recovery time (peak to the first return below half the amplitude,
  s; NaN when the window ends first).
- :func:`eda_features`: a window's summary: tonic level (median, µS), SCRs per minute and
  their mean amplitude (µS).

Published ranges to read the numbers against (Boucsein et al. 2012): an SCR starts 1-3 s
after its stimulus, rises over 0.5-5 s and recovers over roughly 4-10 s. Signals are 1-D
float64 ``[n_samples]`` of finite µS values; :mod:`scipy.signal` is imported where used.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edgemer.errors import ConfigError, InputError

__all__ = ["SCR", "eda_phasic", "eda_peaks", "eda_features"]

TONIC_CUTOFF_HZ = 0.05
"""Low-pass corner that separates the tonic level from the phasic responses, Hz."""


@dataclass(frozen=True)
class SCR:
    """Skin-conductance responses of a signal; arrays ``[n_scr]``.

    onset_s, peak_s: times from the signal's first sample, s. amplitude_uS: peak minus
    onset, µS. rise_s: peak - onset, s. recovery_s: peak to half recovery, s (NaN when the
    signal ends first).
    """

    onset_s: np.ndarray
    peak_s: np.ndarray
    amplitude_uS: np.ndarray
    rise_s: np.ndarray
    recovery_s: np.ndarray

    def __len__(self) -> int:
        return int(self.peak_s.size)


@lru_cache(maxsize=8)
def _tonic_filter(rate_hz: float) -> np.ndarray:
    from scipy import signal  # imported where used, so `import edgemer` stays light

    return signal.butter(2, TONIC_CUTOFF_HZ, btype="lowpass", fs=rate_hz, output="sos")


def _check(eda: np.ndarray, rate_hz: float) -> np.ndarray:
    x = np.asarray(eda, np.float64).reshape(-1)
    if not rate_hz > 2 * TONIC_CUTOFF_HZ:
        raise ConfigError(f"EDA: sample rate must be > {2 * TONIC_CUTOFF_HZ} Hz, got {rate_hz}")
    if x.size < 2 or not np.isfinite(x).all():
        raise InputError(f"EDA: need at least 2 finite samples (got {x.size}, "
                         f"{int((~np.isfinite(x)).sum())} not finite); fill gaps first")
    return x


def eda_phasic(eda: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """``(tonic [n], phasic [n])`` in µS from EDA ``[n]`` µS at ``rate_hz`` (see the module docstring).

    The zero-phase filter pads the ends with their mirror image (``padtype="even"``), so a
    60 s window's tonic level does not dip at its edges.
    """
    from scipy import signal

    x = _check(eda, rate_hz)
    sos = _tonic_filter(float(rate_hz))
    pad = min(x.size - 1, int(round(3 * rate_hz / TONIC_CUTOFF_HZ)))
    tonic = signal.sosfiltfilt(sos, x, padtype="even", padlen=pad)
    return tonic, x - tonic


def eda_peaks(phasic: np.ndarray, rate_hz: float, min_amplitude_uS: float = 0.05) -> SCR:
    """Skin-conductance responses in a phasic component ``[n]`` µS (see the module docstring)."""
    from scipy import signal

    if min_amplitude_uS < 0:
        raise ConfigError(f"eda_peaks: min_amplitude_uS must be >= 0, got {min_amplitude_uS}")
    x = _check(phasic, rate_hz)
    peaks, _ = signal.find_peaks(x)
    previous = np.concatenate([[0], peaks[:-1]])  # the local maximum before each one (or the start)
    troughs = np.array([q + int(np.argmin(x[q:p + 1])) for q, p in zip(previous.tolist(), peaks.tolist())], np.intp)
    big = x[peaks] - x[troughs] >= min_amplitude_uS
    onsets, kept = troughs[big].tolist(), peaks[big].tolist()
    onset_i, peak_i = np.asarray(onsets, np.intp), np.asarray(kept, np.intp)
    amp = x[peak_i] - x[onset_i]
    recovery = np.full(peak_i.size, np.nan)
    for k, (p, a) in enumerate(zip(peak_i.tolist(), amp.tolist())):
        below = np.flatnonzero(x[p:] <= x[p] - a / 2)
        if below.size:
            recovery[k] = below[0] / rate_hz
    return SCR(onset_s=onset_i / rate_hz, peak_s=peak_i / rate_hz, amplitude_uS=amp,
               rise_s=(peak_i - onset_i) / rate_hz, recovery_s=recovery)


def eda_features(eda: np.ndarray, rate_hz: float, min_amplitude_uS: float = 0.05) -> dict[str, float]:
    """A window's ``eda_tonic_uS`` (median tonic), ``scr_per_min`` and ``scr_amplitude_uS``
    (mean SCR amplitude, 0 when there is none)."""
    tonic, phasic = eda_phasic(eda, rate_hz)
    scr = eda_peaks(phasic, rate_hz, min_amplitude_uS)
    minutes = tonic.size / rate_hz / 60.0
    return {"eda_tonic_uS": float(np.median(tonic)), "scr_per_min": len(scr) / minutes,
            "scr_amplitude_uS": float(scr.amplitude_uS.mean()) if len(scr) else 0.0}
