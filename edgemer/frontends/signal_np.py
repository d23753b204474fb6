"""The few :mod:`scipy.signal` routines the runtime front-ends need, in numpy.

Importing :mod:`scipy.signal` maps about 50 MiB of shared libraries into the process
(scipy.linalg's OpenBLAS, scipy.special, scipy.sparse, ...), a third of the three-modality
pipeline's resident memory, for four small routines. These give the same results
(compared against scipy in ``tests/test_signal_np.py``):

- :func:`butter_bandpass_sos`: Butterworth band-pass design as second-order sections
  (``scipy.signal.butter(order, band, btype="bandpass", fs=..., output="sos")``; the
  sections may be grouped differently, the filter is the same);
- :func:`sosfilt_zi` / :func:`sosfilt`: steady-state initial conditions and causal
  filtering through the sections (``scipy.signal.sosfilt_zi`` / ``sosfilt``), to float
  rounding; the recursion runs in blocks of samples as matrix products, so no Python
  loop runs per sample;
- :func:`find_peaks`: local maxima with a minimum distance and prominence
  (``scipy.signal.find_peaks(x, distance=..., prominence=...)``), the same indices;
- :func:`firwin_lowpass`: a Kaiser-windowed FIR low-pass
  (``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))``).

Everything else (and anything off the hot path) may import scipy lazily where it is used.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from edgemer.errors import ConfigError

__all__ = ["butter_bandpass_sos", "sosfilt_zi", "sosfilt", "find_peaks", "firwin_lowpass"]


# -- IIR design and filtering --------------------------------------------------------------------

def butter_bandpass_sos(order: int, low_hz: float, high_hz: float, rate_hz: float) -> np.ndarray:
    """Digital Butterworth band-pass of ``order`` (``2 * order`` poles) as sections ``[order, 6]``.

    Each row is ``[b0, b1, b2, 1, a1, a2]``; the overall gain sits in the first section
    (as in scipy). Design: analog prototype, band-pass transform, bilinear transform with
    pre-warped band edges (scipy's ``butter`` rule).

    Parameters
    ----------
    order: prototype order, >= 1. low_hz, high_hz: band edges, Hz, ``0 < low < high <
        rate_hz / 2``. rate_hz: sample rate, Hz.
    """
    if order < 1:
        raise ConfigError(f"band-pass order must be >= 1, got {order}")
    if not 0 < low_hz < high_hz < rate_hz / 2:
        raise ConfigError(f"band-pass edges must satisfy 0 < low < high < rate/2 ({rate_hz / 2:g} Hz), "
                          f"got {low_hz} / {high_hz} Hz")
    fs = 2.0  # scipy normalises the edges to Nyquist = 1 and designs at fs = 2
    warped = 2 * fs * np.tan(np.pi * (2.0 * np.array([low_hz, high_hz]) / rate_hz) / fs)
    bw, wo = warped[1] - warped[0], math.sqrt(warped[0] * warped[1])
    p = -np.exp(1j * np.pi * np.arange(-order + 1, order, 2) / (2 * order))  # analog prototype poles
    p_lp = p * bw / 2
    root = np.sqrt(p_lp ** 2 - wo ** 2)
    p_bp = np.concatenate([p_lp + root, p_lp - root])  # band-pass poles; zeros: `order` at s = 0
    fs2 = 2.0 * fs
    p_z = (fs2 + p_bp) / (fs2 - p_bp)
    k_z = bw ** order * np.real(fs2 ** order / np.prod(fs2 - p_bp))
    # zeros: s = 0 -> z = +1 (order of them), s = inf -> z = -1 (order of them): one of each per section
    upper = p_z[np.imag(p_z) > 0]
    if upper.size != order:  # a real pole pair (cannot happen for 0 < low < high < Nyquist)
        raise ConfigError(f"band-pass {low_hz}-{high_hz} Hz at {rate_hz} Hz gives real poles; "
                          f"choose edges further from 0 and Nyquist")
    upper = upper[np.argsort(np.abs(upper))]
    sos = np.zeros((order, 6))
    sos[:, 0], sos[:, 2], sos[:, 3] = 1.0, -1.0, 1.0
    sos[:, 4], sos[:, 5] = -2.0 * upper.real, np.abs(upper) ** 2
    sos[0, :3] *= k_z
    return sos


def _section_matrices(section: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """State matrix ``A [2, 2]`` and input vector ``B [2]`` of one section in transposed direct form II."""
    b0, b1, b2, a0, a1, a2 = (float(v) for v in section)
    if a0 != 1.0:
        b0, b1, b2, a1, a2 = b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0
    a = np.array([[-a1, 1.0], [-a2, 0.0]])
    b = np.array([b1 - a1 * b0, b2 - a2 * b0])
    return a, b


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """Initial states ``[n_sections, 2]`` for a unit step's steady state (``scipy.signal.sosfilt_zi``).

    Multiply by the first sample to start :func:`sosfilt` as if the signal had always
    been at that level.
    """
    sos = np.asarray(sos, np.float64)
    zi = np.empty((sos.shape[0], 2))
    scale = 1.0
    for i, section in enumerate(sos):
        a, b = _section_matrices(section)
        zi[i] = scale * np.linalg.solve(np.eye(2) - a, b)
        scale *= section[:3].sum() / section[3:].sum()
    return zi


@lru_cache(maxsize=16)
def _block_operators(section: tuple[float, ...], block: int) -> tuple[np.ndarray, ...]:
    """For one section and ``block`` samples: outputs from the state ``O [L, 2]``, from the input
    ``T [L, L]`` (lower triangular impulse response), the state after the block from the state
    ``F [2, 2]`` and from the input ``Q [2, L]`` (read-only arrays)."""
    a, b = _section_matrices(np.asarray(section))
    b0 = section[0] / section[3]
    powers = np.empty((block + 1, 2, 2))
    powers[0] = np.eye(2)
    for k in range(block):  # once per (section, block length), cached
        powers[k + 1] = a @ powers[k]
    o = powers[:block, 0, :]  # C A^k
    h = np.empty(block)
    h[0] = b0
    h[1:] = powers[:block - 1, 0, :] @ b  # C A^(k-1) B
    lag = np.arange(block)[:, None] - np.arange(block)[None, :]
    t = np.where(lag >= 0, h[np.clip(lag, 0, None)], 0.0)
    q = (powers[block - 1::-1] @ b).T  # column j: A^(L-1-j) B
    out = (o, t, powers[block], q)
    for m in out:
        m.flags.writeable = False
    return out


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray | None = None, block: int = 128
            ) -> tuple[np.ndarray, np.ndarray]:
    """Filter 1-D ``x`` through the sections; ``(y [n] float64, final states [n_sections, 2])``.

    Equal to ``scipy.signal.sosfilt(sos, x, zi=zi)`` to float rounding (relative 1e-12
    for stable filters). Each section runs ``block`` samples at a time as matrix products;
    only the two-number state is carried from block to block in Python.

    Parameters
    ----------
    sos: ``[n_sections, 6]`` as from :func:`butter_bandpass_sos`. x: samples ``[n]``.
    zi: initial states ``[n_sections, 2]`` (None: zeros). block: samples per block.
    """
    sos = np.asarray(sos, np.float64)
    y = np.asarray(x, np.float64).reshape(-1)
    n = y.size
    states = np.zeros((sos.shape[0], 2)) if zi is None else np.array(zi, np.float64).reshape(sos.shape[0], 2)
    if n == 0:
        return y.copy(), states
    n_blocks = -(-n // block)
    padded = np.zeros(n_blocks * block)
    for i, section in enumerate(sos):
        key = tuple(float(v) for v in section)
        o, t, f, q = _block_operators(key, block)
        padded[:n] = y
        xb = padded.reshape(n_blocks, block)
        zero_state = xb @ t.T  # [n_blocks, L]: response to each block's input alone
        driven = xb @ q.T  # [n_blocks, 2]: state each block's input leaves behind
        s0, s1 = float(states[i, 0]), float(states[i, 1])
        f00, f01, f10, f11 = float(f[0, 0]), float(f[0, 1]), float(f[1, 0]), float(f[1, 1])
        starts = np.empty((n_blocks, 2))
        for k in range(n_blocks):  # per block, not per sample
            starts[k, 0], starts[k, 1] = s0, s1
            s0, s1 = f00 * s0 + f01 * s1 + driven[k, 0], f10 * s0 + f11 * s1 + driven[k, 1]
        y = (zero_state + starts @ o.T).reshape(-1)[:n]
        last = n - (n_blocks - 1) * block  # real samples in the last block (1..block)
        if last == block:
            states[i] = (s0, s1)
        else:  # the zero padding would move the state on: stop it after the last real sample
            _, _, f_part, q_part = _block_operators(key, last)
            states[i] = f_part @ starts[-1] + q_part @ xb[-1, :last]
    return y, states


# -- peaks ---------------------------------------------------------------------------------------

def _local_maxima(x: np.ndarray) -> np.ndarray:
    """Indices of local maxima (a flat top counts once, at its middle, rounded down; not at the ends)."""
    n = x.size
    if n < 3:
        return np.zeros(0, np.intp)
    change = np.flatnonzero(x[1:] != x[:-1]) + 1  # first index of each run of equal values
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change - 1, [n - 1]))
    vals = x[starts]
    inner = np.arange(1, starts.size - 1)
    is_max = (vals[inner] > vals[inner - 1]) & (vals[inner] > vals[inner + 1])
    runs = inner[is_max]
    return (starts[runs] + ends[runs]) // 2


def _select_by_distance(peaks: np.ndarray, heights: np.ndarray, distance: float) -> np.ndarray:
    """scipy's rule: highest peaks first, each removes lower neighbours closer than ``distance``."""
    d = math.ceil(distance)
    keep = np.ones(peaks.size, bool)
    pos = peaks.tolist()
    for j in np.argsort(heights)[::-1].tolist():  # per peak, not per sample
        if not keep[j]:
            continue
        k = j - 1
        while k >= 0 and pos[j] - pos[k] < d:
            keep[k] = False
            k -= 1
        k = j + 1
        while k < len(pos) and pos[k] - pos[j] < d:
            keep[k] = False
            k += 1
    return keep


def _nearest_higher(heights: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """For each maximum, the index of the nearest strictly higher maximum on the left and on
    the right (-1 / len when there is none): one monotonic-stack pass each way."""
    m = len(heights)
    left, right = np.full(m, -1, np.intp), np.full(m, m, np.intp)
    stack: list[int] = []
    for i, h in enumerate(heights):
        while stack and heights[stack[-1]] <= h:
            stack.pop()
        if stack:
            left[i] = stack[-1]
        stack.append(i)
    stack = []
    for i in range(m - 1, -1, -1):
        h = heights[i]
        while stack and heights[stack[-1]] <= h:
            stack.pop()
        if stack:
            right[i] = stack[-1]
        stack.append(i)
    return left, right


def _range_min(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``min(values[lo[i]:hi[i] + 1])`` for each i (``lo <= hi``), with a sparse table."""
    table = [values]
    width = 1
    while 2 * width <= values.size:
        prev = table[-1]
        table.append(np.minimum(prev[:-width], prev[width:]))
        width *= 2
    length = hi - lo + 1
    level = np.floor(np.log2(length)).astype(np.intp)
    out = np.empty(lo.size)
    for k in np.unique(level).tolist():
        sel = level == k
        out[sel] = np.minimum(table[k][lo[sel]], table[k][hi[sel] - (1 << k) + 1])
    return out


def find_peaks(x: np.ndarray, distance: float | None = None, prominence: float | None = None) -> np.ndarray:
    """Indices of peaks in finite 1-D ``x``, as ``scipy.signal.find_peaks(x, distance=, prominence=)[0]``.

    A peak is a local maximum (a flat top counts once, at its middle). ``distance``
    (samples, >= 1): peaks closer than this are thinned, highest first. ``prominence``
    (units of ``x``): minimum height of a peak above the higher of the two lowest points
    between it and the nearest higher sample on each side (or the signal's end).
    """
    x = np.asarray(x, np.float64).reshape(-1)
    if distance is not None and distance < 1:
        raise ConfigError(f"find_peaks distance must be >= 1 sample, got {distance}")
    maxima = _local_maxima(x)
    peaks = maxima
    if distance is not None and peaks.size:
        peaks = peaks[_select_by_distance(peaks, x[peaks], distance)]
    if prominence is None or peaks.size == 0:
        return peaks
    # Between two neighbouring local maxima the signal only falls then rises, so the lowest
    # point between a peak and the nearest higher sample is the lowest valley between the
    # peak and the nearest higher local maximum (or the signal's end).
    heights = x[maxima]
    left, right = _nearest_higher(heights.tolist())
    valleys = np.minimum.reduceat(x, np.concatenate(([0], maxima)))  # [m + 1]: before M0, M0..M1, ..., after
    which = np.searchsorted(maxima, peaks)  # peaks are a subset of the maxima
    left_min = _range_min(valleys, left[which] + 1, which)
    right_min = _range_min(valleys, which + 1, right[which])
    prominences = x[peaks] - np.maximum(left_min, right_min)
    return peaks[prominences >= prominence]


# -- FIR design ----------------------------------------------------------------------------------

def firwin_lowpass(numtaps: int, cutoff: float, beta: float = 5.0) -> np.ndarray:
    """Linear-phase low-pass FIR taps ``[numtaps]``: windowed sinc, Kaiser window of ``beta``,
    unit gain at DC (``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))``).

    cutoff: relative to Nyquist, ``0 < cutoff < 1``.
    """
    if numtaps < 1 or not 0 < cutoff < 1:
        raise ConfigError(f"firwin_lowpass needs numtaps >= 1 and 0 < cutoff < 1 (x Nyquist), "
                          f"got {numtaps} / {cutoff}")
    m = np.arange(numtaps) - 0.5 * (numtaps - 1)
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    return h / h.sum()
