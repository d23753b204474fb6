"""The emulated wearable: firmware model, fault injector and the pseudo-terminal around them."""
import os
import select
import time

import numpy as np
import pytest

from edgemer.errors import ConfigError
from edgemer.firmware_bridge import protocol as P
from edgemer.firmware_bridge.device import DeviceConfig, DeviceModel
from edgemer.firmware_bridge.emulator import EmulatorConfig, WearableEmulator
from edgemer.firmware_bridge.faults import FaultConfig, FaultInjector
from edgemer.firmware_bridge.framing import FrameDecoder
from edgemer.firmware_bridge.session import AckEvent, DescriptorEvent, DeviceSession, InfoEvent, PongEvent


def events(frames):
    session, decoder = DeviceSession(), FrameDecoder()
    out = [session.handle(f) for f in decoder.feed(b"".join(frames))]
    assert decoder.stats.bad_frames == 0
    return [e for e in out if e is not None]


def cmd(ctype, stream=P.NO_STREAM, seq=1, **kw):
    return P.encode_command(P.Command(ctype, stream, seq, 0, **kw))


def test_device_waits_for_start_and_answers_hello():
    model = DeviceModel(DeviceConfig())
    assert model.due(5.0) == []
    ev = events(model.receive(cmd(P.MsgType.HELLO), 5.0))
    assert isinstance(ev[0], InfoEvent) and ev[0].info.reason == P.InfoReason.HELLO and ev[0].info.n_streams == 5
    names = [e.descriptor.name for e in ev[1:] if isinstance(e, DescriptorEvent)]
    assert names == ["eda", "bvp", "temp", "acc", "condition"]
    ack = events(model.receive(cmd(P.MsgType.START, seq=7), 5.0))
    assert ack == [AckEvent(P.NO_STREAM, P.MsgType.START, P.AckStatus.OK, 7)]
    frames = model.due(5.99)
    assert len(frames) == 5 * 4  # one frame per stream every 0.25 s, from the START on
    assert {f.key[2] for f in frames} == {0, 1, 2, 3}


def test_device_clock_drifts_and_pong_carries_reception_time():
    model = DeviceModel(DeviceConfig(drift_ppm=100.0, clock_start_us=1000))
    assert model.device_us(100.0) == 1000 + int(100.0 * (1 + 1e-4) * 1e6)
    (pong,) = events(model.receive(cmd(P.MsgType.PING, token=99), 100.0))
    assert pong == PongEvent(99, model.device_us(100.0) & 0xFFFFFFFF)


def test_set_rate_and_bad_commands():
    model = DeviceModel(DeviceConfig(autostart=True, record_truth=True))
    ev = events(model.receive(cmd(P.MsgType.SET_RATE, 1, 3, rate_hz=32.0), 0.0))
    assert ev[0] == AckEvent(1, P.MsgType.SET_RATE, P.AckStatus.OK, 3)
    assert isinstance(ev[1], DescriptorEvent) and ev[1].descriptor.rate_hz == 32.0
    bvp = [f for f in model.truth if f.stream == "bvp"]
    model.due(1.0)
    bvp = [f for f in model.truth if f.stream == "bvp"]
    assert {f.samples.shape for f in bvp} == {(8, 1)}
    assert events(model.receive(cmd(P.MsgType.SET_RATE, 1, 4, rate_hz=50.0), 1.0)) == [
        AckEvent(1, P.MsgType.SET_RATE, P.AckStatus.BAD_ARGUMENT, 4)]
    assert events(model.receive(cmd(P.MsgType.STOP, 42, 5), 1.0)) == [
        AckEvent(42, P.MsgType.STOP, P.AckStatus.UNKNOWN_STREAM, 5)]
    assert model.receive(b"\x00garbage\x00" + cmd(P.MsgType.STOP, 0, 6)[:-3] + b"\x00", 1.0) == []
    assert model.parser.stats.bad_frames == 2


def test_reset_restarts_sequence_and_clock():
    model = DeviceModel(DeviceConfig(autostart=True, record_truth=True, clock_start_us=500))
    model.due(3.0)
    boot = events(model.boot(3.0))
    assert boot[0].info.reason == P.InfoReason.BOOT
    frames = model.due(4.0)
    first = next(f for f in model.truth if f.boot == 2 and f.stream == "eda")
    assert first.seq == 0 and first.t_us == 500 and first.true_s == pytest.approx(3.0)
    assert frames[0].key[0] == 2


def test_device_config_validation():
    with pytest.raises(ConfigError, match="rates: unknown stream 'ppg'"):
        DeviceConfig(rates=(("ppg", 32.0),))
    with pytest.raises(ConfigError, match="divided by an integer"):
        DeviceModel(DeviceConfig(rates=(("bvp", 50.0),)))
    with pytest.raises(ConfigError, match="clock_start_us"):
        DeviceConfig(clock_start_us=2 ** 32)


