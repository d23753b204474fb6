"""``--target`` quantisation presets (export/core/targets.py): options match the documented reasons, every
command offering ``--target`` takes exactly these names, unknown names fail clearly, and a jetson-trt
quantisation really is symmetric (zero point 0 everywhere)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from edgemer.cli import build_parser
from edgemer.errors import ConfigError
from edgemer.export.core import targets as targets_module
from edgemer.export.core.targets import (OPTIMUM_DYNAMIC, TARGETS, check_target, optimum_config_name,
                                    quant_options)


def test_preset_names_are_the_kernel_families_and_the_devices():
    assert list(TARGETS) == ["x86-avx2", "x86-vnni", "arm64", "jetson-trt", "pi4", "pi5", "jetson-orin", "x86"]
    assert targets_module.DEVICE_PRESETS == ("pi4", "pi5", "jetson-orin", "x86")
    for name, preset in TARGETS.items():
        assert preset.name == name and preset.options.target == name
        assert f"``{name}``" in targets_module.__doc__  # each preset has its paragraph in the module docstring
        assert preset.devices and preset.reason and preset.prefer is not None


@pytest.mark.parametrize("device, family", sorted(targets_module.SAME_OPTIONS.items()))
def test_device_presets_quantise_as_their_kernel_family(device, family):
    import dataclasses

    same = lambda o: dataclasses.replace(o, target=None, prefer=())  # noqa: E731 - what quantize_static sees
    assert same(TARGETS[device].options) == same(TARGETS[family].options)
    assert TARGETS[device].prefer == TARGETS[family].prefer


def test_presets_record_the_engine_to_prefer_in_the_manifest_section():
    for name in ("pi4", "pi5"):
        prefer = TARGETS[name].options.to_dict()["prefer"]
        assert (prefer["backend"], prefer["precision"], prefer["threads"]) == ("litert", "int8", 1)
        assert "aarch64" in prefer["machines"] and prefer["reason"]
    assert TARGETS["jetson-orin"].options.to_dict()["prefer"]["backend"] == "onnxruntime"
    assert TARGETS["x86"].options.to_dict()["prefer"]["machines"] == ["x86_64", "amd64"]
    assert "prefer" not in quant_options(None).to_dict()
    hash(TARGETS["pi4"].options)  # still a frozen, hashable option block


def test_an_exported_preset_is_the_engine_prior_on_its_device(tmp_path, monkeypatch):
    """edgemer export onnx --target jetson-orin: the manifest carries the preference; with nothing measured,
    auto runs the preferred cell on an aarch64 machine and the first verified file elsewhere."""
    pytest.importorskip("onnxruntime.quantization")
    import platform

    from edgemer.backends.choice import ChoiceCache, choose_engine
    from edgemer.bundle import load_bundle
    from edgemer.cli import main
    from test_export_byo import face_cnn, write_images

    model = face_cnn(tmp_path / "face.onnx")
    cal = write_images(tmp_path / "cal", 10)
    assert main(["export", "onnx", str(model), "--calibration", str(cal), "--modality", "face", "--labels", "a,b,c",
                 "--out", str(tmp_path / "b"), "--no-tflite", "--target", "jetson-orin"]) == 0
    bundle = load_bundle(tmp_path / "b")
    q = bundle.manifest.raw["quantisation"]["onnx"]
    assert q["target"] == "jetson-orin" and q["prefer"]["backend"] == "onnxruntime" and q["activation_type"] == "QInt8"
    cache = ChoiceCache(tmp_path / "cache", device=("dev", {}), version="0.1.0")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    orin = choose_engine(bundle, cache=cache, measure=False, thread_options=(1,))
    assert (orin.rule, orin.label) == ("preset", "onnxruntime/int8/t1")
    assert "--target jetson-orin preset prefers onnxruntime/int8/t1" in orin.reason
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")  # not the preset's device: no prior
    elsewhere = choose_engine(bundle, cache=cache, measure=False, thread_options=(1,))
    assert elsewhere.rule == "default" and elsewhere.label == "onnxruntime/fp32/t1"
    # a measurement always wins over the prior
    from edgemer.backends.choice import Cell, Measurement, remember_measurements

    fp32 = bundle.manifest.model("onnx", "fp32")
    remember_measurements(bundle, [Measurement(Cell(fp32.key, fp32.file, "onnxruntime", "fp32", 1), 0.01, "bench")],
                          cache=cache)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    measured = choose_engine(bundle, cache=cache, measure=False, thread_options=(1,))
    assert (measured.rule, measured.label) == ("fastest-verified", "onnxruntime/fp32/t1")


def test_x86_avx2_uses_7_bit_weights_and_uint8_activations_against_int16_saturation():
    o = TARGETS["x86-avx2"].options
    assert (o.reduce_range, o.activation_type, o.weight_type) == (True, "QUInt8", "QInt8")
    assert dict(o.extra_options) == {}
    # the reason's arithmetic: full-range u8 x s8 pairs overflow int16, 7-bit weights fit
    assert 2 * 255 * 127 > 2**15 - 1 >= 2 * 255 * 63
    assert "reduce_range" in TARGETS["x86-avx2"].reason and "int16" in TARGETS["x86-avx2"].reason


@pytest.mark.parametrize("name", ["x86-vnni", "arm64"])
def test_vnni_and_arm64_use_full_range_s8s8_per_channel(name):
    o = TARGETS[name].options
    assert (o.reduce_range, o.activation_type, o.weight_type, o.per_channel) == (False, "QInt8", "QInt8", True)
    assert dict(o.extra_options) == {}
    assert "int32" in TARGETS[name].reason


def test_jetson_trt_is_symmetric_on_activations_and_weights_per_channel():
    o = TARGETS["jetson-trt"].options
    assert dict(o.extra_options) == {"ActivationSymmetric": True, "WeightSymmetric": True}
    assert (o.activation_type, o.weight_type, o.per_channel, o.reduce_range) == ("QInt8", "QInt8", True, False)
    assert "symmetric" in TARGETS["jetson-trt"].reason and "zero point 0" in TARGETS["jetson-trt"].reason
    assert o.to_dict()["extra_options"] == {"ActivationSymmetric": True, "WeightSymmetric": True}


def test_no_target_keeps_onnxruntime_defaults():
    o = quant_options(None)
    assert o.target is None and not o.reduce_range and dict(o.extra_options) == {}


def _target_actions(parser: argparse.ArgumentParser, path: str = "edgemer"):
    """(command path, --target action) for every (sub)command of ``parser`` that has --target."""
    for action in parser._actions:
        if "--target" in getattr(action, "option_strings", ()):
            yield path, action
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _target_actions(sub, f"{path} {name}")


def test_every_target_option_offers_exactly_the_presets():
    found = dict(_target_actions(build_parser()))
    assert {"edgemer export physio", "edgemer export hf"} <= set(found)
    for command, action in found.items():
        assert tuple(action.choices) == tuple(TARGETS), command


def test_unknown_target_names_the_valid_ones():
    with pytest.raises(ConfigError) as exc:
        quant_options("x86-sse")
    for name in TARGETS:
        assert name in str(exc.value)
    with pytest.raises(ConfigError, match="optimum's 'avx512_vnni' is edgemer's 'x86-vnni'"):
        check_target("avx512_vnni")


def test_hf_export_speaks_the_same_vocabulary():
    from edgemer.export.audio.config import HfExportConfig

    assert set(OPTIMUM_DYNAMIC) == set(TARGETS) - {"jetson-trt", "jetson-orin"}
    assert [optimum_config_name(t) for t in ("x86-avx2", "x86-vnni", "arm64")] == ["avx2", "avx512_vnni", "arm64"]
    assert [optimum_config_name(t) for t in ("pi4", "pi5", "x86")] == ["arm64", "arm64", "avx2"]
    assert HfExportConfig().target in TARGETS
    assert HfExportConfig(target="arm64").target == "arm64"
    assert HfExportConfig(target="jetson-trt", quantization="static").target == "jetson-trt"
    with pytest.raises(ConfigError, match="--quantization static"):
        HfExportConfig(target="jetson-trt", quantization="dynamic")
    with pytest.raises(ConfigError, match="HfExportConfig.target .*'x86-avx2'"):
        HfExportConfig(target="avx2")


def _tiny_model(path: Path) -> None:
    """[1, 8] -> MatMul 8x16 -> Relu -> MatMul 16x4: small enough to quantise in a second."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["signals", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("signals", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _quantize_linear_zero_points(path: Path) -> dict[str, np.ndarray]:
    """QuantizeLinear node name -> its zero point array."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.name: inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"}


def test_jetson_trt_quantisation_has_zero_point_0_everywhere(tmp_path):
    pytest.importorskip("onnxruntime.quantization")
    from edgemer.export.core.quantize import quantize_onnx

    fp32 = tmp_path / "tiny.onnx"
    _tiny_model(fp32)
    # calibration windows offset from 0, so an asymmetric scheme would pick non-zero zero points
    calibration = (np.random.default_rng(1).standard_normal((32, 8)) + 1.5).astype(np.float32)
    default = _quantize_linear_zero_points(quantize_onnx(fp32, tmp_path / "default.onnx", calibration,
                                                         quant_options(None)))
    trt = _quantize_linear_zero_points(quantize_onnx(fp32, tmp_path / "trt.onnx", calibration,
                                                     quant_options("jetson-trt")))
    assert default and trt
    assert any(np.any(zp != 0) for zp in default.values())  # the check can fail
    assert all(zp.dtype == np.int8 and np.all(zp == 0) for zp in trt.values())
