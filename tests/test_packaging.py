"""The package installs as one namespace, and the runtime stays slim."""
import importlib
import json
import subprocess
import sys

import pytest

SUBPACKAGES = ["edgemer", "edgemer.backends", "edgemer.sources", "edgemer.frontends", "edgemer.export",
               "edgemer.firmware_bridge", "edgemer.benchmarks"]


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_listed_subpackage_imports(name):
    assert importlib.import_module(name).__name__ == name


def test_setup_cfg_lists_every_subpackage():
    from configparser import ConfigParser
    from pathlib import Path

    cfg = ConfigParser()
    cfg.read(Path(__file__).parents[1] / "setup.cfg")
    listed = cfg["options"]["packages"].split()
    assert sorted(listed) == sorted(SUBPACKAGES)


def test_runtime_import_loads_neither_torch_nor_tensorflow():
    code = ("import sys, edgemer, edgemer.pipeline, edgemer.sources, edgemer.cli;"
            "edgemer.cli.build_parser();"
            "import json; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'tensorflow', 'jax', 'litert_torch', 'onnx', 'neurokit2', 'pandas'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_console_script_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "edgemer", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "run", "info", "bench", "data", "export"):
        assert command in out.stdout


def test_shipped_demo_bundle_says_synthetic(demo_bundle):
    m = demo_bundle.manifest
    assert m.trained_on_synthetic_data
    assert "--wesad" in m.provenance["train_on_real_data"]
    assert {mf.file for mf in m.models.values()} >= {"model_fp32.onnx", "model_int8.onnx", "model_int8.tflite"}
