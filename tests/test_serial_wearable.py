"""SerialWearable: the serial link as a runtime source, over loop:// and real pseudo-terminals."""
import errno
import json
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest

from edgemer.clock import PipelineClock
from edgemer.errors import ConfigError, MissingExtraError, SourceError
from edgemer.firmware_bridge.device import DeviceConfig, DeviceModel
from edgemer.firmware_bridge.emulator import EmulatorConfig, WearableEmulator
from edgemer.firmware_bridge.faults import FaultConfig
from edgemer.sources import source_from_spec
from edgemer.sources.serial_wearable import PortUnavailableError, SerialLinkConfig, SerialWearable, open_port
from edgemer.types import FLAG_GAP, FLAG_RESET


@contextmanager
def running(source, speed=1.0):
    chunks = []
    lock = threading.Lock()

    def emit(chunk):
        with lock:
            chunks.append(chunk)

    clock = PipelineClock(speed)
    source.start(clock, emit)
    try:
        yield chunks, clock
    finally:
        source.stop()


def wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def truth_of(emu):
    return {(f.boot, f.stream, f.seq): f for f in list(emu.model.truth)}


def assert_chunks_match_truth(chunks, emu, boot=1):
    truth = truth_of(emu)
    assert chunks
    for c in chunks:
        sent = truth[(boot, c.stream, c.seq)] if (boot, c.stream, c.seq) in truth else None
        assert sent is not None, (c.stream, c.seq)
        np.testing.assert_array_equal(c.samples, sent.samples)


def test_loop_url_decodes_injected_device_frames():
    model = DeviceModel(DeviceConfig(autostart=True, record_truth=True))
    src = SerialWearable("loop://")
    with running(src) as (chunks, clock):
        src.send_raw(b"".join(model.boot_frames[1:] + [f.data for f in model.due(2.0)]))
        assert wait_for(lambda: len(chunks) >= 40)
        health = src.health()
    assert health["frames_ok"] >= 45 and health["bad_frames"] == 0 and not health["synced"]
    assert src.decoder.stats.ignored_frames >= 3  # our own HELLO, PING, START coming back through the loop
    truth = {(f.stream, f.seq): f for f in model.truth}
    for c in chunks:
        np.testing.assert_array_equal(c.samples, truth[(c.stream, c.seq)].samples)
        assert c.samples.dtype == np.float32 and c.flags == 0
    bvp = sorted((c for c in chunks if c.stream == "bvp"), key=lambda c: c.seq)
    assert all(c.rate_hz == 64.0 and c.samples.shape == (16, 1) for c in bvp)
    # without pings (nobody answers on a loopback) arrival times bound the mapping: never later than arrival
    assert all(c.t0 + (c.n - 1) / c.rate_hz <= c.arrival + 1e-9 for c in chunks)


def test_pty_emulator_streams_mapped_samples_and_reports_health():
    cfg = EmulatorConfig(speed=10, device=DeviceConfig(drift_ppm=100, record_truth=True,
                                                      clock_start_us=2 ** 32 - 3_000_000))
    with WearableEmulator(cfg) as emu:
        src = SerialWearable(emu.port, speed=10)
        with running(src, speed=10) as (chunks, clock):
            assert wait_for(lambda: len(chunks) >= 300)  # 6 s of stream through the 32-bit wrap
            health = src.health()
        assert_chunks_match_truth(chunks, emu)
        truth = truth_of(emu)
        errors = [abs(c.t0 - (clock.start + (emu.wall_of(truth[(1, c.stream, c.seq)].true_s) - clock.wall_start)
                              * clock.speed)) for c in chunks[50:]]
        # The mapping is right when the typical error is a few wall milliseconds (x10 here); a wrong
        # offset, drift or 32-bit wrap is off by seconds. A busy machine can delay a few pings, so the
        # bound on the worst chunk is loose; edgemer bench bridge measures the real-time error.
        assert float(np.median(errors)) < 0.05 and max(errors) < 0.5
    assert health["device"] == "edgemer-wrist emu-1.0" and health["synced"] and health["connected"]
    for key in ("frames_ok", "crc_failures", "seq_gaps", "resets", "bytes_discarded", "drift_ppm", "offset_s",
                "reconnects", "last_gap_s"):
        assert key in health
    assert health["crc_failures"] == health["seq_gaps"] == health["resets"] == 0
    assert {c.stream for c in chunks} == {"eda", "bvp", "temp", "acc", "condition"}
    json.dumps(health)


