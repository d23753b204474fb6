"""Inference backends: onnxruntime and LiteRT behind one small protocol.

A backend turns a bundle's model file into a :class:`Session` whose ``run`` takes and
returns float32 arrays keyed by the manifest's tensor names, whatever the file's
precision (INT8 TFLite inputs are quantised and outputs dequantised inside).

To add a backend: one new module with a class implementing :class:`Backend`, plus one
line in :data:`BACKENDS`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Protocol, Sequence

import numpy as np

from edgemer.bundle import Bundle, TensorSpec
from edgemer.errors import BackendUnavailableError, InputShapeError

if TYPE_CHECKING:
    from edgemer.backends.choice import EngineChoice


class Session(Protocol):
    """A loaded model ready to run."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    description: str
    choice: "EngineChoice | None"
    """What :func:`open_session` chose with ``auto`` and why (None when pinned)."""

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference; ``feeds`` maps input name -> float32 array of the manifest shape."""
        ...


class Backend(Protocol):
    name: str
    file_format: str

    def open(self, bundle: Bundle, precision: str, threads: int, providers: Sequence[str] | None = None) -> Session:
        ...


def _onnxruntime(strict: bool = False, delegate: str | None = None):
    from edgemer.backends.onnxruntime_backend import OnnxRuntimeBackend

    if delegate:
        raise BackendUnavailableError(f"a TFLite delegate ({delegate}) applies to the litert backend, not onnxruntime")
    return OnnxRuntimeBackend(strict=strict)


def _litert(strict: bool = False, delegate: str | None = None):
    from edgemer.backends.litert_backend import LiteRTBackend

    return LiteRTBackend(delegate=delegate)


BACKENDS = {"onnxruntime": _onnxruntime, "litert": _litert}
"""Backend name -> factory ``(strict=False, delegate=None)``. Factories import their runtime lazily."""


def get_backend(name: str, strict: bool = False, delegate: str | None = None) -> Backend:
    """The backend called ``name``. strict: a requested onnxruntime execution provider that is missing
    raises instead of falling back to CPU. delegate: path of a TFLite delegate library (litert only)."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise BackendUnavailableError(f"Unknown backend '{name}'; choose one of {sorted(BACKENDS)}") from None
    return factory(strict=strict, delegate=delegate)


def open_session(bundle: Bundle, backend: str = "auto", precision: str = "auto", threads: int | None = None,
                 providers: Sequence[str] | None = None, delegate: str | None = None,
                 strict: bool = False) -> Session:
    """Open the bundle's model for ``backend`` at ``precision`` (``int8`` or ``fp32``) with ``threads`` threads.

    backend ``auto`` and/or precision ``auto`` (the defaults): the fastest verified file x engine x
    threads measured on this device (:func:`edgemer.backends.choice.choose_engine`: the engine-choice
    cache, else a short first-use measurement with a progress line on stderr); the session's
    ``choice`` attribute says what was chosen and why. threads: None = chosen with ``auto``, 1 when
    backend and precision are both pinned (then ``choice`` is None).

    providers: onnxruntime execution providers (None = best available: TensorRT, CUDA, CPU; items like
    ``cuda:device=1`` or ``tensorrt:fp16=1:cache=DIR``, see
    :func:`edgemer.backends.onnxruntime_backend.parse_provider`). delegate: a TFLite delegate library
    path for ``litert`` (e.g. ``libedgetpu.so.1``). strict: a missing provider raises
    :class:`BackendUnavailableError` instead of falling back to CPU with a one-line warning.
    """
    if threads is not None and threads < 1:
        raise BackendUnavailableError(f"threads must be >= 1, got {threads}")
    choice = None
    if "auto" in (backend, precision):
        from edgemer.backends.choice import choose_engine

        if delegate and backend == "auto":
            backend = "litert"  # a TFLite delegate runs .tflite files only
        choice = choose_engine(bundle, backend, precision, threads, providers)
        backend, precision, threads = choice.backend, choice.precision, choice.threads
    session = get_backend(backend, strict=strict, delegate=delegate).open(bundle, precision, threads or 1, providers)
    session.choice = choice
    return session


def check_feeds(feeds: Mapping[str, np.ndarray], specs: Sequence[TensorSpec], model: str) -> dict[str, np.ndarray]:
    """Validate feeds against the manifest's input specs; return them as contiguous float32."""
    out = {}
    for spec in specs:
        if spec.name not in feeds:
            raise InputShapeError(f"{model}: missing input '{spec.name}' (expects {[s.name for s in specs]})")
        arr = np.asarray(feeds[spec.name])
        if arr.shape != spec.shape:
            raise InputShapeError(f"{model}: input '{spec.name}' has shape {arr.shape}, the model expects "
                                  f"{spec.shape}; check the window length and sample rates against the manifest")
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputShapeError(f"{model}: input '{spec.name}' has dtype {arr.dtype}, expected float32")
        if not np.all(np.isfinite(arr)):
            raise InputShapeError(f"{model}: input '{spec.name}' holds NaN or infinite values; "
                                  f"the front-end must fill or reject gaps before inference")
        out[spec.name] = np.ascontiguousarray(arr, dtype=np.float32)
    return out
