"""Synthetic speech with espeak-ng: a stand-in data set for the audio demo (no recordings of anyone).

Five speaking styles play five emotion classes; each style is a range of speaking rate
(words/min), pitch (espeak 0..99), loudness (espeak amplitude 0..200) and pitch range
(SSML ``prosody range``), drawn per clip across several espeak voices (the "speakers").
Rate, loudness and pitch stand in for arousal: the arousal target of a clip is a fixed
mix of the three, scaled to [-1, 1]; valence and dominance are the class anchors
(:data:`edgemer.frontends.audio.EMOTION_ANCHORS`). A model trained on this learns
espeak's prosody, not human emotion: every bundle trained on it says so.

:func:`write_speech_folder` writes ``DIR/<voice>/<n>.wav`` (16 kHz mono 16-bit),
``DIR/labels.csv`` (file, label, speaker, arousal, valence, dominance) and
``DIR/synthetic.json``: a ``folder:DIR`` data set for ``edgemer export audio``.
:func:`write_example_wav` writes the short replay example shipped with edgemer.
espeak-ng is a Debian package (``apt-get install espeak-ng``, or
``scripts/install-system-packages.sh``).
"""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from edgemer.errors import DatasetError
from edgemer.export.core.atomic import atomic_directory
from edgemer.export.audio.data import SYNTHETIC_MARKER
from edgemer.frontends.audio import EMOTION_ANCHORS
from edgemer.frontends.audio_dsp import resample

RATE_HZ = 16000
ESPEAK_HINT = "install espeak-ng: sudo apt-get install espeak-ng (or: sudo bash scripts/install-system-packages.sh)"


@dataclass(frozen=True)
class SpeakingStyle:
    """Ranges drawn per clip: rate (words/min), pitch (0..99), amplitude (0..200), SSML pitch ranges."""

    rate: tuple[int, int]
    pitch: tuple[int, int]
    amplitude: tuple[int, int]
    ranges: tuple[str, ...]


STYLES = {
    "neutral": SpeakingStyle((150, 175), (42, 55), (80, 110), ("medium",)),
    "calm": SpeakingStyle((115, 140), (32, 44), (50, 75), ("low",)),
    "happy": SpeakingStyle((180, 215), (62, 80), (110, 150), ("x-high", "high")),
    "sad": SpeakingStyle((95, 125), (18, 32), (35, 60), ("x-low",)),
    "angry": SpeakingStyle((190, 230), (38, 55), (160, 200), ("high", "medium")),
}
"""Class -> speaking style."""

VOICES = ("en-us+m1", "en-us+m3", "en-us+m5", "en-us+m7", "en-us+f1", "en-us+f3", "en-us+f5", "en-gb+m2",
          "en-gb+m4", "en-gb+f2", "en-gb+f4", "en-us+klatt")
SENTENCES = (
    "Kids are talking by the door.", "The train leaves at seven tonight.", "I put the keys on the kitchen table.",
    "We are going to the market tomorrow.", "Please close the window before you leave.",
    "The meeting starts in ten minutes.", "My brother painted the fence last week.",
    "There is a letter for you on the desk.", "She walked her dog along the river.",
    "They moved to a new house in the spring.", "The coffee is still warm.", "I will call you after lunch.",
    "Dogs are sitting by the door.", "The bus was late again this morning.", "He found the book under the bed.",
    "It is going to rain this afternoon.")

_LIMITS = {"rate": (95, 230), "amplitude": (35, 200), "pitch": (18, 80)}


