"""``edgemer study physio``: the multi-task PINN as a study (protocols, ablations, baselines, physics).

What runs (each cell once per fold; fold results are cached in ``REPORT_DIR/runs`` so an
interrupted study resumes where it stopped):

================  ===========================================================================
protocol          how windows are split
================  ===========================================================================
``cv``            k-fold cross-validation over *windows*, stratified by class (the paper's
                  protocol). Overlapping windows of one subject land in both training and
                  test folds, so it measures recognition of people already seen: optimistic.
``loso``          leave-one-subject-out: every fold tests one subject never seen in training
                  (the honest protocol for a new wearer).
================  ===========================================================================

=====================  ====================================================================
variant                what
=====================  ====================================================================
``pinn``               the multi-task PINN (classes + EDA forecast + physics residual)
``pinn+self-report``   the same with the subject's self-report for the window's condition
                       (PANAS, SAM, STAI) as context. These describe the *condition*, so they
                       can leak the label: never read them as physiology-only results.
``eda-only``           ablation: EDA loss + physics, no classification loss
``class-only``         ablation: classification loss only (no EDA metrics: its EDA head is untrained)
``no-physics``         ablation: EDA + classification, physics weight 0
``persistence``        baseline: the forecast holds the window's last EDA value
``svr``                baseline: scikit-learn SVR on the last 15 s of EDA (forecast)
``gbt``                baseline: scikit-learn histogram gradient-boosted trees on window statistics
``gbt+self-report``    the same with the self-report features (label leak, as above)
``pinn+personalised``  LOSO only: the PINN's EDA, drive and tonic heads and physical parameters
                       fine-tuned on the new wearer's first minutes of baseline (calibration),
                       scored on the wearer's other windows, next to the plain PINN on the same
                       windows
=====================  ====================================================================

Metrics per fold: 3-class (baseline / stress / amusement) and binary (stress vs rest)
macro-F1 and accuracy; EDA forecast (the ``forecast_s`` seconds after each window) RMSE
in µS and normalised (the error divided by the test subject's EDA range over its windows,
i.e. RMSE on per-subject min-max scaled EDA), Pearson r of forecast vs measured EDA levels
(what papers report; the subjects' different tonic levels make it easy) and of the
forecast *change* from the window's last sample (harder, and more telling).

Physics per fold (PINN variants): alpha_0 (1/s), beta (µS/s per unit drive), gamma and the
identifiable ``tau_s = gamma / alpha_0`` (s) and ``gain_uS = beta / alpha_0`` (µS per unit
drive), against ``truth.json`` when the folder is synthetic. See :data:`edgemer.export.physio.export.IDENTIFIABILITY_NOTE`.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgemer._extras import require
from edgemer.errors import ConfigError, DatasetError
from edgemer.export.physio.windows import (
    CLASS_OF_CODE,
    LABELS,
    SubjectWindows,
    WindowOptions,
    channel_stats,
    check_subject,
    physio_dataset,
    stack_windows,
    subject_windows,
)
from edgemer.export.physio.export import read_truth
from edgemer.export.physio.physics_data import fit_training_physics, load_series, with_tonic_phasic
from edgemer.export.physio.physics_data import training_spans as physio_training_spans
from edgemer.export.core.progress import progress_bar
from edgemer.export.physio.questionnaires import read_quest
from edgemer.frontends.physio import WristFrontEnd, WristFrontEndConfig
from edgemer.wesad import find_subjects, load_subject

PINN_VARIANTS = ("pinn", "pinn+self-report", "eda-only", "class-only", "no-physics")
TONIC_PHASIC = "tonic-phasic"
"""The physics alone: the tonic ODE + Bateman SCR fit of the fold's training data, and its label-free forecast."""
PERSONALISED = "pinn+personalised"
"""LOSO only: the PINN fine-tuned on the test wearer's first ``personalise_s`` seconds of baseline."""
BASELINES = ("persistence", "svr", "gbt", "gbt+self-report")
PROTOCOLS = ("cv", "loso")
SELF_REPORT_NOTE = ("Self-report features (PANAS, SAM valence/arousal, STAI) describe the condition a window comes "
                    "from, one answer per subject and condition: a model given them can read the label off them "
                    "(a label leak). Rows marked '+self-report' are not physiology-only results.")
TARGETS = {"tau_rel": 0.05, "gain_rel": 0.05, "eda_r": 0.99, "loso_f1": 0.90}
PAPER = {"rmse_norm": 0.0362, "r": 0.9919, "macro_f1": 0.9408,
         "source": "the seed paper's 5-fold figures on WESAD (normalised EDA RMSE, Pearson r, F1)"}
WESAD_BENCHMARK = {"accuracy_3class": 0.80, "accuracy_binary": 0.93,
                   "source": "Schmidt et al. 2018, WESAD (ICMI '18), LOSO: up to 80 % accuracy 3-class, "
                             "93 % binary (chest + wrist features)"}


