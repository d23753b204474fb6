"""Facial expression front-end: video frame -> face detection -> aligned crop -> model input.

Per analysed frame (``[H, W, 3]`` uint8 BGR, any size):

1. a face detector (:mod:`edgemer.frontends.face_detector`; MediaPipe's BlazeFace by
   default) finds faces;
2. the largest face, or the tracked one, is chosen (``front_end.selection``);
3. the crop square is placed (``crop.align``): ``"keypoints"`` rotates it so the eyes are
   level and sizes and centres it from the eyes (side ``eye_side`` eye distances, centre
   ``eye_drop`` eye distances below the midpoint between the eyes), so the face is framed
   the same whatever the detector's box and the head's roll; ``"eyes"`` only rotates the
   box; ``"none"`` (and any detector without landmarks, e.g. Haar) takes the box as it is.
   The square is widened by ``crop.margin`` on each side and resampled in one affine
   warp to ``crop.size`` (grey, RGB or BGR; parts outside the frame repeat the edge pixels);
4. pixels become model input ``x * crop.scale + crop.offset`` in the model's layout
   (``[1, C, H, W]`` float32).

A frame without a face raises :class:`~edgemer.errors.NoFaceError`: the pipeline then
reports the face modality as absent ("no face") instead of a made-up expression.

Outputs: ``probabilities`` over the seven basic expressions (softmax of the model's
logits). ``arousal`` / ``valence`` and the stress probability are a documented
heuristic, not a trained regression: arousal and valence are the probability-weighted
circumplex anchors in :data:`CIRCUMPLEX`, stress is ``P(angry) + P(fear) +
0.5 * (P(disgust) + P(sad))``.

Two ways in: :class:`FaceFrontEnd` (built from a bundle manifest by the pipeline) and
:class:`FaceExpressionRecognizer` (a task object for one-shot images or video frames,
after MediaPipe Tasks). Frames and crops stay in memory; nothing here writes them.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgemer.bundle import Bundle, Manifest, load_bundle
from edgemer.errors import ConfigError, InputShapeError, ManifestError, NoFaceError
from edgemer.frontends.face_detector import (
    Detection,
    FaceDetector,
    FaceDetectorOptions,
    FaceSelector,
    check_frame,
    create_face_detector,
    detect_near,
    load_cv2,
    near_search_detector,
    supports_near_search,
)
from edgemer.types import ModalityEstimate, StreamSpec, Window

EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""The seven basic expressions in FER2013 class-index order."""

CIRCUMPLEX = {"angry": (0.75, -0.65), "disgust": (0.35, -0.7), "fear": (0.8, -0.55), "happy": (0.5, 0.8),
              "sad": (-0.5, -0.6), "surprise": (0.8, 0.2), "neutral": (0.0, 0.0)}
"""Expression -> (arousal, valence) anchor in [-1, 1] (after Russell's circumplex; a heuristic)."""

STRESS_WEIGHTS = {"angry": 1.0, "fear": 1.0, "disgust": 0.5, "sad": 0.5}
"""Expression -> weight in the heuristic stress probability."""

VIDEO_STREAM = "video"
COLOURS = ("grey", "rgb", "bgr")
ALIGNMENTS = ("none", "eyes", "keypoints")


