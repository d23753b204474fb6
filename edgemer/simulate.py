"""A numpy-only simulator of a wrist wearable (Empatica E4 layout, as in WESAD).

EDA follows the first-order dynamics of DESIGN.md::

    gamma * dEDA/dt = -alpha_0 * (EDA - EDA_tonic) + beta * u(t)

driven by a latent arousal drive ``u(t)`` in [0, 1]. Two drive models:

- ``bursty`` (the default, used by the demo): a condition level (stress high, amusement
  moderate, baseline and meditation low) approached over ~20 s with slow noise, plus
  brief pulses that produce skin-conductance responses through the same ODE.
- ``condition``: exactly the condition's level, switching at condition boundaries, with
  the levels rescaled so that baseline is 0 and stress is 1 (:func:`anchored_levels`).
  This is what the PINN's constrained drive can represent, so it is the data on which
  the identifiability of the time constant and gain is checked.

Either way the simulated EDA satisfies the ODE exactly, up to sensor noise. Heart rate,
pulse amplitude, skin temperature and motion respond to the condition too.

Streams and units (WESAD wrist): ``eda`` 4 Hz µS, ``bvp`` 64 Hz (arbitrary PPG
units), ``temp`` 4 Hz °C, ``acc`` 32 Hz 3 axes in 1/64 g.

The same simulator feeds ``edgemer demo`` (:class:`edgemer.sources.SimulatedWearable`)
and ``edgemer data synth-wesad``, so the demo bundle is trained on what the demo shows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edgemer.errors import ConfigError
from edgemer.types import StreamSpec

BLOCK_S = 0.25
"""Simulation step in seconds: one EDA/TEMP sample, 8 ACC samples, 16 BVP samples."""

WRIST_STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec("eda", 4.0, 1, "uS"),
    StreamSpec("bvp", 64.0, 1, "a.u."),
    StreamSpec("temp", 4.0, 1, "degC"),
    StreamSpec("acc", 32.0, 3, "g/64"),
)

# WESAD label codes (700 Hz label array): 0 transient / undefined, 1 baseline,
# 2 stress, 3 amusement, 4 meditation, 5-7 to be ignored.
WESAD_CONDITIONS = {0: "transient", 1: "baseline", 2: "stress", 3: "amusement", 4: "meditation"}


@dataclass(frozen=True)
class ConditionProfile:
    """How one condition drives the body: drive level (0..1), heart-rate offset (bpm),
    skin-temperature offset (°C), motion amplitude (1/64 g) and SCR pulse rate (1/s)."""

    drive: float
    hr_offset_bpm: float
    temp_offset_c: float
    motion: float
    scr_rate_hz: float


PROFILES = {
    0: ConditionProfile(drive=0.20, hr_offset_bpm=4.0, temp_offset_c=0.0, motion=3.0, scr_rate_hz=0.03),
    1: ConditionProfile(drive=0.05, hr_offset_bpm=0.0, temp_offset_c=0.0, motion=1.0, scr_rate_hz=0.02),
    2: ConditionProfile(drive=0.80, hr_offset_bpm=18.0, temp_offset_c=-0.5, motion=2.0, scr_rate_hz=0.15),
    3: ConditionProfile(drive=0.35, hr_offset_bpm=6.0, temp_offset_c=0.1, motion=6.0, scr_rate_hz=0.06),
    4: ConditionProfile(drive=0.00, hr_offset_bpm=-5.0, temp_offset_c=0.2, motion=0.5, scr_rate_hz=0.01),
}


DRIVE_MODELS = ("bursty", "condition")


def anchored_levels() -> dict[int, float]:
    """Drive level per WESAD code, rescaled so that baseline is 0 and stress is 1 (clipped to [0, 1]).

    These anchors fix the scale of u(t): one unit of drive is the step from rest to the
    stress condition, so the gain beta / alpha_0 is the steady EDA rise from rest to stress (µS).
    """
    base, stress = PROFILES[1].drive, PROFILES[2].drive
    return {c: float(np.clip((p.drive - base) / (stress - base), 0.0, 1.0)) for c, p in PROFILES.items()}


@dataclass(frozen=True)
class EdaDynamics:
    """Parameters of ``gamma * dEDA/dt = -alpha_0 * (EDA - tonic) + beta * u``.

    alpha_0: decay rate, 1/s. beta: emotional sensitivity, µS/s per unit drive.
    gamma: time scaling, dimensionless. The time constant is gamma / alpha_0 seconds
    and a sustained drive u raises EDA by beta * u / alpha_0 µS.
    """

    alpha_0: float = 0.08
    beta: float = 0.16
    gamma: float = 1.5

    def __post_init__(self) -> None:
        for name in ("alpha_0", "beta", "gamma"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"EdaDynamics.{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class SubjectTraits:
    """Per-wearer constants: tonic EDA (µS), resting heart rate (bpm), skin temperature (°C)."""

    tonic_uS: float = 3.0
    rest_hr_bpm: float = 68.0
    skin_temp_c: float = 33.5

    @classmethod
    def random(cls, rng: np.random.Generator) -> "SubjectTraits":
        return cls(tonic_uS=float(rng.uniform(1.0, 6.0)), rest_hr_bpm=float(rng.uniform(58, 80)),
                   skin_temp_c=float(rng.uniform(32.5, 34.5)))


DEMO_SCENARIO: tuple[tuple[int, float], ...] = ((1, 120.0), (2, 150.0), (1, 90.0), (3, 120.0), (4, 90.0))
"""The demo's repeating protocol: (WESAD label code, seconds)."""

