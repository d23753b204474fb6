"""Every ``edgemer bench KIND`` writes the common schema, and benchmarks/SCHEMA.md documents every field
the benchmark code writes, so schema and code cannot drift.

The field names a section documents are the backticked names in the first column of its
Markdown tables. Results checked: each cheap kind run here with tiny settings, a tiny suite
generated here (ONNX cells that run, LiteRT cells skipped for a delegate that does not load, a
bundle that fails to load, two runs), a live device fingerprint, and every result committed
under ``benchmarks/results``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import pytest
from edgemer.benchmarks.commands import KINDS, run_kind
from edgemer.benchmarks.fingerprint import device_fingerprint
from edgemer.benchmarks.report import collect_results
from edgemer.benchmarks.result import COMMON_FIELDS, check_result
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
    """The committed results of ``kind`` as the report reads them (older schema versions migrated)."""
    return [{k: v for k, v in r.items() if k != "_file"} for r in collect_results(RESULTS) if r["kind"] == kind]


def kind_section(documented: Mapping[str, set[str]], kind: str) -> set[str]:
    """The common fields plus the names documented under the heading ``... (kind `KIND`)``."""
    (heading,) = [h for h in documented if h.endswith(f"(kind `{kind}`)")]
    return fields(documented, "Common fields (every kind)", heading)


def suites(tiny_suite: dict[str, Any]) -> list[dict[str, Any]]:
    return [tiny_suite, *committed("suite")]


def test_schema_parser_reads_first_column_names_only():
    text = "# A\n| field | meaning |\n|---|---|\n| `x`, `y` | uses `z` |\n## B\n| `w` | |\n"
    assert schema_sections(text) == {"A": {"x", "y"}, "B": {"w"}}


def test_suite_top_level_settings_overhead_and_repeat_are_documented(documented, tiny_suite):
    assert committed("suite"), "a committed suite result is expected under benchmarks/results"
    for s in suites(tiny_suite):
        assert undocumented(s, kind_section(documented, "suite")) == []
        assert undocumented(s["settings"], fields(documented, "suite `settings`")) == []
        for engine in s["settings"]["engines"]:
            assert set(engine) == {"label", "backend", "providers", "delegate"}
        assert undocumented(s["overhead"], fields(documented, "suite `overhead`")) == []
        if s["repeat"] is not None:
            assert undocumented(s["repeat"], fields(documented, "suite `repeat`")) == []


def test_suite_entries_and_cells_are_documented(documented, tiny_suite):
    entry_fields = fields(documented, "suite `results[]`") | kind_section(documented, "bundles")
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
    kinds = [k.name for k in KINDS if k.writes_result]
    for s in [*suites(tiny_suite), *(r for k in kinds for r in committed(k))]:
        assert undocumented(s["device"], device_fields) == []


def test_every_committed_result_follows_the_common_schema_and_its_kinds_section(documented):
    target_fields = fields(documented, "`targets[]`")
    seen = set()
    for kind in (k.name for k in KINDS if k.writes_result):
        for r in committed(kind):
            seen.add(kind)
            assert check_result(r) == [], (kind, r["created_utc"])
            assert undocumented(r, kind_section(documented, kind)) == [], kind
            for t in r["targets"]:
                assert undocumented(t, target_fields) == [], (kind, t["id"])
    # committed results of the kinds that had them when the schema became edgemer.bench/2
    assert seen >= {"bundles", "suite", "audio", "face", "multimodal", "bridge", "arm64"}


def test_bundle_cells_and_multimodal_pipelines_are_documented(documented, tiny_suite):
    for r in committed("bundles"):
        for cell in r["cells"]:
            assert undocumented(cell, fields(documented, "`cells[]`")) == []
    multimodal = kind_section(documented, "multimodal")
    pipelines = [s["pipeline"] for s in suites(tiny_suite) if s.get("pipeline")]
    for r in [*committed("multimodal"), *pipelines]:
        assert undocumented(r, multimodal | {"status"}) == []


# -- every kind, run with tiny settings -------------------------------------------------------------

CHEAP = {
    "bundles": ["physio-demo", "--backends", "onnxruntime", "--precisions", "int8", "--threads", "1",
                "--max-time", "0.05", "--quiet"],
    "bridge": ["--decoder-only", "--throughput-s", "5"],
    "face": ["--frames", "3"],
    "cpu": ["--duration", "2"],
}
"""Kinds cheap enough for every test run, with tiny settings (a few seconds each)."""
SLOWER = {
    "audio": ["--repeat", "2", "--windows", "4", "--seconds", "4", "--speed", "40", "--all-cores", "--no-transformer"],
    "multimodal": ["--overhead-duration", "1", "--rtf-speed", "20", "--rtf-duration", "20"],
}
"""Kinds that take 10-15 s even with tiny settings (librosa's first call; three worker processes): EDGEMER_SLOW=1."""
COVERED_ELSEWHERE = {"suite": "the tiny_suite fixture here", "arm64": "needs root and qemu: tests/test_arm64_parity.py",
                     "report": "writes no result: tests/test_bench_report.py",
                     "physio": "fetches recordings with pip download: tests/test_physio_real.py",
                     "fuzz": "tests/test_fuzz.py", "engines": "its own tests (backend choice)"}


def test_every_kind_is_run_here_or_says_where_it_is_tested():
    assert {k.name for k in KINDS} == set(CHEAP) | set(SLOWER) | set(COVERED_ELSEWHERE)


def _run_and_check(kind: str, argv: list[str], tmp_path, documented) -> dict[str, Any]:
    assert run_kind(kind, [*argv, "--json", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*.json")
    result = json.loads(path.read_text())
    assert list(result)[:len(COMMON_FIELDS)] == list(COMMON_FIELDS) and check_result(result) == []
    assert result["kind"] == kind and result["device"]["device_id"] == device_fingerprint()["device_id"]
    assert path.name.startswith(result["device"]["device_id"] + "_")
    assert undocumented(result, kind_section(documented, kind)) == []
    for t in result["targets"]:
        assert t["unit"] and t["met"] in (True, False, None) and (t["value"] is not None or t["met"] is None)
    (read,) = collect_results(tmp_path)  # the report reads it back
    assert read["kind"] == kind
    return result


@pytest.mark.parametrize("kind", sorted(CHEAP))
def test_cheap_kind_writes_the_common_schema(kind, tmp_path, documented, capsys):
    result = _run_and_check(kind, CHEAP[kind], tmp_path, documented)
    if kind == "bridge":  # decoder only: the link targets are named but not measured
        assert [t["met"] for t in result["targets"]][1:] == [None, None, None]
        assert result["settings"]["decoder_only"] is True and "sync" not in result


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(SLOWER))
def test_slower_kind_writes_the_common_schema(kind, tmp_path, documented):
    _run_and_check(kind, SLOWER[kind], tmp_path, documented)
