"""``edgemer bench suite``: every bundle x every engine x precision x threads.

An *engine* is a backend with its accelerator: ``onnxruntime`` (CPU execution provider),
``onnxruntime-cuda``, ``onnxruntime-tensorrt``, ``litert`` (CPU; LiteRT applies XNNPACK
by default) and ``litert-delegate`` (a TFLite delegate library given by path, e.g. an
Edge TPU's ``libedgetpu.so.1``). Each (bundle, engine) pair is one
:func:`edgemer.benchmarks.bundle_bench.bench_bundle` run, so every cell still runs in its
own process; an engine that is not installed gives ``skipped`` cells with the reason, a
model that fails gives a ``failed`` cell with the error, and the suite goes on. A bundle
that cannot be loaded becomes an entry with ``status: failed``.

The suite also measures its own overhead (the timed loop around a no-op, as a fraction
of the smallest p50 measured), can repeat the whole grid (``repeat``) to report the
spread of each cell's p50 across runs, and can add the three-modality pipeline
(:func:`edgemer.benchmarks.soak_bench.bench_multimodal`, short durations). The result
is one JSON object of kind ``suite`` (see ``benchmarks/SCHEMA.md``).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edgemer.errors import ConfigError, EdgemerError

OVERHEAD_TARGET = 0.01
"""The timed loop's own cost must stay below this fraction of the smallest model's p50."""

SPREAD_TARGET = 0.10
"""Repeated runs must agree within this fraction on every cell's p50: (max - min) / min."""


@dataclass(frozen=True)
class Engine:
    """A backend with its accelerator. label: name in tables; providers: onnxruntime execution
    providers (None for litert); delegate: TFLite delegate library path (litert only)."""

    label: str
    backend: str
    providers: tuple[str, ...] | None = None
    delegate: str | None = None


def standard_engines(delegate: str | None = None, providers: Sequence[str] | None = None) -> list[Engine]:
    """The engines of the standard suite: ORT CPU, CUDA, TensorRT; LiteRT CPU (XNNPACK); a delegate if given.

    providers: extra options for the accelerated engines, e.g. ``("tensorrt:fp16=1",)`` replaces the
    plain ``tensorrt`` engine's provider list.
    """
    extra = {p.split(":")[0].lower(): p for p in (providers or ())}
    engines = [Engine("onnxruntime", "onnxruntime", ("cpu",)),
               Engine("onnxruntime-cuda", "onnxruntime", (extra.get("cuda", "cuda"),)),
               Engine("onnxruntime-tensorrt", "onnxruntime", (extra.get("tensorrt", "tensorrt"),)),
               Engine("litert", "litert")]
    if delegate:
        engines.append(Engine("litert-delegate", "litert", None, str(delegate)))
    return engines


def default_threads() -> tuple[int, ...]:
    """1 … the cores this process may use."""
    from edgemer.benchmarks.fingerprint import usable_cores

    return tuple(range(1, (usable_cores() or 1) + 1))


def suite_bundles(extra: Sequence[str | Path] = ()) -> list[str]:
    """Every shipped bundle, then ``extra`` bundle folders/names (duplicates dropped)."""
    from edgemer.bundle import list_shipped_bundles

    return list(dict.fromkeys([*list_shipped_bundles(), *(str(e) for e in extra)]))


