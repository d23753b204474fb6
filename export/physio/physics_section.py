"""The ``physics`` section of a physiology bundle's manifest, and its text for the terminal and
verification.md (one renderer for both).

Two physics models (``PhysioExportConfig.physics``):

- ``tonic-phasic`` (default): the tonic ODE + Bateman SCR model
  (:mod:`edgemer.export.physio.tonic`) is fitted on the training subjects' recordings; the
  PINN's physical parameters are fixed to it and its residual acts on the tonic component.
  The section carries the tonic ``tau_s`` and ``gain_uS``, the drive levels and onset, the
  SCR rise / recovery time constants and half-recovery, and (as the runtime reads them)
  ``alpha_0 = 1/tau_s``, ``beta = gain_uS/tau_s``, ``gamma = 1``.
- ``single-ode``: one ODE residual on the whole EDA, parameters learned by the PINN.

``truth`` (synthetic data only) is truth.json's parameters in the same form as the learned
ones: for ``tonic-phasic`` normalised to gamma = 1, with the drive levels on the anchored
scale (baseline 0, stress 1).
"""
from __future__ import annotations

import math
from typing import Any

from edgemer.export.physio.synth import ODE_TEXT
from edgemer.export.physio.tonic import CONDITION_NAMES, FREE_CODES, PUBLISHED, TonicPhasicFit

PHYSICS_UNITS = {"alpha_0": "1/s", "beta": "uS/s per unit drive", "gamma": "dimensionless", "tau_s": "s",
                 "gain_uS": "uS per unit drive (rest -> stress)", "EDA": "uS",
                 "u": "0..1 (drive: baseline 0, stress 1)", "level_*": "0..1 (learned drive level of a condition)"}
"""Units of the single-ODE section."""
TONIC_PHASIC_UNITS = {**PHYSICS_UNITS, "T": "uS (tonic level)", "T0": "uS (the wearer's resting tonic level)",
                      "onset_s": "s (length of the linear drive ramp after a condition change)",
                      "onset_lag_s": "s (time constant of the drive's first-order onset lag)",
                      "scr_rise_s": "s (Bateman rise time constant)",
                      "scr_recovery_s": "s (Bateman recovery time constant)",
                      "scr_half_recovery_s": "s (from an SCR's peak to half its height)",
                      "mse_uS2": "uS^2 (mean squared error of the fit)"}
"""Units of the tonic/phasic section."""
IDENTIFIABILITY_NOTE = (
    "The ODE gamma*dEDA/dt = -alpha_0*(EDA - EDA_tonic) + beta*u is unchanged when alpha_0, beta and gamma are "
    "multiplied by one factor, so only tau_s = gamma/alpha_0 (the EDA time constant, s) and gain_uS = beta/alpha_0 "
    "(the steady EDA rise per unit drive, µS) can be learned. A drive free at every time step could mimic any time "
    "constant and a drive of free scale any gain, so in training the drive is tied to the condition: one learned "
    "level per WESAD condition, anchored at baseline = 0 and stress = 1 (one unit of drive is the step from rest to "
    "stress, time is in seconds), and EDA_tonic is the wearer's resting EDA measured on the baseline. tau_s then "
    "shows in how EDA approaches each new level after a condition change and gain_uS in the level differences. Both "
    "are identifiable when the true drive follows this constraint (edgemer data synth-wesad --drive condition); on "
    "the default bursty simulator, skin-conductance bursts and wandering arousal that a condition level cannot "
    "follow bias them, and on real data they describe the wearer's average response to the protocol's conditions.")
TONIC_ODE_TEXT = ("tau_s * dT/dt = -(T - T0) + gain_uS * u(t) on the tonic level T = EDA - SCRs "
                  "(as the PINN's residual: gamma = 1, alpha_0 = 1/tau_s, beta = gain_uS/tau_s)")
PHASIC_TEXT = ("SCRs = sum_j d_j * bateman(t - t_j), bateman(t) = exp(-t/scr_recovery_s) - exp(-t/scr_rise_s) "
               "scaled to peak 1, sparse driver d >= 0")
TONIC_PHASIC_NOTE = (
    "EDA is modelled as a slow tonic level plus skin-conductance responses (SCRs). The first-order ODE describes "
    "only the tonic level; the SCRs are modelled explicitly as Bateman functions of a sparse non-negative driver "
    "(Benedek & Kaernbach 2010). Before the PINN is trained, this model is fitted on the training subjects' "
    "recordings (the samples of their training windows and forecasts, the tonic level carried through each "
    "recording by the ODE); the PINN's physical parameters are then fixed to the fit and its physics residual "
    "acts on the tonic component of each window (EDA minus the fitted SCRs) with the fit's onset-smoothed drive. "
    "The drive is tied to the condition, anchored at baseline = 0 and stress = 1, so tau_s (s: how fast the tonic "
    "level follows a change of state) and gain_uS (µS: how far it moves from rest to stress) are identifiable; "
    "alpha_0, beta and gamma are the same ODE written as gamma*dT/dt = -alpha_0*(T - T0) + beta*u with gamma = 1. "
    "T0 is each wearer's resting tonic level. On real data the figures describe the training wearers' average "
    "response to the protocol's conditions.")


