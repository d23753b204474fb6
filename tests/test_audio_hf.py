"""The transformer path: a local Hugging Face wav2vec2 checkpoint -> optimum ONNX -> INT8 bundle.

The export tests build a tiny randomly initialised model here and need optimum (extra
``[hf]``); the checkpoint checks run without it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgemer.errors import DatasetError, ExportError, MissingExtraError
from edgemer.export.audio.transformer import inspect_checkpoint


def _tiny_checkpoint(folder: Path, regression: bool = False) -> Path:
    torch = pytest.importorskip("torch", reason="needs the [export] extra")
    transformers = pytest.importorskip("transformers", reason="needs transformers (extra [hf])")
    labels = ["arousal", "dominance", "valence"] if regression else ["angry", "happy", "neutral", "sad"]
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        classifier_proj_size=16, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)}, problem_type="regression" if regression else None)
    torch.manual_seed(0)
    transformers.Wav2Vec2ForSequenceClassification(cfg).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                          return_attention_mask=False).save_pretrained(folder)
    return folder


def test_checkpoint_folder_without_the_expected_files_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        inspect_checkpoint(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(DatasetError, match="missing preprocessor_config.json, model.safetensors or pytorch_model.bin"):
        inspect_checkpoint(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": 16000}))
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(DatasetError, match="ForSequenceClassification"):
        inspect_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "hubert", "architectures": ["HubertForSequenceClassification"], "problem_type": "regression",
        "id2label": {"0": "arousal", "1": "valence"}, "num_labels": 2}))
    ck = inspect_checkpoint(tmp_path)
    assert ck.regression and ck.labels == ("arousal", "valence") and ck.sample_rate_hz == 16000


def _optimum():
    try:
        import optimum.onnxruntime  # noqa: F401
    except ImportError:
        pytest.skip("optimum is not installed (pip install 'edgemer[hf]'); the [hf] extra pins transformers < 4.58")


def test_without_optimum_the_error_names_the_extra(tmp_path, monkeypatch):
    import sys

    folder = _tiny_checkpoint(tmp_path / "tiny")
    monkeypatch.setitem(sys.modules, "optimum.onnxruntime", None)
    from edgemer.export.audio.transformer import export_hf

    with pytest.raises(MissingExtraError, match=r"edgemer\[hf\]"):
        export_hf(folder, tmp_path / "bundle")


def test_tiny_wav2vec2_classifier_exports_to_int8_and_runs_in_the_pipeline(tmp_path):
    _optimum()
    from edgemer.bundle import load_bundle
    from edgemer.export.audio.config import HfExportConfig
    from edgemer.export.audio.transformer import export_hf
    from edgemer.pipeline import Pipeline, PipelineConfig
    from edgemer.sources.wav_replay import WavReplay

    folder = _tiny_checkpoint(tmp_path / "tiny")
    result = export_hf(folder, tmp_path / "bundle", HfExportConfig(name="tiny-hf", verify_windows=8,
                                                                   calibration_windows=4))
    assert result.passed, result.summary()
    row = result.verification["comparisons"]["int8-onnx vs fp32-onnx"]
    assert row["r"] >= 0.99 and "argmax_agreement" in row
    bundle = load_bundle(result.bundle_dir)
    assert bundle.manifest.inputs[0].shape == (1, 48000) and bundle.manifest.front_end["features"] == "waveform"
    assert bundle.manifest.labels == ("angry", "happy", "neutral", "sad")
    with Pipeline([WavReplay("speech-example", speed=50)], [bundle], PipelineConfig(precision="int8")) as pipe:
        estimates = list(pipe)
    assert estimates and all(abs(sum(e.probabilities.values()) - 1) < 1e-4 for e in estimates if e.probabilities)


def test_tiny_wav2vec2_regression_maps_outputs_to_dimensions(tmp_path):
    _optimum()
    from edgemer.bundle import load_bundle
    from edgemer.export.audio.config import HfExportConfig
    from edgemer.export.audio.transformer import export_hf
    from edgemer.frontends.audio import AudioFrontEnd

    folder = _tiny_checkpoint(tmp_path / "tiny", regression=True)
    cfg = HfExportConfig(name="tiny-dim", verify_windows=6, calibration_windows=4, scale=2.0, offset=-1.0)
    bundle = load_bundle(export_hf(folder, tmp_path / "bundle", cfg).bundle_dir)
    fe = AudioFrontEnd.from_manifest(bundle.manifest)
    assert fe.config.dimensions.names == ("arousal", "dominance", "valence") and fe.config.classes is None
    est = fe.interpret({"logits": np.array([[1.0, 0.5, 0.0]], np.float32)}, 1.0, "tiny-dim")
    assert est.arousal == 1.0 and est.valence == -1.0 and est.extras["dominance"] == 0.0 and est.probabilities == {}
    with pytest.raises(ExportError, match="--dimensions"):
        export_hf(folder, tmp_path / "b2", HfExportConfig(dimensions=("happiness", "x", "y")))
