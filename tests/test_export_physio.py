"""edgemer export physio: a small end-to-end export, the bundle contract, and failures
that leave nothing behind. One small export is shared by the whole module."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgemer.backends import open_session
from edgemer.bundle import MANIFEST_NAME, load_bundle, sha256_file
from edgemer.errors import ConfigError, DatasetError, ExportError, UnsafePickleError
from edgemer.export.physio import export as physio_mod
from edgemer.export.physio.config import REAL_DATA_COMMAND, PhysioExportConfig
from edgemer.export.physio.windows import LABELS, WindowOptions, load_wesad_windows, subject_windows
from edgemer.export.physio.export import export_physio
from edgemer.export.physio.synth import write_synthetic_wesad
from edgemer.frontends.physio import STREAM_RATES_HZ, WristFrontEnd
from edgemer.types import Window
from edgemer.wesad import load_subject

pytest.importorskip("torch")

SMALL = PhysioExportConfig(epochs=3, calibration_windows=32, name="test-physio", seed=0, physics_steps=80)
MODEL_KEYS = {"fp32-onnx", "int8-onnx", "fp32-tflite", "int8-tflite"}
BACKEND = {"onnx": "onnxruntime", "tflite": "litert"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """Three synthetic subjects of 8 minutes: two train, one is held out."""
    return write_synthetic_wesad(tmp_path_factory.mktemp("data") / "wesad", subjects=3, seed=0, minutes=8,
                                 progress=False)


@pytest.fixture(scope="module")
def export(synth, tmp_path_factory):
    return export_physio(synth, tmp_path_factory.mktemp("out") / "bundle", SMALL, progress=False)


@pytest.fixture(scope="module")
def bundle(export):
    return load_bundle(export.bundle_dir)


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


# ---------------------------------------------------------------- the bundle


def test_bundle_loads_and_says_synthetic(export, bundle):
    m = bundle.manifest
    assert m.name == "test-physio" and m.modality == "physio" and m.task == "affect-3class"
    assert m.labels == LABELS
    assert m.trained_on_synthetic_data
    prov = m.provenance
    assert "SYNTHETIC" in prov["note"] and prov["train_on_real_data"] == REAL_DATA_COMMAND
    assert prov["subjects_train"] == ["S2", "S3"] and prov["subjects_heldout"] == ["S4"]
    assert {"torch", "onnx", "onnxruntime", "litert-torch", "edgemer"} <= set(prov["trained_with"])
    assert prov["command"].startswith("edgemer export physio --wesad ") and "--epochs 3" in prov["command"]
    assert prov["created_utc"].endswith("+00:00")
    # Nothing but the bundle was left beside it.
    assert siblings(export.bundle_dir) == ["bundle"]


def test_manifest_contract(bundle):
    raw = json.loads((bundle.path / MANIFEST_NAME).read_text())
    assert raw["schema_version"] == 1
    assert raw["models"] == {
        "fp32-onnx": {"file": "model_fp32.onnx", "format": "onnx", "precision": "fp32"},
        "int8-onnx": {"file": "model_int8.onnx", "format": "onnx", "precision": "int8"},
        "fp32-tflite": {"file": "model_fp32.tflite", "format": "tflite", "precision": "fp32"},
        "int8-tflite": {"file": "model_int8.tflite", "format": "tflite", "precision": "int8"},
    }
    assert raw["inputs"] == [{"name": "signals", "shape": [1, 4, 240], "dtype": "float32"}]
    assert [(o["name"], o["shape"]) for o in raw["outputs"]] == [
        ("class_logits", [1, 3]), ("eda", [1, 280]), ("drive", [1, 280]), ("eda_tonic", [1, 1])]
    fe = raw["front_end"]
    assert (fe["type"], fe["window_s"], fe["hop_s"], fe["forecast_s"]) == ("wrist_physio", 60.0, 5.0, 10.0)
    assert len(fe["normalisation"]["mean"]) == 4 and min(fe["normalisation"]["std"]) > 0
    # Every file except the manifest is listed with its true hash.
    files = sorted(p.name for p in bundle.path.iterdir() if p.name != MANIFEST_NAME)
    assert sorted(raw["files"]) == files == sorted(
        ["model_fp32.onnx", "model_int8.onnx", "model_fp32.tflite", "model_int8.tflite", "samples.npz",
         "verification.json", "verification.md"])
    for name, entry in raw["files"].items():
        assert entry["sha256"] == sha256_file(bundle.path / name)
    # Quantisation parameters the runtime needs are recorded.
    assert raw["quantisation"]["onnx"]["per_channel"] is True and raw["quantisation"]["onnx"]["format"] == "QDQ"
    tfl = raw["quantisation"]["tflite"]
    assert tfl["inputs"]["signals"]["dtype"] == "int8" and tfl["inputs"]["signals"]["scale"] > 0
    assert list(tfl["outputs"]) == ["class_logits", "eda", "drive", "eda_tonic"]
    assert all(q["dtype"] == "int8" for q in tfl["outputs"].values())
    # Metrics for each model file.
    assert set(raw["metrics"]["models"]) == MODEL_KEYS
    assert raw["metrics"]["training"]["epochs"] == 3


def test_tonic_phasic_physics_section(synth, export, bundle):
    """By default the PINN trains with the tonic/phasic fit: the manifest carries the tonic tau and gain,
    the drive levels and onset, the SCR shape with units, the statement where the residual acts, and
    truth.json in the same form; the PINN's parameters were fixed to the fit through training."""
    physics = bundle.manifest.raw["physics"]
    assert physics["model"] == "tonic-phasic"
    assert "tonic" in physics["ode"] and "bateman" in physics["phasic"]
    assert "tonic component" in physics["residual"] and "Bateman" in physics["residual"]
    assert "Bateman" in physics["identifiability"]
    for k in ("tau_s", "gain_uS", "scr_rise_s", "scr_recovery_s", "scr_half_recovery_s"):
        assert physics[k] > 0 and np.isfinite(physics[k]), k
        assert physics["units"][k].startswith("s") or k == "gain_uS", k
    assert physics["scr_rise_s"] < physics["scr_recovery_s"]
    assert 0 <= physics["onset_s"] <= 15.0
    assert physics["level_baseline"] == 0.0 and physics["level_stress"] == 1.0
    for k in ("level_transient", "level_amusement", "level_meditation"):
        assert 0 <= physics[k] <= 1, k
    # The keys the runtime prints (edgemer info, estimates' extras): the same ODE with gamma = 1.
    assert physics["gamma"] == pytest.approx(1.0, rel=1e-5)
    assert physics["alpha_0"] == pytest.approx(1 / physics["tau_s"], rel=1e-5)
    assert physics["beta"] == pytest.approx(physics["gain_uS"] / physics["tau_s"], rel=1e-5)
    assert physics["tau_s"] == pytest.approx(physics["gamma"] / physics["alpha_0"], rel=1e-5)
    assert physics["fit"]["subjects"] == ["S2", "S3"] and physics["fit"]["steps"] == SMALL.physics_steps
    assert physics["fit"]["mse_uS2"] >= 0
    assert physics["published"]["scr_rise_s"] == [0.5, 5.0]
    # Fixed, not learned by the PINN: the same tau and gain after every epoch, equal to the fit's.
    taus = {round(p["tau_s"], 4) for p in export.history["physics"]}
    assert taus == {round(physics["tau_s"], 4)}
    # truth.json like with like: the tonic ODE with gamma = 1, gain per unit of the anchored drive.
    true = physio_mod.truth_physics(physio_mod.read_truth(synth))
    truth = physics["truth"]
    assert truth["gain_uS"] == pytest.approx(true["gain_uS"])
    assert truth["tau_s"] == pytest.approx(18.75) and truth["gamma"] == 1.0
    assert truth["alpha_0"] == pytest.approx(1 / 18.75) and truth["beta"] == pytest.approx(truth["gain_uS"] / 18.75)
    assert {"level_transient", "level_amusement", "level_meditation"} <= set(truth)
    assert "bursty" in physics["truth_note"]
    summary = export.summary()
    assert "tonic/phasic" in summary and "scr_recovery_s" in summary and "truth 18.75" in summary
    assert "SYNTHETIC" in summary and REAL_DATA_COMMAND in summary
    assert "PASS" in summary or "FAIL" in summary
    md = (bundle.path / "verification.md").read_text()
    assert "## Physics" in md and "| tau_s |" in md and "tonic component" in md and "18.75" in md


