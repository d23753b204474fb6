"""Verification of speech bundles: regression outputs and output correlation, next to the
shared classifier checks of :mod:`edgemer.export.core.verify`.

Every model file runs through edgemer's own backends (:func:`edgemer.export.core.verify.run_model`,
one thread). For each INT8 file against its FP32 reference (the same pairs as
:func:`~edgemer.export.core.verify.verify_classifier`):

- :func:`verify_dimensions`: Pearson r of each regression column (arousal, valence,
  dominance) and of all columns together, the largest absolute difference, and each
  model's r against the ground-truth targets. Target: r >= ``min_r`` (0.99).
- :func:`verify_outputs`: for models without labelled data (a Hugging Face checkpoint
  checked on synthetic windows): r of all outputs together, argmax agreement of a class
  output. Target: r >= ``min_r``.

:func:`add_dimensions` folds a dimensions report into a classifier report (targets,
pass/fail and a Markdown section).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgemer.bundle import Bundle
from edgemer.export.core.verify import BACKEND_OF_FORMAT, comparison_pairs, run_model, target_check, target_lines


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally long arrays (flattened); 1.0 when both are the same constant."""
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    if a.size < 2:
        return float("nan")
    if np.std(a) == 0 or np.std(b) == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


@dataclass(frozen=True)
class Outputs:
    """Every model's outputs on the same inputs: ``{model key: {output name: [n, ...]}}``."""

    by_model: dict[str, dict[str, np.ndarray]]

    @classmethod
    def run(cls, bundle: Bundle, inputs: np.ndarray) -> "Outputs":
        return cls({key: run_model(bundle, key, inputs) for key in bundle.manifest.models})


def verify_dimensions(bundle: Bundle, inputs: np.ndarray, output: str, names: Sequence[str],
                      truth: np.ndarray | None = None, mask: np.ndarray | None = None, min_r: float = 0.99,
                      outputs: Outputs | None = None) -> dict[str, Any]:
    """INT8-vs-FP32 parity of a regression output (see the module docstring); returns the report dict.

    inputs: ``[n, *input_shape[1:]]`` float32. truth: ``[n, len(names)]`` targets (optional),
    mask: ``[n]`` bool, rows whose targets are known.
    """
    outs = outputs or Outputs.run(bundle, inputs)
    models: dict[str, Any] = {}
    for key, o in outs.by_model.items():
        row: dict[str, Any] = {"file": bundle.manifest.models[key].file,
                               "backend": BACKEND_OF_FORMAT[bundle.manifest.models[key].format]}
        if truth is not None:
            m = np.ones(len(truth), bool) if mask is None else np.asarray(mask, bool)
            row["r_vs_truth"] = {n: pearson(o[output][m, i], truth[m, i]) for i, n in enumerate(names)}
        models[key] = row
    comparisons, checks = {}, []
    for ref, cand in comparison_pairs(list(outs.by_model), fp32_pairs=False):
        a, b = outs.by_model[ref][output], outs.by_model[cand][output]
        label = f"{cand} vs {ref}"
        comparisons[label] = {"reference": ref, "candidate": cand, "r": pearson(a, b),
                              "r_per_dimension": {n: pearson(a[:, i], b[:, i]) for i, n in enumerate(names)},
                              "max_abs_error": float(np.max(np.abs(a - b)))}
        checks.append(target_check(f"regression r ({output})", label, comparisons[label]["r"], ">=", min_r))
    return {"output": output, "names": list(names), "models": models, "comparisons": comparisons,
            "targets": checks, "passed": all(c["passed"] for c in checks)}


