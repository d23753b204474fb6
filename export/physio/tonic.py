"""Tonic/phasic EDA physics: the first-order ODE on the tonic level, Bateman SCRs on top.

The first-order ODE of DESIGN.md describes the slow tonic level of skin conductance, not
the skin-conductance responses (SCRs, a few seconds of rise and recovery). So a window's
EDA ``e[k]`` (µS at 4 Hz, k = 0..L-1) is modelled as tonic + phasic + noise::

    tau * dT/dt = -(T - T0_subject) + gain * u(t)             tonic (the physics)
    u(t)  = onset * level[condition(t)]                        the condition drive, onset-smoothed
    P[k]  = sum_j d[j] * bateman(k - j),  d >= 0 and sparse      phasic (the SCRs)
    bateman(t) = exp(-t / recovery_s) - exp(-t / rise_s), peak 1 (Benedek & Kaernbach 2010)

The onset (``TonicPhasicConfig.onset``) says how the drive moves from one condition's
level to the next: ``ramp``, a linear ramp over ``onset_s`` (<= MAX_ONSET_S); ``lag``, a
first-order approach with time constant ``onset_lag_s`` (``lag_s * du/dt = level - u``);
``ramp+lag``, the ramp followed by the lag. A lag onset and the tonic ODE are two
first-order lags in series, and the condition steps alone cannot tell which of the two
time constants is the skin's (the response is symmetric in them): with a lag onset, tau is
at best identified up to that swap. On edgemer's bursty simulator (a 20 s drive lag, drive
wander and pulses) the objective is flat in tau with a lag onset (:func:`profile_tau`,
docs/study.md), and the lag costs accuracy on the independent generator, so the default
is ``ramp``.

Learned, shared by all windows: ``tau_s`` (s), ``gain_uS`` (µS of tonic rise from
baseline to stress: the drive is anchored at baseline 0 and stress 1), the drive levels of
the other conditions (0..1), ``onset_s`` and ``onset_lag_s`` (s) and the SCR shape ``scr_rise_s`` and
``scr_recovery_s`` (s; for a Bateman function these are its two time constants, so the
recovery time constant is the one to compare with the 4-10 s of Boucsein et al. 2012).
Per subject: the resting level ``T0``. Per window: the tonic state at its first sample
and the sudomotor driver ``d`` over the window and ``history_s`` before it (SCRs that
began earlier). Loss: squared error + ``l1_uS`` * sum(d) (sparse SCRs), fitted with Adam
(d kept >= 0 by projection).

:func:`physics_forecast` continues a window without its labels: with the learned tau and
SCR shape, it fits the window's tonic equilibrium, tonic state and driver, then rolls the
tonic ODE forward, lets the SCRs already started recover and adds new ones at the window's
own SCR rate.

Shapes: eda / codes ``[W, L]`` (µS, WESAD codes 0-4), group ``[W]`` (subject index).
torch is imported where used (the export extra).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from edgemer.errors import ConfigError

DT_S = 0.25
"""Sample spacing of the 4 Hz EDA grid, s."""
ANCHORS = {1: 0.0, 2: 1.0}
"""Drive levels fixed by definition: baseline 0, stress 1 (so gain is the rest -> stress tonic rise)."""
FREE_CODES = (0, 3, 4)
"""Conditions whose drive level is learned: transient, amusement, meditation."""
CONDITION_NAMES = {0: "transient", 1: "baseline", 2: "stress", 3: "amusement", 4: "meditation"}
MAX_ONSET_S = 15.0
"""Longest onset ramp the model can learn, s."""
ONSETS = ("ramp", "lag", "ramp+lag")
"""Onset shapes of the condition drive (see the module docstring)."""
PUBLISHED = {
    "scr_rise_s": (0.5, 5.0),
    "scr_recovery_half_s": (4.0, 10.0),
    "source": "Boucsein et al. 2012, Publication recommendations for electrodermal measurements, "
              "Psychophysiology 49: SCR latency 1-3 s, rise 0.5-5 s, recovery roughly 4-10 s, whole response "
              "10-30 s; tonic level changes over tens of seconds to minutes",
}
"""Published ranges to read the fitted SCR shape against (not targets)."""


@dataclass(frozen=True)
class TonicPhasicConfig:
    """How the tonic/phasic model is fitted.

    steps: Adam steps (cosine decay to 5 %). lr: learning rate of the log time constants,
    gain and levels. window_lr: learning rate of the per-window states and drivers (µS).
    l1_uS: weight of sum(d) (µS; larger = fewer, larger SCRs). history_s: driver seconds
    before each window. init_*: starting values (deliberately away from typical truths).
    onset: the onset shape, one of ONSETS. init_onset_lag_s: starting onset lag time constant (s;
    ``lag`` and ``ramp+lag``). learn_onset: fit the onset ramp and lag (else they stay at their
    init values). learn_tau: fit tau (False: it stays at init_tau_s, as :func:`profile_tau` does). tonic_first: a first stage of
    ``tonic_first * steps`` fits the tonic alone (residuals below it count 4x: SCRs only add), so that
    the SCR driver cannot take over the slow level changes before the tonic has found them.
    """

    steps: int = 600
    lr: float = 0.03
    window_lr: float = 0.02
    l1_uS: float = 0.1
    history_s: float = 20.0
    init_tau_s: float = 30.0
    init_gain_uS: float = 0.5
    init_onset_s: float = 2.0
    init_rise_s: float = 1.0
    init_recovery_s: float = 5.0
    init_level: float = 0.3
    learn_onset: bool = True
    tonic_first: float = 0.5
    onset: str = "ramp"
    init_onset_lag_s: float = 2.0
    learn_tau: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"TonicPhasicConfig.steps must be >= 1, got {self.steps}")
        for name in ("lr", "window_lr", "init_tau_s", "init_gain_uS", "init_rise_s", "init_recovery_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"TonicPhasicConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.l1_uS < 0 or self.history_s < 0:
            raise ConfigError("TonicPhasicConfig.l1_uS and history_s must be >= 0")
        if not self.init_recovery_s > self.init_rise_s:
            raise ConfigError("TonicPhasicConfig.init_recovery_s must be > init_rise_s")
        if not 0 <= self.init_onset_s <= MAX_ONSET_S:
            raise ConfigError(f"TonicPhasicConfig.init_onset_s must be in [0, {MAX_ONSET_S}]")
        if not 0 < self.init_level < 1:
            raise ConfigError("TonicPhasicConfig.init_level must be in (0, 1)")
        if self.onset not in ONSETS:
            raise ConfigError(f"TonicPhasicConfig.onset must be one of {ONSETS}, got {self.onset!r}")
        if not self.init_onset_lag_s > 0:
            raise ConfigError(f"TonicPhasicConfig.init_onset_lag_s must be > 0, got {self.init_onset_lag_s}")


@dataclass(frozen=True)
class TonicPhasicFit:
    """Fitted shared parameters (see the module docstring for units), the final mean squared error
    (µS²) and objective (squared error + l1 term per sample, µS²). onset_s is 0 and onset_lag_s 0
    where the fit's onset has no ramp or no lag."""

    tau_s: float
    gain_uS: float
    levels: dict[int, float]
    onset_s: float
    scr_rise_s: float
    scr_recovery_s: float
    mse_uS2: float
    windows: int
    onset_lag_s: float = 0.0
    objective_uS2: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: the parameters, ``level_<condition>`` per code, and the SCR's half-recovery time."""
        d = asdict(self)
        d.pop("levels")
        d.update({f"level_{CONDITION_NAMES[c]}": v for c, v in sorted(self.levels.items())})
        d["scr_half_recovery_s"] = bateman_half_recovery_s(self.scr_rise_s, self.scr_recovery_s)
        return d


