"""WESAD folder -> standardised training and held-out windows for the physiology model.

Each window is ``window_s`` seconds of the wrist streams, cut every ``train_hop_s``
seconds, turned into the ``[4, window_s * 4]`` feature matrix by
:func:`edgemer.frontends.physio.wrist_features` and standardised by
:meth:`edgemer.frontends.physio.WristFrontEnd.normalise` -- the exact runtime front-end,
so training and serving never differ. Mean and std come from the training subjects only.

Labels: the WESAD code covering at least ``min_label_fraction`` of the window's 700 Hz
labels; codes 1 (baseline), 2 (stress), 3 (amusement) become classes 0, 1, 2 and every
other window is dropped. The EDA target is the window's EDA followed by the next
``forecast_s`` seconds of 4 Hz EDA (windows without that much future are dropped).
For the PINN's physics term each window also carries the WESAD code of every 4 Hz sample
of window + forecast (the condition, which drives u(t)) and its subject's resting EDA
(:func:`resting_eda`, the tonic level of the ODE).
Subjects are split by subject: the last ``heldout_fraction`` of them (at least one) are
held out for verification.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgemer.errors import ConfigError, DatasetError
from edgemer.frontends.physio import (
    CHANNELS,
    FEATURE_RATE_HZ,
    feature_samples,
    STREAM_RATES_HZ,
    WristFrontEnd,
    WristFrontEndConfig,
    wrist_features,
)
from edgemer.wesad import LABEL_RATE_HZ, WesadSubject, find_subjects, load_subject
from edgemer.export.core.progress import progress_bar

LABELS = ("baseline", "stress", "amusement")
"""Class names, in class-index order."""
CLASS_OF_CODE = {1: 0, 2: 1, 3: 2}
"""WESAD label code -> class index."""


@dataclass(frozen=True)
class WindowOptions:
    """How recordings are cut into windows (seconds) and subjects split."""

    window_s: float = 60.0
    train_hop_s: float = 2.5
    forecast_s: float = 10.0
    min_label_fraction: float = 0.8
    heldout_fraction: float = 0.2

    def __post_init__(self) -> None:
        for name in ("window_s", "train_hop_s"):
            value = getattr(self, name)
            if not value > 0 or abs(value * FEATURE_RATE_HZ - round(value * FEATURE_RATE_HZ)) > 1e-9:
                raise ConfigError(f"WindowOptions.{name} must be a positive multiple of 0.25 s, got {value}")
        n_forecast = self.forecast_s * FEATURE_RATE_HZ
        if self.forecast_s < 0 or abs(n_forecast - round(n_forecast)) > 1e-9:
            raise ConfigError(f"WindowOptions.forecast_s must be a multiple of 0.25 s and >= 0, got {self.forecast_s}")
        if not 0.5 < self.min_label_fraction <= 1:
            raise ConfigError(f"WindowOptions.min_label_fraction must be in (0.5, 1], got {self.min_label_fraction}")
        if not 0 < self.heldout_fraction < 1:
            raise ConfigError(f"WindowOptions.heldout_fraction must be in (0, 1), got {self.heldout_fraction}")

    @property
    def n_samples(self) -> int:
        """Feature samples per window at 4 Hz."""
        return feature_samples(self.window_s)

    @property
    def n_forecast(self) -> int:
        """Forecast samples at 4 Hz."""
        return feature_samples(self.forecast_s)


@dataclass(frozen=True)
class SubjectWindows:
    """One subject's windows in physical units (before standardisation).

    features: [n, 4, n_samples] float32 (eda µS, hr bpm, temp °C, motion g; hr may be NaN).
    eda_future: [n, n_forecast] float32, µS. labels: [n] int64 class index.
    t_start_s: [n] float64, window start in the recording, seconds.
    codes: [n, n_samples + n_forecast] int8, WESAD code (0-4; 5-7 read as 0) of every 4 Hz
    sample of window + forecast. tonic_uS: [n] float32, the subject's resting EDA, µS.
    """

    subject: str
    features: np.ndarray
    eda_future: np.ndarray
    labels: np.ndarray
    t_start_s: np.ndarray
    codes: np.ndarray
    tonic_uS: np.ndarray


def resting_eda(eda_4hz: np.ndarray, codes_4hz: np.ndarray) -> float:
    """A subject's resting (tonic) EDA in µS: the median over its baseline samples (code 1), or,
    without a baseline, the 5th percentile of all its EDA. NaN samples are ignored."""
    eda = np.asarray(eda_4hz, np.float64).reshape(-1)
    base = eda[(codes_4hz[:eda.size] == 1) & np.isfinite(eda)]
    if base.size:
        return float(np.median(base))
    finite = eda[np.isfinite(eda)]
    return float(np.percentile(finite, 5)) if finite.size else 0.0


def codes_at_4hz(label_700: np.ndarray, n4: int) -> np.ndarray:
    """[n4] int8: the WESAD code at the start of every 4 Hz sample (codes 5-7, "ignore", read as 0)."""
    per_4hz = int(round(LABEL_RATE_HZ / FEATURE_RATE_HZ))
    c = np.asarray(label_700[:n4 * per_4hz:per_4hz], np.int64)
    return np.where((c >= 0) & (c <= 4), c, 0).astype(np.int8)


@dataclass(frozen=True)
class PhysioDataset:
    """Standardised windows split by subject.

    x_*: [n, 4, n_samples] float32 model inputs (standardised).
    eda_*: [n, n_samples + n_forecast] float32 standardised EDA target (window, then forecast).
    y_*: [n] int64 class index into :data:`LABELS`.
    codes_*: [n, n_samples + n_forecast] int8 WESAD code per 4 Hz sample (drives u(t) in training).
    tonic_*: [n] float32 the subject's resting EDA, standardised like ``eda_*``.
    phasic_train, drive_train: [n, n_samples + n_forecast] float32 or None: the SCR part of
    each training window's EDA (standardised units: µS / eda std) and its onset-smoothed
    condition drive (0..1) from a tonic/phasic fit (:mod:`edgemer.export.physio.tonic`); when
    set, the PINN's physics term acts on the tonic component (EDA minus the SCR part).
    mean/std: per feature channel (eda µS, hr bpm, temp °C, motion g), training subjects only.
    subject_index_train: [n] int64 or None, each training window's subject (index into
    ``subjects_train``); t_start_train: [n] float64 or None, its start in that subject's
    recording, s (set by :func:`load_wesad_windows`: where a tonic/phasic fit's components
    are cut out, :mod:`edgemer.export.physio.physics_data`).
    """

    x_train: np.ndarray
    eda_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    eda_heldout: np.ndarray
    y_heldout: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    subjects_train: tuple[str, ...]
    subjects_heldout: tuple[str, ...]
    options: WindowOptions
    codes_train: np.ndarray
    codes_heldout: np.ndarray
    tonic_train: np.ndarray
    tonic_heldout: np.ndarray
    phasic_train: np.ndarray | None = None
    drive_train: np.ndarray | None = None
    subject_index_train: np.ndarray | None = None
    t_start_train: np.ndarray | None = None

    @property
    def eda_mean_uS(self) -> float:
        return self.mean[0]

    @property
    def eda_std_uS(self) -> float:
        return self.std[0]

    def class_counts(self, split: str = "train") -> list[int]:
        """Windows per class in ``split`` (``train`` or ``heldout``)."""
        y = self.y_train if split == "train" else self.y_heldout
        return np.bincount(y, minlength=len(LABELS)).tolist()


def _label_fractions(label: np.ndarray, codes: list[int], starts_700: np.ndarray, n_700: int) -> np.ndarray:
    """Fraction of each window's 700 Hz labels equal to each code: [n_windows, len(codes)]."""
    out = np.empty((starts_700.size, len(codes)))
    for j, code in enumerate(codes):
        csum = np.concatenate([[0], np.cumsum(label == code, dtype=np.int64)])
        out[:, j] = (csum[starts_700 + n_700] - csum[starts_700]) / n_700
    return out


