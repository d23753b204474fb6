"""The fuzz harness: a short run per format (CI), and the harness itself counts what it must.

``edgemer bench fuzz`` runs 10,000 cases per format; here each format gets a few dozen
(EDGEMER_FUZZ_CASES overrides), with hypothesis shrinking any crash, hang or memory case
to a minimal input. A crash found becomes a regression test with its input in
tests/fuzz_corpus/regressions/ (see test_fuzz_containment.py).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

from edgemer.benchmarks import fuzz_formats  # noqa: E402
from edgemer.benchmarks.fuzz_bench import CaseRunner, fuzz_format, save_failures  # noqa: E402
from edgemer.benchmarks.fuzz_formats import FORMATS, FuzzFormat, build_corpus  # noqa: E402
from edgemer.errors import DatasetError  # noqa: E402

CI_CASES = int(os.environ.get("EDGEMER_FUZZ_CASES", "40"))


@pytest.mark.parametrize("name", list(FORMATS))
def test_format_survives_fuzzing(name):
    fmt = FORMATS[name]
    if not fmt.available():
        pytest.skip(f"{name}: {fmt.unavailable_reason()}")
    with CaseRunner([name]) as runner:
        tally = fuzz_format(name, CI_CASES, runner, seed=1, raise_on_failure=True)
    assert tally.cases >= CI_CASES // 2
    assert tally.outcomes["crash"] == tally.outcomes["hang"] == tally.outcomes["memory"] == 0
    assert tally.outcomes["typed"] > 0  # the cases reach the readers' refusals, not only the happy path


def test_committed_corpus_matches_the_builder(tmp_path):
    build_corpus(tmp_path)
    committed = Path(__file__).parent / "fuzz_corpus"
    for fmt in ("wav",):  # byte-exact (images depend on the codec build; toml and bundle seeds copy shipped files)
        for f in (tmp_path / fmt).rglob("*"):
            if f.is_file():
                assert (committed / f.relative_to(tmp_path)).read_bytes() == f.read_bytes(), f


def test_committed_keras_seeds_hold_the_builders_models():
    """h5py's bytes may change between versions, so the Keras seeds are compared by content."""
    import json

    import numpy as np

    h5py = pytest.importorskip("h5py")
    committed = Path(__file__).parent / "fuzz_corpus" / "keras"
    for name, (config, weights) in fuzz_formats.keras_seed_models().items():
        with h5py.File(committed / name, "r") as f:
            assert json.loads(f.attrs["model_config"]) == config
            for layer, values in weights.items():
                for key, value in values.items():
                    np.testing.assert_array_equal(f[f"model_weights/{layer}/{layer}/{key}:0"][()], value)


def _fake_format(target) -> FuzzFormat:
    from hypothesis import strategies as st

    return FuzzFormat("fake", "harness test", lambda: st.just({"files": {"a.bin": b"x"}, "entry": "a.bin"}), target)


def _bare(folder, entry, case):
    raise KeyError("a bare exception from a dependency")


def _typed(folder, entry, case):
    raise DatasetError(f"{entry}: refused")


def _typed_long(folder, entry, case):
    raise DatasetError(f"{entry}: refused, " + "x" * 10000)


def _sleep(folder, entry, case):
    time.sleep(60)


def _allocate(folder, entry, case):
    block = bytearray(300 << 20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident
    del block


def _die(folder, entry, case):
    os._exit(3)


@pytest.mark.parametrize("target,outcome", [(_bare, "crash"), (_typed, "typed"), (_typed_long, "typed"),
                                            (_sleep, "hang"), (_allocate, "memory"), (_die, "crash")])
def test_harness_counts_each_outcome(monkeypatch, tmp_path, target, outcome):
    monkeypatch.setitem(FORMATS, "fake", _fake_format(target))
    with CaseRunner(["fake"], case_timeout_s=2.0 if target is _sleep else 30.0) as runner:
        tally = fuzz_format("fake", 3, runner, seed=0, max_case_mib=100)
    assert tally.outcomes[outcome] == tally.cases >= 1
    if outcome != "typed":
        saved = save_failures(tally, tmp_path)
        assert saved and outcome in saved[0].read_text()
    else:
        assert tally.errors == {"DatasetError": tally.cases}


def test_harness_shrinks_and_raises_in_ci_mode(monkeypatch):
    monkeypatch.setitem(FORMATS, "fake", _fake_format(_bare))
    with CaseRunner(["fake"]) as runner, pytest.raises(AssertionError, match="(?s)fake: crash.*KeyError"):
        fuzz_format("fake", 3, runner, seed=0, raise_on_failure=True)


def test_a_source_with_bad_files_leaves_the_other_modality_running(tmp_path):
    """One source gets a folder of damaged images mid-run; the wearable's estimates keep coming."""
    pytest.importorskip("cv2")
    from edgemer import Pipeline
    from edgemer.frontends.face import configure_face_bundle
    from edgemer.bundle import load_bundle
    from edgemer.sources import SimulatedWearable, shipped_example
    from edgemer.sources.video_replay import VideoReplay

    frames = tmp_path / "frames"
    frames.mkdir()
    good = sorted(p for p in shipped_example("face-example").iterdir() if p.suffix == ".jpg")[0]
    shutil.copy(good, frames / "01.jpg")
    corpus = Path(__file__).parent / "fuzz_corpus"
    shutil.copy(corpus / "regressions" / "jpeg_declares_20000x20000.jpg", frames / "02.jpg")
    (frames / "03.jpg").write_bytes(good.read_bytes()[:200])  # truncated
    (frames / "04.png").write_bytes(b"")  # empty
    shutil.copy(corpus / "wav" / "pcm16_mono.wav", frames / "05.png")  # wrong extension
    faces = VideoReplay(frames, speed=40.0, fps=2, loop=True, duration_s=70)
    wearable = SimulatedWearable(speed=40.0, duration_s=70)
    face = configure_face_bundle(load_bundle("face-demo"), analysis_fps=2)
    with Pipeline([wearable, faces], ["physio-demo", face]) as pipe:
        estimates = list(pipe)
    stats = pipe.stats()
    assert not stats["source_errors"]
    assert faces.health()["unreadable_images"] >= 4  # every damaged image counted, none raised
    assert faces.health()["frames"] >= 1
    physio = [e for e in estimates if e.available.get("physio")]
    assert physio, "the physiology modality stopped"
    assert max(e.elapsed_s for e in physio) >= 65.0


def test_bench_fuzz_writes_a_result_of_the_common_schema(tmp_path, capsys):
    import json

    from edgemer.benchmarks.commands import run_kind
    from edgemer.benchmarks.result import check_result

    status = run_kind("fuzz", ["--formats", "toml,wav", "--cases", "8", "--quiet", "--json", str(tmp_path / "r.json"),
                               "--crash-dir", str(tmp_path / "crashes")])
    result = json.loads((tmp_path / "r.json").read_text())
    assert status == 0 and check_result(result) == [] and result["kind"] == "fuzz"
    assert [r["format"] for r in result["formats"]] == ["toml", "wav"]
    assert all(r["cases"] >= 4 and r["crashes"] == r["hangs"] == r["memory"] == 0 for r in result["formats"])
    assert {t["id"] for t in result["targets"]} >= {"fuzz_wav_crashes", "fuzz_wav_hangs", "fuzz_toml_memory"}
    assert "typed" in capsys.readouterr().out
