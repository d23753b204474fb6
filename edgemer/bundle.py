"""Bundles: a folder of model files plus ``manifest.json``, the contract between
export and runtime.

Loading a bundle checks the schema version, the required fields and the sha256 and
size of every file the manifest lists, before any inference.

A bundle is shared and downloaded, so its manifest and model files are untrusted: every
file name must be a plain relative name inside the bundle folder (no absolute path, no
``..``, no symlink leaving it; ONNX external-data locations too), and absurd declarations
(a manifest over :data:`MAX_MANIFEST_BYTES`, a tensor of more than
:data:`~edgemer.onnx_external.MAX_TENSOR_ELEMENTS` elements, a rate above
:data:`MAX_RATE_HZ`) are refused before anything is allocated, with
:class:`~edgemer.errors.UnsafeBundleError` naming the file and the field. The runtime never
guesses a front-end parameter: it reads them from ``manifest.front_end``.

Layout::

    BUNDLE/
      manifest.json          schema, labels, IO, front-end, provenance, metrics, hashes
      model_fp32.onnx        FP32 ONNX
      model_int8.onnx        INT8 ONNX (static QDQ)
      model_fp32.tflite      FP32 TFLite (optional)
      model_int8.tflite      fully-integer INT8 TFLite
      samples.npz            held-out model inputs with labels (verification, benchmarks)
      verification.json/.md  INT8 vs FP32 parity report
"""
from __future__ import annotations

import hashlib
import json
import math
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgemer.errors import (
    BundleNotFoundError,
    IntegrityError,
    ManifestError,
    ModelLoadError,
    SchemaVersionError,
    UnsafeBundleError,
)
from edgemer.onnx_external import MAX_TENSOR_ELEMENTS, check_onnx_file, is_plain_relative, resolve_inside

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "int8")
MAX_MANIFEST_BYTES = 4 << 20
"""Largest ``manifest.json`` read (4 MiB; shipped manifests are under 20 KiB)."""
MAX_SIDE_FILE_BYTES = 16 << 20
"""Largest ``verification.json`` read (16 MiB)."""
MAX_RATE_HZ = 1e6
"""Largest rate a front-end field (``*_hz``) may declare."""
MAX_DURATION_S = 86400.0
"""Longest duration a front-end field (``*_s``) may declare (one day)."""
MAX_ENTRIES = 10000
"""Most labels, files or models a manifest may list."""
MAX_NESTING = 32
"""Deepest nesting of objects and lists in ``front_end``."""
_REQUIRED = ("schema_version", "name", "modality", "task", "labels", "models", "inputs", "outputs",
             "front_end", "provenance", "files")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output (shape includes the batch of 1)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "manifest", field: str = "inputs") -> "TensorSpec":
        """From a manifest entry; every dim must be an integer >= 1 and the shape must hold at
        most :data:`~edgemer.onnx_external.MAX_TENSOR_ELEMENTS` elements."""
        shape = d["shape"]
        if not isinstance(shape, list) or not 1 <= len(shape) <= 8:
            raise ManifestError(f"{source}: '{field}' shape {str(shape)[:80]} must be a list of 1..8 dims; "
                                f"re-export the bundle")
        elements = 1
        for s in shape:
            if isinstance(s, bool) or not isinstance(s, int) or s < 1:
                raise ManifestError(f"{source}: '{field}' shape {str(shape)[:80]} holds {str(s)[:40]!r}; each "
                                    f"dim must be an integer >= 1. Re-export the bundle")
            elements *= s
            if elements > MAX_TENSOR_ELEMENTS:
                raise UnsafeBundleError(f"{source}: '{field}' shape declares more than {MAX_TENSOR_ELEMENTS} "
                                        f"elements; refused before allocating anything")
        return cls(name=str(d["name"]), shape=tuple(shape), dtype=str(d.get("dtype", "float32")))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class ModelFile:
    """One model file of a bundle: its file name, format and precision."""

    key: str
    file: str
    format: str
    precision: str


