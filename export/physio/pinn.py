"""The physiology multi-task PINN: classes, EDA reconstruction + forecast, latent drive.

Input ``signals`` [B, 4, N] float32: the standardised wrist feature matrix (eda, hr,
temp, motion at 4 Hz; N = window_s * 4, 240 for 60 s). Outputs, in this order:

=============  ============  =====================================================
class_logits   [B, 3]        baseline / stress / amusement logits
eda            [B, N + F]    standardised EDA: reconstruction over the window, then
                             the F-sample (forecast_s * 4) forecast
drive          [B, N + F]    latent arousal drive u in [0, 1] (baseline 0, stress 1),
                             constant over the grid: the window's predicted condition
                             level, trained towards the learned level of its condition
eda_tonic      [B, 1]        standardised tonic EDA level (the wearer's resting EDA)
=============  ============  =====================================================

The physical parameters of ``gamma * dEDA/dt = -alpha_0 * (EDA - EDA_tonic) + beta * u``
(alpha_0 1/s, beta µS/s per unit drive, gamma dimensionless) are learned, kept positive
by a softplus, and used only by the training loss (:func:`physics_residual`); the
exported graph holds the four inference outputs and nothing else.

Identifiability. The ODE is unchanged when alpha_0, beta and gamma are scaled together,
so EDA can pin down at most the time constant ``tau_s = gamma / alpha_0`` and the gain
``gain_uS = beta / alpha_0``; the residual is divided by gamma so the loss cannot shrink
by scaling all three towards zero. A drive free at every time step could mimic any time
constant, and a drive of free scale any gain, so in training u(t) is tied to the
condition: u(t) = level[condition at t], one learned level per WESAD condition code
with two anchors that fix the scale -- baseline 0 and stress 1, so one unit of drive is
the step from rest to stress and the gain is the steady EDA rise from rest to stress in
µS -- and EDA_tonic is the wearer's resting EDA measured on the baseline (not a free
output). The time constant then shows in how EDA approaches each new level after a
condition change, and the gain in the level differences. On data whose drive follows
this constraint (``edgemer data synth-wesad --drive condition``) both are recovered; on
the default bursty simulator (skin-conductance bursts and wandering arousal that a
condition level cannot follow) they are biased, and the study report says by how much.

Two encoders. The class head reads the embedding of a *class encoder* trained by the
cross-entropy alone; the EDA, drive and tonic heads read the embedding of a separate
*regression encoder* (the same conv blocks, its own size: :class:`PhysioPINNConfig`'s
``regression_*`` fields) trained by the EDA, tonic, drive and physics terms alone. With
one shared encoder the regression and physics terms pulled it away from the classes, and
shielding it from them (a stop-gradient) left the regression heads reading an embedding
shaped for the classes: the tonic head predicted the mean level and the forecast fell
behind the baselines (issue 17). The split adds no input or output: the exported graph
has the same ``signals`` input and the same four outputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgemer.errors import ConfigError
from edgemer.export.core.config import check_counts

FEATURE_DT_S = 0.25
"""Time step of the 4 Hz feature grid, seconds."""


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


N_CODES = 5
"""WESAD condition codes with a drive level: 0 transient, 1 baseline, 2 stress, 3 amusement, 4 meditation."""
ANCHORS = {1: 0.0, 2: 1.0}
"""Fixed drive levels that set the scale of u: baseline 0, stress 1."""


@dataclass(frozen=True)
class PhysioPINNConfig:
    """Shape of :class:`PhysioPINN`.

    n_samples: window samples at 4 Hz (240 for 60 s). n_forecast: forecast samples (40 for 10 s).
    width, squeeze, latent: the class encoder (:class:`ConvEncoder`: channels of its convs,
    channels after its 1x1 bottleneck conv, size of its window embedding).
    regression_width, regression_squeeze, regression_latent: the same for the regression
    encoder that the EDA, drive and tonic heads read. Smaller than the class encoder in its
    convs (the EDA level, trend and last values are simple features of one channel) but with
    the same 64-value embedding, which the 280-sample EDA head maps out.
    init_alpha_0 (1/s), init_beta (µS/s), init_gamma: starting physical parameters,
    deliberately away from the simulator's truth (0.08, 0.16, 1.5). init_level: starting
    drive level of the conditions without an anchor (transient, amusement, meditation).
    n_context: size of an optional per-window context vector (e.g. standardised
    self-report features) added to the class embedding; 0 (the exported model) for none.
    """

    n_channels: int = 4
    n_samples: int = 240
    n_forecast: int = 40
    n_classes: int = 3
    width: int = 48
    squeeze: int = 16
    latent: int = 64
    regression_width: int = 32
    regression_squeeze: int = 16
    regression_latent: int = 64
    init_alpha_0: float = 0.2
    init_beta: float = 0.2
    init_gamma: float = 1.0
    init_level: float = 0.3
    n_context: int = 0

    def __post_init__(self) -> None:
        check_counts(self, ("n_channels", "n_samples", "n_classes", "width", "squeeze", "latent",
                            "regression_width", "regression_squeeze", "regression_latent"))
        if self.n_samples % 8:
            raise ConfigError(f"PhysioPINNConfig.n_samples must be a multiple of 8 (three stride-2 convs), "
                              f"got {self.n_samples}")
        if self.width < 2 or self.regression_width < 2:
            raise ConfigError(f"PhysioPINNConfig.width and regression_width must be >= 2 (the first conv has "
                              f"width // 2 channels), got {self.width} and {self.regression_width}")
        if not 0 < self.init_level < 1:
            raise ConfigError(f"PhysioPINNConfig.init_level must be in (0, 1), got {self.init_level}")
        if self.n_context < 0:
            raise ConfigError(f"PhysioPINNConfig.n_context must be >= 0, got {self.n_context}")
        if self.n_forecast < 0:
            raise ConfigError(f"PhysioPINNConfig.n_forecast must be >= 0, got {self.n_forecast}")
        for name in ("init_alpha_0", "init_beta", "init_gamma"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"PhysioPINNConfig.{name} must be > 0, got {getattr(self, name)}")


class ConvEncoder(nn.Module):
    """1-D conv encoder: ``signals`` [B, n_channels, n_samples] -> window embedding [B, latent] (>= 0).

    A 7-tap conv to ``width // 2`` channels, three 5-tap stride-2 convs to ``width`` channels
    (n_samples / 8 steps, 30 for a 60 s window), a 1x1 bottleneck conv to ``squeeze``
    channels, then a linear layer over the flattened steps (so the embedding keeps where in
    the window things happened); ReLU after every layer. ``n_samples`` must be a multiple of 8.
    """

    def __init__(self, n_channels: int, n_samples: int, width: int, squeeze: int, latent: int) -> None:
        super().__init__()
        w = width
        self.convs = nn.Sequential(
            nn.Conv1d(n_channels, w // 2, 7, padding=3), nn.ReLU(),
            nn.Conv1d(w // 2, w, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(w, w, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(w, w, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(w, squeeze, 1), nn.ReLU(),
        )
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(squeeze * (n_samples // 8), latent), nn.ReLU())

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        """``signals`` [B, n_channels, n_samples] -> [B, latent]."""
        return self.embed(self.convs(signals))


class PhysioPINN(nn.Module):
    """Class encoder + class head; regression encoder + EDA, drive and tonic heads (see the module docstring)."""

    def __init__(self, config: PhysioPINNConfig = PhysioPINNConfig()) -> None:
        super().__init__()
        c = config
        self.config = c
        # The class path is built first, so that for a given seed its initial weights (and, as only
        # the cross-entropy trains it, its training) do not depend on the regression encoder's size.
        self.class_encoder = ConvEncoder(c.n_channels, c.n_samples, c.width, c.squeeze, c.latent)
        self.context = nn.Linear(c.n_context, c.latent) if c.n_context else None
        self.class_head = nn.Sequential(nn.Linear(c.latent, 32), nn.ReLU(), nn.Linear(32, c.n_classes))
        self.regression_encoder = ConvEncoder(c.n_channels, c.n_samples, c.regression_width,
                                              c.regression_squeeze, c.regression_latent)
        n_out = c.n_samples + c.n_forecast
        self.eda_head = nn.Linear(c.regression_latent, n_out)
        self.drive_head = nn.Linear(c.regression_latent, 1)
        # The drive, constant over the grid, is broadcast by a frozen Linear layer of ones (not
        # an expand), so that PT2E quantises it like every other layer.
        self.drive_broadcast = nn.Linear(1, n_out, bias=False)
        with torch.no_grad():
            self.drive_broadcast.weight.fill_(1.0)
        self.drive_broadcast.requires_grad_(False)
        self.tonic_head = nn.Linear(c.regression_latent, 1)
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
        free = N_CODES - len(ANCHORS)
        self.raw_levels = nn.Parameter(torch.full((free,), math.log(c.init_level / (1 - c.init_level))))

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

    def code_levels(self) -> torch.Tensor:
        """[N_CODES] drive level of each WESAD condition code: the anchors and sigmoid(learned) in [0, 1]."""
        free = iter(torch.sigmoid(self.raw_levels).unbind())
        return torch.stack([torch.tensor(ANCHORS[c], dtype=self.raw_levels.dtype) if c in ANCHORS else next(free)
                            for c in range(N_CODES)])

    def drive_of_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """u(t) of the training loss: the level of the condition at each sample. codes: [B, T] int (0-4)."""
        return self.code_levels()[codes.long()]

    def physical_parameters(self) -> dict[str, float]:
        """alpha_0 (1/s), beta (µS/s), gamma, the two the data can constrain --
        tau_s = gamma / alpha_0 (s) and gain_uS = beta / alpha_0 (µS from rest to stress) --
        and the learned drive level of each condition (``level_<condition>``, 0..1)."""
        a, b, g = self.alpha_0.item(), self.beta.item(), self.gamma.item()
        levels = self.code_levels().tolist()
        names = ("transient", "baseline", "stress", "amusement", "meditation")
        return {"alpha_0": a, "beta": b, "gamma": g, "tau_s": g / a, "gain_uS": b / a,
                **{f"level_{n}": float(v) for n, v in zip(names, levels)}}

    def set_physics(self, tau_s: float, gain_uS: float, levels: dict[int, float]) -> None:
        """Fix the physical parameters to a tonic/phasic fit's (gamma 1, alpha_0 = 1/tau, beta = gain/tau,
        the fit's drive levels) and stop them training (the fit learned them with the SCRs modelled)."""
        free = [c for c in range(N_CODES) if c not in ANCHORS]
        with torch.no_grad():
            self.raw_alpha_0.fill_(_inverse_softplus(1.0 / tau_s))
            self.raw_gamma.fill_(_inverse_softplus(1.0))
            self.raw_beta.fill_(_inverse_softplus(gain_uS / tau_s))
            lv = torch.tensor([min(max(levels.get(c, 0.5), 1e-4), 1 - 1e-4) for c in free])
            self.raw_levels.copy_(torch.log(lv / (1 - lv)))
        for p in (self.raw_alpha_0, self.raw_beta, self.raw_gamma, self.raw_levels):
            p.requires_grad_(False)

    def forward(self, signals: torch.Tensor, context: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``signals`` [B, 4, N] (and ``context`` [B, n_context] when configured) ->
        (class_logits [B, 3], eda [B, N+F], drive [B, N+F], eda_tonic [B, 1])."""
        n = self.config.n_samples
        z = self.class_encoder(signals)
        if self.context is not None:
            if context is None:
                raise ConfigError(f"this PhysioPINN takes a context vector of {self.config.n_context} values")
            z = torch.relu(z + self.context(context))
        zr = self.regression_encoder(signals)
        delta = self.eda_head(zr)
        eda_in = torch.flatten(self.eda_skip(signals), 1)
        eda = torch.cat([eda_in + delta[:, :n], eda_in[:, n - 1:n] + delta[:, n:]], dim=1)
        drive = self.drive_broadcast(torch.sigmoid(self.drive_head(zr)))
        return self.class_head(z), eda, drive, self.tonic_head(zr)


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
                     eda_mean_uS: float, eda_std_uS: float, detach_parameters: bool = False) -> torch.Tensor:
    """ODE residual divided by gamma, in standardised EDA units per second: [B, T-1].

    ``r = gamma * dEDA/dt + alpha_0 * (EDA - EDA_tonic) - beta * u`` with EDA in µS
    (de-standardised), forward differences at 4 Hz (dt = 0.25 s) and EDA, u taken at the
    interval midpoints (so sensor noise in the derivative and the level is uncorrelated).
    ``detach_parameters``: no gradient reaches alpha_0, beta, gamma (only ``eda``).
    """
    a, b, g = model.alpha_0, model.beta, model.gamma
    if detach_parameters:
        a, b, g = a.detach(), b.detach(), g.detach()
    e = eda * eda_std_uS + eda_mean_uS
    tonic = eda_tonic * eda_std_uS + eda_mean_uS
    de_dt = (e[:, 1:] - e[:, :-1]) / FEATURE_DT_S
    e_mid = 0.5 * (e[:, 1:] + e[:, :-1])
    u_mid = 0.5 * (drive[:, 1:] + drive[:, :-1])
    return (g * de_dt + a * (e_mid - tonic) - b * u_mid) / (g * eda_std_uS)


def pinn_loss(model: PhysioPINN, outputs: tuple[torch.Tensor, ...], eda_target: torch.Tensor, labels: torch.Tensor,
              codes: torch.Tensor, tonic_target: torch.Tensor, eda_mean_uS: float, eda_std_uS: float,
              weights: LossWeights = LossWeights(), class_weights: torch.Tensor | None = None,
              phasic: torch.Tensor | None = None, drive: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """Total training loss and its parts (floats, for logging).

    eda_target: [B, N+F] standardised EDA. labels: [B] int64 class index. codes: [B, N+F]
    WESAD condition code per sample (the drive of the physics term). tonic_target: [B]
    the wearer's resting EDA, standardised (the ODE's tonic level; the tonic head is
    trained towards it with the EDA weight, and the drive head towards the learned level of
    the window's conditions).

    phasic, drive: [B, N+F] optional, from a tonic/phasic fit: the SCR part of the EDA
    target (standardised units) and the onset-smoothed drive (0..1). With them the residual
    acts on the tonic component -- EDA minus its SCRs, for the measured window and for the
    model's forecast alike -- with that drive in place of the step levels of the codes.
    """
    logits, eda, drive_out, tonic = outputs
    eda_mse = F.mse_loss(eda, eda_target)
    tonic_mse = F.mse_loss(tonic[:, 0], tonic_target)
    ce = F.cross_entropy(logits, labels, weight=class_weights)
    # Two parts of one residual: on the measured EDA of the window it fits the physical
    # parameters and drive levels (a learned reconstruction could bend towards any of them);
    # on the model's forecast, with those parameters held fixed, it teaches the network to
    # continue the EDA as the ODE does.
    n = model.config.n_samples
    if drive is None:
        drive = model.drive_of_codes(codes)
    drive_mse = F.mse_loss(drive_out, drive.detach())
    tonic_t = tonic_target[:, None]
    scr = torch.zeros_like(eda_target) if phasic is None else phasic
    fit = physics_residual(model, eda_target[:, :n] - scr[:, :n], drive[:, :n], tonic_t, eda_mean_uS, eda_std_uS)
    # The forecast's tonic part: the model's forecast minus the SCRs of the target (those that
    # began before the forecast keep recovering; the network learns the tonic continuation).
    follow = physics_residual(model, eda[:, n - 1:] - scr[:, n - 1:], drive[:, n - 1:].detach(), tonic_t,
                              eda_mean_uS, eda_std_uS, detach_parameters=True)
    phys = torch.cat([fit, follow], dim=1).pow(2).mean()
    total = weights.eda * (eda_mse + tonic_mse + drive_mse) + weights.classification * ce + weights.physics * phys
    parts = {"loss": float(total.detach()), "eda": float(eda_mse.detach()), "ce": float(ce.detach()),
             "phys": float(phys.detach())}
    return total, parts
