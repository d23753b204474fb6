"""Bring your own model: an ONNX file or a ``torch.nn.Module`` -> a verified INT8 edgemer bundle.

:func:`export_onnx_model` (``edgemer export onnx MODEL.onnx ...``) and
:func:`export_torch_model` (a module with an example input: exported with ``torch.onnx``,
then the same path). Steps, inside a temporary folder renamed into place only when all
succeeded (:mod:`edgemer.export.core.atomic`):

1. check the model (:mod:`~edgemer.export.core.onnx_check`): checker, opset, shapes, ops;
2. settle the runtime front-end from the model's input and the options
   (:mod:`~edgemer.export.byo.frontend`);
3. read the calibration (and evaluation) folder through that front-end
   (:mod:`~edgemer.export.byo.data`);
4. quantise to static INT8 QDQ ONNX under the accuracy guard (:mod:`~edgemer.export.core.guard`);
5. fully-integer INT8 TFLite (from the module, or ONNX -> torch with onnx2torch); when it
   cannot be made the bundle records why (:mod:`~edgemer.export.core.onnx_tflite`);
6. verify every file through edgemer's backends (:func:`~edgemer.export.core.verify.verify_classifier`),
   write ``report.json`` / ``report.md`` (:mod:`~edgemer.export.byo.report`) and the manifest.

The same inputs, options and seed give byte-identical model files: calibration files are
read in sorted order, samples are chosen by index, and nothing time-dependent is written.
"""
from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgemer._extras import require
from edgemer.bundle import TensorSpec, load_bundle, sha256_file
from edgemer.errors import CalibrationDataError, ExportError, ModelCheckError
from edgemer.export.byo import data as byo_data
from edgemer.export.core.atomic import atomic_directory
from edgemer.export.core.bundle_writer import (
    SAMPLES_NAME,
    BundleExportResult,
    export_stage,
    looks_like_bundle,
    models_section,
    write_manifest,
    write_samples,
)
from edgemer.export.byo.config import ByoExportConfig
from edgemer.export.byo.frontend import FrontEndPlan, face_front_end, physio_front_end, plan_front_end
from edgemer.export.byo.report import build_report, report_markdown, tool_versions
from edgemer.export.core.guard import coverage, run_guard
from edgemer.export.core.onnx_check import CheckedModel, check_onnx_model
from edgemer.export.core.onnx_tflite import TfliteOutcome, tflite_from_module, tflite_from_onnx
from edgemer.export.core.quantize import preprocess_onnx
from edgemer.export.core.verify import classifier_markdown, verify_classifier, write_verification
from edgemer.frontends.physio import CHANNELS

FP32_NAME, INT8_NAME, TFLITE_NAME = "model_fp32.onnx", "model_int8.onnx", "model_int8.tflite"
REPORT_JSON, REPORT_MD = "report.json", "report.md"


@dataclass(frozen=True)
class ByoExportResult(BundleExportResult):
    """What ``edgemer export onnx`` produced; ``report`` is the full export report (report.json)."""

    report: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        m, r = self.manifest, self.report
        g = r.get("guard", {})
        final = g.get("final") or {}
        lines = [f"bundle    {m['name']} -> {self.bundle_dir}",
                 f"model     {r['model_check']['source']} (opset {r['model_check']['opset']}), input "
                 f"{r['model_check']['input']['shape']}, {r['model_check']['nodes']} nodes",
                 f"data      {r['calibration']['samples']} calibration inputs from {r['calibration']['files']} files; "
                 f"evaluation: {r['evaluation']['source']}",
                 f"int8      {final.get('metric', '?')}: FP32 {final.get('fp32', 0) * 100:.2f} -> INT8 "
                 f"{final.get('int8', 0) * 100:.2f} (drop {final.get('drop_points', 0):.2f} pt, bound "
                 f"{g.get('max_drop_points', 0):g}); quantised nodes {r['coverage']['share'] * 100:.1f} %"]
        if g.get("guard_excluded"):
            lines.append(f"guard     kept in FP32: {', '.join(g['guard_excluded'])}")
        if r["model_check"]["tflite_risky_ops"]:
            lines.append(f"ops       not known to convert to TFLite: {', '.join(r['model_check']['tflite_risky_ops'])}")
        t = r["tflite"]
        lines.append(f"tflite    {'written (' + t['route'] + ')' if t['written'] else 'not written: ' + t['reason']}")
        lines += self._closing_lines()
        lines.append(f"report    {self.bundle_dir / REPORT_MD}")
        return "\n".join(lines)


