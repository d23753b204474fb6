"""Keras HDF5 (``.h5``/``.hdf5``, Keras 2 format) -> an equivalent PyTorch module, without TensorFlow.

The model's JSON config and weights are read with ``h5py`` and the layer graph is
rebuilt with torch layers, so the usual torch -> ONNX / INT8 / TFLite path applies.
Supported layers (what small vision CNNs such as mini-Xception use): InputLayer,
Conv2D, SeparableConv2D, DepthwiseConv2D, BatchNormalization, Activation, ReLU,
MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, Add,
Concatenate, Multiply, Flatten, Dense, Dropout. TensorFlow's asymmetric ``same``
padding is reproduced exactly (explicit zero padding, or ``ceil_mode`` pooling).

Layouts: Keras runs NHWC, the module runs NCHW (``[1, C, H, W]``, as edgemer's image
front-ends give); kernels are transposed accordingly and ``Flatten`` keeps Keras's
NHWC element order so ``Dense`` weights apply unchanged. A final softmax can be left
out (``logits=True``) so the module returns logits (its argmax is unchanged).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemer._extras import require
from edgemer.errors import DatasetError, ExportError

SUPPORTED = ("InputLayer", "Conv2D", "SeparableConv2D", "DepthwiseConv2D", "BatchNormalization", "Activation", "ReLU",
             "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Add", "Concatenate",
             "Multiply", "Flatten", "Dense", "Dropout")
ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "tanh", "softmax")


@dataclass(frozen=True)
class KerasModelInfo:
    """What the file holds: input ``(height, width, channels)``, class count, layer types, Keras version."""

    input_hwc: tuple[int, int, int]
    n_outputs: int
    layer_types: tuple[str, ...]
    keras_version: str
    final_softmax: bool


def _h5py():
    return require("h5py", "export", "Reading a Keras .hdf5 model (without TensorFlow)")


def _tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) for one spatial dimension."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


def _read(path: Path) -> tuple[dict[str, Any], Any]:
    h5py = _h5py()
    try:
        f = h5py.File(str(path), "r")
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc}); give a Keras .h5/.hdf5 model") from exc
    raw = f.attrs.get("model_config")
    if raw is None:
        f.close()
        raise DatasetError(f"{path}: no 'model_config' attribute; this HDF5 file holds weights only, not a Keras model")
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    return config, f


def _layers(config: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """Layers as ``{"class", "name", "config", "inputs": [names]}`` in graph order."""
    cls = config.get("class_name")
    body = config.get("config", {})
    layers = body.get("layers", body if isinstance(body, list) else None)
    if layers is None:
        raise ExportError(f"{path}: unrecognised Keras model config (class {cls!r})")
    out: list[dict[str, Any]] = []
    prev: str | None = None
    for layer in layers:
        name = layer.get("config", {}).get("name") or layer.get("name")
        nodes = layer.get("inbound_nodes")
        if cls == "Sequential" or nodes is None:
            inputs = [] if prev is None else [prev]
        else:
            if nodes and isinstance(nodes[0], dict):
                raise ExportError(f"{path}: Keras 3 model format; save it in the Keras 2 HDF5 format "
                                  f"(model.save('m.h5') with Keras 2 / tf.keras <= 2.15)")
            if len(nodes) > 1:
                raise ExportError(f"{path}: layer '{name}' is shared between branches; not supported")
            inputs = [n[0] for n in nodes[0]] if nodes else []
        out.append({"class": layer["class_name"], "name": name, "config": layer.get("config", {}), "inputs": inputs})
        prev = name
    if cls == "Sequential" and (not out or out[0]["class"] != "InputLayer"):
        shape = out[0]["config"].get("batch_input_shape") if out else None
        if shape is None:
            raise ExportError(f"{path}: a Sequential model without an input shape; build it with an Input layer")
        out.insert(0, {"class": "InputLayer", "name": "__input__", "config": {"batch_input_shape": shape},
                       "inputs": []})
        out[1]["inputs"] = ["__input__"]
    return out


def describe_keras_model(path: str | Path) -> KerasModelInfo:
    """Input shape, output size and layer types of a Keras HDF5 model (reads the config only).

    Raises
    ------
    MissingExtraError: h5py missing (extra ``export``).
    DatasetError / ExportError: not a Keras model file, or an unsupported one.
    """
    path = Path(path)
    config, f = _read(path)
    try:
        layers = _layers(config, path)
        version = f.attrs.get("keras_version", b"?")
    finally:
        f.close()
    shape = layers[0]["config"].get("batch_input_shape")
    if not shape or len(shape) != 4 or any(s is None for s in shape[1:]):
        raise ExportError(f"{path}: input shape {shape}; only fixed-size image inputs [None, H, W, C] are supported")
    final = layers[-1]
    softmax = (final["config"].get("activation") == "softmax")
    n_out = None
    for layer in reversed(layers):
        if layer["class"] in ("Dense",):
            n_out = int(layer["config"]["units"])
            break
        if layer["class"] in ("Conv2D",):
            n_out = int(layer["config"]["filters"])
            break
    return KerasModelInfo(input_hwc=(int(shape[1]), int(shape[2]), int(shape[3])), n_outputs=int(n_out or 0),
                          layer_types=tuple(dict.fromkeys(layer["class"] for layer in layers)),
                          keras_version=version.decode() if isinstance(version, bytes) else str(version),
                          final_softmax=softmax)


def load_keras_model(path: str | Path, logits: bool = True) -> Any:
    """The Keras HDF5 model at ``path`` as a torch module in eval mode (input ``[1, C, H, W]``).

    logits: leave out a final softmax, so the module returns logits.

    Raises
    ------
    MissingExtraError: h5py or torch missing (extra ``export``).
    DatasetError: not a Keras model file. ExportError: a layer or option this importer
    does not support (named in the message).
    """
    torch = require("torch", "export", "Converting a Keras model to PyTorch")
    nn = torch.nn
    F = torch.nn.functional
    path = Path(path)
    config, f = _read(path)
    try:
        layers = _layers(config, path)
        unsupported = sorted({layer["class"] for layer in layers} - set(SUPPORTED))
        if unsupported:
            raise ExportError(f"{path}: Keras layer type(s) {unsupported} are not supported by edgemer's importer "
                              f"(supported: {', '.join(SUPPORTED)})")
        weights_root = f["model_weights"] if "model_weights" in f else f

        def weights(name: str) -> dict[str, np.ndarray]:
            if name not in weights_root:
                return {}
            g = weights_root[name]
            names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs.get("weight_names", [])]
            out = {}
            for n in names:
                key = n.split("/")[-1].split(":")[0]
                out[key] = np.asarray(g[n], np.float32)
            return out

        modules: dict[str, Any] = {}
        plan: list[tuple[str, str, list[str], str]] = []  # (name, op, inputs, activation)
        shapes: dict[str, tuple[int, int, int]] = {}  # name -> (C, H, W)
        last = layers[-1]["name"]
        for layer in layers:
            cls, name, cfg, inputs = layer["class"], layer["name"], layer["config"], layer["inputs"]
            key = f"l{len(plan)}"
            act = cfg.get("activation", "linear") if cls not in ("Activation",) else "linear"
            if act not in ACTIVATIONS:
                raise ExportError(f"{path}: layer '{name}' uses activation {act!r}; supported {ACTIVATIONS}")
            if logits and name == last and act == "softmax":
                act = "linear"
            if cls == "InputLayer":
                _, h, w, c = cfg["batch_input_shape"]
                shapes[name] = (int(c), int(h), int(w))
                plan.append((name, "input", [], "linear"))
                continue
            src = shapes[inputs[0]]
            c, h, w = src
            if cls in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
                kh, kw = _pair(cfg["kernel_size"])
                sh, sw = _pair(cfg.get("strides", 1))
                if _pair(cfg.get("dilation_rate", 1)) != (1, 1):
                    raise ExportError(f"{path}: layer '{name}' uses dilation; not supported")
                if cfg.get("data_format", "channels_last") != "channels_last":
                    raise ExportError(f"{path}: layer '{name}' is channels_first; only channels_last is supported")
                wts = weights(name)
                same = cfg.get("padding", "valid") == "same"
                pt, pb = _tf_same_pads(h, kh, sh) if same else (0, 0)
                pl, pr = _tf_same_pads(w, kw, sw) if same else (0, 0)
                seq: list[Any] = []
                if (pt, pb, pl, pr) != (0, 0, 0, 0):
                    seq.append(nn.ZeroPad2d((pl, pr, pt, pb)))
                bias = wts.get("bias")
                if cls == "Conv2D":
                    k = wts["kernel"]  # [kh, kw, in, out]
                    conv = nn.Conv2d(c, k.shape[3], (kh, kw), (sh, sw), bias=bias is not None)
                    conv.weight.data = torch.from_numpy(k.transpose(3, 2, 0, 1).copy())
                    seq.append(conv)
                    cout = k.shape[3]
                else:
                    dk = wts["depthwise_kernel"]  # [kh, kw, in, mult]
                    mult = dk.shape[3]
                    dw = nn.Conv2d(c, c * mult, (kh, kw), (sh, sw), groups=c,
                                   bias=(bias is not None and cls == "DepthwiseConv2D"))
                    dw.weight.data = torch.from_numpy(dk.transpose(2, 3, 0, 1).reshape(c * mult, 1, kh, kw).copy())
                    seq.append(dw)
                    cout = c * mult
                    if cls == "SeparableConv2D":
                        pk = wts["pointwise_kernel"]  # [1, 1, in*mult, out]
                        pw = nn.Conv2d(c * mult, pk.shape[3], 1, bias=bias is not None)
                        pw.weight.data = torch.from_numpy(pk.transpose(3, 2, 0, 1).copy())
                        seq.append(pw)
                        cout = pk.shape[3]
                        bias_layer = pw
                    else:
                        bias_layer = dw
                if bias is not None:
                    (seq[-1] if cls == "Conv2D" else bias_layer).bias.data = torch.from_numpy(bias.copy())
                modules[key] = nn.Sequential(*seq)
                ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
                shapes[name] = (int(cout), ho, wo)
                plan.append((name, key, inputs, act))
            elif cls == "BatchNormalization":
                wts = weights(name)
                axis = cfg.get("axis", -1)
                if (axis[0] if isinstance(axis, list) else axis) not in (-1, 3):
                    raise ExportError(f"{path}: layer '{name}' normalises axis {axis}; only the channel axis is supported")
                bn = nn.BatchNorm2d(c, eps=float(cfg.get("epsilon", 1e-3)))
                bn.weight.data = torch.from_numpy(wts.get("gamma", np.ones(c, np.float32)).copy())
                bn.bias.data = torch.from_numpy(wts.get("beta", np.zeros(c, np.float32)).copy())
                bn.running_mean.data = torch.from_numpy(wts["moving_mean"].copy())
                bn.running_var.data = torch.from_numpy(wts["moving_variance"].copy())
                modules[key] = bn
                shapes[name] = src
                plan.append((name, key, inputs, act))
            elif cls in ("Activation", "ReLU"):
                a = cfg.get("activation", "relu") if cls == "Activation" else "relu"
                if cls == "ReLU" and cfg.get("max_value") is not None:
                    if float(cfg["max_value"]) != 6.0:
                        raise ExportError(f"{path}: layer '{name}': ReLU max_value {cfg['max_value']} not supported")
                    a = "relu6"
                if a not in ACTIVATIONS:
                    raise ExportError(f"{path}: layer '{name}' uses activation {a!r}; supported {ACTIVATIONS}")
                if logits and name == last and a == "softmax":
                    a = "linear"
                shapes[name] = src
                plan.append((name, "identity", inputs, a))
            elif cls in ("MaxPooling2D", "AveragePooling2D"):
                kh, kw = _pair(cfg.get("pool_size", 2))
                sh, sw = _pair(cfg.get("strides") or (kh, kw))
                same = cfg.get("padding", "valid") == "same"
                pt, pb = _tf_same_pads(h, kh, sh) if same else (0, 0)
                pl, pr = _tf_same_pads(w, kw, sw) if same else (0, 0)
                ho, wo = (math.ceil(h / sh), math.ceil(w / sw)) if same else ((h - kh) // sh + 1, (w - kw) // sw + 1)
                extra = {pb - pt, pr - pl}
                if cls == "MaxPooling2D" and extra <= {0, 1} and pt == pl:
                    pool = nn.MaxPool2d((kh, kw), (sh, sw), padding=(pt, pl), ceil_mode=(1 in extra))
                elif (pt, pb, pl, pr) == (0, 0, 0, 0):
                    pool = (nn.MaxPool2d if cls == "MaxPooling2D" else nn.AvgPool2d)((kh, kw), (sh, sw))
                else:
                    raise ExportError(f"{path}: layer '{name}': {cls} with padding {(pt, pb, pl, pr)} not supported")
                modules[key] = pool
                probe = pool(torch.zeros(1, 1, h, w))
                if tuple(probe.shape[2:]) != (ho, wo):
                    raise ExportError(f"{path}: layer '{name}': pooled size {tuple(probe.shape[2:])} != Keras {(ho, wo)}")
                shapes[name] = (c, ho, wo)
                plan.append((name, key, inputs, act))
            elif cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
                shapes[name] = (c, 1, 1)
                plan.append((name, "gap" if cls == "GlobalAveragePooling2D" else "gmp", inputs, act))
            elif cls in ("Add", "Multiply"):
                shapes[name] = src
                plan.append((name, cls.lower(), inputs, act))
            elif cls == "Concatenate":
                if cfg.get("axis", -1) not in (-1, 3):
                    raise ExportError(f"{path}: layer '{name}' concatenates axis {cfg.get('axis')}; only channels")
                shapes[name] = (sum(shapes[i][0] for i in inputs), h, w)
                plan.append((name, "concat", inputs, act))
            elif cls == "Flatten":
                shapes[name] = (c * h * w, 1, 1)
                plan.append((name, "flatten", inputs, act))
            elif cls == "Dense":
                wts = weights(name)
                k = wts["kernel"]
                lin = nn.Linear(k.shape[0], k.shape[1], bias="bias" in wts)
                lin.weight.data = torch.from_numpy(k.T.copy())
                if "bias" in wts:
                    lin.bias.data = torch.from_numpy(wts["bias"].copy())
                modules[key] = lin
                shapes[name] = (int(k.shape[1]), 1, 1)
                plan.append((name, key, inputs, act))
            elif cls == "Dropout":
                shapes[name] = src
                plan.append((name, "identity", inputs, "linear"))
    finally:
        f.close()

    class KerasGraph(nn.Module):
        """A Keras layer graph replayed with torch ops (NCHW)."""

        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleDict(modules)
            self.plan = plan
            self.input_chw = shapes[layers[0]["name"]]

        def forward(self, x):
            values: dict[str, Any] = {}
            for name, op, inputs, act in self.plan:
                args = [values[i] for i in inputs]
                if op == "input":
                    y = x
                elif op == "identity":
                    y = args[0]
                elif op == "gap":
                    y = args[0].mean(dim=(2, 3))
                elif op == "gmp":
                    y = args[0].amax(dim=(2, 3))
                elif op == "add":
                    y = args[0]
                    for a in args[1:]:
                        y = y + a
                elif op == "multiply":
                    y = args[0]
                    for a in args[1:]:
                        y = y * a
                elif op == "concat":
                    y = torch.cat(args, dim=1)
                elif op == "flatten":
                    y = args[0].permute(0, 2, 3, 1).reshape(args[0].shape[0], -1) if args[0].dim() == 4 else args[0]
                else:
                    y = self.layers[op](args[0])
                if act == "relu":
                    y = F.relu(y)
                elif act == "relu6":
                    y = F.relu6(y)
                elif act == "sigmoid":
                    y = torch.sigmoid(y)
                elif act == "tanh":
                    y = torch.tanh(y)
                elif act == "softmax":
                    y = F.softmax(y, dim=1)
                values[name] = y
            out = values[self.plan[-1][0]]
            return out.reshape(out.shape[0], -1) if out.dim() == 4 else out

    model = KerasGraph()
    model.eval()
    return model