def truth_physics(truth: dict[str, Any] | None) -> dict[str, float] | None:
    """truth.json's ODE parameters in the single-ODE PINN's units, or None (real data).

    alpha_0 and gamma as they are; beta and gain_uS per unit of the PINN's anchored drive
    (baseline 0, stress 1), i.e. times the simulator's stress-minus-baseline drive level
    from ``drive_levels`` (1 for ``--drive condition``; 0.75 for the bursty default).
    """
    if not truth or not all(k in truth for k in ("alpha_0", "beta", "gamma")):
        return None
    levels = truth.get("drive_levels") or {}
    scale = float(levels["2"]) - float(levels["1"]) if "1" in levels and "2" in levels else 1.0
    a, b, g = float(truth["alpha_0"]), float(truth["beta"]) * scale, float(truth["gamma"])
    return {"alpha_0": a, "beta": b, "gamma": g, "tau_s": g / a, "gain_uS": b / a}


def truth_tonic_phasic(truth: dict[str, Any] | None) -> dict[str, Any] | None:
    """truth.json's parameters in the tonic/phasic section's form, or None (real data): tau_s, gain_uS
    (per unit of the anchored drive), alpha_0 = 1/tau_s, beta = gain_uS/tau_s, gamma = 1, the drive
    levels of the free conditions on the anchored scale (``level_<condition>``, may lie outside 0..1),
    and truth.json's ``scr`` ranges when the generator states them."""
    base = truth_physics(truth)
    if base is None or truth is None:
        return None
    tau, gain = base["tau_s"], base["gain_uS"]
    out: dict[str, Any] = {"tau_s": tau, "gain_uS": gain, "alpha_0": 1.0 / tau, "beta": gain / tau, "gamma": 1.0}
    levels = truth.get("drive_levels") or {}
    if "1" in levels and "2" in levels and float(levels["2"]) != float(levels["1"]):
        low, high = float(levels["1"]), float(levels["2"])
        for code in FREE_CODES:
            if str(code) in levels:
                out[f"level_{CONDITION_NAMES[code]}"] = (float(levels[str(code)]) - low) / (high - low)
    if isinstance(truth.get("scr"), dict):
        out["scr"] = truth["scr"]
    return out


def _truth_note(truth: dict[str, Any] | None) -> str | None:
    if not truth:
        return None
    note = ("truth.json's tonic ODE in the fitted model's form (gamma = 1; gain and drive levels per unit of the "
            "anchored drive, baseline 0 -> stress 1).")
    if truth.get("drive") == "bursty":
        note += (" edgemer's bursty simulator makes its skin-conductance bursts with pulses in the ODE's drive, not "
                 "as Bateman responses on top, and adds wandering arousal: it has no SCR truth, and its bursts bias "
                 "the fitted tau and gain.")
    if isinstance(truth.get("scr"), dict):
        note += " truth.scr: the generator's own SCR ranges (its SCR shape need not be a Bateman function)."
    return note


def single_ode_section(params: dict[str, float], truth: dict[str, Any] | None) -> dict[str, Any]:
    """The ``physics`` section of a PINN that learned one ODE on the whole EDA. params: its
    :meth:`~edgemer.export.physio.pinn.PhysioPINN.physical_parameters`."""
    section: dict[str, Any] = {"model": "single-ode", "ode": ODE_TEXT, **params, "units": PHYSICS_UNITS,
                               "identifiability": IDENTIFIABILITY_NOTE}
    true = truth_physics(truth)
    if true:
        section["truth"] = true
    return section


def tonic_phasic_section(params: dict[str, float], fit: TonicPhasicFit, fit_info: dict[str, Any],
                         truth: dict[str, Any] | None) -> dict[str, Any]:
    """The ``physics`` section of a PINN trained with a tonic/phasic fit.

    params: the PINN's :meth:`~edgemer.export.physio.pinn.PhysioPINN.physical_parameters`
    (alpha_0, beta, gamma, tau_s, gain_uS, level_*: fixed to ``fit``). fit_info: how the fit
    ran (e.g. subjects, steps), stored under ``fit``.
    """
    fitted = fit.as_dict()
    shape = {k: v for k, v in fitted.items() if k.startswith(("onset", "scr_"))}
    section: dict[str, Any] = {
        "model": "tonic-phasic", "ode": TONIC_ODE_TEXT, "phasic": PHASIC_TEXT, **params,
        "tau_s": fit.tau_s, "gain_uS": fit.gain_uS, **shape,
        "fit": {**fit_info, "mse_uS2": fit.mse_uS2},
        "residual": "on the tonic component (EDA minus the fitted SCRs); SCRs modelled explicitly by Bateman functions",
        "published": dict(PUBLISHED), "units": TONIC_PHASIC_UNITS, "identifiability": TONIC_PHASIC_NOTE}
    true = truth_tonic_phasic(truth)
    if true:
        section["truth"] = true
        section["truth_note"] = _truth_note(truth)
    return section


