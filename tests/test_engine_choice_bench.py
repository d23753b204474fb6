"""edgemer bench engines: auto against every fixed choice, in one run (structure, not speed)."""
from __future__ import annotations

import json

from edgemer.backends.choice import ChoiceCache, bundle_hash
from edgemer.benchmarks.commands import run_kind
from edgemer.benchmarks.engines_bench import bench_bundle
from edgemer.benchmarks.result import check_result
from edgemer.bundle import load_bundle


def test_bench_measures_every_fixed_choice_and_auto(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEMER_CACHE_DIR", str(tmp_path / "cache"))
    entry = bench_bundle("physio-demo", (1,), passes=1, max_time_s=0.01, use_cache=False, remember=True,
                         progress=None)
    cells = {row["cell"] for row in entry["fixed"]}
    assert cells == {"onnxruntime/fp32/t1", "onnxruntime/int8/t1", "litert/fp32/t1", "litert/int8/t1"}
    assert all(row["verified"] and row["p50_ms"] > 0 for row in entry["fixed"])
    assert entry["auto"]["label"] in cells and entry["auto"]["p50_this_run_ms"] > 0
    assert entry["best_fixed"]["p50_ms"] == min(row["p50_ms"] for row in entry["fixed"])
    assert entry["auto_vs_best"] == entry["auto"]["p50_this_run_ms"] / entry["best_fixed"]["p50_ms"]
    # the fixed choices' p50s now feed this device's cache, marked as bench results
    cached = ChoiceCache(tmp_path / "cache").lookup(bundle_hash(load_bundle("physio-demo")))
    assert {m.cell.label for m in cached} == cells and {m.source for m in cached} == {"bench"}


def test_bench_kind_writes_an_engines_result(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEMER_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "engines.json"
    assert run_kind("engines", ["face-demo", "--passes", "1", "--max-time", "0.01", "--threads", "1",
                                "--no-remember", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert check_result(result) == [] and result["kind"] == "engines"
    assert [b["name"] for b in result["bundles"]] == ["face-demo"]
    assert result["targets"][0]["id"] == "auto_within_5pct_of_best"
    assert not (tmp_path / "cache" / "engine-choice.json").exists()  # --no-remember
    printed = capsys.readouterr().out
    assert "auto -> " in printed and "auto / best verified fixed" in printed


def _bench_cell(bundle, backend: str, precision: str, threads: int, p50: float, status: str = "ok") -> dict:
    fmt = "onnx" if backend == "onnxruntime" else "tflite"
    return {"backend": backend, "precision": precision, "threads": threads, "format": fmt, "status": status,
            "model_file": bundle.manifest.model(fmt, precision).file, "latency_ms": {"p50": p50, "p99": p50 * 2}}


def test_bench_cells_feed_the_choice_only_when_measured_as_auto_runs_them(tmp_path):
    from edgemer.backends.choice import bench_measurements, choose_engine, remember_measurements

    bundle = load_bundle("physio-demo")
    cells = [_bench_cell(bundle, "onnxruntime", "fp32", 1, 0.10), _bench_cell(bundle, "onnxruntime", "int8", 1, 0.05),
             _bench_cell(bundle, "litert", "int8", 1, 0.02), _bench_cell(bundle, "litert", "fp32", 1, 0.01, "failed"),
             {**_bench_cell(bundle, "litert", "int8", 2, 0.01), "model_file": "not-in-this-bundle.tflite"}]
    got = {m.cell.label: m.p50_ms for m in bench_measurements(bundle, cells)}
    assert got == {"onnxruntime/fp32/t1": 0.10, "onnxruntime/int8/t1": 0.05, "litert/int8/t1": 0.02}
    # cells of a TFLite delegate, or of an execution provider auto would not use here, say nothing about auto
    assert {m.cell.backend for m in bench_measurements(bundle, cells, delegate="libedgetpu.so.1")} == {"onnxruntime"}
    assert {m.cell.backend for m in bench_measurements(bundle, cells, providers=("cuda",))} == {"litert"}
    cache = ChoiceCache(tmp_path, device=("dev", {}), version="0.1.0")
    assert remember_measurements(bundle, bench_measurements(bundle, cells), cache=cache)
    choice = choose_engine(bundle, cache=cache, measure=False, litert=True, thread_options=(1,))
    assert choice.label == "litert/int8/t1" and choice.source == "bench"
    assert not remember_measurements(bundle, [], cache=cache)  # nothing measured: the cache is kept as it was
    assert ChoiceCache(tmp_path, device=("dev", {}), version="0.1.0").lookup(bundle_hash(bundle))


def test_bench_bundles_and_suite_feed_the_engine_choice_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEMER_CACHE_DIR", str(tmp_path / "cache"))
    bundle = load_bundle("face-demo")
    assert run_kind("bundles", ["face-demo", "--backends", "litert", "--precisions", "int8", "--threads", "1",
                                "--max-time", "0.05", "--quiet"]) == 0
    assert "engine-choice cache: 1 cells of face-demo stored" in capsys.readouterr().out
    cached = ChoiceCache(tmp_path / "cache").lookup(bundle_hash(bundle))
    assert [(m.cell.label, m.source) for m in cached] == [("litert/int8/t1", "bench")]

    from edgemer.benchmarks.suite import Engine, remember_suite, run_suite

    result = run_suite(["face-demo"], [Engine("onnxruntime", "onnxruntime", ("cpu",))], precisions=("int8",),
                       threads=(1,), max_time_s=0.05, progress=False)
    assert remember_suite(result) == ["engine-choice cache: 1 cells of face-demo stored; 'auto' uses them here"]
    cached = ChoiceCache(tmp_path / "cache").lookup(bundle_hash(bundle))
    assert [(m.cell.label, m.source) for m in cached] == [("onnxruntime/int8/t1", "bench")]
    assert run_kind("bundles", ["face-demo", "--backends", "litert", "--precisions", "int8", "--threads", "1",
                                "--max-time", "0.05", "--quiet", "--no-remember"]) == 0
    assert [m.cell.label for m in ChoiceCache(tmp_path / "cache").lookup(bundle_hash(bundle))] == [
        "onnxruntime/int8/t1"]  # --no-remember left the suite's cells


def test_report_gives_the_fastest_verified_path_per_device():
    from edgemer.benchmarks.report import fastest_paths, markdown_report
    from edgemer.benchmarks.result import make_result

    def engines(device_id, rows):
        return make_result("engines", {}, device={"device_id": device_id}, created_utc="2026-12-02T10:00:00Z",
                           bundles=[{"name": "physio-demo", "fixed": rows}])

    row = lambda cell, p50, ok=True: {"cell": cell, "file": f"{cell.split('/')[1]}.x", "p50_ms": p50,  # noqa: E731
                                      "verified": ok}
    pi = engines("pi5", [row("onnxruntime/fp32/t1", 0.30), row("litert/int8/t1", 0.05, ok=False),
                         row("litert/fp32/t1", 0.10), row("litert/fp32/t2", 0.098)])
    x86 = engines("x86", [row("onnxruntime/int8/t1", 0.02), row("litert/int8/t1", 0.03)])
    suite = make_result("suite", {"engines": []}, device={"device_id": "x86"}, created_utc="2026-12-02T11:00:00Z",
                        results=[{"engine": "litert", "status": "ok", "bundle": {"name": "face-demo"},
                                  "cells": [{"backend": "litert", "precision": "int8", "threads": 1, "status": "ok",
                                             "model_file": "model_int8.tflite", "latency_ms": {"p50": 0.2, "p99": 0.3},
                                             "load_s": 0.01, "rss_peak_mib": 60.0, "model_bytes": 9000},
                                            {"backend": "litert", "precision": "fp32", "threads": 1,
                                             "status": "failed", "reason": "x", "model_file": "model_fp32.tflite",
                                             "model_bytes": 30000}]}])
    rows = {(r["device"], r["bundle"]): r for r in fastest_paths([pi, x86, suite])}
    # the unverified file is never the answer, and a second thread that gains 2 % does not win (auto's rule)
    assert rows[("pi5", "physio-demo")]["path"] == "litert/fp32/t1"
    assert rows[("x86", "physio-demo")]["path"] == "onnxruntime/int8/t1"
    # suite cells: verified through the shipped bundle of that name (face-demo's files are all verified)
    assert rows[("x86", "face-demo")]["path"] == "litert/int8/t1" and rows[("x86", "face-demo")]["verified"] is True
    text = markdown_report([pi, x86, suite])
    assert "## Fastest verified path per device" in text and "| pi5 | physio-demo | litert/fp32/t1 |" in text
