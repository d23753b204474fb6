"""Ring buffers cut aligned windows and count what they lose; the front-end is honest about gaps."""
import numpy as np
import pytest

from edgemer.buffers import StreamBuffer
from edgemer.errors import InputError, SampleRateError
from edgemer.frontends.physio import fill_gaps, heart_rate_from_bvp, wrist_features
from edgemer.simulate import SubjectTraits, WristSimulator
from edgemer.types import Chunk, StreamSpec


def _chunk(t0, n, rate=4.0, value=1.0, channels=1):
    return Chunk("eda", rate, t0, np.full((n, channels), value, np.float32))


def test_window_aligns_samples_and_reports_coverage():
    buf = StreamBuffer(StreamSpec("eda", 4.0), capacity_s=100)
    buf.push(_chunk(0.0, 40, value=1.0))   # 0-10 s
    buf.push(_chunk(15.0, 20, value=2.0))  # 15-20 s, a 5 s gap before it
    samples, coverage, _ = buf.window(t_end=20.0, length_s=20.0)
    assert samples.shape == (80, 1)
    assert np.all(samples[:40] == 1.0) and np.all(np.isnan(samples[40:60])) and np.all(samples[60:] == 2.0)
    assert coverage == pytest.approx(0.75)


def test_wrong_rate_chunk_is_rejected_and_counted():
    buf = StreamBuffer(StreamSpec("eda", 4.0), capacity_s=10)
    assert not buf.push(_chunk(0.0, 8, rate=8.0))
    assert buf.stats.rejected_chunks == 1 and buf.stats.samples == 0


def test_nan_samples_are_counted_and_stay_missing():
    buf = StreamBuffer(StreamSpec("eda", 4.0), capacity_s=10)
    c = _chunk(0.0, 8)
    c.samples[2:5] = np.nan
    buf.push(c)
    samples, coverage, _ = buf.window(2.0, 2.0)
    assert buf.stats.nan_samples == 3
    assert coverage == pytest.approx(5 / 8)


def test_only_unused_samples_count_as_dropped():
    buf = StreamBuffer(StreamSpec("eda", 4.0), capacity_s=5)
    for i in range(10):
        buf.push(_chunk(float(i), 4))
    assert buf.stats.dropped_samples == 20  # 5 s kept; 5 chunks evicted before any window used them
    buf.release_before(100.0)
    buf.push(_chunk(10.0, 4))
    assert buf.stats.dropped_samples == 20


def test_fill_gaps_interpolates_and_counts():
    x, n = fill_gaps(np.array([1.0, np.nan, 3.0, np.nan]))
    assert n == 2 and np.allclose(x, [1, 2, 3, 3])


def test_heart_rate_follows_the_simulated_pulse():
    sim = WristSimulator([(1, 120.0)], traits=SubjectTraits(rest_hr_bpm=72.0), seed=1, loop=False)
    d = sim.generate(60)
    hr, beats = heart_rate_from_bvp(d["bvp"][:, 0].astype(float), 64.0, 240)
    assert 55 < beats < 90
    assert abs(np.median(hr) - 72.0) < 6.0


def _window(seconds=60, seed=0):
    d = WristSimulator(seed=seed).generate(seconds)
    return {k: d[k] for k in ("eda", "bvp", "temp", "acc")}


def test_features_shape_units_and_gap_filling():
    streams = _window()
    streams["eda"][10:20] = np.nan
    feats, info = wrist_features(streams, 60.0)
    assert feats.shape == (4, 240) and np.isfinite(feats).all()
    assert info["filled"]["eda"] == 10
    assert 1.0 < np.median(feats[0]) < 10.0      # EDA, µS
    assert 40 < np.median(feats[1]) < 120        # heart rate, bpm
    assert 30 < np.median(feats[2]) < 36         # skin temperature, °C


def test_wrong_sample_rate_is_named():
    streams = _window()
    streams["bvp"] = streams["bvp"][::2]  # 32 Hz instead of 64 Hz
    with pytest.raises(SampleRateError, match="64.0 Hz"):
        wrist_features(streams, 60.0)


def test_stream_without_any_sample_is_refused():
    streams = _window()
    streams["temp"][:] = np.nan
    with pytest.raises(InputError, match="temp"):
        wrist_features(streams, 60.0)
