"""Lazy imports of optional dependencies with an error that names the extra."""
from __future__ import annotations

import importlib
from types import ModuleType

from edgemer.errors import MissingExtraError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``.

    Parameters
    ----------
    module:
        Dotted module name, e.g. ``"ai_edge_litert.interpreter"``.
    extra:
        The edgemer extra that installs it, e.g. ``"tflite"``.
    purpose:
        What needs it, for the message, e.g. ``"The LiteRT backend"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(extra, module, purpose) from exc