@dataclass(frozen=True)
class CropConfig:
    """How a face box becomes a model input (``front_end.crop`` in the manifest).

    size: crop ``(width, height)``, pixels (e.g. 48x48 FER2013, 64x64 mini-Xception).
    colour: ``"grey"`` (1 channel), ``"rgb"`` or ``"bgr"`` (3 channels).
    margin: fraction of the (squared) face box added on each side, >= 0.
    align: ``"none"`` (the detector's box), ``"eyes"`` (the box rotated so the eyes are
        level) or ``"keypoints"`` (rotated so the eyes are level, placed and scaled from the
        eyes: see ``eye_side``, ``eye_drop``). Detectors without landmarks (Haar) always
        give the box.
    eye_side: ``"keypoints"``: side of the crop square before the margin, in eye distances
        (distance between the two eye centres).
    eye_drop: ``"keypoints"``: centre of the crop square below the midpoint between the eyes
        (along the face's own vertical axis), in eye distances.
    scale, offset: model input = pixel (0..255) * scale + offset.
    """

    size: tuple[int, int] = (64, 64)
    colour: str = "grey"
    margin: float = 0.1
    align: str = "none"
    scale: float = 2.0 / 255.0
    offset: float = -1.0
    eye_side: float = 2.6
    eye_drop: float = 0.28

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 8 or max(self.size) > 512:
            raise ConfigError(f"front_end.crop.size must be (width, height) between 8 and 512 px, got {self.size}")
        if self.colour not in COLOURS:
            raise ConfigError(f"front_end.crop.colour must be one of {COLOURS}, got {self.colour!r}")
        if not 0 <= self.margin <= 1:
            raise ConfigError(f"front_end.crop.margin must be in [0, 1] (fraction of the box), got {self.margin}")
        if self.align not in ALIGNMENTS:
            raise ConfigError(f"front_end.crop.align must be one of {ALIGNMENTS}, got {self.align!r}")
        if not (1.0 <= self.eye_side <= 6.0 and -1.0 <= self.eye_drop <= 2.0):
            raise ConfigError(f"front_end.crop.eye_side must be in [1, 6] and eye_drop in [-1, 2] eye distances, "
                              f"got {self.eye_side}, {self.eye_drop}")
        if not (math.isfinite(self.scale) and self.scale != 0 and math.isfinite(self.offset)):
            raise ConfigError(f"front_end.crop.scale must be finite and non-zero, offset finite; "
                              f"got {self.scale}, {self.offset}")

    @property
    def channels(self) -> int:
        return 1 if self.colour == "grey" else 3

    def input_shape(self) -> tuple[int, int, int, int]:
        """The model input shape ``[1, C, H, W]`` this crop produces."""
        return (1, self.channels, self.size[1], self.size[0])

    def to_dict(self) -> dict[str, Any]:
        d = {"size": list(self.size), "colour": self.colour, "margin": self.margin, "align": self.align,
             "scale": self.scale, "offset": self.offset}
        if self.align == "keypoints":
            d.update(eye_side=self.eye_side, eye_drop=self.eye_drop)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CropConfig":
        kw = dict(d)
        if "size" in kw:
            kw["size"] = tuple(int(v) for v in kw["size"])
        return cls(**kw)


@dataclass(frozen=True)
class FaceFrontEndConfig:
    """Face front-end parameters (``manifest.front_end`` with ``type: face_expression``).

    analysis_fps: frames analysed per second (the pipeline hop is ``1 / analysis_fps``),
        independent of the camera's frame rate.
    crop: see :class:`CropConfig`. detector: see
        :class:`~edgemer.frontends.face_detector.FaceDetectorOptions`.
    selection: ``"largest"`` or ``"tracked"`` face.
    full_search_every: ``tracked`` selection with BlazeFace or Haar: the whole frame is
        searched at least every this many analysed frames (a new face is noticed within
        that many frames) and whenever the tracked face is not found near its last box; in
        between only the square around it is searched (BlazeFace: with the short-range
        model; Haar: about 10x cheaper). 1: whole frame every time.
    output: name of the model output holding the class scores.
    output_is_probability: True if that output is already softmaxed (else logits).
    """

    analysis_fps: float = 5.0
    crop: CropConfig = field(default_factory=CropConfig)
    detector: FaceDetectorOptions = field(default_factory=FaceDetectorOptions)
    selection: str = "largest"
    full_search_every: int = 5
    output: str = "logits"
    output_is_probability: bool = False

    def __post_init__(self) -> None:
        if not (0.1 <= self.analysis_fps <= 120):
            raise ConfigError(f"front_end.analysis_fps must be in [0.1, 120] frames/s, got {self.analysis_fps}")
        if self.selection not in ("largest", "tracked"):
            raise ConfigError(f"front_end.selection must be 'largest' or 'tracked', got {self.selection!r}")
        if self.full_search_every < 1:
            raise ConfigError(f"front_end.full_search_every must be >= 1 frame, got {self.full_search_every}")

    @property
    def window_s(self) -> float:
        return 1.0 / self.analysis_fps

    def to_dict(self) -> dict[str, Any]:
        return {"type": "face_expression", "analysis_fps": self.analysis_fps, "window_s": self.window_s,
                "hop_s": self.window_s, "streams": {VIDEO_STREAM: {"rate_hz": self.analysis_fps, "channels": 3}},
                "crop": self.crop.to_dict(), "detector": self.detector.to_dict(), "selection": self.selection,
                "full_search_every": self.full_search_every, "output": self.output,
                "output_is_probability": self.output_is_probability}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FaceFrontEndConfig":
        try:
            return cls(analysis_fps=float(d.get("analysis_fps", 5.0)),
                       crop=CropConfig.from_dict(d.get("crop", {})),
                       detector=FaceDetectorOptions.from_dict(d.get("detector", {})),
                       selection=str(d.get("selection", "largest")),
                       full_search_every=int(d.get("full_search_every", 5)), output=str(d.get("output", "logits")),
                       output_is_probability=bool(d.get("output_is_probability", False)))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise ManifestError(f"face front_end: {exc}") from exc
            raise ManifestError(f"face front_end section is malformed ({type(exc).__name__}: {exc}); "
                                f"re-export the bundle") from exc