def save_onnx(proto: Any, path: Path) -> Path:
    """Save ``proto`` as one file with every tensor inline, serialised deterministically."""
    Path(path).write_bytes(proto.SerializeToString(deterministic=True))
    return Path(path)


def _model_inputs(plan: FrontEndPlan, raw: byo_data.RawData, front_end: Any) -> np.ndarray:
    if plan.kind == "face":
        return byo_data.face_inputs(raw, front_end.crop)
    if plan.kind == "audio":
        return byo_data.audio_inputs(raw, front_end)
    from edgemer.frontends.physio import WristFrontEnd

    fe = WristFrontEnd(front_end, plan.labels)
    return np.stack([fe.normalise(f) for f in raw.items]).astype(np.float32)


def _load_raw(plan: FrontEndPlan, cfg: ByoExportConfig, folder: Path, front_end: Any, what: str) -> byo_data.RawData:
    if plan.kind == "face":
        return byo_data.load_face(folder, front_end, plan.labels, cfg.detect_faces, what)
    if plan.kind == "audio":
        return byo_data.load_audio(folder, front_end, plan.labels, cfg.resample, what=what)
    assert plan.window_s is not None
    return byo_data.load_physio(folder, plan.window_s, plan.labels, what)


def as_runtime_reads_it(front_end: Any) -> Any:
    """``front_end`` written to its manifest form and read back, exactly as the runtime will read it."""
    return type(front_end).from_dict(front_end.to_dict())


def _settle_front_end(plan: FrontEndPlan, cfg: ByoExportConfig, calibration: Path) -> tuple[Any, byo_data.RawData]:
    """The final front-end config (normalisation from the calibration data where asked), as the runtime
    will read it from the manifest, and the raw calibration data."""
    if plan.kind == "face":
        fe = as_runtime_reads_it(face_front_end(plan, cfg))
        return fe, _load_raw(plan, cfg, calibration, fe, "calibration")
    if plan.kind == "audio":
        assert plan.audio is not None
        fe: Any = as_runtime_reads_it(plan.audio)
        raw = _load_raw(plan, cfg, calibration, fe, "calibration")
        if cfg.audio_normalisation == "calibration" and fe.features == "log_mel":
            mean, std = byo_data.audio_db_stats(raw, fe)
            fe = as_runtime_reads_it(dataclasses.replace(fe, mean=mean, std=std))
            plan.origin["normalisation"] = f"per mel band mean/std of {len(raw.items)} calibration windows"
        else:
            plan.origin["normalisation"] = "none (dB values as they are)" if fe.features == "log_mel" else (
                "zero mean, unit variance per window" if fe.normalize_waveform else "none (samples -1..1)")
        return fe, raw
    raw = _load_raw(plan, cfg, calibration, None, "calibration")
    if cfg.physio_mean is not None and cfg.physio_std is not None:
        mean, std = cfg.physio_mean, cfg.physio_std
        plan.origin["normalisation"] = "given"
    else:
        f = raw.items.astype(np.float64)
        mean = tuple(float(v) for v in np.nanmean(f, axis=(0, 2)))
        std = tuple(float(max(v, 1e-6)) for v in np.nanstd(f, axis=(0, 2)))
        plan.origin["normalisation"] = (f"per channel ({', '.join(CHANNELS)}) mean/std of {len(raw.items)} "
                                        f"calibration windows")
    return as_runtime_reads_it(physio_front_end(plan, cfg, mean, std)), raw


def _check_inputs(x: np.ndarray, spec: TensorSpec, what: str) -> None:
    if tuple(x.shape[1:]) != tuple(spec.shape[1:]):
        raise CalibrationDataError(f"the {what} data gives model inputs {list(x.shape[1:])}, the model takes "
                                   f"{list(spec.shape[1:])}; check the folder and the front-end options")
    if not np.isfinite(x).all():
        raise CalibrationDataError(f"the {what} data gives non-finite model inputs (NaN/inf); check the files")