WESAD_PROTOCOL: tuple[tuple[int, float], ...] = (
    (1, 300.0), (0, 45.0), (3, 150.0), (0, 45.0), (4, 120.0), (0, 45.0), (2, 240.0), (0, 45.0), (4, 120.0),
)
"""A compressed WESAD session (real WESAD: ~20 min baseline, 6.5 min amusement, 10 min stress)."""


@dataclass
class _State:
    t: float = 0.0
    eda: float = 0.0
    drive_level: float = 0.0
    hr: float = 0.0
    temp_offset: float = 0.0
    pulse_phase: float = 0.0
    pulse_left_s: float = 0.0
    orientation: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 64.0]))


class WristSimulator:
    """Generates wrist signals block by block; the state carries over between calls.

    Parameters
    ----------
    scenario: sequence of ``(wesad_label_code, duration_s)``; repeated when ``loop``.
    dynamics: EDA ODE parameters (the ground truth a PINN should recover).
    traits: per-wearer constants.
    seed: random seed; the same seed gives the same signals.
    loop: repeat the scenario forever (live demo) or stop after one pass.
    drive: ``bursty`` (condition level with slow noise and SCR pulses) or ``condition``
        (exactly the anchored condition level; see the module docstring).
    """

    def __init__(self, scenario: Sequence[tuple[int, float]] = DEMO_SCENARIO, dynamics: EdaDynamics = EdaDynamics(),
                 traits: SubjectTraits = SubjectTraits(), seed: int = 0, loop: bool = True,
                 drive: str = "bursty") -> None:
        if drive not in DRIVE_MODELS:
            raise ConfigError(f"WristSimulator.drive must be one of {DRIVE_MODELS}, got {drive!r}")
        self.drive_model = drive
        self._anchored = anchored_levels()
        if not scenario:
            raise ConfigError("WristSimulator.scenario must hold at least one (label, seconds) step")
        for code, dur in scenario:
            if code not in PROFILES:
                raise ConfigError(f"WristSimulator.scenario: unknown condition code {code}; use one of {sorted(PROFILES)}")
            if dur <= 0:
                raise ConfigError(f"WristSimulator.scenario: duration must be > 0 s, got {dur}")
        self.scenario = tuple((int(c), float(d)) for c, d in scenario)
        self.dynamics = dynamics
        self.traits = traits
        self.loop = loop
        self._rng = np.random.default_rng(seed)
        self._period = sum(d for _, d in self.scenario)
        self._s = _State(eda=traits.tonic_uS, hr=traits.rest_hr_bpm, drive_level=PROFILES[self.scenario[0][0]].drive)

    @property
    def duration_s(self) -> float:
        """Length of one pass of the scenario, seconds."""
        return self._period

    @property
    def t(self) -> float:
        """Simulated seconds generated so far."""
        return self._s.t

    def condition_at(self, t: float) -> int:
        """WESAD label code of the scenario at ``t`` seconds."""
        if self.loop:
            t = t % self._period
        for code, dur in self.scenario:
            if t < dur:
                return code
            t -= dur
        return self.scenario[-1][0]

    def generate(self, duration_s: float) -> dict[str, np.ndarray]:
        """Generate the next ``duration_s`` seconds (rounded down to whole 0.25 s blocks).

        Returns a dict with ``eda`` [n4, 1], ``temp`` [n4, 1], ``bvp`` [n64, 1],
        ``acc`` [n32, 3] (float32), plus ``label`` [n4] (int, WESAD code) and
        ``drive`` [n4] (float32, the true u(t)) at 4 Hz.
        """
        n_blocks = int(np.floor(duration_s / BLOCK_S + 1e-9))
        rng, s, dyn, tr = self._rng, self._s, self.dynamics, self.traits
        eda = np.empty(n_blocks, np.float32)
        temp = np.empty(n_blocks, np.float32)
        drive = np.empty(n_blocks, np.float32)
        label = np.empty(n_blocks, np.int16)
        bvp = np.empty(n_blocks * 16, np.float32)
        acc = np.empty((n_blocks * 8, 3), np.float32)
        for i in range(n_blocks):
            code = self.condition_at(s.t)
            prof = PROFILES[code]
            if self.drive_model == "condition":
                u = s.drive_level = self._anchored[code]
            else:
                # Condition level with a ~20 s approach and slow noise.
                s.drive_level += (prof.drive - s.drive_level) * (BLOCK_S / 20.0) + 0.01 * rng.standard_normal()
                s.drive_level = float(np.clip(s.drive_level, 0.0, 1.0))
                # SCR pulses: a short burst of extra drive.
                if s.pulse_left_s <= 0 and rng.random() < prof.scr_rate_hz * BLOCK_S:
                    s.pulse_left_s = float(rng.uniform(1.0, 2.5))
                pulse = 0.6 if s.pulse_left_s > 0 else 0.0
                s.pulse_left_s -= BLOCK_S
                u = float(np.clip(s.drive_level + pulse, 0.0, 1.0))
            # Exact integration of the linear ODE over the block (u constant within it).
            decay = np.exp(-dyn.alpha_0 / dyn.gamma * BLOCK_S)
            target = tr.tonic_uS + dyn.beta * u / dyn.alpha_0
            s.eda = target + (s.eda - target) * decay
            eda[i] = s.eda + 0.005 * rng.standard_normal()
            drive[i] = u
            label[i] = code
            # Skin temperature: slow (2 min) approach to the condition's offset.
            s.temp_offset += (prof.temp_offset_c - s.temp_offset) * (BLOCK_S / 120.0)
            temp[i] = tr.skin_temp_c + s.temp_offset + 0.01 * rng.standard_normal()
            # Heart rate follows condition and drive; PPG from the integrated beat phase.
            hr_target = tr.rest_hr_bpm + prof.hr_offset_bpm + 6.0 * s.drive_level
            s.hr += (hr_target - s.hr) * (BLOCK_S / 10.0) + 0.3 * rng.standard_normal()
            tt = s.t + np.arange(16) / 64.0
            phase = s.pulse_phase + np.arange(1, 17) * (s.hr / 60.0) / 64.0
            s.pulse_phase = float(phase[-1] % 1.0)
            frac = phase % 1.0
            amp = 60.0 * (1.0 - 0.35 * s.drive_level)
            wave = amp * (np.exp(-((frac - 0.15) / 0.07) ** 2) + 0.35 * np.exp(-((frac - 0.45) / 0.08) ** 2))
            resp = 5.0 * np.sin(2 * np.pi * 0.25 * tt)
            bvp[i * 16:(i + 1) * 16] = wave + resp + 1.5 * rng.standard_normal(16)
            # Wrist orientation wanders slowly; motion adds noise (1/64 g).
            s.orientation = s.orientation + 0.2 * rng.standard_normal(3)
            s.orientation *= 64.0 / np.linalg.norm(s.orientation)
            acc[i * 8:(i + 1) * 8] = s.orientation + prof.motion * rng.standard_normal((8, 3))
            s.t += BLOCK_S
        return {"eda": eda[:, None], "temp": temp[:, None], "bvp": bvp[:, None], "acc": acc,
                "label": label, "drive": drive}
