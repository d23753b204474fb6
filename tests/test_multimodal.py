"""Three modalities on one clock: the shipped full example, losing and rejoining modalities,
stale data, failing sources, rate mismatches, and a clean stop on SIGTERM."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2", reason="the face modality needs opencv-python-headless (edgemer[camera])")

from edgemer import Pipeline, PipelineConfig  # noqa: E402
from edgemer.bundle import Bundle, load_bundle  # noqa: E402
from edgemer.clock import MAX_SPEED, LockstepClock  # noqa: E402
from edgemer.config import load_pipeline_file  # noqa: E402
from edgemer.errors import ConfigError, SampleRateError  # noqa: E402
from edgemer.frontends.face import configure_face_bundle  # noqa: E402
from edgemer.recorder import RecordingReplay  # noqa: E402
from edgemer.sinks import CallbackSink  # noqa: E402
from edgemer.sources import SimulatedWearable, shipped_example, source_from_spec  # noqa: E402
from edgemer.sources.video_replay import VideoReplay  # noqa: E402
from edgemer.sources.wav_replay import WavReplay  # noqa: E402
from edgemer.types import Chunk  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FULL = ROOT / "examples" / "full.toml"
MODALITIES = {"physio", "audio", "face"}


def _example(tmp_path: Path, speed: float | str, duration_s: float) -> Path:
    """examples/full.toml with another speed (a number or "max") and duration (its replay
    files are shipped by name)."""
    value = f'"{speed}"' if isinstance(speed, str) else speed
    text = FULL.read_text().replace("speed = 10.0", f"speed = {value}").replace("duration_s = 120",
                                                                                 f"duration_s = {duration_s}")
    assert f"speed = {value}" in text and f"duration_s = {duration_s}" in text
    out = tmp_path / "full.toml"
    out.write_text(text)
    return out


def _since_start(t: float, clock) -> float:
    """Stream seconds from the clock's start to ``t``, rounded to the microsecond: ``start + 50.0 -
    start`` can come out as 49.99999999999994 (``start`` is the host's monotonic time), which would
    move a test's event by one chunk depending on when the test ran."""
    return round(t - clock.start, 6)


@pytest.fixture(scope="module")
def face_2fps():
    return configure_face_bundle(load_bundle("face-demo"), analysis_fps=2)


def test_replay_examples_ship_with_the_package():
    physio, faces, speech = (shipped_example(n) for n in ("physio-example", "face-example", "speech-example"))
    assert (physio / "meta.json").is_file() and len(list(faces.glob("*.jpg"))) == 7 and speech.suffix == ".wav"
    size = sum(f.stat().st_size for d in (physio, faces) for f in d.iterdir())
    assert size < 300_000
    assert shipped_example("no-such-example") is None
    faces_src = source_from_spec("replay:face-example@2", speed=3.0)
    assert isinstance(faces_src, VideoReplay) and faces_src.fps == 2.0 and faces_src.speed == 3.0
    assert isinstance(source_from_spec("replay:physio-example"), RecordingReplay)
    cfg = (ROOT / "setup.cfg").read_text()
    assert "data/*" in cfg and "data/*/*" in cfg


def test_full_example_fuses_three_modalities_on_one_clock(tmp_path):
    pf = load_pipeline_file(_example(tmp_path, speed="max", duration_s=70))
    called = []
    pipe = pf.build(extra_sinks=[CallbackSink(called.append)])
    assert [r.front_end.hop_s for r in pipe.runners] == [5.0, 1.0, 0.5]
    with pipe:
        estimates = list(pipe)  # the iterator and the callback see the same estimates
    assert [e.t for e in estimates] == [e.t for e in called]
    # One estimate per 0.5 s (the shortest hop) from the first face window to the end.
    assert [e.elapsed_s for e in estimates] == pytest.approx([0.5 * k for k in range(1, 141)])
    hops = {"physio": (60.0, 5.0), "audio": (3.0, 1.0), "face": (0.5, 0.5)}
    for e in estimates:
        assert set(e.available) == MODALITIES
        assert {m for m, ok in e.available.items() if not ok} == set(e.absent)  # every missing modality is named
        assert sum(e.contributions.values()) == pytest.approx(1.0) or e.stress_probability is None
        for m, est in e.modalities.items():  # each bundle's window ends on its own hop grid
            first, hop = hops[m]
            rel = est.t_end - (e.t - e.elapsed_s)
            assert rel >= first - 1e-6 and abs((rel - first) / hop - round((rel - first) / hop)) < 1e-6
            assert e.t - est.t_end < hop + 1e-6
    assert estimates[0].absent["physio"].startswith("warming up")
    full = [e for e in estimates if all(e.available.values())]
    assert full, "no estimate had all three modalities"
    for e in full:
        assert all(e.contributions[m] > 0 for m in MODALITIES)
        assert e.stress_probability is not None and e.arousal is not None and e.valence is not None
        assert set(e.modalities["physio"].probabilities) == {"baseline", "stress", "amusement"}
    # Missing modalities lower the confidence.
    assert np.mean([e.confidence for e in full]) > np.mean(
        [e.confidence for e in estimates if e.stress_probability is not None and not all(e.available.values())])
    stats = pipe.stats()
    assert stats["dropped_estimates"] == 0 and not stats["source_errors"]
    # On the lockstep clock the sources never run ahead of the worker: nothing is lost, video included.
    assert all(s["dropped_samples"] == 0 for s in stats["streams"].values()) and stats["late_windows"] == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("edgemer-")]


