"""``edgemer export audio``: speech clips -> compact log-mel CNN -> verified INT8 bundle.

Steps (inside a temporary folder beside ``out_dir``, renamed into place only when
everything succeeded):

1. log-mel windows from RAVDESS, CREMA-D or a folder with labels.csv
   (:mod:`edgemer.export.audio.data`), computed exactly as the runtime front-end does,
   held-out speakers apart;
2. train the CNN with class and arousal/valence/dominance heads (:mod:`edgemer.export.audio.model`);
3. :func:`write_audio_bundle`: FP32 ONNX, static INT8 ONNX and INT8 TFLite through the
   shared converters (:func:`edgemer.export.core.bundle_writer.write_model_files`),
   ``samples.npz``, manifest, and verification of every file through edgemer's own
   backends: the shared classifier checks plus regression parity
   (:mod:`edgemer.export.audio.verify`).
"""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgemer._extras import require
from edgemer.bundle import TensorSpec, load_bundle
from edgemer.errors import ExportError
from edgemer.export.core.atomic import atomic_directory
from edgemer.export.audio.config import REAL_DATA_COMMANDS, USE_REAL_MODEL, AudioExportConfig
from edgemer.export.audio.data import AudioDataset, front_end_config, load_audio_data
from edgemer.export.audio.model import CLASS_OUTPUT, DIMS_OUTPUT, INPUT_NAME, SpeechTrainConfig, train_speech_cnn
from edgemer.export.audio.verify import add_dimensions, verify_dimensions
from edgemer.export.core.bundle_writer import (SAMPLES_NAME, models_section, write_manifest, write_model_files,
                                                write_samples)
from edgemer.export.core.bundle_writer import BundleExportResult, export_stage, looks_like_bundle, toolchain_versions
from edgemer.export.core.guard import GuardTask
from edgemer.export.core.training import pick
from edgemer.export.core.verify import check_bundle_runs, classifier_markdown, verify_classifier, write_verification
from edgemer.frontends.audio import DIMENSIONS, AudioFrontEndConfig


class AudioExportResult(BundleExportResult):
    """What an audio export produced: the bundle folder, its verification report and manifest."""

    def summary(self) -> str:
        """A few lines for the terminal: data, training, accuracy, regression parity, targets."""
        history = self.manifest.get("training", {}).get("history")
        extra = ""
        if history:
            last = history["epochs"][-1]
            extra = f", held-out r arousal {last['heldout_r_arousal']:.3f} valence {last['heldout_r_valence']:.3f}"
        lines = self._head_lines("speech (espeak-ng)") + self._training_line(extra)
        for key, row in self.verification["models"].items():
            lines.append(f"model     {key:12s} {row['bytes'] / 1024:7.1f} KiB  accuracy {row['accuracy']:.3f}  "
                         f"macro-F1 {row['macro_f1']:.3f}")
        for label, row in self.verification.get("dimensions", {}).get("comparisons", {}).items():
            per = ", ".join(f"{k} {v:.4f}" for k, v in row["r_per_dimension"].items())
            lines.append(f"parity    {label}: regression r {row['r']:.4f} ({per})")
        return "\n".join(lines + self._closing_lines())


