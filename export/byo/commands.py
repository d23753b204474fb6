"""Command-line glue for ``edgemer export onnx`` (bring your own model).

Only argparse and the standard library are imported here; numpy, onnx and onnxruntime are
imported when the command runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from edgemer.export.core.commands import add_command, finish, invoked_command

DESCRIPTION = ("Turn your own FP32 ONNX model into a verified INT8 edgemer bundle: check it (onnx checker, opset, "
               "shapes, ops), calibrate it on your data pushed through the runtime front-end, quantise to static "
               "INT8 QDQ ONNX under an accuracy guard (nodes that cost more than --max-drop points stay FP32), "
               "convert to fully-integer INT8 TFLite where possible, verify every file and write report.md/.json.")


def add_byo_commands(export_sub: argparse._SubParsersAction) -> None:
    """Register ``export onnx`` under the ``export`` sub-commands."""
    add_command(export_sub, "onnx", configure_export_onnx, run_export_onnx,
                help="bring your own ONNX model: calibrate, quantise, verify, write a bundle", description=DESCRIPTION)


def configure_export_onnx(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgemer export onnx``."""
    from edgemer.export.byo.config import CALIBRATION_METHODS, MODALITIES, ByoExportConfig
    from edgemer.export.core.targets import TARGETS

    d = ByoExportConfig()
    parser.add_argument("model", type=Path, metavar="MODEL.onnx",
                        help="FP32 ONNX model (one float32 input); a Keras 2 .h5/.hdf5 image classifier is imported "
                             "without TensorFlow first")
    parser.add_argument("--calibration", type=Path, required=True, metavar="DIR",
                        help="calibration data: images (face), WAV files (audio) or NPZ windows (physio); read "
                             "recursively in sorted order")
    parser.add_argument("--modality", choices=MODALITIES, required=True, help="which runtime front-end feeds the model")
    parser.add_argument("--out", type=Path, required=True, metavar="BUNDLE_DIR", help="bundle folder to create")
    parser.add_argument("--labels", default=None, metavar="A,B,C",
                        help="class names in the model's output order (default class_0, class_1, ...)")
    parser.add_argument("--name", default=d.name, help=f"bundle name (default {d.name})")
    parser.add_argument("--output", default=None, metavar="NAME",
                        help="the class-score output (default: the first output shaped [1, K])")
    parser.add_argument("--input-shape", default=None, metavar="1,C,H,W",
                        help="full input shape, for inputs with dynamic dimensions other than the batch")
    parser.add_argument("--eval", type=Path, default=None, metavar="DIR", dest="eval_dir",
                        help="evaluation data; files in folders named like the labels are labelled (accuracy), "
                             "otherwise FP32's outputs are the reference (argmax agreement)")
    parser.add_argument("--target", choices=tuple(TARGETS), default=None,
                        help="INT8 quantisation preset of the device (see 'edgemer export physio --help')")
    parser.add_argument("--calibration-method", choices=tuple(CALIBRATION_METHODS), default="minmax",
                        help="how activation ranges are set (default minmax)")
    parser.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default per channel)")
    parser.add_argument("--exclude", default=None, metavar="NODE,...", help="node names to keep in FP32")
    parser.add_argument("--max-drop", type=float, default=d.max_drop_points, metavar="POINTS",
                        help=f"largest INT8 metric drop allowed, points (default {d.max_drop_points:g}); beyond it the "
                             f"most sensitive nodes stay FP32")
    parser.add_argument("--strict", action="store_true",
                        help="fail (no bundle) when INT8 drops more than --max-drop, instead of keeping nodes FP32; "
                             "exit 1 when another verification target fails (that bundle is kept)")
    parser.add_argument("--calibration-samples", type=int, default=d.calibration_samples,
                        help=f"calibration inputs used, spread evenly over the files (default {d.calibration_samples})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed of every random choice (default {d.seed})")
    g = parser.add_argument_group("face front-end (inferred from the model input where possible)")
    g.add_argument("--layout", choices=("NCHW", "NHWC"), default=None)
    g.add_argument("--colour", choices=("grey", "rgb", "bgr"), default=None)
    g.add_argument("--scale", type=float, default=None, help="model input = pixel (0..255) * SCALE + OFFSET")
    g.add_argument("--offset", type=float, default=None)
    g.add_argument("--detect-faces", action="store_true",
                   help="calibration images are whole frames: cut faces with the runtime detector")
    a = parser.add_argument_group("audio front-end (inferred from the model input where possible)")
    a.add_argument("--audio-rate", type=int, default=d.audio_rate_hz, metavar="HZ",
                   help=f"model sample rate (default {d.audio_rate_hz})")
    a.add_argument("--audio-features", choices=("log_mel", "waveform"), default=None)
    a.add_argument("--mel-hop", type=int, default=d.mel_hop_length, metavar="SAMPLES")
    a.add_argument("--audio-normalisation", choices=("none", "calibration"), default=d.audio_normalisation,
                   help="log-mel standardisation: none, or per-band mean/std of the calibration windows")
    a.add_argument("--normalize-waveform", action="store_true", help="zero mean, unit variance per window")
    a.add_argument("--resample", action="store_true", help="resample WAV files at other rates instead of failing")
    parser.add_argument("--hop", type=float, default=d.hop_s, metavar="SECONDS",
                        help=f"runtime hop between windows, audio and physio (default {d.hop_s:g})")
    parser.add_argument("--no-tflite", action="store_true", help="ONNX files only")
    parser.add_argument("--require-tflite", action="store_true",
                        help="fail when the INT8 TFLite file cannot be made (default: record why and keep the ONNX)")
    parser.add_argument("--overwrite", action="store_true", help="replace BUNDLE_DIR if it holds an earlier bundle")


