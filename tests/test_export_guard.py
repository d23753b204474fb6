"""The accuracy guard of ``edgemer export onnx`` serves the trained exports too (``export physio`` here;
face and audio share the same call in :func:`edgemer.export.core.bundle_writer.write_model_files`)."""
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from edgemer.bundle import load_bundle  # noqa: E402
from edgemer.errors import ConfigError  # noqa: E402
from edgemer.export.core import guard as guard_module  # noqa: E402
from edgemer.export.core.guard import GuardTask  # noqa: E402
from edgemer.export.physio.config import PhysioExportConfig  # noqa: E402
from edgemer.export.physio.export import export_physio  # noqa: E402
from edgemer.export.physio.synth import write_synthetic_wesad  # noqa: E402

SMALL = PhysioExportConfig(epochs=2, calibration_windows=32, name="guard-physio", seed=0, tflite=False)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """Three synthetic subjects of 8 minutes: two train, one is held out."""
    return write_synthetic_wesad(tmp_path_factory.mktemp("data") / "wesad", subjects=3, seed=0, minutes=8,
                                 progress=False)


def test_physio_export_runs_the_guard_and_records_it(synth, tmp_path):
    result = export_physio(synth, tmp_path / "bundle", SMALL, progress=False)
    bundle = load_bundle(result.bundle_dir)
    report = bundle.verification()
    guard = report["guard"]
    assert guard["max_drop_points"] == SMALL.targets.max_macro_f1_drop_points
    assert guard["steps"][0]["step"] == 0 and guard["steps"][0]["excluded"] == []
    assert guard["final"]["metric"] == "macro-F1"
    assert guard["final"]["samples"] == report["heldout"]["windows"]
    # the guard measured the INT8 ONNX file the bundle holds, as verification does (both onnxruntime)
    row = report["comparisons"]["int8-onnx vs fp32-onnx"]
    assert guard["final"]["drop_points"] == pytest.approx(row["macro_f1_drop_points"], abs=1e-9)
    assert guard["passed"] == (row["macro_f1_drop_points"] <= SMALL.targets.max_macro_f1_drop_points + 1e-9)
    onnx_q = bundle.manifest.raw["quantisation"]["onnx"]
    assert onnx_q["guard"] == guard
    assert onnx_q["nodes_to_exclude"] == guard["guard_excluded"]
    md = (bundle.path / "verification.md").read_text()
    assert "## Accuracy guard" in md and "INT8 ONNX macro-F1 drop" in md
    assert "guard     INT8 ONNX macro-F1 drop" in result.summary()


def test_a_missed_target_makes_the_guard_keep_nodes_in_fp32(synth, tmp_path, monkeypatch):
    real_evaluate = guard_module.evaluate
    calls = []

    def first_step_fails(*args, **kwargs):
        # the plain INT8 model is reported 50 points worse than measured, so the target fails and the guard
        # must act; later steps are measured as they are
        ev = real_evaluate(*args, **kwargs)
        calls.append(ev)
        return replace(ev, int8=ev.int8 - 0.5) if len(calls) == 1 else ev

    monkeypatch.setattr(guard_module, "evaluate", first_step_fails)
    result = export_physio(synth, tmp_path / "bundle", replace(SMALL, guard_steps=2), progress=False)
    bundle = load_bundle(result.bundle_dir)
    guard = bundle.verification()["guard"]
    assert len(guard["steps"]) >= 2 and len(guard["steps"]) == len(calls) <= 3
    assert guard["steps"][0]["drop_points"] > 40
    assert guard["steps"][1]["excluded"], "the guard kept no node in FP32 after a failed step"
    kept = guard["guard_excluded"]
    assert kept == guard["steps"][-1]["excluded"]
    assert bundle.manifest.raw["quantisation"]["onnx"]["nodes_to_exclude"] == kept
    # the written INT8 model really runs those nodes in FP32: their weights are float initialisers, not
    # dequantised INT8, and the tensor the guard picked (consumed by a kept node) is not quantised either
    int8 = onnx.load(str(bundle.path / "model_int8.onnx"))
    dq_out = {n.output[0] for n in int8.graph.node if n.op_type == "DequantizeLinear"}
    inits = {i.name for i in int8.graph.initializer}
    present = [n for n in int8.graph.node if n.name in set(kept)]
    assert present, "none of the nodes kept in FP32 is in the INT8 graph"
    weighted = [n for n in present if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert weighted and all(n.input[1] in inits and n.input[1] not in dq_out for n in weighted)
    assert any(not any(i in dq_out for i in n.input) for n in present)
    assert "Kept in FP32 by the guard" in (bundle.path / "verification.md").read_text()


def test_guard_steps_zero_is_plain_quantisation(synth, tmp_path):
    result = export_physio(synth, tmp_path / "bundle", replace(SMALL, guard_steps=0), progress=False)
    assert "guard" not in result.verification
    assert "guard" not in result.manifest["quantisation"]["onnx"]


@pytest.mark.parametrize("field, value", [("guard_steps", -1)])
def test_config_rejects_negative_guard_steps(field, value):
    with pytest.raises(ConfigError, match=field):
        replace(PhysioExportConfig(), **{field: value})


def test_guard_task_validates_its_inputs():
    import numpy as np

    with pytest.raises(ConfigError, match="metric"):
        GuardTask(np.zeros((2, 1)), np.zeros(2, int), "y", 1.0, metric="f2")
    with pytest.raises(ConfigError, match="labels"):
        GuardTask(np.zeros((2, 1)), np.zeros(3, int), "y", 1.0)
