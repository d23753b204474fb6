"""Wire protocol v1: the Python side against the shared vectors and PROTOCOL.md."""
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from edgemer.errors import ConfigError
from edgemer.firmware_bridge import protocol as P
from edgemer.firmware_bridge.codec import CRC_CHECK, load_codec
from edgemer.firmware_bridge.framing import REJECT_REASONS, FrameDecoder
from edgemer.firmware_bridge.vectors import (TYPE_NAMES, VECTOR_FILE, build_vectors, encode_vector, load_vectors,
                                             render, values_array)

PROTOCOL_MD = Path(P.__file__).with_name("PROTOCOL.md")
VECTORS = load_vectors()


def by_kind(kind):
    return [pytest.param(v, id=v.name) for v in VECTORS if v.kind == kind]


def test_vector_file_is_what_the_python_encoder_writes():
    assert VECTOR_FILE.read_text(encoding="ascii") == render(build_vectors()), \
        "regenerate with: python3 -m edgemer.firmware_bridge.vectors --write"
    kinds = {v.kind for v in VECTORS}
    assert kinds == {"crc", "cobs", "frame", "reject"}
    assert {v.fields["type"] for v in VECTORS if v.kind == "frame"} == set(TYPE_NAMES)
    assert {v.fields["error"] for v in VECTORS if v.kind == "reject"} == set(REJECT_REASONS)


def test_crc_is_ccitt_false():
    codec = load_codec()
    assert codec.crc16(b"123456789") == CRC_CHECK == 0x29B1
    assert codec.crc16(b"") == 0xFFFF


@pytest.mark.parametrize("v", by_kind("crc"))
def test_crc_vectors(v):
    assert load_codec().crc16(v.hex("data")) == int(v.fields["crc"], 16)


@pytest.mark.parametrize("v", by_kind("cobs"))
def test_cobs_vectors_match_the_paper_examples(v):
    codec = load_codec()
    assert codec.cobs_encode(v.hex("data")) == v.hex("encoded")
    assert codec.cobs_decode(v.hex("encoded")) == v.hex("data")


@pytest.mark.parametrize("v", by_kind("frame"))
def test_frame_vectors_encode_and_decode(v):
    f = v.fields
    wire = v.hex("wire")
    assert encode_vector(f) == wire
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    assert load_codec().cobs_decode(wire[1:-1]) == v.hex("raw")
    decoder = FrameDecoder(accept=TYPE_NAMES.values())
    frames = decoder.feed(wire)
    assert len(frames) == 1 and decoder.stats.bad_frames == 0
    fr = frames[0]
    assert fr.type == TYPE_NAMES[f["type"]]
    assert (fr.seq, fr.t_us) == (int(f["seq"]), int(f["t_us"]))
    if "stream" in f:
        assert fr.stream == int(f["stream"])
    if f["type"] == "samples":
        desc = P.StreamDescriptor(fr.stream, "x", 1.0, fr.channels, "", 1.0, 0.0, fr.format)
        raw = np.frombuffer(fr.payload, desc.dtype).reshape(fr.count, fr.channels)
        np.testing.assert_array_equal(raw, values_array(f))
    elif f["type"] == "descriptor":
        d = P.StreamDescriptor.from_frame(fr)
        assert (d.name, d.unit, d.rate_hz, d.channels) == (f["name"], f["unit"], float(f["rate_hz"]),
                                                           int(f["channels"]))
        assert d.scale == pytest.approx(float(f["scale"]), rel=1e-7)
    elif f["type"] == "info":
        info = P.DeviceInfo.from_frame(fr)
        assert (info.reason, info.name, info.firmware) == (int(f["reason"]), f["name"], f["firmware"])
    elif f["type"] in ("set_rate", "ping"):
        cmd = P.Command.from_frame(fr)
        assert cmd.rate_hz == (float(f["rate_hz"]) if "rate_hz" in f else None)
        assert cmd.token == (int(f["token"]) if "token" in f else None)


@pytest.mark.parametrize("v", by_kind("reject"))
def test_reject_vectors_are_counted_for_their_reason(v):
    decoder = FrameDecoder(accept=TYPE_NAMES.values())
    wire = v.hex("wire")
    assert decoder.feed(wire) == []
    assert decoder.last_reject == v.fields["error"]
    assert decoder.check(wire[1:-1]) == v.fields["error"]
    assert decoder.stats.bad_frames == 1
    assert decoder.stats.bytes_discarded == len(wire) - 2


