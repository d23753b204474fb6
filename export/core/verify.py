"""INT8-vs-FP32 verification of a bundle, through edgemer's own runtime backends.

Every model file of the bundle is run on held-out inputs with
:func:`edgemer.backends.open_session` (one thread), exactly as a device would run it.
For each INT8 file against its FP32 reference the report gives: argmax agreement,
macro-F1 and accuracy against the labels (and the F1 drop in points), the largest
absolute difference of each output (in the output's own units) and the file sizes.

Targets (:class:`VerificationTargets`): argmax agreement >= 99 %, macro-F1 drop <= 1
point, INT8 ONNX size <= 0.35x FP32. They are reported as PASS/FAIL; nothing raises
unless ``strict``.

:func:`verify_models` is the comparison every modality shares; a modality adds its own
per-model metrics through its ``metrics`` hook (the physiology model's EDA forecast
error: :mod:`edgemer.export.physio.verify`). :func:`verify_classifier` is the plain
one-input classifier's report (face, speech, bring-your-own models).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgemer.backends import open_session
from edgemer.bundle import Bundle, load_bundle
from edgemer.errors import ExportError
from edgemer.export.core.config import VerificationTargets

BACKEND_OF_FORMAT = {"onnx": "onnxruntime", "tflite": "litert"}


def check_bundle_runs(bundle_dir: Path) -> None:
    """Load the finished bundle (hashes checked) and run each model once in its backend."""
    bundle = load_bundle(bundle_dir)
    x = bundle.samples()["signals"][:1]
    name = bundle.manifest.inputs[0].name
    for key, mf in bundle.manifest.models.items():
        out = open_session(bundle, BACKEND_OF_FORMAT[mf.format], mf.precision, threads=1).run({name: x})
        if not all(np.isfinite(v).all() for v in out.values()):
            raise ExportError(f"{bundle_dir / mf.file}: model '{key}' gives non-finite outputs; re-export, or report it")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``y_true`` or ``y_pred``."""
    scores = []
    for c in range(n_classes):
        tp = int(np.sum((y_pred == c) & (y_true == c)))
        fp = int(np.sum((y_pred == c) & (y_true != c)))
        fn = int(np.sum((y_pred != c) & (y_true == c)))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def run_model(bundle: Bundle, key: str, signals: np.ndarray) -> dict[str, np.ndarray]:
    """Run model ``key`` of ``bundle`` on each window; outputs stacked as ``{name: [n, ...]}`` float32.

    signals: [n, *input_shape[1:]] float32 (standardised windows).
    """
    mf = bundle.manifest.models[key]
    session = open_session(bundle, BACKEND_OF_FORMAT[mf.format], mf.precision, threads=1)
    name = bundle.manifest.inputs[0].name
    rows = [session.run({name: signals[i:i + 1]}) for i in range(len(signals))]
    return {spec.name: np.concatenate([r[spec.name] for r in rows]) for spec in bundle.manifest.outputs}


def target_check(name: str, comparison: str, value: float, op: str, threshold: float) -> dict[str, Any]:
    passed = value >= threshold if op == ">=" else value <= threshold
    return {"name": name, "comparison": comparison, "value": value, "op": op, "threshold": threshold,
            "passed": bool(passed)}


def comparison_pairs(keys: Sequence[str], fp32_pairs: bool = True) -> list[tuple[str, str]]:
    """(reference, candidate) model keys: each INT8 file against its FP32 reference (INT8 TFLite
    against FP32 TFLite when the bundle has one), and with ``fp32_pairs`` FP32 TFLite against FP32 ONNX."""
    pairs = [("fp32-onnx", "int8-onnx")] if "int8-onnx" in keys else []
    if "int8-tflite" in keys:
        pairs.append(("fp32-tflite" if "fp32-tflite" in keys else "fp32-onnx", "int8-tflite"))
    if fp32_pairs and "fp32-tflite" in keys:
        pairs.append(("fp32-onnx", "fp32-tflite"))
    return pairs