def test_faults_are_counted_and_never_delivered():
    faults = FaultConfig(bit_flips=0.05, dropped_bytes=0.05, truncated=0.05, garbage=0.05, seed=4)
    with WearableEmulator(EmulatorConfig(speed=20, faults=faults, device=DeviceConfig(record_truth=True))) as emu:
        src = SerialWearable(emu.port, speed=20)
        with running(src, speed=20) as (chunks, _):
            assert wait_for(lambda: len(chunks) >= 400 and src.decoder.stats.crc_failures > 0, 20)
            health = src.health()
        assert_chunks_match_truth(chunks, emu)
    assert health["bad_frames"] > 0 and health["bytes_discarded"] > 0 and health["seq_gaps"] > 0
    assert any(c.flags & FLAG_GAP for c in chunks)


def test_unplug_is_reported_retried_and_resumed_with_the_gap(tmp_path):
    link = str(tmp_path / "wearable")
    with WearableEmulator(EmulatorConfig(speed=5, link=link, device=DeviceConfig(record_truth=True))) as emu:
        src = SerialWearable(link, speed=5)
        with running(src, speed=5) as (chunks, _):
            assert wait_for(lambda: len(chunks) >= 40)
            unplugged_at = time.monotonic()
            emu.unplug(3.0)  # emulated seconds: 0.6 s wall
            assert wait_for(lambda: not src.connected, 5)
            assert wait_for(lambda: src.reconnects == 1 and any(c.flags & FLAG_GAP for c in chunks), 10)
            # frames the device sent until the source reconnected are lost too: at most this many device seconds
            outage_bound_s = (time.monotonic() - unplugged_at) * 5
            n = len(chunks)
            assert wait_for(lambda: len(chunks) > n + 20, 5)
            health = src.health()
        assert_chunks_match_truth(chunks, emu)
    assert health["disconnects"] == 1 and health["reconnects"] == 1 and health["connected"]
    assert 2.9 <= health["last_gap_s"] <= outage_bound_s + 0.1 and health["missing_frames"] >= 5 * 11
    gap_chunks = [c for c in chunks if c.flags & FLAG_GAP]
    assert {c.stream for c in gap_chunks} == {"eda", "bvp", "temp", "acc", "condition"}


def test_device_reset_is_flagged_and_streaming_resumes():
    with WearableEmulator(EmulatorConfig(speed=10, device=DeviceConfig(record_truth=True))) as emu:
        src = SerialWearable(emu.port, speed=10)
        with running(src, speed=10) as (chunks, _):
            assert wait_for(lambda: len(chunks) >= 40)
            emu.reset()  # the device waits for START again; the source sends it on the boot INFO
            assert wait_for(lambda: sum(bool(c.flags & FLAG_RESET) for c in chunks) == 5, 10)
            n = len(chunks)
            assert wait_for(lambda: len(chunks) > n + 40, 10)
            health = src.health()
    assert health["resets"] == 1
    first_after = [c for c in chunks if c.flags & FLAG_RESET]
    assert all(c.seq == 0 and c.flags & FLAG_GAP for c in first_after)


def test_rate_mismatch_is_fixed_with_set_rate_or_dropped_alone():
    cfg = EmulatorConfig(speed=10, device=DeviceConfig(rates=(("bvp", 32.0),)))
    with WearableEmulator(cfg) as emu:
        src = SerialWearable(emu.port, speed=10)
        with running(src, speed=10) as (chunks, _):
            assert wait_for(lambda: sum(c.stream == "bvp" for c in chunks) >= 10)
        assert all(c.samples.shape == (16, 1) and c.rate_hz == 64.0 for c in chunks if c.stream == "bvp")
        assert src.health()["descriptor_changes"] == 1
    with WearableEmulator(cfg) as emu:
        src = SerialWearable(emu.port, speed=10, config=SerialLinkConfig(request_rates=False))
        with running(src, speed=10) as (chunks, _):
            assert wait_for(lambda: sum(c.stream == "eda" for c in chunks) >= 10 and src.rejected_frames >= 5)
        assert not any(c.stream == "bvp" for c in chunks)  # dropped and counted; the other streams go on
        assert src.health()["rejected_frames"] >= 5


def test_port_errors_are_typed_and_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(PortUnavailableError, match="does not exist.*edgemer emulate") as exc:
        open_port(str(tmp_path / "ttyACM9"))
    assert exc.value.reason == "missing" and isinstance(exc.value, SourceError)
    src = SerialWearable(str(tmp_path / "nothing"))
    with pytest.raises(PortUnavailableError, match="nothing"):
        src.start(PipelineClock(), lambda c: None)
    with WearableEmulator(EmulatorConfig(speed=10)) as emu:
        first = open_port(emu.port)
        try:
            with pytest.raises(PortUnavailableError, match="is busy.*another program") as busy:
                open_port(emu.port)
            assert busy.value.reason == "busy"
        finally:
            first.close()
    import serial

    def denied(*args, **kwargs):
        raise serial.SerialException(errno.EACCES, "could not open port /dev/ttyUSB0: Permission denied")

    monkeypatch.setattr(serial, "Serial", denied)
    with pytest.raises(PortUnavailableError, match="permission denied.*dialout") as perm:
        open_port("/dev/ttyUSB0")
    assert perm.value.reason == "permission"
    monkeypatch.setitem(sys.modules, "serial", None)
    with pytest.raises(MissingExtraError, match=r"edgemer\[serial\]"):
        open_port("/dev/ttyUSB0")


