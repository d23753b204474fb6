"""Command-line pieces every ``edgemer export`` kind shares (argparse and the standard library only).

Each modality's ``commands`` module adds its own options (data, model, front-end) and
uses these for the rest: where the bundle goes, the accuracy guard, and how the run ends.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any, Callable


def add_command(sub: argparse._SubParsersAction, name: str, configure: Callable[[argparse.ArgumentParser], None] | None,
                run: Callable[[argparse.Namespace], int], help: str, description: str | None = None
                ) -> argparse.ArgumentParser:
    """Register the sub-command ``name`` under ``sub``: its parser gets ``configure``'s options (None:
    no options) and runs ``run(args)`` (the exit status); returns the parser."""
    parser = sub.add_parser(name, help=help, description=description)
    if configure is not None:
        configure(parser)
    parser.set_defaults(func=run)
    return parser


def invoked_command() -> str | None:
    """The command line as typed, when run as ``edgemer ...`` (recorded in a bundle's provenance), else None."""
    return shlex.join(["edgemer", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("edgemer") else None


def add_training_options(parser: argparse.ArgumentParser, d: Any, item: str, lr_help: str = "peak learning rate"
                         ) -> None:
    """``--epochs``, ``--batch-size``, ``--lr`` and ``--seed`` with the defaults of config ``d``
    (``item``: what a batch holds, e.g. ``windows``)."""
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs (default {d.epochs})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help=f"{item} per training step (default {d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"{lr_help} (default {d.lr:g})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed (default {d.seed})")


def add_bundle_options(parser: argparse.ArgumentParser, d: Any, what: str, progress: bool = True,
                       guard: bool = True) -> None:
    """The options that end every trained export: (with ``guard``) ``--guard-steps`` (the accuracy guard
    on the held-out ``what``), ``--no-tflite``, ``--strict``, ``--overwrite`` and (with ``progress``) ``--quiet``."""
    if guard:
        parser.add_argument("--guard-steps", type=int, default=d.guard_steps, metavar="N",
                            help=f"accuracy guard: while the INT8 ONNX model's macro-F1 on the held-out {what} drops "
                                 f"more than the target, keep the nodes around the most sensitive tensor in FP32 and "
                                 f"quantise again, at most N times (default {d.guard_steps}; 0: plain quantisation)")
    parser.add_argument("--no-tflite", action="store_true", help="ONNX models only (no TFLite files)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a verification target fails (the bundle is still written)")
    parser.add_argument("--overwrite", action="store_true", help="replace BUNDLE_DIR if it holds an earlier bundle")
    if progress:
        parser.add_argument("--quiet", action="store_true", help="no progress bars")


def finish(result: Any, args: argparse.Namespace) -> int:
    """Print the export's summary; exit status 1 when ``--strict`` and a verification target failed."""
    print(result.summary())
    return 1 if args.strict and not result.passed else 0
