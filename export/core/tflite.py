"""PyTorch model -> TFLite with litert-torch: FP32, and fully-integer INT8 (PT2E).

INT8 path: ``PT2EQuantizer`` with symmetric per-channel static weights, the model
captured by ``torch.export``, ``prepare_pt2e`` -> calibration on training windows ->
``convert_pt2e(fold_quantize=False)``, then ``litert_torch.convert`` with that quantizer.
The result takes int8 inputs and gives int8 outputs; their scales and zero points are
returned by :func:`tflite_io_quantisation` (edgemer's LiteRT backend (de)quantises with
them). Signature inputs are ``args_0``...; outputs ``output_0``... in the forward's order.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgemer._extras import require
from edgemer.errors import ExportError


def _litert_torch():
    return require("litert_torch", "export", "TFLite conversion (litert-torch)")


@contextlib.contextmanager
def _quiet_conversion() -> Iterator[None]:
    """Hide the converter's progress output and root-logger warnings (errors still raise).

    litert-torch warns "converted in training mode" for every PT2E graph module, whose
    ``.eval()`` torchao forbids; the warning does not apply to a model without dropout
    or batch norm, and it would mislead a user reading the export log.
    """
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


def export_tflite_fp32(model: Any, example: Any, path: Path) -> Path:
    """Convert ``model`` (eval mode) at the shape of ``example`` to an FP32 ``.tflite`` file."""
    litert_torch = _litert_torch()
    torch = require("torch", "export", "TFLite conversion")
    model.eval()
    try:
        with torch.no_grad(), _quiet_conversion():
            edge = litert_torch.convert(model, (example,))
            edge.export(str(path))
    except Exception as exc:
        raise ExportError(f"litert_torch.convert (FP32) failed for {Path(path).name} ({_first_line(exc)}). "
                          f"Check litert-torch==0.10.0 next to torch==2.13.0, or export with --no-tflite.") from exc
    return Path(path)


def export_tflite_int8(model: Any, example: Any, path: Path, calibration: np.ndarray) -> Path:
    """Convert ``model`` to a fully-integer INT8 ``.tflite`` calibrated on ``calibration``.

    calibration: [n, ...] float32 windows of the model's input (batch dimension first);
    each is fed as a batch of one.
    """
    litert_torch = _litert_torch()
    torch = require("torch", "export", "TFLite INT8 conversion")
    pt2e = require("litert_torch.quantize.pt2e_quantizer", "export", "TFLite INT8 conversion")
    quant_config = require("litert_torch.quantize.quant_config", "export", "TFLite INT8 conversion")
    quantize_pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "export", "TFLite INT8 conversion (torchao)")
    torchao_pt2e = require("torchao.quantization.pt2e", "export", "TFLite INT8 conversion (torchao)")
    if len(calibration) == 0:
        raise ExportError("INT8 TFLite conversion needs at least one calibration window; the training set is empty")
    model.eval()
    stage = "quantizer setup"
    try:
        quantizer = pt2e.PT2EQuantizer().set_global(
            pt2e.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
        with torch.no_grad(), _quiet_conversion():
            stage = "torch.export"
            # strict=True records each node's source function, which the quantizer's add and
            # cat annotators need; without it those ops stay float and the model is not fully INT8.
            captured = torch.export.export(model, (example,), strict=True).module()
            stage = "prepare_pt2e"
            prepared = quantize_pt2e.prepare_pt2e(captured, quantizer)
            stage = "calibration"
            for window in np.asarray(calibration, np.float32):
                prepared(torch.from_numpy(window[None]))
            stage = "convert_pt2e"
            converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
            torchao_pt2e.move_exported_model_to_eval(converted)
            stage = "litert_torch.convert"
            edge = litert_torch.convert(converted, (example,),
                                        quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
            edge.export(str(path))
    except Exception as exc:
        raise ExportError(f"INT8 TFLite conversion failed at {stage} for {Path(path).name} ({_first_line(exc)}). "
                          f"Check litert-torch==0.10.0 and torchao next to torch==2.13.0, "
                          f"or export with --no-tflite.") from exc
    return Path(path)


def tflite_io_quantisation(path: Path) -> dict[str, Any]:
    """Dtype, scale and zero point of each signature input and output of a ``.tflite`` file.

    Returns ``{"inputs": {name: {...}}, "outputs": {name: {...}}}`` with names as in the
    signature (``args_0``, ``output_0``...); float tensors have scale 0 and zero point 0.
    """
    from edgemer.backends.litert_backend import load_interpreter_class

    interp = load_interpreter_class()(model_path=str(path))
    runner = interp.get_signature_runner()

    def describe(details: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name in sorted(details):
            scale, zero_point = details[name]["quantization"]
            out[name] = {"dtype": np.dtype(details[name]["dtype"]).name, "scale": float(scale),
                         "zero_point": int(zero_point)}
        return out

    return {"inputs": describe(runner.get_input_details()), "outputs": describe(runner.get_output_details())}
