"""Accuracy guard: measure what INT8 cost, find the nodes that cost it, keep them in FP32.

1. :func:`evaluate` runs the FP32 and INT8 models (onnxruntime, CPU, one thread) on
   evaluation inputs. With labels the metric is accuracy; without, it is argmax
   agreement with FP32 (FP32 outputs are the reference). The drop is in points (0-100).
2. :func:`tensor_errors` measures, for every activation tensor the INT8 model quantises,
   how much quantising it distorts it: the INT8 graph is run unoptimised with the tensor
   ``T`` (float, as computed from upstream INT8 values) and its ``DequantizeLinear(
   QuantizeLinear(T))`` exposed as outputs, the FP32 graph with ``T`` exposed.
   ``own_error``: the error this tensor's own quantisation adds, ``||DQ(Q(T)) - T||``
   relative to ``||T_fp32||`` per channel (axis 1), averaged over channels (so a few
   huge channels cannot hide small channels rounded to zero); ``total_error``: the same
   for ``DQ(Q(T)) - T_fp32``, which includes all upstream error.
3. :func:`run_guard` quantises, evaluates, and while the drop exceeds the bound, keeps
   the producer (and, for a Relu/Clip that onnxruntime folds into the node before it, that
   node too) and the consumers of the tensor with the largest own error in FP32
   (``nodes_to_exclude``) and quantises again, one tensor at a time; ``strict`` raises
   :class:`~edgemer.errors.AccuracyGuardError` instead.

Node names are those of the pre-processed FP32 graph (:func:`~edgemer.export.core.quantize.preprocess_onnx`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgemer._extras import require
from edgemer.errors import AccuracyGuardError, ConfigError
from edgemer.export.core.config import OnnxQuantOptions
from edgemer.export.core.quantize import quantize_onnx

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
FOLDED_ACTIVATIONS = ("Relu", "Clip")
"""Activations onnxruntime's QDQ quantiser folds into the preceding node's output quantisation."""


def _session(model: Any, optimise: bool = True) -> Any:
    ort = require("onnxruntime", "export", "INT8 accuracy guard")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    if not optimise:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def run_outputs(model: Any, x: np.ndarray, names: Sequence[str] | None = None, optimise: bool = True
                ) -> dict[str, np.ndarray]:
    """Run ``model`` (path or ModelProto) on each row of ``x``; outputs stacked ``{name: [n, ...]}``."""
    sess = _session(model, optimise)
    feed = sess.get_inputs()[0].name
    names = list(names) if names is not None else [o.name for o in sess.get_outputs()]
    rows = [sess.run(names, {feed: x[i:i + 1]}) for i in range(len(x))]
    return {n: np.concatenate([r[j] for r in rows]) for j, n in enumerate(names)}


@dataclass(frozen=True)
class Evaluation:
    """metric: ``accuracy`` (labels) or ``argmax agreement with FP32``. fp32 / int8: the metric,
    0..1. drop_points: 100 * (fp32 - int8). agreement: INT8 vs FP32 argmax agreement, 0..1."""

    metric: str
    fp32: float
    int8: float
    agreement: float
    samples: int

    @property
    def drop_points(self) -> float:
        return 100.0 * (self.fp32 - self.int8)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "fp32": self.fp32, "int8": self.int8, "drop_points": self.drop_points,
                "argmax_agreement": self.agreement, "samples": self.samples}


METRICS = ("accuracy", "macro_f1")
"""Metrics the guard can bound with labels: accuracy (``edgemer export onnx``) or macro-F1 (the
verification target of the trained exports)."""


def evaluate(fp32: Any, int8: Any, x: np.ndarray, output: str, labels: np.ndarray | None = None,
             fp32_pred: np.ndarray | None = None, metric: str = "accuracy") -> Evaluation:
    """Metric of FP32 and INT8 on ``x`` ``[n, ...]`` (labels ``[n]`` int, or None: FP32 is the reference).

    fp32_pred: FP32's argmax on ``x`` when already known (the FP32 model is then not run).
    metric: ``accuracy`` or ``macro_f1`` (with labels; see :data:`METRICS`).
    """
    if metric not in METRICS:
        raise ConfigError(f"guard metric must be one of {METRICS}, got {metric!r}")
    p32 = run_outputs(fp32, x, [output])[output].argmax(axis=1) if fp32_pred is None else fp32_pred
    p8 = run_outputs(int8, x, [output])[output].argmax(axis=1)
    agreement = float(np.mean(p32 == p8))
    if labels is None:
        return Evaluation("argmax agreement with FP32", 1.0, agreement, agreement, len(x))
    if metric == "macro_f1":
        from edgemer.export.core.verify import macro_f1

        n = int(max(labels.max(initial=0), p32.max(initial=0), p8.max(initial=0))) + 1
        return Evaluation("macro-F1", macro_f1(labels, p32, n), macro_f1(labels, p8, n), agreement, len(x))
    return Evaluation("accuracy", float(np.mean(p32 == labels)), float(np.mean(p8 == labels)), agreement, len(x))


def _with_outputs(model: Any, names: Sequence[str]) -> Any:
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
            have.add(n)
    return m


def quantised_tensors(int8: Any) -> dict[str, tuple[str, float]]:
    """Activation tensor -> (its ``DequantizeLinear`` output, the lowest value the quantisation
    represents), for every quantised activation of a QDQ graph."""
    from onnx import numpy_helper

    inits = {i.name: i for i in int8.graph.initializer}
    dq_of: dict[str, str] = {}
    for node in int8.graph.node:
        if node.op_type == "DequantizeLinear":
            dq_of[node.input[0]] = node.output[0]
    out = {}
    for node in int8.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits and node.output[0] in dq_of:
            low = -np.inf
            if node.input[1] in inits and len(node.input) > 2 and node.input[2] in inits:
                scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
                zp = numpy_helper.to_array(inits[node.input[2]])
                qmin = np.iinfo(zp.dtype).min if np.issubdtype(zp.dtype, np.integer) else -np.inf
                low = float(np.min(scale * (qmin - zp.astype(np.float64))))
            out[node.input[0]] = (dq_of[node.output[0]], low)
    return out


def channel_error(a: np.ndarray, b: np.ndarray, ref: np.ndarray) -> float:
    """Mean over channels (axis 1; the whole tensor for 1-D) of ``min(||a - b||_c / ||ref||_c, 1)``
    (``[n, C, ...]``; 1 = the channel is lost; channels that are ~0 in ``ref`` are skipped)."""
    if a.ndim < 2:
        return float(np.linalg.norm(a - b) / (np.linalg.norm(ref) + 1e-12))
    axes = tuple(i for i in range(a.ndim) if i != 1)
    num = np.sqrt(np.sum((a - b).astype(np.float64) ** 2, axis=axes))
    den = np.sqrt(np.sum(ref.astype(np.float64) ** 2, axis=axes))
    keep = den > 1e-6 * (den.max() + 1e-30)
    return float(np.mean(np.minimum(num[keep] / den[keep], 1.0))) if keep.any() else 0.0


def tensor_errors(fp32_pre: Any, int8: Any, x: np.ndarray) -> list[dict[str, Any]]:
    """Per quantised activation tensor: producer, consumers, own and total relative error (see module doc).

    fp32_pre / int8: ModelProtos (the pre-processed FP32 graph and its QDQ version). x: ``[n, ...]`` inputs.
    Sorted by ``own_error``, largest first.
    """
    pairs = quantised_tensors(int8)
    graph_in = {i.name for i in fp32_pre.graph.input}
    producer = {o: n for n in fp32_pre.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in fp32_pre.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    tensors = [t for t in pairs if t in producer or t in graph_in]
    ref_names = [t for t in tensors if t not in graph_in]
    ref = run_outputs(_with_outputs(fp32_pre, ref_names), x, ref_names, optimise=False) if ref_names else {}
    q_names = [n for t in tensors for n in ((pairs[t][0],) if t in graph_in else (t, pairs[t][0]))]
    got = run_outputs(_with_outputs(int8, q_names), x, q_names, optimise=False)
    rows = []
    for t in tensors:
        t32 = x if t in graph_in else ref[t]
        t8 = x if t in graph_in else got[t]
        dq, low = got[pairs[t][0]], pairs[t][1]
        if low >= -1e-12:  # range starts at 0: onnxruntime folded a Relu into this Q/DQ pair
            t8 = np.maximum(t8, 0.0)
        p = producer.get(t)
        # onnxruntime folds a Relu/Clip into the Q/DQ of the node before it: keep that node too
        up = producer.get(p.input[0]) if p is not None and p.op_type in FOLDED_ACTIVATIONS else None
        rows.append({"tensor": t, "producer": p.name if p is not None else None,
                     "producer_op": p.op_type if p is not None else "graph input",
                     "folded_into": up.name if up is not None else None,
                     "consumers": [c.name for c in consumers.get(t, [])],
                     "own_error": channel_error(dq, t8, t32),
                     "total_error": channel_error(dq, t32, t32),
                     "fp32_range": [float(t32.min()), float(t32.max())]})
    rows.sort(key=lambda r: (-r["own_error"], r["tensor"]))
    return rows


def coverage(int8: Any) -> dict[str, Any]:
    """Share of compute nodes (not Q/DQ, not Constant) of a QDQ graph that run on quantised inputs.

    A node counts as quantised when at least one of its inputs is a ``DequantizeLinear`` output.
    """
    dq_out = {n.output[0] for n in int8.graph.node if n.op_type == "DequantizeLinear"}
    total: Counter = Counter()
    quant: Counter = Counter()
    for n in int8.graph.node:
        if n.op_type in QDQ_OPS or n.op_type == "Constant":
            continue
        total[n.op_type] += 1
        if any(i in dq_out for i in n.input):
            quant[n.op_type] += 1
    nodes, q = sum(total.values()), sum(quant.values())
    return {"nodes": nodes, "quantised_nodes": q, "share": q / nodes if nodes else 0.0,
            "by_op": {op: {"nodes": total[op], "quantised": quant[op]} for op in sorted(total)},
            "quantize_linear_nodes": sum(1 for n in int8.graph.node if n.op_type == "QuantizeLinear")}


def _exclusion_unit(row: dict[str, Any], excluded: set[str]) -> list[str]:
    """Nodes to keep in FP32 so that ``row``'s tensor is no longer quantised."""
    names = [n for n in (row.get("folded_into"), row["producer"]) if n] + list(row["consumers"])
    return [n for n in dict.fromkeys(names) if n not in excluded]


