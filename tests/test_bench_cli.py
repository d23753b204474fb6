"""``edgemer bench KIND``: the kinds are listed, each has its own --help, old spellings say where they went,
and building the command line imports no benchmark module."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from edgemer.benchmarks.commands import KINDS, KindParser, kind_named, run_kind


def edgemer(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgemer", *args], capture_output=True, text=True, timeout=timeout)


def test_each_kind_is_registered_once():
    names = [k.name for k in KINDS]
    assert len(names) == len(set(names)), names


def test_bench_help_lists_every_kind_with_its_summary():
    r = edgemer("bench", "--help")
    assert r.returncode == 0, r.stderr
    for kind in KINDS:
        line = next(x for x in r.stdout.splitlines() if x.strip().startswith(kind.name + " "))
        assert kind.summary.split()[0] in line, line
    r = edgemer("bench")
    assert r.returncode == 2 and "kinds (" in r.stdout


@pytest.mark.parametrize("kind", [k.name for k in KINDS])
def test_each_kind_has_its_own_help(kind):
    text = KindParser(prog=f"edgemer bench {kind}", kind=kind_named(kind)).format_help()
    assert text.startswith(f"usage: edgemer bench {kind}")
    assert ("--json FILE_OR_DIR" in text) == kind_named(kind).writes_result


def test_building_the_cli_imports_no_benchmark_module():
    code = ("import sys; from edgemer.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('edgemer.benchmarks.') "
            "or m == 'edgemer.firmware_bridge.bench'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.replace("'", '"')) == ["edgemer.benchmarks.commands", "edgemer.benchmarks.result"]


def test_a_kind_help_runs_through_the_cli():
    r = edgemer("bench", "bridge", "--help")
    assert r.returncode == 0 and "usage: edgemer bench bridge" in r.stdout and "--decoder-only" in r.stdout


@pytest.mark.parametrize("args,message", [
    (("bench", "--suite", "standard"), "--suite moved: run 'edgemer bench suite'"),
    (("bench", "--multimodal"), "--multimodal moved: run 'edgemer bench multimodal'"),
    (("bench", "audoi"), "no benchmark kind 'audoi'"),
    (("bench", "bundles", "/no/such/bundle"), "No bundle at"),
])
def test_wrong_or_old_spellings_give_one_clear_line(args, message):
    r = edgemer(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_old_spellings_still_run_and_say_where_they_moved(tmp_path):
    r = edgemer("bridge-bench", "--decoder-only", "--throughput-s", "2", "--json", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stderr
    assert "'edgemer bridge-bench' is now 'edgemer bench bridge'" in r.stderr and "ratio" in r.stdout
    assert json.loads((tmp_path / "b.json").read_text())["kind"] == "bridge"
    r = edgemer("bench", "physio-demo", "--backends", "onnxruntime", "--precisions", "int8", "--threads", "1",
                "--max-time", "0.02", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "is now 'edgemer bench bundles physio-demo'" in r.stderr and "model_int8.onnx" in r.stdout
    r = subprocess.run([sys.executable, "-m", "edgemer.firmware_bridge.bench", "--decoder-only", "--throughput-s", "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "is now 'edgemer bench bridge'" in r.stderr


def test_run_kind_reports_edgemer_errors_in_one_line(capsys):
    assert run_kind("bundles", ["/no/such/bundle"]) == 2
    assert capsys.readouterr().err.startswith("edgemer: error: No bundle at")
