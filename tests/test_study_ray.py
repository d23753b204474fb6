"""The study's executors (serial, processes, Ray) and the Ray Tune search, on a tiny synthetic WESAD folder.

The PINN trains for one or a few epochs, so the numbers mean nothing; the tests check that
every executor gives the serial run's figures exactly, that failed and killed tasks are
retried and named, that a rerun resumes, that Ctrl-C stops the workers and that the tune
search writes a best configuration ``edgemer export physio`` accepts. Ray runs locally
(``ray.init(num_cpus=2)``, shared by the module's tests, shut down at the end).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgemer.errors import ConfigError, MissingExtraError
from edgemer.export.study.executor import ExecutorSpec, ray_session
from edgemer.export.study.report import figure_difference
from edgemer.export.study.run import TRAIN_FIELDS, StudyOptions, run_study
from edgemer.export.physio.synth import write_synthetic_wesad

SMALL = dict(window_s=30.0, train_hop_s=10.0, epochs=1, folds=2, loso_folds=1, personalise_s=60.0,
             personalise_epochs=3, ablations=False,
             physics_steps=30, bootstrap=2)
"""Both protocols, the personalised PINN, the baselines and the tonic/phasic physics fits: 22 fold tasks,
plus the CV bootstrap's all-subject fit and its 2 replicates: 25 tasks."""


@pytest.fixture(scope="module")
def wesad(tmp_path_factory):
    return write_synthetic_wesad(tmp_path_factory.mktemp("study-ray") / "wesad", subjects=3, seed=1, minutes=6,
                                 progress=False)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is the [study] extra")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def serial(wesad, tmp_path_factory):
    return run_study(wesad, tmp_path_factory.mktemp("serial"), StudyOptions(**SMALL), progress=False)


def test_ray_gives_the_serial_figures_exactly(wesad, serial, ray_local, tmp_path):
    result = run_study(wesad, tmp_path, StudyOptions(**SMALL), progress=False, executor="ray")
    ex = result.report["execution"]
    assert ex["executor"].startswith("ray") and ex["run"] == ex["tasks"] == 25 and ex["failed"] == []
    # Tolerance: none. Each task runs with the same thread count and seed, so the figures are bit-identical.
    assert figure_difference(serial.report, result.report) == 0.0
    assert result.report["folds"]["loso"]["pinn"][0]["physics"] == serial.report["folds"]["loso"]["pinn"][0]["physics"]
    logs = sorted(Path(ex["logs"]).glob("*.log"))
    assert len(logs) == 25 and all("finished in" in p.read_text() for p in logs)


def test_processes_give_the_serial_figures_exactly(wesad, serial, tmp_path):
    result = run_study(wesad, tmp_path, StudyOptions(**SMALL), progress=False, executor="processes:2")
    assert result.report["execution"]["failed"] == []
    assert figure_difference(serial.report, result.report) == 0.0
    # Each fold's tonic/phasic fit is computed once, by its tonic-phasic task, and handed to the
    # PINN variants with a physics term; the personalised PINN starts from the fold's plain PINN.
    logs = Path(result.report["execution"]["logs"])
    for protocol, folds in (("cv", 2), ("loso", 1)):
        for k in range(folds):
            for variant in ("pinn", "pinn_self-report"):
                assert f"starts from what {protocol}/fold{k}/tonic-phasic computed" in \
                    (logs / f"{protocol}-fold{k}-{variant}.log").read_text()
    personalised = next(logs.glob("loso-fold0-pinn_personalised*.log")).read_text()
    assert "starts from what loso/fold0/pinn computed" in personalised
    for i in range(2):  # the bootstrap replicates start from the all-subject fit, computed once
        assert "starts from what cv/fold0/tonic-phasic-all computed" in (logs / f"cv-bootstrap{i}.log").read_text()