def test_fault_injector_is_seeded_and_counts():
    frames = [f.data for f in DeviceModel(DeviceConfig(autostart=True)).due(99.99)]
    cfg = FaultConfig(bit_flips=0.1, dropped_bytes=0.1, truncated=0.1, garbage=0.1, seed=3)
    a, b = FaultInjector(cfg), FaultInjector(cfg)
    out_a = [a.apply(f) for f in frames]
    assert out_a == [b.apply(f) for f in frames]
    n = a.counts
    assert n.frames == len(frames) == 2000
    for count in (n.bit_flips, n.dropped_bytes, n.truncated, n.garbage_bursts):
        assert 140 < count < 260
    assert 0.2 < n.damaged_frames / n.frames < 0.35
    clean = FaultInjector(FaultConfig())
    assert [clean.apply(f) for f in frames] == frames and clean.counts.damaged_frames == 0
    with pytest.raises(ConfigError, match="FaultConfig.bit_flips"):
        FaultConfig(bit_flips=1.5)


def _read_frames(fd, want, timeout_s=5.0):
    decoder, session = FrameDecoder(), DeviceSession()
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            got += [e for e in map(session.handle, decoder.feed(os.read(fd, 4096))) if e is not None]
    return got


def test_emulator_on_a_pty_answers_and_unplugs(tmp_path):
    link = tmp_path / "wearable"
    with WearableEmulator(EmulatorConfig(speed=20, link=str(link))) as emu:
        assert os.readlink(link) == emu.port and emu.port.startswith("/dev/")
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, cmd(P.MsgType.HELLO) + cmd(P.MsgType.START, seq=2))
            got = _read_frames(fd, 30)
            assert isinstance(got[0], InfoEvent) if got else False
            assert sum(isinstance(e, DescriptorEvent) for e in got) >= 5
            first_port = emu.port
            emu.unplug(2.0)  # 0.1 s of wall time at speed 20
            deadline = time.monotonic() + 2
            while emu.plugged.is_set() and time.monotonic() < deadline:
                time.sleep(0.005)
            assert not os.path.lexists(link)
            with pytest.raises(OSError):
                for _ in range(100):
                    if select.select([fd], [], [], 0.05)[0] and not os.read(fd, 4096):
                        raise OSError("end of file: the device is gone")
        finally:
            os.close(fd)
        assert emu.plugged.wait(2.0)
        assert os.readlink(link) == emu.port
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, cmd(P.MsgType.PING, token=5))
            got = _read_frames(fd, 1)
            assert any(isinstance(e, PongEvent) and e.token == 5 for e in got)
        finally:
            os.close(fd)
        status = emu.status()
        assert status["unplugs"] == 1 and status["commands"] >= 3 and first_port
    assert not os.path.lexists(link)


def test_emulator_config_validation():
    with pytest.raises(ConfigError, match="EmulatorConfig.speed"):
        EmulatorConfig(speed=0)
    with pytest.raises(ConfigError, match="EmulatorConfig.unplug_every_s"):
        EmulatorConfig(unplug_every_s=-1)


def test_emulator_samples_are_the_simulators_quantised():
    model = DeviceModel(DeviceConfig(autostart=True, record_truth=True))
    model.due(30.0)
    eda = np.concatenate([f.samples for f in model.truth if f.stream == "eda"])
    temp = np.concatenate([f.samples for f in model.truth if f.stream == "temp"])
    acc = np.concatenate([f.samples for f in model.truth if f.stream == "acc"])
    assert 1.0 < eda.mean() < 10.0 and 30.0 < temp.mean() < 36.0  # µS, °C
    assert acc.shape[1] == 3 and np.all(acc == np.round(acc)) and 40 < np.linalg.norm(acc, axis=1).mean() < 90


def test_bridge_bench_decoder_part_reports_ratios(tmp_path, capsys):
    from argparse import Namespace

    from edgemer.firmware_bridge.bench import bench_throughput, run

    r = bench_throughput(20.0)
    assert 400 <= r["frames"] - 5 <= 405  # descriptors + 20 frames/s (the 1-sample streams end on t = 20 s)
    assert r["bytes_per_frame"] > 14 and r["ratio"] > 0 and r["small_ratio"] > 0
    assert r["link_frames_per_s"] == pytest.approx(100_000 / r["bytes_per_frame"])
    out = tmp_path / "bench.json"
    assert run(Namespace(sync_s=1.0, throughput_s=10.0, decoder_only=True, json=out)) == 0
    assert "ratio" in capsys.readouterr().out and out.is_file()