def bateman(rise_s: float, recovery_s: float, n: int) -> np.ndarray:
    """The peak-normalised Bateman kernel on ``n`` 4 Hz samples (numpy, for plots and checks)."""
    t = np.arange(n) * DT_S
    k = np.exp(-t / recovery_s) - np.exp(-t / rise_s)
    return k / k.max()


def bateman_half_recovery_s(rise_s: float, recovery_s: float) -> float:
    """Seconds from the Bateman peak to half its height (what SCR scorers call half-recovery)."""
    k = bateman(rise_s, recovery_s, int(20 * recovery_s / DT_S) + 8)
    p = int(np.argmax(k))
    below = np.flatnonzero(k[p:] <= 0.5)
    return float(below[0] * DT_S) if below.size else math.nan


def _kernel_len(recovery_max_s: float = 60.0) -> int:
    return int(round(recovery_max_s / DT_S))


def causal_conv(x: Any, k: Any) -> Any:
    """y[..., t] = sum_m k[m] x[..., t - m] (zero before the start), by FFT. x [..., T], k [K]."""
    import torch

    n = x.shape[-1] + k.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(x, n) * torch.fft.rfft(k, n), n)
    return y[..., :x.shape[-1]]


class _Shared:
    """The shared torch parameters (tau, gain, levels, onset, SCR shape) and the model's pieces."""

    def __init__(self, config: TonicPhasicConfig, init: TonicPhasicFit | None) -> None:
        import torch

        c = config
        start = init or TonicPhasicFit(c.init_tau_s, c.init_gain_uS, {k: c.init_level for k in FREE_CODES},
                                       c.init_onset_s, c.init_rise_s, c.init_recovery_s, math.nan, 0,
                                       c.init_onset_lag_s)
        if not c.learn_tau:
            start = replace(start, tau_s=c.init_tau_s)
        self.ramp = "ramp" in c.onset
        self.lag = "lag" in c.onset
        self.torch = torch
        self.config = c
        f = lambda v: torch.tensor(float(v), dtype=torch.float32, requires_grad=True)  # noqa: E731
        clip = lambda v: min(max(v, 1e-3), 1 - 1e-3)  # noqa: E731
        self.log_tau = f(math.log(start.tau_s))
        self.log_gain = f(math.log(start.gain_uS))
        self.raw_levels = torch.tensor([math.log(clip(start.levels[k]) / (1 - clip(start.levels[k])))
                                        for k in FREE_CODES], dtype=torch.float32, requires_grad=True)
        o = clip(start.onset_s / MAX_ONSET_S)
        self.raw_onset = f(math.log(o / (1 - o)))
        self.log_rise = f(math.log(start.scr_rise_s))
        self.log_extra = f(math.log(max(start.scr_recovery_s - start.scr_rise_s, 1e-3)))
        self.log_lag = f(math.log(max(start.onset_lag_s, 0.0) or c.init_onset_lag_s))

    def parameters(self) -> list[Any]:
        out = [self.log_gain, self.raw_levels, self.log_rise, self.log_extra]
        out += [self.log_tau] if self.config.learn_tau else []
        if self.config.learn_onset:
            out += ([self.raw_onset] if self.ramp else []) + ([self.log_lag] if self.lag else [])
        return out

    def freeze(self) -> None:
        for p in (self.log_tau, self.log_gain, self.raw_levels, self.log_rise, self.log_extra, self.raw_onset,
                  self.log_lag):
            p.requires_grad_(False)

    def tau(self) -> Any:
        return self.log_tau.exp()

    def levels(self) -> Any:
        t = self.torch
        free = iter(t.sigmoid(self.raw_levels).unbind())
        return t.stack([t.tensor(ANCHORS[c], dtype=t.float32) if c in ANCHORS else next(free) for c in range(5)])

    def onset_s(self) -> Any:
        """The onset ramp's length, s (0 without a ramp)."""
        return MAX_ONSET_S * self.torch.sigmoid(self.raw_onset) if self.ramp else self.torch.tensor(0.0)

    def onset_lag_s(self) -> Any:
        """The onset lag's time constant, s (0 without a lag)."""
        return self.log_lag.exp() if self.lag else self.torch.tensor(0.0)

    def kernel(self) -> Any:
        """The peak-normalised Bateman kernel [K] at 4 Hz."""
        t = self.torch
        rise = self.log_rise.exp()
        rec = rise + self.log_extra.exp()
        tt = t.arange(_kernel_len(), dtype=t.float32) * DT_S
        k = t.exp(-tt / rec) - t.exp(-tt / rise)
        peak = t.log(rec / rise) * rise * rec / (rec - rise)
        return k / (t.exp(-peak / rec) - t.exp(-peak / rise))

    def phasic(self, driver: Any) -> Any:
        """[B, T] SCR sum of ``driver`` [B, T]."""
        return causal_conv(driver, self.kernel())

    def free_response(self, n: int) -> Any:
        """a^k, k = 0..n-1, a = exp(-dt / tau): how a tonic offset decays."""
        t = self.torch
        return t.exp(-t.arange(n, dtype=t.float32) * DT_S / self.tau())

    def drive(self, codes: Any) -> Any:
        """[B, T] onset-smoothed drive of ``codes`` [B, T] (the first code held before the start):
        the condition levels through the onset ramp, then through the onset lag."""
        t = self.torch
        u = self.levels()[codes]
        u0 = u[:, :1]
        if self.ramp:
            n_max = int(MAX_ONSET_S / DT_S) + 1
            w = (self.onset_s() / DT_S + 1 - t.arange(n_max, dtype=t.float32)).clamp(0, 1)
            u = causal_conv(u - u0, w / w.sum()) + u0
        if self.lag:
            # Exact for a drive held over each sample: (1 - b) b^m, b = exp(-dt / lag_s).
            b = t.exp(-DT_S / self.onset_lag_s())
            h = (1 - b) * b ** t.arange(u.shape[1], dtype=t.float32)
            u = causal_conv(u - u0, h) + u0
        return u

    def tonic(self, codes: Any, rest: Any, state0: Any) -> Any:
        """[B, T] tonic level from resting levels ``rest`` [B] and first-sample states ``state0`` [B] (µS)."""
        t = self.torch
        n = codes.shape[1]
        a = self.free_response(n + 1)
        u = self.drive(codes)
        um = t.cat([0.5 * (u[:, 1:] + u[:, :-1]), u[:, -1:]], dim=1)
        h = (1 - a[1]) * a[:-1]  # (1 - a) a^m
        forced = t.nn.functional.pad(causal_conv(um, h), (1, 0))[:, :n]
        return rest[:, None] + (state0 - rest)[:, None] * a[:n] + self.log_gain.exp() * forced

    def result(self, mse: float, n: int, objective: float = math.nan) -> TonicPhasicFit:
        rise = float(self.log_rise.detach().exp())
        lv = self.levels().detach().numpy()
        return TonicPhasicFit(float(self.tau().detach()), float(self.log_gain.detach().exp()), {c: float(lv[c]) for c in FREE_CODES},
                              float(self.onset_s().detach()), rise, rise + float(self.log_extra.detach().exp()), mse, n,
                              float(self.onset_lag_s().detach()), objective)


