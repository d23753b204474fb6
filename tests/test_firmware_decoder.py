"""The host decoder under corruption: nothing escapes, nothing corrupted is emitted, intact frames survive.

Two kinds of runs: hypothesis (random bytes, random damage to a short valid stream) and one
seeded run of more than 10^5 frames from the emulated device through the fault injector.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemer.firmware_bridge import protocol as P
from edgemer.firmware_bridge.device import DeviceConfig, DeviceModel
from edgemer.firmware_bridge.faults import FaultConfig, FaultInjector
from edgemer.firmware_bridge.framing import FrameDecoder
from edgemer.firmware_bridge.session import DeviceSession, SampleBlock
from edgemer.types import FLAG_GAP, FLAG_RESET


def decode_all(data: bytes, pieces=None):
    """Feed ``data`` (in the given piece sizes) to a fresh decoder + session; return (blocks, decoder, session)."""
    decoder, session = FrameDecoder(), DeviceSession()
    blocks = []
    pos = 0
    for size in (pieces or [len(data)]) + [len(data)]:
        for frame in decoder.feed(data[pos:pos + size]):
            ev = session.handle(frame)
            if isinstance(ev, SampleBlock):
                blocks.append(ev)
        pos += size
        if pos >= len(data):
            break
    return blocks, decoder, session


def _stream(seconds=8.0, **cfg):
    model = DeviceModel(DeviceConfig(autostart=True, record_truth=True, **cfg))
    return model, model.boot_frames[1:], model.due(seconds)  # descriptors (no boot INFO), then sample frames


_MODEL, _DESCRIPTORS, _FRAMES = _stream()
_TRUTH = {(f.stream, f.seq): f for f in _MODEL.truth}


def check_blocks(blocks, truth):
    """Every emitted block equals what the device sent, value for value."""
    for b in blocks:
        sent = truth.get((b.stream, b.seq))
        assert sent is not None, f"emitted a block the device never sent: {b.stream} seq {b.seq}"
        assert b.t_dev_us == sent.t_us and np.array_equal(b.samples, sent.samples), \
            f"emitted corrupted samples for {b.stream} seq {b.seq}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(1, 400), max_size=20))
def test_random_bytes_never_raise_and_chunking_does_not_matter(data, cuts):
    prefix = b"".join(_DESCRIPTORS)
    whole, d1, _ = decode_all(prefix + data)
    split, d2, _ = decode_all(prefix + data, cuts)
    assert [(b.stream, b.seq) for b in whole] == [(b.stream, b.seq) for b in split]
    assert d1.stats.as_dict() == d2.stats.as_dict()


damage = st.lists(st.tuples(st.integers(0, len(_FRAMES) - 1), st.sampled_from(["flip", "drop", "truncate", "garbage",
                                                                                "zero"]),
                            st.integers(0, 10_000), st.binary(min_size=1, max_size=64)), max_size=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=damage)
def test_damaged_frames_never_leak_and_intact_ones_survive(ops):
    wires = [bytearray(f.data) for f in _FRAMES]
    garbage = {}
    damaged = set()
    for idx, op, pos, blob in ops:
        w = wires[idx]
        if op == "garbage":  # before the leading delimiter: the frame itself stays intact
            garbage[idx] = garbage.get(idx, b"") + blob
            continue
        damaged.add(idx)
        i = pos % len(w)
        if op == "flip":
            w[i] ^= 1 << (pos % 8)
        elif op == "zero":
            w[i] = 0
        elif op == "drop":
            del w[i]
        else:
            del w[max(1, i):-1]
    data = b"".join(_DESCRIPTORS) + b"".join(garbage.get(i, b"") + bytes(w) for i, w in enumerate(wires))
    blocks, decoder, session = decode_all(data)
    check_blocks(blocks, _TRUTH)
    got = {(b.stream, b.seq) for b in blocks}
    for i, f in enumerate(_FRAMES):
        if i not in damaged:
            assert f.key[1:] in got, f"intact frame {f.key} was lost"
    assert session.stats.resets == 0


def test_seeded_corruption_run_of_100k_frames():
    model, descriptors, frames = _stream(5000.0, clock_start_us=2 ** 32 - 10_000_000, seed=7)
    assert len(frames) >= 100_000  # 83 minutes of stream: the 32-bit device clock wraps on the way
    inj = FaultInjector(FaultConfig(bit_flips=0.03, dropped_bytes=0.02, truncated=0.02, garbage=0.03, seed=11))
    wire, intact = [], []
    for f in frames:
        wire.append(inj.apply(f.data))
        if not inj.last_damaged:
            intact.append(f.key[1:])
    data = b"".join(descriptors) + b"".join(wire)
    rng = np.random.default_rng(5)
    blocks, decoder, session = decode_all(data, [int(n) for n in rng.integers(1, 4096, len(data) // 1000)])
    check_blocks(blocks, {(f.stream, f.seq): f for f in model.truth})  # no sequence wraps in this run
    got = {(b.stream, b.seq) for b in blocks}
    lost = [k for k in intact if k not in got]
    assert not lost, f"{len(lost)} intact frames lost, e.g. {lost[:3]}"
    damaged = len(frames) - len(intact)
    assert inj.counts.damaged_frames == damaged > 5000 and inj.counts.garbage_bursts > 2000
    st = decoder.stats
    assert st.crc_failures > 0 and st.bad_frames > 0 and st.bytes_discarded > 0
    assert session.stats.resets == 0 and session.stats.seq_gaps > 0
    assert len(blocks) - len(intact) <= damaged  # some damaged frames decode intact (e.g. a lost leading 0x00)


def test_wraparound_is_continuous():
    model, descriptors, frames = _stream(20.0, clock_start_us=2 ** 32 - 5_000_000)
    blocks, decoder, session = decode_all(b"".join(descriptors + [f.data for f in frames]))
    eda = [b.t_dev_us for b in blocks if b.stream == "eda"]
    assert eda[0] < 2 ** 32 < eda[-1]
    assert np.all(np.diff(eda) == 250_000)
    assert session.stats.seq_gaps == 0 and session.stats.resets == 0 and not any(b.flags for b in blocks)


def test_gap_is_flagged_with_its_length_not_filled():
    model, descriptors, frames = _stream(5.0)
    eda = [f for f in frames if f.key[1] == "eda"]
    kept = [f.data for f in frames if f is not eda[6] and f is not eda[7]]
    blocks, _, session = decode_all(b"".join(descriptors + kept))
    got = [b for b in blocks if b.stream == "eda"]
    assert len(got) == len(eda) - 2
    flagged = [b for b in got if b.flags & FLAG_GAP]
    assert [b.seq for b in flagged] == [8] and flagged[0].gap_s == pytest.approx(0.5)
    assert session.stats.missing_frames == 2 and session.stats.last_gap_s == pytest.approx(0.5)
    assert session.stats.last_gap_stream == "eda"


def test_stop_start_time_jump_is_a_gap():
    model = DeviceModel(DeviceConfig(record_truth=True))
    data = [*model.boot_frames[1:], *model.execute(P.Command(P.MsgType.START), 0.0)]
    data += [f.data for f in model.due(2.0)]
    model.execute(P.Command(P.MsgType.STOP), 2.0)
    model.due(5.0)
    model.execute(P.Command(P.MsgType.START), 5.0)
    data += [f.data for f in model.due(7.0)]
    blocks, _, session = decode_all(b"".join(data))
    gaps = [b for b in blocks if b.flags & FLAG_GAP and b.stream == "eda"]
    assert len(gaps) == 1 and gaps[0].gap_s == pytest.approx(3.0, abs=0.26)
    assert session.stats.missing_frames == 0  # the sequence went on: the time jump tells


def _reset_stream(send_boot_info: bool):
    model = DeviceModel(DeviceConfig(autostart=True, record_truth=True, clock_start_us=1_000_000))
    data = list(model.boot_frames[1:]) + [f.data for f in model.due(10.0)]
    boot = model.boot(10.0)
    data += (boot if send_boot_info else boot[1:]) + [f.data for f in model.due(12.0)]
    return decode_all(b"".join(data))


@pytest.mark.parametrize("send_boot_info", [True, False], ids=["boot-info", "heuristic"])
def test_device_reset_is_detected_and_flagged(send_boot_info):
    blocks, _, session = _reset_stream(send_boot_info)
    assert session.stats.resets == 1 and session.boot == 1
    after = [b for b in blocks if b.boot == 1]
    first = {}
    for b in after:
        first.setdefault(b.stream, b)
    assert set(first) == {"eda", "bvp", "temp", "acc", "condition"}
    assert all(b.flags & FLAG_RESET and b.flags & FLAG_GAP and b.seq == 0 for b in first.values())
    assert sum(1 for b in after if b.flags & FLAG_RESET) == 5


def test_unknown_stream_version_and_mismatch_are_counted():
    model, descriptors, frames = _stream(2.0)
    eda = P.StreamDescriptor(0, "eda", 4.0, 1, "uS", 0.001, 0.0, P.SampleFormat.U16)
    wrong_channels = P.encode_frame(P.MsgType.SAMPLES, 0, 99, 0, bytes(4), P.SampleFormat.U16, 2, 1)
    v2 = bytearray(P.raw_frame(P.MsgType.SAMPLES, 0, 1, 0, bytes(2), P.SampleFormat.U16, 1, 1))
    v2[0] = 2
    from edgemer.firmware_bridge.codec import load_codec

    codec = load_codec()
    v2 = bytes(v2[:-2]) + codec.crc16(bytes(v2[:-2])).to_bytes(2, "big")
    data = frames[0].data + b"".join(descriptors) + wrong_channels + P.wire(v2) + b"".join(f.data for f in frames)
    blocks, decoder, session = decode_all(data)
    assert session.stats.unknown_stream == 1  # the frame before any descriptor
    assert session.stats.descriptor_mismatch == 1
    assert decoder.stats.unknown_version == 1
    changed = P.encode_descriptor(P.StreamDescriptor(0, "eda", 4.0, 1, "uS", 0.002, 0.0, P.SampleFormat.U16))
    more = [f.data for f in model.due(3.0) if f.key[1] == "eda"]
    blocks2, _, s2 = decode_all(b"".join(descriptors) + changed + b"".join(more))
    assert s2.stats.descriptor_changes == 1
    truth = {(f.stream, f.seq): f for f in model.truth}
    b = blocks2[0]
    np.testing.assert_allclose(b.samples, truth[(b.stream, b.seq)].samples * 2, rtol=1e-6)
    assert eda.same_as(P.StreamDescriptor.from_frame(FrameDecoder().feed(descriptors[0])[0]))


def test_oversize_garbage_without_delimiters_is_skipped_and_counted():
    decoder = FrameDecoder()
    frame = _DESCRIPTORS[0]
    assert decoder.feed(b"\x01" * 300) == []
    assert decoder.feed(b"\x02" * 300) == []
    assert len(decoder.feed(frame)) == 1
    assert decoder.stats.oversize == 1 and decoder.stats.bytes_discarded == 600