class ProgressBar:
    """``[#####.....] 12/48 label`` on stderr; redrawn in place on a terminal, one line per step otherwise."""

    def __init__(self, total: int, stream=None, width: int = 24) -> None:
        self.total, self.done, self.width = max(1, total), 0, width
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, text: str) -> None:
        self.done += 1
        filled = int(self.width * min(self.done, self.total) / self.total)
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {text}"
        if self.tty:
            self.stream.write("\r\033[K" + line[:160] + ("\n" if self.done >= self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def cell_key(entry: Mapping[str, Any], cell: Mapping[str, Any]) -> str:
    """``bundle/engine/precision/tN``: identifies a cell across repeated runs."""
    return f"{entry['bundle']['name']}/{entry['engine']}/{cell['precision']}/t{cell['threads']}"


def repeat_spread(runs: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Per cell, p50 (ms) in each run and ``spread`` = (max - min) / min; cells not ok in every run are left out.

    runs: one list of suite entries per run.
    """
    p50s: dict[str, list[float]] = {}
    seen: dict[str, int] = {}
    for entries in runs:
        for e in entries:
            for c in e.get("cells", []):
                key = cell_key(e, c)
                seen[key] = seen.get(key, 0) + 1
                if c.get("status") == "ok":
                    p50s.setdefault(key, []).append(c["latency_ms"]["p50"])
    cells = []
    for key, values in p50s.items():
        if len(values) == len(runs) == seen[key]:
            cells.append({"cell": key, "p50_ms": values, "spread": (max(values) - min(values)) / min(values)})
    worst = max((c["spread"] for c in cells), default=None)
    return {"runs": len(runs), "cells": cells, "max_spread": worst,
            "cells_over_target": sum(c["spread"] > SPREAD_TARGET for c in cells)}


def overhead_summary(loop: Mapping[str, float], entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The timed loop's cost (``loop`` from :func:`edgemer.benchmarks.cell.measure_overhead`) against the
    smallest ok p50 among ``entries``: ``fraction`` = loop_ns / smallest p50 (ns)."""
    best = None
    for e in entries:
        for c in e.get("cells", []):
            if c.get("status") == "ok" and (best is None or c["latency_ms"]["p50"] < best[0]):
                best = (c["latency_ms"]["p50"], cell_key(e, c))
    fraction = None if best is None else loop["loop_ns"] / (best[0] * 1e6)
    return {**loop, "smallest_p50_ms": None if best is None else best[0],
            "smallest_cell": None if best is None else best[1], "fraction": fraction}


def _bench_entry(bundle_ref: str, engine: Engine, on_cell: Callable[[dict], None], **settings: Any) -> dict[str, Any]:
    """One (bundle, engine) pair as a suite entry: a bundle result without ``schema``/``device``, plus ``engine``."""
    from edgemer.benchmarks.bundle_bench import bench_bundle

    result = bench_bundle(bundle_ref, backends=(engine.backend,), providers=engine.providers,
                          delegate=engine.delegate, progress=on_cell, **settings)
    result.pop("schema", None)
    result.pop("device", None)
    return {"engine": engine.label, "status": "ok", **result}


def best_of_passes(passes: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Merge grid passes (same bundles, engines and cells, in order) into one list of entries whose
    every ``ok`` cell is the pass with the lowest p50; ``p50_passes_ms`` lists each pass's p50.

    The lowest is the least disturbed measurement: on a shared or virtualised machine noise (other
    processes, steal time, frequency changes) only ever adds time (the rule of Python's timeit)."""
    merged = [dict(e, cells=[dict(c) for c in e.get("cells", [])]) for e in passes[0]]
    for i, entry in enumerate(merged):
        for j, cell in enumerate(entry["cells"]):
            candidates = [p[i]["cells"][j] for p in passes if p[i].get("cells")]
            ok = [c for c in candidates if c.get("status") == "ok"]
            if not ok:
                continue
            best = min(ok, key=lambda c: c["latency_ms"]["p50"])
            entry["cells"][j] = dict(best, p50_passes_ms=[c["latency_ms"]["p50"] if c.get("status") == "ok"
                                                           else None for c in candidates])
    return merged


def run_suite(bundles: Sequence[str | Path], engines: Sequence[Engine], precisions: Sequence[str] = ("fp32", "int8"),
              threads: Sequence[int] | None = None, max_time_s: float = 3.0, repeat: int = 1, best_of: int = 1,
              pipeline_s: float = 0.0, progress: bool = True, **settings: Any) -> dict[str, Any]:
    """Run the grid ``repeat`` times; return one ``suite`` result (see SCHEMA.md).

    bundles: folders or shipped names. threads: None = 1 … usable cores. max_time_s: timed seconds
    per cell at most. best_of: passes of the grid per run; each cell keeps its lowest p50
    (:func:`best_of_passes`). pipeline_s: stream seconds of the three-modality real-time run
    (0 = skip it). settings: further :class:`edgemer.benchmarks.bundle_bench.BenchSettings` fields.
    """
    from edgemer.benchmarks.cell import measure_overhead
    from edgemer.benchmarks.fingerprint import device_fingerprint
    from edgemer.benchmarks.result import make_result, target
    from edgemer.bundle import load_bundle

    if repeat < 1 or best_of < 1:
        raise ConfigError(f"repeat and best_of must be >= 1, got {repeat} and {best_of}")
    if not bundles or not engines:
        raise ConfigError("the suite needs at least one bundle and one engine")
    threads = tuple(threads) if threads else default_threads()
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    bar = (ProgressBar(len(bundles) * len(engines) * len(precisions) * len(threads) * repeat * best_of)
           if progress else None)
    loop = measure_overhead()
    passes: list[list[dict[str, Any]]] = []
    for run in range(repeat * best_of):
        entries: list[dict[str, Any]] = []
        for ref in bundles:
            try:
                name = load_bundle(ref).name
            except EdgemerError as exc:  # a bundle that cannot be loaded: record it, keep going
                entries.append({"engine": None, "status": "failed", "bundle": {"name": str(ref), "path": str(ref)},
                                "reason": str(exc), "error_type": type(exc).__name__, "cells": []})
                if bar:
                    for _ in range(len(engines) * len(precisions) * len(threads)):
                        bar.step(f"{ref}: FAILED to load")
                continue
            for engine in engines:
                def on_cell(cell: dict, _e=engine, _n=name, _r=run) -> None:
                    if bar:
                        from edgemer.benchmarks.bundle_bench import cell_line

                        label = f"run {_r // best_of + 1} " if repeat > 1 else ""
                        label += f"pass {_r % best_of + 1} " if best_of > 1 else ""
                        bar.step(f"{label}{_n} {_e.label}: {cell_line(cell)}")
                entries.append(_bench_entry(ref, engine, on_cell, precisions=tuple(precisions), threads=threads,
                                            max_time_s=max_time_s, **settings))
        passes.append(entries)
    runs = [best_of_passes(passes[r * best_of:(r + 1) * best_of]) if best_of > 1 else passes[r] for r in range(repeat)]
    pipeline = None
    if pipeline_s > 0:
        say(f"three-modality pipeline: {pipeline_s:g} s real time + one-core run ...")
        pipeline = run_pipeline(pipeline_s, progress)
    overhead = overhead_summary(loop, runs[0])
    spread = repeat_spread(runs) if repeat > 1 else None
    targets = [
        target("bench_overhead", "timed loop's own cost (timers, bookkeeping) per run as a fraction of the smallest "
               "model's p50", overhead["fraction"], f"< {OVERHEAD_TARGET}",
               None if overhead["fraction"] is None else overhead["fraction"] < OVERHEAD_TARGET, "fraction"),
        target("repeat_spread", f"p50 spread (max - min) / min over {repeat} runs, worst cell",
               spread["max_spread"] if spread else None, f"<= {SPREAD_TARGET}",
               None if not spread or spread["max_spread"] is None else spread["max_spread"] <= SPREAD_TARGET,
               "fraction"),
    ]
    return make_result(
        "suite",
        settings={"engines": [e.__dict__ for e in engines], "precisions": list(precisions), "threads": list(threads),
                  "max_time_s": max_time_s, "repeat": repeat, "best_of": best_of, "pipeline_s": pipeline_s,
                  **{k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}},
        targets=targets,
        device=device_fingerprint(),
        suite="standard",
        bundle={"name": "suite", "bundles": [str(b) for b in bundles]},
        overhead=overhead,
        results=runs[0],
        repeat=spread,
        pipeline=pipeline,
    )


def run_pipeline(pipeline_s: float, progress: bool) -> dict[str, Any]:
    """The three-modality example's latency and real-time factor (soak_bench, no soak), or why not."""
    try:
        from edgemer.benchmarks.soak_bench import bench_multimodal

        result = bench_multimodal(overhead_duration_s=pipeline_s, rtf_duration_s=max(60.0, pipeline_s),
                                  soak_hours=None, progress=progress)
    except Exception as exc:  # the pipeline is one more cell: record the error, keep the suite
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    result.pop("device", None)
    result.pop("schema", None)
    return {"status": "ok", **result}


def _skipped_everywhere(entry: Mapping[str, Any]) -> str | None:
    """The common reason when every cell of an entry was skipped for the same reason."""
    reasons = {str(c.get("reason")) for c in entry.get("cells", []) if c.get("status") == "skipped"}
    if entry.get("cells") and len(reasons) == 1 and all(c["status"] == "skipped" for c in entry["cells"]):
        return reasons.pop()
    return None


def format_suite(result: Mapping[str, Any]) -> str:
    """The suite on screen: one table per bundle x engine (one line when the engine is missing),
    the overhead, the repeat spread, the pipeline and the targets."""
    from edgemer.benchmarks.bundle_bench import format_table

    lines: list[str] = []
    for e in result["results"]:
        head = f"== {e['bundle']['name']} / {e.get('engine') or '-'}"
        if e.get("status") == "failed":
            lines += [f"{head}: FAILED: {e['reason']}", ""]
            continue
        reason = _skipped_everywhere(e)
        if reason:
            lines += [f"{head}: SKIPPED: {reason.splitlines()[0][:200]}", ""]
            continue
        synthetic = " (trained on synthetic data)" if e["bundle"].get("synthetic_data") else ""
        lines += [head + synthetic, format_table({"cells": e["cells"], "ratios": e.get("ratios")}), ""]
    o = result["overhead"]
    frac = "n/a" if o["fraction"] is None else f"{o['fraction'] * 100:.3f} %"
    lines.append(f"benchmark overhead: {o['loop_ns']:.0f} ns per timed run (timer alone {o['timer_ns']:.0f} ns) = "
                 f"{frac} of the smallest p50 ({o.get('smallest_cell')}: {o.get('smallest_p50_ms') or 0:.4f} ms)")
    spread = result.get("repeat")
    if spread:
        lines.append(f"p50 spread over {spread['runs']} runs (max - min) / min:")
        for c in sorted(spread["cells"], key=lambda c: -c["spread"]):
            values = ", ".join(f"{v:.3f}" for v in c["p50_ms"])
            lines.append(f"  {c['cell']:<48} {c['spread'] * 100:5.1f} %  [{values}] ms")
    p = result.get("pipeline")
    if p:
        if p.get("status") == "ok":
            from edgemer.benchmarks.soak_bench import format_multimodal

            lines += ["", format_multimodal(p)]
        else:
            lines += ["", f"three-modality pipeline: FAILED: {p.get('reason')}"]
    lines.append("")
    for t in result["targets"]:
        value = "n/a" if t["value"] is None else f"{t['value'] * 100:.2f} %"
        mark = "not measured" if t["met"] is None else ("MET" if t["met"] else "NOT MET")
        lines.append(f"target: {t['description']}: {value} ({t['threshold']}) -> {mark}")
    return "\n".join(lines)


# -- edgemer bench suite ------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgemer bench suite``."""
    from edgemer.benchmarks.commands import csv_list

    parser.description = ("The standard suite: every shipped bundle (plus --bundle ones) x every engine (onnxruntime "
                          "CPU, CUDA, TensorRT; LiteRT CPU/XNNPACK; --delegate) x fp32/int8 x threads 1..cores, and "
                          "the three-modality pipeline; engines not installed are skipped with the reason.")
    parser.add_argument("--bundle", dest="extra_bundles", action="append", default=[], metavar="PATH",
                        help="also benchmark this bundle folder (repeatable)")
    parser.add_argument("--delegate", default=None, metavar="PATH",
                        help="TFLite delegate library for the LiteRT cells, e.g. /usr/lib/libedgetpu.so.1")
    parser.add_argument("--providers", type=csv_list(str), default=None, metavar="LIST",
                        help="options for the CUDA/TensorRT engines, e.g. tensorrt:fp16=1:cache=DIR or cuda:device=1")
    parser.add_argument("--precisions", type=csv_list(str), default=("fp32", "int8"), metavar="LIST",
                        help="comma-separated precisions: fp32, int8 (default fp32,int8)")
    parser.add_argument("--threads", type=csv_list(int), default=None, metavar="LIST",
                        help="comma-separated inference thread counts (default 1..usable cores)")
    parser.add_argument("--max-time", type=float, default=3.0, metavar="SECONDS",
                        help="longest timed run per cell (default 3)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run the whole grid N times and print each cell's p50 spread")
    parser.add_argument("--best-of", type=int, default=1, metavar="K",
                        help="run the grid K times per run and keep each cell's lowest p50 (noise only adds time; "
                             "steadier numbers on shared or virtual machines; default 1)")
    parser.add_argument("--pipeline-seconds", type=float, default=70.0, metavar="SECONDS",
                        help="stream seconds of the three-modality pipeline run (0 = skip; default 70)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-remember", action="store_true",
                        help="do not store the measured p50s in this device's engine-choice cache (by default the "
                             "cells measured the way backend/precision 'auto' runs them are stored)")


def remember_suite(result: Mapping[str, Any]) -> list[str]:
    """Feed each bundle's cells (all its engines) into this device's engine-choice cache, one store per
    bundle; returns a line per bundle (see :func:`edgemer.backends.choice.bench_measurements`)."""
    from edgemer.backends.choice import bench_measurements, remember_measurements
    from edgemer.bundle import load_bundle

    engines = {e["label"]: e for e in result["settings"].get("engines", [])}
    per_bundle: dict[str, list] = {}
    bundles: dict[str, Any] = {}
    for entry in result.get("results", []):
        path = (entry.get("bundle") or {}).get("path")
        if entry.get("status") != "ok" or not path:
            continue
        if path not in bundles:
            try:
                bundles[path] = load_bundle(path)
            except EdgemerError:
                continue
        engine = engines.get(entry.get("engine"), {})
        per_bundle.setdefault(path, []).extend(
            bench_measurements(bundles[path], entry.get("cells", []), engine.get("providers"), engine.get("delegate")))
    lines = []
    for path, measured in per_bundle.items():
        name = bundles[path].name
        if measured and remember_measurements(bundles[path], measured, source="bench"):
            lines.append(f"engine-choice cache: {len(measured)} cells of {name} stored; 'auto' uses them here")
        else:
            lines.append(f"engine-choice cache: nothing stored for {name}")
    return lines


def run(args: argparse.Namespace) -> int:
    """``edgemer bench suite``: progress bar, tables, overhead, spread, targets; write with --json.

    Returns 1 when no cell was measured, else 0.
    """
    from edgemer.benchmarks.fingerprint import device_line
    from edgemer.benchmarks.result import write_json

    result = run_suite(suite_bundles(args.extra_bundles), standard_engines(args.delegate, args.providers),
                       precisions=args.precisions, threads=args.threads, max_time_s=args.max_time,
                       repeat=args.repeat, best_of=args.best_of, pipeline_s=args.pipeline_seconds,
                       progress=not args.quiet)
    print(device_line(result["device"]))
    print()
    print(format_suite(result))
    if not args.no_remember:
        print("\n".join(remember_suite(result)))
    if args.json is not None:
        print(f"\nwrote {write_json(result, args.json)}")
    return 0 if any(c["status"] == "ok" for e in result["results"] for c in e["cells"]) else 1
