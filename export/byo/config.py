"""Options of ``edgemer export onnx`` / :mod:`edgemer.export.byo.export` (bring your own model).

Standard library only, so building the command line parser never imports numpy, onnx or
torch. :class:`ByoExportConfig` holds everything the export can be told; fields left at
``None`` are inferred from the model's input (and recorded in the report as inferred).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from edgemer.errors import ConfigError
from edgemer.export.core.config import OnnxQuantOptions, VerificationTargets

MODALITIES = ("face", "audio", "physio")
LAYOUTS = ("NCHW", "NHWC")
COLOURS = ("grey", "rgb", "bgr")
AUDIO_FEATURES = ("log_mel", "waveform")
AUDIO_NORMALISATION = ("none", "calibration")
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
"""``--calibration-method`` value -> onnxruntime ``CalibrationMethod`` name."""


@dataclass(frozen=True)
class ByoExportConfig:
    """Options of :func:`edgemer.export.byo.export.export_onnx_model` (times in s, rates in Hz).

    modality: ``face``, ``audio`` or ``physio`` (picks the runtime front-end).
    name: bundle name. labels: class names, one per score of the class output (None:
    ``class_0`` ...). output: name of the class-score output (None: the first output
    shaped ``[1, K]``, K >= 2). input_shape: the full input shape to fix dynamic
    dimensions to (None: a dynamic batch becomes 1; any other dynamic dimension is an error).

    Face: layout ``NCHW``/``NHWC`` (None: from the input shape), colour ``grey``/``rgb``/
    ``bgr`` (None: grey for 1 channel, else the ONNX ``Image.BitmapPixelFormat`` metadata,
    else rgb), scale/offset: model input = pixel (0..255) * scale + offset (None: from the
    ``Image.NominalPixelRange`` metadata, else 1/255 and 0), margin: face-box margin at run
    time, detect_faces: calibration images are whole frames, cut by the runtime face
    detector (default: images are face crops of the model's size).

    Audio: audio_rate_hz (model sample rate), audio_features (None: ``waveform`` for a
    ``[1, n]`` input, ``log_mel`` for ``[1, 1, n_mels, n_frames]``), mel_n_fft /
    mel_hop_length / mel_win_length (log-mel framing, samples), audio_normalisation
    (``none``: dB values as they are; ``calibration``: per-band mean/std of the calibration
    windows), normalize_waveform (zero mean, unit variance per window), resample: convert
    WAV files at another rate instead of failing, hop_s: runtime hop between windows.

    Physio: physio_mean / physio_std: per feature channel (eda uS, hr bpm, temp degC, motion
    g) standardisation the model was trained with (None: from the calibration windows).

    Quantisation: quant (onnxruntime options, ``--target`` preset), exclude: node names
    kept in FP32 from the start, calibration_samples: cap on calibration inputs (taken
    evenly over the sorted files), seed: for every random choice.

    Guard: max_drop_points (INT8 metric drop allowed, points on a 0-100 scale), strict
    (fail instead of excluding nodes), max_guard_steps (nodes excluded at most),
    analysis_samples: inputs used for the per-node error analysis.

    tflite: also write a fully-integer INT8 TFLite (ONNX-only models need ``onnx2torch``;
    when conversion is impossible the reason is recorded and the ONNX bundle is kept).
    require_tflite: fail (no bundle) instead when the TFLite file cannot be made.
    """

    modality: str = "face"
    name: str = "byo"
    labels: tuple[str, ...] | None = None
    output: str | None = None
    input_shape: tuple[int, ...] | None = None
    layout: str | None = None
    colour: str | None = None
    scale: float | None = None
    offset: float | None = None
    margin: float = 0.1
    detect_faces: bool = False
    analysis_fps: float = 5.0
    audio_rate_hz: int = 16000
    audio_features: str | None = None
    mel_n_fft: int = 512
    mel_hop_length: int = 160
    mel_win_length: int = 400
    audio_normalisation: str = "none"
    normalize_waveform: bool = False
    resample: bool = False
    hop_s: float = 1.0
    physio_mean: tuple[float, ...] | None = None
    physio_std: tuple[float, ...] | None = None
    quant: OnnxQuantOptions = field(default_factory=OnnxQuantOptions)
    exclude: tuple[str, ...] = ()
    calibration_samples: int = 256
    seed: int = 0
    max_drop_points: float = 1.0
    strict: bool = False
    max_guard_steps: int = 8
    analysis_samples: int = 32
    tflite: bool = True
    require_tflite: bool = False
    targets: VerificationTargets = field(default_factory=VerificationTargets)

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ConfigError:
            return ConfigError(f"ByoExportConfig.{name} must be {want}, got {getattr(self, name)!r}")

        if self.modality not in MODALITIES:
            raise bad("modality", f"one of {MODALITIES}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise bad("name", "a plain folder-like name")
        if self.labels is not None and (len(self.labels) < 2 or len(set(self.labels)) != len(self.labels)
                                        or not all(self.labels)):
            raise bad("labels", "at least two distinct non-empty names")
        if self.input_shape is not None and (not self.input_shape or min(self.input_shape) < 1):
            raise bad("input_shape", "positive dimensions, e.g. (1, 3, 64, 64)")
        for name, allowed in (("layout", LAYOUTS), ("colour", COLOURS), ("audio_features", AUDIO_FEATURES)):
            if getattr(self, name) is not None and getattr(self, name) not in allowed:
                raise bad(name, f"one of {allowed} or None")
        if self.audio_normalisation not in AUDIO_NORMALISATION:
            raise bad("audio_normalisation", f"one of {AUDIO_NORMALISATION}")
        if self.scale is not None and self.scale == 0:
            raise bad("scale", "non-zero")
        if not 0 <= self.margin <= 1:
            raise bad("margin", "in [0, 1]")
        if not 1000 <= self.audio_rate_hz <= 384000:
            raise bad("audio_rate_hz", "1000..384000 Hz")
        for name in ("physio_mean", "physio_std"):
            v = getattr(self, name)
            if v is not None and len(v) != 4:
                raise bad(name, "4 values (eda, hr, temp, motion)")
        if self.physio_std is not None and min(self.physio_std) <= 0:
            raise bad("physio_std", "positive")
        for name in ("calibration_samples", "max_guard_steps", "analysis_samples"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1")
        if self.max_drop_points < 0:
            raise bad("max_drop_points", ">= 0 points")
        if not self.hop_s > 0:
            raise bad("hop_s", "> 0 s")


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,64,64"`` -> ``(1, 3, 64, 64)`` (for ``--input-shape``)."""
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--input-shape must be comma-separated integers such as 1,3,64,64, got {text!r}") from None
    if not shape or min(shape) < 1:
        raise ConfigError(f"--input-shape must be positive integers such as 1,3,64,64, got {text!r}")
    return shape


def parse_list(text: str | None) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")``; None or empty -> ``()``."""
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())