def speech_io(front_end: AudioFrontEndConfig, n_classes: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs of the speech CNN (batch of 1), in the forward's order."""
    return ([TensorSpec(INPUT_NAME, front_end.input_shape())],
            [TensorSpec(CLASS_OUTPUT, (1, n_classes)), TensorSpec(DIMS_OUTPUT, (1, len(DIMENSIONS)))])


def write_audio_bundle(folder: Path, model: Any, front_end: AudioFrontEndConfig, labels: tuple[str, ...],
                       calibration: np.ndarray, x_held: np.ndarray, y_held: np.ndarray, avd_held: np.ndarray,
                       m_held: np.ndarray, manifest_extra: dict[str, Any], config: AudioExportConfig,
                       title: str = "speech emotion") -> tuple[dict[str, Any], dict[str, Any]]:
    """Write model files, samples, manifest and verification of a speech CNN into ``folder``.

    Parameters
    ----------
    model: torch module, input ``[1, 1, n_mels, n_frames]`` (standardised log-mel), outputs
        ``(emotion_logits [1, C], avd [1, 3])``.
    calibration / x_held: standardised model inputs ``[n, 1, n_mels, n_frames]``; y_held:
        ``[n]`` class index; avd_held ``[n, 3]`` targets, m_held ``[n]`` where known.
    manifest_extra: name, provenance, training, ... merged into the manifest.

    Returns ``(verification report, manifest)``.
    """
    torch = require("torch", "export", "Writing a speech bundle")
    inputs, outputs = speech_io(front_end, len(labels))
    example = torch.from_numpy(calibration[:1].copy())
    with export_stage("model conversion", "Check torch==2.13.0, onnx, onnxscript, onnxruntime and litert-torch==0.10.0 "
                                    "(pip install 'edgemer[export]'), or pass --no-tflite."):
        guard = GuardTask(x_held, y_held, CLASS_OUTPUT, config.targets.max_macro_f1_drop_points,
                          max_steps=config.guard_steps) if config.guard_steps else None
        keys, quantisation = write_model_files(model, example, folder, calibration, inputs, outputs,
                                               config.onnx_quantisation, tflite_int8=config.tflite, guard=guard)
    write_samples(folder / SAMPLES_NAME, x_held, y_held, max_samples=config.bundle_samples)
    manifest: dict[str, Any] = {
        "modality": "audio",
        "task": f"speech-emotion-{len(labels)}class+avd",
        "labels": list(labels),
        "models": models_section(keys),
        "inputs": [s.to_dict() for s in inputs],
        "outputs": [s.to_dict() for s in outputs],
        "front_end": front_end.to_dict(),
        "quantisation": quantisation,
        **manifest_extra,
    }
    write_manifest(folder, manifest)
    with export_stage("verification", "The bundle's models do not run in edgemer's backends; re-export, or report it."):
        bundle = load_bundle(folder)
        report = verify_classifier(bundle, x_held, y_held, CLASS_OUTPUT, config.targets)
        dims = verify_dimensions(bundle, x_held, DIMS_OUTPUT, DIMENSIONS, truth=avd_held, mask=m_held,
                                 min_r=config.min_regression_r)
        add_dimensions(report, dims)
        if "guard" in quantisation["onnx"]:
            report["guard"] = quantisation["onnx"]["guard"]
    write_verification(folder, report, f"{title} (INT8 vs FP32 on {len(y_held)} held-out windows)",
                       render=classifier_markdown)
    manifest["metrics"] = {
        "heldout": {"windows": int(len(y_held)), "class_counts": np.bincount(y_held, minlength=len(labels)).tolist()},
        "models": {k: {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                       **{f"r_{n}_vs_targets": v for n, v in dims["models"][k].get("r_vs_truth", {}).items()}}
                   for k, r in report["models"].items()},
        "regression_r_int8_vs_fp32": {label: row["r"] for label, row in dims["comparisons"].items()},
        "targets_passed": report["passed"],
    }
    manifest = dict(write_manifest(folder, manifest).raw)
    with export_stage("final check", "The written bundle does not load or run; re-export, or report it."):
        check_bundle_runs(folder)
    return report, manifest


def _provenance(data: AudioDataset, command: str) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "synthetic_data": data.synthetic,
        "dataset": data.source,
        "speakers_train": list(data.speakers_train),
        "speakers_heldout": list(data.speakers_heldout),
        "dimensional_targets": data.info.get("dimensional_targets"),
        "trained_with": toolchain_versions(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "train_on_real_data": REAL_DATA_COMMANDS,
        "use_real_model": USE_REAL_MODEL,
    }
    if data.synthetic:
        prov["note"] = ("Trained on SYNTHETIC speech from espeak-ng (speaking rate, pitch and loudness stand in for "
                        "arousal), not on recordings of people. Its outputs show the speech pipeline working (voice "
                        "activity, log-mel, INT8 inference); it is not a validated emotion recogniser. Train on "
                        "RAVDESS or CREMA-D ('train_on_real_data') or export a real wav2vec2/HuBERT checkpoint "
                        "('use_real_model').")
    else:
        prov["note"] = f"Trained on {data.source}."
    return prov


def export_audio(data: str | AudioDataset, out_dir: Path, config: AudioExportConfig = AudioExportConfig(),
                 progress: bool = True, overwrite: bool = False, command: str | None = None) -> AudioExportResult:
    """Train the compact speech CNN on ``data`` and write a verified bundle to ``out_dir``.

    Parameters
    ----------
    data: a data spec (``ravdess:DIR``, ``crema-d:DIR``, ``folder:DIR``) or a loaded
        :class:`~edgemer.export.audio.data.AudioDataset` made with the same ``config``.
    out_dir: bundle folder to create (missing or empty; a previous bundle is replaced
        only with ``overwrite``).

    Raises
    ------
    ConfigError / DatasetError: a bad spec, or data missing, unreadable or malformed.
    MissingExtraError: torch/onnx missing (extra ``export``).
    ExportError: training, conversion or verification failed; nothing is left behind.
    """
    require("torch", "export", "Training the speech emotion CNN (edgemer export audio)")
    out_dir = Path(out_dir).expanduser().absolute()
    spec = data if isinstance(data, str) else "dataset"
    command = command or config.as_command(spec, out_dir)
    with atomic_directory(out_dir, overwrite, looks_like_bundle, "bundle", ExportError,
                          "overwrite=True (--overwrite)") as tmp:
        dataset = data if isinstance(data, AudioDataset) else load_audio_data(data, config, progress)
        fe = front_end_config(config)
        if dataset.x_train.shape[2:] != fe.input_shape()[2:]:
            raise ExportError(f"the data's windows are {dataset.x_train.shape[2:]}, the config gives "
                              f"{fe.input_shape()[2:]}; load them with the same config")
        train = SpeechTrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
                                  width=config.width, dims_weight=config.dims_weight)
        with export_stage("training", "Check the data, or lower --lr."):
            model, history = train_speech_cnn(dataset, train, progress=progress)
        fe = front_end_config(config, tuple(float(v) for v in dataset.mean), tuple(float(v) for v in dataset.std))
        x_train = dataset.normalised(dataset.x_train)
        calib = x_train[pick(len(x_train), config.calibration_windows, config.seed)]
        extra = {
            "name": config.name,
            "provenance": _provenance(dataset, command),
            "training": {"config": {k: v for k, v in asdict(config).items() if k not in ("onnx_quantisation", "targets")},
                         "model": f"compact log-mel CNN, width {config.width}, heads: classes + arousal/valence/dominance",
                         "train_windows": int(len(dataset.y_train)), "class_counts": dataset.class_counts("train"),
                         "data_info": dataset.info,
                         "history": {"epochs": history["epochs"], "seconds": round(history["seconds"], 1)}},
        }
        report, manifest = write_audio_bundle(tmp, model, fe, dataset.labels, calib,
                                              dataset.normalised(dataset.x_heldout), dataset.y_heldout,
                                              dataset.avd_heldout, dataset.m_heldout, extra, config,
                                              title=config.name)
    return AudioExportResult(bundle_dir=out_dir, verification=report, manifest=manifest)
