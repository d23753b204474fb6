"""What the frames of one device mean: descriptors, sequence numbers, device time, resets.

:class:`DeviceSession` takes checked frames (from
:class:`~edgemer.firmware_bridge.framing.FrameDecoder`) and returns events. It has no
threads and no clock of its own, so it can be fuzzed and replayed.

* Device time: the 32-bit µs timestamps are unwrapped into one increasing integer per
  boot (any frame may be up to 2**31 µs, about 35 minutes, before or after the newest
  one seen).
* Sequence numbers (16 bit, per stream): a jump is a gap; its length in device seconds
  comes from the timestamps. A continuous sequence whose timestamp jumps forward is a
  gap too (the device skipped samples). Gaps are flagged, never filled.
* Resets: an INFO frame with reason BOOT, or a stream whose time goes backwards by more
  than half a sample, or a frame more than ``max(2 s, 1.5 frame lengths)`` older than the
  newest one seen, means the device restarted: sequence and clock trackers start again
  and the next block of every stream carries ``FLAG_RESET | FLAG_GAP``.
* Samples are converted to physical units with the stream's descriptor
  (``raw * scale + offset``); frames whose format or channel count disagree with the
  descriptor, or whose stream has no descriptor yet, are counted and dropped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import NamedTuple, Union

import numpy as np

from edgemer.errors import ConfigError
from edgemer.firmware_bridge.protocol import (AckStatus, DeviceInfo, Frame, InfoReason, MsgType, StreamDescriptor,
                                              parse_ack, parse_pong)
from edgemer.types import FLAG_GAP, FLAG_RESET

log = logging.getLogger(__name__)

_MASK32 = 0xFFFFFFFF
_HALF32 = 1 << 31


class SampleBlock(NamedTuple):
    """The samples of one SAMPLES frame, in physical units.

    stream: stream name from the descriptor. t_dev_us: device time of the first sample,
    µs, unwrapped within the current boot. samples: float32 ``[count, channels]``.
    flags: ``FLAG_GAP`` / ``FLAG_RESET``. gap_s: device seconds missing just before this
    block (0 when none). boot: how many device resets this session has seen.
    """

    stream: str
    stream_id: int
    seq: int
    t_dev_us: int
    rate_hz: float
    samples: np.ndarray
    flags: int
    gap_s: float
    boot: int


class DescriptorEvent(NamedTuple):
    descriptor: StreamDescriptor
    changed: bool
    """True when it replaces a different descriptor for the same stream id."""


class InfoEvent(NamedTuple):
    info: DeviceInfo
    boot: int


class PongEvent(NamedTuple):
    token: int
    t_dev_us: int
    """Unwrapped device time at which the PING arrived, µs."""


class AckEvent(NamedTuple):
    stream: int
    command: int
    status: int
    command_seq: int


Event = Union[SampleBlock, DescriptorEvent, InfoEvent, PongEvent, AckEvent]


@dataclass
class SessionStats:
    """Counters about stream content (frame-level errors are in ``LinkStats``)."""

    sample_frames: int = 0
    seq_gaps: int = 0
    """Gaps found, by sequence number or timestamp."""
    missing_frames: int = 0
    gap_s_total: float = 0.0
    last_gap_s: float = 0.0
    last_gap_stream: str = ""
    resets: int = 0
    unknown_stream: int = 0
    """SAMPLES frames for a stream id with no descriptor."""
    descriptor_changes: int = 0
    bad_descriptors: int = 0
    descriptor_mismatch: int = 0
    """SAMPLES frames whose format or channel count disagree with the descriptor."""
    nacks: int = 0

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Track:
    """Per-stream state: the descriptor's constants (kept ready for the hot path) and sequence/time expectations."""

    __slots__ = ("desc", "dtype", "channels", "scale", "offset", "us_per_sample", "seq", "next_us", "reset_pending")

    def __init__(self, desc: StreamDescriptor) -> None:
        self.reset_pending = False
        self.set(desc)

    def set(self, desc: StreamDescriptor) -> None:
        self.desc = desc
        self.dtype = desc.dtype
        self.channels = desc.channels
        self.scale = np.float32(desc.scale)
        self.offset = np.float32(desc.offset) if desc.offset else None
        self.us_per_sample = 1e6 / desc.rate_hz
        self.seq = -1  # no expectation until the next frame
        self.next_us = 0.0