def export_onnx_model(model: Path, calibration: Path, out_dir: Path, config: ByoExportConfig = ByoExportConfig(),
                      eval_dir: Path | None = None, overwrite: bool = False, command: str | None = None,
                      torch_module: Any = None, source: str | None = None) -> ByoExportResult:
    """Check, calibrate, quantise (under the accuracy guard), convert and verify ``model``; write the bundle.

    Parameters
    ----------
    model: the FP32 ``.onnx`` file (one float32 input, class scores among the outputs).
    calibration: folder of images (face), WAV files (audio) or NPZ windows (physio).
    out_dir: bundle folder to create (missing or empty; an earlier bundle only with ``overwrite``).
    eval_dir: labelled evaluation data (files in folders named like the labels); None: the
        calibration inputs with FP32's outputs as the reference.
    torch_module: the same model as a torch module (from :func:`export_torch_model`), used
        for TFLite instead of converting the ONNX back to torch.
    source: what the model came from, for the manifest (default: the file name and its sha256).

    Raises
    ------
    ModelCheckError: the model cannot be used (see :func:`~edgemer.export.core.onnx_check.check_onnx_model`).
    CalibrationDataError: empty or mismatched calibration/evaluation folder.
    AccuracyGuardError: ``config.strict`` and INT8 dropped more than ``config.max_drop_points``.
    ExportError: quantisation, conversion or verification failed. Nothing is left behind on error.
    """
    require("onnx", "export", "edgemer export onnx")
    require("onnxruntime.quantization", "export", "edgemer export onnx")
    import onnx

    out_dir = Path(out_dir).expanduser().absolute()
    model = Path(model).expanduser()
    with atomic_directory(out_dir, overwrite, looks_like_bundle, "bundle", ExportError,
                          "overwrite=True (--overwrite)") as tmp:
        checked = check_onnx_model(model, config.input_shape)
        plan = plan_front_end(checked, config)
        front_end, data = _read_data(plan, config, Path(calibration), eval_dir)
        fp32_path = save_onnx(checked.proto, tmp / FP32_NAME)
        with tempfile.TemporaryDirectory(prefix="edgemer-byo-") as work:
            pre = preprocess_onnx(fp32_path, Path(work) / "preprocessed.onnx")
            rng = np.random.default_rng(config.seed)
            n_analysis = min(config.analysis_samples, len(data.x_eval))
            analysis = data.x_eval[np.sort(rng.choice(len(data.x_eval), n_analysis, replace=False))]
            guard = run_guard(pre, tmp / INT8_NAME, data.x_cal, config.quant, plan.input.name, plan.class_output,
                              data.x_eval, data.labels, config.max_drop_points, config.exclude, config.strict,
                              config.max_guard_steps, analysis)
        cover = coverage(onnx.load(str(tmp / INT8_NAME)))
        tflite = _tflite(config, checked, plan, data.x_cal, tmp, torch_module)
        y_ver = data.labels if data.labels is not None else _fp32_argmax(fp32_path, data.x_eval, plan.class_output)
        write_samples(tmp / SAMPLES_NAME, data.x_eval, y_ver)
        provenance = {"synthetic_data": False, "source": source or f"{model.name} (sha256 {sha256_file(model)})",
                      "dataset": "unknown: a brought model, trained elsewhere (edgemer calibrated and quantised it)",
                      "brought_model": True,
                      "calibration_data": (f"{data.cal_summary['samples']} inputs from {data.cal_summary['files']} "
                                           f"files"),
                      "trained_with": tool_versions(torch_used=torch_module is not None or tflite.written,
                                                    onnx2torch_used=tflite.route.startswith("onnx2torch")),
                      "command": command or f"edgemer export onnx {model.name}",
                      "note": "created_utc is not recorded so that the same inputs give identical bundles"}
        manifest = _manifest(config, checked, plan, front_end, guard, tflite, len(data.x_cal), provenance)
        write_manifest(tmp, manifest)
        with export_stage("verification", "The bundle's models do not run in edgemer's backends; report it."):
            bundle = load_bundle(tmp)
            verification = verify_classifier(bundle, data.x_eval, y_ver, plan.class_output, config.targets)
            ready = runtime_check(bundle, data.x_eval[:1])
        sizes = {"fp32-onnx": (tmp / FP32_NAME).stat().st_size, "int8-onnx": (tmp / INT8_NAME).stat().st_size}
        report = build_report(checked, plan, config, data.cal_summary, data.eval_summary, guard, cover, tflite,
                              verification, sizes)
        report["runtime_check"] = ready
        write_verification(tmp, verification, f"{config.name} (INT8 vs FP32 on {len(y_ver)} inputs)",
                           render=classifier_markdown)
        (tmp / REPORT_JSON).write_text(_json(report), encoding="utf-8")
        (tmp / REPORT_MD).write_text(report_markdown(report), encoding="utf-8")
        manifest["metrics"] = {"int8_metric": report["guard"]["final"], "coverage_share": cover["share"],
                               "targets_passed": verification["passed"]}
        manifest = dict(write_manifest(tmp, manifest).raw)
    return ByoExportResult(bundle_dir=out_dir, verification=verification, manifest=manifest, report=report)