class _FailingWav(WavReplay):
    """The shipped speech, looped; the 'microphone' raises at 8 s."""

    def _run(self, clock, emit, stop):
        def guarded(chunk):
            if _since_start(chunk.t0, clock) >= 8.0:
                raise OSError("microphone unplugged")
            emit(chunk)
        super()._run(clock, guarded, stop)


class _GappyFaces(VideoReplay):
    """Face frames with nothing between 4 s and 8 s (camera unplugged), then frames again."""

    def _run(self, clock, emit, stop):
        super()._run(clock, lambda c: None if 4.0 <= _since_start(c.t0, clock) < 8.0 else emit(c), stop)


def test_a_failing_source_and_a_dropout_leave_the_rest_running(face_2fps):
    # A window waits max_wait = 2 s of stream for late data: less than the 4 s face gap.
    audio = _FailingWav("speech-example", speed=MAX_SPEED, loop=True, duration_s=14)
    faces = _GappyFaces(shipped_example("face-example"), speed=MAX_SPEED, fps=2, loop=True, duration_s=14)
    with Pipeline([audio, faces], ["audio-demo", face_2fps]) as pipe:
        estimates = list(pipe)  # no exception: the face modality keeps the pipeline going
    by_t = {round(e.elapsed_s, 1): e for e in estimates}
    assert max(by_t) == 14.0 and len(estimates) == 28  # output never stopped
    failed = [e for e in estimates if e.elapsed_s >= 11.0]
    assert failed and all("microphone unplugged" in e.absent["audio"] and not e.available["audio"] for e in failed)
    assert "microphone unplugged" in pipe.stats()["source_errors"]["replay:speech-example.wav"]
    gap = [e for e in estimates if 4.5 <= e.elapsed_s <= 8.0]
    assert gap and all(e.absent["face"] == "no data on 'video'" for e in gap)
    after = [e for e in estimates if e.elapsed_s > 8.0]
    assert any(e.available["face"] for e in after)  # the face rejoined without a restart
    # Only the first window of the outage waited for the late frames; the other 7 in the gap did not.
    assert pipe.stats()["late_windows"] <= 2
    assert all(e.stress_probability is not None for e in after if e.available["face"])


def test_all_sources_failing_reaches_the_caller_after_the_estimates(face_2fps):
    audio = _FailingWav("speech-example", speed=MAX_SPEED, loop=True)
    got = []
    with pytest.raises(OSError, match="unplugged"):
        with Pipeline([audio], ["audio-demo"]) as pipe:
            for e in pipe:
                got.append(e)
    # Every window the data covered (ending at 3 .. 8 s) was estimated and delivered before the error.
    assert [round(e.elapsed_s) for e in got] == [3, 4, 5, 6, 7, 8]


class _QuietEda(SimulatedWearable):
    """EDA reads NaN (sensor lost contact) from 64 s on; the other wrist streams carry on."""

    def _run(self, clock, emit, stop):
        def patched(chunk):
            if chunk.stream == "eda" and _since_start(chunk.t0, clock) >= 64:
                chunk = Chunk(chunk.stream, chunk.rate_hz, chunk.t0, np.full_like(chunk.samples, np.nan),
                              seq=chunk.seq, arrival=chunk.arrival)
            emit(chunk)
        super()._run(clock, patched, stop)


@pytest.mark.parametrize("stale_data_s", [3.0, None])
def test_stale_data_counts_as_missing_with_a_configurable_age(stale_data_s):
    config = PipelineConfig(stale_data_s=stale_data_s)
    with Pipeline([_QuietEda(speed=MAX_SPEED, duration_s=75)], ["physio-demo"], config=config) as pipe:
        est = list(pipe)
    at = {round(e.elapsed_s): e for e in est}
    assert at[60].available["physio"] and at[65].available["physio"]  # newest EDA about 1 s old at 65 s
    if stale_data_s is None:
        assert at[70].available["physio"]  # 91 % coverage is enough when age is not checked
    else:
        assert not at[70].available["physio"] and at[70].stress_probability is None
        assert at[70].absent["physio"] == "stale: newest 'eda' sample 6.0 s old (limit 3 s)"
        assert pipe.stats()["bundles"]["physio-demo"]["stale_windows"] == 2  # windows ending at 70 and 75 s


