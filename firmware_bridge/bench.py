"""``edgemer bench bridge``: how well the serial link holds up, against the issue's targets.

Four measurements, printed as ratios and percentiles (tests never assert wall-clock
numbers; this command reports them):

1. decoder throughput on one core (bytes -> checked frames -> samples in physical units)
   versus the frame rate of a saturated 1 Mbaud link (8N1: 100,000 bytes/s) carrying the
   emulator's stream mix, and the worst case of 1-sample frames (goal >= 20x);
2. clock sync: the emulator's clock drifts +100 ppm; after ``--sync-s`` seconds (60) of
   real time on a pseudo-terminal, the drift estimate error (goal <= 10 ppm) and the
   error of mapped sample times against the emulator's true sample times (goal <= 2 ms);
3. recovery: unplug for 3 s; time from the port's return to the next Chunk (goal < 1 s)
   and the gap reported;
4. latency from the last byte of a frame written by the emulator to its Chunk in a ring
   buffer (p50 / p99), measured during run 2 (emulator and source in one process).

Run: ``edgemer bench bridge [--json benchmarks/results]`` (result kind ``bridge`` in
``benchmarks/SCHEMA.md``). ``edgemer bridge-bench`` and ``python3 -m edgemer.firmware_bridge.bench``
are deprecated spellings of it.
"""
from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgemer.firmware_bridge.device import DeviceConfig, DeviceModel
from edgemer.firmware_bridge.framing import FrameDecoder
from edgemer.firmware_bridge.session import DeviceSession

LINK_BYTES_PER_S = 1_000_000 / 10
"""A 1 Mbaud UART with 8N1 framing moves 10 bits per byte."""
GOALS = {"throughput_ratio": 20.0, "drift_error_ppm": 10.0, "map_error_ms": 2.0, "recovery_s": 1.0}
"""The bridge's targets: decoder vs link frame rate (ratio), drift error (ppm), mapped-time error (ms),
recovery after an unplug (s)."""


def device_stream(seconds: float, streams: tuple[str, ...] | None = None, seed: int = 0) -> tuple[bytes, int]:
    """Wire bytes of ``seconds`` of an autostarted emulated device (optionally only some streams)
    and the number of frames in them."""
    model = DeviceModel(DeviceConfig(seed=seed, autostart=True, clock_start_us=2 ** 32 - 30_000_000))
    if streams is not None:
        for s in model.streams.values():
            s.streaming = s.desc.name in streams
    frames = [f.data for f in model.due(seconds)]
    descriptors = model.boot_frames[1:]  # without the INFO(boot): a decoder meeting it would count a device reset
    return b"".join(descriptors + frames), len(descriptors) + len(frames)


def decode_rate(data: bytes, read_size: int = 4096, repeats: int = 3) -> tuple[float, int]:
    """Best frames/s of FrameDecoder + DeviceSession over ``data`` fed in ``read_size`` pieces."""
    best = 0.0
    n_frames = 0
    chunks = [data[i:i + read_size] for i in range(0, len(data), read_size)]
    for _ in range(repeats):
        decoder, session = FrameDecoder(), DeviceSession()
        handle = session.handle
        count = 0
        t0 = time.perf_counter()
        for chunk in chunks:
            for frame in decoder.feed(chunk):
                handle(frame)
                count += 1
        dt = time.perf_counter() - t0
        best = max(best, count / dt)
        n_frames = count
    return best, n_frames


