"""Face detectors that run offline: MediaPipe's BlazeFace (default), OpenCV's Haar cascade, YuNet ONNX.

* ``blazeface`` (default), ``blazeface-full``, ``blazeface-short``: MediaPipe's BlazeFace
  models, shipped inside edgemer (:mod:`edgemer.frontends.blazeface`), run by edgemer's
  onnxruntime or LiteRT backend with no OpenCV; boxes, scores and six keypoints.
  ``blazeface`` uses the full-range model for whole-frame searches and the short-range
  model for the tracked search around the last face (:func:`near_search_detector`);
  the other two use one model for both. A BlazeFace detector folder (``manifest.json``
  with ``front_end.type: blazeface``) may be given by path.
* ``haar``: OpenCV's frontal-face Haar cascade, shipped inside
  ``opencv-python-headless`` 4.x (``pip install 'edgemer[camera]'``). OpenCV 5 dropped
  ``CascadeClassifier`` and the cascade files, hence the ``<5`` pin. Boxes only, no
  landmarks; scores are 1.0 (a cascade gives no calibrated confidence).
* a path to a YuNet-format ``.onnx`` (e.g. ``face_detection_yunet_2023mar.onnx`` from the
  OpenCV model zoo, which you supply): outputs ``cls_8/16/32``, ``obj_*``, ``bbox_*``,
  ``kps_*``; boxes, scores and five landmarks. Engine ``onnxruntime`` runs it through
  edgemer's own onnxruntime session and decodes it here; engine ``opencv`` hands it to
  ``cv2.FaceDetectorYN``. Both decode alike (tested against each other).

All detectors take a frame ``[H, W, 3]`` uint8 BGR (or ``[H, W]`` / ``[H, W, 1]`` grey)
and return :class:`Detection` objects in that frame's pixel coordinates. BlazeFace
letterboxes the whole frame into its input; Haar and YuNet shrink frames larger than
``max_side_px`` (boxes are scaled back) without losing faces bigger than ``min_face_px``.
Per 640x480 frame at one x86 thread: BlazeFace full range about 5 ms, Haar 20-25 ms.
Following one face through a video (:class:`FaceSelector` in ``tracked`` mode),
:func:`detect_near` searches only a square around its last box (BlazeFace short range:
about 2 ms; Haar: about a tenth of its whole-frame time).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Protocol

import numpy as np

from edgemer._extras import require
from edgemer.bundle import TensorSpec
from edgemer.errors import BackendUnavailableError, ConfigError, InputShapeError, ManifestError, ModelLoadError
from edgemer.frontends import blazeface

HAAR_CASCADE = "haarcascade_frontalface_default.xml"
YUNET_STRIDES = (8, 16, 32)
YUNET_OUTPUTS = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in YUNET_STRIDES)
LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")
"""YuNet's five landmarks, in order ("right" is the subject's right: the left side of the image).
BlazeFace gives six (:data:`edgemer.frontends.blazeface.KEYPOINT_NAMES`); in both the first
two are the eyes, which alignment uses."""
ENGINES = ("auto", "onnxruntime", "litert", "opencv")
BLAZEFACE_MODELS = (blazeface.AUTO,) + blazeface.SHIPPED
"""Detector names that choose a shipped BlazeFace model."""
YUNET_SCORE = 0.6
"""YuNet's minimum face score when ``score_threshold`` is None."""
DEFAULT_MIN_FACE_PX = {"haar": 64, "onnx": 64, "blazeface": 16}
"""``min_face_px`` when the options leave it None, per detector kind (Haar's sets its speed)."""


def load_cv2(purpose: str = "Face detection and cropping"):
    """The ``cv2`` module; raises :class:`MissingExtraError` naming the ``[camera]`` extra."""
    return require("cv2", "camera", purpose)


