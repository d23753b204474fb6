"""PyTorch model -> one self-contained FP32 ONNX file (torch.onnx dynamo exporter).

Every tensor is stored inside the ``.onnx`` file (no ``.onnx.data`` side file), so a
bundle's manifest hashes one file per model. The exporter's per-node debug metadata
(Python stack traces with host file paths, module names) is removed: it is not part of
the model, it leaks the build machine's paths and it is about a tenth of the file.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Sequence

from edgemer._extras import require
from edgemer.errors import ExportError

INPUT_NAME = "signals"
OUTPUT_NAMES = ("class_logits", "eda", "drive", "eda_tonic")
OPSET = 18


def export_onnx(model: Any, example: Any, path: Path, input_name: str = INPUT_NAME,
                output_names: Sequence[str] = OUTPUT_NAMES, opset: int = OPSET) -> Path:
    """Export ``model`` (eval mode, fixed batch of 1) to ``path`` and check it with ``onnx.checker``.

    Parameters
    ----------
    model: a ``torch.nn.Module`` whose forward takes one tensor and returns a tuple.
    example: an example input tensor of the exported shape, e.g. ``[1, 4, 240]`` float32.
    path: the ``.onnx`` file to write.

    Raises
    ------
    MissingExtraError: torch/onnx/onnxscript missing (extra ``export``).
    ExportError: the exporter or the checker failed.
    """
    torch = require("torch", "export", "ONNX export")
    onnx = require("onnx", "export", "ONNX export")
    require("onnxscript", "export", "ONNX export (torch.onnx dynamo exporter)")
    path = Path(path)
    model.eval()
    log = io.StringIO()
    exporter_logger = logging.getLogger("torch.onnx")
    level = exporter_logger.level
    exporter_logger.setLevel(logging.ERROR)  # e.g. "torchvision is not installed", irrelevant here
    try:
        with torch.no_grad(), contextlib.redirect_stdout(log):
            torch.onnx.export(model, (example,), str(path), input_names=[input_name], output_names=list(output_names),
                              opset_version=opset, dynamo=True, external_data=False, optimize=True)
    except Exception as exc:  # the exporter raises many untyped errors
        first_line = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise ExportError(f"torch.onnx.export failed for {path.name} ({type(exc).__name__}: {first_line}; "
                          f"exporter log: {log.getvalue()[-300:]!r}). Check that torch==2.13.0 and onnxscript "
                          f"are installed (pip install 'edgemer[export]').") from exc
    finally:
        exporter_logger.setLevel(level)
    if path.with_name(path.name + ".data").exists():
        raise ExportError(f"{path}: the exporter wrote external data; expected one self-contained file")
    try:
        proto = onnx.load(str(path))
        for node in proto.graph.node:
            del node.metadata_props[:]
        onnx.save(proto, str(path))
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise ExportError(f"{path}: the exported ONNX model fails onnx.checker ({exc}); "
                          f"this is a bug in the model definition or the exporter, please report it") from exc
    got_in = [i.name for i in proto.graph.input]
    got_out = [o.name for o in proto.graph.output]
    if got_in != [input_name] or got_out != list(output_names):
        raise ExportError(f"{path}: exported IO {got_in} -> {got_out}, expected [{input_name}] -> {list(output_names)}")
    return path
