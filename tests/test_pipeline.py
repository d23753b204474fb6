"""The pipeline runs the shipped bundle on simulated and replayed wearables, end to end.

Sources run at speed MAX_SPEED (the lockstep clock): as fast as the pipeline consumes them,
so exact counts of windows and drops hold however busy the machine is."""
import json
import threading

import numpy as np
import pytest

from edgemer import Pipeline, PipelineConfig
from edgemer.clock import MAX_SPEED
from edgemer.errors import ConfigError, SampleRateError
from edgemer.fusion import FusionConfig
from edgemer.simulate import WRIST_STREAMS
from edgemer.sinks import JsonlSink
from edgemer.recorder import RecordingReplay
from edgemer.sources import SimulatedWearable, ThreadedSource, WesadReplay
from edgemer.types import Chunk, StreamSpec


def _run(source, **config):
    with Pipeline([source], ["physio-demo"], config=PipelineConfig(**config)) as pipe:
        estimates = list(pipe)
    return pipe, estimates


def test_one_estimate_per_hop_after_the_first_window():
    pipe, est = _run(SimulatedWearable(speed=MAX_SPEED, duration_s=120))
    assert len(est) == 13  # windows ending at 60, 65, ..., 120 s
    assert [round(e.elapsed_s) for e in est[:3]] == [60, 65, 70]
    for e in est:
        assert sum(e.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert 0.0 <= e.stress_probability <= 1.0
        assert e.available == {"physio": True}
        phys = e.modalities["physio"]
        assert len(phys.extras["eda_forecast_uS"]) == 40  # 10 s at 4 Hz
        assert e.latency_s >= 0 and e.inference_s > 0
    assert pipe.stats()["streams"]["eda"]["dropped_samples"] == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("edgemer-")]


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_demo_bundle_tells_stress_from_baseline_on_the_simulator(backend):
    # Demo scenario: 120 s baseline, 150 s stress, 90 s baseline, 120 s amusement, 90 s meditation.
    _, est = _run(SimulatedWearable(speed=MAX_SPEED, duration_s=570, seed=3), backend=backend,
                  fusion=FusionConfig(smoothing="none"))
    by_truth = {}
    for e in est:
        by_truth.setdefault(e.reference, []).append(e.stress_probability)
    assert np.mean(by_truth["stress"]) > np.mean(by_truth["baseline"]) + 0.3


def test_callback_and_jsonl_sink(tmp_path):
    got = []
    out = tmp_path / "est.jsonl"
    with Pipeline([SimulatedWearable(speed=MAX_SPEED, duration_s=75)], ["physio-demo"], sinks=[JsonlSink(out)],
                  callback=got.append) as pipe:
        pipe.wait()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == len(got) == 4
    assert set(lines[0]) >= {"t", "stress_probability", "probabilities", "latency_s", "modalities", "available"}
    assert lines[0]["modalities"]["physio"]["extras"]["physics"]["alpha_0"] > 0


class _NanWearable(SimulatedWearable):
    """Drops out (NaN EDA) for 20 s from t=70 s."""

    def _run(self, clock, emit, stop):
        def patched(chunk):
            rel = round(chunk.t0 - clock.start, 6)  # start + 70.0 - start can be 69.99999999999994
            if chunk.stream == "eda" and 70 <= rel < 90:
                chunk = Chunk(chunk.stream, chunk.rate_hz, chunk.t0, np.full_like(chunk.samples, np.nan),
                              arrival=chunk.arrival)
            emit(chunk)
        super()._run(clock, patched, stop)


def test_nan_samples_are_counted_and_low_coverage_windows_skipped():
    pipe, est = _run(_NanWearable(speed=MAX_SPEED, duration_s=120))
    stats = pipe.stats()
    assert stats["streams"]["eda"]["nan_samples"] == 80
    # Windows ending 70..85 s lose < 20 % of EDA (filled); later ones 25-33 %: skipped, named as missing.
    assert stats["bundles"]["physio-demo"]["skipped_windows"] > 0
    missing = [e for e in est if not e.available["physio"]]
    assert missing and all(e.stress_probability is None for e in missing)
    assert len(est) == 13  # output never stops


class _WrongRate(ThreadedSource):
    name = "wrong"
    streams = tuple(StreamSpec(s.name, s.rate_hz * (2 if s.name == "eda" else 1), s.channels)
                    for s in WRIST_STREAMS)

    def _run(self, clock, emit, stop):
        pass


def test_source_with_wrong_rate_is_refused_before_start():
    with pytest.raises(SampleRateError, match="8.0 Hz"):
        Pipeline([_WrongRate()], ["physio-demo"])


def test_missing_stream_is_named():
    class OnlyEda(_WrongRate):
        streams = (StreamSpec("eda", 4.0),)

    with pytest.raises(ConfigError, match="'bvp'"):
        Pipeline([OnlyEda()], ["physio-demo"])