@dataclass(frozen=True)
class Detection:
    """One face in frame pixel coordinates.

    box: ``(x, y, width, height)`` of the face box, pixels (may extend past the frame).
    score: detector confidence 0..1 (Haar: always 1.0).
    landmarks: ``[K, 2]`` pixel positions, or None (Haar gives none): YuNet's five
        (:data:`LANDMARK_NAMES`) or BlazeFace's six keypoints; the first two are always the
        subject's right and left eye.
    """

    box: tuple[float, float, float, float]
    score: float = 1.0
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def area(self) -> float:
        return max(0.0, self.box[2]) * max(0.0, self.box[3])

    @property
    def center(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2, y + h / 2

    def scaled(self, factor: float) -> "Detection":
        """The same detection with every coordinate multiplied by ``factor``."""
        box = tuple(float(v) * factor for v in self.box)
        lm = None if self.landmarks is None else tuple((px * factor, py * factor) for px, py in self.landmarks)
        return Detection(box=box, score=self.score, landmarks=lm)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"box": [round(float(v), 1) for v in self.box], "score": round(float(self.score), 4)}
        if self.landmarks is not None:
            d["landmarks"] = [[round(float(px), 1), round(float(py), 1)] for px, py in self.landmarks]
        return d


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes, 0..1."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class FaceDetectorOptions:
    """Which face detector to use and how (stored in a face bundle's ``front_end.detector``).

    model: ``"blazeface"`` (full range for whole frames, short range near the tracked
        face), ``"blazeface-full"``, ``"blazeface-short"``, a BlazeFace detector folder,
        ``"haar"``, or the path of a YuNet-format ``.onnx`` face detector.
    engine: BlazeFace: ``"onnxruntime"`` or ``"litert"`` (``"auto"``: LiteRT when installed,
        else onnxruntime). YuNet ONNX: ``"onnxruntime"`` (``"auto"``) or ``"opencv"``
        (``cv2.FaceDetectorYN``). Ignored for Haar.
    min_face_px: smallest face side to report, pixels of the input frame (None: 16 for
        BlazeFace, 64 for Haar and YuNet; Haar searches faster the larger it is).
    max_side_px: Haar and YuNet: frames whose longer side exceeds this are shrunk first.
    score_threshold: BlazeFace and YuNet: minimum face score, 0..1 (None: the model's own,
        0.5 for BlazeFace as in MediaPipe Tasks; 0.6 for YuNet).
    nms_threshold: YuNet: IoU above which overlapping boxes are merged, 0..1 (BlazeFace
        uses its manifest's weighted-NMS threshold).
    max_faces: at most this many faces (highest scores first).
    haar_scale_factor: Haar: image pyramid step, > 1 (1.1 = 10 % per level).
    haar_min_neighbors: Haar: overlapping hits needed to accept a face (higher = fewer
        false faces).
    input_size: ONNX models with a dynamic input: the ``(width, height)`` frames are
        letterboxed into, pixels (multiples of 32 are used as-is).
    threads: onnxruntime intra-op threads for ONNX detectors.
    """

    model: str = blazeface.AUTO
    engine: str = "auto"
    min_face_px: int | None = None
    max_side_px: int = 320
    score_threshold: float | None = None
    nms_threshold: float = 0.3
    max_faces: int = 20
    haar_scale_factor: float = 1.1
    haar_min_neighbors: int = 5
    input_size: tuple[int, int] = (320, 240)
    threads: int = 1

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError(f"FaceDetectorOptions.model must be one of {BLAZEFACE_MODELS}, 'haar', a BlazeFace "
                              f"detector folder or the path of a YuNet-format .onnx file")
        if self.engine not in ENGINES:
            raise ConfigError(f"FaceDetectorOptions.engine must be one of {ENGINES}, got {self.engine!r}")
        if self.engine == "litert" and self.kind != "blazeface":
            raise ConfigError("FaceDetectorOptions.engine 'litert' runs BlazeFace detectors only")
        if self.engine == "opencv" and self.kind != "onnx":
            raise ConfigError("FaceDetectorOptions.engine 'opencv' runs YuNet-format .onnx detectors only")
        if self.min_face_px is not None and self.min_face_px < 8:
            raise ConfigError(f"FaceDetectorOptions.min_face_px must be >= 8 px, got {self.min_face_px}")
        if self.max_side_px < 64:
            raise ConfigError(f"FaceDetectorOptions.max_side_px must be >= 64 px, got {self.max_side_px}")
        for name in ("score_threshold", "nms_threshold"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ConfigError(f"FaceDetectorOptions.{name} must be in [0, 1], got {v}")
        if self.max_faces < 1:
            raise ConfigError(f"FaceDetectorOptions.max_faces must be >= 1, got {self.max_faces}")
        if not self.haar_scale_factor > 1.0:
            raise ConfigError(f"FaceDetectorOptions.haar_scale_factor must be > 1, got {self.haar_scale_factor}")
        if self.haar_min_neighbors < 0:
            raise ConfigError(f"FaceDetectorOptions.haar_min_neighbors must be >= 0, got {self.haar_min_neighbors}")
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ConfigError(f"FaceDetectorOptions.input_size must be (width, height) >= 32 px, got {self.input_size}")
        if self.threads < 1:
            raise ConfigError(f"FaceDetectorOptions.threads must be >= 1, got {self.threads}")

    @property
    def is_haar(self) -> bool:
        return self.model == "haar"

    @property
    def kind(self) -> str:
        """``"blazeface"`` (a shipped name or a detector folder), ``"haar"`` or ``"onnx"`` (YuNet format)."""
        if self.model == "haar":
            return "haar"
        if self.model.endswith(".onnx"):
            return "onnx"
        return "blazeface"

    @property
    def min_face(self) -> int:
        """``min_face_px``, or this detector kind's default when it is None, pixels."""
        return DEFAULT_MIN_FACE_PX[self.kind] if self.min_face_px is None else self.min_face_px

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "engine": self.engine, "min_face_px": self.min_face_px,
                "max_side_px": self.max_side_px, "score_threshold": self.score_threshold,
                "nms_threshold": self.nms_threshold, "max_faces": self.max_faces,
                "haar_scale_factor": self.haar_scale_factor, "haar_min_neighbors": self.haar_min_neighbors,
                "input_size": list(self.input_size), "threads": self.threads}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FaceDetectorOptions":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ManifestError(f"front_end.detector has unknown key(s) {unknown}; known: {sorted(known)}")
        kwargs = dict(d)
        if "input_size" in kwargs:
            kwargs["input_size"] = tuple(int(v) for v in kwargs["input_size"])
        return cls(**kwargs)


