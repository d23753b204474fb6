"""Writing a bundle folder: model file names, IO specs, samples.npz and manifest.json.

The manifest is the contract with the runtime (:mod:`edgemer.bundle`): this module
builds it, lists every other file of the folder under ``files`` with its sha256 and
size, and checks that :meth:`edgemer.bundle.Manifest.from_dict` accepts it before
writing.

:func:`write_classifier_bundle` is the whole tail of a trained one-input classifier's
export (model files under the accuracy guard, samples, manifest, verification, metrics,
final check), shared by the speech and face exports; what a modality adds to the
verification comes in through its ``verify_more`` hook.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from edgemer import __version__
from edgemer.bundle import MANIFEST_NAME, SCHEMA_VERSION, Bundle, Manifest, TensorSpec, file_entry
from edgemer.errors import EdgemerError, ExportError, ManifestError

MODEL_FILES: dict[str, tuple[str, str, str]] = {
    "fp32-onnx": ("model_fp32.onnx", "onnx", "fp32"),
    "int8-onnx": ("model_int8.onnx", "onnx", "int8"),
    "fp32-tflite": ("model_fp32.tflite", "tflite", "fp32"),
    "int8-tflite": ("model_int8.tflite", "tflite", "int8"),
}
"""Manifest model key -> (file name, format, precision)."""

SAMPLES_NAME = "samples.npz"
MAX_SAMPLES = 64


def models_section(keys: list[str]) -> dict[str, dict[str, str]]:
    """The manifest ``models`` entries for the given model keys (see :data:`MODEL_FILES`)."""
    return {k: {"file": MODEL_FILES[k][0], "format": MODEL_FILES[k][1], "precision": MODEL_FILES[k][2]} for k in keys}


def physio_io(n_samples: int, n_forecast: int, n_channels: int = 4, n_classes: int = 3
              ) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs of the physiology model (batch of 1), in the forward's order."""
    n_out = n_samples + n_forecast
    inputs = [TensorSpec("signals", (1, n_channels, n_samples))]
    outputs = [TensorSpec("class_logits", (1, n_classes)), TensorSpec("eda", (1, n_out)),
               TensorSpec("drive", (1, n_out)), TensorSpec("eda_tonic", (1, 1))]
    return inputs, outputs


def write_samples(path: Path, signals: np.ndarray, labels: np.ndarray, max_samples: int = MAX_SAMPLES) -> Path:
    """Save up to ``max_samples`` windows, evenly spread over the given ones, without pickles.

    signals: [n, 4, N] float32 standardised windows -> ``signals``; labels: [n] -> ``labels`` int64.
    """
    n = len(labels)
    idx = np.unique(np.linspace(0, n - 1, num=min(n, max_samples)).round().astype(np.int64)) if n else np.zeros(0, int)
    np.savez(path, signals=np.asarray(signals[idx], np.float32), labels=np.asarray(labels[idx], np.int64))
    return Path(path)


