"""Calibration and evaluation data for ``edgemer export onnx``, through the runtime front-ends.

Folders are read recursively in sorted path order (so the result never depends on the
file system). A file whose parent folder is named like one of the labels is labelled
with it (``EVAL/happy/x.png``); physio NPZ files may carry ``label``/``labels`` instead.

- face: images (png, jpg, ...). By default each is a face *crop* of the model's size; it
  goes through the runtime's :func:`~edgemer.frontends.face.face_crop` (colour
  conversion, identity warp) and :func:`~edgemer.frontends.face.crop_to_input`. With
  ``detect_faces`` each image is a whole frame and the runtime's
  :class:`~edgemer.frontends.face.FacePreprocessor` finds and cuts the face.
- audio: WAV files, read with the runtime's WAV reader; each gives up to
  ``windows_per_file`` consecutive windows (a shorter file is zero-padded, centred), and
  each window becomes features through :class:`~edgemer.frontends.audio.AudioFeatures`.
- physio: NPZ files with the raw wrist streams of one window (``eda [T*4, 1]``,
  ``bvp [T*64, 1]``, ``temp [T*4, 1]``, ``acc [T*32, 3]``) or a stack of windows (a
  leading window axis), through :func:`~edgemer.frontends.physio.wrist_features`.

Anything that does not fit the model raises :class:`~edgemer.errors.CalibrationDataError`
naming the file and the fix; nothing is silently resized or resampled unless asked.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemer.errors import CalibrationDataError, DatasetError, EdgemerError, NoFaceError
from edgemer.frontends.audio import AudioFeatures, AudioFrontEndConfig
from edgemer.frontends.face import CropConfig, FaceFrontEndConfig, FacePreprocessor, crop_to_input, face_crop
from edgemer.frontends.face_detector import Detection, load_cv2
from edgemer.frontends.physio import STREAM_CHANNELS, STREAM_RATES_HZ, wrist_features

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
AUDIO_SUFFIXES = (".wav",)
PHYSIO_SUFFIXES = (".npz",)
SUFFIXES = {"face": IMAGE_SUFFIXES, "audio": AUDIO_SUFFIXES, "physio": PHYSIO_SUFFIXES}
KINDS = {"face": "images", "audio": "WAV files", "physio": "NPZ windows"}


@dataclass
class RawData:
    """Front-end input before the last (normalising) step.

    items: face uint8 crops ``[n, H, W(, 3)]``; audio float32 windows ``[n, n_samples]``;
    physio float32 physical feature matrices ``[n, 4, N]``. labels: int64 ``[n]`` (-1 = no
    label). files: the file of each item (relative to the folder). info: counters.
    """

    items: np.ndarray
    labels: np.ndarray
    files: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool(np.all(self.labels >= 0))

    def take(self, idx: np.ndarray) -> "RawData":
        return RawData(self.items[idx], self.labels[idx], [self.files[i] for i in idx], dict(self.info))


def list_files(folder: Path, modality: str, what: str) -> list[Path]:
    """Files of the modality's kind under ``folder``, sorted by relative path.

    Raises CalibrationDataError: not a folder, or no such files in it.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CalibrationDataError(f"{what} folder {folder}: no such folder")
    suffixes = SUFFIXES[modality]
    files = sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes),
                   key=lambda p: p.relative_to(folder).as_posix())
    if not files:
        raise CalibrationDataError(f"{what} folder {folder} holds no {'/'.join(suffixes)} files; a {modality} model "
                                   f"is calibrated on {KINDS[modality]} (a few hundred is plenty)")
    return files


def _label(path: Path, root: Path, labels: tuple[str, ...]) -> int:
    parent = path.parent
    while parent != root and parent != parent.parent:
        if parent.name in labels:
            return labels.index(parent.name)
        parent = parent.parent
    return -1


