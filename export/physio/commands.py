"""Command-line glue for ``edgemer data synth-wesad`` and ``edgemer export physio``.

Only argparse and the standard library are imported here; torch, onnx and NeuroKit2 are
imported when a command runs, so ``edgemer --help`` stays fast on a device.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from edgemer.export.core.commands import add_bundle_options, add_training_options, finish


def configure_synth_wesad(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgemer data synth-wesad``."""
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder to create (must be missing or empty); gets S2/S2.pkl, S3/S3.pkl, ... and "
                             "truth.json with the ODE parameters")
    parser.add_argument("--subjects", type=int, default=15,
                        help="number of synthetic subjects (default 15, as in WESAD); about 28 MB each at the "
                             "full session length")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; the same seed gives the same data (default 0)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="session length per subject in minutes (default 18.5: the compressed WESAD protocol "
                             "baseline, amusement, meditation, stress, meditation)")
    parser.add_argument("--param-spread", type=float, default=0.0, metavar="SIGMA",
                        help="per-subject variation of the EDA ODE parameters alpha_0, beta, gamma: each is "
                             "multiplied by exp(SIGMA * N(0,1)) per subject, listed in truth.json under "
                             "subject_dynamics (default 0: one shared parameter set)")
    parser.add_argument("--drive", choices=("bursty", "condition"), default="bursty",
                        help="latent arousal drive u(t): 'bursty' (default, as in the demo: condition level with "
                             "slow noise and skin-conductance bursts) or 'condition' (exactly the condition's level, "
                             "baseline 0 and stress 1: the data on which the PINN's time constant and gain are "
                             "identifiable)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it holds an earlier synth-wesad output (recognised by its truth.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_synth_wesad(args: argparse.Namespace) -> int:
    """Write the synthetic data set and print where it went."""
    from edgemer.export.physio.synth import write_synthetic_wesad

    out = write_synthetic_wesad(args.out, subjects=args.subjects, seed=args.seed, minutes=args.minutes,
                                progress=not args.quiet, overwrite=args.overwrite, param_spread=args.param_spread,
                                drive=args.drive)
    print(f"wrote {args.subjects} synthetic subjects (WESAD layout) and truth.json to {out}")
    print(f"next: edgemer export physio --wesad {shlex.quote(str(out))} --out my-physio-bundle")
    return 0


def configure_export_physio(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgemer export physio``."""
    from edgemer.export.physio.config import PHYSICS_MODELS, PhysioExportConfig
    from edgemer.export.core.targets import TARGETS

    d = PhysioExportConfig()  # defaults for the help texts (standard library only, no numpy/torch)
    parser.add_argument("--wesad", type=Path, required=True, metavar="DIR",
                        help="WESAD-layout folder holding S2/S2.pkl, S3/S3.pkl, ... (the real WESAD download, or "
                             "the output of 'edgemer data synth-wesad')")
    parser.add_argument("--out", type=Path, required=True, metavar="BUNDLE_DIR",
                        help="bundle folder to create (must be missing or empty)")
    parser.add_argument("--name", default=d.name, help=f"bundle name recorded in the manifest (default {d.name})")
    add_training_options(parser, d, "windows", lr_help="Adam learning rate")
    parser.add_argument("--window", type=float, default=d.window_s, metavar="SECONDS",
                        help=f"model window, seconds (default {d.window_s:g})")
    parser.add_argument("--hop", type=float, default=d.hop_s, metavar="SECONDS",
                        help=f"runtime hop between estimates, seconds, stored in the manifest (default {d.hop_s:g})")
    parser.add_argument("--train-hop", type=float, default=d.train_hop_s, metavar="SECONDS",
                        help=f"hop between training windows, seconds (default {d.train_hop_s:g})")
    parser.add_argument("--forecast", type=float, default=d.forecast_s, metavar="SECONDS",
                        help=f"EDA forecast horizon, seconds (default {d.forecast_s:g})")
    parser.add_argument("--heldout-fraction", type=float, default=d.heldout_fraction,
                        help=f"share of subjects held out for verification, at least one "
                             f"(default {d.heldout_fraction:g})")
    parser.add_argument("--calibration-windows", type=int, default=d.calibration_windows,
                        help=f"training windows used to calibrate INT8 ranges (default {d.calibration_windows})")
    parser.add_argument("--physics-weight", type=float, default=d.physics_weight,
                        help=f"weight of the EDA ODE residual in the training loss (default {d.physics_weight:g})")
    parser.add_argument("--physics", choices=PHYSICS_MODELS, default=d.physics,
                        help="the PINN's physics: 'tonic-phasic' (default: a tonic ODE + Bateman SCR model is fitted "
                             "on the training subjects' recordings, its parameters are fixed in the PINN and the ODE "
                             "residual acts on the tonic component, EDA minus the SCRs) or 'single-ode' (the old "
                             "model: one ODE residual on the whole EDA, its parameters learned by the PINN)")
    parser.add_argument("--physics-steps", type=int, default=d.physics_steps, metavar="N",
                        help=f"Adam steps of the tonic/phasic fit (default {d.physics_steps})")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE.json",
                        help="export options from a JSON file of PhysioExportConfig fields, e.g. the best.json of "
                             "'edgemer study tune'; options given here with a non-default value win")
    parser.add_argument("--target", choices=tuple(TARGETS), default=None,
                        help="INT8 ONNX quantisation preset for the device that will run the bundle: x86-avx2 "
                             "(no VNNI: 7-bit weights against int16 saturation), x86-vnni, arm64 (Pi 4/5), "
                             "jetson-trt (symmetric QDQ for TensorRT); default: onnxruntime's S8S8 QDQ")
    add_bundle_options(parser, d, "windows")


def run_export_physio(args: argparse.Namespace) -> int:
    """Export the bundle, print the summary and targets; 1 if ``--strict`` and a target failed."""
    from edgemer.export.physio.config_file import apply_config_file

    args = apply_config_file(args)
    from edgemer.export.physio.config import PhysioExportConfig
    from edgemer.export.physio.export import export_physio
    from edgemer.export.core.targets import quant_options

    config = PhysioExportConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, window_s=args.window,
        hop_s=args.hop, train_hop_s=args.train_hop, forecast_s=args.forecast, heldout_fraction=args.heldout_fraction,
        calibration_windows=args.calibration_windows, physics_weight=args.physics_weight, physics=args.physics,
        physics_steps=args.physics_steps, name=args.name,
        tflite=not args.no_tflite, onnx_quantisation=quant_options(getattr(args, "target", None)),
        guard_steps=args.guard_steps)
    return finish(export_physio(args.wesad, args.out, config, progress=not args.quiet, overwrite=args.overwrite),
                  args)
