"""Option dataclasses of the audio exports (standard library only, so building the command
line parser never imports numpy or torch).

- :class:`AudioExportConfig`: ``edgemer export audio`` (train the compact speech CNN).
- :class:`HfExportConfig`: ``edgemer export hf`` (a local Hugging Face wav2vec2/HuBERT checkpoint).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgemer.errors import ConfigError
from edgemer.export.core.config import (OnnxQuantOptions, VerificationTargets, check_name, check_trained_export,
                                        command_line)

TRAIN_ON_RAVDESS = "edgemer export audio --data ravdess:/path/to/RAVDESS --out my-audio-bundle"
TRAIN_ON_CREMA_D = "edgemer export audio --data crema-d:/path/to/CREMA-D/AudioWAV --out my-audio-bundle"
REAL_DATA_COMMANDS = f"{TRAIN_ON_RAVDESS}  (or: {TRAIN_ON_CREMA_D})"
USE_REAL_MODEL = "edgemer export hf --model-dir /path/to/wav2vec2-emotion-checkpoint --out my-hf-bundle"


@dataclass(frozen=True)
class AudioExportConfig:
    """Options of :func:`edgemer.export.audio.export.export_audio` (times in seconds, rates in Hz).

    name: bundle name. window_s / hop_s: model window and runtime hop. sample_rate_hz:
    model audio rate. n_mels, n_fft, win_length, hop_length, fmin_hz, fmax_hz, top_db:
    log-mel (see ``MelConfig``). epochs, batch_size, lr, seed, width: training (width =
    channels of the first conv block). dims_weight: weight of the arousal/valence/
    dominance regression loss next to the class loss. crops_per_clip: training windows
    cut from each clip (random offsets). noise_db: range of the noise floor added to
    each window, dBFS. gain_db: random gain range, +-dB. heldout_fraction: share of
    speakers held out (data without speakers: of clips). include_song: RAVDESS song
    clips too. max_per_class: cap clips per class. calibration_windows: training windows
    for the INT8 ranges. bundle_samples: held-out windows stored in samples.npz.
    min_regression_r: pass threshold of INT8-vs-FP32 correlation of the regression
    outputs. tflite: INT8 TFLite too. synthetic: the data is synthetic (espeak-ng).
    guard_steps: re-quantisations the accuracy guard may make while the INT8 ONNX
    macro-F1 drop on the held-out windows exceeds ``targets`` (0: plain quantisation).
    """

    name: str = "audio"
    window_s: float = 3.0
    hop_s: float = 1.0
    sample_rate_hz: int = 16000
    n_mels: int = 64
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    fmin_hz: float = 50.0
    fmax_hz: float = 8000.0
    top_db: float = 80.0
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    width: int = 32
    dims_weight: float = 1.0
    crops_per_clip: int = 2
    noise_db: tuple[float, float] = (-75.0, -55.0)
    gain_db: float = 3.0
    heldout_fraction: float = 0.2
    include_song: bool = False
    max_per_class: int | None = None
    calibration_windows: int = 200
    bundle_samples: int = 12
    min_regression_r: float = 0.99
    tflite: bool = True
    guard_steps: int = 8
    onnx_quantisation: OnnxQuantOptions = field(default_factory=OnnxQuantOptions)
    targets: VerificationTargets = field(default_factory=VerificationTargets)

    def __post_init__(self) -> None:
        check_trained_export(self, ("width", "crops_per_clip", "calibration_windows", "bundle_samples"))
        if self.dims_weight < 0:
            raise ConfigError(f"AudioExportConfig.dims_weight must be >= 0, got {self.dims_weight}")
        if not 0.5 <= self.window_s <= 30:
            raise ConfigError(f"AudioExportConfig.window_s must be 0.5..30 s, got {self.window_s}")
        if not 0 < self.hop_s <= self.window_s:
            raise ConfigError(f"AudioExportConfig.hop_s must be in (0, window_s] s, got {self.hop_s}")
        lo, hi = self.noise_db
        if not -120 <= lo <= hi <= -20:
            raise ConfigError(f"AudioExportConfig.noise_db must be (low, high) within -120..-20 dBFS, got {self.noise_db}")
        if not 0 <= self.gain_db <= 20:
            raise ConfigError(f"AudioExportConfig.gain_db must be 0..20 dB, got {self.gain_db}")
        if not 0 < self.min_regression_r <= 1:
            raise ConfigError(f"AudioExportConfig.min_regression_r must be in (0, 1], got {self.min_regression_r}")

    def as_command(self, data: str, out_dir: Path) -> str:
        """The ``edgemer export audio`` command line for this config (options that differ from the defaults)."""
        return command_line(("edgemer", "export", "audio", "--data", data, "--out", out_dir), self, AUDIO_FLAGS)


AUDIO_FLAGS = {
    "name": "--name", "window_s": "--window", "hop_s": "--hop", "n_mels": "--n-mels", "epochs": "--epochs",
    "batch_size": "--batch-size", "lr": "--lr", "seed": "--seed", "width": "--width", "dims_weight": "--dims-weight",
    "crops_per_clip": "--crops-per-clip", "heldout_fraction": "--heldout-fraction", "include_song": "--include-song",
    "max_per_class": "--max-per-class", "tflite": "--no-tflite", "guard_steps": "--guard-steps",
}
"""AudioExportConfig field -> ``edgemer export audio`` option (``tflite`` is switched off by its flag)."""


@dataclass(frozen=True)
class HfExportConfig:
    """Options of :func:`edgemer.export.audio.transformer.export_hf`.

    name: bundle name. window_s / hop_s: waveform window and runtime hop, s. quantization:
    ``dynamic`` (INT8 weights, activations quantised on the fly: the usual choice for
    transformers on CPU) or ``static`` (calibrated; needs ``calibration_windows``).
    target: a ``--target`` preset of :mod:`edgemer.export.core.targets` (``x86-vnni``, ``x86-avx2``,
    ``arm64``; ``jetson-trt`` only with ``static``): dynamic INT8 uses optimum's config for that
    kernel family (:data:`~edgemer.export.core.targets.OPTIMUM_DYNAMIC`), static INT8 the preset's
    quantisation options. operators: ONNX ops to quantise (MatMul/Gemm by
    default; the convolutional feature encoder stays FP32). dimensions: for a regression
    checkpoint, names of its outputs in order (default: its ``id2label``). scale/offset:
    map regression outputs onto [-1, 1] (e.g. 2 and -1 for 0..1 outputs). verify_windows:
    synthetic test windows for the INT8-vs-FP32 check. min_correlation: pass threshold.
    """

    name: str = "hf-speech"
    window_s: float = 3.0
    hop_s: float = 1.0
    quantization: str = "dynamic"
    target: str = "x86-vnni"
    operators: tuple[str, ...] = ("MatMul", "Gemm")
    dimensions: tuple[str, ...] | None = None
    scale: float = 1.0
    offset: float = 0.0
    verify_windows: int = 24
    calibration_windows: int = 32
    min_correlation: float = 0.99

    def __post_init__(self) -> None:
        check_name("HfExportConfig", self.name)
        if not 0.5 <= self.window_s <= 30:
            raise ConfigError(f"HfExportConfig.window_s must be 0.5..30 s, got {self.window_s}")
        if not 0 < self.hop_s <= self.window_s:
            raise ConfigError(f"HfExportConfig.hop_s must be in (0, window_s] s, got {self.hop_s}")
        if self.quantization not in ("dynamic", "static"):
            raise ConfigError(f"HfExportConfig.quantization must be 'dynamic' or 'static', got {self.quantization!r}")
        from edgemer.export.core.targets import check_target, optimum_config_name

        check_target(self.target, "HfExportConfig.target")
        if self.quantization == "dynamic":
            optimum_config_name(self.target)  # jetson-trt: static only
        if not self.operators:
            raise ConfigError("HfExportConfig.operators must name at least one ONNX op, e.g. MatMul")
        for n in ("verify_windows", "calibration_windows"):
            if getattr(self, n) < 2:
                raise ConfigError(f"HfExportConfig.{n} must be >= 2, got {getattr(self, n)}")
        if not 0 < self.min_correlation <= 1:
            raise ConfigError(f"HfExportConfig.min_correlation must be in (0, 1], got {self.min_correlation}")
        if self.scale == 0:
            raise ConfigError("HfExportConfig.scale must not be 0")
