"""onnxruntime backend (CPU, and CUDA / TensorRT execution providers where installed)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgemer.backends import check_feeds
from edgemer.bundle import Bundle
from edgemer.errors import BackendUnavailableError, ModelLoadError

log = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}

AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
"""Preference order of ``providers=None`` / ``"auto"``: the first ones available here are used."""

# Short option names (``tensorrt:fp16=1:cache=DIR``) -> onnxruntime provider option keys.
# Any other key is passed to onnxruntime unchanged (e.g. ``cuda:cudnn_conv_algo_search=HEURISTIC``).
OPTION_ALIASES = {
    "CUDAExecutionProvider": {"device": "device_id"},
    "TensorrtExecutionProvider": {"device": "device_id", "fp16": "trt_fp16_enable", "int8": "trt_int8_enable",
                                  "cache": "trt_engine_cache_path", "workspace_mib": "trt_max_workspace_size"},
}
BOOL_OPTIONS = {"trt_fp16_enable", "trt_int8_enable", "trt_engine_cache_enable", "trt_timing_cache_enable"}
MISSING_HINT = ("CUDA/TensorRT need the onnxruntime-gpu package (x86) or NVIDIA's Jetson build of onnxruntime "
                "(JetPack); see the README's Jetson section.")


def default_trt_cache_dir() -> Path:
    """Where TensorRT engines are cached unless ``cache=`` is given: ``$XDG_CACHE_HOME/edgemer/tensorrt``
    (``~/.cache/edgemer/tensorrt``). Building an engine takes seconds to minutes on a Jetson; the cache
    makes every later session load in well under a second."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgemer" / "tensorrt"


def _bool_text(value: str, key: str, item: str) -> str:
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return "True"
    if v in ("0", "false", "no", "off"):
        return "False"
    raise BackendUnavailableError(f"execution provider option '{key}={value}' in '{item}' must be true/false (or 1/0)")


def parse_provider(item: str | tuple[str, Mapping[str, object]]) -> tuple[str, dict[str, str]]:
    """One requested provider -> ``(onnxruntime provider name, {option: str value})``.

    ``item`` is a short name (``cpu``, ``cuda``, ``tensorrt``), a full onnxruntime name, a
    string with options ``name:key=value:key=value`` (e.g. ``tensorrt:fp16=1:cache=/data/trt``,
    ``cuda:device=1``), or a ``(name, {key: value})`` pair as onnxruntime itself takes.
    Short keys: ``device`` (GPU index), and for TensorRT ``fp16`` / ``int8`` (precision flags,
    true/false), ``cache`` (engine cache folder), ``workspace_mib`` (MiB). Other keys pass through.
    TensorRT always gets an engine and timing cache (``default_trt_cache_dir()`` unless ``cache=``).
    """
    if isinstance(item, str):
        name, *pairs = item.split(":")
        raw: dict[str, object] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise BackendUnavailableError(f"execution provider '{item}': options are written key=value after "
                                              f"':', e.g. tensorrt:fp16=1:cache=/data/trt")
            raw[key.strip()] = value.strip()
    else:
        name, raw = item[0], dict(item[1] or {})
    name = PROVIDER_ALIASES.get(name.strip().lower(), name.strip())
    aliases = OPTION_ALIASES.get(name, {})
    options: dict[str, str] = {}
    for key, value in raw.items():
        key = aliases.get(key, key)
        if key in BOOL_OPTIONS:
            options[key] = _bool_text(str(value), key, str(item))
        elif key == "trt_max_workspace_size" and "workspace_mib" in raw:
            options[key] = str(int(float(str(value)) * 2**20))
        else:
            options[key] = str(value)
    if name == "TensorrtExecutionProvider":
        options.setdefault("trt_engine_cache_path", str(default_trt_cache_dir()))
        options.setdefault("trt_engine_cache_enable", "True")
        options.setdefault("trt_timing_cache_enable", "True")
        options.setdefault("trt_timing_cache_path", options["trt_engine_cache_path"])
    return name, options


@dataclass(frozen=True)
class ProviderChoice:
    """What :func:`choose_providers` decided.

    providers: onnxruntime provider names in priority order (CPU always last).
    options: one options dict per provider, same order (what ``InferenceSession(provider_options=...)`` takes).
    fallback: a one-line message when a requested provider is not available here (None otherwise).
    """

    providers: list[str]
    options: list[dict[str, str]]
    fallback: str | None = None


