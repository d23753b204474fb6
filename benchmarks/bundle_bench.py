"""Benchmark one bundle: every model file x backend x precision x thread count.

Each cell runs in a fresh interpreter (:mod:`edgemer.benchmarks.cell`), one after the
other, so its peak RSS is its own and a crashing runtime fails only that cell. A
backend whose runtime is not installed, or a model file the bundle does not ship,
becomes a ``skipped`` cell with the reason; a model the runtime refuses to load, a
crash or a timeout becomes a ``failed`` cell with the message. Bundle errors found
before any cell runs (missing bundle, bad manifest, sha256 mismatch) propagate as
:class:`edgemer.errors.BundleError`.

Per backend x threads the result carries INT8/FP32 ratios measured in the same run
(p50 latency, file size) and INT8-vs-FP32 parity (argmax agreement of the first
output, max abs error of every output). Units: latency ms, times s, memory MiB,
sizes bytes. The result layout is documented in ``benchmarks/SCHEMA.md``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from edgemer.benchmarks.cell import CellSpec, MeasureOptions
from edgemer.benchmarks.fingerprint import device_fingerprint
from edgemer.benchmarks.result import make_result, target

from edgemer.bundle import PRECISIONS, Bundle, load_bundle
from edgemer.errors import ConfigError, ManifestError

INT8_SIZE_TARGET = 0.35
"""INT8 ONNX file size must be at most this fraction of FP32 ONNX."""

STDERR_TAIL = 2000
"""Characters of a crashed worker's stderr kept in the cell's reason."""


@dataclass(frozen=True)
class BenchSettings(MeasureOptions):
    """How :func:`bench_bundle` measures: which cells, and how each is timed (:class:`MeasureOptions`).

    backends: runtimes to try (``onnxruntime``, ``litert``). precisions: ``fp32``/``int8``.
    threads: inference thread counts. timeout_s: seconds a worker may take beyond
    ``max_time_s + warmup_s`` (imports, loading) before it is killed.
    providers: onnxruntime execution providers (``cpu``, ``cuda``, ``tensorrt``, with options such as
    ``tensorrt:fp16=1``); None = CPU. A provider missing here makes its cells ``skipped``.
    delegate: path of a TFLite delegate library for the litert cells (e.g. ``libedgetpu.so.1``).
    """

    backends: tuple[str, ...] = ("onnxruntime", "litert")
    precisions: tuple[str, ...] = ("fp32", "int8")
    threads: tuple[int, ...] = (1, 2)
    timeout_s: float = 120.0
    providers: tuple[str, ...] | None = None
    delegate: str | None = None

    def __post_init__(self) -> None:
        from edgemer.backends import BACKENDS

        if not self.backends or any(b not in BACKENDS for b in self.backends):
            raise ConfigError(f"BenchSettings.backends must be a non-empty subset of {sorted(BACKENDS)}, "
                              f"got {list(self.backends)}")
        if not self.precisions or any(p not in PRECISIONS for p in self.precisions):
            raise ConfigError(f"BenchSettings.precisions must be a non-empty subset of {list(PRECISIONS)}, "
                              f"got {list(self.precisions)}")
        if not self.threads or any(int(t) != t or t < 1 for t in self.threads):
            raise ConfigError(f"BenchSettings.threads must be whole numbers >= 1, got {list(self.threads)}")
        super().__post_init__()
        if not self.timeout_s > 0:
            raise ConfigError(f"BenchSettings.timeout_s must be > 0 s, got {self.timeout_s}")


def bench_bundle(bundle: Bundle | str | Path, backends: Sequence[str] = ("onnxruntime", "litert"),
                 precisions: Sequence[str] = ("fp32", "int8"), threads: Sequence[int] = (1, 2),
                 min_iterations: int = 200, max_time_s: float = 3.0, progress: bool | Callable[[dict], None] = True,
                 **options: Any) -> dict[str, Any]:
    """Measure every backend x precision x threads cell of ``bundle``; return a result dict.

    Parameters
    ----------
    bundle: a loaded :class:`Bundle`, a bundle folder, or a shipped bundle name.
    backends, precisions, threads, min_iterations, max_time_s: see :class:`BenchSettings`.
    progress: print one line per finished cell to stderr; or a function called with each finished cell.
    options: further :class:`BenchSettings` fields (``min_time_s``, ``warmup_s``, ``target_rel_ci``,
        ``max_iterations``, ``timeout_s``, ``providers``, ``seed``).

    Returns
    -------
    ``{"schema", "kind": "bundles", "created_utc", "device", "settings", "targets", "bundle", "cells",
    "ratios"}`` — see ``benchmarks/SCHEMA.md``.

    Raises
    ------
    BundleError: the bundle cannot be found, read or verified.
    ConfigError: a setting is out of range.
    """
    options.setdefault("min_time_s", min(BenchSettings.min_time_s, float(max_time_s)))
    settings = BenchSettings(backends=tuple(backends), precisions=tuple(precisions),
                             threads=tuple(int(t) for t in threads), min_iterations=int(min_iterations),
                             max_time_s=float(max_time_s), **options)
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    device = device_fingerprint()
    plan = [(b, p, t) for b in settings.backends for p in settings.precisions for t in settings.threads]
    cells: list[dict[str, Any]] = []
    outputs: dict[tuple[str, str, int], dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="edgemer-bench-") as tmp:
        for i, (backend, precision, n_threads) in enumerate(plan):
            cell, out = run_cell(bundle, backend, precision, n_threads, settings, Path(tmp) / f"cell{i}")
            cells.append(cell)
            if out is not None:
                outputs[(backend, precision, n_threads)] = out
            if callable(progress):
                progress(cell)
            elif progress:
                print(f"[{i + 1}/{len(plan)}] {cell_line(cell)}", file=sys.stderr, flush=True)
    first_output = bundle.manifest.outputs[0].name if bundle.manifest.outputs else None
    add_reference_parity(cells, outputs, first_output)
    ratios = compute_ratios(cells, outputs, settings, first_output)
    settings_dict = asdict(settings)
    return make_result(
        "bundles",
        settings={**settings_dict, "backends": list(settings.backends), "precisions": list(settings.precisions),
                  "threads": list(settings.threads),
                  "providers": list(settings.providers) if settings.providers else None},
        targets=compute_targets(ratios),
        device=device,
        bundle={"name": bundle.name, "path": str(bundle.path),
                "synthetic_data": bundle.manifest.trained_on_synthetic_data,
                "modality": bundle.manifest.modality, "task": bundle.manifest.task,
                "inputs": [s.to_dict() for s in bundle.manifest.inputs],
                "first_output": first_output},
        cells=cells,
        ratios=ratios,
    )


def _base_cell(bundle: Bundle, backend: str, precision: str, threads: int) -> dict[str, Any]:
    """Identity fields of a cell; ``model_file`` is None when the bundle lacks that file."""
    from edgemer.backends import get_backend

    fmt = get_backend(backend).file_format
    cell: dict[str, Any] = {"backend": backend, "precision": precision, "threads": threads, "format": fmt,
                            "model_file": None, "model_bytes": None, "status": None, "reason": None}
    try:
        mf = bundle.manifest.model(fmt, precision)
    except ManifestError as exc:
        cell.update(status="skipped", reason=str(exc))
        return cell
    cell["model_file"] = mf.file
    path = bundle.path / mf.file
    cell["model_bytes"] = path.stat().st_size if path.is_file() else None
    return cell


def _missing_provider_reason(providers: Sequence[str]) -> str | None:
    """Why ``providers`` cannot run here (None when they can, or when onnxruntime does not import:
    the worker then reports that itself)."""
    from edgemer.benchmarks.fingerprint import onnxruntime_providers
    from edgemer.errors import BackendUnavailableError

    available = onnxruntime_providers()
    if available is None:
        return None
    from edgemer.backends.onnxruntime_backend import choose_providers

    try:
        choose_providers(providers, available, strict=True)
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def run_cell(bundle: Bundle, backend: str, precision: str, threads: int, settings: BenchSettings,
             scratch: Path) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    """Run one cell in a fresh interpreter; return the cell dict and its outputs (None unless ok).

    ``scratch`` is a path prefix for the worker's spec and result files.
    """
    cell = _base_cell(bundle, backend, precision, threads)
    if cell["status"] == "skipped":
        return cell, None
    if backend == "onnxruntime" and settings.providers:
        missing = _missing_provider_reason(settings.providers)
        if missing:  # no worker needed to learn that
            cell.update(status="skipped", reason=missing, error_type="BackendUnavailableError")
            return cell, None
    spec = CellSpec(bundle_path=str(bundle.path), backend=backend, precision=precision, threads=threads,
                    providers=settings.providers if backend == "onnxruntime" else None,
                    delegate=settings.delegate if backend == "litert" else None, **settings.measure_options())
    spec_path, out_path = scratch.with_suffix(".spec.json"), scratch.with_suffix(".json")
    spec_path.write_text(json.dumps(asdict(spec)))
    timeout = settings.max_time_s + settings.warmup_s + settings.timeout_s
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "edgemer.benchmarks.cell", str(spec_path), str(out_path)],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        cell.update(status="failed", reason=f"the worker took longer than {timeout:.0f} s and was stopped",
                    error_type="Timeout")
        return cell, None
    cell["wall_s"] = time.perf_counter() - started
    if not out_path.is_file():
        code = proc.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        cell.update(status="failed", reason=f"the worker process {how} without a result; stderr: "
                                            f"{proc.stderr.strip()[-STDERR_TAIL:] or '(empty)'}",
                    error_type="WorkerCrash")
        return cell, None
    result = json.loads(out_path.read_text())
    result.pop("spec", None)
    cell.update(result)
    out = None
    npz = out_path.with_suffix(".npz")
    if cell["status"] == "ok" and npz.is_file():
        with np.load(npz, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    return cell, out


def parity(test: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
           first_output: str | None) -> dict[str, Any]:
    """Agreement of ``test`` with ``reference`` outputs (each ``name -> [n_inputs, ...]``).

    argmax_agreement: fraction (0..1) of inputs whose first output has the same argmax.
    max_abs_error: per output name, the largest absolute difference over all inputs.
    """
    common = [k for k in reference if k in test and test[k].shape == reference[k].shape]
    errors = {k: float(np.max(np.abs(test[k].astype(np.float64) - reference[k]))) for k in common}
    agreement = None
    n = None
    if first_output in common:
        a = reference[first_output].reshape(len(reference[first_output]), -1).argmax(axis=1)
        b = test[first_output].reshape(len(test[first_output]), -1).argmax(axis=1)
        agreement, n = float(np.mean(a == b)), int(len(a))
    return {"n_inputs": n, "argmax_agreement": agreement,
            "first_output_max_abs_error": errors.get(first_output) if first_output else None,
            "max_abs_error": errors}


def add_reference_parity(cells: list[dict[str, Any]], outputs: Mapping[tuple[str, str, int], Mapping],
                         first_output: str | None) -> None:
    """Set each ok cell's ``parity_vs_reference``: agreement with onnxruntime FP32 at the fewest threads."""
    refs = sorted(k for k in outputs if k[0] == "onnxruntime" and k[1] == "fp32")
    for cell in cells:
        key = (cell["backend"], cell["precision"], cell["threads"])
        if cell["status"] != "ok" or not refs or key not in outputs:
            cell["parity_vs_reference"] = None
            continue
        ref = refs[0]
        cell["parity_vs_reference"] = {"reference": f"{ref[0]}/{ref[1]}/threads={ref[2]}",
                                       **parity(outputs[key], outputs[ref], first_output)}


