"""edgemer: on-device multimodal emotion and stress recognition.

The runtime imports numpy, scipy and one inference runtime only; heavier parts
(torch export, sounddevice, OpenCV, pylsl) are optional extras imported lazily.

Typical use::

    import edgemer
    from edgemer.sources import SimulatedWearable

    with edgemer.Pipeline([SimulatedWearable(speed=20)], ["physio-demo"]) as pipe:
        for estimate in pipe:
            print(estimate.stress_probability)
"""
from __future__ import annotations

import os

# numpy's OpenBLAS starts one thread per core for each small matrix product (the log-mel
# filterbank of the audio front-end): on a busy 2-core machine those threads spin against
# the sources and the inference worker, and a 64x257 product took 7.8 ms instead of 0.07 ms.
# The runtime parallelises by stream, not inside numpy, so it asks for one BLAS thread
# unless the user set a number. This works only if numpy is not imported before edgemer.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"

from typing import Any

from edgemer.bundle import Bundle, load_bundle
from edgemer.errors import EdgemerError
from edgemer.types import Chunk, Estimate, ModalityEstimate, StreamSpec, Window


def __getattr__(name: str) -> Any:
    # The pipeline pulls in the backends; import it on first use only.
    if name in ("Pipeline", "PipelineConfig"):
        from edgemer import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'edgemer' has no attribute {name!r}")

__all__ = [
    "Bundle",
    "Chunk",
    "EdgemerError",
    "Estimate",
    "ModalityEstimate",
    "Pipeline",
    "PipelineConfig",
    "StreamSpec",
    "Window",
    "__version__",
    "load_bundle",
]