@dataclass(frozen=True)
class StudyOptions:
    """What ``edgemer study physio`` runs (times in seconds).

    window_s, train_hop_s, forecast_s: windows (see :class:`~edgemer.export.physio.windows.WindowOptions`).
    epochs, batch_size, lr, physics_weight, seed: PINN training. folds: k of the k-fold
    cross-validation (>= 2). max_subjects: use only the first N subjects (None: all).
    loso_folds: run only the first N leave-one-subject-out folds (None: all).
    protocols: any of ``cv``, ``loso``. ablations: run the ablation variants.
    baselines: run the scikit-learn baselines. skip_bad: skip unreadable or malformed
    subjects (listed in the report) instead of stopping with their error.
    personalise_s: seconds of a new wearer's first baseline used to fine-tune the PINN in
    each LOSO fold (the ``pinn+personalised`` variant; 0 = off). personalise_epochs:
    full-batch fine-tuning steps. task_threads: torch / OpenMP threads each task runs with,
    under every executor: a model's weights depend on the thread count (the order of its
    sums), so the same count is what makes a parallel run's figures equal the serial ones.
    tonic_phasic: fit the tonic ODE + Bateman SCR model on each fold's training data
    (:mod:`edgemer.export.physio.tonic`), run it as the ``tonic-phasic`` variant and train the
    PINN's physics term on the tonic component with its parameters (False: the single-ODE
    residual on the whole EDA, as before). physics_steps: Adam steps of that fit. bootstrap:
    replicates of the subject bootstrap that gives the CV intervals of the physics (0 = none;
    LOSO intervals come from its folds by the jackknife).
    """

    window_s: float = 60.0
    train_hop_s: float = 5.0
    forecast_s: float = 10.0
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    physics_weight: float = 1.0
    seed: int = 0
    folds: int = 5
    max_subjects: int | None = None
    loso_folds: int | None = None
    protocols: tuple[str, ...] = PROTOCOLS
    ablations: bool = True
    baselines: bool = True
    skip_bad: bool = False
    personalise_s: float = 120.0
    personalise_epochs: int = 30
    task_threads: int = 1
    tonic_phasic: bool = True
    physics_steps: int = 600
    bootstrap: int = 10

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"StudyOptions.folds must be >= 2, got {self.folds}")
        for name in ("epochs", "batch_size", "task_threads", "physics_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"StudyOptions.{name} must be >= 1, got {getattr(self, name)}")
        if self.bootstrap < 0:
            raise ConfigError(f"StudyOptions.bootstrap must be >= 0, got {self.bootstrap}")
        for name in ("max_subjects", "loso_folds"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"StudyOptions.{name} must be >= 1 or None, got {value}")
        if self.max_subjects is not None and self.max_subjects < 2:
            raise ConfigError(f"StudyOptions.max_subjects must be >= 2 (train and test), got {self.max_subjects}")
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad or not self.protocols:
            raise ConfigError(f"StudyOptions.protocols must be a non-empty subset of {PROTOCOLS}, got {self.protocols}")
        if self.personalise_s < 0 or self.personalise_epochs < 1:
            raise ConfigError(f"StudyOptions.personalise_s must be >= 0 and personalise_epochs >= 1, got "
                              f"{self.personalise_s}, {self.personalise_epochs}")
        if not self.lr > 0 or self.physics_weight < 0:
            raise ConfigError("StudyOptions.lr must be > 0 and physics_weight >= 0")
        if not self.window_s > 0 or abs(self.window_s / 2 - round(self.window_s / 2)) > 1e-9:
            raise ConfigError(f"StudyOptions.window_s must be a positive multiple of 2 s, got {self.window_s}")
        self.window_options()  # validates the hop and forecast

    def window_options(self) -> WindowOptions:
        return WindowOptions(window_s=self.window_s, train_hop_s=self.train_hop_s, forecast_s=self.forecast_s)

    def key(self, *names: str) -> str:
        """A short hash of the named fields (cache keys: results depend on exactly these)."""
        d = asdict(self)
        return hashlib.sha256(json.dumps({n: d[n] for n in names}, sort_keys=True).encode()).hexdigest()[:12]


WINDOW_FIELDS = ("window_s", "train_hop_s", "forecast_s")
TRAIN_FIELDS = WINDOW_FIELDS + ("epochs", "batch_size", "lr", "physics_weight", "seed", "folds", "max_subjects",
                                 "task_threads", "tonic_phasic", "physics_steps")


@dataclass
class SubjectData:
    """One subject's windows (physical units), self-report context and EDA range.

    context: [n, len(FEATURES)] float32, the self-report of each window's condition.
    eda_range_uS: max - min of the subject's windowed EDA, µS (normalises the RMSE).
    """

    windows: SubjectWindows
    context: np.ndarray
    quest_problems: tuple[str, ...]
    eda_range_uS: float
    series: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class StudyResult:
    """What :func:`run_study` wrote: REPORT_DIR, the report dict and the wall time (s)."""

    out_dir: Path
    report: dict[str, Any]
    seconds: float = 0.0
    summary_lines: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- data

def _cache_file(cache: Path, path: Path, opts: StudyOptions) -> Path:
    st = path.stat()
    tag = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:10]
    return cache / f"{path.stem}-{opts.key(*WINDOW_FIELDS)}-{tag}-v{WINDOW_CACHE_VERSION}.npz"


WINDOW_CACHE_VERSION = 2
"""Bumped when :class:`SubjectWindows` changes (2: codes and tonic_uS)."""


def _load_windows(path: Path, opts: StudyOptions, cache: Path) -> SubjectWindows:
    """A subject's windows, from the cache when it holds them for these window options and this file."""
    f = _cache_file(cache, path, opts)
    names = [x.name for x in fields(SubjectWindows)]
    if f.is_file():
        with np.load(f, allow_pickle=False) as z:
            return SubjectWindows(**{n: str(z[n]) if n == "subject" else z[n] for n in names})
    rec = load_subject(path)
    check_subject(rec)
    w = subject_windows(rec, opts.window_options())
    tmp = f.with_suffix(".tmp.npz")
    np.savez(tmp, **{n: np.asarray(getattr(w, n)) for n in names})
    tmp.replace(f)
    return w


