"""``edgemer export audio``: speech clips -> compact log-mel CNN -> verified INT8 bundle.

Steps (inside a temporary folder beside ``out_dir``, renamed into place only when
everything succeeded):

1. log-mel windows from RAVDESS, CREMA-D or a folder with labels.csv
   (:mod:`edgemer.export.audio.data`), computed exactly as the runtime front-end does,
   held-out speakers apart;
2. train the CNN with class and arousal/valence/dominance heads (:mod:`edgemer.export.audio.model`);
3. :func:`write_audio_bundle`: the shared classifier bundle
   (:func:`edgemer.export.core.bundle_writer.write_classifier_bundle`: FP32 ONNX, static
   INT8 ONNX under the accuracy guard and INT8 TFLite, ``samples.npz``, manifest, and
   verification of every file through edgemer's own backends) plus regression parity
   (:mod:`edgemer.export.audio.verify`).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgemer._extras import require
from edgemer.bundle import TensorSpec
from edgemer.errors import ExportError
from edgemer.export.core.atomic import atomic_directory
from edgemer.export.audio.config import REAL_DATA_COMMANDS, USE_REAL_MODEL, AudioExportConfig
from edgemer.export.audio.data import AudioDataset, front_end_config, load_audio_data
from edgemer.export.audio.model import CLASS_OUTPUT, DIMS_OUTPUT, INPUT_NAME, SpeechTrainConfig, train_speech_cnn
from edgemer.export.audio.verify import add_dimensions, verify_dimensions
from edgemer.export.core.bundle_writer import (BundleExportResult, ClassifierSpec, export_stage, looks_like_bundle,
                                                provenance_section, write_classifier_bundle)
from edgemer.export.core.training import pick
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

    The shared classifier bundle (:func:`~edgemer.export.core.bundle_writer.write_classifier_bundle`)
    with the regression head's parity (:func:`~edgemer.export.audio.verify.verify_dimensions`)
    added to the verification and the metrics.

    Parameters
    ----------
    model
        Torch module, input ``[1, 1, n_mels, n_frames]`` (standardised log-mel), outputs
        ``(emotion_logits [1, C], avd [1, 3])``.
    calibration, x_held
        Standardised model inputs ``[n, 1, n_mels, n_frames]``.
    y_held
        ``[n]`` class index.
    avd_held, m_held
        ``[n, 3]`` arousal/valence/dominance targets and ``[n]`` bool, where they are known.
    manifest_extra
        name, provenance, training, ... merged into the manifest.

    Returns
    -------
    tuple
        ``(verification report, manifest)``.
    """
    inputs, outputs = speech_io(front_end, len(labels))
    spec = ClassifierSpec("audio", f"speech-emotion-{len(labels)}class+avd", tuple(labels), tuple(inputs),
                          tuple(outputs), front_end.to_dict(), heldout_key="windows")

    def regression(report: dict[str, Any], bundle: Any) -> dict[str, Any]:
        dims = verify_dimensions(bundle, x_held, DIMS_OUTPUT, DIMENSIONS, truth=avd_held, mask=m_held,
                                 min_r=config.min_regression_r)
        add_dimensions(report, dims)
        return {"models": {k: {f"r_{n}_vs_targets": v for n, v in row.get("r_vs_truth", {}).items()}
                           for k, row in dims["models"].items()},
                "regression_r_int8_vs_fp32": {label: row["r"] for label, row in dims["comparisons"].items()}}

    return write_classifier_bundle(folder, model, spec, calibration, x_held, y_held, manifest_extra,
                                   f"{title} (INT8 vs FP32 on {len(y_held)} held-out windows)",
                                   config.onnx_quantisation, config.tflite, config.targets, config.guard_steps,
                                   max_samples=config.bundle_samples, verify_more=regression)


def _provenance(data: AudioDataset, command: str) -> dict[str, Any]:
    if data.synthetic:
        note = ("Trained on SYNTHETIC speech from espeak-ng (speaking rate, pitch and loudness stand in for "
                "arousal), not on recordings of people. Its outputs show the speech pipeline working (voice "
                "activity, log-mel, INT8 inference); it is not a validated emotion recogniser. Train on "
                "RAVDESS or CREMA-D ('train_on_real_data') or export a real wav2vec2/HuBERT checkpoint "
                "('use_real_model').")
    else:
        note = f"Trained on {data.source}."
    return provenance_section(data.synthetic, data.source, command, REAL_DATA_COMMANDS, note, USE_REAL_MODEL,
                              speakers_train=list(data.speakers_train), speakers_heldout=list(data.speakers_heldout),
                              dimensional_targets=data.info.get("dimensional_targets"))


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
