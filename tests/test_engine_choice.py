"""backend="auto" / precision="auto": the fastest verified model file, engine and thread count.

Measurements are injected through the engine-choice cache (as `edgemer bench engines` writes
them), so the decisions here do not depend on this machine's speed.
"""
from __future__ import annotations

import json
import logging
import shutil

import pytest

from edgemer.backends.choice import (
    CACHE_NAME,
    Cell,
    ChoiceCache,
    Measurement,
    bundle_hash,
    choose_engine,
    pick_fastest,
    remember_measurements,
    verified_models,
)
from edgemer.bundle import file_entry, load_bundle
from edgemer.errors import BackendUnavailableError, ConfigError

DEVICE = ("test-device-key", {"machine": "test"})


def cache_in(folder, device=DEVICE, version="0.1.0") -> ChoiceCache:
    return ChoiceCache(folder, device=device, version=version)


def fake_results(bundle, p50: dict[str, float]) -> list[Measurement]:
    """Measurements for the bundle's cells, ``p50`` = {"backend/precision/tN": ms}."""
    out = []
    files = {(m.format, m.precision): m for m in bundle.manifest.models.values()}
    for label, ms in p50.items():
        backend, precision, t = label.split("/")
        mf = files[("onnx" if backend == "onnxruntime" else "tflite", precision)]
        out.append(Measurement(Cell(mf.key, mf.file, backend, precision, int(t[1:])), ms, "bench", "2026-12-02"))
    return out


ALL_PHYSIO = {"onnxruntime/fp32/t1": 0.125, "onnxruntime/int8/t1": 0.075, "litert/fp32/t1": 0.030,
              "litert/int8/t1": 0.016}


def test_shipped_bundles_have_every_file_verified():
    for name in ("physio-demo", "audio-demo", "face-demo"):
        bundle = load_bundle(name)
        eligible, excluded = verified_models(bundle)
        assert set(eligible) == set(bundle.manifest.models), (name, excluded)


def test_fake_result_set_picks_the_fastest_verified_file(tmp_path, demo_bundle):
    cache = cache_in(tmp_path)
    assert remember_measurements(demo_bundle, fake_results(demo_bundle, ALL_PHYSIO), cache=cache)
    choice = choose_engine(demo_bundle, cache=cache, measure=False, litert=True, thread_options=(1,))
    assert (choice.backend, choice.precision, choice.threads, choice.file) == ("litert", "int8", 1,
                                                                               "model_int8.tflite")
    assert choice.rule == "fastest-verified" and choice.source == "bench" and choice.p50_ms == 0.016
    assert choice.measured[0] == ("litert/int8/t1", 0.016) and len(choice.measured) == 4
    assert "fastest verified of 4 cells" in choice.reason and "edgemer bench" in choice.reason
    # Another device's order: onnxruntime FP32 fastest (the fer case on x86).
    fer_like = {**ALL_PHYSIO, "onnxruntime/fp32/t1": 0.010}
    remember_measurements(demo_bundle, fake_results(demo_bundle, fer_like), cache=cache)
    choice = choose_engine(demo_bundle, cache=cache, measure=False, litert=True, thread_options=(1,))
    assert choice.label == "onnxruntime/fp32/t1" and choice.file == "model_fp32.onnx"


def test_more_threads_must_pay_for_themselves(tmp_path, demo_bundle):
    cache = cache_in(tmp_path)
    base = {"litert/int8/t1": 1.00, "onnxruntime/int8/t1": 2.0}
    remember_measurements(demo_bundle, fake_results(demo_bundle, {**base, "litert/int8/t2": 0.97}), cache=cache)
    choice = choose_engine(demo_bundle, cache=cache, measure=False, litert=True, thread_options=(1, 2))
    assert choice.label == "litert/int8/t1"  # 3 % faster is not worth a second thread
    remember_measurements(demo_bundle, fake_results(demo_bundle, {**base, "litert/int8/t2": 0.60}), cache=cache)
    choice = choose_engine(demo_bundle, cache=cache, measure=False, litert=True, thread_options=(1, 2))
    assert choice.label == "litert/int8/t2"
    # a thread count pinned by the caller restricts the candidates
    choice = choose_engine(demo_bundle, threads=1, cache=cache, measure=False, litert=True)
    assert choice.label == "litert/int8/t1"


