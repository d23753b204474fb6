"""Speech emotion data sets -> log-mel training windows, split by speaker.

Data specs (``edgemer export audio --data SPEC``):

- ``ravdess:DIR`` — RAVDESS audio (``Actor_01/03-01-05-01-02-01-01.wav`` ...): the seven
  dash-separated codes are modality, vocal channel (01 speech, 02 song), emotion
  (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
  08 surprised), intensity (01 normal, 02 strong), statement, repetition, actor.
- ``crema-d:DIR`` — CREMA-D ``AudioWAV`` (``1001_DFA_ANG_XX.wav``): actor, sentence,
  emotion (ANG, DIS, FEA, HAP, NEU, SAD) and level (LO, MD, HI, XX unspecified).
- ``folder:DIR`` — WAV files under DIR and ``DIR/labels.csv`` with a header and the
  columns ``file`` (relative to DIR) and ``label``; optional ``speaker``, ``split``
  (``train``/``test``) and ``arousal``, ``valence``, ``dominance`` (each in [-1, 1]).

Labels use edgemer's names (:data:`edgemer.frontends.audio.EMOTIONS`; ``fearful`` ->
``fear``, ``surprised`` -> ``surprise``, ...). Where a data set has no dimensional
ratings, arousal/valence/dominance targets are the class anchors
(:data:`~edgemer.frontends.audio.EMOTION_ANCHORS`), arousal scaled by the rated
intensity (strong/high x1.25, low x0.75): a stand-in, said so in the manifest.

Each clip is read with :func:`edgemer.sources.wav_replay.load_wav_mono` (the runtime's
WAV reader), cut into ``window_s`` windows at random offsets (short clips are placed at a
random offset in the window), given a noise floor and a random gain, and turned into
log-mel dB exactly as the runtime front-end does (:class:`~edgemer.frontends.audio.AudioFeatures`).
Speakers are held out whole, so verification measures unseen voices.
"""
from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemer.errors import ConfigError, DatasetError
from edgemer.export.audio.config import AudioExportConfig
from edgemer.export.core.progress import progress_bar
from edgemer.frontends.audio import EMOTION_ANCHORS, EMOTIONS, AudioFeatures, AudioFrontEndConfig
from edgemer.frontends.audio_dsp import MelConfig
from edgemer.sources.wav_replay import load_wav_mono

log = logging.getLogger(__name__)

RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fear",
                    "07": "disgust", "08": "surprise"}
CREMA_D_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CREMA_D_LEVELS = {"LO": 0.75, "MD": 1.0, "HI": 1.25, "XX": 1.0}
LABEL_ALIASES = {"anger": "angry", "ang": "angry", "fearful": "fear", "fea": "fear", "surprised": "surprise",
                 "sur": "surprise", "happiness": "happy", "joy": "happy", "hap": "happy", "sadness": "sad",
                 "neu": "neutral", "disgusted": "disgust", "dis": "disgust"}
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.wav$", re.IGNORECASE)
SYNTHETIC_MARKER = "synthetic.json"
"""A folder data set holding this file was synthesised (``edgemer data synth-speech``)."""
_CREMA_NAME = re.compile(r"^(\d+)_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})\.wav$", re.IGNORECASE)


@dataclass(frozen=True)
class AudioClip:
    """One labelled recording: path, label (edgemer name), speaker, dimensional targets
    (arousal, valence, dominance in [-1, 1]) or None, and the data set's split if it has one."""

    path: Path
    label: str
    speaker: str
    avd: tuple[float, float, float] | None = None
    split: str | None = None


def canonical_label(text: str) -> str:
    """A label in edgemer's vocabulary (``Fearful`` -> ``fear``); unknown labels are kept, lower-cased."""
    t = text.strip().lower()
    return LABEL_ALIASES.get(t, t)


def anchor_avd(label: str, intensity: float = 1.0) -> tuple[float, float, float] | None:
    """Class-anchor targets with arousal scaled by ``intensity`` (None for labels without an anchor)."""
    if label not in EMOTION_ANCHORS:
        return None
    a, v, d = EMOTION_ANCHORS[label]
    return float(np.clip(a * intensity, -1, 1)), v, d