def test_tasks_wait_for_what_they_start_from():
    from edgemer.export.study.run import _with_needs
    from edgemer.export.study.tasks import StudyTask

    opts = StudyOptions(**SMALL)
    names = ["pinn+personalised", "svr", "pinn", "tonic-phasic", "pinn+self-report"]
    tasks = [StudyTask("loso", 0, v, np.arange(3), np.arange(3, 4), f"{v}.json") for v in names]
    ordered = _with_needs(tasks, opts)
    needs = {t.variant: t.needs for t in ordered}
    assert needs == {"pinn+personalised": "loso/fold0/pinn", "svr": None, "pinn": "loso/fold0/tonic-phasic",
                     "tonic-phasic": None, "pinn+self-report": "loso/fold0/tonic-phasic"}
    position = {t.variant: i for i, t in enumerate(ordered)}
    assert position["tonic-phasic"] < position["pinn"] < position["pinn+personalised"]
    # An upstream done in an earlier run is not waited for.
    rerun = _with_needs([t for t in tasks if t.variant != "tonic-phasic"], opts)
    assert {t.variant: t.needs for t in rerun}["pinn"] is None


def test_a_different_thread_count_is_a_different_cache_key():
    assert StudyOptions(task_threads=1).key("task_threads") != StudyOptions(task_threads=2).key("task_threads")


def test_failed_task_is_retried_once_named_and_rerun(wesad, serial, tmp_path, monkeypatch):
    import edgemer.export.study.run as run

    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("svr exploded")

    monkeypatch.setattr(run, "_svr_forecast", broken)
    first = run_study(wesad, tmp_path, StudyOptions(**SMALL), progress=False)
    failed = first.report["execution"]["failed"]
    assert sorted(f["task"] for f in failed) == ["cv/fold0/svr", "cv/fold1/svr", "loso/fold0/svr"]
    assert len(calls) == 6 and all(f["attempts"] == 2 and "svr exploded" in f["error"] for f in failed)
    assert first.report["folds"]["cv"]["svr"] == [] and len(first.report["folds"]["cv"]["pinn"]) == 2
    md = (tmp_path / "report.md").read_text()
    assert "## Failed tasks" in md and "cv/fold1/svr" in md
    assert any("failed    loso/fold0/svr" in line for line in first.summary_lines)

    monkeypatch.undo()
    again = run_study(wesad, tmp_path, StudyOptions(**SMALL), progress=False)
    ex = again.report["execution"]
    assert (ex["run"], ex["cached"], ex["failed"]) == (3, 22, [])
    assert figure_difference(serial.report, again.report) == 0.0


def _wait_for(predicate, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _started_pid(log_dir: Path, name: str) -> int | None:
    log = log_dir / name
    if log.is_file():
        for line in log.read_text().splitlines():
            if " started " in line:
                return int(line.split("pid=")[1].split()[0])
    return None


LONG = dict(SMALL, protocols=("loso",), baselines=False, personalise_s=0.0, epochs=30)
"""One LOSO fold, two PINN tasks that each train for a few seconds (long enough to be killed)."""


def test_killed_ray_worker_is_retried(wesad, ray_local, tmp_path):
    opts = StudyOptions(**LONG)
    log_dir = tmp_path / "runs" / opts.key(*TRAIN_FIELDS) / "logs"
    box = {}
    thread = threading.Thread(target=lambda: box.update(r=run_study(wesad, tmp_path, opts, progress=False,
                                                                    executor="ray")))
    thread.start()
    pid = _wait_for(lambda: _started_pid(log_dir, "loso-fold0-pinn.log"))
    os.kill(pid, signal.SIGKILL)
    thread.join(300)
    result = box["r"]
    assert result.report["execution"]["failed"] == []
    log = (log_dir / "loso-fold0-pinn.log").read_text()
    assert log.count(" started ") == 2 and "finished in" in log
    reference = run_study(wesad, tmp_path / "serial", opts, progress=False)
    assert figure_difference(reference.report, result.report) == 0.0


def test_ctrl_c_stops_the_worker_processes(wesad, tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "edgemer.cli", "study", "physio", "--wesad", str(wesad), "--out", str(out),
           "--window", "30", "--train-hop", "10", "--epochs", "200", "--protocols", "loso", "--loso-folds", "1",
           "--no-ablations", "--no-baselines", "--personalise", "0", "--executor", "processes:2", "--quiet"]
    # A shell that starts pytest in the background makes it ignore SIGINT, and children inherit that.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        log = _wait_for(lambda: next(out.glob("runs/*/logs/loso-fold0-pinn.log"), None))
        pid = _wait_for(lambda: _started_pid(log.parent, log.name))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    # The worker that was training is gone (terminated by the driver, not left to finish 200 epochs).
    _wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
              timeout_s=10)
    assert not any(out.glob("runs/*/loso-fold0-pinn.json"))


