"""Synthetic subjects in the WESAD layout, generated from the EDA ODE with known parameters.

``write_synthetic_wesad(DIR)`` writes::

    DIR/S2/S2.pkl, DIR/S3/S3.pkl, ...   one pickle per subject (WESAD layout, see edgemer.wesad)
    DIR/S2/S2_quest.csv, ...            plausible self-reports (PANAS, STAI, SAM, SSSQ; WESAD layout)
    DIR/truth.json                      the ODE, its parameters, the protocol, per-subject traits

Wrist signals (EDA 4 Hz µS, BVP 64 Hz, TEMP 4 Hz °C, ACC 32 Hz 1/64 g) come from
:class:`edgemer.simulate.WristSimulator`, whose EDA follows
``gamma * dEDA/dt = -alpha_0 * (EDA - EDA_tonic) + beta * u(t)`` exactly (plus 0.005 µS
sensor noise) with the same :class:`~edgemer.simulate.EdaDynamics` for every subject, or,
with ``param_spread`` > 0, per-subject parameters drawn log-normally around it (listed
under ``subject_dynamics`` in truth.json).
Chest signals (700 Hz, RespiBAN layout) are there so real-WESAD code paths find them:
ECG, respiration and EMG from NeuroKit2's simulators with each condition's heart and
breathing rate, chest EDA/Temp interpolated from the wrist ones, chest ACC (g) from
the wrist ACC. Every array is float32; ``label`` is int32 at 700 Hz (WESAD codes).
"""
from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgemer import __version__
from edgemer.errors import DatasetError, MissingExtraError
from edgemer.simulate import (
    BLOCK_S,
    DRIVE_MODELS,
    PROFILES,
    WESAD_CONDITIONS,
    WESAD_PROTOCOL,
    EdaDynamics,
    SubjectTraits,
    WristSimulator,
    anchored_levels,
)
from edgemer.wesad import LABEL_RATE_HZ
from edgemer.export.core.atomic import atomic_directory
from edgemer.export.core.progress import progress_bar
from edgemer.export.physio.questionnaires import synthetic_quest

CHEST_RATE_HZ = int(LABEL_RATE_HZ)
"""RespiBAN chest signals and the label array: 700 Hz."""
CHEST_SAMPLES_PER_BLOCK = int(round(BLOCK_S * CHEST_RATE_HZ))
"""700 Hz samples per 0.25 s simulation block (175)."""

BREATHING_RATE_BPM = {0: 16.0, 1: 14.0, 2: 20.0, 3: 17.0, 4: 9.0}
"""Breathing rate per WESAD condition code, breaths per minute."""
EMG_BURSTS_PER_MIN = {0: 2.0, 1: 0.5, 2: 3.0, 3: 2.0, 4: 0.2}
"""Muscle-activity bursts per minute per WESAD condition code."""
MIN_NK_SEGMENT_S = 10.0
"""NeuroKit2's simulators are asked for at least this many seconds (then trimmed)."""

ODE_TEXT = "gamma * dEDA/dt = -alpha_0 * (EDA - EDA_tonic) + beta * u(t)"
"""The EDA dynamics the simulator integrates (and the PINN's physics residual)."""


def scaled_protocol(minutes: float | None) -> tuple[tuple[int, float], ...]:
    """:data:`WESAD_PROTOCOL` with durations scaled so the session lasts ``minutes``.

    Durations are rounded to whole 0.25 s simulation blocks (at least one block).
    ``None`` keeps the protocol as it is (18.5 minutes).
    """
    if minutes is None:
        return WESAD_PROTOCOL
    if not minutes > 0:
        raise DatasetError(f"minutes must be > 0, got {minutes}")
    total = sum(d for _, d in WESAD_PROTOCOL)
    scale = minutes * 60.0 / total
    return tuple((code, max(BLOCK_S, round(d * scale / BLOCK_S) * BLOCK_S)) for code, d in WESAD_PROTOCOL)


def _neurokit():
    try:
        import neurokit2
    except ImportError as exc:
        raise MissingExtraError("physio", "neurokit2", "Synthetic chest signals (edgemer data synth-wesad)") from exc
    return neurokit2