class FaceDetector(Protocol):
    """Finds faces in one frame."""

    options: FaceDetectorOptions
    description: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in ``image`` (``[H, W, 3]`` uint8 BGR or ``[H, W]`` grey), highest score / largest first."""
        ...


def check_frame(image: np.ndarray, where: str = "face detector") -> np.ndarray:
    """Validate a frame: uint8 ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]``; returns it (``[H, W, 1]`` squeezed)."""
    if not isinstance(image, np.ndarray):
        raise InputShapeError(f"{where}: expected a numpy image array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputShapeError(f"{where}: frame dtype is {image.dtype}, expected uint8 (0..255); "
                              f"convert with (x * 255).clip(0, 255).astype(np.uint8) for 0..1 floats")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise InputShapeError(f"{where}: frame shape {image.shape}; expected [H, W, 3] BGR or [H, W] grey "
                              f"(drop an alpha channel with frame[:, :, :3])")
    if min(image.shape[:2]) < 16:
        raise InputShapeError(f"{where}: frame of {image.shape[1]}x{image.shape[0]} px is too small to hold a face")
    return image


def _shrink(cv2, image: np.ndarray, max_side_px: int) -> tuple[np.ndarray, float]:
    """The image shrunk so its longer side is at most ``max_side_px``, and the factor back to the original."""
    h, w = image.shape[:2]
    side = max(h, w)
    if side <= max_side_px:
        return image, 1.0
    s = max_side_px / side
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return small, side / max_side_px


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade (boxes only)."""

    def __init__(self, options: FaceDetectorOptions = FaceDetectorOptions()) -> None:
        cv2 = load_cv2("The Haar face detector")
        self._cv2 = cv2
        self.options = options
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise BackendUnavailableError(
                f"OpenCV {cv2.__version__} has no CascadeClassifier or cascade files (OpenCV 5 dropped them). "
                f"Install OpenCV 4: pip install 'opencv-python-headless>=4.8,<5' (the edgemer[camera] pin), "
                f"or use a YuNet ONNX face detector (FaceDetectorOptions(model='face_detection_yunet.onnx')).")
        path = Path(cv2.data.haarcascades) / HAAR_CASCADE
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise BackendUnavailableError(f"{path}: OpenCV cannot load its frontal-face cascade; reinstall "
                                          f"opencv-python-headless 4.x (pip install 'edgemer[camera]')")
        self.description = f"Haar cascade ({HAAR_CASCADE}, OpenCV {cv2.__version__})"

    def detect(self, image: np.ndarray) -> list[Detection]:
        cv2, o = self._cv2, self.options
        image = check_frame(image)
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        small, back = _shrink(cv2, grey, o.max_side_px)
        min_px = max(8, int(round(o.min_face / back)))
        boxes = self._cascade.detectMultiScale(small, scaleFactor=o.haar_scale_factor,
                                               minNeighbors=o.haar_min_neighbors, minSize=(min_px, min_px))
        dets = [Detection(box=tuple(float(v) for v in b)).scaled(back) for b in np.asarray(boxes).reshape(-1, 4)]
        dets.sort(key=lambda d: d.area, reverse=True)
        return dets[:o.max_faces]