def _scores(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, float]:
    return {"macro_f1": macro_f1(labels, pred, n_classes), "accuracy": float(np.mean(pred == labels))}


def verify_models(bundle: Bundle, inputs: np.ndarray, labels: np.ndarray, output: str, heldout: dict[str, Any],
                  targets: VerificationTargets = VerificationTargets(), strict: bool = False,
                  variants: Mapping[str, np.ndarray] | None = None,
                  metrics: Callable[[dict[str, np.ndarray]], dict[str, float]] | None = None,
                  item: str = "samples") -> dict[str, Any]:
    """Run every model of ``bundle`` on held-out inputs, compare each INT8 file with its FP32 reference
    and check the targets; return the report dict.

    Parameters
    ----------
    inputs
        ``[n, *input_shape[1:]]`` float32 model inputs.
    labels
        ``[n]`` int class index.
    output
        The output holding class scores (logits or probabilities; argmax is used).
    heldout
        The report's ``heldout`` section (counts, labels, anything the modality adds).
    variants
        Optional named alternative inputs of the same samples (e.g.
        ``{"upper-face occluded": ..., "lower-face occluded": ...}``); each model's
        accuracy and macro-F1 on each are reported under ``models[key]["variants"]``.
    metrics
        Hook: a model's outputs ``{name: [n, ...]}`` -> more per-model metrics (e.g.
        ``{"eda_forecast_rmse_uS": ...}``), reported per model and compared as
        ``NAME_reference``/``NAME_candidate``.
    strict
        Raise :class:`ExportError` when a target fails.
    item
        What one input is, for the strict error (``windows``, ``samples``).

    Notes
    -----
    Comparisons: :func:`comparison_pairs`. Targets on each INT8 comparison: argmax
    agreement and macro-F1 drop; on INT8 vs FP32 ONNX: the size ratio.
    """
    m = bundle.manifest
    n_classes = len(m.labels)
    labels = np.asarray(labels, np.int64)
    outs: dict[str, dict[str, np.ndarray]] = {}
    models: dict[str, dict[str, Any]] = {}
    extra: list[str] = []  # the names of the metrics hook's per-model metrics
    for key, mf in m.models.items():
        outs[key] = run_model(bundle, key, inputs)
        row: dict[str, Any] = {"file": mf.file, "format": mf.format, "precision": mf.precision,
                               "backend": BACKEND_OF_FORMAT[mf.format], "bytes": (bundle.path / mf.file).stat().st_size,
                               **_scores(labels, outs[key][output].argmax(axis=1), n_classes)}
        if metrics is not None:
            more = metrics(outs[key])
            row.update(more)
            extra = list(more)
        if variants:
            row["variants"] = {name: _scores(labels, run_model(bundle, key, x)[output].argmax(axis=1), n_classes)
                               for name, x in variants.items()}
        models[key] = row
    comparisons = {}
    for ref, cand in comparison_pairs(list(models)):
        mr, mc = models[ref], models[cand]
        comparisons[f"{cand} vs {ref}"] = {
            "reference": ref, "candidate": cand,
            "argmax_agreement": float(np.mean(outs[ref][output].argmax(1) == outs[cand][output].argmax(1))),
            "macro_f1_reference": mr["macro_f1"], "macro_f1_candidate": mc["macro_f1"],
            "macro_f1_drop_points": 100.0 * (mr["macro_f1"] - mc["macro_f1"]),
            "accuracy_reference": mr["accuracy"], "accuracy_candidate": mc["accuracy"],
            "max_abs_error": {name: float(np.max(np.abs(outs[ref][name] - outs[cand][name]))) for name in outs[ref]},
            **{f"{name}_{side}": row[name] for name in extra for side, row in (("reference", mr), ("candidate", mc))},
            "bytes_reference": mr["bytes"], "bytes_candidate": mc["bytes"], "size_ratio": mc["bytes"] / mr["bytes"],
        }
    checks = []
    for label, row in comparisons.items():
        if row["candidate"].startswith("int8"):
            checks.append(target_check("argmax agreement", label, row["argmax_agreement"], ">=",
                                       targets.min_argmax_agreement))
            checks.append(target_check("macro-F1 drop (points)", label, row["macro_f1_drop_points"], "<=",
                                       targets.max_macro_f1_drop_points))
    checks.append(target_check("INT8/FP32 size ratio", "int8-onnx vs fp32-onnx",
                               comparisons["int8-onnx vs fp32-onnx"]["size_ratio"], "<=",
                               targets.max_int8_onnx_size_ratio))
    report = {"heldout": heldout, "models": models, "comparisons": comparisons, "targets": checks,
              "thresholds": asdict(targets), "passed": all(c["passed"] for c in checks)}
    if strict and not report["passed"]:
        failed = "; ".join(f"{c['comparison']}: {c['name']} {c['value']:.4g} (needs {c['op']} {c['threshold']})"
                           for c in checks if not c["passed"])
        raise ExportError(f"bundle {bundle.path}: verification targets failed ({failed}). Train longer, use more "
                          f"calibration {item}, or re-run without --strict to keep the bundle.")
    return report


