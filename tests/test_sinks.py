"""Sinks: JSONL rotation, a refusing disk, Lab Streaming Layer."""
import json
import math

import pytest

from edgemer.errors import ConfigError
from edgemer.sinks import JsonlSink, LslSink
from edgemer.types import Estimate


def _estimate(i):
    return Estimate(t=100.0 + i, elapsed_s=float(i), stress_probability=0.25, arousal=0.1, valence=-0.1,
                    probabilities={"baseline": 0.75, "stress": 0.25}, confidence=0.8, modalities={},
                    available={"physio": True}, contributions={"physio": 1.0}, latency_s=0.002,
                    processing_s=0.001, inference_s=0.0005)


def test_jsonl_rotates_and_keeps_every_line(tmp_path):
    sink = JsonlSink(tmp_path / "e.jsonl", max_bytes=2048, backups=10)
    for i in range(40):
        sink.write(_estimate(i))
    sink.close()
    files = sorted(tmp_path.glob("e.jsonl*"))
    assert sink.rotations >= 2 and all(f.stat().st_size <= 2048 for f in files)
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted(r["elapsed_s"] for r in rows) == [float(i) for i in range(40)]


def test_refusing_disk_is_counted_and_nothing_is_lost(tmp_path):
    sink = JsonlSink(tmp_path / "e.jsonl")
    sink.write(_estimate(0))
    real = sink._f

    class Full:
        def write(self, _):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

    sink._f = Full()
    sink.write(_estimate(1))
    sink.write(_estimate(2))
    assert sink.write_errors == 2
    sink._f = real  # space is back
    sink.write(_estimate(3))
    sink.close()
    rows = [json.loads(x)["elapsed_s"] for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert rows == [0.0, 1.0, 2.0, 3.0]


def test_bad_rotation_settings():
    with pytest.raises(ConfigError, match="max_bytes"):
        JsonlSink("/tmp/x.jsonl", max_bytes=10)


def test_lsl_outlet_is_resolvable_and_carries_estimates():
    pylsl = pytest.importorskip("pylsl")
    sink = LslSink(("baseline", "stress"), source_id="edgemer-test-lsl")
    streams = pylsl.resolve_byprop("source_id", "edgemer-test-lsl", timeout=5.0)
    if not streams:
        pytest.skip("no LSL discovery on this machine's loopback")
    inlet = pylsl.StreamInlet(streams[0])
    inlet.open_stream(timeout=5.0)
    info = inlet.info()
    assert info.channel_count() == 13 and info.type() == "Estimates"  # 4 + 2 labels + 7 physiology features
    sink.write(_estimate(0))
    sample, ts = inlet.pull_sample(timeout=5.0)
    assert sample[0] == pytest.approx(0.25) and sample[5] == pytest.approx(0.25)
    assert all(math.isnan(v) for v in sample[6:])  # no physiology estimate: its features are NaN
    sink.close()
