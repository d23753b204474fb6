"""``edgemer export face``: face crops -> compact expression CNN -> verified INT8 bundle.

Steps (inside a temporary folder beside ``out_dir``, renamed into place only when
everything succeeded):

1. face crops from FER2013, a class-per-folder set or synthetic drawn faces
   (:mod:`edgemer.export.face.data`), cut exactly as the runtime front-end cuts them;
2. train the CNN with occlusion augmentation (:mod:`edgemer.export.face.model`);
3. :func:`write_face_bundle`: FP32 ONNX, static INT8 ONNX and INT8 TFLite through the
   shared converters, ``samples.npz``, manifest, and verification of every file through
   edgemer's own backends, with accuracy on clean, upper-face-occluded and
   lower-face-occluded held-out crops.

:func:`write_face_bundle` is also used by ``edgemer models build fer-mini-xception``.
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
from edgemer.export.core.bundle_writer import (BundleExportResult, ClassifierSpec, export_stage, looks_like_bundle,
                                                provenance_section, write_classifier_bundle)
from edgemer.export.core.config import OnnxQuantOptions, VerificationTargets
from edgemer.export.face.config import TRAIN_ON_FER2013, USE_REAL_MODEL, FaceExportConfig
from edgemer.export.face.data import REAL_PHOTOS, FaceDataset, load_face_data, occlude
from edgemer.export.face.model import to_model_input
from edgemer.export.core.training import pick
from edgemer.frontends.face import EXPRESSIONS, CropConfig, FaceFrontEndConfig
from edgemer.frontends.face_detector import FaceDetectorOptions

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OCCLUSION_VARIANTS = {"upper-face occluded": "upper", "lower-face occluded": "lower"}


class FaceExportResult(BundleExportResult):
    """What a face export produced: the bundle folder, its verification report and manifest."""

    def summary(self) -> str:
        """A few lines for the terminal: data, training, accuracy with/without occlusion, targets."""
        lines = self._head_lines("drawn faces") + self._training_line()
        for key, row in self.verification["models"].items():
            occl = "  ".join(f"{v} {r['accuracy']:.3f}" for v, r in row.get("variants", {}).items())
            lines.append(f"model     {key:12s} {row['bytes'] / 1024:7.1f} KiB  accuracy {row['accuracy']:.3f}  "
                         f"macro-F1 {row['macro_f1']:.3f}  {occl}")
        real = self.verification.get("real_photo_agreement", {}).get(REAL_PHOTOS)
        if real:
            files = ", ".join(f"{k} {real[k]:.2%}" for k in ("int8-onnx", "int8-tflite") if k in real)
            lines.append(f"photos    INT8 vs FP32 argmax agreement on {real['crops']} crops of real photographs "
                         f"(the target's face crops; the targets below use the verification set): {files}")
        ref = self.verification.get("reference_tflite")
        if ref:
            lines.append(f"reference {ref['file']}: argmax agreement with int8-tflite {ref['agreement_int8_tflite']:.1%}, "
                         f"with fp32-onnx {ref['agreement_fp32_onnx']:.1%}; p50 {ref['p50_ms']:.3f} ms vs "
                         f"edgemer int8-tflite {ref['edgemer_int8_tflite_p50_ms']:.3f} ms (1 thread)")
        return "\n".join(lines + self._closing_lines())


def face_io(crop: CropConfig, n_classes: int = len(EXPRESSIONS)) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs of a face expression model (batch of 1)."""
    return [TensorSpec(INPUT_NAME, crop.input_shape())], [TensorSpec(OUTPUT_NAME, (1, n_classes))]


def occlusion_variants(crops: np.ndarray, crop: CropConfig) -> dict[str, np.ndarray]:
    """Model inputs of the held-out crops with the upper or the lower face covered."""
    return {name: to_model_input(occlude(crops, region), crop) for name, region in OCCLUSION_VARIANTS.items()}


