"""Bundle loading refuses damaged bundles with typed, actionable errors."""
import json

import pytest

from edgemer.backends import open_session
from edgemer.bundle import file_entry, list_shipped_bundles, load_bundle
from edgemer.errors import (BundleNotFoundError, IntegrityError, ManifestError, ModelLoadError,
                            SchemaVersionError)


def test_shipped_bundle_listed_and_verified(demo_bundle):
    assert "physio-demo" in list_shipped_bundles()
    assert demo_bundle.name == "physio-demo"
    assert demo_bundle.manifest.labels == ("baseline", "stress", "amusement")


def test_unknown_bundle_name():
    with pytest.raises(BundleNotFoundError, match="edgemer info"):
        load_bundle("no-such-bundle")


def test_missing_model_file(bundle_copy):
    (bundle_copy / "model_int8.onnx").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        load_bundle(bundle_copy)


def test_truncated_model_file(bundle_copy):
    f = bundle_copy / "model_int8.onnx"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(IntegrityError, match="truncated"):
        load_bundle(bundle_copy)


def test_sha256_mismatch(bundle_copy):
    f = bundle_copy / "model_fp32.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        load_bundle(bundle_copy)


def _rewrite_manifest(path, **changes):
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    (path / "manifest.json").write_text(json.dumps(m))
    return m


def test_other_schema_version(bundle_copy):
    _rewrite_manifest(bundle_copy, schema_version=99)
    with pytest.raises(SchemaVersionError, match="version 99"):
        load_bundle(bundle_copy)


def test_manifest_not_json(bundle_copy):
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="cannot read"):
        load_bundle(bundle_copy)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="not an edgemer bundle"):
        load_bundle(tmp_path)


@pytest.mark.parametrize("backend,fmt,name", [("onnxruntime", "onnx", "model_int8.onnx"),
                                              ("litert", "tflite", "model_int8.tflite")])
def test_corrupt_model_with_matching_hash_gives_model_load_error(bundle_copy, backend, fmt, name):
    # A file damaged before export (hash recorded over the damage) must still fail clearly.
    f = bundle_copy / name
    f.write_bytes(b"\x00garbage" * 100)
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["files"][name] = file_entry(f)
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    bundle = load_bundle(bundle_copy)
    with pytest.raises(ModelLoadError, match="re-export"):
        open_session(bundle, backend, "int8")