@dataclass(frozen=True)
class Manifest:
    """Parsed, validated ``manifest.json``; ``raw`` keeps every field as written."""

    name: str
    modality: str
    task: str
    labels: tuple[str, ...]
    models: Mapping[str, ModelFile]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    front_end: Mapping[str, Any]
    provenance: Mapping[str, Any]
    files: Mapping[str, Mapping[str, Any]]
    raw: Mapping[str, Any]

    @property
    def trained_on_synthetic_data(self) -> bool:
        return bool(self.provenance.get("synthetic_data", False))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "manifest") -> "Manifest":
        if not isinstance(d, Mapping):
            raise ManifestError(f"{source}: the manifest must be a JSON object")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{source}: bundle schema version {version!r}, but this edgemer ({_version()}) reads "
                f"version {SCHEMA_VERSION}. Re-export the bundle with this edgemer, or install the "
                f"edgemer release that wrote it."
            )
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ManifestError(f"{source}: missing required field(s) {missing}; re-export the bundle")
        for key, kind in (("models", Mapping), ("files", Mapping), ("front_end", Mapping), ("provenance", Mapping),
                          ("labels", list), ("inputs", list), ("outputs", list)):
            if not isinstance(d[key], kind):
                raise ManifestError(f"{source}: '{key}' must be a JSON {'object' if kind is Mapping else 'list'}, "
                                    f"got {type(d[key]).__name__}; re-export the bundle")
            if len(d[key]) > MAX_ENTRIES:
                raise UnsafeBundleError(f"{source}: '{key}' lists {len(d[key])} entries (at most {MAX_ENTRIES}); "
                                        f"refused")
        files = _checked_files(d["files"], source)
        _check_front_end(d["front_end"], source)
        try:
            models = {}
            for key, m in d["models"].items():
                mf = ModelFile(key=key, file=m["file"], format=str(m["format"]), precision=str(m["precision"]))
                if mf.format not in FORMATS or mf.precision not in PRECISIONS:
                    raise ManifestError(f"{source}: model '{key}' has format/precision {mf.format}/{mf.precision}; "
                                        f"expected one of {FORMATS} x {PRECISIONS}")
                if not is_plain_relative(mf.file):
                    raise UnsafeBundleError(f"{source}: 'models.{key}.file' {str(mf.file)[:80]!r} is not a plain "
                                            f"relative name inside the bundle folder; refused")
                if mf.file not in files:
                    raise ManifestError(f"{source}: model file '{mf.file}' has no sha256 entry under 'files'")
                models[key] = mf
            return cls(
                name=str(d["name"]),
                modality=str(d["modality"]),
                task=str(d["task"]),
                labels=tuple(str(x) for x in d["labels"]),
                models=models,
                inputs=tuple(TensorSpec.from_dict(x, source, "inputs") for x in d["inputs"]),
                outputs=tuple(TensorSpec.from_dict(x, source, "outputs") for x in d["outputs"]),
                front_end=dict(d["front_end"]),
                provenance=dict(d["provenance"]),
                files=files,
                raw=dict(d),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"{source}: malformed field ({type(exc).__name__}: {str(exc)[:200]}); "
                                f"re-export the bundle") from exc

    def model(self, fmt: str, precision: str) -> ModelFile:
        """The model file of the given format (``onnx``/``tflite``) and precision (``fp32``/``int8``)."""
        for mf in self.models.values():
            if mf.format == fmt and mf.precision == precision:
                return mf
        have = ", ".join(f"{m.format}/{m.precision}" for m in self.models.values())
        raise ManifestError(f"bundle '{self.name}' has no {fmt}/{precision} model (it has: {have})")


