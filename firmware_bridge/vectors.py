"""The shared test vectors: one text file that the Python and the C code are both tested against.

File: ``firmware_bridge/c/test_vectors.txt``. One vector per line, ``#`` starts a comment::

    KIND NAME key=value key=value ...

Kinds:

``crc``    ``data=HEX crc=HEX``: CRC-16/CCITT-FALSE of ``data``.
``cobs``   ``data=HEX encoded=HEX``: COBS encoding (examples from the COBS paper).
``frame``  ``type=NAME`` plus the message's fields, ``raw=HEX`` (header + payload + CRC)
           and ``wire=HEX`` (with both delimiters). Encoders must produce ``wire`` from
           the fields; decoders must recover the fields from ``wire``.
``reject`` ``wire=HEX error=REASON``: decoders must reject it for that reason (one of
           ``oversize cobs short crc version type length``, the order checks run in).

Hex is lower-case without separators; lists (``values``) are comma-separated decimals,
sample after sample, channel after channel. The file is generated from
:data:`FRAME_SPECS` with the Python encoder (``python3 -m edgemer.firmware_bridge.vectors
--write``) and committed; the tests check that both encoders still reproduce it and that
the worked examples in PROTOCOL.md quote it.
"""
from __future__ import annotations

import argparse
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from edgemer.firmware_bridge.codec import load_codec
from edgemer.firmware_bridge.protocol import (HEADER, MAX_ENCODED, VERSION, Command, DeviceInfo, MsgType, SampleFormat,
                                              StreamDescriptor, encode_ack, encode_command, encode_descriptor,
                                              encode_info, encode_pong, encode_samples, raw_frame)

VECTOR_FILE = Path(__file__).resolve().parent / "c" / "test_vectors.txt"

TYPE_NAMES = {"samples": MsgType.SAMPLES, "descriptor": MsgType.DESCRIPTOR, "info": MsgType.INFO,
              "pong": MsgType.PONG, "ack": MsgType.ACK, "hello": MsgType.HELLO, "start": MsgType.START,
              "stop": MsgType.STOP, "set_rate": MsgType.SET_RATE, "ping": MsgType.PING}
FORMAT_NAMES = {"i8": SampleFormat.I8, "u8": SampleFormat.U8, "i16": SampleFormat.I16, "u16": SampleFormat.U16,
                "i32": SampleFormat.I32, "f32": SampleFormat.F32}

CRC_SPECS = [("check", b"123456789"), ("empty", b""), ("header", bytes.fromhex("0101000407004042" "0f000101"))]

