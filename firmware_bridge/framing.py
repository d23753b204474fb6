"""Frame splitting and checking: bytes in, CRC-checked :class:`~edgemer.firmware_bridge.protocol.Frame` out.

:class:`FrameDecoder` only splits and validates; it knows nothing about streams (that is
:mod:`edgemer.firmware_bridge.session`). It splits the byte stream on 0x00 with
``bytes.split`` and decodes each piece with the C-speed ``cobs`` and ``crcmod`` libraries,
so there is no per-byte Python loop. Any bad piece is dropped and counted, and decoding
resumes at the next delimiter: one bad frame never costs the next one.

:class:`FramePacketizer` is the same decoder wrapped as a ``serial.threaded.Protocol``
(``connection_made`` / ``data_received`` / ``connection_lost``), the model being
pyserial's ``Packetizer``.

Checks, in this order (the C parser in ``c/edgemer_wire.c`` uses the same order):
``oversize`` (more than 255 bytes between delimiters), ``cobs`` (not valid COBS),
``short`` (under 14 bytes), ``crc``, ``version``, ``type`` (unknown message type),
``length`` (payload length does not match the header).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Sequence

from edgemer.firmware_bridge.codec import Codec, load_codec
from edgemer.firmware_bridge.protocol import (DEVICE_TYPES, HEADER, HEADER_SIZE, MAX_ENCODED, MIN_FRAME, VERSION,
                                              Frame, MsgType, payload_ok)

log = logging.getLogger(__name__)

_KNOWN_TYPES = frozenset(int(t) for t in MsgType)

REJECT_REASONS = ("oversize", "cobs", "short", "crc", "version", "type", "length")
"""Why a piece between delimiters was rejected, in the order the checks run."""


@dataclass
class LinkStats:
    """Counters of one decoder (bytes and frames)."""

    bytes_received: int = 0
    frames_ok: int = 0
    ignored_frames: int = 0
    """Valid frames of a type this side does not handle (e.g. a loopback echo of host commands)."""
    bytes_discarded: int = 0
    """Bytes thrown away while resynchronising (all bytes of rejected pieces)."""
    oversize: int = 0
    cobs_errors: int = 0
    short_frames: int = 0
    crc_failures: int = 0
    unknown_version: int = 0
    unknown_type: int = 0
    length_mismatch: int = 0

    @property
    def bad_frames(self) -> int:
        """All rejected pieces, whatever the reason."""
        return (self.oversize + self.cobs_errors + self.short_frames + self.crc_failures + self.unknown_version
                + self.unknown_type + self.length_mismatch)

    def as_dict(self) -> dict[str, int]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["bad_frames"] = self.bad_frames
        return d


_COUNTER = {"oversize": "oversize", "cobs": "cobs_errors", "short": "short_frames", "crc": "crc_failures",
            "version": "unknown_version", "type": "unknown_type", "length": "length_mismatch"}


class FrameDecoder:
    """Turns received bytes into checked frames.

    Parameters
    ----------
    accept: message types to return; valid frames of other known types are counted in
        ``stats.ignored_frames``. Default: the device -> host types (the host side).
    codec: COBS/CRC functions (default :func:`~edgemer.firmware_bridge.codec.load_codec`).

    Notes
    -----
    ``feed`` never raises on any input.
    """

    def __init__(self, accept: Iterable[int] = DEVICE_TYPES, codec: Codec | None = None) -> None:
        self.accept = frozenset(int(t) for t in accept)
        self.codec = codec or load_codec()
        self.stats = LinkStats()
        self._tail = b""
        self._skipping = False
        self.last_reject: str | None = None

    def reset(self) -> None:
        """Forget a partial frame (call after a reconnect: the byte stream is discontinuous)."""
        if self._tail:
            self.stats.bytes_discarded += len(self._tail)
        self._tail = b""
        self._skipping = False

    def _reject(self, reason: str, nbytes: int) -> None:
        st = self.stats
        setattr(st, _COUNTER[reason], getattr(st, _COUNTER[reason]) + 1)
        st.bytes_discarded += nbytes
        self.last_reject = reason

    def check(self, encoded: bytes) -> Frame | str:
        """Decode one piece found between delimiters: a :class:`Frame` or the reject reason."""
        if len(encoded) > MAX_ENCODED:
            return "oversize"
        try:
            raw = self.codec.cobs_decode(encoded)
        except self.codec.cobs_error:
            return "cobs"
        if len(raw) < MIN_FRAME:
            return "short"
        if self.codec.crc16(raw):
            return "crc"
        version, ftype, stream, fmt, seq, t_us, channels, count = HEADER.unpack_from(raw)
        if version != VERSION:
            return "version"
        if ftype not in _KNOWN_TYPES:
            return "type"
        payload = raw[HEADER_SIZE:-2]
        if not payload_ok(ftype, fmt, channels, count, payload):
            return "length"
        return Frame(ftype, stream, fmt, seq, t_us, channels, count, payload)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the complete, valid frames they finish (in order)."""
        st = self.stats
        st.bytes_received += len(data)
        parts = (self._tail + data).split(b"\x00") if self._tail else bytes(data).split(b"\x00")
        tail = parts.pop()
        if self._skipping:  # inside an oversize piece: drop everything up to the next delimiter
            if parts:
                st.bytes_discarded += len(parts[0])
                parts[0] = b""
                self._skipping = False
            else:
                st.bytes_discarded += len(tail)
                tail = b""
        if len(tail) > MAX_ENCODED:
            self._reject("oversize", len(tail))
            tail = b""
            self._skipping = True
        self._tail = tail
        out: list[Frame] = []
        decode, crc16, cobs_error, accept = self.codec.cobs_decode, self.codec.crc16, self.codec.cobs_error, self.accept
        unpack_from = HEADER.unpack_from
        for enc in parts:
            if not enc:
                continue  # idle delimiters between frames
            # The common path is inlined (see check() for the same steps, readable).
            if len(enc) > MAX_ENCODED:
                self._reject("oversize", len(enc))
                continue
            try:
                raw = decode(enc)
            except cobs_error:
                self._reject("cobs", len(enc))
                continue
            if len(raw) < MIN_FRAME:
                self._reject("short", len(enc))
                continue
            if crc16(raw):
                self._reject("crc", len(enc))
                continue
            version, ftype, stream, fmt, seq, t_us, channels, count = unpack_from(raw)
            if version != VERSION:
                self._reject("version", len(enc))
                continue
            if ftype not in _KNOWN_TYPES:
                self._reject("type", len(enc))
                continue
            payload = raw[HEADER_SIZE:-2]
            if not payload_ok(ftype, fmt, channels, count, payload):
                self._reject("length", len(enc))
                continue
            if ftype not in accept:
                st.ignored_frames += 1
                continue
            st.frames_ok += 1
            out.append(Frame(ftype, stream, fmt, seq, t_us, channels, count, payload))
        return out


class FramePacketizer:
    """A ``serial.threaded.Protocol`` that decodes frames and hands them on.

    ``on_frames(frames, arrival)`` gets each batch of frames completed by one read,
    with ``arrival`` = ``time.monotonic()`` when the read returned (seconds).
    ``on_lost(exc)`` is called once when the reader thread stops (``exc`` is None on a
    clean close). Exceptions from ``on_frames`` are logged and counted, never allowed
    to stop the reader thread.
    """

    def __init__(self, decoder: FrameDecoder, on_frames: Callable[[Sequence[Frame], float], None],
                 on_lost: Callable[[BaseException | None], None] = lambda exc: None) -> None:
        self.decoder = decoder
        self.on_frames = on_frames
        self.on_lost = on_lost
        self.transport = None
        self.handler_errors = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        arrival = time.monotonic()
        frames = self.decoder.feed(data)
        if frames:
            try:
                self.on_frames(frames, arrival)
            except Exception as exc:  # a bug downstream must not kill the link
                self.handler_errors += 1
                if self.handler_errors == 1:
                    log.exception("serial frame handler failed: %s", exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None
        self.on_lost(exc)


__all__ = ["FrameDecoder", "FramePacketizer", "LinkStats", "REJECT_REASONS"]
