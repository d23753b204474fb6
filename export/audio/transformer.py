"""``edgemer export hf``: a local Hugging Face speech checkpoint -> ONNX (optimum) -> INT8 -> bundle.

For Jetson-class devices: a wav2vec2 / HuBERT / WavLM checkpoint with a sequence
classification head (``*ForSequenceClassification``: emotion classes, or
``problem_type: regression`` for arousal/valence/dominance, the outputs of the
"Dawn of the transformer era in speech emotion recognition" models) runs on raw 16 kHz
waveform windows.

Steps (inside a temporary folder, renamed into place when everything succeeded):

1. check the folder: ``config.json`` (a supported ``model_type`` and a sequence
   classification architecture), weights (``model.safetensors`` or ``pytorch_model.bin``)
   and ``preprocessor_config.json`` (sampling rate, waveform normalisation);
2. export FP32 ONNX with optimum (``ORTModelForAudioClassification``, local files only:
   nothing is downloaded);
3. INT8: ``dynamic`` with optimum's ``ORTQuantizer`` (INT8 weights of the MatMul/Gemm
   ops for the chosen CPU family; the convolutional feature encoder stays FP32), or
   ``static`` with edgemer's calibrated QDQ quantiser
   (:func:`edgemer.export.core.quantize.quantize_onnx`) on synthetic speech windows;
4. manifest with a ``waveform`` front-end (:class:`~edgemer.frontends.audio.AudioFrontEndConfig`),
   ``samples.npz`` and verification: INT8-vs-FP32 output correlation on test windows
   through edgemer's own backends (:func:`edgemer.export.audio.verify.verify_outputs`).

Needs ``pip install 'edgemer[export,hf]'`` (optimum-onnx; it pins transformers < 4.58).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgemer._extras import require
from edgemer.bundle import TensorSpec, load_bundle
from edgemer.errors import DatasetError, ExportError
from edgemer.export.core.atomic import atomic_directory
from edgemer.export.audio.config import HfExportConfig
from edgemer.export.audio.data import canonical_label
from edgemer.export.audio.verify import outputs_markdown, verify_outputs
from edgemer.export.core.bundle_writer import SAMPLES_NAME, models_section, write_manifest, write_samples
from edgemer.export.core.bundle_writer import (FINAL_CHECK_HINT, VERIFICATION_HINT, BundleExportResult, export_stage,
                                                looks_like_bundle, toolchain_versions)
from edgemer.export.core.targets import optimum_config_name, quant_options
from edgemer.export.core.verify import check_bundle_runs, write_verification
from edgemer.frontends.audio import DIMENSIONS, AudioFeatures, AudioFrontEndConfig, DimensionsOutput
from edgemer.frontends.vad import VadConfig

MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat", "wav2vec2-conformer",
               "sew", "sew-d")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INPUT_NAME = "input_values"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class Checkpoint:
    """What the checkpoint folder says: model type, architecture, task, labels, audio rate, normalisation."""

    path: Path
    model_type: str
    architecture: str
    regression: bool
    labels: tuple[str, ...]
    sample_rate_hz: int
    normalize: bool


def inspect_checkpoint(model_dir: Path) -> Checkpoint:
    """Check a local checkpoint folder (see the module docstring) and read what the bundle needs.

    Raises
    ------
    DatasetError: the folder or an expected file is missing or unreadable, or the model
        is not a supported speech sequence classifier.
    """
    d = Path(model_dir).expanduser()
    if not d.is_dir():
        raise DatasetError(f"{d}: no such folder; give the folder of a Hugging Face checkpoint (save_pretrained() "
                           f"output or a downloaded model repository)")
    missing = [f for f in ("config.json", "preprocessor_config.json") if not (d / f).is_file()]
    if not any((d / w).is_file() for w in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise DatasetError(f"{d}: not a complete Hugging Face checkpoint, missing {', '.join(missing)}. Save both the "
                           f"model and its feature extractor (model.save_pretrained(DIR); "
                           f"feature_extractor.save_pretrained(DIR)), or download the whole model repository")
    try:
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
        pre = json.loads((d / "preprocessor_config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{d}: config.json or preprocessor_config.json is not readable JSON ({exc})") from exc
    model_type = str(cfg.get("model_type", ""))
    archs = [str(a) for a in cfg.get("architectures") or []]
    arch = next((a for a in archs if a.endswith("ForSequenceClassification")), "")
    if model_type not in MODEL_TYPES or not arch:
        raise DatasetError(f"{d}: model_type {model_type!r} with architectures {archs}; edgemer exports speech "
                           f"sequence classifiers ({', '.join(MODEL_TYPES)} with a *ForSequenceClassification head, "
                           f"e.g. Wav2Vec2ForSequenceClassification)")
    id2label = cfg.get("id2label") or {}
    n = int(cfg.get("num_labels", len(id2label) or 0))
    labels = tuple(str(id2label.get(str(i), id2label.get(i, f"label_{i}"))) for i in range(n))
    rate = int(pre.get("sampling_rate", 16000))
    if rate not in (8000, 16000, 22050, 24000, 44100, 48000):
        raise DatasetError(f"{d}: preprocessor_config.json sampling_rate {rate} Hz is not a usual audio rate")
    return Checkpoint(path=d, model_type=model_type, architecture=arch, regression=cfg.get("problem_type") == "regression",
                      labels=labels, sample_rate_hz=rate, normalize=bool(pre.get("do_normalize", True)))


def speech_windows(n: int, n_samples: int, rate_hz: int, seed: int = 0) -> np.ndarray:
    """``[n, n_samples]`` float32 speech-like test windows: espeak-ng speech where it is installed,
    otherwise :func:`~edgemer.export.audio.synth.voiced_sound`; plus a -60 dBFS noise floor."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, n_samples), np.float32)
    try:
        from edgemer.export.audio.synth import SENTENCES, VOICES, espeak_path, synthesise
        from edgemer.frontends.audio_dsp import resample

        espeak_path()
        for i in range(n):
            x = synthesise(SENTENCES[i % len(SENTENCES)], VOICES[i % len(VOICES)], int(rng.integers(110, 220)),
                           int(rng.integers(20, 80)), int(rng.integers(50, 190)))
            x = resample(x, 16000, rate_hz)[:n_samples]
            start = int(rng.integers(0, n_samples - x.size + 1))
            out[i, start:start + x.size] = x
    except DatasetError:
        from edgemer.export.audio.synth import voiced_sound

        for i in range(n):
            out[i] = voiced_sound(n_samples / rate_hz, rate_hz, seed=seed + i)[:n_samples]
    out += rng.standard_normal(out.shape).astype(np.float32) * 1e-3
    return out