def _eyes(det: Detection) -> tuple[tuple[float, float], tuple[float, float]]:
    """The two eye landmarks, the one on the image's left first."""
    assert det.landmarks is not None
    a, b = det.landmarks[0], det.landmarks[1]
    return (a, b) if a[0] <= b[0] else (b, a)


def _eye_angle_deg(det: Detection) -> float:
    """Roll of the head in degrees from the two eye landmarks (0 when level)."""
    (rx, ry), (lx, ly) = _eyes(det)
    return math.degrees(math.atan2(ly - ry, lx - rx))


def crop_square(det: Detection, crop: CropConfig) -> tuple[float, float, float, float]:
    """Where ``crop`` cuts the face of ``det``: centre ``(cx, cy)`` and side (margin included),
    frame pixels, and the roll in degrees the crop is rotated by (0: upright box)."""
    x, y, w, h = det.box
    cx, cy, side, angle = x + w / 2, y + h / 2, max(w, h), 0.0
    if crop.align != "none" and det.landmarks is not None and len(det.landmarks) >= 2:
        angle = _eye_angle_deg(det)
        (rx, ry), (lx, ly) = _eyes(det)
        distance = math.hypot(lx - rx, ly - ry)
        if crop.align == "keypoints" and distance > 1.0:
            t = math.radians(angle)
            # the face's "down" is the eye line turned by +90 degrees (image y grows downwards)
            cx = (rx + lx) / 2 - math.sin(t) * crop.eye_drop * distance
            cy = (ry + ly) / 2 + math.cos(t) * crop.eye_drop * distance
            side = crop.eye_side * distance
    return cx, cy, side * (1 + 2 * crop.margin), angle


def limit_opencv_threads(threads: int) -> bool:
    """Cap OpenCV's worker threads (``cv2.setNumThreads``, process-wide) at ``threads``; True if lowered.

    The face crop's blur and warp are split over OpenCV's thread pool, whose threads
    spin-wait after each call: for one small crop every 0.5 s that waiting cost more CPU than
    the crops (on the 2-core VM, 1.4 ms against 0.35 ms of process CPU per crop; about 0.1 s
    per minute of the three-modality example). The pipeline calls this when a face bundle
    starts (``PipelineConfig.opencv_threads``).
    """
    cv2 = load_cv2()
    if cv2.getNumThreads() <= threads:
        return False
    cv2.setNumThreads(threads)
    return True


