"""Audio signal processing with numpy (and scipy.fft): log-mel spectrograms and resampling.

Log-mel (:func:`log_mel`, :class:`LogMelExtractor`) reproduces librosa's
``power_to_db(melspectrogram(...))`` for the same parameters (Slaney mel scale and
area normalisation, periodic Hann window zero-padded to ``n_fft``, centred frames
with zero padding, power spectrum, ``10 * log10(max(amin, S) / ref)`` then clipped to
``top_db`` below the peak); the test suite checks it against librosa to 1e-3 dB.
:class:`OverlapLogMel` gives the same values for one stream's successive overlapping
windows, copying the frames a window shares bit for bit with the previous one.

Resampling is polyphase: :func:`resample` is :func:`scipy.signal.resample_poly` for a
whole signal, and :class:`StreamingResampler` gives the same samples block by block
for a live stream (the same Kaiser-windowed FIR low-pass, its state kept between blocks).

:func:`resample` and :class:`StreamingResampler` import :mod:`scipy.signal` when they are
called or created (only pipelines that resample audio pay its memory).
:class:`LogMelExtractor` imports :mod:`scipy.fft` when it is created (about 27 MiB, only
in pipelines with a log-mel audio bundle): its batched real FFT is 4-8x faster than
numpy's on a window's frames (about 0.15 against 1 ms per 3 s window on this project's
x86 VM), which matters more than the memory on the hot path.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from edgemer.errors import ConfigError, ManifestError


@dataclass(frozen=True)
class MelConfig:
    """Log-mel spectrogram parameters (librosa's names where they exist).

    sample_rate_hz: input sample rate, Hz. n_fft: FFT length, samples. win_length:
    Hann window length, samples (<= n_fft; zero-padded to n_fft). hop_length: samples
    between frames. n_mels: mel bands. fmin_hz / fmax_hz: band edges, Hz (fmax <=
    sample_rate_hz / 2). center: pad ``n_fft // 2`` zeros each side so frame ``t`` is
    centred on sample ``t * hop_length``. ref_power: 0 dB reference (1.0 = digital
    full-scale power). amin: floor of the power before the log. top_db: dynamic range
    kept below the window's peak, dB (None: no clipping).
    """

    sample_rate_hz: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    fmin_hz: float = 50.0
    fmax_hz: float = 8000.0
    center: bool = True
    ref_power: float = 1.0
    amin: float = 1e-10
    top_db: float | None = 80.0

    def __post_init__(self) -> None:
        if not 1000 <= self.sample_rate_hz <= 384000:
            raise ConfigError(f"MelConfig.sample_rate_hz must be 1000..384000 Hz, got {self.sample_rate_hz}")
        if self.n_fft < 16:
            raise ConfigError(f"MelConfig.n_fft must be >= 16 samples, got {self.n_fft}")
        if not 1 <= self.win_length <= self.n_fft:
            raise ConfigError(f"MelConfig.win_length must be 1..n_fft ({self.n_fft}) samples, got {self.win_length}")
        if self.hop_length < 1:
            raise ConfigError(f"MelConfig.hop_length must be >= 1 sample, got {self.hop_length}")
        if not 1 <= self.n_mels <= 512:
            raise ConfigError(f"MelConfig.n_mels must be 1..512, got {self.n_mels}")
        if not 0 <= self.fmin_hz < self.fmax_hz <= self.sample_rate_hz / 2:
            raise ConfigError(f"MelConfig.fmin_hz/fmax_hz must satisfy 0 <= fmin < fmax <= sample_rate_hz / 2 "
                              f"({self.sample_rate_hz / 2:g} Hz), got {self.fmin_hz} / {self.fmax_hz}")
        if not (self.ref_power > 0 and self.amin > 0):
            raise ConfigError(f"MelConfig.ref_power and amin must be > 0, got {self.ref_power} / {self.amin}")
        if self.top_db is not None and not self.top_db > 0:
            raise ConfigError(f"MelConfig.top_db must be > 0 dB or None, got {self.top_db}")

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for ``n_samples`` input samples."""
        padded = n_samples + (2 * (self.n_fft // 2) if self.center else 0)
        return 1 + (padded - self.n_fft) // self.hop_length if padded >= self.n_fft else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MelConfig":
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except TypeError as exc:
            raise ManifestError(f"front_end.mel is malformed ({exc}); re-export the bundle") from exc


# -- mel filterbank (Slaney) -----------------------------------------------------------------------

_F_SP = 200.0 / 3  # Hz per mel below 1 kHz (Slaney)
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    mel = hz / _F_SP
    high = hz >= _MIN_LOG_HZ
    return np.where(high, _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-12) / _MIN_LOG_HZ) / _LOGSTEP, mel)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, np.float64)
    hz = mel * _F_SP
    return np.where(mel >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)), hz)


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """Triangular Slaney-normalised mel filters ``[n_mels, n_fft // 2 + 1]`` float32 (read-only)."""
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate_hz)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(fmin_hz), hz_to_mel(fmax_hz), n_mels + 2))
    fdiff = np.diff(mel_hz)
    ramps = np.subtract.outer(mel_hz, fft_hz)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    out = weights.astype(np.float32)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=16)