class HfExportResult(BundleExportResult):
    """What an HF export produced: the bundle folder, its verification report and manifest."""

    def summary(self) -> str:
        m = self.manifest
        lines = [f"bundle    {m['name']} -> {self.bundle_dir}", f"model     {m['provenance']['dataset']}",
                 f"input     {m['inputs'][0]['name']} {m['inputs'][0]['shape']} (raw waveform, "
                 f"{m['front_end']['sample_rate_hz']} Hz)"]
        for key, row in self.verification["models"].items():
            lines.append(f"file      {key:10s} {row['bytes'] / 1024:9.1f} KiB")
        for label, row in self.verification["comparisons"].items():
            agree = f", argmax agreement {row['argmax_agreement']:.1%}" if "argmax_agreement" in row else ""
            lines.append(f"parity    {label}: output correlation r {row['r']:.5f}{agree}")
        return "\n".join(lines + self._closing_lines())


def _onnx_export(ckpt: Checkpoint, work: Path) -> Path:
    """FP32 ONNX through optimum, from local files only; returns the ``model.onnx`` path."""
    ort_models = require("optimum.onnxruntime", "hf", "Exporting a Hugging Face checkpoint (edgemer export hf)")
    try:
        model = ort_models.ORTModelForAudioClassification.from_pretrained(str(ckpt.path), export=True,
                                                                          local_files_only=True)
        model.save_pretrained(str(work))
    except Exception as exc:  # optimum/transformers raise many untyped errors
        raise ExportError(f"optimum could not export {ckpt.path} to ONNX ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:300] if str(exc) else ''}). Check that the checkpoint loads "
                          f"with transformers' AutoModelForAudioClassification.from_pretrained(DIR)") from exc
    onnx_file = work / "model.onnx"
    if not onnx_file.is_file():
        raise ExportError(f"optimum wrote no model.onnx for {ckpt.path} (found {sorted(p.name for p in work.iterdir())})")
    return onnx_file


