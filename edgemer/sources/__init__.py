"""Sensor sources: each runs its own reader thread and emits Chunks.

A source declares its streams (:class:`~edgemer.types.StreamSpec`), whether it is
``live`` (bound to real time), the ``speed`` at which it plays and whether it is
``steppable`` (paces itself only through the clock, so that it can run on the
:class:`~edgemer.clock.LockstepClock` at speed ``inf``: as fast as the pipeline consumes),
and is a context manager. The pipeline starts it with the shared clock and a
non-blocking ``emit``.

Shipped sources: :class:`SimulatedWearable` (``simulated``), :class:`WesadReplay`
(``replay:DIR``) and :class:`~edgemer.sources.serial_wearable.SerialWearable`
(``serial:PORT``, imported on use). To add one: a new module with a :class:`ThreadedSource` subclass
and one branch in :func:`source_from_spec`.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Protocol

from edgemer.clock import Clock
from edgemer.errors import ConfigError, DatasetError, SourceError
from edgemer.types import Chunk, StreamSpec

log = logging.getLogger(__name__)

Emit = Callable[[Chunk], None]


class Source(Protocol):
    name: str
    streams: tuple[StreamSpec, ...]
    live: bool
    speed: float
    steppable: bool

    def start(self, clock: Clock, emit: Emit) -> None: ...

    def stop(self) -> None: ...

    @property
    def finished(self) -> bool:
        """True once a finite source has emitted everything (or failed)."""
        ...

    @property
    def error(self) -> BaseException | None: ...

    def health(self) -> dict:
        """Counters describing the link (empty when the source has none to report)."""
        ...


class ThreadedSource:
    """Base class: runs :meth:`_run` in a daemon thread between ``start`` and ``stop``.

    Subclasses implement ``_run(clock, emit, stop_event)``, which returns when the data
    ends or ``stop_event`` is set. An exception in the thread is kept in ``error``
    (and logged) instead of being lost; the pipeline re-raises it.

    ``steppable``: set True in a subclass whose ``_run`` waits for stream time only
    through ``clock.sleep_until`` (replays, simulators); the thread is then attached to
    the clock, so that a :class:`~edgemer.clock.LockstepClock` waits for it.
    """

    name = "source"
    streams: tuple[StreamSpec, ...] = ()
    live = False
    steppable = False

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ConfigError(f"{type(self).__name__}.speed must be > 0 (inf: as fast as processed), got {speed!r}")
        self.speed = float(speed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.error: BaseException | None = None

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def health(self) -> dict:
        """Link counters; sources with a physical link override this."""
        return {}

    def start(self, clock: Clock, emit: Emit) -> None:
        if self._thread is not None:
            raise SourceError(f"source '{self.name}' was already started; create a new one")
        stepped = self.steppable
        if stepped:
            clock.attach()

        def body() -> None:
            try:
                self._run(clock, emit, self._stop)
            except BaseException as exc:  # kept and re-raised by the pipeline
                self.error = exc
                log.error("source '%s' stopped: %s", self.name, exc)
            finally:
                self._done.set()
                if stepped:
                    clock.detach()

        self._thread = threading.Thread(target=body, name=f"edgemer-source-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self, clock: Clock, emit: Emit, stop: threading.Event) -> None:  # pragma: no cover
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def shipped_example(name: str) -> Path | None:
    """The replay file or folder shipped as ``edgemer/data/NAME`` (``physio-example``,
    ``face-example``, ``speech-example``), or None when ``name`` is a local path or no such example."""
    if not name or "/" in name or "\\" in name or Path(name).exists():
        return None
    data = Path(__file__).resolve().parent.parent / "data"
    for candidate in (data / name, data / f"{name}.wav"):
        if candidate.exists():
            return candidate
    return None


def is_continuous_video(source: Source) -> bool:
    """Whether ``source`` plays one continuous scene: a camera or a video file (not a folder of
    images or one image, whose frames are unrelated). Face bundles follow one face through such
    frames by default (``face_selection = "tracked"``)."""
    from edgemer.sources.camera import CameraSource
    from edgemer.sources.video_replay import VideoReplay

    return isinstance(source, CameraSource) or (isinstance(source, VideoReplay) and source.kind == "video")


def source_from_spec(spec: str, speed: float = 1.0, duration_s: float | None = None, seed: int = 0) -> Source:
    """Build a source from a command-line spec: ``simulated``, ``replay:PATH[:SUBJECT]`` or
    ``serial:PORT[@BAUD]``.

    Replay examples shipped with edgemer (``edgemer/data``) go by name:
    ``replay:physio-example`` (a 120 s wrist recording made by edgemer's recorder),
    ``replay:face-example`` (7 drawn faces, an image folder), ``replay:speech-example``.

    ``replay:`` takes an edgemer recording folder (written with ``--record``), a
    WESAD-layout folder (first subject, or the one named, e.g. ``replay:data/WESAD:S5``)
    or one subject pickle. ``serial:`` takes a device path or pyserial URL and an optional
    baud rate (default 1 Mbaud), e.g. ``serial:/dev/ttyACM0`` or ``serial:/dev/ttyUSB0@115200``
    (needs the ``[serial]`` extra).

    Video (needs the ``[camera]`` extra): ``replay:`` also takes a video file, an image or a
    folder of images, optionally ``@FPS`` (``replay:clips/face.mp4@10``); ``camera[:INDEX
    [:WIDTHxHEIGHT[@FPS]]]`` opens a camera, e.g. ``camera:0:1280x720@30``.

    Empatica E4: ``replay:e4:PATH`` plays an E4 connect export (folder or .zip; see
    :mod:`edgemer.sources.e4`).

    Audio: ``replay:FILE.wav`` plays a WAV file as the 16 kHz mono ``audio`` stream
    (``replay:speech-example`` the one shipped with edgemer); ``mic[:DEVICE][@RATE]`` opens a
    microphone (index or part of its name; capture rate in Hz, default the device's), e.g.
    ``mic:1@48000`` (needs the ``[audio]`` extra).
    """
    if spec == "simulated":
        from edgemer.sources.simulated import SimulatedWearable

        return SimulatedWearable(speed=speed, duration_s=duration_s, seed=seed)
    if spec.startswith("replay:"):
        from edgemer.sources.wesad_replay import WesadReplay

        target = spec[len("replay:"):]
        if target.startswith("e4:"):
            from edgemer.sources.e4 import E4Replay

            return E4Replay(target[len("e4:"):], speed=speed, duration_s=duration_s)
        example = shipped_example(target.rpartition("@")[0] if "@" in target else target)
        if example is not None:
            target = str(example) + (target[target.index("@"):] if "@" in target else "")
        if (Path(target) / "meta.json").is_file():
            from edgemer.recorder import RecordingReplay

            return RecordingReplay(target, speed=speed, duration_s=duration_s)
        if target.lower().endswith(".wav") or target == "speech-example":
            from edgemer.sources.wav_replay import WavReplay

            return WavReplay(target, speed=speed, duration_s=duration_s)
        from edgemer.sources.video_replay import VideoReplay, is_video_or_images

        path, sep, fps = target.rpartition("@")
        if sep and fps.replace(".", "", 1).isdigit() and is_video_or_images(path):
            return VideoReplay(path, speed=speed, fps=float(fps), duration_s=duration_s)
        if is_video_or_images(target):
            return VideoReplay(target, speed=speed, duration_s=duration_s)
        subject = None
        head, sep, tail = target.rpartition(":")
        if sep and tail.startswith("S") and tail[1:].isdigit():
            target, subject = head, tail
        if not Path(target).exists():
            raise DatasetError(f"{target}: nothing to replay (no such file or folder); give a WESAD-layout folder or "
                               f"subject .pkl, an edgemer recording folder, a video, an image or a folder of images")
        return WesadReplay(target, subject=subject, speed=speed, duration_s=duration_s)
    if spec == "mic" or spec.startswith(("mic:", "mic@")):
        from edgemer.sources.microphone import MicrophoneOptions, MicrophoneSource

        return MicrophoneSource(MicrophoneOptions.from_spec(spec[len("mic"):]), duration_s=duration_s)
    if spec == "camera" or spec.startswith("camera:"):
        from edgemer.sources.camera import CameraOptions, CameraSource

        return CameraSource(CameraOptions.from_spec(spec[len("camera"):]), duration_s=duration_s)
    if spec.startswith("serial:"):
        from edgemer.sources.serial_wearable import SerialWearable

        port, baud = spec[len("serial:"):], None
        head, sep, tail = port.rpartition("@")
        if sep and tail.isdigit():
            port, baud = head, int(tail)
        if not port:
            raise ConfigError("source 'serial:' needs a port, e.g. serial:/dev/ttyACM0 or serial:/dev/pts/5@115200")
        return SerialWearable(port, baud=baud, speed=speed, duration_s=duration_s)
    raise ConfigError(f"unknown source '{spec}'; use 'simulated', 'replay:PATH' (a WESAD-layout folder "
                      f"or subject .pkl, a video, an image or a folder of images), 'camera[:INDEX]', "
                      f"'serial:PORT[@BAUD]', 'mic[:DEVICE][@RATE]' or 'replay:FILE.wav'")


from edgemer.sources.simulated import SimulatedWearable  # noqa: E402
from edgemer.sources.wesad_replay import WesadReplay  # noqa: E402

__all__ = ["Emit", "SimulatedWearable", "Source", "ThreadedSource", "WesadReplay", "shipped_example", "source_from_spec"]
