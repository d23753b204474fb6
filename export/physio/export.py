"""``edgemer export physio``: WESAD folder -> trained PINN -> verified INT8 bundle.

Steps (all inside a temporary folder beside ``out_dir``, renamed into place only when
everything succeeded):

1. windows from the WESAD folder (:mod:`edgemer.export.physio.windows`), split by subject;
2. train the multi-task PINN (:mod:`edgemer.export.physio.train`);
3. FP32 ONNX, static INT8 ONNX (QDQ) under the accuracy guard (:mod:`edgemer.export.core.guard`:
   while the INT8 ONNX model's macro-F1 on the held-out windows drops more than the target,
   the nodes around the most sensitive tensor stay FP32 and it is quantised again), and
   optionally FP32 + fully-integer INT8 TFLite;
4. ``samples.npz`` (held-out windows) and a first manifest;
5. verification of every model file through edgemer's own backends
   (:mod:`edgemer.export.physio.verify`: ``verification.json``/``.md``, with the guard's steps);
6. the final manifest (metrics, physics, provenance, sha256 of every file), loaded back
   with :func:`edgemer.bundle.load_bundle` and every model run once in its backend.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


from edgemer._extras import require
from edgemer.bundle import load_bundle
from edgemer.errors import ExportError
from edgemer.export.core.atomic import atomic_directory
from edgemer.export.core.bundle_writer import (
    CONVERSION_HINT,
    FINAL_CHECK_HINT,
    SAMPLES_NAME,
    VERIFICATION_HINT,
    BundleExportResult,
    export_stage,
    looks_like_bundle,
    models_section,
    provenance_section,
    physio_io,
    write_manifest,
    write_model_files,
    write_samples,
)
from edgemer.export.core.guard import GuardTask
from edgemer.export.core.training import pick
from edgemer.export.physio.windows import LABELS, PhysioDataset, load_wesad_windows
from edgemer.export.physio.config import REAL_DATA_COMMAND, PhysioExportConfig
from edgemer.export.physio.synth import ODE_TEXT
from edgemer.export.core.verify import check_bundle_runs, write_verification
from edgemer.export.physio.verify import verification_markdown, verify_bundle
from edgemer.frontends.physio import WristFrontEndConfig

PHYSICS_UNITS = {"alpha_0": "1/s", "beta": "uS/s per unit drive", "gamma": "dimensionless", "tau_s": "s",
                 "gain_uS": "uS per unit drive (rest -> stress)", "EDA": "uS",
                 "u": "0..1 (drive: baseline 0, stress 1)", "level_*": "0..1 (learned drive level of a condition)"}
IDENTIFIABILITY_NOTE = (
    "The ODE gamma*dEDA/dt = -alpha_0*(EDA - EDA_tonic) + beta*u is unchanged when alpha_0, beta and gamma are "
    "multiplied by one factor, so only tau_s = gamma/alpha_0 (the EDA time constant, s) and gain_uS = beta/alpha_0 "
    "(the steady EDA rise per unit drive, µS) can be learned. A drive free at every time step could mimic any time "
    "constant and a drive of free scale any gain, so in training the drive is tied to the condition: one learned "
    "level per WESAD condition, anchored at baseline = 0 and stress = 1 (one unit of drive is the step from rest to "
    "stress, time is in seconds), and EDA_tonic is the wearer's resting EDA measured on the baseline. tau_s then "
    "shows in how EDA approaches each new level after a condition change and gain_uS in the level differences. Both "
    "are identifiable when the true drive follows this constraint (edgemer data synth-wesad --drive condition); on "
    "the default bursty simulator, skin-conductance bursts and wandering arousal that a condition level cannot "
    "follow bias them, and on real data they describe the wearer's average response to the protocol's conditions.")


def truth_physics(truth: dict[str, Any] | None) -> dict[str, float] | None:
    """truth.json's ODE parameters in the PINN's units, or None (real data).

    alpha_0 and gamma as they are; beta and gain_uS per unit of the PINN's anchored drive
    (baseline 0, stress 1), i.e. times the simulator's stress-minus-baseline drive level
    from ``drive_levels`` (1 for ``--drive condition``; 0.75 for the bursty default).
    """
    if not truth or not all(k in truth for k in ("alpha_0", "beta", "gamma")):
        return None
    levels = truth.get("drive_levels") or {}
    scale = float(levels["2"]) - float(levels["1"]) if "1" in levels and "2" in levels else 1.0
    a, b, g = float(truth["alpha_0"]), float(truth["beta"]) * scale, float(truth["gamma"])
    return {"alpha_0": a, "beta": b, "gamma": g, "tau_s": g / a, "gain_uS": b / a}


@dataclass(frozen=True)
class ExportResult(BundleExportResult):
    """What :func:`export_physio` produced: bundle folder, verification report, manifest and training history."""

    history: dict[str, Any]

    def summary(self) -> str:
        """A few lines for the terminal: data, training, physics vs truth, models, targets."""
        m = self.manifest
        prov, physics, metrics = m["provenance"], m["physics"], m["metrics"]
        lines = [f"bundle    {m['name']} -> {self.bundle_dir}"]
        if prov["synthetic_data"]:
            lines.append("data      SYNTHETIC (edgemer data synth-wesad); train on real WESAD with:")
            lines.append(f"          {REAL_DATA_COMMAND}")
        tr = metrics["training"]
        lines.append(f"subjects  train {', '.join(prov['subjects_train'])}; "
                     f"held out {', '.join(prov['subjects_heldout'])} "
                     f"({tr['train_windows']} / {metrics['heldout']['windows']} windows)")
        final = tr["final_epoch"]
        lines.append(f"training  {tr['epochs']} epochs in {tr['seconds']:.0f} s; final loss {final['loss']:.4f} "
                     f"(eda {final['eda']:.4f}, ce {final['ce']:.4f}, phys {final['phys']:.4f}), "
                     f"train accuracy {final['train_accuracy']:.3f}")
        truth = physics.get("truth") or {}
        lines.append(f"physics   {physics['ode']}")
        for key, unit in (("alpha_0", "1/s"), ("beta", "uS/s"), ("gamma", ""), ("tau_s", "s"), ("gain_uS", "uS")):
            shown = f"{key:8s} learned {physics[key]:8.4g} {unit:5s}"
            if key in truth:
                rel = (physics[key] - truth[key]) / truth[key] * 100
                shown += f"  truth {truth[key]:8.4g}  ({rel:+.0f} %)"
            lines.append(f"          {shown}")
        lines.append(f"          ({IDENTIFIABILITY_NOTE})")
        for key, row in self.verification["models"].items():
            lines.append(f"model     {key:12s} {row['bytes'] / 1024:7.1f} KiB  macro-F1 {row['macro_f1']:.4f}  "
                         f"accuracy {row['accuracy']:.4f}  EDA forecast RMSE {row['eda_forecast_rmse_uS']:.4f} uS")
        return "\n".join(lines + self._closing_lines())


def read_truth(wesad_dir: Path) -> dict[str, Any] | None:
    """``truth.json`` of a synthetic WESAD folder, or None for real data (or an unreadable file)."""
    f = Path(wesad_dir) / "truth.json"
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _write_models(model: Any, data: PhysioDataset, config: PhysioExportConfig, folder: Path
                  ) -> tuple[list[str], dict[str, Any]]:
    """Write the model files into ``folder``, the INT8 ONNX one under the accuracy guard (bound: the
    macro-F1 drop target, on the held-out windows); return the model keys and the ``quantisation`` section."""
    import torch

    inputs, outputs = physio_io(data.options.n_samples, data.options.n_forecast)
    guard = None
    if config.guard_steps:
        guard = GuardTask(data.x_heldout, data.y_heldout, outputs[0].name,
                          config.targets.max_macro_f1_drop_points, metric="macro_f1", max_steps=config.guard_steps)
    return write_model_files(model, torch.from_numpy(data.x_train[:1].copy()), folder,
                             data.x_train[pick(len(data.x_train), config.calibration_windows, config.seed)],
                             inputs, outputs, config.onnx_quantisation, tflite_int8=config.tflite,
                             tflite_fp32=config.tflite, guard=guard)


def _physics_section(params: dict[str, float], truth: dict[str, Any] | None) -> dict[str, Any]:
    section: dict[str, Any] = {"ode": ODE_TEXT, **params, "units": PHYSICS_UNITS,
                               "identifiability": IDENTIFIABILITY_NOTE}
    true = truth_physics(truth)
    if true:
        section["truth"] = true
    return section


def _provenance(wesad_dir: Path, data: PhysioDataset, truth: dict[str, Any] | None, command: str) -> dict[str, Any]:
    synthetic = bool(truth and truth.get("synthetic") is True)
    if synthetic:
        dataset = (f"synthetic WESAD layout from 'edgemer data synth-wesad' (seed {truth.get('seed')}, "
                   f"edgemer {truth.get('edgemer_version')})")
        note = ("Trained on SYNTHETIC data generated by edgemer's wrist simulator, not on recordings of "
                "people. Its outputs show the pipeline working; it is not a validated stress detector. "
                "Train on the real WESAD data set with the command in 'train_on_real_data'.")
    else:
        dataset = f"WESAD layout folder '{wesad_dir.name}'"
        note = "Trained on the WESAD-layout recordings named in 'dataset'."
    return provenance_section(synthetic, dataset, command, REAL_DATA_COMMAND, note,
                              subjects_train=list(data.subjects_train), subjects_heldout=list(data.subjects_heldout))


def _metrics(report: dict[str, Any], history: dict[str, Any], data: PhysioDataset) -> dict[str, Any]:
    return {
        "heldout": {"subjects": list(data.subjects_heldout), "windows": report["heldout"]["windows"],
                    "class_counts": report["heldout"]["class_counts"],
                    "eda_forecast_rmse_uS_persistence": report["heldout"]["eda_forecast_rmse_uS_persistence"]},
        "models": {k: {"macro_f1": r["macro_f1"], "accuracy": r["accuracy"],
                       "eda_forecast_rmse_uS": r["eda_forecast_rmse_uS"]} for k, r in report["models"].items()},
        "targets_passed": report["passed"],
        "training": {"epochs": len(history["epochs"]), "seconds": round(history["seconds"], 1),
                     "train_windows": int(len(data.y_train)), "class_counts": data.class_counts("train"),
                     "first_epoch": history["epochs"][0], "final_epoch": history["epochs"][-1]},
    }


def export_physio(wesad_dir: Path, out_dir: Path, config: PhysioExportConfig = PhysioExportConfig(),
                  progress: bool = True, overwrite: bool = False, command: str | None = None) -> ExportResult:
    """Train, convert, quantise and verify the physiology model; write the bundle to ``out_dir``.

    Parameters
    ----------
    wesad_dir: WESAD-layout folder (``S<N>/S<N>.pkl``; ``truth.json`` marks synthetic data).
    out_dir: bundle folder to create (missing or empty; a previous bundle is replaced
        only with ``overwrite``).
    command: the command line to record in the provenance (default: the equivalent
        ``edgemer export physio`` command).

    Raises
    ------
    DatasetError: the WESAD folder or a subject file is missing, unreadable or unsafe.
    MissingExtraError: torch/onnx/litert-torch missing (extra ``export``).
    ExportError: training, conversion, quantisation or verification failed. Nothing
        is left behind in any failure.
    """
    require("torch", "export", "Training the physiology model (edgemer export physio)")
    require("onnx", "export", "ONNX export (edgemer export physio)")
    window_options = config.window_options()
    command = command or config.as_command(wesad_dir, out_dir)  # the paths as the caller gave them
    wesad_dir = Path(wesad_dir).expanduser().absolute()
    out_dir = Path(out_dir).expanduser().absolute()
    truth = read_truth(wesad_dir)
    with atomic_directory(out_dir, overwrite, looks_like_bundle, "bundle", ExportError,
                          "overwrite=True (--overwrite)") as tmp:
        data = load_wesad_windows(wesad_dir, window_options, hop_s=config.hop_s, progress=progress)
        from edgemer.export.physio.pinn import LossWeights
        from edgemer.export.physio.train import TrainConfig, train_pinn

        train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                   seed=config.seed, weights=LossWeights(physics=config.physics_weight))
        with export_stage("training", "Check the data (NaN-free windows) or lower --lr."):
            model, history = train_pinn(data, train_config, progress=progress)
        with export_stage("model conversion", CONVERSION_HINT):
            keys, quantisation = _write_models(model, data, config, tmp)
        write_samples(tmp / SAMPLES_NAME, data.x_heldout, data.y_heldout)
        inputs, outputs = physio_io(data.options.n_samples, data.options.n_forecast)
        front_end = WristFrontEndConfig(window_s=config.window_s, hop_s=config.hop_s, forecast_s=config.forecast_s,
                                        mean=data.mean, std=data.std)
        manifest: dict[str, Any] = {
            "name": config.name,
            "modality": "physio",
            "task": "affect-3class",
            "labels": list(LABELS),
            "models": models_section(keys),
            "inputs": [s.to_dict() for s in inputs],
            "outputs": [s.to_dict() for s in outputs],
            "front_end": front_end.to_dict(),
            "physics": _physics_section(model.physical_parameters(), truth),
            "quantisation": quantisation,
            "provenance": _provenance(wesad_dir, data, truth, command),
            "training": {"config": {k: v for k, v in asdict(config).items()
                                    if k not in ("onnx_quantisation", "targets")}},
        }
        write_manifest(tmp, manifest)
        with export_stage("verification", VERIFICATION_HINT):
            report = verify_bundle(load_bundle(tmp), data.x_heldout, data.y_heldout, data.eda_heldout, config.targets)
        if "guard" in quantisation["onnx"]:
            report["guard"] = quantisation["onnx"]["guard"]
        write_verification(tmp, report, f"{config.name} (INT8 vs FP32 on {len(data.y_heldout)} held-out windows)",
                           render=verification_markdown)
        manifest["metrics"] = _metrics(report, history, data)
        manifest = dict(write_manifest(tmp, manifest).raw)
        with export_stage("final check", FINAL_CHECK_HINT):
            check_bundle_runs(tmp)
    return ExportResult(bundle_dir=out_dir, verification=report, manifest=manifest, history=history)