def test_pick_fastest_orders_by_p50_then_fewer_threads():
    a = Measurement(Cell("k", "f", "onnxruntime", "int8", 1), 1.0)
    b = Measurement(Cell("k", "f", "onnxruntime", "int8", 2), 1.0)
    c = Measurement(Cell("j", "g", "litert", "int8", 1), 0.5)
    assert pick_fastest([b, a]) is a
    assert pick_fastest([a, b, c]) is c
    with pytest.raises(ValueError):
        pick_fastest([])


def _bundle_with_verification(tmp_path, demo_bundle, edit):
    """A copy of physio-demo whose verification.json is changed by ``edit(report)`` (manifest updated)."""
    dst = tmp_path / "bundle"
    shutil.copytree(demo_bundle.path, dst)
    report = json.loads((dst / "verification.json").read_text())
    edit(report)
    (dst / "verification.json").write_text(json.dumps(report))
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["files"]["verification.json"] = file_entry(dst / "verification.json")
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return load_bundle(dst)


def _fail(report, comparison: str, name: str = "argmax agreement") -> None:
    for t in report["targets"]:
        if t["comparison"] == comparison and t["name"] == name:
            t["value"], t["passed"] = 0.5, False
    report["passed"] = False


def test_a_file_failing_parity_is_never_chosen(tmp_path, demo_bundle):
    bundle = _bundle_with_verification(tmp_path, demo_bundle, lambda r: _fail(r, "int8-tflite vs fp32-tflite"))
    eligible, excluded = verified_models(bundle)
    assert "int8-tflite" not in eligible and "argmax agreement 0.5" in excluded["int8-tflite"]
    assert set(eligible) == {"fp32-onnx", "int8-onnx", "fp32-tflite"}
    cache = cache_in(tmp_path / "cache")
    remember_measurements(bundle, fake_results(bundle, ALL_PHYSIO), cache=cache)  # int8-tflite fastest
    choice = choose_engine(bundle, cache=cache, measure=False, litert=True, thread_options=(1,))
    assert choice.label == "litert/fp32/t1" and "int8-tflite" in choice.excluded
    assert all(label != "litert/int8/t1" for label, _ in choice.measured)
    # pinning it still runs it, with a note that it is not verified
    forced = choose_engine(bundle, backend="litert", precision="int8", cache=cache, measure=False)
    assert forced.rule == "forced" and forced.file == "model_int8.tflite" and "not verified" in forced.reason


def test_a_failing_reference_takes_its_candidates_with_it(tmp_path, demo_bundle):
    def edit(report):  # fp32-tflite vs fp32-onnx gets a failing target row; int8-tflite is compared to it
        report["targets"].append({"name": "argmax agreement", "comparison": "fp32-tflite vs fp32-onnx",
                                  "value": 0.5, "op": ">=", "threshold": 0.99, "passed": False})

    eligible, excluded = verified_models(_bundle_with_verification(tmp_path, demo_bundle, edit))
    assert set(eligible) == {"fp32-onnx", "int8-onnx"}
    assert "fp32-tflite" in excluded["int8-tflite"]


def test_size_targets_do_not_exclude_and_untargeted_comparisons_use_the_thresholds(tmp_path, demo_bundle):
    def edit(report):
        _fail(report, "int8-onnx vs fp32-onnx", "INT8/FP32 size ratio")        # a size target, not parity
        report["comparisons"]["fp32-tflite vs fp32-onnx"]["argmax_agreement"] = 0.9  # no targets: thresholds

    eligible, excluded = verified_models(_bundle_with_verification(tmp_path, demo_bundle, edit))
    assert "int8-onnx" in eligible
    assert "fp32-tflite" not in eligible and "threshold" in excluded["fp32-tflite"]


