"""Speech emotion front-end: an audio window -> voice-activity gate -> model input.

Per window of ``window_s`` seconds of the mono ``audio`` stream (``[n, 1]`` float32,
-1..1 full scale, at ``sample_rate_hz``):

1. missing samples (NaN) become silence (0) and are counted; the share of samples at
   full scale (|x| >= 0.999) is reported as ``clipped_fraction``;
2. the voice-activity gate (:mod:`edgemer.frontends.vad`) judges the window; without
   enough speech it raises :class:`~edgemer.errors.NoSpeechError`, and the pipeline
   reports the audio modality as absent ("no speech") instead of a made-up emotion;
3. features, as ``front_end.features`` says:

   - ``log_mel``: log-mel spectrogram in dB (:class:`~edgemer.frontends.audio_dsp.MelConfig`,
     librosa-equivalent), standardised per mel band with the training set's mean and
     standard deviation -> ``[1, 1, n_mels, n_frames]`` (the frames a window shares bit for
     bit with the previous window are reused, not recomputed: :class:`~edgemer.frontends.audio_dsp.OverlapLogMel`);
   - ``waveform``: the raw samples, optionally normalised to zero mean and unit variance
     (as Hugging Face's ``Wav2Vec2FeatureExtractor`` does) -> ``[1, n_samples]``.

Outputs (``front_end.outputs``): class scores (``classes``: softmax -> probabilities)
and/or dimensional regression (``dimensions``: output name, dimension names such as
arousal / valence / dominance, and ``scale``/``offset`` mapping the model's values onto
[-1, 1]). Where a bundle has no dimensional output, arousal and valence are the
probability-weighted circumplex anchors of the classes (:data:`EMOTION_ANCHORS`).
The stress probability is a documented heuristic: with classes, the face modality's
rule (``P(angry) + P(fear) + 0.5 * (P(disgust) + P(sad))``); without, ``clip((arousal -
valence) / 2, 0, 1)``.

Raw audio stays in memory: nothing here writes it anywhere.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from edgemer.bundle import Bundle, Manifest
from edgemer.errors import ConfigError, InputError, ManifestError, NoSpeechError, SampleRateError
from edgemer.frontends.audio_dsp import LogMelExtractor, MelConfig, OverlapLogMel
from edgemer.frontends.face import CIRCUMPLEX, STRESS_WEIGHTS
from edgemer.frontends.vad import VadConfig, VadResult, VoiceActivityDetector, create_vad
from edgemer.types import ModalityEstimate, StreamSpec, Window

FRONT_END_TYPE = "speech_emotion"
AUDIO_STREAM = "audio"
FEATURES = ("log_mel", "waveform")
CLIP_LEVEL = 0.999
"""|sample| at or above this (full scale = 1) counts as clipped."""

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")
"""Speech emotion classes edgemer knows (RAVDESS's eight; CREMA-D uses six of them). Names
follow the face modality's, so that late fusion adds up the same classes."""

_AROUSAL_VALENCE = {**CIRCUMPLEX, "calm": (-0.6, 0.4)}
_DOMINANCE = {"neutral": 0.0, "calm": 0.1, "happy": 0.4, "sad": -0.5, "angry": 0.7, "fear": -0.6, "disgust": 0.3,
              "surprise": 0.1}
EMOTION_ANCHORS: dict[str, tuple[float, float, float]] = {
    lab: (*_AROUSAL_VALENCE[lab], _DOMINANCE[lab]) for lab in EMOTIONS}
"""Class -> (arousal, valence, dominance) in [-1, 1]: the face modality's circumplex anchors
(:data:`edgemer.frontends.face.CIRCUMPLEX`) plus "calm", and a dominance per class. A
heuristic, used where a data set gives classes but no dimensional ratings."""

DIMENSIONS = ("arousal", "valence", "dominance")


@dataclass(frozen=True)
class DimensionsOutput:
    """A dimensional regression output: ``value = raw * scale + offset`` lands in [-1, 1].

    output: model output name. names: what each column is (``arousal``, ``valence``,
    ``dominance``, in the model's order). scale / offset: per column.
    """

    output: str = "avd"
    names: tuple[str, ...] = DIMENSIONS
    scale: tuple[float, ...] = (1.0, 1.0, 1.0)
    offset: tuple[float, ...] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if not self.names or len(self.scale) != len(self.names) or len(self.offset) != len(self.names):
            raise ConfigError(f"front_end.outputs.dimensions needs one scale and offset per name, got "
                              f"{len(self.names)} names, {len(self.scale)} scales, {len(self.offset)} offsets")
        unknown = sorted(set(self.names) - set(DIMENSIONS))
        if unknown:
            raise ConfigError(f"front_end.outputs.dimensions.names must be among {DIMENSIONS}, got {unknown}")

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "names": list(self.names), "scale": list(self.scale),
                "offset": list(self.offset)}