def _run_adam(loss_fn: Any, steps: int, groups: list[tuple[list[Any], float]], project: Any) -> tuple[float, float]:
    """Adam with cosine decay; returns the last step's (objective, mean squared error)."""
    import torch

    opt = torch.optim.Adam([{"params": p, "lr": lr} for p, lr in groups if p])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / steps)))
    objective, mse = math.nan, math.nan
    for _ in range(steps):
        loss, mse = loss_fn()
        objective = float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            project.clamp_(min=0.0)
    return objective, mse


@dataclass(frozen=True)
class Series:
    """One subject's continuous recording: eda [T] µS at 4 Hz, codes [T] WESAD codes 0-4, and
    mask [T] bool (samples the loss may use, e.g. a fold's training spans; None: all)."""

    eda: np.ndarray
    codes: np.ndarray
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = np.asarray(self.eda).shape
        if len(n) != 1 or n[0] < 8 or np.asarray(self.codes).shape != n or \
                (self.mask is not None and np.asarray(self.mask).shape != n):
            raise ConfigError(f"Series: eda, codes (and mask) must be [T >= 8] alike, got {n}, "
                              f"{np.asarray(self.codes).shape}")
        c = np.asarray(self.codes)
        if c.min() < 0 or c.max() > 4:
            raise ConfigError("Series: condition codes must be 0-4")