@dataclass
class _Data:
    """Model inputs for calibration ``x_cal`` and evaluation ``x_eval`` (``[n, ...]`` float32), the
    evaluation labels (None: FP32 is the reference) and the report's summaries of both."""

    x_cal: np.ndarray
    x_eval: np.ndarray
    labels: np.ndarray | None
    cal_summary: dict[str, Any]
    eval_summary: dict[str, Any]


def _read_data(plan: FrontEndPlan, config: ByoExportConfig, calibration: Path, eval_dir: Path | None
               ) -> tuple[Any, _Data]:
    """The settled front-end, and the calibration and evaluation data through it."""
    front_end, raw_cal = _settle_front_end(plan, config, calibration)
    x_all = _model_inputs(plan, raw_cal, front_end)
    _check_inputs(x_all, plan.input, "calibration")
    pick = byo_data.evenly(len(x_all), config.calibration_samples)
    cal_summary = byo_data.summarise(x_all[pick], raw_cal.take(pick), calibration)
    if eval_dir is None:
        return front_end, _Data(x_all[pick], x_all, None, cal_summary, {
            "source": "no --eval: the calibration inputs, FP32 outputs as the reference", "samples": int(len(x_all))})
    raw_eval = _load_raw(plan, config, Path(eval_dir), front_end, "evaluation")
    x_eval = _model_inputs(plan, raw_eval, front_end)
    _check_inputs(x_eval, plan.input, "evaluation")
    labels = raw_eval.labels if raw_eval.labelled else None
    eval_summary = {**byo_data.summarise(x_eval, raw_eval, Path(eval_dir)),
                    "source": "labelled evaluation folder" if labels is not None else
                    "evaluation folder without labels for every file (files must sit in folders named like the "
                    "labels); FP32 outputs are the reference"}
    return front_end, _Data(x_all[pick], x_eval, labels, cal_summary, eval_summary)


def _manifest(config: ByoExportConfig, checked: CheckedModel, plan: FrontEndPlan, front_end: Any, guard: Any,
              tflite: TfliteOutcome, n_calibration: int, provenance: dict[str, Any]) -> dict[str, Any]:
    keys = ["fp32-onnx", "int8-onnx"] + (["int8-tflite"] if tflite.written else [])
    quantisation: dict[str, Any] = {"onnx": {**config.quant.to_dict(), "calibration_windows": n_calibration,
                                             "nodes_to_exclude": list(config.exclude) + guard.excluded}}
    if tflite.written:
        quantisation["tflite"] = tflite.quantisation
    return {"name": config.name, "modality": config.modality, "task": f"classification-{len(plan.labels)}class",
            "labels": list(plan.labels), "models": models_section(keys), "inputs": [plan.input.to_dict()],
            "outputs": [o.to_dict() for o in checked.outputs], "front_end": front_end.to_dict(),
            "quantisation": quantisation, "provenance": provenance, "tflite": tflite.to_dict()}


def runtime_check(bundle: Any, x: np.ndarray) -> dict[str, Any]:
    """Build the runtime front-end from the written manifest and let it interpret the INT8 model's
    outputs on one input, as the pipeline will; ``ready`` False says why the pipeline cannot use it."""
    from edgemer.backends import open_session
    from edgemer.frontends import create_front_end

    try:
        fe = create_front_end(bundle.manifest)
        outputs = open_session(bundle, "onnxruntime", "int8", threads=1).run({bundle.manifest.inputs[0].name: x})
        est = fe.interpret(outputs, 0.0, bundle.name)
    except Exception as exc:  # a front-end expecting other outputs (KeyError), a bad manifest section...
        return {"ready": False, "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return {"ready": True, "front_end": type(fe).__name__, "probabilities": sorted(est.probabilities)}


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, allow_nan=False, default=float) + "\n"


def _fp32_argmax(path: Path, x: np.ndarray, output: str) -> np.ndarray:
    from edgemer.export.core.guard import run_outputs

    return run_outputs(path, x, [output])[output].argmax(axis=1).astype(np.int64)


