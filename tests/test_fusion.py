"""Late fusion tolerates missing and stale modalities; smoothing behaves as documented."""
import pytest

from edgemer.errors import ConfigError
from edgemer.fusion import FusionConfig, LateFusion, hmm_step
from edgemer.types import ModalityEstimate


def _est(modality, t, stress, conf=0.9):
    return ModalityEstimate(modality=modality, bundle=f"{modality}-b", t_end=t,
                            probabilities={"calm": 1 - stress, "stress": stress}, stress_probability=stress,
                            arousal=stress, valence=-stress, confidence=conf)


def test_missing_modality_lowers_confidence_but_not_output():
    f = LateFusion(("physio", "audio"), FusionConfig(smoothing="none"))
    both = f.fuse(10.0, {"physio": _est("physio", 10.0, 0.8), "audio": _est("audio", 10.0, 0.4)})
    one = f.fuse(15.0, {"physio": _est("physio", 15.0, 0.8), "audio": None})
    assert both.stress_probability == pytest.approx(0.6)
    assert sum(both.contributions.values()) == pytest.approx(1.0)
    assert one.stress_probability == pytest.approx(0.8)
    assert one.available == {"physio": True, "audio": False}
    assert one.contributions["audio"] == 0.0
    assert one.confidence < both.confidence


def test_stale_modality_counts_as_missing_and_rejoins():
    f = LateFusion(("physio", "audio"), FusionConfig(stale_s=10.0, smoothing="none"))
    old_audio = _est("audio", 0.0, 0.1)
    stale = f.fuse(20.0, {"physio": _est("physio", 20.0, 0.7), "audio": old_audio})
    assert stale.available["audio"] is False and stale.stress_probability == pytest.approx(0.7)
    back = f.fuse(25.0, {"physio": _est("physio", 25.0, 0.7), "audio": _est("audio", 25.0, 0.1)})
    assert back.available["audio"] is True and back.stress_probability == pytest.approx(0.4)


def test_nothing_available_gives_an_explicit_empty_estimate():
    state = LateFusion(("physio",)).fuse(5.0, {})
    assert state.stress_probability is None and state.confidence == 0.0
    assert state.available == {"physio": False}


def test_weights_shift_contributions():
    f = LateFusion(("physio", "audio"), FusionConfig(weights={"physio": 3.0, "audio": 1.0}, smoothing="none"))
    s = f.fuse(1.0, {"physio": _est("physio", 1.0, 1.0), "audio": _est("audio", 1.0, 0.0)})
    assert s.contributions["physio"] == pytest.approx(0.75)


def test_ema_and_hmm_smooth_a_single_outlier():
    for mode in ("ema", "hmm"):
        f = LateFusion(("physio",), FusionConfig(smoothing=mode))
        out = [f.fuse(float(i), {"physio": _est("physio", float(i), p)}).stress_probability
               for i, p in enumerate([0.1, 0.1, 0.1, 0.9, 0.1])]
        assert out[3] < 0.9 and out[4] < out[3], mode


def test_hmm_follows_sustained_evidence():
    p = 0.5
    for _ in range(10):
        p = hmm_step(p, 0.9, stay=0.9)
    assert p > 0.95
    for _ in range(10):
        p = hmm_step(p, 0.1, stay=0.9)
    assert p < 0.05


@pytest.mark.parametrize("kwargs,field", [({"stale_s": 0}, "stale_s"), ({"smoothing": "kalman"}, "smoothing"),
                                          ({"ema_alpha": 0}, "ema_alpha"), ({"hmm_stay": 1.0}, "hmm_stay"),
                                          ({"weights": {"audio": -1}}, "weights")])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        FusionConfig(**kwargs)
