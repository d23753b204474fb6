"""Self-reports (S<N>_quest.csv) and per-subject ODE parameters in synth-wesad."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgemer.errors import DatasetError
from edgemer.export.physio.synth import write_synthetic_wesad
from edgemer.export.physio.questionnaires import FEATURES, NEUTRAL, read_quest, synthetic_quest
from edgemer.simulate import BLOCK_S
from edgemer.wesad import load_subject


@pytest.fixture(scope="module")
def spread(tmp_path_factory):
    return write_synthetic_wesad(tmp_path_factory.mktemp("spread") / "wesad", subjects=2, seed=5, minutes=3,
                                 progress=False, param_spread=0.2)


def test_synth_wesad_writes_plausible_self_reports(spread):
    for s in ("S2", "S3"):
        report = read_quest(spread / s / f"{s}_quest.csv")
        assert report.ok, report.problems
        assert set(report.features) == {1, 2, 3, 4}
        assert set(report.features[1]) == set(FEATURES)
        assert "sssq" in report.features[2]
        assert report.features[2]["sam_arousal"] > report.features[1]["sam_arousal"]
        assert report.features[2]["panas_na"] > report.features[3]["panas_na"]


def test_param_spread_gives_each_subject_its_own_ode(spread):
    truth = json.loads((spread / "truth.json").read_text())
    assert truth["param_spread"] == 0.2
    dyn = truth["subject_dynamics"]
    assert set(dyn) == {"S2", "S3"}
    assert dyn["S2"]["tau_s"] != pytest.approx(dyn["S3"]["tau_s"], rel=1e-3)
    for d in dyn.values():
        assert d["tau_s"] == pytest.approx(d["gamma"] / d["alpha_0"])
        assert d["gain_uS"] == pytest.approx(d["beta"] / d["alpha_0"])
    # The subject's EDA follows its own parameters: the implied drive (10 s means) stays in [0, 1].
    rec = load_subject(spread / "S2" / "S2.pkl")
    eda = rec.wrist["eda"][:, 0].astype(np.float64)
    p = dyn["S2"]
    decay = np.exp(-p["alpha_0"] / p["gamma"] * BLOCK_S)
    target = (eda[1:] - decay * eda[:-1]) / (1 - decay)
    u = (target - truth["subjects"]["S2"]["tonic_uS"]) / p["gain_uS"]
    u10 = np.convolve(u, np.ones(40) / 40, mode="valid")
    assert u10.min() > -0.05 and u10.max() < 1.05


def test_no_spread_keeps_one_shared_parameter_set(tmp_path):
    out = write_synthetic_wesad(tmp_path / "w", subjects=1, minutes=1, progress=False)
    truth = json.loads((out / "truth.json").read_text())
    assert "subject_dynamics" not in truth and truth["tau_s"] == pytest.approx(18.75)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_bad_param_spread(tmp_path, value):
    with pytest.raises(DatasetError, match="param_spread"):
        write_synthetic_wesad(tmp_path / "w", subjects=1, minutes=1, progress=False, param_spread=value)


def good_text() -> str:
    return synthetic_quest("S9", np.random.default_rng(0))


def test_missing_questionnaire_is_reported_not_fatal(tmp_path):
    report = read_quest(tmp_path / "S9_quest.csv")
    assert not report.ok and "S9_quest.csv" in report.problems[0] and "missing" in report.problems[0]
    np.testing.assert_array_equal(report.vector(2), [NEUTRAL[k] for k in FEATURES])


@pytest.mark.parametrize("edit, match, still_there", [
    (lambda t: t.replace("# DIM;", "# DIM;x", 1), "DIM.*Base.*malformed", "panas_pa"),
    (lambda t: t.replace("# STAI;", "# STAI;7;", 1), "STAI.*Base.*out of range", "sam_arousal"),
    (lambda t: "\n".join(line for line in t.splitlines() if not line.startswith("# PANAS")), "no '# PANAS'", "stai"),
    (lambda t: t.replace("# SSSQ;", "# SSSQ;0;"), "SSSQ", "stai"),
])
def test_malformed_rows_are_reported_and_the_rest_used(tmp_path, edit, match, still_there):
    f = tmp_path / "S9_quest.csv"
    f.write_text(edit(good_text()))
    report = read_quest(f)
    assert any(str(f) in p for p in report.problems)
    assert any(__import__("re").search(match, p) for p in report.problems), report.problems
    assert still_there in report.features[1]


def test_no_order_row_or_binary_file(tmp_path):
    f = tmp_path / "S9_quest.csv"
    f.write_text("\n".join(line for line in good_text().splitlines() if "ORDER" not in line))
    assert "ORDER" in read_quest(f).problems[0] and read_quest(f).features == {}
    f.write_bytes(b"\xff\xfe\x00garbage")
    assert "cannot read" in read_quest(f).problems[0]


def test_cli_accepts_param_spread():
    import argparse

    from edgemer.export.physio import commands

    p = argparse.ArgumentParser()
    commands.configure_synth_wesad(p)
    assert p.parse_args(["--out", "D", "--param-spread", "0.1"]).param_spread == 0.1
