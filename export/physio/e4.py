"""Empatica E4 sessions + a condition timetable -> a WESAD-layout folder for ``export physio``
and ``study physio``.

``edgemer data e4-to-wesad --session S2=exports/alice.zip --session S3=exports/bob
--timetable timetable.csv --out data/my-wesad`` (or ``python -m edgemer.export.physio.e4 ...``)

The timetable is a CSV with a header and one row per stretch of a known condition::

    subject,condition,start_s,end_s
    S2,baseline,0,1200
    S2,stress,1500,2100

``start_s``/``end_s``: seconds from the session's first sample (the E4 export's start
time); ``condition``: ``baseline``, ``stress``, ``amusement`` or ``meditation`` (WESAD codes
1-4). Everything outside the rows is code 0 (transient), which training leaves out.

Each subject becomes ``OUT/S<N>/S<N>.pkl`` with the wrist signals as the E4 recorded them
(EDA µS 4 Hz, BVP 64 Hz, TEMP °C 4 Hz, ACC 1/64 g 32 Hz; NaN before a stream's own start)
and a 700 Hz ``label`` array, the layout :func:`edgemer.wesad.load_subject` reads. The
session is read with :func:`edgemer.sources.e4.read_e4_session`, so a bad export fails
with the same messages as ``edgemer run --source replay:e4:PATH``.
"""
from __future__ import annotations

import argparse
import csv
import pickle
from pathlib import Path

import numpy as np

from edgemer.errors import DatasetError
from edgemer.export.core.atomic import atomic_directory
from edgemer.sources.e4 import read_e4_session
from edgemer.wesad import LABEL_RATE_HZ, WRIST_KEYS

__all__ = ["CONDITION_CODES", "read_timetable", "e4_to_wesad", "configure", "run", "main"]

CONDITION_CODES = {"baseline": 1, "stress": 2, "amusement": 3, "meditation": 4}
"""timetable condition -> WESAD label code."""


def read_timetable(path: str | Path) -> dict[str, list[tuple[int, float, float]]]:
    """subject -> [(WESAD code, start_s, end_s), ...] from a timetable CSV (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the timetable ({exc.strerror or exc})") from exc
    rows = list(csv.DictReader(text.splitlines()))
    need = {"subject", "condition", "start_s", "end_s"}
    if not rows or not need <= {k.strip() for k in rows[0]}:
        raise DatasetError(f"{path}: the timetable needs a header 'subject,condition,start_s,end_s' and one row per "
                           f"stretch of a condition")
    out: dict[str, list[tuple[int, float, float]]] = {}
    for i, row in enumerate(rows, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items()}
        cond = row["condition"].lower()
        if cond not in CONDITION_CODES:
            raise DatasetError(f"{path}, line {i}: condition {row['condition']!r} is not one of "
                               f"{', '.join(CONDITION_CODES)}")
        try:
            start, end = float(row["start_s"]), float(row["end_s"])
        except ValueError as exc:
            raise DatasetError(f"{path}, line {i}: start_s/end_s must be seconds from the session start") from exc
        if not 0 <= start < end:
            raise DatasetError(f"{path}, line {i}: need 0 <= start_s < end_s, got {start} / {end}")
        out.setdefault(row["subject"], []).append((CONDITION_CODES[cond], start, end))
    return out


def e4_to_wesad(sessions: dict[str, str | Path], timetable: str | Path, out_dir: str | Path,
                overwrite: bool = False) -> Path:
    """Write one WESAD-layout subject per E4 session; returns ``out_dir``.

    sessions: subject id (``S2``) -> E4 export (folder or .zip). Every subject needs rows in
    the timetable, and every timetable row must lie inside its session.
    """
    table = read_timetable(timetable)
    for subject in sessions:
        if not (subject.startswith("S") and subject[1:].isdigit()):
            raise DatasetError(f"subject id {subject!r}: use WESAD's S<N> (e.g. S2), as the folder and file names")
        if subject not in table:
            raise DatasetError(f"{timetable}: no rows for subject {subject}; add its conditions (or leave the "
                               f"session out)")
    read = {s: read_e4_session(p) for s, p in sessions.items()}
    with atomic_directory(Path(out_dir), overwrite, lambda d: any(d.glob("S*/S*.pkl")), "WESAD-layout folder",
                          DatasetError, "overwrite=True (--overwrite)") as tmp:
        for subject, session in read.items():
            n = int(session.duration_s * LABEL_RATE_HZ)
            label = np.zeros(n, np.int8)
            for code, start, end in table[subject]:
                if end > session.duration_s + 1e-6:
                    raise DatasetError(f"{timetable}: {subject} {start:g}-{end:g} s ends after the session "
                                       f"({session.duration_s:.1f} s of {sessions[subject]})")
                label[int(start * LABEL_RATE_HZ):int(end * LABEL_RATE_HZ)] = code
            wrist = {key: session.streams[name] for name, key in WRIST_KEYS.items()}
            (tmp / subject).mkdir()
            with open(tmp / subject / f"{subject}.pkl", "wb") as f:
                pickle.dump({"subject": subject, "signal": {"wrist": wrist}, "label": label,
                             "source": f"E4 export {sessions[subject]}"}, f, protocol=4)
    return Path(out_dir)


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the E4 -> WESAD conversion."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--session", action="append", required=True, metavar="SUBJECT=PATH",
                        help="an E4 export (folder or .zip) and its subject id, e.g. S2=exports/alice.zip; repeat")
    parser.add_argument("--timetable", type=Path, required=True, help="CSV: subject,condition,start_s,end_s")
    parser.add_argument("--out", type=Path, required=True, help="the WESAD-layout folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier output of this command")


def run(args: argparse.Namespace) -> int:
    sessions = {}
    for item in args.session:
        subject, sep, path = item.partition("=")
        if not sep or not path:
            raise DatasetError(f"--session {item!r}: give SUBJECT=PATH, e.g. S2=exports/alice.zip")
        sessions[subject.strip()] = path.strip()
    out = e4_to_wesad(sessions, args.timetable, args.out, args.overwrite)
    print(f"wrote {len(sessions)} subject(s) to {out}; train with: edgemer export physio --wesad {out} ...")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgemer.export.physio.e4")
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
