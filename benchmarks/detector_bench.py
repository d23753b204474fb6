"""Face detectors side by side on real photographs: recall, false faces, time per frame.

Part of the face benchmark (``edgemer bench face``, which prints the table and the
targets; ``--detector-repeats N`` sets the timed detections per detector).

Detectors compared in one run, each on one thread: BlazeFace full range and short
range on the whole frame, the tracked search (BlazeFace short range on the square around
the last face, what ``blazeface`` does between whole-frame searches), on each installed
engine (onnxruntime; LiteRT with ``[tflite]``), and OpenCV's Haar cascade with the
settings face bundles used before BlazeFace (faces >= 64 px, frames shrunk to 320 px).

Times are wall-clock p50/p99 (the targets) and the thread's CPU-time p50, which leaves out
waiting for a busy core: on a shared machine compare the CPU figures too.

Frames (640x480, BGR, built in memory):

* **real faces** (:func:`face_frames`): the frontal portraits scikit-image and matplotlib
  ship (astronaut, Grace Hopper) scaled so the photograph is 45, 67.5 or 90 % of the frame
  height, rolled -20, 0 or +20 degrees about the face, at full and half brightness, plus
  the lower or the right half of the face covered (at 67.5 % and each roll); scikit-image's
  cameraman (a face turned to three-quarter profile, partly hidden by his camera) the
  same way, reported on its own row;
* **face-free photographs** (:data:`FACE_FREE`): every scikit-image photograph without a
  person, letterboxed into the frame.

A face counts as found when a detection's centre lies within half the reference face
side of the transformed reference centre and its side is 0.5-2x the reference side (the
reference box of each photograph: :data:`REFERENCE_BOXES`). Targets (issue 18): recall
>= 90 % on the frontal faces (default detector), no face on the face-free photographs,
whole-frame detection p50 <= 1/3 of Haar's, tracked search p50 <= 2 ms.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

FRAME = (640, 480)
SCALES = (0.45, 0.675, 0.9)
"""Photograph height as a fraction of the frame height."""
ROLLS = (-20.0, 0.0, 20.0)
GAINS = (1.0, 0.5)
OCCLUSIONS = ("lower half", "right half")
REFERENCE_BOXES = {
    "astronaut": (177.0, 66.0, 95.0, 95.0),
    "grace_hopper": (154.0, 103.0, 229.0, 229.0),
    "camera": (203.0, 124.0, 72.0, 72.0),
}
"""Face box ``(x, y, w, h)`` in each untransformed photograph, pixels: astronaut and Grace Hopper
from OpenCV 4.14's frontal-face cascade, the cameraman (which the cascade misses) from BlazeFace
full range, checked by eye."""
PHOTOS = (("astronaut", "skimage", "data/astronaut.png", True),
          ("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", True),
          ("camera", "skimage", "data/camera.png", False))
"""(name, package, file, frontal) of the real faces; the recall target is judged on the frontal ones."""
FACE_FREE = ("coffee.png", "chelsea.png", "rocket.jpg", "brick.png", "coins.png", "page.png", "horse.png",
             "moon.png", "text.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "motorcycle_left.png",
             "ihc.png", "clock_motion.png", "logo.png", "color.png", "cell.png", "retina.jpg", "phantom.png",
             "chessboard_RGB.png")
"""scikit-image photographs with no human face (chelsea is a cat)."""
RECALL_GOAL, SPEED_GOAL, TRACKED_GOAL_MS = 0.90, 1 / 3, 2.0


@dataclass(frozen=True)
class FaceFrame:
    """One test frame: ``image`` ``[480, 640, 3]`` uint8 BGR; the reference face's centre
    ``(x, y)`` and side, pixels; ``photo`` and ``variant`` name it."""

    photo: str
    variant: str
    image: np.ndarray
    centre: tuple[float, float]
    side: float
    frontal: bool = True


def _read(package: str, member: str) -> np.ndarray | None:
    import cv2

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return cv2.imread(str(Path(list(spec.submodule_search_locations)[0]) / member), cv2.IMREAD_COLOR)


def place(photo: np.ndarray, box: tuple[float, float, float, float], scale: float, roll_deg: float = 0.0,
          gain: float = 1.0, occlusion: str | None = None, background: int = 110
          ) -> tuple[np.ndarray, tuple[float, float], float]:
    """``photo`` resized to ``scale`` of the frame height, centred in a 640x480 grey frame, rolled
    ``roll_deg`` (counter-clockwise) about the face, brightness times ``gain``, with half the
    face covered by a flat patch when ``occlusion`` is ``"lower half"`` or ``"right half"``.

    Returns the frame and the reference face's centre and side in it, pixels."""
    import cv2

    w, h = FRAME
    s = scale * h / photo.shape[0]
    small = cv2.resize(photo, (round(photo.shape[1] * s), round(photo.shape[0] * s)), interpolation=cv2.INTER_AREA)
    frame = np.full((h, w, 3), background, np.uint8)
    ox, oy = (w - small.shape[1]) // 2, (h - small.shape[0]) // 2
    frame[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
    bx, by, bw, bh = box
    cx, cy, side = ox + (bx + bw / 2) * s, oy + (by + bh / 2) * s, bw * s
    if occlusion == "lower half":
        frame[int(cy):int(cy + side / 2), int(cx - side / 2):int(cx + side / 2)] = background
    elif occlusion == "right half":  # the subject's right: the image's left
        frame[int(cy - side / 2):int(cy + side / 2), int(cx - side / 2):int(cx)] = background
    if roll_deg:
        m = cv2.getRotationMatrix2D((cx, cy), roll_deg, 1.0)
        frame = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(background,) * 3)
    if gain != 1.0:
        frame = np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return frame, (cx, cy), side


