"""Both backends run every model file; INT8 agrees with FP32; bad inputs fail clearly."""
import sys

import numpy as np
import pytest

from edgemer.backends import open_session
from edgemer.backends.onnxruntime_backend import choose_providers
from edgemer.errors import BackendUnavailableError, InputShapeError, MissingExtraError

CELLS = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("litert", "fp32"), ("litert", "int8")]


@pytest.mark.parametrize("backend,precision", CELLS)
def test_outputs_have_manifest_shapes(demo_bundle, backend, precision):
    session = open_session(demo_bundle, backend, precision, threads=1)
    x = demo_bundle.samples()["signals"][:1]
    out = session.run({"signals": x})
    for spec in demo_bundle.manifest.outputs:
        assert out[spec.name].shape == spec.shape
        assert out[spec.name].dtype == np.float32
        assert np.isfinite(out[spec.name]).all()
    drive = out["drive"]
    assert drive.min() >= 0.0 and drive.max() <= 1.0  # latent drive is a sigmoid


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_int8_agrees_with_fp32_on_held_out_windows(demo_bundle, backend):
    samples = demo_bundle.samples()["signals"]
    fp32 = open_session(demo_bundle, "onnxruntime", "fp32")
    int8 = open_session(demo_bundle, backend, "int8")
    a = [fp32.run({"signals": s[None]})["class_logits"].argmax() for s in samples]
    b = [int8.run({"signals": s[None]})["class_logits"].argmax() for s in samples]
    agreement = float(np.mean(np.array(a) == np.array(b)))
    assert agreement >= 0.95, f"INT8 ({backend}) agrees with FP32 on only {agreement:.1%} of windows"


def test_wrong_shape_is_rejected_with_expected_shape(demo_bundle):
    session = open_session(demo_bundle, "onnxruntime", "int8")
    with pytest.raises(InputShapeError, match=r"\(1, 4, 240\)"):
        session.run({"signals": np.zeros((1, 4, 200), np.float32)})


def test_nan_input_is_rejected(demo_bundle):
    session = open_session(demo_bundle, "litert", "int8")
    x = np.zeros((1, 4, 240), np.float32)
    x[0, 0, 5] = np.nan
    with pytest.raises(InputShapeError, match="NaN"):
        session.run({"signals": x})


def test_missing_input_name(demo_bundle):
    session = open_session(demo_bundle, "onnxruntime", "fp32")
    with pytest.raises(InputShapeError, match="missing input 'signals'"):
        session.run({"x": np.zeros((1, 4, 240), np.float32)})


def test_unavailable_execution_provider_is_named():
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        choose_providers(["cuda"], ["CPUExecutionProvider"], strict=True)
    assert choose_providers(["tensorrt", "cuda"], ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                   "CPUExecutionProvider"], strict=True).providers == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_missing_litert_names_the_extra(demo_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(MissingExtraError, match=r"edgemer\[tflite\]"):
        open_session(demo_bundle, "litert", "int8")


def test_unknown_backend(demo_bundle):
    with pytest.raises(BackendUnavailableError, match="choose one of"):
        open_session(demo_bundle, "tensorflow", "int8")
