"""CPU of the whole process per stream second, and where it goes, for a pipeline file.

``edgemer bench cpu [--config examples/full.toml] [--duration 65] [--speed 1] [--profile]
[--json FILE_OR_DIR]`` (also ``python -m edgemer.benchmarks.cpu_profile``) runs the pipeline
file (every replayed source looped) in this process and prints:

- ``cpu_per_stream_s``: CPU seconds of the whole process (every thread: sources and
  decoding, the worker, the iterator, runtime thread pools) from the pipeline's start to
  its end, divided by the stream seconds covered, as a percentage of one core. At speed 1
  (the default) this is the load of a live deployment; pipeline construction (imports,
  bundle loading, engine choice) is reported on its own line (``startup_cpu_s``).
- per thread (exact, from ``/proc/self/task/*/stat``, sampled every second by a monitor
  thread whose own CPU is reported as ``measurement``): each source, the pipeline worker,
  the main thread (iterating estimates), native threads by their kernel name (runtime
  pools: ``native: NAME``).
- the machine's load (``os.getloadavg`` before and after): CPU seconds are much less
  sensitive to other processes than wall time, but a loaded machine still costs more
  wake-ups and cache misses, so the load is printed with the figure.
- the target line, ``cpu_per_stream_s`` <= :data:`CPU_TARGET` (1 % of one core): PASS/FAIL.
- with ``--profile`` (needs ``py-spy``, in ``edgemer[dev]``): the same run sampled by
  py-spy from outside the process (``--rate`` Hz, idle frames excluded), each sample put
  into one category by its innermost edgemer frame (a face-detector frame anywhere in the
  stack makes it the detector's, its model runs included): sources and decoding, each front-end,
  the face detector, inference (of the bundles' models), windows (ring buffers), fusion, sinks, pipeline glue,
  idle-thread wake-ups (``threading``/``queue`` waits), other. Shares are of the sampled
  CPU; multiplied by ``cpu_per_stream_s`` they give each part's share of a core.

Registered as ``edgemer bench cpu`` (result kind ``cpu``, SCHEMA.md); run it on its own to
measure one change at a time. Only Linux reports per-thread CPU; elsewhere that table is empty.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "full.toml"
CPU_TARGET = 0.01
"""Whole-process CPU per stream second of examples/full.toml at 1x: at most 1 % of one core."""

IDLE = "idle-thread wake-ups (clock waits)"
CATEGORIES = (
    ("inference", ("edgemer/backends/",)),
    ("face detector", ("edgemer/frontends/face_detector.py", "edgemer/frontends/blazeface.py")),
    ("front-end physio", ("edgemer/frontends/physio.py", "edgemer/frontends/eda.py", "edgemer/frontends/heart.py",
                          "edgemer/frontends/signal")),
    ("front-end audio", ("edgemer/frontends/audio",)),
    ("front-end face", ("edgemer/frontends/face.py", "edgemer/frontends/image_np.py")),
    (IDLE, ("edgemer/clock.py",)),
    ("sources and decoding", ("edgemer/sources/", "edgemer/recorder.py", "edgemer/wesad.py")),
    ("windows (ring buffers)", ("edgemer/buffers.py",)),
    ("fusion", ("edgemer/fusion.py",)),
    ("sinks", ("edgemer/sinks.py",)),
    ("pipeline glue", ("edgemer/pipeline.py", "edgemer/types.py")),
)
"""Category -> path fragments of the frames that belong to it; the innermost edgemer frame decides,
except for :data:`DETECTOR`."""
DETECTOR = "face detector"
"""A sample with a face-detector frame anywhere in its stack counts as the detector's, its model runs
(through edgemer's backends) and letterbox (``image_np``) included: otherwise the detector's
inference would land in ``inference`` and hide the detector's real share."""


def _thread_comm(tid: int) -> str:
    """The kernel's name of a thread of this process (``/proc/self/task/TID/comm``), '' when unknown."""
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _thread_cpu_s() -> dict[int, float]:
    """CPU seconds (user + system) of every thread of this process by native thread id (Linux)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return out


class ThreadMonitor:
    """Samples every thread's CPU once per ``period_s`` and keeps the last value per thread
    (threads that ended keep their last sample), with Python thread names where known."""

    def __init__(self, period_s: float = 1.0) -> None:
        self.period_s = period_s
        self.cpu: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-monitor", daemon=True)
        self.native_id: int | None = None

    def sample(self) -> None:
        for t in threading.enumerate():
            if t.native_id is not None:
                self.names.setdefault(t.native_id, t.name)
        cpu = _thread_cpu_s()
        for tid in cpu:
            if tid not in self.names:
                self.names[tid] = f"native: {_thread_comm(tid) or 'unnamed'}"
        self.cpu.update(cpu)

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        while not self._stop.wait(self.period_s):
            self.sample()

    def __enter__(self) -> "ThreadMonitor":
        self.sample()
        self.start_cpu = dict(self.cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def by_name(self) -> dict[str, float]:
        """CPU seconds per thread name over the monitored span (``measurement`` = the monitor)."""
        out: Counter = Counter()
        for tid, cpu in self.cpu.items():
            name = "measurement" if tid == self.native_id else self.names.get(tid, "native: unnamed")
            name = re.sub(r"^Thread-\d+.*", "other Python threads", name)
            out[name] += cpu - self.start_cpu.get(tid, 0.0)
        return {k: round(v, 4) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def run_once(config: str | Path, duration_s: float, speed: float) -> dict[str, Any]:
    """Run the pipeline file in this process; CPU of the run and per thread."""
    load_before = _load()
    cpu0 = time.process_time()
    from edgemer.config import load_pipeline_file

    pipe = load_pipeline_file(config, speed=speed, duration_s=duration_s, loop=True).build()
    startup_cpu_s = time.process_time() - cpu0
    first = last = None
    estimates = 0
    with ThreadMonitor() as monitor:
        cpu1, wall1 = time.process_time(), time.perf_counter()
        with pipe:
            for e in pipe:
                first = e.t if first is None else first
                last = e.t
                estimates += 1
        cpu_s, wall_s = time.process_time() - cpu1, time.perf_counter() - wall1
    stream_s = duration_s  # every source runs duration_s of stream (looped)
    threads = monitor.by_name()
    measurement = threads.get("measurement", 0.0)
    return {"config": str(config), "speed": speed, "stream_s": stream_s, "wall_s": wall_s,
            "estimates": estimates, "startup_cpu_s": startup_cpu_s, "cpu_s": cpu_s - measurement,
            "cpu_per_stream_s": (cpu_s - measurement) / stream_s, "threads_cpu_s": threads,
            "engines": pipe.engines, "load_1min": {"before": load_before, "after": _load()},
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}


def _load() -> float | None:
    """The machine's 1-minute load average (runnable threads), None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


BLOCKED_LEAVES = ("Condition.wait", "Event.wait", "Queue.get", "sleep", "lock.acquire", "_wait_for_tstate_lock")
"""Innermost frames of a thread that waits: py-spy cannot always tell waiting from running inside a VM, so
these samples are counted as ``blocked`` (not CPU) whatever py-spy says."""
STARTUP_MARKERS = ("importlib", "load_pipeline_file", "choose_engine", "PipelineFile.build", "ModelRunner.__init__")


def categorise(stack: list[str]) -> str:
    """The category of one sampled stack (frames outermost first, ``func (file:line)``): ``start-up``
    and ``blocked`` samples are not CPU of the running pipeline; a face-detector frame anywhere makes it
    :data:`DETECTOR`'s; else the innermost edgemer frame decides."""
    if any(m in f for f in stack for m in STARTUP_MARKERS):
        return "start-up"
    leaf = stack[-1].split(" (")[0] if stack else ""
    if any(leaf.endswith(b) for b in BLOCKED_LEAVES):
        return "blocked"
    detector = dict(CATEGORIES)[DETECTOR]
    if any(f in frame.replace("\\", "/") for frame in stack for f in detector):
        return DETECTOR
    for frame in reversed(stack):
        path = frame.replace("\\", "/")
        for name, fragments in CATEGORIES:
            if any(f in path for f in fragments):
                return name
    if any(("threading.py" in f or "queue.py" in f) for f in stack[-3:]):
        return IDLE
    return "other"


def parse_raw(text: str) -> Counter:
    """py-spy's ``--format raw`` (collapsed stacks: ``frame;frame;... count``) -> samples per category."""
    counts: Counter = Counter()
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        counts[categorise(frames)] += int(n)
    return counts


def profile(config: str | Path, duration_s: float, speed: float, rate_hz: int = 200) -> dict[str, Any]:
    """The same run under ``py-spy record`` (sampling from outside, idle frames excluded): samples and
    share per category. Raises RuntimeError when py-spy is missing or cannot attach."""
    spy = shutil.which("py-spy")
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install 'edgemer[dev]')")
    with tempfile.TemporaryDirectory(prefix="edgemer-cpu-") as tmp:
        raw = Path(tmp) / "stacks.txt"
        cmd = [spy, "record", "--format", "raw", "--rate", str(rate_hz), "--output", str(raw), "--nonblocking",
               "--", sys.executable, "-m", "edgemer.benchmarks.cpu_profile", "--config", str(config),
               "--duration", repr(duration_s), "--speed", repr(speed), "--json-line"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s / speed * 3 + 300)
        if proc.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed (exit {proc.returncode}): {proc.stderr[-800:]}")
        counts = parse_raw(raw.read_text())
    run = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    excluded = {k: counts.pop(k) for k in ("start-up", "blocked") if k in counts}
    total = sum(counts.values()) or 1
    return {"rate_hz": rate_hz, "samples": total, "excluded_samples": excluded, "run": run,
            "categories": {k: {"samples": v, "share": v / total} for k, v in counts.most_common()}}


