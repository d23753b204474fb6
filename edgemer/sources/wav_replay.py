"""WAV files: reading with clear refusals, and replay as the ``audio`` stream.

:func:`read_wav` reads PCM (8-bit unsigned, 16/24/32-bit signed) and IEEE float WAVs
into float32 ``[n_samples, n_channels]`` in -1..1 full scale, and marks clipped samples
(at the format's limits, or |x| >= 0.999 for float). Plain 8/16/32-bit PCM, the common
case, is read with the standard library's :mod:`wave`; every other file (float, 24-bit,
extensible headers, truncated or damaged files) with :mod:`scipy.io.wavfile`, imported
only then (it adds about 18 MiB of resident memory to a pipeline).
:func:`load_wav_mono` also mixes channels down and resamples (polyphase) to the
model's rate: the one home of "a WAV file as model audio", used by the replay source
and by the exporters' data set loaders.

Bad input raises :class:`~edgemer.errors.DatasetError` with what to do: a missing,
empty, corrupt or non-WAV file, a WAV without samples, a rate below 8 kHz (too little
bandwidth for speech) or above 384 kHz. The RIFF header is checked by :func:`wav_header`
before any sample is read (a header cut short, a ``fmt `` chunk with impossible fields,
more than :data:`MAX_CHANNELS` channels, a rate out of range), so a damaged file never
reaches a decoder and a declared size never drives an allocation: a ``data`` chunk longer
than the file is read as a truncated file. 8-bit audio, stereo and other rates are
converted, and each conversion is logged and listed in ``info["conversions"]``.

:class:`WavReplay` plays the converted audio in blocks on the pipeline clock, faster
than real time with ``speed > 1``, through the same pipeline code as a microphone;
blocks holding clipped samples carry :data:`~edgemer.types.FLAG_CLIPPED` and are
counted. Audio is only read, never written anywhere.
"""
from __future__ import annotations

import logging
import struct
import threading
import time
import warnings
import wave
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgemer.clock import Clock
from edgemer.errors import ConfigError, DatasetError
from edgemer.frontends.audio_dsp import resample
from edgemer.sources import Emit, ThreadedSource
from edgemer.types import FLAG_CLIPPED, Chunk, StreamSpec

log = logging.getLogger(__name__)

MIN_RATE_HZ = 8000
MAX_RATE_HZ = 384000
MAX_CHANNELS = 64
MAX_CHUNKS = 1000
"""Most RIFF chunks walked looking for ``fmt `` and ``data``."""
_FORMAT_TAGS = {1: "pcm", 3: "float", 0xFFFE: "extensible"}
CLIP_LEVEL = 0.999
EXAMPLE_NAME = "speech-example"
"""``replay:speech-example`` plays the synthesised WAV shipped with edgemer (see :func:`example_wav`)."""


def example_wav() -> Path:
    """The small synthesised speech WAV shipped with edgemer (espeak-ng, 16 kHz mono 16-bit)."""
    return Path(str(resources.files("edgemer") / "data" / f"{EXAMPLE_NAME}.wav"))


_PCM_DTYPES = {1: np.dtype(np.uint8), 2: np.dtype("<i2"), 4: np.dtype("<i4")}


