"""``edgemer study physio`` on a tiny synthetic WESAD folder: report structure, resume, bad subjects.

The PINN trains for one or two epochs here, so the numbers mean nothing; the tests check
what the study runs, what it writes and how it treats bad input. The full synthetic
configuration (the issue's targets) is the slow test at the end.
"""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

from edgemer.cli import main
from edgemer.errors import ConfigError, DatasetError, UnsafePickleError
from edgemer.export.study.run import (
    PERSONALISED,
    PINN_VARIANTS,
    TONIC_PHASIC,
    Pool,
    StudyOptions,
    calibration_windows,
    run_study,
)
from edgemer.export.physio.synth import write_synthetic_wesad

TINY = dict(window_s=30.0, train_hop_s=10.0, epochs=1, folds=2, loso_folds=1, personalise_s=60.0,
            personalise_epochs=3, physics_steps=30, bootstrap=2)


@pytest.fixture(scope="module")
def wesad(tmp_path_factory):
    return write_synthetic_wesad(tmp_path_factory.mktemp("study") / "wesad", subjects=3, seed=1, minutes=6,
                                 progress=False)


@pytest.fixture(scope="module")
def study(wesad, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return run_study(wesad, out, StudyOptions(**TINY), progress=False, command="pytest")


def test_report_holds_every_protocol_variant_and_fold(study):
    report = study.report
    assert set(report["folds"]) == {"cv", "loso"}
    assert len(report["folds"]["cv"]["pinn"]) == 2 and len(report["folds"]["loso"]["pinn"]) == 1
    assert PERSONALISED in report["folds"]["loso"] and PERSONALISED not in report["folds"]["cv"]
    for protocol in ("cv", "loso"):
        folds = report["folds"][protocol]
        assert set(folds) - {PERSONALISED} == set(PINN_VARIANTS) | {TONIC_PHASIC, "persistence", "svr", "gbt",
                                                                    "gbt+self-report"}
        # The physics of record: the fold's tonic/phasic fit, beside the PINN that used it.
        tp = folds[TONIC_PHASIC][0]["tonic_phasic"]
        assert tp["tau_s"] > 0 and tp["gain_uS"] > 0 and tp["scr_recovery_s"] > tp["scr_rise_s"] > 0
        assert folds["pinn"][0]["tonic_phasic"] == tp
        assert folds["pinn"][0]["physics"]["tau_s"] == pytest.approx(tp["tau_s"], rel=1e-5)
        assert folds[TONIC_PHASIC][0]["eda"]["rmse_uS"] > 0
        for fold in folds["pinn"]:
            phys = fold["physics"]
            assert phys["tau_s"] == pytest.approx(phys["gamma"] / phys["alpha_0"])
            assert phys["gain_uS"] == pytest.approx(phys["beta"] / phys["alpha_0"])
            assert 0.0 <= fold["class"]["macro_f1"] <= 1.0
            assert np.array(fold["class"]["confusion"]).sum() == fold["test_windows"]
            assert fold["eda"]["rmse_uS"] > 0 and -1.0 <= fold["eda"]["r"] <= 1.0
        # Class-only has no trained EDA head, so no EDA metrics; the forecast baselines have no classes.
        assert "eda" not in folds["class-only"][0] and "class" not in folds["svr"][0]
    # LOSO tests a subject that no training fold saw.
    assert len(report["folds"]["loso"]["pinn"][0]["test_subjects"]) == 1


def test_personalised_pinn_is_scored_before_and_after_on_the_same_windows(study):
    plain = study.report["folds"]["loso"]["pinn"][0]
    tuned = study.report["folds"]["loso"][PERSONALISED][0]
    assert tuned["calibration_windows"] >= 1
    assert tuned["test_windows"] + tuned["calibration_windows"] == plain["test_windows"]
    for part in (tuned, tuned["before"]):
        assert np.array(part["class"]["confusion"]).sum() == tuned["test_windows"]
        assert part["eda"]["rmse_uS"] > 0
    # The class head is not fine-tuned: the same predictions before and after.
    assert tuned["class"] == tuned["before"]["class"]
    assert "## Personalisation (LOSO)" in (study.out_dir / "report.md").read_text()


def test_calibration_windows_are_the_first_baseline_seconds():
    t = np.array([0.0, 10, 20, 30, 100, 110, 400], float)
    labels = np.array([0, 0, 0, 0, 1, 1, 0])
    pool = Pool(np.zeros((7, 4, 8), np.float32), np.zeros((7, 2)), labels, np.zeros(7, int), np.zeros((7, 5)), t,
                ["S2"], np.ones(1), np.ones((7, 10), np.int8), np.ones(7, np.float32))
    opts = StudyOptions(window_s=20.0, personalise_s=40.0)
    # windows [0, 20], [10, 30], [20, 40] lie inside the first 40 s of baseline; [30, 50] does not.
    assert calibration_windows(pool, np.arange(7), opts).tolist() == [True, True, True, False, False, False, False]


def test_report_is_labelled_synthetic_and_names_the_leak_and_the_scale(study):
    report = study.report
    assert report["data"]["synthetic"] is True and report["data"]["skipped_subjects"] == []
    assert report["truth"]["tau_s"] == pytest.approx(18.75)
    md = (study.out_dir / "report.md").read_text()
    assert "SYNTHETIC" in md.upper() and "edgemer study physio --wesad" in md
    assert "+self-report" in md and "leak" in md.lower()
    assert "tau_s" in md and "gain_uS" in md
    targets = {t["target"]: t for t in report["targets"]}
    assert any("tau_s" in name for name in targets) and all(isinstance(t["met"], bool) for t in targets.values())
    # The first table puts the paper's and the WESAD benchmark's figures beside edgemer's, by data set.
    first = md.index("## The paper's protocol side by side")
    assert first < md.index("## Targets")
    assert "0.0362" in md and "0.9919" in md and "94.08 %" in md and "up to 80 %" in md and "up to 93 %" in md
    assert "## Physics: tonic ODE + Bateman SCRs" in md and "Boucsein" in md
    assert set(report["physics_intervals"]) == {"cv"}  # one LOSO fold here: no jackknife
    assert report["physics_intervals"]["cv"]["tau_s"]["replicates"] == 2
    names = " ".join(targets)
    assert ">= class-only" in names and ">= gbt" in names and "RMSE <= svr" in names and "< no-physics" in names
    for png in ("eda_forecast.png", "confusion_cv.png", "confusion_loso.png", "physics_params.png"):
        assert (study.out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((study.out_dir / "report.json").read_text())["command"] == "pytest"


def test_rerun_resumes_from_the_cache(study, wesad):
    runs = sorted((study.out_dir / "runs").rglob("*.json"))
    before = {p: p.stat().st_mtime_ns for p in runs}
    again = run_study(wesad, study.out_dir, StudyOptions(**TINY), progress=False)
    assert {p: p.stat().st_mtime_ns for p in runs} == before
    # (json.dumps: an undefined r is NaN, which never equals itself)
    assert json.dumps(again.report["folds"]) == json.dumps(study.report["folds"])


@pytest.fixture
def broken_copy(wesad, tmp_path):
    """A copy of the folder whose S3 pickle is truncated."""
    root = tmp_path / "wesad"
    shutil.copytree(wesad, root)
    pkl = root / "S3" / "S3.pkl"
    pkl.write_bytes(pkl.read_bytes()[:1000])
    return root


def test_bad_subject_stops_the_study_naming_the_file(broken_copy, tmp_path):
    with pytest.raises(DatasetError, match=r"S3\.pkl.*--skip-bad"):
        run_study(broken_copy, tmp_path / "r", StudyOptions(**TINY), progress=False)


def test_skip_bad_lists_the_skipped_subject(broken_copy, tmp_path):
    result = run_study(broken_copy, tmp_path / "r", StudyOptions(**TINY, protocols=("loso",), ablations=False,
                                                                 baselines=False, skip_bad=True), progress=False)
    skipped = result.report["data"]["skipped_subjects"]
    assert [s["subject"] for s in skipped] == ["S3"] and "S3.pkl" in skipped[0]["file"]
    assert "S3" in (result.out_dir / "report.md").read_text()
    assert all("S3" not in f["test_subjects"] for f in result.report["folds"]["loso"]["pinn"])


class _Hostile:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_hostile_pickle_is_refused_even_when_skipping(wesad, tmp_path, capsys):
    root = tmp_path / "wesad"
    shutil.copytree(wesad, root)
    (root / "S2" / "S2.pkl").write_bytes(pickle.dumps({"signal": _Hostile()}))
    with pytest.raises(UnsafePickleError, match="S2.pkl"):
        run_study(root, tmp_path / "r", StudyOptions(**TINY), progress=False)
    result = run_study(root, tmp_path / "r2", StudyOptions(**TINY, protocols=("loso",), ablations=False,
                                                           baselines=False, skip_bad=True), progress=False)
    assert [s["subject"] for s in result.report["data"]["skipped_subjects"]] == ["S2"]
    assert "this must never run" not in capsys.readouterr().out


def test_too_few_subjects(wesad, tmp_path):
    root = tmp_path / "wesad"
    shutil.copytree(wesad, root)
    for s in ("S3", "S4"):
        shutil.rmtree(root / s)
    with pytest.raises(DatasetError, match="at least 2"):
        run_study(root, tmp_path / "r", StudyOptions(**TINY), progress=False)


@pytest.mark.parametrize("bad", [dict(folds=1), dict(protocols=("holdout",)), dict(window_s=31.0),
                                 dict(max_subjects=1), dict(epochs=0), dict(personalise_s=-1.0),
                                 dict(personalise_epochs=0)])
def test_bad_options(bad):
    with pytest.raises(ConfigError):
        StudyOptions(**bad)


def test_cli_runs_a_small_study(wesad, tmp_path, capsys):
    rc = main(["study", "physio", "--wesad", str(wesad), "--out", str(tmp_path / "r"), "--epochs", "1",
               "--folds", "2", "--protocols", "loso", "--loso-folds", "1", "--window", "30", "--train-hop", "10",
               "--no-ablations", "--no-baselines", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "report.md" in out and "SYNTHETIC" in out
    assert (tmp_path / "r" / "report.json").is_file()


def test_cli_reports_a_missing_folder(tmp_path, capsys):
    rc = main(["study", "physio", "--wesad", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), "--quiet"])
    assert rc != 0 and "nowhere" in capsys.readouterr().err