@dataclass
class GuardResult:
    """The guard's outcome. steps: one entry per quantisation (excluded nodes, evaluation).
    excluded: nodes kept in FP32 by the guard (user exclusions not included). final:
    evaluation of the written INT8 model. passed: drop within the bound. errors: per-tensor
    errors of the final model (:func:`tensor_errors`). naive_errors: of the first model."""

    max_drop_points: float
    user_excluded: list[str]
    excluded: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    final: Evaluation | None = None
    passed: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)
    naive_errors: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"max_drop_points": self.max_drop_points, "user_excluded": self.user_excluded,
                "guard_excluded": self.excluded, "steps": self.steps,
                "final": self.final.to_dict() if self.final else None, "passed": self.passed}


def run_guard(fp32_pre_path: Path, int8_path: Path, calibration: np.ndarray, options: OnnxQuantOptions,
              input_name: str, output: str, x_eval: np.ndarray, labels: np.ndarray | None,
              max_drop_points: float = 1.0, exclude: Sequence[str] = (), strict: bool = False,
              max_steps: int = 8, analysis: np.ndarray | None = None, metric: str = "accuracy",
              report_errors: bool = True) -> GuardResult:
    """Quantise ``fp32_pre_path`` into ``int8_path`` within ``max_drop_points`` of FP32 (see module doc).

    Parameters
    ----------
    fp32_pre_path: the pre-processed FP32 model. calibration: ``[n, ...]`` float32 inputs.
    x_eval / labels: evaluation inputs ``[m, ...]`` and int labels ``[m]`` (None: FP32 reference).
    exclude: node names the user keeps in FP32. analysis: inputs for the per-tensor error
    analysis (default: the first 32 evaluation inputs). metric: what ``max_drop_points``
    bounds, ``accuracy`` or ``macro_f1`` (with labels). report_errors: also measure the
    per-tensor errors of a model that met the bound (``errors``; the byo report shows them).

    Raises
    ------
    AccuracyGuardError: ``strict`` and the first INT8 model drops more than the bound.
    ExportError: quantisation failed.
    """
    import onnx

    fp32_pre = onnx.load(str(fp32_pre_path))
    analysis = x_eval[:32] if analysis is None else analysis
    result = GuardResult(max_drop_points=max_drop_points, user_excluded=list(exclude))
    excluded = list(exclude)
    fp32_pred = run_outputs(fp32_pre_path, x_eval, [output])[output].argmax(axis=1)
    for step in range(max_steps + 1):
        quantize_onnx(fp32_pre_path, int8_path, calibration, options, input_name=input_name,
                      nodes_to_exclude=excluded, preprocess=False)
        ev = evaluate(fp32_pre_path, int8_path, x_eval, output, labels, fp32_pred, metric)
        int8 = onnx.load(str(int8_path))
        result.steps.append({"step": step, "excluded": list(excluded), **ev.to_dict()})
        result.final = ev
        ok = ev.drop_points <= max_drop_points + 1e-9
        if ok or step == max_steps:
            result.passed = ok
            if report_errors or not ok:
                result.errors = tensor_errors(fp32_pre, int8, analysis)
            if step == 0:
                result.naive_errors = result.errors
            break
        errors = tensor_errors(fp32_pre, int8, analysis)
        if step == 0:
            result.naive_errors = errors
            if strict:
                top = ", ".join(f"{r['tensor']} (from {r['producer'] or 'input'}, error {r['own_error']:.3f})"
                                for r in errors[:3])
                raise AccuracyGuardError(
                    f"INT8 loses {ev.drop_points:.2f} points of {ev.metric} ({ev.fp32 * 100:.2f} -> "
                    f"{ev.int8 * 100:.2f}), more than --max-drop {max_drop_points:g}; most sensitive tensors: {top}. "
                    f"Re-run without --strict to keep those nodes in FP32 automatically, pass --exclude NODE,..., "
                    f"or try --calibration-method percentile / entropy.")
        unit = next((u for u in (_exclusion_unit(r, set(excluded)) for r in errors) if u), None)
        if unit is None:
            result.passed = False
            result.errors = errors
            break
        excluded += unit
        result.excluded += unit
    return result


