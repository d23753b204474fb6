"""Bundles: a folder of model files plus ``manifest.json``, the contract between
export and runtime.

Loading a bundle checks the schema version, the required fields and the sha256 and
size of every file the manifest lists, before any inference. The runtime never
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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgemer.errors import (
    BundleNotFoundError,
    IntegrityError,
    ManifestError,
    SchemaVersionError,
)

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "int8")
_REQUIRED = ("schema_version", "name", "modality", "task", "labels", "models", "inputs", "outputs",
             "front_end", "provenance", "files")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output (shape includes the batch of 1)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TensorSpec":
        return cls(name=str(d["name"]), shape=tuple(int(s) for s in d["shape"]), dtype=str(d.get("dtype", "float32")))

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
        try:
            models = {}
            for key, m in d["models"].items():
                mf = ModelFile(key=key, file=str(m["file"]), format=str(m["format"]), precision=str(m["precision"]))
                if mf.format not in FORMATS or mf.precision not in PRECISIONS:
                    raise ManifestError(f"{source}: model '{key}' has format/precision {mf.format}/{mf.precision}; "
                                        f"expected one of {FORMATS} x {PRECISIONS}")
                if mf.file not in d["files"]:
                    raise ManifestError(f"{source}: model file '{mf.file}' has no sha256 entry under 'files'")
                models[key] = mf
            return cls(
                name=str(d["name"]),
                modality=str(d["modality"]),
                task=str(d["task"]),
                labels=tuple(str(x) for x in d["labels"]),
                models=models,
                inputs=tuple(TensorSpec.from_dict(x) for x in d["inputs"]),
                outputs=tuple(TensorSpec.from_dict(x) for x in d["outputs"]),
                front_end=dict(d["front_end"]),
                provenance=dict(d["provenance"]),
                files={str(k): dict(v) for k, v in d["files"].items()},
                raw=dict(d),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"{source}: malformed field ({type(exc).__name__}: {exc}); re-export the bundle") from exc

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
        return self.path / self.manifest.model(fmt, precision).file

    def samples(self) -> dict[str, np.ndarray]:
        """Held-out model inputs and labels shipped in ``samples.npz`` (empty dict if absent)."""
        f = self.path / "samples.npz"
        if not f.exists():
            return {}
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def verification(self) -> dict[str, Any]:
        """The INT8-vs-FP32 verification report written at export (empty dict if absent)."""
        f = self.path / "verification.json"
        return json.loads(f.read_text()) if f.exists() else {}


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
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{f}: cannot read the manifest ({exc}); the bundle is corrupt, re-export it") from exc
    return Manifest.from_dict(data, source=str(f))


def verify_files(bundle_dir: Path, manifest: Manifest) -> None:
    """Check that every file the manifest lists exists with the recorded size and sha256."""
    for rel, entry in manifest.files.items():
        f = bundle_dir / rel
        if not f.is_file():
            raise IntegrityError(f"{f}: listed in the manifest but missing; copy the whole bundle folder again")
        size = f.stat().st_size
        if "bytes" in entry and size != int(entry["bytes"]):
            raise IntegrityError(f"{f}: {size} bytes, the manifest records {entry['bytes']} "
                                 f"(truncated or replaced); copy the bundle again or re-export it")
        if sha256_file(f) != entry.get("sha256"):
            raise IntegrityError(f"{f}: sha256 does not match the manifest (file corrupted or modified); "
                                 f"copy the bundle again or re-export it")


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
