"""Multimodal runtime benchmark: the targets of the three-modality pipeline.

Runs a pipeline file (default ``examples/full.toml``: physiology, speech and face replayed
from files shipped with edgemer) through the real :class:`edgemer.Pipeline`, each
measurement in a fresh Python process, and prints PASS/FAIL per target:

- ``overhead``: at real time (speed 1), everything the pipeline does beyond the backends'
  inference calls, as a fraction of inference time: ``(Σprocessing - Σinference) /
  Σinference`` over all estimates (front-ends, windowing, fusion, sinks). Goal <= 10 %.
  Also reported: the face detector on its own line (OpenCV's Haar cascade is a model, but
  the front-end runs it, not a bundle's backend, so the target counts it as overhead; the
  second view counts it as neither), without the front-ends (the pipeline's own glue), and
  for the whole process (CPU seconds of every thread, sources included, minus inference).
- ``real_time_factor``: pinned to one CPU core, stream seconds processed per CPU second of
  the whole process (what one core sustains), and the speed actually achieved at
  ``rtf_speed`` with no sample dropped. Goal >= 20x.
- ``peak_rss``: peak resident memory (``ru_maxrss``) of the real-time run, on the engines
  ``auto`` chose (named in the target; only the runtimes those use are imported). Goal <= 200
  MiB (issue 15: scipy.signal instead of hand-written numpy filters). A run that makes the
  first-use engine measurement opens every candidate session, onnxruntime included, and says so.
- ``soak``: ``soak_hours`` of stream time (sources looped) at ``soak_speed`` (default 100x):
  RSS growth after a 10-minute warm-up (< 5 MiB), latency p99 of the last 10 minutes vs
  the first 10 minutes (within 10 %), dropped estimates (0); dropped samples and the speed
  achieved are reported too.

``edgemer bench multimodal [--soak] [--json benchmarks/results]``. Result: ``kind:
"multimodal"`` in ``benchmarks/SCHEMA.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "full.toml"
GOALS = {"overhead": 0.10, "real_time_factor": 20.0, "peak_rss_mib": 200.0, "soak_rss_growth_mib": 5.0,
         "soak_latency_p99_change": 0.10, "soak_dropped_estimates": 0, "soak_speed": 100.0}
WINDOW_S = 600.0
"""Warm-up, and the first/last stretch compared in the soak: 10 minutes of stream time."""


def _rss_mib() -> float:
    """Current resident memory of this process, MiB (``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_measured(config: str | Path, speed: float, duration_s: float, loop: bool = False,
                 one_core: bool = False, rss_every: int = 50) -> dict[str, Any]:
    """Run a pipeline file in this process and return per-estimate timings and counters.

    ``rows`` holds, per estimate: stream time from the start (s), latency (s), processing,
    inference and front-end wall time (s), wall time since the start (s), the RSS (MiB)
    every ``rss_every`` estimates (null otherwise) and the face detector's wall time (s,
    part of the front-end time).
    """
    from edgemer.config import load_pipeline_file

    if one_core:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    pf = load_pipeline_file(config, speed=speed, duration_s=duration_s, loop=loop)
    pipe = pf.build()
    rows = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with pipe:
        for k, e in enumerate(pipe):
            rows.append([e.elapsed_s, e.latency_s, e.processing_s, e.inference_s, e.frontend_s,
                         time.perf_counter() - wall0, _rss_mib() if k % rss_every == 0 else None, e.detector_s])
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    stats = pipe.stats()
    return {"rows": rows, "cpu_s": cpu_s, "wall_s": wall_s, "peak_rss_mib": _peak_rss_mib(),
            "dropped_estimates": stats["dropped_estimates"],
            "dropped_samples": sum(s["dropped_samples"] for s in stats["streams"].values()),
            "skipped_windows": sum(b["skipped_windows"] for b in stats["bundles"].values()),
            "windows": {name: b["windows"] for name, b in stats["bundles"].items()},
            "bundles": [{"name": r.bundle.name, "modality": r.modality, "session": r.session.description,
                         "engine": stats["engines"].get(r.bundle.name, {}).get("label"),
                         "engine_source": stats["engines"].get(r.bundle.name, {}).get("source"),
                         "synthetic_data": r.bundle.manifest.trained_on_synthetic_data} for r in pipe.runners],
            "cpu_affinity": sorted(os.sched_getaffinity(0))}


def _worker(kind: str, config: Path, speed: float, duration_s: float, timeout_s: float) -> dict[str, Any]:
    """Run one measurement in a fresh process (clean RSS, no warm caches); return its JSON."""
    cmd = [sys.executable, "-m", "edgemer.benchmarks.soak_bench", "--worker", kind, "--config", str(config),
           "--speed", repr(speed), "--duration", repr(duration_s)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker '{kind}' failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _pct(x: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(x, np.float64), q)) if len(x) else None


def summarise_overhead(run: Mapping[str, Any]) -> dict[str, Any]:
    """Overhead beyond inference from a real-time run (fractions of inference time)."""
    r = np.asarray([row[:6] for row in run["rows"]], np.float64).reshape(-1, 6)
    proc, inf, fe = r[:, 2].sum(), r[:, 3].sum(), r[:, 4].sum()
    det = float(sum(row[7] for row in run["rows"] if len(row) > 7))
    stream_s = float(r[-1, 0] - r[0, 0]) if len(r) > 1 else 0.0
    return {"estimates": int(len(r)), "stream_s": stream_s, "processing_s": float(proc), "inference_s": float(inf),
            "frontend_s": float(fe), "detector_s": det, "cpu_s": run["cpu_s"],
            "overhead": float((proc - inf) / inf) if inf > 0 else None,
            "detector_vs_inference": det / float(inf) if inf > 0 else None,
            "overhead_excluding_detector": float((proc - inf - det) / inf) if inf > 0 else None,
            "overhead_excluding_frontend": float((proc - inf - fe) / inf) if inf > 0 else None,
            "overhead_whole_process": float((run["cpu_s"] - inf) / inf) if inf > 0 else None,
            "latency_ms": {"p50": _pct(r[:, 1] * 1e3, 50), "p99": _pct(r[:, 1] * 1e3, 99)},
            "dropped_samples": run["dropped_samples"], "windows": run["windows"]}


def summarise_rtf(run: Mapping[str, Any], speed: float) -> dict[str, Any]:
    r = np.asarray([row[:6] for row in run["rows"]], np.float64).reshape(-1, 6)
    stream_s = float(r[-1, 0]) if len(r) else 0.0
    span = float(r[-1, 5] - r[0, 5]) if len(r) > 1 else 0.0
    return {"requested_speed": speed, "stream_s": stream_s, "cpu_s": run["cpu_s"], "wall_s": run["wall_s"],
            "real_time_factor": stream_s / run["cpu_s"] if run["cpu_s"] > 0 else None,
            "achieved_speed": float((r[-1, 0] - r[0, 0]) / span) if span > 0 else None,
            "dropped_samples": run["dropped_samples"], "skipped_windows": run["skipped_windows"],
            "cpu_affinity": run["cpu_affinity"], "peak_rss_mib": run["peak_rss_mib"]}


def summarise_soak(run: Mapping[str, Any], speed: float) -> dict[str, Any]:
    rows = run["rows"]
    t = np.asarray([row[0] for row in rows], np.float64)
    lat = np.asarray([row[1] for row in rows], np.float64)
    end = float(t[-1]) if len(t) else 0.0
    first, last = lat[t <= WINDOW_S], lat[t > end - WINDOW_S]
    rss = [(row[0], row[6]) for row in rows if row[6] is not None]
    after_warmup = [m for s, m in rss if s >= WINDOW_S]
    growth = (after_warmup[-1] - after_warmup[0]) if len(after_warmup) >= 2 else None
    p99_first, p99_last = _pct(first * 1e3, 99), _pct(last * 1e3, 99)
    wall = float(rows[-1][5] - rows[0][5]) if len(rows) > 1 else 0.0
    return {"requested_speed": speed, "stream_s": end, "wall_s": run["wall_s"], "estimates": len(rows),
            "achieved_speed": float((t[-1] - t[0]) / wall) if wall > 0 else None,
            "rss_after_warmup_mib": after_warmup[0] if after_warmup else None,
            "rss_end_mib": after_warmup[-1] if after_warmup else None, "rss_growth_mib": growth,
            "latency_p99_first_ms": p99_first, "latency_p99_last_ms": p99_last,
            "latency_p99_change": (p99_last - p99_first) / p99_first if p99_first and p99_last is not None else None,
            "dropped_estimates": run["dropped_estimates"], "dropped_samples": run["dropped_samples"],
            "skipped_windows": run["skipped_windows"], "peak_rss_mib": run["peak_rss_mib"]}


def bench_multimodal(config: str | Path = DEFAULT_CONFIG, overhead_duration_s: float = 65.0, rtf_speed: float = 40.0,
                     rtf_duration_s: float = 240.0, soak_hours: float | None = 1.0, soak_speed: float = 100.0,
                     progress: bool = True, note: str | None = None) -> dict[str, Any]:
    """Measure the multimodal targets, each in a fresh process (see the module docstring).

    Parameters
    ----------
    config: pipeline file. overhead_duration_s: stream seconds of the real-time run (its
        wall time too; the first physiology window needs 60 s). rtf_speed, rtf_duration_s:
        speed and stream seconds of the one-core run. soak_hours: stream hours of the soak
        (None: no soak); soak_speed: its speed. note: free text stored with the result (e.g. that
        other jobs shared the machine); the report shows it.
    """
    from edgemer.benchmarks.result import make_result, target

    config = Path(config).resolve()
    if not config.is_file():
        from edgemer.errors import ConfigError

        raise ConfigError(f"{config}: no such pipeline file (examples/ ships with the source tree, not the wheel); "
                          f"give one with --config")
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    say(f"real-time run: {overhead_duration_s:g} s of stream at speed 1 ...")
    rt = _worker("run", config, 1.0, overhead_duration_s, overhead_duration_s * 3 + 120)
    overhead = summarise_overhead(rt)
    say(f"one-core run: {rtf_duration_s:g} s of stream at speed {rtf_speed:g} ...")
    one = _worker("one-core", config, rtf_speed, rtf_duration_s, rtf_duration_s / rtf_speed * 20 + 120)
    rtf = summarise_rtf(one, rtf_speed)
    soak = None
    if soak_hours:
        stream_s = soak_hours * 3600
        say(f"soak: {stream_s:g} s of stream at speed {soak_speed:g} (about {stream_s / soak_speed / 60:.1f} min "
            f"if it keeps up) ...")
        soak = summarise_soak(_worker("soak", config, soak_speed, stream_s, stream_s / soak_speed * 20 + 300),
                              soak_speed)
    g = GOALS
    targets = [
        target("pipeline_overhead", "pipeline time beyond the backends' inference calls, at real time, as a "
               "fraction of inference time", overhead["overhead"], f"<= {g['overhead']}",
               None if overhead["overhead"] is None else overhead["overhead"] <= g["overhead"], "fraction"),
        target("real_time_factor_one_core", "stream seconds per CPU second on one core, no sample dropped at "
               f"speed {rtf_speed:g}", rtf["real_time_factor"], f">= {g['real_time_factor']:g}",
               None if rtf["real_time_factor"] is None else
               rtf["real_time_factor"] >= g["real_time_factor"] and rtf["dropped_samples"] == 0, "ratio"),
        target("peak_rss", f"peak RSS of the real-time run ({_engines(rt['bundles'])}), MiB", rt["peak_rss_mib"],
               f"<= {g['peak_rss_mib']:g}", rt["peak_rss_mib"] <= g["peak_rss_mib"], "MiB"),
    ]
    if soak is not None:
        fast = soak_speed >= g["soak_speed"]
        targets += [
            target("soak_rss_growth", f"RSS growth after {WINDOW_S / 60:.0f} min warm-up over "
                   f"{soak_hours:g} h at {soak_speed:g}x, MiB", soak["rss_growth_mib"],
                   f"< {g['soak_rss_growth_mib']:g} at >= {g['soak_speed']:g}x",
                   None if soak["rss_growth_mib"] is None else fast and soak["rss_growth_mib"] < g["soak_rss_growth_mib"],
                   "MiB"),
            target("soak_latency_p99", "latency p99, last vs first 10 min of stream (relative change)",
                   soak["latency_p99_change"], f"within +/-{g['soak_latency_p99_change']:g}",
                   None if soak["latency_p99_change"] is None else
                   fast and abs(soak["latency_p99_change"]) <= g["soak_latency_p99_change"], "fraction"),
            target("soak_dropped_estimates", "estimates dropped during the soak", soak["dropped_estimates"], "== 0",
                   fast and soak["dropped_estimates"] == 0, "count"),
            target("soak_speed", "stream speed the soak achieved (requested "
                   f"{soak_speed:g}x); samples dropped: {soak['dropped_samples']}", soak["achieved_speed"],
                   f">= {g['soak_speed']:g}", None if soak["achieved_speed"] is None else
                   soak["achieved_speed"] >= 0.95 * g["soak_speed"] and soak["dropped_samples"] == 0, "ratio"),
        ]
    return make_result("multimodal",
                       settings={"config": str(config), "overhead_duration_s": overhead_duration_s,
                                 "rtf_speed": rtf_speed, "rtf_duration_s": rtf_duration_s, "soak_hours": soak_hours,
                                 "soak_speed": soak_speed,
                                 "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS")},
                       targets=targets,
                       bundle={"name": "multimodal", "config": str(config), "bundles": rt["bundles"]},
                       overhead=overhead, real_time=rtf, peak_rss_mib=rt["peak_rss_mib"], soak=soak, note=note)


