"""A wrist wearable on a serial port (USB CDC, UART, BLE serial bridge) speaking the edgemer wire protocol.

>>> from edgemer import Pipeline
>>> from edgemer.sources.serial_wearable import SerialWearable
>>> with Pipeline([SerialWearable("/dev/ttyACM0")], ["physio-demo"]) as pipe:
...     for estimate in pipe:
...         print(estimate.stress_probability, estimate.sources)

Threads, after pyserial's ``serial.threaded`` model: a ``ReaderThread`` reads the port
and hands bytes to a :class:`~edgemer.firmware_bridge.framing.FramePacketizer`, which
splits and checks frames; the frames are interpreted
(:class:`~edgemer.firmware_bridge.session.DeviceSession`), mapped onto the pipeline
clock (:class:`~edgemer.firmware_bridge.clocksync.ClockMapper`) and emitted as Chunks
from that reader thread. The source's own thread supervises: it sends HELLO, START and
a time-sync PING every ``sync_interval_s``, and when the port goes away (unplugged
cable: a read error) it reports the loss, retries opening the port with back-off
(``backoff_s`` doubling up to ``max_backoff_s``) and resumes when the port returns,
without restarting the pipeline. Samples lost meanwhile show up as a gap
(``FLAG_GAP`` on the next Chunk, ``last_gap_s`` in :meth:`SerialWearable.health`); they
are never filled in.

Streams (default): ``eda`` 4 Hz µS, ``bvp`` 64 Hz a.u., ``temp`` 4 Hz °C, ``acc`` 32 Hz
3 axes in 1/64 g (the WESAD wrist layout the physiology bundles are trained on), and
``condition`` 4 Hz (the emulator's ground truth; a real device simply never sends it).
If the device announces an expected stream at another rate, the source asks it to
switch (SET_RATE); a stream it cannot match is dropped and counted, the others go on.

Ports: a device path (``/dev/ttyACM0``, ``/dev/pts/5``) or a pyserial URL (``loop://``,
used by tests). Needs ``pip install 'edgemer[serial]'``.
"""
from __future__ import annotations

import errno
import itertools
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from edgemer._extras import require
from edgemer.clock import PipelineClock
from edgemer.errors import ConfigError, SourceError
from edgemer.firmware_bridge.clocksync import ClockMapper, ClockSyncConfig
from edgemer.firmware_bridge.framing import FrameDecoder, FramePacketizer
from edgemer.firmware_bridge.protocol import NO_STREAM, AckStatus, Command, MsgType, encode_command
from edgemer.firmware_bridge.session import (AckEvent, DescriptorEvent, DeviceSession, InfoEvent, PongEvent,
                                             SampleBlock)
from edgemer.simulate import WRIST_STREAMS
from edgemer.sources import Emit, ThreadedSource
from edgemer.sources.simulated import CONDITION_STREAM
from edgemer.types import Chunk, StreamSpec

log = logging.getLogger(__name__)

SERIAL_STREAMS: tuple[StreamSpec, ...] = WRIST_STREAMS + (CONDITION_STREAM,)

_HINTS = {
    "missing": "check the cable and the name (ls /dev/ttyACM* /dev/ttyUSB* /dev/serial/by-id/), "
               "or start an emulated device with 'edgemer emulate'",
    "permission": "add your user to the 'dialout' group (sudo usermod -aG dialout $USER, then log in again) "
                  "or fix the device's udev permissions",
    "busy": "another program holds it (a serial monitor, ModemManager, another edgemer); close it and retry",
    "other": "check that it is a serial device and that the baud rate is supported",
}


class PortUnavailableError(SourceError):
    """A serial port cannot be opened. ``reason``: missing, permission, busy or other."""

    def __init__(self, port: str, reason: str, detail: str) -> None:
        super().__init__(f"serial port '{port}' {_DESCRIBE[reason]} ({detail}): {_HINTS[reason]}")
        self.port = port
        self.reason = reason


_DESCRIBE = {"missing": "does not exist", "permission": "cannot be opened: permission denied",
             "busy": "is busy", "other": "cannot be opened"}


