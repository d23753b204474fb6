"""A second, independent WESAD-layout generator for checking the PINN's physics (issue 17).

It shares no code with :mod:`edgemer.simulate` or ``edgemer data synth-wesad`` and differs
from them on purpose:

- **tonic EDA**: ``tau * dT/dt = -(T - T0) + gain * u(t)``, integrated at 64 Hz with
  the classic Runge-Kutta scheme, with one time constant ``tau_s`` and gain ``gain_uS``
  shared by all subjects and a per-subject resting level ``T0`` (1.5-8 µS);
- **drive**: u = the condition's level (baseline 0, stress 1, amusement 0.35, meditation
  0.05, transient 0.25), changing with a raised-cosine onset over ``onset_s`` seconds
  (no wandering, no pulses in the drive);
- **SCRs on top of the tonic level, not through it**: Poisson events (rate per
  condition), 1-3 s latency, each with its own log-normal amplitude, rise time (0.7-2 s)
  and recovery time constant (3-6 s), shape ``A * r(t) * exp(-t / t_rec)`` with a
  rational rise ``r = x^2 / (1 + x^2)``, ``x = t / t_rise`` (not a Bateman function);
- **sensor**: white noise, block-averaging from 64 Hz to the E4's 4 Hz and quantisation to ``quantum_uS`` steps.

BVP, skin temperature and acceleration are simple (their own formulas); labels are the
700 Hz WESAD codes. ``truth.json`` holds the tonic ODE's parameters in the form the study
reads (alpha_0 = 1/tau, beta = gain/tau, gamma = 1, drive levels with baseline 0 and
stress 1) and the SCR parameter ranges.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

LEVELS = {0: 0.25, 1: 0.0, 2: 1.0, 3: 0.35, 4: 0.05}
"""Drive level per WESAD code (transient, baseline, stress, amusement, meditation)."""
SCR_PER_MIN = {0: 2.0, 1: 1.0, 2: 5.0, 3: 3.0, 4: 0.5}
"""SCR events per minute per WESAD code."""
HR_BPM = {0: 75.0, 1: 68.0, 2: 88.0, 3: 72.0, 4: 64.0}
FINE_HZ = 64.0


@dataclass(frozen=True)
class IndependentConfig:
    """What to generate. minutes: session length per subject; tau_s (s) and gain_uS (µS from
    baseline to stress): the tonic truth; onset_s: raised-cosine drive onset; noise_uS: white
    sensor noise; quantum_uS: the EDA sensor's step; scr_amplitude_uS: median SCR amplitude."""

    subjects: int = 6
    minutes: float = 12.0
    seed: int = 0
    tau_s: float = 13.7
    gain_uS: float = 1.6
    onset_s: float = 6.0
    noise_uS: float = 0.01
    quantum_uS: float = 0.005
    scr_amplitude_uS: float = 0.25


def protocol(minutes: float, rng: np.random.Generator) -> list[tuple[int, float]]:
    """A session of about ``minutes``: baseline first, then stress / amusement / meditation in a
    random order, each separated by 40 s of transient; durations scale with ``minutes``."""
    scale = minutes / 12.0
    rest = [(2, 180.0), (3, 120.0), (4, 90.0)]
    rng.shuffle(rest)
    out: list[tuple[int, float]] = [(1, 200.0 * scale)]
    for code, sec in rest:
        out += [(0, 40.0 * scale), (code, sec * scale)]
    return out


def _drive(codes: np.ndarray, onset_s: float) -> np.ndarray:
    """Drive at FINE_HZ: the level of each code, changes smoothed by a raised-cosine ramp."""
    level = np.array([LEVELS[int(c)] for c in codes])
    n_ramp = max(1, int(round(onset_s * FINE_HZ)))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, n_ramp + 1) / n_ramp)
    u = level.copy()
    for k in np.flatnonzero(np.diff(codes)) + 1:
        a, b = level[k - 1], level[k]
        stop = min(u.size, k + n_ramp)
        u[k:stop] = a + (b - a) * ramp[:stop - k]
    return u


def _tonic(u: np.ndarray, t0: float, tau: float, gain: float) -> np.ndarray:
    """RK4 of tau dT/dt = -(T - t0) + gain u at FINE_HZ (u linear between samples)."""
    h = 1.0 / FINE_HZ
    f = lambda T, uu: (-(T - t0) + gain * uu) / tau  # noqa: E731
    out = np.empty_like(u)
    T = t0 + gain * u[0]
    for i in range(u.size):
        out[i] = T
        u0, u1 = u[i], u[min(i + 1, u.size - 1)]
        um = 0.5 * (u0 + u1)
        k1 = f(T, u0)
        k2 = f(T + 0.5 * h * k1, um)
        k3 = f(T + 0.5 * h * k2, um)
        k4 = f(T + h * k3, u1)
        T = T + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return out