def _yunet_decode(outputs: Mapping[str, np.ndarray], pad_w: int, pad_h: int, score_threshold: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode YuNet's raw outputs into boxes ``[n, 4]`` (x, y, w, h), scores ``[n]`` and landmarks ``[n, 5, 2]``.

    The rule is OpenCV's ``FaceDetectorYN``: score = sqrt(clip(cls) * clip(obj)); box
    centre = (cell + offset) * stride, size = exp(log-size) * stride; landmark =
    (offset + cell) * stride, for strides 8, 16 and 32 over the padded input.
    """
    boxes, scores, marks = [], [], []
    for s in YUNET_STRIDES:
        cols, rows = pad_w // s, pad_h // s
        n = rows * cols
        cls = np.clip(np.asarray(outputs[f"cls_{s}"], np.float32).reshape(-1)[:n], 0, 1)
        obj = np.clip(np.asarray(outputs[f"obj_{s}"], np.float32).reshape(-1)[:n], 0, 1)
        score = np.sqrt(cls * obj)
        keep = np.nonzero(score >= score_threshold)[0]
        if keep.size == 0:
            continue
        bbox = np.asarray(outputs[f"bbox_{s}"], np.float32).reshape(-1, 4)[keep]
        kps = np.asarray(outputs[f"kps_{s}"], np.float32).reshape(-1, 10)[keep].reshape(-1, 5, 2)
        c = (keep % cols).astype(np.float32)
        r = (keep // cols).astype(np.float32)
        cx, cy = (c + bbox[:, 0]) * s, (r + bbox[:, 1]) * s
        w, h = np.exp(bbox[:, 2]) * s, np.exp(bbox[:, 3]) * s
        boxes.append(np.stack([cx - w / 2, cy - h / 2, w, h], axis=1))
        scores.append(score[keep])
        lm = np.empty_like(kps)
        lm[:, :, 0] = (kps[:, :, 0] + c[:, None]) * s
        lm[:, :, 1] = (kps[:, :, 1] + r[:, None]) * s
        marks.append(lm)
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(marks)


def _nms(cv2, boxes: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float,
         top_k: int) -> list[int]:
    """Indices kept by OpenCV's NMS on integer boxes (as ``FaceDetectorYN`` does), best first."""
    if len(boxes) == 0:
        return []
    if len(boxes) == 1:
        return [0]
    rects = [[int(v) for v in b] for b in boxes]
    keep = cv2.dnn.NMSBoxes(rects, [float(s) for s in scores], score_threshold, nms_threshold, top_k=top_k)
    return [int(i) for i in np.asarray(keep).reshape(-1)]


class OnnxFaceDetector:
    """A YuNet-format ONNX face detector run by edgemer's onnxruntime session and decoded here."""

    def __init__(self, options: FaceDetectorOptions) -> None:
        import onnxruntime as ort

        from edgemer.backends.onnxruntime_backend import OnnxRuntimeSession

        self._cv2 = load_cv2("The ONNX face detector")
        self.options = options
        path = Path(options.model).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"face detector model '{path}' not found; give the path of a YuNet-format .onnx "
                                 f"file (e.g. face_detection_yunet_2023mar.onnx) or use 'haar'")
        try:
            probe = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"{path}: onnxruntime cannot load this face detector "
                                 f"({str(exc).splitlines()[0][:200]}); is it an ONNX file?") from exc
        outs = [o.name for o in probe.get_outputs()]
        missing = [n for n in YUNET_OUTPUTS if n not in outs]
        if missing or len(probe.get_inputs()) != 1:
            raise ModelLoadError(f"{path}: not a YuNet-format face detector (needs one input and outputs "
                                 f"{list(YUNET_OUTPUTS)}; it has outputs {outs}, missing {missing})")
        inp = probe.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise ModelLoadError(f"{path}: face detector input '{inp.name}' has shape {shape}, expected [1, 3, H, W]")
        if isinstance(shape[2], int) and isinstance(shape[3], int) and shape[2] > 0 and shape[3] > 0:
            self.pad_h, self.pad_w = int(shape[2]), int(shape[3])
        else:
            w, h = options.input_size
            self.pad_w, self.pad_h = int(math.ceil(w / 32) * 32), int(math.ceil(h / 32) * 32)
        if self.pad_w % 32 or self.pad_h % 32:
            raise ModelLoadError(f"{path}: input {self.pad_w}x{self.pad_h} is not a multiple of 32 (YuNet strides)")
        del probe
        self._input = TensorSpec(inp.name, (1, 3, self.pad_h, self.pad_w))
        self._session = OnnxRuntimeSession(path, (self._input,), tuple(TensorSpec(n, ()) for n in YUNET_OUTPUTS),
                                           options.threads, ["CPUExecutionProvider"])
        self.description = f"YuNet-format ONNX {path.name} via onnxruntime, input {self.pad_w}x{self.pad_h}"

    def detect(self, image: np.ndarray) -> list[Detection]:
        cv2, o = self._cv2, self.options
        image = check_frame(image)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        h, w = image.shape[:2]
        s = min(self.pad_w / w, self.pad_h / h)
        nw, nh = max(1, int(w * s)), max(1, int(h * s))
        small = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((self.pad_h, self.pad_w, 3), np.float32)
        canvas[:nh, :nw] = small
        blob = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None])
        outputs = self._session.run({self._input.name: blob})
        score = YUNET_SCORE if o.score_threshold is None else o.score_threshold
        boxes, scores, marks = _yunet_decode(outputs, self.pad_w, self.pad_h, score)
        keep = _nms(cv2, boxes, scores, score, o.nms_threshold, o.max_faces)
        back = 1.0 / s
        dets = [Detection(box=tuple(float(v) for v in boxes[i]), score=float(scores[i]),
                          landmarks=tuple((float(px), float(py)) for px, py in marks[i])).scaled(back) for i in keep]
        return [d for d in dets if min(d.box[2], d.box[3]) >= o.min_face][:o.max_faces]