@dataclass(frozen=True)
class Bundle:
    """A verified bundle folder."""

    path: Path
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    def model_path(self, fmt: str, precision: str) -> Path:
        """The model file, checked to stay inside the bundle (ONNX: with its external data);
        an ONNX file that is not protobuf raises :class:`ModelLoadError`."""
        path = _member(self.path, self.manifest.model(fmt, precision).file)
        if fmt == "onnx" and path.is_file():
            check_onnx_file(path, UnsafeBundleError, listed=set(self.manifest.files), unreadable=ModelLoadError)
        return path

    def samples(self) -> dict[str, np.ndarray]:
        """Held-out model inputs and labels shipped in ``samples.npz`` (empty dict if absent).

        Each array's header is read first: one declaring more than MAX_TENSOR_ELEMENTS
        elements, an object dtype or more bytes than its member holds is refused
        (:class:`UnsafeBundleError`) before anything is allocated.
        """
        f = _member(self.path, "samples.npz")
        if not f.exists():
            return {}
        try:
            _check_npz(f)
            with np.load(f, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise IntegrityError(f"{f}: cannot read the samples ({type(exc).__name__}: {str(exc)[:160]}); "
                                 f"re-export the bundle") from exc

    def verification(self) -> dict[str, Any]:
        """The INT8-vs-FP32 verification report written at export (empty dict if absent)."""
        f = _member(self.path, "verification.json")
        if not f.exists():
            return {}
        if f.stat().st_size > MAX_SIDE_FILE_BYTES:
            raise UnsafeBundleError(f"{f}: {f.stat().st_size} bytes, more than {MAX_SIDE_FILE_BYTES}; refused")
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise IntegrityError(f"{f}: cannot read the verification report ({str(exc)[:160]}); "
                                 f"re-export the bundle") from exc


def _check_npz(path: Path) -> None:
    """Refuse an ``.npz`` whose arrays declare absurd shapes, object dtypes or more bytes than stored."""
    from numpy.lib import format as npformat

    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            with z.open(info) as member:
                version = npformat.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = npformat.read_array_header_1_0(member, max_header_size=10000)
                else:
                    shape, _, dtype = npformat.read_array_header_2_0(member, max_header_size=10000)
            elements = math.prod(shape)
            if dtype.hasobject or elements > MAX_TENSOR_ELEMENTS or elements * dtype.itemsize > info.file_size:
                raise UnsafeBundleError(f"{path}: array '{info.filename}' declares shape {shape} of {dtype} "
                                        f"({info.file_size} bytes stored); refused before allocating it")


def _checked_files(files: Mapping[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """The manifest's ``files`` table, each name a plain relative name with a sha256 and a size."""
    out = {}
    for name, entry in files.items():
        if not is_plain_relative(name):
            raise UnsafeBundleError(f"{source}: 'files' names {name[:80]!r}, which is not a plain relative name "
                                    f"inside the bundle folder (absolute, '..', '.' or a backslash); refused")
        if name == MANIFEST_NAME:
            raise ManifestError(f"{source}: 'files' lists the manifest itself; re-export the bundle")
        if not isinstance(entry, Mapping):
            raise ManifestError(f"{source}: 'files.{name}' must be an object with 'sha256' and 'bytes'")
        digest, size = entry.get("sha256"), entry.get("bytes")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ManifestError(f"{source}: 'files.{name}.sha256' must be 64 lower-case hex digits; re-export the "
                                f"bundle")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise ManifestError(f"{source}: 'files.{name}.bytes' must be a byte count >= 0, got {str(size)[:40]}")
        out[name] = dict(entry)
    return out


def _check_front_end(front_end: Mapping[str, Any], source: str) -> None:
    """Rates (``*_hz``) must be finite numbers in (0, MAX_RATE_HZ], durations (``*_s``) in
    [0, MAX_DURATION_S]; nesting at most MAX_NESTING deep (walked without recursion)."""
    stack: list[tuple[str, Any, int]] = [("front_end", front_end, 0)]
    while stack:
        where, value, depth = stack.pop()
        if depth > MAX_NESTING:
            raise UnsafeBundleError(f"{source}: '{where}' is nested deeper than {MAX_NESTING}; refused")
        if isinstance(value, Mapping):
            stack.extend((f"{where}.{k}", v, depth + 1) for k, v in value.items())
            key = None
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v, depth + 1) for i, v in enumerate(value))
            continue
        else:
            key = where.rsplit(".", 1)[-1]
        if key is None or not key.endswith(("_hz", "_s")):
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key.endswith("_hz"):
            if not number or not math.isfinite(value) or not 0 < value <= MAX_RATE_HZ:
                raise UnsafeBundleError(f"{source}: '{where}' = {str(value)[:40]} is not a rate in (0, {MAX_RATE_HZ:g}] "
                                        f"Hz; refused. Re-export the bundle")
        elif not number or not math.isfinite(value) or not 0 <= value <= MAX_DURATION_S:
            raise UnsafeBundleError(f"{source}: '{where}' = {str(value)[:40]} is not a duration in "
                                    f"[0, {MAX_DURATION_S:g}] s; refused. Re-export the bundle")


def _member(bundle_dir: Path, name: str) -> Path:
    """``bundle_dir / name``, refused when a symlink takes it outside the bundle folder."""
    target = resolve_inside(bundle_dir, name)
    if target is None:
        raise UnsafeBundleError(f"{bundle_dir / name}: leaves the bundle folder through a symlink (field 'files'); "
                                f"refused. Copy the real file into the bundle")
    return target


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """The ``files`` entry the manifest keeps for one file: sha256 and size in bytes."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def shipped_bundles_dir() -> Path:
    return Path(str(resources.files("edgemer") / "bundles"))


def list_shipped_bundles() -> list[str]:
    """Names of the bundles that ship inside the edgemer package."""
    root = shipped_bundles_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST_NAME).is_file())


def resolve_bundle_path(name_or_path: str | Path) -> Path:
    """A bundle folder from a path, or from the name of a shipped bundle (``physio-demo``)."""
    if "\x00" in str(name_or_path):
        raise BundleNotFoundError(f"No bundle at {str(name_or_path)!r}: the path holds a NUL character")
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    if p.name == MANIFEST_NAME and p.is_file():
        return p.parent
    shipped = shipped_bundles_dir() / str(name_or_path)
    if isinstance(name_or_path, str) and "/" not in name_or_path and shipped.is_dir():
        return shipped
    raise BundleNotFoundError(
        f"No bundle at '{name_or_path}': not a folder, and not a shipped bundle name "
        f"(shipped: {', '.join(list_shipped_bundles()) or 'none'}). "
        f"Give a bundle folder written by 'edgemer export', or run 'edgemer info' to list shipped bundles."
    )


def read_manifest(bundle_dir: Path) -> Manifest:
    f = bundle_dir / MANIFEST_NAME
    if not f.is_file():
        raise ManifestError(f"{bundle_dir}: no {MANIFEST_NAME}; this folder is not an edgemer bundle "
                            f"(write one with 'edgemer export')")
    size = f.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise UnsafeBundleError(f"{f}: {size} bytes, more than {MAX_MANIFEST_BYTES} (a manifest is a few KiB); "
                                f"refused without reading it")
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: JSON, huge integers
        raise ManifestError(f"{f}: cannot read the manifest ({type(exc).__name__}: {str(exc)[:200]}); "
                            f"the bundle is corrupt, re-export it") from exc
    return Manifest.from_dict(data, source=str(f))


def verify_files(bundle_dir: Path, manifest: Manifest) -> None:
    """Check that every file the manifest lists exists inside the bundle folder with the recorded
    size and sha256, and that the ONNX models keep their external data inside it too."""
    for rel, entry in manifest.files.items():
        f = _member(bundle_dir, rel)
        if not f.is_file():
            raise IntegrityError(f"{f}: listed in the manifest but missing; copy the whole bundle folder again")
        size = f.stat().st_size
        if "bytes" in entry and size != int(entry["bytes"]):
            raise IntegrityError(f"{f}: {size} bytes, the manifest records {entry['bytes']} "
                                 f"(truncated or replaced); copy the bundle again or re-export it")
        if sha256_file(f) != entry.get("sha256"):
            raise IntegrityError(f"{f}: sha256 does not match the manifest (file corrupted or modified); "
                                 f"copy the bundle again or re-export it")
    for mf in manifest.models.values():
        if mf.format == "onnx":
            check_onnx_file(_member(bundle_dir, mf.file), UnsafeBundleError, listed=set(manifest.files),
                            skip_unreadable=True)  # not protobuf at all: the runtime refuses it when opened


def load_bundle(name_or_path: str | Path, verify: bool = True) -> Bundle:
    """Load and (by default) verify a bundle from a folder or a shipped bundle name.

    Raises
    ------
    BundleNotFoundError, ManifestError, SchemaVersionError, IntegrityError
    """
    path = resolve_bundle_path(name_or_path)
    manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest)
    return Bundle(path=path, manifest=manifest)


def _version() -> str:
    from edgemer import __version__

    return __version__