def _num(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "nan"


def _truth_cell(key: str, learned: float, truth: dict[str, Any]) -> str:
    """The truth of ``key`` (and the relative error where a ratio means something), or ''."""
    scr = truth.get("scr") or {}
    ranges = {"scr_rise_s": scr.get("rise_s"), "scr_recovery_s": scr.get("recovery_tau_s")}
    if key in truth and isinstance(truth[key], (int, float)):
        t = float(truth[key])
        if key.startswith("level_") or t == 0:
            return _num(t)
        return f"{_num(t)} ({(learned - t) / t * 100:+.1f} %)"
    r = ranges.get(key)
    if isinstance(r, (list, tuple)) and len(r) == 2:
        return f"{_num(float(r[0]))}-{_num(float(r[1]))} (generator's range)"
    return ""


def _published_cell(key: str, published: dict[str, Any]) -> str:
    alias = {"scr_half_recovery_s": "scr_recovery_half_s"}
    r = published.get(key) or published.get(alias.get(key, ""))
    return f"{_num(r[0])}-{_num(r[1])}" if isinstance(r, (list, tuple)) else ""


def physics_rows(section: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(parameter, learned, truth, published range, unit) per reported parameter of a ``physics`` section."""
    truth = section.get("truth") or {}
    published = section.get("published") or {}
    if section.get("model") == "tonic-phasic":
        keys = ["tau_s", "gain_uS", "onset_s", "onset_lag_s"] + [f"level_{CONDITION_NAMES[c]}" for c in FREE_CODES] \
            + ["scr_rise_s", "scr_recovery_s", "scr_half_recovery_s"]
    else:
        keys = ["alpha_0", "beta", "gamma", "tau_s", "gain_uS"] + [f"level_{CONDITION_NAMES[c]}" for c in FREE_CODES]
    units = section.get("units") or {}
    rows = []
    for k in keys:
        if k not in section or (k.startswith("onset") and section[k] == 0):  # 0: the fit's onset has no such part
            continue
        unit = units.get(k) or (units.get("level_*") if k.startswith("level_") else "") or ""
        rows.append((k, _num(float(section[k])), _truth_cell(k, float(section[k]), truth),
                     _published_cell(k, published), unit.split(" (")[0]))
    return rows


def _fit_text(fit: dict[str, Any], mse_unit: str) -> str:
    """How the fit ran, one phrase: its fields (lists joined) and its mean squared error."""
    parts = [f"{k.replace('_', ' ')} {', '.join(map(str, v)) if isinstance(v, list) else v}"
             for k, v in fit.items() if k != "mse_uS2"]
    return "; ".join(parts + [f"mean squared error {_num(float(fit.get('mse_uS2', math.nan)))} {mse_unit}"])


def physics_text(section: dict[str, Any]) -> list[str]:
    """The section for the terminal: the model, its equations, one line per parameter, the note."""
    tonic = section.get("model") == "tonic-phasic"
    lines = [f"physics   {'tonic/phasic' if tonic else 'single ODE'}: {section['ode']}"]
    if tonic:
        lines.append(f"          {section['phasic']}")
        lines.append(f"          residual {section['residual']}")
    for name, learned, truth, published, unit in physics_rows(section):
        unit = unit.split(" ")[0]
        shown = f"{name:20s} learned {learned:>9s} {unit:4s}"
        if truth:
            shown += f"  truth {truth}"
        if published:
            shown += f"  published {published} {unit}"
        lines.append(f"          {shown}")
    if tonic:
        lines.append(f"          fit {_fit_text(section.get('fit') or {}, 'uS^2')}")
        if section.get("published"):
            lines.append(f"          published ranges: {section['published'].get('source', '')}")
        if section.get("truth_note"):
            lines.append(f"          truth: {section['truth_note']}")
    lines.append(f"          ({section['identifiability']})")
    return lines


def physics_markdown(section: dict[str, Any]) -> list[str]:
    """The section for verification.md: the model, a table of the parameters, the notes."""
    tonic = section.get("model") == "tonic-phasic"
    lines = ["## Physics", "",
             f"Model: **{'tonic/phasic' if tonic else 'single ODE'}**, `{section['ode']}`."]
    if tonic:
        lines += ["", f"SCRs: `{section['phasic']}`. The physics residual acts {section['residual']}."]
    lines += ["", "| parameter | learned | truth | published range | unit |", "|---|---:|---|---|---|"]
    lines += [f"| {n} | {v} | {t or '–'} | {p or '–'} | {u} |" for n, v, t, p, u in physics_rows(section)]
    lines.append("")
    if tonic:
        lines.append(f"Fit: {_fit_text(section.get('fit') or {}, 'µS²')}.")
        if section.get("published"):
            lines += ["", f"Published ranges: {section['published'].get('source', '')}."]
        if section.get("truth_note"):
            lines += ["", f"Truth: {section['truth_note']}"]
        lines.append("")
    lines += [section["identifiability"], ""]
    return lines
