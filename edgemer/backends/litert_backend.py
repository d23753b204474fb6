"""LiteRT (TensorFlow Lite) backend: ``ai_edge_litert``, falling back to ``tflite_runtime``.

Fully-integer INT8 models take int8 inputs and give int8 outputs; this session
quantises inputs and dequantises outputs with each tensor's scale and zero point, so
callers always see float32. Signature inputs/outputs (``args_0``…, ``output_0``…) map
to the manifest's tensor names by position.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

from edgemer.backends import check_feeds
from edgemer.bundle import Bundle
from edgemer.errors import BackendUnavailableError, MissingExtraError, ModelLoadError


def load_interpreter_class():
    """The LiteRT ``Interpreter`` class; raises :class:`MissingExtraError` naming ``[tflite]``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise MissingExtraError("tflite", "ai_edge_litert", "The LiteRT backend") from exc
    return Interpreter


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class _TensorRunner:
    """A signature-runner stand-in for ``.tflite`` files without signatures (e.g. older TF
    exports): inputs ``input_0``... and outputs ``output_0``... in tensor order."""

    def __init__(self, interp) -> None:
        self._interp = interp
        self._in = {f"input_{i}": d for i, d in enumerate(interp.get_input_details())}
        self._out = {f"output_{i}": d for i, d in enumerate(interp.get_output_details())}

    def get_input_details(self) -> dict:
        return self._in

    def get_output_details(self) -> dict:
        return self._out

    def __call__(self, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        for name, x in feeds.items():
            self._interp.set_tensor(self._in[name]["index"], x)
        self._interp.invoke()
        return {name: self._interp.get_tensor(d["index"]) for name, d in self._out.items()}


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.round(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


class LiteRTSession:
    choice = None
    """The engine choice that opened this session (set by :func:`edgemer.backends.open_session`)."""

    def __init__(self, path, inputs, outputs, threads: int, delegate: str | None = None) -> None:
        Interpreter = load_interpreter_class()
        kwargs = {"model_path": str(path), "num_threads": threads}
        if delegate:
            from edgemer._extras import require

            interp_mod = require(Interpreter.__module__, "tflite", "TFLite delegates")
            try:
                kwargs["experimental_delegates"] = [interp_mod.load_delegate(delegate)]
            except (ValueError, OSError) as exc:
                raise BackendUnavailableError(f"cannot load TFLite delegate '{delegate}': {exc}") from exc
        try:
            self._interp = Interpreter(**kwargs)
            self._interp.allocate_tensors()
            if self._interp.get_signature_list():
                self._runner = self._interp.get_signature_runner()
            else:
                self._runner = _TensorRunner(self._interp)
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError with C++ text
            raise ModelLoadError(f"{path}: LiteRT cannot load this model ({str(exc).splitlines()[0][:300]}). "
                                 f"The file is corrupt or not a TFLite model; re-export the bundle.") from exc
        self.inputs = inputs
        self.outputs = outputs
        self.path = path
        self.description = f"LiteRT ({Interpreter.__module__.split('.')[0]}) threads={threads}" + (
            f" delegate={delegate}" if delegate else "")
        in_details = self._runner.get_input_details()
        out_details = self._runner.get_output_details()
        self._in_names = sorted(in_details, key=_natural_key)
        self._out_names = sorted(out_details, key=_natural_key)
        if len(self._in_names) != len(inputs) or len(self._out_names) != len(outputs):
            raise ModelLoadError(f"{path}: {len(self._in_names)} inputs / {len(self._out_names)} outputs, the manifest "
                                 f"lists {len(inputs)} / {len(outputs)}; the bundle is inconsistent, re-export it")
        self._in_details = [in_details[n] for n in self._in_names]
        self._out_details = [out_details[n] for n in self._out_names]
        self.input_dtypes = [np.dtype(d["dtype"]).name for d in self._in_details]
        for spec, det in zip(inputs, self._in_details):
            have = tuple(int(v) for v in det.get("shape", ()))
            if have and have != tuple(spec.shape):
                raise ModelLoadError(f"{path}: model input '{spec.name}' has shape {list(have)}, the manifest says "
                                     f"{list(spec.shape)}; the model does not fit this bundle's input size")

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = check_feeds(feeds, self.inputs, str(self.path))
        call = {}
        for spec, sig_name, det in zip(self.inputs, self._in_names, self._in_details):
            x = feeds[spec.name]
            dtype = np.dtype(det["dtype"])
            if np.issubdtype(dtype, np.integer):
                scale, zp = det["quantization"]
                x = quantize(x, scale, zp, dtype)
            call[sig_name] = x
        raw = self._runner(**call)
        result = {}
        for spec, sig_name, det in zip(self.outputs, self._out_names, self._out_details):
            y = raw[sig_name]
            if np.issubdtype(y.dtype, np.integer):
                scale, zp = det["quantization"]
                y = dequantize(y, scale, zp)
            result[spec.name] = np.asarray(y, dtype=np.float32).reshape(spec.shape)
        return result


class LiteRTBackend:
    name = "litert"
    file_format = "tflite"

    def __init__(self, delegate: str | None = None) -> None:
        self.delegate = delegate

    def open(self, bundle: Bundle, precision: str, threads: int, providers: Sequence[str] | None = None):
        m = bundle.manifest
        return LiteRTSession(bundle.model_path("tflite", precision), m.inputs, m.outputs, threads, self.delegate)