def write_face_bundle(folder: Path, model: Any, front_end: FaceFrontEndConfig, calibration_crops: np.ndarray,
                      heldout_crops: np.ndarray, heldout_labels: np.ndarray, manifest_extra: dict[str, Any],
                      onnx_options: OnnxQuantOptions = OnnxQuantOptions(), tflite: bool = True,
                      targets: VerificationTargets = VerificationTargets(), title: str = "face expression",
                      reference: Any = None, guard_steps: int = 8) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write model files, samples, manifest and verification of a face model into ``folder``: the shared
    classifier bundle (:func:`~edgemer.export.core.bundle_writer.write_classifier_bundle`) with the
    accuracy on upper- and lower-face-occluded crops and the crop alignment note.

    Parameters
    ----------
    model: torch module, input ``[1, C, H, W]`` (crop pixels * scale + offset), output logits ``[1, 7]``.
    front_end: the runtime front-end configuration stored in the manifest.
    calibration_crops / heldout_crops: uint8 crops ``[n, H, W(, 3)]``; heldout_labels: ``[n]``.
    manifest_extra: name, task, provenance, training, metrics... merged into the manifest.
    reference: optional callable ``(report, bundle) -> None`` adding more to the report
        before it is written (the fer import compares the package's own TFLite there).
    guard_steps: re-quantisations the accuracy guard may make while the INT8 ONNX macro-F1
        drop on the held-out crops exceeds ``targets`` (0: plain quantisation).

    Returns ``(verification report, manifest)``.
    """
    crop = front_end.crop
    inputs, outputs = face_io(crop)
    spec = ClassifierSpec("face", "expression-7class", EXPRESSIONS, tuple(inputs), tuple(outputs), front_end.to_dict())
    note = manifest_extra.get("training", {}).get("crop_alignment", {}).get("note")

    def more(report: dict[str, Any], bundle: Any) -> None:
        if reference is not None:
            reference(report, bundle)
        if note:
            report.setdefault("extra_sections", {})["Face crops: the alignment the model was trained with"] = note

    return write_classifier_bundle(folder, model, spec, to_model_input(calibration_crops, crop),
                                   to_model_input(heldout_crops, crop), heldout_labels, manifest_extra,
                                   f"{title} (INT8 vs FP32 on {len(heldout_labels)} held-out face crops)",
                                   onnx_options, tflite, targets, guard_steps,
                                   variants=occlusion_variants(heldout_crops, crop), verify_more=more)


def _provenance(data: FaceDataset, command: str) -> dict[str, Any]:
    if data.synthetic:
        note = ("Trained on SYNTHETIC drawn faces (edgemer.export.face.synth), not on photographs of people. "
                "Its outputs show the face pipeline working (detection, crop, INT8 inference); it is not a "
                "validated expression recogniser. Use the real fer mini-Xception model ('use_real_model') "
                "or train on FER2013 ('train_on_real_data').")
    else:
        note = f"Trained on {data.source}."
    return provenance_section(data.synthetic, data.source, command, TRAIN_ON_FER2013, note, USE_REAL_MODEL)


def _trained_on(data: FaceDataset, detect_faces: bool) -> str:
    """What the training crops are, for the alignment note."""
    if data.synthetic:
        return "box crops of drawn faces (squared box in the Haar cascade's convention, margin, not rotated)"
    if detect_faces:
        return "crops cut by the runtime detector and this keypoint alignment"
    return f"the face crops of {data.source} as they come (their own registration)"


def export_face(data: str | FaceDataset, out_dir: Path, config: FaceExportConfig = FaceExportConfig(),
                progress: bool = True, overwrite: bool = False, command: str | None = None) -> FaceExportResult:
    """Train the compact expression CNN on ``data`` and write a verified bundle to ``out_dir``.

    Parameters
    ----------
    data: a data spec (``fer2013:FILE.csv``, ``folder:DIR``, ``synthetic[:N]``) or a loaded
        :class:`~edgemer.export.face.data.FaceDataset` of crops matching ``config``.
    out_dir: bundle folder to create (missing or empty; a previous bundle is replaced
        only with ``overwrite``).

    Raises
    ------
    DatasetError: the data is missing, unreadable or malformed.
    MissingExtraError: torch/onnx/OpenCV missing (extra ``export``).
    ExportError: training, conversion or verification failed; nothing is left behind.
    """
    require("torch", "export", "Training the face expression CNN (edgemer export face)")
    from edgemer.export.face.model import FaceTrainConfig, train_expression_cnn

    out_dir = Path(out_dir).expanduser().absolute()
    from edgemer.export.face.align import alignment_note, keypoint_crop, photo_fit, synthetic_fit

    synthetic = data.synthetic if isinstance(data, FaceDataset) else data.startswith("synthetic")
    fit = synthetic_fit() if synthetic else photo_fit()
    crop = keypoint_crop(CropConfig(size=(config.size, config.size), colour=config.colour, margin=config.margin), fit)
    spec = data if isinstance(data, str) else "dataset"
    command = command or config.as_command(spec, out_dir)
    with atomic_directory(out_dir, overwrite, looks_like_bundle, "bundle", ExportError,
                          "overwrite=True (--overwrite)") as tmp:
        dataset = data if isinstance(data, FaceDataset) else load_face_data(
            data, crop, config.heldout_fraction, config.seed, config.label_map, config.detect_faces,
            config.max_per_class)
        if dataset.x_train.shape[1:3] != (config.size, config.size):
            raise ExportError(f"the data's crops are {dataset.x_train.shape[1:3]}, the config asks for "
                              f"{config.size}x{config.size}; load them with the same crop")
        train = FaceTrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
                                width=config.width, occlusion_p=config.occlusion_p)
        with export_stage("training", "Check the data, or lower --lr."):
            model, history = train_expression_cnn(dataset, crop, train, progress=progress)
        front_end = FaceFrontEndConfig(analysis_fps=config.analysis_fps, crop=crop, detector=FaceDetectorOptions())
        calib = dataset.x_train[pick(len(dataset.x_train), config.calibration_samples, config.seed)]
        extra = {
            "name": config.name,
            "provenance": _provenance(dataset, command),
            "training": {"config": {k: v for k, v in asdict(config).items()
                                    if k not in ("onnx_quantisation", "targets")},
                         "model": f"compact expression CNN, width {config.width}",
                         "train_samples": int(len(dataset.y_train)),
                         "class_counts": dataset.class_counts("train"), "data_info": dataset.info,
                         "history": {"epochs": history["epochs"], "seconds": round(history["seconds"], 1)},
                         "crop_alignment": {"fit": fit.to_dict() if fit else None, "note": alignment_note(
                             crop, fit, _trained_on(dataset, config.detect_faces))}},
        }
        def runtime_crops(report: dict[str, Any], bundle: Any) -> None:  # drawn faces: box vs runtime crops
            from edgemer.export.face.align import runtime_crop_check

            check = runtime_crop_check(bundle, crop, output=OUTPUT_NAME)
            report["runtime_crops"] = {k: v for k, v in check.items() if k != "markdown"}
            report.setdefault("extra_sections", {})["Crops cut by the runtime detector"] = check["markdown"]

        report, manifest = write_face_bundle(tmp, model, front_end, calib, dataset.x_heldout, dataset.y_heldout,
                                             extra, config.onnx_quantisation, config.tflite, config.targets,
                                             title=config.name, guard_steps=config.guard_steps,
                                             reference=runtime_crops if dataset.synthetic else None)
    return FaceExportResult(bundle_dir=out_dir, verification=report, manifest=manifest)
