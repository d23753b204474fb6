"""``edgemer study tune``: a hyperparameter search for the physiology PINN with Ray Tune and ASHA.

Each trial trains the PINN with one sampled configuration (learning rate, physics weight,
window, training hop) on the first subjects of a WESAD-layout folder and scores it after
every epoch on the last ``val_fraction`` of the subjects (people the trial never trained
on): validation EDA forecast RMSE (µS), 3-class macro-F1 and the learned time constant.
ASHA stops the trials that trail the others at each rung (``grace_epochs``,
``grace_epochs * reduction_factor``, ... up to ``max_epochs``). The search resumes from
``OUT/tune`` when run again with the same ``--out`` (finished trials are kept; unfinished
ones start again). It writes ``OUT/tune_report.md``, ``OUT/tune.json`` (every trial) and
``OUT/best.json``, the best configuration as options of ``edgemer export physio --config``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemer._extras import require
from edgemer.errors import ConfigError
from edgemer.export.study.executor import ray_session
from edgemer.export.study.run import (
    Pool,
    StudyOptions,
    _predict,
    class_metrics,
    eda_metrics,
    fold_data,
    load_study_subjects,
)

METRICS = {"eda_rmse_uS": "min", "macro_f1": "max"}
"""What a search can optimise, with its direction."""


@dataclass(frozen=True)
class TuneOptions:
    """The search space and budget of ``edgemer study tune`` (times in seconds).

    lr, physics_weight: (low, high) ranges, sampled log-uniformly and uniformly (low ==
    high: fixed). window_s, train_hop_s: values to choose from (window a multiple of 2 s).
    trials: sampled configurations. max_epochs: epochs a trial trains at most (ASHA's max_t);
    grace_epochs: epochs before ASHA may stop a trial; reduction_factor: ASHA's eta.
    metric: ``eda_rmse_uS`` (minimised) or ``macro_f1`` (maximised), on the validation
    subjects. val_fraction: share of the subjects (the last ones, at least one) held out
    for validation. time_budget_s: stop starting trials after this long (None: no limit).
    cpus_per_trial: CPUs (and torch threads) per trial. seed: sampling, training and
    shuffling seed. max_subjects: use only the first N subjects.
    """

    trials: int = 8
    max_epochs: int = 20
    grace_epochs: int = 3
    reduction_factor: int = 2
    metric: str = "eda_rmse_uS"
    lr: tuple[float, float] = (3e-4, 1e-2)
    physics_weight: tuple[float, float] = (0.0, 2.0)
    window_s: tuple[float, ...] = (60.0,)
    train_hop_s: tuple[float, ...] = (5.0,)
    forecast_s: float = 10.0
    batch_size: int = 64
    val_fraction: float = 0.2
    time_budget_s: float | None = None
    cpus_per_trial: int = 1
    seed: int = 0
    max_subjects: int | None = None

    def __post_init__(self) -> None:
        for name in ("trials", "max_epochs", "grace_epochs", "batch_size", "cpus_per_trial"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TuneOptions.{name} must be >= 1, got {getattr(self, name)}")
        if self.grace_epochs > self.max_epochs:
            raise ConfigError(f"TuneOptions.grace_epochs ({self.grace_epochs}) must be <= max_epochs "
                              f"({self.max_epochs})")
        if self.reduction_factor < 2:
            raise ConfigError(f"TuneOptions.reduction_factor must be >= 2, got {self.reduction_factor}")
        if self.metric not in METRICS:
            raise ConfigError(f"TuneOptions.metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        for name, low_ok in (("lr", 0.0), ("physics_weight", -1e-12)):
            lo, hi = getattr(self, name)
            if not (lo > low_ok and hi >= lo and math.isfinite(hi)):
                raise ConfigError(f"TuneOptions.{name} must be a range LOW:HIGH with 0 {'<' if low_ok == 0 else '<='}"
                                  f" LOW <= HIGH, got {lo}:{hi}")
        if not self.window_s or not self.train_hop_s:
            raise ConfigError("TuneOptions.window_s and train_hop_s need at least one value each")
        for w in self.window_s:
            for hop in self.train_hop_s:
                self.study_options(w, hop)  # validates the window grid
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"TuneOptions.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ConfigError(f"TuneOptions.time_budget_s must be > 0 s or None, got {self.time_budget_s}")

    @property
    def mode(self) -> str:
        return METRICS[self.metric]

    def study_options(self, window_s: float, train_hop_s: float, **train: Any) -> StudyOptions:
        """The study options of one trial (windows, subjects and, in ``train``, training fields)."""
        return StudyOptions(window_s=window_s, train_hop_s=train_hop_s, forecast_s=self.forecast_s,
                            batch_size=self.batch_size, seed=self.seed, max_subjects=self.max_subjects,
                            epochs=self.max_epochs, task_threads=self.cpus_per_trial, **train)


@dataclass
class TuneResult:
    """What :func:`run_tune` wrote: the report folder, the report dict, best.json and summary lines."""

    out_dir: Path
    report: dict[str, Any]
    best_config: Path
    summary_lines: list[str]


def split_subjects(n: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) subject indices: the last ``ceil(n * val_fraction)`` (at least one) validate."""
    n_val = min(max(1, math.ceil(n * val_fraction)), n - 1)
    return np.arange(n - n_val), np.arange(n - n_val, n)


def _trial(config: dict[str, Any], wesad_dir: str, cache_dir: str, options: TuneOptions) -> None:
    """One Tune trial: train with ``config`` and report the validation metrics after every epoch."""
    from ray import tune

    from edgemer.export.physio.pinn import LossWeights
    from edgemer.export.physio.train import TrainConfig, train_pinn
    from edgemer.export.study.tasks import task_threads

    opts = options.study_options(config["window_s"], config["train_hop_s"], lr=config["lr"],
                                 physics_weight=config["physics_weight"])
    subjects, _ = load_study_subjects(Path(wesad_dir), opts, Path(cache_dir), progress=False)
    pool = Pool.of(subjects)
    train_s, val_s = split_subjects(len(subjects), options.val_fraction)
    train, val = np.flatnonzero(np.isin(pool.subject, train_s)), np.flatnonzero(np.isin(pool.subject, val_s))
    fd = fold_data(pool, train, val, opts)
    ds = fd.dataset
    last, rng = pool.features[val, 0, -1], pool.eda_range_uS[pool.subject[val]]

    def report(epoch: int, model: Any) -> None:
        model.eval()
        pred, pred_uS = _predict(model, ds.x_heldout, None, ds)
        cls, eda = class_metrics(ds.y_heldout, pred), eda_metrics(pred_uS, pool.eda_future[val], last, rng)
        phys = model.physical_parameters()
        tune.report({"epoch": epoch + 1, "eda_rmse_uS": eda["rmse_uS"], "eda_r": eda["r"],
                     "macro_f1": cls["macro_f1"], "accuracy": cls["accuracy"], "tau_s": phys["tau_s"],
                     "gain_uS": phys["gain_uS"]})

    cfg = TrainConfig(epochs=options.max_epochs, batch_size=options.batch_size, lr=config["lr"], seed=options.seed,
                      weights=LossWeights(physics=config["physics_weight"]))
    with task_threads(options.cpus_per_trial):
        train_pinn(ds, cfg, progress=False, on_epoch=report)


def _param_space(options: TuneOptions) -> dict[str, Any]:
    from ray import tune

    lo, hi = options.lr
    p_lo, p_hi = options.physics_weight
    return {"lr": tune.loguniform(lo, hi) if hi > lo else lo,
            "physics_weight": tune.uniform(p_lo, p_hi) if p_hi > p_lo else p_lo,
            "window_s": tune.choice(list(options.window_s)) if len(options.window_s) > 1 else options.window_s[0],
            "train_hop_s": (tune.choice(list(options.train_hop_s)) if len(options.train_hop_s) > 1
                            else options.train_hop_s[0])}


def best_export_config(config: dict[str, Any], epochs: int, options: TuneOptions) -> dict[str, Any]:
    """The ``edgemer export physio --config`` file of a trial: PhysioExportConfig fields."""
    return {"epochs": int(epochs), "lr": float(config["lr"]), "physics_weight": float(config["physics_weight"]),
            "window_s": float(config["window_s"]), "train_hop_s": float(config["train_hop_s"]),
            "forecast_s": options.forecast_s, "batch_size": options.batch_size, "seed": options.seed}


def run_tune(wesad_dir: Path, out_dir: Path, options: TuneOptions = TuneOptions(), address: str | None = None,
             num_cpus: int | None = None, progress: bool = True, command: str | None = None) -> TuneResult:
    """Run (or resume) the search and write the report, ``tune.json`` and ``best.json`` into ``out_dir``.

    address: a Ray cluster to join (None: start Ray on this machine with ``num_cpus`` CPUs,
    default one per core, or use the Ray this process already started).

    Raises
    ------
    MissingExtraError: Ray Tune (extra ``study``) or torch / scikit-learn (extra ``export``) missing.
    DatasetError: see :func:`~edgemer.export.study.run.load_study_subjects`.
    EdgemerError: every trial failed (the first error is named).
    """
    require("ray.tune", "study", "The hyperparameter search (edgemer study tune)")
    require("torch", "export", "The hyperparameter search (edgemer study tune)")
    require("sklearn", "export", "The hyperparameter search's metrics (edgemer study tune)")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from edgemer.errors import EdgemerError

    started = time.perf_counter()
    wesad_dir = Path(wesad_dir).expanduser().absolute()
    out_dir = Path(out_dir).expanduser().absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = out_dir / "cache"
    n_subjects = 0
    for w in options.window_s:  # windows built once here, so trials only read the cache
        for hop in options.train_hop_s:
            subjects, _ = load_study_subjects(wesad_dir, options.study_options(w, hop), cache, progress)
            n_subjects = len(subjects)
    storage, name = out_dir / "tune", "search"
    trainable = tune.with_resources(
        tune.with_parameters(_trial, wesad_dir=str(wesad_dir), cache_dir=str(cache), options=options),
        {"cpu": options.cpus_per_trial})
    with ray_session(address, num_cpus):
        if tune.Tuner.can_restore(storage / name):
            tuner = tune.Tuner.restore(str(storage / name), trainable, resume_errored=True)
            resumed = True
        else:
            tuner = tune.Tuner(
                trainable, param_space=_param_space(options),
                tune_config=tune.TuneConfig(
                    metric=options.metric, mode=options.mode, num_samples=options.trials,
                    time_budget_s=options.time_budget_s,
                    scheduler=ASHAScheduler(max_t=options.max_epochs, grace_period=options.grace_epochs,
                                            reduction_factor=options.reduction_factor),
                    search_alg=BasicVariantGenerator(random_state=options.seed)),
                run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=1 if progress else 0,
                                          failure_config=tune.FailureConfig(max_failures=1)))
            resumed = False
        grid = tuner.fit()
    trials = []
    for r in grid:
        m = r.metrics or {}
        trials.append({"trial": m.get("trial_id") or Path(r.path).name, "config": dict(r.config),
                       "epochs": int(m.get("training_iteration", 0)),
                       "metrics": {k: m[k] for k in ("eda_rmse_uS", "eda_r", "macro_f1", "accuracy", "tau_s",
                                                     "gain_uS") if k in m},
                       "error": None if r.error is None else str(r.error).strip().splitlines()[-1]})
    done = [t for t in trials if options.metric in t["metrics"]]
    if not done:
        raise EdgemerError(f"every trial of the search failed; first error: {trials[0]['error'] if trials else '-'} "
                           f"(trial logs under {storage / name})")
    sign = 1 if options.mode == "min" else -1
    best = min(done, key=lambda t: sign * t["metrics"][options.metric])
    best_cfg = best_export_config(best["config"], best["epochs"], options)
    best_file = out_dir / "best.json"
    best_file.write_text(json.dumps(best_cfg, indent=1) + "\n")
    report = {"study": "edgemer study tune", "command": command, "data": str(wesad_dir), "subjects": n_subjects,
              "options": {**asdict(options)}, "metric": options.metric, "mode": options.mode,
              "resumed": resumed, "seconds": round(time.perf_counter() - started, 1), "trials": trials,
              "best": {**best, "export_config": best_cfg}, "storage": str(storage / name)}
    (out_dir / "tune.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out_dir / "tune_report.md").write_text(_markdown(report) + "\n")
    lines = [f"report    {out_dir / 'tune_report.md'} ({report['seconds']:.0f} s, {len(trials)} trials, "
             f"{sum(t['error'] is not None for t in trials)} failed)",
             f"best      {best['trial']}: {options.metric} {best['metrics'][options.metric]:.4g} after "
             f"{best['epochs']} epochs",
             f"config    {best_file}  (edgemer export physio --wesad {wesad_dir} --out BUNDLE --config {best_file})"]
    return TuneResult(out_dir, report, best_file, lines)


def _markdown(report: dict[str, Any]) -> str:
    o = report["options"]
    lines = ["# edgemer hyperparameter search (PINN)", "",
             f"Command: `{report['command'] or 'edgemer study tune'}`  ",
             f"Data: {report['data']} ({report['subjects']} subjects; the last {o['val_fraction']:.0%} validate). "
             f"Run time {report['seconds']:.0f} s" + (" (resumed)" if report["resumed"] else "") + ".", "",
             f"ASHA: at most {o['max_epochs']} epochs a trial, grace {o['grace_epochs']} epochs, reduction factor "
             f"{o['reduction_factor']}; {o['trials']} trials; metric `{report['metric']}` ({report['mode']}imised) "
             "on the validation subjects after each epoch.", "",
             "| trial | lr | physics weight | window s | train hop s | epochs | val RMSE µS | val r | val macro-F1 "
             "| tau s | status |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def num(m: dict[str, Any], k: str, f: str) -> str:
        return format(m[k], f) if isinstance(m.get(k), (int, float)) and math.isfinite(m[k]) else "–"

    for t in sorted(report["trials"], key=lambda t: t["trial"]):
        c, m = t["config"], t["metrics"]
        status = ("error: " + t["error"]) if t["error"] else ("best" if t["trial"] == report["best"]["trial"]
                                                             else ("stopped early" if t["epochs"] < o["max_epochs"]
                                                                   else "completed"))
        lines.append(f"| {t['trial']} | {c['lr']:.3g} | {c['physics_weight']:.3g} | {c['window_s']:g} | "
                     f"{c['train_hop_s']:g} | {t['epochs']} | {num(m, 'eda_rmse_uS', '.4f')} | "
                     f"{num(m, 'eda_r', '.4f')} | "
                     f"{num(m, 'macro_f1', '.3f')} | {num(m, 'tau_s', '.2f')} | {status} |")
    lines += ["", "## Best configuration", "", "```json", json.dumps(report["best"]["export_config"], indent=1), "```",
              "", "Export it: `edgemer export physio --wesad DIR --out BUNDLE --config best.json` (options given on "
              "the command line win over the file)."]
    return "\n".join(lines)