def load_face(folder: Path, front_end: FaceFrontEndConfig, labels: tuple[str, ...], detect_faces: bool = False,
              what: str = "calibration") -> RawData:
    """Face crops (uint8, the model's size and colour) from the images under ``folder``."""
    cv2 = load_cv2()
    folder = Path(folder).expanduser()
    crop = front_end.crop
    identity = dataclasses.replace(crop, margin=0.0)
    pre = FacePreprocessor(front_end) if detect_faces else None
    items, labs, names = [], [], []
    no_face = 0
    for path in list_files(folder, "face", what):
        rel = path.relative_to(folder).as_posix()
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise CalibrationDataError(f"{what} image {path}: cannot be decoded (corrupt or not an image); remove it")
        if image.dtype != np.uint8:
            raise CalibrationDataError(f"{what} image {path}: {image.dtype} pixels; edgemer reads 8-bit images, "
                                       f"convert it to 8-bit PNG")
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        channels = 1 if image.ndim == 2 or image.shape[2] == 1 else 3
        if channels == 1 and crop.channels == 3:
            raise CalibrationDataError(f"{what} image {path}: 1 channel (grey), the model takes 3 "
                                       f"({crop.colour.upper()}); give colour images (the camera gives colour frames "
                                       f"at run time)")
        if pre is not None:
            try:
                items.append(pre.locate(image).crop)
            except NoFaceError:
                no_face += 1
                continue
        else:
            h, w = image.shape[:2]
            if (w, h) != crop.size:
                raise CalibrationDataError(
                    f"{what} image {path}: {w}x{h} px, the model takes {crop.size[0]}x{crop.size[1]} face crops; "
                    f"resize the crops to {crop.size[0]}x{crop.size[1]}, or pass --detect-faces if these are whole "
                    f"frames for the runtime face detector to cut")
            items.append(face_crop(image, Detection((0.0, 0.0, float(w), float(h))), identity))
        labs.append(_label(path, folder, labels))
        names.append(rel)
    if not items:
        raise CalibrationDataError(f"{what} folder {folder}: the face detector found no face in any of the "
                                   f"{no_face} images; give face crops without --detect-faces, or other images")
    return RawData(np.stack(items), np.asarray(labs, np.int64), names, {"no_face": no_face})


def face_inputs(raw: RawData, crop: CropConfig) -> np.ndarray:
    """Model inputs ``[n, C, H, W]`` float32 of the crops (the runtime's crop_to_input)."""
    return np.concatenate([crop_to_input(c, crop) for c in raw.items]) if len(raw.items) else np.zeros(
        (0, *crop.input_shape()[1:]), np.float32)