def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``win_length`` samples, centred in ``n_fft`` zeros, float32 (read-only)."""
    w = np.zeros(n_fft, np.float64)
    start = (n_fft - win_length) // 2
    w[start:start + win_length] = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    out = w.astype(np.float32)
    out.flags.writeable = False
    return out


class LogMelExtractor:
    """Log-mel spectrogram of mono audio with a fixed :class:`MelConfig` (window and filters precomputed).

    ``extractor(x)`` with ``x`` float ``[n_samples]`` at ``config.sample_rate_hz`` returns
    ``[n_mels, n_frames]`` float32 in dB re ``ref_power``. Frames are transformed in
    blocks of :attr:`block_frames` so that the working set stays in the CPU cache.
    """

    block_frames = 128

    def __init__(self, config: MelConfig = MelConfig()) -> None:
        import scipy.fft  # here, not at module level: see the module docstring

        self._rfft = scipy.fft.rfft
        self.config = config
        self.window = hann_window(config.win_length, config.n_fft)
        self._offset = (config.n_fft - config.win_length) // 2
        self._short_window = np.ascontiguousarray(self.window[self._offset:self._offset + config.win_length])
        self.filters = mel_filterbank(config.sample_rate_hz, config.n_fft, config.n_mels, float(config.fmin_hz),
                                      float(config.fmax_hz))
        self._bins, self._weights, self._starts, self._empty = sparse_filterbank(self.filters)

    def frames(self, x: np.ndarray) -> np.ndarray:
        """The frames of ``x`` (float ``[n_samples]``): a read-only view ``[n_frames, win_length]`` float32.

        Frame ``t`` holds the samples under the window's non-zero span, ``x[t * hop_length
        + first_sample_offset : ... + win_length]`` with zeros outside ``x`` (``center``'s padding).
        """
        c = self.config
        x = np.asarray(x, np.float32).reshape(-1)
        n = c.n_frames(x.size)
        if n < 1:
            raise ConfigError(f"log-mel: {x.size} samples give no frame of {c.n_fft} samples; give at least "
                              f"{c.n_fft - (2 * (c.n_fft // 2) if c.center else 0)} samples")
        pad = c.n_fft // 2 if c.center else 0
        padded = np.zeros(x.size + 2 * pad, np.float32)
        padded[pad:pad + x.size] = x
        # Only the window's non-zero span is framed; rfft zero-pads each frame back to n_fft.
        return np.lib.stride_tricks.sliding_window_view(padded, c.win_length)[self._offset::c.hop_length][:n]

    @property
    def first_sample_offset(self) -> int:
        """Where frame 0's ``win_length`` samples start in the input, samples (negative: in the zero padding)."""
        return self._offset - (self.config.n_fft // 2 if self.config.center else 0)

    def frames_mel_power(self, frames: np.ndarray, out: np.ndarray) -> None:
        """Mel power of ``frames`` (``[m, win_length]`` float32) into ``out`` (``[m, n_mels]`` float32).

        Each frame's value depends on its own samples only, not on the other frames in the
        call (:class:`OverlapLogMel` relies on this and checks it once per extractor).
        """
        c = self.config
        m_all = frames.shape[0]
        # windowed frames go into the first win_length columns of a zeroed n_fft-wide block (what
        # rfft(..., n=n_fft) would pad to, without numpy's padding copy per call)
        block = np.zeros((min(m_all, self.block_frames), c.n_fft), np.float32)
        for i in range(0, m_all, self.block_frames):
            m = min(self.block_frames, m_all - i)
            np.multiply(frames[i:i + m], self._short_window, out=block[:m, :c.win_length])
            spec = self._rfft(block[:m], axis=-1)
            power = spec.real * spec.real
            power += spec.imag * spec.imag
            # the filterbank product over each band's non-zero bins only (no BLAS call: OpenBLAS would
            # wake its thread pool, which then spin-waits, for a product this small)
            weighted = power[:, self._bins]
            weighted *= self._weights
            np.add.reduceat(weighted, self._starts, axis=1, out=out[i:i + m])
        if self._empty.any():
            out[:, self._empty] = 0.0

    def mel_power(self, x: np.ndarray) -> np.ndarray:
        """Mel power spectrogram ``[n_mels, n_frames]`` float32 (librosa ``melspectrogram`` with power 2)."""
        frames = self.frames(x)
        mel = np.empty((frames.shape[0], self.config.n_mels), np.float32)
        self.frames_mel_power(frames, mel)
        return mel.T

    def __call__(self, x: np.ndarray) -> np.ndarray:
        c = self.config
        return power_to_db(self.mel_power(x), c.ref_power, c.amin, c.top_db)


class OverlapLogMel:
    """Log-mel of the successive, overlapping windows of one stream, reusing the frames they share.

    A front-end cuts a window of ``N`` samples every hop, so most of a window's STFT frames
    were already transformed for the previous window. ``overlap(x)``, with ``x`` float
    ``[N]``, returns exactly ``extractor(x)`` (``[n_mels, n_frames]`` float32 dB re
    ``ref_power``) and transforms only the frames it has to.

    Reuse rule (exact by construction): let ``p`` be the previous window's samples and ``s``
    a shift that is a whole number of STFT hops (``s = k * hop_length``, ``0 <= s < N``).
    When ``x[:N - s]`` is bit for bit ``p[s:]`` (float32 samples compared as bits, so any
    changed sample, such as one that arrived late, breaks it), new frame ``t`` has the same
    samples as old frame ``t + k`` for every frame whose ``win_length`` samples lie inside
    ``x[:N - s]``; those frames' mel power is copied from the previous window. Frames that
    reach into ``center``'s zero padding at either edge or into the ``s`` new samples are
    computed, and :func:`power_to_db` runs over the whole assembled power matrix as in
    :class:`LogMelExtractor` (its ``top_db`` clamp is relative to the window's peak). Same
    bits in, same arithmetic: the result is identical to computing the window from
    scratch. Without such a shift (first window, other length, changed overlap, a shift of
    part of a hop, a gap longer than the window) every frame is computed.

    Shifts tried: among the whole-hop shifts whose first and last overlapping samples
    match, ``expected_shift`` first (the front-end's hop, samples), then the others from the
    smallest; at most ``max_checks`` are compared in full.

    Exactness also needs a frame's mel power not to depend on which frames it is
    transformed with (the rows of the batched FFT and of the filterbank sum);
    :func:`frames_independent` checks that once at construction, and reuse stays off
    (:attr:`enabled` False) on a machine whose libraries fail it.

    Attributes
    ----------
    computed_frames, reused_frames: frames transformed and frames copied by the last call.
    shift_samples: the shift reused by the last call, samples (None: nothing reused).
    """

    def __init__(self, extractor: LogMelExtractor, expected_shift: int | None = None, max_checks: int = 3) -> None:
        self.extractor = extractor
        self.expected_shift = expected_shift
        self.max_checks = max_checks
        self.enabled = frames_independent(extractor)
        self._samples: np.ndarray | None = None  # the previous window, float32 [N]
        self._mel: np.ndarray | None = None  # its mel power, float32 [n_frames, n_mels]
        self.computed_frames = 0
        self.reused_frames = 0
        self.shift_samples: int | None = None

    def reset(self) -> None:
        """Forget the previous window (the next call computes every frame)."""
        self._samples = self._mel = None

    def find_shift(self, x: np.ndarray) -> int | None:
        """A whole-hop shift ``s`` with ``x[:N - s]`` bit-identical to the previous window's ``[s:]``, or None."""
        x = np.ascontiguousarray(x, np.float32).reshape(-1)
        p = self._samples
        n = x.size
        if not self.enabled or p is None or p.size != n:
            return None
        pb, xb = p.view(np.uint32), x.view(np.uint32)
        shifts = np.arange(0, n, self.extractor.config.hop_length)
        plausible = shifts[(pb[shifts] == xb[0]) & (xb[n - 1 - shifts] == pb[n - 1])].tolist()
        if self.expected_shift in plausible:
            plausible.remove(self.expected_shift)
            plausible.insert(0, self.expected_shift)
        for s in plausible[:self.max_checks]:
            if np.array_equal(xb[:n - s], pb[s:]):
                return int(s)
        return None

    def reusable_frames(self, n_samples: int, shift: int) -> tuple[int, int]:
        """``(a, b)``: new frames ``a <= t < b`` lie inside the first ``n_samples - shift`` samples,
        so each equals the previous window's frame ``t + shift // hop_length``."""
        ex = self.extractor
        hop, win, first = ex.config.hop_length, ex.config.win_length, ex.first_sample_offset
        n_frames, k = ex.config.n_frames(n_samples), shift // hop
        a = max(0, -(first // hop))  # ceil(-first / hop): the first frame starting at sample >= 0
        b = min(n_frames - k, (n_samples - shift - win - first) // hop + 1)
        return a, max(a, b)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        c = self.extractor.config
        x = np.ascontiguousarray(x, np.float32).reshape(-1)
        frames = self.extractor.frames(x)
        shift = self.find_shift(x)
        n = frames.shape[0]
        mel = np.empty((n, c.n_mels), np.float32)
        a, b = self.reusable_frames(x.size, shift) if shift is not None else (0, 0)
        if b > a:
            k = shift // c.hop_length
            mel[a:b] = self._mel[a + k:b + k]
            # the head's and the tail's frames in one call (one FFT call fewer); a frame's value
            # does not depend on the frames transformed with it (see frames_independent)
            fresh = np.empty((n - (b - a), c.n_mels), np.float32)
            self.extractor.frames_mel_power(np.concatenate([frames[:a], frames[b:]]), fresh)
            mel[:a], mel[b:] = fresh[:a], fresh[a:]
        else:
            self.extractor.frames_mel_power(frames, mel)
        self.computed_frames, self.reused_frames = n - (b - a), b - a
        self.shift_samples = shift if b > a else None
        if self._samples is None or self._samples.size != x.size:
            self._samples = np.empty_like(x)
        np.copyto(self._samples, x)
        self._mel = mel
        return power_to_db(mel.T, c.ref_power, c.amin, c.top_db)


def frames_independent(extractor: LogMelExtractor) -> bool:
    """Whether each frame's mel power is the same whichever frames it is transformed with.

    Computes about 46 frames of seeded noise at once and again in calls of 1, 2, 3, 5, 7,
    11 and the rest (covering the SIMD widths a batched FFT may use), compared bit for bit.
    """
    c = extractor.config
    x = np.random.default_rng(0).standard_normal(c.n_fft + 45 * c.hop_length).astype(np.float32)
    frames = extractor.frames(x)
    whole = np.empty((frames.shape[0], c.n_mels), np.float32)
    extractor.frames_mel_power(frames, whole)
    parts = np.empty_like(whole)
    bounds = np.minimum(np.cumsum([0, 1, 2, 3, 5, 7, 11]), frames.shape[0]).tolist() + [frames.shape[0]]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi > lo:
            extractor.frames_mel_power(frames[lo:hi], parts[lo:hi])
    return bool(np.array_equal(whole.view(np.uint32), parts.view(np.uint32)))


def sparse_filterbank(filters: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A filterbank ``[n_bands, n_bins]`` as its non-zero weights, band after band: ``bins`` (int
    ``[nnz]``, the FFT bin of each weight), ``weights`` (float32 ``[nnz]``), ``starts`` (int
    ``[n_bands]``, where each band's weights begin, for ``np.add.reduceat``) and ``empty`` (bool
    ``[n_bands]``, bands without a non-zero weight, whose reduceat value must be replaced by 0)."""
    bins, weights, starts = [], [], []
    empty = np.zeros(filters.shape[0], bool)
    for b, row in enumerate(filters):
        nz = np.flatnonzero(row)
        if nz.size == 0:  # reduceat needs one element per band: a zero weight, zeroed again after
            nz = np.array([0])
            empty[b] = True
        starts.append(len(bins))
        bins.extend(nz.tolist())
        weights.extend(row[nz].tolist())
    return (np.asarray(bins, np.intp), np.asarray(weights, np.float32), np.asarray(starts, np.intp), empty)


def power_to_db(power: np.ndarray, ref_power: float = 1.0, amin: float = 1e-10, top_db: float | None = 80.0
                ) -> np.ndarray:
    """``10 * log10(max(amin, power) / ref_power)`` in dB, clipped to ``top_db`` below its maximum (librosa's rule)."""
    db = 10.0 * np.log10(np.maximum(power, amin))
    db -= 10.0 * math.log10(max(amin, ref_power))
    if top_db is not None:
        db = np.maximum(db, db.max() - top_db)
    return db.astype(np.float32, copy=False)


def log_mel(x: np.ndarray, config: MelConfig = MelConfig()) -> np.ndarray:
    """Log-mel spectrogram ``[n_mels, n_frames]`` float32 dB of mono ``x`` (see :class:`LogMelExtractor`)."""
    return LogMelExtractor(config)(x)


# -- resampling ------------------------------------------------------------------------------------

def rate_ratio(from_hz: float, to_hz: float) -> tuple[int, int]:
    """``(up, down)``, the smallest integers with ``to_hz / from_hz == up / down``.

    Raises ConfigError for rates that are not positive whole numbers of Hz.
    """
    for name, v in (("from_hz", from_hz), ("to_hz", to_hz)):
        if not (v > 0 and float(v).is_integer()):
            raise ConfigError(f"resampling: {name} must be a positive whole number of Hz, got {v}")
    r = Fraction(int(to_hz), int(from_hz))
    return r.numerator, r.denominator


def resample(x: np.ndarray, from_hz: float, to_hz: float) -> np.ndarray:
    """Polyphase resampling of ``x`` (``[n]`` or ``[n, channels]``, along axis 0) to ``to_hz``; float32.

    Exactly :func:`scipy.signal.resample_poly` (Kaiser-windowed FIR, beta 5) with the
    reduced ratio; the output has ``ceil(n * to_hz / from_hz)`` samples.
    """
    up, down = rate_ratio(from_hz, to_hz)
    x = np.asarray(x, np.float64)
    if up == down:
        return x.astype(np.float32)
    from scipy import signal  # here, not at module level: see the module docstring

    return signal.resample_poly(x, up, down, axis=0).astype(np.float32)


class StreamingResampler:
    """Block-by-block polyphase resampling of one mono stream, equal to :func:`resample` of the whole.

    Each output sample is produced as soon as every input sample its filter needs has
    arrived, so the output lags the input by the filter's half length (``10 *
    max(up, down)`` samples of the upsampled signal, about 0.6 ms for 48 -> 16 kHz,
    10 ms for 44.1 -> 16 kHz). Concatenating the outputs of :meth:`process` gives the
    first samples of ``resample(all input)``.

    Parameters
    ----------
    from_hz, to_hz: input and output rates, Hz (whole numbers).
    """

    def __init__(self, from_hz: float, to_hz: float) -> None:
        self.from_hz, self.to_hz = float(from_hz), float(to_hz)
        self.up, self.down = rate_ratio(from_hz, to_hz)
        self.passthrough = self.up == self.down
        max_rate = max(self.up, self.down)
        self.half_len = 0 if self.passthrough else 10 * max_rate
        if self.passthrough:
            h = np.ones(1)
        else:
            from scipy import signal  # here, not at module level: see the module docstring

            h = signal.firwin(2 * self.half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        self.taps = -(-h.size // self.up)
        padded = np.zeros(self.taps * self.up)
        padded[:h.size] = h
        self._poly = padded.reshape(self.taps, self.up).T.copy()  # [phase, tap]: h[phase + tap * up]
        self._buf = np.zeros(self.taps, np.float64)  # input history; _buf[0] is input index _start
        self._start = -self.taps
        self._n_in = 0
        self._k = 0  # next output index

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed ``[n]`` input samples; return the output samples now complete, float32."""
        x = np.asarray(x, np.float64).reshape(-1)
        if self.passthrough:
            return x.astype(np.float32)
        self._buf = np.concatenate([self._buf, x])
        self._n_in += x.size
        k_end = (self._n_in * self.up - 1 - self.half_len) // self.down + 1
        if k_end <= self._k:
            return np.zeros(0, np.float32)
        ks = np.arange(self._k, k_end)
        pos = ks * self.down + self.half_len
        newest, phase = pos // self.up, pos % self.up
        idx = newest[:, None] - np.arange(self.taps)[None, :] - self._start
        y = np.einsum("kt,kt->k", self._buf[idx], self._poly[phase])
        self._k = int(k_end)
        next_newest = (self._k * self.down + self.half_len) // self.up
        keep_from = next_newest - self.taps + 1 - self._start
        if keep_from > 0:
            self._buf = self._buf[keep_from:]
            self._start += keep_from
        return y.astype(np.float32)
