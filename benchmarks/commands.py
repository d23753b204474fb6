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
from typing import Any


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
                        help="bundle folder or shipped bundle name (default physio-demo); or 'report' to render "
                             "the results folder given next (edgemer bench report benchmarks/results --out report/)")
    parser.add_argument("results", nargs="?", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--suite", choices=("standard",), default=None,
                        help="standard: every shipped bundle (plus --bundle ones) x every engine (onnxruntime CPU, "
                             "CUDA, TensorRT; LiteRT CPU/XNNPACK; --delegate) x fp32/int8 x threads 1..cores; "
                             "engines not installed are skipped with the reason")
    parser.add_argument("--bundle", dest="extra_bundles", action="append", default=[], metavar="PATH",
                        help="with --suite: also benchmark this bundle folder (repeatable)")
    parser.add_argument("--delegate", default=None, metavar="PATH",
                        help="TFLite delegate library for the LiteRT cells, e.g. /usr/lib/libedgetpu.so.1")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="with --suite: run the whole grid N times and print each cell's p50 spread")
    parser.add_argument("--best-of", type=int, default=1, metavar="K",
                        help="with --suite: run the grid K times per run and keep each cell's lowest p50 (noise "
                             "only adds time; steadier numbers on shared or virtual machines; default 1)")
    parser.add_argument("--pipeline-seconds", type=float, default=70.0, metavar="SECONDS",
                        help="with --suite: stream seconds of the three-modality pipeline run (0 = skip; default 70)")
    parser.add_argument("--out", type=Path, default=Path("report"), metavar="FOLDER",
                        help="with 'report': where REPORT.md and the PNG plots go (default report/)")
    parser.add_argument("--backends", type=_csv(str), default=("onnxruntime", "litert"), metavar="LIST",
                        help="comma-separated runtimes: onnxruntime, litert (default onnxruntime,litert)")
    parser.add_argument("--precisions", type=_csv(str), default=("fp32", "int8"), metavar="LIST",
                        help="comma-separated precisions: fp32, int8 (default fp32,int8)")
    parser.add_argument("--threads", type=_csv(int), default=None, metavar="LIST",
                        help="comma-separated inference thread counts (default 1,2; with --suite 1..cores)")
    parser.add_argument("--max-time", type=float, default=3.0, metavar="SECONDS",
                        help="longest timed run per cell; a cell stops earlier once the p50's 95 %% CI is within "
                             "5 %% (default 3)")
    parser.add_argument("--providers", type=_csv(str), default=None, metavar="LIST",
                        help="onnxruntime execution providers: cpu, cuda, tensorrt, with options as "
                             "tensorrt:fp16=1:cache=DIR or cuda:device=1 (default cpu; with --suite: options for "
                             "the CUDA/TensorRT engines)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the result as JSON (schema edgemer.bench/1) to FILE.json, or into a folder "
                             "(any other path, e.g. benchmarks/results) as DEVICE_BUNDLE_DATE.json")
    parser.add_argument("--pipeline", action="store_true",
                        help="also run the whole pipeline on the simulated wearable and report its overhead "
                             "beyond inference (uses the first backend, int8 if listed, the first thread count)")
    parser.add_argument("--estimates", type=int, default=40, help="estimates measured with --pipeline (default 40)")
    parser.add_argument("--multimodal", action="store_true",
                        help="instead of a bundle: the three-modality example (examples/full.toml) against the "
                             "runtime targets (overhead, real-time factor on one core, peak RSS); with --soak also "
                             "1 h of stream at 100x (more options: python -m edgemer.benchmarks.soak_bench --help)")
    parser.add_argument("--soak", action="store_true", help="with --multimodal: add the 1-hour soak at 100x")
    parser.add_argument("--quiet", action="store_true", help="no per-cell progress lines")


def result_filename(result: dict) -> str:
    """``<device_id>_<bundle>_<YYYYmmddTHHMMSS>.json`` for a results folder (``<kind>`` for results
    without one bundle, e.g. ``face``)."""
    stamp = result["created_utc"].replace("-", "").replace(":", "").split("+")[0]
    if result.get("kind") == "suite":
        return f"{result['device']['device_id']}_suite-{result.get('suite', 'standard')}_{stamp}.json"
    name = result["bundle"]["name"] if "bundle" in result else result["kind"]
    return f"{result['device']['device_id']}_{name}_{stamp}.json"


def strict_json(x: Any) -> Any:
    """``x`` with NaN and infinities as None and numpy scalars as Python numbers (strict JSON, as SCHEMA.md asks)."""
    import numpy as np

    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark described by ``args``; print the device, the table and ratios; 0 on success.

    Returns 1 when every cell failed or was skipped (nothing was measured).
    """
    from edgemer.benchmarks.bundle_bench import bench_bundle, format_table
    from edgemer.benchmarks.fingerprint import device_line
    from edgemer.benchmarks.pipeline_bench import bench_pipeline, format_pipeline

    from edgemer.bundle import load_bundle

    if args.bundle == "report" and not (Path("report") / "manifest.json").is_file():  # not a bundle called report
        from edgemer.benchmarks.report import run_report

        return run_report(Path(args.results or "benchmarks/results"), args.out)
    if getattr(args, "suite", None):
        return run_suite_cli(args)
    if args.threads is None:
        args.threads = (1, 2)
    if getattr(args, "multimodal", False):
        from edgemer.benchmarks.soak_bench import DEFAULT_CONFIG, run_cli

        return run_cli(argparse.Namespace(config=DEFAULT_CONFIG, overhead_duration=65.0, rtf_speed=40.0,
                                          rtf_duration=240.0, soak_hours=1.0, soak_speed=100.0,
                                          no_soak=not args.soak, json=args.json))
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
        print(f"\nwrote {write_json(result, args.json)}")
    return 0 if any(c["status"] == "ok" for c in result["cells"]) else 1


def write_json(result: dict, dest: Path) -> Path:
    """Write ``result`` to ``dest`` (a ``.json`` file) or into the folder ``dest`` under :func:`result_filename`."""
    is_folder = dest.is_dir() or dest.suffix.lower() != ".json"
    path = dest / result_filename(result) if is_folder else dest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def run_suite_cli(args: argparse.Namespace) -> int:
    """``edgemer bench --suite standard``: progress bar, tables, overhead, spread, targets; JSON with --json.

    Returns 1 when no cell was measured.
    """
    from edgemer.benchmarks.fingerprint import device_line
    from edgemer.benchmarks.suite import format_suite, run_suite, standard_engines, suite_bundles

    extra = list(args.extra_bundles)
    if args.bundle not in (None, "physio-demo"):
        extra.insert(0, args.bundle)
    result = run_suite(suite_bundles(extra), standard_engines(args.delegate, args.providers),
                       precisions=args.precisions, threads=args.threads, max_time_s=args.max_time,
                       repeat=args.repeat, best_of=args.best_of, pipeline_s=args.pipeline_seconds,
                       progress=not args.quiet)
    print(device_line(result["device"]))
    print()
    print(format_suite(result))
    if args.json is not None:
        print(f"\nwrote {write_json(result, args.json)}")
    return 0 if any(c["status"] == "ok" for e in result["results"] for c in e["cells"]) else 1