@dataclass(frozen=True)
class GuardTask:
    """What the guard of a trained export bounds (:func:`guarded_quantise`).

    x_eval: ``[n, ...]`` float32 model inputs; labels: ``[n]`` int class index; output:
    the class-score output's name; metric: ``macro_f1`` or ``accuracy``; max_drop_points:
    the bound, points (0-100); max_steps: re-quantisations at most, one tensor's nodes
    more in FP32 each.
    """

    x_eval: np.ndarray
    labels: np.ndarray
    output: str
    max_drop_points: float
    metric: str = "macro_f1"
    max_steps: int = 8

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"GuardTask.metric must be one of {METRICS}, got {self.metric!r}")
        if self.max_drop_points < 0:
            raise ConfigError(f"GuardTask.max_drop_points must be >= 0, got {self.max_drop_points}")
        if self.max_steps < 0:
            raise ConfigError(f"GuardTask.max_steps must be >= 0, got {self.max_steps}")
        if len(self.x_eval) == 0 or len(self.x_eval) != len(self.labels):
            raise ConfigError(f"GuardTask needs as many labels as inputs (> 0), got {len(self.x_eval)} inputs and "
                              f"{len(self.labels)} labels")


GUARD_SCOPE = ("INT8 ONNX only: the fully-integer INT8 TFLite file has no FP32 fallback, so its targets are "
               "reported as measured")


def guarded_quantise(fp32_path: Path, int8_path: Path, calibration: np.ndarray, options: OnnxQuantOptions,
                     input_name: str, task: GuardTask) -> GuardResult:
    """Quantise ``fp32_path`` into ``int8_path`` under the guard; the first step is the plain quantisation.

    While ``task.metric`` drops more than ``task.max_drop_points`` on ``task.x_eval``, the
    nodes around the most sensitive tensor are kept in FP32 and the model is quantised
    again (:func:`run_guard`), at most ``task.max_steps`` times. Never raises for a missed
    bound: the result says ``passed`` False and the steps taken.
    """
    import tempfile

    from edgemer.export.core.quantize import preprocess_onnx

    with tempfile.TemporaryDirectory(prefix="edgemer-guard-") as work:
        pre = preprocess_onnx(fp32_path, Path(work) / "preprocessed.onnx")
        return run_guard(pre, int8_path, calibration, options, input_name, task.output, task.x_eval,
                         np.asarray(task.labels, np.int64), task.max_drop_points, max_steps=task.max_steps,
                         metric=task.metric, report_errors=False)
