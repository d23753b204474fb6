"""``edgemer bench``: options and entry point, registered by :mod:`edgemer.cli`.

Only the standard library is imported at module level, so building the CLI parser
stays fast; the benchmark modules load when the command runs. Bundle errors
(:class:`edgemer.errors.EdgemerError`) propagate to the CLI, which prints them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _csv(kind: type):
    def parse(text: str) -> tuple:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list, e.g. 1,2")
        try:
            return tuple(kind(t) for t in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of {kind.__name__}") from None
    parse.__name__ = f"{kind.__name__} list"
    return parse


def configure_bench(parser: argparse.ArgumentParser) -> None:
    """Add the ``edgemer bench`` arguments to ``parser``."""
    parser.add_argument("bundle", nargs="?", default="physio-demo",
                        help="bundle folder or shipped bundle name (default physio-demo)")
    parser.add_argument("--backends", type=_csv(str), default=("onnxruntime", "litert"), metavar="LIST",
                        help="comma-separated runtimes: onnxruntime, litert (default onnxruntime,litert)")
    parser.add_argument("--precisions", type=_csv(str), default=("fp32", "int8"), metavar="LIST",
                        help="comma-separated precisions: fp32, int8 (default fp32,int8)")
    parser.add_argument("--threads", type=_csv(int), default=(1, 2), metavar="LIST",
                        help="comma-separated inference thread counts (default 1,2)")
    parser.add_argument("--max-time", type=float, default=3.0, metavar="SECONDS",
                        help="longest timed run per cell; a cell stops earlier once the p50's 95 %% CI is within "
                             "5 %% (default 3)")
    parser.add_argument("--providers", type=_csv(str), default=None, metavar="LIST",
                        help="onnxruntime execution providers: cpu, cuda, tensorrt (default cpu)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the result as JSON (schema edgemer.bench/1) to FILE.json, or into a folder "
                             "(any other path, e.g. benchmarks/results) as DEVICE_BUNDLE_DATE.json")
    parser.add_argument("--pipeline", action="store_true",
                        help="also run the whole pipeline on the simulated wearable and report its overhead "
                             "beyond inference (uses the first backend, int8 if listed, the first thread count)")
    parser.add_argument("--estimates", type=int, default=40, help="estimates measured with --pipeline (default 40)")
    parser.add_argument("--quiet", action="store_true", help="no per-cell progress lines")


def result_filename(result: dict) -> str:
    """``<device_id>_<bundle>_<YYYYmmddTHHMMSS>.json`` for a results folder."""
    stamp = result["created_utc"].replace("-", "").replace(":", "").split("+")[0]
    return f"{result['device']['device_id']}_{result['bundle']['name']}_{stamp}.json"


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark described by ``args``; print the device, the table and ratios; 0 on success.

    Returns 1 when every cell failed or was skipped (nothing was measured).
    """
    from edgemer.benchmarks.bundle_bench import bench_bundle, format_table
    from edgemer.benchmarks.fingerprint import device_line
    from edgemer.benchmarks.pipeline_bench import bench_pipeline, format_pipeline

    from edgemer.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    quiet = getattr(args, "quiet", False)
    if not quiet:
        print(f"benchmarking {bundle.name} ({bundle.path}); each cell runs in its own process", file=sys.stderr)
    result = bench_bundle(bundle, backends=args.backends, precisions=args.precisions, threads=args.threads,
                          max_time_s=args.max_time, progress=not quiet, providers=args.providers)
    print(device_line(result["device"]))
    if bundle.manifest.trained_on_synthetic_data:
        print(f"bundle {bundle.name}: trained on synthetic data (timings are real; accuracy is not)")
    print()
    print(format_table(result))
    if getattr(args, "pipeline", False):
        precision = "int8" if "int8" in args.precisions else args.precisions[0]
        if not quiet:
            print(f"running the pipeline ({args.backends[0]} {precision} threads={args.threads[0]}) ...",
                  file=sys.stderr)
        result["pipeline"] = bench_pipeline(bundle, backend=args.backends[0], precision=precision,
                                            threads=args.threads[0], estimates=args.estimates)
        print()
        print(format_pipeline(result["pipeline"]))
    if args.json is not None:
        is_folder = args.json.is_dir() or args.json.suffix.lower() != ".json"
        path = args.json / result_filename(result) if is_folder else args.json
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        print(f"\nwrote {path}")
    return 0 if any(c["status"] == "ok" for c in result["cells"]) else 1