def config_from_args(args: argparse.Namespace):
    """The :class:`~edgemer.export.byo.config.ByoExportConfig` of parsed arguments."""
    import dataclasses

    from edgemer.export.byo.config import CALIBRATION_METHODS, ByoExportConfig, parse_list, parse_shape
    from edgemer.export.core.targets import quant_options

    quant = dataclasses.replace(quant_options(args.target), per_channel=not args.per_tensor,
                                calibrate_method=CALIBRATION_METHODS[args.calibration_method])
    return ByoExportConfig(
        modality=args.modality, name=args.name, labels=parse_list(args.labels) or None, output=args.output,
        input_shape=parse_shape(args.input_shape) if args.input_shape else None, layout=args.layout,
        colour=args.colour, scale=args.scale, offset=args.offset, detect_faces=args.detect_faces,
        audio_rate_hz=args.audio_rate, audio_features=args.audio_features, mel_hop_length=args.mel_hop,
        audio_normalisation=args.audio_normalisation, normalize_waveform=args.normalize_waveform,
        resample=args.resample, hop_s=args.hop, quant=quant, exclude=parse_list(args.exclude),
        calibration_samples=args.calibration_samples, seed=args.seed, max_drop_points=args.max_drop,
        strict=args.strict, tflite=not args.no_tflite, require_tflite=args.require_tflite)


def run_export_onnx(args: argparse.Namespace) -> int:
    """Export, print the summary; 1 when a verification target failed."""
    from edgemer.export.byo.export import export_keras_model, export_onnx_model

    config = config_from_args(args)
    if args.model.suffix.lower() in (".h5", ".hdf5"):
        result = export_keras_model(args.model, args.calibration, args.out, config, eval_dir=args.eval_dir,
                                    overwrite=args.overwrite)
    else:
        result = export_onnx_model(args.model, args.calibration, args.out, config, eval_dir=args.eval_dir,
                                   overwrite=args.overwrite, command=invoked_command())
    return finish(result, args)
