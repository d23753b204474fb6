"""The runtime front-end of a brought model, inferred from its input where possible.

The front-end is what the runtime will do to sensor data before the model sees it; it
is written into the manifest, and calibration data goes through the same code.

- face ``[1, C, H, W]`` (or ``[1, H, W, C]``: a Transpose is put in front of the model so
  the bundle takes NCHW like every edgemer face bundle): crop size W x H, grey for one
  channel; colour and pixel scaling from the ONNX image metadata
  (``Image.BitmapPixelFormat``, ``Image.NominalPixelRange``) when the model has it.
- audio ``[1, n]``: the raw waveform, ``n / rate`` seconds; ``[1, 1, n_mels, n_frames]``:
  log-mel with ``n_mels`` bands and ``(n_frames - 1) * hop`` samples (centred frames).
- physio ``[1, 4, N]``: the wrist feature matrix at 4 Hz, ``N / 4`` seconds.

Each choice is recorded with where it came from (``given``, ``inferred``, ``default``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgemer.bundle import TensorSpec
from edgemer.errors import ModelCheckError
from edgemer.export.byo.config import ByoExportConfig
from edgemer.export.core.onnx_check import CheckedModel
from edgemer.frontends.audio import AudioFrontEndConfig
from edgemer.frontends.audio_dsp import MelConfig
from edgemer.frontends.face import CropConfig, FaceFrontEndConfig
from edgemer.frontends.face_detector import FaceDetectorOptions
from edgemer.frontends.physio import CHANNELS, FEATURE_RATE_HZ, WristFrontEndConfig

PIXEL_RANGES = {"NominalRange_0_255": (1.0, 0.0), "Normalized_0_1": (1.0 / 255.0, 0.0),
                "Normalized_1_1": (2.0 / 255.0, -1.0)}
"""ONNX ``Image.NominalPixelRange`` metadata -> (scale, offset) of 0..255 pixels."""
PIXEL_FORMATS = {"Gray8": "grey", "Rgb8": "rgb", "Bgr8": "bgr", "Rgba8": "rgb", "Bgra8": "bgr"}


@dataclass
class FrontEndPlan:
    """What the front-end will be: ``kind`` (modality), the settled values, their origins.

    face: ``crop``; audio: ``audio`` (AudioFrontEndConfig without normalisation yet);
    physio: ``window_s``. ``origin``: setting -> ``given``/``inferred from ...``/``default``.
    ``nhwc``: the model took NHWC and a Transpose was prepended.
    """

    kind: str
    input: TensorSpec
    class_output: str
    labels: tuple[str, ...]
    crop: CropConfig | None = None
    audio: AudioFrontEndConfig | None = None
    window_s: float | None = None
    nhwc: bool = False
    output_is_probability: bool = False
    origin: dict[str, str] = field(default_factory=dict)


def pick_class_output(checked: CheckedModel, name: str | None) -> TensorSpec:
    """The class-score output: ``name``, or the first output shaped ``[1, K]`` with K >= 2."""
    if name is not None:
        for o in checked.outputs:
            if o.name == name:
                return o
        raise ModelCheckError(f"{checked.source}: no output named '{name}' (outputs: "
                              f"{[o.name for o in checked.outputs]}); fix --output")
    for o in checked.outputs:
        if len(o.shape) == 2 and o.shape[1] >= 2:
            return o
    raise ModelCheckError(f"{checked.source}: no output shaped [1, K] with K >= 2 class scores among "
                          f"{[(o.name, list(o.shape)) for o in checked.outputs]}; name the class output with --output")


def resolve_labels(given: tuple[str, ...] | None, n: int, output: str) -> tuple[str, ...]:
    if given is None:
        return tuple(f"class_{i}" for i in range(n))
    if len(given) != n:
        raise ModelCheckError(f"--labels names {len(given)} classes, but output '{output}' has {n} scores; "
                              f"give one label per score, in the model's order")
    return tuple(given)


def prepend_nchw_transpose(proto: Any, spec: TensorSpec) -> TensorSpec:
    """Make an NHWC model take NCHW: the input becomes ``[1, C, H, W]`` and feeds a Transpose.

    The input keeps its name; the model's own first nodes read the transposed tensor.
    """
    import onnx

    n, h, w, c = spec.shape
    inner = f"{spec.name}__nhwc"
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name == spec.name:
                node.input[i] = inner
    proto.graph.node.insert(0, onnx.helper.make_node("Transpose", [spec.name], [inner], perm=[0, 2, 3, 1],
                                                     name="edgemer_nchw_to_nhwc"))
    vi = next(i for i in proto.graph.input if i.name == spec.name)
    dims = vi.type.tensor_type.shape.dim
    for d, v in zip(dims, (n, c, h, w)):
        d.Clear()
        d.dim_value = v
    return TensorSpec(spec.name, (n, c, h, w))


def _face(checked: CheckedModel, cfg: ByoExportConfig, plan: FrontEndPlan) -> None:
    shape = checked.input.shape
    if len(shape) != 4:
        raise ModelCheckError(f"{checked.source}: a face model takes an image [1, C, H, W] or [1, H, W, C]; input "
                              f"'{checked.input.name}' is {list(shape)}")
    layout = cfg.layout
    if layout is None:
        nchw, nhwc = shape[1] in (1, 3), shape[3] in (1, 3)
        if nchw == nhwc:
            raise ModelCheckError(f"{checked.source}: cannot tell the layout of input {list(shape)}; pass --layout "
                                  f"NCHW or NHWC")
        layout = "NCHW" if nchw else "NHWC"
        plan.origin["layout"] = f"inferred from input shape {list(shape)}"
    else:
        plan.origin["layout"] = "given"
    channels = shape[1] if layout == "NCHW" else shape[3]
    if channels not in (1, 3):
        raise ModelCheckError(f"{checked.source}: input {list(shape)} as {layout} has {channels} channels; face "
                              f"models take 1 (grey) or 3 (colour)")
    if layout == "NHWC":
        plan.input = prepend_nchw_transpose(checked.proto, checked.input)
        plan.nhwc = True
    _, _, h, w = plan.input.shape
    meta = checked.metadata
    colour = cfg.colour
    if colour is None:
        if channels == 1:
            colour, plan.origin["colour"] = "grey", "inferred: 1 channel"
        elif PIXEL_FORMATS.get(meta.get("Image.BitmapPixelFormat", "")) in ("rgb", "bgr"):
            colour = PIXEL_FORMATS[meta["Image.BitmapPixelFormat"]]
            plan.origin["colour"] = "inferred from ONNX metadata Image.BitmapPixelFormat"
        else:
            colour, plan.origin["colour"] = "rgb", "default (3 channels, no Image.BitmapPixelFormat metadata)"
    else:
        plan.origin["colour"] = "given"
    if (colour == "grey") != (channels == 1):
        raise ModelCheckError(f"--colour {colour} does not fit the model's {channels} input channel(s)")
    scale, offset = cfg.scale, cfg.offset
    if scale is None and offset is None and meta.get("Image.NominalPixelRange") in PIXEL_RANGES:
        scale, offset = PIXEL_RANGES[meta["Image.NominalPixelRange"]]
        plan.origin["scaling"] = "inferred from ONNX metadata Image.NominalPixelRange"
    else:
        plan.origin["scaling"] = "given" if scale is not None or offset is not None else "default (pixels / 255)"
    plan.crop = CropConfig(size=(w, h), colour=colour, margin=cfg.margin,
                           scale=1.0 / 255.0 if scale is None else scale, offset=0.0 if offset is None else offset)


def _audio(checked: CheckedModel, cfg: ByoExportConfig, plan: FrontEndPlan) -> None:
    shape, rate = checked.input.shape, cfg.audio_rate_hz
    features = cfg.audio_features
    if features is None:
        if len(shape) == 2:
            features = "waveform"
        elif len(shape) == 4 and shape[1] == 1:
            features = "log_mel"
        else:
            raise ModelCheckError(f"{checked.source}: an audio model takes a waveform [1, n] or a log-mel "
                                  f"[1, 1, n_mels, n_frames]; input '{checked.input.name}' is {list(shape)}")
        plan.origin["features"] = f"inferred from input shape {list(shape)}"
    else:
        plan.origin["features"] = "given"
    mel = MelConfig(sample_rate_hz=rate, n_fft=cfg.mel_n_fft, win_length=cfg.mel_win_length,
                    hop_length=cfg.mel_hop_length, n_mels=shape[2] if len(shape) == 4 else 64,
                    fmax_hz=min(8000.0, rate / 2))
    if features == "waveform":
        if len(shape) != 2:
            raise ModelCheckError(f"waveform features give [1, n]; the model input is {list(shape)}")
        n_samples = shape[1]
    else:
        if len(shape) != 4 or shape[1] != 1:
            raise ModelCheckError(f"log-mel features give [1, 1, n_mels, n_frames]; the model input is {list(shape)}")
        n_samples = (shape[3] - 1) * mel.hop_length
        plan.origin["n_mels"] = f"inferred from input shape ({shape[2]})"
    window_s = n_samples / rate
    plan.origin["window_s"] = f"inferred: {n_samples} samples at {rate} Hz"
    plan.audio = AudioFrontEndConfig(window_s=window_s, hop_s=cfg.hop_s, sample_rate_hz=rate,
                                     features=features, mel=mel, normalize_waveform=cfg.normalize_waveform,
                                     classes=plan.class_output, dimensions=None)
    if plan.audio.input_shape() != tuple(shape):
        raise ModelCheckError(f"{checked.source}: the audio front-end ({features}, {window_s:g} s at {rate} Hz, "
                              f"hop {mel.hop_length}) makes {list(plan.audio.input_shape())}, the model takes "
                              f"{list(shape)}; adjust --audio-rate / --mel-hop")


def _physio(checked: CheckedModel, plan: FrontEndPlan) -> None:
    shape = checked.input.shape
    if len(shape) != 3 or shape[1] != len(CHANNELS):
        raise ModelCheckError(f"{checked.source}: a physio model takes the wrist feature matrix [1, 4, N] "
                              f"({', '.join(CHANNELS)} at 4 Hz); input '{checked.input.name}' is {list(shape)}")
    plan.window_s = shape[2] / FEATURE_RATE_HZ
    plan.origin["window_s"] = f"inferred: {shape[2]} samples at 4 Hz"


def plan_front_end(checked: CheckedModel, cfg: ByoExportConfig) -> FrontEndPlan:
    """Settle the front-end for ``checked`` (may prepend a Transpose to ``checked.proto``).

    Raises
    ------
    ModelCheckError: the input does not fit the modality, or the options contradict it.
    """
    out = pick_class_output(checked, cfg.output)
    labels = resolve_labels(cfg.labels, out.shape[1], out.name)
    plan = FrontEndPlan(kind=cfg.modality, input=checked.input, class_output=out.name, labels=labels,
                        output_is_probability=any(n.op_type == "Softmax" and out.name in n.output
                                                  for n in checked.proto.graph.node))
    if plan.output_is_probability:
        plan.origin["class_output"] = f"'{out.name}' comes from a Softmax: read as probabilities"
    plan.origin["labels"] = "given" if cfg.labels else f"default (class_0..class_{len(labels) - 1})"
    if cfg.modality == "face":
        _face(checked, cfg, plan)
    elif cfg.modality == "audio":
        _audio(checked, cfg, plan)
    else:
        _physio(checked, plan)
    return plan


def face_front_end(plan: FrontEndPlan, cfg: ByoExportConfig) -> FaceFrontEndConfig:
    assert plan.crop is not None
    return FaceFrontEndConfig(analysis_fps=cfg.analysis_fps, crop=plan.crop, detector=FaceDetectorOptions(),
                              output=plan.class_output, output_is_probability=plan.output_is_probability)


def physio_front_end(plan: FrontEndPlan, cfg: ByoExportConfig, mean: tuple[float, ...], std: tuple[float, ...]
                     ) -> WristFrontEndConfig:
    assert plan.window_s is not None
    return WristFrontEndConfig(window_s=plan.window_s, hop_s=cfg.hop_s, forecast_s=0.0, mean=mean, std=std)