def file_entries(bundle_dir: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file in ``bundle_dir`` except manifest.json (sorted by name)."""
    entries = {}
    for f in sorted(Path(bundle_dir).iterdir()):
        if f.name == MANIFEST_NAME:
            continue
        if not f.is_file():
            raise ExportError(f"{f}: a bundle holds plain files only; remove this entry")
        entries[f.name] = file_entry(f)
    return entries


def write_manifest(bundle_dir: Path, manifest: Mapping[str, Any]) -> Manifest:
    """Add ``files`` (every file now in the folder) and ``schema_version``, validate, write manifest.json.

    Raises :class:`ExportError` when the result would not load (a bug in the exporter).
    """
    data = {"schema_version": SCHEMA_VERSION, **manifest, "files": file_entries(bundle_dir)}
    path = Path(bundle_dir) / MANIFEST_NAME
    try:
        parsed = Manifest.from_dict(data, source=str(path))
    except ManifestError as exc:
        raise ExportError(f"the manifest edgemer built does not validate ({exc}); "
                          f"this is a bug, please report it") from exc
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return parsed


def write_model_files(model: Any, example: Any, folder: Path, calibration: np.ndarray, inputs: list[TensorSpec],
                      outputs: list[TensorSpec], onnx_options: Any = None, tflite_int8: bool = True,
                      tflite_fp32: bool = False, guard: Any = None) -> tuple[list[str], dict[str, Any]]:
    """Write a one-input torch model's files into ``folder`` with the shared converters.

    FP32 ONNX (:func:`~edgemer.export.core.onnx_export.export_onnx`), static INT8 ONNX
    (:func:`~edgemer.export.core.quantize.quantize_onnx`) and, as asked, fully-integer
    INT8 and FP32 TFLite (:mod:`edgemer.export.core.tflite`).

    Parameters
    ----------
    model
        The torch module.
    example
        An input tensor ``[1, ...]``.
    folder
        The bundle folder being written.
    calibration
        ``[n, ...]`` float32 inputs for the INT8 ranges.
    inputs, outputs
        The model's IO specs, in the forward's order (names become the ONNX tensor names).
    onnx_options
        ``OnnxQuantOptions`` (default: its defaults).
    tflite_int8, tflite_fp32
        Also write the fully-integer INT8 / the FP32 TFLite file.
    guard
        A :class:`~edgemer.export.core.guard.GuardTask`, or None for plain quantisation.

    Returns
    -------
    tuple
        The manifest model keys written and the manifest ``quantisation`` section.

    Notes
    -----
    With ``guard``, the INT8 ONNX model is made under the accuracy guard
    (:func:`~edgemer.export.core.guard.guarded_quantise`), which keeps sensitive nodes in
    FP32 step by step until the bound holds; what it did is recorded as
    ``quantisation.onnx.guard`` (and the nodes kept as ``nodes_to_exclude``).
    """
    from edgemer.export.core.config import OnnxQuantOptions
    from edgemer.export.core.onnx_export import export_onnx
    from edgemer.export.core.quantize import quantize_onnx

    options = onnx_options or OnnxQuantOptions()
    folder = Path(folder)
    in_name = inputs[0].name
    export_onnx(model, example, folder / MODEL_FILES["fp32-onnx"][0], input_name=in_name,
                output_names=[o.name for o in outputs])
    keys = ["fp32-onnx", "int8-onnx"]
    quant: dict[str, Any] = {"onnx": {**options.to_dict(), "calibration_windows": int(len(calibration))}}
    if guard is None:
        quantize_onnx(folder / MODEL_FILES["fp32-onnx"][0], folder / MODEL_FILES["int8-onnx"][0], calibration,
                      options, input_name=in_name)
    else:
        from edgemer.export.core.guard import GUARD_SCOPE, guarded_quantise

        result = guarded_quantise(folder / MODEL_FILES["fp32-onnx"][0], folder / MODEL_FILES["int8-onnx"][0],
                                  calibration, options, in_name, guard)
        quant["onnx"]["nodes_to_exclude"] = list(result.excluded)
        quant["onnx"]["guard"] = {**result.to_dict(), "scope": GUARD_SCOPE}
    if tflite_fp32 or tflite_int8:
        from edgemer.export.core.tflite import export_tflite_fp32, export_tflite_int8

        if tflite_fp32:
            export_tflite_fp32(model, example, folder / MODEL_FILES["fp32-tflite"][0])
            keys.append("fp32-tflite")
        if tflite_int8:
            path = folder / MODEL_FILES["int8-tflite"][0]
            export_tflite_int8(model, example, path, calibration)
            keys.append("int8-tflite")
            quant["tflite"] = tflite_quantisation_section(path, inputs, outputs, len(calibration))
    return keys, quant


def tflite_quantisation_section(path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec],
                                calibration_windows: int) -> dict[str, Any]:
    """The manifest ``quantisation.tflite`` entry of a fully-integer INT8 ``.tflite`` file: method and
    each IO tensor's signature name, dtype, scale and zero point (IO specs in the forward's order)."""
    from edgemer.export.core.tflite import tflite_io_quantisation

    io = tflite_io_quantisation(path)
    return {
        "method": "litert-torch PT2E, symmetric per-channel static INT8 (fully integer)",
        "calibration_windows": int(calibration_windows),
        "inputs": {s.name: {"signature_name": sig, **q} for s, (sig, q) in zip(inputs, io["inputs"].items())},
        "outputs": {s.name: {"signature_name": sig, **q} for s, (sig, q) in zip(outputs, io["outputs"].items())},
    }


CONVERSION_HINT = ("Check torch==2.13.0, onnx, onnxscript, onnxruntime and litert-torch==0.10.0 "
                   "(pip install 'edgemer[export]'), or pass --no-tflite.")
"""What to do when the model conversion stage fails (see :func:`export_stage`)."""
VERIFICATION_HINT = "The bundle's models do not run in edgemer's backends; re-export, or report it."
"""What to do when the verification stage fails."""
FINAL_CHECK_HINT = "The written bundle does not load or run; re-export, or report it."
"""What to do when the final check of the written bundle fails."""


@dataclass(frozen=True)
class ClassifierSpec:
    """The manifest entries a modality decides for a one-input classifier bundle.

    modality, task, labels: as in the manifest. inputs / outputs: the model's IO specs in
    the forward's order; ``outputs[0]`` holds the class scores. front_end: the runtime
    front-end's ``to_dict()``. heldout_key: the name of the held-out count in the
    manifest's ``metrics.heldout`` (``windows``, ``samples``).
    """

    modality: str
    task: str
    labels: tuple[str, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    front_end: dict[str, Any]
    heldout_key: str = "samples"


def write_classifier_bundle(folder: Path, model: Any, spec: ClassifierSpec, calibration: np.ndarray,
                            x_held: np.ndarray, y_held: np.ndarray, manifest_extra: Mapping[str, Any], title: str,
                            onnx_options: Any = None, tflite: bool = True, targets: Any = None, guard_steps: int = 8,
                            max_samples: int = MAX_SAMPLES, variants: Mapping[str, np.ndarray] | None = None,
                            verify_more: Callable[[dict[str, Any], Bundle], Mapping[str, Any] | None] | None = None
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write model files, samples, manifest and verification of a trained classifier into ``folder``.

    Parameters
    ----------
    model
        The torch module; input ``[1, ...]`` as ``spec.inputs[0]``, class scores first among its outputs.
    spec
        The manifest entries the modality decides (:class:`ClassifierSpec`).
    calibration
        ``[n, ...]`` float32 model inputs for the INT8 ranges.
    x_held, y_held
        Held-out model inputs ``[n, ...]`` float32 and their ``[n]`` class index: the
        accuracy guard's set, ``samples.npz`` (at most ``max_samples``) and the verification's.
    manifest_extra
        name, provenance, training, metrics... merged into the manifest.
    title
        The verification report's title.
    onnx_options, tflite, guard_steps
        As for :func:`write_model_files` (``guard_steps`` 0: plain quantisation; otherwise
        the guard's bound is the macro-F1 drop target of ``targets``).
    targets
        ``VerificationTargets`` (default: its defaults).
    variants
        Named alternative held-out inputs reported per model (see
        :func:`~edgemer.export.core.verify.verify_classifier`).
    verify_more
        Hook ``(report, bundle) -> metrics or None`` run after the shared checks: it adds
        to the report (more targets, ``extra_sections``) and may return manifest metrics:
        ``{"models": {key: {...}}, ...}`` (merged per model; other entries at the top).

    Returns
    -------
    tuple
        ``(verification report, manifest)``.
    """
    from edgemer._extras import require
    from edgemer.bundle import load_bundle
    from edgemer.export.core.config import OnnxQuantOptions, VerificationTargets
    from edgemer.export.core.guard import GuardTask
    from edgemer.export.core.verify import (check_bundle_runs, classifier_markdown, verify_classifier,
                                            write_verification)

    torch = require("torch", "export", f"Writing a {spec.modality} bundle")
    targets = targets or VerificationTargets()
    output = spec.outputs[0].name
    example = torch.from_numpy(calibration[:1].copy())
    with export_stage("model conversion", CONVERSION_HINT):
        guard = GuardTask(x_held, y_held, output, targets.max_macro_f1_drop_points,
                          max_steps=guard_steps) if guard_steps else None
        keys, quantisation = write_model_files(model, example, folder, calibration, list(spec.inputs),
                                               list(spec.outputs), onnx_options or OnnxQuantOptions(),
                                               tflite_int8=tflite, guard=guard)
    write_samples(folder / SAMPLES_NAME, x_held, y_held, max_samples=max_samples)
    manifest: dict[str, Any] = {
        "modality": spec.modality,
        "task": spec.task,
        "labels": list(spec.labels),
        "models": models_section(keys),
        "inputs": [s.to_dict() for s in spec.inputs],
        "outputs": [s.to_dict() for s in spec.outputs],
        "front_end": spec.front_end,
        "quantisation": quantisation,
        **manifest_extra,
    }
    write_manifest(folder, manifest)
    with export_stage("verification", VERIFICATION_HINT):
        bundle = load_bundle(folder)
        report = verify_classifier(bundle, x_held, y_held, output, targets, variants=variants)
        if "guard" in quantisation["onnx"]:
            report["guard"] = quantisation["onnx"]["guard"]
        more = dict((verify_more(report, bundle) if verify_more is not None else None) or {})
    write_verification(folder, report, title, render=classifier_markdown)
    per_model = more.pop("models", {})
    manifest["metrics"] = {
        "heldout": {spec.heldout_key: int(len(y_held)),
                    "class_counts": np.bincount(y_held, minlength=len(spec.labels)).tolist()},
        "models": {k: {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                       **{f"accuracy_{v.split()[0]}": vr["accuracy"] for v, vr in r.get("variants", {}).items()},
                       **per_model.get(k, {})}
                   for k, r in report["models"].items()},
        **more,
        "targets_passed": report["passed"],
        **manifest.get("metrics", {}),
    }
    manifest = dict(write_manifest(folder, manifest).raw)
    with export_stage("final check", FINAL_CHECK_HINT):
        check_bundle_runs(folder)
    return report, manifest


