"""Fully-integer INT8 TFLite for a model that may exist only as ONNX.

Route: ONNX -> torch module -> litert-torch's PT2E INT8 conversion
(:func:`edgemer.export.core.tflite.export_tflite_int8`, the same path every edgemer bundle
uses). The ONNX -> torch step is edgemer's own converter for CNN/MLP graphs
(:mod:`edgemer.export.core.onnx_torch`, no extra package), or ``onnx2torch`` when it is
installed (far more ops). This needs no TensorFlow: ``onnx2tf`` would pull TensorFlow
(~600 MB), which the ``[export]`` extra does not carry.

``onnx2torch`` (1.5.15) declares a dependency on ``torchvision`` only for its NMS and
RoiAlign converters; torchvision's PyPI wheels are built against torch's CUDA wheels
and do not load next to the CPU ``torch==2.13.0``. Install it alone:
``pip install --no-deps onnx2torch==1.5.15``. When torchvision cannot be imported, those
two converters are stubbed (a model using NMS or RoiAlign then fails conversion with a
clear reason).

:func:`tflite_from_onnx` never raises for a conversion that cannot be done: it returns
:class:`TfliteOutcome` with ``written=False`` and the reason, which the bundle records,
so the ONNX part of an export is never lost to the TFLite part.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgemer.errors import EdgemerError

INSTALL_HINT = "pip install --no-deps onnx2torch==1.5.15"


@dataclass
class TfliteOutcome:
    """written: the INT8 .tflite exists. route: how it was made. reason: why not (when not written).
    quantisation: the manifest's ``quantisation.tflite`` entry."""

    written: bool
    route: str
    reason: str | None = None
    quantisation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"written": self.written, "route": self.route}
        if self.reason:
            d["reason"] = self.reason
        return d


@contextlib.contextmanager
def _torchvision_stub() -> Iterator[None]:
    """Make ``import torchvision`` succeed with stubs of the two ops onnx2torch imports, if it fails."""
    try:
        importlib.import_module("torchvision")
        yield
        return
    except Exception:  # missing, or a wheel built for another torch
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("this op needs torchvision, which does not load next to this torch build")

    tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = missing  # type: ignore[attr-defined]
    tv.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
    try:
        yield
    finally:
        for name in ("torchvision", "torchvision.ops"):
            if sys.modules.get(name) in (tv, ops):
                del sys.modules[name]


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def load_onnx2torch() -> Any | None:
    """The ``onnx2torch`` module, or None when it is not installed."""
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    with _torchvision_stub():
        try:
            return importlib.import_module("onnx2torch")
        except ImportError:
            return None


def prepare_for_onnx2torch(proto: Any) -> Any:
    """A copy of ``proto`` that onnx2torch 1.5.15 accepts: opset at most 17 (it lacks the opset-18
    Reduce* converters) and ``Reshape(allowzero=1)`` with a constant shape free of zeros set to
    ``allowzero=0`` (the same result; onnx2torch refuses allowzero=1)."""
    import onnx
    from onnx import numpy_helper

    from edgemer.export.core.onnx_check import default_opset

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    if default_opset(m) > 17:
        m = onnx.version_converter.convert_version(m, 17)
    consts = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    for node in m.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    for node in m.graph.node:
        if node.op_type == "Reshape" and node.input[1] in consts and 0 not in consts[node.input[1]]:
            for a in node.attribute:
                if a.name == "allowzero":
                    a.i = 0
    return m


