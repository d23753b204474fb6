"""Option blocks shared by every export path (standard library only, so that building the
command line parser never imports numpy, scipy or torch).

- :class:`OnnxQuantOptions`: onnxruntime static INT8 quantisation.
- :class:`VerificationTargets`: INT8-vs-FP32 pass thresholds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgemer.errors import ConfigError

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
    from (:mod:`edgemer.export.core.targets`), recorded in the manifest; None = defaults.
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