def _fmt_target(c: dict[str, Any]) -> str:
    value = c["value"]
    if c["name"] == "argmax agreement":
        shown, need = f"{value * 100:.2f} %", f"{c['threshold'] * 100:g} %"
    elif "ratio" in c["name"]:
        shown, need = f"{value:.3f}x", f"{c['threshold']:g}x"
    else:
        shown, need = f"{value:.2f}", f"{c['threshold']:g}"
    return f"{'PASS' if c['passed'] else 'FAIL'}  {c['comparison']}: {c['name']} {shown} (target {c['op']} {need})"


def guard_summary(guard: dict[str, Any]) -> str:
    """One line on what the accuracy guard did (``report["guard"]``, from
    :func:`~edgemer.export.core.guard.guarded_quantise`)."""
    steps, final = guard["steps"], guard["final"]
    first = steps[0]
    kept = guard.get("guard_excluded") or []
    what = (f"INT8 ONNX {final['metric']} drop {first['drop_points']:.2f} points at first"
            + (f", {final['drop_points']:.2f} after keeping {len(kept)} nodes in FP32 ({len(steps) - 1} "
               f"re-quantisations)" if len(steps) > 1 else "")
            + f" (bound <= {guard['max_drop_points']:g}): {'met' if guard['passed'] else 'NOT met'}")
    return what


def guard_markdown(guard: dict[str, Any]) -> list[str]:
    """The ``## Accuracy guard`` section: the summary, one row per quantisation, the nodes kept in FP32."""
    lines = ["", "## Accuracy guard", "", guard_summary(guard) + ".", "",
             f"Evaluated on the held-out set above, through onnxruntime; scope: {guard.get('scope', 'INT8 ONNX')}.",
             "", f"| step | nodes in FP32 | FP32 {guard['final']['metric']} | INT8 {guard['final']['metric']} | "
                 f"drop (pt) | argmax agreement |", "|---:|---:|---:|---:|---:|---:|"]
    for st in guard["steps"]:
        lines.append(f"| {st['step']} | {len(st['excluded'])} | {st['fp32']:.4f} | {st['int8']:.4f} | "
                     f"{st['drop_points']:.2f} | {st['argmax_agreement'] * 100:.2f} % |")
    if guard.get("guard_excluded"):
        lines += ["", "Kept in FP32 by the guard: " + ", ".join(f"`{n}`" for n in guard["guard_excluded"]) + "."]
    return lines


def target_lines(report: dict[str, Any]) -> list[str]:
    """One ``PASS ...``/``FAIL ...`` line per target."""
    return [_fmt_target(c) for c in report["targets"]]


