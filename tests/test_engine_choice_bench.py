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
