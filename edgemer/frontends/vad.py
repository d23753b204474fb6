"""Voice-activity gates: does an audio window hold enough speech to classify?

Two gates behind one small protocol (:class:`VoiceActivityDetector`), chosen by
:class:`VadConfig.kind`:

- ``energy`` (built in, numpy only): the window is cut into frames of ``frame_s``; a
  frame is speech when its level is at least ``min_level_db`` dBFS *and* ``snr_db``
  above the window's noise floor (10th percentile of the frame levels), its spectrum
  is not flat like noise (spectral flatness 100-4000 Hz <= ``max_flatness``) and most
  of its energy lies in the speech band 300-4000 Hz (>= ``min_band_ratio``). Silence,
  steady noise (fans, hiss) and mains hum are rejected.
- ``silero``: the Silero VAD ONNX model (MIT, shipped inside the ``silero-vad`` Python
  package as ``silero_vad/data/silero_vad.onnx``) run by onnxruntime on 32 ms chunks
  (512 samples at 16 kHz, 256 at 8 kHz) with its recurrent state; a chunk is speech when
  its probability is >= ``threshold``. torch is never imported: only the ``.onnx`` file
  is used, from ``model_path`` or from an installed ``silero-vad`` package (located
  without importing it).
- ``none``: every window counts as speech.

A window is speech when its speech frames add up to ``min_speech_s`` seconds.
"""
from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

import numpy as np

from edgemer.errors import BackendUnavailableError, ConfigError, ManifestError, ModelLoadError

VAD_KINDS = ("energy", "silero", "none")
SILERO_FILE = "silero_vad.onnx"
SILERO_HINT = ("pip download --no-deps silero-vad==6.2.3 -d DIR, unzip the wheel and pass "
               "silero_vad/data/silero_vad.onnx (e.g. --vad silero:PATH), or pip install silero-vad")


@dataclass(frozen=True)
class VadConfig:
    """Voice-activity gate options (``front_end.vad`` in an audio bundle manifest).

    kind: ``energy``, ``silero`` or ``none``. min_speech_s: seconds of speech a window
    needs. frame_s: energy-gate frame length, s. min_level_db: quietest speech frame,
    dBFS (a full-scale sine is -3 dBFS). snr_db: how far a speech frame must rise above
    the window's noise floor, dB. max_flatness: spectral flatness above which a frame
    counts as noise (0 = pure tone, ~0.56 = white noise). min_band_ratio: share of the
    frame's energy in 300-4000 Hz. threshold: Silero speech probability per chunk.
    model_path: Silero ``.onnx`` file (None: the one inside an installed ``silero-vad``).
    """

    kind: str = "energy"
    min_speech_s: float = 0.3
    frame_s: float = 0.032
    min_level_db: float = -50.0
    snr_db: float = 6.0
    max_flatness: float = 0.35
    min_band_ratio: float = 0.5
    threshold: float = 0.5
    model_path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in VAD_KINDS:
            raise ConfigError(f"VadConfig.kind must be one of {VAD_KINDS}, got {self.kind!r}")
        if self.min_speech_s < 0:
            raise ConfigError(f"VadConfig.min_speech_s must be >= 0 s, got {self.min_speech_s}")
        if not 0.005 <= self.frame_s <= 0.2:
            raise ConfigError(f"VadConfig.frame_s must be 0.005..0.2 s, got {self.frame_s}")
        if not -120 <= self.min_level_db <= 0:
            raise ConfigError(f"VadConfig.min_level_db must be -120..0 dBFS, got {self.min_level_db}")
        if self.snr_db < 0:
            raise ConfigError(f"VadConfig.snr_db must be >= 0 dB, got {self.snr_db}")
        if not 0 < self.max_flatness <= 1:
            raise ConfigError(f"VadConfig.max_flatness must be in (0, 1], got {self.max_flatness}")
        if not 0 <= self.min_band_ratio <= 1:
            raise ConfigError(f"VadConfig.min_band_ratio must be in [0, 1], got {self.min_band_ratio}")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"VadConfig.threshold must be in (0, 1), got {self.threshold}")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not (k == "model_path" and v is None)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VadConfig":
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except TypeError as exc:
            raise ManifestError(f"front_end.vad is malformed ({exc}); re-export the bundle") from exc

    @classmethod
    def from_spec(cls, spec: str, base: "VadConfig | None" = None) -> "VadConfig":
        """``energy``, ``none``, ``silero`` or ``silero:PATH.onnx`` (other options kept from ``base``)."""
        base = base or cls()
        kind, _, path = spec.partition(":")
        fields = {**asdict(base), "kind": kind, "model_path": path or None}
        return cls(**fields)


@dataclass(frozen=True)
class VadResult:
    """One window's verdict: ``speech``, seconds of speech found, the share of frames that
    were speech (0..1), the frames looked at and the gate that decided."""

    speech: bool
    speech_s: float
    speech_ratio: float
    frames: int
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class VoiceActivityDetector(Protocol):
    kind: str

    def detect(self, x: np.ndarray, rate_hz: float) -> VadResult:
        """Judge mono ``x`` (``[n]`` float, -1..1 full scale) sampled at ``rate_hz`` Hz."""
        ...


def _verdict(flags: np.ndarray, frame_s: float, config: VadConfig, kind: str) -> VadResult:
    n = int(flags.size)
    speech_s = float(flags.sum()) * frame_s
    return VadResult(speech=bool(n and speech_s >= config.min_speech_s - 1e-9), speech_s=speech_s,
                     speech_ratio=float(flags.mean()) if n else 0.0, frames=n, kind=kind)


