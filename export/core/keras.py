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


MAX_CONFIG_BYTES = 16 << 20
"""The largest ``model_config`` attribute read (bytes)."""
MAX_LAYERS = 10_000
MAX_TENSOR_ELEMENTS = 1 << 24
"""The most elements one weight tensor may declare (64 MiB as float32), checked before it is read."""
MAX_TOTAL_ELEMENTS = 1 << 26
"""The most elements all weights, and separately all layer outputs of one forward pass, may add up to."""
MAX_KERNEL = 255
"""The largest kernel, pool or stride size per spatial dimension."""
_H5_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError, IndexError, AttributeError)
"""What h5py raises on a damaged file (its errors subclass these)."""


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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(cfg: dict, key: str, default: Any, lo: int, hi: int, where: str) -> int:
    """``cfg[key]`` as an int in ``[lo, hi]``; ExportError naming ``where`` and the field otherwise."""
    v = cfg.get(key, default)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not _is_int(v) or not lo <= v <= hi:
        raise ExportError(f"{where} field '{key}' is {v!r}; expected an integer in [{lo}, {hi}]")
    return v


def _pair(cfg: dict, key: str, default: Any, where: str, lo: int = 1, hi: int = MAX_KERNEL) -> tuple[int, int]:
    """``cfg[key]`` as two ints in ``[lo, hi]`` (one int means both)."""
    v = cfg.get(key, default)
    values = list(v) if isinstance(v, (list, tuple)) else [v, v]
    if len(values) != 2 or not all(_is_int(x) and lo <= x <= hi for x in values):
        raise ExportError(f"{where} field '{key}' is {v!r}; expected an integer or two in [{lo}, {hi}]")
    return values[0], values[1]


def _choice(cfg: dict, key: str, default: str, choices: tuple[str, ...], where: str) -> str:
    v = cfg.get(key, default)
    if not isinstance(v, str) or v not in choices:
        raise ExportError(f"{where} field '{key}' is {v!r}; supported: {', '.join(choices)}")
    return v


def _number(cfg: dict, key: str, default: float, where: str, lo: float, hi: float) -> float:
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and lo <= v <= hi):
        raise ExportError(f"{where} field '{key}' is {v!r}; expected a finite number in [{lo:g}, {hi:g}]")
    return float(v)


def _model_config(f: Any, path: Path) -> dict[str, Any]:
    """The ``model_config`` attribute, size-checked before it is read, parsed as a JSON object."""
    try:
        if "model_config" not in f.attrs:
            raise DatasetError(f"{path}: no 'model_config' attribute; this HDF5 file holds weights only, not a "
                               f"Keras model")
        size = f.attrs.get_id("model_config").get_storage_size()
        if size > MAX_CONFIG_BYTES:
            raise DatasetError(f"{path}: attribute 'model_config' is {size} bytes (limit {MAX_CONFIG_BYTES})")
        raw = f.attrs["model_config"]
    except _H5_ERRORS as exc:
        raise DatasetError(f"{path}: attribute 'model_config' cannot be read ({exc}); the HDF5 file is damaged") \
            from exc
    if isinstance(raw, np.ndarray) and raw.shape == ():
        raw = raw[()]
    if isinstance(raw, (bytes, np.bytes_)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path}: attribute 'model_config' is not UTF-8 text ({exc})") from exc
    if not isinstance(raw, str):
        raise DatasetError(f"{path}: attribute 'model_config' is a {type(raw).__name__}, not JSON text")
    if len(raw) > MAX_CONFIG_BYTES:
        raise DatasetError(f"{path}: attribute 'model_config' is {len(raw)} characters (limit {MAX_CONFIG_BYTES})")
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise DatasetError(f"{path}: attribute 'model_config' is not valid JSON ({str(exc)[:200]})") from exc
    if not isinstance(config, dict):
        raise DatasetError(f"{path}: attribute 'model_config' is a JSON {type(config).__name__}, not an object")
    return config


