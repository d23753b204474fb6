"""Checks of an ONNX model brought to ``edgemer export onnx``, before anything is written.

:func:`check_onnx_model` loads the file, runs ``onnx.checker``, brings an opset below 13
up to 13 (per-channel QDQ needs it), fixes dynamic dimensions (a dynamic batch becomes
1; any other dynamic dimension must be given with ``--input-shape``), runs strict shape
inference, opens the model in onnxruntime once (which names any op without a CPU
kernel) and lists the ops that the TFLite route is not known to convert. Every failure
raises :class:`~edgemer.errors.ModelCheckError` naming the fix.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemer._extras import require
from edgemer.bundle import TensorSpec
from edgemer.errors import ModelCheckError

MIN_OPSET = 13
"""Per-channel QDQ quantisation (``axis`` on QuantizeLinear) needs opset 13."""

TFLITE_OPS = frozenset((
    "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "Conv", "ConvTranspose",
    "Div", "Dropout", "Elu", "Erf", "Exp", "Flatten", "Gather", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool",
    "HardSigmoid", "HardSwish", "Identity", "LayerNormalization", "LeakyRelu", "Log", "LogSoftmax", "MatMul", "Max",
    "MaxPool", "Mean", "Min", "Mul", "Neg", "Pad", "Pow", "PRelu", "Reciprocal", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sqrt",
    "Squeeze", "Sub", "Sum", "Tanh", "Transpose", "Unsqueeze",
))
"""Standard ONNX ops the ONNX -> torch (onnx2torch) -> LiteRT (litert-torch) route is known to
convert to TFLite builtins for CNN/MLP classifiers. Others are listed as risks, not refused."""

ORT_DOMAINS = ("", "ai.onnx", "com.microsoft", "ai.onnx.ml")


@dataclass
class CheckedModel:
    """A model that passed the checks.

    proto: the ``onnx.ModelProto`` with fixed shapes. source: the file it came from.
    input: the one input (batch of 1). outputs: output specs measured by running the model
    on zeros. opset: default-domain opset after any upgrade. op_counts: op type -> nodes.
    tflite_risky_ops: ops outside :data:`TFLITE_OPS`. notes: what was changed, for the report.
    """

    proto: Any
    source: Path
    input: TensorSpec
    outputs: list[TensorSpec]
    opset: int
    opset_original: int
    op_counts: dict[str, int]
    tflite_risky_ops: list[str]
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The report's ``model_check`` section."""
        return {"source": self.source.name, "opset": self.opset, "opset_original": self.opset_original,
                "input": self.input.to_dict(), "outputs": [o.to_dict() for o in self.outputs],
                "nodes": int(sum(self.op_counts.values())), "op_counts": dict(sorted(self.op_counts.items())),
                "tflite_risky_ops": self.tflite_risky_ops, "notes": list(self.notes)}


def _onnx():
    return require("onnx", "export", "Checking an ONNX model (edgemer export onnx)")


def load_onnx(path: Path) -> Any:
    """Read an ``.onnx`` file (with any external data beside it).

    Raises
    ------
    ModelCheckError: missing, empty or not an ONNX protobuf.
    """
    onnx = _onnx()
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelCheckError(f"{path}: no such model file; give the path of an .onnx file")
    if path.stat().st_size == 0:
        raise ModelCheckError(f"{path}: the file is empty; copy the model again")
    from edgemer.onnx_external import check_onnx_file

    # external data must stay in the model's folder; absurd tensor sizes are refused before onnx allocates
    check_onnx_file(path, ModelCheckError)
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # DecodeError, OSError, external data missing...
        raise ModelCheckError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {str(exc)[:200]}); the file "
                              f"is corrupt or truncated, or not ONNX. Re-export or re-download it.") from exc
    if not proto.graph.node:
        raise ModelCheckError(f"{path}: the ONNX graph has no nodes; the file is corrupt or not a model")
    return proto


def default_opset(proto: Any) -> int:
    """The opset of the default (``ai.onnx``) domain."""
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _graph_inputs(proto: Any) -> list[Any]:
    inits = {i.name for i in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in inits]


