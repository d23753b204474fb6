"""The study's report: fold results -> report.json, report.md and PNG plots (see :mod:`edgemer.export.study.run`)."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgemer._extras import require
from edgemer.export.physio.windows import LABELS
from edgemer.export.physio.export import IDENTIFIABILITY_NOTE, truth_physics
from edgemer.export.physio.tonic import PUBLISHED
from edgemer.export.study.run import (
    PAPER,
    PERSONALISED,
    SELF_REPORT_NOTE,
    TARGETS,
    TONIC_PHASIC,
    WESAD_BENCHMARK,
    StudyOptions,
    SubjectData,
)

PHYSICS_KEYS = ("alpha_0", "beta", "gamma", "tau_s", "gain_uS")
TONIC_KEYS = ("tau_s", "gain_uS", "onset_s", "scr_rise_s", "scr_recovery_s", "scr_half_recovery_s")
TONIC_NOTE = (
    "The physics of record is the tonic/phasic fit (edgemer.export.physio.tonic): the first-order ODE "
    "tau*dT/dt = -(T - T0) + gain*u on the TONIC level, u = the condition's drive level (baseline 0, stress 1) "
    "with a learned onset ramp, and the SCRs modelled explicitly as a sparse non-negative driver convolved with a "
    "Bateman function (learned rise and recovery time constants), fitted on each fold's training spans of the "
    "subjects' continuous recordings. The PINN's physics term uses these parameters (fixed) on the tonic component "
    "of its windows (EDA minus the fitted SCRs) and its forecast; the 'tonic-phasic' row is the physics alone, "
    "forecasting without labels (tonic ODE rolled forward from a fit of the window's last 30 s, started SCRs recovering, new SCRs at the window's own rate).")
CLASS_KEYS = ("macro_f1", "accuracy", "binary_f1", "binary_accuracy")
EDA_KEYS = ("rmse_uS", "rmse_norm", "r", "r_change")
REAL_DATA_STUDY = "edgemer study physio --wesad /path/to/WESAD --out my-study"


def _strict_json(x: Any) -> Any:
    """``x`` with non-finite floats (an undefined Pearson r) replaced by None, for strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict_json(v) for v in x]
    return x


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, float)
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [r for r in rows if "skipped" not in r]
    out: dict[str, Any] = {}
    for section, keys in (("class", CLASS_KEYS), ("eda", EDA_KEYS), ("physics", PHYSICS_KEYS)):
        if rows and section in rows[0]:
            out[section] = {k: _summary([r[section][k] for r in rows]) for k in keys}
    if rows and "tonic_phasic" in rows[0]:
        out["tonic_phasic"] = {k: _summary([r["tonic_phasic"][k] for r in rows]) for k in TONIC_KEYS}
    if rows and "class" in rows[0]:
        out["confusion"] = np.sum([r["class"]["confusion"] for r in rows], axis=0).tolist()
    if rows and "before" in rows[0]:
        out["before"] = _aggregate([r["before"] for r in rows])
    return out


def _ci_text(ci: dict[str, float] | None) -> str:
    return f" [95 % CI {ci['low']:.3g}-{ci['high']:.3g}]" if ci else ""


