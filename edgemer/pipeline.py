"""The runtime engine: sources -> buffers -> windows -> front-ends -> backends -> fusion -> sinks.

>>> from edgemer import Pipeline, PipelineConfig
>>> from edgemer.sources import SimulatedWearable
>>> with Pipeline([SimulatedWearable(speed=50, duration_s=120)], ["physio-demo"]) as pipe:
...     for estimate in pipe:
...         print(estimate.t, estimate.stress_probability)

Every source writes into a bounded ring buffer per stream from its own thread. One
worker thread cuts each bundle's windows on its own hop grid (pipeline start + window +
k hops, from the manifest) on the one pipeline clock, runs the bundles due at that time
(front-end and backend, once each), fuses the newest estimate of every modality, and
hands the :class:`~edgemer.types.Estimate` to the sinks and to the iterator: one estimate
per distinct window end.

Time comes from one clock (:mod:`edgemer.clock`), chosen from the sources' speed: the
wall clock at any finite speed (live sensors at 1), or, at speed ``inf`` (``--speed
max``), the :class:`~edgemer.clock.LockstepClock`, on which replayed and simulated
sources run exactly as fast as the worker consumes them: the same windows, nothing
dropped, whatever the machine's load.

Missing modalities never stop the output: a window with too little data, a flat line
(see :data:`FLAT_MIN_RATE_HZ`), data older than ``PipelineConfig.stale_data_s``,
nothing to analyse (no face, no speech), or whose source ended or failed makes the
modality unavailable, named with the reason in ``Estimate.absent``; it rejoins as soon as a window is good again. A source that raises
is logged and counted (``stats()["source_errors"]``) while the others keep running;
only when every source has failed is the first error re-raised to the caller, after the
estimates already made. An error in the worker stops the pipeline and is re-raised.
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
from edgemer.backends.choice import AUTO, BACKEND_CHOICES, PRECISION_CHOICES, EngineChoice, choose_engine
from edgemer.buffers import FrameBuffer, StreamBuffer
from edgemer.bundle import Bundle, load_bundle
from edgemer.calibration import Baseline, CalibrationConfig
from edgemer.clock import MAX_SPEED, Clock, clock_for
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

    backend: ``auto`` (default), ``onnxruntime`` or ``litert``. precision: ``auto`` (default),
    ``int8`` or ``fp32``. threads: inference threads per model, None = chosen with the engine.
    With ``auto`` each bundle runs on its fastest verified file x engine x threads measured on
    this device (:func:`edgemer.backends.choice.choose_engine`); pinning ``backend`` and
    ``precision`` runs exactly that file (threads default 1). cache_dir: where those
    measurements are kept (None: ``$EDGEMER_CACHE_DIR``, ``$XDG_CACHE_HOME/edgemer`` or
    ``~/.cache/edgemer``). providers: onnxruntime execution providers
    (``cpu``, ``cuda``, ``tensorrt``, with options such as ``tensorrt:fp16=1``); None = the
    best available here (TensorRT, then CUDA, then CPU; see
    :func:`edgemer.backends.onnxruntime_backend.choose_providers`); a requested provider that
    is missing falls back to CPU with a one-line warning. max_wait_s: stream seconds a window
    waits for late samples before it is cut with what arrived; on the wall clock at
    least ``min_wait_wall_s`` wall seconds, so that faster-than-real-time runs are not cut
    short by thread scheduling jitter (the lockstep clock has no jitter). buffer_s: extra
    seconds each ring buffer holds beyond the longest window that reads it (and beyond the
    wait for late samples). queue_size: estimates kept for a slow iterator before the
    oldest is dropped (and counted); on the lockstep clock a slow iterator holds the
    pipeline back instead. stale_data_s: a window whose
    newest sample of any stream is older than this (stream seconds before the window's
    end) counts as missing: the modality is named absent (``"stale: ..."``) instead of
    being estimated from old data; None disables the check. opencv_threads: with a face
    bundle, OpenCV's thread pool is capped at this many threads when the pipeline starts
    (process-wide, :func:`edgemer.frontends.face.limit_opencv_threads`: its idle threads
    spin after each small face crop and cost more CPU than the crops); None leaves OpenCV's
    setting alone.
    """

    backend: str = AUTO
    precision: str = AUTO
    threads: int | None = None
    providers: tuple[str, ...] | None = None
    fusion: FusionConfig = field(default_factory=FusionConfig)
    max_wait_s: float = 2.0
    min_wait_wall_s: float = 0.25
    buffer_s: float = 30.0
    queue_size: int = 1000
    stale_data_s: float | None = 10.0
    cache_dir: str | Path | None = None
    opencv_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_CHOICES:
            raise ConfigError(f"PipelineConfig.backend must be one of {', '.join(BACKEND_CHOICES)}, "
                              f"got {self.backend!r}")
        if self.precision not in PRECISION_CHOICES:
            raise ConfigError(f"PipelineConfig.precision must be one of {', '.join(PRECISION_CHOICES)}, "
                              f"got {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"PipelineConfig.threads must be >= 1 (or None: chosen), got {self.threads}")
        if self.max_wait_s < 0 or self.min_wait_wall_s < 0 or self.buffer_s < 0 or self.queue_size < 1:
            raise ConfigError("PipelineConfig.max_wait_s, min_wait_wall_s and buffer_s must be >= 0 "
                              "and queue_size >= 1")
        if self.stale_data_s is not None and not self.stale_data_s > 0:
            raise ConfigError(f"PipelineConfig.stale_data_s must be > 0 s or None, got {self.stale_data_s}")
        if self.opencv_threads is not None and self.opencv_threads < 1:
            raise ConfigError(f"PipelineConfig.opencv_threads must be >= 1 or None (leave OpenCV alone), "
                              f"got {self.opencv_threads}")


@dataclass(frozen=True)
class BundleSpec:
    """A bundle and how to run it; None fields fall back to the :class:`PipelineConfig`.

    bundle: folder, shipped name or loaded :class:`Bundle`. backend: ``auto``, ``onnxruntime``
    or ``litert``. precision: ``auto``, ``int8`` or ``fp32``. threads: inference threads.
    providers: onnxruntime execution providers (as :attr:`PipelineConfig.providers`).
    """

    bundle: str | Path | Bundle
    backend: str | None = None
    precision: str | None = None
    threads: int | None = None
    providers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.backend is not None and self.backend not in BACKEND_CHOICES:
            raise ConfigError(f"BundleSpec.backend must be one of {', '.join(BACKEND_CHOICES)}, got {self.backend!r}")
        if self.precision is not None and self.precision not in PRECISION_CHOICES:
            raise ConfigError(f"BundleSpec.precision must be one of {', '.join(PRECISION_CHOICES)}, "
                              f"got {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"BundleSpec.threads must be >= 1, got {self.threads}")


class ModelRunner:
    """One bundle with its front-end and backend session."""

    def __init__(self, spec: BundleSpec, config: PipelineConfig) -> None:
        bundle = spec.bundle if isinstance(spec.bundle, Bundle) else load_bundle(spec.bundle)
        self.bundle = bundle
        self.front_end: FrontEnd = create_front_end(bundle.manifest)
        providers = spec.providers if spec.providers is not None else config.providers
        self.choice: EngineChoice = choose_engine(
            bundle, spec.backend or config.backend, spec.precision or config.precision,
            spec.threads or config.threads, providers, cache_dir=config.cache_dir)
        self.session: Session = open_session(bundle, self.choice.backend, self.choice.precision,
                                             self.choice.threads, providers)
        self.skipped_windows = 0
        self.empty_windows = 0
        self.stale_windows = 0
        self.flat_windows = 0
        self.windows = 0
        self.last_levels: dict[str, float] | None = None
        self.last_frontend_s = 0.0
        self.last_detector_s = 0.0

    @property
    def modality(self) -> str:
        return self.front_end.modality

    def warm_up(self) -> None:
        """One inference on zeros, so that the backend's lazy initialisation (often tens of ms)
        happens before the sources start instead of delaying the first windows."""
        feeds = {s.name: np.zeros([max(1, d) for d in s.shape], dtype=s.dtype) for s in self.session.inputs}
        try:
            self.session.run(feeds)
        except Exception as exc:  # warm-up is an optimisation: a model that refuses zeros still runs on data
            log.debug("bundle '%s': warm-up inference failed (%s)", self.bundle.name, exc)

    def run(self, window: Window) -> ModalityEstimate:
        """Front-end, inference and interpretation of one window, timed separately.

        ``last_frontend_s`` / ``last_detector_s`` hold this call's front-end and face-detector
        wall seconds also when the front-end raises (e.g. no face), so no time goes uncounted.
        """
        t0 = time.perf_counter()
        try:
            feeds, info = self.front_end.prepare(window)
        finally:
            self.last_frontend_s = time.perf_counter() - t0
            self.last_detector_s = float(getattr(self.front_end, "last_detector_s", 0.0))
        self.last_levels = info.get("levels")
        t1 = time.perf_counter()
        outputs = self.session.run(feeds)
        t2 = time.perf_counter()
        est = self.front_end.interpret(outputs, window.t_end, self.bundle.name)
        self.windows += 1
        self.last_frontend_s = (t1 - t0) + (time.perf_counter() - t2)
        return dataclasses.replace(est, inference_s=t2 - t1, frontend_s=self.last_frontend_s)


class Pipeline:
    """Runs sources through bundles and yields fused :class:`Estimate` objects.

    Parameters
    ----------
    sources: started and stopped by the pipeline. Non-live sources must share one speed;
        at speed ``inf`` every source must be ``steppable`` (replayed or simulated) and the
        run goes on the :class:`~edgemer.clock.LockstepClock`.
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

    Notes
    -----
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
        self.lockstep = self.speed == MAX_SPEED
        if self.lockstep:
            paced = [s.name for s in self.sources if not getattr(s, "steppable", False)]
            if paced:
                raise ConfigError(f"source(s) {', '.join(paced)} cannot run at speed max (as fast as processed): "
                                  f"only replayed and simulated sources wait for the pipeline; give a finite speed")
        # Stream seconds a window waits for late data: on the wall clock at least min_wait_wall_s
        # of wall time (thread scheduling jitter), which grows with the replay speed.
        self._max_wait_s = (config.max_wait_s if self.lockstep
                            else max(config.max_wait_s, config.min_wait_wall_s * self.speed))
        specs = [b if isinstance(b, BundleSpec) else BundleSpec(b) for b in bundles]
        self.runners = [ModelRunner(spec, config) for spec in specs]
        self.engines = {r.bundle.name: r.choice.label for r in self.runners}
        """Bundle name -> the engine choice it runs on (``backend/precision/tN``), as in every Estimate."""
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
        self.clock: Clock | None = None
        self.dropped_estimates = 0
        self.late_windows = 0
        self.estimates = 0
        self._queue: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self._stop = threading.Event()
        self._data = threading.Condition()
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None
        self._wait_t = float("inf")                      # stream time the worker waits for (set under _data)
        self._hops = [0] * len(self.runners)            # windows cut so far, per runner
        self._absent: dict[str, str] = {}                # modality -> why its last window gave no estimate
        self._failed: dict[str, BaseException] = {}      # source name -> its error
        self._needed = sorted({spec.name for r in self.runners for spec in r.front_end.streams})
        self._silent: set[str] = set()                   # streams not waited for until their data catches up

    def _make_buffers(self) -> dict[str, StreamBuffer | FrameBuffer]:
        provided = {}
        self._stream_source: dict[str, Source] = {}
        self._keep_s: dict[str, float] = {}
        for src in self.sources:
            for spec in src.streams:
                if spec.name in provided:
                    raise ConfigError(f"stream '{spec.name}' is provided by two sources; rename one")
                provided[spec.name] = spec
                self._stream_source[spec.name] = src
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
        # Beyond its longest window, a ring holds buffer_s plus the time a window may wait for
        # late data (which grows with the replay speed), so that a worker running late by that
        # much still finds every sample.
        slack_s = self.config.buffer_s + self._max_wait_s
        buffers: dict[str, StreamBuffer | FrameBuffer] = {}
        for name, spec in provided.items():
            readers = [r.front_end.window_s for r in self.runners if any(s.name == name for s in r.front_end.streams)]
            # Samples older than the longest window that reads them are used up at each tick.
            self._keep_s[name] = max(readers, default=min(r.front_end.window_s for r in self.runners))
            if spec.frames:
                # Frames are large, so a live camera keeps only the newest (dropping when behind is
                # right for live video); a faster-than-real-time replay also keeps the frames of
                # the worker's scheduling jitter (min_wait_wall_s), which is `speed` times more stream time;
                # on the lockstep clock sources run at most the wait for late data ahead of the worker.
                jitter_s = (self.config.max_wait_s if self.lockstep
                            else self.config.min_wait_wall_s * self.speed if self.speed > 1 else 0.0)
                buffers[name] = FrameBuffer(spec, max(readers, default=1.0 / spec.rate_hz) + jitter_s)
            else:
                buffers[name] = StreamBuffer(spec, max(readers, default=longest) + slack_s)
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
        if self.config.opencv_threads is not None and any(r.modality == "face" for r in self.runners):
            from edgemer.frontends.face import limit_opencv_threads

            if limit_opencv_threads(self.config.opencv_threads):
                log.info("OpenCV capped at %d thread(s) for the face crops (PipelineConfig.opencv_threads)",
                         self.config.opencv_threads)
        for r in self.runners:
            r.warm_up()
        self.clock = clock_for(self.speed)
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

    def request_stop(self) -> None:
        """Ask the pipeline to stop without waiting (safe from a signal handler): the worker ends
        after the window it is on and iteration ends; leaving the ``with`` block (or :meth:`stop`)
        then stops the sources and closes the sinks."""
        self._stop.set()
        if self.clock is not None:
            self.clock.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop sources and worker, close sinks. Safe to call twice."""
        self._stop.set()
        if self.clock is not None:
            self.clock.close()
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
                # The worker's last item is _DONE; the timeout only notices a worker that ended with the
                # queue full, so it is long: every wake-up of an idle thread costs CPU.
                item = self._queue.get(timeout=0.5)
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
        """Counters: per stream (chunks, samples, dropped, NaN, rejected), per bundle (windows;
        skipped, empty, stale, flat windows), estimates, dropped estimates, window ends cut
        after waiting ``max_wait`` for late data (``late_windows``), source errors, and per
        bundle the engine choice and why (``engines``: :meth:`EngineChoice.to_dict`)."""
        return {
            "engines": {r.bundle.name: r.choice.to_dict() for r in self.runners},
            "streams": {n: vars(b.stats).copy() for n, b in self.buffers.items()},
            "bundles": {r.bundle.name: {"windows": r.windows, "skipped_windows": r.skipped_windows,
                                        "empty_windows": r.empty_windows, "stale_windows": r.stale_windows,
                                        "flat_windows": r.flat_windows}
                        for r in self.runners},
            "estimates": self.estimates,
            "dropped_estimates": self.dropped_estimates,
            "late_windows": self.late_windows,
            "source_errors": {name: f"{type(e).__name__}: {e}" for name, e in self._failed.items()},
        }

    # -- threads ---------------------------------------------------------------------------------
    def _emit(self, chunk: Chunk) -> None:
        buf = self.buffers.get(chunk.stream)
        if buf is None:
            return
        if self.recorder is not None:
            self.recorder.write(chunk)
        buf.push(chunk)
        if chunk.t_end >= self._wait_t:  # only data the worker waits for wakes it
            with self._data:
                self._data.notify_all()

    def _sources_done(self) -> bool:
        return all(s.finished for s in self.sources)

    def _check_sources(self) -> None:
        """Note (and log) sources that failed."""
        for s in self.sources:
            if s.error is not None and s.name not in self._failed:
                self._failed[s.name] = s.error
                others = [o.name for o in self.sources if o.error is None and not o.finished]
                if others:
                    log.error("source '%s' failed (%s); continuing with %s", s.name, s.error, ", ".join(others))

    def _due(self, i: int) -> float:
        """End of runner ``i``'s next window: pipeline start + window + k hops (its own hop)."""
        fe = self.runners[i].front_end
        return self.clock.start + fe.window_s + self._hops[i] * fe.hop_s

    def _data_end(self) -> float:
        """End of the newest sample of any stream a bundle reads (stream seconds)."""
        return max(self.buffers[n].latest_time() for n in self._needed)

    def _ready(self, t: float, due: list[int], max_wait: float) -> bool:
        """Whether every stream the due runners read has data up to ``t``. Not waited for:
        streams of sources that ended or failed, and streams found silent when an earlier
        window was cut late (an unplugged sensor) until they deliver again, so that an
        outage delays the other modalities once by ``max_wait``, not at every hop."""
        now = self.clock.now()
        for i in due:
            for spec in self.runners[i].front_end.streams:
                latest = self.buffers[spec.name].latest_time()
                if latest >= t or (spec.name in self._silent and now - latest < max_wait):
                    self._silent.discard(spec.name)  # delivering (again)
                if latest >= t:
                    continue
                if not (self._stream_source[spec.name].finished or spec.name in self._silent) or now < t:
                    return False  # waiting for data, or for the window's end time to come
        return True

    def _mark_silent(self, t: float, due: list[int]) -> None:
        """Streams that had not reached ``t`` when its window was cut late."""
        for i in due:
            for spec in self.runners[i].front_end.streams:
                if self.buffers[spec.name].latest_time() < t and not self._stream_source[spec.name].finished:
                    self._silent.add(spec.name)

    def _work(self) -> None:
        assert self.clock is not None
        max_wait = self._max_wait_s
        latest: dict[str, ModalityEstimate | None] = {}
        n = len(self.runners)
        try:
            while not self._stop.is_set():
                self._check_sources()
                done = self._sources_done()
                dues = [self._due(i) for i in range(n)]
                t = min(dues)
                due = [i for i in range(n) if dues[i] <= t + 1e-9]
                if done and t > self._data_end() + 1e-9:
                    break
                if self._ready(t, due, max_wait):
                    self._tick(t, due, latest)
                    continue
                if self.clock.now() >= t + max_wait:  # late data: cut with what arrived
                    self.late_windows += 1
                    self._mark_silent(t, due)
                    self._tick(t, due, latest)
                    continue
                with self._data:  # checked again under the lock, so that no wake-up is missed
                    self._wait_t = t
                    if not self._ready(t, due, max_wait):
                        self.clock.wait(self._data, t, t + max_wait)
                    self._wait_t = float("inf")
            self._check_sources()
            if not self._stop.is_set() and len(self._failed) == len(self.sources):
                # Every source failed: the windows their data still covered were estimated above.
                raise next(iter(self._failed.values()))
        except BaseException as exc:
            self._error = exc
            log.error("pipeline stopped: %s", exc)
        finally:
            try:
                self._queue.put_nowait(_DONE)
            except queue.Full:
                pass  # the iterator also ends when it sees the worker has finished

    def _missing_reason(self, r: ModelRunner, window: Window) -> str | None:
        """Why ``window`` cannot be used (too little data, stale data), or None when it can."""
        fe = r.front_end
        for name, cov in window.coverage.items():
            if cov >= fe.min_coverage:
                continue
            src = self._stream_source[name]
            if src.error is not None:
                return f"source '{src.name}' failed: {src.error}"
            if src.finished:
                return f"source '{src.name}' ended"
            if cov == 0:
                return f"no data on '{name}'"
            return f"'{name}' covers {cov:.0%} of the window (needs {fe.min_coverage:.0%})"
        for spec in fe.streams:
            if not spec.frames and spec.rate_hz >= FLAT_MIN_RATE_HZ and _is_flat(window.streams[spec.name]):
                return (f"flat line on '{spec.name}' for the whole {fe.window_s:g} s window "
                        f"(sensor off, muted or saturated?)")
        limit = self.config.stale_data_s
        if limit is not None:
            for spec in fe.streams:
                if spec.frames:
                    continue  # a frame window holds the newest frame inside it, never an older one
                age = _newest_sample_age_s(window.streams[spec.name], spec.rate_hz)
                if age > limit:
                    return f"stale: newest '{spec.name}' sample {age:.1f} s old (limit {limit:g} s)"
        return None

    def _mark_absent(self, modality: str, reason: str, t: float, expected: bool) -> None:
        if modality not in self._absent:
            (log.debug if expected else log.warning)("modality '%s' missing from t=%.1f s: %s", modality,
                                                    t - self.clock.start, reason)
        self._absent[modality] = reason

    def _tick(self, t: float, due: list[int], latest: dict[str, ModalityEstimate | None]) -> None:
        started = time.perf_counter()
        inference_s = frontend_s = detector_s = 0.0
        last_arrival = 0.0
        ran: list[ModelRunner] = []
        for i in due:
            self._hops[i] += 1
            r = self.runners[i]
            fe = r.front_end
            streams, coverage = {}, {}
            for spec in fe.streams:
                samples, cov, arr = self.buffers[spec.name].window(t, fe.window_s)
                streams[spec.name], coverage[spec.name] = samples, cov
                last_arrival = max(last_arrival, arr)
            window = Window(t_end=t, length_s=fe.window_s, streams=streams, coverage=coverage, last_arrival=last_arrival)
            reason = self._missing_reason(r, window)
            if reason is not None:
                if reason.startswith("stale"):
                    r.stale_windows += 1
                elif reason.startswith("flat"):
                    r.flat_windows += 1
                else:
                    r.skipped_windows += 1
                latest[r.modality] = None
                self._mark_absent(r.modality, reason, t, expected=False)
                continue
            try:
                est = r.run(window)
            except NothingDetectedError as exc:  # e.g. no face: expected, the modality is absent now
                r.empty_windows += 1
                latest[r.modality] = None
                self._mark_absent(r.modality, exc.reason, t, expected=True)
                continue
            except InputError as exc:
                r.skipped_windows += 1
                latest[r.modality] = None
                self._mark_absent(r.modality, f"bad input: {exc}", t, expected=False)
                continue
            finally:  # front-end time counts also when it found nothing to analyse
                frontend_s += r.last_frontend_s
                detector_s += r.last_detector_s
            if self._absent.pop(r.modality, None) is not None:
                log.info("modality '%s' rejoined at t=%.1f s", r.modality, t - self.clock.start)
            inference_s += est.inference_s
            ran.append(r)
            latest[r.modality] = est
        calibrating = self._calibrate(t, ran)
        fused = self.fusion.fuse(t, latest)
        absent = {}
        for m, ok in fused.available.items():
            if ok:
                continue
            if m in self._absent:
                absent[m] = self._absent[m]
            elif latest.get(m) is None:
                first = min(r.front_end.window_s for r in self.runners if r.modality == m)
                absent[m] = f"warming up (first {first:g} s window)"
            else:
                absent[m] = (f"stale: last estimate {t - latest[m].t_end:.1f} s old "  # type: ignore[union-attr]
                             f"(limit {self.config.fusion.stale_s:g} s)")
        now = time.monotonic()
        estimate = Estimate(
            t=t, elapsed_s=t - self.clock.start, stress_probability=fused.stress_probability, arousal=fused.arousal,
            valence=fused.valence, probabilities=fused.probabilities, confidence=fused.confidence,
            modalities={m: e for m, e in latest.items() if e is not None and fused.available.get(m)},
            available=fused.available, contributions=fused.contributions,
            latency_s=max(0.0, now - last_arrival) if last_arrival else 0.0,
            processing_s=0.0, inference_s=inference_s, frontend_s=frontend_s, detector_s=detector_s,
            reference=self._reference(t),
            calibrating=calibrating, absent=absent, engines=self.engines,
            sources={src.name: h for src in self.sources if (h := src.health())})
        for sink in self.sinks:
            sink.write(estimate)
        estimate = dataclasses.replace(estimate, processing_s=time.perf_counter() - started)
        self.estimates += 1
        for name, buf in self.buffers.items():
            buf.release_before(t - self._keep_s[name])
        while self.lockstep and not self._stop.is_set():  # as fast as consumed: wait for the iterator
            try:
                self._queue.put(estimate, timeout=0.1)
                return
            except queue.Full:
                continue
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


FLAT_MIN_RATE_HZ = 16.0
"""Streams at or above this rate (BVP, ACC, audio) whose window is exactly constant count as
missing ("flat line"): fast signals are never bit-identical for a whole window unless the
sensor is off, muted or saturated. Slow streams (EDA, TEMP at 4 Hz) can legitimately sit
on one value of the sensor's resolution, so they are not checked."""


def _is_flat(samples: np.ndarray) -> bool:
    """True when the finite rows of ``samples`` ``[n, channels]`` (at least 2) are all equal."""
    n = samples.shape[0]
    if n < 2:
        return False
    first, mid, last = samples[0], samples[n // 2], samples[-1]
    if np.isfinite(first).all() and np.isfinite(mid).all() and np.isfinite(last).all() and not (
            np.array_equal(first, mid) and np.array_equal(first, last)):
        return False  # the common case, decided without scanning the window
    finite = samples[np.isfinite(samples).all(axis=1)]
    return finite.shape[0] >= 2 and bool((finite.max(axis=0) == finite.min(axis=0)).all())


def _newest_sample_age_s(samples: np.ndarray, rate_hz: float) -> float:
    """Seconds from the newest finite sample of ``samples`` ``[n, channels]`` to the window's
    end (0 when the last slot holds one, inf when none does)."""
    if samples.shape[0] and np.isfinite(samples[-1, 0]):
        return 0.0  # the common case, without scanning the window
    valid = np.isfinite(samples[:, 0])
    if valid.size == 0 or not valid.any():
        return float("inf")
    return float(valid[::-1].argmax()) / rate_hz


__all__ = ["BundleSpec", "ModelRunner", "Pipeline", "PipelineConfig"]
