"""The runtime engine: sources -> buffers -> windows -> front-ends -> backends -> fusion -> sinks.

>>> from edgemer import Pipeline, PipelineConfig
>>> from edgemer.sources import SimulatedWearable
>>> with Pipeline([SimulatedWearable(speed=50, duration_s=120)], ["physio-demo"]) as pipe:
...     for estimate in pipe:
...         print(estimate.t, estimate.stress_probability)

Every source writes into a bounded ring buffer per stream from its own thread. One
worker thread cuts windows every hop on the pipeline clock, runs each bundle's
front-end and backend once, fuses, and hands the :class:`~edgemer.types.Estimate` to
the sinks and to the iterator. An error in any thread stops the pipeline and is
re-raised to the caller.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edgemer.backends import Session, open_session
from edgemer.buffers import FrameBuffer, StreamBuffer
from edgemer.bundle import Bundle, load_bundle
from edgemer.calibration import Baseline, CalibrationConfig
from edgemer.clock import PipelineClock
from edgemer.errors import ConfigError, InputError, NothingDetectedError, SampleRateError
from edgemer.frontends import FrontEnd, create_front_end
from edgemer.fusion import FusionConfig, LateFusion
from edgemer.simulate import WESAD_CONDITIONS
from edgemer.sinks import CallbackSink, Sink
from edgemer.sources import Source
from edgemer.types import Chunk, Estimate, ModalityEstimate, Window

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(frozen=True)
class PipelineConfig:
    """How bundles run and estimates are made.

    backend: ``onnxruntime`` or ``litert``. precision: ``int8`` or ``fp32``.
    threads: inference threads per model. providers: onnxruntime execution providers
    (``cpu``, ``cuda``, ``tensorrt``); None = CPU. max_wait_s: stream seconds a window
    waits for late samples before it is cut with what arrived; at least
    ``min_wait_wall_s`` wall seconds, so that faster-than-real-time runs are not cut
    short by thread scheduling jitter. buffer_s: extra seconds
    each ring buffer holds beyond the longest window. queue_size: estimates kept for a
    slow iterator before the oldest is dropped (and counted).
    """

    backend: str = "onnxruntime"
    precision: str = "int8"
    threads: int = 1
    providers: tuple[str, ...] | None = None
    fusion: FusionConfig = field(default_factory=FusionConfig)
    max_wait_s: float = 2.0
    min_wait_wall_s: float = 0.25
    buffer_s: float = 30.0
    queue_size: int = 1000

    def __post_init__(self) -> None:
        if self.backend not in ("onnxruntime", "litert"):
            raise ConfigError(f"PipelineConfig.backend must be 'onnxruntime' or 'litert', got {self.backend!r}")
        if self.precision not in ("int8", "fp32"):
            raise ConfigError(f"PipelineConfig.precision must be 'int8' or 'fp32', got {self.precision!r}")
        if self.threads < 1:
            raise ConfigError(f"PipelineConfig.threads must be >= 1, got {self.threads}")
        if self.max_wait_s < 0 or self.min_wait_wall_s < 0 or self.buffer_s < 0 or self.queue_size < 1:
            raise ConfigError("PipelineConfig.max_wait_s, min_wait_wall_s and buffer_s must be >= 0 "
                              "and queue_size >= 1")


@dataclass(frozen=True)
class BundleSpec:
    """A bundle and how to run it; None fields fall back to the :class:`PipelineConfig`.

    bundle: folder, shipped name or loaded :class:`Bundle`. backend: ``onnxruntime`` or
    ``litert``. precision: ``int8`` or ``fp32``. threads: inference threads.
    providers: onnxruntime execution providers.
    """

    bundle: str | Path | Bundle
    backend: str | None = None
    precision: str | None = None
    threads: int | None = None
    providers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.backend is not None and self.backend not in ("onnxruntime", "litert"):
            raise ConfigError(f"BundleSpec.backend must be 'onnxruntime' or 'litert', got {self.backend!r}")
        if self.precision is not None and self.precision not in ("int8", "fp32"):
            raise ConfigError(f"BundleSpec.precision must be 'int8' or 'fp32', got {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"BundleSpec.threads must be >= 1, got {self.threads}")


class ModelRunner:
    """One bundle with its front-end and backend session."""

    def __init__(self, spec: BundleSpec, config: PipelineConfig) -> None:
        bundle = spec.bundle if isinstance(spec.bundle, Bundle) else load_bundle(spec.bundle)
        self.bundle = bundle
        self.front_end: FrontEnd = create_front_end(bundle.manifest)
        self.session: Session = open_session(
            bundle, spec.backend or config.backend, spec.precision or config.precision,
            spec.threads or config.threads, spec.providers if spec.providers is not None else config.providers)
        self.skipped_windows = 0
        self.empty_windows = 0
        self.windows = 0
        self.last_levels: dict[str, float] | None = None

    @property
    def modality(self) -> str:
        return self.front_end.modality

    def run(self, window: Window) -> ModalityEstimate:
        """Front-end, inference and interpretation of one window, timed separately."""
        t0 = time.perf_counter()
        feeds, info = self.front_end.prepare(window)
        self.last_levels = info.get("levels")
        t1 = time.perf_counter()
        outputs = self.session.run(feeds)
        t2 = time.perf_counter()
        est = self.front_end.interpret(outputs, window.t_end, self.bundle.name)
        self.windows += 1
        return dataclasses.replace(est, inference_s=t2 - t1, frontend_s=(t1 - t0) + (time.perf_counter() - t2))


class Pipeline:
    """Runs sources through bundles and yields fused :class:`Estimate` objects.

    Parameters
    ----------
    sources: started and stopped by the pipeline. Non-live sources must share one speed.
    bundles: bundle folders, shipped bundle names (``"physio-demo"``), loaded :class:`Bundle`
        objects, or :class:`BundleSpec` objects to run one bundle with its own backend/threads.
    config: backend, precision, threads, fusion.
    sinks: objects with ``write(estimate)`` / ``close()``; closed when the pipeline stops.
    callback: shorthand for a :class:`~edgemer.sinks.CallbackSink`.
    record: folder to record every raw chunk into (see :mod:`edgemer.recorder`);
        replay it with ``RecordingReplay`` or ``--source replay:FOLDER``.
    record_media: media streams (raw audio/video) to record too; none by default.
    calibration: a resting phase at the start that records the wearer's baseline, or a
        saved baseline to load (see :mod:`edgemer.calibration`); None: no personalisation.

    Use as a context manager; iterate to receive estimates, or rely on sinks and call
    :meth:`wait`. Iteration ends when every source has finished.
    """

    def __init__(self, sources: Sequence[Source], bundles: Sequence[str | Path | Bundle | BundleSpec],
                 config: PipelineConfig = PipelineConfig(), sinks: Sequence[Sink] = (),
                 callback: Callable[[Estimate], None] | None = None, record: str | Path | None = None,
                 record_media: Sequence[str] = (), calibration: CalibrationConfig | None = None) -> None:
        if not sources:
            raise ConfigError("Pipeline needs at least one source")
        if not bundles:
            raise ConfigError("Pipeline needs at least one bundle")
        self.sources = list(sources)
        self.config = config
        self.sinks: list[Sink] = list(sinks) + ([CallbackSink(callback)] if callback else [])
        speeds = {s.speed for s in self.sources}
        if len(speeds) > 1:
            raise ConfigError(f"all sources must play at one speed, got {sorted(speeds)}")
        self.speed = speeds.pop()
        if self.speed != 1.0 and any(s.live for s in self.sources):
            raise ConfigError("a live source cannot run faster than real time; use speed 1")
        specs = [b if isinstance(b, BundleSpec) else BundleSpec(b) for b in bundles]
        self.runners = [ModelRunner(spec, config) for spec in specs]
        self.buffers = self._make_buffers()
        self.recorder = None
        if record is not None:
            from edgemer.recorder import Recorder

            self.recorder = Recorder(record, [spec for src in self.sources for spec in src.streams], record_media)
        self.hop_s = min(r.front_end.hop_s for r in self.runners)
        self.longest_window_s = max(r.front_end.window_s for r in self.runners)
        self.fusion = LateFusion(tuple(dict.fromkeys(r.modality for r in self.runners)), config.fusion)
        self.calibration = calibration
        self.baseline: Baseline | None = None
        self._calibration_rows: dict[str, list] | None = None
        if calibration is not None and calibration.load_from is not None:
            self._use_baseline(Baseline.load(calibration.load_from))
        elif calibration is not None:
            self._calibration_rows = {r.modality: [] for r in self.runners}
        self.clock: PipelineClock | None = None
        self.dropped_estimates = 0
        self.estimates = 0
        self._queue: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self._stop = threading.Event()
        self._data = threading.Condition()
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None

    def _make_buffers(self) -> dict[str, StreamBuffer | FrameBuffer]:
        provided = {}
        for src in self.sources:
            for spec in src.streams:
                if spec.name in provided:
                    raise ConfigError(f"stream '{spec.name}' is provided by two sources; rename one")
                provided[spec.name] = spec
        longest = max(r.front_end.window_s for r in self.runners)
        for r in self.runners:
            for need in r.front_end.streams:
                have = provided.get(need.name)
                if have is None:
                    raise ConfigError(f"bundle '{r.bundle.name}' needs stream '{need.name}' ({need.rate_hz} Hz), "
                                      f"which no source provides (sources give: {sorted(provided)})")
                if have.frames != need.frames:
                    raise ConfigError(f"stream '{need.name}': bundle '{r.bundle.name}' needs "
                                      f"{'video frames' if need.frames else 'samples'}, the source gives "
                                      f"{'video frames' if have.frames else 'samples'}")
                if have.frames:  # frames are sampled by time: any camera rate serves any analysis rate
                    if have.channels != need.channels:
                        raise ConfigError(f"stream '{need.name}': the source gives {have.channels}-channel frames, "
                                          f"bundle '{r.bundle.name}' needs {need.channels} (3 = BGR colour, 1 = grey)")
                elif have.rate_hz != need.rate_hz or have.channels != need.channels:
                    raise SampleRateError(
                        f"stream '{need.name}': the source gives {have.channels} channel(s) at {have.rate_hz} Hz, "
                        f"bundle '{r.bundle.name}' was trained on {need.channels} at {need.rate_hz} Hz; "
                        f"resample the source or export a bundle for this rate")
        buffers: dict[str, StreamBuffer | FrameBuffer] = {}
        for name, spec in provided.items():
            if spec.frames:
                readers = [r.front_end.window_s for r in self.runners if any(s.name == name for s in r.front_end.streams)]
                buffers[name] = FrameBuffer(spec, max(readers, default=1.0 / spec.rate_hz))
            else:
                buffers[name] = StreamBuffer(spec, longest + self.config.buffer_s)
        return buffers

    def _use_baseline(self, baseline: Baseline) -> None:
        self.baseline = baseline
        for r in self.runners:
            apply = getattr(r.front_end, "apply_baseline", None)
            if apply is not None and r.modality in baseline.levels:
                apply(baseline.levels[r.modality])

    def _calibrate(self, t: float, runs: list[ModelRunner]) -> bool:
        """Collect resting levels while the calibration phase lasts; True while it does."""
        if self._calibration_rows is None:
            return False
        assert self.calibration is not None and self.clock is not None
        for r in runs:
            if r.last_levels is not None:
                self._calibration_rows[r.modality].append(r.last_levels)
        if t - self.clock.start < max(self.calibration.duration_s, self.longest_window_s) - 1e-9:
            return True
        baseline = Baseline.from_windows(self.calibration.user, self._calibration_rows, self.calibration.duration_s)
        self._calibration_rows = None
        self._use_baseline(baseline)
        if self.calibration.save_to is not None:
            baseline.save(self.calibration.save_to)
        log.info("calibration done for '%s' from %d windows: %s", baseline.user, baseline.windows, baseline.levels)
        return True

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> "Pipeline":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()
        if exc_type is None and self._error is not None:
            raise self._error

    def start(self) -> None:
        if self._worker is not None:
            raise ConfigError("this Pipeline was already started; create a new one")
        self.clock = PipelineClock(self.speed)
        if self.recorder is not None:
            self.recorder.start(self.clock)
        self._worker = threading.Thread(target=self._work, name="edgemer-pipeline", daemon=True)
        try:
            for src in self.sources:
                src.start(self.clock, self._emit)
        except BaseException:
            self.stop()
            raise
        self._worker.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop sources and worker, close sinks. Safe to call twice."""
        self._stop.set()
        for src in self.sources:
            src.stop()
        with self._data:
            self._data.notify_all()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout_s)
        if self.recorder is not None:
            self.recorder.close()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # a sink failing to close must not hide the run's result
                log.error("closing sink %r failed: %s", sink, exc)
        self.sinks = []

    def wait(self) -> None:
        """Block until every source has finished and all estimates are out (or stop() is called)."""
        for _ in self:
            pass

    def __iter__(self) -> Iterator[Estimate]:
        if self._worker is None:
            raise ConfigError("start the pipeline first: use 'with Pipeline(...) as pipe: for e in pipe: ...'")
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._worker is not None and not self._worker.is_alive():
                    if self._queue.empty():
                        break
                continue
            if item is _DONE:
                break
            yield item
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def stats(self) -> dict[str, Any]:
        """Counters: per stream (chunks, samples, dropped, NaN, rejected), per bundle, estimates."""
        return {
            "streams": {n: vars(b.stats).copy() for n, b in self.buffers.items()},
            "bundles": {r.bundle.name: {"windows": r.windows, "skipped_windows": r.skipped_windows,
                                        "empty_windows": r.empty_windows}
                        for r in self.runners},
            "estimates": self.estimates,
            "dropped_estimates": self.dropped_estimates,
        }

    # -- threads -----------------------------------------------------------------------------------
    def _emit(self, chunk: Chunk) -> None:
        buf = self.buffers.get(chunk.stream)
        if buf is None:
            return
        if self.recorder is not None:
            self.recorder.write(chunk)
        buf.push(chunk)
        with self._data:
            self._data.notify_all()

    def _sources_done(self) -> bool:
        return all(s.finished for s in self.sources)

    def _source_error(self) -> BaseException | None:
        for s in self.sources:
            if s.error is not None:
                return s.error
        return None

    def _needed_latest(self) -> float:
        names = {spec.name for r in self.runners for spec in r.front_end.streams}
        return min(self.buffers[n].latest_time() for n in names)

    def _work(self) -> None:
        assert self.clock is not None
        t_next = self.clock.start + min(r.front_end.window_s for r in self.runners)
        latest: dict[str, ModalityEstimate | None] = {}
        max_wait = max(self.config.max_wait_s, self.config.min_wait_wall_s * self.clock.speed)
        try:
            while not self._stop.is_set():
                err = self._source_error()
                if err is not None:
                    raise err
                done = self._sources_done()
                if self._needed_latest() >= t_next:
                    self._tick(t_next, latest)
                    t_next += self.hop_s
                elif done:
                    break
                elif self.clock.now() >= t_next + max_wait:
                    self._tick(t_next, latest)  # late or missing data: cut with what arrived
                    t_next += self.hop_s
                else:
                    with self._data:
                        self._data.wait(timeout=min(0.05, self.clock.wall_seconds(max_wait)))
        except BaseException as exc:
            self._error = exc
            log.error("pipeline stopped: %s", exc)
        finally:
            try:
                self._queue.put_nowait(_DONE)
            except queue.Full:
                pass  # the iterator also ends when it sees the worker has finished

    def _tick(self, t: float, latest: dict[str, ModalityEstimate | None]) -> None:
        started = time.perf_counter()
        inference_s = frontend_s = 0.0
        last_arrival = 0.0
        ran: list[ModelRunner] = []
        absent: dict[str, str] = {}
        for r in self.runners:
            fe = r.front_end
            if (t - self.clock.start) < fe.window_s - 1e-9 or not _on_hop(t - self.clock.start - fe.window_s, fe.hop_s):
                continue
            streams, coverage = {}, {}
            for spec in fe.streams:
                samples, cov, arr = self.buffers[spec.name].window(t, fe.window_s)
                streams[spec.name], coverage[spec.name] = samples, cov
                last_arrival = max(last_arrival, arr)
            window = Window(t_end=t, length_s=fe.window_s, streams=streams, coverage=coverage, last_arrival=last_arrival)
            if window.min_coverage < fe.min_coverage:
                r.skipped_windows += 1
                log.warning("bundle '%s': window ending at t=%.1f s skipped, coverage %s below %.0f %%",
                            r.bundle.name, t - self.clock.start,
                            {k: round(v, 2) for k, v in coverage.items()}, fe.min_coverage * 100)
                continue
            try:
                est = r.run(window)
            except NothingDetectedError as exc:  # e.g. no face: expected, the modality is absent now
                r.empty_windows += 1
                latest[r.modality] = None
                absent[r.modality] = exc.reason
                log.debug("bundle '%s': window at t=%.1f s: %s", r.bundle.name, t - self.clock.start, exc)
                continue
            except InputError as exc:
                r.skipped_windows += 1
                log.warning("bundle '%s': window at t=%.1f s skipped: %s", r.bundle.name, t - self.clock.start, exc)
                continue
            inference_s += est.inference_s
            frontend_s += est.frontend_s
            ran.append(r)
            latest[r.modality] = est
        calibrating = self._calibrate(t, ran)
        fused = self.fusion.fuse(t, latest)
        now = time.monotonic()
        estimate = Estimate(
            t=t, elapsed_s=t - self.clock.start, stress_probability=fused.stress_probability, arousal=fused.arousal, valence=fused.valence,
            probabilities=fused.probabilities, confidence=fused.confidence,
            modalities={m: e for m, e in latest.items() if e is not None and fused.available.get(m)},
            available=fused.available, contributions=fused.contributions,
            latency_s=max(0.0, now - last_arrival) if last_arrival else 0.0,
            processing_s=0.0, inference_s=inference_s, frontend_s=frontend_s, reference=self._reference(t), calibrating=calibrating,
            absent=absent,
            sources={src.name: h for src in self.sources if (h := src.health())})
        for sink in self.sinks:
            sink.write(estimate)
        estimate = dataclasses.replace(estimate, processing_s=time.perf_counter() - started)
        self.estimates += 1
        for buf in self.buffers.values():
            buf.release_before(t - self.longest_window_s)
        try:
            self._queue.put_nowait(estimate)
        except queue.Full:
            self._queue.get_nowait()
            self._queue.put_nowait(estimate)
            self.dropped_estimates += 1

    def _reference(self, t: float) -> str | None:
        buf = self.buffers.get("condition")
        if buf is None:
            return None
        samples, cov, _ = buf.window(t, min(r.front_end.window_s for r in self.runners))
        codes = samples[np.isfinite(samples[:, 0]), 0].astype(int)
        if codes.size == 0:
            return None
        code = int(np.bincount(codes).argmax())
        return WESAD_CONDITIONS.get(code, f"code-{code}")


def _on_hop(offset_s: float, hop_s: float) -> bool:
    k = offset_s / hop_s
    return abs(k - round(k)) < 1e-6


__all__ = ["BundleSpec", "ModelRunner", "Pipeline", "PipelineConfig"]