def test_bundle_rate_that_does_not_match_the_source_is_a_typed_error(face_2fps):
    with pytest.raises(SampleRateError, match=r"'audio'.*8000.0 Hz.*16000.0 Hz"):
        Pipeline([WavReplay("speech-example", rate_hz=8000)], ["audio-demo"])
    with pytest.raises(ConfigError, match=r"PipelineConfig.stale_data_s"):
        PipelineConfig(stale_data_s=0)


def test_recording_replay_loops_on_one_grid():
    rec = RecordingReplay(shipped_example("physio-example"), speed=MAX_SPEED, duration_s=2 * 120)
    rec.loop = True
    chunks: list[Chunk] = []
    clock = LockstepClock()
    rec.start(clock, chunks.append)
    clock.advance_to(clock.start + 240)  # returns once the source has delivered everything up to 240 s
    assert rec.finished
    eda = [c for c in chunks if c.stream == "eda"]
    assert rec.length_s == 120.0 and len(eda) == 120  # 2 s chunks, two laps
    t = np.array([c.t0 - clock.start for c in eda])
    assert np.allclose(np.diff(t), 2.0) and [c.seq for c in eda] == list(range(120))
    assert np.array_equal(eda[0].samples, eda[60].samples)


@pytest.mark.parametrize("table,message", [
    ('[[source]]\nspec = "simulated"\nloop = true\n', r"full.toml:\d+ source 'simulated' cannot loop"),
    ('[[source]]\nspec = "replay:speech-example"\nloop = "yes"\n', r"full.toml:\d+: 'loop' in \[\[source\]\] must be bool"),
    ('[[bundle]]\nname = "audio-demo"\nanalysis_fps = 2\n', "apply to face bundles"),
    ('[[bundle]]\nname = "audio-demo"\nface_selection = "tracked"\n', "apply to face bundles"),
    ('[[bundle]]\nname = "face-demo"\nface_selection = "nearest"\n', "selection must be 'largest' or 'tracked'"),
])
def test_new_pipeline_file_keys_are_checked(tmp_path, table, message):
    f = _example(tmp_path, speed=10.0, duration_s=120)
    f.write_text(f.read_text() + "\n" + table)
    with pytest.raises(ConfigError, match=message):
        load_pipeline_file(f)


def test_pipeline_file_sets_the_face_selection(tmp_path):
    f = _example(tmp_path, speed=10.0, duration_s=120)
    f.write_text(f.read_text().replace('analysis_fps = 2', 'analysis_fps = 2\nface_selection = "tracked"'))
    face = [b.bundle for b in load_pipeline_file(f).bundles if isinstance(b.bundle, Bundle)]
    assert [b.name for b in face] == ["face-demo"] and face[0].manifest.front_end["selection"] == "tracked"


def test_line_numbers_point_into_the_right_table(tmp_path):
    f = tmp_path / "full.toml"
    f.write_text(textwrap.dedent("""\
        [run]
        duration_s = 10

        [[source]]
        spec = "replay:speech-example"

        [[source]]
        spec = "replay:face-example"
        duration_s = "long"
        """))
    with pytest.raises(ConfigError, match=r"full.toml:9: 'duration_s' in \[\[source\]\]"):
        load_pipeline_file(f)


_STOP_SCRIPT = """
import sys, threading
from edgemer.cli import main
rc = main(["run", "--config", sys.argv[1], "--quiet", "--out", sys.argv[2]])
left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
print("RC", rc, "THREADS", left, flush=True)
"""