def _fix_input_shape(value_info: Any, given: tuple[int, ...] | None, source: Path) -> tuple[tuple[int, ...], list[str]]:
    """Fix the input's dynamic dimensions in place; return the shape and notes."""
    dims = value_info.type.tensor_type.shape.dim
    if not dims and given is None:
        raise ModelCheckError(f"{source}: input '{value_info.name}' has no shape; pass --input-shape "
                              f"(e.g. 1,3,64,64) to fix it")
    if given is not None and dims and len(given) != len(dims):
        raise ModelCheckError(f"{source}: --input-shape {list(given)} has {len(given)} dimensions, input "
                              f"'{value_info.name}' has {len(dims)}")
    notes, shape, unknown = [], [], []
    if not dims:
        for _ in given or ():
            dims.add()
    for i, d in enumerate(dims):
        label = d.dim_param or "?"
        if d.HasField("dim_value") and d.dim_value > 0:
            if given is not None and given[i] != d.dim_value:
                raise ModelCheckError(f"{source}: --input-shape gives {given[i]} for dimension {i} of "
                                      f"'{value_info.name}', but the model fixes it to {d.dim_value}")
            shape.append(int(d.dim_value))
            continue
        if given is not None:
            value = int(given[i])
        elif i == 0:
            value = 1
        else:
            unknown.append(f"dimension {i} ('{label}')")
            shape.append(-1)
            continue
        d.Clear()
        d.dim_value = value
        notes.append(f"input '{value_info.name}' dimension {i} ('{label}') fixed to {value}")
        shape.append(value)
    if unknown:
        raise ModelCheckError(f"{source}: input '{value_info.name}' has dynamic {', '.join(unknown)} that edgemer "
                              f"cannot guess; pass the full shape with --input-shape (e.g. "
                              f"{','.join(str(s if s > 0 else 'N') for s in shape)} with N filled in)")
    if shape[0] != 1:
        raise ModelCheckError(f"{source}: input '{value_info.name}' has a fixed batch of {shape[0]}; edgemer runs one "
                              f"input at a time. Re-export the model with batch 1 or a dynamic batch.")
    return tuple(shape), notes


def _clear_output_shapes(proto: Any) -> None:
    """Forget declared output/value_info shapes that hold dynamic dims (shape inference refills them)."""
    for vi in list(proto.graph.output) + list(proto.graph.value_info):
        t = vi.type.tensor_type
        if t.HasField("shape") and any(not (d.HasField("dim_value") and d.dim_value > 0) for d in t.shape.dim):
            t.ClearField("shape")


def _ort_outputs(proto: Any, spec: TensorSpec, source: Path) -> list[TensorSpec]:
    """Open the model in onnxruntime (CPU) and run it on zeros; output specs with measured shapes."""
    ort = require("onnxruntime", "export", "Checking an ONNX model")
    try:
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        text = str(exc)
        hint = ("an op has no onnxruntime CPU kernel at this opset; replace it, or export the model with another "
                "opset" if "implementation" in text or "NOT_IMPLEMENTED" in text else
                "check that the model runs in onnxruntime")
        raise ModelCheckError(f"{source}: onnxruntime cannot load the model ({text.strip().splitlines()[0][:300]}); "
                              f"{hint}") from exc
    try:
        outs = sess.run(None, {spec.name: np.zeros(spec.shape, np.float32)})
    except Exception as exc:
        raise ModelCheckError(f"{source}: the model fails on a zero input of shape {list(spec.shape)} "
                              f"({str(exc).strip().splitlines()[0][:300]}); check --input-shape") from exc
    specs = []
    for meta, value in zip(sess.get_outputs(), outs):
        arr = np.asarray(value)
        if arr.dtype != np.float32:
            raise ModelCheckError(f"{source}: output '{meta.name}' is {arr.dtype}; edgemer bundles need float32 "
                                  f"outputs (class scores). Cut the graph before post-processing such as ArgMax.")
        specs.append(TensorSpec(meta.name, tuple(int(v) for v in arr.shape)))
    return specs