def scan_ravdess(root: Path, include_song: bool = False) -> tuple[list[AudioClip], dict[str, Any]]:
    """RAVDESS WAVs under ``root`` (any depth); returns clips and counts of what was skipped."""
    clips, skipped = [], {"not_ravdess_name": 0, "song": 0, "video_only": 0}
    for p in sorted(root.rglob("*.wav")):
        m = _RAVDESS_NAME.match(p.name)
        if not m or m.group(3) not in RAVDESS_EMOTIONS:
            skipped["not_ravdess_name"] += 1
            continue
        modality, channel, emotion, intensity, _, _, actor = m.groups()
        if modality == "02":
            skipped["video_only"] += 1
            continue
        if channel == "02" and not include_song:
            skipped["song"] += 1
            continue
        label = RAVDESS_EMOTIONS[emotion]
        clips.append(AudioClip(p, label, f"actor{actor}", anchor_avd(label, 1.25 if intensity == "02" else 1.0)))
    return clips, {"skipped": skipped}


def scan_crema_d(root: Path) -> tuple[list[AudioClip], dict[str, Any]]:
    """CREMA-D WAVs under ``root`` (any depth)."""
    clips, skipped = [], {"not_crema_d_name": 0}
    for p in sorted(root.rglob("*.wav")):
        m = _CREMA_NAME.match(p.name)
        if not m or m.group(3).upper() not in CREMA_D_EMOTIONS:
            skipped["not_crema_d_name"] += 1
            continue
        actor, _, emotion, level = m.groups()
        label = CREMA_D_EMOTIONS[emotion.upper()]
        clips.append(AudioClip(p, label, f"actor{actor}", anchor_avd(label, CREMA_D_LEVELS.get(level.upper(), 1.0))))
    return clips, {"skipped": skipped}


def scan_folder(root: Path) -> tuple[list[AudioClip], dict[str, Any]]:
    """``root/labels.csv`` (see the module docstring) and the WAVs it names."""
    table = root / "labels.csv"
    if not table.is_file():
        raise DatasetError(f"{root}: no labels.csv; a folder data set needs labels.csv with the columns file,label "
                           f"(optional speaker, split, arousal, valence, dominance)")
    clips, skipped = [], {"missing_file": 0, "bad_row": 0}
    with open(table, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower() for c in (reader.fieldnames or [])}
        if not {"file", "label"} <= cols:
            raise DatasetError(f"{table}: needs a header with the columns file,label (found {sorted(cols)})")
        dims = [c for c in ("arousal", "valence", "dominance") if c in cols]
        if dims and len(dims) < 2:
            raise DatasetError(f"{table}: give arousal and valence together (dominance optional), found {dims}")
        for row in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            if not row.get("file") or not row.get("label"):
                skipped["bad_row"] += 1
                continue
            p = root / row["file"]
            if not p.is_file():
                skipped["missing_file"] += 1
                continue
            label = canonical_label(row["label"])
            avd = anchor_avd(label)
            if dims:
                try:
                    vals = [float(row[c]) for c in dims] + ([] if "dominance" in dims else [0.0])
                except ValueError:
                    skipped["bad_row"] += 1
                    continue
                if any(not -1 <= v <= 1 for v in vals):
                    raise DatasetError(f"{table}: arousal/valence/dominance must lie in [-1, 1] (row for {row['file']}); "
                                       f"rescale ratings, e.g. (r - 3) / 2 for a 1..5 scale")
                avd = (vals[0], vals[1], vals[2])
            split = row.get("split", "").lower() or None
            if split not in (None, "train", "test"):
                split = "test" if split in ("heldout", "held-out", "val", "validation") else "train"
            clips.append(AudioClip(p, label, row.get("speaker") or "", avd, split))
    return clips, {"skipped": skipped}