class EnergyVad:
    """The built-in gate: level, noise floor, spectral flatness and speech-band share per frame."""

    kind = "energy"

    def __init__(self, config: VadConfig = VadConfig()) -> None:
        self.config = config

    def frame_features(self, x: np.ndarray, rate_hz: float) -> dict[str, np.ndarray]:
        """Per frame: ``level_db`` (dBFS), ``flatness`` (0..1) and ``band_ratio`` (0..1)."""
        n = max(1, int(round(self.config.frame_s * rate_hz)))
        x = np.asarray(x, np.float32).reshape(-1)
        k = x.size // n
        if k == 0:
            empty = np.zeros(0, np.float32)
            return {"level_db": empty, "flatness": empty, "band_ratio": empty}
        frames = x[:k * n].reshape(k, n)
        frames = frames - frames.mean(axis=1, keepdims=True)
        level_db = 10 * np.log10(np.mean(frames * frames, axis=1) * 2 + 1e-12)  # x2: a full-scale sine is 0 dB
        power = np.abs(np.fft.rfft(frames * np.hanning(n).astype(np.float32), axis=1)) ** 2 + 1e-12
        freqs = np.fft.rfftfreq(n, 1.0 / rate_hz)
        voice = (freqs >= 100) & (freqs <= 4000)
        band = (freqs >= 300) & (freqs <= 4000)
        pv = power[:, voice]
        flatness = np.exp(np.mean(np.log(pv), axis=1)) / np.mean(pv, axis=1)
        band_ratio = power[:, band].sum(axis=1) / power.sum(axis=1)
        return {"level_db": level_db - 3.0103, "flatness": flatness, "band_ratio": band_ratio}

    def detect(self, x: np.ndarray, rate_hz: float) -> VadResult:
        c = self.config
        f = self.frame_features(x, rate_hz)
        level = f["level_db"]
        if level.size == 0:
            return _verdict(np.zeros(0, bool), c.frame_s, c, self.kind)
        floor = float(np.percentile(level, 10))
        speech = ((level >= c.min_level_db) & (level >= floor + c.snr_db) & (f["flatness"] <= c.max_flatness)
                  & (f["band_ratio"] >= c.min_band_ratio))
        return _verdict(speech, c.frame_s, c, self.kind)


def find_silero_model(path: str | Path | None = None) -> Path:
    """The Silero VAD ``.onnx`` file: ``path`` if given, else the one inside an installed
    ``silero-vad`` package (found without importing it, so torch is never loaded).

    Raises
    ------
    BackendUnavailableError: no such file, or no ``silero-vad`` package installed.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise BackendUnavailableError(f"{p}: no Silero VAD model there; get it with: {SILERO_HINT}")
        return p
    spec = importlib.util.find_spec("silero_vad")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "data" / SILERO_FILE
        if candidate.is_file():
            return candidate
    raise BackendUnavailableError(f"the Silero VAD model is not installed; {SILERO_HINT}")


class SileroVad:
    """Silero VAD (``.onnx``) through onnxruntime, one thread, no torch.

    Rates: 16 kHz (512-sample chunks) or 8 kHz (256); other rates must be resampled first.
    """

    kind = "silero"

    def __init__(self, config: VadConfig = VadConfig(kind="silero")) -> None:
        import onnxruntime as ort

        self.config = config
        self.path = find_silero_model(config.model_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"{self.path}: onnxruntime cannot load this Silero VAD model "
                                 f"({str(exc).splitlines()[0][:200]}); {SILERO_HINT}") from exc
        names = sorted(i.name for i in self._session.get_inputs())
        if names != ["input", "sr", "state"]:
            raise ModelLoadError(f"{self.path}: inputs {names}, expected ['input', 'sr', 'state'] (Silero VAD v5/v6); "
                                 f"{SILERO_HINT}")

    def probabilities(self, x: np.ndarray, rate_hz: float) -> np.ndarray:
        """Speech probability of each whole chunk of ``x`` (``[n_chunks]``), state reset at the start."""
        if rate_hz not in (16000, 8000):
            raise ConfigError(f"Silero VAD runs at 16000 or 8000 Hz, got {rate_hz:g} Hz; resample the audio first")
        chunk, context = (512, 64) if rate_hz == 16000 else (256, 32)
        x = np.asarray(x, np.float32).reshape(-1)
        state = np.zeros((2, 1, 128), np.float32)
        sr = np.array(int(rate_hz), np.int64)
        ctx = np.zeros(context, np.float32)
        out = []
        for i in range(0, x.size - chunk + 1, chunk):
            block = np.concatenate([ctx, x[i:i + chunk]])[None]
            prob, state = self._session.run(None, {"input": block, "state": state, "sr": sr})
            out.append(float(np.asarray(prob).reshape(-1)[0]))
            ctx = block[0, -context:]
        return np.asarray(out, np.float32)

    def detect(self, x: np.ndarray, rate_hz: float) -> VadResult:
        probs = self.probabilities(x, rate_hz)
        chunk_s = (512 if rate_hz == 16000 else 256) / rate_hz
        return _verdict(probs >= self.config.threshold, chunk_s, self.config, self.kind)


class NoVad:
    """Every window is speech (the gate switched off)."""

    kind = "none"

    def __init__(self, config: VadConfig = VadConfig(kind="none")) -> None:
        self.config = config

    def detect(self, x: np.ndarray, rate_hz: float) -> VadResult:
        return VadResult(speech=True, speech_s=float(np.size(x)) / rate_hz, speech_ratio=1.0, frames=0, kind="none")


def create_vad(config: VadConfig) -> VoiceActivityDetector:
    """The gate ``config.kind`` names."""
    if config.kind == "silero":
        return SileroVad(config)
    if config.kind == "none":
        return NoVad(config)
    return EnergyVad(config)
