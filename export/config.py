"""Option dataclasses of the export pipeline (standard library only, so that building the
command line parser never imports numpy, scipy or torch).

- :class:`PhysioExportConfig`: everything ``edgemer export physio`` can be told.
- :class:`OnnxQuantOptions`: onnxruntime static INT8 quantisation.
- :class:`VerificationTargets`: INT8-vs-FP32 pass thresholds.
"""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemer.errors import ConfigError

if TYPE_CHECKING:
    from edgemer.export.datasets import WindowOptions

REAL_DATA_COMMAND = "edgemer export physio --wesad /path/to/WESAD --out my-physio-bundle"
"""How to train on the real WESAD data set (shown wherever a synthetic bundle is described)."""

_QUANT_TYPES = ("QInt8", "QUInt8")
_CALIBRATE_METHODS = ("MinMax", "Entropy", "Percentile")


@dataclass(frozen=True)
class OnnxQuantOptions:
    """Options of the static INT8 quantisation (names as in onnxruntime.quantization).

    per_channel: one weight scale per output channel. reduce_range: 7-bit weights, for
    CPUs without VNNI where 8-bit products can saturate. activation_type/weight_type:
    ``QInt8`` or ``QUInt8``. calibrate_method: ``MinMax``, ``Entropy`` or ``Percentile``.
    extra_options: ``(key, value)`` pairs for ``quantize_static(extra_options=...)``, e.g.
    ``(("ActivationSymmetric", True),)``. target: the ``--target`` preset these options came
    from (:mod:`edgemer.export.targets`), recorded in the manifest; None = defaults.
    """

    per_channel: bool = True
    reduce_range: bool = False
    activation_type: str = "QInt8"
    weight_type: str = "QInt8"
    calibrate_method: str = "MinMax"
    extra_options: tuple[tuple[str, Any], ...] = ()
    target: str | None = None

    def __post_init__(self) -> None:
        for name in ("activation_type", "weight_type"):
            if getattr(self, name) not in _QUANT_TYPES:
                raise ConfigError(f"OnnxQuantOptions.{name} must be one of {_QUANT_TYPES}, got {getattr(self, name)!r}")
        if self.calibrate_method not in _CALIBRATE_METHODS:
            raise ConfigError(f"OnnxQuantOptions.calibrate_method must be one of {_CALIBRATE_METHODS}, "
                              f"got {self.calibrate_method!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra, target = dict(d.pop("extra_options")), d.pop("target")
        if extra:
            d["extra_options"] = extra
        if target:
            d["target"] = target
        return {"format": "QDQ", "method": "onnxruntime.quantization.quantize_static", **d}


@dataclass(frozen=True)
class VerificationTargets:
    """Pass thresholds. Agreement as a fraction (0.99 = 99 %), F1 drop in points (0-100 scale)."""

    min_argmax_agreement: float = 0.99
    max_macro_f1_drop_points: float = 1.0
    max_int8_onnx_size_ratio: float = 0.35

    def __post_init__(self) -> None:
        if not 0 <= self.min_argmax_agreement <= 1:
            raise ConfigError(f"VerificationTargets.min_argmax_agreement must be in [0, 1], "
                              f"got {self.min_argmax_agreement}")
        if self.max_macro_f1_drop_points < 0:
            raise ConfigError(f"VerificationTargets.max_macro_f1_drop_points must be >= 0, "
                              f"got {self.max_macro_f1_drop_points}")
        if not self.max_int8_onnx_size_ratio > 0:
            raise ConfigError(f"VerificationTargets.max_int8_onnx_size_ratio must be > 0, "
                              f"got {self.max_int8_onnx_size_ratio}")


@dataclass(frozen=True)
class PhysioExportConfig:
    """Options of :func:`edgemer.export.physio.export_physio` (times in seconds).

    epochs, batch_size, lr, seed: training. window_s: model window (multiple of 2 s).
    hop_s: runtime hop between windows (stored in the manifest). train_hop_s: hop between
    training windows. forecast_s: EDA forecast horizon. heldout_fraction: share of
    subjects held out for verification (at least one). calibration_windows: training
    windows used to calibrate INT8 ranges. physics_weight: weight of the ODE residual in
    the loss. name: bundle name. tflite: also write FP32 and INT8 TFLite files.
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    window_s: float = 60.0
    hop_s: float = 5.0
    train_hop_s: float = 2.5
    forecast_s: float = 10.0
    heldout_fraction: float = 0.2
    calibration_windows: int = 256
    physics_weight: float = 1.0
    name: str = "physio"
    tflite: bool = True
    onnx_quantisation: OnnxQuantOptions = field(default_factory=OnnxQuantOptions)
    targets: VerificationTargets = field(default_factory=VerificationTargets)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "calibration_windows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"PhysioExportConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"PhysioExportConfig.lr must be > 0, got {self.lr}")
        if not self.hop_s > 0:
            raise ConfigError(f"PhysioExportConfig.hop_s must be > 0 s, got {self.hop_s}")
        if not self.forecast_s > 0:
            raise ConfigError(f"PhysioExportConfig.forecast_s must be > 0 s, got {self.forecast_s}")
        if not self.window_s > 0 or abs(self.window_s / 2 - round(self.window_s / 2)) > 1e-9:
            raise ConfigError(f"PhysioExportConfig.window_s must be a positive multiple of 2 s (the encoder "
                              f"halves the 4 Hz window three times), got {self.window_s}")
        if self.physics_weight < 0:
            raise ConfigError(f"PhysioExportConfig.physics_weight must be >= 0, got {self.physics_weight}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"PhysioExportConfig.name must be a plain folder-like name, got {self.name!r}")
        if not 0 < self.heldout_fraction < 1:
            raise ConfigError(f"PhysioExportConfig.heldout_fraction must be in (0, 1), got {self.heldout_fraction}")

    def window_options(self) -> "WindowOptions":
        """The windowing options (validated there: train_hop_s and forecast_s on the 0.25 s grid)."""
        from edgemer.export.datasets import WindowOptions

        return WindowOptions(window_s=self.window_s, train_hop_s=self.train_hop_s, forecast_s=self.forecast_s,
                             heldout_fraction=self.heldout_fraction)

    def as_command(self, wesad_dir: Path, out_dir: Path) -> str:
        """The ``edgemer export physio`` command line for this config (options that differ from the defaults)."""
        parts = ["edgemer", "export", "physio", "--wesad", str(wesad_dir), "--out", str(out_dir)]
        defaults = PhysioExportConfig()
        for name, flag in COMMAND_FLAGS.items():
            value = getattr(self, name)
            if value == getattr(defaults, name):
                continue
            if isinstance(value, bool):
                parts.append(flag)
            else:
                parts += [flag, str(value)]
        return shlex.join(parts)


COMMAND_FLAGS = {
    "name": "--name", "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "seed": "--seed",
    "window_s": "--window", "hop_s": "--hop", "train_hop_s": "--train-hop", "forecast_s": "--forecast",
    "heldout_fraction": "--heldout-fraction", "calibration_windows": "--calibration-windows",
    "physics_weight": "--physics-weight", "tflite": "--no-tflite",
}
"""PhysioExportConfig field -> ``edgemer export physio`` option (``tflite`` is switched off by its flag)."""