def test_single_ode_physics_still_works(synth, tmp_path, capsys):
    """``--physics single-ode``: the PINN learns one ODE on the whole EDA, as before, and says so."""
    import argparse

    from edgemer.export.physio import commands
    from edgemer.export.physio.synth import ODE_TEXT

    parser = argparse.ArgumentParser()
    commands.configure_export_physio(parser)
    out = tmp_path / "single"
    args = parser.parse_args(["--wesad", str(synth), "--out", str(out), "--physics", "single-ode", "--epochs", "1",
                              "--no-tflite", "--calibration-windows", "16", "--guard-steps", "0", "--quiet"])
    assert commands.run_export_physio(args) in (0, 1)
    printed = capsys.readouterr().out
    physics = load_bundle(out).manifest.raw["physics"]
    assert physics["model"] == "single-ode" and physics["ode"] == ODE_TEXT
    assert "phasic" not in physics and "fit" not in physics
    for k in ("alpha_0", "beta", "gamma", "tau_s", "gain_uS"):
        assert physics[k] > 0 and np.isfinite(physics[k])
    assert physics["tau_s"] == pytest.approx(physics["gamma"] / physics["alpha_0"])
    assert physics["tau_s"] != pytest.approx(5.0, rel=1e-3)  # learned: moved from the start (gamma 1 / alpha_0 0.2)
    assert physics["truth"] == pytest.approx({"alpha_0": 0.08, "beta": 0.12, "gamma": 1.5, "tau_s": 18.75,
                                              "gain_uS": 1.5})
    assert "single ODE" in printed and "tonic/phasic" not in printed
    manifest = load_bundle(out).manifest.raw
    assert manifest["training"]["config"]["physics"] == "single-ode"
    assert "--physics single-ode" in manifest["provenance"]["command"]
    assert "## Physics" in (out / "verification.md").read_text()


