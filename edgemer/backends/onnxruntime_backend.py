"""onnxruntime backend (CPU, and CUDA / TensorRT execution providers where installed)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from edgemer.backends import check_feeds
from edgemer.bundle import Bundle
from edgemer.errors import BackendUnavailableError, ModelLoadError

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def resolve_providers(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """Map short names (cpu, cuda, tensorrt) to ORT provider names and check they exist here.

    CPU is always appended as the fallback for nodes other providers cannot run.
    """
    if not requested:
        return ["CPUExecutionProvider"]
    names = [PROVIDER_ALIASES.get(p.lower(), p) for p in requested]
    missing = [n for n in names if n not in available]
    if missing:
        raise BackendUnavailableError(
            f"onnxruntime execution provider(s) {missing} are not available here (available: {list(available)}). "
            f"CUDA/TensorRT need the onnxruntime-gpu package (x86) or NVIDIA's Jetson build of onnxruntime."
        )
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    return names


class OnnxRuntimeSession:
    def __init__(self, path, inputs, outputs, threads: int, providers: list[str]) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"{path}: onnxruntime cannot load this model ({str(exc).splitlines()[0][:300]}). "
                                 f"The file is corrupt or not an ONNX model; re-export the bundle.") from exc
        self.inputs = inputs
        self.outputs = outputs
        self.path = path
        self.providers = self._session.get_providers()
        self.description = f"onnxruntime {ort.__version__} [{', '.join(self.providers)}] threads={threads}"
        have_in = [i.name for i in self._session.get_inputs()]
        have_out = [o.name for o in self._session.get_outputs()]
        want_in = [s.name for s in inputs]
        want_out = [s.name for s in outputs]
        if sorted(have_in) != sorted(want_in) or not set(want_out) <= set(have_out):
            raise ModelLoadError(f"{path}: model IO {have_in} -> {have_out} does not match the manifest "
                                 f"{want_in} -> {want_out}; the bundle is inconsistent, re-export it")
        for node in self._session.get_inputs():
            spec = next(s for s in inputs if s.name == node.name)
            fixed = [d for d in node.shape]
            if len(fixed) != len(spec.shape) or any(isinstance(d, int) and d > 0 and d != w
                                                    for d, w in zip(fixed, spec.shape)):
                raise ModelLoadError(f"{path}: model input '{node.name}' has shape {fixed}, the manifest says "
                                     f"{list(spec.shape)}; the model does not fit this bundle's input size")

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = check_feeds(feeds, self.inputs, str(self.path))
        names = [s.name for s in self.outputs]
        values = self._session.run(names, feeds)
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, values)}


class OnnxRuntimeBackend:
    name = "onnxruntime"
    file_format = "onnx"

    def open(self, bundle: Bundle, precision: str, threads: int, providers: Sequence[str] | None = None):
        import onnxruntime as ort

        chosen = resolve_providers(providers, ort.get_available_providers())
        m = bundle.manifest
        return OnnxRuntimeSession(bundle.model_path("onnx", precision), m.inputs, m.outputs, threads, chosen)