def subject_windows(rec: WesadSubject, opts: WindowOptions) -> SubjectWindows:
    """Cut one subject's recording into labelled windows (see the module docstring)."""
    n, f = opts.n_samples, opts.n_forecast
    hop = int(round(opts.train_hop_s * FEATURE_RATE_HZ))
    # Usable length in 4 Hz samples: every stream and the labels must cover it.
    lengths = [rec.wrist[name].shape[0] / rate for name, rate in STREAM_RATES_HZ.items()]
    lengths.append(rec.label.shape[0] / LABEL_RATE_HZ)
    n4 = int(np.floor(min(lengths) * FEATURE_RATE_HZ + 1e-9))
    starts = np.arange(0, max(0, n4 - n - f + 1), hop)
    codes = sorted(CLASS_OF_CODE)
    per_4hz = int(round(LABEL_RATE_HZ / FEATURE_RATE_HZ))
    fractions = _label_fractions(rec.label, codes, starts * per_4hz, n * per_4hz)
    best = fractions.argmax(axis=1) if starts.size else np.zeros(0, int)
    keep = fractions[np.arange(starts.size), best] >= opts.min_label_fraction if starts.size else np.zeros(0, bool)
    codes_4hz = codes_at_4hz(rec.label, n4)
    tonic = resting_eda(rec.wrist["eda"][:n4, 0], codes_4hz)
    feats, future, labels, t0, seq = [], [], [], [], []
    for s, j in zip(starts[keep], best[keep]):
        eda_future = rec.wrist["eda"][s + n:s + n + f, 0]
        if not np.isfinite(eda_future).all():
            continue
        t = s / FEATURE_RATE_HZ
        window = {name: rec.wrist[name][int(round(t * rate)):int(round((t + opts.window_s) * rate))]
                  for name, rate in STREAM_RATES_HZ.items()}
        x, _ = wrist_features(window, opts.window_s)
        feats.append(x)
        future.append(eda_future)
        labels.append(CLASS_OF_CODE[codes[j]])
        t0.append(t)
        seq.append(codes_4hz[s:s + n + f])
    return SubjectWindows(
        subject=rec.subject,
        features=np.asarray(feats, np.float32).reshape(-1, len(CHANNELS), n),
        eda_future=np.asarray(future, np.float32).reshape(-1, f),
        labels=np.asarray(labels, np.int64),
        t_start_s=np.asarray(t0, np.float64),
        codes=np.asarray(seq, np.int8).reshape(-1, n + f),
        tonic_uS=np.full(len(labels), tonic, np.float32),
    )