COBS_SPECS = [  # (name, data, encoded): the worked examples of Cheshire & Baker's COBS paper
    ("empty", b"", b"\x01"),
    ("zero", b"\x00", b"\x01\x01"),
    ("two-zeros", b"\x00\x00", b"\x01\x01\x01"),
    ("zero-byte-zero", b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    ("mixed", bytes.fromhex("11220033"), bytes.fromhex("0311220233")),
    ("no-zero", bytes.fromhex("11223344"), bytes.fromhex("0511223344")),
    ("trailing-zeros", bytes.fromhex("11000000"), bytes.fromhex("0211010101")),
    ("254-nonzero", bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
    ("zero-then-254", b"\x00" + bytes(range(1, 255)), b"\x01\xff" + bytes(range(1, 255))),
    ("255-nonzero", bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    ("254-then-zero", bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    ("253-zero-one", bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
]

FRAME_SPECS: list[tuple[str, dict[str, str]]] = [
    ("samples-eda", dict(type="samples", stream="0", format="u16", seq="7", t_us="1000000", channels="1", count="1",
                         values="3000")),
    ("samples-bvp-wrap", dict(type="samples", stream="1", format="i16", seq="258", t_us="4294967000", channels="1",
                              count="4", values="-1234,0,567,32767")),
    ("samples-acc", dict(type="samples", stream="3", format="i8", seq="65535", t_us="123456789", channels="3",
                         count="2", values="1,-2,64,0,-128,127")),
    ("samples-condition", dict(type="samples", stream="4", format="u8", seq="0", t_us="0", channels="1", count="1",
                               values="2")),
    ("samples-i32", dict(type="samples", stream="6", format="i32", seq="1", t_us="65536", channels="1", count="2",
                         values="-100000,2147483647")),
    ("samples-f32", dict(type="samples", stream="5", format="f32", seq="1", t_us="0", channels="2", count="1",
                         values="1.5,-0.25")),
    ("descriptor-eda", dict(type="descriptor", stream="0", seq="1", t_us="0", format="u16", channels="1",
                            rate_hz="4", scale="0.001", offset="0", name="eda", unit="uS")),
    ("descriptor-acc", dict(type="descriptor", stream="3", seq="4", t_us="0", format="i8", channels="3",
                            rate_hz="32", scale="1", offset="0", name="acc", unit="g/64")),
    ("descriptor-temp", dict(type="descriptor", stream="2", seq="3", t_us="12", format="i16", channels="1",
                             rate_hz="4", scale="0.01", offset="-10", name="temp", unit="degC")),
    ("info-boot", dict(type="info", seq="0", t_us="0", reason="1", n_streams="5", name="edgemer-wrist",
                       firmware="emu-1.0")),
    ("pong", dict(type="pong", seq="9", t_us="5000000", token="305419896")),
    ("ack-set-rate", dict(type="ack", stream="1", seq="10", t_us="5000100", command="132", status="0",
                          command_seq="3")),
    ("ack-unknown-stream", dict(type="ack", stream="9", seq="11", t_us="5000200", command="130", status="2",
                                command_seq="4")),
    ("hello", dict(type="hello", stream="255", seq="1", t_us="0")),
    ("start-all", dict(type="start", stream="255", seq="2", t_us="0")),
    ("stop-bvp", dict(type="stop", stream="1", seq="3", t_us="0")),
    ("set-rate-bvp", dict(type="set_rate", stream="1", seq="4", t_us="0", rate_hz="32")),
    ("ping", dict(type="ping", stream="255", seq="5", t_us="0", token="7")),
]


@dataclass(frozen=True)
class Vector:
    kind: str
    name: str
    fields: Mapping[str, str]

    def hex(self, key: str) -> bytes:
        return bytes.fromhex(self.fields[key])

    def line(self) -> str:
        return " ".join([self.kind, self.name] + [f"{k}={v}" for k, v in self.fields.items()])


def values_array(fields: Mapping[str, str]) -> np.ndarray:
    """The ``values`` of a samples vector as raw values ``[count, channels]`` in the format's dtype."""
    desc = _descriptor_for(fields)
    nums = [float(v) if desc.format == SampleFormat.F32 else int(v) for v in fields["values"].split(",")]
    return np.array(nums, dtype=desc.dtype).reshape(int(fields["count"]), int(fields["channels"]))


def _descriptor_for(f: Mapping[str, str]) -> StreamDescriptor:
    return StreamDescriptor(int(f["stream"]), f.get("name", "x"), float(f.get("rate_hz", 1)), int(f["channels"]),
                            f.get("unit", ""), float(f.get("scale", 1)), float(f.get("offset", 0)),
                            FORMAT_NAMES[f["format"]])


def encode_vector(f: Mapping[str, str]) -> bytes:
    """The wire bytes of a frame vector, made by the Python encoder from its fields."""
    codec = load_codec()
    kind = f["type"]
    seq, t_us = int(f["seq"]), int(f["t_us"])
    if kind == "samples":
        return encode_samples(_descriptor_for(f), seq, t_us, values_array(f), codec)
    if kind == "descriptor":
        return encode_descriptor(_descriptor_for(f), seq, t_us, codec)
    if kind == "info":
        info = DeviceInfo(int(f["reason"]), int(f["n_streams"]), f["name"], f["firmware"])
        return encode_info(info, seq, t_us, codec)
    if kind == "pong":
        return encode_pong(int(f["token"]), seq, t_us, codec)
    if kind == "ack":
        return encode_ack(int(f["stream"]), int(f["command"]), int(f["status"]), int(f["command_seq"]), seq, t_us,
                          codec)
    rate = float(f["rate_hz"]) if "rate_hz" in f else None
    token = int(f["token"]) if "token" in f else None
    return encode_command(Command(TYPE_NAMES[kind], int(f["stream"]), seq, t_us, rate, token), codec)


def _reject_specs() -> list[tuple[str, bytes, str]]:
    """Frames that must be rejected, each built to fail exactly one check."""
    codec = load_codec()

    def framed(raw: bytes) -> bytes:
        return b"\x00" + codec.cobs_encode(raw) + b"\x00"

    def with_crc(body: bytes) -> bytes:
        return body + codec.crc16(body).to_bytes(2, "big")

    good = raw_frame(MsgType.SAMPLES, 0, 7, 1_000_000, struct.pack("<H", 3000), SampleFormat.U16, 1, 1, codec)
    bvp = raw_frame(MsgType.SAMPLES, 1, 258, 4294967000, struct.pack("<4h", -1234, 0, 567, 32767), SampleFormat.I16,
                    1, 4, codec)
    flipped = bytearray(good)
    flipped[12] ^= 0x10
    return [
        ("oversize", b"\x00" + b"\x01" * (MAX_ENCODED + 1) + b"\x00", "oversize"),
        ("cobs-block-past-end", bytes.fromhex("00 05 11 22 00"), "cobs"),
        ("short", framed(with_crc(bytes([VERSION, 0x01, 0, 4, 7, 0, 0, 0]))), "short"),
        ("crc-bit-flip", framed(bytes(flipped)), "crc"),
        ("truncated", framed(bvp[:-3]), "crc"),
        ("version-2", framed(with_crc(bytes([2]) + good[1:-2])), "version"),
        ("unknown-type", framed(with_crc(HEADER.pack(VERSION, 0x07, 0, 0, 1, 0, 0, 0))), "type"),
        ("count-mismatch", framed(with_crc(HEADER.pack(VERSION, 0x01, 0, SampleFormat.U16, 7, 1_000_000, 1, 2)
                                           + struct.pack("<H", 3000))), "length"),
        ("descriptor-name-overrun", framed(with_crc(HEADER.pack(VERSION, 0x02, 0, SampleFormat.U16, 1, 0, 1, 0)
                                                    + struct.pack("<fff", 4, 0.001, 0) + bytes([9]) + b"eda"
                                                    + bytes([2]) + b"uS")), "length"),
        ("hello-with-payload", framed(with_crc(HEADER.pack(VERSION, 0x81, 0xFF, 0, 1, 0, 0, 0) + b"\x01")), "length"),
    ]


def build_vectors() -> list[Vector]:
    """All vectors, computed with the Python encoder and the codec libraries."""
    codec = load_codec()
    out = [Vector("crc", name, {"data": data.hex(), "crc": f"{codec.crc16(data):04x}"}) for name, data in CRC_SPECS]
    out += [Vector("cobs", name, {"data": data.hex(), "encoded": enc.hex()}) for name, data, enc in COBS_SPECS]
    for name, fields in FRAME_SPECS:
        wire = encode_vector(fields)
        raw = codec.cobs_decode(wire[1:-1])
        out.append(Vector("frame", name, {**fields, "raw": raw.hex(), "wire": wire.hex()}))
    out += [Vector("reject", name, {"wire": wire.hex(), "error": error}) for name, wire, error in _reject_specs()]
    return out


HEADER_TEXT = """\
# edgemer wire protocol v1 - shared test vectors (Python: edgemer.firmware_bridge.vectors, C: c/test_wire.c).
# Generated by: python3 -m edgemer.firmware_bridge.vectors --write. Format: see that module's docstring.
# KIND NAME key=value ...
"""


def render(vectors: list[Vector]) -> str:
    return HEADER_TEXT + "".join(v.line() + "\n" for v in vectors)


def load_vectors(path: str | Path = VECTOR_FILE) -> list[Vector]:
    out = []
    for line in Path(path).read_text(encoding="ascii").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, name, *pairs = line.split()
        out.append(Vector(kind, name, dict(p.split("=", 1) for p in pairs)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m edgemer.firmware_bridge.vectors",
                                     description="Write or check the shared wire-protocol test vectors.")
    parser.add_argument("--write", action="store_true", help=f"(re)write {VECTOR_FILE}")
    args = parser.parse_args(argv)
    text = render(build_vectors())
    if args.write:
        VECTOR_FILE.write_text(text, encoding="ascii")
        print(f"wrote {VECTOR_FILE}")
        return 0
    same = VECTOR_FILE.is_file() and VECTOR_FILE.read_text(encoding="ascii") == text
    print(f"{VECTOR_FILE}: {'up to date' if same else 'DIFFERS from the Python encoder'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