class _Broken(SimulatedWearable):
    def _run(self, clock, emit, stop):
        raise OSError("sensor unplugged")


def test_source_failure_reaches_the_caller():
    with pytest.raises(OSError, match="unplugged"):
        with Pipeline([_Broken(speed=MAX_SPEED)], ["physio-demo"]) as pipe:
            list(pipe)


def test_wesad_replay_runs_through_the_same_pipeline(small_wesad):
    pipe, est = _run(WesadReplay(small_wesad, subject="S3", speed=MAX_SPEED))
    assert len(est) == 37  # 240 s recording: windows ending at 60, 65, ..., 240 s
    assert {e.reference for e in est} <= {"baseline", "stress", "amusement", "meditation", "transient"}


def test_recording_replays_bit_exact(tmp_path):
    rec = tmp_path / "rec"
    seen_live, seen_replay = [], []

    class Tap(SimulatedWearable):
        def _run(self, clock, emit, stop):
            super()._run(clock, lambda c: (seen_live.append(c), emit(c)), stop)

    with Pipeline([Tap(speed=MAX_SPEED, duration_s=70)], ["physio-demo"], record=rec) as pipe:
        live = list(pipe)
    replay = RecordingReplay(rec, speed=MAX_SPEED)
    orig_emit = replay._run

    def tapped(clock, emit, stop):
        orig_emit(clock, lambda c: (seen_replay.append(c), emit(c)), stop)

    replay._run = tapped
    with Pipeline([replay], ["physio-demo"]) as pipe:
        again = list(pipe)
    assert len(seen_live) == len(seen_replay) == 70 * 5
    for a, b in zip(seen_live, seen_replay):
        assert a.stream == b.stream and a.seq == b.seq and a.samples.tobytes() == b.samples.tobytes()
        assert abs((a.t0 - seen_live[0].t0) - (b.t0 - seen_replay[0].t0)) < 1e-9
    assert [e.probabilities for e in live] == [e.probabilities for e in again]


def test_calibration_records_the_wearers_baseline_and_reloads(tmp_path):
    from edgemer.calibration import Baseline, CalibrationConfig
    from edgemer.simulate import SubjectTraits

    wearer = SubjectTraits(tonic_uS=8.0, rest_hr_bpm=88.0, skin_temp_c=34.2)
    saved = tmp_path / "alice.json"
    cal = CalibrationConfig(duration_s=120, user="alice", save_to=saved)
    src = SimulatedWearable(speed=MAX_SPEED, duration_s=300, traits=wearer, scenario=[(1, 150.0), (2, 150.0)])
    with Pipeline([src], ["physio-demo"], calibration=cal) as pipe:
        est = list(pipe)
    assert [e.calibrating for e in est[:14]] == [True] * 13 + [False]
    baseline = Baseline.load(saved)
    assert baseline.user == "alice" and baseline.windows == 13
    assert abs(baseline.levels["physio"]["eda"] - 8.0) < 0.5
    assert abs(baseline.levels["physio"]["hr"] - 88.0) < 6.0
    # Reloading applies the baseline at once: no calibration phase.
    src = SimulatedWearable(speed=MAX_SPEED, duration_s=70, traits=wearer)
    with Pipeline([src], ["physio-demo"], calibration=CalibrationConfig(load_from=saved)) as pipe:
        again = list(pipe)
        shift = pipe.runners[0].front_end._baseline_shift[:, 0]
    assert not any(e.calibrating for e in again)
    assert shift[0] == pytest.approx(8.0 - pipe.runners[0].front_end.config.mean[0], abs=0.5)


def test_lockstep_waits_for_a_slow_worker_and_refuses_sources_it_cannot_pace():
    import time

    from edgemer.sources import source_from_spec

    def slow(estimate):  # a worker far slower than a 60 s window at "max" speed on any machine
        time.sleep(0.05)

    # The rings hold 30 s beyond the window: a source running ahead of this worker on the wall clock
    # (1 s of stream per 50 ms at 20x, per 1 ms at 1000x) would overwrite samples before they are used.
    src = SimulatedWearable(speed=MAX_SPEED, duration_s=180, chunk_s=0.25)
    with Pipeline([src], ["physio-demo"], callback=slow) as pipe:
        est = list(pipe)
    stats = pipe.stats()
    assert [round(e.elapsed_s) for e in est] == list(range(60, 181, 5)) and pipe.lockstep
    assert all(s["dropped_samples"] == 0 for s in stats["streams"].values()) and stats["late_windows"] == 0
    with pytest.raises(ConfigError, match="serial:loop://.*cannot run at speed max"):
        Pipeline([source_from_spec("serial:loop://", speed=MAX_SPEED)], ["physio-demo"])
