"""benchmarks/SCHEMA.md documents every field the benchmark code writes, so schema and code cannot drift.

The field names a section documents are the backticked names in the first column of its
Markdown tables. Results checked: a tiny suite generated here (ONNX cells that run, LiteRT
cells skipped for a delegate that does not load, a bundle that fails to load, two runs),
a live device fingerprint, and every result committed under ``benchmarks/results``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import pytest
from edgemer.benchmarks.fingerprint import device_fingerprint
from edgemer.benchmarks.suite import run_suite, standard_engines

from test_bench import FAST, build_tiny_bundle

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_MD = ROOT / "benchmarks" / "SCHEMA.md"
RESULTS = ROOT / "benchmarks" / "results"
SHORT = {k: v for k, v in FAST.items() if k != "progress"}


def schema_sections(text: str) -> dict[str, set[str]]:
    """Heading text -> backticked names in the first column of the tables under that heading."""
    sections: dict[str, set[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("#"):
            current = line.lstrip("#").strip()
            sections.setdefault(current, set())
        elif line.startswith("|") and not re.match(r"^\|\s*-", line):
            first = line.split("|")[1]
            sections.setdefault(current, set()).update(re.findall(r"`([A-Za-z0-9_\[\]]+)`", first))
    return sections


@pytest.fixture(scope="module")
def documented() -> dict[str, set[str]]:
    return schema_sections(SCHEMA_MD.read_text(encoding="utf-8"))


def fields(documented: Mapping[str, set[str]], *headings: str) -> set[str]:
    """Union of the documented names of the sections with exactly these headings."""
    missing = [h for h in headings if h not in documented]
    assert not missing, f"SCHEMA.md has no section {missing}; sections: {sorted(documented)}"
    return set().union(*(documented[h] for h in headings))


def undocumented(keys: Iterable[str], allowed: set[str]) -> list[str]:
    return sorted(set(keys) - allowed - {"_file"})


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory) -> dict[str, Any]:
    tiny = build_tiny_bundle(tmp_path_factory.mktemp("schema") / "tiny-bench")
    missing = tmp_path_factory.mktemp("nobundle") / "not-a-bundle"
    return run_suite([str(tiny), str(missing)], standard_engines(delegate="/nonexistent/libdelegate.so"),
                     threads=(1,), repeat=2, progress=False, **SHORT)


def committed(kind: str) -> list[dict[str, Any]]:
    out = []
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("kind") == kind and str(data.get("schema", "")).startswith(
                "edgemer.bench/"):
            out.append(data)
    return out


def suites(tiny_suite: dict[str, Any]) -> list[dict[str, Any]]:
    return [tiny_suite, *committed("suite")]


def test_schema_parser_reads_first_column_names_only():
    text = "# A\n| field | meaning |\n|---|---|\n| `x`, `y` | uses `z` |\n## B\n| `w` | |\n"
    assert schema_sections(text) == {"A": {"x", "y"}, "B": {"w"}}


def test_suite_top_level_settings_overhead_and_repeat_are_documented(documented, tiny_suite):
    assert committed("suite"), "a committed suite result is expected under benchmarks/results"
    for s in suites(tiny_suite):
        assert undocumented(s, fields(documented, "Suite result (kind `suite`)")) == []
        assert undocumented(s["settings"], fields(documented, "suite `settings`")) == []
        for engine in s["settings"]["engines"]:
            assert set(engine) == {"label", "backend", "providers", "delegate"}
        assert undocumented(s["overhead"], fields(documented, "suite `overhead`")) == []
        if s["repeat"] is not None:
            assert undocumented(s["repeat"], fields(documented, "suite `repeat`")) == []


def test_suite_entries_and_cells_are_documented(documented, tiny_suite):
    entry_fields = fields(documented, "suite `results[]`", "Top level (kind `bundle`)")
    cell_fields = fields(documented, "`cells[]`")
    statuses = set()
    for s in suites(tiny_suite):
        for entry in s["results"]:
            statuses.add(entry["status"])
            assert undocumented(entry, entry_fields) == [], entry["bundle"]["name"]
            if entry["status"] == "ok":
                assert undocumented(entry["settings"], fields(documented, "`settings`")) == []
                for ratio in entry["ratios"]:
                    assert undocumented(ratio, fields(documented, "`ratios[]`")) == []
                for target in entry["targets"]:
                    assert undocumented(target, fields(documented, "`targets[]`")) == []
            for cell in entry["cells"]:
                statuses.add(f"cell-{cell['status']}")
                assert undocumented(cell, cell_fields) == [], (cell["backend"], cell["status"])
    # the generated suite covers ok and skipped cells and a failed entry
    assert {"ok", "failed", "cell-ok", "cell-skipped"} <= statuses


def test_delegate_fields_are_recorded_and_documented(documented, tiny_suite):
    engines = {e["label"]: e for e in tiny_suite["settings"]["engines"]}
    assert engines["litert-delegate"]["delegate"] == "/nonexistent/libdelegate.so"
    entry = next(e for e in tiny_suite["results"] if e.get("engine") == "litert-delegate")
    assert entry["settings"]["delegate"] == "/nonexistent/libdelegate.so"
    assert "delegate" in fields(documented, "`settings`")


def test_device_fingerprint_fields_are_documented(documented, tiny_suite):
    device_fields = fields(documented, "Device fingerprint (`device`)")
    live = device_fingerprint()
    for name in ("l4t_release", "power_mode", "throttled"):
        assert name in live and name in device_fields
    assert undocumented(live, device_fields) == []
    for s in [*suites(tiny_suite), *committed("bundle"), *committed("multimodal"), *committed("audio")]:
        assert undocumented(s["device"], device_fields) == []


def test_bundle_and_multimodal_results_are_documented(documented, tiny_suite):
    for r in committed("bundle"):
        assert undocumented(r, fields(documented, "Top level (kind `bundle`)")) == []
        for cell in r["cells"]:
            assert undocumented(cell, fields(documented, "`cells[]`")) == []
    multimodal = fields(documented, "Multimodal result (kind `multimodal`)")
    pipelines = [s["pipeline"] for s in suites(tiny_suite) if s.get("pipeline")]
    for r in [*committed("multimodal"), *pipelines]:
        assert undocumented(r, multimodal | {"status"}) == []