def test_without_a_report_only_fp32_files_run(tmp_path, demo_bundle):
    dst = tmp_path / "bundle"
    shutil.copytree(demo_bundle.path, dst)
    (dst / "verification.json").unlink()
    manifest = json.loads((dst / "manifest.json").read_text())
    del manifest["files"]["verification.json"]
    (dst / "manifest.json").write_text(json.dumps(manifest))
    eligible, excluded = verified_models(load_bundle(dst))
    assert set(eligible) == {"fp32-onnx", "fp32-tflite"} and "no verification report" in excluded["int8-onnx"]


def test_litert_files_are_skipped_when_litert_is_missing(tmp_path, demo_bundle):
    cache = cache_in(tmp_path)
    remember_measurements(demo_bundle, fake_results(demo_bundle, ALL_PHYSIO), cache=cache)
    choice = choose_engine(demo_bundle, cache=cache, measure=False, litert=False, thread_options=(1,))
    assert choice.label == "onnxruntime/int8/t1"
    assert "edgemer[tflite]" in choice.excluded["int8-tflite"]
    with pytest.raises(BackendUnavailableError, match="no verified model file"):
        choose_engine(demo_bundle, backend="litert", cache=cache, measure=False, litert=False)


def test_forced_choices_are_respected_without_measuring(tmp_path, demo_bundle):
    cache = cache_in(tmp_path)
    remember_measurements(demo_bundle, fake_results(demo_bundle, ALL_PHYSIO), cache=cache)
    choice = choose_engine(demo_bundle, backend="onnxruntime", precision="fp32", cache=cache)
    assert (choice.rule, choice.file, choice.threads, choice.p50_ms) == ("forced", "model_fp32.onnx", 1, None)
    assert "pinned" in choice.reason
    # one of the two pinned: only its cells compete
    choice = choose_engine(demo_bundle, backend="onnxruntime", cache=cache, measure=False, thread_options=(1,))
    assert choice.label == "onnxruntime/int8/t1" and "backend=onnxruntime" in choice.reason
    choice = choose_engine(demo_bundle, precision="fp32", cache=cache, measure=False, litert=True,
                           thread_options=(1,))
    assert choice.label == "litert/fp32/t1"
    with pytest.raises(ConfigError):
        choose_engine(demo_bundle, backend="tensorflow", cache=cache)


def test_corrupt_cache_is_ignored_with_a_warning(tmp_path, demo_bundle, caplog):
    (tmp_path / CACHE_NAME).write_text("{not json")
    cache = cache_in(tmp_path)
    with caplog.at_level(logging.WARNING):
        choice = choose_engine(demo_bundle, cache=cache, measure=False, litert=True, thread_options=(1,))
    assert choice.rule == "default"
    assert any("corrupt" in w for w in cache.warnings) and "corrupt" in caplog.text
    # the next write replaces the corrupt file with a valid one
    assert remember_measurements(demo_bundle, fake_results(demo_bundle, ALL_PHYSIO), cache=cache)
    assert json.loads((tmp_path / CACHE_NAME).read_text())["device_key"] == DEVICE[0]


