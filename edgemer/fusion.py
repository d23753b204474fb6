"""Late fusion of per-modality estimates, tolerant of missing modalities, with smoothing.

Each available modality contributes with weight ``modality_weight * confidence``; a
modality that is missing, or whose latest estimate is older than ``stale_s``, counts
as unavailable, lowers the fused confidence and is named in the estimate, but never
stops output. The fused stress probability can be smoothed over time with an
exponential moving average (``smoothing="ema"``) or a two-state hidden Markov model
(``smoothing="hmm"``: calm/stress, forward filtering, each hop's fused probability
taken as the evidence).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from edgemer.errors import ConfigError
from edgemer.types import ModalityEstimate


@dataclass(frozen=True)
class FusionConfig:
    """weights: modality -> prior weight (default 1 each). stale_s: age in stream seconds
    after which a modality's last estimate counts as missing. smoothing: ``"none"``,
    ``"ema"`` or ``"hmm"``; ema_alpha: weight of the newest value, 0 < alpha <= 1;
    hmm_stay: probability that the state (calm / stress) stays the same from one hop to
    the next, 0.5 <= hmm_stay < 1 (higher = smoother, slower to switch)."""

    weights: Mapping[str, float] = field(default_factory=dict)
    stale_s: float = 30.0
    smoothing: str = "ema"
    ema_alpha: float = 0.5
    hmm_stay: float = 0.9

    def __post_init__(self) -> None:
        if self.stale_s <= 0:
            raise ConfigError(f"FusionConfig.stale_s must be > 0 s, got {self.stale_s}")
        if self.smoothing not in ("none", "ema", "hmm"):
            raise ConfigError(f"FusionConfig.smoothing must be 'none', 'ema' or 'hmm', got {self.smoothing!r}")
        if not 0.5 <= self.hmm_stay < 1:
            raise ConfigError(f"FusionConfig.hmm_stay must be in [0.5, 1), got {self.hmm_stay}")
        if not 0 < self.ema_alpha <= 1:
            raise ConfigError(f"FusionConfig.ema_alpha must be in (0, 1], got {self.ema_alpha}")
        for k, w in self.weights.items():
            if w < 0:
                raise ConfigError(f"FusionConfig.weights[{k!r}] must be >= 0, got {w}")


@dataclass(frozen=True)
class FusedState:
    stress_probability: float | None
    arousal: float | None
    valence: float | None
    probabilities: dict[str, float]
    confidence: float
    available: dict[str, bool]
    contributions: dict[str, float]


def hmm_step(prior_stress: float, evidence: float, stay: float) -> float:
    """One forward step of a two-state (calm, stress) HMM.

    ``prior_stress`` is P(stress) after the previous hop, ``evidence`` this hop's fused
    stress probability (used as the likelihood ratio stress : calm), ``stay`` the
    probability of keeping the state between hops. Returns the posterior P(stress).
    """
    predicted = prior_stress * stay + (1 - prior_stress) * (1 - stay)
    e = min(max(evidence, 1e-6), 1 - 1e-6)
    num = predicted * e
    return num / (num + (1 - predicted) * (1 - e))


class LateFusion:
    """Fuses the latest estimate of each expected modality at time ``t``."""

    def __init__(self, modalities: tuple[str, ...], config: FusionConfig = FusionConfig()) -> None:
        self.modalities = modalities
        self.config = config
        self._smoothed: float | None = None

    def _smooth(self, stress: float) -> float:
        mode = self.config.smoothing
        if mode == "ema":
            a = self.config.ema_alpha
            self._smoothed = stress if self._smoothed is None else a * stress + (1 - a) * self._smoothed
        elif mode == "hmm":
            prior = 0.5 if self._smoothed is None else self._smoothed
            self._smoothed = hmm_step(prior, stress, self.config.hmm_stay)
        else:
            return stress
        return self._smoothed

    def _weight(self, modality: str) -> float:
        return float(self.config.weights.get(modality, 1.0))

    def fuse(self, t: float, latest: Mapping[str, ModalityEstimate | None]) -> FusedState:
        available = {}
        raw_w = {}
        for m in self.modalities:
            est = latest.get(m)
            ok = est is not None and t - est.t_end <= self.config.stale_s
            available[m] = ok
            if ok:
                raw_w[m] = self._weight(m) * max(est.confidence, 1e-3)
        total_prior = sum(self._weight(m) for m in self.modalities) or 1.0
        total = sum(raw_w.values())
        if total <= 0:
            return FusedState(None, None, None, {}, 0.0, available, {m: 0.0 for m in self.modalities})
        contributions = {m: raw_w.get(m, 0.0) / total for m in self.modalities}
        used = [latest[m] for m in raw_w]  # type: ignore[index]
        stress = sum(contributions[e.modality] * e.stress_probability for e in used)
        probabilities: dict[str, float] = {}
        for e in used:
            for lab, p in e.probabilities.items():
                probabilities[lab] = probabilities.get(lab, 0.0) + contributions[e.modality] * p

        def dimension(attr: str) -> float | None:
            pairs = [(contributions[e.modality], getattr(e, attr)) for e in used if getattr(e, attr) is not None]
            wsum = sum(w for w, _ in pairs)
            return sum(w * v for w, v in pairs) / wsum if wsum > 0 else None

        stress = self._smooth(stress)
        coverage = sum(self._weight(m) for m in raw_w) / total_prior
        mean_conf = sum(contributions[e.modality] * e.confidence for e in used)
        return FusedState(float(stress), dimension("arousal"), dimension("valence"), probabilities,
                          float(coverage * mean_conf), available, contributions)