@dataclass(frozen=True)
class AudioFrontEndConfig:
    """Speech front-end parameters (``manifest.front_end`` with ``type: speech_emotion``).

    window_s: window length, s. hop_s: time between windows, s. sample_rate_hz: the
    model's audio rate, Hz (sources resample to it). min_coverage: share of samples a
    window needs (0..1). features: ``log_mel`` or ``waveform``. mel: log-mel parameters.
    mean / std: per mel band standardisation of the dB values (log_mel only).
    normalize_waveform: zero mean, unit variance per window (waveform only). vad: the
    voice-activity gate. classes: output holding class logits (None: no classes).
    dimensions: dimensional regression output (None: none).
    """

    window_s: float = 3.0
    hop_s: float = 1.0
    sample_rate_hz: int = 16000
    min_coverage: float = 0.9
    features: str = "log_mel"
    mel: MelConfig = field(default_factory=MelConfig)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    normalize_waveform: bool = True
    vad: VadConfig = field(default_factory=VadConfig)
    classes: str | None = "emotion_logits"
    dimensions: DimensionsOutput | None = field(default_factory=DimensionsOutput)

    def __post_init__(self) -> None:
        if not 0.25 <= self.window_s <= 60:
            raise ConfigError(f"front_end.window_s must be 0.25..60 s, got {self.window_s}")
        if not 0 < self.hop_s <= 60:
            raise ConfigError(f"front_end.hop_s must be in (0, 60] s, got {self.hop_s}")
        if abs(self.window_s * self.sample_rate_hz - round(self.window_s * self.sample_rate_hz)) > 1e-6:
            raise ConfigError(f"front_end.window_s ({self.window_s} s) must be a whole number of samples at "
                              f"{self.sample_rate_hz} Hz")
        if not 0 < self.min_coverage <= 1:
            raise ConfigError(f"front_end.min_coverage must be in (0, 1], got {self.min_coverage}")
        if self.features not in FEATURES:
            raise ConfigError(f"front_end.features must be one of {FEATURES}, got {self.features!r}")
        if self.features == "log_mel":
            if self.mel.sample_rate_hz != self.sample_rate_hz:
                raise ConfigError(f"front_end.mel.sample_rate_hz ({self.mel.sample_rate_hz}) must equal "
                                  f"front_end.sample_rate_hz ({self.sample_rate_hz})")
            for name in ("mean", "std"):
                if len(getattr(self, name)) not in (0, self.mel.n_mels):
                    raise ConfigError(f"front_end.normalisation.{name} needs {self.mel.n_mels} values (one per mel "
                                      f"band), got {len(getattr(self, name))}")
            if self.std and min(self.std) <= 0:
                raise ConfigError("front_end.normalisation.std must be > 0 for every mel band")
        if self.classes is None and self.dimensions is None:
            raise ConfigError("front_end.outputs needs 'classes' or 'dimensions' (or both)")

    @property
    def n_samples(self) -> int:
        """Samples per window."""
        return int(round(self.window_s * self.sample_rate_hz))

    def input_shape(self) -> tuple[int, ...]:
        """The model input shape this front-end produces (batch of 1)."""
        if self.features == "waveform":
            return (1, self.n_samples)
        return (1, 1, self.mel.n_mels, self.mel.n_frames(self.n_samples))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": FRONT_END_TYPE, "features": self.features, "window_s": self.window_s, "hop_s": self.hop_s,
            "sample_rate_hz": self.sample_rate_hz, "min_coverage": self.min_coverage,
            "streams": {AUDIO_STREAM: {"rate_hz": float(self.sample_rate_hz), "channels": 1}},
            "vad": self.vad.to_dict(),
            "outputs": {"classes": self.classes,
                        "dimensions": self.dimensions.to_dict() if self.dimensions else None},
        }
        if self.features == "log_mel":
            d["mel"] = self.mel.to_dict()
            d["normalisation"] = {"mean": list(self.mean), "std": list(self.std)}
        else:
            d["normalize_waveform"] = self.normalize_waveform
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AudioFrontEndConfig":
        try:
            outputs = d.get("outputs") or {}
            dims = outputs.get("dimensions")
            norm = d.get("normalisation") or {}
            rate = int(d.get("sample_rate_hz", 16000))
            return cls(
                window_s=float(d["window_s"]), hop_s=float(d["hop_s"]), sample_rate_hz=rate,
                min_coverage=float(d.get("min_coverage", 0.9)), features=str(d.get("features", "log_mel")),
                mel=MelConfig.from_dict(d.get("mel") or {"sample_rate_hz": rate}),
                mean=tuple(float(v) for v in norm.get("mean", ())), std=tuple(float(v) for v in norm.get("std", ())),
                normalize_waveform=bool(d.get("normalize_waveform", True)),
                vad=VadConfig.from_dict(d.get("vad") or {}),
                classes=outputs.get("classes"),
                dimensions=None if dims is None else DimensionsOutput(
                    output=str(dims["output"]), names=tuple(str(n) for n in dims["names"]),
                    scale=tuple(float(v) for v in dims.get("scale", [1.0] * len(dims["names"]))),
                    offset=tuple(float(v) for v in dims.get("offset", [0.0] * len(dims["names"])))))
        except ConfigError as exc:
            raise ManifestError(f"speech front_end: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"speech front_end section is malformed ({type(exc).__name__}: {exc}); "
                                f"re-export the bundle") from exc


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def stress_from(probabilities: Mapping[str, float], arousal: float | None, valence: float | None) -> float:
    """The heuristic stress probability (see the module docstring)."""
    if probabilities:
        return float(min(1.0, sum(STRESS_WEIGHTS.get(lab, 0.0) * p for lab, p in probabilities.items())))
    if arousal is None or valence is None:
        return 0.0
    return float(np.clip((arousal - valence) / 2, 0.0, 1.0))


