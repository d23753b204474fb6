"""Audio front-end: log-mel against librosa, polyphase resampling, voice-activity gates, "no speech"."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from edgemer.errors import ConfigError, ManifestError, NoSpeechError, NothingDetectedError
from edgemer.export.audio.synth import voiced_sound
from edgemer.frontends.audio import AudioFeatures, AudioFrontEnd, AudioFrontEndConfig, DimensionsOutput, stress_from
from edgemer.frontends.audio_dsp import (LogMelExtractor, MelConfig, OverlapLogMel, StreamingResampler, log_mel,
                                        resample)
from edgemer.frontends.vad import EnergyVad, SileroVad, VadConfig, find_silero_model
from edgemer.sources.wav_replay import load_wav_mono
from edgemer.types import Window

REPO = Path(__file__).resolve().parents[1]
SILERO_CACHE = REPO / ".whl" / "silero-vad"  # gitignored; the wheel is fetched once with pip download --no-deps
RATE = 16000


def _noise(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * level).astype(np.float32)


def _speech(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    return voiced_sound(seconds, RATE, seed=seed) + _noise(seconds, 1e-3, seed)


@pytest.mark.parametrize("config", [
    MelConfig(),
    MelConfig(n_fft=400, win_length=400, n_mels=40, fmin_hz=0.0, fmax_hz=8000.0),
    MelConfig(center=False, win_length=511, n_mels=80, top_db=None),
    MelConfig(sample_rate_hz=22050, n_fft=1024, win_length=1024, hop_length=256, fmax_hz=11025.0),
])
def test_log_mel_matches_librosa_within_a_thousandth_of_a_db(config):
    librosa = pytest.importorskip("librosa", reason="librosa is the reference (extra [dev])")
    rng = np.random.default_rng(1)
    t = np.arange(10 * config.sample_rate_hz) / config.sample_rate_hz
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(t.size))
    x = x.astype(np.float32)
    ref = librosa.power_to_db(librosa.feature.melspectrogram(
        y=x, sr=config.sample_rate_hz, n_fft=config.n_fft, hop_length=config.hop_length, win_length=config.win_length,
        window="hann", center=config.center, pad_mode="constant", power=2.0, n_mels=config.n_mels,
        fmin=config.fmin_hz, fmax=config.fmax_hz, htk=False, norm="slaney"), ref=1.0, amin=1e-10, top_db=config.top_db)
    ours = log_mel(x, config)
    assert ours.shape == ref.shape == (config.n_mels, config.n_frames(x.size))
    assert np.max(np.abs(ours - ref)) <= 1e-3
    fb = librosa.filters.mel(sr=config.sample_rate_hz, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin_hz,
                             fmax=config.fmax_hz)
    assert np.max(np.abs(fb - LogMelExtractor(config).filters)) < 1e-7


def test_log_mel_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="win_length"):
        MelConfig(win_length=1024, n_fft=512)
    with pytest.raises(ConfigError, match="fmax_hz"):
        MelConfig(fmax_hz=9000.0)
    with pytest.raises(ConfigError, match="shorter|no frame"):
        LogMelExtractor(MelConfig(center=False))(np.zeros(100, np.float32))


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def _stream(kind: str) -> np.ndarray:
    """7 s: the bundled speech recording, or synthetic white noise (seeded)."""
    if kind == "speech":
        return load_wav_mono(REPO / "edgemer" / "data" / "speech-example.wav")[0]
    return _noise(7, 0.1, seed=3)


@pytest.mark.parametrize("kind", ["speech", "noise"])
@pytest.mark.parametrize("config", [MelConfig(), MelConfig(center=False, win_length=511, n_mels=80, top_db=None)])
def test_overlap_log_mel_reuses_shared_frames_and_equals_the_full_computation(kind, config):
    x, n = _stream(kind), 3 * RATE
    full, overlap = LogMelExtractor(config), OverlapLogMel(LogMelExtractor(config), expected_shift=RATE)
    assert overlap.enabled  # this machine's FFT and filterbank sum treat each frame alike
    n_frames = config.n_frames(n)
    for i, start in enumerate(range(0, x.size - n + 1, RATE)):  # 3 s windows every 1 s, as in the pipeline
        w = x[start:start + n]
        assert np.array_equal(_bits(overlap(w)), _bits(full(w)))
        if i == 0:
            assert overlap.computed_frames == n_frames and overlap.reused_frames == 0
        else:  # frames inside the first 2 s of the window, clear of the padding, came from the previous window
            a, b = overlap.reusable_frames(n, RATE)
            assert overlap.shift_samples == RATE and overlap.reused_frames == b - a > n_frames // 2
            assert overlap.computed_frames == n_frames - (b - a)
    assert (a, b) == ((2, 199) if config.center else (0, 197))


def test_overlap_log_mel_computes_everything_when_the_overlap_is_not_reusable():
    x, n = _stream("speech"), 3 * RATE
    full, overlap = LogMelExtractor(), OverlapLogMel(LogMelExtractor(), expected_shift=RATE)

    def check(w: np.ndarray, reused: bool) -> None:
        expected = full(w)
        assert np.array_equal(_bits(overlap(w)), _bits(expected))
        assert (overlap.reused_frames > 0) == reused
        assert overlap.computed_frames == expected.shape[1] - overlap.reused_frames

    check(x[:n], reused=False)  # the first window
    late = x[RATE:RATE + n].copy()
    late[5000] += 1e-3  # a sample the previous window also holds changed (a late arrival)
    check(late, reused=False)
    check(x[2 * RATE:2 * RATE + n], reused=True)  # 1 s on: the part it shares with the changed window is unchanged
    check(x[2 * RATE + 80:2 * RATE + 80 + n], reused=False)  # half a hop later: frames do not line up
    check(x[4 * RATE - 1:4 * RATE - 1 + n], reused=False)  # 2 s minus one sample
    check(x[4 * RATE - 1:4 * RATE - 1 + n], reused=True)  # the same window again: shift 0
    assert overlap.shift_samples == 0
    check(np.zeros(n, np.float32), reused=False)  # a gap longer than the window
    check(np.zeros(n, np.float32), reused=True)  # digital silence shares every frame (all shifts match)
    check(x[:n - RATE], reused=False)  # a different length
    overlap.reset()
    check(x[:n], reused=False)


def test_front_end_reuses_log_mel_frames_and_the_exporter_features_do_not():
    x, n = _stream("speech"), 3 * RATE
    fe = _front_end()
    plain = AudioFeatures(fe.config)  # what export/ and the byo exporter build
    assert plain.overlap is None and fe.features.overlap is not None
    for start in range(0, x.size - n + 1, RATE):
        feeds, _ = fe.prepare(_window(x[start:start + n], t_end=(start + n) / RATE))
        assert np.array_equal(_bits(feeds["log_mel"]), _bits(plain(x[start:start + n])))
    assert fe.features.overlap.reused_frames > 0 and fe.features.overlap.shift_samples == RATE


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (8000, 16000), (22050, 16000), (16000, 16000)])
def test_streaming_resampler_equals_offline_polyphase(rates):
    src, dst = rates
    x = np.random.default_rng(0).standard_normal(src * 2)
    offline = resample(x, src, dst)
    np.testing.assert_allclose(offline, signal.resample_poly(x, *_reduced(src, dst)).astype(np.float32), atol=1e-6)
    stream = StreamingResampler(src, dst)
    rng = np.random.default_rng(1)
    out, i = [], 0
    while i < x.size:
        b = int(rng.integers(1, 3000))
        out.append(stream.process(x[i:i + b]))
        i += b
    got = np.concatenate(out)
    assert got.size >= offline.size - 0.02 * dst  # lags by the filter's half length only
    np.testing.assert_allclose(got, offline[:got.size], atol=1e-5)


def _reduced(a: int, b: int) -> tuple[int, int]:
    from math import gcd

    g = gcd(a, b)
    return b // g, a // g


def test_resampling_keeps_a_tone_and_refuses_fractional_rates():
    t = np.arange(48000) / 48000
    y = resample(np.sin(2 * np.pi * 1000 * t), 48000, 16000)
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    assert abs(np.argmax(spec) * 16000 / y.size - 1000) < 2
    with pytest.raises(ConfigError, match="whole number"):
        resample(y, 44100.5, 16000)


@pytest.mark.parametrize("name,audio,speech", [
    ("voiced speech-like sound", _speech(), True),
    ("quiet speech (frames near -45 dBFS)", voiced_sound(3, RATE, seed=2) * 0.1 + _noise(3, 1e-5), True),
    ("digital silence", np.zeros(3 * RATE, np.float32), False),
    ("white noise", _noise(3, 0.1), False),
    ("mains hum", (0.3 * np.sin(2 * np.pi * 50 * np.arange(3 * RATE) / RATE)).astype(np.float32), False),
    ("steady 1 kHz tone", (0.3 * np.sin(2 * np.pi * 1000 * np.arange(3 * RATE) / RATE)).astype(np.float32), False),
])
def test_energy_vad_finds_speech_and_rejects_silence_noise_and_hum(name, audio, speech):
    assert EnergyVad().detect(audio, RATE).speech is speech, name


SILERO_SHA256 = "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
"""Pinned sha256 of silero_vad-6.2.3-py3-none-any.whl."""


def _silero_path() -> Path | None:
    """The Silero VAD ONNX file out of the silero-vad wheel (fetched once with pip, no
    dependencies, checked against its pinned sha256); None when it cannot be fetched."""
    from edgemer.errors import EdgemerError
    from edgemer.export.core.fetch import download_package

    found = sorted(SILERO_CACHE.glob("**/silero_vad.onnx"))
    if not found:
        try:
            wheel = download_package("silero-vad", "6.2.3", SILERO_CACHE, sha256=SILERO_SHA256)
        except EdgemerError:
            return None
        with zipfile.ZipFile(wheel) as z:
            z.extractall(SILERO_CACHE / wheel.stem, [n for n in z.namelist() if n.endswith(".onnx")])
        found = sorted(SILERO_CACHE.glob("**/silero_vad.onnx"))
    return found[0] if found else None


def test_silero_vad_onnx_runs_through_onnxruntime_without_torch():
    path = _silero_path()
    if path is None:
        pytest.skip("cannot fetch the silero-vad wheel with pip download (offline?)")
    vad = SileroVad(VadConfig(kind="silero", model_path=str(path)))
    assert not vad.detect(np.zeros(3 * RATE, np.float32), RATE).speech
    assert not vad.detect(_noise(3, 0.05), RATE).speech
    probs = vad.probabilities(_noise(1, 0.01), RATE)
    assert probs.shape == (31,) and np.all((probs >= 0) & (probs <= 1))
    with pytest.raises(ConfigError, match="16000 or 8000"):
        vad.probabilities(_noise(1, 0.01), 44100)


def test_missing_silero_model_says_where_to_get_it(tmp_path):
    with pytest.raises(Exception, match="pip download --no-deps silero-vad"):
        find_silero_model(tmp_path / "nope.onnx")
    assert VadConfig.from_spec("silero:/x/y.onnx").model_path == "/x/y.onnx"
    with pytest.raises(ConfigError, match="kind"):
        VadConfig.from_spec("webrtc")


def _front_end(**kw) -> AudioFrontEnd:
    cfg = AudioFrontEndConfig(**kw)
    return AudioFrontEnd(cfg, ("neutral", "happy", "angry"), "log_mel")


def _window(x: np.ndarray, t_end: float = 3.0) -> Window:
    return Window(t_end=t_end, length_s=3.0, streams={"audio": x[:, None].astype(np.float32)}, coverage={"audio": 1.0})


def test_front_end_gives_model_input_for_speech_and_no_speech_for_silence():
    fe = _front_end()
    feeds, info = fe.prepare(_window(_speech()))
    assert feeds["log_mel"].shape == (1, 1, 64, 301) and feeds["log_mel"].dtype == np.float32
    assert info["vad"]["speech"] and info["clipped_fraction"] == 0.0
    for quiet in (np.zeros(3 * RATE, np.float32), _noise(3, 0.05)):
        with pytest.raises(NoSpeechError, match="no speech") as exc:
            fe.prepare(_window(quiet))
        assert isinstance(exc.value, NothingDetectedError) and exc.value.reason == "no speech"


def test_front_end_fills_gaps_and_reports_clipping():
    x = _speech()
    x[:4000] = np.nan
    x[20000:20100] = 1.0
    feeds, info = _front_end().prepare(_window(x))
    assert np.isfinite(feeds["log_mel"]).all() and info["filled"] == 4000
    assert info["clipped_fraction"] == pytest.approx(100 / x.size)


def test_interpret_uses_regression_heads_and_documented_stress_rule():
    fe = _front_end()
    fe.prepare(_window(_speech()))
    est = fe.interpret({"emotion_logits": np.array([[0.0, 0.0, 5.0]], np.float32),
                        "avd": np.array([[0.6, -0.5, 0.4]], np.float32)}, 3.0, "b")
    assert est.modality == "audio" and max(est.probabilities, key=est.probabilities.get) == "angry"
    assert est.arousal == pytest.approx(0.6) and est.valence == pytest.approx(-0.5)
    assert est.extras["dominance"] == pytest.approx(0.4) and est.extras["emotion"] == "angry"
    assert est.stress_probability == pytest.approx(est.probabilities["angry"])
    assert stress_from({}, 0.8, -0.6) == pytest.approx(0.7) and stress_from({}, -0.5, 0.5) == 0.0


def test_front_end_config_validation_and_manifest_round_trip():
    with pytest.raises(ConfigError, match="normalisation.mean"):
        AudioFrontEndConfig(mean=(0.0,) * 3)
    with pytest.raises(ConfigError, match="classes' or 'dimensions"):
        AudioFrontEndConfig(classes=None, dimensions=None)
    with pytest.raises(ConfigError, match="dimensions.names"):
        DimensionsOutput(names=("arousal", "happiness", "valence"))
    cfg = AudioFrontEndConfig(mean=tuple(range(64)), std=(2.0,) * 64, vad=VadConfig(min_speech_s=0.5))
    assert AudioFrontEndConfig.from_dict(cfg.to_dict()) == cfg
    wave = AudioFrontEndConfig(features="waveform", classes="logits", dimensions=None)
    assert AudioFrontEndConfig.from_dict(wave.to_dict()) == wave and wave.input_shape() == (1, 48000)
    with pytest.raises(ManifestError, match="speech front_end"):
        AudioFrontEndConfig.from_dict({**cfg.to_dict(), "window_s": -1})


def test_audio_benchmark_reports_each_target_and_writes_strict_json():
    import json

    from edgemer.benchmarks.audio_bench import audio_targets
    from edgemer.benchmarks.commands import strict_json

    res = {"log_mel": {"edgemer_ms": 2.0, "skipped": "librosa not installed"},
           "int8": {"comparisons": {"int8-tflite vs fp32-onnx": {
               "argmax_agreement": 0.985, "regression_r": {"arousal": 0.999, "valence": 0.995}, "speed_ratio": 2.4}}},
           "end_to_end": {"real_time_factor": float("inf")}, "hf": {"skipped": "optimum not installed"}}
    rows = {t["id"]: t for t in audio_targets(res)}
    assert rows["int8_tflite_argmax_agreement"]["met"] is False
    assert rows["int8_tflite_regression_r"] == {**rows["int8_tflite_regression_r"], "value": 0.995, "met": True}
    assert rows["int8_tflite_speed_ratio_1_thread"]["met"] is True
    for skipped in ("log_mel_vs_librosa_db", "log_mel_speed_ratio", "audio_real_time_factor",
                    "wav2vec2_int8_vs_fp32_r"):
        assert rows[skipped]["value"] is None and rows[skipped]["met"] is None
    text = json.dumps(strict_json({"x": float("nan"), "y": [np.float32(1.5), np.int64(3)]}), allow_nan=False)
    assert json.loads(text) == {"x": None, "y": [1.5, 3]}
