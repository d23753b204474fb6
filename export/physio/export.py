"""``edgemer export physio``: WESAD folder -> trained PINN -> verified INT8 bundle.

Steps (all inside a temporary folder beside ``out_dir``, renamed into place only when
everything succeeded):

1. windows from the WESAD folder (:mod:`edgemer.export.physio.windows`), split by subject;
2. with the default ``physics="tonic-phasic"``: fit the tonic ODE + Bateman SCR model on the
   training subjects' recordings (:mod:`edgemer.export.physio.physics_data`), then train the
   multi-task PINN (:mod:`edgemer.export.physio.train`) with its parameters fixed to the fit and
   the physics residual on the tonic component; with ``single-ode`` the PINN learns one ODE on
   the whole EDA;
3. FP32 ONNX, static INT8 ONNX (QDQ) under the accuracy guard (:mod:`edgemer.export.core.guard`:
   while the INT8 ONNX model's macro-F1 on the held-out windows drops more than the target,
   the nodes around the most sensitive tensor stay FP32 and it is quantised again), and
   optionally FP32 + fully-integer INT8 TFLite;
4. ``samples.npz`` (held-out windows) and a first manifest;
5. verification of every model file through edgemer's own backends
   (:mod:`edgemer.export.physio.verify`: ``verification.json``/``.md``, with the guard's steps);
6. the final manifest (metrics, physics, provenance, sha256 of every file), loaded back
   with :func:`edgemer.bundle.load_bundle` and every model run once in its backend.

The manifest's ``physics`` section: :mod:`edgemer.export.physio.physics_section`.
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
# IDENTIFIABILITY_NOTE and truth_physics are also read from here (edgemer study physio's report).
from edgemer.export.physio.physics_section import (  # noqa: F401
    IDENTIFIABILITY_NOTE,
    physics_text,
    single_ode_section,
    tonic_phasic_section,
    truth_physics,
)
from edgemer.export.core.verify import check_bundle_runs, write_verification
from edgemer.export.physio.verify import verification_markdown, verify_bundle
from edgemer.frontends.physio import WristFrontEndConfig

PHYSICS_FIT_HINT = ("Check that every training subject's EDA is finite over its labelled windows, or train the "
                    "old single-ODE PINN with --physics single-ode.")


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
        lines += physics_text(physics)
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


def _physics_section(model: Any, fit: Any, data: PhysioDataset, config: PhysioExportConfig,
                     truth: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's ``physics``: the tonic/phasic fit the PINN was trained with, or its single ODE."""
    if fit is None:
        return single_ode_section(model.physical_parameters(), truth)
    info = {"subjects": list(data.subjects_train), "steps": config.physics_steps,
            "samples": "the training subjects' windows and forecasts (each recording's tonic level carried "
                       "through by the ODE)"}
    return tonic_phasic_section(model.physical_parameters(), fit, info, truth)


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
        fit = None
        if config.physics == "tonic-phasic":
            from edgemer.export.physio.physics_data import dataset_physics
            from edgemer.export.physio.tonic import TonicPhasicConfig

            with export_stage("tonic/phasic physics fit", PHYSICS_FIT_HINT):
                fit, data = dataset_physics(wesad_dir, data, TonicPhasicConfig(steps=config.physics_steps))
        with export_stage("training", "Check the data (NaN-free windows) or lower --lr."):
            model, history = train_pinn(data, train_config, progress=progress, physics=fit)
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
            "physics": _physics_section(model, fit, data, config, truth),
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
                           render=lambda r, title: verification_markdown(r, title, manifest["physics"]))
        manifest["metrics"] = _metrics(report, history, data)
        manifest = dict(write_manifest(tmp, manifest).raw)
        with export_stage("final check", FINAL_CHECK_HINT):
            check_bundle_runs(tmp)
    return ExportResult(bundle_dir=out_dir, verification=report, manifest=manifest, history=history)
