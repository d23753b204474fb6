"""The numpy stand-ins for scipy.signal (edgemer.frontends.signal_np) give scipy's results, and
the runtime does not import scipy.signal or scipy.io (about 65 MiB of resident memory)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import signal

from edgemer.errors import ConfigError
from edgemer.frontends import signal_np as sn


@pytest.mark.parametrize("rate", [32.0, 64.0, 128.0])
def test_butterworth_band_pass_has_scipys_response_and_steady_start(rate):
    ours = sn.butter_bandpass_sos(2, 0.7, 3.0, rate)
    ref = signal.butter(2, [0.7, 3.0], btype="bandpass", fs=rate, output="sos")
    _, h_ours = signal.sosfreqz(ours, worN=1024, fs=rate)
    _, h_ref = signal.sosfreqz(ref, worN=1024, fs=rate)
    np.testing.assert_allclose(h_ours, h_ref, atol=1e-12)
    # scipy's own sections through our filter and initial conditions: the same samples and final state
    x = np.cumsum(np.random.default_rng(1).normal(size=3000)) + 40.0
    y_ref, zf_ref = signal.sosfilt(ref, x, zi=signal.sosfilt_zi(ref) * x[0])
    y, zf = sn.sosfilt(ref, x, zi=sn.sosfilt_zi(ref) * x[0])
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-10 * np.abs(y_ref).max())
    np.testing.assert_allclose(zf, zf_ref, atol=1e-9)


@pytest.mark.parametrize("n", [1, 5, 127, 128, 129, 3840])
def test_sosfilt_matches_scipy_for_any_length_and_continues_from_its_final_state(n):
    rng = np.random.default_rng(n)
    sos = sn.butter_bandpass_sos(2, 0.7, 3.0, 64.0)
    x, more = rng.normal(size=n) + 3.0, rng.normal(size=200)
    zi = sn.sosfilt_zi(sos) * x[0]
    y, zf = sn.sosfilt(sos, x, zi=zi)
    y_ref, zf_ref = signal.sosfilt(sos, x, zi=zi)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-11)
    np.testing.assert_allclose(sn.sosfilt(sos, more, zi=zf)[0], signal.sosfilt(sos, more, zi=zf_ref)[0], atol=1e-11)
    np.testing.assert_allclose(sn.sosfilt(sos, x)[0], signal.sosfilt(sos, x), atol=1e-11)  # zero initial state


def test_find_peaks_gives_scipys_indices_on_noise_plateaus_and_pulses():
    rng = np.random.default_rng(0)
    sos = signal.butter(2, [0.7, 3.0], btype="bandpass", fs=64.0, output="sos")
    cases = 0
    for trial in range(150):
        n = int(rng.integers(3, 3000))
        x = [rng.normal(size=n), np.round(rng.normal(size=n) * 2),  # ties and flat tops
             signal.sosfilt(sos, np.cumsum(rng.normal(size=n)))][trial % 3]
        for distance in (None, 1, 5, 19.2):
            for prominence in (None, 0.0, 0.5, float(np.std(x))):
                want = signal.find_peaks(x, distance=distance, prominence=prominence)[0]
                np.testing.assert_array_equal(sn.find_peaks(x, distance=distance, prominence=prominence), want)
                cases += 1
    assert cases == 150 * 16
    assert sn.find_peaks(np.array([0.0, 1.0, 1.0, 1.0, 0.0, 2.0])).tolist() == [2]  # flat top: its middle
    assert sn.find_peaks(np.array([1.0, 0.0])).size == 0
    with pytest.raises(ConfigError, match="distance"):
        sn.find_peaks(np.zeros(10), distance=0.5)


@pytest.mark.parametrize("numtaps, cutoff", [(21, 1 / 3), (61, 0.5), (3201, 1 / 160)])
def test_kaiser_low_pass_equals_scipy_firwin(numtaps, cutoff):
    np.testing.assert_allclose(sn.firwin_lowpass(numtaps, cutoff, beta=5.0),
                               signal.firwin(numtaps, cutoff, window=("kaiser", 5.0)), atol=1e-15)


def test_bad_design_parameters_name_the_problem():
    with pytest.raises(ConfigError, match="edges"):
        sn.butter_bandpass_sos(2, 3.0, 0.7, 64.0)
    with pytest.raises(ConfigError, match="order"):
        sn.butter_bandpass_sos(0, 0.7, 3.0, 64.0)
    with pytest.raises(ConfigError, match="cutoff"):
        sn.firwin_lowpass(11, 1.5)


def _scipy_modules_after(code: str) -> list[str]:
    code = ("import sys, json\n" + code
            + "\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_runtime_path_leaves_scipy_signal_and_io_unimported():
    # physiology (heart rate from BVP), face, a PCM WAV read and the pipeline file loader: no scipy at all
    assert _scipy_modules_after(
        "import numpy as np, edgemer.config, edgemer.frontends.face\n"
        "from edgemer.frontends.physio import heart_rate_from_bvp\n"
        "from edgemer.sources.wav_replay import example_wav, load_wav_mono\n"
        "x, info = load_wav_mono(example_wav(), 16000)\n"
        "hr, beats = heart_rate_from_bvp(np.sin(2 * np.pi * 1.2 * np.arange(3840) / 64.0), 64.0, 240)\n"
        "assert x.size > 0 and 70 <= beats <= 73, beats") == []
    # a log-mel speech front-end brings scipy.fft (fast batched FFT), but not scipy.signal / io / linalg
    loaded = _scipy_modules_after("from edgemer.frontends.audio_dsp import LogMelExtractor\nLogMelExtractor()")
    assert "scipy.fft" in loaded
    assert not [m for m in loaded if m.split(".")[1:2] in (["signal"], ["io"], ["linalg"], ["sparse"])]