def test_protocol_md_examples_quote_the_vector_file():
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    vectors = {v.name: v for v in VECTORS}
    blocks = re.findall(r"<!-- vector: (\S+) -->\s*```text\n(.*?)```", text, re.S)
    assert len(blocks) >= 10
    for name, body in blocks:
        assert name in vectors, f"PROTOCOL.md quotes unknown vector '{name}'"
        for line in body.strip().splitlines():
            key, hexes = line.split(None, 1)
            assert bytes.fromhex(hexes) == vectors[name].hex(key), f"PROTOCOL.md example '{name}' {key} differs"
    assert "0x1021" in text and "0xFFFF" in text and "0x29B1" in text and "CRC-16/CCITT-FALSE" in text


def test_frames_are_at_most_254_bytes_and_257_on_the_wire():
    desc = P.StreamDescriptor(1, "bvp", 64.0, 1, "a.u.", 0.01, 0.0, P.SampleFormat.I16)
    assert desc.max_count() == 120
    wire = P.encode_samples(desc, 0, 0, np.full((120, 1), 0x0101, np.int16))
    assert len(wire) == P.MAX_WIRE == 257
    with pytest.raises(ConfigError, match=r"\[1..120, 1\]"):
        P.encode_samples(desc, 0, 0, np.zeros((121, 1), np.int16))


@pytest.mark.parametrize("kwargs,field", [
    (dict(stream_id=255), "stream_id"), (dict(name=""), "name"), (dict(name="a b"), "name"),
    (dict(name="x" * 17), "name"), (dict(rate_hz=0.0), "rate_hz"), (dict(rate_hz=float("nan")), "rate_hz"),
    (dict(channels=0), "channels"), (dict(format=9), "format"), (dict(scale=0.0), "scale"),
])
def test_descriptor_validation_names_the_field(kwargs, field):
    base = dict(stream_id=0, name="eda", rate_hz=4.0, channels=1, unit="uS", scale=0.001)
    with pytest.raises(ConfigError, match=f"StreamDescriptor.{field}"):
        P.StreamDescriptor(**{**base, **kwargs})


def test_quantise_rounds_clips_and_round_trips():
    desc = P.StreamDescriptor(0, "eda", 4.0, 1, "uS", 0.001, 0.0, P.SampleFormat.U16)
    raw = desc.quantise(np.array([[3.0004], [-1.0], [100.0]]))
    np.testing.assert_array_equal(raw[:, 0], [3000, 0, 65535])
    assert desc.to_physical(raw).dtype == np.float32
    np.testing.assert_allclose(desc.to_physical(raw)[:, 0], [3.0, 0.0, 65.535], rtol=1e-6)


def test_payload_length_rules():
    ok = P.payload_ok
    assert ok(P.MsgType.SAMPLES, P.SampleFormat.I16, 3, 2, bytes(12))
    assert not ok(P.MsgType.SAMPLES, P.SampleFormat.I16, 3, 2, bytes(11))
    assert not ok(P.MsgType.SAMPLES, 0, 1, 1, bytes(1))
    assert not ok(P.MsgType.SAMPLES, P.SampleFormat.U8, 1, 0, b"")
    assert ok(P.MsgType.PING, 0, 0, 0, bytes(4)) and not ok(P.MsgType.PING, 0, 0, 0, bytes(3))
    assert ok(P.MsgType.HELLO, 0, 0, 0, b"") and not ok(P.MsgType.START, 0, 0, 0, b"\x00")
    desc = P.StreamDescriptor(0, "eda", 4.0, 1, "uS", 0.001).payload()
    assert ok(P.MsgType.DESCRIPTOR, P.SampleFormat.I16, 1, 0, desc)
    assert not ok(P.MsgType.DESCRIPTOR, P.SampleFormat.I16, 1, 0, desc + b"x")
    assert not ok(P.MsgType.DESCRIPTOR, P.SampleFormat.I16, 1, 1, desc)
    assert not ok(P.MsgType.DESCRIPTOR, P.SampleFormat.I16, 1, 0, desc[:13])


def test_command_encoder_checks_arguments():
    with pytest.raises(ConfigError, match="rate_hz"):
        P.encode_command(P.Command(P.MsgType.SET_RATE, 1, rate_hz=0.0))
    with pytest.raises(ConfigError, match="Command.type"):
        P.encode_command(P.Command(P.MsgType.SAMPLES))
    frame = FrameDecoder(accept=P.HOST_TYPES).feed(P.encode_command(P.Command(P.MsgType.SET_RATE, 1, 9, 0, 32.0)))[0]
    assert P.Command.from_frame(frame) == P.Command(P.MsgType.SET_RATE, 1, 9, 0, 32.0, None)
    assert struct.unpack("<f", frame.payload)[0] == 32.0
