"""Bring your own model: ``edgemer export onnx`` (an ONNX file, a ``torch.nn.Module`` or a
Keras HDF5 file -> a verified INT8 bundle under the accuracy guard).

:mod:`~.config`, :mod:`~.frontend` (the runtime front-end settled from the model's input),
:mod:`~.data` (calibration and evaluation folders), :mod:`~.report`, :mod:`~.export` (the
recipe) and :mod:`~.commands`.

The public entry points import from here, as documented::

    from edgemer.export.byo import ByoExportConfig, export_onnx_model, export_torch_model, export_keras_model

They are resolved when first used, so importing :mod:`~.commands` (to build the command
line) does not import numpy or the converters.
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ByoExportConfig": "edgemer.export.byo.config",
    "export_onnx_model": "edgemer.export.byo.export",
    "export_torch_model": "edgemer.export.byo.export",
    "export_keras_model": "edgemer.export.byo.export",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
