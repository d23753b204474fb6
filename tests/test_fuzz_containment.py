"""Containment and limits: what a hostile bundle, WAV, image, TOML or pickle may not do.

Each refusal is a typed edgemer error naming the file and the field. The inputs of the
regression tests are in tests/fuzz_corpus/regressions/ (crashes the fuzzer found).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgemer.backends import open_session
from edgemer.benchmarks.fuzz_formats import onnx_matmul
from edgemer.bundle import file_entry, load_bundle
from edgemer.config import load_pipeline_file
from edgemer.errors import ConfigError, DatasetError, ManifestError, UnsafeBundleError, UnsafePickleError
from edgemer.sources.wav_replay import read_wav
from edgemer.wesad import load_subject

CORPUS = Path(__file__).parent / "fuzz_corpus"
REGRESSIONS = CORPUS / "regressions"


@pytest.fixture
def tiny_bundle(tmp_path) -> Path:
    """A copy of the corpus' tiny bundle (inline weights) in ``tmp_path/bundle``."""
    dst = tmp_path / "bundle"
    shutil.copytree(CORPUS / "bundle" / "inline", dst)
    return dst


def _edit(bundle: Path, change) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    change(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def _point_model_at(bundle: Path, name: str, target: Path) -> None:
    def change(m):
        m["models"]["onnx_fp32"]["file"] = name
        m["files"][name] = file_entry(target)
    _edit(bundle, change)


def test_the_tiny_seed_bundle_loads_and_runs(tiny_bundle):
    session = open_session(load_bundle(tiny_bundle), "onnxruntime", "fp32", 1)
    assert session is not None


def test_issue_case_model_outside_the_bundle_is_refused(tiny_bundle):
    # Issue 21: a manifest naming ../outside.onnx with its correct sha256 and size was loaded.
    outside = tiny_bundle.parent / "outside.onnx"
    shutil.copy(tiny_bundle / "model.onnx", outside)
    _point_model_at(tiny_bundle, "../outside.onnx", outside)
    with pytest.raises(UnsafeBundleError, match=r"manifest.json: 'files' names '\.\./outside\.onnx'"):
        load_bundle(tiny_bundle)


@pytest.mark.parametrize("name", ["/etc/passwd", "sub/../../x.onnx", "./model.onnx", "C:\\model.onnx",
                                  "model.onnx\x00", "", "~/model.onnx", "a" * 300])
def test_file_names_must_be_plain_relative_names(tiny_bundle, name):
    _edit(tiny_bundle, lambda m: m["files"].__setitem__(name, m["files"]["model.onnx"]))
    with pytest.raises(UnsafeBundleError, match="'files' names"):
        load_bundle(tiny_bundle)


def test_model_file_field_is_named(tiny_bundle):
    _edit(tiny_bundle, lambda m: m["models"]["onnx_fp32"].__setitem__("file", "/abs/model.onnx"))
    with pytest.raises(UnsafeBundleError, match=r"'models\.onnx_fp32\.file'"):
        load_bundle(tiny_bundle)


@pytest.mark.parametrize("link_to_folder", [False, True])
def test_symlinks_leaving_the_bundle_are_refused(tiny_bundle, link_to_folder):
    outside = tiny_bundle.parent / "outside"
    outside.mkdir()
    shutil.copy(tiny_bundle / "model.onnx", outside / "model.onnx")
    if link_to_folder:
        os.symlink(outside, tiny_bundle / "sub")
        name = "sub/model.onnx"
    else:
        os.symlink(outside / "model.onnx", tiny_bundle / "link.onnx")
        name = "link.onnx"
    _point_model_at(tiny_bundle, name, outside / "model.onnx")
    with pytest.raises(UnsafeBundleError, match="leaves the bundle folder through a symlink"):
        load_bundle(tiny_bundle)


def test_a_symlink_inside_the_bundle_is_fine(tiny_bundle):
    os.symlink("model.onnx", tiny_bundle / "alias.onnx")
    _point_model_at(tiny_bundle, "alias.onnx", tiny_bundle / "model.onnx")
    assert load_bundle(tiny_bundle).model_path("onnx", "fp32").name == "model.onnx"


def _external_bundle(tmp_path: Path, location: str, **kw) -> Path:
    bundle = tmp_path / "ext"
    shutil.copytree(CORPUS / "bundle" / "external", bundle)
    model, weights = onnx_matmul(external=location, **kw)
    (bundle / "model.onnx").write_bytes(model)
    (tmp_path / "outside.bin").write_bytes(weights)
    _edit(bundle, lambda m: m["files"].__setitem__("model.onnx", file_entry(bundle / "model.onnx")))
    return bundle


def test_external_data_inside_the_bundle_loads(tmp_path):
    bundle = _external_bundle(tmp_path, "weights.bin", offset=0, length=2880)
    assert open_session(load_bundle(bundle), "onnxruntime", "fp32", 1) is not None


@pytest.mark.parametrize("location,message", [
    ("../outside.bin", "not a plain relative file name"),
    ("/etc/passwd", "not a plain relative file name"),
    ("link.bin", "leaves the model's folder through a symlink"),
    ("missing.bin", "missing next to the model"),
    ("unlisted.bin", "no sha256 entry"),
])
def test_external_data_must_stay_inside_and_be_verified(tmp_path, location, message):
    bundle = _external_bundle(tmp_path, location)
    os.symlink(tmp_path / "outside.bin", bundle / "link.bin")
    shutil.copy(bundle / "weights.bin", bundle / "unlisted.bin")
    with pytest.raises(UnsafeBundleError, match=f"tensor 'W' external-data 'location'.*{message}"):
        load_bundle(bundle)


def test_external_data_range_past_the_file_is_refused(tmp_path):
    bundle = _external_bundle(tmp_path, "weights.bin", offset=0, length=10 ** 12)
    with pytest.raises(UnsafeBundleError, match="runs past its 2880 bytes"):
        load_bundle(bundle)


def test_onnx_tensor_of_1e12_elements_is_refused(tmp_path):
    bundle = _external_bundle(tmp_path, "weights.bin", dims=(10 ** 6, 10 ** 6))
    with pytest.raises(UnsafeBundleError, match="tensor 'W' declares more than .* elements \\(field 'dims'\\)"):
        load_bundle(bundle)


def test_manifest_shape_of_1e12_elements_is_refused(tiny_bundle):
    _edit(tiny_bundle, lambda m: m["inputs"][0].__setitem__("shape", [1, 10 ** 6, 10 ** 6]))
    with pytest.raises(UnsafeBundleError, match="'inputs' shape declares more than"):
        load_bundle(tiny_bundle)


@pytest.mark.parametrize("value", [1e9, 0, -4.0, "4 Hz", None, True])
def test_absurd_rate_is_refused_naming_the_field(tiny_bundle, value):
    _edit(tiny_bundle, lambda m: m["front_end"]["streams"]["eda"].__setitem__("rate_hz", value))
    with pytest.raises(UnsafeBundleError, match=r"'front_end\.streams\.eda\.rate_hz' = .* is not a rate"):
        load_bundle(tiny_bundle)


def test_100_mb_manifest_is_refused_before_reading(tiny_bundle):
    with open(tiny_bundle / "manifest.json", "r+b") as f:
        f.truncate(100 << 20)  # sparse: nothing is written or read
    with pytest.raises(UnsafeBundleError, match="104857600 bytes, more than 4194304"):
        load_bundle(tiny_bundle)


@pytest.mark.parametrize("text", ["[" * 100000, '{"a": 1e999999, "b": ' + "9" * 5000 + "}", "NaN"])
def test_manifest_json_that_python_chokes_on_is_a_manifest_error(tiny_bundle, text):
    (tiny_bundle / "manifest.json").write_text(text)
    with pytest.raises(ManifestError):
        load_bundle(tiny_bundle)


def test_samples_npz_declaring_a_huge_array_is_refused(tiny_bundle):
    import io
    import zipfile

    from numpy.lib import format as npformat

    member = io.BytesIO()
    npformat.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 12,)})
    member.write(bytes(16))
    with zipfile.ZipFile(tiny_bundle / "samples.npz", "w") as z:
        z.writestr("x.npy", member.getvalue())
    _edit(tiny_bundle, lambda m: m["files"].__setitem__("samples.npz", file_entry(tiny_bundle / "samples.npz")))
    bundle = load_bundle(tiny_bundle)
    with pytest.raises(UnsafeBundleError, match="array 'x.npy' declares shape \\(1000000000000,\\)"):
        bundle.samples()


