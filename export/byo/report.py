"""The export report of ``edgemer export onnx``: ``report.json`` and ``report.md`` in the bundle.

What it holds: the model check (opset, input, ops, what was changed), the front-end and
where each setting came from, the calibration and evaluation data (count, shapes, value
ranges), the INT8 metric before/after and the accuracy guard's steps, per-output max abs
error and argmax agreement of every model file, sizes and the INT8/FP32 ratio, quantised-op
coverage, the top-10 tensors by quantisation error, the TFLite outcome, the targets and
the exact versions of every tool used.
"""
from __future__ import annotations

import contextlib
import platform
from importlib import metadata
from typing import Any

from edgemer.export.core.bundle_writer import toolchain_versions
from edgemer.export.core.verify import target_lines

TOP_NODES = 10


def tool_versions(torch_used: bool = False, onnx2torch_used: bool = False) -> dict[str, str]:
    """Exact versions of the tools the export used (torch, litert-torch and onnx2torch only when used)."""
    out = {"python": platform.python_version(), **toolchain_versions()}
    extra = (["scipy", "opencv-python-headless", "onnxscript"] + (["torchao"] if torch_used else [])
             + (["onnx2torch"] if onnx2torch_used else []))
    for dist in extra:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    if not torch_used:
        for dist in ("torch", "litert-torch"):
            out.pop(dist, None)
    return dict(sorted(out.items()))


def build_report(checked: Any, plan: Any, config: Any, calibration: dict[str, Any], evaluation: dict[str, Any],
                 guard: Any, coverage: dict[str, Any], tflite: Any, verification: dict[str, Any],
                 sizes: dict[str, int]) -> dict[str, Any]:
    """Assemble the report dict (JSON-serialisable) from the export's parts."""
    parity = {label: {"argmax_agreement": row["argmax_agreement"], "max_abs_error": row["max_abs_error"],
                      "accuracy_reference": row["accuracy_reference"], "accuracy_candidate": row["accuracy_candidate"]}
              for label, row in verification["comparisons"].items()}
    file_sizes = {key: row["bytes"] for key, row in verification["models"].items()}
    return {
        "bundle": config.name,
        "modality": config.modality,
        "model_check": checked.summary(),
        "front_end": {"type": plan.kind, "input": plan.input.to_dict(), "class_output": plan.class_output,
                      "labels": list(plan.labels), "nhwc_model_transposed": plan.nhwc, "origin": dict(plan.origin)},
        "calibration": calibration,
        "evaluation": evaluation,
        "quantisation": {**config.quant.to_dict(), "user_excluded": list(config.exclude)},
        "guard": guard.to_dict(),
        "coverage": coverage,
        "top_nodes": guard.errors[:TOP_NODES],
        "naive_top_nodes": guard.naive_errors[:TOP_NODES] if len(guard.steps) > 1 else None,
        "parity": parity,
        "sizes": {"bytes": file_sizes, "int8_fp32_onnx_ratio": sizes["int8-onnx"] / sizes["fp32-onnx"]},
        "tflite": tflite.to_dict(),
        "targets": verification["targets"],
        "passed": verification["passed"],
        "versions": tool_versions(torch_used=tflite.written or "torch" in tflite.route,
                                  onnx2torch_used=tflite.route.startswith("onnx2torch")),
    }


def _pct(v: float) -> str:
    return f"{v * 100:.2f} %"


