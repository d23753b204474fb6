"""WESAD self-reports (``S<N>/S<N>_quest.csv``): read them tolerantly, write plausible ones.

WESAD's questionnaire file is semicolon-separated; the first cell of each row names it::

    # Subj;S2
    # ORDER;Base;Fun;Medi 1;TSST;Medi 2        condition order of the session
    # PANAS;3;1;4;...                          one row per condition, in ORDER order
    # STAI;2;1;...                             one row per condition (6 items, 1-4)
    # DIM;7;3                                  SAM valence, arousal (1-9), one row per condition
    # SSSQ;3;2;...                             once, after the stress test (TSST)

Features per WESAD condition code (1 baseline, 2 stress, 3 amusement, 4 meditation):
``panas_pa`` and ``panas_na`` (means of the ten positive / negative PANAS items, 1-5),
``sam_valence`` and ``sam_arousal`` (1-9), ``stai`` (mean of the 6 items, 1-4) and, for
stress only, ``sssq`` (mean, 1-5). These describe the *condition* a window comes from,
so a model given them can read the label off them: a study must report results with and
without them.

A missing or malformed file never stops a run: :func:`read_quest` returns whatever
could be read plus a list of problems (each naming the file), and the subject is used
without the features that are missing.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

CONDITION_OF_NAME = {"base": 1, "tsst": 2, "fun": 3, "medi 1": 4, "medi 2": 4}
"""WESAD ORDER names (lower case) -> condition code; Medi 2 overwrites Medi 1 only if Medi 1 is missing."""
PANAS_PA_ITEMS = (0, 2, 3, 5, 9, 10, 12, 14, 16, 17)
"""Zero-based PANAS positive-affect items in WESAD's order (active, interested, inspired, strong, excited,
proud, enthusiastic, alert, determined, attentive)."""
PANAS_NA_ITEMS = (1, 4, 6, 7, 8, 11, 13, 15, 18, 19)
"""Zero-based PANAS negative-affect items (distressed, annoyed, guilty, scared, hostile, irritable,
ashamed, nervous, jittery, afraid)."""
FEATURES = ("panas_pa", "panas_na", "sam_valence", "sam_arousal", "stai")
"""Per-condition self-report features, in the order :meth:`QuestReport.vector` returns them."""
NEUTRAL = {"panas_pa": 3.0, "panas_na": 3.0, "sam_valence": 5.0, "sam_arousal": 5.0, "stai": 2.5}
"""Scale mid-points used where a subject lacks a feature (DESIGN.md: neutral defaults when absent)."""
_RANGES = {"PANAS": (1, 5), "STAI": (1, 4), "DIM": (1, 9), "SSSQ": (1, 5)}
_MAIN = ("Base", "TSST", "Medi 1", "Fun", "Medi 2")


@dataclass(frozen=True)
class QuestReport:
    """Self-report features of one subject.

    features: condition code -> {feature name -> value} (only what could be read).
    problems: human-readable problems, each naming the file; empty when all was fine.
    """

    path: Path
    features: Mapping[int, Mapping[str, float]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def vector(self, code: int) -> np.ndarray:
        """[len(FEATURES)] float32 for condition ``code``; missing values are :data:`NEUTRAL`."""
        got = self.features.get(code, {})
        return np.array([got.get(k, NEUTRAL[k]) for k in FEATURES], np.float32)


def _numbers(cells: list[str], kind: str) -> list[float] | None:
    vals = []
    for c in cells:
        c = c.strip().replace(",", ".")
        if not c:
            continue
        try:
            v = float(c)
        except ValueError:
            return None
        if not math.isfinite(v):
            return None
        vals.append(v)
    lo, hi = _RANGES[kind]
    if not vals or any(v < lo or v > hi for v in vals):
        return None
    return vals


def read_quest(path: Path) -> QuestReport:
    """Parse one ``S<N>_quest.csv`` (see the module docstring); never raises for bad content."""
    path = Path(path)
    if not path.is_file():
        return QuestReport(path, {}, (f"{path}: questionnaire file missing; subject used without self-reports",))
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        return QuestReport(path, {}, (f"{path}: cannot read the questionnaire ({type(exc).__name__}); "
                                      f"subject used without self-reports",))
    rows: dict[str, list[list[str]]] = {}
    for row in csv.reader(text.splitlines(), delimiter=";"):
        if row and row[0].strip().startswith("#"):
            rows.setdefault(row[0].strip("# ").upper(), []).append(row[1:])
    problems: list[str] = []
    order = [c.strip() for c in (rows.get("ORDER") or [[]])[0] if c.strip()]
    main = [c for c in order if c in _MAIN]
    if not main:
        return QuestReport(path, {}, (f"{path}: no '# ORDER' row naming the conditions (Base, TSST, Fun, "
                                      f"Medi 1, Medi 2); subject used without self-reports",))
    features: dict[int, dict[str, float]] = {}
    for kind in ("PANAS", "STAI", "DIM"):
        found = rows.get(kind, [])
        if not found:
            problems.append(f"{path}: no '# {kind}' rows")
            continue
        if len(found) < len(main):
            problems.append(f"{path}: {len(found)} '# {kind}' rows for {len(main)} conditions; the last ones are "
                            f"treated as missing")
        for name, cells in zip(main, found):
            vals = _numbers(cells, kind)
            code = CONDITION_OF_NAME[name.lower()]
            if vals is None:
                problems.append(f"{path}: '# {kind}' row for {name} is malformed or out of range "
                                f"{_RANGES[kind]}; ignored")
                continue
            if name == "Medi 2" and code in features and kind_key(kind)[0] in features[code]:
                continue
            slot = features.setdefault(code, {})
            if kind == "PANAS":
                if len(vals) < 20:
                    problems.append(f"{path}: '# PANAS' row for {name} has {len(vals)} items, expected >= 20; ignored")
                    continue
                slot["panas_pa"] = float(np.mean([vals[i] for i in PANAS_PA_ITEMS]))
                slot["panas_na"] = float(np.mean([vals[i] for i in PANAS_NA_ITEMS]))
            elif kind == "DIM":
                if len(vals) < 2:
                    problems.append(f"{path}: '# DIM' row for {name} needs valence and arousal; ignored")
                    continue
                slot["sam_valence"], slot["sam_arousal"] = float(vals[0]), float(vals[1])
            else:
                slot["stai"] = float(np.mean(vals))
    sssq = rows.get("SSSQ", [])
    if sssq:
        vals = _numbers(sssq[0], "SSSQ")
        if vals is None:
            problems.append(f"{path}: '# SSSQ' row is malformed or out of range {_RANGES['SSSQ']}; ignored")
        else:
            features.setdefault(2, {})["sssq"] = float(np.mean(vals))
    return QuestReport(path, features, tuple(problems))


def kind_key(kind: str) -> tuple[str, ...]:
    """Feature names a questionnaire row fills."""
    return {"PANAS": ("panas_pa", "panas_na"), "DIM": ("sam_valence", "sam_arousal"), "STAI": ("stai",)}[kind]


# Mean answers of a synthetic subject per condition code: (PA, NA, valence, arousal, STAI).
_SYNTH_MEANS = {1: (2.8, 1.3, 6.0, 2.5, 1.6), 2: (2.6, 2.6, 3.5, 7.0, 2.8), 3: (3.4, 1.2, 7.5, 4.5, 1.4),
                4: (2.4, 1.1, 6.5, 1.8, 1.3)}


def synthetic_quest(subject: str, rng: np.random.Generator) -> str:
    """A plausible ``S<N>_quest.csv`` text (WESAD layout) for a synthetic subject: answers drawn
    around per-condition means (stress: high arousal and negative affect, low valence)."""
    order = ["Base", "Fun", "Medi 1", "TSST", "Medi 2"]  # the synthetic protocol's order
    codes = [CONDITION_OF_NAME[o.lower()] for o in order]
    lines = [f"# Subj;{subject}", "# ORDER;" + ";".join(order), ""]

    def items(mean: float, n: int, lo: int, hi: int) -> list[int]:
        return [int(v) for v in np.clip(np.rint(mean + 0.6 * rng.standard_normal(n)), lo, hi)]

    for c in codes:
        pa, na = _SYNTH_MEANS[c][0], _SYNTH_MEANS[c][1]
        vals = [0] * 20
        for i, v in zip(PANAS_PA_ITEMS, items(pa, 10, 1, 5)):
            vals[i] = v
        for i, v in zip(PANAS_NA_ITEMS, items(na, 10, 1, 5)):
            vals[i] = v
        lines.append("# PANAS;" + ";".join(map(str, vals)))
    lines.append("")
    for c in codes:
        lines.append("# STAI;" + ";".join(map(str, items(_SYNTH_MEANS[c][4], 6, 1, 4))))
    lines.append("")
    for c in codes:
        lines.append("# DIM;" + ";".join(map(str, items(_SYNTH_MEANS[c][2], 1, 1, 9) + items(_SYNTH_MEANS[c][3], 1, 1, 9))))
    lines += ["", "# SSSQ;" + ";".join(map(str, items(3.2, 6, 1, 5)))]
    return "\n".join(lines) + "\n"