class OpenCVYuNetDetector:
    """A YuNet-format ONNX face detector run by OpenCV's ``cv2.FaceDetectorYN``."""

    def __init__(self, options: FaceDetectorOptions) -> None:
        cv2 = load_cv2("OpenCV's YuNet face detector")
        self._cv2 = cv2
        self.options = options
        path = Path(options.model).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"face detector model '{path}' not found; give the path of a YuNet-format .onnx file")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise BackendUnavailableError(f"OpenCV {cv2.__version__} has no FaceDetectorYN; use engine 'onnxruntime'")
        try:
            score = YUNET_SCORE if options.score_threshold is None else options.score_threshold
            self._det = cv2.FaceDetectorYN.create(str(path), "", tuple(options.input_size), score,
                                                  options.nms_threshold, options.max_faces)
        except cv2.error as exc:
            raise ModelLoadError(f"{path}: cv2.FaceDetectorYN cannot load this model "
                                 f"({str(exc).strip().splitlines()[-1][:200]})") from exc
        self._size: tuple[int, int] | None = None
        self.description = f"YuNet-format ONNX {path.name} via cv2.FaceDetectorYN (OpenCV {cv2.__version__})"

    def detect(self, image: np.ndarray) -> list[Detection]:
        cv2, o = self._cv2, self.options
        image = check_frame(image)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        small, back = _shrink(cv2, image, o.max_side_px)
        size = (small.shape[1], small.shape[0])
        if size != self._size:
            self._det.setInputSize(size)
            self._size = size
        _, faces = self._det.detect(small)
        dets = []
        for f in (faces if faces is not None else []):
            lm = tuple((float(f[4 + 2 * k]), float(f[5 + 2 * k])) for k in range(5))
            dets.append(Detection(box=(float(f[0]), float(f[1]), float(f[2]), float(f[3])), score=float(f[14]),
                                  landmarks=lm).scaled(back))
        return [d for d in dets if min(d.box[2], d.box[3]) >= o.min_face][:o.max_faces]