def _static_reshapes(gm: Any) -> Any:
    """Replace onnx2torch's Reshape modules whose shape is a stored constant by ``torch.reshape`` with
    that shape as Python ints: their ``torch.any(shape == 0)`` branch stops ``torch.export``."""
    import torch

    for node in list(gm.graph.nodes):
        if node.op != "call_module" or type(gm.get_submodule(node.target)).__name__ != "OnnxReshape":
            continue
        shape_node = node.args[1] if len(node.args) > 1 else None
        if getattr(shape_node, "op", None) != "get_attr":
            continue
        value = gm
        for part in shape_node.target.split("."):
            value = getattr(value, part)
        with gm.graph.inserting_after(node):
            new = gm.graph.call_function(torch.reshape, (node.args[0], tuple(int(v) for v in value.tolist())))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def onnx_to_torch(proto: Any) -> Any:
    """An ``onnx.ModelProto`` as a torch module (eval mode).

    Raises
    ------
    EdgemerError: onnx2torch missing (message names the install command) or conversion failed.
    """
    o2t = load_onnx2torch()
    if o2t is None:
        raise EdgemerError(f"onnx2torch is not installed ({INSTALL_HINT})")
    try:
        return _static_reshapes(o2t.convert(prepare_for_onnx2torch(proto))).eval()
    except Exception as exc:
        raise EdgemerError(f"onnx2torch cannot convert the model ({type(exc).__name__}: "
                           f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''})") from exc


def tflite_from_module(module: Any, example: np.ndarray, calibration: np.ndarray, path: Path, inputs: list[Any],
                       outputs: list[Any], route: str) -> TfliteOutcome:
    """Convert a torch module to fully-integer INT8 TFLite; failures become a recorded reason."""
    from edgemer.export.core.bundle_writer import tflite_quantisation_section
    from edgemer.export.core.tflite import export_tflite_int8

    try:
        import torch

        export_tflite_int8(module, torch.from_numpy(np.ascontiguousarray(example, np.float32)), path, calibration)
        quant = tflite_quantisation_section(path, inputs, outputs, len(calibration))
    except Exception as exc:  # ExportError from the converter, or anything the model trips in it
        Path(path).unlink(missing_ok=True)
        return TfliteOutcome(False, route, f"INT8 TFLite conversion failed: {str(exc).strip()[:400]}")
    float_io = [name for side in ("inputs", "outputs") for name, q in quant[side].items() if q["dtype"] != "int8"]
    if float_io:
        Path(path).unlink(missing_ok=True)
        return TfliteOutcome(False, route, f"the converted TFLite is not fully integer (float IO tensors {float_io}): "
                                           f"the PT2E quantizer left some ops in float (e.g. MatMul without a "
                                           f"constant-weight Linear form); the file was not kept")
    return TfliteOutcome(True, route, quantisation=quant)


def tflite_from_onnx(proto: Any, example: np.ndarray, calibration: np.ndarray, path: Path, inputs: list[Any],
                     outputs: list[Any], risky_ops: list[str]) -> TfliteOutcome:
    """ONNX -> torch (onnx2torch if installed, else the built-in converter) -> INT8 TFLite; never raises for an
    impossible conversion."""
    if load_onnx2torch() is None:
        return _tflite_via_builtin(proto, example, calibration, path, inputs, outputs)
    route = f"onnx2torch {_version('onnx2torch')} -> litert-torch PT2E"
    try:
        module = onnx_to_torch(proto)
    except EdgemerError as exc:
        ops = f" (ops outside the known-convertible set: {', '.join(risky_ops)})" if risky_ops else ""
        return TfliteOutcome(False, route, f"{exc}{ops}")
    outcome = tflite_from_module(module, example, calibration, path, inputs, outputs, route)
    if not outcome.written and risky_ops:
        outcome.reason = f"{outcome.reason} (ops outside the known-convertible set: {', '.join(risky_ops)})"
    return outcome


def _tflite_via_builtin(proto: Any, example: np.ndarray, calibration: np.ndarray, path: Path, inputs: list[Any],
                        outputs: list[Any]) -> TfliteOutcome:
    """ONNX -> torch with edgemer's own converter (:mod:`edgemer.export.core.onnx_torch`) -> INT8 TFLite."""
    from edgemer.export.core.onnx_torch import UnsupportedOnnxError, onnx_to_module

    route = "edgemer onnx_torch -> litert-torch PT2E"
    try:
        module = onnx_to_module(proto)
    except UnsupportedOnnxError as exc:
        return TfliteOutcome(False, route, f"{exc} ({INSTALL_HINT}); onnx2tf would need TensorFlow")
    return tflite_from_module(module, example, calibration, path, inputs, outputs, route)