def _tflite(config: ByoExportConfig, checked: CheckedModel, plan: FrontEndPlan, x_cal: np.ndarray, folder: Path,
            torch_module: Any) -> TfliteOutcome:
    if not config.tflite:
        return TfliteOutcome(False, "none", "not asked for (--no-tflite)")
    path = folder / TFLITE_NAME
    cal = x_cal[:min(len(x_cal), 64)]
    if torch_module is not None:
        out = tflite_from_module(torch_module, x_cal[:1], cal, path, [plan.input], checked.outputs,
                                 "torch module -> litert-torch PT2E")
    else:
        out = tflite_from_onnx(checked.proto, x_cal[:1], cal, path, [plan.input], checked.outputs,
                               checked.tflite_risky_ops)
    if not out.written and config.require_tflite:
        raise ModelCheckError(f"--require-tflite: {out.reason}. Replace the ops named, install onnx2torch "
                              f"(pip install --no-deps onnx2torch==1.5.15), or drop --require-tflite to keep the "
                              f"ONNX bundle without TFLite.")
    return out


def export_keras_model(keras_file: Path, calibration: Path, out_dir: Path, config: ByoExportConfig = ByoExportConfig(),
                       eval_dir: Path | None = None, overwrite: bool = False) -> ByoExportResult:
    """:func:`export_torch_model` for a Keras 2 HDF5 image classifier (``.h5``/``.hdf5``), rebuilt in
    PyTorch from its weights with h5py (:mod:`edgemer.export.core.keras`; TensorFlow is not needed).
    The module takes NCHW ``[1, C, H, W]``, returns logits (a final softmax is dropped).

    Raises
    ------
    MissingExtraError: h5py / torch missing (extra ``export``).
    ModelCheckError: not a readable Keras 2 model, or layers the importer does not know.
    """
    torch = require("torch", "export", "Importing a Keras model (edgemer.export.byo.export)")
    from edgemer.errors import DatasetError
    from edgemer.export.core.keras import describe_keras_model, load_keras_model

    keras_file = Path(keras_file).expanduser()
    if not keras_file.is_file():
        raise ModelCheckError(f"{keras_file}: no such Keras model file")
    try:
        info = describe_keras_model(keras_file)
        module = load_keras_model(keras_file, logits=True)
    except (DatasetError, ExportError) as exc:
        raise ModelCheckError(f"{keras_file}: cannot import the Keras model ({exc})") from exc
    h, w, c = info.input_hwc
    return export_torch_model(module, torch.zeros(1, c, h, w), calibration, out_dir, config, eval_dir, overwrite,
                              input_name="image", output_names=["logits"],
                              source=f"Keras file {keras_file.name} (sha256 {sha256_file(keras_file)}), rebuilt in "
                                     f"PyTorch by edgemer.export.core.keras")


def export_torch_model(module: Any, example: Any, calibration: Path, out_dir: Path,
                       config: ByoExportConfig = ByoExportConfig(), eval_dir: Path | None = None,
                       overwrite: bool = False, input_name: str = "input",
                       output_names: Sequence[str] | None = None, source: str | None = None) -> ByoExportResult:
    """:func:`export_onnx_model` for a ``torch.nn.Module``: exported with ``torch.onnx`` (dynamo,
    opset 18, tensors inline) at the shape of ``example`` (``[1, ...]`` float32 tensor), then the
    same path; the TFLite file is converted from the module itself.

    output_names: names of the forward's outputs (default ``output_0``, ...). source: what the module is, for
    the manifest (default: its class name).
    """
    torch = require("torch", "export", "Exporting a torch module (edgemer.export.byo.export)")
    from edgemer.export.core.onnx_export import export_onnx

    module.eval()
    with torch.no_grad():
        out = module(example)
    n_out = len(out) if isinstance(out, (tuple, list)) else 1
    names = list(output_names or [f"output_{i}" for i in range(n_out)])
    with tempfile.TemporaryDirectory(prefix="edgemer-torch-") as tmp:
        path = Path(tmp) / f"{config.name}.onnx"
        export_onnx(module, example, path, input_name=input_name, output_names=names)
        return export_onnx_model(path, calibration, out_dir, config, eval_dir, overwrite,
                                 command=f"edgemer.export.byo.export.export_torch_model({type(module).__name__})",
                                 torch_module=module, source=source or f"torch module {type(module).__name__}")
