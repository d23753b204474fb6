"""Command-line glue for ``edgemer export face`` and ``edgemer data synth-faces``.

Only argparse and the standard library are imported here; numpy, OpenCV and torch are
imported when a command runs, so ``edgemer --help`` stays fast on a device.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from edgemer.export.core.commands import add_bundle_options, add_command, add_training_options, finish, invoked_command


def add_face_commands(data_sub: argparse._SubParsersAction, export_sub: argparse._SubParsersAction) -> None:
    """Register ``data synth-faces`` and ``export face`` under the given sub-command groups."""
    add_command(data_sub, "synth-faces", configure_synth_faces, run_synth_faces,
                help="write scenes with drawn faces (PNG) to try the face path",
                description="Write 640x480 scenes, each with one drawn face whose brows, eyes and mouth follow an "
                            "expression (plus one blank frame): a replayable image folder for 'edgemer run --bundle "
                            "face-demo --source replay:DIR'. Synthetic images, not photographs of anyone.")
    add_command(export_sub, "face", configure_export_face, run_export_face,
                help="train the compact expression CNN on face crops and write a bundle",
                description="Train a compact expression CNN (seven basic expressions, occlusion augmentation) on "
                            "FER2013, a class-per-folder image set or synthetic drawn faces, and write a bundle: FP32 "
                            "ONNX, INT8 ONNX, INT8 TFLite, manifest, verification report with accuracy with and "
                            "without upper/lower-face occlusion.")


def configure_synth_faces(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to create (missing or empty)")
    parser.add_argument("--count", type=int, default=14, help="faces to draw, two per expression by default (14)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-blank", action="store_true", help="leave out the blank (no face) frame")


def run_synth_faces(args: argparse.Namespace) -> int:
    from edgemer.export.face.synth import write_scene_folder

    files = write_scene_folder(args.out, args.count, seed=args.seed, blank=not args.no_blank)
    print(f"wrote {len(files)} images to {args.out}")
    print(f"next: edgemer run --bundle face-demo --source replay:{shlex.quote(str(args.out))}")
    return 0


def configure_export_face(parser: argparse.ArgumentParser) -> None:
    from edgemer.export.face.config import FaceExportConfig

    d = FaceExportConfig()
    parser.add_argument("--data", required=True, metavar="SPEC",
                        help="fer2013:FILE.csv (the FER2013 CSV), folder:DIR (one sub-folder per expression, or "
                             "train/ and test/ splits: RAF-DB/AffectNet exports) or synthetic[:N] (drawn faces)")
    parser.add_argument("--out", type=Path, required=True, metavar="BUNDLE_DIR", help="bundle folder to create")
    parser.add_argument("--name", default=d.name, help=f"bundle name (default {d.name})")
    parser.add_argument("--size", type=int, default=d.size, help=f"square crop side in pixels (default {d.size})")
    parser.add_argument("--colour", choices=("grey", "rgb"), default=d.colour, help="crop colour (default grey)")
    parser.add_argument("--margin", type=float, default=d.margin,
                        help=f"fraction of the face box added per side (default {d.margin:g})")
    add_training_options(parser, d, "crops")
    parser.add_argument("--width", type=int, default=d.width, help=f"channels of the first block (default {d.width})")
    parser.add_argument("--occlusion", type=float, default=d.occlusion_p,
                        help=f"probability of an upper/lower-face patch per training crop (default {d.occlusion_p:g})")
    parser.add_argument("--heldout-fraction", type=float, default=d.heldout_fraction,
                        help="share held out when the data has no split of its own (default 0.1)")
    parser.add_argument("--label-map", choices=("raf-db", "affectnet"), default=None,
                        help="meaning of numbered class folders")
    parser.add_argument("--detect-faces", action="store_true",
                        help="folder images are whole photos: find and crop the face as the runtime does")
    parser.add_argument("--max-per-class", type=int, default=None, help="at most this many images per class folder")
    parser.add_argument("--analysis-fps", type=float, default=d.analysis_fps,
                        help=f"default analysis rate stored in the manifest (default {d.analysis_fps:g})")
    add_bundle_options(parser, d, "crops")


def run_export_face(args: argparse.Namespace) -> int:
    from edgemer.export.face.export import export_face
    from edgemer.export.face.config import FaceExportConfig

    config = FaceExportConfig(name=args.name, size=args.size, colour=args.colour, margin=args.margin,
                              analysis_fps=args.analysis_fps, epochs=args.epochs, batch_size=args.batch_size,
                              lr=args.lr, seed=args.seed, width=args.width, occlusion_p=args.occlusion,
                              heldout_fraction=args.heldout_fraction, label_map=args.label_map,
                              detect_faces=args.detect_faces, max_per_class=args.max_per_class,
                              tflite=not args.no_tflite, guard_steps=args.guard_steps)
    return finish(export_face(args.data, args.out, config, progress=not args.quiet, overwrite=args.overwrite,
                              command=invoked_command()), args)