def _find(cells: Sequence[Mapping[str, Any]], backend: str, precision: str, threads: int) -> Mapping[str, Any] | None:
    for c in cells:
        if c["backend"] == backend and c["precision"] == precision and c["threads"] == threads:
            return c
    return None


def compute_ratios(cells: Sequence[Mapping[str, Any]], outputs: Mapping[tuple[str, str, int], Mapping],
                   settings: BenchSettings, first_output: str | None) -> list[dict[str, Any]]:
    """INT8/FP32 ratios per backend x threads, from the cells of this run.

    latency_p50_ratio = p50(int8) / p50(fp32); size_ratio = bytes(int8) / bytes(fp32);
    ci_separated: the two p50 95 % CIs do not overlap (the difference is not noise);
    parity: INT8 outputs vs FP32 outputs of the same backend and threads.
    A ratio that cannot be formed (a cell skipped or failed) is None, with ``note``.
    """
    ratios = []
    if not {"fp32", "int8"} <= set(settings.precisions):
        return ratios
    for backend in settings.backends:
        for n_threads in settings.threads:
            fp32, int8 = _find(cells, backend, "fp32", n_threads), _find(cells, backend, "int8", n_threads)
            if fp32 is None or int8 is None:
                continue
            entry: dict[str, Any] = {"backend": backend, "threads": n_threads, "latency_p50_ratio": None,
                                     "size_ratio": None, "ci_separated": None, "parity": None, "note": None}
            if fp32.get("model_bytes") and int8.get("model_bytes"):
                entry["size_ratio"] = int8["model_bytes"] / fp32["model_bytes"]
            if fp32["status"] == "ok" and int8["status"] == "ok":
                entry["latency_p50_ratio"] = int8["latency_ms"]["p50"] / fp32["latency_ms"]["p50"]
                (f_lo, f_hi), (i_lo, i_hi) = fp32["p50_ci95_ms"], int8["p50_ci95_ms"]
                entry["ci_separated"] = bool(i_hi < f_lo or f_hi < i_lo)
                key32, key8 = (backend, "fp32", n_threads), (backend, "int8", n_threads)
                if key32 in outputs and key8 in outputs:
                    entry["parity"] = parity(outputs[key8], outputs[key32], first_output)
            else:
                entry["note"] = f"needs both cells ok (fp32: {fp32['status']}, int8: {int8['status']})"
            ratios.append(entry)
    return ratios