def _load_series(path: Path, opts: StudyOptions, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """A subject's whole 4 Hz EDA and codes (:func:`~edgemer.export.physio.physics_data.load_series`), cached."""
    f = _cache_file(cache, path, opts)
    return load_series(path, f.with_name(f.stem + "-series.npz"))


def load_study_subjects(wesad_dir: Path, opts: StudyOptions, cache: Path, progress: bool = True
                        ) -> tuple[list[SubjectData], list[dict[str, str]]]:
    """Windows of every usable subject, and the skipped ones (``{"subject", "file", "error"}``).

    Raises
    ------
    DatasetError, UnsafePickleError: a subject is missing, unreadable, unsafe or malformed
        (the message names the file) and ``opts.skip_bad`` is off; or fewer than two
        subjects have usable windows.
    """
    root = Path(wesad_dir)
    dirs = sorted((p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"S\d+", p.name)),
                  key=lambda p: int(p.name[1:])) if root.is_dir() else []
    if not dirs:
        find_subjects(root)  # raises its explanatory error
    if opts.max_subjects:
        dirs = dirs[:opts.max_subjects]
    cache.mkdir(parents=True, exist_ok=True)
    inverse = {c: code for code, c in CLASS_OF_CODE.items()}
    out: list[SubjectData] = []
    skipped: list[dict[str, str]] = []
    for d in progress_bar(dirs, enabled=progress, desc="windows", unit="subject"):
        path = d / f"{d.name}.pkl"
        try:
            if not path.is_file():
                raise DatasetError(f"{d}: subject folder without {d.name}.pkl")
            w = _load_windows(path, opts, cache)
            if w.labels.size == 0:
                raise DatasetError(f"{path}: no {opts.window_s:g} s window labelled baseline, stress or amusement")
        except DatasetError as exc:
            if not opts.skip_bad:
                raise type(exc)(f"{exc} (pass --skip-bad to skip this subject and list it in the report)") from exc
            skipped.append({"subject": d.name, "file": str(path), "error": str(exc)})
            continue
        quest = read_quest(d / f"{d.name}_quest.csv")
        ctx = np.stack([quest.vector(inverse[int(c)]) for c in w.labels]).astype(np.float32)
        eda = w.features[:, 0, :]
        series = _load_series(path, opts, cache) if opts.tonic_phasic else None
        out.append(SubjectData(w, ctx, quest.problems, float(np.nanmax(eda) - np.nanmin(eda)) or 1.0, series))
    if len(out) < 2:
        raise DatasetError(f"{root}: {len(out)} usable subject(s); a study needs at least 2"
                           + (f" (skipped: {', '.join(s['subject'] for s in skipped)})" if skipped else ""))
    return out, skipped


@dataclass
class Pool:
    """All windows of all subjects, concatenated (physical units)."""

    features: np.ndarray      # [n, 4, N]
    eda_future: np.ndarray    # [n, F] µS
    labels: np.ndarray        # [n]
    subject: np.ndarray       # [n] subject index
    context: np.ndarray       # [n, len(FEATURES)]
    t_start_s: np.ndarray     # [n]
    names: list[str]
    eda_range_uS: np.ndarray  # [n_subjects]
    codes: np.ndarray         # [n, N+F] WESAD code per 4 Hz sample
    tonic_uS: np.ndarray      # [n] the window's subject's resting EDA
    series: list[Any] = field(default_factory=list)  # per subject: (eda [T] µS, codes [T]) at 4 Hz, or None
    cache_dir: str | None = None  # where fold physics fits are cached (set by run_study)

    @classmethod
    def of(cls, subjects: list[SubjectData]) -> "Pool":
        w = [s.windows for s in subjects]
        return cls(np.concatenate([x.features for x in w]), np.concatenate([x.eda_future for x in w]),
                   np.concatenate([x.labels for x in w]),
                   np.concatenate([np.full(x.labels.size, i) for i, x in enumerate(w)]),
                   np.concatenate([s.context for s in subjects]), np.concatenate([x.t_start_s for x in w]),
                   [x.subject for x in w], np.array([s.eda_range_uS for s in subjects]),
                   np.concatenate([x.codes for x in w]), np.concatenate([x.tonic_uS for x in w]),
                   [s.series for s in subjects])

    def part(self, idx: np.ndarray) -> SubjectWindows:
        return SubjectWindows("pool", self.features[idx], self.eda_future[idx], self.labels[idx], self.t_start_s[idx],
                              self.codes[idx], self.tonic_uS[idx])