class AudioFeatures:
    """Window samples -> model input, the part shared by the runtime front-end and the exporter.

    ``features(x)`` takes mono ``[n_samples]`` float32 (no NaN) and returns the model input
    (``[1, 1, n_mels, n_frames]`` or ``[1, n_samples]`` float32).

    reuse_overlap: keep the last window's log-mel frames and reuse those a window shifted
    by whole STFT hops shares with it, where its samples are bit-identical
    (:class:`~edgemer.frontends.audio_dsp.OverlapLogMel`; the result is identical to
    computing every frame). For one stream's successive windows (the runtime front-end);
    the exporter's separate clips leave it off.
    """

    def __init__(self, config: AudioFrontEndConfig, reuse_overlap: bool = False) -> None:
        self.config = config
        self.extractor = LogMelExtractor(config.mel) if config.features == "log_mel" else None
        self.overlap: OverlapLogMel | None = None
        if reuse_overlap and self.extractor is not None:
            hop_samples = int(round(config.hop_s * config.sample_rate_hz))
            self.overlap = OverlapLogMel(self.extractor, expected_shift=hop_samples)
        n = config.mel.n_mels
        self._mean = np.asarray(config.mean or [0.0] * n, np.float32)[:, None]
        self._std = np.asarray(config.std or [1.0] * n, np.float32)[:, None]

    def log_mel_db(self, x: np.ndarray) -> np.ndarray:
        """Unnormalised log-mel in dB, ``[n_mels, n_frames]``."""
        assert self.extractor is not None, "log_mel_db needs a log_mel front-end"
        return self.overlap(x) if self.overlap is not None else self.extractor(x)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        c = self.config
        if c.features == "waveform":
            x = np.asarray(x, np.float32).reshape(1, -1)
            if c.normalize_waveform:
                x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
            return x.astype(np.float32)
        z = (self.log_mel_db(x) - self._mean) / self._std
        return z[None, None].astype(np.float32)


