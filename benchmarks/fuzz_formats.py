"""The formats ``edgemer bench fuzz`` feeds hostile input to: seeds, case strategies, targets.

A *case* is a plain dict that a worker process turns into files
(:func:`materialize`) before calling the format's target, the reader a user would hit::

    {"files": {relative name: bytes}, "links": {relative name: symlink target},
     "entry": the file or folder given to the reader}

Each :class:`FuzzFormat` draws cases with hypothesis from the seeds of its corpus folder
(``tests/fuzz_corpus/<format>/``, rebuilt by :func:`build_corpus`): the seeds byte-mutated
(:func:`mutated`: bit flips, interesting integers, inserted, deleted, repeated and truncated
ranges, splices) and structured changes only that format knows (manifest fields and
hostile file names, WAV header fields, TOML tables, pickle layouts, ONNX external-data
locations). hypothesis is imported when a strategy is built, never at module import.
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fuzz_corpus"
"""The committed seeds (a source checkout); :func:`corpus_dir` builds them elsewhere when absent."""

HOSTILE_NAMES = ("../outside.onnx", "/etc/passwd", "sub/../../outside.onnx", "./model.onnx", "link.onnx",
                 "linkdir/model.onnx", "C:\\model.onnx", "model.onnx\x00.txt", "", "a" * 300, "~/model.onnx",
                 "..", ".", "sub//model.onnx", "\\\\server\\share\\m.onnx", "manifest.json")
"""File names a hostile bundle may use; ``link.onnx`` and ``linkdir`` are made symlinks leaving the bundle."""
INTERESTING_INTS = (0, 1, -1, 2, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 10 ** 9,
                    10 ** 12, 2 ** 63 - 1, -(2 ** 63), 10 ** 30)


def _json_values():
    from hypothesis import strategies as st

    leaves = st.one_of(st.none(), st.booleans(), st.sampled_from(INTERESTING_INTS), st.integers(-10, 10 ** 6),
                       st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(HOSTILE_NAMES),
                       st.text(max_size=20), st.sampled_from([1e9, 1e12, -1.0, 0.0, 1e308]))
    return st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                        max_leaves=8)


# --------------------------------------------------------------------------- byte mutator

def _mutate(data: bytes, ops: list[tuple[int, int, int, bytes]], other: bytes) -> bytes:
    """Apply atheris/libFuzzer-style mutations: ``(op, position, size, payload)``."""
    b = bytearray(data)
    for op, pos, size, payload in ops:
        n = len(b)
        p = pos % (n + 1)
        if op == 0 and n:  # flip a bit
            b[p % n] ^= 1 << (size % 8)
        elif op == 1 and n:  # set a byte
            b[p % n] = size & 0xFF
        elif op == 2:  # an interesting integer, 1/2/4/8 bytes, either endianness
            width = (1, 2, 4, 8)[size % 4]
            value = INTERESTING_INTS[size % len(INTERESTING_INTS)] % (1 << (8 * width))
            b[p:p + width] = value.to_bytes(width, "big" if size & 16 else "little")
        elif op == 3:  # insert bytes
            b[p:p] = payload
        elif op == 4:  # delete a range
            del b[p:p + 1 + size % 256]
        elif op == 5 and n:  # repeat a range
            chunk = b[p:p + 1 + size % 64]
            b[p:p] = chunk * (1 + size % 8)
        elif op == 6:  # truncate
            del b[p:]
        elif op == 7 and other:  # splice from another seed
            q = size % len(other)
            b[p:p + 1 + size % 128] = other[q:q + 1 + size % 128]
        elif op == 8:  # overwrite bytes
            b[p:p + len(payload)] = payload
    return bytes(b)


def mutated(seeds: list[bytes], max_ops: int = 8):
    """A hypothesis strategy of seeds with 1..max_ops byte mutations."""
    from hypothesis import strategies as st

    op = st.tuples(st.integers(0, 8), st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 16), st.binary(max_size=12))
    return st.builds(lambda i, j, ops: _mutate(seeds[i], ops, seeds[j]), st.integers(0, len(seeds) - 1),
                     st.integers(0, len(seeds) - 1), st.lists(op, min_size=1, max_size=max_ops))


# --------------------------------------------------------------------------- cases on disk

def _plain(name: str) -> bool:
    return bool(name) and not name.startswith("/") and ".." not in name.split("/") and "\x00" not in name


def materialize(folder: Path, case: dict) -> Path:
    """Write the case's files and symlinks under ``folder``; the path of its entry."""
    for name, data in case.get("files", {}).items():
        assert _plain(name), name  # hostile names live inside the files, never in the case's own layout
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for name, target in case.get("links", {}).items():
        assert _plain(name), name
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() and not path.is_symlink():
            os.symlink(target, path)
    for name in case.get("dirs", ()):
        (folder / name).mkdir(parents=True, exist_ok=True)
    return folder / case["entry"]


def _seed_files(name: str) -> dict[str, bytes]:
    folder = corpus_dir() / name
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def corpus_dir() -> Path:
    """The seed corpus: the committed one in a source checkout, else built once into the user cache."""
    if (CORPUS / "wav").is_dir():
        return CORPUS
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgemer" / "fuzz_corpus"
    if not (cache / "wav").is_dir():
        build_corpus(cache)
    return cache


# --------------------------------------------------------------------------- tiny ONNX writer