@pytest.mark.parametrize("who", ["device", "version", "schema"])
def test_foreign_or_stale_cache_is_ignored_with_a_warning(tmp_path, demo_bundle, who):
    writer = cache_in(tmp_path, device=("other-device", {}) if who == "device" else DEVICE,
                      version="0.0.1" if who == "version" else "0.1.0")
    remember_measurements(demo_bundle, fake_results(demo_bundle, ALL_PHYSIO), cache=writer)
    if who == "schema":
        data = json.loads((tmp_path / CACHE_NAME).read_text())
        data["schema"] = "edgemer.engine-choice/99"
        (tmp_path / CACHE_NAME).write_text(json.dumps(data))
    reader = cache_in(tmp_path)
    assert reader.lookup(bundle_hash(demo_bundle)) == []
    assert len(reader.warnings) == 1 and "ignoring it" in reader.warnings[0]
    choice = choose_engine(demo_bundle, cache=reader, measure=False, litert=True, thread_options=(1,))
    assert choice.rule == "default"


def test_malformed_cells_are_skipped(tmp_path, demo_bundle):
    cache = cache_in(tmp_path)
    remember_measurements(demo_bundle, fake_results(demo_bundle, ALL_PHYSIO), cache=cache)
    data = json.loads((tmp_path / CACHE_NAME).read_text())
    entry = data["bundles"][bundle_hash(demo_bundle)]
    entry["cells"][0]["threads"] = "many"
    (tmp_path / CACHE_NAME).write_text(json.dumps(data))
    assert len(cache.lookup(bundle_hash(demo_bundle))) == 3 and "malformed" in cache.warnings[-1]


def test_unwritable_cache_warns_and_the_measurement_is_still_used(tmp_path, demo_bundle):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = cache_in(blocker)
    lines = []
    choice = choose_engine(demo_bundle, backend="onnxruntime", precision="fp32", threads=None, cache=cache)
    assert choice.rule == "forced"  # pinned: nothing measured, nothing written
    choice = choose_engine(demo_bundle, backend="onnxruntime", cache=cache, thread_options=(1,),
                           progress=lines.append)
    assert choice.rule == "fastest-verified" and choice.source == "first-use" and choice.p50_ms > 0
    assert lines and "first use" in lines[0]
    assert any("cannot be written" in w for w in cache.warnings)


def test_first_use_measurement_is_cached(tmp_path, demo_bundle):
    cache = cache_in(tmp_path)
    first = choose_engine(demo_bundle, backend="onnxruntime", cache=cache, thread_options=(1,), progress=None)
    assert first.source == "first-use" and len(first.measured) == 2
    again = choose_engine(demo_bundle, backend="onnxruntime", cache=cache_in(tmp_path), thread_options=(1,),
                          progress=lambda line: pytest.fail(f"measured again: {line}"))
    assert again.source == "cache" and again.label == first.label and again.measured == first.measured


def test_bundle_hash_follows_the_model_files(tmp_path, demo_bundle):
    from edgemer.frontends.face import configure_face_bundle

    face = load_bundle("face-demo")
    assert bundle_hash(configure_face_bundle(face, analysis_fps=1)) == bundle_hash(face)
    assert bundle_hash(face) != bundle_hash(demo_bundle)


def test_pipeline_runs_and_records_the_choice(tmp_path, demo_bundle):
    from edgemer.pipeline import BundleSpec, Pipeline, PipelineConfig
    from edgemer.sources import SimulatedWearable

    cache = ChoiceCache(tmp_path)  # this device's real key, as the pipeline computes it
    remember_measurements(demo_bundle, fake_results(demo_bundle, {
        "onnxruntime/fp32/t1": 0.01, "onnxruntime/int8/t1": 0.5, "litert/fp32/t1": 0.5, "litert/int8/t1": 0.5,
        "onnxruntime/fp32/t2": 0.5, "onnxruntime/int8/t2": 0.5, "litert/fp32/t2": 0.5, "litert/int8/t2": 0.5,
        "onnxruntime/fp32/t4": 0.5, "onnxruntime/int8/t4": 0.5, "litert/fp32/t4": 0.5, "litert/int8/t4": 0.5}),
        cache=cache)
    config = PipelineConfig(cache_dir=tmp_path)
    with Pipeline([SimulatedWearable(speed=200, duration_s=70)], ["physio-demo"], config=config) as pipe:
        estimates = list(pipe)
    assert estimates and all(e.engines == {"physio-demo": "onnxruntime/fp32/t1"} for e in estimates)
    assert estimates[-1].to_dict()["engines"] == {"physio-demo": "onnxruntime/fp32/t1"}
    stats = pipe.stats()["engines"]["physio-demo"]
    assert stats["rule"] == "fastest-verified" and stats["file"] == "model_fp32.onnx" and stats["source"] == "bench"
    assert "onnxruntime" in pipe.runners[0].session.description
    # forced per bundle
    spec = BundleSpec("physio-demo", backend="litert", precision="int8")
    with Pipeline([SimulatedWearable(speed=200, duration_s=70)], [spec], config=config) as pipe:
        estimates = list(pipe)
    assert estimates[-1].engines == {"physio-demo": "litert/int8/t1"}
    assert pipe.stats()["engines"]["physio-demo"]["rule"] == "forced"
    assert "LiteRT" in pipe.runners[0].session.description


