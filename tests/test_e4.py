"""Empatica E4 sessions (edgemer.sources.e4): reading an export folder or zip, aligning the
streams, tags, bad input, and replaying a session built from real recordings."""
from __future__ import annotations

import threading
import zipfile

import numpy as np
import pytest
from scipy import signal

from edgemer.errors import DatasetError
from edgemer.sources import source_from_spec
from edgemer.sources.e4 import E4Replay, read_e4_session, write_e4_session

START = 1_700_000_000.0


class _InstantClock:
    """A clock the test controls: stream time passes as fast as the source asks."""

    start = 0.0

    def attach(self) -> None:  # a lockstep clock counts the threads it waits for; this one waits for none
        pass

    def detach(self) -> None:
        pass

    def sleep_until(self, t: float, stop: threading.Event) -> bool:
        return not stop.is_set()


def _real_streams(cache, seconds=None):
    """E4-rate streams from real recordings: heartpy's data2 PPG (motion artifacts in its first
    minute) as BVP, systole's Task1 EDA; TEMP and ACC (not in those recordings) constant + noise."""
    from edgemer.benchmarks.physio_recordings import ppg_recordings, task1

    ppg = next(r for r in ppg_recordings(cache, 100.0) if r.name == "heartpy/data2.csv")
    bvp = signal.resample_poly(ppg.signal, 16, 25)
    n = int(bvp.size // 64) if seconds is None else seconds
    eda = signal.resample_poly(task1(cache)["eda"][:n * 1000 + 1000], 1, 250)
    rng = np.random.default_rng(0)
    acc = np.column_stack([rng.normal(0, 1, n * 32), rng.normal(0, 1, n * 32), 64 + rng.normal(0, 1, n * 32)])
    return {"eda": eda[:n * 4], "bvp": bvp[:n * 64], "temp": np.full(n * 4, 33.25), "acc": acc}


@pytest.fixture(scope="module")
def real_session(physio_cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("e4") / "session"
    streams = _real_streams(physio_cache)
    write_e4_session(folder, START, streams, tags_unix=np.array([START + 70.0, START + 100.5]))
    return folder, streams


def test_a_session_folder_and_its_zip_read_the_same(real_session, tmp_path):
    folder, streams = real_session
    s = read_e4_session(folder)
    assert s.start_unix == START and s.duration_s == pytest.approx(128.0)
    assert s.streams["bvp"].shape == (128 * 64, 1) and s.streams["acc"].shape == (128 * 32, 3)
    np.testing.assert_allclose(s.streams["eda"][:, 0], streams["eda"], rtol=1e-5)
    np.testing.assert_allclose(s.tags_s, [70.0, 100.5])
    z = tmp_path / "session.zip"
    with zipfile.ZipFile(z, "w") as out:
        for f in folder.iterdir():
            out.write(f, f"export/{f.name}")  # inside a sub-folder, as some exports are
    s2 = read_e4_session(z)
    for name in s.streams:
        np.testing.assert_array_equal(s.streams[name], s2.streams[name])


def test_streams_are_aligned_on_their_start_times(tmp_path):
    n = 30
    streams = {"eda": np.full(n * 4, 2.0), "bvp": np.zeros(n * 64), "temp": np.full(n * 4, 33.0),
               "acc": np.zeros((n * 32, 3))}
    write_e4_session(tmp_path, START, streams)
    bvp = (tmp_path / "BVP.csv").read_text().splitlines()
    bvp[0] = f"{START + 2.0:.6f}"  # BVP started 2 s after the others
    (tmp_path / "BVP.csv").write_text("\n".join(bvp) + "\n")
    s = read_e4_session(tmp_path)
    assert s.duration_s == pytest.approx(n)  # ends with the shortest stream (EDA, TEMP, ACC: 30 s)
    assert np.isnan(s.streams["bvp"][:128]).all() and np.isfinite(s.streams["bvp"][128:]).all()


def _session(tmp_path):
    n = 10
    return write_e4_session(tmp_path / "s", START, {"eda": np.ones(n * 4), "bvp": np.zeros(n * 64),
                                                    "temp": np.full(n * 4, 33.0), "acc": np.zeros((n * 32, 3))})


def test_bad_exports_name_the_file_and_the_fix(tmp_path):
    folder = _session(tmp_path)
    (folder / "TEMP.csv").unlink()
    with pytest.raises(DatasetError, match="TEMP.csv is missing"):
        read_e4_session(folder)
    folder = _session(tmp_path / "b")
    lines = (folder / "EDA.csv").read_text().splitlines()
    (folder / "EDA.csv").write_text("\n".join(["4.000000"] + lines[1:]) + "\n")  # header: a rate, not a time
    with pytest.raises(DatasetError, match="EDA.csv: the first line must be the session's start time"):
        read_e4_session(folder)
    folder = _session(tmp_path / "c")
    lines = (folder / "BVP.csv").read_text().splitlines()
    (folder / "BVP.csv").write_text("\n".join([lines[0], "128.000000"] + lines[2:]) + "\n")
    with pytest.raises(DatasetError, match="BVP.csv: the second line must be the sample rate 64 Hz.*resample"):
        read_e4_session(folder)
    folder = _session(tmp_path / "d")
    lines = (folder / "ACC.csv").read_text().splitlines()
    (folder / "ACC.csv").write_text("\n".join(",".join(r.split(",")[:2]) for r in lines) + "\n")
    with pytest.raises(DatasetError, match="ACC.csv: expected .* 3 column"):
        read_e4_session(folder)
    folder = _session(tmp_path / "e")
    lines = (folder / "TEMP.csv").read_text().splitlines()
    (folder / "TEMP.csv").write_text("\n".join([f"{START + 3600:.6f}"] + lines[1:]) + "\n")
    with pytest.raises(DatasetError, match="do not overlap.*different sessions"):
        read_e4_session(folder)
    z = tmp_path / "cut.zip"
    with zipfile.ZipFile(z, "w") as out:
        for f in _session(tmp_path / "f").iterdir():
            out.write(f, f.name)
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    with pytest.raises(DatasetError, match="cut.zip: not a readable zip.*truncated"):
        read_e4_session(z)
    with pytest.raises(DatasetError, match="no such E4 export"):
        source_from_spec(f"replay:e4:{tmp_path / 'nothing'}")


def test_replayed_real_session_gives_features_flags_and_tags(real_session):
    from edgemer.bundle import load_bundle
    from edgemer.frontends.physio import FEATURES, WristFrontEnd
    from edgemer.types import Window

    folder, _ = real_session
    src = source_from_spec(f"replay:e4:{folder}", speed=10.0)
    assert isinstance(src, E4Replay) and {s.name for s in src.streams} == {"eda", "bvp", "temp", "acc", "tag"}
    chunks = []
    src.start(_InstantClock(), chunks.append)
    src._thread.join(timeout=60)
    assert src.finished and src.error is None
    assert src.health() == {"tags": 2, "last_tag_s": 100.5}
    data = {name: np.concatenate([c.samples for c in chunks if c.stream == name]) for name in ("eda", "bvp", "temp",
                                                                                                "acc", "tag")}
    assert np.flatnonzero(data["tag"][:, 0]).tolist() == [280, 402]  # 70 s and 100.5 s at 4 Hz
    fe = WristFrontEnd.from_manifest(load_bundle("physio-demo").manifest)
    features = []
    for t_end in (60.0, 120.0):  # the first minute has motion artifacts, the second is clean
        window = Window(t_end=t_end, length_s=60.0, coverage={},
                        streams={n: data[n][int((t_end - 60) * r):int(t_end * r)]
                                 for n, r in (("eda", 4), ("bvp", 64), ("temp", 4), ("acc", 32))})
        feeds, info = fe.prepare(window)
        est = fe.interpret({"class_logits": np.zeros((1, len(fe.labels)))}, t_end, "physio-demo")
        assert est.extras["features"] is info["features"] and set(FEATURES) <= set(info["features"])
        features.append(info["features"])
    first, second = features
    assert first["heart_rate_bpm"] is None and "quality" in first["missing"]["heart_rate_bpm"]
    assert 55 < second["heart_rate_bpm"] < 75 and second["hr_quality"] > 0.5
    assert second["temp_c"] == pytest.approx(33.25) and 6 < second["eda_tonic_uS"] < 15


def test_e4_sessions_and_a_timetable_become_a_wesad_folder_for_training(real_session, tmp_path):
    from edgemer.export.physio.e4 import e4_to_wesad
    from edgemer.export.physio.windows import WindowOptions, subject_windows
    from edgemer.wesad import find_subjects, load_subject

    folder, streams = real_session
    table = tmp_path / "timetable.csv"
    table.write_text("subject,condition,start_s,end_s\nS2,baseline,0,64\nS2,stress,64,128\nS3,amusement,10,128\n")
    out = e4_to_wesad({"S2": folder, "S3": folder}, table, tmp_path / "wesad")
    subjects = find_subjects(out)
    assert [p.stem for p in subjects] == ["S2", "S3"]
    rec = load_subject(subjects[0])
    np.testing.assert_allclose(rec.wrist["bvp"][:, 0], streams["bvp"], rtol=1e-5)
    assert rec.label.shape == (128 * 700,) and set(np.unique(rec.label)) == {1, 2}
    w = subject_windows(rec, WindowOptions(window_s=40.0, train_hop_s=4.0, forecast_s=4.0))
    assert set(w.labels.tolist()) == {0, 1} and np.isfinite(w.features[:, 0]).all()  # baseline and stress windows
    # the command-line path; bad timetables name the line and the fix
    from edgemer.cli import main as edgemer_main

    assert edgemer_main(["data", "e4-to-wesad", "--session", f"S3={folder}", "--timetable", str(table),
                         "--out", str(tmp_path / "w2")]) == 0
    assert set(np.unique(load_subject(tmp_path / "w2" / "S3" / "S3.pkl").label)) == {0, 3}
    bad = tmp_path / "bad.csv"
    bad.write_text("subject,condition,start_s,end_s\nS2,panic,0,10\n")
    with pytest.raises(DatasetError, match="line 2: condition 'panic' is not one of baseline"):
        e4_to_wesad({"S2": folder}, bad, tmp_path / "w3")
    bad.write_text("subject,condition,start_s,end_s\nS2,stress,0,500\n")
    with pytest.raises(DatasetError, match="ends after the session"):
        e4_to_wesad({"S2": folder}, bad, tmp_path / "w4")
    with pytest.raises(DatasetError, match="no rows for subject S9"):
        e4_to_wesad({"S9": folder}, table, tmp_path / "w5")
