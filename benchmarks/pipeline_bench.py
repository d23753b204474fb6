"""End-to-end pipeline benchmark: the real pipeline on the simulated wearable.

Runs :class:`edgemer.Pipeline` with a :class:`~edgemer.sources.SimulatedWearable`
faster than real time and reads the timings each :class:`~edgemer.types.Estimate`
carries (wall seconds): ``processing_s`` (windows, front-end, inference, fusion,
sinks), ``inference_s`` (inside the backend), ``frontend_s`` and ``latency_s``
(newest sample's arrival -> estimate).

Reported per estimate and summarised (median, p90):

- overhead = (processing - inference) / inference: everything the pipeline adds
  beyond the model. The goal is <= 10 % (:data:`OVERHEAD_GOAL`).
- overhead_excluding_frontend = (processing - inference - frontend) / inference: the
  pipeline's own glue (windowing, fusion, sinks), without feature extraction.
- real_time_factor = processing wall seconds / stream seconds covered (< 1 keeps up
  with real time; 0.01 means 1 % of one core's time per second of signal).
"""
from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from edgemer.benchmarks import SCHEMA
from edgemer.benchmarks.fingerprint import device_fingerprint

from edgemer.bundle import Bundle, load_bundle
from edgemer.errors import ConfigError

OVERHEAD_GOAL = 0.10
"""Pipeline time beyond inference, as a fraction of inference time, that the project aims to stay under."""


def _summary(values: list[float], scale: float = 1.0) -> dict[str, float | None]:
    """median, p90 and max of ``values`` times ``scale`` (None for an empty list)."""
    if not values:
        return {"median": None, "p90": None, "max": None}
    x = np.asarray(values, np.float64) * scale
    return {"median": float(np.median(x)), "p90": float(np.percentile(x, 90)), "max": float(x.max())}


def bench_pipeline(bundle: str | Path | Bundle = "physio-demo", backend: str = "onnxruntime", precision: str = "int8",
                   threads: int = 1, estimates: int = 40, speed: float = 200.0, warmup_estimates: int = 2,
                   seed: int = 0) -> dict[str, Any]:
    """Run the pipeline until ``estimates`` estimates (after ``warmup_estimates`` discarded ones)
    and summarise their timings.

    Parameters
    ----------
    bundle: shipped bundle name, bundle folder or loaded :class:`Bundle` (a wrist-physiology bundle).
    backend, precision, threads: as in :class:`edgemer.PipelineConfig`.
    estimates: estimates to measure (>= 1). speed: stream seconds per wall second of the
        simulated wearable. warmup_estimates: first estimates dropped (session warm-up). seed: simulator seed.

    Returns
    -------
    ``{"schema", "kind": "pipeline", "created_utc", "device", "bundle", "settings", "estimates",
    "processing_ms", "inference_ms", "frontend_ms", "overhead", "overhead_excluding_frontend",
    "latency_s", "real_time_factor", "stream_speed", "goal", ...}`` — see ``benchmarks/SCHEMA.md``.
    """
    from edgemer.pipeline import Pipeline, PipelineConfig
    from edgemer.sources import SimulatedWearable

    if estimates < 1:
        raise ConfigError(f"bench_pipeline estimates must be >= 1, got {estimates}")
    if warmup_estimates < 0:
        raise ConfigError(f"bench_pipeline warmup_estimates must be >= 0, got {warmup_estimates}")
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    config = PipelineConfig(backend=backend, precision=precision, threads=threads)
    rows = []
    started = time.perf_counter()
    with Pipeline([SimulatedWearable(speed=speed, seed=seed)], [bundle], config=config) as pipe:
        for est in itertools.islice(pipe, warmup_estimates + estimates):
            rows.append((est.elapsed_s, est.processing_s, est.inference_s, est.frontend_s, est.latency_s,
                         time.perf_counter()))
        dropped = pipe.dropped_estimates
    total_wall_s = time.perf_counter() - started
    measured = rows[warmup_estimates:]
    with_model = [r for r in measured if r[2] > 0]  # estimates where a model ran
    processing = [r[1] for r in with_model]
    inference = [r[2] for r in with_model]
    frontend = [r[3] for r in with_model]
    overhead = [(p - i) / i for p, i in zip(processing, inference)]
    glue = [(p - i - f) / i for p, i, f in zip(processing, inference, frontend)]
    rtf = speed_achieved = None
    if len(measured) >= 2:
        hop_s = float(np.median(np.diff([r[0] for r in measured])))
        stream_s = measured[-1][0] - measured[0][0] + hop_s
        rtf = sum(r[1] for r in measured) / stream_s if stream_s > 0 else None
        wall = measured[-1][5] - measured[0][5]
        speed_achieved = (measured[-1][0] - measured[0][0]) / wall if wall > 0 else None
    median_overhead = float(np.median(overhead)) if overhead else None
    return {
        "schema": SCHEMA,
        "kind": "pipeline",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_fingerprint(),
        "bundle": {"name": bundle.name, "path": str(bundle.path),
                   "synthetic_data": bundle.manifest.trained_on_synthetic_data},
        "settings": {"backend": backend, "precision": precision, "threads": threads, "estimates": estimates,
                     "warmup_estimates": warmup_estimates, "speed": speed if np.isfinite(speed) else None, "seed": seed,
                     "source": "simulated"},
        "estimates": len(measured),
        "estimates_without_inference": len(measured) - len(with_model),
        "dropped_estimates": dropped,
        "wall_s": total_wall_s,
        "processing_ms": _summary(processing, 1e3),
        "inference_ms": _summary(inference, 1e3),
        "frontend_ms": _summary(frontend, 1e3),
        "overhead": {**_summary(overhead), "aggregate": (sum(processing) - sum(inference)) / sum(inference)
                     if inference else None},
        "overhead_excluding_frontend": _summary(glue),
        "latency_s": _summary([r[4] for r in measured]),
        "real_time_factor": rtf,
        "stream_speed": speed_achieved,
        "goal": {"description": f"pipeline overhead beyond inference <= {OVERHEAD_GOAL:.0%} of inference time "
                                f"(median over estimates)",
                 "value": median_overhead, "threshold": OVERHEAD_GOAL,
                 "met": None if median_overhead is None else bool(median_overhead <= OVERHEAD_GOAL)},
    }