class AudioFrontEnd:
    """Front-end and output interpreter for ``speech_emotion`` bundles (see module docstring).

    Parameters
    ----------
    config: the front-end configuration. labels: class labels of the ``classes`` output.
    input_name: the model input. vad: a ready voice-activity gate (default: built from ``config.vad``).
    """

    modality = "audio"

    def __init__(self, config: AudioFrontEndConfig, labels: tuple[str, ...], input_name: str = "log_mel",
                 vad: VoiceActivityDetector | None = None) -> None:
        self.config = config
        self.labels = labels
        self.input_name = input_name
        self.window_s = config.window_s
        self.hop_s = config.hop_s
        self.min_coverage = config.min_coverage
        self.streams = (StreamSpec(AUDIO_STREAM, float(config.sample_rate_hz), 1, unit="FS", media=True),)
        self.features = AudioFeatures(config, reuse_overlap=True)
        self.vad = vad if vad is not None else create_vad(config.vad)
        self._last: dict[str, Any] = {}

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "AudioFrontEnd":
        cfg = AudioFrontEndConfig.from_dict(manifest.front_end)
        if len(manifest.inputs) != 1:
            raise ManifestError(f"bundle '{manifest.name}': a speech model has one input, the manifest lists "
                                f"{len(manifest.inputs)}")
        spec = manifest.inputs[0]
        if tuple(spec.shape) != cfg.input_shape():
            raise ManifestError(f"bundle '{manifest.name}': model input {list(spec.shape)} does not match the "
                                f"front-end ({cfg.features}, {cfg.window_s} s at {cfg.sample_rate_hz} Hz gives "
                                f"{list(cfg.input_shape())}); re-export the bundle")
        outs = {o.name: o for o in manifest.outputs}
        if cfg.classes is not None and (cfg.classes not in outs or outs[cfg.classes].shape[-1] != len(manifest.labels)):
            raise ManifestError(f"bundle '{manifest.name}': class output {cfg.classes!r} missing or not one score per "
                                f"label ({len(manifest.labels)} labels)")
        if cfg.dimensions is not None and cfg.dimensions.output not in outs:
            raise ManifestError(f"bundle '{manifest.name}': dimensional output {cfg.dimensions.output!r} missing")
        return cls(cfg, manifest.labels, spec.name)

    def window_samples(self, window: Window) -> tuple[np.ndarray, dict[str, Any]]:
        """The window's mono samples ``[n]`` float32 with gaps as silence, and what was done."""
        x = window.streams.get(AUDIO_STREAM)
        if x is None:
            raise InputError(f"speech front-end: the window holds no '{AUDIO_STREAM}' stream")
        want = (self.config.n_samples, 1)
        if x.shape != want:
            raise SampleRateError(f"speech front-end: audio window has shape {x.shape}, expected {list(want)} "
                                  f"({self.config.window_s} s at {self.config.sample_rate_hz} Hz, mono); resample "
                                  f"the source to {self.config.sample_rate_hz} Hz")
        x = x[:, 0]
        missing = ~np.isfinite(x)
        n_missing = int(missing.sum())
        if n_missing:
            x = np.where(missing, np.float32(0.0), x)
        info = {"filled": n_missing, "clipped_fraction": float(np.mean(np.abs(x) >= CLIP_LEVEL))}
        return x.astype(np.float32, copy=False), info

    def gate(self, x: np.ndarray) -> VadResult:
        """Run the voice-activity gate; raise :class:`NoSpeechError` when the window holds too little speech."""
        vad = self.vad.detect(x, self.config.sample_rate_hz)
        if not vad.speech:
            raise NoSpeechError(f"no speech in the {self.config.window_s:g} s window: {vad.speech_s:.2f} s of speech "
                                f"found, {self.config.vad.min_speech_s:g} s needed ({vad.kind} gate)")
        return vad

    def prepare(self, window: Window) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._last = {}
        x, info = self.window_samples(window)
        vad = self.gate(x)
        info["vad"] = vad.to_dict()
        self._last = info
        return {self.input_name: self.features(x)}, info

    def interpret(self, outputs: Mapping[str, np.ndarray], t_end: float, bundle: str) -> ModalityEstimate:
        c = self.config
        probabilities: dict[str, float] = {}
        extras: dict[str, Any] = {}
        confidence = 1.0
        if c.classes is not None:
            probs = softmax(np.asarray(outputs[c.classes], np.float64).reshape(-1))
            probabilities = {lab: float(p) for lab, p in zip(self.labels, probs)}
            extras["emotion"] = self.labels[int(np.argmax(probs))]
            confidence = float(probs.max())
        dims: dict[str, float] = {}
        if c.dimensions is not None:
            raw = np.asarray(outputs[c.dimensions.output], np.float64).reshape(-1)
            d = c.dimensions
            dims = {n: float(np.clip(raw[i] * d.scale[i] + d.offset[i], -1, 1)) for i, n in enumerate(d.names)}
        elif probabilities:
            for i, n in enumerate(DIMENSIONS):
                dims[n] = float(sum(p * EMOTION_ANCHORS.get(lab, (0.0, 0.0, 0.0))[i]
                                    for lab, p in probabilities.items()))
        arousal, valence = dims.get("arousal"), dims.get("valence")
        if "dominance" in dims:
            extras["dominance"] = dims["dominance"]
        vad = self._last.get("vad")
        if vad:
            extras.update(speech_s=vad["speech_s"], speech_ratio=vad["speech_ratio"], vad=vad["kind"])
            if c.classes is None:
                confidence = float(min(1.0, 2 * vad["speech_ratio"]))
        if "clipped_fraction" in self._last:
            extras["clipped_fraction"] = self._last["clipped_fraction"]
        return ModalityEstimate(modality=self.modality, bundle=bundle, t_end=t_end, probabilities=probabilities,
                                stress_probability=stress_from(probabilities, arousal, valence), arousal=arousal,
                                valence=valence, confidence=confidence, extras=extras)


def configure_audio_bundle(bundle: Bundle, vad: VadConfig | str | None = None) -> Bundle:
    """The bundle with its voice-activity gate changed in the manifest (in memory; files untouched).

    vad: options, or a spec: ``energy``, ``none``, ``silero`` (the model inside an installed
    ``silero-vad`` package) or ``silero:PATH.onnx``; other gate settings are kept.
    """
    fe = dict(bundle.manifest.front_end)
    if fe.get("type") != FRONT_END_TYPE:
        raise ConfigError(f"bundle '{bundle.name}' is not a speech bundle (front_end.type {fe.get('type')!r}); "
                          f"audio options such as --vad do not apply to it")
    cfg = AudioFrontEndConfig.from_dict(fe)
    if isinstance(vad, str):
        vad = VadConfig.from_spec(vad, cfg.vad)
    if vad is not None:
        fe["vad"] = vad.to_dict()
    raw = dict(bundle.manifest.raw)
    raw["front_end"] = fe
    return dataclasses.replace(bundle, manifest=dataclasses.replace(bundle.manifest, front_end=fe, raw=raw))