# --------------------------------------------------------------------------- regressions

def test_issue_case_wav_header_cut_after_fmt(tmp_path):
    # Issue 21: scipy.io.wavfile ended with a bare struct.error.
    with pytest.raises(DatasetError, match="wav_cut_after_fmt.wav: not a readable WAV file"):
        read_wav(REGRESSIONS / "wav_cut_after_fmt.wav")


@pytest.mark.parametrize("field,value,message", [
    ("rate", 10 ** 9, "sample rate 1000000000 Hz is outside"),
    ("channels", 0, "field channels is 0"),
    ("bits", 12, "field bits_per_sample is 12"),
    ("tag", 2, "format_tag is 0x2"),
])
def test_wav_header_fields_are_named(tmp_path, field, value, message):
    import struct

    fields = {"tag": 1, "channels": 1, "rate": 16000, "bits": 16}
    fields[field] = value
    align = max(1, fields["channels"]) * fields["bits"] // 8
    fmt = struct.pack("<HHIIHH", fields["tag"], fields["channels"], fields["rate"], 0, align if field != "channels"
                      else 0, fields["bits"])
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 4) + b"\0" * 4
    path = tmp_path / "bad.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(DatasetError, match=message):
        read_wav(path)


def test_jpeg_declaring_20000_by_20000_is_refused_before_decoding():
    pytest.importorskip("cv2")
    from edgemer.sources.video_replay import VideoReplay

    with pytest.raises(DatasetError, match="declares 20000 x 20000 pixels"):
        VideoReplay(REGRESSIONS / "jpeg_declares_20000x20000.jpg")


