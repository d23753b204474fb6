"""Audio exports: RAVDESS / CREMA-D / folder loaders, the compact CNN bundle end to end, the shipped demo."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from edgemer.bundle import load_bundle
from edgemer.errors import ConfigError, DatasetError
from edgemer.export.audio.config import AudioExportConfig
from edgemer.export.audio.data import load_audio_data, scan_data
from edgemer.export.audio.synth import voiced_sound
from edgemer.frontends.audio import AudioFrontEnd, EMOTION_ANCHORS
from edgemer.types import Window

RATE = 16000
TINY = AudioExportConfig(name="tiny-audio", epochs=2, width=8, batch_size=16, calibration_windows=16,
                         bundle_samples=4, crops_per_clip=1)


def _wav(path: Path, seed: int, rate: int = RATE, seconds: float = 1.2, loud: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = voiced_sound(seconds, rate, seed=seed, level=0.2 * loud)
    wavfile.write(path, rate, np.round(x * 32767).astype(np.int16))


def _ravdess(root: Path, actors: int = 4, emotions: tuple[str, ...] = ("01", "03", "05")) -> Path:
    for a in range(1, actors + 1):
        for e in emotions:
            for rep in ("01", "02"):
                _wav(root / f"Actor_{a:02d}" / f"03-01-{e}-02-01-{rep}-{a:02d}.wav", seed=a * 100 + int(e) * 10 +
                     int(rep), rate=48000, loud=2.0 if e == "05" else 1.0)
        _wav(root / f"Actor_{a:02d}" / f"03-02-03-01-01-01-{a:02d}.wav", seed=a)  # song: skipped by default
    (root / "Actor_01" / "readme.wav").write_bytes(b"")  # not a RAVDESS name
    return root


def test_ravdess_loader_reads_names_skips_song_and_splits_by_actor(tmp_path):
    clips, info, source = scan_data(f"ravdess:{_ravdess(tmp_path / 'rav')}")
    assert len(clips) == 24 and info["skipped"] == {"not_ravdess_name": 1, "song": 4, "video_only": 0}
    assert {c.label for c in clips} == {"neutral", "happy", "angry"} and "RAVDESS" in source
    strong_angry = next(c for c in clips if c.label == "angry")
    assert strong_angry.avd[0] == pytest.approx(min(1.0, EMOTION_ANCHORS["angry"][0] * 1.25))
    data = load_audio_data(f"ravdess:{tmp_path / 'rav'}", TINY, progress=False)
    assert data.labels == ("neutral", "happy", "angry")
    assert data.x_train.shape[1:] == (1, 64, 301) and len(data.speakers_heldout) == 1
    assert not set(data.speakers_train) & set(data.speakers_heldout)
    assert data.info["conversions"] == {"resampled 48000 Hz -> 16000 Hz": 24} and not data.synthetic


def test_crema_d_and_folder_loaders(tmp_path):
    crema = tmp_path / "crema"
    for actor in (1001, 1002, 1003):
        for emo, level in (("ANG", "HI"), ("SAD", "LO"), ("NEU", "XX")):
            _wav(crema / f"{actor}_DFA_{emo}_{level}.wav", seed=actor + len(emo))
    clips, _, _ = scan_data(f"crema-d:{crema}")
    assert sorted({c.label for c in clips}) == ["angry", "neutral", "sad"] and len({c.speaker for c in clips}) == 3
    folder = tmp_path / "folder"
    rows = ["file,label,speaker,arousal,valence,dominance"]
    for i, lab in enumerate(["Happy", "anger", "happy", "ANGER"]):
        _wav(folder / f"{i}.wav", seed=i)
        rows.append(f"{i}.wav,{lab},s{i % 2},{0.5 - i / 10:.2f},0.1,-0.2")
    rows.append("missing.wav,happy,s0,0,0,0")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    clips, info, _ = scan_data(f"folder:{folder}")
    assert [c.label for c in clips] == ["happy", "angry", "happy", "angry"] and info["skipped"]["missing_file"] == 1
    assert clips[1].avd == (0.4, 0.1, -0.2)
    (folder / "labels.csv").write_text("file,label,arousal,valence\n0.wav,happy,3,4\n")
    with pytest.raises(DatasetError, match=r"\[-1, 1\]"):
        scan_data(f"folder:{folder}")
    (folder / "labels.csv").write_text("name,emotion\n0.wav,happy\n")
    with pytest.raises(DatasetError, match="file,label"):
        scan_data(f"folder:{folder}")


@pytest.mark.parametrize("spec,error,message", [
    ("ravdess", ConfigError, "data spec"), ("imagenet:/x", ConfigError, "data spec"),
    ("crema-d:/no/such/dir", DatasetError, "no such folder"), ("folder:/no/such", DatasetError, "no such folder"),
])
def test_bad_data_specs(spec, error, message):
    with pytest.raises(error, match=message):
        scan_data(spec)


def test_tiny_export_writes_a_verified_bundle_the_runtime_runs(tmp_path):
    pytest.importorskip("torch", reason="audio export needs the [export] extra")
    from edgemer.export.audio.export import export_audio

    result = export_audio(f"ravdess:{_ravdess(tmp_path / 'rav')}", tmp_path / "bundle", TINY, progress=False)
    bundle = load_bundle(result.bundle_dir)
    m = bundle.manifest
    assert m.modality == "audio" and m.front_end["type"] == "speech_emotion" and m.labels == ("neutral", "happy", "angry")
    assert {mf.key for mf in m.models.values()} == {"fp32-onnx", "int8-onnx", "int8-tflite"}
    assert m.provenance["synthetic_data"] is False and "ravdess" in m.provenance["command"]
    report = bundle.verification()
    assert set(report["dimensions"]["comparisons"]) == {"int8-onnx vs fp32-onnx", "int8-tflite vs fp32-onnx"}
    assert any(t["name"] == "regression r (avd)" for t in report["targets"])
    assert "Dimensional outputs" in (bundle.path / "verification.md").read_text()
    # The runtime front-end turns raw audio into exactly the kind of input the model was exported with.
    fe = AudioFrontEnd.from_manifest(m)
    x = voiced_sound(3.0, RATE, seed=7) + np.random.default_rng(0).standard_normal(3 * RATE).astype(np.float32) * 1e-3
    feeds, _ = fe.prepare(Window(3.0, 3.0, {"audio": x[:, None]}, {"audio": 1.0}))
    from edgemer.backends import open_session

    out = open_session(bundle, "onnxruntime", "int8").run(feeds)
    est = fe.interpret(out, 3.0, m.name)
    assert set(est.probabilities) == set(m.labels) and -1 <= est.valence <= 1
    summary = result.summary()
    assert "regression r" in summary and "target" in summary


def test_shipped_audio_demo_is_small_verified_and_labelled_synthetic():
    bundle = load_bundle("audio-demo")
    m = bundle.manifest
    size = sum(f.stat().st_size for f in bundle.path.iterdir())
    assert size < 3_000_000
    assert m.trained_on_synthetic_data and m.provenance["synthetic_data"] is True
    assert "ravdess" in m.provenance["train_on_real_data"] and "crema-d" in m.provenance["train_on_real_data"]
    assert "SYNTHETIC" in m.provenance["note"] and m.front_end["vad"]["kind"] == "energy"
    report = bundle.verification()
    assert report["passed"], report["targets"]
    r = subprocess.run([sys.executable, "-m", "edgemer", "info", "audio-demo"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "SYNTHETIC speech" in r.stdout and "ravdess" in r.stdout


def test_synth_speech_command_writes_a_folder_data_set(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing: bash scripts/install-system-packages.sh")
    from edgemer.export.audio.synth import write_speech_folder

    out = write_speech_folder(tmp_path / "speech", per_voice=1, voices=("en-us+m3", "en-us+f3"))
    clips, _, _ = scan_data(f"folder:{out}")
    assert len(clips) == 10 and {c.speaker for c in clips} == {"en-us_m3", "en-us_f3"}
    angry = [c for c in clips if c.label == "angry"][0]
    calm = [c for c in clips if c.label == "calm"][0]
    assert angry.avd[0] > calm.avd[0]  # louder, faster, higher: more arousal
    rate, x = wavfile.read(angry.path)
    assert rate == RATE and x.dtype == np.int16
    with pytest.raises(DatasetError, match="not empty"):
        write_speech_folder(out, per_voice=1)
