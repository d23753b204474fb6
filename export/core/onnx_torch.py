"""A small ONNX -> torch converter for CNN and MLP classifiers (no extra package needed).

It rebuilds an ONNX graph as a ``torch.nn.Module`` that runs the nodes in their (already
topological) order, so litert-torch can turn a model that exists only as ONNX into a
fully-integer INT8 TFLite file (:mod:`edgemer.export.core.onnx_tflite`). Weights become
``nn.Conv2d`` / ``nn.Linear`` layers where they are constant, so PT2E quantises them like
any edgemer model. Supported ops: :data:`SUPPORTED_OPS`; anything else raises
:class:`UnsupportedOnnxError` naming the op, and the export records it instead of a TFLite file.
When ``onnx2torch`` is installed it is used instead (it covers far more ops).
"""
from __future__ import annotations

import operator
from typing import Any, Callable

import numpy as np

from edgemer.errors import EdgemerError


class UnsupportedOnnxError(EdgemerError):
    """The ONNX graph uses an op (or an op variant) the built-in converter does not handle."""


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads_2d(pads: list[int]) -> tuple[int, int] | None:
    """ONNX [top, left, bottom, right] as torch's symmetric (h, w) padding, or None when asymmetric."""
    if not pads:
        return (0, 0)
    top, left, bottom, right = pads
    return (top, left) if (top, left) == (bottom, right) else None


def onnx_to_module(proto: Any) -> Any:
    """``proto`` (one float input, opset >= 13, static shapes) as an eval-mode ``torch.nn.Module``.

    Raises
    ------
    UnsupportedOnnxError: an op outside :data:`SUPPORTED_OPS`, or a variant of one (e.g.
        asymmetric conv padding, a non-constant shape) that it does not convert.
    """
    import torch
    from onnx import numpy_helper
    from torch import nn

    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])

    def const(name: str, node: Any) -> np.ndarray:
        if name not in consts:
            raise UnsupportedOnnxError(f"{node.op_type} node '{node.name}': input '{name}' must be a constant")
        return consts[name]

    unary = _unary_table()
    layers = nn.ModuleDict()
    steps: list[tuple[list[str], str, Callable[..., Any] | None, str | None]] = []

    def layer(module: Any) -> None:
        layers[f"n{len(layers)}"] = module

    for node in proto.graph.node:
        op, a = node.op_type, _attrs(node)
        ins = [i for i in node.input if i and i not in consts]
        fn: Callable[..., Any] | None = None
        if op == "Constant":
            continue
        if op == "Conv":
            w = const(node.input[1], node)
            pads = _pads_2d(list(a.get("pads", [])))
            if w.ndim != 4 or pads is None or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise UnsupportedOnnxError(f"Conv node '{node.name}': only 2-D convolutions with symmetric "
                                           f"explicit padding are converted")
            conv = nn.Conv2d(w.shape[1] * a.get("group", 1), w.shape[0], tuple(w.shape[2:]),
                             stride=tuple(a.get("strides", [1, 1])), padding=pads,
                             dilation=tuple(a.get("dilations", [1, 1])), groups=a.get("group", 1),
                             bias=len(node.input) > 2 and bool(node.input[2]))
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.array(w, np.float32)))
                if conv.bias is not None:
                    conv.bias.copy_(torch.from_numpy(np.array(const(node.input[2], node), np.float32)))
            layer(conv)
        elif op in ("Gemm", "MatMul") and node.input[1] in consts:
            w = const(node.input[1], node).astype(np.float32)
            if op == "Gemm":
                if a.get("transA", 0):
                    raise UnsupportedOnnxError(f"Gemm node '{node.name}': transA=1 is not converted")
                w = (w.T if not a.get("transB", 0) else w) * a.get("alpha", 1.0)
            else:
                if w.ndim != 2:
                    raise UnsupportedOnnxError(f"MatMul node '{node.name}': only a 2-D constant right operand")
                w = w.T
            has_bias = op == "Gemm" and len(node.input) > 2 and bool(node.input[2])
            lin = nn.Linear(w.shape[1], w.shape[0], bias=has_bias)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
                if has_bias:
                    lin.bias.copy_(torch.from_numpy(const(node.input[2], node).astype(np.float32)
                                                    * a.get("beta", 1.0)).reshape(-1))
            layer(lin)
        elif op == "BatchNormalization":
            scale, bias, mean, var = (const(n, node) for n in node.input[1:5])
            bn = nn.BatchNorm2d(scale.size, eps=a.get("epsilon", 1e-5)).eval()
            with torch.no_grad():
                for p, v in ((bn.weight, scale), (bn.bias, bias), (bn.running_mean, mean), (bn.running_var, var)):
                    p.copy_(torch.from_numpy(np.array(v, np.float32)))
            layer(bn)
        elif op in ("MaxPool", "AveragePool"):
            pads = _pads_2d(list(a.get("pads", [])))
            if pads is None:
                raise UnsupportedOnnxError(f"{op} node '{node.name}': asymmetric padding is not converted")
            kw = dict(kernel_size=tuple(a["kernel_shape"]), stride=tuple(a.get("strides", a["kernel_shape"])),
                      padding=pads, ceil_mode=bool(a.get("ceil_mode", 0)))
            pool = nn.MaxPool2d(**kw) if op == "MaxPool" else nn.AvgPool2d(
                **kw, count_include_pad=bool(a.get("count_include_pad", 0)))
            layer(pool)
        elif op in _ELEMENTWISE:
            fn = _ELEMENTWISE[op]
            ins = list(node.input)
        elif op == "Clip":
            lo, hi = (float(const(n, node)) if n else None
                      for n in (list(node.input[1:3]) + ["", ""])[:2])
            lo = a.get("min", lo) if lo is None else lo
            hi = a.get("max", hi) if hi is None else hi
            fn = (lambda low, high: lambda x: torch.clamp(x, low, high))(lo, hi)
        elif op in unary:
            fn = unary[op](a)
        elif op == "Reshape":
            shape = tuple(int(v) for v in const(node.input[1], node))
            fn = (lambda s: lambda x: torch.reshape(x, s))(shape)
        elif op in ("Squeeze", "Unsqueeze"):
            axes = tuple(int(v) for v in (const(node.input[1], node) if len(node.input) > 1 else a["axes"]))
            fn = (lambda ax, sq: (lambda x: _squeeze(x, ax)) if sq else (lambda x: _unsqueeze(x, ax)))(
                axes, op == "Squeeze")
        elif op == "ReduceMean":
            axes = tuple(int(v) for v in (const(node.input[1], node) if len(node.input) > 1 else a["axes"]))
            fn = (lambda ax, keep: lambda x: torch.mean(x, dim=ax, keepdim=keep))(axes, bool(a.get("keepdims", 1)))
        elif op == "Concat":
            fn = (lambda axis: lambda *xs: torch.cat(xs, dim=axis))(a["axis"])
            ins = list(node.input)
        else:
            raise UnsupportedOnnxError(f"op {op} (node '{node.name}') is not handled by edgemer's built-in "
                                       f"ONNX -> torch converter; install onnx2torch for more ops")
        steps.append((ins, node.output[0], fn, None if fn is not None else f"n{len(layers) - 1}"))

    input_name = proto.graph.input[0].name
    output_names = [o.name for o in proto.graph.output]
    names = {name: _buffer_name(name) for name in consts}

    class Converted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = layers
            for name, value in consts.items():
                self.register_buffer(names[name], torch.from_numpy(np.array(value)), persistent=False)

        def forward(self, x: Any) -> Any:
            values: dict[str, Any] = {input_name: x}
            for ins, out, fn, key in steps:
                args = [values[i] if i in values else getattr(self, names[i]) for i in ins]
                values[out] = fn(*args) if fn is not None else self.layers[key](*args)
            result = [values[o] for o in output_names]
            return result[0] if len(result) == 1 else tuple(result)

    return Converted().eval()