def face_crop(image: np.ndarray, det: Detection, crop: CropConfig) -> np.ndarray:
    """Cut the face of ``det`` out of ``image`` as ``crop`` says.

    Parameters
    ----------
    image: ``[H, W, 3]`` uint8 BGR or ``[H, W]`` uint8 grey frame.
    det: the face, in ``image`` pixels.

    Returns uint8 ``[h, w]`` (grey) or ``[h, w, 3]`` (RGB/BGR) with ``(w, h) = crop.size``.

    Raises
    ------
    InputShapeError: the frame is grey but the crop must be RGB/BGR, or the frame is malformed.
    """
    cv2 = load_cv2()
    image = check_frame(image, "face crop")
    if image.ndim == 2 and crop.colour != "grey":
        raise InputShapeError(f"face crop: got a grey frame {image.shape}, but this model expects {crop.colour.upper()} "
                              f"face crops; feed colour frames [H, W, 3] BGR (cv2.imread(path, cv2.IMREAD_COLOR))")
    if crop.colour == "grey" and image.ndim == 3:
        src = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif crop.colour == "rgb":
        src = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        src = image
    cx, cy, side, angle = crop_square(det, crop)
    out_w, out_h = crop.size
    # one affine map: rotate about the face centre by -angle, scale side -> output, centre it
    sx, sy = out_w / side, out_h / side
    t = math.radians(angle)
    cos, sin = math.cos(t), math.sin(t)
    m = np.array([[sx * cos, sx * sin, 0.0], [-sy * sin, sy * cos, 0.0]], np.float64)
    m[0, 2] = out_w / 2 - (m[0, 0] * cx + m[0, 1] * cy)
    m[1, 2] = out_h / 2 - (m[1, 0] * cx + m[1, 1] * cy)
    # area-like resampling: blur first when shrinking a lot, then bilinear
    shrink = side / max(out_w, out_h)
    if shrink > 2.0:
        sigma = 0.4 * shrink
        # Blur only the part of the frame the warp reads: the crop square (any rotation) plus
        # the kernel radius, so the pixels read are those a whole-frame blur gives.
        radius = side * math.sqrt(0.5) + (int(round(sigma * 6 + 1)) | 1) // 2 + 2
        fh, fw = src.shape[:2]
        x0, y0 = max(0, int(math.floor(cx - radius))), max(0, int(math.floor(cy - radius)))
        x1, y1 = min(fw, int(math.ceil(cx + radius)) + 1), min(fh, int(math.ceil(cy + radius)) + 1)
        if x1 - x0 >= 2 and y1 - y0 >= 2 and 2 * (x1 - x0) * (y1 - y0) < fw * fh:
            src = cv2.GaussianBlur(np.ascontiguousarray(src[y0:y1, x0:x1]), (0, 0), sigma)
            m[0, 2] += m[0, 0] * x0 + m[0, 1] * y0
            m[1, 2] += m[1, 0] * x0 + m[1, 1] * y0
        else:
            src = cv2.GaussianBlur(src, (0, 0), sigma)
    return cv2.warpAffine(src, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_to_input(crop_image: np.ndarray, crop: CropConfig) -> np.ndarray:
    """uint8 crop ``[h, w]`` or ``[h, w, 3]`` -> float32 model input ``[1, C, h, w]``."""
    x = crop_image.astype(np.float32) * np.float32(crop.scale) + np.float32(crop.offset)
    x = x[None, None] if x.ndim == 2 else x.transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x, dtype=np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def expression_summary(probs: np.ndarray, labels: tuple[str, ...]) -> tuple[dict[str, float], float, float, float]:
    """``(probabilities, stress, arousal, valence)`` from class probabilities (heuristic mapping, see module doc)."""
    probabilities = {lab: float(p) for lab, p in zip(labels, probs)}
    stress = min(1.0, sum(STRESS_WEIGHTS.get(lab, 0.0) * p for lab, p in probabilities.items()))
    arousal = sum(p * CIRCUMPLEX.get(lab, (0.0, 0.0))[0] for lab, p in probabilities.items())
    valence = sum(p * CIRCUMPLEX.get(lab, (0.0, 0.0))[1] for lab, p in probabilities.items())
    return probabilities, float(stress), float(arousal), float(valence)


@dataclass(frozen=True)
class FaceCrop:
    """One located face: the detection, the uint8 crop, the model input and stage timings (s).

    faces: faces found by the search. search: ``"frame"`` (whole frame) or ``"near"``
    (only around the tracked face, see :class:`FaceFrontEndConfig`).
    """

    detection: Detection
    faces: int
    crop: np.ndarray
    input: np.ndarray
    detect_s: float
    crop_s: float
    search: str = "frame"


class FacePreprocessor:
    """Detection, selection and cropping: the part shared by the front-end and the task API.

    Parameters
    ----------
    config: the front-end configuration (crop, detector, selection).
    detector: a ready detector; default: built from ``config.detector``.
    """

    def __init__(self, config: FaceFrontEndConfig, detector: FaceDetector | None = None) -> None:
        self.config = config
        self.detector = detector if detector is not None else create_face_detector(config.detector)
        self.selector = FaceSelector(config.selection)
        # Near search only for BlazeFace and Haar built here (a YuNet model letterboxes any region to its
        # fixed input size, so a small region costs as much as the frame; a detector passed in is used as is).
        tracking = (config.selection == "tracked" and supports_near_search(config.detector)
                    and config.full_search_every > 1)
        self._near = near_search_detector(config.detector) if tracking and detector is None else None
        self._near_searches = 0  # near searches since the last whole-frame search
        self.last_detect_s = 0.0  # wall seconds of the detector in the last locate(), face found or not

    def reset(self) -> None:
        """Forget earlier frames: the tracked face and the detector's hint (the next frame is read on its own)."""
        self.selector.reset()
        reset = getattr(self.detector, "reset", None)
        if reset is not None:
            reset()

    def _detect(self, frame: np.ndarray) -> tuple[list[Detection], str]:
        """Near the tracked face while allowed and found there, else in the whole frame."""
        last = self.selector.last
        if self._near is not None and last is not None and self._near_searches < self.config.full_search_every - 1:
            found = detect_near(self._near, frame, last)
            if found:
                self._near_searches += 1
                return found, "near"
        self._near_searches = 0
        return self.detector.detect(frame), "frame"

    def locate(self, frame: np.ndarray) -> FaceCrop:
        """Find, choose and crop the face in ``frame`` (``[H, W, 3]`` uint8 BGR).

        Raises
        ------
        NoFaceError: no face in the frame. InputShapeError: malformed frame, or grey
        where the model expects colour.
        """
        self.last_detect_s = 0.0
        frame = check_frame(frame, "face front-end")
        if frame.ndim == 2 and self.config.crop.colour != "grey":
            raise InputShapeError(f"face front-end: got a grey frame {frame.shape}, but this bundle expects "
                                  f"{self.config.crop.colour.upper()} face crops; feed colour frames [H, W, 3] BGR")
        t0 = time.perf_counter()
        detections, search = self._detect(frame)
        t1 = time.perf_counter()
        self.last_detect_s = t1 - t0
        det = self.selector.select(detections)
        if det is None:
            raise NoFaceError(f"no face in the {frame.shape[1]}x{frame.shape[0]} frame "
                              f"({self.detector.description}, faces >= {self.config.detector.min_face} px)")
        img = face_crop(frame, det, self.config.crop)
        x = crop_to_input(img, self.config.crop)
        return FaceCrop(detection=det, faces=len(detections), crop=img, input=x, detect_s=t1 - t0,
                        crop_s=time.perf_counter() - t1, search=search)


def check_model_input(manifest: Manifest, config: FaceFrontEndConfig) -> str:
    """The model input name, after checking the crop matches the manifest's input shape.

    Raises
    ------
    ManifestError: the crop size/colour does not give the model's input shape.
    """
    if len(manifest.inputs) != 1:
        raise ManifestError(f"bundle '{manifest.name}': a face bundle has one input, the manifest lists "
                            f"{[t.name for t in manifest.inputs]}")
    spec = manifest.inputs[0]
    want = config.crop.input_shape()
    if tuple(spec.shape) != want:
        raise ManifestError(
            f"bundle '{manifest.name}': model input '{spec.name}' is {list(spec.shape)}, but front_end.crop "
            f"(size {config.crop.size[0]}x{config.crop.size[1]}, {config.crop.colour}) makes {list(want)}; "
            f"the crop size must match the model (re-export the bundle, or fix front_end.crop)")
    if config.output not in [t.name for t in manifest.outputs]:
        raise ManifestError(f"bundle '{manifest.name}': front_end.output '{config.output}' is not a model output "
                            f"({[t.name for t in manifest.outputs]})")
    return spec.name


class FaceFrontEnd:
    """Front-end and output interpreter for ``face_expression`` bundles (see module docstring).

    Reads the newest frame of the ``video`` stream in each window (one window per
    ``1 / analysis_fps`` seconds). :meth:`prepare` keeps the located face for the
    :meth:`interpret` call that follows it on the same worker thread.
    """

    modality = "face"

    def __init__(self, config: FaceFrontEndConfig, labels: tuple[str, ...], input_name: str = "image",
                 detector: FaceDetector | None = None) -> None:
        self.config = config
        self.labels = labels
        self.input_name = input_name
        self.window_s = config.window_s
        self.hop_s = config.window_s
        self.min_coverage = 1.0
        self.streams = (StreamSpec(VIDEO_STREAM, config.analysis_fps, channels=3, unit="bgr8", media=True,
                                   frames=True),)
        self.preprocessor = FacePreprocessor(config, detector)
        self._last: FaceCrop | None = None

    @property
    def last_detector_s(self) -> float:
        """Wall seconds the face detector took in the last :meth:`prepare` (also when it found no
        face): part of the front-end's time, reported on its own by the pipeline."""
        return self.preprocessor.last_detect_s

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "FaceFrontEnd":
        cfg = FaceFrontEndConfig.from_dict(manifest.front_end)
        name = check_model_input(manifest, cfg)
        return cls(cfg, manifest.labels, name)

    def prepare(self, window: Window) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self.preprocessor.last_detect_s = 0.0
        frames = window.streams.get(VIDEO_STREAM)
        if frames is None or frames.ndim != 4 or frames.shape[0] == 0:
            raise InputShapeError(f"face front-end: the window holds no '{VIDEO_STREAM}' frame")
        self._last = None
        found = self.preprocessor.locate(frames[-1])
        self._last = found
        info = {"faces": found.faces, "face": found.detection.to_dict(), "detect_s": found.detect_s,
                "crop_s": found.crop_s, "search": found.search}
        return {self.input_name: found.input}, info

    def interpret(self, outputs: Mapping[str, np.ndarray], t_end: float, bundle: str) -> ModalityEstimate:
        scores = np.asarray(outputs[self.config.output], np.float64).reshape(-1)
        probs = scores / max(scores.sum(), 1e-12) if self.config.output_is_probability else softmax(scores)
        probabilities, stress, arousal, valence = expression_summary(probs, self.labels)
        extras: dict[str, Any] = {"expression": self.labels[int(np.argmax(probs))]}
        if self._last is not None:
            extras.update(face=self._last.detection.to_dict(), faces=self._last.faces, face_search=self._last.search)
        return ModalityEstimate(modality=self.modality, bundle=bundle, t_end=t_end, probabilities=probabilities,
                                stress_probability=stress, arousal=arousal, valence=valence,
                                confidence=float(probs.max()), extras=extras)


def default_face_selection(bundle: str | Path | Bundle, sources: list[Any]) -> str | None:
    """The face selection a run uses when none is given: ``"tracked"`` for a face bundle fed by a
    camera or a video file (one continuous scene: follow the face, searching near its last box),
    else None (the bundle's own, ``largest``). ``bundle`` is loaded (unverified) only when a
    source is such a video."""
    from edgemer.sources import is_continuous_video

    if not any(is_continuous_video(s) for s in sources):
        return None
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=False)
    return "tracked" if loaded.manifest.modality == "face" else None


