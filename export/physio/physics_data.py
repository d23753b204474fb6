"""Training data for the PINN's tonic/phasic physics (one implementation for ``edgemer export physio``
and ``edgemer study physio``).

The physics term of the PINN acts on the tonic component of each training window. Getting
there takes four steps, each one function here:

1. :func:`load_series`: a subject's whole 4 Hz EDA (µS) and WESAD codes, optionally cached;
2. :func:`training_spans`: per training subject, the samples inside its training windows
   (window + forecast), the only samples the fit may use;
3. :func:`fit_training_physics`: the tonic ODE + Bateman SCR fit
   (:func:`~edgemer.export.physio.tonic.fit_tonic_phasic`) on those spans, and each subject's
   :class:`~edgemer.export.physio.tonic.Components` (phasic part, drive, resting level),
   optionally cached;
4. :func:`with_tonic_phasic`: the training dataset with, per window, its SCR part
   (``phasic_train``), onset-smoothed drive (``drive_train``) and resting level
   (``tonic_train``) cut out of its subject's components.

:func:`dataset_physics` runs all four for a dataset from :func:`load_wesad_windows`.
Subjects are referred to by an index (into the caller's subject list); ``series[s]`` is
``(eda [T] float64 µS, codes [T] int8)`` or None for a subject without one.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgemer.errors import DatasetError
from edgemer.export.physio.tonic import Components, Series, TonicPhasicConfig, TonicPhasicFit, fit_tonic_phasic
from edgemer.export.physio.windows import PhysioDataset, split_subjects, subject_series
from edgemer.frontends.physio import FEATURE_RATE_HZ
from edgemer.wesad import find_subjects, load_subject

SeriesList = Sequence["tuple[np.ndarray, np.ndarray] | None"]


def load_series(path: Path, cache_file: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A subject's whole 4 Hz EDA (µS, NaN where missing) and codes
    (:func:`~edgemer.export.physio.windows.subject_series`) from its pickle ``path``.

    cache_file: an ``.npz`` that holds them (read when it exists, written otherwise; the
    caller's name must change when the file or the options it depends on change).

    Raises DatasetError / UnsafePickleError for an unreadable or unsafe pickle.
    """
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            return z["eda"], z["codes"]
    eda, codes = subject_series(load_subject(path))
    if cache_file is not None:
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, eda=eda, codes=codes)
        tmp.replace(cache_file)
    return eda, codes


def training_spans(series: SeriesList, subject: np.ndarray, t_start_s: np.ndarray, span_s: float
                   ) -> dict[int, np.ndarray]:
    """Per subject index with a series: bool mask [T] over its series of the samples inside the
    given windows. subject, t_start_s: [n] each training window's subject index and start (s);
    span_s: window + forecast, s. Subjects whose series is None are left out."""
    span = int(round(span_s * FEATURE_RATE_HZ))
    out: dict[int, np.ndarray] = {}
    for s, t in zip(np.asarray(subject), np.asarray(t_start_s)):
        s = int(s)
        if series[s] is None:
            continue
        m = out.setdefault(s, np.zeros(series[s][0].size, bool))
        k = int(round(float(t) * FEATURE_RATE_HZ))
        m[k:k + span] = True
    return out


def fit_training_physics(series: SeriesList, spans: Mapping[int, np.ndarray], config: TonicPhasicConfig,
                         cache_file: Path | None = None) -> tuple[TonicPhasicFit, dict[int, Components]]:
    """Fit the tonic/phasic model on the ``spans`` of the subjects' series; returns (fit, subject
    index -> Components). cache_file: an ``.npz`` holding an earlier result (read when it exists,
    written otherwise; the caller keys its name by the data and options).

    Raises DatasetError when ``spans`` is empty (no subject with a whole recording).
    """
    if not spans:
        raise DatasetError("the tonic/phasic physics needs each training subject's whole recording")
    order = sorted(spans)
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            meta = json.loads(str(z["fit"]))
            fit = TonicPhasicFit(**{**meta, "levels": {int(k): v for k, v in meta["levels"].items()}})
            comps = {s: Components(z[f"phasic{s}"], z[f"drive{s}"], float(z["rest"][j])) for j, s in enumerate(order)}
        return fit, comps
    parts = [Series(series[s][0], series[s][1], spans[s]) for s in order]
    fit, fitted = fit_tonic_phasic(parts, config, return_phasic=True)
    comps = dict(zip(order, fitted))
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, fit=json.dumps(asdict(fit)), rest=np.array([comps[s].rest_uS for s in order]),
                 **{f"phasic{s}": comps[s].phasic for s in order}, **{f"drive{s}": comps[s].drive for s in order})
        tmp.replace(cache_file)
    return fit, comps


def with_tonic_phasic(ds: PhysioDataset, comps: Mapping[int, Components], subject: np.ndarray,
                      t_start_s: np.ndarray) -> PhysioDataset:
    """``ds`` with ``phasic_train`` (µS / eda std), ``drive_train`` (0..1) and ``tonic_train`` (the
    resting level, standardised) of every training window, cut from its subject's components.
    subject, t_start_s: [n_train] each training window's subject index and start (s)."""
    n_total = ds.eda_train.shape[1]
    n = len(ds.y_train)
    phasic = np.zeros((n, n_total), np.float32)
    drive = np.zeros((n, n_total), np.float32)
    tonic = np.array(ds.tonic_train, np.float32)
    for row, (s, t) in enumerate(zip(np.asarray(subject), np.asarray(t_start_s))):
        c = comps[int(s)]
        k = int(round(float(t) * FEATURE_RATE_HZ))
        phasic[row] = c.phasic[k:k + n_total] / ds.eda_std_uS
        drive[row] = c.drive[k:k + n_total]
        tonic[row] = (c.rest_uS - ds.eda_mean_uS) / ds.eda_std_uS
    return replace(ds, phasic_train=phasic, drive_train=drive, tonic_train=tonic)


def dataset_physics(wesad_dir: Path, ds: PhysioDataset, config: TonicPhasicConfig
                    ) -> tuple[TonicPhasicFit, PhysioDataset]:
    """Fit the tonic/phasic model on the training subjects of ``ds`` (from
    :func:`~edgemer.export.physio.windows.load_wesad_windows` on ``wesad_dir``: the same files,
    split the same way) and return (fit, ``ds`` with the tonic/phasic training arrays).

    Raises DatasetError when ``ds`` does not say where its training windows lie, or a file is unreadable.
    """
    if ds.subject_index_train is None or ds.t_start_train is None:
        raise DatasetError("the tonic/phasic physics needs each training window's subject and start "
                           "(a dataset from load_wesad_windows)")
    files, _ = split_subjects(find_subjects(Path(wesad_dir)), ds.options.heldout_fraction)
    series = [load_series(f) for f in files]
    spans = training_spans(series, ds.subject_index_train, ds.t_start_train,
                           ds.options.window_s + ds.options.forecast_s)
    fit, comps = fit_training_physics(series, spans, config)
    return fit, with_tonic_phasic(ds, comps, ds.subject_index_train, ds.t_start_train)