def test_gives_up_after_reconnect_timeout(tmp_path):
    link = str(tmp_path / "wearable")
    with WearableEmulator(EmulatorConfig(speed=1, link=link)) as emu:
        src = SerialWearable(link, config=SerialLinkConfig(reconnect_timeout_s=0.3))
        with running(src):
            emu.unplug(60.0)
            assert wait_for(lambda: src.finished, 5)
    assert isinstance(src.error, SourceError) and "reconnect_timeout_s" in str(src.error)


def test_source_spec_and_config_validation():
    src = source_from_spec("serial:/dev/ttyUSB0@115200", speed=2.0, duration_s=30)
    assert isinstance(src, SerialWearable) and src.port == "/dev/ttyUSB0" and src.config.baud == 115200
    assert src.speed == 2.0 and not src.live and src.name == "serial:/dev/ttyUSB0"
    assert source_from_spec("serial:loop://").port == "loop://"
    assert SerialWearable("/dev/ttyACM0").live
    with pytest.raises(ConfigError, match="needs a port"):
        source_from_spec("serial:")
    with pytest.raises(ConfigError, match="SerialLinkConfig.baud"):
        SerialLinkConfig(baud=0)
    with pytest.raises(ConfigError, match="max_backoff_s"):
        SerialLinkConfig(backoff_s=1.0, max_backoff_s=0.5)


def test_pipeline_runs_the_demo_bundle_on_the_emulator(tmp_path):
    from edgemer.pipeline import Pipeline
    from edgemer.sinks import JsonlSink

    out = tmp_path / "est.jsonl"
    with WearableEmulator(EmulatorConfig(speed=25)) as emu:
        src = SerialWearable(emu.port, speed=25, duration_s=70)
        with Pipeline([src], ["physio-demo"], sinks=[JsonlSink(out)]) as pipe:
            estimates = list(pipe)
    assert len(estimates) == 3
    # the reference comes from the emulator's condition stream (its scenario started with the emulator)
    assert all(e.stress_probability is not None and e.reference in ("baseline", "stress") for e in estimates)
    health = estimates[-1].sources[src.name]
    assert health["frames_ok"] > 1000 and health["crc_failures"] == 0 and health["synced"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[-1]["sources"][src.name]["frames_ok"] == health["frames_ok"]


def test_cli_emulate_then_run_on_its_port(tmp_path):
    link = tmp_path / "wearable"
    emu = subprocess.Popen([sys.executable, "-m", "edgemer", "emulate", "--speed", "25", "--link", str(link),
                            "--bit-flips", "0.01", "--status-every", "0"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        first = emu.stdout.readline()
        assert "edgemer emulate: wrist wearable on /dev/" in first, first + emu.stderr.read()
        out = tmp_path / "est.jsonl"
        r = subprocess.run([sys.executable, "-m", "edgemer", "run", "--source", f"serial:{link}", "--bundle",
                            "physio-demo", "--speed", "25", "--duration", "70", "--out", str(out), "--quiet"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "done: 3 estimates" in r.stdout
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(f"source serial:{link}"))
        assert "frames_ok" in line and "crc_failures" in line and "drift_ppm" in line
        rows = [json.loads(ln) for ln in out.read_text().splitlines()]
        assert len(rows) == 3 and rows[-1]["sources"][f"serial:{link}"]["frames_ok"] > 1000
    finally:
        emu.terminate()
        tail, err = emu.communicate(timeout=10)
    assert emu.returncode == 0, err
    assert "stopped:" in tail and "bit flips" in tail


def test_cli_reports_a_missing_port(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgemer", "run", "--source", f"serial:{tmp_path}/ttyACM7", "--bundle",
                        "physio-demo"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_reader_reports_an_os_error_of_a_vanished_device_as_lost():
    """pyserial lets EIO from in_waiting escape its reader loop; the source must still hear of the loss."""
    import serial.threaded

    from edgemer.sources.serial_wearable import _guarded_reader

    class VanishedPort:
        is_open = True
        timeout = None

        @property
        def in_waiting(self):
            raise OSError(5, "Input/output error")

        def read(self, size):  # pragma: no cover - in_waiting raises first
            return b""

        def cancel_read(self):
            pass

    lost = []

    class Protocol(serial.threaded.Protocol):
        def connection_lost(self, exc):
            lost.append(exc)

    reader = _guarded_reader(serial.threaded)(VanishedPort(), Protocol)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert len(lost) == 1 and isinstance(lost[0], OSError) and lost[0].errno == 5
