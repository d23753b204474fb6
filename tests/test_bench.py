"""Benchmarks: fingerprint, per-cell bundle bench (fresh process per cell), ratios, schema, report, CLI.

Tests check structure and sanity only; they never assert wall-clock speed. They run on a
tiny physio-shaped bundle built here (two dense layers, FP32 ONNX + ORT static INT8 ONNX,
no TFLite), so they do not depend on the shipped bundle being present.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from edgemer.benchmarks import SCHEMA
from edgemer.benchmarks.bundle_bench import BenchSettings, bench_bundle, format_table
from edgemer.benchmarks.fingerprint import device_fingerprint, make_device_id
from edgemer.benchmarks.result import check_result
from edgemer.benchmarks.stats import median_ci95, summarize_ms

from edgemer.bundle import MANIFEST_NAME, SCHEMA_VERSION, file_entry, list_shipped_bundles, load_bundle
from edgemer.errors import ConfigError, IntegrityError

FAST = dict(min_iterations=5, min_time_s=0.0, max_time_s=0.05, warmup_s=0.0, progress=False)
N_SAMPLES, N_FORECAST = 240, 40  # 60 s window and 10 s forecast at 4 Hz


# -- a tiny physio-shaped bundle ------------------------------------------------------------------

def _tiny_onnx(path: Path, hidden: int = 32, seed: int = 0) -> None:
    """signals [1, 4, 240] -> dense(hidden) + ReLU -> class_logits [1, 3], eda, drive (sigmoid), eda_tonic."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    n_in, n_out = 4 * N_SAMPLES, N_SAMPLES + N_FORECAST

    def dense(name: str, x: str, n_i: int, n_o: int, y: str) -> list:
        w = numpy_helper.from_array((rng.standard_normal((n_i, n_o)) / np.sqrt(n_i)).astype(np.float32), f"{name}_w")
        b = numpy_helper.from_array((0.1 * rng.standard_normal(n_o)).astype(np.float32), f"{name}_b")
        inits.extend([w, b])
        return [helper.make_node("Gemm", [x, f"{name}_w", f"{name}_b"], [y], name=name)]

    inits: list = []
    nodes = [helper.make_node("Flatten", ["signals"], ["flat"], axis=1)]
    nodes += dense("fc1", "flat", n_in, hidden, "h0")
    nodes += [helper.make_node("Relu", ["h0"], ["h"])]
    nodes += dense("cls", "h", hidden, 3, "class_logits")
    nodes += dense("eda", "h", hidden, n_out, "eda")
    nodes += dense("drv", "h", hidden, n_out, "drive_pre") + [helper.make_node("Sigmoid", ["drive_pre"], ["drive"])]
    nodes += dense("ton", "h", hidden, 1, "eda_tonic")
    outs = [helper.make_tensor_value_info("class_logits", TensorProto.FLOAT, [1, 3]),
            helper.make_tensor_value_info("eda", TensorProto.FLOAT, [1, n_out]),
            helper.make_tensor_value_info("drive", TensorProto.FLOAT, [1, n_out]),
            helper.make_tensor_value_info("eda_tonic", TensorProto.FLOAT, [1, 1])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("signals", TensorProto.FLOAT,
                                                                            [1, 4, N_SAMPLES])], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _quantize(fp32: Path, int8: Path, windows: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(windows)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {"signals": x[None]}

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


def build_tiny_bundle(folder: Path, with_samples: bool = True) -> Path:
    """Write a loadable physio-shaped bundle (ONNX FP32 + INT8 only) into ``folder``."""
    from edgemer.frontends.physio import WristFrontEndConfig

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    windows = rng.standard_normal((24, 4, N_SAMPLES)).astype(np.float32)
    _tiny_onnx(folder / "model_fp32.onnx")
    _quantize(folder / "model_fp32.onnx", folder / "model_int8.onnx", windows[:16])
    if with_samples:
        np.savez(folder / "samples.npz", signals=windows[16:], labels=np.zeros(8, np.int64))
    n_out = N_SAMPLES + N_FORECAST
    manifest = {
        "schema_version": SCHEMA_VERSION, "name": "tiny-bench", "modality": "physio", "task": "affect-3class",
        "labels": ["baseline", "stress", "amusement"],
        "models": {"fp32-onnx": {"file": "model_fp32.onnx", "format": "onnx", "precision": "fp32"},
                   "int8-onnx": {"file": "model_int8.onnx", "format": "onnx", "precision": "int8"}},
        "inputs": [{"name": "signals", "shape": [1, 4, N_SAMPLES], "dtype": "float32"}],
        "outputs": [{"name": "class_logits", "shape": [1, 3]}, {"name": "eda", "shape": [1, n_out]},
                    {"name": "drive", "shape": [1, n_out]}, {"name": "eda_tonic", "shape": [1, 1]}],
        "front_end": WristFrontEndConfig(window_s=60.0, hop_s=5.0, forecast_s=10.0).to_dict(),
        "provenance": {"synthetic_data": True, "note": "random weights, benchmark tests only"},
        "files": {f.name: file_entry(f) for f in sorted(folder.iterdir()) if f.name != MANIFEST_NAME},
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return folder


def rewrite_hashes(folder: Path) -> None:
    """Refresh the manifest's sha256/size entries after a test changed a file on purpose."""
    m = json.loads((folder / MANIFEST_NAME).read_text())
    m["files"] = {name: file_entry(folder / name) for name in m["files"]}
    (folder / MANIFEST_NAME).write_text(json.dumps(m))


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("bench") / "tiny-bench")


@pytest.fixture(scope="session")
def tiny_result(tiny_bundle_dir) -> dict:
    return bench_bundle(tiny_bundle_dir, backends=("onnxruntime", "litert"), precisions=("fp32", "int8"),
                        threads=(1, 2), **FAST)


# -- fingerprint ----------------------------------------------------------------------------------

def test_fingerprint_keys_and_types():
    fp = device_fingerprint()
    for key in ("device_id", "machine", "cpu_model", "cpu_flags", "logical_cores", "usable_cores", "memory_gib",
                "os", "kernel", "python", "versions", "runtime_distributions", "onnxruntime_providers", "board",
                "cpu_governor", "thermal_c"):
        assert key in fp, key
    assert isinstance(fp["device_id"], str) and fp["device_id"].endswith(f"-{fp['logical_cores']}c")
    assert all(ch.isalnum() or ch in "-_" for ch in fp["device_id"])
    assert isinstance(fp["logical_cores"], int) and fp["logical_cores"] >= 1
    assert fp["memory_gib"] is None or fp["memory_gib"] > 0
    assert all(isinstance(v, bool) for v in fp["cpu_flags"].values())
    assert fp["versions"]["numpy"] == np.__version__
    assert "CPUExecutionProvider" in fp["onnxruntime_providers"]
    assert fp["runtime_distributions"].get("onnxruntime") == fp["versions"]["onnxruntime"]
    assert set(fp["board"]) == {"model", "raspberry_pi", "jetson"}
    json.dumps(fp)  # plain JSON types only


def test_device_id_for_a_raspberry_pi():
    board = {"model": "Raspberry Pi 5 Model B Rev 1.0", "raspberry_pi": "Raspberry Pi 5 Model B Rev 1.0"}
    assert make_device_id("aarch64", board, "Cortex-A76", 4) == "aarch64-raspberry-pi-5-model-b-4c"


# -- statistics -----------------------------------------------------------------------------------

def test_median_ci_brackets_the_median():
    x = np.random.default_rng(0).lognormal(0.0, 0.3, 500)
    lo, hi = median_ci95(x)
    s = summarize_ms(x)
    assert lo <= s["p50"] <= hi
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert median_ci95([1.0, 2.0, 3.0]) == (1.0, 3.0)  # too few runs: the whole range


# -- bundle bench ---------------------------------------------------------------------------------

def test_every_cell_is_reported_with_schema_fields(tiny_result):
    r = tiny_result
    assert r["schema"] == SCHEMA and r["kind"] == "bundles" and check_result(r) == []
    assert list(r)[:6] == ["schema", "kind", "created_utc", "device", "settings", "targets"]
    assert {"bundle", "cells", "ratios"} <= set(r)
    assert r["bundle"]["name"] == "tiny-bench" and r["bundle"]["synthetic_data"] is True
    keys = {(c["backend"], c["precision"], c["threads"]) for c in r["cells"]}
    assert keys == {(b, p, t) for b in ("onnxruntime", "litert") for p in ("fp32", "int8") for t in (1, 2)}
    for c in r["cells"]:
        if c["backend"] == "onnxruntime":
            assert c["status"] == "ok", c["reason"]
            lat = c["latency_ms"]
            assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
            lo, hi = c["p50_ci95_ms"]
            assert lo <= lat["p50"] <= hi
            assert c["iterations"] >= 2 and c["throughput_per_s"] > 0
            assert c["load_s"] > 0 and c["first_inference_ms"] > 0
            assert c["rss_peak_mib"] >= c["rss_after_import_mib"] > 10
            assert c["model_bytes"] == (Path(r["bundle"]["path"]) / c["model_file"]).stat().st_size
            assert c["inputs"] == "samples.npz" and c["n_inputs"] == 8
            assert c["parity_vs_reference"]["reference"] == "onnxruntime/fp32/threads=1"
        else:  # the tiny bundle ships no TFLite file
            assert c["status"] == "skipped" and "tflite" in c["reason"]


def test_ratios_come_from_the_cells(tiny_result):
    cells = {(c["backend"], c["precision"], c["threads"]): c for c in tiny_result["cells"]}
    ratios = {(r["backend"], r["threads"]): r for r in tiny_result["ratios"]}
    assert set(ratios) == {("onnxruntime", 1), ("onnxruntime", 2), ("litert", 1), ("litert", 2)}
    for t in (1, 2):
        r, fp32, int8 = ratios[("onnxruntime", t)], cells[("onnxruntime", "fp32", t)], cells[("onnxruntime", "int8", t)]
        assert r["latency_p50_ratio"] == pytest.approx(int8["latency_ms"]["p50"] / fp32["latency_ms"]["p50"])
        assert r["size_ratio"] == pytest.approx(int8["model_bytes"] / fp32["model_bytes"])
        assert r["size_ratio"] < 0.5  # weights dominate the tiny model
        p = r["parity"]
        assert p["n_inputs"] == 8 and 0.0 <= p["argmax_agreement"] <= 1.0
        assert set(p["max_abs_error"]) == {"class_logits", "eda", "drive", "eda_tonic"}
        assert 0 < p["max_abs_error"]["drive"] <= 1.0  # sigmoid outputs differ by at most 1
    assert ratios[("litert", 1)]["latency_p50_ratio"] is None and "skipped" in ratios[("litert", 1)]["note"]
    fp32_self = cells[("onnxruntime", "fp32", 1)]["parity_vs_reference"]
    assert fp32_self["argmax_agreement"] == 1.0 and fp32_self["first_output_max_abs_error"] == 0.0
    targets = {t["id"]: t for t in tiny_result["targets"]}
    assert targets["int8_onnx_size"]["met"] is True
    assert targets["int8_onnx_latency_1_thread"]["value"] == ratios[("onnxruntime", 1)]["latency_p50_ratio"]


def test_result_round_trips_through_json(tiny_result, tmp_path):
    f = tmp_path / "r.json"
    f.write_text(json.dumps(tiny_result, allow_nan=False))
    assert json.loads(f.read_text()) == tiny_result


def test_table_lists_cells_ratios_and_targets(tiny_result):
    text = format_table(tiny_result)
    assert "model_int8.onnx" in text and "SKIPPED" in text
    assert "onnxruntime threads=1: INT8/FP32 latency" in text and "argmax agreement" in text
    assert "target: INT8 ONNX file size <= 0.35x FP32" in text and "MET" in text


def _shadow_onnxruntime(tmp_path: Path, monkeypatch, code: str) -> None:
    """Make ``import onnxruntime`` run ``code`` in the worker processes (they inherit PYTHONPATH)."""
    shim = tmp_path / "shim"
    (shim / "onnxruntime").mkdir(parents=True)
    (shim / "onnxruntime" / "__init__.py").write_text(code)
    monkeypatch.setenv("PYTHONPATH", str(shim))


def test_missing_runtime_becomes_a_skipped_cell(tiny_bundle_dir, tmp_path, monkeypatch):
    _shadow_onnxruntime(tmp_path, monkeypatch, "raise ImportError('onnxruntime hidden by the test')\n")
    r = bench_bundle(tiny_bundle_dir, backends=("onnxruntime",), precisions=("int8",), threads=(1,), **FAST)
    (cell,) = r["cells"]
    assert cell["status"] == "skipped"
    assert "onnxruntime" in cell["reason"] and cell["error_type"] == "BackendUnavailableError"
    assert "SKIPPED" in format_table(r)


def test_a_crashing_runtime_fails_only_its_cell(tiny_bundle_dir, tmp_path, monkeypatch):
    _shadow_onnxruntime(tmp_path, monkeypatch, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    r = bench_bundle(tiny_bundle_dir, backends=("onnxruntime",), precisions=("int8",), threads=(1,), **FAST)
    (cell,) = r["cells"]
    assert cell["status"] == "failed" and cell["error_type"] == "WorkerCrash"
    assert "signal 11" in cell["reason"]


def test_a_hanging_worker_is_stopped(tiny_bundle_dir, tmp_path, monkeypatch):
    _shadow_onnxruntime(tmp_path, monkeypatch, "import time\ntime.sleep(60)\n")
    r = bench_bundle(tiny_bundle_dir, backends=("onnxruntime",), precisions=("int8",), threads=(1,),
                     timeout_s=1.0, **FAST)
    (cell,) = r["cells"]
    assert cell["status"] == "failed" and cell["error_type"] == "Timeout" and "stopped" in cell["reason"]


def test_corrupt_model_gives_a_failed_cell_not_a_crash(tiny_bundle_dir, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_bundle_dir, folder)
    (folder / "model_int8.onnx").write_bytes(b"this is not an onnx model" * 10)
    rewrite_hashes(folder)  # the hash matches, so only the runtime can notice
    r = bench_bundle(folder, backends=("onnxruntime",), precisions=("fp32", "int8"), threads=(1,), **FAST)
    cells = {c["precision"]: c for c in r["cells"]}
    assert cells["fp32"]["status"] == "ok"
    assert cells["int8"]["status"] == "failed" and cells["int8"]["error_type"] == "ModelLoadError"
    assert "model_int8.onnx" in cells["int8"]["reason"] and "re-export" in cells["int8"]["reason"]
    (ratio,) = r["ratios"]
    assert ratio["latency_p50_ratio"] is None and "failed" in ratio["note"]
    assert "FAILED" in format_table(r)


def test_bundle_errors_propagate(tiny_bundle_dir, tmp_path):
    folder = tmp_path / "tampered"
    shutil.copytree(tiny_bundle_dir, folder)
    (folder / "model_fp32.onnx").write_bytes(b"x")
    with pytest.raises(IntegrityError, match="model_fp32.onnx"):
        bench_bundle(folder, backends=("onnxruntime",), **FAST)


def test_random_inputs_when_the_bundle_has_no_samples(tmp_path):
    folder = build_tiny_bundle(tmp_path / "nosamples", with_samples=False)
    r = bench_bundle(folder, backends=("onnxruntime",), precisions=("int8",), threads=(1,), **FAST)
    (cell,) = r["cells"]
    assert cell["status"] == "ok" and cell["inputs"] == "random-normal"


@pytest.mark.parametrize("field,kwargs", [
    ("backends", {"backends": ("tensorflow",)}), ("precisions", {"precisions": ("fp16",)}),
    ("threads", {"threads": (0,)}), ("max_time_s", {"max_time_s": 0.0}),
    ("target_rel_ci", {"target_rel_ci": 2.0}), ("min_iterations", {"min_iterations": 1})])
def test_settings_name_the_bad_field(field, kwargs):
    with pytest.raises(ConfigError, match=f"BenchSettings.{field}"):
        BenchSettings(**kwargs)


# -- shipped bundle (when present) ----------------------------------------------------------------

@pytest.mark.skipif("physio-demo" not in list_shipped_bundles(), reason="physio-demo bundle not built yet")
def test_shipped_bundle_all_four_runtimes():
    r = bench_bundle("physio-demo", backends=("onnxruntime", "litert"), precisions=("fp32", "int8"),
                     threads=(1,), **FAST)
    demo = load_bundle("physio-demo")
    for c in r["cells"]:
        has_file = any(m.format == c["format"] and m.precision == c["precision"] for m in demo.manifest.models.values())
        assert c["status"] == ("ok" if has_file else "skipped"), c["reason"]
    for ratio in r["ratios"]:
        if ratio["parity"]:
            assert ratio["parity"]["argmax_agreement"] >= 0.9


# -- pipeline bench, CLI, report ------------------------------------------------------------------

def test_pipeline_bench_reports_overhead_and_goal(tiny_bundle_dir):
    from edgemer.benchmarks.pipeline_bench import OVERHEAD_GOAL, bench_pipeline, format_pipeline

    # speed inf: the lockstep clock (every window processed, nothing dropped), so this holds on a machine of any speed
    r = bench_pipeline(str(tiny_bundle_dir), estimates=4, speed=float("inf"), warmup_estimates=1)
    assert r["schema"] == SCHEMA and r["kind"] == "pipeline" and r["estimates"] == 4
    assert r["estimates_without_inference"] == 0
    p, i = r["processing_ms"]["median"], r["inference_ms"]["median"]
    assert p >= i > 0
    assert r["overhead"]["median"] >= 0 and r["overhead"]["p90"] >= r["overhead"]["median"]
    assert r["real_time_factor"] > 0 and r["latency_s"]["median"] >= 0
    assert r["goal"]["threshold"] == OVERHEAD_GOAL and r["goal"]["met"] == (r["overhead"]["median"] <= OVERHEAD_GOAL)
    text = format_pipeline(r)
    assert "overhead beyond inference" in text and ("-> MET" in text or "-> NOT MET" in text)
    json.dumps(r, allow_nan=False)


def _parse(kind: str, *argv: str) -> argparse.Namespace:
    """``edgemer bench KIND ARGV`` parsed by the kind's own parser."""
    from edgemer.benchmarks.commands import KindParser, kind_named

    return KindParser(prog=f"edgemer bench {kind}", kind=kind_named(kind)).parse_args(list(argv))


def test_cli_options_parse():
    args = _parse("bundles")
    assert args.bundle == "physio-demo" and args.backends == ("onnxruntime", "litert") and args.json is None
    assert args.threads == (1, 2) and args.precisions == ("fp32", "int8") and not args.pipeline
    args = _parse("bundles", "some/folder", "--threads", "1,4", "--backends", "onnxruntime", "--max-time", "0.5",
                  "--quiet")
    assert args.threads == (1, 4) and args.backends == ("onnxruntime",) and args.max_time == 0.5
    with pytest.raises(SystemExit):
        _parse("bundles", "--threads", "one")


def test_bundles_kind_prints_table_and_writes_json(tiny_bundle_dir, tmp_path, capsys):
    from edgemer.benchmarks.report import collect_results, markdown_report

    out = tmp_path / "results"
    args = _parse("bundles", str(tiny_bundle_dir), "--backends", "onnxruntime", "--threads", "1", "--max-time", "0.05",
                  "--pipeline", "--estimates", "3", "--quiet", "--json", str(out))
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("device ") and "p50 ms" in printed and "INT8/FP32 latency" in printed
    assert "pipeline overhead beyond inference <= 10%" in printed
    (written,) = out.glob("*.json")
    result = json.loads(written.read_text())
    assert written.name.startswith(result["device"]["device_id"] + "_tiny-bench_")
    assert result["kind"] == "bundles" and result["pipeline"]["kind"] == "pipeline"
    (collected,) = collect_results(out)
    report = markdown_report([collected])
    assert f"### {result['device']['device_id']}" in report
    assert "| model_int8.onnx | onnxruntime | int8 | 1 |" in report and "Pipeline (tiny-bench" in report


def test_report_keeps_the_newest_result_per_device_and_bundle(tiny_result):
    from edgemer.benchmarks.report import markdown_report

    old = json.loads(json.dumps(tiny_result))
    old["created_utc"] = "2000-01-01T00:00:00+00:00"
    other = json.loads(json.dumps(tiny_result))
    other["device"]["device_id"] = "aarch64-raspberry-pi-5-model-b-4c"
    report = markdown_report([tiny_result, old, other])
    assert "2 result(s) from 2 device(s)" in report and "2000-01-01" not in report
    assert "### aarch64-raspberry-pi-5-model-b-4c" in report