def choose_providers(requested: Sequence[str | tuple] | None, available: Sequence[str],
                     strict: bool = False) -> ProviderChoice:
    """Pick the onnxruntime execution providers for a session.

    requested: None or ``["auto"]`` = the best available of TensorRT, CUDA, CPU (in that order);
    else items as :func:`parse_provider` takes. available: ``onnxruntime.get_available_providers()``.
    strict: a requested provider missing here raises :class:`BackendUnavailableError` (benchmarks use
    this, so such a cell is skipped with the reason); otherwise it is dropped and ``fallback`` says so.
    """
    auto = not requested or [str(r).lower() for r in requested if isinstance(r, str)] == ["auto"]
    if auto:
        parsed = [parse_provider(n) for n in AUTO_ORDER if n in available or n == "CPUExecutionProvider"]
    else:
        parsed = [parse_provider(r) for r in requested]
    missing = [n for n, _ in parsed if n not in available and n != "CPUExecutionProvider"]
    fallback = None
    if missing:
        if strict:
            raise BackendUnavailableError(f"onnxruntime execution provider(s) {missing} are not available here "
                                          f"(available: {list(available)}). {MISSING_HINT}")
        parsed = [(n, o) for n, o in parsed if n not in missing]
        kept = [n for n, _ in parsed] or ["CPUExecutionProvider"]
        fallback = (f"onnxruntime: {', '.join(missing)} not available here (available: {', '.join(available)}); "
                    f"falling back to {', '.join(dict.fromkeys(kept + ['CPUExecutionProvider']))}. {MISSING_HINT}")
    if "CPUExecutionProvider" not in [n for n, _ in parsed]:
        parsed.append(("CPUExecutionProvider", {}))
    return ProviderChoice([n for n, _ in parsed], [o for _, o in parsed], fallback)


class OnnxRuntimeSession:
    choice = None
    """The engine choice that opened this session (set by :func:`edgemer.backends.open_session`)."""

    def __init__(self, path, inputs, outputs, threads: int, providers: list[str] | ProviderChoice) -> None:
        import onnxruntime as ort

        choice = providers if isinstance(providers, ProviderChoice) else ProviderChoice(
            list(providers), [{} for _ in providers])
        for opts_ in choice.options:
            if opts_.get("trt_engine_cache_path"):
                Path(opts_["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # Pool threads sleep between inferences instead of spin-waiting for the next one: a pipeline
        # runs a model a few times per second, and spinning would burn a core between calls.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=choice.providers,
                                                 provider_options=choice.options)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"{path}: onnxruntime cannot load this model ({str(exc).splitlines()[0][:300]}). "
                                 f"The file is corrupt or not an ONNX model; re-export the bundle.") from exc
        self.inputs = inputs
        self.outputs = outputs
        self.path = path
        self.providers = self._session.get_providers()
        self.provider_options = choice.options
        self.fallback = choice.fallback
        lost = [n for n in choice.providers if n not in self.providers]
        if lost:  # onnxruntime itself fell back, e.g. CUDA/TensorRT libraries missing at run time
            self.fallback = (f"onnxruntime could not start {', '.join(lost)} for {path} and runs on "
                             f"{', '.join(self.providers)}; check the CUDA/cuDNN/TensorRT libraries (JetPack)")
        if self.fallback:
            log.warning(self.fallback)
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
    """onnxruntime sessions. ``providers`` (see :func:`choose_providers`): None = best available
    (TensorRT, CUDA, CPU); a requested provider missing here falls back with a one-line warning,
    or raises :class:`BackendUnavailableError` when ``strict``."""

    name = "onnxruntime"
    file_format = "onnx"

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict

    def open(self, bundle: Bundle, precision: str, threads: int, providers: Sequence[str] | None = None):
        import onnxruntime as ort

        chosen = choose_providers(providers, ort.get_available_providers(), strict=self.strict)
        m = bundle.manifest
        return OnnxRuntimeSession(bundle.model_path("onnx", precision), m.inputs, m.outputs, threads, chosen)
