"""edgemer data synth-wesad: WESAD layout, rates, labels, truth.json, the ODE, safe writing."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from edgemer.errors import DatasetError, MissingExtraError
from edgemer.export.physio import synth as synth_wesad
from edgemer.export.physio.synth import scaled_protocol, write_synthetic_wesad
from edgemer.simulate import BLOCK_S
from edgemer.wesad import find_subjects, load_subject, safe_load_pickle

MINUTES = 4.0


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_wesad(tmp_path_factory.mktemp("synth") / "wesad", subjects=2, seed=1, minutes=MINUTES,
                                 progress=False)


@pytest.fixture(scope="module")
def truth(synth):
    return json.loads((synth / "truth.json").read_text())


def test_layout_is_wesad(synth):
    assert sorted(p.name for p in synth.iterdir()) == ["S2", "S3", "truth.json"]
    assert [f.name for f in find_subjects(synth)] == ["S2.pkl", "S3.pkl"]
    raw = safe_load_pickle(synth / "S2" / "S2.pkl")  # the restricted unpickler accepts it
    assert raw["subject"] == "S2"
    assert set(raw["signal"]["wrist"]) == {"ACC", "BVP", "EDA", "TEMP"}
    assert set(raw["signal"]["chest"]) == {"ACC", "ECG", "EMG", "EDA", "Temp", "Resp"}


def test_dtypes_shapes_and_rates(synth):
    raw = safe_load_pickle(synth / "S3" / "S3.pkl")
    wrist, chest = raw["signal"]["wrist"], raw["signal"]["chest"]
    seconds = wrist["EDA"].shape[0] / 4.0
    assert seconds == pytest.approx(MINUTES * 60, abs=9 * BLOCK_S)
    for key, rate, cols in (("ACC", 32, 3), ("BVP", 64, 1), ("EDA", 4, 1), ("TEMP", 4, 1)):
        assert wrist[key].shape == (int(seconds * rate), cols), key
        assert wrist[key].dtype == np.float32
    for key, arr in chest.items():
        assert arr.shape == (int(seconds * 700), 3 if key == "ACC" else 1), key
        assert arr.dtype == np.float32 and np.isfinite(arr).all(), key
    assert raw["label"].shape == (int(seconds * 700),)
    assert np.issubdtype(raw["label"].dtype, np.integer)
    # Physiological ranges: µS, °C, 1/64 g on the wrist, g on the chest.
    assert 0.5 < wrist["EDA"].min() and wrist["EDA"].max() < 12
    assert 30 < wrist["TEMP"].min() and wrist["TEMP"].max() < 36
    assert np.median(np.linalg.norm(wrist["ACC"], axis=1)) == pytest.approx(64, rel=0.2)
    assert np.median(np.linalg.norm(chest["ACC"], axis=1)) == pytest.approx(1.0, rel=0.2)


def test_every_protocol_condition_is_labelled(synth):
    rec = load_subject(synth / "S2" / "S2.pkl")
    assert set(np.unique(rec.label)) == {0, 1, 2, 3, 4}
    # Each condition lasts as long as the scaled protocol says.
    for code in (1, 2, 3):
        want = sum(d for c, d in scaled_protocol(MINUTES) if c == code)
        assert np.sum(rec.label == code) / 700.0 == pytest.approx(want, abs=BLOCK_S)


def test_truth_json(synth, truth):
    assert truth["synthetic"] is True
    assert truth["ode"] == "gamma * dEDA/dt = -alpha_0 * (EDA - EDA_tonic) + beta * u(t)"
    assert truth["tau_s"] == pytest.approx(truth["gamma"] / truth["alpha_0"])
    assert truth["gain_uS"] == pytest.approx(truth["beta"] / truth["alpha_0"])
    assert truth["seed"] == 1 and truth["edgemer_version"]
    assert set(truth["subjects"]) == {"S2", "S3"}
    assert set(truth["subjects"]["S2"]) == {"tonic_uS", "rest_hr_bpm", "skin_temp_c"}
    assert sum(step["seconds"] for step in truth["protocol"]) == pytest.approx(MINUTES * 60, abs=9 * BLOCK_S)


def implied_drive(eda: np.ndarray, tonic_uS: float, alpha_0: float, beta: float, gamma: float) -> np.ndarray:
    """u(t) that makes the exact 0.25 s discretisation of the ODE hold for this EDA trace."""
    decay = np.exp(-alpha_0 / gamma * BLOCK_S)
    target = (eda[1:] - decay * eda[:-1]) / (1 - decay)  # = tonic + beta * u / alpha_0
    return (target - tonic_uS) * alpha_0 / beta


def test_eda_satisfies_the_ode_with_the_true_parameters(synth, truth):
    """The drive implied by the ODE (10 s means, to average out 0.005 µS sensor noise) is a
    drive the simulator can produce: within [0, 1], low at baseline, high under stress."""
    rec = load_subject(synth / "S2" / "S2.pkl")
    eda = rec.wrist["eda"][:, 0].astype(np.float64)
    labels = rec.labels_at(4.0)[1:]
    p = {k: truth[k] for k in ("alpha_0", "beta", "gamma")}
    u = implied_drive(eda, truth["subjects"]["S2"]["tonic_uS"], **p)
    u10 = np.convolve(u, np.ones(40) / 40, mode="valid")  # 10 s means
    assert u10.min() > -0.05 and u10.max() < 1.05
    lab10 = labels[20:20 + u10.size]
    assert np.median(u10[lab10 == 1]) < 0.2
    assert np.median(u10[lab10 == 2]) > 0.6
    # A wrong tonic level (+1 µS) or a gain off by 2x gives a drive outside [0, 1].
    def mean10(x):
        return np.convolve(x, np.ones(40) / 40, mode="valid")

    assert mean10(implied_drive(eda, truth["subjects"]["S2"]["tonic_uS"] + 1.0, **p)).min() < -0.3
    assert mean10(implied_drive(eda, truth["subjects"]["S2"]["tonic_uS"], **dict(p, beta=p["beta"] / 2))).max() > 1.1


def test_same_seed_same_data(tmp_path, synth):
    again = write_synthetic_wesad(tmp_path / "again", subjects=1, seed=1, minutes=MINUTES, progress=False)
    assert (again / "S2" / "S2.pkl").read_bytes() == (synth / "S2" / "S2.pkl").read_bytes()


def test_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        write_synthetic_wesad(out, subjects=1, minutes=2, progress=False)
    # --overwrite replaces only a folder synth-wesad wrote.
    with pytest.raises(DatasetError, match="does not look like"):
        write_synthetic_wesad(out, subjects=1, minutes=2, progress=False, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_overwrite_replaces_an_earlier_output(tmp_path):
    out = write_synthetic_wesad(tmp_path / "data", subjects=2, minutes=2, progress=False)
    write_synthetic_wesad(out, subjects=1, minutes=2, progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["S2", "truth.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_failed_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def fail_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    real = synth_wesad.simulate_subject
    monkeypatch.setattr(synth_wesad, "simulate_subject", fail_on_second)
    with pytest.raises(RuntimeError, match="disk full"):
        write_synthetic_wesad(tmp_path / "data", subjects=3, minutes=2, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_missing_neurokit_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "neurokit2", None)  # import neurokit2 -> ImportError
    with pytest.raises(MissingExtraError, match=r"edgemer\[physio\]") as info:
        write_synthetic_wesad(tmp_path / "data", subjects=1, minutes=2, progress=False)
    assert info.value.extra == "physio"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, match", [({"subjects": 0}, "subjects"), ({"minutes": -1.0}, "minutes")])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(DatasetError, match=match):
        write_synthetic_wesad(tmp_path / "data", progress=False, **kwargs)