def bench_throughput(seconds: float = 600.0) -> dict[str, Any]:
    data, n = device_stream(seconds)
    rate, decoded = decode_rate(data)
    bytes_per_frame = len(data) / n
    link_fps = LINK_BYTES_PER_S / bytes_per_frame
    small, n_small = device_stream(seconds, ("eda",))
    small_rate, _ = decode_rate(small)
    small_bpf = len(small) / n_small
    return {
        "frames": decoded, "bytes_per_frame": bytes_per_frame, "decoded_frames_per_s": rate,
        "decoded_bytes_per_s": rate * bytes_per_frame, "link_frames_per_s": link_fps, "ratio": rate / link_fps,
        "small_bytes_per_frame": small_bpf, "small_decoded_frames_per_s": small_rate,
        "small_link_frames_per_s": LINK_BYTES_PER_S / small_bpf,
        "small_ratio": small_rate / (LINK_BYTES_PER_S / small_bpf),
        "cobs_c_extension": bool(getattr(sys.modules.get("cobs.cobs"), "_using_extension", False)),
    }


def _run_link(seconds: float, drift_ppm: float, unplug_at: float | None = None, unplug_s: float = 3.0,
              speed: float = 1.0) -> dict[str, Any]:
    """Emulator on a pty + SerialWearable, for ``seconds`` emulated seconds; returns raw observations."""
    from edgemer.buffers import StreamBuffer
    from edgemer.clock import PipelineClock
    from edgemer.firmware_bridge.emulator import EmulatorConfig, WearableEmulator
    from edgemer.sources.serial_wearable import SerialWearable

    emitted: list[tuple[float, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        link = str(Path(tmp) / "wearable")
        cfg = EmulatorConfig(device=DeviceConfig(drift_ppm=drift_ppm, record_truth=True, seed=3), speed=speed,
                             link=link, record_writes=True)
        with WearableEmulator(cfg) as emu:
            src = SerialWearable(link, speed=speed)
            buffers = {s.name: StreamBuffer(s, 120.0) for s in src.streams}

            def emit(chunk) -> None:
                buffers[chunk.stream].push(chunk)
                emitted.append((time.monotonic(), chunk))

            clock = PipelineClock(speed)
            src.start(clock, emit)
            try:
                if unplug_at is not None:
                    time.sleep(unplug_at / speed)
                    emu.unplug(unplug_s)
                    time.sleep((seconds - unplug_at) / speed)
                else:
                    time.sleep(seconds / speed)
                health = src.health()
                drift_fitted = src.mapper.drift_fitted
            finally:
                src.stop()
            truth = {(f.boot, f.stream, f.seq): f for f in emu.model.truth}
            return {"emitted": emitted, "truth": truth, "health": health, "events": list(emu.events),
                    "write_times": dict(emu.write_times), "wall_of": emu.wall_of, "clock": clock,
                    "drift_fitted": drift_fitted}


def bench_sync(seconds: float = 60.0, drift_ppm: float = 100.0) -> dict[str, Any]:
    run = _run_link(seconds, drift_ppm)
    errors, latencies = [], []
    for t_emit, chunk in run["emitted"]:
        key = (1, chunk.stream, chunk.seq)
        sent = run["truth"].get(key)
        if sent is not None:
            errors.append(chunk.t0 - run["wall_of"](sent.true_s))
        written = run["write_times"].get(key)
        if written is not None:
            latencies.append(t_emit - written)
    err = np.abs(np.asarray(errors)) * 1e3
    lat = np.asarray(latencies) * 1e3
    estimate = run["health"]["drift_ppm"]
    return {
        "seconds": seconds, "true_drift_ppm": drift_ppm, "estimated_drift_ppm": estimate,
        "drift_error_ppm": abs(estimate - drift_ppm), "drift_fitted": run["drift_fitted"],
        "chunks": len(errors), "map_error_ms_median": float(np.median(err)), "map_error_ms_p99": float(
            np.percentile(err, 99)), "map_error_ms_max": float(err.max()),
        "map_error_ms_max_last_10s": float(np.max(err[-max(1, int(len(err) * 10 / seconds)):])),
        "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p99": float(np.percentile(lat, 99)),
        "latency_ms_max": float(lat.max()), "latency_n": int(lat.size), "health": run["health"],
    }


def bench_recovery(unplug_s: float = 3.0) -> dict[str, Any]:
    run = _run_link(3.0 + unplug_s + 3.0, 0.0, unplug_at=3.0, unplug_s=unplug_s)
    replug = next(e for e in run["events"] if e[0] == "replug")[2]
    after = [t for t, c in run["emitted"] if t > replug]
    flagged = [c for t, c in run["emitted"] if t > replug and c.flags]
    h = run["health"]
    return {
        "unplug_s": unplug_s, "recovery_s": (after[0] - replug) if after else float("nan"),
        "outage_s": h["last_outage_s"], "gap_reported_s": h["last_gap_s"], "seq_gaps": h["seq_gaps"],
        "missing_frames": h["missing_frames"], "reconnects": h["reconnects"],
        "gap_flagged_streams": sorted({c.stream for c in flagged}),
    }


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def measure(sync_s: float = 60.0, throughput_s: float = 600.0, skip_link: bool = False) -> dict[str, Any]:
    """Run the four measurements (only the decoder's with ``skip_link``), printing each; returns
    ``{"throughput": ..., "sync": ..., "recovery": ...}`` (the last two absent with ``skip_link``)."""
    results: dict[str, Any] = {}
    print(f"edgemer bench bridge  (Python {platform.python_version()}, {platform.processor() or platform.machine()})",
          flush=True)
    tp = results["throughput"] = bench_throughput(throughput_s)
    print(f"decoder throughput  emulator stream mix, {tp['bytes_per_frame']:.1f} B/frame: "
          f"{tp['decoded_frames_per_s']:,.0f} frames/s ({tp['decoded_bytes_per_s'] / 1e6:.1f} MB/s) on one core "
          f"[cobs C extension: {'yes' if tp['cobs_c_extension'] else 'no'}]")
    print(f"                    saturated 1 Mbaud link carries {tp['link_frames_per_s']:,.0f} frames/s -> "
          f"ratio {tp['ratio']:.1f}x (goal >= {GOALS['throughput_ratio']:g}x) "
          f"{_verdict(tp['ratio'] >= GOALS['throughput_ratio'])}")
    print(f"                    worst case, 1-sample frames of {tp['small_bytes_per_frame']:.1f} B: "
          f"{tp['small_decoded_frames_per_s']:,.0f} vs {tp['small_link_frames_per_s']:,.0f} frames/s -> "
          f"ratio {tp['small_ratio']:.1f}x", flush=True)
    if skip_link:
        return results
    quiet = logging.getLogger("edgemer")  # the link's own warnings (lost, back, gap) would interleave
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        _print_link(results, sync_s)
    finally:
        quiet.setLevel(level)
    results["sync"].pop("health", None)  # the source's own counters: not part of the result
    return results


def bridge_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The serial link's targets (``targets[]`` rows); the link ones are not measured (null) without the pty runs."""
    from edgemer.benchmarks.result import target

    g = GOALS
    tp, sy, rc = results["throughput"], results.get("sync"), results.get("recovery")
    recovery = None if rc is None or not np.isfinite(rc["recovery_s"]) else rc["recovery_s"]
    return [
        target("decoder_throughput_ratio", "decoded frames/s on one core / frames/s of a saturated 1 Mbaud link "
               "(emulator stream mix)", tp["ratio"], f">= {g['throughput_ratio']:g}",
               tp["ratio"] >= g["throughput_ratio"], "ratio"),
        target("clock_drift_error", "drift estimate error for a device clock at +100 ppm",
               None if sy is None else sy["drift_error_ppm"], f"<= {g['drift_error_ppm']:g}",
               None if sy is None else sy["drift_error_ppm"] <= g["drift_error_ppm"], "ppm"),
        target("mapped_time_error", "largest error of mapped sample times against the emulator's true times",
               None if sy is None else sy["map_error_ms_max"], f"<= {g['map_error_ms']:g}",
               None if sy is None else sy["map_error_ms_max"] <= g["map_error_ms"], "ms"),
        target("recovery_after_unplug", "samples again after a 3 s unplug, from the port's return", recovery,
               f"< {g['recovery_s']:g}", None if recovery is None else recovery < g["recovery_s"], "s"),
    ]


def _print_link(results: dict[str, Any], sync_s: float) -> None:
    sy = results["sync"] = bench_sync(sync_s)
    print(f"clock sync          device clock +{sy['true_drift_ppm']:g} ppm, {sy['seconds']:g} s on a pty: estimate "
          f"{sy['estimated_drift_ppm']:+.1f} ppm, error {sy['drift_error_ppm']:.1f} ppm (goal <= 10) "
          f"{_verdict(sy['drift_error_ppm'] <= 10)}")
    print(f"                    mapped sample times vs true: median {sy['map_error_ms_median']:.3f} ms, "
          f"p99 {sy['map_error_ms_p99']:.3f} ms, max {sy['map_error_ms_max']:.3f} ms over {sy['chunks']} chunks "
          f"(goal <= 2 ms) {_verdict(sy['map_error_ms_max'] <= 2)}")
    print(f"latency             last byte written -> Chunk in ring buffer: p50 {sy['latency_ms_p50']:.3f} ms, "
          f"p99 {sy['latency_ms_p99']:.3f} ms, max {sy['latency_ms_max']:.3f} ms (n={sy['latency_n']})", flush=True)
    rc = results["recovery"] = bench_recovery(3.0)
    print(f"recovery            unplugged {rc['unplug_s']:g} s: samples again {rc['recovery_s']:.3f} s after the port "
          f"returned (goal < 1 s) {_verdict(rc['recovery_s'] < 1)}")
    print(f"                    gap reported: {rc['gap_reported_s']:.2f} s in {len(rc['gap_flagged_streams'])} streams "
          f"(FLAG_GAP; {rc['missing_frames']} frames missing), port away {rc['outage_s']:.2f} s, "
          f"{rc['reconnects']} reconnect", flush=True)


def configure(p: argparse.ArgumentParser) -> None:
    """Options of ``edgemer bench bridge``."""
    p.description = ("Measure the firmware bridge against its targets: decoder throughput vs a saturated 1 Mbaud "
                     "link, drift and timestamp error at 100 ppm, recovery after a 3 s unplug, last-byte-to-Chunk "
                     "latency.")
    p.add_argument("--sync-s", type=float, default=60.0, metavar="SECONDS",
                   help="real seconds of the clock-sync and latency run (default 60)")
    p.add_argument("--throughput-s", type=float, default=600.0, metavar="SECONDS",
                   help="emulated seconds of traffic the decoder chews through (default 600)")
    p.add_argument("--decoder-only", action="store_true", help="only the decoder throughput (no pty runs)")


def run(args: argparse.Namespace) -> int:
    """``edgemer bench bridge``: measure, print PASS/MISS per target, write with --json; 0."""
    from edgemer.benchmarks.result import make_result, now_utc, write_json

    settings = {"sync_s": args.sync_s, "throughput_s": args.throughput_s, "decoder_only": args.decoder_only,
                "link_bytes_per_s": LINK_BYTES_PER_S, "drift_ppm": 100.0, "unplug_s": 3.0}
    result = make_result("bridge", settings=settings, **measure(args.sync_s, args.throughput_s, args.decoder_only))
    result["targets"] = bridge_targets(result)
    result["created_utc"] = now_utc()
    if args.json is not None:
        print(f"results written to {write_json(result, args.json)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Deprecated spelling ``python3 -m edgemer.firmware_bridge.bench``: runs ``edgemer bench bridge``."""
    from edgemer.benchmarks.commands import deprecated_main

    return deprecated_main("python3 -m edgemer.firmware_bridge.bench", "bridge", argv)


if __name__ == "__main__":
    sys.exit(main())