def wav_header(path: Path) -> dict[str, int]:
    """Walk the RIFF chunks of ``path`` and check the ``fmt `` fields, reading no samples.

    Returns ``format_tag``, ``channels``, ``rate_hz``, ``bits``, ``block_align``,
    ``data_offset``, ``data_bytes`` (as declared) and ``data_available`` (bytes really in
    the file). Raises :class:`DatasetError` naming the field that is wrong.
    """
    fix = f"Convert it, e.g. ffmpeg -i '{path.name}' -ar 16000 -ac 1 out.wav"
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            kind = "an RF64 (over 4 GiB) WAV" if head[:4] == b"RF64" else "not a RIFF/WAVE file"
            raise DatasetError(f"{path}: not a readable WAV file: {kind} (the header is {head[:12]!r}); {fix}")
        fmt: dict[str, int] | None = None
        pos = 12
        for _ in range(MAX_CHUNKS):
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                break
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                body = f.read(min(csize, 64))
                if csize < 16 or len(body) < 16:
                    raise DatasetError(f"{path}: the 'fmt ' chunk is cut short ({len(body)} of 16 bytes); the file "
                                       f"is truncated or damaged. {fix}")
                tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == 0xFFFE and len(body) >= 26:
                    tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID starts with the tag
                fmt = {"format_tag": tag, "channels": channels, "rate_hz": rate, "bits": bits,
                       "block_align": block_align}
            elif cid == b"data":
                if fmt is None:
                    raise DatasetError(f"{path}: the 'data' chunk comes before any 'fmt ' chunk; the header is "
                                       f"damaged. {fix}")
                _check_fmt(path, fmt, fix)
                return {**fmt, "data_offset": pos + 8, "data_bytes": csize,
                        "data_available": max(0, min(csize, size - pos - 8))}
            pos += 8 + csize + (csize & 1)
            if pos >= size:
                break
    missing = "'fmt ' and 'data' chunks" if fmt is None else "'data' chunk"
    raise DatasetError(f"{path}: not a readable WAV file: no {missing} (the file is truncated after its header, or damaged); {fix}")