def test_image_content_opencv_would_sniff_is_refused_whatever_the_extension(tmp_path):
    pytest.importorskip("cv2")
    from edgemer.sources.video_replay import VideoReplay

    fake = tmp_path / "photo.png"
    fake.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n")
    with pytest.raises(DatasetError, match="not a PNG, JPEG"):
        VideoReplay(fake)


def test_toml_that_is_not_utf8():
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_pipeline_file(REGRESSIONS / "toml_not_utf8.toml")


@pytest.mark.parametrize("name,error,message", [
    ("wesad_0d_eda.pkl", DatasetError, "'signal/wrist/EDA' has shape \\(\\)"),
    ("wesad_binbytes8_2e63.pkl", DatasetError, "declares a bytes object of 9223372036854775807 bytes"),
    ("wesad_bytearray_1e12.pkl", UnsafePickleError, "bytearray of 1000000000000 bytes"),
])
def test_wesad_pickle_regressions(name, error, message):
    with pytest.raises(error, match=message):
        load_subject(REGRESSIONS / name)


def test_e4_zip_with_damaged_deflate_data():
    # The fuzzer's find: zipfile raised a bare zlib.error.
    from edgemer.sources.e4 import E4Replay

    with pytest.raises(DatasetError, match="e4_damaged_deflate.zip: not a readable zip"):
        E4Replay(REGRESSIONS / "e4_damaged_deflate.zip")


@pytest.mark.parametrize("location,message", [("../outside.bin", "not a plain relative file name"),
                                              ("missing.bin", "missing next to the model")])
def test_export_onnx_input_keeps_external_data_in_its_folder(tmp_path, location, message):
    pytest.importorskip("onnx")
    from edgemer.errors import ModelCheckError
    from edgemer.export.core.onnx_check import check_onnx_model

    model, weights = onnx_matmul(external=location)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.onnx").write_bytes(model)
    (tmp_path / "outside.bin").write_bytes(weights)
    with pytest.raises(ModelCheckError, match=f"model.onnx: tensor 'W' external-data 'location'.*{message}"):
        check_onnx_model(tmp_path / "m" / "model.onnx")


def test_bundle_whose_front_end_streams_is_a_list(tmp_path):
    # The fuzzer's find: WristFrontEndConfig.from_dict raised a bare AttributeError.
    from edgemer.frontends import create_front_end

    bundle = load_bundle(REGRESSIONS / "bundle_front_end_streams_list")
    with pytest.raises(ManifestError, match="malformed front_end table"):
        create_front_end(bundle.manifest)


def test_export_onnx_input_of_an_element_type_onnx_does_not_know(tmp_path):
    # The fuzzer's find: onnx.helper.tensor_dtype_to_np_dtype raised a bare KeyError.
    pytest.importorskip("onnx")
    from edgemer.errors import ModelCheckError
    from edgemer.export.core.onnx_check import check_onnx_model

    shutil.copy(REGRESSIONS / "onnx_input_elem_type_68.onnx", tmp_path / "model.onnx")
    shutil.copy(CORPUS / "onnx" / "model.onnx.data", tmp_path / "model.onnx.data")  # its external weights
    with pytest.raises(ModelCheckError, match="element type 68 \\(unknown to onnx\\)"):
        check_onnx_model(tmp_path / "model.onnx")