def _quantize_dynamic(fp32: Path, work: Path, config: HfExportConfig) -> Path:
    opt_q = require("optimum.onnxruntime", "hf", "INT8 quantisation with optimum")
    configs = require("optimum.onnxruntime.configuration", "hf", "INT8 quantisation with optimum")
    try:
        quantizer = opt_q.ORTQuantizer.from_pretrained(str(fp32.parent), file_name=fp32.name)
        qc = getattr(configs.AutoQuantizationConfig, optimum_config_name(config.target))(
            is_static=False, per_channel=optimum_config_name(config.target) != "arm64", operators_to_quantize=list(config.operators))
        out_dir = work / "int8"
        quantizer.quantize(save_dir=str(out_dir), quantization_config=qc)
    except Exception as exc:
        raise ExportError(f"optimum dynamic INT8 quantisation failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:300] if str(exc) else ''}); try --quantization static or "
                          f"another --target") from exc
    found = sorted(out_dir.glob("*.onnx"))
    if not found:
        raise ExportError(f"optimum wrote no quantised model into {out_dir}")
    return found[0]


def export_hf(model_dir: Path, out_dir: Path, config: HfExportConfig = HfExportConfig(), overwrite: bool = False,
              command: str | None = None) -> HfExportResult:
    """Export a local speech checkpoint into a verified FP32 + INT8 ONNX bundle (see the module docstring).

    Raises
    ------
    DatasetError: the checkpoint folder is missing files or is not a speech sequence classifier.
    MissingExtraError: optimum missing (extra ``hf``). ExportError: export, quantisation or
    verification failed; nothing is left behind.
    """
    ckpt = inspect_checkpoint(model_dir)
    require("optimum.onnxruntime", "hf", "Exporting a Hugging Face checkpoint (edgemer export hf)")
    out_dir = Path(out_dir).expanduser().absolute()
    if ckpt.regression:
        names = config.dimensions or tuple(canonical_label(lab) for lab in ckpt.labels)
        if len(names) != len(ckpt.labels) or any(n not in DIMENSIONS for n in names):
            raise ExportError(f"{ckpt.path}: a regression checkpoint with {len(ckpt.labels)} outputs "
                              f"{list(ckpt.labels)}; name them in order with --dimensions, e.g. "
                              f"arousal,dominance,valence")
        dims = DimensionsOutput(OUTPUT_NAME, names, (config.scale,) * len(names), (config.offset,) * len(names))
        labels: tuple[str, ...] = ()
        classes = None
    else:
        dims, classes = None, OUTPUT_NAME
        labels = tuple(canonical_label(lab) for lab in ckpt.labels)
    fe = AudioFrontEndConfig(window_s=config.window_s, hop_s=config.hop_s, sample_rate_hz=ckpt.sample_rate_hz,
                             features="waveform", normalize_waveform=ckpt.normalize, vad=VadConfig(),
                             classes=classes, dimensions=dims)
    n = fe.n_samples
    features = AudioFeatures(fe)
    raw = speech_windows(config.verify_windows + config.calibration_windows, n, ckpt.sample_rate_hz)
    x = np.concatenate([features(w) for w in raw])
    x_test, x_calib = x[:config.verify_windows], x[config.verify_windows:]
    with atomic_directory(out_dir, overwrite, looks_like_bundle, "bundle", ExportError,
                          "overwrite=True (--overwrite)") as tmp, \
            tempfile.TemporaryDirectory(prefix="edgemer-hf-") as work_dir:
        work = Path(work_dir)
        fp32 = _onnx_export(ckpt, work)
        for f in work.iterdir():  # external weights (models > 2 GB) keep their file name
            if f.is_file() and f.name.startswith("model.onnx") and f.name != "model.onnx":
                shutil.copy2(f, tmp / f.name)
        shutil.copy2(fp32, tmp / "model_fp32.onnx")
        if config.quantization == "dynamic":
            shutil.copy2(_quantize_dynamic(fp32, work, config), tmp / "model_int8.onnx")
            quant = {"method": "optimum ORTQuantizer, dynamic INT8", "target": config.target,
                     "optimum_config": optimum_config_name(config.target), "operators": list(config.operators)}
        else:
            from edgemer.export.core.quantize import quantize_onnx

            with export_stage("static INT8 quantisation", "Try --quantization dynamic."):
                quantize_onnx(fp32, tmp / "model_int8.onnx", x_calib, quant_options(config.target),
                              input_name=INPUT_NAME)
            quant = {"method": "onnxruntime quantize_static (QDQ), calibrated on synthetic speech windows",
                     "target": config.target, "calibration_windows": int(len(x_calib))}
        import onnxruntime as ort

        n_out = ort.InferenceSession(str(tmp / "model_fp32.onnx"), providers=["CPUExecutionProvider"]) \
            .get_outputs()[0].shape[-1]
        n_out = int(n_out) if isinstance(n_out, int) else len(ckpt.labels)
        write_samples(tmp / SAMPLES_NAME, x_test[:4], np.zeros(min(4, len(x_test)), np.int64))
        manifest: dict[str, Any] = {
            "name": config.name,
            "modality": "audio",
            "task": "speech-emotion-regression" if ckpt.regression else f"speech-emotion-{len(labels)}class",
            "labels": list(labels),
            "models": models_section(["fp32-onnx", "int8-onnx"]),
            "inputs": [TensorSpec(INPUT_NAME, (1, n)).to_dict()],
            "outputs": [TensorSpec(OUTPUT_NAME, (1, n_out)).to_dict()],
            "front_end": fe.to_dict(),
            "quantisation": {"onnx": quant},
            "provenance": {
                "synthetic_data": False,
                "dataset": f"Hugging Face checkpoint '{ckpt.path.name}' ({ckpt.architecture}, {ckpt.model_type})",
                "checkpoint": {"model_type": ckpt.model_type, "architecture": ckpt.architecture,
                               "labels": list(ckpt.labels), "regression": ckpt.regression},
                "note": "Weights as trained by the checkpoint's authors; edgemer exported them with optimum.",
                "trained_with": toolchain_versions(),
                "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": command or f"edgemer export hf --model-dir {ckpt.path} --out {out_dir}",
                "export_config": {k: v for k, v in asdict(config).items()},
            },
        }
        write_manifest(tmp, manifest)
        with export_stage("verification", VERIFICATION_HINT):
            report = verify_outputs(load_bundle(tmp), x_test, classes, config.min_correlation)
        write_verification(tmp, report, f"{config.name} (INT8 vs FP32 on {len(x_test)} test windows)",
                           render=outputs_markdown)
        manifest["metrics"] = {"output_correlation_int8_vs_fp32": {k: r["r"] for k, r in report["comparisons"].items()},
                               "targets_passed": report["passed"]}
        manifest = dict(write_manifest(tmp, manifest).raw)
        with export_stage("final check", FINAL_CHECK_HINT):
            check_bundle_runs(tmp)
    return HfExportResult(bundle_dir=out_dir, verification=report, manifest=manifest)
