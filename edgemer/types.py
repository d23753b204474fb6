"""The words every module shares: StreamSpec, Chunk, Window, ModalityEstimate, Estimate.

Times are seconds on the pipeline clock (``time.monotonic()`` for live sources; a
scaled copy of it for replay and simulation, see :mod:`edgemer.clock`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from edgemer.errors import ConfigError

# Chunk flags (bit field).
FLAG_GAP = 1
"""Samples are missing before this chunk (device gap or dropped frame)."""
FLAG_CLIPPED = 2
"""At least one sample hit the sensor's range limit."""
FLAG_RESET = 4
"""The device restarted; sequence numbers and device clock began again."""


@dataclass(frozen=True)
class StreamSpec:
    """What one stream carries.

    Attributes
    ----------
    name: stream name, e.g. ``"eda"``.
    rate_hz: nominal sample rate in Hz.
    channels: number of channels (columns of ``Chunk.samples``).
    unit: physical unit of the samples, e.g. ``"uS"``, ``"degC"``, ``"g/64"``.
    media: True for raw audio or video, which privacy rules keep out of recordings and
        sinks unless the user asks explicitly.
    frames: True for a video stream: each sample is one image, ``Chunk.samples`` is
        ``[n_frames, height, width, channels]`` uint8 (``channels`` 3 = BGR, 1 = grey),
        frames are timestamped, not on a sample grid, and a window holds the newest
        frame (see :class:`edgemer.buffers.FrameBuffer`). Implies ``media``.
    """

    name: str
    rate_hz: float
    channels: int = 1
    unit: str = ""
    media: bool = False
    frames: bool = False

    def __post_init__(self) -> None:
        if self.frames and not self.media:
            raise ConfigError(f"StreamSpec.media must be True for the video stream '{self.name}' (frames=True)")
        if not self.name:
            raise ConfigError("StreamSpec.name must not be empty")
        if not (self.rate_hz > 0 and math.isfinite(self.rate_hz)):
            raise ConfigError(f"StreamSpec.rate_hz must be > 0 Hz, got {self.rate_hz!r} for stream '{self.name}'")
        if self.channels < 1:
            raise ConfigError(f"StreamSpec.channels must be >= 1, got {self.channels} for stream '{self.name}'")


@dataclass(frozen=True)
class Chunk:
    """A block of consecutive samples from one stream.

    Attributes
    ----------
    stream: stream name (matches a :class:`StreamSpec`).
    rate_hz: sample rate in Hz.
    t0: time of the first sample on the pipeline clock, seconds.
    samples: ``float32`` array ``[n_samples, n_channels]``; NaN marks a missing sample.
    seq: device sequence number, or -1 where the source has none.
    flags: bit field of ``FLAG_GAP``, ``FLAG_CLIPPED``, ``FLAG_RESET``.
    arrival: wall time (``time.monotonic()``) when the chunk reached the host, seconds.
    """

    stream: str
    rate_hz: float
    t0: float
    samples: np.ndarray
    seq: int = -1
    flags: int = 0
    arrival: float = 0.0

    @property
    def n(self) -> int:
        return int(self.samples.shape[0])

    @property
    def t_end(self) -> float:
        """Time just after the last sample, seconds."""
        return self.t0 + self.n / self.rate_hz


@dataclass(frozen=True)
class Window:
    """The aligned slice of the streams one model consumes over ``[t_end - length_s, t_end)``.

    Attributes
    ----------
    t_end: end of the window on the pipeline clock, seconds (exclusive).
    length_s: window length, seconds.
    streams: stream name -> ``float32`` array ``[round(length_s * rate_hz), channels]``;
        NaN where no sample arrived. A video stream (``StreamSpec.frames``) gives the
        newest frame in the window as uint8 ``[1, height, width, channels]`` instead
        (``[0, 0, 0, channels]`` when none arrived).
    coverage: stream name -> fraction of samples present, 0..1 (video: of frame slots).
    last_arrival: wall time when the newest sample in the window reached the host.
    """

    t_end: float
    length_s: float
    streams: Mapping[str, np.ndarray]
    coverage: Mapping[str, float]
    last_arrival: float = 0.0

    @property
    def min_coverage(self) -> float:
        return min(self.coverage.values()) if self.coverage else 0.0


@dataclass(frozen=True)
class ModalityEstimate:
    """One bundle's reading of one window, before fusion.

    ``probabilities`` maps class label -> probability (sums to 1). ``extras`` holds
    modality-specific outputs in physical units (physiology: ``eda_forecast_uS``,
    ``drive``, ``physics``).
    """

    modality: str
    bundle: str
    t_end: float
    probabilities: Mapping[str, float]
    stress_probability: float
    arousal: float | None = None
    valence: float | None = None
    confidence: float = 1.0
    inference_s: float = 0.0
    frontend_s: float = 0.0
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Estimate:
    """What the app receives, once per hop.

    Attributes
    ----------
    t: pipeline-clock time the estimate describes (end of the window), seconds.
    elapsed_s: stream seconds from the pipeline's start to ``t``.
    stress_probability: fused probability of stress, 0..1, or None if no modality was available.
    arousal, valence: fused dimensional estimates in [-1, 1] where a bundle provides them.
    probabilities: fused class label -> probability.
    confidence: 0..1; drops when modalities are missing, stale or partly covered.
    modalities: per-modality readings that contributed.
    available: modality -> whether it contributed to this estimate.
    contributions: modality -> fusion weight (sums to 1 over available modalities).
    latency_s: wall seconds from the arrival of the newest sample in the window to this estimate.
    processing_s: wall seconds spent cutting windows, front-ends, inference, fusion and sinks.
    inference_s: wall seconds spent inside the inference backends.
    frontend_s: wall seconds spent in front-ends (feature extraction, face detection), also
        for windows in which they found nothing to analyse (no face, no speech).
    detector_s: the part of ``frontend_s`` spent in face detectors (a model of its own, e.g.
        OpenCV's Haar cascade, run by the front-end rather than by a bundle's backend).
    reference: ground-truth condition from a simulated or replayed source's ``condition``
        stream (most frequent in the window), None for live data.
    sources: source name -> health counters of sources that report them (e.g. a serial
        link's CRC failures, gaps, drift), as of this estimate.
    calibrating: True while the pipeline's calibration phase records the wearer's baseline
        (the estimate is not yet personalised).
    absent: modality -> why it is missing from this estimate, for every modality that did
        not contribute: nothing to analyse (``"no face"``, ``"no speech"``), too little or
        stale data, a source that ended or failed, or ``"warming up"`` before its first window.
    engines: bundle name -> the engine choice it runs on, ``backend/precision/tN`` (e.g.
        ``litert/int8/t1``; see :mod:`edgemer.backends.choice`; the reasons are in
        ``Pipeline.stats()["engines"]``).
    """

    t: float
    elapsed_s: float
    stress_probability: float | None
    arousal: float | None
    valence: float | None
    probabilities: Mapping[str, float]
    confidence: float
    modalities: Mapping[str, ModalityEstimate]
    available: Mapping[str, bool]
    contributions: Mapping[str, float]
    latency_s: float
    processing_s: float
    inference_s: float
    frontend_s: float = 0.0
    detector_s: float = 0.0
    reference: str | None = None
    sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    calibrating: bool = False
    absent: Mapping[str, str] = field(default_factory=dict)
    engines: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (numpy values become lists and floats)."""
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
