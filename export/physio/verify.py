"""Verification of physiology bundles: the shared INT8-vs-FP32 checks of
:func:`edgemer.export.core.verify.verify_models` plus the EDA forecast.

Per model file, next to macro-F1 and accuracy: the RMSE of the EDA forecast (the
``eda`` output's samples after the window) against the recorded EDA, in µS; each
comparison reports it for the reference and the candidate file. The held-out section
gives a persistence forecast (the window's last EDA value held) as the baseline.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgemer.bundle import Bundle
from edgemer.export.core.config import VerificationTargets
from edgemer.export.core.verify import closing_markdown, comparison_markdown, verify_models
from edgemer.export.physio.physics_section import physics_markdown
from edgemer.frontends.physio import WristFrontEndConfig

CLASS_OUTPUT = "class_logits"
EDA_OUTPUT = "eda"


def forecast_rmse_uS(eda_pred: np.ndarray, eda_target: np.ndarray, fe: WristFrontEndConfig) -> float:
    """RMSE in µS of the forecast part (after the window's ``fe.n_samples``) of standardised EDA
    ``[n, N + F]`` against the target ``[n, N + F]``; NaN without forecast samples."""
    err = (eda_pred[:, fe.n_samples:] - eda_target[:, fe.n_samples:]) * fe.std[0]
    return float(np.sqrt(np.mean(err ** 2))) if err.size else float("nan")


def verify_bundle(bundle: Bundle, signals: np.ndarray, labels: np.ndarray, eda_target: np.ndarray,
                  targets: VerificationTargets = VerificationTargets(), strict: bool = False) -> dict[str, Any]:
    """Verify every model of a physiology ``bundle`` on held-out windows and return the report dict.

    Parameters
    ----------
    signals
        ``[n, 4, N]`` float32 standardised windows.
    labels
        ``[n]`` int class index.
    eda_target
        ``[n, N + F]`` float32 standardised EDA (window, then forecast).
    strict
        Raise :class:`~edgemer.errors.ExportError` when a target fails.
    """
    m = bundle.manifest
    fe = WristFrontEndConfig.from_dict(m.front_end)
    persistence = np.repeat(eda_target[:, fe.n_samples - 1:fe.n_samples], eda_target.shape[1], axis=1)
    heldout = {"windows": int(len(labels)), "class_counts": np.bincount(labels, minlength=len(m.labels)).tolist(),
               "labels": list(m.labels),
               "eda_forecast_rmse_uS_persistence": forecast_rmse_uS(persistence, eda_target, fe)}

    def eda_metrics(out: dict[str, np.ndarray]) -> dict[str, float]:
        return {"eda_forecast_rmse_uS": forecast_rmse_uS(out[EDA_OUTPUT], eda_target, fe)}

    return verify_models(bundle, signals, labels, CLASS_OUTPUT, heldout, targets, strict, metrics=eda_metrics,
                         item="windows")


def verification_markdown(report: dict[str, Any], title: str, physics: dict[str, Any] | None = None) -> str:
    """A :func:`verify_bundle` report as a short Markdown document (verification.md); ``physics``: the
    manifest's physics section, rendered after the targets (what the summary prints, as a table)."""
    h = report["heldout"]
    lines = [f"# Verification: {title}", "",
             f"Held-out windows: {h['windows']} (per class {dict(zip(h['labels'], h['class_counts']))}). "
             f"Every model file ran through edgemer's own backends, one thread.", "",
             "| model | backend | size (KiB) | macro-F1 | accuracy | EDA forecast RMSE (µS) |",
             "|---|---|---:|---:|---:|---:|"]
    for key, row in report["models"].items():
        lines.append(f"| {key} | {row['backend']} | {row['bytes'] / 1024:.1f} | {row['macro_f1']:.4f} | "
                     f"{row['accuracy']:.4f} | {row['eda_forecast_rmse_uS']:.4f} |")
    lines += ["", f"Persistence forecast (last EDA value held) RMSE: {h['eda_forecast_rmse_uS_persistence']:.4f} µS.",
              ""]
    lines += comparison_markdown(report) + closing_markdown(report)
    if physics:
        lines += physics_markdown(physics)
    return "\n".join(lines)
