"""The command line as a user runs it."""
import json
import signal
import subprocess
import sys
import time

import pytest


def edgemer(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "edgemer", *args], capture_output=True, text=True, timeout=timeout)


def test_demo_streams_estimates_and_writes_jsonl(tmp_path):
    out = tmp_path / "demo.jsonl"
    r = edgemer("demo", "--speed", "300", "--duration", "90", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC" in r.stdout
    assert r.stdout.count("stress [") == 7
    assert "done: 7 estimates" in r.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 7 and all(0 <= row["stress_probability"] <= 1 for row in rows)


def test_demo_on_litert(tmp_path):
    r = edgemer("demo", "--speed", "300", "--duration", "65", "--backend", "litert", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "done: 2 estimates" in r.stdout


def test_ctrl_c_stops_cleanly():
    p = subprocess.Popen([sys.executable, "-m", "edgemer", "demo", "--speed", "20"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert "stopped:" in out and "Traceback" not in err


def test_run_replay_of_a_wesad_folder(small_wesad):
    r = edgemer("run", "--bundle", "physio-demo", "--source", f"replay:{small_wesad}:S2", "--speed", "1000")
    assert r.returncode == 0, r.stderr
    assert "truth:" in r.stdout and "done: 37 estimates" in r.stdout


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