@dataclass(frozen=True)
class SerialLinkConfig:
    """Link settings.

    baud: bits per second (a USB CDC port ignores it; a UART needs it right).
    sync_interval_s: stream seconds between time-sync pings (wall seconds at speed 1; at most 50 pings per
        wall second when replaying faster).
    hello_interval_s: wall seconds between HELLOs while the device has not answered.
    backoff_s, max_backoff_s: first and longest wait between attempts to reopen a lost port, seconds.
    reconnect_timeout_s: give up (SourceError) after the port has been gone this long; None: never.
    exclusive: lock the port so a second program cannot read from it at the same time.
    request_rates: ask the device to switch streams announced at a rate other than expected.
    clock: the device-clock fit.
    """

    baud: int = 1_000_000
    sync_interval_s: float = 0.5
    hello_interval_s: float = 1.0
    backoff_s: float = 0.05
    max_backoff_s: float = 0.4
    reconnect_timeout_s: float | None = None
    exclusive: bool = True
    request_rates: bool = True
    clock: ClockSyncConfig = field(default_factory=ClockSyncConfig)

    def __post_init__(self) -> None:
        if not (isinstance(self.baud, int) and self.baud > 0):
            raise ConfigError(f"SerialLinkConfig.baud must be a positive integer (bits/s), got {self.baud!r}")
        for name in ("sync_interval_s", "hello_interval_s", "backoff_s", "max_backoff_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"SerialLinkConfig.{name} must be > 0 s, got {getattr(self, name)!r}")
        if self.max_backoff_s < self.backoff_s:
            raise ConfigError("SerialLinkConfig.max_backoff_s must be >= backoff_s")
        if self.reconnect_timeout_s is not None and not self.reconnect_timeout_s > 0:
            raise ConfigError(f"SerialLinkConfig.reconnect_timeout_s must be > 0 s or None, "
                              f"got {self.reconnect_timeout_s!r}")


def open_port(port: str, baud: int = 1_000_000, exclusive: bool = True):
    """Open ``port`` (a path or a pyserial URL such as ``loop://``) with an empty input buffer.

    Raises :class:`PortUnavailableError` naming the port, the reason and what to do, or
    :class:`~edgemer.errors.MissingExtraError` if pyserial is not installed.
    """
    serial = require("serial", "serial", "The serial wearable source")
    try:
        if "://" in port:
            handle = serial.serial_for_url(port, baudrate=baud, timeout=None)
        else:
            handle = serial.Serial(port, baudrate=baud, timeout=None, exclusive=exclusive)
    except serial.SerialException as exc:
        code = exc.errno
        reason = ("missing" if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO) else
                  "permission" if code in (errno.EACCES, errno.EPERM) else
                  "busy" if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) else "other")
        raise PortUnavailableError(port, reason, str(exc.strerror or exc)) from exc
    except (OSError, ValueError) as exc:
        raise PortUnavailableError(port, "other", str(exc)) from exc
    handle.reset_input_buffer()  # bytes from before we opened are stale
    return handle