def comparison_markdown(report: dict[str, Any]) -> list[str]:
    """The table of the report's comparisons: argmax agreement, macro-F1 drop, size ratio, max abs error."""
    lines = ["| comparison | argmax agreement | macro-F1 drop (pt) | size ratio | max abs error per output |",
             "|---|---:|---:|---:|---|"]
    for label, row in report["comparisons"].items():
        errs = ", ".join(f"{k} {v:.3g}" for k, v in row["max_abs_error"].items())
        lines.append(f"| {label} | {row['argmax_agreement'] * 100:.2f} % | {row['macro_f1_drop_points']:.2f} | "
                     f"{row['size_ratio']:.3f} | {errs} |")
    return lines


def closing_markdown(report: dict[str, Any]) -> list[str]:
    """The end of verification.md: the report's extra sections, the accuracy guard, the targets and the verdict."""
    lines = []
    for section, body in (report.get("extra_sections") or {}).items():
        lines += ["", f"## {section}", "", body]
    if report.get("guard"):
        lines += guard_markdown(report["guard"])
    lines += ["", "## Targets", ""] + [f"- {line}" for line in target_lines(report)]
    return lines + ["", f"Overall: {'PASS' if report['passed'] else 'FAIL'}", ""]


def write_verification(bundle_dir: Path, report: dict[str, Any], title: str,
                       render: Callable[[dict[str, Any], str], str] | None = None) -> list[Path]:
    """Write ``verification.json`` and ``verification.md`` into ``bundle_dir``; return their paths.

    render: turns the report into Markdown (default :func:`classifier_markdown`; the
    physiology report: :func:`edgemer.export.physio.verify.verification_markdown`).
    """
    j = Path(bundle_dir) / "verification.json"
    md = Path(bundle_dir) / "verification.md"
    j.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md.write_text((render or classifier_markdown)(report, title), encoding="utf-8")
    return [j, md]


# -- plain classifiers (one input, class scores out), e.g. face expression ---------------------------

def verify_classifier(bundle: Bundle, inputs: np.ndarray, labels: np.ndarray, output: str,
                      targets: VerificationTargets = VerificationTargets(), strict: bool = False,
                      variants: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Verify every model of a one-input classifier bundle on held-out inputs; return the report dict.

    The checks and targets of :func:`verify_models` (same arguments: ``inputs``
    ``[n, *input_shape[1:]]`` float32, ``labels`` ``[n]`` class index, ``output`` the
    class-score output, optional ``variants``), with the ``heldout`` section made here
    (samples, class counts, labels, variant names); report ``kind`` is ``"classifier"``.
    """
    labels = np.asarray(labels, np.int64)
    m = bundle.manifest
    heldout = {"samples": int(len(labels)), "windows": int(len(labels)),
               "class_counts": np.bincount(labels, minlength=len(m.labels)).tolist(), "labels": list(m.labels),
               "variants": list(variants or {})}
    return {"kind": "classifier", **verify_models(bundle, inputs, labels, output, heldout, targets, strict, variants)}


def classifier_markdown(report: dict[str, Any], title: str) -> str:
    """A :func:`verify_classifier` report as a short Markdown document (verification.md)."""
    h = report["heldout"]
    variants = h.get("variants") or []
    lines = [f"# Verification: {title}", "",
             f"Held-out samples: {h['samples']} (per class {dict(zip(h['labels'], h['class_counts']))}). "
             f"Every model file ran through edgemer's own backends, one thread.", "",
             "| model | backend | size (KiB) | macro-F1 | accuracy |" + "".join(f" accuracy, {v} |" for v in variants),
             "|---|---|---:|---:|---:|" + "---:|" * len(variants)]
    for key, row in report["models"].items():
        extra = "".join(f" {row['variants'][v]['accuracy']:.4f} |" for v in variants)
        lines.append(f"| {key} | {row['backend']} | {row['bytes'] / 1024:.1f} | {row['macro_f1']:.4f} | "
                     f"{row['accuracy']:.4f} |{extra}")
    return "\n".join(lines + [""] + comparison_markdown(report) + closing_markdown(report))