def _key(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _ld(number: int, payload: bytes | str) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    return _key(number, 2) + _varint(len(payload)) + payload


def _vi(number: int, value: int) -> bytes:
    return _key(number, 0) + _varint(value)


def _value_info(name: str, shape: tuple[int, ...]) -> bytes:
    dims = b"".join(_ld(1, _vi(1, d)) for d in shape)
    tensor_type = _vi(1, 1) + _ld(2, dims)
    return _ld(1, name) + _ld(2, _ld(1, tensor_type))


def onnx_matmul(rows: int = 240, cols: int = 3, external: str | None = None, dims: tuple[int, ...] | None = None,
                offset: int | None = None, length: int | None = None) -> tuple[bytes, bytes]:
    """A MatMul model ``x [1, 4, rows] @ W [rows, cols] -> y [1, 4, cols]`` (opset 13) and its weight
    bytes; with ``external`` the weights are an external-data reference to that location."""
    weights = (np.arange(rows * cols, dtype=np.float32).reshape(rows, cols) / (rows * cols)).tobytes()
    tensor = b"".join(_vi(1, d) for d in (dims or (rows, cols))) + _vi(2, 1) + _ld(8, "W")
    if external is None:
        tensor += _ld(9, weights)
    else:
        entries = [("location", external)] + [(k, str(v)) for k, v in (("offset", offset), ("length", length))
                                              if v is not None]
        tensor += b"".join(_ld(13, _ld(1, k) + _ld(2, v)) for k, v in entries) + _vi(14, 1)
    node = _ld(1, "x") + _ld(1, "W") + _ld(2, "y") + _ld(4, "MatMul")
    graph = _ld(1, node) + _ld(2, "g") + _ld(5, tensor) + _ld(11, _value_info("x", (1, 4, rows))) \
        + _ld(12, _value_info("y", (1, 4, cols)))
    model = _vi(1, 8) + _ld(8, _ld(1, "") + _vi(2, 13)) + _ld(7, graph)
    return model, weights


# --------------------------------------------------------------------------- tiny Keras 2 HDF5 writer

def _keras_layer(cls: str, name: str, inputs: list[str] | None, **config: Any) -> dict:
    layer = {"class_name": cls, "name": name, "config": {"name": name, "trainable": True, **config}}
    if inputs is not None:
        layer["inbound_nodes"] = [[[i, 0, 0, {}] for i in inputs]] if inputs else []
    return layer


def keras_seed_models() -> dict[str, tuple[dict, dict[str, dict[str, Any]]]]:
    """The two Keras 2 seeds as ``{file name: (model_config, {layer: {weight: array}})}`` (synthetic weights):
    a functional 8x8x1 graph using every supported layer type but Dense-on-flatten, and a Sequential
    6x6x2 model without an InputLayer (Conv2D -> Dropout -> Flatten -> Dense)."""
    rng = np.random.default_rng(21)
    w = lambda *shape: rng.normal(0, 0.3, shape).astype(np.float32)  # noqa: E731
    L = _keras_layer
    functional = [
        L("InputLayer", "input_1", [], batch_input_shape=[None, 8, 8, 1], dtype="float32"),
        L("Conv2D", "conv2d_1", ["input_1"], filters=4, kernel_size=[3, 3], strides=[1, 1], padding="same",
          data_format="channels_last", dilation_rate=[1, 1], activation="linear", use_bias=True),
        L("BatchNormalization", "batch_normalization_1", ["conv2d_1"], axis=-1, epsilon=0.001),
        L("Activation", "activation_1", ["batch_normalization_1"], activation="relu"),
        L("SeparableConv2D", "separable_conv2d_1", ["activation_1"], filters=4, kernel_size=[3, 3], strides=[1, 1],
          padding="same", depth_multiplier=1, activation="linear", use_bias=False),
        L("Add", "add_1", ["activation_1", "separable_conv2d_1"]),
        L("ReLU", "re_lu_1", ["add_1"], max_value=6.0),
        L("Multiply", "multiply_1", ["re_lu_1", "activation_1"]),
        L("Concatenate", "concatenate_1", ["multiply_1", "add_1"], axis=-1),
        L("MaxPooling2D", "max_pooling2d_1", ["concatenate_1"], pool_size=[3, 3], strides=[2, 2], padding="same"),
        L("DepthwiseConv2D", "depthwise_conv2d_1", ["max_pooling2d_1"], kernel_size=[3, 3], strides=[1, 1],
          padding="valid", depth_multiplier=1, activation="tanh", use_bias=True),
        L("AveragePooling2D", "average_pooling2d_1", ["depthwise_conv2d_1"], pool_size=[1, 1], padding="valid"),
        L("GlobalMaxPooling2D", "global_max_pooling2d_1", ["average_pooling2d_1"]),
        L("Dense", "dense_1", ["global_max_pooling2d_1"], units=3, activation="softmax", use_bias=True),
    ]
    functional_weights = {
        "conv2d_1": {"kernel": w(3, 3, 1, 4), "bias": w(4)},
        "batch_normalization_1": {"gamma": 1 + w(4), "beta": w(4), "moving_mean": w(4),
                                  "moving_variance": 1 + np.abs(w(4))},
        "separable_conv2d_1": {"depthwise_kernel": w(3, 3, 4, 1), "pointwise_kernel": w(1, 1, 4, 4)},
        "depthwise_conv2d_1": {"depthwise_kernel": w(3, 3, 8, 1), "bias": w(8)},
        "dense_1": {"kernel": w(8, 3), "bias": w(3)},
    }
    sequential = [
        L("Conv2D", "conv2d_1", None, batch_input_shape=[None, 6, 6, 2], filters=3, kernel_size=[2, 2],
          strides=[2, 2], padding="valid", activation="relu", use_bias=True),
        L("Dropout", "dropout_1", None, rate=0.5),
        L("Flatten", "flatten_1", None),
        L("Dense", "dense_1", None, units=2, activation="sigmoid", use_bias=True),
    ]
    sequential_weights = {"conv2d_1": {"kernel": w(2, 2, 2, 3), "bias": w(3)},
                          "dense_1": {"kernel": w(27, 2), "bias": w(2)}}
    return {"functional.h5": ({"class_name": "Model", "config": {"name": "fuzz_functional", "layers": functional,
                                                                "input_layers": [["input_1", 0, 0]],
                                                                "output_layers": [["dense_1", 0, 0]]}},
                              functional_weights),
            "sequential.h5": ({"class_name": "Sequential", "config": {"name": "fuzz_sequential",
                                                                      "layers": sequential}}, sequential_weights)}


def keras_h5(config: Any, weights: dict[str, dict[str, Any]], model_config: Any = None,
             weight_names: dict[str, Any] | None = None) -> bytes:
    """A Keras 2 HDF5 file (the layout ``model.save('m.h5')`` writes) as bytes, written with h5py.

    config: the ``model_config`` JSON; ``model_config`` overrides the attribute itself (any value h5py
    stores; ``"missing"`` leaves it out). weights: ``{layer: {weight: value}}`` where value is an array
    (a dataset ``layer/weight:0``), a shape tuple (a dataset declared with that shape, never written),
    ``None`` (listed in ``weight_names`` but absent) or ``"group"`` (a group where a dataset belongs).
    weight_names: per layer, a value replacing its ``weight_names`` attribute.
    """
    import h5py

    bio = io.BytesIO()
    with h5py.File(bio, "w") as f:
        f.attrs["keras_version"] = b"2.0.5"
        f.attrs["backend"] = b"tensorflow"
        if model_config is None:
            f.attrs["model_config"] = json.dumps(config, allow_nan=True).encode("utf-8", "surrogatepass")
        elif not (isinstance(model_config, str) and model_config == "missing"):
            f.attrs["model_config"] = model_config
        root = f.create_group("model_weights")
        root.attrs["layer_names"] = np.array([k.encode("utf-8", "surrogatepass") for k in weights], dtype="S")
        for layer, values in weights.items():
            g = root.create_group(layer)
            names = [f"{layer}/{k}:0" for k in values]
            g.attrs["weight_names"] = np.array([n.encode("utf-8", "surrogatepass") for n in names], dtype="S") \
                if names else np.array([], np.float64)
            if weight_names and layer in weight_names:
                g.attrs["weight_names"] = weight_names[layer]
            for name, value in zip(names, values.values()):
                if isinstance(value, np.ndarray):
                    g.create_dataset(name, data=value)
                elif isinstance(value, tuple):
                    g.create_dataset(name, shape=value, dtype=np.float32)
                elif value == "group":
                    g.create_group(name)
    return bio.getvalue()


# --------------------------------------------------------------------------- seed corpus

def _wav(rate: int, samples: np.ndarray, tag: int = 1, extensible: bool = False) -> bytes:
    samples = samples if samples.ndim == 2 else samples[:, None]
    channels, bits = samples.shape[1], samples.dtype.itemsize * 8
    if samples.dtype == np.int32 and bits == 32 and tag == 1 and extensible:
        pass
    data = samples.astype(samples.dtype.newbyteorder("<")).tobytes()
    block = channels * bits // 8
    if extensible:
        guid = struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0) + guid
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _wesad_subject(seconds: float = 4.0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = lambda rate: int(seconds * rate)  # noqa: E731
    return {"subject": "S2", "label": np.repeat(np.array([1, 2, 3], np.int64), n(700) // 3 + 1)[:n(700)],
            "signal": {"wrist": {"EDA": 4 + rng.random((n(4), 1)), "BVP": rng.normal(0, 50, (n(64), 1)),
                                 "TEMP": 33 + rng.random((n(4), 1)), "ACC": rng.normal(0, 30, (n(32), 3))},
                       "chest": {}}}


def _bundle_manifest(model_file: str, model: bytes, extra: dict[str, bytes]) -> dict:
    import hashlib

    from edgemer.bundle import shipped_bundles_dir

    physio = json.loads((shipped_bundles_dir() / "physio-demo" / "manifest.json").read_text())
    files = {model_file: model, **extra}
    return {"schema_version": 1, "name": "fuzz-tiny", "modality": "physio", "task": "stress",
            "labels": ["baseline", "stress", "amusement"],
            "models": {"onnx_fp32": {"file": model_file, "format": "onnx", "precision": "fp32"}},
            "inputs": [{"name": "x", "shape": [1, 4, 240], "dtype": "float32"}],
            "outputs": [{"name": "y", "shape": [1, 4, 3], "dtype": "float32"}],
            "front_end": physio["front_end"], "provenance": {"synthetic_data": True, "note": "fuzz seed"},
            "files": {k: {"sha256": hashlib.sha256(v).hexdigest(), "bytes": len(v)} for k, v in files.items()}}


def build_corpus(root: Path) -> None:
    """Write the valid seeds of every format under ``root/<format>/`` (a few KiB each)."""
    root = Path(root)
    t = np.arange(1600) / 16000.0
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    wav = root / "wav"
    wav.mkdir(parents=True, exist_ok=True)
    (wav / "pcm16_mono.wav").write_bytes(_wav(16000, (tone * 32767).astype(np.int16)))
    stereo = np.stack([tone, -tone], 1)
    (wav / "pcm8_stereo.wav").write_bytes(_wav(8000, ((stereo[::2] + 1) * 127.5).astype(np.uint8)))
    (wav / "pcm32_44k1.wav").write_bytes(_wav(44100, (tone * 2 ** 31 * 0.9).astype(np.int32)))
    (wav / "float32.wav").write_bytes(_wav(16000, tone.astype(np.float32), tag=3))
    (wav / "extensible_pcm16.wav").write_bytes(_wav(16000, (tone * 32767).astype(np.int16), extensible=True))
    pcm24 = (tone * (2 ** 23 - 1)).astype(np.int32)
    raw = b"".join(int(v).to_bytes(4, "little", signed=True)[:3] for v in pcm24[:400])
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 48000, 3, 24)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(raw)) + raw
    (wav / "pcm24.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)

    import cv2

    yy, xx = np.mgrid[0:40, 0:32]
    img = np.stack([(xx * 8) % 256, (yy * 6) % 256, ((xx + yy) * 4) % 256], -1).astype(np.uint8)
    cv2.circle(img, (16, 20), 10, (200, 180, 160), -1)
    images = root / "image"
    images.mkdir(parents=True, exist_ok=True)
    for ext in (".png", ".jpg", ".bmp", ".ppm", ".webp", ".tiff"):
        ok, enc = cv2.imencode(ext, img)
        if ok:
            (images / f"face{ext}").write_bytes(enc.tobytes())
    ok, enc = cv2.imencode(".pgm", cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    (images / "grey.pgm").write_bytes(enc.tobytes())

    video = root / "video"
    video.mkdir(parents=True, exist_ok=True)
    for name, fourcc in (("clip.avi", "MJPG"), ("clip.mp4", "mp4v")):
        w = cv2.VideoWriter(str(video / name), cv2.VideoWriter_fourcc(*fourcc), 10.0, (32, 40))
        for k in range(6):
            w.write(np.roll(img, 3 * k, axis=1))
        w.release()
        if not (video / name).is_file() or (video / name).stat().st_size == 0:
            (video / name).unlink(missing_ok=True)

    toml = root / "toml"
    toml.mkdir(parents=True, exist_ok=True)
    examples = Path(__file__).resolve().parent.parent / "examples"
    for name in ("physio.toml", "full.toml"):
        if (examples / name).is_file():
            (toml / name).write_text((examples / name).read_text())
    (toml / "minimal.toml").write_text('[[source]]\nspec = "simulated"\nseed = 3\n\n[[bundle]]\nname = "physio-demo"\n'
                                       '\n[[sink]]\ntype = "jsonl"\npath = "out.jsonl"\n')

    wesad = root / "wesad"
    wesad.mkdir(parents=True, exist_ok=True)
    (wesad / "S2.pkl").write_bytes(pickle.dumps(_wesad_subject(), protocol=2))
    (wesad / "S3_protocol4.pkl").write_bytes(pickle.dumps(_wesad_subject(seed=1), protocol=4))

    e4 = root / "e4"
    rng = np.random.default_rng(0)
    from edgemer.sources.e4 import write_e4_session

    write_e4_session(e4 / "session", 1.6e9, {"eda": 4 + rng.random((40, 1)), "bvp": rng.normal(0, 50, (640, 1)),
                                             "temp": 33 + rng.random((40, 1)), "acc": rng.normal(0, 30, (320, 3))},
                     tags_unix=np.array([1.6e9 + 3.0]))
    import zipfile

    with zipfile.ZipFile(e4 / "session.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted((e4 / "session").iterdir()):
            z.write(f, f.name)

    onnx_dir = root / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    (onnx_dir / "model.onnx").write_bytes(onnx_matmul()[0])
    ext_model, ext_weights = onnx_matmul(external="model.onnx.data", offset=0, length=2880)
    (onnx_dir / "external.onnx").write_bytes(ext_model)
    (onnx_dir / "model.onnx.data").write_bytes(ext_weights)

    bundle = root / "bundle"
    model, weights = onnx_matmul()
    (bundle / "inline").mkdir(parents=True, exist_ok=True)
    (bundle / "inline" / "model.onnx").write_bytes(model)
    (bundle / "inline" / "manifest.json").write_text(json.dumps(_bundle_manifest("model.onnx", model, {}), indent=1))
    ext_model, _ = onnx_matmul(external="weights.bin", offset=0, length=len(weights))
    (bundle / "external").mkdir(parents=True, exist_ok=True)
    (bundle / "external" / "model.onnx").write_bytes(ext_model)
    (bundle / "external" / "weights.bin").write_bytes(weights)
    (bundle / "external" / "manifest.json").write_text(
        json.dumps(_bundle_manifest("model.onnx", ext_model, {"weights.bin": weights}), indent=1))

    import importlib.util

    if importlib.util.find_spec("h5py") is not None:
        keras = root / "keras"
        keras.mkdir(parents=True, exist_ok=True)
        for name, (config, weights) in keras_seed_models().items():
            (keras / name).write_bytes(keras_h5(config, weights))


# --------------------------------------------------------------------------- formats

@dataclass(frozen=True)
class FuzzFormat:
    """One format: ``strategy()`` draws cases, ``target(folder, entry, case)`` reads one
    (raising on bad input), ``prepare()`` imports what the target needs before timing."""

    name: str
    description: str
    strategy: Callable[[], Any]
    target: Callable[[Path, Path, dict], None]
    prepare: Callable[[], None] = lambda: None
    needs: tuple[str, ...] = ()

    def unavailable_reason(self) -> str | None:
        import importlib.util

        missing = [m for m in self.needs if importlib.util.find_spec(m) is None]
        return f"needs {', '.join(missing)}" if missing else None

    def available(self) -> bool:
        return self.unavailable_reason() is None


def _one_file_cases(name: str, names: Callable[[str], Any]):
    """Cases of one seed file, mutated or not, truncated or empty, under a drawn name."""
    from hypothesis import strategies as st

    seeds = _seed_files(name)
    keys = sorted(seeds)
    blobs = [seeds[k] for k in keys]
    content = st.one_of(mutated(blobs), st.sampled_from(blobs),
                        st.builds(lambda b, f: b[:int(len(b) * f)], st.sampled_from(blobs), st.floats(0, 1)),
                        st.just(b""))
    return st.builds(lambda data, filename: {"files": {filename: data}, "entry": filename},
                     content, st.sampled_from(keys).flatmap(names))


# WAV ----------------------------------------------------------------------------------

def _wav_structured():
    from hypothesis import strategies as st

    def build(riff, tag, channels, rate, bits, align, fmt_size, extra, declared, frames, cut, odd_chunk):
        fmt = struct.pack("<HHIIHH", tag, channels, rate & 0xFFFFFFFF, (rate * max(1, align)) & 0xFFFFFFFF, align,
                          bits)
        fmt = (fmt + bytes(24))[:max(0, min(fmt_size, 40))]
        data = bytes((i * 37) & 0xFF for i in range(frames * max(1, align)))
        chunks = b"".join(cid + struct.pack("<I", size & 0xFFFFFFFF) + payload for cid, size, payload in extra)
        body = b"WAVE" + chunks + b"fmt " + struct.pack("<I", fmt_size & 0xFFFFFFFF) + fmt
        if odd_chunk:
            body += b"LIST" + struct.pack("<I", 3) + b"abc"
        body += b"data" + struct.pack("<I", (len(data) if declared is None else declared) & 0xFFFFFFFF) + data
        out = riff + struct.pack("<I", len(body)) + body
        return out if cut is None else out[:cut]

    chunk = st.tuples(st.sampled_from([b"LIST", b"fact", b"JUNK", b"data", b"fmt "]),
                      st.sampled_from([0, 1, 4, 100, 2 ** 31, 2 ** 32 - 1]), st.binary(max_size=8))
    raw = st.builds(build, st.sampled_from([b"RIFF", b"RIFF", b"RIFX", b"RF64", b"RIFF\x00"[:4]]),
                    st.sampled_from([1, 3, 0xFFFE, 2, 6, 0]), st.sampled_from([0, 1, 2, 3, 64, 65, 65535]),
                    st.sampled_from([0, 1, 7999, 8000, 16000, 44100, 384000, 384001, 10 ** 9, 2 ** 32 - 1]),
                    st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64, 65535]), st.integers(0, 400),
                    st.sampled_from([0, 14, 16, 18, 40, 2 ** 31]), st.lists(chunk, max_size=3),
                    st.sampled_from([None, None, 0, 1, 2 ** 31, 2 ** 32 - 1]), st.integers(0, 300),
                    st.one_of(st.none(), st.integers(0, 120)), st.booleans())
    return raw.map(lambda b: {"files": {"case.wav": b}, "entry": "case.wav"})


def _wav_strategy():
    from hypothesis import strategies as st

    return st.one_of(_one_file_cases("wav", lambda k: st.just(k)), _wav_structured())


def _wav_target(folder: Path, entry: Path, case: dict) -> None:
    from edgemer.sources.wav_replay import WavReplay

    WavReplay(entry, rate_hz=16000)


# images and videos --------------------------------------------------------------------

def _declare_size(data: bytes, width: int, height: int) -> bytes:
    """An image whose header declares ``width`` x ``height`` (PNG with a valid IHDR CRC, JPEG SOF,
    BMP, PNM); other formats are returned unchanged."""
    import zlib

    b = bytearray(data)
    if b[:4] == b"\x89PNG":
        b[16:24] = struct.pack(">II", width & 0xFFFFFFFF, height & 0xFFFFFFFF)
        b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    elif b[:2] == b"\xff\xd8":
        i = b.find(b"\xff\xc0")
        if i > 0:
            b[i + 5:i + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
    elif b[:2] == b"BM":
        b[18:26] = struct.pack("<ii", width & 0x7FFFFFFF, height & 0x7FFFFFFF)
    elif b[:1] == b"P":
        lines = bytes(b).split(b"\n", 3)
        if len(lines) == 4:
            return lines[0] + b"\n" + f"{width} {height}".encode() + b"\n" + lines[2] + b"\n" + lines[3]
    return bytes(b)


def _image_strategy():
    from hypothesis import strategies as st

    from edgemer.sources.video_replay import IMAGE_SUFFIXES

    exts = st.sampled_from(IMAGE_SUFFIXES + (".mp4", ".txt", ""))
    seeds = _seed_files("image")
    sides = st.sampled_from([0, 1, 31, 4000, 16384, 16385, 20000, 65535, 2 ** 31 - 1])
    declared = st.builds(lambda k, w, h: {"files": {k: _declare_size(seeds[k], w, h)}, "entry": k},
                         st.sampled_from(sorted(seeds)), sides, sides)
    single = st.one_of(declared, _one_file_cases("image", lambda k: st.one_of(st.just(k), exts.map(
        lambda e: f"img{e}"))))
    folder = st.lists(single, min_size=1, max_size=3).map(
        lambda cases: {"files": {f"frames/{i}_{n}": d for i, c in enumerate(cases) for n, d in c["files"].items()},
                       "dirs": ["frames"], "entry": "frames"})
    return st.one_of(single, single, folder)


def _video_strategy():
    from hypothesis import strategies as st

    from edgemer.sources.video_replay import VIDEO_SUFFIXES

    return _one_file_cases("video", lambda k: st.one_of(st.just(k), st.sampled_from(VIDEO_SUFFIXES).map(
        lambda e: f"clip{e}")))


def _replay_frames(folder: Path, entry: Path, case: dict) -> None:
    """Open ``entry`` as :class:`VideoReplay` does and decode every frame once (at most 200)."""
    import threading

    from edgemer.sources.video_replay import VideoReplay, _cv2

    src = VideoReplay(entry)
    for i, _ in enumerate(src._frames(_cv2(), threading.Event())):
        if i >= 200:
            break


def _cv2_prepare() -> None:
    from edgemer.sources.video_replay import _cv2

    _cv2()


# pipeline TOML ------------------------------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return '""'


def _toml_strategy():
    from hypothesis import strategies as st

    from edgemer.config import _ARRAYS, _SECTIONS

    keys = sorted({k for t in list(_SECTIONS.values()) + list(_ARRAYS.values()) for k in t} | {"junk"})
    specs = st.sampled_from(["simulated", "replay:physio-example", "replay:speech-example", "replay:face-example@2",
                             "replay:nothing.wav", "replay:\x00", "replay:../../etc/passwd", "serial:", "replay:",
                             "camera:x", "mic:@", "replay:face-example@1e9", "simulated\x00"])
    values = st.one_of(_json_values(), specs)
    table = st.dictionaries(st.sampled_from(keys), values, max_size=4)

    def text(sections, arrays):
        out = []
        for name, t in sections:
            out.append(f"[{name}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in t.items()]
        for name, t in arrays:
            out.append(f"[[{name}]]")
            out += [f"{k} = {_toml_value(v)}" for k, v in t.items()]
        return "\n".join(out) + "\n"

    structured = st.builds(text, st.lists(st.tuples(st.sampled_from(sorted(_SECTIONS) + ["junk"]), table), max_size=3),
                           st.lists(st.tuples(st.sampled_from(sorted(_ARRAYS)), table), max_size=4))
    seeds = _seed_files("toml")
    blobs = [seeds[k] for k in sorted(seeds)]
    content = st.one_of(structured.map(lambda s: s.encode("utf-8", "surrogatepass")), mutated(blobs),
                        st.just(b"a = [" * 5000), st.just(b"x = {a = {b = {c = 1}}}\n" * 10))
    return content.map(lambda b: {"files": {"pipeline.toml": b}, "entry": "pipeline.toml"})


def _toml_target(folder: Path, entry: Path, case: dict) -> None:
    from edgemer.config import load_pipeline_file

    load_pipeline_file(entry)


def _toml_prepare() -> None:
    import edgemer.config  # noqa: F401
    import edgemer.sources.wav_replay  # noqa: F401


# WESAD pickles ------------------------------------------------------------------------

_HOSTILE_PICKLES = (
    b"cos\nsystem\n(S'true'\ntR.",                                     # a global outside the allow-list
    b"\x80\x02cbuiltins\nbytearray\n\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85R.",  # bytearray(10**12)
    b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85C\x01b\x87R.",
    b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R.",
    b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f.",                    # a frame of 2^63 bytes
    b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f.",                    # BINBYTES8 of 2^63 bytes
    b"(" * 100000 + b".",                                              # marks without end
)


def _array_strategy():
    from hypothesis import strategies as st

    dtypes = st.sampled_from(["float64", "float32", "int64", "int8", "uint8", "bool", "complex128", "<U3", "object",
                              "float16", ">f8"])
    shapes = st.sampled_from([(), (0,), (1,), (7,), (40, 1), (40, 3), (40, 2), (3, 4, 5), (0, 3), (2, 0)])
    return st.builds(lambda dt, shape, nan: (np.full(shape, np.nan if nan else 1.5).astype(dt)
                                             if dt not in ("object",) else np.array([None] * int(np.prod(shape)))),
                     dtypes, shapes, st.booleans())


def _wesad_strategy():
    from hypothesis import strategies as st

    wrist_value = st.one_of(_array_strategy(), _json_values())
    wrist = st.dictionaries(st.sampled_from(["EDA", "BVP", "TEMP", "ACC", "eda", "junk"]), wrist_value, max_size=5)

    def layout(base, wrist_changes, drop, label, top, protocol):
        d = _wesad_subject(seconds=4.0)
        d["signal"]["wrist"].update(wrist_changes)
        for k in drop:
            d["signal"]["wrist"].pop(k, None)
        if label is not None:
            d["label"] = label
        obj = d if top is None else top
        return pickle.dumps(obj, protocol=protocol)

    structured = st.builds(layout, st.just(None), wrist, st.lists(st.sampled_from(["EDA", "BVP", "TEMP", "ACC"]),
                                                                  max_size=2),
                           st.one_of(st.none(), _array_strategy(), _json_values()),
                           st.one_of(st.none(), st.none(), st.none(), _json_values()), st.integers(0, 5))
    seeds = _seed_files("wesad")
    blobs = [seeds[k] for k in sorted(seeds)]
    content = st.one_of(structured, mutated(blobs), mutated(blobs, max_ops=2), st.sampled_from(_HOSTILE_PICKLES))
    return content.map(lambda b: {"files": {"W/S2/S2.pkl": b}, "entry": "W/S2/S2.pkl"})


def _wesad_target(folder: Path, entry: Path, case: dict) -> None:
    from edgemer.sources.wesad_replay import WesadReplay

    WesadReplay(entry)


# bundles ------------------------------------------------------------------------------

def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _set_path(obj: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = obj
    for p in path[:-1]:
        parent = parent[p]
    if delete and isinstance(parent, dict):
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return obj


def _bundle_strategy():
    from hypothesis import strategies as st
    import copy
    import hashlib

    seeds = {name: _seed_files(f"bundle/{name}") for name in ("inline", "external")}

    def entry(data: bytes) -> dict:
        return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    def build(seed, edits, hostile, model_ops, ext, big):
        files = dict(seeds[seed])
        manifest = json.loads(files.pop("manifest.json"))
        links: dict[str, str] = {}
        extra: dict[str, bytes] = {"outside.onnx": files["model.onnx"]}
        for index, value, delete in edits:  # any field: removed, or replaced by a hostile value
            paths = _paths(manifest)
            manifest = _set_path(manifest, paths[index % len(paths)], copy.deepcopy(value), delete)
        if hostile is not None and isinstance(manifest, dict) and isinstance(manifest.get("models"), dict):
            for m in manifest["models"].values():
                if isinstance(m, dict):
                    m["file"] = hostile
            if isinstance(manifest.get("files"), dict):
                manifest["files"][hostile] = entry(files["model.onnx"])
            links = {"bundle/link.onnx": "../outside.onnx", "bundle/linkdir": ".."}
        if model_ops:
            files["model.onnx"] = _mutate(files["model.onnx"], model_ops, b"")
        if ext is not None:
            location, dims, offset, length = ext
            files["model.onnx"], weights = onnx_matmul(external=location, dims=dims, offset=offset, length=length)
            files.setdefault("weights.bin", weights)
            extra["outside.bin"] = weights
            links["bundle/w_link.bin"] = "../outside.bin"
        if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) and (model_ops or ext):
            for name in ("model.onnx", "weights.bin"):  # keep the hashes right, so the loader looks inside
                if name in files and name in manifest["files"]:
                    manifest["files"][name] = entry(files[name])
        text = json.dumps(manifest, allow_nan=True)
        if big:
            text = text[:-1] + ', "padding": "' + "x" * (5 << 20) + '"}'
        out = {f"bundle/{k}": v for k, v in files.items()}
        out["bundle/manifest.json"] = text.encode()
        out.update(extra)
        return {"files": out, "links": links, "entry": "bundle"}

    ext = st.tuples(st.sampled_from(["weights.bin", "../outside.bin", "/etc/passwd", "w_link.bin", "missing.bin",
                                     "", "sub/../weights.bin", "weights.bin\x00"]),
                    st.sampled_from([None, (240, 3), (10 ** 6, 10 ** 6), (-1, 3), (0,)]),
                    st.sampled_from([None, 0, 8, 10 ** 12]), st.sampled_from([None, 0, 2880, 10 ** 12]))
    op = st.tuples(st.integers(0, 8), st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 16), st.binary(max_size=8))
    structured = st.builds(build, st.sampled_from(sorted(seeds)),
                           st.lists(st.tuples(st.integers(0, 10 ** 6), _json_values(), st.booleans()), max_size=3),
                           st.one_of(st.none(), st.none(), st.sampled_from(HOSTILE_NAMES)),
                           st.one_of(st.just([]), st.just([]), st.lists(op, min_size=1, max_size=4)),
                           st.one_of(st.none(), st.none(), ext), st.integers(0, 200).map(lambda i: i == 0))
    raw_manifest = st.builds(lambda b: {"files": {**{f"bundle/{k}": v for k, v in seeds["inline"].items()},
                                                  "bundle/manifest.json": b}, "entry": "bundle"},
                             mutated([seeds["inline"]["manifest.json"], seeds["external"]["manifest.json"]]))
    return st.one_of(structured, structured, raw_manifest)


def _bundle_target(folder: Path, entry: Path, case: dict) -> None:
    from edgemer.backends import open_session
    from edgemer.bundle import load_bundle
    from edgemer.frontends import create_front_end

    bundle = load_bundle(entry)
    create_front_end(bundle.manifest)
    bundle.samples()
    bundle.verification()
    precision = next(iter(bundle.manifest.models.values())).precision if bundle.manifest.models else "fp32"
    open_session(bundle, "onnxruntime", precision, 1)


def _bundle_prepare() -> None:
    import onnxruntime  # noqa: F401

    import edgemer.backends.onnxruntime_backend  # noqa: F401
    import edgemer.frontends  # noqa: F401


# E4 sessions and ONNX inputs to export -------------------------------------------------

def _e4_strategy():
    from hypothesis import strategies as st

    folder = _seed_files("e4/session")
    names = sorted(folder)
    zipped = _seed_files("e4")["session.zip"]

    def session(target, ops, drop):
        files = dict(folder)
        if target in files:
            files[target] = _mutate(files[target], ops, files["BVP.csv"])
        for d in drop:
            files.pop(d, None)
        return {"files": {f"s/{k}": v for k, v in files.items()}, "dirs": ["s"], "entry": "s"}

    op = st.tuples(st.integers(0, 8), st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 16), st.binary(max_size=12))
    folders = st.builds(session, st.sampled_from(names), st.lists(op, min_size=1, max_size=6),
                        st.lists(st.sampled_from(names), max_size=1))
    zips = mutated([zipped], max_ops=4).map(lambda b: {"files": {"session.zip": b}, "entry": "session.zip"})
    return st.one_of(folders, folders, zips)


def _e4_target(folder: Path, entry: Path, case: dict) -> None:
    from edgemer.sources.e4 import E4Replay

    E4Replay(entry)


def _onnx_strategy():
    from hypothesis import strategies as st

    seeds = _seed_files("onnx")
    ext = st.builds(lambda loc, dims, off, length: onnx_matmul(external=loc, dims=dims, offset=off, length=length)[0],
                    st.sampled_from(["model.onnx.data", "../outside.bin", "/etc/passwd", "link.bin", "missing.bin",
                                     "", "a/../../x"]),
                    st.sampled_from([None, (240, 3), (10 ** 6, 10 ** 6), (3,)]),
                    st.sampled_from([None, 0, 8, 10 ** 12]), st.sampled_from([None, 2880, 10 ** 12]))
    models = st.one_of(mutated([seeds["model.onnx"], seeds["external.onnx"]]), ext)
    return models.map(lambda m: {"files": {"m/model.onnx": m, "m/model.onnx.data": seeds["model.onnx.data"],
                                           "outside.bin": seeds["model.onnx.data"]},
                                 "links": {"m/link.bin": "../outside.bin"}, "entry": "m/model.onnx"})


def _onnx_target(folder: Path, entry: Path, case: dict) -> None:
    from edgemer.export.core.onnx_check import check_onnx_model

    check_onnx_model(entry)


def _onnx_prepare() -> None:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401

    import edgemer.export.core.onnx_check  # noqa: F401



# Keras HDF5 inputs to export ----------------------------------------------------------

_KERAS_VALUES = (0, -1, 1, 3, 6.5, 10 ** 6, 2 ** 31, 1e308, float("nan"), None, True, [], {}, [0, 0], [3, 3],
                 [1, 10 ** 6], [-1, 3], [3], [3, 3, 3], ["3", 3], [None, 8, 8, 1], [None, 10 ** 5, 10 ** 5, 3],
                 [None, 0, 8, 1], [None, 8, 8], [None, None, 8, 1], [None, 8, 8, -2], [None, 4096, 4096, 4096],
                 "same", "valid", "causal", "channels_first", "softmax", "swish", "Lambda", "Conv3D", "Dense",
                 "InputLayer", "Flatten", "Model", "Sequential", [[["missing", 0, 0, {}]]], [{"args": [], "kwargs": {}}],
                 [[["input_1", 0, 0, {}]], [["input_1", 0, 0, {}]]], [[]], [["input_1"]], [[[3, 0, 0, {}]]],
                 [[["dense_1", 0, 0, {}]]], [[["conv2d_1", 0, 0, {}], ["input_1", 0, 0, {}]]], [1, 2],
                 "conv2d_1", "input_1")
"""Values a hostile ``model_config`` puts in a field: sizes, shapes, layer classes, graph links."""
_KERAS_TOP = ("missing", b"not json", b"[1, 2]", b'{"class_name": "Model"}', np.int64(3),
              np.array([b"a", b"b"]), b"[" * 100000, b'{"class_name": "Model", "config": {"layers": ' + b"[" * 5000,
              b"\xff\xfe\x01", b"{}", b'{"class_name": "Sequential", "config": []}', b"null", b"x" * (5 << 20))
"""Replacements of the ``model_config`` attribute itself."""
_KERAS_NAMES = (np.array([b"nope/kernel:0"]), np.array([b"/model_weights"]), np.array([1, 2]), b"kernel:0", 5,
                np.array([b"conv2d_1/kernel:0"] * 3), np.array([b"../conv2d_1/kernel:0"]), np.array([b""]))
"""Replacements of a layer's ``weight_names`` attribute."""


def _h5_array_strategy():
    from hypothesis import strategies as st

    dtypes = st.sampled_from(["float32", "float64", "float16", "int8", "int64", "uint8", "bool", "complex64", "S3",
                              ">f8"])
    shapes = st.sampled_from([(), (0,), (1,), (3,), (4,), (8,), (3, 3, 1, 4), (3, 3, 1, 5), (3, 3, 4, 1), (1, 1, 4, 4),
                              (2, 2, 2, 3), (27, 2), (8, 3), (9, 3), (0, 3), (3, 3), (2, 2, 2, 2, 2)])
    values = st.sampled_from([0.5, 0.0, -1.0, float("nan"), float("inf")])

    def array(dtype: str, shape: tuple[int, ...], value: float) -> np.ndarray:
        if dtype == "S3":
            return np.full(shape, b"abc")
        with np.errstate(invalid="ignore"):  # NaN and inf cast to integers: whatever numpy makes of them
            return np.full(shape, value).astype(dtype)

    arrays = st.builds(array, dtypes, shapes, values)
    declared = st.sampled_from([(10 ** 5, 10 ** 5), (2 ** 31,), (2 ** 40,), (0, 3), (3, 3, 1, 4), (4,),
                                (1, 1, 1, 1, 1, 1, 1, 1)])
    return st.one_of(arrays, arrays, declared, st.sampled_from([None, "group"]))


def _keras_strategy():
    from hypothesis import strategies as st
    import copy

    models = keras_seed_models()
    seeds = _seed_files("keras")
    blobs = [seeds[k] for k in sorted(seeds)]
    config_value = st.one_of(st.sampled_from(_KERAS_VALUES), st.sampled_from(_KERAS_VALUES), _json_values())

    def build(seed, edits, weight_edits, names, top):
        config, weights = copy.deepcopy(models[seed])
        for index, value, delete in edits:  # any field of the config: removed, or replaced by a hostile value
            paths = _paths(config)
            config = _set_path(config, paths[index % len(paths)], copy.deepcopy(value), delete)
        layers = sorted(weights)
        for i, j, value in weight_edits:  # a weight of another shape or dtype, declared huge, absent or a group
            ws = weights[layers[i % len(layers)]]
            ws[sorted(ws)[j % len(ws)]] = value
        renamed = {layers[i % len(layers)]: value for i, value in names}
        return keras_h5(config, weights, model_config=top, weight_names=renamed)

    structured = st.builds(build, st.sampled_from(sorted(models)),
                           st.lists(st.tuples(st.integers(0, 10 ** 6), config_value, st.booleans()), max_size=3),
                           st.lists(st.tuples(st.integers(0, 99), st.integers(0, 99), _h5_array_strategy()),
                                    max_size=2),
                           st.one_of(st.just([]), st.just([]), st.just([]),
                                     st.lists(st.tuples(st.integers(0, 99), st.sampled_from(_KERAS_NAMES)),
                                              min_size=1, max_size=2)),
                           st.one_of(st.none(), st.none(), st.none(), st.none(), st.sampled_from(_KERAS_TOP)))
    content = st.one_of(structured, structured, mutated(blobs), mutated(blobs, max_ops=2), st.sampled_from(blobs),
                        st.builds(lambda b, f: b[:int(len(b) * f)], st.sampled_from(blobs), st.floats(0, 1)))
    return content.map(lambda b: {"files": {"model.h5": b}, "entry": "model.h5"})


def _keras_target(folder: Path, entry: Path, case: dict) -> None:
    """What 'edgemer export onnx' does with a Keras file before the ONNX export: describe it, rebuild it
    in torch and run it once on zeros of its input shape."""
    import torch

    from edgemer.export.core.keras import describe_keras_model, load_keras_model

    info = describe_keras_model(entry)
    module = load_keras_model(entry, logits=True)
    h, w, c = info.input_hwc
    with torch.no_grad():
        module(torch.zeros(1, c, h, w))


def _keras_prepare() -> None:
    import h5py  # noqa: F401
    import torch

    import edgemer.export.core.keras  # noqa: F401

    torch.set_num_threads(1)


FORMATS: dict[str, FuzzFormat] = {f.name: f for f in (
    FuzzFormat("bundle", "bundle folders: manifest.json fields, file names, symlinks, ONNX external data; "
                         "load_bundle + front-end + onnxruntime session", _bundle_strategy, _bundle_target,
               _bundle_prepare, ("onnxruntime",)),
    FuzzFormat("wav", "WAV files: RIFF header fields, chunk sizes, formats, truncation; WavReplay",
               _wav_strategy, _wav_target),
    FuzzFormat("image", "images and image folders: mutated, truncated, empty, wrong extension; VideoReplay and "
                        "every frame decoded", _image_strategy, _replay_frames, _cv2_prepare, ("cv2",)),
    FuzzFormat("video", "video files: mutated, truncated, empty, wrong extension; VideoReplay and every frame "
                        "decoded", _video_strategy, _replay_frames, _cv2_prepare, ("cv2",)),
    FuzzFormat("toml", "pipeline TOML files: tables, keys, value types, hostile specs and paths; "
                       "load_pipeline_file", _toml_strategy, _toml_target, _toml_prepare),
    FuzzFormat("wesad", "WESAD subject pickles: layout, dtypes, shapes, hostile globals, truncation; WesadReplay",
               _wesad_strategy, _wesad_target),
    FuzzFormat("e4", "Empatica E4 sessions (folder of CSVs or zip): mutated CSVs, missing files, damaged zips; "
                     "E4Replay", _e4_strategy, _e4_target),
    FuzzFormat("onnx", "ONNX models given to 'edgemer export onnx': mutated protobuf, external-data locations "
                       "and sizes; check_onnx_model", _onnx_strategy, _onnx_target, _onnx_prepare,
               ("onnx", "onnxruntime")),
    FuzzFormat("keras", "Keras 2 HDF5 models given to 'edgemer export onnx': mutated HDF5 bytes, model_config JSON "
                        "structure and values, weight shapes, dtypes and names; describe_keras_model + "
                        "load_keras_model + one forward pass", _keras_strategy, _keras_target, _keras_prepare,
               ("h5py", "torch")),
)}
"""Every fuzzed format by name, in the order the benchmark runs them."""