def test_configs_accept_auto_and_reject_unknown_values():
    from edgemer.pipeline import BundleSpec, PipelineConfig

    assert (PipelineConfig().backend, PipelineConfig().precision, PipelineConfig().threads) == ("auto", "auto", None)
    with pytest.raises(ConfigError, match="backend"):
        PipelineConfig(backend="tflite")
    with pytest.raises(ConfigError, match="precision"):
        BundleSpec("physio-demo", precision="int4")


def test_task_api_chooses_too_and_results_name_the_engine():
    import numpy as np

    from edgemer.frontends.face import FaceExpressionRecognizer, FaceExpressionRecognizerOptions

    blank = np.zeros((240, 320, 3), np.uint8)
    forced = FaceExpressionRecognizerOptions(bundle="face-demo", backend="onnxruntime", precision="fp32")
    with FaceExpressionRecognizer.create_from_options(forced) as rec:
        assert rec.choice.rule == "forced" and rec.recognize(blank).engine == "onnxruntime/fp32/t1"
    with FaceExpressionRecognizer.create_from_options(FaceExpressionRecognizerOptions(bundle="face-demo")) as rec:
        assert rec.choice.rule == "fastest-verified"  # measured into the tests' temporary cache
        assert rec.recognize(blank).engine == rec.choice.label
    with pytest.raises(ConfigError):
        FaceExpressionRecognizerOptions(precision="int4")


def test_open_session_accepts_auto(tmp_path, demo_bundle, monkeypatch):
    from edgemer.backends import open_session

    monkeypatch.setenv("EDGEMER_CACHE_DIR", str(tmp_path))  # this device's cache, as a bench would leave it
    remember_measurements(demo_bundle, fake_results(demo_bundle, {"onnxruntime/fp32/t1": 0.01,
                                                                  "onnxruntime/int8/t1": 0.5}))
    session = open_session(demo_bundle, "onnxruntime", "auto")  # precision chosen among the ONNX files
    pinned = open_session(demo_bundle, "onnxruntime", "int8")
    assert session.choice.label == "onnxruntime/fp32/t1" and session.choice.rule == "fastest-verified"
    assert "threads=1" in session.description and str(session.path).endswith("model_fp32.onnx")
    assert pinned.choice is None and str(pinned.path).endswith("model_int8.onnx")
    with pytest.raises(ConfigError, match="precision must be one of"):
        open_session(demo_bundle, "auto", "int4")


