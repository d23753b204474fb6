"""read_wav takes plain PCM through the standard library and everything else through scipy,
with the same samples either way."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

from edgemer.sources import wav_replay
from edgemer.sources.wav_replay import read_wav


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32])
@pytest.mark.parametrize("channels", [1, 2])
def test_plain_pcm_is_read_without_scipy_and_equals_scipys_samples(tmp_path, monkeypatch, dtype, channels):
    rng = np.random.default_rng(channels)
    info = np.iinfo(dtype)
    data = rng.integers(info.min, info.max, size=(4000, channels), endpoint=True).astype(dtype)
    data[10] = info.max  # a clipped sample
    path = tmp_path / "x.wav"
    wavfile.write(path, 16000, data if channels > 1 else data[:, 0])
    with monkeypatch.context() as m:
        m.setattr(wav_replay, "_read_plain_pcm", lambda p: None)  # the reference: scipy.io.wavfile
        ref = read_wav(path)
    calls = []
    monkeypatch.setattr(wav_replay, "_read_with_scipy", lambda p: calls.append(p))
    fast = read_wav(path)
    assert calls == []  # the standard-library path read it
    np.testing.assert_array_equal(fast.samples, ref.samples)
    np.testing.assert_array_equal(fast.clipped, ref.clipped)
    assert fast.info == ref.info and fast.clipped[10]


def test_float_and_truncated_wavs_go_to_scipy(tmp_path):
    path = tmp_path / "f.wav"
    x = np.sin(np.arange(8000) / 10).astype(np.float32) * 0.5
    wavfile.write(path, 16000, x)
    assert wav_replay._read_plain_pcm(path) is None  # IEEE float: scipy's reader
    np.testing.assert_allclose(read_wav(path).samples[:, 0], x)
    cut = tmp_path / "cut.wav"
    wavfile.write(cut, 16000, (x * 32767).astype(np.int16))
    cut.write_bytes(cut.read_bytes()[:-1000])  # the header promises more samples than the file holds
    assert wav_replay._read_plain_pcm(cut) is None