def subject_series(rec: WesadSubject) -> tuple[np.ndarray, np.ndarray]:
    """A subject's whole EDA at 4 Hz (µS, float64, NaN where missing) and the WESAD code of every sample
    (int8, 0-4): what the tonic/phasic fit (:mod:`edgemer.export.physio.tonic`) reads."""
    eda = np.asarray(rec.wrist["eda"][:, 0], np.float64)
    n4 = int(min(eda.size, np.floor(rec.label.shape[0] / LABEL_RATE_HZ * FEATURE_RATE_HZ + 1e-9)))
    return eda[:n4], codes_at_4hz(rec.label, n4)


def check_subject(rec: WesadSubject, tolerance_s: float = 5.0) -> None:
    """Refuse a subject whose labels or stream lengths do not fit the WESAD layout.

    Labels must be codes 0-7; every wrist stream, read at its WESAD rate
    (:data:`STREAM_RATES_HZ`), must last as long as the 700 Hz label array (within
    ``tolerance_s`` seconds or 1 %), which catches arrays at another rate or cut short.

    Raises :class:`DatasetError` naming the file and what is wrong.
    """
    if rec.label.size == 0:
        raise DatasetError(f"{rec.path}: the label array is empty")
    bad = (rec.label < 0) | (rec.label > 7)
    if bad.any():
        raise DatasetError(f"{rec.path}: {int(bad.sum())} labels outside the WESAD codes 0-7 (e.g. "
                           f"{int(rec.label[bad][0])}); the file is not a WESAD subject or is corrupt")
    label_s = rec.label.size / LABEL_RATE_HZ
    for name, rate in STREAM_RATES_HZ.items():
        arr = rec.wrist[name]
        stream_s = arr.shape[0] / rate
        if abs(stream_s - label_s) > max(tolerance_s, 0.01 * label_s):
            raise DatasetError(f"{rec.path}: wrist {name.upper()} has {arr.shape[0]} samples = {stream_s:.1f} s at "
                               f"{rate:g} Hz, but the 700 Hz labels last {label_s:.1f} s; the stream is at another "
                               f"rate or truncated")
        if not np.isfinite(arr).any():
            raise DatasetError(f"{rec.path}: wrist {name.upper()} holds no finite sample")


def split_subjects(files: list[Path], heldout_fraction: float) -> tuple[list[Path], list[Path]]:
    """Training and held-out subject files: the last ``heldout_fraction`` (at least one) are held out."""
    if len(files) < 2:
        raise DatasetError(f"need at least 2 subjects (one to train, one to verify), found {len(files)}: "
                           f"{', '.join(str(f) for f in files)}")
    n_held = min(len(files) - 1, max(1, int(round(heldout_fraction * len(files)))))
    return files[:-n_held], files[-n_held:]