def test_physics_data_cuts_each_window_out_of_its_subjects_components():
    """training_spans marks window + forecast samples; with_tonic_phasic cuts phasic, drive and resting
    level at each training window's start, in the dataset's standardised units."""
    from edgemer.export.physio.physics_data import training_spans, with_tonic_phasic
    from edgemer.export.physio.tonic import Components
    from edgemer.export.physio.windows import PhysioDataset

    series = [(np.zeros(40), np.ones(40, np.int8)), None, (np.zeros(30), np.ones(30, np.int8))]
    spans = training_spans(series, np.array([0, 0, 1, 2]), np.array([0.0, 5.0, 0.0, 2.5]), span_s=2.0)
    assert sorted(spans) == [0, 2]  # subject 1 has no series
    assert np.flatnonzero(spans[0]).tolist() == list(range(0, 8)) + list(range(20, 28))
    assert np.flatnonzero(spans[2]).tolist() == list(range(10, 18))
    comps = {0: Components(np.arange(40.0), np.linspace(0, 1, 40), 2.0),
             2: Components(np.arange(30.0) * 2, np.full(30, 0.5), 4.0)}
    n = 3
    ds = PhysioDataset(np.zeros((n, 4, 8), np.float32), np.zeros((n, 10), np.float32), np.zeros(n, np.int64),
                       np.zeros((1, 4, 8), np.float32), np.zeros((1, 10), np.float32), np.zeros(1, np.int64),
                       (1.0, 0, 0, 0), (2.0, 1, 1, 1), ("a", "b"), ("c",), WindowOptions(window_s=2.0, forecast_s=0.5),
                       np.zeros((n, 10), np.int8), np.zeros((1, 10), np.int8), np.zeros(n, np.float32),
                       np.zeros(1, np.float32))
    out = with_tonic_phasic(ds, comps, np.array([0, 2, 0]), np.array([0.0, 1.0, 5.0]))
    np.testing.assert_allclose(out.phasic_train[1], np.arange(4, 14) * 2 / 2.0)  # µS / eda std
    np.testing.assert_allclose(out.phasic_train[2], np.arange(20, 30) / 2.0)
    np.testing.assert_allclose(out.drive_train[1], 0.5)
    np.testing.assert_allclose(out.tonic_train, [(2.0 - 1) / 2, (4.0 - 1) / 2, (2.0 - 1) / 2])
    assert out.x_train is ds.x_train  # the rest of the dataset is untouched