def _engines(bundles: Sequence[Mapping[str, Any]]) -> str:
    """The engines a run used, e.g. ``physio-demo litert/int8/t1, ...``; a first-use engine
    measurement in the run is named: it opens every candidate session (onnxruntime too), which
    raised the peak RSS of examples/full.toml from 168 to 203 MiB on the 2-core x86 VM."""
    text = ", ".join(f"{b['name']} {b.get('engine') or '?'}" for b in bundles)
    if any(b.get("engine_source") == "first-use" for b in bundles):
        text += "; includes a first-use engine measurement: run again for the steady figure"
    return text


def _f(x: float | None, spec: str, scale: float = 1.0) -> str:
    return "n/a" if x is None else format(x * scale, spec)


def format_multimodal(result: Mapping[str, Any]) -> str:
    """PASS/FAIL per target with the measured numbers."""
    o, r, s = result["overhead"], result["real_time"], result["soak"]
    names = ", ".join(f"{b['name']} ({b['modality']})" for b in result["bundle"]["bundles"])
    lines = [f"multimodal pipeline {Path(result['settings']['config']).name}: {names}",
             (f"  real time, {o['stream_s']:.0f} s: inference {o['inference_s'] * 1e3:.0f} ms, front-ends "
              f"{o['frontend_s'] * 1e3:.0f} ms (face detector {_f(o.get('detector_s'), '.0f', 1e3)} ms), all "
              f"processing {o['processing_s'] * 1e3:.0f} ms, process CPU {o['cpu_s'] * 1e3:.0f} ms; latency p50 "
              f"{_f(o['latency_ms']['p50'], '.1f')} ms, p99 {_f(o['latency_ms']['p99'], '.1f')} ms"),
             (f"  overhead beyond inference (the target's definition: the face detector counts as overhead) "
              f"{_f(o['overhead'], '.0f', 100)} % of inference"),
             (f"  with the face detector on its own line (neither inference nor overhead): detector "
              f"{_f(o.get('detector_vs_inference'), '.0f', 100)} % of inference, overhead "
              f"{_f(o.get('overhead_excluding_detector'), '.0f', 100)} %; without any front-end "
              f"{_f(o['overhead_excluding_frontend'], '.1f', 100)} %; whole process "
              f"{_f(o['overhead_whole_process'], '.0f', 100)} %"),
             (f"  one core (cpu {r['cpu_affinity']}), speed {r['requested_speed']:g}x requested: achieved "
              f"{_f(r['achieved_speed'], '.1f')}x, {r['stream_s']:.0f} stream s in {r['cpu_s']:.1f} CPU s, "
              f"{r['dropped_samples']} samples dropped")]
    if s is not None:
        lines.append(f"  soak: {s['stream_s'] / 3600:.2f} h of stream, {s['estimates']} estimates in {s['wall_s']:.0f} s "
                     f"wall (achieved {_f(s['achieved_speed'], '.1f')}x of {s['requested_speed']:g}x), RSS "
                     f"{_f(s['rss_after_warmup_mib'], '.1f')} -> {_f(s['rss_end_mib'], '.1f')} MiB, latency p99 "
                     f"{_f(s['latency_p99_first_ms'], '.1f')} -> {_f(s['latency_p99_last_ms'], '.1f')} ms, "
                     f"{s['dropped_samples']} samples dropped, {s['skipped_windows']} windows skipped")
    for t in result["targets"]:
        mark = "n/a " if t["met"] is None else ("PASS" if t["met"] else "FAIL")
        v = t["value"]
        value = "n/a" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append(f"{mark}  {t['id']}: {value} (goal {t['threshold']}) - {t['description']}")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgemer bench multimodal``."""
    parser.description = ("The three-modality pipeline (default examples/full.toml) against the runtime targets, each "
                          "part in a fresh process: overhead beyond inference at real time, real-time factor on one "
                          "core, peak RSS; with --soak also hours of stream at 100x (RSS growth, p99 stability, "
                          "dropped estimates).")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="pipeline file (default examples/full.toml)")
    parser.add_argument("--overhead-duration", type=float, default=65.0, metavar="SECONDS",
                        help="stream (= wall) seconds of the real-time run (default 65)")
    parser.add_argument("--rtf-speed", type=float, default=40.0, help="speed of the one-core run (default 40)")
    parser.add_argument("--rtf-duration", type=float, default=240.0, metavar="SECONDS",
                        help="stream seconds of the one-core run (default 240)")
    parser.add_argument("--soak", action="store_true", help="add the soak (default: 1 h of stream at 100x)")
    parser.add_argument("--soak-hours", type=float, default=1.0, help="with --soak: stream hours (default 1)")
    parser.add_argument("--soak-speed", type=float, default=100.0, help="with --soak: speed (default 100)")
    parser.add_argument("--note", default=None, metavar="TEXT",
                        help="free text stored with the result and shown in the report, e.g. 'shared machine: "
                             "other jobs running'")


def main(argv: Sequence[str] | None = None) -> int:
    """The measuring worker (``--worker``, started by :func:`_worker`); otherwise the deprecated spelling
    ``python -m edgemer.benchmarks.soak_bench``, which runs ``edgemer bench multimodal --soak`` (its soak was on
    unless ``--no-soak``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--worker" not in argv:
        from edgemer.benchmarks.commands import deprecated_main

        argv = [a for a in argv if a != "--no-soak"] if "--no-soak" in argv else ["--soak", *argv]
        return deprecated_main("python -m edgemer.benchmarks.soak_bench", "multimodal", argv)
    parser = argparse.ArgumentParser(prog="python -m edgemer.benchmarks.soak_bench --worker")
    parser.add_argument("--worker", choices=("run", "one-core", "soak"), required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args(argv)
    measured = run_measured(args.config, args.speed, args.duration, loop=True,
                       one_core=args.worker == "one-core", rss_every=200 if args.worker == "soak" else 50)
    print(json.dumps(measured, allow_nan=False))
    return 0


def run(args: argparse.Namespace) -> int:
    """``edgemer bench multimodal``: measure, print PASS/FAIL per target, write with --json; 0."""
    from edgemer.benchmarks.fingerprint import device_line
    from edgemer.benchmarks.result import write_json

    result = bench_multimodal(args.config, overhead_duration_s=args.overhead_duration, rtf_speed=args.rtf_speed,
                              rtf_duration_s=args.rtf_duration, soak_hours=args.soak_hours if args.soak else None,
                              soak_speed=args.soak_speed, note=args.note)
    print(device_line(result["device"]))
    if any(b["synthetic_data"] for b in result["bundle"]["bundles"]):
        print("bundles trained on synthetic data: timings are real, accuracy is not")
    print(format_multimodal(result))
    if result.get("note"):
        print(f"note: {result['note']}")
    if args.json is not None:
        print(f"\nwrote {write_json(result, args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
