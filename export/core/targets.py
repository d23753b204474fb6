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

Device presets name the device instead of its kernel family, and carry the engine choice:

- ``pi4`` (Raspberry Pi 4, Cortex-A72) and ``pi5`` (Raspberry Pi 5, Cortex-A76): the
  ``arm64`` quantisation.
- ``jetson-orin`` (Jetson Orin Nano/NX/AGX): the ``jetson-trt`` quantisation, so TensorRT can
  take the INT8 model.
- ``x86`` (any x86-64 with AVX2): the ``x86-avx2`` quantisation, correct on every x86-64
  CPU with or without VNNI (on a VNNI-only fleet ``x86-vnni`` keeps the full 8-bit range).

Every preset (the kernel-family names too) also records which engine, precision and thread
count to prefer on its device (:class:`edgemer.backends.choice.EnginePreference`, in the
manifest as ``quantisation.onnx.prefer``); the runtime's ``auto`` choice runs that cell when
nothing has been measured on the device yet and measuring is off or fails (a measurement
always wins, see :mod:`edgemer.backends.choice`). The kernel-family names stay valid:
``pi4``/``pi5`` = ``arm64`` options, ``jetson-orin`` = ``jetson-trt``, ``x86`` = ``x86-avx2``
(:data:`SAME_OPTIONS`).

Use: ``edgemer export physio ... --target pi4`` (or :func:`quant_options`). ``edgemer export hf``
takes the same names (:data:`OPTIMUM_DYNAMIC` maps them onto optimum's dynamic-INT8 configs).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgemer.backends.choice import EnginePreference
from edgemer.errors import ConfigError
from edgemer.export.core.config import OnnxQuantOptions


@dataclass(frozen=True)
class TargetPreset:
    """name: ``--target`` value. devices: what it is for. options: the quantisation options
    (``options.prefer`` and ``options.target`` are filled from ``prefer`` and ``name``).
    reason: why these options, in one paragraph. prefer: the engine, precision and threads the
    runtime runs on that device when nothing is measured there (None: no preference)."""

    name: str
    devices: str
    options: OnnxQuantOptions
    reason: str
    prefer: EnginePreference | None = None

    def __post_init__(self) -> None:
        prefer = tuple((k, tuple(v) if isinstance(v, list) else v)
                       for k, v in sorted(self.prefer.to_dict().items())) if self.prefer else ()
        object.__setattr__(self, "options", dataclasses.replace(self.options, target=self.name, prefer=prefer))


ARM = ("aarch64", "arm64")
X86 = ("x86_64", "amd64")
LITERT_SMALL = ("LiteRT (XNNPACK) INT8 at one thread: the fastest verified path of every shipped bundle on "
                "this project's x86 machine and the usual winner for small CNNs on Cortex-A cores; one thread "
                "because sources, front-ends and other models share the cores")
PREFER = {
    "x86": EnginePreference("litert", "int8", 1, X86, LITERT_SMALL),
    "arm": EnginePreference("litert", "int8", 1, ARM, LITERT_SMALL),
    "jetson": EnginePreference("onnxruntime", "int8", 1, ARM,
                               "onnxruntime INT8 on the TensorRT execution provider (chosen automatically when "
                               "onnxruntime-gpu/JetPack's build is installed; else the CPU)"),
}
"""Engine preferences shared by the presets (not measured on a Pi or a Jetson: a prior only)."""

_X86_AVX2 = OnnxQuantOptions(per_channel=True, reduce_range=True, activation_type="QUInt8", weight_type="QInt8")
_X86_AVX2_REASON = ("vpmaddubsw adds pairs of u8 x s8 products into a saturating int16; 7-bit weights "
                    "(reduce_range) keep 2 x 255 x 63 within int16")
_ARM64 = OnnxQuantOptions(per_channel=True, reduce_range=False, activation_type="QInt8", weight_type="QInt8")
_ARM64_REASON = ("ARM s8 x s8 kernels (smull/sadalp, or sdot with the dot-product extension) widen into "
                 "int32 without saturation: S8S8, full range, per-channel weights")
_TRT = OnnxQuantOptions(per_channel=True, reduce_range=False, activation_type="QInt8", weight_type="QInt8",
                        extra_options=(("ActivationSymmetric", True), ("WeightSymmetric", True)))
_TRT_REASON = ("TensorRT's explicit quantisation takes only symmetric int8 (zero point 0) Q/DQ pairs, "
               "per-channel on weights; asymmetric activations would be rejected or fall back to FP")

TARGETS: dict[str, TargetPreset] = {p.name: p for p in (
    TargetPreset("x86-avx2", "x86-64 with AVX2/AVX-512 but without VNNI (most laptops before ~2019, many VMs)",
                 _X86_AVX2, _X86_AVX2_REASON, PREFER["x86"]),
    TargetPreset("x86-vnni", "x86-64 with AVX-512 VNNI or AVX-VNNI (Ice Lake+, Zen 4, recent EPYC/Xeon)",
                 OnnxQuantOptions(per_channel=True, reduce_range=False, activation_type="QInt8",
                                  weight_type="QInt8"),
                 "vpdpbusd accumulates u8 x s8 directly into int32: no saturation, full 8-bit range", PREFER["x86"]),
    TargetPreset("arm64", "64-bit ARM CPUs: Raspberry Pi 4/5, Jetson CPU cores, other Cortex-A boards",
                 _ARM64, _ARM64_REASON, PREFER["arm"]),
    TargetPreset("jetson-trt", "NVIDIA Jetson (or any GPU) running the TensorRT execution provider",
                 _TRT, _TRT_REASON, PREFER["jetson"]),
    TargetPreset("pi4", "Raspberry Pi 4 (Cortex-A72, 4 cores, no dot-product extension)", _ARM64,
                 _ARM64_REASON, PREFER["arm"]),
    TargetPreset("pi5", "Raspberry Pi 5 (Cortex-A76, 4 cores, dot-product extension)", _ARM64, _ARM64_REASON,
                 PREFER["arm"]),
    TargetPreset("jetson-orin", "NVIDIA Jetson Orin Nano/NX/AGX (JetPack 6, TensorRT through onnxruntime)", _TRT,
                 _TRT_REASON, PREFER["jetson"]),
    TargetPreset("x86", "any x86-64 with AVX2 (with or without VNNI): laptops, desktops, servers, VMs", _X86_AVX2,
                 _X86_AVX2_REASON + "; correct with or without VNNI (use x86-vnni for the full range on VNNI-only "
                 "fleets)", PREFER["x86"]),
)}

DEVICE_PRESETS = ("pi4", "pi5", "jetson-orin", "x86")
"""The presets named after a device (the others name a kernel family)."""
SAME_OPTIONS = {"pi4": "arm64", "pi5": "arm64", "jetson-orin": "jetson-trt", "x86": "x86-avx2"}
"""Device preset -> the kernel-family preset whose quantisation options it uses."""


OPTIMUM_DYNAMIC: dict[str, str] = {"x86-avx2": "avx2", "x86-vnni": "avx512_vnni", "arm64": "arm64",
                                   "pi4": "arm64", "pi5": "arm64", "x86": "avx2"}
"""``--target`` -> the ``optimum.onnxruntime.AutoQuantizationConfig`` constructor that
``edgemer export hf --quantization dynamic`` uses (optimum's own names for the same kernel
families). ``jetson-trt`` and ``jetson-orin`` have none: TensorRT runs static (QDQ) INT8 only."""


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
