"""Live microphone source: a sounddevice ``InputStream`` as the mono ``audio`` stream.

PortAudio calls :meth:`MicrophoneSource._callback` with ``(indata, frames, time,
status)`` on its own thread, once per block of ``block_s`` seconds. The callback only
copies the block into a bounded queue (a full queue drops its oldest block and counts
it) and notes ``status.input_overflow`` (samples the sound card lost because the
callback came late): it never blocks. The source's thread then mixes the block down
to mono, resamples it from the card's rate to the stream rate (polyphase, state kept
between blocks), stamps it on the host clock and emits it.

Timestamps follow the sample count from the first block, anchored to its arrival time
on ``time.monotonic()``; after an overflow, or when the count drifts more than
``max_drift_s`` from the arrival times, the stamp is re-anchored and the block carries
:data:`~edgemer.types.FLAG_GAP`. Blocks with samples at full scale carry
:data:`~edgemer.types.FLAG_CLIPPED`.

Counters (:meth:`MicrophoneSource.health`): ``blocks``, ``overflows``,
``dropped_blocks``, ``clipped_blocks``, ``resyncs``. Audio stays in memory; nothing
here writes it anywhere.

Tests inject ``sounddevice``: any object with sounddevice's ``query_devices`` and
``InputStream`` (which must accept ``callback=``), so the callback path runs without
hardware.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemer.clock import PipelineClock
from edgemer.errors import ConfigError, MissingExtraError, SourceError
from edgemer.frontends.audio_dsp import StreamingResampler
from edgemer.sources import Emit, ThreadedSource
from edgemer.types import FLAG_CLIPPED, FLAG_GAP, Chunk, StreamSpec

log = logging.getLogger(__name__)

CLIP_LEVEL = 0.999
PORTAUDIO_HINT = ("the PortAudio library is missing; install it with: sudo apt-get install libportaudio2 "
                  "(Debian, Ubuntu, Raspberry Pi OS; on Fedora: dnf install portaudio)")


@dataclass(frozen=True)
class MicrophoneOptions:
    """Which microphone and how to read it.

    device: PortAudio input device index or a part of its name (None: the default input).
    capture_rate_hz: rate to open the device at, Hz (None: the device's default rate).
    rate_hz: the stream's rate, Hz (the model's; the capture is resampled to it).
    channels: channels to capture (mixed down to mono).
    block_s: seconds per callback block. latency: PortAudio latency (``"low"``,
    ``"high"`` or seconds). queue_blocks: blocks buffered between the callback and the
    source thread. max_drift_s: sample-count vs arrival-time drift that triggers a
    re-anchor, s. stream: name of the stream.
    """

    device: int | str | None = None
    capture_rate_hz: int | None = None
    rate_hz: int = 16000
    channels: int = 1
    block_s: float = 0.032
    latency: str | float = "low"
    queue_blocks: int = 64
    max_drift_s: float = 0.2
    stream: str = "audio"

    def __post_init__(self) -> None:
        if isinstance(self.device, int) and self.device < 0:
            raise ConfigError(f"MicrophoneOptions.device must be an index >= 0 or a name, got {self.device}")
        if self.capture_rate_hz is not None and not 8000 <= self.capture_rate_hz <= 384000:
            raise ConfigError(f"MicrophoneOptions.capture_rate_hz must be 8000..384000 Hz or None, "
                              f"got {self.capture_rate_hz}")
        if not 8000 <= self.rate_hz <= 48000:
            raise ConfigError(f"MicrophoneOptions.rate_hz must be 8000..48000 Hz, got {self.rate_hz}")
        if not 1 <= self.channels <= 32:
            raise ConfigError(f"MicrophoneOptions.channels must be 1..32, got {self.channels}")
        if not 0.002 <= self.block_s <= 1:
            raise ConfigError(f"MicrophoneOptions.block_s must be 0.002..1 s, got {self.block_s}")
        if self.queue_blocks < 2:
            raise ConfigError(f"MicrophoneOptions.queue_blocks must be >= 2, got {self.queue_blocks}")
        if not self.max_drift_s > 0:
            raise ConfigError(f"MicrophoneOptions.max_drift_s must be > 0 s, got {self.max_drift_s}")

    @classmethod
    def from_spec(cls, text: str, **kw: Any) -> "MicrophoneOptions":
        """Parse the part after ``mic``: ``""``, ``":2"``, ``":USB"``, ``":2@48000"`` or ``"@44100"``."""
        body = text[1:] if text.startswith(":") else text
        device, sep, rate = body.rpartition("@") if "@" in body else (body, "", "")
        if text and not text.startswith((":", "@")):
            raise ConfigError(f"microphone spec 'mic{text}': use mic[:DEVICE][@CAPTURE_RATE_HZ]")
        try:
            capture = int(rate) if sep else None
        except ValueError:
            raise ConfigError(f"microphone spec 'mic{text}': the rate after '@' must be whole Hz, "
                              f"e.g. mic:1@48000") from None
        dev: int | str | None = None
        if device:
            dev = int(device) if device.isdigit() else device
        return cls(device=dev, capture_rate_hz=capture, **kw)


def load_sounddevice() -> Any:
    """``import sounddevice``, turning its failures into actionable errors."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise SourceError(f"microphone: {PORTAUDIO_HINT} ({exc})") from exc
    except ImportError as exc:
        raise MissingExtraError("audio", "sounddevice", "The microphone source") from exc
    return sounddevice