def channel_stats(features: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``[n, 4, t]`` physical features (NaN ignored; a flat channel gets std 1)."""
    mean = np.nanmean(features, axis=(0, 2))
    std = np.nanstd(features, axis=(0, 2))
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _read_subjects(files: list[Path], opts: WindowOptions, root: Path, progress: bool) -> list[SubjectWindows]:
    out = []
    for f in progress_bar(files, enabled=progress, desc="windows", unit="subject"):
        try:
            rec = load_subject(f)
        except DatasetError as exc:
            raise type(exc)(f"reading the WESAD folder {root}: {exc}") from exc
        out.append(subject_windows(rec, opts))
    return out


@dataclass(frozen=True)
class StackedWindows:
    """Windows of several subjects, standardised: x [n, 4, N], eda [n, N+F], y [n], codes [n, N+F],
    tonic [n] (standardised EDA units)."""

    x: np.ndarray
    eda: np.ndarray
    y: np.ndarray
    codes: np.ndarray
    tonic: np.ndarray


def stack_windows(parts: list[SubjectWindows], front_end: WristFrontEnd) -> StackedWindows:
    """Concatenate subjects' windows and standardise them with ``front_end`` (the runtime's own)."""
    feats = np.concatenate([p.features for p in parts])
    future = np.concatenate([p.eda_future for p in parts])
    x = front_end.normalise(feats)
    eda_mean, eda_std = front_end.config.mean[0], front_end.config.std[0]
    future_z = (future - eda_mean) / eda_std
    tonic_z = (np.concatenate([p.tonic_uS for p in parts]) - eda_mean) / eda_std
    return StackedWindows(x.astype(np.float32), np.concatenate([x[:, 0, :], future_z], axis=1).astype(np.float32),
                          np.concatenate([p.labels for p in parts]), np.concatenate([p.codes for p in parts]),
                          tonic_z.astype(np.float32))


def physio_dataset(train: StackedWindows, held: StackedWindows, mean: tuple[float, ...], std: tuple[float, ...],
                   subjects_train: tuple[str, ...], subjects_heldout: tuple[str, ...],
                   options: WindowOptions) -> "PhysioDataset":
    """A :class:`PhysioDataset` from stacked training and held-out windows."""
    return PhysioDataset(x_train=train.x, eda_train=train.eda, y_train=train.y, x_heldout=held.x,
                         eda_heldout=held.eda, y_heldout=held.y, mean=mean, std=std, subjects_train=subjects_train,
                         subjects_heldout=subjects_heldout, options=options, codes_train=train.codes,
                         codes_heldout=held.codes, tonic_train=train.tonic, tonic_heldout=held.tonic)


def load_wesad_windows(wesad_dir: Path, opts: WindowOptions = WindowOptions(), hop_s: float = 5.0,
                       progress: bool = True) -> PhysioDataset:
    """Read a WESAD-layout folder into a :class:`PhysioDataset` (nothing is cached).

    Parameters
    ----------
    wesad_dir: folder holding ``S<N>/S<N>.pkl``.
    opts: windowing and split options.
    hop_s: the runtime hop, seconds (only stored in the front-end config).

    Raises
    ------
    DatasetError, UnsafePickleError: a subject file is missing, unreadable, unsafe or
        malformed (the message names it), or a split has no usable window.
    """
    root = Path(wesad_dir).expanduser()
    files = find_subjects(root)
    train_files, held_files = split_subjects(files, opts.heldout_fraction)
    train = _read_subjects(train_files, opts, root, progress)
    held = _read_subjects(held_files, opts, root, progress)
    for split, parts in (("training", train), ("held-out", held)):
        if sum(p.labels.size for p in parts) == 0:
            raise DatasetError(f"{root}: the {split} subjects ({', '.join(p.subject for p in parts)}) have no "
                               f"{opts.window_s:g} s window labelled baseline, stress or amusement; "
                               f"the recordings are too short or unlabelled")
    mean, std = channel_stats(np.concatenate([p.features for p in train]))
    config = WristFrontEndConfig(window_s=opts.window_s, hop_s=hop_s, forecast_s=opts.forecast_s, mean=mean, std=std)
    front_end = WristFrontEnd(config, LABELS)
    ds = physio_dataset(stack_windows(train, front_end), stack_windows(held, front_end), mean, std,
                        tuple(p.subject for p in train), tuple(p.subject for p in held), opts)
    return replace(ds, subject_index_train=np.concatenate([np.full(p.labels.size, i, np.int64)
                                                           for i, p in enumerate(train)]),
                   t_start_train=np.concatenate([p.t_start_s for p in train]))