def _stack(series: list[Series]) -> tuple[Any, Any, Any]:
    import torch

    if not series:
        raise ConfigError("tonic/phasic fit: no series")
    n = max(s.eda.size for s in series)
    eda = np.zeros((len(series), n), np.float32)
    codes = np.zeros((len(series), n), np.int64)
    mask = np.zeros((len(series), n), np.float32)
    for i, s in enumerate(series):
        e = np.asarray(s.eda, np.float64)
        m = np.isfinite(e) & (np.ones(e.size, bool) if s.mask is None else np.asarray(s.mask, bool))
        eda[i, :e.size] = np.where(np.isfinite(e), e, np.nanmedian(e))
        codes[i, :e.size] = s.codes
        codes[i, e.size:] = s.codes[-1]
        mask[i, :e.size] = m
    if mask.sum() < 8:
        raise ConfigError("tonic/phasic fit: fewer than 8 usable samples")
    return torch.from_numpy(eda), torch.from_numpy(codes), torch.from_numpy(mask)


def fit_tonic_phasic(series: list[Series], config: TonicPhasicConfig = TonicPhasicConfig(),
                     weights: np.ndarray | None = None, init: TonicPhasicFit | None = None,
                     return_phasic: bool = False) -> TonicPhasicFit | tuple[TonicPhasicFit, list["Components"]]:
    """Fit the tonic/phasic model to subjects' continuous recordings (see the module docstring).

    The tonic state runs through each whole recording (the ODE decides how it moves between
    conditions); per subject the resting level, the first state and the SCR driver are free.
    weights: [S] >= 0 per series (a subject bootstrap passes each subject's multiplicity).
    init: start from an earlier fit (a bootstrap replicate starts from the full-data fit).
    return_phasic: also return each series' :class:`Components` (phasic part, smoothed drive and
    resting level: EDA minus the phasic part is the tonic component the PINN's physics term sees).

    Raises ConfigError for malformed inputs.
    """
    import torch

    e, c, m = _stack(series)
    w = torch.ones(e.shape[0]) if weights is None else torch.as_tensor(np.asarray(weights, np.float32))
    w = w / w.mean()
    shared = _Shared(config, init)
    rest = torch.stack([torch.quantile(e[i][m[i] > 0], 0.05) if (m[i] > 0).any() else e[i, 0]
                        for i in range(e.shape[0])]).requires_grad_(True)
    state0 = e[:, 0].clone().requires_grad_(True)
    driver = torch.zeros_like(e, requires_grad=True)
    count = (w[:, None] * m).sum()

    def loss_fn() -> tuple[Any, float]:
        err = (shared.tonic(c, rest, state0) + shared.phasic(driver) - e) * m
        sq = (w[:, None] * err ** 2).sum()
        loss = (sq + config.l1_uS * (w[:, None] * driver).sum()) / count
        return loss, float(sq.detach() / count)

    def tonic_only() -> tuple[Any, float]:
        # First stage: the tonic alone, with residuals above it (where SCRs sit) weighted down.
        err = (shared.tonic(c, rest, state0) - e) * m
        sq = (w[:, None] * torch.where(err < 0, 0.25, 1.0) * err ** 2).sum()
        return sq / count, float(sq.detach() / count)

    with torch.enable_grad():
        first = max(1, int(config.steps * config.tonic_first))
        if init is None:
            _run_adam(tonic_only, first, [(shared.parameters(), config.lr), ([rest, state0], config.window_lr)], driver)
        objective, mse = _run_adam(loss_fn, config.steps, [(shared.parameters(), config.lr),
                                                           ([rest, state0, driver], config.window_lr)], driver)
    result = shared.result(mse, int(e.shape[0]), objective)
    if not return_phasic:
        return result
    with torch.no_grad():
        # Clipped: the FFT convolutions leave rounding errors of ~1e-7 around 0 and 1.
        ph = np.clip(shared.phasic(driver).numpy(), 0.0, None)
        u = np.clip(shared.drive(c).numpy(), 0.0, 1.0)
    return result, [Components(ph[i, :s.eda.size].astype(np.float64), u[i, :s.eda.size].astype(np.float64),
                               float(rest[i].detach())) for i, s in enumerate(series)]