def test_a_malformed_preset_preference_is_ignored(tmp_path, demo_bundle, caplog):
    from edgemer.backends.choice import EnginePreference

    def manifest_with(prefer):
        class M:
            raw = {"quantisation": {"onnx": {"target": "pi4", "prefer": prefer}}}
        return M()

    assert EnginePreference.from_manifest(demo_bundle.manifest) is None  # shipped bundles carry no preset
    pref, name = EnginePreference.from_manifest(manifest_with({"backend": "litert", "precision": "int8",
                                                               "threads": 4, "machines": ["aarch64"]}))
    assert name == "pi4" and pref.label == "litert/int8/t4" and pref.applies_here("aarch64")
    assert not pref.applies_here("x86_64")
    with caplog.at_level(logging.WARNING):
        assert EnginePreference.from_manifest(manifest_with({"backend": "tensorflow", "precision": "int8"})) is None
    assert "quantisation.onnx.prefer is malformed" in caplog.text


def test_preferred_cell_keeps_to_the_cores_and_the_candidates(demo_bundle):
    from edgemer.backends.choice import EnginePreference, candidate_cells, preferred_cell, verified_models

    eligible, _ = verified_models(demo_bundle)
    cells, _ = candidate_cells(eligible, litert=True, thread_options=(1, 2, 4))
    pref = EnginePreference("litert", "int8", 4)
    assert preferred_cell(cells, pref, cores=2).label == "litert/int8/t2"
    assert preferred_cell(cells, pref, cores=8).label == "litert/int8/t4"
    no_litert, _ = candidate_cells(eligible, litert=False, thread_options=(1,))
    assert preferred_cell(no_litert, pref) is None


def test_device_key_follows_the_runtime_builds_without_importing_them():
    from edgemer.backends.choice import device_key
    from edgemer.benchmarks.fingerprint import device_fingerprint

    light = device_fingerprint(providers=False)
    assert "onnxruntime_providers" not in light and "onnxruntime" in light["runtime_distributions"]
    assert device_key(light) == device_key(device_fingerprint())  # the provider list is not part of the key
    # another build of the same version (its compiled-in providers differ), or another version: another key
    gpu = {**light, "runtime_distributions": {**light["runtime_distributions"], "onnxruntime-gpu": "1.32.0"}}
    gpu["runtime_distributions"].pop("onnxruntime")
    newer = {**light, "runtime_distributions": {**light["runtime_distributions"], "onnxruntime": "0.0.1"}}
    assert len({device_key(light)[0], device_key(gpu)[0], device_key(newer)[0]}) == 3


LITERT_ONLY_RUN = """
import json, sys
from edgemer.backends.choice import Cell, Measurement, remember_measurements
from edgemer.bundle import load_bundle
from edgemer.config import load_pipeline_file

for name in ("physio-demo", "audio-demo", "face-demo"):  # every file measured: no first-use measurement
    bundle = load_bundle(name)
    remember_measurements(bundle, [
        Measurement(Cell(mf.key, mf.file, "litert" if mf.format == "tflite" else "onnxruntime", mf.precision, 1),
                    0.01 if (mf.format, mf.precision) == ("tflite", "int8") else 1.0, "bench", "2026-12-03")
        for mf in bundle.manifest.models.values()])
pipe = load_pipeline_file(sys.argv[1], duration_s=1).build()
print(json.dumps({"engines": {r.bundle.name: r.session.description for r in pipe.runners},
                  "sources": sorted({s["source"] for s in pipe.stats()["engines"].values()}),
                  "onnxruntime": "onnxruntime" in sys.modules}))
"""


def test_a_litert_only_pipeline_never_imports_onnxruntime(tmp_path):
    """examples/full.toml with every bundle on LiteRT by the automatic choice (the cached measurements
    say so): onnxruntime stays unimported (about 20 MiB of peak RSS), the cache key included."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    full = Path(__file__).resolve().parents[1] / "examples" / "full.toml"
    env = {**os.environ, "EDGEMER_CACHE_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", LITERT_ONLY_RUN, str(full)], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(out["engines"]) == {"physio-demo", "audio-demo", "face-demo"}
    assert all(d.startswith("LiteRT") for d in out["engines"].values()), out["engines"]
    assert out["sources"] == ["bench"]  # chosen from the cache, read under this device's key
    assert out["onnxruntime"] is False