def cpu_target(run: Mapping[str, Any]) -> dict[str, Any]:
    """The target row: whole-process CPU per stream second <= :data:`CPU_TARGET` (fraction of one core)."""
    from edgemer.benchmarks.result import target

    value = run["cpu_per_stream_s"]
    return target("cpu_per_stream_s", f"whole-process CPU per stream second of {Path(run['config']).name} at "
                  f"{run['speed']:g}x (every thread; start-up not counted), fraction of one core", value,
                  f"<= {CPU_TARGET}", value <= CPU_TARGET, "fraction")


def format_report(run: Mapping[str, Any], prof: Mapping[str, Any] | None = None) -> str:
    load = run.get("load_1min") or {}
    lines = [f"machine load (1-min average, {run.get('usable_cores')} usable cores): {load.get('before')} before, "
             f"{load.get('after')} after; CPU seconds are counted, not wall time",
             f"{Path(run['config']).name} at {run['speed']:g}x: {run['stream_s']:g} s of stream, "
             f"{run['estimates']} estimates, process CPU {run['cpu_s']:.3f} s = "
             f"{run['cpu_per_stream_s'] * 100:.2f} % of one core (target <= {CPU_TARGET * 100:g} %); "
             f"start-up (imports, bundles, engine choice) {run['startup_cpu_s']:.2f} CPU s",
             "  engines: " + ", ".join(f"{k} {v}" for k, v in run.get("engines", {}).items()),
             "  CPU per thread (s):"]
    for name, cpu in run["threads_cpu_s"].items():
        lines.append(f"    {name:34s} {cpu:8.3f}  ({cpu / run['stream_s'] * 100:.2f} % of a core)")
    if prof:
        pr = prof["run"]
        lines.append(f"  py-spy breakdown ({prof['samples']} running samples at {prof['rate_hz']} Hz, not counted: "
                     + ", ".join(f"{k} {v}" for k, v in prof["excluded_samples"].items())
                     + f"; that run: {pr['cpu_per_stream_s'] * 100:.2f} % of a core):")
        for name, c in prof["categories"].items():
            lines.append(f"    {name:34s} {c['share'] * 100:5.1f} %  (~{c['share'] * pr['cpu_per_stream_s'] * 100:.2f} "
                         f"% of a core)")
    t = cpu_target(run)
    lines.append(f"target {t['id']}: {t['value'] * 100:.2f} % of one core (goal <= {CPU_TARGET * 100:g} %) "
                 f"{'PASS' if t['met'] else 'FAIL'}")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgemer bench cpu``."""
    parser.description = ("Whole-process CPU per stream second of a pipeline file (default examples/full.toml) at 1x, "
                          "per thread, and with --profile a py-spy breakdown by part; target <= 1 % of one core.")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="pipeline file (default examples/full.toml)")
    parser.add_argument("--duration", type=float, default=65.0, help="stream seconds (default 65)")
    parser.add_argument("--speed", type=float, default=1.0, help="stream seconds per wall second (default 1: a live "
                                                                 "deployment's load)")
    parser.add_argument("--profile", action="store_true", help="also a py-spy run with the breakdown (edgemer[dev])")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (default 200)")
    parser.add_argument("--json-line", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """``edgemer bench cpu``: measure, print the breakdown and the target; write the result with --json."""
    result = run_once(args.config, args.duration, args.speed)
    if args.json_line:
        print(json.dumps(result))
        return 0
    prof = profile(args.config, args.duration, args.speed, args.rate) if args.profile else None
    print(format_report(result, prof))
    if args.json is not None:
        from edgemer.benchmarks.result import make_result, write_json

        out = make_result("cpu", settings={"config": str(args.config), "duration_s": args.duration,
                                           "speed": args.speed, "profile": bool(args.profile)},
                          targets=[cpu_target(result)], bundle={"name": Path(args.config).stem}, run=result,
                          profile=prof)
        print(f"result written to {write_json(out, args.json)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python3 -m edgemer.benchmarks.cpu_profile``: the same as ``edgemer bench cpu`` (its registry adds ``--json``;
    :func:`profile` re-runs this entry under py-spy with the hidden ``--json-line``)."""
    from edgemer.benchmarks.commands import run_kind

    return run_kind("cpu", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