def dimensions_markdown(dims: dict[str, Any]) -> str:
    """A Markdown table of a :func:`verify_dimensions` report."""
    names = dims["names"]
    lines = ["| comparison | r (all) | " + " | ".join(f"r {n}" for n in names) + " | max abs error |",
             "|---|---:|" + "---:|" * len(names) + "---:|"]
    for label, row in dims["comparisons"].items():
        lines.append(f"| {label} | {row['r']:.4f} | " + " | ".join(f"{row['r_per_dimension'][n]:.4f}" for n in names)
                     + f" | {row['max_abs_error']:.3g} |")
    truth_rows = [(k, r["r_vs_truth"]) for k, r in dims["models"].items() if "r_vs_truth" in r]
    if truth_rows:
        lines += ["", "| model | " + " | ".join(f"r {n} vs targets" for n in names) + " |",
                  "|---|" + "---:|" * len(names)]
        lines += [f"| {k} | " + " | ".join(f"{r[n]:.3f}" for n in names) + " |" for k, r in truth_rows]
    return "\n".join(lines)


def add_dimensions(report: dict[str, Any], dims: dict[str, Any]) -> dict[str, Any]:
    """Fold a dimensions report into a classifier report: targets, overall pass and a Markdown section."""
    report["dimensions"] = dims
    report["targets"] = list(report["targets"]) + dims["targets"]
    report["passed"] = all(c["passed"] for c in report["targets"])
    report.setdefault("extra_sections", {})["Dimensional outputs (arousal, valence, dominance)"] = \
        dimensions_markdown(dims)
    return report


def verify_outputs(bundle: Bundle, inputs: np.ndarray, class_output: str | None = None, min_r: float = 0.99
                   ) -> dict[str, Any]:
    """INT8-vs-FP32 correlation of every output on unlabelled inputs (see the module docstring)."""
    outs = Outputs.run(bundle, inputs)
    models = {key: {"file": bundle.manifest.models[key].file,
                    "backend": BACKEND_OF_FORMAT[bundle.manifest.models[key].format],
                    "bytes": (bundle.path / bundle.manifest.models[key].file).stat().st_size}
              for key in outs.by_model}
    comparisons, checks = {}, []
    for ref, cand in comparison_pairs(list(outs.by_model), fp32_pairs=False):
        a, b = outs.by_model[ref], outs.by_model[cand]
        label = f"{cand} vs {ref}"
        row: dict[str, Any] = {
            "reference": ref, "candidate": cand,
            "r": pearson(np.concatenate([a[k].reshape(-1) for k in sorted(a)]),
                         np.concatenate([b[k].reshape(-1) for k in sorted(b)])),
            "max_abs_error": {k: float(np.max(np.abs(a[k] - b[k]))) for k in a},
            "size_ratio": models[cand]["bytes"] / models[ref]["bytes"]}
        if class_output is not None:
            row["argmax_agreement"] = float(np.mean(a[class_output].argmax(1) == b[class_output].argmax(1)))
        comparisons[label] = row
        checks.append(target_check("output correlation r", label, row["r"], ">=", min_r))
    return {"kind": "output-correlation", "windows": int(len(inputs)), "models": models, "comparisons": comparisons,
            "targets": checks, "passed": all(c["passed"] for c in checks)}


def outputs_markdown(report: dict[str, Any], title: str) -> str:
    """A :func:`verify_outputs` report as a short Markdown document (verification.md)."""
    lines = [f"# Verification: {title}", "",
             f"{report['windows']} test windows; every model file ran through edgemer's own backends, one thread.", "",
             "| model | backend | size (KiB) |", "|---|---|---:|"]
    lines += [f"| {k} | {r['backend']} | {r['bytes'] / 1024:.1f} |" for k, r in report["models"].items()]
    lines += ["", "| comparison | output correlation r | argmax agreement | size ratio | max abs error |",
              "|---|---:|---:|---:|---|"]
    for label, row in report["comparisons"].items():
        agree = f"{row['argmax_agreement'] * 100:.1f} %" if "argmax_agreement" in row else "-"
        errs = ", ".join(f"{k} {v:.3g}" for k, v in row["max_abs_error"].items())
        lines.append(f"| {label} | {row['r']:.5f} | {agree} | {row['size_ratio']:.3f} | {errs} |")
    for section, body in (report.get("extra_sections") or {}).items():
        lines += ["", f"## {section}", "", body]
    lines += ["", "## Targets", ""] + [f"- {line}" for line in target_lines(report)]
    lines += ["", f"Overall: {'PASS' if report['passed'] else 'FAIL'}", ""]
    return "\n".join(lines)
