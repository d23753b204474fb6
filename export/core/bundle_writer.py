"""Writing a bundle folder: model file names, IO specs, samples.npz and manifest.json.

The manifest is the contract with the runtime (:mod:`edgemer.bundle`): this module
builds it, lists every other file of the folder under ``files`` with its sha256 and
size, and checks that :meth:`edgemer.bundle.Manifest.from_dict` accepts it before
writing.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from edgemer import __version__
from edgemer.bundle import MANIFEST_NAME, SCHEMA_VERSION, Manifest, TensorSpec, file_entry
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
    example: an input tensor ``[1, ...]``. calibration: ``[n, ...]`` float32 inputs for
    the INT8 ranges. inputs / outputs: the model's IO specs, in the forward's order
    (names become the ONNX tensor names). onnx_options: ``OnnxQuantOptions`` (default).
    guard: a :class:`~edgemer.export.core.guard.GuardTask`: the INT8 ONNX model is made
    under the accuracy guard (:func:`~edgemer.export.core.guard.guarded_quantise`), which
    keeps sensitive nodes in FP32 step by step until the bound holds; what it did is
    recorded as ``quantisation.onnx.guard`` (and the nodes kept as ``nodes_to_exclude``).

    Returns the manifest model keys written and the manifest ``quantisation`` section.
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