CANDIDATE_SCORE = 0.4
"""``blazeface``: whole-frame full-range faces scoring at least this are candidates."""
CONFIRMED_SCORE = 0.75
"""``blazeface``: candidates scoring below this are confirmed by the short-range model; in a
short-range-first search, faces scoring at least this are taken without the full range."""
SHORT_FIRST_SIDE = 0.25
"""``blazeface``: after a whole-frame search whose largest face was at least this fraction of
the searched square's side, the next whole-frame search tries the short range first."""


class BlazeFaceDetector:
    """A BlazeFace model (:mod:`edgemer.frontends.blazeface`): boxes, scores and six keypoints; no OpenCV.

    ``blazeface-full`` and ``blazeface-short`` (or a folder) decode one model as MediaPipe
    does, keeping faces scoring at least ``score_threshold`` (None: the model's own, 0.5).
    ``blazeface`` searches whole frames with the full-range model and checks its uncertain
    faces with the short-range one: candidates from :data:`CANDIDATE_SCORE` up are kept at
    once from :data:`CONFIRMED_SCORE`; below it, the short-range model searches the square
    twice the candidate's side around it (where it sees the face at half its input, its
    best scale) and the face is kept, with the short-range box and keypoints, only when it
    finds it there at ``score_threshold`` (None: 0.5). On the face benchmark's photographs
    this finds small, dim and half-covered faces that full range scores 0.4-0.6 and drops
    its one false face (a snake's head scored 0.63), for one extra short-range run
    (about 1.5 ms) per uncertain candidate.

    Short range first: when the largest face of the previous whole-frame search was at
    least :data:`SHORT_FIRST_SIDE` of the searched square's side (near the camera, where the
    short range sees faces well), the next whole-frame search runs the short range on the
    whole frame first and takes the faces it scores at least :data:`CONFIRMED_SCORE`,
    skipping the full range (about 2 ms instead of 5-7 ms per frame), and keeps trying it
    first while it is sure. When it finds none, the frame is searched as above, so no face
    is lost, and the next frame starts with the full range; a small face elsewhere in a frame
    where the short range was sure of a large one is not reported (the front-end analyses
    one face). On the face benchmark's face-free photographs the short range scores at most
    0.62, so the shortcut adds no false face there. :meth:`reset` forgets the hint (e.g. for
    a new, unrelated source).

    Parameters
    ----------
    options: detector options; ``model`` names the model.
    model: use this model alone instead (the tracked search uses the short range).
    """

    def __init__(self, options: FaceDetectorOptions = FaceDetectorOptions(), model: str | None = None) -> None:
        auto = options.model == blazeface.AUTO and model is None
        name = model or (blazeface.FULL if options.model == blazeface.AUTO else options.model)
        self.options = options
        self.model = blazeface.BlazeFaceModel(name, options.engine, options.threads)
        self.confirm = blazeface.BlazeFaceModel(blazeface.SHORT, options.engine, options.threads) if auto else None
        self.landmark_names = self.model.spec.keypoints
        self.description = self.model.description + (
            f", scores {CANDIDATE_SCORE}-{CONFIRMED_SCORE} confirmed by the short range, short range first after "
            f"a face >= {SHORT_FIRST_SIDE:.0%} of the frame" if auto else "")
        self._short_first = False

    def reset(self) -> None:
        """Forget the previous frame: the next whole-frame search starts with the full range."""
        self._short_first = False

    def detect(self, image: np.ndarray) -> list[Detection]:
        image = check_frame(image)
        square = blazeface.Square.whole_frame(image.shape[1], image.shape[0])
        if self.confirm is None:
            return self.detect_square(image, square)
        o = self.options
        tried_short = self._short_first
        found: list[Detection] = []
        if tried_short:
            sure = max(CONFIRMED_SCORE, o.score_threshold or 0.0)
            found = [d for d in self._search(self.confirm, image, square, sure)
                     if min(d.box[2], d.box[3]) >= o.min_face][:o.max_faces]
        if found:
            return found  # the short range was sure: try it first again next frame
        found = self._full_range_confirmed(image, square)
        # after a short-range miss, the next frame starts with the full range: a large face the short
        # range is unsure of then costs one extra short-range run every other frame, not every frame
        self._short_first = (not tried_short and bool(found)
                             and max(max(d.box[2], d.box[3]) for d in found) >= SHORT_FIRST_SIDE * square.side)
        return found

    def _full_range_confirmed(self, image: np.ndarray, square: blazeface.Square) -> list[Detection]:
        """The full-range search of ``square`` with uncertain candidates confirmed by the short range."""
        o = self.options
        keep: list[Detection] = []
        for cand in self._search(self.model, image, square, min(CANDIDATE_SCORE, o.score_threshold or 1.0)):
            if cand.score < CONFIRMED_SCORE:
                side = max(cand.box[2], cand.box[3])
                cx, cy = cand.center
                near = [d for d in self._search(self.confirm, image, blazeface.Square.around(cx, cy, 2 * side),
                                                o.score_threshold)
                        if math.hypot(d.center[0] - cx, d.center[1] - cy) <= side / 2]
                if not near:
                    continue
                cand = near[0]
            if all(iou(cand.box, k.box) <= 0.3 for k in keep):  # two candidates confirmed as one face
                keep.append(cand)
        keep.sort(key=lambda d: d.score, reverse=True)
        return [d for d in keep if min(d.box[2], d.box[3]) >= o.min_face][:o.max_faces]

    def detect_square(self, image: np.ndarray, square: blazeface.Square) -> list[Detection]:
        """Faces in ``square`` of ``image`` (letterboxed into the model input) found by the
        first model alone, in frame pixels, best first."""
        image = check_frame(image)
        return [d for d in self._search(self.model, image, square, self.options.score_threshold)
                if min(d.box[2], d.box[3]) >= self.options.min_face]

    def _search(self, model: blazeface.BlazeFaceModel, image: np.ndarray, square: blazeface.Square,
                min_score: float | None) -> list[Detection]:
        boxes, scores, kps = model.search(image, square, min_score, self.options.max_faces)
        return [Detection(box=tuple(float(v) for v in b), score=float(sc),  # type: ignore[arg-type]
                          landmarks=tuple((float(px), float(py)) for px, py in k)) for b, sc, k in zip(boxes, scores, kps)]


