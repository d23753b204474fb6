"""FP32 ONNX -> static INT8 ONNX with onnxruntime (QDQ format, per-channel weights).

Steps: ``quant_pre_process`` (shape inference and graph optimisation, as onnxruntime
recommends), then ``quantize_static`` with activation ranges calibrated on training
windows fed through a :class:`WindowCalibrationReader`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from edgemer._extras import require
from edgemer.errors import ExportError
from edgemer.export.core.config import OnnxQuantOptions

class WindowCalibrationReader:
    """onnxruntime ``CalibrationDataReader``: one ``{input_name: [1, ...] float32}`` feed per window.

    windows: [n, ...] float32 model inputs (standardised), fed one at a time.
    """

    def __init__(self, windows: np.ndarray, input_name: str = "signals") -> None:
        self._windows = np.asarray(windows, np.float32)
        self._input_name = input_name
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._windows):
            return None
        x = self._windows[self._next:self._next + 1]
        self._next += 1
        return {self._input_name: x}

    def rewind(self) -> None:
        self._next = 0


def preprocess_onnx(fp32_path: Path, out_path: Path) -> Path:
    """onnxruntime's ``quant_pre_process`` (shape inference, graph optimisation) of ``fp32_path``.

    The node names of the result are the ones ``nodes_to_exclude`` refers to.

    Raises
    ------
    MissingExtraError: onnxruntime's quantisation tools are missing. ExportError: it failed.
    """
    shape_inference = require("onnxruntime.quantization.shape_inference", "export", "INT8 ONNX quantisation")
    try:
        shape_inference.quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=False)
    except Exception as exc:
        raise ExportError(f"onnxruntime quant_pre_process failed on {Path(fp32_path).name} ({exc}); "
                          f"check the onnxruntime version (>= 1.17)") from exc
    return Path(out_path)


def quantize_onnx(fp32_path: Path, int8_path: Path, calibration: np.ndarray,
                  options: OnnxQuantOptions = OnnxQuantOptions(), input_name: str = "signals",
                  nodes_to_exclude: Sequence[str] = (), preprocess: bool = True) -> Path:
    """Write the static INT8 (QDQ) version of ``fp32_path`` to ``int8_path``.

    calibration: [n, ...] float32 windows used to calibrate activation ranges
    (a few hundred training windows is plenty). nodes_to_exclude: node names (of the
    pre-processed graph, see :func:`preprocess_onnx`) kept in FP32. preprocess: run
    :func:`preprocess_onnx` first (False when ``fp32_path`` already is its output).

    Raises
    ------
    MissingExtraError: onnxruntime's quantisation tools are missing.
    ExportError: pre-processing or quantisation failed.
    """
    ort_q = require("onnxruntime.quantization", "export", "INT8 ONNX quantisation")
    if len(calibration) == 0:
        raise ExportError("INT8 ONNX quantisation needs at least one calibration window; the training set is empty")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    with tempfile.TemporaryDirectory(prefix="edgemer-quant-") as tmp:
        pre = preprocess_onnx(fp32_path, Path(tmp) / "preprocessed.onnx") if preprocess else fp32_path
        try:
            ort_q.quantize_static(
                str(pre), str(int8_path), WindowCalibrationReader(calibration, input_name),
                quant_format=ort_q.QuantFormat.QDQ,
                per_channel=options.per_channel,
                reduce_range=options.reduce_range,
                activation_type=getattr(ort_q.QuantType, options.activation_type),
                weight_type=getattr(ort_q.QuantType, options.weight_type),
                nodes_to_exclude=list(nodes_to_exclude) or None,
                calibrate_method=getattr(ort_q.CalibrationMethod, options.calibrate_method),
                calibration_providers=["CPUExecutionProvider"],
                extra_options=dict(options.extra_options),
            )
        except Exception as exc:
            raise ExportError(f"onnxruntime quantize_static failed on {fp32_path.name} ({exc}); "
                              f"try other OnnxQuantOptions or report the model") from exc
    return int8_path
