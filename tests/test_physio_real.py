"""Physiology front-ends on real recordings (heartpy's and systole's, fetched at test time)
and the import cost of the runtime."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np


def _scipy_modules_after(code: str) -> list[str]:
    code = ("import sys, json\n" + code
            + "\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_scipy_signal_is_imported_where_used_not_by_import_edgemer():
    # importing the runtime and its physiology front-end maps no scipy; a heart rate brings scipy.signal
    assert _scipy_modules_after("import edgemer, edgemer.config, edgemer.frontends.physio, edgemer.frontends.heart") == []
    loaded = _scipy_modules_after(
        "import numpy as np\nfrom edgemer.frontends.physio import heart_rate_from_bvp\n"
        "hr, beats = heart_rate_from_bvp(np.sin(2 * np.pi * 1.2 * np.arange(3840) / 64.0), 64.0, 240)\n"
        "assert 70 <= beats <= 73 and abs(float(np.nanmedian(hr)) - 72.0) < 0.5, (beats, hr)")
    assert "scipy.signal" in loaded


# -- heart rate on real recordings -------------------------------------------------------------

import pytest  # noqa: E402
from scipy import signal as sp_signal  # noqa: E402

from edgemer.errors import ConfigError, InputError  # noqa: E402
from edgemer.frontends.heart import (HeartRateConfig, ecg_heart_rate, heart_rate, ibi_clean,  # noqa: E402
                                     ppg_heart_rate)


def _ppg(cache, name):
    from edgemer.benchmarks.physio_recordings import ppg_recordings

    return next(r for r in ppg_recordings(cache, 100.0) if r.name == name)


def _bvp_window(rec, start_s, window_s=60.0):
    """A window of a 100 Hz recording at the wrist BVP rate, 64 Hz (as the runtime sees it)."""
    x = rec.signal[int(start_s * 100):int((start_s + window_s) * 100)]
    return x, sp_signal.resample_poly(x, 16, 25)


def test_motion_artifacts_in_real_ppg_are_flagged_not_reported_as_a_rate(physio_cache):
    # heartpy's data2.csv: the first minute has motion artifacts (the issue: 111.9 bpm where ~65 is right)
    _, bvp = _bvp_window(_ppg(physio_cache, "heartpy/data2.csv"), 0.0)
    hr = ppg_heart_rate(bvp, 64.0)
    assert hr.flagged and np.isnan(hr.bpm) and hr.quality < 0.5
    assert "quality" in hr.reason or "clean" in hr.reason
    # the beats found are not a pulse: their beat-to-beat rates scatter far outside any heart's
    rates = 60.0 / hr.ibi_s
    assert np.std(rates) > 20 and (rates > 150).sum() >= 3 and (rates < 30).sum() >= 3
    # the wrist front-end gives the model no heart rate for this window: NaN, which normalise() makes the training mean
    from edgemer.frontends.physio import WristFrontEnd, WristFrontEndConfig, window_features, wrist_features

    streams = {"eda": np.full((240, 1), 3.0), "bvp": bvp[:, None], "temp": np.full((240, 1), 33.0),
               "acc": np.tile([0.0, 0.0, 64.0], (1920, 1))}
    feats, info = wrist_features(streams, 60.0)
    assert np.isnan(feats[1]).all() and info["heart_rate"].flagged
    fe = WristFrontEnd(WristFrontEndConfig(), ("baseline", "stress", "amusement"))
    assert (fe.normalise(feats)[1] == 0.0).all()
    summary = window_features(feats, info)
    assert summary["heart_rate_bpm"] is None and summary["missing"]["heart_rate_bpm"] == hr.reason
    assert summary["temp_c"] == 33.0 and summary["eda_tonic_uS"] == pytest.approx(3.0)


def test_beats_in_an_artifact_window_score_lower_than_in_clean_real_ppg(physio_cache):
    _, noisy = _bvp_window(_ppg(physio_cache, "heartpy/data2.csv"), 0.0)
    _, clean = _bvp_window(_ppg(physio_cache, "systole/ppg.npy"), 0.0)
    q_noisy, q_clean = ppg_heart_rate(noisy, 64.0).beat_quality, ppg_heart_rate(clean, 64.0).beat_quality
    bad_noisy, bad_clean = (q_noisy < 0.8).mean(), (q_clean < 0.8).mean()
    assert np.median(q_clean) > 0.9 and bad_clean < 0.05 and bad_noisy > 0.2, (bad_noisy, bad_clean)


@pytest.mark.parametrize("name, start_s", [("systole/ppg.npy", 0.0), ("systole/ppg.npy", 120.0),
                                           ("heartpy/data3.csv", 0.0), ("heartpy/data3.csv", 450.0),
                                           ("heartpy/data2.csv", 60.0)])
def test_clean_real_ppg_windows_agree_with_heartpy_and_neurokit2_within_3_bpm(physio_cache, name, start_s):
    pytest.importorskip("heartpy")
    pytest.importorskip("neurokit2")
    import warnings

    from edgemer.benchmarks.physio_bench import consensus_rate

    x100, bvp = _bvp_window(_ppg(physio_cache, name), start_s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = consensus_rate(x100, 100.0)
    assert ref["coverage"] >= 0.5, ref  # the two references agree on most beats here
    hr = ppg_heart_rate(bvp, 64.0)
    assert not hr.flagged and abs(hr.bpm - ref["bpm"]) <= 3.0, (hr, ref)


def test_ecg_heart_rate_on_task1_matches_neurokit2_r_peaks(physio_cache):
    nk = pytest.importorskip("neurokit2")
    from edgemer.benchmarks.physio_recordings import task1

    ecg = sp_signal.resample_poly(task1(physio_cache)["ecg"][:600_000], 1, 4)  # 10 min at 250 Hz
    for start in (0, 240, 480):
        win = ecg[start * 250:(start + 60) * 250]
        _, info = nk.ecg_peaks(win, sampling_rate=250)
        ref = 60.0 / np.diff(np.asarray(info["ECG_R_Peaks"]) / 250.0).mean()
        hr = ecg_heart_rate(win, 250.0)
        assert not hr.flagged and abs(hr.bpm - ref) <= 3.0, (start, hr, ref)


def test_ibi_cleaning_drops_missed_and_extra_beats_and_out_of_range_intervals():
    ibi = np.full(40, 0.8)
    ibi[10] = 1.6           # a missed beat
    ibi[20:22] = 0.4        # an extra beat splits one interval
    ibi[30] = 0.2           # 300 bpm: outside the limits
    beat_t = np.concatenate([[0.0], np.cumsum(ibi)])
    got, clean = ibi_clean(beat_t, np.ones(beat_t.size, bool))
    np.testing.assert_allclose(got, ibi)
    assert set(np.flatnonzero(~clean)) == {10, 20, 21, 30}
    hr = heart_rate((beat_t * 64).round().astype(int), np.ones(beat_t.size), 64.0, beat_t[-1])
    assert hr.bpm == pytest.approx(75.0, abs=0.2) and hr.n_clean == 36
    # a bad beat takes both its intervals out; too few clean beats: missing, with the reason
    q = np.ones(beat_t.size)
    q[5] = 0.3
    assert ibi_clean(beat_t, q >= 0.8)[1][4:6].tolist() == [False, False]
    few = heart_rate((beat_t[:6] * 64).round().astype(int), np.ones(6), 64.0, 60.0)
    assert few.flagged and np.isnan(few.bpm) and "clean" in few.reason
    with pytest.raises(ConfigError, match="max_change"):
        HeartRateConfig(max_change=1.5)
    with pytest.raises(InputError, match="finite"):
        ppg_heart_rate(np.array([1.0, np.nan, 2.0] * 100), 64.0)


# -- EDA on Task1 ------------------------------------------------------------------------------

def test_eda_decomposition_and_scrs_on_real_task1_match_neurokit2(physio_cache):
    nk = pytest.importorskip("neurokit2")
    from edgemer.benchmarks.physio_recordings import task1
    from edgemer.frontends.eda import eda_features, eda_peaks, eda_phasic

    eda = sp_signal.resample_poly(task1(physio_cache)["eda"], 1, 250)  # 4 Hz, 25.6 min
    ref = nk.eda_phasic(eda, sampling_rate=4)
    _, info = nk.eda_peaks(ref["EDA_Phasic"].to_numpy(), sampling_rate=4)
    nk_peaks = np.asarray(info["SCR_Peaks"], float) / 4.0
    tonic, phasic = eda_phasic(eda, 4.0)
    scr = eda_peaks(phasic, 4.0)
    matched = (np.abs(nk_peaks[:, None] - scr.peak_s[None, :]).min(axis=1) <= 1.0).mean()
    assert matched >= 0.9
    # a 60 s window on its own (as the device sees it): the tonic level stays within 0.05 µS (median)
    errs = [np.median(np.abs(eda_phasic(eda[a:a + 240], 4.0)[0] - ref["EDA_Tonic"].to_numpy()[a:a + 240]))
            for a in range(0, eda.size - 240, 480)]
    assert np.median(errs) <= 0.05
    # SCR shapes in published ranges: onset before peak, rises of 0.5-5 s typical
    assert (scr.rise_s > 0).all() and 0.5 <= np.median(scr.rise_s) <= 5.0
    assert (scr.amplitude_uS >= 0.05).all()
    f = eda_features(eda[:240], 4.0)
    assert 6.0 < f["eda_tonic_uS"] < 15.0 and f["scr_per_min"] >= 0