def _check_fmt(path: Path, fmt: dict[str, int], fix: str) -> None:
    tag, channels, rate, bits = fmt["format_tag"], fmt["channels"], fmt["rate_hz"], fmt["bits"]
    if tag not in (1, 3):
        raise DatasetError(f"{path}: 'fmt ' field format_tag is {tag:#x}; only PCM (1) and IEEE float (3) are read "
                           f"(compressed WAVs are not). {fix}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise DatasetError(f"{path}: 'fmt ' field channels is {channels}; 1..{MAX_CHANNELS} are read. {fix}")
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise DatasetError(f"{path}: 'fmt ' field sample rate {rate} Hz is outside {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz; "
                           f"speech models need at least {MIN_RATE_HZ} Hz. {fix}")
    allowed = (8, 16, 24, 32) if tag == 1 else (32, 64)
    if bits not in allowed:
        raise DatasetError(f"{path}: 'fmt ' field bits_per_sample is {bits}; {_FORMAT_TAGS[tag]} WAVs are read at "
                           f"{'/'.join(map(str, allowed))} bits. {fix}")
    if fmt["block_align"] != channels * bits // 8:
        raise DatasetError(f"{path}: 'fmt ' field block_align is {fmt['block_align']}, but {channels} channels of "
                           f"{bits} bits need {channels * bits // 8}; the header is damaged. {fix}")


def _read_plain_pcm(path: Path) -> tuple[int, np.ndarray] | None:
    """``(rate_hz, samples [n, channels])`` of an intact 8/16/32-bit PCM WAV, in the dtypes
    :func:`scipy.io.wavfile.read` gives; None for any other file (left to scipy, which also
    words the errors and warnings for damaged ones)."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            dtype = _PCM_DTYPES.get(width)
            if dtype is None or channels < 1:
                return None
            raw = w.readframes(frames)
    except (wave.Error, EOFError, OSError, ValueError):
        return None
    if len(raw) != frames * channels * width:  # truncated: scipy reads what is there and warns
        return None
    return rate, np.frombuffer(raw, dtype).reshape(-1, channels)


def _read_with_scipy(path: Path) -> tuple[int, np.ndarray]:
    from scipy.io import wavfile  # only for the files _read_plain_pcm leaves (see the module docstring)

    return wavfile.read(str(path), mmap=False)


@dataclass(frozen=True)
class WavAudio:
    """A decoded WAV file.

    samples: float32 ``[n_samples, n_channels]``, -1..1 full scale. rate_hz: sample rate,
    Hz. clipped: bool ``[n_samples]``, True where any channel sat at full scale. info:
    file, format, bits, channels, duration (s) and the conversions applied.
    """

    samples: np.ndarray
    rate_hz: int
    clipped: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def read_wav(path: str | Path) -> WavAudio:
    """Decode a WAV file into float32 full-scale samples (see the module docstring).

    Raises
    ------
    DatasetError: missing, empty, corrupt or unsupported file; no samples; rate out of range.
    """
    if "\x00" in str(path):
        raise DatasetError(f"{str(path)!r}: a file name cannot hold a NUL character")
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"{path}: no such WAV file")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: the file is empty (0 bytes); record or copy it again")
    header = wav_header(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # a data chunk longer than the file (truncated) goes to scipy, which reads what is there
            plain = _read_plain_pcm(path) if header["data_available"] == header["data_bytes"] else None
            rate, data = plain if plain is not None else _read_with_scipy(path)
        except Exception as exc:  # noqa: BLE001 - scipy's parser raises struct.error, UnboundLocalError, ...
            text = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise DatasetError(f"{path}: not a readable WAV file ({type(exc).__name__}: {text}); it is corrupt or "
                               f"another format. Convert it, e.g. ffmpeg -i '{path.name}' -ar 16000 -ac 1 out.wav") from exc
    conversions: list[str] = []
    for w in caught:
        text = str(w.message)
        if "EOF" in text or "truncat" in text.lower():
            conversions.append("truncated file: read the samples that are there")
            log.warning("%s: %s; using the samples that could be read", path, text)
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[:, None]
    if data.size == 0 or data.shape[0] == 0:
        raise DatasetError(f"{path}: the WAV file holds no audio samples; record or export it again")
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise DatasetError(f"{path}: sample rate {rate} Hz is outside {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz; speech "
                           f"models need at least {MIN_RATE_HZ} Hz. Re-record it, or convert it, e.g. "
                           f"ffmpeg -i '{path.name}' -ar 16000 out.wav")
    kind = data.dtype
    if kind == np.uint8:
        x = (data.astype(np.float32) - 128.0) / 128.0
        clipped = ((data == 0) | (data == 255)).any(axis=1)
        bits, fmt = 8, "pcm"
        conversions.append("8-bit unsigned PCM -> float (only 48 dB of dynamic range; prefer 16-bit recordings)")
        log.warning("%s: 8-bit audio converted to float; its 48 dB dynamic range limits accuracy", path)
    elif kind in (np.int16, np.int32):
        info_i = np.iinfo(kind)
        x = data.astype(np.float32) / float(-info_i.min)
        clipped = ((data >= info_i.max) | (data <= info_i.min)).any(axis=1)
        bits, fmt = info_i.bits, "pcm"
        if kind == np.int32 and not np.any(data & 0xFF):
            bits = 24  # scipy returns 24-bit PCM left-aligned in int32
    elif kind in (np.float32, np.float64):
        x = data.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise DatasetError(f"{path}: float WAV holds NaN or infinite samples; the file is corrupt")
        clipped = (np.abs(x) >= CLIP_LEVEL).any(axis=1)
        bits, fmt = kind.itemsize * 8, "float"
    else:
        raise DatasetError(f"{path}: unsupported WAV sample type {kind}; convert it to 16-bit PCM, e.g. "
                           f"ffmpeg -i '{path.name}' -c:a pcm_s16le out.wav")
    info = {"file": str(path), "format": fmt, "bits": bits, "channels": int(x.shape[1]), "rate_hz": int(rate),
            "duration_s": x.shape[0] / rate, "clipped_samples": int(clipped.sum()), "conversions": conversions}
    return WavAudio(samples=x, rate_hz=int(rate), clipped=clipped, info=info)


def load_wav_mono(path: str | Path, rate_hz: int = 16000) -> tuple[np.ndarray, dict[str, Any]]:
    """A WAV file as mono float32 ``[n]`` at ``rate_hz`` Hz (channels averaged, polyphase resampled).

    Returns the samples and the :func:`read_wav` info, with ``conversions`` extended and
    ``clipped_at`` (bool ``[n]`` at ``rate_hz``: output samples near a clipped input sample).
    """
    wav = read_wav(path)
    info = dict(wav.info)
    conversions = list(info["conversions"])
    x = wav.samples
    if x.shape[1] > 1:
        conversions.append(f"{x.shape[1]} channels mixed down to mono")
        x = x.mean(axis=1)
    else:
        x = x[:, 0]
    clipped = wav.clipped
    if wav.rate_hz != rate_hz:
        conversions.append(f"resampled {wav.rate_hz} Hz -> {rate_hz} Hz (polyphase)")
        x = resample(x, wav.rate_hz, rate_hz)
        mapped = np.zeros(x.size, bool)
        idx = (np.flatnonzero(clipped) * rate_hz) // wav.rate_hz
        mapped[idx[idx < x.size]] = True
        clipped = mapped
    info["conversions"] = conversions
    info["clipped_at"] = clipped
    return np.ascontiguousarray(x, np.float32), info


REPLAY_BLOCK_S = 0.25
"""Seconds of audio per block a :class:`WavReplay` emits by default."""


class WavReplay(ThreadedSource):
    """Replays a WAV file as the mono ``audio`` stream at ``rate_hz`` Hz.

    Parameters
    ----------
    path: the WAV file (``speech-example`` plays the one shipped with edgemer).
    rate_hz: stream rate, Hz: the audio is converted to it (the speech bundles' rate, 16 kHz).
    speed: stream seconds per wall second (``inf``: as fast as the pipeline consumes, on the
        :class:`~edgemer.clock.LockstepClock`).
    block_s: seconds per emitted block (default :data:`REPLAY_BLOCK_S`, 0.25 s). A replay need not
        mimic a live sound card's small buffer (a microphone's is 0.064 s): every block costs a
        thread wake-up and a ring-buffer write, and at 0.25 s (a divisor of the speech bundles'
        1 s hop, so windows still end on a block's end) the replay thread uses about a third of
        the CPU it used at 0.064 s, measured in ``edgemer bench cpu``.
    duration_s: stream seconds to play (None: to the end). loop: start again at the end.
    stream: name of the stream.

    Raises :class:`~edgemer.errors.DatasetError` at construction for a file it cannot use.
    """

    live = False
    steppable = True

    def __init__(self, path: str | Path, rate_hz: int = 16000, speed: float = 1.0, block_s: float = REPLAY_BLOCK_S,
                 duration_s: float | None = None, loop: bool = False, stream: str = "audio") -> None:
        super().__init__(speed)
        if not 0.001 <= block_s <= 5:
            raise ConfigError(f"WavReplay.block_s must be 0.001..5 s, got {block_s}")
        if duration_s is not None and duration_s <= 0:
            raise ConfigError(f"WavReplay.duration_s must be > 0 s or None, got {duration_s}")
        if str(path) == EXAMPLE_NAME and not Path(path).exists():
            path = example_wav()
        self.path = Path(path).expanduser()
        self.audio, self.info = load_wav_mono(self.path, rate_hz)
        self._clipped = self.info.pop("clipped_at")
        for note in self.info["conversions"]:
            log.info("%s: %s", self.path, note)
        self.rate_hz = int(rate_hz)
        self.block = max(1, int(round(block_s * rate_hz)))
        self.duration_s = duration_s
        self.loop = loop
        self.name = f"replay:{self.path.name}"
        self.streams = (StreamSpec(stream, float(rate_hz), 1, unit="FS", media=True),)
        self._counters = {"blocks": 0, "clipped_blocks": 0}
        self._lock = threading.Lock()

    def health(self) -> dict:
        with self._lock:
            out: dict[str, Any] = dict(self._counters)
        if self.info["conversions"]:
            out["conversions"] = "; ".join(self.info["conversions"])
        return out

    def _run(self, clock: Clock, emit: Emit, stop: threading.Event) -> None:
        spec = self.streams[0]
        n_total = self.audio.size
        end = None if self.duration_s is None else int(round(self.duration_s * self.rate_hz))
        played = 0
        seq = 0
        while not stop.is_set() and (end is None or played < end):
            pos = played % n_total
            if not self.loop and played >= n_total:
                return
            n = min(self.block, n_total - pos, (end - played) if end is not None else self.block)
            t0 = clock.start + played / self.rate_hz
            if not clock.sleep_until(t0 + n / self.rate_hz, stop):
                return
            clipped = bool(self._clipped[pos:pos + n].any())
            with self._lock:
                self._counters["blocks"] += 1
                self._counters["clipped_blocks"] += int(clipped)
            emit(Chunk(spec.name, spec.rate_hz, t0, self.audio[pos:pos + n, None].copy(), seq=seq,
                       flags=FLAG_CLIPPED if clipped else 0, arrival=time.monotonic()))
            played += n
            seq += 1
