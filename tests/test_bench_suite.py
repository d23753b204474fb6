"""``edgemer bench --suite standard``: engines, skipped/failed entries, overhead, repeat spread, CLI.

Runs on the tiny physio-shaped bundle of test_bench.py (ONNX only) with very short cells;
checks structure and bookkeeping, never speed.
"""
from __future__ import annotations

import io
import json

import pytest
from edgemer.benchmarks.cell import measure_overhead
from edgemer.benchmarks.suite import (Engine, ProgressBar, format_suite, overhead_summary, repeat_spread, run_suite,
                                      standard_engines)
from edgemer.errors import ConfigError

from test_bench import FAST, _parse, build_tiny_bundle

SHORT = {k: v for k, v in FAST.items() if k != "progress"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_bundle(tmp_path_factory.mktemp("suite") / "tiny-bench")


@pytest.fixture(scope="module")
def suite_result(tiny_dir, tmp_path_factory):
    missing = tmp_path_factory.mktemp("nobundle") / "not-a-bundle"
    return run_suite([str(tiny_dir), str(missing)], standard_engines(delegate="/nonexistent/libdelegate.so"),
                     threads=(1,), repeat=2, progress=False, **SHORT)


def test_standard_engines_cover_every_backend_and_the_delegate():
    labels = [e.label for e in standard_engines("/x/libedgetpu.so.1", ["tensorrt:fp16=1"])]
    assert labels == ["onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "litert", "litert-delegate"]
    trt = standard_engines(None, ["tensorrt:fp16=1"])[2]
    assert trt.providers == ("tensorrt:fp16=1",) and trt.backend == "onnxruntime"


def test_suite_grid_with_skips_and_failures(suite_result):
    from edgemer.benchmarks import SCHEMA
    from edgemer.benchmarks.result import check_result

    assert suite_result["kind"] == "suite" and suite_result["schema"] == SCHEMA and check_result(suite_result) == []
    entries = {(e["bundle"]["name"], e["engine"]): e for e in suite_result["results"]}
    ok = entries[("tiny-bench", "onnxruntime")]
    assert [c["status"] for c in ok["cells"]] == ["ok", "ok"] and ok["ratios"][0]["latency_p50_ratio"] > 0
    for engine in ("onnxruntime-cuda", "onnxruntime-tensorrt"):  # this CI's onnxruntime is the CPU build
        cells = entries[("tiny-bench", engine)]["cells"]
        assert all(c["status"] == "skipped" and "onnxruntime-gpu" in c["reason"] for c in cells)
    assert all(c["status"] == "skipped" and "tflite" in c["reason"]  # the tiny bundle ships no .tflite
               for c in entries[("tiny-bench", "litert-delegate")]["cells"])
    (failed,) = [e for e in suite_result["results"] if e["status"] == "failed"]
    assert failed["bundle"]["name"].endswith("not-a-bundle") and failed["error_type"] == "BundleNotFoundError"
    json.dumps(suite_result, allow_nan=False)


def test_overhead_is_measured_against_the_smallest_p50(suite_result):
    o = suite_result["overhead"]
    p50s = [c["latency_ms"]["p50"] for e in suite_result["results"] for c in e["cells"] if c["status"] == "ok"]
    assert o["smallest_p50_ms"] == min(p50s)
    assert o["fraction"] == pytest.approx(o["loop_ns"] / (min(p50s) * 1e6))
    assert 0 < o["timer_ns"] <= o["loop_ns"]
    target = next(t for t in suite_result["targets"] if t["id"] == "bench_overhead")
    assert target["value"] == o["fraction"] and target["met"] == (o["fraction"] < 0.01)


def test_repeat_spread_uses_every_run(suite_result):
    spread = suite_result["repeat"]
    assert spread["runs"] == 2 and len(spread["cells"]) == 2  # the two ok cells
    for c in spread["cells"]:
        assert len(c["p50_ms"]) == 2
        assert c["spread"] == pytest.approx((max(c["p50_ms"]) - min(c["p50_ms"])) / min(c["p50_ms"]))
    text = format_suite(suite_result)
    assert "p50 spread over 2 runs" in text and "tiny-bench/onnxruntime/int8/t1" in text
    assert "tiny-bench / onnxruntime-cuda: SKIPPED" in text and "not-a-bundle" in text and "FAILED" in text
    assert "benchmark overhead:" in text


def test_repeat_spread_arithmetic_and_cells_missing_from_a_run():
    def entry(p50, status="ok"):
        return {"bundle": {"name": "b"}, "engine": "e",
                "cells": [{"precision": "int8", "threads": 1, "status": status, "latency_ms": {"p50": p50}}]}
    s = repeat_spread([[entry(1.0)], [entry(1.2)], [entry(1.1)]])
    assert s["cells"][0]["spread"] == pytest.approx(0.2) and s["cells_over_target"] == 1
    assert repeat_spread([[entry(1.0)], [entry(1.0, "failed")]])["cells"] == []


def test_overhead_summary_without_any_ok_cell():
    o = overhead_summary(measure_overhead(200), [{"bundle": {"name": "b"}, "engine": "e", "cells": []}])
    assert o["fraction"] is None and o["smallest_p50_ms"] is None


def test_progress_bar_counts_to_the_total():
    out = io.StringIO()
    bar = ProgressBar(4, stream=out, width=8)
    for i in range(4):
        bar.step(f"cell {i}")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[##......] 1/4 cell 0") and lines[-1].startswith("[########] 4/4 cell 3")


def test_suite_kind_writes_a_suite_json(tiny_dir, tmp_path, capsys, monkeypatch):
    args = _parse("suite", "--bundle", str(tiny_dir), "--threads", "1", "--max-time", "0.05",
                  "--pipeline-seconds", "0", "--quiet", "--json", str(tmp_path))
    assert args.extra_bundles == [str(tiny_dir)]
    import edgemer.benchmarks.suite as suite

    # only the tiny bundle: the shipped ones are what `edgemer bench suite` itself measures
    monkeypatch.setattr(suite, "suite_bundles", lambda extra=(): [str(e) for e in extra])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "== tiny-bench / onnxruntime" in printed and "target: timed loop" in printed
    (written,) = tmp_path.glob("*_suite-standard_*.json")
    assert json.loads(written.read_text())["kind"] == "suite"


def test_engine_is_a_plain_record():
    e = Engine("litert-delegate", "litert", None, "/x.so")
    assert e.delegate == "/x.so" and e.providers is None


def test_best_of_keeps_each_cells_lowest_p50_and_lists_the_passes():
    from edgemer.benchmarks.suite import best_of_passes

    def entry(p50s):
        cells = [{"precision": "fp32", "threads": t, "status": "ok" if p is not None else "failed",
                  **({"latency_ms": {"p50": p}} if p is not None else {})} for t, p in enumerate(p50s, 1)]
        return {"engine": "onnxruntime", "bundle": {"name": "b"}, "cells": cells}

    merged = best_of_passes([[entry([0.30, None])], [entry([0.20, 0.50])], [entry([0.25, 0.40])]])
    first, second = merged[0]["cells"]
    assert first["latency_ms"]["p50"] == 0.20 and first["p50_passes_ms"] == [0.30, 0.20, 0.25]
    assert second["latency_ms"]["p50"] == 0.40 and second["p50_passes_ms"] == [None, 0.50, 0.40]


def test_best_of_must_be_positive():
    from edgemer.benchmarks.suite import run_suite, standard_engines

    with pytest.raises(ConfigError, match="best_of"):
        run_suite(["physio-demo"], standard_engines(), best_of=0, progress=False)