def fold_indices(pool: Pool, protocol: str, opts: StudyOptions) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) window indices per fold of ``protocol``."""
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold

    if protocol == "cv":
        k = min(opts.folds, int(np.bincount(pool.labels).max()))
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=opts.seed)
        return list(splitter.split(pool.features, pool.labels))
    folds = list(LeaveOneGroupOut().split(pool.features, pool.labels, pool.subject))
    return folds[:opts.loso_folds] if opts.loso_folds else folds


@dataclass
class FoldData:
    """Standardised arrays of one fold (see :class:`~edgemer.export.physio.windows.PhysioDataset`)."""

    dataset: Any
    ctx_train: np.ndarray
    ctx_test: np.ndarray
    test: np.ndarray  # window indices into the pool


def fold_data(pool: Pool, train: np.ndarray, test: np.ndarray, opts: StudyOptions) -> FoldData:
    wo = opts.window_options()
    mean, std = channel_stats(pool.features[train])
    fe = WristFrontEnd(WristFrontEndConfig(window_s=opts.window_s, forecast_s=opts.forecast_s, mean=mean, std=std),
                       LABELS)
    c_mean = pool.context[train].mean(0)
    c_std = np.where(pool.context[train].std(0) > 1e-6, pool.context[train].std(0), 1.0)
    ds = physio_dataset(stack_windows([pool.part(train)], fe), stack_windows([pool.part(test)], fe), mean, std,
                        tuple(sorted({pool.names[i] for i in pool.subject[train]})),
                        tuple(sorted({pool.names[i] for i in pool.subject[test]})), wo)
    return FoldData(ds, ((pool.context[train] - c_mean) / c_std).astype(np.float32),
                    ((pool.context[test] - c_mean) / c_std).astype(np.float32), test)


# --------------------------------------------------------------------------- metrics

def class_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """3-class and binary (stress vs rest) macro-F1 and accuracy, and the 3x3 confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    yb, pb = (y == 1).astype(int), (pred == 1).astype(int)
    return {"macro_f1": float(f1_score(y, pred, average="macro", labels=[0, 1, 2], zero_division=0)),
            "accuracy": float(accuracy_score(y, pred)),
            "binary_f1": float(f1_score(yb, pb, average="macro", labels=[0, 1], zero_division=0)),
            "binary_accuracy": float(accuracy_score(yb, pb)),
            "confusion": confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / den) if den > 0 else float("nan")


def eda_metrics(pred_uS: np.ndarray, true_uS: np.ndarray, last_uS: np.ndarray, range_uS: np.ndarray
                ) -> dict[str, float]:
    """Forecast metrics. pred/true: [n, F] µS; last: [n] window's last EDA, µS; range: [n] subject EDA range, µS."""
    err = pred_uS - true_uS
    return {"rmse_uS": float(np.sqrt(np.mean(err ** 2))),
            "rmse_norm": float(np.sqrt(np.mean((err / range_uS[:, None]) ** 2))),
            "r": _pearson(pred_uS, true_uS),
            "r_change": _pearson(pred_uS - last_uS[:, None], true_uS - last_uS[:, None])}


# --------------------------------------------------------------------------- variants

def _train_variant(variant: str, fd: FoldData, opts: StudyOptions, fit: Any = None) -> tuple[Any, dict[str, Any]]:
    """Train the PINN of one variant on a fold: (model, history). ``fit``: the fold's tonic/phasic
    fit (``fd`` then carries the phasic part and drive of its training windows)."""
    from edgemer.export.physio.pinn import LossWeights
    from edgemer.export.physio.train import TrainConfig, train_pinn

    w = _LOSS_WEIGHTS[variant]
    physics = opts.physics_weight if w[2] else 0.0
    cfg = TrainConfig(epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr, seed=opts.seed,
                      weights=LossWeights(eda=w[0], classification=w[1], physics=physics))
    ctx = fd.ctx_train if variant.endswith("+self-report") else None
    return train_pinn(fd.dataset, cfg, progress=False, context_train=ctx, physics=fit)


_LOSS_WEIGHTS = {"pinn": (1.0, 1.0, 1.0), "pinn+self-report": (1.0, 1.0, 1.0), "eda-only": (1.0, 0.0, 1.0),
                 "class-only": (0.0, 1.0, 0.0), "no-physics": (1.0, 1.0, 0.0)}
"""(EDA, classification, physics) loss switches per variant; physics is scaled by ``physics_weight``."""