def test_toml_source_without_spec():
    # The fuzzer's find at 10,000 cases: a bare KeyError('spec').
    with pytest.raises(ConfigError, match="number 1 needs 'spec'"):
        load_pipeline_file(REGRESSIONS / "toml_source_without_spec.toml")


def test_wesad_pickle_with_a_memo_index_of_1e8():
    # The fuzzer's find at 10,000 cases: CPython's C unpickler allocated a 2 GB memo for
    # LONG_BINPUT 123217920 (a hang past the time limit); the pure-Python one keeps a dict.
    with pytest.raises(DatasetError, match="not a readable WESAD pickle"):
        load_subject(REGRESSIONS / "wesad_memo_index_1e8.pkl")


def test_wesad_pickle_with_a_truncated_frame():
    # The fuzzer's find: the pure-Python unpickler raised a bare struct.error.
    with pytest.raises(DatasetError, match="not a readable WESAD pickle"):
        load_subject(REGRESSIONS / "wesad_truncated_frame.pkl")


_PEAK_RSS_OF_A_READ = """
import json, resource, sys
from pathlib import Path
from edgemer.wesad import load_subject
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_subject(Path(sys.argv[1]))
    outcome = "loaded"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {exc}"
grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"outcome": outcome, "grown_mib": grown_kib / 1024}))
"""


@pytest.mark.parametrize("name", ["wesad_truncated_bytearray8_1846383876.pkl",
                                  "wesad_truncated_bytearray8_1846384022.pkl"])
