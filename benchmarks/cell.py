"""One benchmark cell (model file x backend x precision x threads), run in its own process.

:func:`edgemer.benchmarks.bundle_bench.bench_bundle` starts a fresh interpreter per
cell::

    python -m edgemer.benchmarks.cell SPEC.json OUT.json

so peak RSS (``ru_maxrss``) belongs to that cell alone and a runtime that crashes takes
only its cell with it. The worker writes ``OUT.json`` (the cell's measurements, see
SCHEMA.md) and ``OUT.npz`` (the model outputs on every benchmark input, for parity;
array ``<output name>`` of shape ``[n_inputs, *output_shape]``, float32).

Measurement, in order: import the runtime (``import_s``), open the session
(``load_s``), one timed first inference (``first_inference_ms``), one run per input
for parity, warm-up for at least ``warmup_s`` and 5 runs, then timed runs cycling
through the inputs until the median's 95 % CI half-width is within
``target_rel_ci`` of the median (checked once ``min_iterations`` runs and
``min_time_s`` have passed) or ``max_time_s`` has passed. Each timed run is one
``Session.run`` call (input checks included, as an application sees it), timed
with ``perf_counter_ns``, garbage collector off.
"""
from __future__ import annotations

import gc
import json
import math
import resource
import sys
import time
import traceback
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgemer.benchmarks.stats import enough_runs, median_ci95, relative_half_width, summarize_ms
from edgemer.errors import ConfigError

N_RANDOM_INPUTS = 16
"""Random-normal inputs drawn when a bundle has no samples.npz for its inputs."""


@dataclass(frozen=True, kw_only=True)
class MeasureOptions:
    """How a cell is timed; the options :class:`~edgemer.benchmarks.bundle_bench.BenchSettings`
    passes on to each :class:`CellSpec`.

    min_iterations, min_time_s: timed runs and seconds before the stopping rule may end a
    cell (enough runs for a p99). max_iterations: hard cap on timed runs. max_time_s: wall
    seconds of timed runs per cell (the stopping rule usually ends earlier). warmup_s:
    seconds of untimed runs before timing. target_rel_ci: stop once the p50's 95 % CI
    half-width is within this fraction of the p50 (0.05 = 5 %). seed: seed of the random
    inputs used when the bundle has no samples.
    """

    min_iterations: int = 200
    max_iterations: int = 100_000
    min_time_s: float = 0.5
    max_time_s: float = 3.0
    warmup_s: float = 0.3
    target_rel_ci: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.min_iterations < 2:
            raise ConfigError(f"{name}.min_iterations must be >= 2, got {self.min_iterations}")
        if self.max_iterations < self.min_iterations:
            raise ConfigError(f"{name}.max_iterations must be >= min_iterations ({self.min_iterations}), "
                              f"got {self.max_iterations}")
        if not self.max_time_s > 0:
            raise ConfigError(f"{name}.max_time_s must be > 0 s, got {self.max_time_s}")
        if not 0 <= self.min_time_s <= self.max_time_s:
            raise ConfigError(f"{name}.min_time_s must be in [0, max_time_s={self.max_time_s}] s, "
                              f"got {self.min_time_s}")
        if self.warmup_s < 0:
            raise ConfigError(f"{name}.warmup_s must be >= 0 s, got {self.warmup_s}")
        if not 0 < self.target_rel_ci < 1:
            raise ConfigError(f"{name}.target_rel_ci must be in (0, 1), got {self.target_rel_ci}")

    def measure_options(self) -> dict[str, Any]:
        """The :class:`MeasureOptions` fields of this object, by name (to build another one from)."""
        return {f.name: getattr(self, f.name) for f in fields(MeasureOptions)}


@dataclass(frozen=True)
class CellSpec(MeasureOptions):
    """What one worker measures: one model file of ``bundle_path`` on ``backend`` at ``precision``
    with ``threads`` inference threads, timed as :class:`MeasureOptions` says. Times in seconds."""

    bundle_path: str
    backend: str
    precision: str
    threads: int
    providers: tuple[str, ...] | None = None
    delegate: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CellSpec":
        d = dict(d)
        if d.get("providers") is not None:
            d["providers"] = tuple(d["providers"])
        return cls(**d)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024.0


