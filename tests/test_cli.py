"""The command line as a user runs it."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def edgemer(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "edgemer", *args], capture_output=True, text=True, timeout=timeout)


def test_demo_streams_estimates_and_writes_jsonl(tmp_path):
    out = tmp_path / "demo.jsonl"
    # --speed max: as fast as the pipeline processes, in lockstep, so the count holds on any machine
    r = edgemer("demo", "--speed", "max", "--duration", "90", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC" in r.stdout
    assert r.stdout.count("stress [") == 7
    assert "done: 7 estimates" in r.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 7 and all(0 <= row["stress_probability"] <= 1 for row in rows)


def test_demo_on_litert(tmp_path):
    r = edgemer("demo", "--speed", "max", "--duration", "65", "--backend", "litert", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "done: 2 estimates" in r.stdout


def test_ctrl_c_stops_cleanly():
    p = subprocess.Popen([sys.executable, "-m", "edgemer", "demo", "--speed", "20"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    head = ""
    while "Ctrl-C stops." not in head:  # the stop handler is in place once this line is out, however slow the start
        line = p.stdout.readline()
        assert line, p.stderr.read()
        head += line
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert "stopped:" in out and "Traceback" not in err


def test_run_replay_of_a_wesad_folder(small_wesad):
    r = edgemer("run", "--bundle", "physio-demo", "--source", f"replay:{small_wesad}:S2", "--speed", "max")
    assert r.returncode == 0, r.stderr
    assert "truth:" in r.stdout and "done: 37 estimates" in r.stdout


PHYSIO_TOML = Path(__file__).parents[1] / "examples" / "physio.toml"


def test_command_line_options_replace_the_config_files_values(tmp_path):
    config = tmp_path / "physio.toml"  # a copy: its jsonl sink writes next to the file
    config.write_text(PHYSIO_TOML.read_text())
    r = edgemer("run", "--config", str(config), "--speed", "max", "--duration", "65", "--quiet")
    assert r.returncode == 0, r.stderr
    head = r.stdout.splitlines()[0]
    assert "speed max (lockstep" in head and f"everything else from {config}" in head
    assert "from the command line: speed max (file: 20.0); duration_s 65.0 (file: 300)" in head
    assert "done: 2 estimates" in r.stdout  # 65 s, not the file's 300 s: windows ending at 60 and 65 s
    assert len((tmp_path / "physio-estimates.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("args,message", [
    (("--bundle", "physio-demo"), "--bundle cannot be used with --config"),
    (("--source", "simulated"), "--source cannot be used with --config"),
    (("--analysis-fps", "2"), "'analysis_fps' given on the command line (--analysis-fps) applies to face bundles"),
    (("--user", "alice"), "--user applies with --calibrate or --baseline"),
])
def test_options_that_cannot_apply_to_a_config_file_are_errors(args, message):
    r = edgemer("run", "--config", str(PHYSIO_TOML), *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_info_lists_and_verifies():
    r = edgemer("info")
    assert r.returncode == 0 and "physio-demo" in r.stdout and "SYNTHETIC" in r.stdout
    r = edgemer("info", "physio-demo")
    assert r.returncode == 0, r.stderr
    assert "sha256 and sizes match" in r.stdout and "train on real WESAD" in r.stdout
    assert "alpha_0" in r.stdout


@pytest.mark.parametrize("args,message", [
    (("run", "--bundle", "/no/such/bundle"), "No bundle at"),
    (("run", "--bundle", "physio-demo", "--source", "replay:/no/such/dir"), "/no/such/dir: nothing to replay"),
    (("demo", "--speed", "0"), "speed"),
    (("run", "--bundle", "physio-demo", "--source", "thermometer"), "unknown source"),
])
def test_bad_input_gives_one_clear_line(args, message):
    r = edgemer(*args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