def _segments(label_700: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of equal label: ``(code, start, stop)`` sample indices."""
    edges = np.flatnonzero(np.diff(label_700)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [label_700.size]])
    return [(int(label_700[a]), int(a), int(b)) for a, b in zip(starts, stops)]


def _exact_length(x: Any, n: int) -> np.ndarray:
    """``x`` cut to ``n`` samples as float32; repeated if shorter (NeuroKit2's breathing
    simulator returns fewer samples than asked when a segment holds only a few breaths)."""
    x = np.asarray(x, np.float32)
    return x[:n] if x.size >= n else np.resize(x, n)


def _chest_signals(nk: Any, label_700: np.ndarray, traits: SubjectTraits, seed: int) -> dict[str, np.ndarray]:
    """ECG, Resp and EMG at 700 Hz, one NeuroKit2 simulation per condition segment."""
    n = label_700.size
    ecg = np.empty(n, np.float32)
    resp = np.empty(n, np.float32)
    emg = np.empty(n, np.float32)
    rng = np.random.default_rng(seed)
    for code, a, b in _segments(label_700):
        length = max(b - a, int(MIN_NK_SEGMENT_S * CHEST_RATE_HZ))
        dur = length / CHEST_RATE_HZ
        hr = traits.rest_hr_bpm + PROFILES[code].hr_offset_bpm
        bursts = max(1, int(round(EMG_BURSTS_PER_MIN[code] * dur / 60.0)))
        burst_s = min(1.0, 0.5 * dur / bursts)
        seeds = rng.integers(0, 2**31 - 1, size=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            common = {"duration": dur, "length": length, "sampling_rate": CHEST_RATE_HZ}
            e = nk.ecg_simulate(**common, heart_rate=hr, method="simple", noise=0.01, random_state=int(seeds[0]))
            r = nk.rsp_simulate(**common, respiratory_rate=BREATHING_RATE_BPM[code], random_state=int(seeds[1]))
            m = nk.emg_simulate(**common, burst_number=bursts, burst_duration=burst_s, random_state=int(seeds[2]))
        ecg[a:b] = _exact_length(e, b - a)
        resp[a:b] = _exact_length(r, b - a)
        emg[a:b] = _exact_length(m, b - a)
    return {"ECG": ecg[:, None], "Resp": resp[:, None], "EMG": emg[:, None]}


def _resample(x: np.ndarray, rate_hz: float, n_out: int, out_rate_hz: float) -> np.ndarray:
    """Linear interpolation of ``x`` [n, k] at ``rate_hz`` onto ``n_out`` samples at ``out_rate_hz``."""
    t_in = np.arange(x.shape[0]) / rate_hz
    t_out = np.arange(n_out) / out_rate_hz
    return np.stack([np.interp(t_out, t_in, x[:, c]) for c in range(x.shape[1])], axis=1).astype(np.float32)


def simulate_subject(subject: str, protocol: tuple[tuple[int, float], ...], dynamics: EdaDynamics,
                     traits: SubjectTraits, seed: int, nk: Any, drive: str = "bursty") -> dict[str, Any]:
    """One subject as the WESAD pickle's dict (``subject``, ``signal`` -> wrist/chest, ``label``)."""
    sim_seed, chest_seed = np.random.SeedSequence(seed).generate_state(2)
    sim = WristSimulator(scenario=protocol, dynamics=dynamics, traits=traits, seed=int(sim_seed), loop=False,
                         drive=drive)
    wrist = sim.generate(sim.duration_s)
    n_blocks = wrist["eda"].shape[0]
    n_chest = n_blocks * CHEST_SAMPLES_PER_BLOCK
    label = np.repeat(wrist["label"].astype(np.int32), CHEST_SAMPLES_PER_BLOCK)
    chest = _chest_signals(nk, label, traits, int(chest_seed))
    chest["ACC"] = _resample(wrist["acc"] / 64.0, 32.0, n_chest, CHEST_RATE_HZ)
    chest["EDA"] = _resample(wrist["eda"], 4.0, n_chest, CHEST_RATE_HZ)
    chest["Temp"] = _resample(wrist["temp"], 4.0, n_chest, CHEST_RATE_HZ)
    return {
        "subject": subject,
        "signal": {
            "wrist": {"ACC": wrist["acc"], "BVP": wrist["bvp"], "EDA": wrist["eda"], "TEMP": wrist["temp"]},
            "chest": {k: chest[k] for k in ("ACC", "ECG", "EMG", "EDA", "Temp", "Resp")},
        },
        "label": label,
    }


def subject_dynamics(dynamics: EdaDynamics, spread: float, rng: np.random.Generator) -> EdaDynamics:
    """``dynamics`` with alpha_0, beta and gamma each multiplied by ``exp(spread * N(0, 1))``
    (``spread`` 0 returns ``dynamics`` itself and draws nothing)."""
    if spread == 0:
        return dynamics
    f = np.exp(spread * rng.standard_normal(3))
    return EdaDynamics(alpha_0=dynamics.alpha_0 * float(f[0]), beta=dynamics.beta * float(f[1]),
                       gamma=dynamics.gamma * float(f[2]))


def _dynamics_dict(d: EdaDynamics) -> dict[str, float]:
    return {"alpha_0": d.alpha_0, "beta": d.beta, "gamma": d.gamma, "tau_s": d.gamma / d.alpha_0,
            "gain_uS": d.beta / d.alpha_0}


def truth_dict(dynamics: EdaDynamics, protocol: tuple[tuple[int, float], ...], traits: dict[str, SubjectTraits],
               seed: int, per_subject: dict[str, EdaDynamics] | None = None, param_spread: float = 0.0,
               drive: str = "bursty") -> dict[str, Any]:
    """What ``truth.json`` holds: the ODE, its parameters, the protocol and per-subject traits
    (and, with a parameter spread, each subject's own ODE parameters under ``subject_dynamics``)."""
    extra: dict[str, Any] = {}
    if per_subject and param_spread > 0:
        extra = {"param_spread": param_spread,
                 "subject_dynamics": {s: _dynamics_dict(d) for s, d in per_subject.items()}}
    return {
        "synthetic": True,
        "generator": "edgemer data synth-wesad (edgemer.simulate.WristSimulator + NeuroKit2 chest signals)",
        "edgemer_version": __version__,
        "seed": seed,
        "ode": ODE_TEXT,
        "alpha_0": dynamics.alpha_0,
        "beta": dynamics.beta,
        "gamma": dynamics.gamma,
        "tau_s": dynamics.gamma / dynamics.alpha_0,
        "gain_uS": dynamics.beta / dynamics.alpha_0,
        "units": {"alpha_0": "1/s", "beta": "uS/s per unit drive", "gamma": "dimensionless",
                  "tau_s": "s", "gain_uS": "uS per unit drive", "EDA": "uS", "u": "0..1"},
        "eda_noise_uS": 0.005,
        "drive": drive,
        "drive_levels": {str(c): (anchored_levels()[c] if drive == "condition" else p.drive)
                         for c, p in PROFILES.items()},
        "protocol": [{"code": c, "condition": WESAD_CONDITIONS[c], "seconds": d} for c, d in protocol],
        "subjects": {s: asdict(t) for s, t in traits.items()},
        **extra,
    }


def _looks_like_synthetic_wesad(path: Path) -> bool:
    return (path / "truth.json").is_file()


def write_synthetic_wesad(out_dir: Path, subjects: int = 15, seed: int = 0, minutes: float | None = None,
                          progress: bool = True, overwrite: bool = False,
                          dynamics: EdaDynamics = EdaDynamics(), param_spread: float = 0.0,
                          drive: str = "bursty") -> Path:
    """Write ``subjects`` synthetic subjects (S2, S3, ...) and ``truth.json`` into ``out_dir``.

    Parameters
    ----------
    out_dir: folder to create; must be missing or empty unless ``overwrite`` (which
        replaces only a folder this function wrote, recognised by its truth.json).
    subjects: number of subjects (>= 1).
    seed: random seed; the same seed gives byte-identical signals.
    minutes: session length per subject in minutes (default: the 18.5 min protocol).
    progress: show a tqdm bar over subjects.
    dynamics: the EDA ODE parameters (the truth a PINN should recover).
    param_spread: per-subject variation of alpha_0, beta and gamma (log-normal sigma,
        e.g. 0.1 for about 10 %); 0 gives every subject ``dynamics`` (the default).
    drive: the simulator's drive model, ``bursty`` (default) or ``condition`` (see
        :mod:`edgemer.simulate`; the condition levels used are in truth.json ``drive_levels``).

    Returns the absolute ``out_dir``. The folder appears only when complete.

    Raises
    ------
    DatasetError: bad arguments or ``out_dir`` may not be written.
    MissingExtraError: NeuroKit2 is missing (extra ``physio``).
    """
    if subjects < 1:
        raise DatasetError(f"subjects must be >= 1, got {subjects}")
    if drive not in DRIVE_MODELS:
        raise DatasetError(f"drive must be one of {DRIVE_MODELS}, got {drive!r}")
    if not 0 <= param_spread <= 1:
        raise DatasetError(f"param_spread must be in [0, 1] (log-normal sigma), got {param_spread}")
    protocol = scaled_protocol(minutes)
    nk = _neurokit()
    out_dir = Path(out_dir).expanduser().absolute()
    children = np.random.SeedSequence(seed).spawn(subjects)
    traits: dict[str, SubjectTraits] = {}
    per_subject: dict[str, EdaDynamics] = {}
    with atomic_directory(out_dir, overwrite, _looks_like_synthetic_wesad, "synthetic WESAD folder",
                          DatasetError, "overwrite=True (--overwrite)") as tmp:
        bar = progress_bar(enumerate(children), enabled=progress, total=subjects, desc="synth-wesad", unit="subject")
        for i, child in bar:
            name = f"S{i + 2}"
            rng = np.random.default_rng(child)
            traits[name] = SubjectTraits.random(rng)
            sim_seed = int(rng.integers(2**31 - 1))
            per_subject[name] = subject_dynamics(dynamics, param_spread, rng)
            data = simulate_subject(name, protocol, per_subject[name], traits[name], sim_seed, nk, drive)
            (tmp / name).mkdir()
            with open(tmp / name / f"{name}.pkl", "wb") as f:
                pickle.dump(data, f, protocol=4)
            quest_rng = np.random.default_rng(np.random.SeedSequence([seed, i, 7]))
            (tmp / name / f"{name}_quest.csv").write_text(synthetic_quest(name, quest_rng))
        truth = truth_dict(dynamics, protocol, traits, seed, per_subject, param_spread, drive)
        (tmp / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return out_dir
