"""Pipelines described in TOML files: checked key by key, built into the same Pipeline."""
import json
import textwrap

import pytest

from edgemer.clock import MAX_SPEED
from edgemer.config import load_pipeline_file
from edgemer.errors import ConfigError

GOOD = """
[run]
speed = "max"
duration_s = 75

[runtime]
precision = "int8"

[fusion]
smoothing = "hmm"

[[source]]
spec = "simulated"
seed = 4

[[bundle]]
name = "physio-demo"
backend = "litert"

[[sink]]
type = "jsonl"
path = "out/estimates.jsonl"
"""


def _write(tmp_path, text):
    f = tmp_path / "pipeline.toml"
    f.write_text(textwrap.dedent(text))
    return f


def test_file_builds_a_pipeline_with_per_bundle_backend(tmp_path):
    pf = load_pipeline_file(_write(tmp_path, GOOD))
    pipe = pf.build()  # speed "max": lockstep, so the count below holds on any machine
    assert pipe.speed == MAX_SPEED and pipe.lockstep and pipe.config.fusion.smoothing == "hmm"
    assert "LiteRT" in pipe.runners[0].session.description
    with pipe:
        estimates = list(pipe)
    assert len(estimates) == 4
    rows = (tmp_path / "out" / "estimates.jsonl").read_text().splitlines()
    assert len(rows) == 4 and json.loads(rows[0])["available"] == {"physio": True}


@pytest.mark.parametrize("bad,message", [
    (GOOD.replace("smoothing", "smothing"), r"pipeline.toml:10: unknown key 'smothing' in \[fusion\]"),
    (GOOD.replace('precision = "int8"', "precision = 8"), r"pipeline.toml:7: 'precision' in \[runtime\] must be str"),
    (GOOD.replace("[run]", "[runn]"), "unknown section 'runn'"),
    (GOOD.replace('type = "jsonl"', 'type = "csv"'), "type must be"),
    (GOOD.replace('spec = "simulated"', 'spec = "camera-x"'), "unknown source"),
    (GOOD.replace('name = "physio-demo"', 'threads = 1'), "needs 'name'"),
    ("[[source]]\nspec='simulated'\n", r"no \[\[bundle\]\]"),
    ("this is = = not toml", "not valid TOML"),
])
def test_bad_files_name_the_key_and_line(tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message):
        load_pipeline_file(_write(tmp_path, bad)).build()


FILE = """
[run]
speed = 10.0
duration_s = 120
seed = 1

[runtime]
precision = "int8"

[[source]]
spec = "simulated"
duration_s = 60
seed = 4

[[bundle]]
name = "physio-demo"
backend = "litert"
"""


def test_command_line_values_replace_the_files_wherever_it_sets_them(tmp_path):
    path = _write(tmp_path, FILE)
    pf = load_pipeline_file(path, overrides={"run": {"speed": 50.0, "duration_s": 30.0, "seed": 9},
                                             "runtime": {"backend": "onnxruntime"}})
    src = pf.sources[0]
    assert src.speed == 50.0 and src.duration_s == 30.0  # also over the [[source]]'s own duration_s
    # ... and over the [[bundle]]'s backend, which then falls back to the command line's
    assert pf.bundles[0].backend is None and pf.config.backend == "onnxruntime"
    assert pf.config.precision == "int8"  # not given: the file's
    assert pf.overridden == {"run.speed": (50.0, 10.0), "run.duration_s": (30.0, 120), "run.seed": (9, 1),
                             "runtime.backend": ("onnxruntime", "litert")}
    plain = load_pipeline_file(path)
    assert plain.sources[0].speed == 10.0 and plain.sources[0].duration_s == 60 and plain.overridden == {}
    assert load_pipeline_file(path, overrides={"run": {"speed": MAX_SPEED}}).build().lockstep


def test_a_command_line_calibration_replaces_the_files_table(tmp_path):
    path = _write(tmp_path, FILE + '\n[calibration]\nduration_s = 60\nuser = "bob"\nload_from = "bob.json"\n')
    pf = load_pipeline_file(path, overrides={"calibration": {"duration_s": 30.0, "user": "alice"}})
    assert pf.calibration.duration_s == 30.0 and pf.calibration.user == "alice" and pf.calibration.load_from is None
    assert pf.overridden["calibration"][1] == {"duration_s": 60, "user": "bob", "load_from": "bob.json"}


@pytest.mark.parametrize("overrides,message", [
    ({"bundle": {"analysis_fps": 2.0}}, r"'analysis_fps' given on the command line \(--analysis-fps\) applies to face"),
    ({"bundle": {"vad": "energy"}}, "applies to audio bundles, and this file runs none"),
    ({"run": {"loop": True}}, "cannot override 'loop' in \\[run\\]"),
    ({"sink": {"path": "x"}}, "cannot override section 'sink'"),
])
def test_overrides_that_cannot_apply_are_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_pipeline_file(_write(tmp_path, FILE), overrides=overrides)


def test_shipped_example_parses():
    from pathlib import Path

    pf = load_pipeline_file(Path(__file__).parents[1] / "examples" / "physio.toml")
    assert pf.duration_s == 300 and pf.bundles[0].bundle == "physio-demo"