def _superblock_length_size(data: Any) -> int:
    """``Size of Lengths`` from the HDF5 superblock (at 0, 512, 1024, ...); 8 when none is found."""
    offset = 0
    while offset + 16 <= len(data):
        if data[offset:offset + 8] == b"\x89HDF\r\n\x1a\n":
            version = data[offset + 8]
            size = data[offset + 14] if version < 2 else data[offset + 10]
            return size if size in (2, 4, 8) else 8
        offset = 512 if offset == 0 else offset * 2
    return 8


def _check_global_heaps(path: Path) -> None:
    """Refuse damaged global heap collections (where variable-length strings such as ``model_config`` live)
    before HDF5 parses them: HDF5 loops forever on a free-space object of size 0, and trusts object sizes
    that run past their collection. Every ``GCOL`` of version 1 in the file is walked as HDF5 walks it."""
    import mmap

    with open(path, "rb") as fh:
        try:
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file: h5py refuses it
            return
        with data:
            length = _superblock_length_size(data)
            header = 8 + length  # index (2), reference count (2), reserved (4), size
            at = data.find(b"GCOL")
            while at >= 0:
                if at + 8 + length <= len(data) and data[at + 4] == 1:
                    size = int.from_bytes(data[at + 8:at + 8 + length], "little")
                    end = at + size
                    if end > len(data):
                        raise DatasetError(f"{path}: HDF5 global heap at byte {at} declares {size} bytes, past the end "
                                           f"of the file; the file is damaged")
                    p = at + 8 + length
                    while p < end:
                        if p + header > end:
                            break  # HDF5 takes a tail too short for an object header as free space
                        index = int.from_bytes(data[p:p + 2], "little")
                        obj = int.from_bytes(data[p + 8:p + 8 + length], "little")
                        need = header + (obj + 7) // 8 * 8 if index else obj
                        if need == 0 or p + need > end:
                            what = "a free-space object of 0 bytes" if need == 0 else f"object {index} of {obj} bytes " \
                                                                                       f"runs past the heap"
                            raise DatasetError(f"{path}: HDF5 global heap at byte {at}: {what} (at byte {p}); the "
                                               f"file is damaged")
                        p += need
                at = data.find(b"GCOL", at + 4)


def _read(path: Path) -> tuple[dict[str, Any], Any]:
    h5py = _h5py()
    try:
        _check_global_heaps(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc})") from exc
    try:
        f = h5py.File(str(path), "r")
    except _H5_ERRORS as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc}); give a Keras .h5/.hdf5 model") from exc
    try:
        return _model_config(f, path), f
    except BaseException:
        f.close()
        raise


