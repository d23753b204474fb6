"""Live camera source: OpenCV ``VideoCapture`` frames as the ``video`` stream.

Frames (``[H, W, 3]`` uint8 BGR) are read on the source's own thread at the camera's
rate and handed to the pipeline, which keeps only the newest few in memory and
analyses them at the face bundle's own rate (e.g. 5 frames/s), independent of the
camera's. Nothing is ever written to disk.

Counters (:meth:`CameraSource.health`, also in every estimate's ``sources``):
``frames`` read, ``dropped_frames`` (frames the camera lost, from gaps in the capture
times longer than 1.5 frame periods), ``read_failures`` and ``reopens``. A camera that
stops delivering (unplugged, taken by another program) is retried every
``reopen_interval_s`` without stopping the pipeline, so other modalities keep running.

Tests and unusual cameras inject ``capture_factory``: any callable ``index -> object``
with OpenCV's ``isOpened()``, ``read()``, ``set()``, ``get()`` and ``release()``.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from edgemer.clock import PipelineClock
from edgemer.errors import ConfigError, SourceError
from edgemer.sources import Emit, ThreadedSource
from edgemer.types import FLAG_GAP, Chunk, StreamSpec

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0


class VideoCaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the camera source uses."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, Any]: ...

    def set(self, prop: int, value: float) -> bool: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class CameraOptions:
    """Which camera and what it should deliver.

    index: OpenCV camera index (``/dev/video<index>`` on Linux).
    width, height: requested frame size, pixels (None: the camera's default).
    fps: requested camera frame rate, frames/s (None: the camera's default, taken as 30).
    stream: name of the stream the frames go to.
    max_read_failures: consecutive failed reads before the camera is closed and reopened.
    reopen_interval_s: seconds between reopen attempts while the camera is gone.
    """

    index: int = 0
    width: int | None = 640
    height: int | None = 480
    fps: float | None = None
    stream: str = "video"
    max_read_failures: int = 10
    reopen_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ConfigError(f"CameraOptions.index must be >= 0, got {self.index}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None and not 16 <= v <= 8192:
                raise ConfigError(f"CameraOptions.{name} must be 16..8192 px or None, got {v}")
        if self.fps is not None and not 0.5 <= self.fps <= 480:
            raise ConfigError(f"CameraOptions.fps must be 0.5..480 frames/s or None, got {self.fps}")
        if self.max_read_failures < 1:
            raise ConfigError(f"CameraOptions.max_read_failures must be >= 1, got {self.max_read_failures}")
        if self.reopen_interval_s <= 0:
            raise ConfigError(f"CameraOptions.reopen_interval_s must be > 0 s, got {self.reopen_interval_s}")

    @classmethod
    def from_spec(cls, text: str) -> "CameraOptions":
        """Parse the part after ``camera``: ``""``, ``":1"``, ``":0:1280x720"`` or ``":0:1280x720@30"``."""
        parts = [p for p in text.split(":") if p] if text else []
        if len(parts) > 2:
            raise ConfigError(f"camera spec 'camera{text}': use camera[:INDEX[:WIDTHxHEIGHT[@FPS]]]")
        kw: dict[str, Any] = {}
        try:
            if parts:
                kw["index"] = int(parts[0])
            if len(parts) == 2:
                size, _, fps = parts[1].partition("@")
                if size:
                    w, _, h = size.lower().partition("x")
                    kw["width"], kw["height"] = int(w), int(h)
                if fps:
                    kw["fps"] = float(fps)
        except ValueError:
            raise ConfigError(f"camera spec 'camera{text}': use camera[:INDEX[:WIDTHxHEIGHT[@FPS]]], "
                              f"e.g. camera:0:1280x720@30") from None
        return cls(**kw)


def _opencv_capture(index: int) -> VideoCaptureLike:
    from edgemer.frontends.face_detector import load_cv2

    cv2 = load_cv2("The camera source")
    return cv2.VideoCapture(index)


class CameraSource(ThreadedSource):
    """Frames from a camera as a live ``video`` stream (``[1, H, W, 3]`` uint8 BGR chunks).

    Parameters
    ----------
    options: camera index, frame size and rate (see :class:`CameraOptions`).
    capture_factory: ``index -> VideoCapture``-like object; default ``cv2.VideoCapture``.
    duration_s: stop after this many seconds (None: until stopped).

    Notes
    -----
    The camera opens in :meth:`start` (a missing or busy camera raises
    :class:`~edgemer.errors.SourceError` there) and is released in :meth:`stop`; use
    it as a context manager or through a :class:`~edgemer.pipeline.Pipeline`.
    """

    live = True

    def __init__(self, options: CameraOptions = CameraOptions(),
                 capture_factory: Callable[[int], VideoCaptureLike] | None = None,
                 duration_s: float | None = None) -> None:
        super().__init__(speed=1.0)
        if duration_s is not None and duration_s <= 0:
            raise ConfigError(f"CameraSource.duration_s must be > 0 s or None, got {duration_s}")
        self.options = options
        self.name = f"camera:{options.index}"
        self.duration_s = duration_s
        self._factory = capture_factory or _opencv_capture
        self.streams = (StreamSpec(options.stream, float(options.fps or DEFAULT_FPS), channels=3, unit="bgr8",
                                   media=True, frames=True),)
        self._cap: VideoCaptureLike | None = None
        self._counters = {"frames": 0, "dropped_frames": 0, "read_failures": 0, "reopens": 0, "bad_frames": 0}
        self._lock = threading.Lock()
        self.frame_size: tuple[int, int] | None = None
        self.camera_fps: float | None = None

    def health(self) -> dict:
        with self._lock:
            out: dict[str, Any] = dict(self._counters)
        if self.frame_size is not None:
            out["frame_size"] = list(self.frame_size)
        if self.camera_fps is not None:
            out["camera_fps"] = round(self.camera_fps, 2)
        return out

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counters[key] += n

    def _open(self) -> VideoCaptureLike:
        o = self.options
        try:
            cap = self._factory(o.index)
        except SourceError:
            raise
        except Exception as exc:  # OpenCV raises cv2.error for bad back-ends
            raise SourceError(f"camera {o.index}: cannot open it ({exc})") from exc
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            raise SourceError(
                f"camera {o.index}: cannot open it: no such camera, or another program is using it. "
                f"Check that /dev/video{o.index} exists (ls /dev/video*), close other camera programs, "
                f"or pick another index with --source camera:INDEX")
        props = _capture_props()
        if o.width is not None and o.height is not None:
            cap.set(props["width"], float(o.width))
            cap.set(props["height"], float(o.height))
        if o.fps is not None:
            cap.set(props["fps"], float(o.fps))
        reported = float(cap.get(props["fps"]) or 0.0)
        self.camera_fps = reported if 0.5 <= reported <= 480 else float(o.fps or DEFAULT_FPS)
        return cap

    def start(self, clock: PipelineClock, emit: Emit) -> None:
        """Open the camera (raising :class:`SourceError` if it is missing or busy), then read on a thread."""
        cap = self._open()
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            raise SourceError(f"camera {self.options.index}: opened, but it delivers no frames (busy in another "
                              f"program, or not a video capture device); close other camera programs or pick "
                              f"another index")
        self._cap = cap
        self._first = frame
        super().start(clock, emit)

    def stop(self, timeout_s: float = 5.0) -> None:
        super().stop(timeout_s)
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _frame_ok(self, frame: Any) -> np.ndarray | None:
        arr = np.asarray(frame)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
            return None
        if arr.ndim == 2 or arr.shape[2] == 1:  # a grey camera: repeat into BGR, the stream's layout
            arr = np.repeat(arr.reshape(arr.shape[0], arr.shape[1], 1), 3, axis=2)
        elif arr.shape[2] == 4:
            arr = arr[:, :, :3]
        elif arr.shape[2] != 3:
            return None
        return np.ascontiguousarray(arr)

    def _run(self, clock: PipelineClock, emit: Emit, stop: threading.Event) -> None:
        spec = self.streams[0]
        frame = self._first
        self._first = None
        seq = 0
        last_t: float | None = None
        failures = 0
        t_stop = None if self.duration_s is None else clock.now() + self.duration_s
        while not stop.is_set():
            if t_stop is not None and clock.now() >= t_stop:
                return
            if frame is None:
                cap = self._cap
                ok, frame = cap.read() if cap is not None else (False, None)
                if not ok or frame is None:
                    frame = None
                    failures += 1
                    self._count("read_failures")
                    if failures >= self.options.max_read_failures:
                        self._reopen(stop)
                        failures = 0
                        last_t = None
                    else:
                        stop.wait(0.01)
                    continue
            failures = 0
            t = clock.now()
            arr = self._frame_ok(frame)
            frame = None
            if arr is None:
                self._count("bad_frames")
                continue
            flags = 0
            if last_t is not None and self.camera_fps:
                period = 1.0 / self.camera_fps
                missed = int(round((t - last_t) / period)) - 1
                if (t - last_t) > 1.5 * period and missed > 0:
                    self._count("dropped_frames", missed)
                    flags |= FLAG_GAP
            last_t = t
            self.frame_size = (arr.shape[1], arr.shape[0])
            self._count("frames")
            emit(Chunk(spec.name, spec.rate_hz, t, arr[None], seq=seq, flags=flags, arrival=time.monotonic()))
            seq += 1

    def _reopen(self, stop: threading.Event) -> None:
        """Close the camera and try to open it again every ``reopen_interval_s`` until it works or we stop."""
        log.warning("camera %d: %d reads failed in a row; reopening it", self.options.index,
                    self.options.max_read_failures)
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        while not stop.is_set():
            try:
                self._cap = self._open()
                self._count("reopens")
                return
            except SourceError as exc:
                log.warning("%s; retrying in %.1f s", exc, self.options.reopen_interval_s)
                stop.wait(self.options.reopen_interval_s)


def _capture_props() -> dict[str, int]:
    """OpenCV's property ids (``cv2.CAP_PROP_*``), fixed numbers so tests need no OpenCV."""
    return {"width": 3, "height": 4, "fps": 5}