def astronaut_frames() -> list[FaceFrame]:
    """The 18 frames of issue 18: astronaut at 45/67.5/90 %, rolled -20/0/+20 degrees, full and half brightness."""
    photo = _read("skimage", "data/astronaut.png")
    if photo is None:
        return []
    return [FaceFrame("astronaut", f"{s:.0%} roll {r:+.0f} gain {g}", *place(photo, REFERENCE_BOXES["astronaut"], s, r, g))
            for s in SCALES for r in ROLLS for g in GAINS]


def face_frames() -> list[FaceFrame]:
    """Every transformed real face (see the module docstring); empty when no photograph package is installed."""
    frames = []
    for name, package, member, frontal in PHOTOS:
        photo = _read(package, member)
        if photo is None:
            continue
        box = REFERENCE_BOXES[name]
        for s in SCALES:
            for r in ROLLS:
                for g in GAINS:
                    frames.append(FaceFrame(name, f"{s:.0%} roll {r:+.0f} gain {g}", *place(photo, box, s, r, g),
                                            frontal=frontal))
        for occ in OCCLUSIONS:
            for r in ROLLS:
                frames.append(FaceFrame(name, f"{SCALES[1]:.0%} roll {r:+.0f} {occ} covered",
                                        *place(photo, box, SCALES[1], r, 1.0, occ), frontal=frontal))
    return frames