def check_onnx_model(path: Path, input_shape: tuple[int, ...] | None = None) -> CheckedModel:
    """Load and check ``path``; return the model with fixed shapes (see module docstring).

    Raises
    ------
    ModelCheckError: corrupt file, failed checker, more than one input, non-float input,
        dynamic dimensions that cannot be fixed, failed shape inference, an op without an
        onnxruntime kernel.
    MissingExtraError: onnx / onnxruntime missing (extra ``export``).
    """
    onnx = _onnx()
    path = Path(path).expanduser()
    proto = load_onnx(path)
    notes: list[str] = []
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ModelCheckError(f"{path}: onnx.checker rejects the model ({str(exc).strip().splitlines()[0][:300]}); "
                              f"re-export it with a current exporter") from exc
    bad_domains = sorted({f"{n.domain}::{n.op_type}" for n in proto.graph.node if n.domain not in ORT_DOMAINS})
    if bad_domains:
        raise ModelCheckError(f"{path}: custom-domain ops {bad_domains} have no kernels in onnxruntime or LiteRT; "
                              f"re-export the model with standard ONNX ops")
    opset_original = default_opset(proto)
    if opset_original < MIN_OPSET:
        try:
            proto = onnx.version_converter.convert_version(proto, MIN_OPSET)
        except Exception as exc:
            raise ModelCheckError(f"{path}: opset {opset_original} could not be converted to {MIN_OPSET} "
                                  f"({str(exc)[:200]}); re-export the model with opset >= {MIN_OPSET}") from exc
        notes.append(f"opset {opset_original} converted to {MIN_OPSET} (per-channel INT8 needs >= {MIN_OPSET})")
    unnamed = [n for n in proto.graph.node if not n.name]
    if unnamed:
        taken = {n.name for n in proto.graph.node}
        for i, node in enumerate(proto.graph.node):
            if not node.name:
                name = f"{node.op_type}_{i}"
                while name in taken:
                    name += "_"
                node.name = name
                taken.add(name)
        notes.append(f"{len(unnamed)} unnamed node(s) named <op>_<index> (node exclusion needs names)")
    inits = {i.name for i in proto.graph.initializer}
    shadowed = [i for i in proto.graph.input if i.name in inits]
    if shadowed:  # IR < 4 lists weights as inputs too: make them plain constants (what inference does)
        for vi in shadowed:
            proto.graph.input.remove(vi)
        notes.append(f"{len(shadowed)} initializer(s) listed as graph inputs (old IR) made constants")
    inputs = _graph_inputs(proto)
    if len(inputs) != 1:
        raise ModelCheckError(f"{path}: the model has {len(inputs)} inputs {[i.name for i in inputs]}; edgemer bundles "
                              f"take exactly one (the front-end's output). Wrap or re-export the model.")
    vi = inputs[0]
    if vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        except (KeyError, ValueError):  # an element type number onnx does not know
            dtype = f"element type {vi.type.tensor_type.elem_type} (unknown to onnx)"
        raise ModelCheckError(f"{path}: input '{vi.name}' is {dtype}, edgemer front-ends give float32; re-export the "
                              f"model with a float32 input")
    shape, fix_notes = _fix_input_shape(vi, input_shape, path)
    notes += fix_notes
    _clear_output_shapes(proto)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise ModelCheckError(f"{path}: ONNX shape inference fails with input shape {list(shape)} "
                              f"({str(exc).strip().splitlines()[0][:300]}); check --input-shape") from exc
    spec = TensorSpec(vi.name, shape)
    outputs = _ort_outputs(proto, spec, path)
    counts = Counter(n.op_type for n in proto.graph.node)
    risky = sorted(op for op in counts if op not in TFLITE_OPS)
    meta = {p.key: p.value for p in proto.metadata_props}
    return CheckedModel(proto=proto, source=path, input=spec, outputs=outputs, opset=default_opset(proto),
                        opset_original=opset_original, op_counts=dict(counts), tflite_risky_ops=risky, notes=notes,
                        metadata=meta)