def format_pipeline(result: Mapping[str, Any]) -> str:
    """A few terminal lines: timings per estimate (ms), overhead, latency, real-time factor, goal."""
    s = result["settings"]

    def ms(d: Mapping[str, Any]) -> str:
        return "n/a" if d["median"] is None else f"{d['median']:.3f} ms (p90 {d['p90']:.3f})"

    def pct(d: Mapping[str, Any]) -> str:
        return "n/a" if d["median"] is None else f"{d['median'] * 100:.0f} % (p90 {d['p90'] * 100:.0f} %)"

    rtf, lat, goal = result["real_time_factor"], result["latency_s"], result["goal"]
    mark = "not measured" if goal["met"] is None else ("MET" if goal["met"] else "NOT MET")
    latency = "n/a" if lat["median"] is None else (f"{lat['median'] * 1e3:.1f} ms median, "
                                                   f"p90 {lat['p90'] * 1e3:.1f} ms")
    rtf_text = "" if rtf is None else f"; real-time factor {rtf:.4f} (processing s per stream s)"
    value = "n/a" if goal["value"] is None else f"{goal['value'] * 100:.0f} %"
    lines = [
        (f"pipeline {result['bundle']['name']} on the simulated wearable: {s['backend']} {s['precision']} "
         f"threads={s['threads']}, " + ("lockstep" if s["speed"] is None else f"speed {s['speed']:g}x")
         + f", {result['estimates']} estimates"),
        (f"  per estimate: processing {ms(result['processing_ms'])}, inference {ms(result['inference_ms'])}, "
         f"front-end {ms(result['frontend_ms'])}"),
        (f"  overhead beyond inference {pct(result['overhead'])}; without the front-end "
         f"{pct(result['overhead_excluding_frontend'])}"),
        f"  latency (sample arrival -> estimate) {latency}{rtf_text}",
        f"goal: {goal['description']}: {value} -> {mark}",
    ]
    if result.get("dropped_estimates"):
        lines.insert(-1, f"  dropped estimates: {result['dropped_estimates']}")
    return "\n".join(lines)