def face_free_frames() -> list[tuple[str, np.ndarray]]:
    """``(file, 640x480 frame)`` for each of :data:`FACE_FREE` (letterboxed, aspect kept)."""
    import cv2

    out = []
    for name in FACE_FREE:
        img = _read("skimage", f"data/{name}")
        if img is None:
            continue
        s = min(FRAME[0] / img.shape[1], FRAME[1] / img.shape[0])
        small = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        frame = np.full((FRAME[1], FRAME[0], 3), 110, np.uint8)
        ox, oy = (FRAME[0] - small.shape[1]) // 2, (FRAME[1] - small.shape[0]) // 2
        frame[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
        out.append((name, frame))
    return out


def found(dets: list, frame: FaceFrame) -> bool:
    """Whether one of ``dets`` is the reference face (centre within half its side, side 0.5-2x)."""
    for d in dets:
        cx, cy = d.center
        if (math.hypot(cx - frame.centre[0], cy - frame.centre[1]) <= frame.side / 2
                and 0.5 <= max(d.box[2], d.box[3]) / frame.side <= 2.0):
            return True
    return False


def _times(fn: Callable[[], Any], repeats: int) -> list[tuple[float, float]]:
    """``(wall s, this thread's CPU s)`` of each of ``repeats`` calls (after one warm-up call).
    The CPU time leaves out waiting for a busy core, so it shows the cost on a shared machine."""
    fn()
    out = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        out.append((time.perf_counter() - t0, time.thread_time() - c0))
    return out


def _timing(samples: list[tuple[float, float]]) -> dict[str, float]:
    wall = np.asarray([w for w, _ in samples]) * 1e3
    cpu = np.asarray([c for _, c in samples]) * 1e3
    return {"p50_ms": float(np.percentile(wall, 50)), "p99_ms": float(np.percentile(wall, 99)),
            "cpu_p50_ms": float(np.percentile(cpu, 50))}


def _engines() -> list[str]:
    from edgemer.frontends.blazeface import default_engine

    return ["onnxruntime"] + (["litert"] if default_engine() == "litert" else [])


def detectors() -> dict[str, Any]:
    """The detectors compared, by row name, each at one thread."""
    from edgemer.frontends.face_detector import BlazeFaceDetector, FaceDetectorOptions, create_face_detector

    out: dict[str, Any] = {}
    for engine in _engines():
        options = FaceDetectorOptions(engine=engine)
        out[f"blazeface, the default ({engine})"] = BlazeFaceDetector(options)
        out[f"blazeface full ({engine})"] = BlazeFaceDetector(options, "blazeface-full")
        out[f"blazeface short ({engine})"] = BlazeFaceDetector(options, "blazeface-short")
    try:
        out["haar (OpenCV, faces >= 64 px)"] = create_face_detector(FaceDetectorOptions(model="haar", min_face_px=64))
    except Exception as exc:  # noqa: BLE001 - OpenCV 5 or no OpenCV: Haar is reported as skipped
        out["haar (OpenCV, faces >= 64 px)"] = exc
    return out


def bench_detectors(repeats: int = 30) -> dict[str, Any]:
    """Recall, false faces and p50/p99 time per 640x480 frame of each detector, and the targets.

    Returns ``{"rows": {name: {...}}, "astronaut_18": {name: found}, "targets": [...]}``.
    """
    import cv2

    from edgemer.frontends.face_detector import Detection, detect_near, near_search_detector, FaceDetectorOptions

    cv2.setNumThreads(1)
    faces, free, astro = face_frames(), face_free_frames(), astronaut_frames()
    timing = [f.image for f in faces if f.frontal and f.variant.endswith("gain 1.0")][:9] or [np.zeros((480, 640, 3),
                                                                                                       np.uint8)]
    rows: dict[str, dict[str, Any]] = {}
    for name, det in detectors().items():
        if isinstance(det, Exception):
            rows[name] = {"skipped": f"{type(det).__name__}: {det}"}
            continue
        hits = [found(det.detect(f.image), f) for f in faces]
        per_photo = {}
        for f, hit in zip(faces, hits):
            n, k = per_photo.get(f.photo, (0, 0))
            per_photo[f.photo] = (n + 1, k + int(hit))
        frontal = [h for f, h in zip(faces, hits) if f.frontal]
        times = [t for img in timing for t in _times(lambda img=img: det.detect(img), max(1, repeats // len(timing)))]
        rows[name] = {"recall_frontal": float(np.mean(frontal)) if frontal else None, "frontal_faces": len(frontal),
                      "per_photo": {p: {"faces": n, "found": k} for p, (n, k) in per_photo.items()},
                      "astronaut_18": int(sum(found(det.detect(f.image), f) for f in astro)),
                      "false_faces": {n: len(det.detect(img)) for n, img in free},
                      **_timing(times), "description": det.description}
    # the tracked search: the short-range model on the square around the face found in the frame before
    for engine in _engines():
        near = near_search_detector(FaceDetectorOptions(engine=engine))
        lasts = [Detection((f.centre[0] - f.side / 2, f.centre[1] - f.side / 2, f.side, f.side)) for f in faces]
        hits = [found(detect_near(near, f.image, last), f) for f, last in zip(faces, lasts)]
        pairs = [(f.image, last) for f, last in zip(faces, lasts) if f.frontal][:9]
        times = [t for img, last in pairs for t in _times(lambda img=img, last=last: detect_near(near, img, last),
                                                           max(1, repeats // len(pairs)))]
        frontal = [h for f, h in zip(faces, hits) if f.frontal]
        rows[f"tracked search, blazeface short ({engine})"] = {
            "recall_frontal": float(np.mean(frontal)) if frontal else None, "frontal_faces": len(frontal),
            **_timing(times), "description": f"{near.description}, square 2x the last face's side"}
    return {"rows": rows, "frames": {"faces": len(faces), "face_free": len(free), "astronaut": len(astro)},
            "targets": detector_targets(rows)}


def detector_targets(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 18's detector targets (``targets[]`` rows of SCHEMA.md), judged on the default engine's rows."""
    from edgemer.benchmarks.result import target
    from edgemer.frontends.blazeface import default_engine

    engine = default_engine()
    default = rows.get(f"blazeface, the default ({engine})", {})
    tracked = rows.get(f"tracked search, blazeface short ({engine})", {})
    haar = rows.get("haar (OpenCV, faces >= 64 px)", {})
    recall = default.get("recall_frontal")
    false_faces = sum(default["false_faces"].values()) if "false_faces" in default else None
    ratio = default["p50_ms"] / haar["p50_ms"] if "p50_ms" in default and "p50_ms" in haar else None
    cpu_ratio = default["cpu_p50_ms"] / haar["cpu_p50_ms"] if "cpu_p50_ms" in default and "cpu_p50_ms" in haar else None
    return [
        target("detector_recall_real_faces", f"default detector 'blazeface' ({engine}) recall on "
               f"{default.get('frontal_faces', 0)} transformed frontal real faces (scale, roll +-20 deg, brightness, "
               f"half occlusion)", recall, f">= {RECALL_GOAL}", None if recall is None else recall >= RECALL_GOAL,
               "fraction"),
        target("detector_false_faces", f"default detector 'blazeface' ({engine}) faces found on "
               f"{len(default.get('false_faces', {}))} face-free photographs", false_faces, "== 0",
               None if false_faces is None else false_faces == 0, "count"),
        target("detector_speed_vs_haar", f"default detector 'blazeface' ({engine}) whole-frame p50 / Haar p50 "
               f"(same run), 640x480, one thread (CPU-time ratio "
               f"{'-' if cpu_ratio is None else f'{cpu_ratio:.3f}'})", ratio, f"<= {SPEED_GOAL:.3f}",
               None if ratio is None else ratio <= SPEED_GOAL, "ratio", cpu_ratio=cpu_ratio),
        target("detector_tracked_ms", f"tracked search (BlazeFace short range, {engine}) p50 per 640x480 frame, "
               f"one thread (CPU p50 {tracked.get('cpu_p50_ms', float('nan')):.2f} ms)", tracked.get("p50_ms"),
               f"<= {TRACKED_GOAL_MS}", None if "p50_ms" not in tracked else tracked["p50_ms"] <= TRACKED_GOAL_MS, "ms",
               cpu_p50_ms=tracked.get("cpu_p50_ms")),
    ]


def format_detectors(result: dict[str, Any]) -> str:
    """The detector table, as printed by ``edgemer bench face``."""
    f = result["frames"]
    lines = [f"face detectors, 640x480 frames, one thread: {f['faces']} transformed real faces, "
             f"{f['face_free']} face-free photographs, the {f['astronaut']} astronaut frames of issue 18",
             f"    {'detector':46s} {'recall':>7s} {'astro 18':>8s} {'false':>5s} {'p50 ms':>7s} {'p99 ms':>7s} "
             f"{'CPU p50':>7s}"]
    for name, r in result["rows"].items():
        if "skipped" in r:
            lines.append(f"    {name:46s} skipped: {r['skipped']}")
            continue
        recall = "-" if r.get("recall_frontal") is None else f"{r['recall_frontal'] * 100:.1f}%"
        astro = f"{r['astronaut_18']}/{f['astronaut']}" if "astronaut_18" in r else "-"
        false = str(sum(r["false_faces"].values())) if "false_faces" in r else "-"
        lines.append(f"    {name:46s} {recall:>7s} {astro:>8s} {false:>5s} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
                     f"{r['cpu_p50_ms']:7.2f}")
        if "per_photo" in r:
            lines.append("        " + ", ".join(f"{p} {v['found']}/{v['faces']}" for p, v in r["per_photo"].items())
                         + (f"; false faces on {', '.join(n for n, c in r['false_faces'].items() if c)}"
                            if any(r["false_faces"].values()) else ""))
    lines.append("    recall: frontal faces (astronaut, Grace Hopper); the cameraman is on its own in the per-photo line. "
                 "CPU p50: the thread's CPU time (without waiting for a busy core)")
    return "\n".join(lines)


def format_targets(targets: list[dict[str, Any]]) -> str:
    """One ``PASS``/``FAIL``/``SKIP`` line per target."""
    lines = []
    for t in targets:
        verdict = "SKIP" if t["met"] is None else "PASS" if t["met"] else "FAIL"
        value = "-" if t["value"] is None else f"{t['value']:.4g}"
        lines.append(f"{verdict}  {t['description']}: {value} (goal {t['threshold']})")
    return "\n".join(lines)