def _buffer_name(name: str) -> str:
    return "c_" + "".join(ch if ch.isalnum() else "_" for ch in name)


def _squeeze(x: Any, axes: tuple[int, ...]) -> Any:
    for ax in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(ax)
    return x


def _unsqueeze(x: Any, axes: tuple[int, ...]) -> Any:
    for ax in sorted(axes):
        x = x.unsqueeze(ax)
    return x


_ELEMENTWISE: dict[str, Callable[..., Any]] = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul,
                                               "Div": operator.truediv}


def _unary_table() -> dict[str, Callable[[dict[str, Any]], Callable[..., Any]]]:
    """Op -> (attributes -> torch function of the node's non-constant inputs)."""
    import torch
    import torch.nn.functional as F

    return {
        "Relu": lambda a: F.relu,
        "Sigmoid": lambda a: torch.sigmoid,
        "Tanh": lambda a: torch.tanh,
        "LeakyRelu": lambda a: (lambda s: lambda x: F.leaky_relu(x, s))(a.get("alpha", 0.01)),
        "Softmax": lambda a: (lambda ax: lambda x: torch.softmax(x, dim=ax))(a.get("axis", -1)),
        "Flatten": lambda a: (lambda ax: lambda x: torch.flatten(x, start_dim=ax))(a.get("axis", 1)),
        "Transpose": lambda a: (lambda p: lambda x: x.permute(*p))(tuple(a["perm"])),
        "GlobalAveragePool": lambda a: lambda x: torch.mean(x, dim=(2, 3), keepdim=True),
        "GlobalMaxPool": lambda a: lambda x: torch.amax(x, dim=(2, 3), keepdim=True),
        "Identity": lambda a: lambda x: x,
        "Dropout": lambda a: lambda x, *rest: x,
    }


SUPPORTED_OPS = frozenset(("Conv", "Gemm", "MatMul", "BatchNormalization", "MaxPool", "AveragePool", "Add", "Sub",
                           "Mul", "Div", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "Softmax", "Flatten",
                           "Transpose", "GlobalAveragePool", "GlobalMaxPool", "Identity", "Dropout", "Reshape",
                           "Squeeze", "Unsqueeze", "ReduceMean", "Concat", "Constant"))
"""Ops :func:`onnx_to_module` converts (MatMul only with a constant 2-D right operand)."""