def looks_like_bundle(path: Path) -> bool:
    """True when ``path`` holds a manifest (so ``--overwrite`` may replace it)."""
    return (path / MANIFEST_NAME).is_file()


@contextlib.contextmanager
def export_stage(what: str, hint: str) -> Iterator[None]:
    """Turn an untyped failure of ``what`` into :class:`ExportError` (edgemer errors pass through)."""
    try:
        yield
    except EdgemerError:
        raise
    except Exception as exc:  # torch / onnx / litert raise many untyped errors
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ExportError(f"{what} failed ({type(exc).__name__}: {text}). {hint}") from exc


def provenance_section(synthetic: bool, dataset: str, command: str, train_on_real_data: str, note: str,
                       use_real_model: str | None = None, **details: Any) -> dict[str, Any]:
    """The manifest ``provenance`` of a trained bundle.

    Keys in order: ``synthetic_data``, ``dataset``, the ``details`` (e.g. the held-out
    subjects), ``trained_with`` (:func:`toolchain_versions`), ``created_utc``, ``command``,
    ``train_on_real_data`` (the command to train on real data), ``use_real_model`` (when
    given) and ``note`` (what the bundle is; for synthetic data, that it is not validated).
    """
    prov: dict[str, Any] = {
        "synthetic_data": synthetic,
        "dataset": dataset,
        **details,
        "trained_with": toolchain_versions(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "train_on_real_data": train_on_real_data,
    }
    if use_real_model is not None:
        prov["use_real_model"] = use_real_model
    prov["note"] = note
    return prov


def toolchain_versions() -> dict[str, str]:
    out = {"edgemer": __version__}
    for dist in ("torch", "onnx", "onnxruntime", "litert-torch", "ai-edge-litert", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


@dataclass(frozen=True)
class BundleExportResult:
    """What an export produced: the bundle folder, its verification report and manifest.

    Each ``edgemer export`` kind subclasses it with its own :meth:`summary`.
    """

    bundle_dir: Path
    verification: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def passed(self) -> bool:
        """Whether every verification target passed."""
        return bool(self.verification.get("passed"))

    def summary(self) -> str:
        """A few lines for the terminal."""
        return "\n".join(self._head_lines() + self._closing_lines())

    def _head_lines(self, synthetic_what: str = "data") -> list[str]:
        """The bundle line, the data line and, for synthetic data, the label and the real-data command."""
        m = self.manifest
        prov = m.get("provenance", {})
        lines = [f"bundle    {m['name']} -> {self.bundle_dir}", f"data      {prov.get('dataset', 'unknown')}"]
        if prov.get("synthetic_data"):
            lines.append(f"          SYNTHETIC {synthetic_what}: shows the pipeline working, not validated "
                         "recognition. Real data:")
            lines.append(f"          {prov.get('train_on_real_data', '(see README)')}")
        return lines

    def _training_line(self, extra: str = "") -> list[str]:
        """One line on the training history (epochs, time, final loss, accuracies), or none."""
        tr = self.manifest.get("training", {}).get("history")
        if not tr:
            return []
        last = tr["epochs"][-1]
        return [f"training  {len(tr['epochs'])} epochs in {tr['seconds']:.0f} s; final loss {last['loss']:.3f}, "
                f"train accuracy {last['train_accuracy']:.3f}, held-out {last['heldout_accuracy']:.3f}{extra}"]

    def _closing_lines(self) -> list[str]:
        """One line per verification target, then the overall verdict."""
        from edgemer.export.core.verify import guard_summary, target_lines

        guard = self.verification.get("guard")
        lines = [f"guard     {guard_summary(guard)}"] if guard else []
        lines += [f"target    {line}" for line in target_lines(self.verification)]
        return lines + [f"overall   {'PASS' if self.passed else 'FAIL'}"]
