"""``edgemer bench report``: one Markdown report with PNG plots from result files alone.

The fixtures are small hand-made result files for two devices (no device, no model
run), so every number in the plots' data can be checked against them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from edgemer.benchmarks.fingerprint import device_line, jetson_power_mode, l4t_release
from edgemer.benchmarks.report import collect_results, load_result, markdown_report, plot_data, render_report

from edgemer.errors import MissingExtraError, ResultSchemaError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cell(precision: str, threads: int, p50: float, rss: float, backend: str = "onnxruntime") -> dict:
    return {"backend": backend, "precision": precision, "threads": threads, "format": "onnx",
            "model_file": f"model_{precision}.onnx", "model_bytes": 1000 if precision == "fp32" else 300,
            "status": "ok", "reason": None, "latency_ms": {"min": p50, "mean": p50, "p50": p50, "p90": p50,
                                                          "p99": 2 * p50, "max": 3 * p50},
            "load_s": 0.01, "rss_peak_mib": rss}


def _suite(device_id: str, created: str, p50_fp32: float, p50_int8: float, board: dict | None = None) -> dict:
    cells = [_cell("fp32", 1, p50_fp32, 70.0), _cell("int8", 1, p50_int8, 65.0), _cell("int8", 2, p50_int8 / 2, 66.0)]
    skipped = [{"backend": "onnxruntime", "precision": p, "threads": 1, "format": "onnx", "model_file": None,
                "model_bytes": None, "status": "skipped", "reason": "CUDAExecutionProvider not available here"}
               for p in ("fp32", "int8")]
    bundle = {"name": "physio-demo", "synthetic_data": True}
    return {"schema": "edgemer.bench/2", "kind": "suite", "suite": "standard", "created_utc": created,
            "device": {"device_id": device_id, "cpu_model": "Cortex-A76", "logical_cores": 4, "board": board or {}},
            "results": [{"engine": "onnxruntime", "status": "ok", "kind": "bundles", "bundle": bundle, "cells": cells,
                         "ratios": [{"backend": "onnxruntime", "threads": 1, "latency_p50_ratio": p50_int8 / p50_fp32,
                                     "size_ratio": 0.3, "ci_separated": True, "parity": {"argmax_agreement": 1.0}}]},
                        {"engine": "onnxruntime-cuda", "status": "ok", "kind": "bundles", "bundle": bundle,
                         "cells": skipped, "ratios": []}],
            "overhead": {"loop_ns": 400.0, "timer_ns": 100.0, "fraction": 400.0 / (p50_int8 / 2 * 1e6),
                         "smallest_p50_ms": p50_int8 / 2, "smallest_cell": "physio-demo/onnxruntime/int8/t2"},
            "repeat": {"runs": 3, "cells": [{"cell": "x", "p50_ms": [1, 1, 1], "spread": 0.04}], "max_spread": 0.04,
                       "cells_over_target": 0},
            "settings": {}, "pipeline": None, "targets": []}


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    pi = _suite("aarch64-raspberry-pi-5-model-b-4c", "2026-12-01T10:00:00+00:00", 0.40, 0.20,
                {"raspberry_pi": "Raspberry Pi 5 Model B Rev 1.0"})
    old_pi = _suite("aarch64-raspberry-pi-5-model-b-4c", "2026-11-01T10:00:00+00:00", 9.0, 9.0)
    laptop = _suite("x86_64-intel-core-i7-8c", "2026-12-01T11:00:00+00:00", 0.10, 0.04)
    for name, data in (("pi.json", pi), ("pi-old.json", old_pi), ("laptop.json", laptop)):
        (folder / name).write_text(json.dumps(data))
    (folder / "bridge.json").write_text(json.dumps({"python": {"throughput": 1}}))  # another tool's result
    return folder


def test_plot_data_comes_from_the_newest_result_per_device(results_dir):
    data = plot_data(collect_results(results_dir))
    pi, laptop = "aarch64-raspberry-pi-5-model-b-4c", "x86_64-intel-core-i7-8c"
    assert data["latency"]["physio-demo / onnxruntime / fp32"] == {pi: 0.40, laptop: 0.10}
    assert data["int8_speedup"]["physio-demo / onnxruntime"] == {pi: pytest.approx(2.0), laptop: pytest.approx(2.5)}
    assert data["memory"]["physio-demo / onnxruntime / int8"] == {pi: 65.0, laptop: 65.0}
    assert not any("cuda" in k for k in data["latency"])  # skipped cells draw nothing


def test_report_renders_markdown_and_pngs_without_any_device(results_dir, tmp_path):
    pytest.importorskip("matplotlib")
    path = render_report(results_dir, tmp_path / "report")
    text = path.read_text()
    for png in ("latency.png", "int8_speedup.png", "memory.png"):
        assert f"]({png})" in text
        assert (path.parent / png).read_bytes()[:8] == PNG_MAGIC
    assert "### aarch64-raspberry-pi-5-model-b-4c" in text and "### x86_64-intel-core-i7-8c" in text
    assert "Raspberry Pi 5 Model B" in text and "2026-11-01" not in text
    assert "**physio-demo** on onnxruntime-cuda (trained on synthetic data)" in text and "skipped —" in text
    assert "| model_int8.onnx | onnxruntime | int8 | 2 |" in text
    assert "worst cell 4.0 %" in text


def test_cli_report_command(results_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from test_bench import _parse

    args = _parse("report", str(results_dir), "--out", str(tmp_path / "out"))
    assert args.func(args) == 0
    assert (tmp_path / "out" / "REPORT.md").is_file() and "wrote" in capsys.readouterr().out


def test_newer_schema_is_refused_clearly_and_listed(results_dir, tmp_path):
    newer = json.loads((results_dir / "pi.json").read_text())
    newer["schema"] = "edgemer.bench/3"
    (results_dir / "newer.json").write_text(json.dumps(newer))
    with pytest.raises(ResultSchemaError, match="newer edgemer.*edgemer.bench/2"):
        load_result(results_dir / "newer.json")
    with pytest.raises(ResultSchemaError):
        collect_results(results_dir)
    problems: list[str] = []
    assert len(collect_results(results_dir, problems)) == 3 and "newer.json" in problems[0]
    assert "## Files left out" in markdown_report(collect_results(results_dir, []), problems=problems)


def test_older_schema_without_migration_is_refused(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"schema": "edgemer.bench/0", "kind": "bundle"}))
    with pytest.raises(ResultSchemaError, match="no migration"):
        load_result(tmp_path / "old.json")


def test_empty_folder_says_what_to_do(tmp_path):
    with pytest.raises(ResultSchemaError, match="edgemer bench suite --json"):
        render_report(tmp_path, tmp_path / "out")


def test_missing_matplotlib_names_the_extra(results_dir, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError, match=r"edgemer\[export\]"):
        render_report(results_dir, tmp_path / "out")


def test_a_device_with_no_fingerprint_renders_as_unknown(tmp_path):
    bare = _suite("x", "2026-12-01T00:00:00+00:00", 1.0, 0.5)
    bare["device"] = {}
    text = markdown_report([bare])
    assert "### unknown" in text and "unknown CPU" in text
    assert device_line({}).startswith("device unknown: unknown CPU; unknown/unknown cores")


def test_jetson_fields_parse_and_tolerate_absence():
    assert l4t_release("# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic") == "R36.3.0"
    assert l4t_release("") is None
    assert jetson_power_mode("pmode:0000 fmode:quiet", "< POWER_MODEL ID=0 NAME=MAXN >") == "0 (MAXN)"
    assert jetson_power_mode("pmode:0003", "") == "3" and jetson_power_mode("", "") is None


def _multimodal(created: str, overhead: float, rss: float, soak: dict | None = None, note: str | None = None,
                detector: float | None = None) -> dict:
    o = {"overhead": overhead, "latency_ms": {"p50": 5.5, "p99": 12.0}}
    if detector is not None:
        o.update(detector_vs_inference=detector, overhead_excluding_detector=overhead - detector)
    return {"schema": "edgemer.bench/2", "kind": "multimodal", "created_utc": created,
            "device": {"device_id": "pi5", "cpu_model": "Cortex-A76", "logical_cores": 4},
            "bundle": {"name": "multimodal", "bundles": [{"name": "physio-demo"}, {"name": "face-demo"}]},
            "settings": {"config": "/x/examples/full.toml"}, "overhead": o, "real_time": {"real_time_factor": 68.0},
            "peak_rss_mib": rss, "soak": soak, "note": note,
            "targets": [{"id": "pipeline_overhead", "description": "beyond inference", "value": overhead,
                         "threshold": "<= 0.1", "met": overhead <= 0.1, "unit": "fraction"},
                        {"id": "peak_rss", "description": "peak RSS, MiB", "value": rss, "threshold": "<= 150",
                         "met": rss <= 150, "unit": "MiB"}]}


def test_multimodal_runs_render_as_one_table_with_the_newest_runs_targets(tmp_path):
    soak = {"stream_s": 3600.0, "requested_speed": 100.0, "achieved_speed": 98.8, "dropped_samples": 1232,
            "dropped_estimates": 0, "rss_growth_mib": 2.6, "latency_p99_change": 0.003}
    (tmp_path / "a.json").write_text(json.dumps(_multimodal("2026-12-02T04:31:10+00:00", 4.12, 177.4, soak)))
    (tmp_path / "b.json").write_text(json.dumps(_multimodal("2026-12-02T12:00:00+00:00", 3.2, 109.0,
                                                            note="shared machine", detector=2.5)))
    text = markdown_report(collect_results(tmp_path))
    assert "**Three-modality pipeline** (full.toml: physio-demo, face-demo), 2 run(s)" in text
    rows = [line for line in text.splitlines() if line.startswith("| 2026-12-02")]
    assert len(rows) == 2  # both runs, oldest first
    assert rows[0].startswith("| 2026-12-02 04:31 | 412 % | – | – | 5.5 / 12.0 | 68.0 | 177 | "
                              "1 h at 100x: achieved 98.8x, 1232 samples and 0 estimates dropped | 2.6 | +0.3 % |")
    assert rows[1] == ("| 2026-12-02 12:00 | 320 % | 250 % | 70 % | 5.5 / 12.0 | 68.0 | 109 | – | – | – "
                       "| shared machine |")
    assert "Targets of the newest run (2026-12-02T12:00:00+00:00)" in text
    assert "| pipeline_overhead: beyond inference | <= 0.1 | 3.2 | fraction | **not met** |" in text
    assert "| peak_rss: peak RSS, MiB | <= 150 | 109 | MiB | met |" in text


def test_arm64_parity_result_renders_its_table():
    committed = sorted((Path(__file__).parent.parent / "benchmarks" / "results").glob("*arm64*.json"))
    assert committed, "the emulated aarch64 parity result is committed"
    result = load_result(committed[-1])
    md = markdown_report([result])
    assert "ARM64 parity under emulation" in md and "meaningless for speed" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "cortex-a7" in line]
    assert len(rows) == len(result["results"]) and all("100.0 %" in row for row in rows)


def test_schema_1_results_are_migrated_and_incomplete_ones_listed(tmp_path):
    old = _multimodal("2026-12-02T04:31:10+00:00", 0.05, 120.0)
    old["schema"] = "edgemer.bench/1"
    for t in old["targets"]:
        del t["unit"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "bundle.json").write_text(json.dumps({"schema": "edgemer.bench/1", "kind": "bundle",
                                                      "created_utc": "2026-12-02T04:00:00+00:00",
                                                      "device": {"device_id": "pi5"}, "bundle": {"name": "b"},
                                                      "cells": [], "ratios": [], "targets": []}))
    broken = _multimodal("2026-12-02T05:00:00+00:00", 0.05, 120.0)
    del broken["device"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    problems: list[str] = []
    results = collect_results(tmp_path, problems)
    assert [(r["kind"], r["schema"]) for r in results] == [("bundles", "edgemer.bench/2"),
                                                           ("multimodal", "edgemer.bench/2")]
    assert [t["unit"] for t in results[1]["targets"]] == [None, None]  # schema 1 recorded no units
    assert results[1]["targets"][0]["value"] == 0.05 and results[0]["settings"] == {}
    assert len(problems) == 1 and "broken.json" in problems[0] and "no 'device' field" in problems[0]


def _bridge(created: str, ratio: float, recovery: float) -> dict:
    from edgemer.benchmarks.result import make_result, target

    return make_result("bridge", {"sync_s": 60.0}, [target("recovery_after_unplug", "samples again after a 3 s "
                                                           "unplug", recovery, "< 1", recovery < 1, "s")],
                       device={"device_id": "pi5"}, created_utc=created,
                       throughput={"ratio": ratio, "small_ratio": ratio / 2},
                       sync={"drift_error_ppm": 0.2, "map_error_ms_max": 0.3, "latency_ms_p50": 0.4,
                             "latency_ms_p99": 3.5},
                       recovery={"recovery_s": recovery})


def test_every_kind_renders_bridge_runs_in_one_table_and_unknown_kinds_by_their_targets(tmp_path):
    from edgemer.benchmarks.result import make_result, target, write_json

    write_json(_bridge("2026-12-02T10:00:00+00:00", 33.0, 0.24), tmp_path)
    write_json(_bridge("2026-12-02T18:00:00+00:00", 42.3, 1.5), tmp_path)
    write_json(make_result("fuzz", {"cases": 1000}, [target("fuzz_crashes", "decoder crashes", 0, "== 0", True,
                                                             "count")], device={"device_id": "pi5"},
                           created_utc="2026-12-02T19:00:00+00:00"), tmp_path)
    text = markdown_report(collect_results(tmp_path))
    assert "**Firmware bridge** (serial link: emulated wearable on a pseudo-terminal), 2 run(s)" in text
    rows = [line for line in text.splitlines() if line.startswith("| 2026-12-02")]
    assert rows == ["| 2026-12-02 10:00 | 33.0 | 16.5 | 0.2 | 0.300 | 0.40 / 3.50 | 0.24 |",
                    "| 2026-12-02 18:00 | 42.3 | 21.1 | 0.2 | 0.300 | 0.40 / 3.50 | 1.50 |"]
    assert "| recovery_after_unplug: samples again after a 3 s unplug | < 1 | 1.5 | s | **not met** |" in text
    assert "**fuzz**, measured 2026-12-02T19:00:00+00:00 (cases 1000)" in text
    assert "| fuzz_crashes: decoder crashes | == 0 | 0 | count | met |" in text
