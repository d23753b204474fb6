"""Audio sources: WAV reading and replay (bad files, conversions, clipping), the microphone through an
injected sounddevice (callback, overflows, device errors, missing PortAudio), and the pipeline end to end."""
from __future__ import annotations

import builtins
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from edgemer.clock import LockstepClock, PipelineClock
from edgemer.errors import ConfigError, DatasetError, MissingExtraError, SourceError
from edgemer.export.audio.synth import voiced_sound
from edgemer.sources import source_from_spec
from edgemer.sources.microphone import MicrophoneOptions, MicrophoneSource, load_sounddevice
from edgemer.sources.wav_replay import WavReplay, example_wav, load_wav_mono, read_wav
from edgemer.types import FLAG_CLIPPED, FLAG_GAP

RATE = 16000


def _pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def _speech_wav(path: Path, rate: int = RATE, seconds: float = 2.0, stereo: bool = False) -> Path:
    x = voiced_sound(seconds, rate)
    data = _pcm16(np.stack([x, 0.5 * x], axis=1) if stereo else x)
    wavfile.write(path, rate, data)
    return path


def test_read_wav_converts_8bit_stereo_and_other_rates(tmp_path):
    x, info = load_wav_mono(_speech_wav(tmp_path / "a.wav"), RATE)
    assert x.shape == (2 * RATE,) and x.dtype == np.float32 and info["conversions"] == []
    x, info = load_wav_mono(_speech_wav(tmp_path / "b.wav", rate=44100, stereo=True), RATE)
    assert x.shape == (2 * RATE,)
    assert any("mixed down" in c for c in info["conversions"]) and any("44100 Hz -> 16000 Hz" in c
                                                                         for c in info["conversions"])
    eight = (np.clip(voiced_sound(1.0, 8000) * 127 + 128, 0, 255)).astype(np.uint8)
    wavfile.write(tmp_path / "c.wav", 8000, eight)
    wav = read_wav(tmp_path / "c.wav")
    assert wav.info["bits"] == 8 and np.abs(wav.samples).max() <= 1.0
    assert any("8-bit" in c for c in wav.info["conversions"])
    wavfile.write(tmp_path / "d.wav", 22050, voiced_sound(1.0, 22050))
    assert read_wav(tmp_path / "d.wav").info["format"] == "float"


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"not a wave file at all" * 10), "not a readable WAV"),
    (lambda p: wavfile.write(p, RATE, np.zeros(0, np.int16)), "no audio samples"),
    (lambda p: wavfile.write(p, 4000, np.zeros(4000, np.int16)), "4000 Hz is outside"),
    (lambda p: wavfile.write(p, RATE, np.full(100, np.nan, np.float32)), "NaN"),
])
def test_bad_wav_files_are_refused_with_a_clear_message(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(DatasetError, match=message):
        read_wav(path)
    with pytest.raises(DatasetError, match="no such WAV"):
        read_wav(tmp_path / "missing.wav")


def test_truncated_wav_keeps_what_is_there(tmp_path):
    path = _speech_wav(tmp_path / "t.wav")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    wav = read_wav(path)
    assert 0.9 < wav.info["duration_s"] < 1.1 and any("truncated" in c for c in wav.info["conversions"])


def _collect(source) -> list:
    """Every chunk of a finite source, on a lockstep clock: as fast as it goes, with no deadline."""
    chunks: list = []
    clock = LockstepClock()
    source.start(clock, chunks.append)
    clock.advance_to(float("inf"))  # returns once the source has delivered everything and ended
    source.stop()
    return chunks


def test_wav_replay_flags_clipped_blocks_and_plays_every_sample(tmp_path):
    x = voiced_sound(2.0, 44100) * 2.0  # peaks at 0.4 ... then force a clipped stretch
    x[44100:44200] = 1.5
    wavfile.write(tmp_path / "clip.wav", 44100, _pcm16(np.clip(x, -1, 1)))
    src = WavReplay(tmp_path / "clip.wav", speed=50)
    assert src.streams[0].rate_hz == RATE and src.streams[0].media
    chunks = _collect(src)
    assert sum(c.n for c in chunks) == 2 * RATE
    clipped = [c for c in chunks if c.flags & FLAG_CLIPPED]
    assert 1 <= len(clipped) <= 3 and all(0.9 < c.t0 - chunks[0].t0 < 1.1 for c in clipped)
    assert src.health()["clipped_blocks"] == len(clipped) and "resampled 44100 Hz" in src.health()["conversions"]


def test_source_specs_for_audio(tmp_path):
    src = source_from_spec(f"replay:{_speech_wav(tmp_path / 's.wav')}", speed=10)
    assert isinstance(src, WavReplay) and src.speed == 10
    assert isinstance(source_from_spec("replay:speech-example"), WavReplay) and example_wav().is_file()
    assert example_wav().stat().st_size < 300_000
    mic = source_from_spec("mic:2@48000")
    assert isinstance(mic, MicrophoneSource) and mic.options.device == 2 and mic.options.capture_rate_hz == 48000
    assert source_from_spec("mic:USB Audio").options.device == "USB Audio"
    assert source_from_spec("mic@44100").options.capture_rate_hz == 44100
    with pytest.raises(ConfigError, match="whole Hz"):
        source_from_spec("mic:1@fast")
    with pytest.raises(DatasetError, match="no such WAV"):
        source_from_spec("replay:/no/such/file.wav")


class _FakeStream:
    def __init__(self, **kw) -> None:
        self.kw = kw
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


class _Status:
    def __init__(self, overflow: bool = False) -> None:
        self.input_overflow = overflow


class _FakeSoundDevice:
    """Stands in for the sounddevice module: two devices, streams that record their callback."""

    def __init__(self) -> None:
        self.devices = [{"name": "Built-in Mic", "max_input_channels": 2, "default_samplerate": 48000.0},
                        {"name": "HDMI out", "max_input_channels": 0, "default_samplerate": 48000.0}]
        self.streams: list[_FakeStream] = []

    def query_devices(self, device=None, kind=None):
        if device is None and kind is None:
            return self.devices
        if device is None:
            return self.devices[0]
        for i, d in enumerate(self.devices):
            if (device == i or (isinstance(device, str) and device.lower() in d["name"].lower())) \
                    and d["max_input_channels"] > 0:
                return d
        raise ValueError(f"No input device matching {device!r}")

    def InputStream(self, **kw):  # noqa: N802 (sounddevice's name)
        stream = _FakeStream(**kw)
        self.streams.append(stream)
        return stream


def test_microphone_callback_resamples_counts_overflows_and_flags_clipping():
    sd = _FakeSoundDevice()
    # Blocks come as fast as this thread calls back, not in real time: a drift limit far above the
    # second of audio keeps the timestamps on the sample count, so only the overflow re-anchors them.
    mic = MicrophoneSource(MicrophoneOptions(device="built-in", channels=2, max_drift_s=60.0), sounddevice=sd)
    chunks: list = []
    mic.start(PipelineClock(), chunks.append)
    stream = sd.streams[0]
    assert stream.started and stream.kw["samplerate"] == 48000 and stream.kw["channels"] == 2
    callback = stream.kw["callback"]
    block = stream.kw["blocksize"]
    x = voiced_sound(1.0, 48000)
    n_blocks = x.size // block
    for i in range(n_blocks):
        data = np.repeat(x[i * block:(i + 1) * block, None], 2, axis=1)
        if i == 10:
            data[5] = 1.0  # a clipped sample
        callback(data, block, None, _Status(overflow=(i == 20)))
    deadline = time.monotonic() + 60  # the reader thread of a loaded machine may take a while
    while mic.health()["blocks"] < n_blocks and time.monotonic() < deadline:
        time.sleep(0.01)
    mic.stop()
    assert stream.closed
    h = mic.health()
    assert h["overflows"] == 1 and h["clipped_blocks"] == 1 and h["device"] == "Built-in Mic"
    assert all(c.rate_hz == 16000 and c.samples.shape[1] == 1 for c in chunks)
    assert abs(sum(c.n for c in chunks) - n_blocks * block / 3) < 0.05 * 16000
    assert sum(bool(c.flags & FLAG_CLIPPED) for c in chunks) == 1
    assert sum(bool(c.flags & FLAG_GAP) for c in chunks) == 1 and h["resyncs"] == 1


def test_microphone_queue_drops_oldest_when_the_reader_lags():
    mic = MicrophoneSource(MicrophoneOptions(queue_blocks=2), sounddevice=_FakeSoundDevice())
    for _ in range(5):
        mic._callback(np.zeros((512, 1), np.float32), 512, None, _Status())
    assert mic.health()["dropped_blocks"] == 3


def test_missing_microphone_lists_the_input_devices():
    mic = MicrophoneSource(MicrophoneOptions(device="usb"), sounddevice=_FakeSoundDevice())
    with pytest.raises(SourceError, match="input device 'usb' not found.*0 'Built-in Mic'"):
        mic.start(PipelineClock(), lambda c: None)
    with pytest.raises(SourceError, match="has 2 input channel.*4 asked for"):
        MicrophoneSource(MicrophoneOptions(device=0, channels=4), sounddevice=_FakeSoundDevice()).start(
            PipelineClock(), lambda c: None)


def test_missing_portaudio_says_apt_get_install_libportaudio2(monkeypatch):
    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(SourceError, match="apt-get install libportaudio2"):
        load_sounddevice()
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    monkeypatch.setattr(builtins, "__import__", real_import)
    with pytest.raises(MissingExtraError, match=r"edgemer\[audio\]"):
        load_sounddevice()


def test_microphone_options_validation_names_the_field():
    with pytest.raises(ConfigError, match="capture_rate_hz"):
        MicrophoneOptions(capture_rate_hz=100)
    with pytest.raises(ConfigError, match="block_s"):
        MicrophoneOptions(block_s=5)


def _story_wav(path: Path) -> Path:
    """3.5 s of room noise, 3 s of speech, 4 s of noise: windows without speech at both ends."""
    rng = np.random.default_rng(0)
    speech = voiced_sound(3.0, RATE, seed=3) * 2
    x = np.concatenate([np.zeros(int(3.5 * RATE)), speech, np.zeros(4 * RATE)])
    x = x + rng.standard_normal(x.size) * 10 ** (-60 / 20)
    wavfile.write(path, RATE, _pcm16(x))
    return path


def test_demo_bundle_on_replayed_wav_end_to_end_with_no_speech_windows(tmp_path):
    out = tmp_path / "est.jsonl"
    rec = tmp_path / "rec"
    r = subprocess.run([sys.executable, "-m", "edgemer", "run", "--bundle", "audio-demo", "--source",
                        f"replay:{_story_wav(tmp_path / 'story.wav')}", "--speed", "50", "--quiet", "--out", str(out),
                        "--record", str(rec)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8  # windows ending at 3 .. 10 s
    silent = [e for e in rows if e["absent"].get("audio") == "no speech"]
    spoken = [e for e in rows if e["available"].get("audio")]
    assert silent and spoken and len(silent) + len(spoken) == len(rows)
    assert rows[0]["absent"] == {"audio": "no speech"} and rows[0]["stress_probability"] is None
    e = spoken[0]["modalities"]["audio"]
    assert abs(sum(e["probabilities"].values()) - 1) < 1e-5 and -1 <= e["arousal"] <= 1
    assert e["extras"]["speech_s"] >= 0.3
    assert "nothing to analyse" in r.stdout
    assert not list(rec.glob("audio*")), "raw audio must never be recorded unless asked"


def test_raw_audio_is_recorded_only_when_the_audio_stream_is_named(tmp_path):
    from edgemer.pipeline import Pipeline

    wav = _speech_wav(tmp_path / "speech.wav", seconds=4.0)
    default, asked = tmp_path / "rec-default", tmp_path / "rec-audio"
    with Pipeline([WavReplay(wav, speed=50.0)], ["audio-demo"], record=default) as pipe:
        pipe.wait()
    assert sorted(p.name for p in default.iterdir()) == ["chunks.jsonl", "meta.json"]
    assert (default / "chunks.jsonl").read_text() == ""
    meta = json.loads((default / "meta.json").read_text())
    assert meta["streams"] == [] and meta["skipped_media_streams"] == ["audio"]
    # Only naming the stream records it: the samples exactly as the source emitted them.
    with Pipeline([WavReplay(wav, speed=50.0)], ["audio-demo"], record=asked, record_media=["audio"]) as pipe:
        pipe.wait()
    recorded = np.fromfile(asked / "audio.f32", dtype="<f4")
    np.testing.assert_array_equal(recorded, load_wav_mono(wav, RATE)[0])