def compute_targets(ratios: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The project's INT8 targets, each with its measured value and ``met`` (None: not measured)."""
    onnx1 = next((r for r in ratios if r["backend"] == "onnxruntime" and r["threads"] == 1), None)
    onnx_any = next((r for r in ratios if r["backend"] == "onnxruntime" and r["size_ratio"] is not None), None)
    latency = onnx1["latency_p50_ratio"] if onnx1 else None
    size = onnx_any["size_ratio"] if onnx_any else None
    return [
        target("int8_onnx_latency_1_thread", "INT8 ONNX p50 latency at 1 thread below FP32 at 1 thread", latency,
               "< 1.0", None if latency is None else latency < 1.0, "ratio",
               significant=onnx1["ci_separated"] if onnx1 else None),
        target("int8_onnx_size", f"INT8 ONNX file size <= {INT8_SIZE_TARGET}x FP32", size, f"<= {INT8_SIZE_TARGET}",
               None if size is None else size <= INT8_SIZE_TARGET, "ratio"),
    ]


def cell_line(cell: Mapping[str, Any]) -> str:
    """One progress line for a finished cell."""
    head = f"{cell['backend']} {cell['precision']} threads={cell['threads']}"
    if cell["status"] != "ok":
        return f"{head}: {cell['status']} ({str(cell['reason']).splitlines()[0][:160]})"
    lat = cell["latency_ms"]
    ci = cell.get("p50_ci95_rel_half_width")
    ci_text = "CI n/a" if ci is None else (f"+-{ci * 100:.1f} %" if ci >= 0.001 else "+-<0.1 %")
    return (f"{head}: p50 {lat['p50']:.3f} ms ({ci_text}, n={cell['iterations']}"
            f"{'' if cell['converged'] else ', time limit'}), peak RSS {cell['rss_peak_mib']:.0f} MiB")


# -- terminal table ----------------------------------------------------------------------------------

def _fmt(x: float | None, spec: str, width: int) -> str:
    return f"{'-' if x is None else format(x, spec):>{width}}"


def _mark(met: bool | None) -> str:
    return "not measured" if met is None else ("MET" if met else "NOT MET")


def format_table(result: Mapping[str, Any]) -> str:
    """A fixed-width table of the cells, then one line per INT8/FP32 ratio, then the targets.

    Columns: model file, backend, precision, threads, load (ms), p50/p90/p99 (ms),
    throughput (inferences/s, one caller), peak RSS (MiB), file size (KiB).
    Skipped and failed cells show their reason. A ``pipeline`` section is appended when present.
    """
    head = (f"{'model':<20} {'backend':<12} {'prec':<5} {'thr':>3} {'load ms':>8} {'p50 ms':>9} {'p90 ms':>9} "
            f"{'p99 ms':>9} {'inf/s':>9} {'RSS MiB':>8} {'size KiB':>9}")
    lines = [head, "-" * len(head)]
    for c in result.get("cells", []):
        size = c["model_bytes"] / 1024 if c.get("model_bytes") else None
        left = f"{(c.get('model_file') or '-')[:20]:<20} {c['backend']:<12} {c['precision']:<5} {c['threads']:>3}"
        if c["status"] == "ok":
            lat = c["latency_ms"]
            lines.append(f"{left} {_fmt(c['load_s'] * 1e3, '.1f', 8)} {_fmt(lat['p50'], '.3f', 9)} "
                         f"{_fmt(lat['p90'], '.3f', 9)} {_fmt(lat['p99'], '.3f', 9)} "
                         f"{_fmt(c['throughput_per_s'], '.0f', 9)} {_fmt(c['rss_peak_mib'], '.0f', 8)} "
                         f"{_fmt(size, '.1f', 9)}")
        else:
            reason = str(c.get("reason") or "").splitlines()[0] if c.get("reason") else ""
            lines.append(f"{left} {c['status'].upper()}: {reason[:110]}")
    if result.get("ratios"):
        lines.append("")
    for r in result.get("ratios", []):
        text = f"{r['backend']} threads={r['threads']}: INT8/FP32 latency "
        text += "n/a" if r["latency_p50_ratio"] is None else f"{r['latency_p50_ratio']:.2f}x"
        if r.get("ci_separated") is False:
            text += " (within noise)"
        text += ", size " + ("n/a" if r["size_ratio"] is None else f"{r['size_ratio']:.2f}x")
        p = r.get("parity") or {}
        if p.get("argmax_agreement") is not None:
            text += (f", argmax agreement {p['argmax_agreement'] * 100:.1f} % over {p['n_inputs']} inputs, "
                     f"max abs error {p['first_output_max_abs_error']:.3g}")
        if r.get("note"):
            text += f" [{r['note']}]"
        lines.append(text)
    targets = result.get("targets") or []
    if targets:
        lines.append("")
    for t in targets:
        value = "n/a" if t["value"] is None else f"{t['value']:.2f}x"
        extra = " (difference within noise)" if t.get("significant") is False else ""
        lines.append(f"target: {t['description']}: {value} -> {_mark(t['met'])}{extra}")
    if result.get("pipeline"):
        from edgemer.benchmarks.pipeline_bench import format_pipeline

        lines += ["", format_pipeline(result["pipeline"])]
    return "\n".join(lines)


# -- edgemer bench bundles ----------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgemer bench bundles``."""
    from edgemer.benchmarks.commands import csv_list

    parser.description = ("Benchmark a bundle's model files per backend, precision and thread count, each cell in a "
                          "fresh process: load time, first inference, p50/p90/p99 latency, throughput, peak RSS, "
                          "file size, INT8-vs-FP32 parity. --pipeline adds the end-to-end pipeline on the simulated "
                          "wearable.")
    parser.add_argument("bundle", nargs="?", default="physio-demo",
                        help="bundle folder or shipped bundle name (default physio-demo)")
    parser.add_argument("--backends", type=csv_list(str), default=("onnxruntime", "litert"), metavar="LIST",
                        help="comma-separated runtimes: onnxruntime, litert (default onnxruntime,litert)")
    parser.add_argument("--precisions", type=csv_list(str), default=("fp32", "int8"), metavar="LIST",
                        help="comma-separated precisions: fp32, int8 (default fp32,int8)")
    parser.add_argument("--threads", type=csv_list(int), default=(1, 2), metavar="LIST",
                        help="comma-separated inference thread counts (default 1,2)")
    parser.add_argument("--max-time", type=float, default=3.0, metavar="SECONDS",
                        help="longest timed run per cell; a cell stops earlier once the p50's 95 %% CI is within "
                             "5 %% (default 3)")
    parser.add_argument("--providers", type=csv_list(str), default=None, metavar="LIST",
                        help="onnxruntime execution providers: cpu, cuda, tensorrt, with options as "
                             "tensorrt:fp16=1:cache=DIR or cuda:device=1 (default cpu)")
    parser.add_argument("--pipeline", action="store_true",
                        help="also run the whole pipeline on the simulated wearable and report its overhead "
                             "beyond inference (uses the first backend, int8 if listed, the first thread count)")
    parser.add_argument("--estimates", type=int, default=40, help="estimates measured with --pipeline (default 40)")
    parser.add_argument("--quiet", action="store_true", help="no per-cell progress lines")
    parser.add_argument("--no-remember", action="store_true",
                        help="do not store the measured p50s in this device's engine-choice cache (by default they "
                             "are, so that backend/precision 'auto' uses them)")


def remember(bundle: Bundle, cells: Sequence[Mapping[str, Any]], providers: Sequence[str] | None = None,
             delegate: str | None = None) -> str:
    """Feed the ok cells measured the way ``auto`` runs them into this device's engine-choice cache
    (:func:`edgemer.backends.choice.bench_measurements`); returns one line saying what was stored."""
    from edgemer.backends.choice import bench_measurements, remember_measurements

    measured = bench_measurements(bundle, cells, providers, delegate)
    if not measured:
        return f"engine-choice cache: nothing stored for {bundle.name} (no cell measured the way 'auto' runs it)"
    stored = remember_measurements(bundle, measured, source="bench")
    return (f"engine-choice cache: {len(measured)} cells of {bundle.name} stored; 'auto' uses them on this device"
            if stored else f"engine-choice cache: could not store the cells of {bundle.name} (see the warning)")


def run(args: argparse.Namespace) -> int:
    """``edgemer bench bundles``: print the device, the table and ratios; write with --json.

    Returns 1 when every cell failed or was skipped (nothing was measured), else 0.
    """
    from edgemer.benchmarks.fingerprint import device_line
    from edgemer.benchmarks.pipeline_bench import bench_pipeline, format_pipeline
    from edgemer.benchmarks.result import write_json

    bundle = load_bundle(args.bundle)
    if not args.quiet:
        print(f"benchmarking {bundle.name} ({bundle.path}); each cell runs in its own process", file=sys.stderr)
    result = bench_bundle(bundle, backends=args.backends, precisions=args.precisions, threads=args.threads,
                          max_time_s=args.max_time, progress=not args.quiet, providers=args.providers)
    print(device_line(result["device"]))
    if bundle.manifest.trained_on_synthetic_data:
        print(f"bundle {bundle.name}: trained on synthetic data (timings are real; accuracy is not)")
    print()
    print(format_table(result))
    if not args.no_remember:
        print(remember(bundle, result["cells"], args.providers))
    if args.pipeline:
        precision = "int8" if "int8" in args.precisions else args.precisions[0]
        if not args.quiet:
            print(f"running the pipeline ({args.backends[0]} {precision} threads={args.threads[0]}) ...",
                  file=sys.stderr)
        result["pipeline"] = bench_pipeline(bundle, backend=args.backends[0], precision=precision,
                                            threads=args.threads[0], estimates=args.estimates)
        print()
        print(format_pipeline(result["pipeline"]))
    if args.json is not None:
        print(f"\nwrote {write_json(result, args.json)}")
    return 0 if any(c["status"] == "ok" for c in result["cells"]) else 1
