"""``--target`` presets: the INT8 quantisation options each kind of device needs.

Every preset is an :class:`~edgemer.export.core.config.OnnxQuantOptions` (static QDQ
quantisation with onnxruntime) plus the reason for each choice. They differ in how the
int8 dot products of the target's kernels behave:

- ``x86-avx2`` — x86-64 with AVX2 (or AVX-512) but **no VNNI**. onnxruntime's u8×s8
  kernels use ``vpmaddubsw``, which adds two u8×s8 products into a *saturating* int16:
  with full 8-bit ranges 2 × 255 × 127 = 64770 overflows int16 (max 32767), so results
  can be silently clipped. ``reduce_range`` quantises weights to 7 bits (2 × 255 × 63 =
  32130 fits), at a small accuracy cost; activations uint8, weights int8 (U8S8).
- ``x86-vnni`` — x86-64 with AVX-512 VNNI or AVX-VNNI (``vpdpbusd`` accumulates u8×s8
  straight into int32, no int16 step): full 8-bit range, the defaults (S8S8 QDQ; ORT
  shifts int8 activations to uint8 internally). Measured 3.1× faster than FP32 on this
  project's EPYC build machine (TOOLCHAIN.md).
- ``arm64`` — Raspberry Pi 4 (Cortex-A72) / Pi 5 (Cortex-A76), Jetson CPUs. ARM kernels
  multiply s8×s8 with widening instructions (``smull``/``sadalp`` on A72, ``sdot`` with
  the dot-product extension on A76) that accumulate into int32 without saturation, so
  S8S8 with full range and per-channel weights; no ``reduce_range``.
- ``jetson-trt`` — TensorRT through onnxruntime's TensorRT execution provider. TensorRT
  accepts only *symmetric* int8 quantisation (zero point 0) in explicit-quantisation
  (QDQ) graphs, for activations as well as weights, with per-channel weight scales along
  the output-channel axis. So: QInt8 activations and weights, ``ActivationSymmetric`` and
  ``WeightSymmetric``, per-channel, QDQ format (always used by edgemer).

Use: ``edgemer export physio ... --target arm64`` (or :func:`quant_options`). ``edgemer export hf``
takes the same names (:data:`OPTIMUM_DYNAMIC` maps them onto optimum's dynamic-INT8 configs).
"""
from __future__ import annotations

from dataclasses import dataclass

from edgemer.errors import ConfigError
from edgemer.export.core.config import OnnxQuantOptions


@dataclass(frozen=True)
class TargetPreset:
    """name: ``--target`` value. devices: what it is for. options: the quantisation options.
    reason: why these options, in one paragraph."""

    name: str
    devices: str
    options: OnnxQuantOptions
    reason: str


TARGETS: dict[str, TargetPreset] = {p.name: p for p in (
    TargetPreset("x86-avx2", "x86-64 with AVX2/AVX-512 but without VNNI (most laptops before ~2019, many VMs)",
                 OnnxQuantOptions(per_channel=True, reduce_range=True, activation_type="QUInt8",
                                  weight_type="QInt8", target="x86-avx2"),
                 "vpmaddubsw adds pairs of u8 x s8 products into a saturating int16; 7-bit weights "
                 "(reduce_range) keep 2 x 255 x 63 within int16"),
    TargetPreset("x86-vnni", "x86-64 with AVX-512 VNNI or AVX-VNNI (Ice Lake+, Zen 4, recent EPYC/Xeon)",
                 OnnxQuantOptions(per_channel=True, reduce_range=False, activation_type="QInt8",
                                  weight_type="QInt8", target="x86-vnni"),
                 "vpdpbusd accumulates u8 x s8 directly into int32: no saturation, full 8-bit range"),
    TargetPreset("arm64", "64-bit ARM CPUs: Raspberry Pi 4/5, Jetson CPU cores, other Cortex-A boards",
                 OnnxQuantOptions(per_channel=True, reduce_range=False, activation_type="QInt8",
                                  weight_type="QInt8", target="arm64"),
                 "ARM s8 x s8 kernels (smull/sadalp, or sdot with the dot-product extension) widen into "
                 "int32 without saturation: S8S8, full range, per-channel weights"),
    TargetPreset("jetson-trt", "NVIDIA Jetson (or any GPU) running the TensorRT execution provider",
                 OnnxQuantOptions(per_channel=True, reduce_range=False, activation_type="QInt8",
                                  weight_type="QInt8", target="jetson-trt",
                                  extra_options=(("ActivationSymmetric", True), ("WeightSymmetric", True))),
                 "TensorRT's explicit quantisation takes only symmetric int8 (zero point 0) Q/DQ pairs, "
                 "per-channel on weights; asymmetric activations would be rejected or fall back to FP"),
)}


OPTIMUM_DYNAMIC: dict[str, str] = {"x86-avx2": "avx2", "x86-vnni": "avx512_vnni", "arm64": "arm64"}
"""``--target`` -> the ``optimum.onnxruntime.AutoQuantizationConfig`` constructor that
``edgemer export hf --quantization dynamic`` uses (optimum's own names for the same kernel
families). ``jetson-trt`` has none: TensorRT runs static (QDQ) INT8 only."""


def check_target(target: str, owner: str = "--target") -> str:
    """``target`` if it is a key of :data:`TARGETS`.

    Raises
    ------
    ConfigError: unknown target; the message lists the valid ones, and names the preset an optimum
    name (``avx2``, ``avx512_vnni``) corresponds to.
    """
    if target in TARGETS:
        return target
    hint = next((f"; optimum's '{target}' is edgemer's '{name}'" for name, opt in OPTIMUM_DYNAMIC.items()
                 if opt == target), "")
    raise ConfigError(f"{owner} must be one of {sorted(TARGETS)}, got {target!r}{hint}")


def optimum_config_name(target: str) -> str:
    """The optimum ``AutoQuantizationConfig`` method for dynamic INT8 on ``target`` (e.g. ``x86-vnni`` ->
    ``avx512_vnni``).

    Raises
    ------
    ConfigError: unknown target, or one without a dynamic-quantisation config (``jetson-trt``).
    """
    check_target(target)
    if target not in OPTIMUM_DYNAMIC:
        raise ConfigError(f"--target {target} needs static INT8 (TensorRT takes only calibrated Q/DQ graphs): use "
                          f"--quantization static, or one of {sorted(OPTIMUM_DYNAMIC)} for dynamic INT8")
    return OPTIMUM_DYNAMIC[target]


def quant_options(target: str | None) -> OnnxQuantOptions:
    """The quantisation options of ``target`` (a key of :data:`TARGETS`); None = the defaults.

    Raises
    ------
    ConfigError: unknown target (the message lists the known ones).
    """
    if target is None:
        return OnnxQuantOptions()
    return TARGETS[check_target(target)].options
