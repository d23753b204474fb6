"""Option blocks shared by every export path (standard library only, so that building the
command line parser never imports numpy, scipy or torch).

- :class:`OnnxQuantOptions`: onnxruntime static INT8 quantisation.
- :class:`VerificationTargets`: INT8-vs-FP32 pass thresholds.
- :func:`check_trained_export`: the checks every trained export's config shares (name,
  epochs, batch size, learning rate, held-out share, accuracy guard), with
  :func:`check_name` and :func:`check_counts`.
- :func:`command_line`: the ``edgemer export ...`` line of a config.
"""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

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
    prefer: ``(key, value)`` pairs of the preset's engine preference (backend, precision,
    threads, machines, reason), recorded in the manifest as ``quantisation.onnx.prefer`` for
    the runtime's engine choice; not a quantisation option.
    """

    per_channel: bool = True
    reduce_range: bool = False
    activation_type: str = "QInt8"
    weight_type: str = "QInt8"
    calibrate_method: str = "MinMax"
    extra_options: tuple[tuple[str, Any], ...] = ()
    target: str | None = None
    prefer: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for name in ("activation_type", "weight_type"):
            if getattr(self, name) not in _QUANT_TYPES:
                raise ConfigError(f"OnnxQuantOptions.{name} must be one of {_QUANT_TYPES}, got {getattr(self, name)!r}")
        if self.calibrate_method not in _CALIBRATE_METHODS:
            raise ConfigError(f"OnnxQuantOptions.calibrate_method must be one of {_CALIBRATE_METHODS}, "
                              f"got {self.calibrate_method!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra, target, prefer = dict(d.pop("extra_options")), d.pop("target"), dict(d.pop("prefer"))
        if extra:
            d["extra_options"] = extra
        if target:
            d["target"] = target
        if prefer:
            d["prefer"] = {k: list(v) if isinstance(v, tuple) else v for k, v in prefer.items()}
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


def check_name(owner: str, name: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` is a plain folder-like bundle name (``owner``: the config class)."""
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"{owner}.name must be a plain folder-like name, got {name!r}")


def check_counts(config: Any, names: Sequence[str]) -> None:
    """Raise :class:`ConfigError` naming the first field of ``names`` in ``config`` that is below 1."""
    for name in names:
        if getattr(config, name) < 1:
            raise ConfigError(f"{type(config).__name__}.{name} must be >= 1, got {getattr(config, name)}")


def check_trained_export(config: Any, counts: Sequence[str] = ()) -> None:
    """The checks every trained export's config shares; raise :class:`ConfigError` naming the field.

    Parameters
    ----------
    config
        A frozen config with ``name``, ``epochs``, ``batch_size``, ``lr``,
        ``heldout_fraction`` and ``guard_steps`` (and optionally ``max_per_class``).
    counts
        More fields that must be >= 1 (e.g. ``width``, ``calibration_windows``).

    Notes
    -----
    Checked: name is a plain folder-like name; epochs, batch_size and ``counts`` >= 1;
    lr > 0; heldout_fraction in (0, 1); guard_steps >= 0 (0: plain quantisation);
    max_per_class None or >= 1.
    """
    owner = type(config).__name__
    check_name(owner, config.name)
    check_counts(config, ("epochs", "batch_size", *counts))
    if not config.lr > 0:
        raise ConfigError(f"{owner}.lr must be > 0, got {config.lr}")
    if not 0 < config.heldout_fraction < 1:
        raise ConfigError(f"{owner}.heldout_fraction must be in (0, 1), got {config.heldout_fraction}")
    if config.guard_steps < 0:
        raise ConfigError(f"{owner}.guard_steps must be >= 0, got {config.guard_steps}")
    max_per_class = getattr(config, "max_per_class", None)
    if max_per_class is not None and max_per_class < 1:
        raise ConfigError(f"{owner}.max_per_class must be >= 1 or None, got {max_per_class}")


def command_line(words: Sequence[str], config: Any, flags: Mapping[str, str]) -> str:
    """``words`` followed by the option of each field in ``flags`` whose value differs from the
    config class's default, as one shell-quoted line.

    Parameters
    ----------
    words
        The command and its required arguments, e.g. ``("edgemer", "export", "audio", "--data", SPEC)``.
    config
        A config dataclass whose fields all have defaults.
    flags
        Field name -> option; a bool field is written as the flag alone (e.g. ``tflite`` -> ``--no-tflite``).
    """
    parts = [str(w) for w in words]
    defaults = type(config)()
    for name, flag in flags.items():
        value = getattr(config, name)
        if value == getattr(defaults, name):
            continue
        if isinstance(value, bool):
            parts.append(flag)
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)