def report_markdown(r: dict[str, Any]) -> str:
    """The report as Markdown (report.md)."""
    mc, g, cov = r["model_check"], r["guard"], r["coverage"]
    final = g["final"]
    lines = [f"# Export report: {r['bundle']} ({r['modality']})", "",
             f"Overall: **{'PASS' if r['passed'] else 'FAIL'}**", "", "## Model", "",
             f"- file: `{mc['source']}`, opset {mc['opset']} (was {mc['opset_original']}), {mc['nodes']} nodes",
             f"- input `{mc['input']['name']}` {mc['input']['shape']}; outputs "
             + ", ".join(f"`{o['name']}` {o['shape']}" for o in mc["outputs"]),
             "- ops: " + ", ".join(f"{k} x{v}" for k, v in mc["op_counts"].items())]
    if mc["tflite_risky_ops"]:
        lines.append(f"- ops outside the known TFLite-convertible set: {', '.join(mc['tflite_risky_ops'])}")
    lines += [f"- changed: {note}" for note in mc["notes"]]
    fe = r["front_end"]
    lines += ["", "## Front-end", "", f"Type {fe['type']}, model input {fe['input']['shape']}, class output "
              f"`{fe['class_output']}`, labels {', '.join(fe['labels'])}."
              + (" The model took NHWC: a Transpose was put in front so the bundle takes NCHW." if
                 fe["nhwc_model_transposed"] else ""), ""]
    lines += [f"- {k}: {v}" for k, v in fe["origin"].items()]
    for title, d in (("Calibration data", r["calibration"]), ("Evaluation data", r["evaluation"])):
        lines += ["", f"## {title}", ""]
        if "input_shape" in d:
            lines.append(f"{d['samples']} model inputs {d['input_shape']} from {d['files']} files in "
                         f"`{d['folder']}`; values {d['min']:.4g} .. {d['max']:.4g} (mean {d['mean']:.4g}, "
                         f"std {d['std']:.4g}).")
            if d.get("per_channel"):
                lines.append(f"Per channel min {d['per_channel']['min']}, max {d['per_channel']['max']}.")
        if d.get("source"):
            lines.append(f"Source: {d['source']}.")
    lines += ["", "## INT8 accuracy and the guard", "",
              f"{final['metric']}: FP32 {_pct(final['fp32'])}, INT8 {_pct(final['int8'])}: drop "
              f"{final['drop_points']:.2f} points (bound {g['max_drop_points']:g}), on {final['samples']} inputs.", "",
              "| step | nodes kept in FP32 | INT8 metric | drop (pt) |", "|---:|---|---:|---:|"]
    for s in g["steps"]:
        kept = ", ".join(s["excluded"]) or "-"
        lines.append(f"| {s['step']} | {kept} | {_pct(s['int8'])} | {s['drop_points']:.2f} |")
    if g["guard_excluded"]:
        lines += ["", f"The guard kept these nodes in FP32: {', '.join(g['guard_excluded'])}."]
    lines += ["", "## Parity of every model file", "",
              "| comparison | argmax agreement | max abs error per output |", "|---|---:|---|"]
    for label, p in r["parity"].items():
        errs = ", ".join(f"{k} {v:.4g}" for k, v in p["max_abs_error"].items())
        lines.append(f"| {label} | {_pct(p['argmax_agreement'])} | {errs} |")
    sz = r["sizes"]
    lines += ["", "## Size and coverage", "",
              "Sizes: " + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sz["bytes"].items())
              + f"; INT8/FP32 ONNX {sz['int8_fp32_onnx_ratio']:.3f}x.",
              f"Quantised nodes: {cov['quantised_nodes']} of {cov['nodes']} ({_pct(cov['share'])}); by op: "
              + ", ".join(f"{op} {v['quantised']}/{v['nodes']}" for op, v in cov["by_op"].items()) + ".",
              "", f"## Top {TOP_NODES} tensors by quantisation error (written INT8 model)", "",
              "Own error: distortion this tensor's own INT8 rounding/clipping adds (per-channel relative, "
              "averaged); total: against FP32, including everything upstream.", "",
              "| tensor | producer | own error | total error | FP32 range |", "|---|---|---:|---:|---|"]
    for n in r["top_nodes"]:
        lines.append(f"| `{n['tensor']}` | {n['producer'] or 'input'} ({n['producer_op']}) | {n['own_error']:.4g} | "
                     f"{n['total_error']:.4g} | {n['fp32_range'][0]:.4g} .. {n['fp32_range'][1]:.4g} |")
    if r.get("naive_top_nodes"):
        lines += ["", "Before the guard (first INT8 model): "
                  + ", ".join(f"`{n['tensor']}` {n['own_error']:.3g}" for n in r["naive_top_nodes"][:5]) + "."]
    rc = r.get("runtime_check")
    if rc is not None:
        text = (f"The runtime's {rc['front_end']} built from the manifest interprets the INT8 outputs: the "
                f"pipeline can run this bundle." if rc["ready"] else
                f"NOT READY for the pipeline: the runtime front-end fails on this bundle ({rc['reason']}). The "
                f"model files still run through edgemer.backends.")
        lines += ["", "## Runtime check", "", text]
    t = r["tflite"]
    lines += ["", "## TFLite", "", f"Written via {t['route']}." if t["written"] else f"Not written: {t['reason']}."]
    lines += ["", "## Targets", ""]
    lines += [f"- {line}" for line in target_lines(r)]
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in r["versions"].items()), ""]
    return "\n".join(lines)