class DeviceSession:
    """Interprets the frames of one device. ``handle(frame)`` returns an event or None."""

    def __init__(self) -> None:
        self.descriptors: dict[int, StreamDescriptor] = {}
        self.info: DeviceInfo | None = None
        self.stats = SessionStats()
        self.boot = 0
        self._tracks: dict[int, _Track] = {}
        self._ref: int | None = None  # newest unwrapped device time seen, µs
        self._longest_frame_us = 0.0

    # -- device time ------------------------------------------------------------------------------
    def unwrap(self, t_us: int) -> int:
        """Unwrap a 32-bit device timestamp against the newest one seen (µs)."""
        ref = self._ref
        if ref is None:
            self._ref = t_us
            return t_us
        d = (t_us - ref) & _MASK32
        if d >= _HALF32:
            d -= 1 << 32
        t = ref + d
        if d > 0:
            self._ref = t
        return t

    def device_reset(self, t_us: int | None = None, reason: str = "boot") -> None:
        """The device restarted: forget sequence numbers and the device-time reference."""
        self.boot += 1
        self.stats.resets += 1
        self._ref = t_us
        for track in self._tracks.values():
            track.seq = -1
            track.reset_pending = True
        log.warning("serial device reset detected (%s): sequence numbers and device clock restarted", reason)

    # -- frames -----------------------------------------------------------------------------------
    def handle(self, frame: Frame) -> Event | None:
        ftype = frame.type
        if ftype == MsgType.SAMPLES:
            return self._samples(frame)
        if ftype == MsgType.DESCRIPTOR:
            return self._descriptor(frame)
        if ftype == MsgType.PONG:
            return PongEvent(parse_pong(frame), self.unwrap(frame.t_us))
        if ftype == MsgType.INFO:
            try:
                info = DeviceInfo.from_frame(frame)
            except ConfigError:
                self.stats.bad_descriptors += 1
                return None
            self.info = info
            if info.reason == InfoReason.BOOT and self._ref is not None:  # a boot before anything else resets nothing
                self.device_reset(frame.t_us, "boot message")
            return InfoEvent(info, self.boot)
        if ftype == MsgType.ACK:
            command, status, command_seq = parse_ack(frame)
            if status != AckStatus.OK:
                self.stats.nacks += 1
            return AckEvent(frame.stream, command, status, command_seq)
        return None

    def _descriptor(self, frame: Frame) -> DescriptorEvent | None:
        try:
            desc = StreamDescriptor.from_frame(frame)
        except ConfigError as exc:
            self.stats.bad_descriptors += 1
            log.warning("serial: ignored a malformed stream descriptor: %s", exc)
            return None
        old = self.descriptors.get(desc.stream_id)
        changed = old is not None and not old.same_as(desc)
        if changed:
            self.stats.descriptor_changes += 1
            log.warning("serial: stream %d descriptor changed mid-stream: %s -> %s", desc.stream_id, old, desc)
        self.descriptors[desc.stream_id] = desc
        track = self._tracks.get(desc.stream_id)
        if track is None:
            self._tracks[desc.stream_id] = _Track(desc)
        elif changed:  # new rate or scale: time expectations start again
            track.set(desc)
        return DescriptorEvent(desc, changed)

    def _samples(self, frame: Frame) -> SampleBlock | None:
        st = self.stats
        track = self._tracks.get(frame.stream)
        if track is None:
            st.unknown_stream += 1
            return None
        desc = track.desc
        if frame.format != desc.format or frame.channels != track.channels:
            st.descriptor_mismatch += 1
            return None
        count = frame.count
        frame_us = count * track.us_per_sample
        if frame_us > self._longest_frame_us:
            self._longest_frame_us = frame_us
        t = self.unwrap(frame.t_us)
        if t < self._ref - max(2_000_000, 1.5 * self._longest_frame_us):
            self.device_reset(frame.t_us, "device time went back")
            t = self.unwrap(frame.t_us)
        flags = 0
        gap_s = 0.0
        seq = frame.seq
        if track.seq >= 0:
            half_sample_us = 0.5 * track.us_per_sample
            dt = t - track.next_us
            missing = (seq - track.seq - 1) & 0xFFFF
            if dt < -half_sample_us:
                self.device_reset(frame.t_us, f"stream '{desc.name}' time went back {-dt / 1e6:.3f} s")
                t = self.unwrap(frame.t_us)
            elif missing or dt > half_sample_us:
                flags = FLAG_GAP
                gap_s = dt / 1e6
                st.seq_gaps += 1
                st.missing_frames += missing
                st.gap_s_total += gap_s
                st.last_gap_s = gap_s
                st.last_gap_stream = desc.name
                log.log(logging.WARNING if gap_s >= 1.0 else logging.DEBUG,
                        "serial: stream '%s' gap of %.3f s (%d frame(s) missing)", desc.name, gap_s, missing)
        if track.reset_pending:
            flags |= FLAG_RESET | FLAG_GAP
            track.reset_pending = False
        track.seq = seq
        track.next_us = t + frame_us
        st.sample_frames += 1
        samples = np.frombuffer(frame.payload, dtype=track.dtype).astype(np.float32).reshape(count, track.channels)
        samples *= track.scale
        if track.offset is not None:
            samples += track.offset
        return SampleBlock(desc.name, frame.stream, seq, t, desc.rate_hz, samples, flags, gap_s, self.boot)


__all__ = ["AckEvent", "DescriptorEvent", "DeviceSession", "Event", "InfoEvent", "PongEvent", "SampleBlock",
           "SessionStats"]
