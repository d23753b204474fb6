"""Device clock -> pipeline clock: the online offset + drift fit, on synthetic pings with realistic jitter."""
import numpy as np
import pytest

from edgemer.errors import ConfigError
from edgemer.firmware_bridge.clocksync import ClockMapper, ClockSyncConfig

H0 = 5000.0  # host time at which the device booted, s


def device_us(host_s, drift_ppm, start_us=3_000_000):
    return start_us + (host_s - H0) * (1 + drift_ppm * 1e-6) * 1e6


def run_pings(mapper, drift_ppm, seconds, seed=0, every_s=0.5, spikes=0.05):
    """Ping for ``seconds``; returns the worst online mapping error (s) of samples taken just before each ping."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for t in np.arange(H0 + 0.1, H0 + seconds, every_s):
        d1, d2 = 5e-5 + rng.exponential(1e-4, 2)
        if rng.random() < spikes:  # a scheduler hiccup on one leg
            d2 += rng.uniform(2e-3, 2e-2)
        mapper.add_sync(device_us(t + d1, drift_ppm), t, t + d1 + d2)
        sample_t = t - rng.uniform(0, 0.25)
        worst = max(worst, abs(mapper.to_host(device_us(sample_t, drift_ppm)) - sample_t))
    return worst


@pytest.mark.parametrize("drift_ppm", [100.0, -100.0, 40.0])
def test_drift_within_10_ppm_and_times_within_2_ms_after_60_s(drift_ppm):
    mapper = ClockMapper()
    worst = run_pings(mapper, drift_ppm, 60.0)
    assert mapper.drift_fitted and mapper.synced
    assert abs(mapper.drift_ppm - drift_ppm) <= 10.0
    assert worst <= 2e-3
    for h in (H0 + 1.0, H0 + 30.0, H0 + 59.0):  # the final fit maps the whole minute
        assert abs(mapper.to_host(device_us(h, drift_ppm)) - h) <= 0.5e-3


def test_reset_forgets_offset_keeps_drift():
    mapper = ClockMapper()
    run_pings(mapper, 100.0, 60.0)
    drift = mapper.drift_ppm
    mapper.reset()
    assert not mapper.synced and mapper.drift_ppm == drift
    assert np.isnan(mapper.to_host(1_000_000)) and np.isnan(mapper.offset_s)
    t = H0 + 100.0
    mapper.add_sync(1_000_000, t, t + 2e-4)  # new boot: device clock restarted at 0 near t
    assert mapper.to_host(1_000_000) == pytest.approx(t + 1e-4, abs=1e-9)
    assert mapper.to_host(2_000_000) - mapper.to_host(1_000_000) == pytest.approx(1 / (1 + drift * 1e-6), rel=1e-9)


def test_arrival_times_bound_the_offset_without_pings():
    mapper = ClockMapper()
    rng = np.random.default_rng(1)
    for k in range(40):  # frames of 16 samples at 64 Hz, sent when the last sample is taken
        first = H0 + 0.25 * k
        last = first + 15 / 64
        mapper.add_arrival(device_us(last, 0.0), last + 3e-4 + rng.exponential(1e-3))
    assert mapper.ready and not mapper.synced
    err = mapper.to_host(device_us(H0 + 5.0, 0.0)) - (H0 + 5.0)
    assert 0 <= err <= 1e-3  # never early; late by the fastest delivery


def test_jittery_round_trips_are_down_weighted():
    mapper = ClockMapper()
    rng = np.random.default_rng(2)
    for t in np.arange(H0, H0 + 30, 0.5):
        slow = rng.random() < 0.3
        d1, d2 = (0.02, 1e-4) if slow else (1e-4, 1e-4)  # asymmetric 20 ms stall on the way out
        mapper.add_sync(device_us(t + d1, 0.0), t, t + d1 + d2)
    assert abs(mapper.to_host(device_us(H0 + 10, 0.0)) - (H0 + 10)) < 1e-3


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="window_s"):
        ClockSyncConfig(window_s=0)
    with pytest.raises(ConfigError, match="min_span_s"):
        ClockSyncConfig(min_span_s=500)