def _predict(model: Any, x: np.ndarray, ctx: np.ndarray | None, ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """(predicted classes [n], EDA forecast [n, F] in µS) of a PINN on standardised windows."""
    import torch

    with torch.no_grad():
        logits, eda, _, _ = model(torch.from_numpy(x), None if ctx is None else torch.from_numpy(ctx))
    return logits.argmax(1).numpy(), eda[:, ds.options.n_samples:].numpy() * ds.eda_std_uS + ds.eda_mean_uS


def uses_physics(variant: str, opts: StudyOptions) -> bool:
    """Whether ``variant`` needs its fold's tonic/phasic fit: the ``tonic-phasic`` variant itself and
    the PINN variants with a physics term when the options train it on the tonic component."""
    if not opts.tonic_phasic:
        return False
    return variant == TONIC_PHASIC or (variant in _LOSS_WEIGHTS and _LOSS_WEIGHTS[variant][2] > 0
                                       and opts.physics_weight > 0)


class FoldRun:
    """The work the variants of one fold share: its standardised data (built once, on first use) and
    the trained PINNs (the personalised variant starts from the plain ``pinn`` model, not a retrained copy)."""

    def __init__(self, pool: Pool, train: np.ndarray, test: np.ndarray, opts: StudyOptions) -> None:
        self.pool, self.train, self.test, self.opts = pool, train, test, opts
        self._data: FoldData | None = None
        self._models: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._physics: tuple[Any, dict[int, Any]] | None = None

    @property
    def data(self) -> FoldData:
        if self._data is None:
            self._data = fold_data(self.pool, self.train, self.test, self.opts)
        return self._data

    def adopt(self, variant: str, model: Any, history: dict[str, Any]) -> None:
        """Use ``model`` (trained elsewhere on this fold with these options) as ``variant``'s."""
        self._models[variant] = (model, history)

    def adopt_physics(self, fit: Any, components: dict[int, Any]) -> None:
        """Use the tonic/phasic fit of this fold computed elsewhere (what :meth:`physics` returns)."""
        self._physics = (fit, components)

    def trained(self, variant: str) -> tuple[Any, dict[str, Any]]:
        """(model, history) of ``variant``, trained on this fold once (with the tonic/phasic physics
        when the options ask for it and the variant has a physics term)."""
        if variant not in self._models:
            if uses_physics(variant, self.opts):
                fit, data = self.physics_data()
                self._models[variant] = _train_variant(variant, data, self.opts, fit)
            else:
                self._models[variant] = _train_variant(variant, self.data, self.opts)
        return self._models[variant]

    def physics(self) -> tuple[Any, dict[int, Any]]:
        """The tonic/phasic fit of this fold's training data and each training subject's components
        (subject index -> :class:`~edgemer.export.physio.tonic.Components`), computed once and cached
        in ``pool.cache_dir`` (keyed by the training windows and the options)."""
        if self._physics is None:
            self._physics = fold_physics(self.pool, self.train, self.opts)
        return self._physics

    def physics_data(self) -> tuple[Any, FoldData]:
        """(fit, this fold's data with the SCR part, drive and resting level of every training window)."""
        fit, comps = self.physics()
        fd = self.data
        ds = with_tonic_phasic(fd.dataset, comps, self.pool.subject[self.train], self.pool.t_start_s[self.train])
        return fit, replace(fd, dataset=ds)


def training_spans(pool: Pool, train: np.ndarray, opts: StudyOptions) -> dict[int, np.ndarray]:
    """Per training subject (index): mask over its 4 Hz series of the samples inside its training windows
    (window + forecast). LOSO: the training subjects' whole windowed spans; CV: the training folds' windows.
    (:func:`edgemer.export.physio.physics_data.training_spans` on the pool's windows.)"""
    return physio_training_spans(pool.series, pool.subject[train], pool.t_start_s[train],
                                 opts.window_s + opts.forecast_s)


def fold_physics(pool: Pool, train: np.ndarray, opts: StudyOptions) -> tuple[Any, dict[int, Any]]:
    """Fit the tonic/phasic model on the training spans of a fold (see :func:`training_spans`); cached
    as JSON + npz in ``pool.cache_dir`` when set. Returns (fit, subject index -> Components)."""
    from edgemer.export.physio.tonic import TonicPhasicConfig

    key = hashlib.sha256(np.sort(train).tobytes() + str(opts.physics_steps).encode()).hexdigest()[:16]
    f = Path(pool.cache_dir) / f"physics-{key}.npz" if pool.cache_dir else None
    return fit_training_physics(pool.series, training_spans(pool, train, opts),
                                TonicPhasicConfig(steps=opts.physics_steps), f)


def _tonic_phasic_run(fold: FoldRun) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The physics alone: the fold's fit (parameters) and its label-free forecast of the test windows."""
    from edgemer.export.physio.tonic import physics_forecast

    fit, _ = fold.physics()
    pool, test = fold.pool, fold.test
    eda = pool.features[test, 0, :].astype(np.float64)
    ok = np.isfinite(eda).all(axis=1)
    last = np.where(np.isfinite(eda[:, -1]), eda[:, -1], 0.0)
    pred = np.repeat(last[:, None], pool.eda_future.shape[1], axis=1)
    if ok.any():
        pred[ok] = physics_forecast(fit, eda[ok], pool.eda_future.shape[1])
    return {"tonic_phasic": fit.as_dict()}, {"pred_uS": pred}


def _pinn_run(variant: str, fold: FoldRun) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    fd = fold.data
    model, history = fold.trained(variant)
    ds = fd.dataset
    pred, pred_uS = _predict(model, ds.x_heldout, fd.ctx_test if variant.endswith("+self-report") else None, ds)
    out: dict[str, Any] = {"train_seconds": round(history["seconds"], 2), "physics": model.physical_parameters()}
    if fold._physics is not None and _LOSS_WEIGHTS[variant][2]:
        out["tonic_phasic"] = fold._physics[0].as_dict()
    w = _LOSS_WEIGHTS[variant]
    if w[1] > 0:
        out["class"] = class_metrics(ds.y_heldout, pred)
    return out, {"pred_uS": pred_uS} if w[0] > 0 else {}


def calibration_windows(pool: Pool, test: np.ndarray, opts: StudyOptions) -> np.ndarray:
    """Mask over ``test`` of the windows inside the test wearer's first ``personalise_s`` seconds of baseline."""
    t = pool.t_start_s[test]
    base = pool.labels[test] == 0
    if not base.any():
        return np.zeros(test.size, bool)
    return base & (t + opts.window_s <= t[base].min() + max(opts.personalise_s, opts.window_s) + 1e-6)


def _personalised_run(fold: FoldRun) -> dict[str, Any]:
    """The fold's PINN before and after fine-tuning on the calibration windows, both scored on the other windows."""
    from edgemer.export.physio.train import fine_tune_pinn

    pool, test, opts = fold.pool, fold.test, fold.opts
    calib = calibration_windows(pool, test, opts)
    rest = ~calib
    if not calib.any() or not rest.any():
        return {"skipped": f"the test wearer has {int(calib.sum())} calibration and {int(rest.sum())} other windows"}
    model, history = fold.trained("pinn")
    ds = fold.data.dataset
    tuned = fine_tune_pinn(model, ds.x_heldout[calib], ds.eda_heldout[calib], ds.y_heldout[calib],
                           ds.codes_heldout[calib], ds.tonic_heldout[calib], ds.eda_mean_uS, ds.eda_std_uS,
                           epochs=opts.personalise_epochs, physics_weight=opts.physics_weight, seed=opts.seed)
    idx = test[rest]
    last, rng = pool.features[idx, 0, -1], pool.eda_range_uS[pool.subject[idx]]
    scores = {}
    for name, m in (("before", model), ("after", tuned)):
        pred, pred_uS = _predict(m, ds.x_heldout[rest], None, ds)
        scores[name] = {"class": class_metrics(ds.y_heldout[rest], pred),
                        "eda": eda_metrics(pred_uS, pool.eda_future[idx], last, rng),
                        "physics": m.physical_parameters()}
    return {**scores["after"], "before": scores["before"], "calibration_windows": int(calib.sum()),
            "test_windows": int(rest.sum()), "train_seconds": round(history["seconds"], 2)}


def _window_stats(x: np.ndarray) -> np.ndarray:
    """Summary features of physical windows [n, 4, N]: mean, std, last-first, min, max per channel."""
    x = np.where(np.isfinite(x), x, np.nanmean(x, axis=2, keepdims=True))
    x = np.nan_to_num(x)
    return np.concatenate([x.mean(2), x.std(2), x[:, :, -1] - x[:, :, 0], x.min(2), x.max(2)], axis=1)


SVR_HISTORY_S = 15.0
"""Seconds of EDA before the forecast the SVR baseline sees (at 1 Hz)."""
SVR_MAX_TRAIN = 3000
"""Training windows the SVR baseline uses at most (kernel SVR is quadratic in them)."""


def _svr_forecast(pool: Pool, train: np.ndarray, test: np.ndarray, opts: StudyOptions) -> np.ndarray:
    """SVR per horizon (every 2.5 s) on the last SVR_HISTORY_S s of EDA relative to the last sample,
    linearly interpolated onto the 4 Hz forecast grid; returns [n_test, F] µS."""
    from sklearn.svm import SVR

    f = opts.window_options().n_forecast
    eda = pool.features[:, 0, :]
    hist = np.arange(-int(SVR_HISTORY_S * 4), 0, 4)
    feats = eda[:, hist] - eda[:, -1:]
    last = eda[:, -1]
    steps = np.unique(np.clip(np.arange(10, f + 1, 10), 1, f)) if f >= 10 else np.array([f])
    rng = np.random.default_rng(opts.seed)
    tr = train if train.size <= SVR_MAX_TRAIN else np.sort(rng.choice(train, SVR_MAX_TRAIN, replace=False))
    preds = [np.zeros(test.size)]
    for h in steps:
        target = pool.eda_future[tr, h - 1] - last[tr]
        model = SVR(C=1.0, epsilon=0.005, gamma="scale").fit(feats[tr] * 10, target)
        preds.append(model.predict(feats[test] * 10))
    grid = np.concatenate([[0], steps])
    deltas = np.stack(preds, axis=1)
    out = np.stack([np.interp(np.arange(1, f + 1), grid, row) for row in deltas])
    return out + last[test, None]


def _gbt_classes(pool: Pool, train: np.ndarray, test: np.ndarray, opts: StudyOptions, ctx: bool) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = _window_stats(pool.features)
    if ctx:
        x = np.concatenate([x, pool.context], axis=1)
    model = HistGradientBoostingClassifier(max_iter=150, random_state=opts.seed, class_weight="balanced")
    return model.fit(x[train], pool.labels[train]).predict(x[test])


def run_cell(variant: str, pool: Pool, train: np.ndarray, test: np.ndarray, opts: StudyOptions,
             fold: FoldRun | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One variant on one fold: (metrics dict, predictions for plots). ``fold``: the fold's shared
    work, when several variants of it run one after the other."""
    fold = fold or FoldRun(pool, train, test, opts)
    started = time.perf_counter()
    last = pool.features[test, 0, -1]
    rng = pool.eda_range_uS[pool.subject[test]]
    preds: dict[str, np.ndarray] = {}
    if variant == PERSONALISED:
        res = _personalised_run(fold)
    elif variant in PINN_VARIANTS:
        res, preds = _pinn_run(variant, fold)
    elif variant == TONIC_PHASIC:
        res, preds = _tonic_phasic_run(fold)
    elif variant == "persistence":
        res, preds = {}, {"pred_uS": np.repeat(last[:, None], pool.eda_future.shape[1], axis=1)}
    elif variant == "svr":
        res, preds = {}, {"pred_uS": _svr_forecast(pool, train, test, opts)}
    else:
        res = {"class": class_metrics(pool.labels[test], _gbt_classes(pool, train, test, opts,
                                                                        variant.endswith("+self-report")))}
    if "pred_uS" in preds:
        res["eda"] = eda_metrics(preds["pred_uS"], pool.eda_future[test], last, rng)
    res["seconds"] = round(time.perf_counter() - started, 2)
    res.setdefault("test_windows", int(test.size))
    res["test_subjects"] = sorted({pool.names[i] for i in pool.subject[test]})
    return res, preds


def _cache_suffix(variant: str, opts: StudyOptions) -> str:
    """Options that only the personalised variant depends on go into its cache file's name."""
    return f"-{opts.key('personalise_s', 'personalise_epochs')}" if variant == PERSONALISED else ""


def variants(opts: StudyOptions, protocol: str) -> list[str]:
    """The variants run under ``protocol`` (the personalised PINN only in LOSO)."""
    out = ["pinn", "pinn+self-report"] + ([TONIC_PHASIC] if opts.tonic_phasic else [])
    if protocol == "loso" and opts.personalise_s > 0:
        out.append(PERSONALISED)
    if opts.ablations:
        out += ["eda-only", "class-only", "no-physics"]
    if opts.baselines:
        out += list(BASELINES)
    return out


# --------------------------------------------------------------------------- driver

def _trace(pool: Pool, test: np.ndarray, pred_uS: np.ndarray) -> dict[str, Any]:
    """The first test subject's windows for the EDA plot: window starts, measured EDA, forecasts (µS)."""
    s = pool.subject[test[0]]
    keep = pool.subject[test] == s
    idx = test[keep]
    return {"subject": pool.names[s], "t_start_s": pool.t_start_s[idx].tolist(),
            "eda_uS": pool.features[idx, 0, :].round(4).tolist(), "future_uS": pool.eda_future[idx].round(4).tolist(),
            "pred_uS": pred_uS[keep].round(4).tolist()}


ALL_FIT = "tonic-phasic-all"
"""Task variant: the tonic/phasic fit on every subject's windowed spans (where the CV bootstrap starts)."""
BOOTSTRAP = "bootstrap"
"""Task variant: one replicate of the CV subject bootstrap (the task's ``fold`` is the replicate index)."""
INTERVAL_VARIANTS = (ALL_FIT, BOOTSTRAP)


def interval_tasks(pool: Pool, opts: StudyOptions) -> list[Any]:
    """The tasks of the CV physics intervals: the all-subject tonic/phasic fit and ``opts.bootstrap``
    replicates refitted from it (none without CV, the tonic/phasic physics or a bootstrap). They run on
    the study's executor beside the folds, and each is cached like a fold's task."""
    from edgemer.export.study.tasks import StudyTask

    if not (opts.tonic_phasic and "cv" in opts.protocols and opts.bootstrap > 0):
        return []
    every, none = np.arange(pool.labels.size), np.zeros(0, np.int64)
    return [StudyTask("cv", 0, ALL_FIT, every, none, f"cv-{ALL_FIT}.json")] + [
        StudyTask("cv", i, BOOTSTRAP, every, none, f"cv-{BOOTSTRAP}{i}.json") for i in range(opts.bootstrap)]


def interval_task_run(task: Any, pool: Pool, opts: StudyOptions, upstream: Any) -> tuple[dict[str, Any], Any]:
    """(result, what it hands on) of an :func:`interval_tasks` task. ``upstream``: the all-subject fit
    for a replicate (None: loaded from the physics cache or fitted again)."""
    from edgemer.export.physio.tonic import Series, TonicPhasicConfig, bootstrap_counts, bootstrap_refit

    fit = upstream if upstream is not None else fold_physics(pool, task.train, opts)[0]
    if task.variant == ALL_FIT:
        return {"tonic_phasic": fit.as_dict()}, fit
    spans = training_spans(pool, task.train, opts)
    series = [Series(pool.series[s][0], pool.series[s][1], spans[s]) for s in sorted(spans)]
    counts = bootstrap_counts(len(series), task.fold + 1, seed=opts.seed)[task.fold]
    refit = bootstrap_refit(series, fit, counts, TonicPhasicConfig(steps=opts.physics_steps))
    return {"tonic_phasic": refit.as_dict(), "draws": counts.tolist()}, None


def physics_intervals(results: dict[str, dict[str, list[dict[str, Any]]]], replicates: list[dict[str, Any]],
                      opts: StudyOptions) -> dict[str, dict[str, Any]]:
    """95 % intervals of the tonic/phasic parameters, over subjects. LOSO: jackknife of its fold fits
    (each leaves one subject out). CV: percentiles of the subject bootstrap's ``replicates`` (each a
    refit's ``TonicPhasicFit.as_dict()``, from the :func:`interval_tasks`)."""
    from edgemer.export.physio.tonic import BOOTSTRAP_KEYS, jackknife_interval, percentile_intervals

    out: dict[str, dict[str, Any]] = {}
    loso = [r["tonic_phasic"] for r in results.get("loso", {}).get(TONIC_PHASIC, []) if "tonic_phasic" in r]
    if len(loso) >= 2:
        out["loso"] = {k: jackknife_interval([r[k] for r in loso]) for k in BOOTSTRAP_KEYS}
        out["loso"]["method"] = f"jackknife over the {len(loso)} leave-one-subject-out fits"
    if "cv" in results and replicates and results["cv"].get(TONIC_PHASIC):
        missing = f" ({opts.bootstrap - len(replicates)} failed)" if len(replicates) < opts.bootstrap else ""
        # The replicates are short warm-started refits: they re-converge tau and gain but not the SCR
        # driver and shape, so only tau and gain get a bootstrap interval.
        ci = percentile_intervals(replicates)
        out["cv"] = {"tau_s": ci["tau_s"], "gain_uS": ci["gain_uS"],
                     "method": f"subject bootstrap, {len(replicates)} replicates of the all-subject fit{missing}"}
    return out


def _with_needs(todo: list[Any], opts: StudyOptions) -> list[Any]:
    """``todo`` with each task's upstream task named (``needs``) and ordered after it: a fold's physics
    variants start from its tonic/phasic fit (computed once, by the ``tonic-phasic`` task), the
    personalised PINN from its plain PINN. An upstream that is not in ``todo`` (done in an earlier run)
    is not waited for: the task then loads or recomputes what it needs itself."""
    from edgemer.export.study.tasks import model_name, physics_name

    pending = {t.name for t in todo}

    def upstream(t: Any) -> str | None:
        if t.variant == PERSONALISED:
            name = model_name(t)
        elif t.variant == BOOTSTRAP:
            name = f"{t.protocol}/fold0/{ALL_FIT}"
        elif t.variant != TONIC_PHASIC and uses_physics(t.variant, opts):
            name = physics_name(t)
        else:
            return None
        return name if name in pending else None

    todo = [replace(t, needs=upstream(t)) for t in todo]
    needs = {t.name: t.needs for t in todo}

    def depth(name: str) -> int:  # tonic-phasic 0 -> pinn 1 -> personalised 2
        return 0 if needs[name] is None else 1 + depth(needs[name])

    return sorted(todo, key=lambda t: (opts.protocols.index(t.protocol), t.fold, depth(t.name)))


def run_study(wesad_dir: Path, out_dir: Path, opts: StudyOptions = StudyOptions(), progress: bool = True,
              command: str | None = None, executor: Any = "serial") -> StudyResult:
    """Run the study on a WESAD-layout folder and write ``out_dir/report.md``, ``report.json`` and plots.

    Every (protocol, fold, variant) is one task (:class:`~edgemer.export.study.tasks.StudyTask`)
    run by ``executor``: ``"serial"``, ``"processes[:N]"``, ``"ray[:ADDRESS]"`` or an
    :class:`~edgemer.export.study.executor.ExecutorSpec`; the same options give the same
    figures under each. ``out_dir`` keeps a window cache (``cache/``), each task's result
    (``runs/<options>/``, written as the task finishes) and log (``runs/<options>/logs/``): a
    rerun with the same options resumes and recomputes only what is missing. A task that
    fails twice is named in the report (``execution.failed``) and rerun by the next run.

    Raises
    ------
    DatasetError, UnsafePickleError: see :func:`load_study_subjects`.
    MissingExtraError: torch, scikit-learn or matplotlib missing (extra ``export``); Ray
        missing for ``ray`` (extra ``study``).
    ConfigError: a malformed executor.
    """
    from edgemer.export.study.executor import ExecutorSpec, run_tasks
    from edgemer.export.study.tasks import StudyTask, TaskOutput

    spec = executor if isinstance(executor, ExecutorSpec) else ExecutorSpec.parse(str(executor))
    require("torch", "export", "The physiology study (edgemer study physio)")
    require("sklearn", "export", "The study's baselines and metrics (edgemer study physio)")
    started = time.perf_counter()
    wesad_dir = Path(wesad_dir).expanduser().absolute()
    out_dir = Path(out_dir).expanduser().absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    subjects, skipped = load_study_subjects(wesad_dir, opts, out_dir / "cache", progress)
    pool = Pool.of(subjects)
    runs = out_dir / "runs" / opts.key(*TRAIN_FIELDS)
    runs.mkdir(parents=True, exist_ok=True)
    pool.cache_dir = str(runs / "physics")
    names = {p: variants(opts, p) for p in opts.protocols}
    every = [StudyTask(p, k, v, tr, te, f"{p}-fold{k}-{v.replace('+', '_')}{_cache_suffix(v, opts)}.json", k == 0)
             for p in opts.protocols for k, (tr, te) in enumerate(fold_indices(pool, p, opts)) for v in names[p]]
    bootstrap = interval_tasks(pool, opts)
    tasks = every + bootstrap
    saved: dict[str, dict[str, Any]] = {t.name: json.loads((runs / t.cache_name).read_text())
                                        for t in tasks if (runs / t.cache_name).is_file()}
    todo = _with_needs([t for t in tasks if t.name not in saved], opts)
    peak_mib = 0.0

    def on_done(task: StudyTask, out: TaskOutput) -> None:
        nonlocal peak_mib
        f = runs / task.cache_name
        tmp = f.with_suffix(".tmp")
        tmp.write_text(json.dumps(out.saved))
        tmp.replace(f)
        saved[task.name] = out.saved
        peak_mib = max(peak_mib, out.peak_rss_mb)

    failures = run_tasks(todo, pool, opts, spec, on_done, runs / "logs", progress)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {p: {v: [] for v in names[p]} for p in opts.protocols}
    traces: dict[str, dict[str, Any]] = {}
    for t in every:
        if t.name in saved:
            results[t.protocol][t.variant].append({**saved[t.name]["result"], "fold": t.fold})
            if "trace" in saved[t.name]:
                traces[f"{t.protocol}/{t.variant}"] = saved[t.name]["trace"]
    execution = {"executor": spec.describe(), "task_threads": opts.task_threads, "tasks": len(tasks),
                 "cached": len(tasks) - len(todo), "run": len(todo) - len(failures),
                 "failed": [f.as_dict() for f in failures],
                 "peak_task_rss_mib": round(peak_mib, 1) if spec.kind != "serial" and todo else None,
                 "logs": str(runs / "logs")}
    from edgemer.export.study.report import build_report, write_report

    truth = read_truth(wesad_dir)
    replicates = [saved[t.name]["result"]["tonic_phasic"] for t in bootstrap
                  if t.variant == BOOTSTRAP and t.name in saved]
    intervals = physics_intervals(results, replicates, opts) if opts.tonic_phasic else {}
    report = build_report(results, opts, subjects, skipped, truth, wesad_dir, command,
                          seconds=time.perf_counter() - started, execution=execution, intervals=intervals)
    lines = write_report(out_dir, report, traces)
    return StudyResult(out_dir, report, report["seconds"], lines)