def finite_or_none(x: float) -> float | None:
    """``x``, or None when it is NaN or infinite (strict JSON has neither)."""
    return x if math.isfinite(x) else None


def model_inputs(bundle, n_random: int = N_RANDOM_INPUTS, seed: int = 0) -> tuple[list[dict[str, np.ndarray]], str]:
    """Benchmark feeds: one ``{input name: float32 array of the manifest shape}`` per input window.

    Uses the bundle's ``samples.npz`` when it holds an array per input name of shape
    ``[n, *input_shape[1:]]``; otherwise ``n_random`` standard-normal draws. Returns
    the feeds and where they came from (``"samples.npz"`` or ``"random-normal"``).
    """
    specs = bundle.manifest.inputs
    samples = bundle.samples()
    arrays = {}
    for spec in specs:
        arr = samples.get(spec.name)
        if arr is None or arr.ndim != len(spec.shape) or tuple(arr.shape[1:]) != tuple(spec.shape[1:]) or not len(arr):
            arrays = {}
            break
        arrays[spec.name] = np.asarray(arr, np.float32)
    if arrays:
        n = min(len(a) for a in arrays.values())
        return [{name: a[i:i + 1] for name, a in arrays.items()} for i in range(n)], "samples.npz"
    rng = np.random.default_rng(seed)
    return [{s.name: rng.standard_normal(s.shape).astype(np.float32) for s in specs}
            for _ in range(n_random)], "random-normal"


def import_runtime(backend: str) -> None:
    """Import the inference runtime behind ``backend`` (raises MissingExtraError when absent)."""
    if backend == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            from edgemer.errors import BackendUnavailableError

            raise BackendUnavailableError(f"onnxruntime does not import ({exc}); it is a core dependency of "
                                          f"edgemer: pip install onnxruntime") from exc
    elif backend == "litert":
        from edgemer.backends.litert_backend import load_interpreter_class

        load_interpreter_class()