def _layers(config: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """Layers as ``{"class", "name", "config", "inputs": [names]}`` in graph order; each input an earlier layer,
    exactly one InputLayer (first) with a fixed ``[None, H, W, C]`` shape."""
    cls = config.get("class_name")
    body = config.get("config", {})
    layers = body.get("layers") if isinstance(body, dict) else body if isinstance(body, list) else None
    if not isinstance(layers, list) or not layers:
        raise ExportError(f"{path}: model_config field 'config.layers' is missing or empty (model class {cls!r}); "
                          f"not a Keras 2 model config")
    if len(layers) > MAX_LAYERS:
        raise ExportError(f"{path}: model_config has {len(layers)} layers (limit {MAX_LAYERS})")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    prev: str | None = None
    for i, layer in enumerate(layers):
        where = f"{path}: model_config 'config.layers[{i}]'"
        if not isinstance(layer, dict) or not isinstance(layer.get("config", {}), dict):
            raise ExportError(f"{where} is not a layer object with a 'config' object")
        layer_cls = layer.get("class_name")
        name = layer.get("config", {}).get("name") or layer.get("name")
        if not isinstance(layer_cls, str) or not isinstance(name, str) or not 0 < len(name) <= 255:
            raise ExportError(f"{where} needs a 'class_name' and a 'name' (strings)")
        if name in seen:
            raise ExportError(f"{where}: a second layer named '{name}'")
        nodes = layer.get("inbound_nodes")
        if cls == "Sequential" or nodes is None:
            inputs = [] if prev is None else [prev]
        else:
            if nodes and isinstance(nodes, list) and isinstance(nodes[0], dict):
                raise ExportError(f"{path}: Keras 3 model format; save it in the Keras 2 HDF5 format "
                                  f"(model.save('m.h5') with Keras 2 / tf.keras <= 2.15)")
            if not isinstance(nodes, list):
                raise ExportError(f"{where} ('{name}') field 'inbound_nodes' is {nodes!r}, not a list")
            if len(nodes) > 1:
                raise ExportError(f"{path}: layer '{name}' is shared between branches; not supported")
            node = nodes[0] if nodes else []
            if not isinstance(node, list) or not all(isinstance(n, list) and n and isinstance(n[0], str)
                                                     for n in node):
                raise ExportError(f"{where} ('{name}') field 'inbound_nodes' is {nodes!r}; expected "
                                  f"[[[layer name, 0, 0, {{}}], ...]]")
            inputs = [n[0] for n in node]
        missing = [n for n in inputs if n not in seen]
        if missing:
            raise ExportError(f"{where} ('{name}') field 'inbound_nodes' names {missing}, not an earlier layer")
        out.append({"class": layer_cls, "name": name, "config": layer.get("config", {}), "inputs": inputs})
        seen.add(name)
        prev = name
    if out[0]["class"] != "InputLayer":
        if cls != "Sequential" and any(layer.get("inbound_nodes") is not None for layer in layers
                                       if isinstance(layer, dict)):
            raise ExportError(f"{path}: model_config 'config.layers[0]' is a {out[0]['class']}, not an InputLayer")
        shape = out[0]["config"].get("batch_input_shape")
        if shape is None:
            raise ExportError(f"{path}: a Sequential model without an input shape; build it with an Input layer")
        out.insert(0, {"class": "InputLayer", "name": "__input__", "config": {"batch_input_shape": shape},
                       "inputs": []})
        out[1]["inputs"] = ["__input__"]
    for i, layer in enumerate(out[1:], 1):
        if layer["class"] == "InputLayer" or not layer["inputs"]:
            raise ExportError(f"{path}: layer '{layer['name']}' is a second input; only single-input models are "
                              f"supported")
    _input_hwc(out, path)
    return out


def _input_hwc(layers: list[dict[str, Any]], path: Path) -> tuple[int, int, int]:
    shape = layers[0]["config"].get("batch_input_shape")
    ok = (isinstance(shape, list) and len(shape) == 4 and (shape[0] is None or _is_int(shape[0]))
          and all(_is_int(s) and s >= 1 for s in shape[1:]))
    if not ok:
        raise ExportError(f"{path}: layer '{layers[0]['name']}' field 'batch_input_shape' is {shape!r}; only "
                          f"fixed-size image inputs [None, H, W, C] are supported")
    h, w, c = shape[1:]
    if h * w * c > MAX_TENSOR_ELEMENTS:
        raise ExportError(f"{path}: layer '{layers[0]['name']}' field 'batch_input_shape' {shape} has "
                          f"{h * w * c} elements (limit {MAX_TENSOR_ELEMENTS})")
    return h, w, c


def describe_keras_model(path: str | Path) -> KerasModelInfo:
    """Input shape, output size and layer types of a Keras HDF5 model (reads the config only).

    Raises
    ------
    MissingExtraError: h5py missing (extra ``export``).
    DatasetError / ExportError: not a Keras model file, or an unsupported one (the message names the file and
    the field).
    """
    path = Path(path)
    config, f = _read(path)
    try:
        layers = _layers(config, path)
        try:
            version = f.attrs.get("keras_version", b"?")
        except _H5_ERRORS:
            version = "?"
    finally:
        f.close()
    h, w, c = _input_hwc(layers, path)
    final = layers[-1]
    softmax = final["config"].get("activation") == "softmax"
    n_out = 0
    for layer in reversed(layers):
        where = f"{path}: layer '{layer['name']}'"
        if layer["class"] == "Dense":
            n_out = _int(layer["config"], "units", None, 1, MAX_TENSOR_ELEMENTS, where)
            break
        if layer["class"] == "Conv2D":
            n_out = _int(layer["config"], "filters", None, 1, MAX_TENSOR_ELEMENTS, where)
            break
    if isinstance(version, np.ndarray) and version.shape == ():
        version = version[()]
    return KerasModelInfo(input_hwc=(h, w, c), n_outputs=n_out,
                          layer_types=tuple(dict.fromkeys(layer["class"] for layer in layers)),
                          keras_version=bytes(version).decode("utf-8", "replace")
                          if isinstance(version, (bytes, np.bytes_)) else str(version)[:100],
                          final_softmax=softmax)


class _Weights:
    """A layer's weights from ``model_weights/<layer>``, each checked (a dataset in this file, numeric,
    at most :data:`MAX_TENSOR_ELEMENTS`, finite, of the shape the layer needs) before it is used."""

    def __init__(self, h5py: Any, root: Any, path: Path) -> None:
        self.h5py, self.root, self.path, self.total = h5py, root, path, 0

    def __call__(self, layer: str) -> dict[str, np.ndarray]:
        h5py, where = self.h5py, f"{self.path}: model_weights/{layer}"
        try:
            if layer not in self.root:
                return {}
            g = self.root[layer]
            if not isinstance(g, h5py.Group):
                raise ExportError(f"{where} is not a group of weights")
            raw = g.attrs.get("weight_names", [])
        except _H5_ERRORS as exc:
            raise DatasetError(f"{where} cannot be read ({exc}); the HDF5 file is damaged") from exc
        names = np.asarray(raw).ravel().tolist() if isinstance(raw, (list, np.ndarray)) else [raw]
        if raw is not None and isinstance(raw, np.ndarray) and raw.size == 0:
            names = []
        out: dict[str, np.ndarray] = {}
        for n in names:
            if isinstance(n, bytes):
                n = n.decode("utf-8", "replace")
            if not isinstance(n, str) or not n:
                raise ExportError(f"{where} attribute 'weight_names' holds {n!r}, not a weight name")
            out[n.split("/")[-1].split(":")[0]] = self._read(g, n, f"{where}/{n}")
        return out

    def _read(self, g: Any, name: str, where: str) -> np.ndarray:
        h5py = self.h5py
        try:
            link = g.get(name, getlink=True)
            if link is None:
                raise ExportError(f"{where}: listed in 'weight_names' but not in the file")
            if isinstance(link, h5py.ExternalLink):
                raise ExportError(f"{where} is a link to another file ({link.filename!r}); weights must be inside "
                                  f"the Keras file")
            obj = g[name]
            if not isinstance(obj, h5py.Dataset):
                raise ExportError(f"{where} is not a dataset")
            if obj.external or obj.is_virtual:
                raise ExportError(f"{where} keeps its data in another file; weights must be inside the Keras file")
            if obj.dtype.kind not in "fiub":
                raise ExportError(f"{where} has dtype {obj.dtype}; weights must be numeric")
            if obj.size > MAX_TENSOR_ELEMENTS or self.total + obj.size > MAX_TOTAL_ELEMENTS:
                raise ExportError(f"{where} declares shape {obj.shape} ({obj.size} elements; limits "
                                  f"{MAX_TENSOR_ELEMENTS} per tensor, {MAX_TOTAL_ELEMENTS} in all)")
            self.total += obj.size
            data = np.asarray(obj[()], np.float32)
        except _H5_ERRORS as exc:
            raise DatasetError(f"{where} cannot be read ({exc}); the HDF5 file is damaged") from exc
        if not np.all(np.isfinite(data)):
            raise ExportError(f"{where} holds NaN or infinite values")
        return data


def _weight(wts: dict[str, np.ndarray], key: str, shape: tuple[int, ...], where: str,
            required: bool = True) -> np.ndarray | None:
    """``wts[key]`` checked to have ``shape``; None when absent and not required."""
    if key not in wts:
        if required:
            raise ExportError(f"{where} has no weight '{key}' in model_weights")
        return None
    if wts[key].shape != shape:
        raise ExportError(f"{where} weight '{key}' has shape {wts[key].shape}; the layer's config needs {shape}")
    return wts[key]


def load_keras_model(path: str | Path, logits: bool = True) -> Any:
    """The Keras HDF5 model at ``path`` as a torch module in eval mode (input ``[1, C, H, W]``).

    logits: leave out a final softmax, so the module returns logits. The rebuilt graph is run once on
    zeros before it is returned.

    Raises
    ------
    MissingExtraError: h5py or torch missing (extra ``export``).
    DatasetError: not a Keras model file, or a damaged one. ExportError: a layer, option, weight shape or
    size this importer does not support or that the file gets wrong (the message names the layer and field).
    """
    torch = require("torch", "export", "Converting a Keras model to PyTorch")
    h5py = _h5py()
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
        try:
            weights_root = f["model_weights"] if "model_weights" in f else f
        except _H5_ERRORS as exc:
            raise DatasetError(f"{path}: group 'model_weights' cannot be read ({exc}); the HDF5 file is damaged") \
                from exc
        weights = _Weights(h5py, weights_root, path)

        modules: dict[str, Any] = {}
        plan: list[tuple[str, str, list[str], str]] = []  # (name, op, inputs, activation)
        shapes: dict[str, tuple[int, ...]] = {}  # name -> (C, H, W) of a 4-D output, (C,) of a 2-D one
        activations = 0
        last = layers[-1]["name"]
        for layer in layers:
            cls, name, cfg, inputs = layer["class"], layer["name"], layer["config"], layer["inputs"]
            where = f"{path}: layer '{name}' ({cls})"
            key = f"l{len(plan)}"
            act = cfg.get("activation", "linear") if cls not in ("Activation",) else "linear"
            if not isinstance(act, str) or act not in ACTIVATIONS:
                raise ExportError(f"{where} field 'activation' is {act!r}; supported {ACTIVATIONS}")
            if logits and name == last and act == "softmax":
                act = "linear"
            if cls == "InputLayer":
                h, w, c = _input_hwc(layers, path)
                shapes[name] = (c, h, w)
                plan.append((name, "input", [], "linear"))
                activations += c * h * w
                continue
            src = shapes[inputs[0]]
            single = cls not in ("Add", "Multiply", "Concatenate")
            if single and len(inputs) != 1:
                raise ExportError(f"{where} field 'inbound_nodes' gives {len(inputs)} inputs; the layer takes one")
            spatial = cls not in ("Add", "Multiply", "Concatenate", "Activation", "ReLU", "Dropout", "Dense",
                                  "Flatten")
            if spatial and len(src) != 3:
                raise ExportError(f"{where} follows a flattened output; it needs an [H, W, C] input")
            c, h, w = src if len(src) == 3 else (src[0], 1, 1)
            if cls in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
                kh, kw = _pair(cfg, "kernel_size", None, where)
                sh, sw = _pair(cfg, "strides", 1, where)
                if _pair(cfg, "dilation_rate", 1, where) != (1, 1):
                    raise ExportError(f"{where} uses dilation; not supported")
                _choice(cfg, "data_format", "channels_last", ("channels_last",), where)
                same = _choice(cfg, "padding", "valid", ("valid", "same"), where) == "same"
                wts = weights(name)
                pt, pb = _tf_same_pads(h, kh, sh) if same else (0, 0)
                pl, pr = _tf_same_pads(w, kw, sw) if same else (0, 0)
                ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
                if ho < 1 or wo < 1:
                    raise ExportError(f"{where} field 'kernel_size' {(kh, kw)} is larger than its input {(h, w)}")
                seq: list[Any] = []
                if (pt, pb, pl, pr) != (0, 0, 0, 0):
                    seq.append(nn.ZeroPad2d((pl, pr, pt, pb)))
                if cls == "Conv2D":
                    filters = _int(cfg, "filters", None, 1, MAX_TENSOR_ELEMENTS, where)
                    k = _weight(wts, "kernel", (kh, kw, c, filters), where)  # [kh, kw, in, out]
                    bias = _weight(wts, "bias", (filters,), where, required=False)
                    conv = nn.Conv2d(c, filters, (kh, kw), (sh, sw), bias=bias is not None)
                    conv.weight.data = torch.from_numpy(k.transpose(3, 2, 0, 1).copy())
                    seq.append(conv)
                    cout, bias_layer = filters, conv
                else:
                    mult = _int(cfg, "depth_multiplier", 1, 1, MAX_TENSOR_ELEMENTS, where)
                    dk = _weight(wts, "depthwise_kernel", (kh, kw, c, mult), where)  # [kh, kw, in, mult]
                    cout = c * mult
                    if cls == "SeparableConv2D":
                        filters = _int(cfg, "filters", None, 1, MAX_TENSOR_ELEMENTS, where)
                        pk = _weight(wts, "pointwise_kernel", (1, 1, cout, filters), where)  # [1, 1, in*mult, out]
                    bias = _weight(wts, "bias", (filters if cls == "SeparableConv2D" else cout,), where,
                                   required=False)
                    dw = nn.Conv2d(c, cout, (kh, kw), (sh, sw), groups=c,
                                   bias=(bias is not None and cls == "DepthwiseConv2D"))
                    dw.weight.data = torch.from_numpy(dk.transpose(2, 3, 0, 1).reshape(cout, 1, kh, kw).copy())
                    seq.append(dw)
                    bias_layer = dw
                    if cls == "SeparableConv2D":
                        pw = nn.Conv2d(cout, filters, 1, bias=bias is not None)
                        pw.weight.data = torch.from_numpy(pk.transpose(3, 2, 0, 1).copy())
                        seq.append(pw)
                        cout, bias_layer = filters, pw
                if bias is not None:
                    bias_layer.bias.data = torch.from_numpy(bias.copy())
                modules[key] = nn.Sequential(*seq)
                shapes[name] = (int(cout), ho, wo)
                plan.append((name, key, inputs, act))
            elif cls == "BatchNormalization":
                axis = cfg.get("axis", -1)
                axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
                if not _is_int(axis) or axis not in (-1, 3):
                    raise ExportError(f"{where} field 'axis' is {cfg.get('axis')!r}; only the channel axis is "
                                      f"supported")
                wts = weights(name)
                bn = nn.BatchNorm2d(c, eps=_number(cfg, "epsilon", 1e-3, where, 1e-12, 1.0))
                gamma = _weight(wts, "gamma", (c,), where, required=False)
                beta = _weight(wts, "beta", (c,), where, required=False)
                bn.weight.data = torch.from_numpy((np.ones(c, np.float32) if gamma is None else gamma).copy())
                bn.bias.data = torch.from_numpy((np.zeros(c, np.float32) if beta is None else beta).copy())
                bn.running_mean.data = torch.from_numpy(_weight(wts, "moving_mean", (c,), where).copy())
                variance = _weight(wts, "moving_variance", (c,), where)
                if np.any(variance < 0):
                    raise ExportError(f"{where} weight 'moving_variance' has negative values")
                bn.running_var.data = torch.from_numpy(variance.copy())
                modules[key] = bn
                shapes[name] = src
                plan.append((name, key, inputs, act))
            elif cls in ("Activation", "ReLU"):
                a = cfg.get("activation", "relu") if cls == "Activation" else "relu"
                if cls == "ReLU" and cfg.get("max_value") is not None:
                    if _number(cfg, "max_value", 6.0, where, 0.0, math.inf) != 6.0:
                        raise ExportError(f"{where} field 'max_value' {cfg['max_value']} is not supported (only 6)")
                    a = "relu6"
                if not isinstance(a, str) or a not in ACTIVATIONS:
                    raise ExportError(f"{where} field 'activation' is {a!r}; supported {ACTIVATIONS}")
                if logits and name == last and a == "softmax":
                    a = "linear"
                shapes[name] = src
                plan.append((name, "identity", inputs, a))
            elif cls in ("MaxPooling2D", "AveragePooling2D"):
                kh, kw = _pair(cfg, "pool_size", 2, where)
                sh, sw = _pair(cfg, "strides", None, where) if cfg.get("strides") is not None else (kh, kw)
                _choice(cfg, "data_format", "channels_last", ("channels_last",), where)
                same = _choice(cfg, "padding", "valid", ("valid", "same"), where) == "same"
                pt, pb = _tf_same_pads(h, kh, sh) if same else (0, 0)
                pl, pr = _tf_same_pads(w, kw, sw) if same else (0, 0)
                ho, wo = (math.ceil(h / sh), math.ceil(w / sw)) if same else ((h - kh) // sh + 1, (w - kw) // sw + 1)
                if ho < 1 or wo < 1:
                    raise ExportError(f"{where} field 'pool_size' {(kh, kw)} is larger than its input {(h, w)}")
                extra = {pb - pt, pr - pl}
                if cls == "MaxPooling2D" and extra <= {0, 1} and pt == pl and 2 * pt <= min(kh, kw):
                    pool = nn.MaxPool2d((kh, kw), (sh, sw), padding=(pt, pl), ceil_mode=(1 in extra))
                elif (pt, pb, pl, pr) == (0, 0, 0, 0):
                    pool = (nn.MaxPool2d if cls == "MaxPooling2D" else nn.AvgPool2d)((kh, kw), (sh, sw))
                else:
                    raise ExportError(f"{where}: padding {(pt, pb, pl, pr)} of 'same' is not supported")
                modules[key] = pool
                try:
                    probe = pool(torch.zeros(1, 1, h, w))
                except RuntimeError as exc:
                    raise ExportError(f"{where}: pooling {(kh, kw)} / {(sh, sw)} on {(h, w)} fails ({exc})") from exc
                if tuple(probe.shape[2:]) != (ho, wo):
                    raise ExportError(f"{where}: pooled size {tuple(probe.shape[2:])} != Keras {(ho, wo)}")
                shapes[name] = (c, ho, wo)
                plan.append((name, key, inputs, act))
            elif cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
                shapes[name] = (c,)
                plan.append((name, "gap" if cls == "GlobalAveragePooling2D" else "gmp", inputs, act))
            elif cls in ("Add", "Multiply"):
                if any(shapes[i] != src for i in inputs):
                    raise ExportError(f"{where} field 'inbound_nodes': its inputs have different shapes "
                                      f"{[shapes[i] for i in inputs]}")
                shapes[name] = src
                plan.append((name, cls.lower(), inputs, act))
            elif cls == "Concatenate":
                axis = cfg.get("axis", -1)
                if not _is_int(axis) or axis not in (-1, 3):
                    raise ExportError(f"{where} field 'axis' is {axis!r}; only the channel axis is supported")
                if any(len(shapes[i]) != len(src) or shapes[i][1:] != src[1:] for i in inputs):
                    raise ExportError(f"{where} field 'inbound_nodes': its inputs' sizes differ "
                                      f"{[shapes[i] for i in inputs]}")
                shapes[name] = (sum(shapes[i][0] for i in inputs),) + src[1:]
                plan.append((name, "concat", inputs, act))
            elif cls == "Flatten":
                shapes[name] = (c * h * w,)
                plan.append((name, "flatten", inputs, act))
            elif cls == "Dense":
                if len(src) != 1:
                    raise ExportError(f"{where} follows an [H, W, C] output {src}; put a Flatten or a global pooling "
                                      f"layer before it")
                units = _int(cfg, "units", None, 1, MAX_TENSOR_ELEMENTS, where)
                wts = weights(name)
                k = _weight(wts, "kernel", (c, units), where)
                bias = _weight(wts, "bias", (units,), where, required=False)
                lin = nn.Linear(c, units, bias=bias is not None)
                lin.weight.data = torch.from_numpy(k.T.copy())
                if bias is not None:
                    lin.bias.data = torch.from_numpy(bias.copy())
                modules[key] = lin
                shapes[name] = (units,)
                plan.append((name, key, inputs, act))
            elif cls == "Dropout":
                shapes[name] = src
                plan.append((name, "identity", inputs, "linear"))
            activations += int(np.prod(shapes[name]))
            if max(np.prod(shapes[name]), activations) > MAX_TOTAL_ELEMENTS or np.prod(shapes[name]) > \
                    MAX_TENSOR_ELEMENTS:
                raise ExportError(f"{where}: output {shapes[name]} takes the graph's activations past the limits "
                                  f"({MAX_TENSOR_ELEMENTS} elements per layer, {MAX_TOTAL_ELEMENTS} in all)")
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
    c, h, w = model.input_chw
    try:
        with torch.no_grad():
            model(torch.zeros(1, c, h, w))
    except RuntimeError as exc:  # a mismatch the checks above did not foresee: the file's layers disagree
        raise ExportError(f"{path}: the rebuilt graph does not run on a [1, {c}, {h}, {w}] input ({exc})") from exc
    return model
