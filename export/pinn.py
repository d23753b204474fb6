"""The physiology multi-task PINN: classes, EDA reconstruction + forecast, latent drive.

Input ``signals`` [B, 4, N] float32: the standardised wrist feature matrix (eda, hr,
temp, motion at 4 Hz; N = window_s * 4, 240 for 60 s). Outputs, in this order:

=============  ============  =====================================================
class_logits   [B, 3]        baseline / stress / amusement logits
eda            [B, N + F]    standardised EDA: reconstruction over the window, then
                             the F-sample (forecast_s * 4) forecast
drive          [B, N + F]    latent arousal drive u(t) in [0, 1] on the same grid:
                             slowly varying, linear between ``drive_knots`` knots
eda_tonic      [B, 1]        standardised tonic EDA level
=============  ============  =====================================================

The physical parameters of ``gamma * dEDA/dt = -alpha_0 * (EDA - EDA_tonic) + beta * u``
(alpha_0 1/s, beta µS/s per unit drive, gamma dimensionless) are learned, kept positive
by a softplus, and used only by the training loss (:func:`physics_residual`); the
exported graph holds the four inference outputs and nothing else.

Identifiability. The ODE is unchanged when alpha_0, beta and gamma are scaled together,
so EDA can pin down at most the time constant ``tau_s = gamma / alpha_0`` and the gain
``gain_uS = beta / alpha_0``; the residual is divided by gamma so the loss cannot shrink
by scaling all three towards zero. If u(t) could take any shape, the residual could be
zeroed for any tau by reshaping u, so the drive is deliberately slow: a few knots per
window (``drive_knots``, default 3: start, middle, end), linearly interpolated. Fast
skin-conductance responses then cannot be explained by the drive, and the relaxation
after each one -- whose speed is tau -- must be explained by the ODE. This is a weak
constraint: on the synthetic data tau comes out 20-35 % short of the truth depending on
initialisation and schedule, and the gain is held mainly by u(t) saturating at 1, so
treat both as diagnostics. A free, full-rate drive leaves them wholly unconstrained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgemer.errors import ConfigError

FEATURE_DT_S = 0.25
"""Time step of the 4 Hz feature grid, seconds."""


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


def interpolation_matrix(knots: int, n: int) -> torch.Tensor:
    """[n, knots] weights that interpolate ``knots`` evenly spaced values linearly onto ``n`` samples."""
    pos = torch.linspace(0, knots - 1, n, dtype=torch.float64)
    left = pos.floor().clamp(max=knots - 2).long()
    frac = pos - left
    w = torch.zeros(n, knots, dtype=torch.float64)
    w[torch.arange(n), left] = 1 - frac
    w[torch.arange(n), left + 1] = frac
    return w.float()


@dataclass(frozen=True)
class PhysioPINNConfig:
    """Shape of :class:`PhysioPINN`.

    n_samples: window samples at 4 Hz (240 for 60 s). n_forecast: forecast samples (40 for 10 s).
    width: channels of the conv encoder. squeeze: channels after the 1x1 bottleneck conv.
    latent: size of the shared window embedding. drive_knots: values of the slow drive
    per window + forecast, linearly interpolated onto the 4 Hz grid (>= 2).
    init_alpha_0 (1/s), init_beta (µS/s), init_gamma: starting physical parameters,
    deliberately away from the simulator's truth (0.08, 0.16, 1.5).
    n_context: size of an optional per-window context vector (e.g. standardised
    self-report features) added to the shared embedding; 0 (the exported model) for none.
    """

    n_channels: int = 4
    n_samples: int = 240
    n_forecast: int = 40
    n_classes: int = 3
    width: int = 48
    squeeze: int = 16
    latent: int = 64
    drive_knots: int = 3
    init_alpha_0: float = 0.2
    init_beta: float = 0.2
    init_gamma: float = 1.0
    n_context: int = 0

    def __post_init__(self) -> None:
        for name in ("n_channels", "n_samples", "n_classes", "width", "squeeze", "latent"):
            if getattr(self, name) < 1:
                raise ConfigError(f"PhysioPINNConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_samples % 8:
            raise ConfigError(f"PhysioPINNConfig.n_samples must be a multiple of 8 (three stride-2 convs), "
                              f"got {self.n_samples}")
        if self.drive_knots < 2:
            raise ConfigError(f"PhysioPINNConfig.drive_knots must be >= 2, got {self.drive_knots}")
        if self.n_context < 0:
            raise ConfigError(f"PhysioPINNConfig.n_context must be >= 0, got {self.n_context}")
        if self.n_forecast < 0:
            raise ConfigError(f"PhysioPINNConfig.n_forecast must be >= 0, got {self.n_forecast}")
        for name in ("init_alpha_0", "init_beta", "init_gamma"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"PhysioPINNConfig.{name} must be > 0, got {getattr(self, name)}")


class PhysioPINN(nn.Module):
    """Shared 1-D conv encoder with class, EDA, drive and tonic heads (see the module docstring)."""

    def __init__(self, config: PhysioPINNConfig = PhysioPINNConfig()) -> None:
        super().__init__()
        c, w = config, config.width
        self.config = c
        self.encoder = nn.Sequential(
            nn.Conv1d(c.n_channels, w // 2, 7, padding=3), nn.ReLU(),
            nn.Conv1d(w // 2, w, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(w, w, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(w, w, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(w, c.squeeze, 1), nn.ReLU(),
        )
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(c.squeeze * (c.n_samples // 8), c.latent), nn.ReLU())
        n_out = c.n_samples + c.n_forecast
        self.context = nn.Linear(c.n_context, c.latent) if c.n_context else None
        self.class_head = nn.Sequential(nn.Linear(c.latent, 32), nn.ReLU(), nn.Linear(32, c.n_classes))
        self.eda_head = nn.Linear(c.latent, n_out)
        self.drive_head = nn.Linear(c.latent, c.drive_knots)
        # Linear interpolation knots -> 4 Hz grid as a frozen Linear layer (not a matmul with
        # a constant), so that PT2E quantises it like every other layer.
        self.drive_interp = nn.Linear(c.drive_knots, n_out, bias=False)
        with torch.no_grad():
            self.drive_interp.weight.copy_(interpolation_matrix(c.drive_knots, n_out))
        self.drive_interp.requires_grad_(False)
        self.tonic_head = nn.Linear(c.latent, 1)
        # The EDA output is a skip connection -- the window's own EDA, then its last value
        # held over the forecast -- plus a learned correction that starts at zero. The EDA
        # channel is picked by a frozen 1x1 conv rather than by indexing the input: INT8
        # TFLite gives the conv output its own scale, where an indexed input would have to
        # share the input's scale with the concatenated output (the converter rejects that).
        self.eda_skip = nn.Conv1d(c.n_channels, 1, 1, bias=False)
        with torch.no_grad():
            self.eda_skip.weight.zero_()
            self.eda_skip.weight[0, 0, 0] = 1.0
        self.eda_skip.requires_grad_(False)
        nn.init.zeros_(self.eda_head.weight)
        nn.init.zeros_(self.eda_head.bias)
        self.raw_alpha_0 = nn.Parameter(torch.tensor(_inverse_softplus(c.init_alpha_0)))
        self.raw_beta = nn.Parameter(torch.tensor(_inverse_softplus(c.init_beta)))
        self.raw_gamma = nn.Parameter(torch.tensor(_inverse_softplus(c.init_gamma)))

    @property
    def alpha_0(self) -> torch.Tensor:
        """Decay rate, 1/s (> 0)."""
        return F.softplus(self.raw_alpha_0)

    @property
    def beta(self) -> torch.Tensor:
        """Sensitivity to the drive, µS/s per unit drive (> 0)."""
        return F.softplus(self.raw_beta)

    @property
    def gamma(self) -> torch.Tensor:
        """Time scaling, dimensionless (> 0)."""
        return F.softplus(self.raw_gamma)

    def physical_parameters(self) -> dict[str, float]:
        """alpha_0 (1/s), beta (µS/s), gamma, and the two the data can constrain:
        tau_s = gamma / alpha_0 (s) and gain_uS = beta / alpha_0 (µS)."""
        a, b, g = self.alpha_0.item(), self.beta.item(), self.gamma.item()
        return {"alpha_0": a, "beta": b, "gamma": g, "tau_s": g / a, "gain_uS": b / a}

    def forward(self, signals: torch.Tensor, context: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``signals`` [B, 4, N] (and ``context`` [B, n_context] when configured) ->
        (class_logits [B, 3], eda [B, N+F], drive [B, N+F], eda_tonic [B, 1])."""
        n = self.config.n_samples
        z = self.embed(self.encoder(signals))
        if self.context is not None:
            if context is None:
                raise ConfigError(f"this PhysioPINN takes a context vector of {self.config.n_context} values")
            z = torch.relu(z + self.context(context))
        delta = self.eda_head(z)
        eda_in = torch.flatten(self.eda_skip(signals), 1)
        eda = torch.cat([eda_in + delta[:, :n], eda_in[:, n - 1:n] + delta[:, n:]], dim=1)
        drive = self.drive_interp(torch.sigmoid(self.drive_head(z)))
        return self.class_head(z), eda, drive, self.tonic_head(z)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the training loss terms (all >= 0).

    eda: MSE of the standardised EDA (reconstruction + forecast). classification:
    cross-entropy. physics: mean squared ODE residual (standardised EDA units per second).
    """

    eda: float = 1.0
    classification: float = 1.0
    physics: float = 1.0

    def __post_init__(self) -> None:
        for name in ("eda", "classification", "physics"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"LossWeights.{name} must be >= 0, got {getattr(self, name)}")


def physics_residual(model: PhysioPINN, eda: torch.Tensor, drive: torch.Tensor, eda_tonic: torch.Tensor,
                     eda_mean_uS: float, eda_std_uS: float) -> torch.Tensor:
    """ODE residual divided by gamma, in standardised EDA units per second: [B, N+F-1].

    ``r = gamma * dEDA/dt + alpha_0 * (EDA - EDA_tonic) - beta * u`` with EDA in µS
    (de-standardised), forward differences at 4 Hz (dt = 0.25 s) and EDA, u taken at the
    interval midpoints (so sensor noise in the derivative and the level is uncorrelated).
    """
    e = eda * eda_std_uS + eda_mean_uS
    tonic = eda_tonic * eda_std_uS + eda_mean_uS
    de_dt = (e[:, 1:] - e[:, :-1]) / FEATURE_DT_S
    e_mid = 0.5 * (e[:, 1:] + e[:, :-1])
    u_mid = 0.5 * (drive[:, 1:] + drive[:, :-1])
    r = model.gamma * de_dt + model.alpha_0 * (e_mid - tonic) - model.beta * u_mid
    return r / (model.gamma * eda_std_uS)


def pinn_loss(model: PhysioPINN, outputs: tuple[torch.Tensor, ...], eda_target: torch.Tensor, labels: torch.Tensor,
              eda_mean_uS: float, eda_std_uS: float, weights: LossWeights = LossWeights(),
              class_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Total training loss and its parts (floats, for logging).

    eda_target: [B, N+F] standardised EDA. labels: [B] int64 class index.
    """
    logits, eda, drive, tonic = outputs
    eda_mse = F.mse_loss(eda, eda_target)
    ce = F.cross_entropy(logits, labels, weight=class_weights)
    phys = physics_residual(model, eda, drive, tonic, eda_mean_uS, eda_std_uS).pow(2).mean()
    total = weights.eda * eda_mse + weights.classification * ce + weights.physics * phys
    parts = {"loss": float(total.detach()), "eda": float(eda_mse.detach()), "ce": float(ce.detach()),
             "phys": float(phys.detach())}
    return total, parts