def configure_face_bundle(bundle: Bundle, analysis_fps: float | None = None,
                          detector: FaceDetectorOptions | str | None = None, selection: str | None = None) -> Bundle:
    """The bundle with run-time face options changed in its manifest (in memory; files untouched).

    The analysis rate, the face detector and the face selection are run-time choices,
    not properties of the expression model, so they may be changed per run.

    Parameters
    ----------
    analysis_fps: frames analysed per second. detector: options, or a detector name
        (``blazeface``, ``blazeface-full``, ``blazeface-short``, ``haar``, a YuNet-format
        ``.onnx`` path or a BlazeFace folder; the bundle's engine, face-size and score settings
        go back to that detector's defaults, the others are kept). selection:
        ``"largest"`` or ``"tracked"``.
    """
    fe = dict(bundle.manifest.front_end)
    if fe.get("type") != "face_expression":
        raise ConfigError(f"bundle '{bundle.name}' is not a face bundle (front_end.type {fe.get('type')!r}); "
                          f"face options do not apply to it")
    cfg = FaceFrontEndConfig.from_dict(fe)
    if isinstance(detector, str):
        detector = dataclasses.replace(cfg.detector, model=detector, engine="auto", min_face_px=None,
                                       score_threshold=None)
    cfg = dataclasses.replace(cfg, analysis_fps=cfg.analysis_fps if analysis_fps is None else float(analysis_fps),
                              detector=detector or cfg.detector, selection=selection or cfg.selection)
    fe.update(cfg.to_dict())
    raw = dict(bundle.manifest.raw)
    raw["front_end"] = fe
    manifest = dataclasses.replace(bundle.manifest, front_end=fe, raw=raw)
    return dataclasses.replace(bundle, manifest=manifest)