def _windows(x: np.ndarray, n: int, k: int) -> list[np.ndarray]:
    if x.size <= n:
        out = np.zeros(n, np.float32)
        start = (n - x.size) // 2
        out[start:start + x.size] = x
        return [out]
    return [x[i * n:(i + 1) * n] for i in range(min(k, x.size // n))]


def load_audio(folder: Path, config: AudioFrontEndConfig, labels: tuple[str, ...], resample: bool = False,
               windows_per_file: int = 4, what: str = "calibration") -> RawData:
    """Audio windows ``[n, n_samples]`` at the model rate from the WAV files under ``folder``."""
    from edgemer.sources.wav_replay import load_wav_mono, read_wav

    folder = Path(folder).expanduser()
    rate = config.sample_rate_hz
    items, labs, names = [], [], []
    resampled = 0
    for path in list_files(folder, "audio", what):
        try:
            wav_rate = read_wav(path).rate_hz
            if wav_rate != rate and not resample:
                raise CalibrationDataError(
                    f"{what} WAV {path}: {wav_rate} Hz, the model takes {rate} Hz; convert the files (e.g. "
                    f"sox in.wav -r {rate} out.wav), pass --resample to let edgemer resample them, or --audio-rate "
                    f"if the model's rate is {wav_rate} Hz")
            x, _ = load_wav_mono(path, rate)
        except CalibrationDataError:
            raise
        except DatasetError as exc:
            raise CalibrationDataError(f"{what}: {exc}") from exc
        resampled += int(wav_rate != rate)
        lab = _label(path, folder, labels)
        for w in _windows(x, config.n_samples, windows_per_file):
            items.append(w)
            labs.append(lab)
            names.append(path.relative_to(folder).as_posix())
    return RawData(np.stack(items).astype(np.float32), np.asarray(labs, np.int64), names,
                   {"resampled_files": resampled})


def audio_inputs(raw: RawData, config: AudioFrontEndConfig) -> np.ndarray:
    """Model inputs of the windows through the runtime's AudioFeatures."""
    feats = AudioFeatures(config)
    return np.concatenate([feats(w) for w in raw.items])


def audio_db_stats(raw: RawData, config: AudioFrontEndConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per mel band mean and standard deviation (dB) of the windows' log-mel (``audio_normalisation=calibration``)."""
    feats = AudioFeatures(config)
    db = np.stack([feats.log_mel_db(w) for w in raw.items])  # [n, n_mels, n_frames]
    mean = db.mean(axis=(0, 2))
    std = np.maximum(db.std(axis=(0, 2)), 1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _npz_windows(path: Path, window_s: float) -> tuple[list[dict[str, np.ndarray]], list[Any]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:
        raise CalibrationDataError(f"NPZ window {path}: not readable ({type(exc).__name__}: {str(exc)[:160]}); "
                                   f"write it with numpy.savez") from exc
    missing = [s for s in STREAM_RATES_HZ if s not in data]
    if missing:
        raise CalibrationDataError(f"NPZ window {path}: missing stream(s) {missing}; each file holds eda, bvp, temp "
                                   f"and acc of one window (or a stack of windows)")
    first = np.asarray(data["eda"])
    stacked = first.ndim == 3
    k = first.shape[0] if stacked else 1
    wins = []
    for i in range(k):
        w = {}
        for name, rate in STREAM_RATES_HZ.items():
            x = np.asarray(data[name], np.float64)
            x = x[i] if stacked else x
            if x.ndim == 1:
                x = x[:, None]
            want = (int(round(window_s * rate)), STREAM_CHANNELS[name])
            if x.shape != want:
                raise CalibrationDataError(
                    f"NPZ window {path}: stream '{name}' is {list(x.shape)}, the model's {window_s:g} s window needs "
                    f"{list(want)} ({rate:g} Hz x {window_s:g} s); resample the stream to {rate:g} Hz and cut "
                    f"{window_s:g} s windows")
            w[name] = x
        wins.append(w)
    raw_labels = data.get("labels", data.get("label"))
    labs = list(np.atleast_1d(raw_labels)) if raw_labels is not None else [None] * k
    if len(labs) != k:
        raise CalibrationDataError(f"NPZ window {path}: {len(labs)} labels for {k} windows")
    return wins, labs


def load_physio(folder: Path, window_s: float, labels: tuple[str, ...], what: str = "calibration") -> RawData:
    """Physical wrist feature matrices ``[n, 4, N]`` from the NPZ windows under ``folder``."""
    folder = Path(folder).expanduser()
    items, labs, names = [], [], []
    for path in list_files(folder, "physio", what):
        wins, wlabs = _npz_windows(path, window_s)
        for w, lab in zip(wins, wlabs):
            try:
                feats, _ = wrist_features(w, window_s)
            except EdgemerError as exc:
                raise CalibrationDataError(f"NPZ window {path}: {exc}") from exc
            items.append(feats)
            if lab is None:
                labs.append(_label(path, folder, labels))
            elif np.issubdtype(np.asarray(lab).dtype, np.integer):
                labs.append(int(lab) if 0 <= int(lab) < len(labels) else -1)
            else:
                labs.append(labels.index(str(lab)) if str(lab) in labels else -1)
            names.append(path.relative_to(folder).as_posix())
    return RawData(np.stack(items).astype(np.float32), np.asarray(labs, np.int64), names, {})


def evenly(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` indices spread evenly over ``range(n)`` (deterministic, sorted)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, num=k).round().astype(np.int64))


def summarise(x: np.ndarray, raw: RawData, folder: Path) -> dict[str, Any]:
    """The report's calibration/evaluation summary: counts, shapes, value ranges per channel."""
    axis = tuple(i for i in range(x.ndim) if i != 1) if x.ndim >= 3 else None
    per_channel = None
    if axis is not None:
        per_channel = {"min": x.min(axis=axis).round(5).tolist(), "max": x.max(axis=axis).round(5).tolist(),
                       "mean": x.mean(axis=axis).round(5).tolist()}
    return {"folder": str(Path(folder).name), "files": len(set(raw.files)), "samples": int(len(x)),
            "input_shape": [int(v) for v in x.shape[1:]], "min": float(x.min()), "max": float(x.max()),
            "mean": float(x.mean()), "std": float(x.std()), "per_channel": per_channel,
            "labelled": raw.labelled, "labelled_samples": int(np.sum(raw.labels >= 0)), **raw.info}