@dataclass(frozen=True)
class Components:
    """One series' decomposition by a fit: phasic [T] µS (the SCRs; EDA minus it is the tonic
    component), drive [T] 0..1 (the onset-smoothed condition drive) and rest_uS (the resting tonic level)."""

    phasic: np.ndarray
    drive: np.ndarray
    rest_uS: float


def bootstrap_counts(n_subjects: int, replicates: int, seed: int = 0) -> list[np.ndarray]:
    """The subject bootstrap's draws: per replicate, how often each of ``n_subjects`` subjects was
    drawn (with replacement, ``n_subjects`` draws). Replicate i's counts do not depend on how many
    replicates follow, so replicates can be fitted apart (and cached) and still be the same."""
    rng = np.random.default_rng(seed)
    return [np.bincount(rng.integers(0, n_subjects, n_subjects), minlength=n_subjects) for _ in range(replicates)]


def bootstrap_refit(series: list[Series], full: TonicPhasicFit, counts: np.ndarray,
                    config: TonicPhasicConfig = TonicPhasicConfig(), steps: int | None = None) -> TonicPhasicFit:
    """One bootstrap replicate: the fit on the drawn subjects (each weighted by how often it was drawn),
    started from ``full`` and run for ``steps`` (default half of ``config.steps``)."""
    keep = np.flatnonzero(counts)
    cfg = replace(config, steps=steps or max(1, config.steps // 2))
    return fit_tonic_phasic([series[i] for i in keep], cfg, weights=counts[keep], init=full)


BOOTSTRAP_KEYS = ("tau_s", "gain_uS", "scr_rise_s", "scr_recovery_s")
"""The parameters a bootstrap gives intervals for."""


def percentile_intervals(fits: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """95 % percentile intervals of :data:`BOOTSTRAP_KEYS` over replicate fits (``TonicPhasicFit.as_dict()``):
    ``{name: {"low", "high", "replicates"}}``."""
    return {k: {"low": float(np.percentile([f[k] for f in fits], 2.5)),
                "high": float(np.percentile([f[k] for f in fits], 97.5)), "replicates": len(fits)}
            for k in BOOTSTRAP_KEYS}


def bootstrap_subjects(series: list[Series], full: TonicPhasicFit, config: TonicPhasicConfig = TonicPhasicConfig(),
                       replicates: int = 20, seed: int = 0, steps: int | None = None) -> dict[str, dict[str, float]]:
    """95 % percentile intervals of tau_s, gain_uS, scr_rise_s and scr_recovery_s from a bootstrap over
    subjects (:func:`bootstrap_counts`, :func:`bootstrap_refit`, :func:`percentile_intervals`, one
    replicate after the other; ``edgemer study physio`` runs the replicates as tasks of its executor).

    Returns ``{name: {"low", "high", "replicates"}}``.
    """
    return percentile_intervals([bootstrap_refit(series, full, counts, config, steps).as_dict()
                                 for counts in bootstrap_counts(len(series), replicates, seed)])


def profile_tau(series: list[Series], taus: list[float], config: TonicPhasicConfig = TonicPhasicConfig(),
                weights: np.ndarray | None = None, init: TonicPhasicFit | None = None) -> list[TonicPhasicFit]:
    """The profile of the fit's objective over tau: for each ``taus`` value (s), tau is held there and
    everything else is fitted, from the config's starting values or from ``init`` (e.g. the free fit).
    Returns one fit per tau; their ``objective_uS2`` is the profile (a clear single minimum: tau
    identified; a flat valley or two minima: not, within that range)."""
    return [fit_tonic_phasic(series, replace(config, init_tau_s=float(t), learn_tau=False), weights, init)
            for t in taus]


def jackknife_interval(estimates: list[float]) -> dict[str, float]:
    """95 % interval (normal, jackknife standard error) of the mean of leave-one-subject-out estimates."""
    x = np.asarray(estimates, float)
    n = x.size
    se = math.sqrt((n - 1) / n * float(((x - x.mean()) ** 2).sum())) if n > 1 else math.nan
    return {"low": float(x.mean() - 1.96 * se), "high": float(x.mean() + 1.96 * se), "se": se, "n": n}


def physics_forecast(fit: TonicPhasicFit, eda: np.ndarray, n_forecast: int,
                     config: TonicPhasicConfig = TonicPhasicConfig(), steps: int = 300,
                     fit_s: float | None = 30.0) -> np.ndarray:
    """Forecast ``n_forecast`` samples after each window ``eda`` [W, N] µS with ``fit``'s tau and SCR shape.

    No labels: per window, a tonic equilibrium, the tonic state at the first sample and the
    SCR driver over the window and ``config.history_s`` before it are fitted (``steps``
    Adam steps) on the window's last ``fit_s`` seconds (None: all of it; a condition change
    earlier in the window would otherwise bend the single approach to one equilibrium);
    the tonic then keeps approaching its equilibrium with tau, the SCRs already started
    recover and new ones add their expected sum at the window's own SCR rate; the forecast is shifted to start from the
    window's last sample. Returns [W, n_forecast] µS.
    """
    import torch

    e = torch.from_numpy(np.asarray(eda, np.float32))
    if e.ndim != 2 or e.shape[1] < 8 or not torch.isfinite(e).all():
        raise ConfigError(f"physics_forecast: eda must be finite [W, N >= 8], got {tuple(e.shape)}")
    if fit_s is not None:
        e = e[:, -min(e.shape[1], max(8, int(round(fit_s / DT_S)))):]
    n = e.shape[1]
    hist = int(round(config.history_s / DT_S))
    shared = _Shared(config, fit)
    shared.freeze()
    a = shared.free_response(n + n_forecast)
    equilibrium = e[:, -1].clone().requires_grad_(True)
    state0 = e[:, 0].clone().requires_grad_(True)
    driver = torch.zeros(e.shape[0], hist + n, requires_grad=True)

    def loss_fn() -> tuple[Any, float]:
        fitted = equilibrium[:, None] + (state0 - equilibrium)[:, None] * a[:n] + shared.phasic(driver)[:, hist:]
        sq = ((fitted - e) ** 2).sum(1)
        return (sq + config.l1_uS * driver.sum(1)).mean(), float(sq.detach().mean()) / n

    with torch.enable_grad():
        _run_adam(loss_fn, steps, [([equilibrium, state0, driver], config.window_lr)], driver)
    with torch.no_grad():
        full = torch.nn.functional.pad(driver, (0, n_forecast))
        out = equilibrium[:, None] + (state0 - equilibrium)[:, None] * a + shared.phasic(full)[:, hist:]
        # New SCRs at the window's own rate: their expected sum is the driver per sample times the
        # kernel's running area (a window full of SCRs keeps its phasic level; a quiet one stays quiet).
        rate = driver[:, hist:].sum(1) / n
        area = torch.cumsum(shared.kernel()[:n_forecast], 0)
        out[:, n:] += rate[:, None] * area[None, :]
        # Continuity: the forecast starts from the last measured sample (the fit's last residual is
        # carried forward, as persistence would carry the sample itself).
        out = out + (e[:, -1] - out[:, n - 1])[:, None]
    return out[:, n:].numpy().astype(np.float64)
