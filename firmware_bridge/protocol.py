"""The edgemer wire protocol, version 1: constants, message layouts and the Python encoder.

Every message is one frame (see ``firmware_bridge/PROTOCOL.md`` for the byte-by-byte
description and worked examples)::

    wire   = 0x00  COBS(frame)  0x00            leading and trailing delimiter
    frame  = header(12) payload(0..240) crc(2)  at most 254 bytes before COBS
    header = version u8 | type u8 | stream u8 | format u8 | seq u16 | t_us u32 | channels u8 | count u8

Multi-byte header and payload fields are little-endian; the CRC-16/CCITT-FALSE over
header and payload is sent big-endian (most significant byte first), so the CRC of a
whole intact frame is 0. ``t_us`` is the device clock in µs (wraps at 2**32, about
71.6 minutes); ``seq`` counts each stream's sample frames (wraps at 2**16).

Values on the wire are raw integers (or float32); a stream's descriptor gives the
physical value as ``raw * scale + offset`` in the descriptor's unit.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from edgemer.errors import ConfigError
from edgemer.firmware_bridge.codec import Codec, load_codec

VERSION = 1
"""Protocol version carried in byte 0 of every frame."""
HEADER = struct.Struct("<BBBBHIBB")
HEADER_SIZE = HEADER.size  # 12 bytes
CRC_SIZE = 2
MAX_FRAME = 254
"""Largest frame before COBS (header + payload + CRC), bytes; COBS then adds exactly one byte."""
MAX_PAYLOAD = MAX_FRAME - HEADER_SIZE - CRC_SIZE  # 240 bytes
MAX_ENCODED = MAX_FRAME + 1
"""Largest COBS-encoded frame (between delimiters), bytes."""
MAX_WIRE = MAX_ENCODED + 2
"""Largest frame on the wire including both delimiters, bytes."""
MIN_FRAME = HEADER_SIZE + CRC_SIZE
NO_STREAM = 0xFF
"""Stream id of messages that belong to no stream; in START/STOP it means all streams."""
MAX_NAME = 16
"""Longest stream name, unit, device name or firmware string, bytes (ASCII)."""


class MsgType(IntEnum):
    """Message types: device -> host below 0x80, host -> device from 0x80."""

    SAMPLES = 0x01
    DESCRIPTOR = 0x02
    INFO = 0x03
    PONG = 0x04
    ACK = 0x05
    HELLO = 0x81
    START = 0x82
    STOP = 0x83
    SET_RATE = 0x84
    PING = 0x85


DEVICE_TYPES = frozenset(t for t in MsgType if t < 0x80)
HOST_TYPES = frozenset(t for t in MsgType if t >= 0x80)


class SampleFormat(IntEnum):
    """Sample encodings (little-endian), byte 3 of a SAMPLES or DESCRIPTOR header."""

    I8 = 1
    U8 = 2
    I16 = 3
    U16 = 4
    I32 = 5
    F32 = 6


FORMAT_DTYPE: dict[int, np.dtype] = {
    SampleFormat.I8: np.dtype("i1"), SampleFormat.U8: np.dtype("u1"),
    SampleFormat.I16: np.dtype("<i2"), SampleFormat.U16: np.dtype("<u2"),
    SampleFormat.I32: np.dtype("<i4"), SampleFormat.F32: np.dtype("<f4"),
}
FORMAT_WIDTH: dict[int, int] = {int(k): v.itemsize for k, v in FORMAT_DTYPE.items()}
_INT_RANGE = {int(k): (int(np.iinfo(v).min), int(np.iinfo(v).max)) for k, v in FORMAT_DTYPE.items() if v.kind in "iu"}


class AckStatus(IntEnum):
    """Status byte of an ACK."""

    OK = 0
    UNKNOWN_COMMAND = 1
    UNKNOWN_STREAM = 2
    BAD_ARGUMENT = 3


class InfoReason(IntEnum):
    """Why the device sent INFO: a HELLO asked, or it has just booted (sequence and clock restarted)."""

    HELLO = 0
    BOOT = 1


class Frame(NamedTuple):
    """One decoded, CRC-checked frame. ``payload`` excludes header and CRC."""

    type: int
    stream: int
    format: int
    seq: int
    t_us: int
    channels: int
    count: int
    payload: bytes


_F32 = struct.Struct("<f")
_U32 = struct.Struct("<I")
_DESC_FIXED = struct.Struct("<fff")
_ACK = struct.Struct("<BBH")


def _check_text(value: str, field: str, allow_empty: bool = False) -> bytes:
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise ConfigError(f"{field} must be ASCII, got {value!r}") from None
    if len(raw) > MAX_NAME or (not raw and not allow_empty) or b" " in raw or b"\x00" in raw:
        raise ConfigError(f"{field} must be 1..{MAX_NAME} ASCII characters without spaces, got {value!r}")
    return raw


@dataclass(frozen=True)
class StreamDescriptor:
    """What a device announces about one stream (DESCRIPTOR payload).

    Attributes
    ----------
    stream_id: 0..254, the id its SAMPLES frames carry.
    name: stream name, e.g. ``"eda"`` (ASCII, at most 16 bytes).
    rate_hz: sample rate in Hz (float32 on the wire).
    channels: values per sample, 1..255.
    unit: physical unit after scaling, e.g. ``"uS"`` (ASCII, at most 16 bytes).
    scale, offset: physical value = ``raw * scale + offset`` (float32 on the wire).
    format: :class:`SampleFormat` of the raw values.
    """

    stream_id: int
    name: str
    rate_hz: float
    channels: int
    unit: str
    scale: float
    offset: float = 0.0
    format: int = SampleFormat.I16

    def __post_init__(self) -> None:
        if not 0 <= self.stream_id < NO_STREAM:
            raise ConfigError(f"StreamDescriptor.stream_id must be 0..254, got {self.stream_id}")
        _check_text(self.name, "StreamDescriptor.name")
        _check_text(self.unit, "StreamDescriptor.unit", allow_empty=True)
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ConfigError(f"StreamDescriptor.rate_hz must be > 0 Hz, got {self.rate_hz!r} for '{self.name}'")
        if not 1 <= self.channels <= 255:
            raise ConfigError(f"StreamDescriptor.channels must be 1..255, got {self.channels} for '{self.name}'")
        if self.format not in FORMAT_WIDTH:
            raise ConfigError(f"StreamDescriptor.format must be one of {sorted(FORMAT_WIDTH)}, got {self.format}")
        if not (math.isfinite(self.scale) and self.scale != 0 and math.isfinite(self.offset)):
            raise ConfigError(f"StreamDescriptor.scale must be finite and non-zero and offset finite, "
                              f"got {self.scale!r}, {self.offset!r} for '{self.name}'")

    @property
    def width(self) -> int:
        """Bytes per raw value."""
        return FORMAT_WIDTH[self.format]

    @property
    def dtype(self) -> np.dtype:
        return FORMAT_DTYPE[self.format]

    def max_count(self) -> int:
        """Most samples one SAMPLES frame can carry."""
        return min(255, MAX_PAYLOAD // (self.width * self.channels))

    def payload(self) -> bytes:
        name, unit = self.name.encode("ascii"), self.unit.encode("ascii")
        return (_DESC_FIXED.pack(self.rate_hz, self.scale, self.offset) + bytes([len(name)]) + name
                + bytes([len(unit)]) + unit)

    @classmethod
    def from_frame(cls, frame: Frame) -> "StreamDescriptor":
        """Parse a DESCRIPTOR frame whose payload layout :func:`payload_ok` has already checked."""
        rate, scale, offset = _DESC_FIXED.unpack_from(frame.payload, 0)
        p = frame.payload
        n = p[12]
        name = p[13:13 + n].decode("ascii", "replace")
        m = p[13 + n]
        unit = p[14 + n:14 + n + m].decode("ascii", "replace")
        return cls(stream_id=frame.stream, name=name, rate_hz=rate, channels=frame.channels, unit=unit,
                   scale=scale, offset=offset, format=frame.format)

    def same_as(self, other: "StreamDescriptor") -> bool:
        """Equal on the wire (float32 comparison)."""
        return self.payload() == other.payload() and (self.stream_id, self.channels, self.format) == (
            other.stream_id, other.channels, other.format)

    def quantise(self, values: np.ndarray) -> np.ndarray:
        """Physical values ``[n, channels]`` -> raw values in :attr:`dtype` (rounded, clipped to range)."""
        raw = (np.asarray(values, np.float64) - self.offset) / self.scale
        if self.format == SampleFormat.F32:
            return raw.astype("<f4")
        lo, hi = _INT_RANGE[self.format]
        return np.rint(raw).clip(lo, hi).astype(self.dtype)

    def to_physical(self, raw: np.ndarray) -> np.ndarray:
        """Raw values -> float32 physical values."""
        out = raw.astype(np.float32)
        out *= np.float32(self.scale)
        if self.offset:
            out += np.float32(self.offset)
        return out


@dataclass(frozen=True)
class DeviceInfo:
    """INFO payload: why it was sent, how many streams the device has, its name and firmware version."""

    reason: int
    n_streams: int
    name: str
    firmware: str

    def __post_init__(self) -> None:
        if self.reason not in (InfoReason.HELLO, InfoReason.BOOT):
            raise ConfigError(f"DeviceInfo.reason must be 0 (hello) or 1 (boot), got {self.reason}")
        if not 0 <= self.n_streams <= 255:
            raise ConfigError(f"DeviceInfo.n_streams must be 0..255, got {self.n_streams}")
        _check_text(self.name, "DeviceInfo.name")
        _check_text(self.firmware, "DeviceInfo.firmware")

    def payload(self) -> bytes:
        name, fw = self.name.encode("ascii"), self.firmware.encode("ascii")
        return bytes([self.reason, self.n_streams, len(name)]) + name + bytes([len(fw)]) + fw

    @classmethod
    def from_frame(cls, frame: Frame) -> "DeviceInfo":
        p = frame.payload
        n = p[2]
        m = p[3 + n]
        return cls(reason=p[0], n_streams=p[1], name=p[3:3 + n].decode("ascii", "replace"),
                   firmware=p[4 + n:4 + n + m].decode("ascii", "replace"))


@dataclass(frozen=True)
class Command:
    """A host -> device command as the device sees it (HELLO, START, STOP, SET_RATE, PING)."""

    type: int
    stream: int = NO_STREAM
    seq: int = 0
    t_us: int = 0
    rate_hz: float | None = None
    token: int | None = None

    @classmethod
    def from_frame(cls, frame: Frame) -> "Command":
        rate = _F32.unpack(frame.payload)[0] if frame.type == MsgType.SET_RATE else None
        token = _U32.unpack(frame.payload)[0] if frame.type == MsgType.PING else None
        return cls(frame.type, frame.stream, frame.seq, frame.t_us, rate, token)


def parse_pong(frame: Frame) -> int:
    """Token of a PONG (its header ``t_us`` is the device time the PING was received)."""
    return _U32.unpack(frame.payload)[0]


def parse_ack(frame: Frame) -> tuple[int, int, int]:
    """``(command type, AckStatus, command seq)`` of an ACK."""
    return _ACK.unpack(frame.payload)


# -- structural checks shared by every decoder ---------------------------------------------------
def payload_ok(ftype: int, fmt: int, channels: int, count: int, payload: bytes) -> bool:
    """True if the payload length (and layout) matches what the header announces for this type."""
    n = len(payload)
    if ftype == MsgType.SAMPLES:
        width = FORMAT_WIDTH.get(fmt)
        return width is not None and channels > 0 and count > 0 and n == width * channels * count
    if ftype == MsgType.DESCRIPTOR:
        if fmt not in FORMAT_WIDTH or channels == 0 or count != 0 or n < 14:
            return False
        name_len = payload[12]
        if name_len == 0 or name_len > MAX_NAME or n < 14 + name_len:
            return False
        unit_len = payload[13 + name_len]
        return unit_len <= MAX_NAME and n == 14 + name_len + unit_len
    if ftype == MsgType.INFO:
        if n < 4 or payload[0] > InfoReason.BOOT:
            return False
        name_len = payload[2]
        if name_len > MAX_NAME or n < 4 + name_len:
            return False
        return payload[3 + name_len] <= MAX_NAME and n == 4 + name_len + payload[3 + name_len]
    if ftype in (MsgType.PONG, MsgType.ACK, MsgType.SET_RATE, MsgType.PING):
        return n == 4
    return n == 0  # HELLO, START, STOP


# -- encoder ----------------------------------------------------------------------------------------
def _check_u(value: int, bits: int, field: str) -> int:
    if not 0 <= value < (1 << bits):
        raise ConfigError(f"{field} must be 0..{(1 << bits) - 1}, got {value}")
    return value


def raw_frame(ftype: int, stream: int = NO_STREAM, seq: int = 0, t_us: int = 0, payload: bytes = b"",
              fmt: int = 0, channels: int = 0, count: int = 0, codec: Codec | None = None) -> bytes:
    """Header + payload + CRC (big-endian), before COBS. Field ranges are checked."""
    codec = codec or load_codec()
    _check_u(ftype, 8, "type")
    _check_u(stream, 8, "stream")
    _check_u(fmt, 8, "format")
    _check_u(channels, 8, "channels")
    _check_u(count, 8, "count")
    if len(payload) > MAX_PAYLOAD:
        raise ConfigError(f"payload must be at most {MAX_PAYLOAD} bytes, got {len(payload)}")
    body = HEADER.pack(VERSION, ftype, stream, fmt, seq & 0xFFFF, t_us & 0xFFFFFFFF, channels, count) + payload
    return body + codec.crc16(body).to_bytes(2, "big")


def wire(frame: bytes, codec: Codec | None = None) -> bytes:
    """A raw frame as it goes on the wire: 0x00, COBS(frame), 0x00."""
    codec = codec or load_codec()
    return b"\x00" + codec.cobs_encode(frame) + b"\x00"


def encode_frame(ftype: int, stream: int = NO_STREAM, seq: int = 0, t_us: int = 0, payload: bytes = b"",
                 fmt: int = 0, channels: int = 0, count: int = 0, codec: Codec | None = None) -> bytes:
    """One frame, ready to write to the port (both delimiters included)."""
    codec = codec or load_codec()
    return wire(raw_frame(ftype, stream, seq, t_us, payload, fmt, channels, count, codec), codec)


def encode_samples(desc: StreamDescriptor, seq: int, t_us: int, raw: np.ndarray, codec: Codec | None = None) -> bytes:
    """A SAMPLES frame of ``raw`` values ``[count, channels]`` (already in ``desc.dtype``; see
    :meth:`StreamDescriptor.quantise`). ``t_us`` is the device time of the first sample."""
    raw = np.asarray(raw)
    if raw.ndim != 2 or raw.shape[1] != desc.channels or not 1 <= raw.shape[0] <= desc.max_count():
        raise ConfigError(f"samples for '{desc.name}' must be [1..{desc.max_count()}, {desc.channels}], "
                          f"got {raw.shape}")
    payload = np.ascontiguousarray(raw, dtype=desc.dtype).tobytes()
    return encode_frame(MsgType.SAMPLES, desc.stream_id, seq, t_us, payload, desc.format, desc.channels,
                        raw.shape[0], codec)


def encode_descriptor(desc: StreamDescriptor, seq: int = 0, t_us: int = 0, codec: Codec | None = None) -> bytes:
    return encode_frame(MsgType.DESCRIPTOR, desc.stream_id, seq, t_us, desc.payload(), desc.format,
                        desc.channels, 0, codec)


def encode_info(info: DeviceInfo, seq: int = 0, t_us: int = 0, codec: Codec | None = None) -> bytes:
    return encode_frame(MsgType.INFO, NO_STREAM, seq, t_us, info.payload(), codec=codec)


def encode_pong(token: int, seq: int = 0, t_us: int = 0, codec: Codec | None = None) -> bytes:
    """PONG: ``t_us`` must be the device time at which the PING arrived."""
    return encode_frame(MsgType.PONG, NO_STREAM, seq, t_us, _U32.pack(_check_u(token, 32, "token")), codec=codec)


def encode_ack(stream: int, command: int, status: int, command_seq: int, seq: int = 0, t_us: int = 0,
               codec: Codec | None = None) -> bytes:
    return encode_frame(MsgType.ACK, stream, seq, t_us, _ACK.pack(command, status, command_seq & 0xFFFF),
                        codec=codec)


def encode_command(command: Command, codec: Codec | None = None) -> bytes:
    """A host -> device command frame."""
    if command.type not in HOST_TYPES:
        raise ConfigError(f"Command.type must be one of {sorted(int(t) for t in HOST_TYPES)}, got {command.type}")
    payload = b""
    if command.type == MsgType.SET_RATE:
        if command.rate_hz is None or not (math.isfinite(command.rate_hz) and command.rate_hz > 0):
            raise ConfigError(f"SET_RATE needs rate_hz > 0, got {command.rate_hz!r}")
        payload = _F32.pack(command.rate_hz)
    elif command.type == MsgType.PING:
        payload = _U32.pack(_check_u(command.token or 0, 32, "token"))
    return encode_frame(command.type, command.stream, command.seq, command.t_us, payload, codec=codec)


__all__ = [
    "AckStatus", "Command", "DEVICE_TYPES", "DeviceInfo", "FORMAT_DTYPE", "FORMAT_WIDTH", "Frame", "HEADER",
    "HEADER_SIZE", "HOST_TYPES", "InfoReason", "MAX_ENCODED", "MAX_FRAME", "MAX_PAYLOAD", "MAX_WIRE", "MIN_FRAME",
    "MsgType", "NO_STREAM", "SampleFormat", "StreamDescriptor", "VERSION", "encode_ack", "encode_command",
    "encode_descriptor", "encode_frame", "encode_info", "encode_pong", "encode_samples", "parse_ack",
    "parse_pong", "payload_ok", "raw_frame", "wire",
]