class SerialWearable(ThreadedSource):
    """A wearable on a serial port: decodes frames into Chunks on the pipeline clock.

    Parameters
    ----------
    port: device path or pyserial URL (``loop://`` for tests).
    baud: bits per second (overrides ``config.baud``).
    speed: stream seconds per wall second; 1 for a real device. Set it to the emulator's
        ``--speed`` to replay an emulated session faster than real time.
    duration_s: stream seconds to run; None runs until stopped.
    streams: the streams to deliver (name, rate in Hz, channels); others the device
        announces are ignored.
    config: link settings (:class:`SerialLinkConfig`).
    """

    live = True

    def __init__(self, port: str, baud: int | None = None, speed: float = 1.0, duration_s: float | None = None,
                 streams: Sequence[StreamSpec] = SERIAL_STREAMS, config: SerialLinkConfig = SerialLinkConfig()) -> None:
        super().__init__(speed)
        if not port:
            raise ConfigError("SerialWearable.port must name a serial port, e.g. /dev/ttyACM0")
        if duration_s is not None and not duration_s > 0:
            raise ConfigError(f"SerialWearable.duration_s must be > 0 s, got {duration_s}")
        if baud is not None:
            config = SerialLinkConfig(**{**vars(config), "baud": baud})
        self.port = port
        self.config = config
        self.duration_s = duration_s
        self.name = f"serial:{port}"
        self.streams = tuple(streams)
        self.live = self.speed == 1.0
        self._expected = {s.name: s for s in self.streams}
        self.decoder = FrameDecoder()
        self.session = DeviceSession()
        self.mapper = ClockMapper(config.clock)
        self.connected = False
        self.reconnects = 0
        self.disconnects = 0
        self.rejected_frames = 0
        self.last_outage_s = 0.0
        self._lost_at: float | None = None
        self._handle = None
        self._clock: PipelineClock | None = None
        self._emit: Emit | None = None
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._pings: dict[int, float] = {}
        self._tokens = itertools.count(1)
        self._cmd_seq = itertools.count(1)
        self._boot = 0
        self._answered = False
        self._rate_requests: set[tuple[int, int, float]] = set()
        self._latest_end: dict[str, float] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self, clock: PipelineClock, emit: Emit) -> None:
        """Open the port now (so a wrong name fails here, typed), then run the link thread."""
        if self._thread is None:
            self._handle = open_port(self.port, self.config.baud, self.config.exclusive)
        super().start(clock, emit)

    def send_raw(self, data: bytes) -> None:
        """Queue bytes to write to the port as they are (tests inject device frames into ``loop://``)."""
        self._outbox.put(bytes(data))
        self._wake.set()

    def _command(self, ctype: int, stream: int = NO_STREAM, **kw: Any) -> None:
        cmd = Command(ctype, stream, next(self._cmd_seq) & 0xFFFF, 0, **kw)
        self.send_raw(encode_command(cmd, self.decoder.codec))

    def _duration_done(self, clock: PipelineClock) -> bool:
        """After ``duration_s``, once every delivering stream has reached it (samples arrive a little after they
        are taken), or one wall second later at most."""
        if self.duration_s is None:
            return False
        end = clock.start + self.duration_s
        now = clock.now()
        if now < end:
            return False
        ends = self._latest_end.values()
        return (bool(ends) and min(ends) >= end) or now >= end + clock.speed * 1.0

    def _run(self, clock: PipelineClock, emit: Emit, stop: threading.Event) -> None:
        self._clock, self._emit = clock, emit
        handle, self._handle = self._handle, None
        while not stop.is_set() and not self._duration_done(clock):
            if handle is None:
                handle = self._reopen(clock, stop)
                if handle is None:
                    return
            self._serve(handle, clock, stop)
            handle = None

    def _reopen(self, clock: PipelineClock, stop: threading.Event):
        delay = self.config.backoff_s
        while not stop.wait(delay):
            if self._duration_done(clock):
                return None
            try:
                handle = open_port(self.port, self.config.baud, self.config.exclusive)
            except PortUnavailableError as exc:
                offline = time.monotonic() - (self._lost_at or time.monotonic())
                timeout = self.config.reconnect_timeout_s
                if timeout is not None and offline > timeout:
                    raise SourceError(f"serial port '{self.port}' has been gone for {offline:.1f} s, longer than "
                                      f"reconnect_timeout_s={timeout:g}: {exc}") from exc
                log.debug("serial port '%s' still unavailable (%s); retry in %.2f s", self.port, exc.reason, delay)
                delay = min(2 * delay, self.config.max_backoff_s)
                continue
            self.reconnects += 1
            self.last_outage_s = time.monotonic() - (self._lost_at or time.monotonic())
            log.warning("serial port '%s' is back after %.2f s; resuming", self.port, self.last_outage_s)
            return handle
        return None

    def _serve(self, handle, clock: PipelineClock, stop: threading.Event) -> None:
        """Run one connection until the port is lost, the source is stopped or the duration is over."""
        threaded = require("serial.threaded", "serial", "The serial wearable source")
        lost = threading.Event()
        errors: list[BaseException | None] = []

        def on_lost(exc: BaseException | None) -> None:
            errors.append(exc)
            lost.set()
            self._wake.set()

        self.decoder.reset()
        reader = _guarded_reader(threaded)(handle, lambda: FramePacketizer(self.decoder, self._on_frames, on_lost))
        reader.name = f"edgemer-serial-reader-{self.port}"
        reader.start()
        self._answered = False
        self.connected = True
        self._lost_at = None
        try:
            self._command(MsgType.HELLO)
            self._ping(reader, clock)
            self._command(MsgType.START)
            cfg = self.config
            ping_every = max(0.02, cfg.sync_interval_s / self.speed)
            next_ping = time.monotonic() + ping_every
            next_hello = time.monotonic() + cfg.hello_interval_s
            unknown_seen = self.session.stats.unknown_stream
            while not stop.is_set() and not lost.is_set() and not self._duration_done(clock):
                self._flush(reader)
                now = time.monotonic()
                if now >= next_ping:
                    self._ping(reader, clock)
                    next_ping = now + ping_every
                if now >= next_hello:
                    unknown = self.session.stats.unknown_stream
                    if not self._answered or unknown > unknown_seen:
                        self._command(MsgType.HELLO)  # no answer yet, or frames of streams we have not been told about
                        unknown_seen = unknown
                    next_hello = now + cfg.hello_interval_s
                self._wake.wait(min(0.05, max(0.0, min(next_ping, next_hello) - time.monotonic())))
                self._wake.clear()
        except Exception as exc:  # a write to a vanished port: treat as a loss
            errors.append(exc)
            lost.set()
        finally:
            was_lost = lost.is_set()  # closing below ends the reader too; that is not a loss
            if not was_lost:  # a clean stop: let the device stop sending into a port nobody reads
                try:
                    reader.write(encode_command(Command(MsgType.STOP, NO_STREAM, next(self._cmd_seq) & 0xFFFF, 0),
                                                self.decoder.codec))
                except Exception:  # the port may be going away at the same moment
                    pass
            self.connected = False
            reader.close()
        if was_lost and not stop.is_set():
            self.disconnects += 1
            self._lost_at = time.monotonic()
            detail = next((e for e in errors if e is not None), None)
            log.warning("serial port '%s' lost (%s); retrying with back-off, samples meanwhile are reported as "
                        "a gap", self.port, detail or "closed")

    def _flush(self, reader) -> None:
        while True:
            try:
                data = self._outbox.get_nowait()
            except queue.Empty:
                return
            reader.write(data)

    def _ping(self, reader, clock: PipelineClock) -> None:
        self._flush(reader)
        token = next(self._tokens) & 0xFFFFFFFF
        data = encode_command(Command(MsgType.PING, NO_STREAM, next(self._cmd_seq) & 0xFFFF, 0, token=token),
                              self.decoder.codec)
        with self._lock:
            if len(self._pings) > 64:
                self._pings.clear()  # unanswered pings (device without time sync) must not pile up
            self._pings[token] = clock.now()
        reader.write(data)

    # -- the reader thread ------------------------------------------------------------------------------
    def _on_frames(self, frames, arrival: float) -> None:
        clock, emit = self._clock, self._emit
        host_t = clock.start + (arrival - clock.wall_start) * clock.speed
        handle = self.session.handle
        for frame in frames:
            ev = handle(frame)
            if ev is None:
                continue
            if type(ev) is SampleBlock:
                self._on_samples(ev, host_t, arrival, emit)
            elif type(ev) is PongEvent:
                with self._lock:
                    t_send = self._pings.pop(ev.token, None)
                if t_send is not None and self.session.boot == self._boot:
                    self.mapper.add_sync(ev.t_dev_us, t_send, host_t)
            elif type(ev) is DescriptorEvent:
                self._on_descriptor(ev)
            elif type(ev) is InfoEvent:
                self._answered = True
                if ev.boot != self._boot:  # the device restarted: it waits for START again
                    self._new_boot(ev.boot)
                    self._command(MsgType.START)
            elif type(ev) is AckEvent and ev.status != AckStatus.OK:
                log.warning("serial device refused command 0x%02x for stream %d (status %d)", ev.command, ev.stream,
                            ev.status)

    def _new_boot(self, boot: int) -> None:
        self._boot = boot
        self.mapper.reset()
        with self._lock:
            self._pings.clear()  # answers to pings sent before the reset would map the old clock
        self._wake.set()

    def _on_samples(self, ev: SampleBlock, host_t: float, arrival: float, emit: Emit) -> None:
        if ev.boot != self._boot:
            self._new_boot(ev.boot)
        spec = self._expected.get(ev.stream)
        if spec is None:
            return
        if abs(ev.rate_hz - spec.rate_hz) > 1e-6 * spec.rate_hz or ev.samples.shape[1] != spec.channels:
            self.rejected_frames += 1
            self._warn_once(ev.stream, f"serial: stream '{ev.stream}' arrives with {ev.samples.shape[1]} channel(s) "
                                       f"at {ev.rate_hz:g} Hz, expected {spec.channels} at {spec.rate_hz:g} Hz; "
                                       f"its samples are dropped (the other streams go on)")
            return
        n = ev.samples.shape[0]
        self.mapper.add_arrival(ev.t_dev_us + (n - 1) * 1e6 / ev.rate_hz, host_t)
        t0 = self.mapper.to_host(ev.t_dev_us)
        chunk = Chunk(ev.stream, spec.rate_hz, t0, ev.samples, seq=ev.seq, flags=ev.flags, arrival=arrival)
        self._latest_end[ev.stream] = chunk.t_end
        emit(chunk)

    def _on_descriptor(self, ev: DescriptorEvent) -> None:
        d = ev.descriptor
        spec = self._expected.get(d.name)
        if spec is None:
            return
        if abs(d.rate_hz - spec.rate_hz) > 1e-6 * spec.rate_hz and self.config.request_rates:
            key = (self.session.boot, d.stream_id, spec.rate_hz)
            if key not in self._rate_requests:
                self._rate_requests.add(key)
                log.info("serial: stream '%s' announced at %g Hz; asking the device for %g Hz", d.name, d.rate_hz,
                         spec.rate_hz)
                self._command(MsgType.SET_RATE, d.stream_id, rate_hz=spec.rate_hz)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    # -- health -------------------------------------------------------------------------------------------
    def health(self) -> dict:
        """Link counters since the source started (JSON-ready; also in ``Estimate.sources`` and the JSONL sink).

        connected, device (name and firmware from INFO); frames_ok; crc_failures, bad_frames (all rejected
        pieces), bytes_discarded (during resynchronisation), unknown_version, length_mismatch, unknown_stream
        (frames counted and dropped); seq_gaps, missing_frames, last_gap_s (device seconds missing before the
        latest gap), gap_s_total (summed over streams); resets (device restarts); descriptor_changes;
        rejected_frames (a stream at the wrong rate or channel count); synced (time-sync pings answered),
        drift_ppm (device clock rate error, > 0 fast), offset_s (host minus device clock at the last ping),
        sync_rtt_ms (last ping round trip, wall ms); reconnects, disconnects, offline_s (while disconnected),
        last_outage_s (wall seconds the port was gone, last time).
        """
        link, sess, m = self.decoder.stats, self.session.stats, self.mapper
        info = self.session.info
        offline = (time.monotonic() - self._lost_at) if self._lost_at is not None and not self.connected else 0.0

        def r(x: float, nd: int) -> float:
            return round(x, nd) if math.isfinite(x) else float("nan")

        return {
            "port": self.port, "connected": self.connected,
            "device": f"{info.name} {info.firmware}" if info else None,
            "frames_ok": link.frames_ok, "crc_failures": link.crc_failures, "bad_frames": link.bad_frames,
            "bytes_discarded": link.bytes_discarded, "unknown_version": link.unknown_version,
            "length_mismatch": link.length_mismatch, "unknown_stream": sess.unknown_stream,
            "seq_gaps": sess.seq_gaps, "missing_frames": sess.missing_frames, "last_gap_s": r(sess.last_gap_s, 3),
            "gap_s_total": r(sess.gap_s_total, 3), "resets": sess.resets,
            "descriptor_changes": sess.descriptor_changes, "rejected_frames": self.rejected_frames,
            "synced": m.synced, "drift_ppm": r(m.drift_ppm, 1), "offset_s": r(m.offset_s, 6),
            "sync_rtt_ms": r(m.rtt_s / self.speed * 1e3, 3),
            "reconnects": self.reconnects, "disconnects": self.disconnects, "offline_s": r(offline, 2),
            "last_outage_s": r(self.last_outage_s, 2),
        }


__all__ = ["PortUnavailableError", "SERIAL_STREAMS", "SerialLinkConfig", "SerialWearable", "open_port"]


def _guarded_reader(threaded: Any) -> type:
    """pyserial's ``ReaderThread`` that also reports an ``OSError`` as a lost connection.

    pyserial catches only ``SerialException`` in its read loop; when a device vanishes,
    ``in_waiting`` can raise a bare ``OSError`` (EIO), which would end the thread with a
    traceback and never tell the protocol, leaving the source waiting on a dead port.
    """

    class GuardedReaderThread(threaded.ReaderThread):  # type: ignore[misc, valid-type]
        def run(self) -> None:
            try:
                super().run()
            except OSError as exc:
                self.alive = False
                if self.protocol is not None:
                    self.protocol.connection_lost(exc)

    return GuardedReaderThread