def create_face_detector(options: FaceDetectorOptions = FaceDetectorOptions()) -> FaceDetector:
    """The detector ``options`` name: BlazeFace (default), Haar, or a YuNet-format ONNX via onnxruntime or OpenCV.

    Raises
    ------
    MissingExtraError: Haar or YuNet without OpenCV (``pip install 'edgemer[camera]'``), or
        BlazeFace on LiteRT without it (``[tflite]``).
    BackendUnavailableError: this OpenCV lacks the Haar cascade (OpenCV 5).
    ModelLoadError: the model file or folder is missing, unreadable or of the wrong format.
    IntegrityError: a BlazeFace model file does not match its manifest's sha256 (corrupt).
    """
    if options.kind == "haar":
        return HaarFaceDetector(options)
    if options.kind == "blazeface":
        return BlazeFaceDetector(options)
    if options.engine == "opencv":
        return OpenCVYuNetDetector(options)
    return OnnxFaceDetector(options)


NEAR_FACE_PX = 40
"""Near search: the region around the tracked face is resized so the face is this many pixels wide."""


def supports_near_search(options: FaceDetectorOptions) -> bool:
    """Whether :func:`detect_near` helps this detector: BlazeFace (a short-range search of a small
    square) and Haar (a small region), not YuNet (it letterboxes any region to its fixed input)."""
    return options.kind in ("blazeface", "haar")