def _scrs(codes: np.ndarray, cfg: IndependentConfig, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Sum of SCRs at FINE_HZ and their number."""
    n = codes.size
    rate = np.array([SCR_PER_MIN[int(c)] for c in codes]) / 60.0 / FINE_HZ
    events = np.flatnonzero(rng.random(n) < rate)
    out = np.zeros(n)
    for e in events:
        start = e + int(rng.uniform(1.0, 3.0) * FINE_HZ)
        if start >= n:
            continue
        amp = cfg.scr_amplitude_uS * float(np.exp(0.5 * rng.standard_normal()))
        t_rise, t_rec = rng.uniform(0.7, 2.0), rng.uniform(3.0, 6.0)
        t = np.arange(n - start) / FINE_HZ
        x = t / t_rise
        shape = x * x / (1 + x * x) * np.exp(-t / t_rec)
        out[start:] += amp * shape / shape.max()
    return out, int(events.size)


def subject(name: str, cfg: IndependentConfig, rng: np.random.Generator) -> tuple[dict, dict]:
    """One subject's WESAD pickle dict and its per-subject truth."""
    steps = protocol(cfg.minutes, rng)
    codes = np.concatenate([np.full(int(round(sec * FINE_HZ)), c, np.int16) for c, sec in steps])
    codes = codes[:codes.size - codes.size % 16]  # whole 4 Hz and 32 Hz samples
    t0 = float(rng.uniform(1.5, 8.0))
    u = _drive(codes, cfg.onset_s)
    scr, n_scr = _scrs(codes, cfg, rng)
    eda_fine = _tonic(u, t0, cfg.tau_s, cfg.gain_uS) + scr + cfg.noise_uS * rng.standard_normal(codes.size) * 4
    eda = eda_fine.reshape(-1, 16).mean(1)  # 64 Hz -> 4 Hz, block means (the noise drops by 4)
    eda = np.round(eda / cfg.quantum_uS) * cfg.quantum_uS
    t_fine = np.arange(codes.size) / FINE_HZ
    hr = np.array([HR_BPM[int(c)] for c in codes]) + 2.0 * np.sin(2 * np.pi * t_fine / 47.0)
    phase = np.cumsum(hr / 60.0 / FINE_HZ)
    bvp = 40.0 * np.sin(2 * np.pi * phase) ** 9 + 3.0 * rng.standard_normal(codes.size)  # 64 Hz
    temp = 33.0 + rng.uniform(-1, 1) - 0.3 * u[::16] + 0.02 * rng.standard_normal(eda.size)
    acc = np.stack([0 * t_fine[::2], 0 * t_fine[::2], 64 + 0 * t_fine[::2]], 1) + 2.0 * rng.standard_normal(
        (codes.size // 2, 3))
    label = np.repeat(codes[::16], 175).astype(np.int32)  # 4 Hz -> 700 Hz
    data = {"subject": name, "label": label,
            "signal": {"wrist": {"EDA": eda[:, None].astype(np.float64), "BVP": bvp[:, None],
                                 "TEMP": temp[:, None], "ACC": acc}}}
    return data, {"tonic_uS": t0, "scrs": n_scr, "protocol": [[c, s] for c, s in steps]}


def write_independent_wesad(out_dir: Path, cfg: IndependentConfig = IndependentConfig()) -> Path:
    """Write ``cfg.subjects`` subjects (S2, S3, ...) and truth.json into ``out_dir``; returns it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    per_subject = {}
    for i in range(cfg.subjects):
        name = f"S{i + 2}"
        data, info = subject(name, cfg, np.random.default_rng(rng.integers(2**31)))
        (out_dir / name).mkdir(exist_ok=True)
        with open(out_dir / name / f"{name}.pkl", "wb") as f:
            pickle.dump(data, f, protocol=4)
        per_subject[name] = info
    truth = {"synthetic": True, "generator": "tests/independent_wesad.py (independent of edgemer.simulate)",
             "ode": "tau * dT/dt = -(T - T0) + gain * u (tonic); SCRs added on top",
             "alpha_0": 1.0 / cfg.tau_s, "beta": cfg.gain_uS / cfg.tau_s, "gamma": 1.0,
             "tau_s": cfg.tau_s, "gain_uS": cfg.gain_uS,
             "drive_levels": {str(c): v for c, v in LEVELS.items()},
             "scr": {"rise_s": [0.7, 2.0], "recovery_tau_s": [3.0, 6.0], "per_min": SCR_PER_MIN,
                     "median_amplitude_uS": cfg.scr_amplitude_uS},
             "config": asdict(cfg), "subjects": per_subject}
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return out_dir


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write the independent WESAD-layout test set (issue 17)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    print(write_independent_wesad(a.out, IndependentConfig(subjects=a.subjects, minutes=a.minutes, seed=a.seed)))