def test_sigterm_stops_sources_flushes_sinks_and_leaves_no_thread(tmp_path):
    config = _example(tmp_path, speed=5.0, duration_s=3600)
    out = tmp_path / "est.jsonl"
    p = subprocess.Popen([sys.executable, "-c", _STOP_SCRIPT, str(config), str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= 4:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert "RC 130 THREADS []" in stdout, stdout + stderr
    assert "stopped:" in stdout and "Traceback" not in stderr
    lines = out.read_text().splitlines()
    rows = [json.loads(x) for x in lines]  # every line complete: the sink was flushed and closed
    n = int(stdout.split("stopped: ")[1].split(" estimates")[0])
    assert len(rows) == n >= 4


def test_multimodal_benchmark_reports_every_target(tmp_path):
    from edgemer.benchmarks.commands import write_json
    from edgemer.benchmarks.soak_bench import bench_multimodal, format_multimodal

    result = bench_multimodal(overhead_duration_s=2.0, rtf_speed=20.0, rtf_duration_s=20.0, soak_hours=0.01,
                              soak_speed=20.0, progress=False)
    assert all(b["engine"] and b["engine_source"] in ("cache", "bench", "first-use", None)
               for b in result["bundle"]["bundles"])
    ids = [t["id"] for t in result["targets"]]
    assert ids == ["pipeline_overhead", "real_time_factor_one_core", "peak_rss", "soak_rss_growth",
                   "soak_latency_p99", "soak_dropped_estimates", "soak_speed"]
    o = result["overhead"]
    assert o["inference_s"] > 0 and o["processing_s"] >= o["inference_s"] + o["frontend_s"] * 0.999
    assert result["real_time"]["cpu_affinity"] and len(result["real_time"]["cpu_affinity"]) == 1
    assert result["soak"]["stream_s"] == pytest.approx(36.0) and result["soak"]["dropped_estimates"] == 0
    assert result["soak"]["rss_growth_mib"] is None  # 36 s of stream: no 10-minute warm-up to compare against
    by_id = {t["id"]: t for t in result["targets"]}
    assert by_id["soak_dropped_estimates"]["met"] is False  # met only at >= 100x
    text = format_multimodal(result)
    assert text.count("PASS") + text.count("FAIL") + text.count("n/a ") >= 7
    path = write_json(result, tmp_path)
    assert json.loads(path.read_text())["kind"] == "multimodal" and path.name.startswith(result["device"]["device_id"])


def test_peak_rss_target_names_the_engines_and_a_first_use_measurement():
    from edgemer.benchmarks.soak_bench import _engines

    cached = [{"name": "physio-demo", "engine": "litert/int8/t1", "engine_source": "cache"},
              {"name": "face-demo", "engine": "litert/int8/t2", "engine_source": "bench"}]
    assert _engines(cached) == "physio-demo litert/int8/t1, face-demo litert/int8/t2"
    measured = [{**cached[0], "engine_source": "first-use"}, cached[1]]
    assert "first-use engine measurement" in _engines(measured)
    assert _engines([{"name": "audio-demo"}]) == "audio-demo ?"  # a result written before engines were recorded


def test_python_api_stops_from_a_sigterm_handler(tmp_path, face_2fps):
    from edgemer.sinks import JsonlSink

    out = tmp_path / "est.jsonl"
    audio = WavReplay("speech-example", speed=5, loop=True)
    faces = VideoReplay(shipped_example("face-example"), speed=5, fps=2, loop=True)
    pipe = Pipeline([audio, faces], ["audio-demo", face_2fps], sinks=[JsonlSink(out)])
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: pipe.request_stop())
    try:
        got = []
        with pipe:
            for e in pipe:
                got.append(e)
                if len(got) == 3:
                    signal.raise_signal(signal.SIGTERM)  # iteration ends: the worker has stopped
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(got) >= 3 and len(out.read_text().splitlines()) == pipe.estimates
    assert not [t for t in threading.enumerate() if t.name.startswith("edgemer-")]


class _FlatBvp(SimulatedWearable):
    """The BVP sensor reads a constant (optical sensor off the skin) from 50 s on."""

    def _run(self, clock, emit, stop):
        def patched(chunk):
            if chunk.stream == "bvp" and _since_start(chunk.t0, clock) >= 50:
                chunk = Chunk(chunk.stream, chunk.rate_hz, chunk.t0, np.full_like(chunk.samples, 0.5),
                              seq=chunk.seq, arrival=chunk.arrival)
            emit(chunk)
        super()._run(clock, patched, stop)


def test_flat_lines_count_as_missing_with_a_clear_reason(tmp_path):
    from scipy.io import wavfile

    with Pipeline([_FlatBvp(speed=MAX_SPEED, duration_s=120)], ["physio-demo"]) as pipe:
        est = list(pipe)
    at = {round(e.elapsed_s): e for e in est}
    assert at[105].available["physio"]  # 5 s of flat BVP inside a 60 s window: not a flat window
    assert not at[115].available["physio"] and at[115].absent["physio"].startswith("flat line on 'bvp'")
    assert pipe.stats()["bundles"]["physio-demo"]["flat_windows"] == 3  # windows ending at 110, 115 and 120 s
    muted = tmp_path / "muted.wav"
    wavfile.write(muted, 16000, np.zeros(5 * 16000, np.int16))  # a muted microphone: digital silence
    with Pipeline([WavReplay(muted, speed=MAX_SPEED)], ["audio-demo"]) as pipe:
        est = list(pipe)
    assert est and all(e.absent == {"audio": "flat line on 'audio' for the whole 3 s window (sensor off, muted or "
                                             "saturated?)"} for e in est)
