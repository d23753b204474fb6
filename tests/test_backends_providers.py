"""onnxruntime execution providers (CPU / CUDA / TensorRT): selection, options, fallback.

No GPU is needed: onnxruntime's available-provider list is faked and ``InferenceSession``
is replaced by a recorder, so each test checks the exact provider list and options that
edgemer hands to onnxruntime.
"""
from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import onnxruntime
import pytest

from edgemer.backends import open_session
from edgemer.backends.onnxruntime_backend import choose_providers, parse_provider
from edgemer.bundle import list_shipped_bundles, load_bundle
from edgemer.errors import BackendUnavailableError

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
GPU_BUILD = [TRT, CUDA, CPU]

pytestmark = pytest.mark.skipif("physio-demo" not in list_shipped_bundles(), reason="physio-demo not built")


class RecordingSession:
    """Stands in for ``onnxruntime.InferenceSession``: records its arguments, serves the manifest's IO."""

    calls: list[dict] = []
    runs_on: list[str] | None = None  # providers the "session" reports; None = all it was given

    def __init__(self, path, sess_options=None, providers=None, provider_options=None):
        RecordingSession.calls.append({"path": path, "providers": list(providers),
                                       "provider_options": [dict(o) for o in provider_options]})
        self._providers = list(providers) if self.runs_on is None else list(self.runs_on)
        m = load_bundle("physio-demo").manifest
        self._in = [SimpleNamespace(name=s.name, shape=list(s.shape)) for s in m.inputs]
        self._out = [SimpleNamespace(name=s.name, shape=list(s.shape)) for s in m.outputs]
        self._shapes = {s.name: s.shape for s in m.outputs}

    def get_providers(self):
        return self._providers

    def get_inputs(self):
        return self._in

    def get_outputs(self):
        return self._out

    def run(self, names, feeds):
        return [np.zeros(self._shapes[n], np.float32) for n in names]


@pytest.fixture
def fake_ort(monkeypatch, tmp_path):
    """Fake a GPU build of onnxruntime; returns a setter for the available-provider list."""
    RecordingSession.calls = []
    RecordingSession.runs_on = None
    available = {"list": list(GPU_BUILD)}
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(available["list"]))
    monkeypatch.setattr(onnxruntime, "InferenceSession", RecordingSession)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def set_available(names):
        available["list"] = list(names)
    return set_available


def _open(providers, **kw):
    return open_session(load_bundle("physio-demo"), "onnxruntime", "int8", 1, providers, **kw)


def test_auto_prefers_tensorrt_then_cuda_with_an_engine_cache(fake_ort, tmp_path):
    session = _open(None)
    call = RecordingSession.calls[-1]
    cache = str(tmp_path / "cache" / "edgemer" / "tensorrt")
    assert call["providers"] == [TRT, CUDA, CPU]
    assert call["provider_options"] == [
        {"trt_engine_cache_path": cache, "trt_engine_cache_enable": "True", "trt_timing_cache_enable": "True",
         "trt_timing_cache_path": cache}, {}, {}]
    assert (tmp_path / "cache" / "edgemer" / "tensorrt").is_dir()  # created before onnxruntime needs it
    assert session.fallback is None
    _open(["auto"])
    assert RecordingSession.calls[-1]["providers"] == [TRT, CUDA, CPU]


def test_auto_on_a_cpu_build_uses_cpu_silently(fake_ort, caplog):
    fake_ort(["AzureExecutionProvider", CPU])
    with caplog.at_level(logging.WARNING):
        session = _open(None)
    assert RecordingSession.calls[-1]["providers"] == [CPU]
    assert RecordingSession.calls[-1]["provider_options"] == [{}]
    assert session.fallback is None and not caplog.records


def test_cuda_only_build_auto_picks_cuda(fake_ort):
    fake_ort([CUDA, CPU])
    _open(None)
    assert RecordingSession.calls[-1]["providers"] == [CUDA, CPU]


def test_provider_options_reach_onnxruntime(fake_ort, tmp_path):
    _open(["tensorrt:fp16=1:int8=false:cache=" + str(tmp_path / "engines") + ":device=1:workspace_mib=512",
           "cuda:device=1:cudnn_conv_algo_search=HEURISTIC"])
    call = RecordingSession.calls[-1]
    assert call["providers"] == [TRT, CUDA, CPU]
    engines = str(tmp_path / "engines")
    assert call["provider_options"] == [
        {"trt_fp16_enable": "True", "trt_int8_enable": "False", "trt_engine_cache_path": engines, "device_id": "1",
         "trt_max_workspace_size": str(512 * 2**20), "trt_engine_cache_enable": "True",
         "trt_timing_cache_enable": "True", "trt_timing_cache_path": engines},
        {"device_id": "1", "cudnn_conv_algo_search": "HEURISTIC"}, {}]
    assert (tmp_path / "engines").is_dir()


def test_tuple_form_as_onnxruntime_takes_it(fake_ort):
    _open([("CUDAExecutionProvider", {"device_id": 2})])
    assert RecordingSession.calls[-1]["provider_options"] == [{"device_id": "2"}, {}]


def test_missing_requested_provider_falls_back_with_one_line(fake_ort, caplog):
    fake_ort([CPU])
    with caplog.at_level(logging.WARNING):
        session = _open(["tensorrt:fp16=1"])
    assert RecordingSession.calls[-1]["providers"] == [CPU]
    assert session.fallback is not None and "\n" not in session.fallback
    assert "TensorrtExecutionProvider not available" in session.fallback and "onnxruntime-gpu" in session.fallback
    assert [r.getMessage() for r in caplog.records] == [session.fallback]


def test_strict_request_of_a_missing_provider_raises(fake_ort):
    fake_ort([CPU])
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider.*onnxruntime-gpu"):
        _open(["cuda"], strict=True)
    assert RecordingSession.calls == []


def test_onnxruntime_falling_back_at_run_time_is_reported(fake_ort, caplog):
    RecordingSession.runs_on = [CPU]  # e.g. libnvinfer missing: ORT retries on CPU
    with caplog.at_level(logging.WARNING):
        session = _open(["cuda"])
    assert "could not start CUDAExecutionProvider" in session.fallback
    assert session.providers == [CPU]


@pytest.mark.parametrize("item,message", [("tensorrt:fp16", "key=value"), ("tensorrt:fp16=maybe", "true/false")])
def test_bad_provider_options_are_named(item, message):
    with pytest.raises(BackendUnavailableError, match=message):
        parse_provider(item)


def test_choose_providers_without_a_session():
    choice = choose_providers(["cpu"], GPU_BUILD)
    assert choice.providers == [CPU] and choice.options == [{}] and choice.fallback is None


def test_a_delegate_given_to_onnxruntime_is_refused():
    with pytest.raises(BackendUnavailableError, match="litert backend"):
        _open(["cpu"], delegate="/nonexistent/libedgetpu.so.1")
