"""Command-line glue for ``edgemer study physio`` (argparse and the standard library only)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_study_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``edgemer study physio`` to the top-level subcommands."""
    study = sub.add_parser("study", help="reproducible studies on data sets (host side, needs [export])")
    study_sub = study.add_subparsers(dest="study_command", metavar="STUDY_COMMAND", required=True)
    physio = study_sub.add_parser(
        "physio", help="the multi-task PINN on a WESAD folder: CV and LOSO, ablations, baselines, physics",
        description="Run the physiology study on a WESAD-layout folder: 5-fold CV (the paper's protocol) and "
                    "leave-one-subject-out, each with and without self-report features; ablations (EDA-only, "
                    "classification-only, no physics); SVR and gradient-boosted-tree baselines; learned ODE "
                    "parameters per fold. Writes REPORT_DIR/report.md, report.json and PNG plots; reruns resume "
                    "from REPORT_DIR's cache.")
    physio.add_argument("--wesad", type=Path, required=True, metavar="DIR",
                        help="WESAD-layout folder (S2/S2.pkl, ...; real WESAD or 'edgemer data synth-wesad')")
    physio.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR",
                        help="report folder (created; an earlier run's cache in it is reused)")
    physio.add_argument("--subjects", type=int, default=None, metavar="N", help="use only the first N subjects")
    physio.add_argument("--folds", type=int, default=5, help="k of the k-fold cross-validation (default 5)")
    physio.add_argument("--loso-folds", type=int, default=None, metavar="N",
                        help="run only the first N leave-one-subject-out folds (default all)")
    physio.add_argument("--protocols", default="cv,loso", help="comma-separated: cv, loso (default both)")
    physio.add_argument("--epochs", type=int, default=20, help="PINN training epochs per fold (default 20)")
    physio.add_argument("--batch-size", type=int, default=64, help="windows per training step (default 64)")
    physio.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 0.003)")
    physio.add_argument("--physics-weight", type=float, default=1.0, help="weight of the ODE residual (default 1)")
    physio.add_argument("--window", type=float, default=60.0, metavar="SECONDS",
                        help="window length, a multiple of 2 s (default 60)")
    physio.add_argument("--train-hop", type=float, default=5.0, metavar="SECONDS",
                        help="hop between windows, seconds (default 5)")
    physio.add_argument("--forecast", type=float, default=10.0, metavar="SECONDS",
                        help="EDA forecast horizon, seconds (default 10)")
    physio.add_argument("--seed", type=int, default=0, help="seed for folds and training (default 0)")
    physio.add_argument("--no-ablations", action="store_true", help="skip the ablation variants")
    physio.add_argument("--no-baselines", action="store_true", help="skip the scikit-learn baselines")
    physio.add_argument("--personalise", type=float, default=120.0, metavar="SECONDS",
                        help="LOSO: also fine-tune each fold's PINN on the new wearer's first SECONDS of baseline "
                             "and score it on the wearer's other windows (default 120; 0 = off)")
    physio.add_argument("--personalise-epochs", type=int, default=30,
                        help="full-batch fine-tuning steps for --personalise (default 30)")
    physio.add_argument("--skip-bad", action="store_true",
                        help="skip subjects whose files are missing, unreadable, unsafe or malformed (listed in the "
                             "report) instead of stopping with the error")
    physio.add_argument("--quiet", action="store_true", help="no progress bars")
    physio.set_defaults(func=run_study_physio)


def run_study_physio(args: argparse.Namespace) -> int:
    from edgemer.export.study.run import StudyOptions, run_study

    opts = StudyOptions(window_s=args.window, train_hop_s=args.train_hop, forecast_s=args.forecast,
                        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        physics_weight=args.physics_weight, seed=args.seed, folds=args.folds,
                        max_subjects=args.subjects, loso_folds=args.loso_folds,
                        protocols=tuple(p.strip() for p in args.protocols.split(",") if p.strip()),
                        ablations=not args.no_ablations, baselines=not args.no_baselines, skip_bad=args.skip_bad,
                        personalise_s=args.personalise, personalise_epochs=args.personalise_epochs)
    command = shlex.join(["edgemer"] + sys.argv[1:]) if sys.argv[1:2] == ["study"] else None
    result = run_study(args.wesad, args.out, opts, progress=not args.quiet, command=command)
    print("\n".join(result.summary_lines))
    return 0