def scan_data(spec: str, include_song: bool = False) -> tuple[list[AudioClip], dict[str, Any], str]:
    """Clips of a data spec (``ravdess:DIR``, ``crema-d:DIR``, ``folder:DIR``), scan info and a description."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("ravdess", "crema-d", "folder") or not path:
        raise ConfigError(f"data spec {spec!r}: use ravdess:DIR, crema-d:DIR or folder:DIR (WAVs + labels.csv)")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (data spec {spec!r})")
    if kind == "ravdess":
        clips, info = scan_ravdess(root, include_song)
        source = f"RAVDESS folder '{root.name}'"
    elif kind == "crema-d":
        clips, info = scan_crema_d(root)
        source = f"CREMA-D folder '{root.name}'"
    else:
        clips, info = scan_folder(root)
        source = f"folder '{root.name}' with labels.csv"
    if not clips:
        raise DatasetError(f"{root}: no usable clips for {kind} ({info['skipped']}); check the folder and the file "
                           f"naming convention of the data set")
    return clips, info, source


@dataclass
class AudioDataset:
    """Log-mel windows split by speaker.

    x_*: ``[n, 1, n_mels, n_frames]`` float32 *unnormalised* dB; y_*: ``[n]`` class index
    into ``labels``; avd_*: ``[n, 3]`` float32 targets; m_*: ``[n]`` bool, True where the
    targets are known. mean/std: per mel band over the training windows (dB).
    """

    labels: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    avd_train: np.ndarray
    m_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray
    avd_heldout: np.ndarray
    m_heldout: np.ndarray
    speakers_train: tuple[str, ...]
    speakers_heldout: tuple[str, ...]
    source: str
    synthetic: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        return self.x_train.mean(axis=(0, 1, 3), dtype=np.float64)

    @property
    def std(self) -> np.ndarray:
        return np.maximum(self.x_train.std(axis=(0, 1, 3), dtype=np.float64), 1e-3)

    def class_counts(self, split: str = "train") -> list[int]:
        y = self.y_train if split == "train" else self.y_heldout
        return np.bincount(y, minlength=len(self.labels)).tolist()

    def normalised(self, x: np.ndarray) -> np.ndarray:
        """``x`` standardised per mel band with the training mean/std (float32)."""
        return ((x - self.mean[None, None, :, None]) / self.std[None, None, :, None]).astype(np.float32)


def front_end_config(config: AudioExportConfig, mean: tuple[float, ...] = (), std: tuple[float, ...] = ()
                     ) -> AudioFrontEndConfig:
    """The runtime front-end an export with ``config`` produces."""
    mel = MelConfig(sample_rate_hz=config.sample_rate_hz, n_fft=config.n_fft, win_length=config.win_length,
                    hop_length=config.hop_length, n_mels=config.n_mels, fmin_hz=config.fmin_hz,
                    fmax_hz=config.fmax_hz, top_db=config.top_db)
    return AudioFrontEndConfig(window_s=config.window_s, hop_s=config.hop_s, sample_rate_hz=config.sample_rate_hz,
                               mel=mel, mean=mean, std=std)


def cut_windows(x: np.ndarray, n_window: int, count: int, rng: np.random.Generator, centred: bool = False
                ) -> list[np.ndarray]:
    """``count`` windows of ``n_window`` samples from clip ``x``: random crops of a long clip, or the
    clip placed at a random offset in silence (centred for held-out windows)."""
    out = []
    for _ in range(count):
        w = np.zeros(n_window, np.float32)
        if x.size >= n_window:
            start = (x.size - n_window) // 2 if centred else int(rng.integers(0, x.size - n_window + 1))
            w[:] = x[start:start + n_window]
        else:
            start = (n_window - x.size) // 2 if centred else int(rng.integers(0, n_window - x.size + 1))
            w[start:start + x.size] = x
        out.append(w)
    return out


def _split_speakers(clips: list[AudioClip], fraction: float, rng: np.random.Generator) -> tuple[set, set]:
    """Held-out speakers (at least one, at most all but one), or None-speaker clips split by clip."""
    speakers = sorted({c.speaker for c in clips if c.speaker})
    if len(speakers) >= 2:
        k = min(len(speakers) - 1, max(1, int(round(fraction * len(speakers)))))
        held = set(rng.choice(speakers, size=k, replace=False).tolist())
        return set(speakers) - held, held
    return set(), set()


def load_audio_data(spec: str, config: AudioExportConfig = AudioExportConfig(), progress: bool = True,
                    synthetic: bool | None = None) -> AudioDataset:
    """Scan ``spec``, read every clip and cut log-mel windows (see the module docstring).

    Raises
    ------
    ConfigError: a malformed spec. DatasetError: missing folder, no usable clips, fewer
    than two classes, or every clip unreadable.
    """
    clips, info, source = scan_data(spec, config.include_song)
    rng = np.random.default_rng(config.seed)
    if config.max_per_class is not None:
        kept: list[AudioClip] = []
        for lab in sorted({c.label for c in clips}):
            of = [c for c in clips if c.label == lab]
            idx = np.sort(rng.choice(len(of), size=min(len(of), config.max_per_class), replace=False))
            kept += [of[i] for i in idx]
        clips = kept
    present = {c.label for c in clips}
    labels = tuple([e for e in EMOTIONS if e in present] + sorted(present - set(EMOTIONS)))
    if len(labels) < 2:
        raise DatasetError(f"{source}: only one class ({labels}); emotion recognition needs at least two")
    if any(c.split for c in clips):
        held_clip = [c.split == "test" for c in clips]
        speakers_train = tuple(sorted({c.speaker for c, h in zip(clips, held_clip) if not h}))
        speakers_held = tuple(sorted({c.speaker for c, h in zip(clips, held_clip) if h}))
    else:
        train_spk, held_spk = _split_speakers(clips, config.heldout_fraction, rng)
        if held_spk:
            held_clip = [c.speaker in held_spk for c in clips]
        else:
            order = rng.permutation(len(clips))
            n_held = max(1, int(round(config.heldout_fraction * len(clips))))
            held_set = set(order[:n_held].tolist())
            held_clip = [i in held_set for i in range(len(clips))]
        speakers_train, speakers_held = tuple(sorted(train_spk)), tuple(sorted(held_spk))
    if all(held_clip) or not any(held_clip):
        raise DatasetError(f"{source}: the split leaves no {'training' if all(held_clip) else 'held-out'} clips; "
                           f"give more clips or speakers, or a split column in labels.csv")
    features = AudioFeatures(front_end_config(config))
    n_window = int(round(config.window_s * config.sample_rate_hz))
    rows: dict[bool, dict[str, list]] = {h: {"x": [], "y": [], "avd": [], "m": []} for h in (False, True)}
    unreadable: list[str] = []
    conversions: dict[str, int] = {}
    bar = progress_bar(list(zip(clips, held_clip)), enabled=progress, desc="read audio", unit="clip")
    for clip, held in bar:
        try:
            x, winfo = load_wav_mono(clip.path, config.sample_rate_hz)
        except DatasetError as exc:
            unreadable.append(clip.path.name)
            log.warning("skipping %s", exc)
            continue
        for note in winfo["conversions"]:
            key = note.split(" (")[0]
            conversions[key] = conversions.get(key, 0) + 1
        for w in cut_windows(x, n_window, 1 if held else config.crops_per_clip, rng, centred=held):
            gain = 10 ** (rng.uniform(-config.gain_db, config.gain_db) / 20) if not held else 1.0
            noise = 10 ** (rng.uniform(*config.noise_db) / 20)
            w = np.clip(w * gain + rng.standard_normal(n_window).astype(np.float32) * noise, -1, 1)
            r = rows[held]
            r["x"].append(features.log_mel_db(w).astype(np.float16))
            r["y"].append(labels.index(clip.label))
            r["avd"].append(clip.avd or (0.0, 0.0, 0.0))
            r["m"].append(clip.avd is not None)
    if not rows[False]["x"] or not rows[True]["x"]:
        raise DatasetError(f"{source}: no readable clips in the {'training' if not rows[False]['x'] else 'held-out'} "
                           f"split ({len(unreadable)} unreadable, e.g. {unreadable[:3]})")

    def stack(r: dict[str, list]) -> tuple[np.ndarray, ...]:
        return (np.stack(r["x"])[:, None].astype(np.float32), np.asarray(r["y"], np.int64),
                np.asarray(r["avd"], np.float32), np.asarray(r["m"], bool))

    xt, yt, at, mt = stack(rows[False])
    xh, yh, ah, mh = stack(rows[True])
    info = {**info, "clips": len(clips), "unreadable": len(unreadable), "unreadable_examples": unreadable[:5],
            "conversions": conversions, "dimensional_targets": _avd_source(spec, clips)}
    is_synth = synthetic if synthetic is not None else (Path(spec.partition(":")[2]) / SYNTHETIC_MARKER).is_file()
    return AudioDataset(labels=labels, x_train=xt, y_train=yt, avd_train=at, m_train=mt, x_heldout=xh, y_heldout=yh,
                        avd_heldout=ah, m_heldout=mh, speakers_train=speakers_train, speakers_heldout=speakers_held,
                        source=source, synthetic=is_synth, info=info)


def _avd_source(spec: str, clips: list[AudioClip]) -> str:
    if spec.startswith("folder:") and (Path(spec[len("folder:"):]) / "labels.csv").is_file():
        with open(Path(spec[len("folder:"):]) / "labels.csv", encoding="utf-8-sig") as f:
            header = f.readline().lower()
        if "arousal" in header:
            return "ratings from labels.csv"
    known = sum(c.avd is not None for c in clips)
    return (f"class anchors (edgemer.frontends.audio.EMOTION_ANCHORS) scaled by rated intensity, for {known} of "
            f"{len(clips)} clips: a stand-in for real dimensional ratings")
