"""Pipelines described in TOML files: checked key by key, built into the same Pipeline."""
import json
import textwrap

import pytest

from edgemer.config import load_pipeline_file
from edgemer.errors import ConfigError

GOOD = """
[run]
speed = 400.0
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
    pipe = pf.build()
    assert pipe.speed == 400.0 and pipe.config.fusion.smoothing == "hmm"
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


def test_shipped_example_parses():
    from pathlib import Path

    pf = load_pipeline_file(Path(__file__).parents[1] / "examples" / "physio.toml")
    assert pf.duration_s == 300 and pf.bundles[0].bundle == "physio-demo"