# -- task API (after MediaPipe Tasks) ------------------------------------------------------------

class RunningMode(enum.Enum):
    """IMAGE: every call stands alone (largest face). VIDEO: frames of one video with
    increasing timestamps; the chosen face is tracked from frame to frame."""

    IMAGE = "image"
    VIDEO = "video"


@dataclass(frozen=True)
class FaceExpressionRecognizerOptions:
    """Options of :class:`FaceExpressionRecognizer`.

    bundle: face bundle folder, shipped name or loaded :class:`Bundle` (default ``face-demo``).
    backend: ``auto`` (default: the fastest verified file measured here, see
    :mod:`edgemer.backends.choice`), ``onnxruntime`` or ``litert``. precision: ``auto``,
    ``int8`` or ``fp32``. threads: inference threads (None: chosen with the engine).
    detector: face detector options (None: the bundle's).
    running_mode: :class:`RunningMode`.
    """

    bundle: str | Path | Bundle = "face-demo"
    backend: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    detector: FaceDetectorOptions | None = None
    running_mode: RunningMode = RunningMode.IMAGE

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "onnxruntime", "litert"):
            raise ConfigError(f"FaceExpressionRecognizerOptions.backend must be 'auto', 'onnxruntime' or 'litert', "
                              f"got {self.backend!r}")
        if self.precision not in ("auto", "int8", "fp32"):
            raise ConfigError(f"FaceExpressionRecognizerOptions.precision must be 'auto', 'int8' or 'fp32', "
                              f"got {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"FaceExpressionRecognizerOptions.threads must be >= 1, got {self.threads}")
        if not isinstance(self.running_mode, RunningMode):
            raise ConfigError("FaceExpressionRecognizerOptions.running_mode must be a RunningMode")


@dataclass(frozen=True)
class FaceExpressionResult:
    """The reading of one frame.

    timestamp_ms: the frame's timestamp (VIDEO mode), None in IMAGE mode.
    face: the analysed face (None: no face). faces: faces found in the frame.
    probabilities: expression -> probability (empty when no face). expression: the most
    probable one (None when no face). stress_probability, arousal, valence: heuristic
    mapping (see module docstring). detect_s, crop_s, inference_s: stage times, seconds.
    engine: the engine choice the expression model runs on (``backend/precision/tN``).
    """

    timestamp_ms: int | None
    face: Detection | None
    faces: int
    probabilities: Mapping[str, float]
    expression: str | None
    stress_probability: float | None
    arousal: float | None
    valence: float | None
    detect_s: float
    crop_s: float
    inference_s: float
    engine: str = ""

    @property
    def no_face(self) -> bool:
        return self.face is None


class FaceExpressionRecognizer:
    """Finds the face in a frame and reads its expression with a face bundle.

    >>> opts = FaceExpressionRecognizerOptions(bundle="face-demo")
    >>> with FaceExpressionRecognizer.create_from_options(opts) as recognizer:
    ...     result = recognizer.recognize(frame_bgr)      # [H, W, 3] uint8
    ...     print("no face" if result.no_face else result.expression)
    """

    def __init__(self, options: FaceExpressionRecognizerOptions) -> None:
        from edgemer.backends import open_session

        self.options = options
        bundle = options.bundle if isinstance(options.bundle, Bundle) else load_bundle(options.bundle)
        if bundle.manifest.front_end.get("type") != "face_expression":
            raise ConfigError(f"bundle '{bundle.name}' is not a face bundle "
                              f"(front_end.type {bundle.manifest.front_end.get('type')!r})")
        if options.detector is not None:
            bundle = configure_face_bundle(bundle, detector=options.detector)
        if options.running_mode is RunningMode.VIDEO:
            bundle = configure_face_bundle(bundle, selection="tracked")
        self.bundle = bundle
        self.config = FaceFrontEndConfig.from_dict(bundle.manifest.front_end)
        self.input_name = check_model_input(bundle.manifest, self.config)
        self.labels = bundle.manifest.labels
        self.preprocessor = FacePreprocessor(self.config)
        from edgemer.backends.choice import choose_engine

        self.choice = choose_engine(bundle, options.backend, options.precision, options.threads)
        """The engine choice and why (:class:`~edgemer.backends.choice.EngineChoice`)."""
        self.session = open_session(bundle, self.choice.backend, self.choice.precision, self.choice.threads)
        self._last_ts: int | None = None

    @classmethod
    def create_from_options(cls, options: FaceExpressionRecognizerOptions) -> "FaceExpressionRecognizer":
        return cls(options)

    def __enter__(self) -> "FaceExpressionRecognizer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the model session (the object cannot be used afterwards)."""
        self.session = None  # type: ignore[assignment]

    def _run(self, frame: np.ndarray, timestamp_ms: int | None) -> FaceExpressionResult:
        if self.session is None:
            raise ConfigError("this FaceExpressionRecognizer was closed; create a new one")
        try:
            found = self.preprocessor.locate(frame)
        except NoFaceError:
            return FaceExpressionResult(timestamp_ms, None, 0, {}, None, None, None, None, 0.0, 0.0, 0.0,
                                        self.choice.label)
        t0 = time.perf_counter()
        out = self.session.run({self.input_name: found.input})
        infer_s = time.perf_counter() - t0
        scores = np.asarray(out[self.config.output], np.float64).reshape(-1)
        probs = scores / max(scores.sum(), 1e-12) if self.config.output_is_probability else softmax(scores)
        probabilities, stress, arousal, valence = expression_summary(probs, self.labels)
        return FaceExpressionResult(timestamp_ms, found.detection, found.faces, probabilities,
                                    self.labels[int(np.argmax(probs))], stress, arousal, valence,
                                    found.detect_s, found.crop_s, infer_s, self.choice.label)

    def recognize(self, image: np.ndarray) -> FaceExpressionResult:
        """Read one image (``[H, W, 3]`` uint8 BGR); IMAGE mode only."""
        if self.options.running_mode is not RunningMode.IMAGE:
            raise ConfigError("recognize() is for RunningMode.IMAGE; use recognize_for_video(frame, timestamp_ms)")
        self.preprocessor.reset()  # IMAGE mode: every image on its own, whatever came before
        return self._run(image, None)

    def recognize_for_video(self, frame: np.ndarray, timestamp_ms: int) -> FaceExpressionResult:
        """Read one video frame; timestamps (ms) must increase. VIDEO mode only."""
        if self.options.running_mode is not RunningMode.VIDEO:
            raise ConfigError("recognize_for_video() is for RunningMode.VIDEO; use recognize(image)")
        if self._last_ts is not None and timestamp_ms <= self._last_ts:
            raise InputShapeError(f"recognize_for_video: timestamp {timestamp_ms} ms is not after the previous "
                                  f"frame's {self._last_ts} ms; timestamps must increase")
        self._last_ts = int(timestamp_ms)
        return self._run(frame, int(timestamp_ms))