def _targets(agg: dict[str, dict[str, Any]], truth: dict[str, float] | None,
             intervals: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Each issue target with its measured value and whether it is met; a miss says by how much."""
    rows: list[dict[str, Any]] = []
    intervals = intervals or {}
    if truth:
        for p in agg:
            phys = agg[p].get(TONIC_PHASIC, {}).get("tonic_phasic")
            source = "tonic/phasic fit"
            if phys is None and "physics" in agg[p].get("pinn", {}):
                phys, source = agg[p]["pinn"]["physics"], "PINN"
            if phys is None:
                continue
            for key, tol in (("tau_s", TARGETS["tau_rel"]), ("gain_uS", TARGETS["gain_rel"])):
                learned = phys[key]["mean"]
                rel = (learned - truth[key]) / truth[key]
                ci = intervals.get(p, {}).get(key)
                rows.append({"target": f"{p}: {key} within {tol:.0%} of truth.json ({source})",
                             "measured": f"{learned:.3g} vs truth {truth[key]:.3g} ({rel:+.1%}){_ci_text(ci)}",
                             "met": abs(rel) <= tol})
    loso = agg.get("loso", {})
    if "class" in loso.get("pinn", {}):
        f1 = loso["pinn"]["class"]["macro_f1"]["mean"]
        for other in ("class-only", "gbt"):
            if "class" in loso.get(other, {}):
                b = loso[other]["class"]["macro_f1"]["mean"]
                rows.append({"target": f"loso: PINN macro-F1 (3-class, no self-report) >= {other}",
                             "measured": f"{f1:.3f} vs {b:.3f} ({f1 - b:+.3f})", "met": f1 >= b - 1e-12})
    for p in agg:
        for name in ("pinn", TONIC_PHASIC):
            own = agg[p].get(name, {})
            if "eda" not in own:
                continue
            a = own["eda"]["rmse_uS"]["mean"]
            for other, strict in (("svr", False), ("no-physics", True), ("persistence", True)):
                if name == TONIC_PHASIC and other == "no-physics":
                    continue
                if "eda" in agg[p].get(other, {}):
                    b = agg[p][other]["eda"]["rmse_uS"]["mean"]
                    sign = "<" if strict else "<="
                    rows.append({"target": f"{p}: {name} 10 s forecast RMSE {sign} {other}",
                                 "measured": f"{a:.4f} vs {b:.4f} µS ({(a - b) / b:+.1%})",
                                 "met": a < b if strict else a <= b})
    return rows


def build_report(results: dict[str, dict[str, list[dict[str, Any]]]], opts: StudyOptions,
                 subjects: list[SubjectData], skipped: list[dict[str, str]], truth: dict[str, Any] | None,
                 wesad_dir: Path, command: str | None, seconds: float,
                 execution: dict[str, Any] | None = None,
                 intervals: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The report.json dict: options, data, per-fold and aggregated results, physics, targets, and how
    the tasks ran (``execution``: executor, tasks run, cached and failed; see :func:`run_study`) and the
    physics intervals (``intervals``: protocol -> parameter -> {low, high, method})."""
    import sklearn
    import torch

    from edgemer import __version__

    agg = {p: {v: _aggregate(rows) for v, rows in per.items()} for p, per in results.items()}
    true_phys = truth_physics(truth)
    synthetic = bool(truth and truth.get("synthetic") is True)
    return {
        "study": "edgemer study physio",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command or f"edgemer study physio --wesad {wesad_dir}",
        "seconds": round(seconds, 1),
        "versions": {"edgemer": __version__, "torch": torch.__version__, "scikit-learn": sklearn.__version__},
        "options": {**asdict(opts), "protocols": list(opts.protocols)},
        "data": {"folder": str(wesad_dir), "synthetic": synthetic,
                 "note": (f"SYNTHETIC data from {truth.get('generator') or 'edgemer data synth-wesad'}: results show "
                          "the method working on simulated subjects, not performance on people. Run on real WESAD with: "
                          + REAL_DATA_STUDY) if synthetic else "WESAD-layout recordings",
                 "subjects": [s.windows.subject for s in subjects],
                 "windows": {s.windows.subject: np.bincount(s.windows.labels, minlength=3).tolist() for s in subjects},
                 "skipped_subjects": skipped,
                 "questionnaire_problems": [p for s in subjects for p in s.quest_problems]},
        "labels": list(LABELS),
        "self_report_note": SELF_REPORT_NOTE,
        "identifiability": IDENTIFIABILITY_NOTE,
        "truth": true_phys,
        "folds": results,
        "summary": agg,
        "physics_intervals": intervals or {},
        "tonic_note": TONIC_NOTE,
        "targets": _targets(agg, true_phys, intervals),
        "execution": execution or {},
    }


def _fmt(s: dict[str, float] | None, digits: int = 3) -> str:
    if s is None or not math.isfinite(s["mean"]):
        return "–"  # not measured, or undefined (e.g. r of a constant forecast)
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _personalisation_lines(report: dict[str, Any]) -> list[str]:
    """The LOSO table of the PINN before and after fine-tuning on the new wearer's calibration windows."""
    rows = report["folds"].get("loso", {}).get(PERSONALISED, [])
    agg = report["summary"].get("loso", {}).get(PERSONALISED, {})
    if not rows or "before" not in agg:
        return []
    o = report["options"]
    n_cal = [r["calibration_windows"] for r in rows if "skipped" not in r]
    lines = ["## Personalisation (LOSO)", "",
             f"Each LOSO fold's PINN fine-tuned ({o['personalise_epochs']} full-batch steps: EDA and tonic "
             f"heads and the physical parameters; both encoders, drive and class heads fixed) on the test wearer's "
             f"first {o['personalise_s']:g} s of baseline ({min(n_cal)}-{max(n_cal)} windows), then scored on the "
             "wearer's other windows, next to the same PINN without fine-tuning on the same windows. The class encoder "
             "and head are not fine-tuned (the calibration holds baseline only), so the class columns are equal "
             "by construction: compare the EDA columns and the parameters.", "",
             "| PINN | macro-F1 (3) | acc (3) | RMSE µS | RMSE norm | r | r(change) | tau (s) | gain (µS/unit) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, a in (("without fine-tuning", agg["before"]), ("fine-tuned", agg)):
        c, e, ph = a["class"], a["eda"], a["physics"]
        lines.append(f"| {name} | {_fmt(c['macro_f1'])} | {_fmt(c['accuracy'])} | "
                     + " | ".join(_fmt(e[k], 4) for k in EDA_KEYS) + f" | {_fmt(ph['tau_s'], 2)} | "
                     f"{_fmt(ph['gain_uS'], 3)} |")
    skipped = [f"fold {r.get('fold', k)}: {r['skipped']}" for k, r in enumerate(rows) if "skipped" in r]
    if skipped:
        lines += ["", "Not personalised: " + "; ".join(skipped)]
    return lines + [""]


def _paper_lines(report: dict[str, Any]) -> list[str]:
    """The first table: edgemer's figures beside the seed paper's and the WESAD benchmark's, by data set."""
    d, summ = report["data"], report["summary"]
    ours = "synthetic (this folder, NOT people)" if d["synthetic"] else "this folder (WESAD layout)"
    cv, loso = summ.get("cv", {}).get("pinn", {}), summ.get("loso", {}).get("pinn", {})

    def val(a: dict[str, Any], sec: str, key: str, pct: bool = False, digits: int = 4) -> str:
        v = a.get(sec, {}).get(key)
        if v is None or not math.isfinite(v["mean"]):
            return "–"
        return f"{100 * v['mean']:.1f} %" if pct else f"{v['mean']:.{digits}f}"

    lines = ["## The paper's protocol side by side", "",
             "| figures | data set | normalised EDA RMSE | Pearson r | macro-F1 (3-class) | accuracy 3-class | "
             "accuracy binary |", "|---|---|---|---|---|---|---|",
             f"| edgemer PINN, 5-fold CV (no self-report) | {ours} | {val(cv, 'eda', 'rmse_norm')} | "
             f"{val(cv, 'eda', 'r')} | {val(cv, 'class', 'macro_f1', True)} | {val(cv, 'class', 'accuracy', True)} | "
             f"{val(cv, 'class', 'binary_accuracy', True)} |",
             f"| edgemer PINN, LOSO (no self-report) | {ours} | {val(loso, 'eda', 'rmse_norm')} | "
             f"{val(loso, 'eda', 'r')} | {val(loso, 'class', 'macro_f1', True)} | "
             f"{val(loso, 'class', 'accuracy', True)} | {val(loso, 'class', 'binary_accuracy', True)} |",
             f"| seed paper, 5-fold CV | real WESAD | {PAPER['rmse_norm']} | {PAPER['r']} | "
             f"{100 * PAPER['macro_f1']:.2f} % | – | – |",
             f"| WESAD benchmark, LOSO | real WESAD | – | – | – | up to {100 * WESAD_BENCHMARK['accuracy_3class']:.0f} % "
             f"| up to {100 * WESAD_BENCHMARK['accuracy_binary']:.0f} % |", "",
             f"Sources: {PAPER['source']}; {WESAD_BENCHMARK['source']}. "
             + ("These edgemer figures are on SYNTHETIC data and are not comparable with figures on people; "
                f"for real WESAD run `{REAL_DATA_STUDY}`." if d["synthetic"] else
                "Same data layout; the CV protocol leaks subjects between folds (see Protocols)."), ""]
    return lines


def _tonic_lines(report: dict[str, Any]) -> list[str]:
    """The tonic/phasic physics per protocol with intervals, beside truth.json and the published SCR ranges."""
    summ, truth, iv = report["summary"], report["truth"], report.get("physics_intervals", {})
    if not any("tonic_phasic" in per.get(TONIC_PHASIC, {}) for per in summ.values()):
        return []
    lines = ["## Physics: tonic ODE + Bateman SCRs", "", report.get("tonic_note", TONIC_NOTE), "",
             "| protocol | tau (s) | gain (µS, rest -> stress) | onset ramp (s) | SCR rise tau (s) | "
             "SCR recovery tau (s) | SCR half-recovery (s) |", "|---|---|---|---|---|---|---|"]
    for p, per in summ.items():
        tp = per.get(TONIC_PHASIC, {}).get("tonic_phasic")
        if not tp:
            continue
        cells = []
        for k in TONIC_KEYS:
            ci = iv.get(p, {}).get(k)
            cells.append(f"{tp[k]['mean']:.3g} ± {tp[k]['std']:.2g}" + _ci_text(ci))
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    if truth:
        lines.append(f"| truth.json | {truth['tau_s']:.4g} | {truth['gain_uS']:.4g} | – | – | – | – |")
    methods = {p: v.get("method") for p, v in iv.items() if v.get("method")}
    lines += ["", "Mean ± sd over folds; 95 % intervals: " + ("; ".join(f"{p}: {m}" for p, m in methods.items())
                                                          or "none computed") + ".",
              f"Published ranges (not targets): SCR rise {PUBLISHED['scr_rise_s'][0]}-{PUBLISHED['scr_rise_s'][1]} s, "
              f"recovery about {PUBLISHED['scr_recovery_half_s'][0]:g}-{PUBLISHED['scr_recovery_half_s'][1]:g} s "
              f"({PUBLISHED['source']}).", ""]
    return lines


def _execution_lines(ex: dict[str, Any]) -> list[str]:
    """How the tasks ran, and the failed ones by name (their folds are missing from the tables below)."""
    if not ex:
        return []
    lines = [f"Tasks: {ex['tasks']} (protocol x fold x variant) on {ex['executor']}, {ex['task_threads']} thread(s) "
             f"each: {ex['run']} run now, {ex['cached']} from earlier runs, {len(ex['failed'])} failed. "
             f"Per-task logs: `{ex['logs']}`.", ""]
    if ex["failed"]:
        lines += ["## Failed tasks", "", "Each failed twice (a first run and one retry); its fold is missing from the "
                  "tables below. Run the same command again to retry only these.", ""]
        lines += [f"- {f['task']}: {f['error']}" for f in ex["failed"]] + [""]
    return lines


def _markdown(report: dict[str, Any], plots: list[str]) -> str:
    o, d = report["options"], report["data"]
    lines = ["# edgemer physiology study", ""]
    if d["synthetic"]:
        lines += [f"**{d['note']}**", ""]
    lines += [f"Command: `{report['command']}`  ", f"Run time: {report['seconds']:.0f} s; created {report['created_utc']}; "
              f"edgemer {report['versions']['edgemer']}, torch {report['versions']['torch']}, "
              f"scikit-learn {report['versions']['scikit-learn']}.", "",
              f"Subjects: {len(d['subjects'])} ({', '.join(d['subjects'])}); window {o['window_s']:g} s, "
              f"training hop {o['train_hop_s']:g} s, forecast {o['forecast_s']:g} s; {o['epochs']} epochs; "
              f"{o['folds']}-fold CV" + (f"; LOSO limited to the first {o['loso_folds']} folds" if o['loso_folds'] else "")
              + ".", ""]
    lines += _paper_lines(report)
    lines += _execution_lines(report.get("execution", {}))
    if d["skipped_subjects"]:
        lines += ["## Skipped subjects (--skip-bad)", ""] + [f"- {s['subject']}: {s['error']}"
                                                             for s in d["skipped_subjects"]] + [""]
    if d["questionnaire_problems"]:
        lines += ["Questionnaire problems (subjects used without the missing self-reports):", ""]
        lines += [f"- {p}" for p in d["questionnaire_problems"]] + [""]
    lines += ["## Protocols", "",
              "- **cv**: k-fold cross-validation over windows, stratified by class (the paper's protocol). Overlapping "
              "windows of the same subject are in training and test folds: it measures people already seen.",
              "- **loso**: leave-one-subject-out, each fold tests a subject never seen in training (a new wearer).",
              "", f"> {SELF_REPORT_NOTE}", "",
              "EDA metrics are on the forecast (the forecast_s seconds after each window): RMSE in µS, and normalised "
              "RMSE = error divided by the test subject's EDA range (i.e. on per-subject min-max scaled EDA, as "
              "papers report). r: Pearson r of forecast vs measured EDA levels; r(change): of the forecast change "
              "from the window's last sample. Mean ± standard deviation over folds.", ""]
    lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |" for t in report["targets"]]
    lines += [""]
    for p, per in report["summary"].items():
        lines += [f"## {p.upper()}", "", "| variant | macro-F1 (3) | acc (3) | macro-F1 (stress) | acc (stress) | "
                  "RMSE µS | RMSE norm | r | r(change) |", "|---|---|---|---|---|---|---|---|---|"]
        for v, a in per.items():
            c, e = a.get("class", {}), a.get("eda", {})
            lines.append(f"| {v} | " + " | ".join(_fmt(c.get(k)) for k in CLASS_KEYS) + " | "
                         + " | ".join(_fmt(e.get(k), 4) for k in EDA_KEYS) + " |")
        lines += [""]
    lines += _personalisation_lines(report)
    lines += _tonic_lines(report)
    truth = report["truth"]
    lines += ["## Physical parameters", "", report["identifiability"], "",
              "| protocol / variant | fold | alpha_0 (1/s) | beta (µS/s) | gamma | tau (s) | gain (µS/unit) |",
              "|---|---|---|---|---|---|---|"]
    for p, per in report["folds"].items():
        for v in ("pinn", "pinn+self-report", PERSONALISED, "eda-only", "no-physics"):
            for k, r in enumerate(r for r in per.get(v, []) if "skipped" not in r):
                ph = r["physics"]
                lines.append(f"| {p} / {v} | {r.get('fold', k)} | " + " | ".join(f"{ph[x]:.4g}" for x in PHYSICS_KEYS) + " |")
            if per.get(v):
                s = report["summary"][p][v]["physics"]
                lines.append(f"| {p} / {v} | mean ± sd | " + " | ".join(_fmt(s[x], 4) for x in PHYSICS_KEYS) + " |")
    if truth:
        lines.append("| truth.json | – | " + " | ".join(f"{truth[x]:.4g}" for x in PHYSICS_KEYS) + " |")
    lines += ["", "(The no-physics ablation's parameters get no gradient: they stay at their initial values.)", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def _plots(out_dir: Path, report: dict[str, Any], traces: dict[str, dict[str, Any]]) -> list[str]:
    matplotlib = require("matplotlib", "export", "The study's plots (edgemer study physio)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []
    key = next((k for k in ("loso/pinn", "cv/pinn") if k in traces), None)
    if key:
        t = traces[key]
        fig, ax = plt.subplots(figsize=(10, 3.5))
        rate = 4.0
        for i, t0 in enumerate(t["t_start_s"]):
            eda, fut, pred = (np.asarray(t[k][i]) for k in ("eda_uS", "future_uS", "pred_uS"))
            n = eda.size
            tt = t0 + np.arange(n + fut.size) / rate
            ax.plot(tt, np.concatenate([eda, fut]), color="0.6", lw=0.8, label="measured" if i == 0 else None)
            ax.plot(tt[n:], pred, color="C3", lw=1.0, label="PINN forecast" if i == 0 else None)
        ax.set_xlabel("time in recording (s)")
        ax.set_ylabel("EDA (µS)")
        ax.set_title(f"{key.split('/')[0].upper()}: subject {t['subject']} (test), measured EDA and "
                     f"{report['options']['forecast_s']:g} s forecasts")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(out_dir / "eda_forecast.png", dpi=110)
        plt.close(fig)
        names.append("eda_forecast.png")
    for p, per in report["summary"].items():
        if "confusion" not in per.get("pinn", {}):
            continue
        cm = np.asarray(per["pinn"]["confusion"], float)
        fig, ax = plt.subplots(figsize=(3.8, 3.4))
        ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        for i in range(3):
            for j in range(3):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center")
        ax.set_xticks(range(3), report["labels"], rotation=30)
        ax.set_yticks(range(3), report["labels"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"PINN, {p.upper()} (all folds)")
        fig.tight_layout()
        fig.savefig(out_dir / f"confusion_{p}.png", dpi=110)
        plt.close(fig)
        names.append(f"confusion_{p}.png")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    truth = report["truth"]
    for ax, key_, unit in zip(axes, ("tau_s", "gain_uS"), ("s", "µS per unit drive")):
        cols, labels = [], []
        for p, per in report["folds"].items():
            for v in ("pinn", "pinn+self-report", "eda-only"):
                if per.get(v):
                    cols.append([r["physics"][key_] for r in per[v]])
                    labels.append(f"{p}\n{v}")
        if cols:
            ax.boxplot(cols)
            ax.set_xticks(range(1, len(cols) + 1), labels, fontsize=7)
        if truth:
            ax.axhline(truth[key_], color="C2", ls="--", label="truth.json")
            ax.legend()
        ax.set_ylabel(f"{key_} ({unit})")
    fig.suptitle("learned physics per fold")
    fig.tight_layout()
    fig.savefig(out_dir / "physics_params.png", dpi=110)
    plt.close(fig)
    names.append("physics_params.png")
    return names


def write_report(out_dir: Path, report: dict[str, Any], traces: dict[str, dict[str, Any]]) -> list[str]:
    """Write plots, report.md and report.json into ``out_dir``; return summary lines for the terminal."""
    plots = _plots(out_dir, report, traces)
    (out_dir / "report.json").write_text(json.dumps(_strict_json(report), indent=1, allow_nan=False) + "\n")
    (out_dir / "report.md").write_text(_markdown(report, plots) + "\n")
    lines = [f"report    {out_dir / 'report.md'} ({report['seconds']:.0f} s)"]
    if report["data"]["synthetic"]:
        lines.append("data      SYNTHETIC; run on real WESAD with: " + REAL_DATA_STUDY)
    for s in report["data"]["skipped_subjects"]:
        lines.append(f"skipped   {s['subject']}: {s['error']}")
    ex = report.get("execution", {})
    if ex:
        lines.append(f"tasks     {ex['tasks']} on {ex['executor']}: {ex['run']} run, {ex['cached']} cached, "
                     f"{len(ex['failed'])} failed" + (f"; peak worker memory {ex['peak_task_rss_mib']:.0f} MiB"
                                                      if ex.get("peak_task_rss_mib") else ""))
    for f in ex.get("failed", []):
        lines.append(f"failed    {f['task']} ({f['attempts']} attempts): {f['error']}  (rerun the command to retry)")
    lines += [f"target    {'PASS' if t['met'] else 'FAIL'}  {t['target']}: {t['measured']}" for t in report["targets"]]
    return lines


TIMING_KEYS = frozenset({"seconds", "train_seconds"})
"""Result fields that measure time, not the model: left out when two runs' figures are compared."""


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """The report's figures (per-fold results, their aggregates and the targets) without timings."""
    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in TIMING_KEYS}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip({"folds": report["folds"], "summary": report["summary"], "targets": report["targets"]})


def figure_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The largest relative difference between two reports' figures (0.0: identical; inf: they hold
    different folds, variants or keys). Relative to max(|x|, |y|, 1e-12); two NaNs count as equal."""
    fa, fb = figures(a), figures(b)

    def walk(x: Any, y: Any) -> float:
        if isinstance(x, dict) and isinstance(y, dict):
            if x.keys() != y.keys():
                return math.inf
            return max((walk(x[k], y[k]) for k in x), default=0.0)
        if isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                return math.inf
            return max((walk(u, v) for u, v in zip(x, y)), default=0.0)
        if isinstance(x, bool) or isinstance(y, bool) or not isinstance(x, (int, float)):
            return 0.0 if x == y else math.inf
        if not isinstance(y, (int, float)):
            return math.inf
        if math.isnan(x) or math.isnan(y):
            return 0.0 if math.isnan(x) and math.isnan(y) else math.inf
        return abs(x - y) / max(abs(x), abs(y), 1e-12) if x != y else 0.0

    return walk(fa, fb)