def test_every_model_runs_in_its_backend(bundle):
    samples = bundle.samples()
    x = samples["signals"]
    ref = None
    for key, mf in bundle.manifest.models.items():
        session = open_session(bundle, BACKEND[mf.format], mf.precision, threads=1)
        outs = [session.run({"signals": x[i:i + 1]}) for i in range(len(x))]
        logits = np.concatenate([o["class_logits"] for o in outs])
        drive = np.concatenate([o["drive"] for o in outs])
        assert logits.shape == (len(x), 3) and np.isfinite(logits).all(), key
        assert drive.min() >= 0 and drive.max() <= 1, key
        assert outs[0]["eda"].shape == (1, 280) and outs[0]["eda_tonic"].shape == (1, 1), key
        if ref is None:
            ref = logits.argmax(1)
        else:  # every file agrees with FP32 ONNX on (nearly) every held-out sample
            assert np.mean(logits.argmax(1) == ref) >= 0.9, key


def test_samples_npz_is_pickle_free(bundle):
    with np.load(bundle.path / "samples.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["labels", "signals"]
        assert z["signals"].dtype == np.float32 and z["signals"].shape[1:] == (4, 240)
        assert z["labels"].dtype == np.int64 and len(z["labels"]) == len(z["signals"]) <= 64
        assert set(np.unique(z["labels"])) <= {0, 1, 2}


def test_verification_report(export, bundle):
    report = bundle.verification()
    assert report == export.verification
    assert set(report["models"]) == MODEL_KEYS
    for key in ("int8-onnx vs fp32-onnx", "int8-tflite vs fp32-tflite", "fp32-tflite vs fp32-onnx"):
        row = report["comparisons"][key]
        assert 0 <= row["argmax_agreement"] <= 1
        assert {"macro_f1_reference", "macro_f1_candidate", "macro_f1_drop_points", "accuracy_candidate",
                "eda_forecast_rmse_uS_candidate", "size_ratio"} <= set(row)
        assert set(row["max_abs_error"]) == {"class_logits", "eda", "drive", "eda_tonic"}
    assert report["comparisons"]["fp32-tflite vs fp32-onnx"]["max_abs_error"]["class_logits"] < 1e-3
    assert report["comparisons"]["int8-onnx vs fp32-onnx"]["size_ratio"] < 0.4
    names = {(t["comparison"], t["name"]) for t in report["targets"]}
    assert ("int8-onnx vs fp32-onnx", "INT8/FP32 size ratio") in names
    assert ("int8-tflite vs fp32-tflite", "argmax agreement") in names
    assert report["passed"] == all(t["passed"] for t in report["targets"])
    md = (bundle.path / "verification.md").read_text()
    assert "argmax agreement" in md and ("PASS" in md or "FAIL" in md)


def test_training_and_serving_use_the_same_front_end(synth, bundle):
    """A raw held-out window through the runtime front-end gives exactly the training input."""
    opts = WindowOptions()
    rec = load_subject(synth / "S4" / "S4.pkl")
    sw = subject_windows(rec, opts)
    fe = WristFrontEnd.from_manifest(bundle.manifest)
    t0 = sw.t_start_s[len(sw.t_start_s) // 2]
    streams = {n: rec.wrist[n][int(round(t0 * r)):int(round((t0 + 60) * r))] for n, r in STREAM_RATES_HZ.items()}
    window = Window(t_end=t0 + 60, length_s=60.0, streams=streams, coverage={n: 1.0 for n in streams})
    feeds, _ = fe.prepare(window)
    trained = fe.normalise(sw.features[len(sw.t_start_s) // 2])
    np.testing.assert_array_equal(feeds["signals"][0], trained)


def test_windows_split_by_subject_and_standardise_on_training_subjects_only(synth, bundle):
    data = load_wesad_windows(synth, WindowOptions(), progress=False)
    assert data.subjects_train == ("S2", "S3") and data.subjects_heldout == ("S4",)
    fe = bundle.manifest.front_end["normalisation"]
    np.testing.assert_allclose(data.mean, fe["mean"], rtol=1e-6)
    np.testing.assert_allclose(data.std, fe["std"], rtol=1e-6)
    # Training inputs are standardised (mean ~0, std ~1 per channel); the forecast target follows the window.
    assert np.abs(data.x_train.mean(axis=(0, 2))).max() < 0.05
    assert data.eda_train.shape == (len(data.y_train), 280)
    np.testing.assert_array_equal(data.eda_train[:, :240], data.x_train[:, 0, :])
    assert set(data.class_counts("train")) != {0} and min(data.class_counts("heldout")) > 0


def test_training_is_deterministic(synth):
    from edgemer.export.physio.train import TrainConfig, train_pinn

    data = load_wesad_windows(synth, WindowOptions(train_hop_s=10.0), progress=False)
    m1, h1 = train_pinn(data, TrainConfig(epochs=1, seed=3), progress=False)
    m2, h2 = train_pinn(data, TrainConfig(epochs=1, seed=3), progress=False)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert (a == b).all(), k
    assert h1["epochs"] == h2["epochs"]


def test_physics_residual_vanishes_for_the_true_parameters():
    """On simulator EDA and its true drive, the residual (µS de-standardised) is ~0 with the
    true parameters and clearly not with the PINN's starting ones."""
    import torch

    from edgemer.export.physio.pinn import PhysioPINN, PhysioPINNConfig, physics_residual
    from edgemer.simulate import EdaDynamics, SubjectTraits, WristSimulator

    traits = SubjectTraits(tonic_uS=2.5)
    sim = WristSimulator(((1, 60.0), (2, 120.0)), EdaDynamics(), traits, seed=4, loop=False)
    d = sim.generate(180.0)
    eda_uS = torch.tensor(d["eda"][-280:, 0], dtype=torch.float64)[None]
    drive = torch.tensor(d["drive"][-280:], dtype=torch.float64)[None]
    mean, std = 3.0, 1.5

    def rms(model):
        model = model.double()
        tonic = torch.tensor([[(traits.tonic_uS - mean) / std]], dtype=torch.float64)
        r = physics_residual(model, (eda_uS - mean) / std, drive, tonic, mean, std)
        return float(r.pow(2).mean().sqrt())

    truth = PhysioPINN(PhysioPINNConfig(init_alpha_0=0.08, init_beta=0.16, init_gamma=1.5))
    start = PhysioPINN()
    assert truth.physical_parameters()["tau_s"] == pytest.approx(18.75)
    assert rms(truth) < 0.02  # sensor noise (0.005 µS) differentiated at 4 Hz, in std units per second
    assert rms(start) > 3 * rms(truth)


def test_drive_output_is_one_level_per_window(bundle):
    """The drive output is the window's predicted condition level: constant over the grid, in [0, 1]."""
    session = open_session(bundle, "onnxruntime", "fp32", threads=1)
    x = bundle.samples()["signals"]
    drive = np.concatenate([session.run({"signals": x[i:i + 1]})["drive"] for i in range(4)]).astype(np.float64)
    assert np.ptp(drive, axis=1).max() < 1e-6
    assert drive.min() >= 0 and drive.max() <= 1


def test_training_drive_follows_the_condition_with_anchored_scale():
    """In the loss, u(t) is the level of the condition at each sample: baseline 0, stress 1, the others learned."""
    import torch

    from edgemer.export.physio.pinn import PhysioPINN

    model = PhysioPINN()
    codes = torch.tensor([[1, 1, 2, 2, 3, 0, 4]])
    u = model.drive_of_codes(codes)[0]
    assert u[:2].tolist() == [0.0, 0.0] and u[2:4].tolist() == [1.0, 1.0]
    assert 0 < float(u[4]) < 1 and 0 < float(u[5]) < 1
    levels = model.physical_parameters()
    assert levels["level_baseline"] == 0.0 and levels["level_stress"] == 1.0


def test_each_loss_trains_only_its_own_encoder():
    """The cross-entropy reaches the class encoder and not the regression encoder; the EDA, tonic,
    drive and physics terms reach the regression encoder and not the class encoder (issue 17)."""
    import torch

    from edgemer.export.physio.pinn import LossWeights, PhysioPINN, pinn_loss

    torch.manual_seed(0)
    model = PhysioPINN()
    model.train()
    x = torch.randn(8, 4, 240)
    eda, tonic = torch.randn(8, 280), torch.randn(8)
    labels, codes = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), torch.randint(0, 5, (8, 280))

    def grad_norms(weights: LossWeights) -> tuple[float, float]:
        model.zero_grad()
        loss, _ = pinn_loss(model, model(x), eda, labels, codes, tonic, 3.0, 1.5, weights)
        loss.backward()
        return tuple(sum(float(p.grad.abs().sum()) for p in enc.parameters() if p.grad is not None)
                     for enc in (model.class_encoder, model.regression_encoder))

    cls, reg = grad_norms(LossWeights(eda=0.0, classification=1.0, physics=0.0))
    assert cls > 0 and reg == 0
    cls, reg = grad_norms(LossWeights(eda=1.0, classification=0.0, physics=1.0))
    assert cls == 0 and reg > 0


def test_physics_parameters_are_identified_from_condition_driven_eda(tmp_path):
    """On data whose drive is exactly the condition level, fitting the ODE residual on the measured
    EDA recovers tau and the anchored gain within 5 % (the PINN's physics term, without the network)."""
    import torch

    from edgemer.export.physio.windows import WindowOptions, load_wesad_windows
    from edgemer.export.physio.pinn import PhysioPINN, physics_residual

    data = write_synthetic_wesad(tmp_path / "w", subjects=3, seed=2, minutes=10, progress=False, drive="condition")
    ds = load_wesad_windows(data, WindowOptions(train_hop_s=5.0), progress=False)
    model = PhysioPINN()
    params = [model.raw_alpha_0, model.raw_beta, model.raw_gamma, model.raw_levels]
    opt = torch.optim.Adam(params, lr=0.05, betas=(0.9, 0.9))  # as train_pinn's physics group
    eda, codes = torch.from_numpy(ds.eda_train), torch.from_numpy(ds.codes_train.astype(np.int64))
    tonic = torch.from_numpy(ds.tonic_train)[:, None]
    for _ in range(300):
        r = physics_residual(model, eda, model.drive_of_codes(codes), tonic, ds.eda_mean_uS, ds.eda_std_uS)
        opt.zero_grad()
        r.pow(2).mean().backward()
        opt.step()
    learned, truth = model.physical_parameters(), physio_mod.truth_physics(physio_mod.read_truth(data))
    assert learned["tau_s"] == pytest.approx(truth["tau_s"], rel=0.05)
    assert learned["gain_uS"] == pytest.approx(truth["gain_uS"], rel=0.05)
    assert learned["level_amusement"] == pytest.approx(0.4, abs=0.02)


# ---------------------------------------------------------------- failures


def copy_subjects(src: Path, dst: Path) -> Path:
    for s in ("S2", "S3", "S4"):
        (dst / s).mkdir(parents=True)
        (dst / s / f"{s}.pkl").write_bytes((src / s / f"{s}.pkl").read_bytes())
    return dst


def assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


def test_missing_subject_file(synth, tmp_path):
    data = copy_subjects(synth, tmp_path / "wesad")
    (data / "S3" / "S3.pkl").unlink()
    out = tmp_path / "bundle"
    with pytest.raises(DatasetError, match="S3.pkl"):
        export_physio(data, out, SMALL, progress=False)
    assert_nothing_left(out)


def test_corrupt_subject_file(synth, tmp_path):
    data = copy_subjects(synth, tmp_path / "wesad")
    f = data / "S3" / "S3.pkl"
    f.write_bytes(f.read_bytes()[:5000])
    out = tmp_path / "bundle"
    with pytest.raises(DatasetError, match=r"S3\.pkl.*(not a readable WESAD pickle|truncated or damaged)") as info:
        export_physio(data, out, SMALL, progress=False)
    assert str(data) in str(info.value)  # names the folder being read, too
    assert_nothing_left(out)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(synth, tmp_path):
    data = copy_subjects(synth, tmp_path / "wesad")
    marker = tmp_path / "pwned"
    with open(data / "S3" / "S3.pkl", "wb") as f:
        pickle.dump({"subject": "S3", "signal": _Exploit(marker), "label": np.zeros(3)}, f)
    out = tmp_path / "bundle"
    with pytest.raises(UnsafePickleError, match="S3.pkl"):
        export_physio(data, out, SMALL, progress=False)
    assert not marker.exists()
    assert_nothing_left(out)


def test_a_failure_in_training_is_an_export_error(synth, tmp_path, monkeypatch):
    import edgemer.export.physio.train as train_mod

    def boom(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(train_mod, "train_pinn", boom)
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="training failed.*mat1"):
        export_physio(synth, out, SMALL, progress=False)
    assert_nothing_left(out)


def test_refuses_to_overwrite(export, tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_physio(export.bundle_dir.parent, out, SMALL, progress=False)
    with pytest.raises(ExportError, match="does not look like a bundle"):
        export_physio(export.bundle_dir.parent, out, SMALL, progress=False, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("field, value", [("epochs", 0), ("lr", 0.0), ("window_s", 61.0), ("heldout_fraction", 1.0),
                                          ("forecast_s", 0.0), ("name", "a/b"), ("train_hop_s", 0.3),
                                          ("physics", "two-odes"), ("physics_steps", 0)])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        replace(PhysioExportConfig(), **{field: value}).window_options()


# ---------------------------------------------------------------- command glue


def test_commands_parse_and_import_nothing_heavy():
    code = ("import argparse, sys, json\n"
            "from edgemer.export.physio import commands\n"
            "p = argparse.ArgumentParser(); commands.configure_export_physio(p)\n"
            "a = p.parse_args(['--wesad', 'W', '--out', 'B', '--epochs', '7', '--no-tflite'])\n"
            "q = argparse.ArgumentParser(); commands.configure_synth_wesad(q)\n"
            "b = q.parse_args(['--out', 'D', '--subjects', '4', '--minutes', '6'])\n"
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'scipy', 'neurokit2', 'litert_torch')\n"
            "         if m in sys.modules]\n"
            "print(json.dumps([a.epochs, a.no_tflite, a.name, b.subjects, b.minutes, heavy]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [7, True, "physio", 4, 6.0, []]


def test_recorded_command_parses_back_to_the_config():
    import argparse

    from edgemer.export.physio import commands

    config = PhysioExportConfig(epochs=7, seed=3, name="x", tflite=False, train_hop_s=5.0, physics="single-ode",
                                physics_steps=50)
    argv = __import__("shlex").split(config.as_command(Path("W"), Path("B")))
    assert argv[:3] == ["edgemer", "export", "physio"]
    parser = argparse.ArgumentParser()
    commands.configure_export_physio(parser)
    a = parser.parse_args(argv[3:])
    assert (a.epochs, a.seed, a.name, a.no_tflite, a.train_hop) == (7, 3, "x", True, 5.0)
    assert (a.physics, a.physics_steps) == ("single-ode", 50)
    defaults = parser.parse_args(["--wesad", "W", "--out", "B"])
    assert (defaults.physics, defaults.physics_steps) == ("tonic-phasic", 600)


# ---------------------------------------------------------------- slow: the full demo recipe


@pytest.mark.slow
def test_full_synthetic_export_meets_the_targets(tmp_path):
    data = write_synthetic_wesad(tmp_path / "wesad", subjects=15, seed=0, progress=False)
    result = export_physio(data, tmp_path / "bundle", PhysioExportConfig(name="physio-demo"), progress=False)
    assert result.passed, result.summary()
    assert physio_mod.read_truth(data)["synthetic"] is True