def test_ray_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError, match="study"):
        with ray_session():
            pass


def test_runtime_and_cli_never_import_ray():
    code = ("import sys, edgemer, edgemer.cli; edgemer.cli.build_parser(); "
            "import edgemer.export.study.run, edgemer.export.study.executor, edgemer.export.study.tune; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("text, spec", [("serial", ExecutorSpec()), ("processes", ExecutorSpec("processes")),
                                        ("processes:3", ExecutorSpec("processes", workers=3)),
                                        ("ray", ExecutorSpec("ray")), ("ray:2", ExecutorSpec("ray", workers=2)),
                                        ("ray:auto", ExecutorSpec("ray", address="auto")),
                                        ("ray:10.0.0.5:6379", ExecutorSpec("ray", address="10.0.0.5:6379"))])
def test_executor_spec_parses(text, spec):
    assert ExecutorSpec.parse(text) == spec


@pytest.mark.parametrize("text", ["threads", "processes:0", "processes:many", "serial:2", "dask"])
def test_bad_executor_is_a_config_error(text):
    with pytest.raises(ConfigError):
        ExecutorSpec.parse(text)


def test_tune_runs_resumes_and_its_best_config_is_an_export_config(wesad, ray_local, tmp_path):
    from edgemer.export.physio.config import PhysioExportConfig
    from edgemer.export.study.tune import TuneOptions, run_tune

    options = TuneOptions(trials=2, max_epochs=2, grace_epochs=1, window_s=(30.0,), train_hop_s=(10.0,))
    first = run_tune(wesad, tmp_path, options, progress=False)
    trials = first.report["trials"]
    assert len(trials) == 2 and all(t["error"] is None and 1 <= t["epochs"] <= 2 for t in trials)
    best = json.loads(first.best_config.read_text())
    config = PhysioExportConfig(**best)
    assert config.window_s == 30.0 and config.lr == first.report["best"]["config"]["lr"]
    assert options.lr[0] <= config.lr <= options.lr[1]
    assert "## Best configuration" in (tmp_path / "tune_report.md").read_text()
    again = run_tune(wesad, tmp_path, options, progress=False)
    assert again.report["resumed"] is True
    assert sorted(t["trial"] for t in again.report["trials"]) == sorted(t["trial"] for t in trials)


def test_bad_tune_options():
    from edgemer.export.study.tune import TuneOptions

    for bad in (dict(trials=0), dict(grace_epochs=5, max_epochs=2), dict(metric="loss"), dict(lr=(0.0, 1e-2)),
                dict(window_s=(31.0,)), dict(val_fraction=1.0)):
        with pytest.raises(ConfigError):
            TuneOptions(**bad)



def test_export_physio_config_file_fills_what_the_command_line_left_default(tmp_path):
    from edgemer.cli import build_parser
    from edgemer.export.physio.config_file import apply_config_file

    best = tmp_path / "best.json"
    best.write_text(json.dumps({"epochs": 12, "lr": 0.004, "physics_weight": 0.5, "window_s": 30.0,
                                "train_hop_s": 10.0}))
    args = build_parser().parse_args(["export", "physio", "--wesad", "w", "--out", "b", "--config", str(best),
                                      "--epochs", "7"])
    merged = apply_config_file(args)
    assert (merged.epochs, merged.lr, merged.physics_weight, merged.window, merged.train_hop) == (7, 0.004, 0.5,
                                                                                                  30.0, 10.0)
    best.write_text(json.dumps({"learning_rate": 0.1}))
    with pytest.raises(ConfigError, match="learning_rate"):
        apply_config_file(args)