def near_search_detector(options: FaceDetectorOptions) -> FaceDetector:
    """A detector for :func:`detect_near`.

    BlazeFace: the short-range model for ``blazeface`` and ``blazeface-short``, the chosen
    model otherwise. Haar: the same cascade tuned for a small region whose face is about
    :data:`NEAR_FACE_PX` wide (faces from 0.7x to 2.5x that size are found).
    """
    if options.kind == "blazeface":
        return BlazeFaceDetector(options, blazeface.SHORT if options.model == blazeface.AUTO else None)
    return create_face_detector(replace(options, min_face_px=int(NEAR_FACE_PX * 0.7), max_side_px=4 * NEAR_FACE_PX))


def detect_near(detector: FaceDetector, image: np.ndarray, last: Detection, roi_scale: float = 2.0
                ) -> list[Detection]:
    """Faces in the square region ``roi_scale`` times the side of ``last`` around its centre.

    A BlazeFace ``detector`` letterboxes that square into its input (the short-range model
    then sees the face at about half its input, where it finds faces best). Otherwise the
    region is resized so ``last`` would be :data:`NEAR_FACE_PX` wide and searched with
    ``detector`` (from :func:`near_search_detector`); on 640x480 frames the Haar cascade takes
    about a tenth of its whole-frame time. Boxes come back in frame pixels. An empty list
    means "not near its last place" (search the whole frame).
    """
    x, y, w, h = last.box
    side = max(w, h) * roi_scale
    if isinstance(detector, BlazeFaceDetector):
        cx, cy = last.center
        x0, y0 = max(0.0, cx - side / 2), max(0.0, cy - side / 2)
        if min(image.shape[1], cx + side / 2) - x0 < 16 or min(image.shape[0], cy + side / 2) - y0 < 16:
            return []
        return detector.detect_square(image, blazeface.Square.around(cx, cy, side))
    cv2 = load_cv2("Face tracking")
    cx, cy = last.center
    x0, y0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    x1, y1 = min(image.shape[1], int(cx + side / 2)), min(image.shape[0], int(cy + side / 2))
    if x1 - x0 < 16 or y1 - y0 < 16:
        return []
    s = NEAR_FACE_PX / max(w, h)
    roi = image[y0:y1, x0:x1]
    size = (max(16, round((x1 - x0) * s)), max(16, round((y1 - y0) * s)))
    small = cv2.resize(roi, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    back_x, back_y = (x1 - x0) / size[0], (y1 - y0) / size[1]
    found = []
    for d in detector.detect(small):
        bx, by, bw, bh = d.box
        lm = None if d.landmarks is None else tuple((x0 + px * back_x, y0 + py * back_y) for px, py in d.landmarks)
        found.append(Detection(box=(x0 + bx * back_x, y0 + by * back_y, bw * back_x, bh * back_y), score=d.score,
                               landmarks=lm))
    return found


@dataclass
class FaceSelector:
    """Chooses the face to analyse in each frame: the largest, or the tracked one.

    mode: ``"largest"`` (every frame on its own) or ``"tracked"`` (keep following the
    face chosen before while a detection overlaps it by at least ``min_iou``; otherwise
    take the largest). ``reset()`` forgets the tracked face.
    """

    mode: str = "largest"
    min_iou: float = 0.3
    _last: Detection | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("largest", "tracked"):
            raise ConfigError(f"face selection must be 'largest' or 'tracked', got {self.mode!r}")

    def select(self, detections: list[Detection]) -> Detection | None:
        if not detections:
            self._last = None
            return None
        chosen = max(detections, key=lambda d: d.area)
        if self.mode == "tracked" and self._last is not None:
            overlaps = [(iou(d.box, self._last.box), d) for d in detections]
            best_iou, best = max(overlaps, key=lambda p: p[0])
            if best_iou >= self.min_iou:
                chosen = best
        self._last = chosen
        return chosen

    @property
    def last(self) -> Detection | None:
        """The face chosen in the previous frame (None: none, or after :meth:`reset`)."""
        return self._last

    def reset(self) -> None:
        self._last = None