def _input_devices(sd: Any) -> str:
    try:
        devices = list(sd.query_devices())
    except Exception:  # listing is only for the message
        return "unknown"
    rows = [f"{i} '{d['name']}' ({d['max_input_channels']} ch, {d['default_samplerate']:g} Hz)"
            for i, d in enumerate(devices) if d.get("max_input_channels", 0) > 0]
    return "; ".join(rows) or "none (no microphone connected? on Linux check 'arecord -l')"


class MicrophoneSource(ThreadedSource):
    """A microphone as a live mono ``audio`` stream at ``options.rate_hz`` Hz (``[n, 1]`` float32 chunks).

    Parameters
    ----------
    options: device, rates and block size (see :class:`MicrophoneOptions`).
    sounddevice: the ``sounddevice`` module or a stand-in (tests); default: imported on start.
    duration_s: stop after this many seconds (None: until stopped).

    Notes
    -----
    The device opens in :meth:`start` (a missing device or PortAudio library raises
    :class:`~edgemer.errors.SourceError` there) and closes in :meth:`stop`; use it as a
    context manager or through a :class:`~edgemer.pipeline.Pipeline`.
    """

    live = True

    def __init__(self, options: MicrophoneOptions = MicrophoneOptions(), sounddevice: Any = None,
                 duration_s: float | None = None) -> None:
        super().__init__(speed=1.0)
        if duration_s is not None and duration_s <= 0:
            raise ConfigError(f"MicrophoneSource.duration_s must be > 0 s or None, got {duration_s}")
        self.options = options
        self.duration_s = duration_s
        self._sd = sounddevice
        self.name = f"mic:{options.device if options.device is not None else 'default'}"
        self.streams = (StreamSpec(options.stream, float(options.rate_hz), 1, unit="FS", media=True),)
        self._queue: queue.Queue = queue.Queue(maxsize=options.queue_blocks)
        self._stream: Any = None
        self._counters = {"blocks": 0, "overflows": 0, "dropped_blocks": 0, "clipped_blocks": 0, "resyncs": 0}
        self._lock = threading.Lock()
        self.device_name: str | None = None
        self.capture_rate_hz: int | None = None

    def health(self) -> dict:
        with self._lock:
            out: dict[str, Any] = dict(self._counters)
        if self.device_name is not None:
            out["device"] = self.device_name
            out["capture_rate_hz"] = self.capture_rate_hz
        return out

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counters[key] += n

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's callback: copy the block and note overflows; never blocks."""
        overflow = bool(getattr(status, "input_overflow", False))
        if overflow:
            self._count("overflows")
        item = (time.monotonic(), np.array(indata, dtype=np.float32, copy=True), overflow)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._count("dropped_blocks")
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                pass

    def _open(self) -> Any:
        o = self.options
        sd = self._sd if self._sd is not None else load_sounddevice()
        self._sd = sd
        try:
            info = sd.query_devices(o.device, "input")
        except Exception as exc:  # sounddevice raises ValueError for an unknown device
            which = "the default input device" if o.device is None else f"input device {o.device!r}"
            raise SourceError(f"microphone: {which} not found ({str(exc).splitlines()[0][:160]}). Input devices "
                              f"here: {_input_devices(sd)}. Pick one with --source mic:INDEX or mic:NAME") from exc
        if int(info.get("max_input_channels", 0)) < o.channels:
            raise SourceError(f"microphone: '{info.get('name')}' has {info.get('max_input_channels')} input "
                              f"channel(s), {o.channels} asked for; pick another device (input devices here: "
                              f"{_input_devices(sd)})")
        rate = int(o.capture_rate_hz or round(float(info.get("default_samplerate") or o.rate_hz)))
        self.device_name = str(info.get("name"))
        self.capture_rate_hz = rate
        try:
            stream = sd.InputStream(samplerate=rate, blocksize=max(1, int(round(o.block_s * rate))), device=o.device,
                                    channels=o.channels, dtype="float32", latency=o.latency, callback=self._callback)
            stream.start()
        except Exception as exc:  # sounddevice.PortAudioError and friends
            raise SourceError(f"microphone '{self.device_name}': cannot open it at {rate} Hz, {o.channels} channel(s) "
                              f"({str(exc).splitlines()[0][:160]}). Try the device's default rate (mic:DEVICE without "
                              f"@RATE), another rate (mic:DEVICE@48000) or close other programs using it") from exc
        return stream

    def start(self, clock: PipelineClock, emit: Emit) -> None:
        """Open the device (raising :class:`SourceError` if it is missing), then emit from a thread."""
        self._stream = self._open()
        try:
            super().start(clock, emit)
        except BaseException:
            self._close()
            raise

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            for step in (stream.stop, stream.close):
                try:
                    step()
                except Exception as exc:  # closing must not hide why the run ended
                    log.warning("microphone: closing the stream: %s", exc)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._close()
        super().stop(timeout_s)

    def _run(self, clock: PipelineClock, emit: Emit, stop: threading.Event) -> None:
        o = self.options
        capture = float(self.capture_rate_hz or o.rate_hz)
        resampler = StreamingResampler(capture, o.rate_hz)
        anchor: float | None = None  # host time of captured sample 0, s
        n_in = 0                      # captured samples since the anchor
        n_out = 0                     # emitted samples since the anchor
        seq = 0
        gap = False
        t_stop = None if self.duration_s is None else clock.now() + self.duration_s
        while not stop.is_set():
            if t_stop is not None and clock.now() >= t_stop:
                return
            try:
                arrival, block, overflow = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            mono = block.mean(axis=1) if block.ndim == 2 and block.shape[1] > 1 else block.reshape(-1)
            expected_end = None if anchor is None else anchor + (n_in + mono.size) / capture
            drift = 0.0 if expected_end is None else arrival - expected_end
            if anchor is None or overflow or abs(drift) > o.max_drift_s:
                if anchor is not None:
                    self._count("resyncs")
                    gap = True
                anchor = arrival - mono.size / capture
                n_in, n_out = 0, 0
                resampler = StreamingResampler(capture, o.rate_hz)
            n_in += mono.size
            out = resampler.process(mono)
            clipped = bool(np.any(np.abs(block) >= CLIP_LEVEL))
            self._count("blocks")
            if clipped:
                self._count("clipped_blocks")
            if out.size == 0:
                continue
            t0 = anchor + n_out / o.rate_hz  # output sample k is input time k / rate_hz
            n_out += out.size
            flags = (FLAG_GAP if gap else 0) | (FLAG_CLIPPED if clipped else 0)
            gap = False
            emit(Chunk(o.stream, float(o.rate_hz), t0, out[:, None], seq=seq, flags=flags, arrival=arrival))
            seq += 1