def timed_runs(run: Callable[[Any], Any], feeds: Sequence[Any], spec: MeasureOptions
               ) -> tuple[list[float], bool, float]:
    """The timed loop: call ``run(feed)`` cycling through ``feeds`` until the stopping rule
    (see module docstring) ends it. Returns latencies (ms), whether the rule converged, and
    the loop's wall time (s). The garbage collector is off while it runs.

    The loop keeps its own cost small (see :func:`measure_overhead`): integer nanoseconds,
    the end timestamp of one run doubles as the deadline check, the CI is computed only
    every ~10 % more runs.
    """
    clock = time.perf_counter_ns
    ns: list[int] = []
    append = ns.append
    n_feeds = len(feeds)
    converged = False
    next_check = spec.min_iterations
    max_iterations = spec.max_iterations
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        started = clock()
        deadline = started + int(spec.max_time_s * 1e9)
        earliest_stop = started + int(spec.min_time_s * 1e9)
        i = 0
        while i < max_iterations:
            feed = feeds[i % n_feeds]
            t0 = clock()
            run(feed)
            t1 = clock()
            append(t1 - t0)
            i += 1
            if i >= next_check and t1 >= earliest_stop:
                if enough_runs(np.asarray(ns) / 1e6, spec.min_iterations, spec.target_rel_ci):
                    converged = True
                    break
                next_check = i + max(10, i // 10)
            if t1 >= deadline and i >= 2:
                break
        measure_s = (clock() - started) / 1e9
    finally:
        if gc_was_enabled:
            gc.enable()
    return (np.asarray(ns, dtype=np.float64) / 1e6).tolist(), converged, measure_s


def measure_overhead(iterations: int = 20_000) -> dict[str, float]:
    """The benchmark's own cost per timed run, measured with the loop of :func:`timed_runs` around a
    no-op instead of a model.

    Returns ``timer_ns`` (median latency the loop reports for a no-op: the part of the timer
    inside every measured interval, ns) and ``loop_ns`` (wall time per iteration of the whole
    loop around a no-op: timers, list append, stopping-rule bookkeeping, ns).
    """
    spec = CellSpec(bundle_path="", backend="none", precision="fp32", threads=1, min_iterations=iterations,
                    max_iterations=iterations, min_time_s=0.0, max_time_s=60.0, target_rel_ci=1e-9)
    feeds = [None] * N_RANDOM_INPUTS
    timed_runs(lambda feed: None, feeds, spec)  # warm-up
    latencies, _, wall_s = timed_runs(lambda feed: None, feeds, spec)
    return {"timer_ns": float(np.median(latencies)) * 1e6, "loop_ns": wall_s / len(latencies) * 1e9,
            "iterations": len(latencies)}


def measure(spec: CellSpec, out_npz: Path) -> dict[str, Any]:
    """Run the cell in this process and return its measurements (see module docstring)."""
    from edgemer.backends import open_session
    from edgemer.bundle import load_bundle

    bundle = load_bundle(spec.bundle_path, verify=False)  # the parent verified the files
    feeds, source = model_inputs(bundle, seed=spec.seed)

    t0 = time.perf_counter()
    import_runtime(spec.backend)
    import_s = time.perf_counter() - t0
    rss_after_import = peak_rss_mib()

    t0 = time.perf_counter()
    # strict: a provider missing here skips the cell (with the reason) instead of silently measuring CPU
    session = open_session(bundle, spec.backend, spec.precision, spec.threads,
                           spec.providers if spec.providers else (("cpu",) if spec.backend == "onnxruntime" else None),
                           delegate=spec.delegate, strict=True)
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter_ns()
    session.run(feeds[0])
    first_ms = (time.perf_counter_ns() - t0) / 1e6

    outputs = [session.run(f) for f in feeds]
    np.savez(out_npz, **{o.name: np.stack([r[o.name].reshape(o.shape) for r in outputs]) for o in session.outputs})

    t_end = time.perf_counter() + spec.warmup_s
    warmup = 0
    while warmup < 5 or time.perf_counter() < t_end:
        session.run(feeds[warmup % len(feeds)])
        warmup += 1

    latencies, converged, measure_s = timed_runs(session.run, feeds, spec)
    lo, hi = median_ci95(latencies)
    return {
        "description": session.description,
        "inputs": source,
        "n_inputs": len(feeds),
        "import_s": import_s,
        "load_s": load_s,
        "first_inference_ms": first_ms,
        "warmup_iterations": warmup,
        "iterations": len(latencies),
        "measure_s": measure_s,
        "converged": converged,
        "latency_ms": summarize_ms(latencies),
        "p50_ci95_ms": [lo, hi],
        "p50_ci95_rel_half_width": finite_or_none(relative_half_width(latencies)),
        "throughput_per_s": len(latencies) / (sum(latencies) / 1e3),
        "rss_after_import_mib": rss_after_import,
        "rss_peak_mib": peak_rss_mib(),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m edgemer.benchmarks.cell SPEC.json OUT.json``: always writes OUT.json, exit 0
    unless it cannot even do that."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m edgemer.benchmarks.cell SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = CellSpec.from_dict(json.loads(spec_path.read_text()))
    from edgemer.errors import BackendUnavailableError, EdgemerError, MissingExtraError

    try:
        result: dict[str, Any] = {"status": "ok", "reason": None, **measure(spec, out_path.with_suffix(".npz"))}
    except (MissingExtraError, BackendUnavailableError) as exc:
        result = {"status": "skipped", "reason": str(exc), "error_type": type(exc).__name__}
    except EdgemerError as exc:
        result = {"status": "failed", "reason": str(exc), "error_type": type(exc).__name__}
    except Exception as exc:  # a runtime's own error: report it in the cell, not as a crash
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", "error_type": type(exc).__name__,
                  "traceback": traceback.format_exc(limit=8)}
    result["spec"] = asdict(spec)
    out_path.write_text(json.dumps(result, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