def test_wesad_truncated_pickle_declaring_a_huge_bytearray_is_refused_before_allocating(name):
    # The fuzzer's find at 10,000 cases: 28 KB pickles whose BYTEARRAY8 declares 1.8 GB; the
    # stdlib unpickler allocated (and zeroed) the bytearray before finding the file too short,
    # growing the process by 1761 MiB before the DatasetError. Read in a fresh process so that
    # its peak RSS (ru_maxrss, KiB on Linux) measures this read alone.
    import subprocess
    import sys

    with pytest.raises(DatasetError, match=f"{name}: the pickle declares a bytearray of 18463.* bytes but only "
                                           f"[0-9]+ bytes are left in the file"):
        load_subject(REGRESSIONS / name)
    run = subprocess.run([sys.executable, "-c", _PEAK_RSS_OF_A_READ, str(REGRESSIONS / name)],
                         capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["outcome"].startswith("DatasetError: ") and "declares a bytearray" in result["outcome"]
    assert result["grown_mib"] < 200, result


# --------------------------------------------------------------------------- Keras inputs to export

def _import_keras(path: Path):
    """What 'edgemer export onnx' does with a Keras file before the ONNX export (the fuzz target)."""
    import torch

    from edgemer.export.core.keras import describe_keras_model, load_keras_model

    info = describe_keras_model(path)
    module = load_keras_model(path)
    h, w, c = info.input_hwc
    with torch.no_grad():
        return info, module(torch.zeros(1, c, h, w))


@pytest.mark.parametrize("name,outputs", [("functional.h5", 3), ("sequential.h5", 2)])
def test_keras_seeds_import_and_run(name, outputs):
    pytest.importorskip("h5py")
    pytest.importorskip("torch")
    info, out = _import_keras(CORPUS / "keras" / name)
    assert info.n_outputs == outputs and tuple(out.shape) == (1, outputs)


@pytest.mark.parametrize("name,error,message", [
    # the fuzzer's finds against the first reader, each a bare exception then
    ("keras_config_json_int.h5", "DatasetError", "attribute 'model_config' is a JSON int"),  # AttributeError
    ("keras_config_not_json.h5", "DatasetError", "attribute 'model_config' is not valid JSON"),  # JSONDecodeError
    ("keras_bad_symbol_table.h5", "DatasetError", "group 'model_weights' cannot be read .* damaged"),  # RuntimeError
    ("keras_dense_kernel_8d.h5", "ExportError", r"layer 'dense_1' \(Dense\) weight 'kernel' has shape "
                                                r"\(1, 1, 1, 1, 1, 1, 1, 1\); the layer's config needs \(27, 2\)"),
    ("keras_kernel_size_object.h5", "ExportError", r"layer 'conv2d_1' \(Conv2D\) field 'kernel_size' is"),  # TypeError
    ("keras_inbound_node_not_a_name.h5", "ExportError", r"'concatenate_1'\) field 'inbound_nodes'"),  # TypeError
    ("keras_string_bias.h5", "ExportError", r"conv2d_1/bias:0 has dtype \|S3; weights must be numeric"),  # OSError
])
def test_keras_regressions(name, error, message):
    pytest.importorskip("h5py")
    pytest.importorskip("torch")
    from edgemer import errors

    with pytest.raises(getattr(errors, error), match=f"{name}: .*{message}"):
        _import_keras(REGRESSIONS / name)


def test_keras_through_export_is_a_model_check_error(tmp_path):
    pytest.importorskip("h5py")
    pytest.importorskip("torch")
    from edgemer.errors import ModelCheckError
    from edgemer.export.byo.config import ByoExportConfig
    from edgemer.export.byo.export import export_keras_model

    with pytest.raises(ModelCheckError, match=r"keras_dense_kernel_8d.h5: cannot import the Keras model .*'kernel'"):
        export_keras_model(REGRESSIONS / "keras_dense_kernel_8d.h5", tmp_path, tmp_path / "out",
                           ByoExportConfig(modality="face"))


@pytest.mark.parametrize("how", ["external link", "external dataset"])
def test_keras_weights_must_stay_inside_the_file(tmp_path, how):
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("torch")
    from edgemer.benchmarks.fuzz_formats import keras_h5, keras_seed_models
    from edgemer.errors import ExportError

    config, weights = keras_seed_models()["sequential.h5"]
    path = tmp_path / "m" / "model.h5"
    path.parent.mkdir()
    path.write_bytes(keras_h5(config, weights))
    kernel = weights["conv2d_1"]["kernel"]
    (tmp_path / "outside.bin").write_bytes(kernel.tobytes())
    with h5py.File(tmp_path / "outside.h5", "w") as f:
        f["k"] = kernel
    with h5py.File(path, "r+") as f:
        g = f["model_weights/conv2d_1/conv2d_1"]
        del g["kernel:0"]
        if how == "external link":
            g["kernel:0"] = h5py.ExternalLink(str(tmp_path / "outside.h5"), "/k")
        else:
            g.create_dataset("kernel:0", shape=kernel.shape, dtype="<f4",
                             external=[(str(tmp_path / "outside.bin"), 0, kernel.nbytes)])
    with pytest.raises(ExportError, match=r"model.h5: model_weights/conv2d_1/conv2d_1/kernel:0 (is a link to|keeps "
                                          r"its data in) another file"):
        _import_keras(path)


@pytest.mark.parametrize("edit,message", [
    (lambda c, w: c["config"]["layers"][0]["config"].update(batch_input_shape=[None, 10 ** 5, 10 ** 5, 3]),
     r"field 'batch_input_shape' .* elements \(limit 16777216\)"),
    (lambda c, w: w["conv2d_1"].update(kernel=(10 ** 5, 10 ** 5)), r"declares shape \(100000, 100000\)"),
    (lambda c, w: c["config"]["layers"][0]["config"].update(filters=2 ** 31), r"field 'filters' is 2147483648"),
    (lambda c, w: c["config"]["layers"][0]["config"].update(kernel_size=[7, 7]), r"field 'kernel_size' \(7, 7\) is larger"),
])
def test_keras_absurd_declarations_are_refused_before_allocating(tmp_path, edit, message):
    pytest.importorskip("h5py")
    pytest.importorskip("torch")
    from edgemer.benchmarks.fuzz_formats import keras_h5, keras_seed_models
    from edgemer.errors import ExportError

    config, weights = keras_seed_models()["sequential.h5"]
    edit(config, weights)
    (tmp_path / "model.h5").write_bytes(keras_h5(config, weights))
    with pytest.raises(ExportError, match=message):
        _import_keras(tmp_path / "model.h5")


def test_keras_global_heap_with_a_free_space_object_of_0_bytes():
    # The fuzzer's find at 10,000 cases: bytes of the global heap holding 'model_config' zeroed;
    # HDF5 looped forever reading the attribute (a hang past the time limit).
    pytest.importorskip("h5py")
    from edgemer.errors import DatasetError
    from edgemer.export.core.keras import describe_keras_model

    with pytest.raises(DatasetError, match=r"keras_global_heap_free_space_0.h5: HDF5 global heap at byte 904: a "
                                           r"free-space object of 0 bytes"):
        describe_keras_model(REGRESSIONS / "keras_global_heap_free_space_0.h5")