def espeak_path() -> str:
    """The espeak-ng executable, or :class:`DatasetError` saying how to install it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DatasetError(f"espeak-ng is not installed, so speech cannot be synthesised; {ESPEAK_HINT}")
    return exe


def arousal_of(rate: float, amplitude: float, pitch: float) -> float:
    """The arousal stand-in in [-1, 1]: 0.45 rate + 0.35 loudness + 0.2 pitch, each scaled to [-1, 1]."""
    def z(v: float, key: str) -> float:
        lo, hi = _LIMITS[key]
        return 2 * (v - lo) / (hi - lo) - 1
    return float(np.clip(0.45 * z(rate, "rate") + 0.35 * z(amplitude, "amplitude") + 0.2 * z(pitch, "pitch"), -1, 1))


def synthesise(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, amplitude: int = 100,
               pitch_range: str = "medium") -> np.ndarray:
    """Speak ``text`` with espeak-ng; mono float32 at 16 kHz, -1..1 full scale.

    Raises DatasetError when espeak-ng is missing or fails.
    """
    ssml = f'<speak><prosody range="{pitch_range}">{text}</prosody></speak>'
    cmd = [espeak_path(), "-m", "--stdout", "-v", voice, "-s", str(rate), "-p", str(pitch), "-a", str(amplitude), ssml]
    try:
        out = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
        with warnings.catch_warnings():  # espeak's --stdout header leaves the length open
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate_hz, data = wavfile.read(io.BytesIO(out))
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        raise DatasetError(f"espeak-ng failed for voice {voice!r} ({exc}); check 'espeak-ng --voices=en'") from exc
    x = np.asarray(data, np.float32).reshape(-1) / 32768.0
    return resample(x, rate_hz, RATE_HZ)


def voiced_sound(seconds: float, rate_hz: int = RATE_HZ, seed: int = 0, level: float = 0.2) -> np.ndarray:
    """A speech-like sound without espeak-ng: a voiced harmonic source (f0 100-220 Hz, slow
    vibrato) shaped by three formants (F1 500-800, F2 1000-1600, F3 2200-2800 Hz) and a
    3-5 Hz syllable envelope; mono float32 ``[seconds * rate_hz]`` peaking at ``level``.
    For tests and for export checks where espeak-ng is missing."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate_hz))
    t = np.arange(n) / rate_hz
    f0 = rng.uniform(100, 220) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate_hz
    formants = ((rng.uniform(500, 800), 120), (rng.uniform(1000, 1600), 180), (rng.uniform(2200, 2800), 250))
    x = np.zeros(n)
    for k in range(1, int(min(4000, rate_hz / 2) / f0.max())):
        gain = sum(np.exp(-0.5 * ((k * f0 - fc) / bw) ** 2) for fc, bw in formants) + 0.05
        x += gain * np.sin(k * phase) / np.sqrt(k)
    x *= np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 0.7
    return (level * x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """float -1..1 -> int16 PCM (clipped at full scale)."""
    return np.clip(np.round(np.asarray(x, np.float64) * 32767), -32768, 32767).astype(np.int16)


def write_speech_folder(out_dir: Path, per_voice: int = 4, voices: tuple[str, ...] = VOICES, seed: int = 0,
                        classes: tuple[str, ...] = tuple(STYLES), overwrite: bool = False, workers: int = 2) -> Path:
    """Write ``per_voice`` clips per class and voice (see the module docstring); return ``out_dir``.

    Raises DatasetError: espeak-ng missing, an unknown class, or ``out_dir`` not replaceable.
    """
    espeak_path()
    unknown = [c for c in classes if c not in STYLES]
    if unknown or len(classes) < 2:
        raise DatasetError(f"synthetic speech classes must be two or more of {sorted(STYLES)}, got {list(classes)}")
    if per_voice < 1 or not voices:
        raise DatasetError(f"synthetic speech needs per_voice >= 1 and at least one voice, got {per_voice}, {voices}")
    rng = np.random.default_rng(seed)
    jobs = []
    for voice in voices:
        for label in classes:
            st = STYLES[label]
            for i in range(per_voice):
                jobs.append({"voice": voice, "label": label, "text": SENTENCES[int(rng.integers(len(SENTENCES)))],
                             "rate": int(rng.integers(st.rate[0], st.rate[1] + 1)),
                             "pitch": int(rng.integers(st.pitch[0], st.pitch[1] + 1)),
                             "amplitude": int(rng.integers(st.amplitude[0], st.amplitude[1] + 1)),
                             "pitch_range": st.ranges[int(rng.integers(len(st.ranges)))], "i": i})

    def looks_ours(p: Path) -> bool:
        return (p / SYNTHETIC_MARKER).is_file()

    with atomic_directory(Path(out_dir), overwrite, looks_ours, "synthetic speech folder", DatasetError,
                          "overwrite=True (--overwrite)") as tmp:
        def make(job: dict) -> list[str]:
            x = synthesise(job["text"], job["voice"], job["rate"], job["pitch"], job["amplitude"], job["pitch_range"])
            folder = job["voice"].replace("+", "_")
            rel = f"{folder}/{job['label']}_{job['i']:02d}.wav"
            (tmp / folder).mkdir(exist_ok=True)
            wavfile.write(tmp / rel, RATE_HZ, to_pcm16(x))
            _, valence, dominance = EMOTION_ANCHORS[job["label"]]
            arousal = arousal_of(job["rate"], job["amplitude"], job["pitch"])
            return [rel, job["label"], folder, f"{arousal:.4f}", f"{valence:.4f}", f"{dominance:.4f}"]

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            rows = list(pool.map(make, jobs))
        lines = ["file,label,speaker,arousal,valence,dominance"] + [",".join(r) for r in rows]
        (tmp / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / SYNTHETIC_MARKER).write_text(json.dumps({
            "synthetic": True, "generator": "edgemer data synth-speech (espeak-ng)", "seed": seed,
            "voices": list(voices), "classes": list(classes), "per_voice": per_voice, "rate_hz": RATE_HZ,
            "styles": {k: vars(STYLES[k]) for k in classes},
            "arousal": "0.45 rate + 0.35 loudness + 0.2 pitch, each scaled to [-1, 1] (a stand-in)",
            "valence_dominance": "class anchors (edgemer.frontends.audio.EMOTION_ANCHORS)"}, indent=2) + "\n")
    return Path(out_dir).expanduser().absolute()


def write_example_wav(path: Path, seed: int = 0) -> Path:
    """The replay example: 1.5 s of room noise, a calm sentence, a pause, an angry sentence
    (about 7 s, 16 kHz mono 16-bit, < 300 KB). Written with espeak-ng; noise at -60 dBFS."""
    rng = np.random.default_rng(seed)
    calm = synthesise("I am sitting quietly and reading a book.", "en-us+f3", 125, 38, 60, "low")
    angry = synthesise("Stop that right now, I told you twice!", "en-us+m3", 215, 48, 190, "high")
    gap = np.zeros(int(0.8 * RATE_HZ), np.float32)
    lead = np.zeros(int(1.5 * RATE_HZ), np.float32)
    x = np.concatenate([lead, calm, gap, angry, gap])[: int(7.0 * RATE_HZ)]
    x = x + rng.standard_normal(x.size).astype(np.float32) * 10 ** (-60 / 20)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, RATE_HZ, to_pcm16(x))
    return path
