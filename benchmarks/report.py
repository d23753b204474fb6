"""``edgemer bench report``: every benchmark result in a folder, all kinds and devices, in one report.

``collect_results(folder)`` reads every ``*.json`` written by ``edgemer bench KIND --json``
(schema ``edgemer.bench/*``), migrating older schema versions and checking the common fields
(:func:`load_result`); ``markdown_report(results)`` renders, per device:

- ``bundles`` (and the bundle entries of a ``suite``, :func:`expand_results`): a table of p50
  latency per model x engine x precision x threads, the INT8/FP32 ratios, the pipeline line;
- ``multimodal`` (and a suite's pipeline run): every run in one table, the newest run's targets;
- ``bridge``: every run in one table, the newest run's targets;
- ``face``: stage timings and the fer targets; ``audio``: the speech path's figures and targets;
  ``arm64``: the emulated-aarch64 parity table;
- any other kind (a benchmark added later): its settings and targets, so it shows up without
  code here.

Before the device sections, one table gives the **fastest verified path per device** for
every bundle (:func:`fastest_paths`): what ``backend = "auto"`` runs there.

When one device measured one bundle (or kind) several times, the newest result is shown.
``render_report(folder, out)`` writes ``out/REPORT.md`` and three PNG plots (p50 latency per
model per device, INT8 speed-up per device, peak memory per device) with matplotlib (imported
lazily; ``pip install 'edgemer[export]'``). Nothing here needs the devices: only the committed
JSON files.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edgemer.errors import ResultSchemaError

SCHEMA_PREFIX = "edgemer.bench/"
READS = 2
"""The schema major version this edgemer writes and reads (``edgemer.bench/2``)."""

RENAMED_IN_2 = {"bundle": "bundles", "arm64-parity": "arm64"}
"""Result kinds of schema 1 -> their name in schema 2 (the ``edgemer bench KIND`` that writes them)."""


def _from_schema_1(data: dict[str, Any]) -> dict[str, Any]:
    """``edgemer.bench/1`` -> ``/2``: kinds take the name of the ``edgemer bench KIND`` that writes them
    (:data:`RENAMED_IN_2`, also for a suite's entries), every result has ``settings`` and ``targets``, and
    every target a ``unit`` (null: schema 1 did not record it). No measured value changes."""
    data = dict(data)
    data["kind"] = RENAMED_IN_2.get(data.get("kind"), data.get("kind"))
    data.setdefault("settings", {})
    data["targets"] = [{**t, "unit": t.get("unit")} for t in data.get("targets") or []]
    if data["kind"] == "suite":
        data["results"] = [_from_schema_1(e) if "kind" in e else e for e in data.get("results") or []]
        if isinstance(data.get("pipeline"), dict) and "targets" in data["pipeline"]:
            data["pipeline"] = {**data["pipeline"],
                                "targets": [{**t, "unit": t.get("unit")} for t in data["pipeline"]["targets"]]}
    return data


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_schema_1}
"""Older major version -> function upgrading a result by one version."""

PLOTS = {"latency": "latency.png", "int8_speedup": "int8_speedup.png", "memory": "memory.png"}


def load_result(path: str | Path) -> dict[str, Any] | None:
    """Read one result file; None when it is not an edgemer benchmark result at all (no ``edgemer.bench/``
    schema, e.g. another tool's JSON).

    Older schema versions are migrated (:data:`MIGRATIONS`) to ``edgemer.bench/2``.

    Raises
    ------
    ResultSchemaError: the file names an ``edgemer.bench/N`` schema this edgemer cannot read (newer, or
        older without a migration), is not valid JSON, or lacks a common field
        (:func:`edgemer.benchmarks.result.check_result`).
    """
    from edgemer.benchmarks.result import check_result

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultSchemaError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith(SCHEMA_PREFIX):
        return None
    tag = str(data["schema"])
    try:
        version = int(tag[len(SCHEMA_PREFIX):])
    except ValueError:
        raise ResultSchemaError(f"{path}: schema '{tag}' is not edgemer.bench/<number>; the file is damaged") from None
    if version > READS:
        raise ResultSchemaError(f"{path}: schema '{tag}' was written by a newer edgemer; this one reads "
                                f"{SCHEMA_PREFIX}{READS}. Upgrade edgemer (pip install -U edgemer) to include it.")
    while version < READS:
        if version not in MIGRATIONS:
            raise ResultSchemaError(f"{path}: schema '{tag}' is older than {SCHEMA_PREFIX}{READS} and has no "
                                    f"migration; re-run `edgemer bench {data.get('kind', 'KIND')} --json` on that "
                                    f"device.")
        data = MIGRATIONS[version](data)
        version += 1
        data["schema"] = f"{SCHEMA_PREFIX}{version}"
    problems = check_result(data)
    if problems:
        raise ResultSchemaError(f"{path}: not a complete {SCHEMA_PREFIX}{READS} result ({'; '.join(problems)}); "
                                f"re-run `edgemer bench {data.get('kind', 'KIND')} --json` on that device.")
    data.setdefault("_file", str(path))
    return data


def collect_results(folder: str | Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Every benchmark result JSON under ``folder`` (recursively), oldest first.

    Files that are not ``edgemer.bench/*`` results are ignored. A result this edgemer cannot
    read (see :func:`load_result`) is left out, and its message appended to ``problems`` when
    given (the report lists them); without ``problems`` it raises :class:`ResultSchemaError`.
    """
    results = []
    for f in sorted(Path(folder).rglob("*.json")):
        try:
            data = load_result(f)
        except ResultSchemaError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
            continue
        if data is not None:
            results.append(data)
    return sorted(results, key=lambda r: str(r.get("created_utc", "")))


def expand_results(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Suite results become one ``bundles`` result per bundle x engine (plus a ``multimodal`` one for
    the pipeline); other results pass through."""
    out: list[dict[str, Any]] = []
    for r in results:
        if r.get("kind") != "suite":
            out.append(dict(r))
            continue
        common = {"schema": r.get("schema"), "created_utc": r.get("created_utc"), "device": r.get("device") or {},
                  "_file": r.get("_file")}
        for e in r.get("results", []):
            out.append({**common, **e, "kind": "bundles" if e.get("status", "ok") == "ok" else "bundle-failed"})
        p = r.get("pipeline")
        if p and p.get("status") == "ok":
            out.append({**common, **p, "kind": "multimodal", "note": p.get("note") or "short run inside the suite"})
    return out


def _num(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def device_id(result: Mapping[str, Any]) -> str:
    return str((result.get("device") or {}).get("device_id") or "unknown")


def _device_heading(device: Mapping[str, Any]) -> str:
    board = device.get("board") or {}
    versions = device.get("versions") or {}
    parts = [device.get("cpu_model") or "unknown CPU", f"{device.get('logical_cores') or 'unknown'} cores",
             f"{device.get('memory_gib') or 'unknown'} GiB"]
    if board.get("raspberry_pi") or board.get("jetson"):
        parts.insert(0, board.get("raspberry_pi") or board.get("jetson"))
    if device.get("cpu_governor"):
        parts.append(f"governor {device['cpu_governor']}")
    if device.get("power_mode"):
        parts.append(f"power mode {device['power_mode']}")
    runtimes = ", ".join(f"{k} {v}" for k, v in versions.items() if v and k != "edgemer") or "unknown"
    return f"### {device.get('device_id') or 'unknown'}\n\n{'; '.join(parts)}. Runtimes: {runtimes}."


def _engine(result: Mapping[str, Any], cell: Mapping[str, Any]) -> str:
    return str(result.get("engine") or cell.get("backend"))


def _bundle_section(result: Mapping[str, Any]) -> list[str]:
    b = result["bundle"]
    synthetic = " (trained on synthetic data)" if b.get("synthetic_data") else ""
    engine = f" on {result['engine']}" if result.get("engine") else ""
    head = f"**{b['name']}**{engine}{synthetic}, measured {result.get('created_utc')}"
    cells = result.get("cells", [])
    reasons = {str(c.get("reason")) for c in cells}
    if cells and all(c["status"] == "skipped" for c in cells) and len(reasons) == 1:
        return [f"{head}: skipped — {reasons.pop().splitlines()[0][:240]}"]
    lines = [head, "",
             "| model | backend | precision | threads | p50 ms | p99 ms | load ms | peak RSS MiB | size KiB |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in cells:
        size = _num(c["model_bytes"] / 1024 if c.get("model_bytes") else None, ".1f")
        if c["status"] == "ok":
            lat = c["latency_ms"]
            lines.append(f"| {c['model_file']} | {_engine(result, c)} | {c['precision']} | {c['threads']} | "
                         f"{lat['p50']:.3f} | {lat['p99']:.3f} | {c['load_s'] * 1e3:.1f} | {c['rss_peak_mib']:.0f} | "
                         f"{size} |")
        else:
            why = str(c.get("reason") or "").splitlines()[0][:80].replace("|", "/")
            lines.append(f"| {c.get('model_file') or '–'} | {_engine(result, c)} | {c['precision']} | {c['threads']} | "
                         f"{c['status']}: {why} | | | | {size} |")
    ratios = [r for r in result.get("ratios", []) if r.get("latency_p50_ratio") is not None or r.get("size_ratio")]
    if ratios:
        lines += ["", "| backend | threads | INT8/FP32 p50 | INT8/FP32 size | argmax agreement |",
                  "|---|---:|---:|---:|---:|"]
        for r in ratios:
            agree = (r.get("parity") or {}).get("argmax_agreement")
            lat = _num(r["latency_p50_ratio"], ".2f") + ("x" if r["latency_p50_ratio"] is not None else "")
            if r.get("ci_separated") is False:
                lat += " (noise)"
            lines.append(f"| {result.get('engine') or r['backend']} | {r['threads']} | {lat} | "
                         f"{_num(r['size_ratio'], '.2f')}x | {_num(None if agree is None else agree * 100, '.1f')} % |")
    return lines


def _pipeline_section(p: Mapping[str, Any]) -> list[str]:
    s, o, goal = p["settings"], p["overhead"], p["goal"]
    mark = "–" if goal["met"] is None else ("met" if goal["met"] else "not met")
    return [(f"Pipeline ({p['bundle']['name']}, {s['backend']} {s['precision']} threads={s['threads']}, "
            f"{p['estimates']} estimates): inference {_num(p['inference_ms']['median'], '.3f')} ms, processing "
            f"{_num(p['processing_ms']['median'], '.3f')} ms per estimate; overhead beyond inference "
            f"{_num(None if o['median'] is None else o['median'] * 100, '.0f')} % (goal <= "
            f"{goal['threshold'] * 100:.0f} %: {mark}); real-time factor {_num(p['real_time_factor'], '.4f')}.")]


def _pct(x: float | None, spec: str = ".0f") -> str:
    return "–" if x is None else format(x * 100, spec) + " %"


def _mark(met: bool | None) -> str:
    return "–" if met is None else ("met" if met else "**not met**")


def _multimodal_section(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The three-modality pipeline runs of one device (oldest first): one table row per run, then
    the targets of the newest run. Suite runs (short, no soak) leave the soak columns empty."""
    newest = runs[-1]
    names = ", ".join(b.get("name", "?") for b in (newest.get("bundle") or {}).get("bundles", []))
    config = Path(str((newest.get("settings") or {}).get("config") or "?")).name
    lines = [f"**Three-modality pipeline** ({config}: {names}), {len(runs)} run(s), newest last. Overhead = "
             f"pipeline time beyond the backends' inference calls at real time, as a share of inference time; the "
             f"face detector (run by the front-end: BlazeFace by default, OpenCV Haar in the runs before "
             f"2026-12-03) counts as overhead in the target, and is also shown on its own.", "",
             "| measured (UTC) | overhead (goal <= 10 %) | face detector | overhead without detector | latency p50 / "
             "p99 ms | real-time factor, 1 core (goal >= 20) | peak RSS MiB (goal <= 200) | soak | soak RSS growth "
             "MiB (< 5) | soak p99 change (within 10 %) | note |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for r in runs:
        o, rt, soak = r.get("overhead") or {}, r.get("real_time") or {}, r.get("soak")
        lat = o.get("latency_ms") or {}
        soak_text = "–"
        if soak:
            soak_text = (f"{_num(soak.get('stream_s', 0) / 3600, '.2g')} h at "
                         f"{_num(soak.get('requested_speed'), 'g')}x: achieved {_num(soak.get('achieved_speed'), '.1f')}x, "
                         f"{soak.get('dropped_samples', '?')} samples and {soak.get('dropped_estimates', '?')} "
                         f"estimates dropped")
        lines.append(
            f"| {str(r.get('created_utc', '?'))[:16].replace('T', ' ')} | {_pct(o.get('overhead'))} | "
            f"{_pct(o.get('detector_vs_inference'))} | {_pct(o.get('overhead_excluding_detector'))} | "
            f"{_num(lat.get('p50'), '.1f')} / {_num(lat.get('p99'), '.1f')} | "
            f"{_num(rt.get('real_time_factor'), '.1f')} | "
            f"{_num(r.get('peak_rss_mib'), '.0f')} | {soak_text} | "
            f"{_num(None if not soak else soak.get('rss_growth_mib'), '.1f')} | "
            f"{_pct(None if not soak else soak.get('latency_p99_change'), '+.1f')} | {r.get('note') or ''} |")
    return lines + _targets_table(newest, "Targets of the newest run")


def _targets_table(r: Mapping[str, Any], title: str = "Targets") -> list[str]:
    """The result's ``targets`` as a Markdown table under ``title (created_utc):``; nothing without targets."""
    targets = r.get("targets") or []
    if not targets:
        return []
    lines = ["", f"{title} ({r.get('created_utc')}):", "", "| target | goal | measured | unit | |",
             "|---|---|---:|---|---|"]
    for t in targets:
        v = t.get("value")
        value = "–" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append(f"| {t.get('id')}: {t.get('description')} | {t.get('threshold')} | {value} | "
                     f"{t.get('unit') or ''} | {_mark(t.get('met'))} |")
    return lines


def _bridge_section(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The serial link runs of one device (oldest first): one row per run, then the newest run's targets."""
    lines = ["**Firmware bridge** (serial link: emulated wearable on a pseudo-terminal), "
             f"{len(runs)} run(s), newest last.", "",
             "| measured (UTC) | decoder / 1 Mbaud link (goal >= 20x) | 1-sample frames | drift error ppm (<= 10) "
             "| mapped time error max ms (<= 2) | latency p50 / p99 ms | recovery s (< 1) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        tp, sy, rc = r.get("throughput") or {}, r.get("sync") or {}, r.get("recovery") or {}
        lines.append(f"| {str(r.get('created_utc', '?'))[:16].replace('T', ' ')} | {_num(tp.get('ratio'), '.1f')} | "
                     f"{_num(tp.get('small_ratio'), '.1f')} | {_num(sy.get('drift_error_ppm'), '.1f')} | "
                     f"{_num(sy.get('map_error_ms_max'), '.3f')} | {_num(sy.get('latency_ms_p50'), '.2f')} / "
                     f"{_num(sy.get('latency_ms_p99'), '.2f')} | {_num(rc.get('recovery_s'), '.2f')} |")
    return lines + _targets_table(runs[-1], "Targets of the newest run")


def _audio_section(r: Mapping[str, Any]) -> list[str]:
    """The speech path: log-mel, INT8 latency per model file, end to end; then the targets."""
    lm, q, e = r.get("log_mel") or {}, r.get("int8") or {}, r.get("end_to_end") or {}
    lat = ", ".join(f"{k} {_num(v, '.3f')} ms" if not isinstance(v, str) else f"{k}: {v}"
                    for k, v in (q.get("latency_ms_1_thread") or {}).items())
    lines = [f"**Speech path** (bundle {(r.get('bundle') or {}).get('name', '?')}), measured {r.get('created_utc')}: "
             f"log-mel {_num(lm.get('edgemer_ms'), '.2f')} ms per 10 s clip (librosa "
             f"{_num(lm.get('librosa_ms'), '.2f')} ms); INT8 at one thread: {lat or '–'}; end to end "
             f"{_num(e.get('audio_s'), '.0f')} s of speech: latency p50 {_num(e.get('latency_ms_p50'), '.1f')} / p99 "
             f"{_num(e.get('latency_ms_p99'), '.1f')} ms, real-time factor {_num(e.get('real_time_factor'), '.0f')}x "
             f"on one core."]
    return lines + _targets_table(r)


def _generic_section(r: Mapping[str, Any]) -> list[str]:
    """A kind without its own section: its settings and targets."""
    settings = ", ".join(f"{k} {v}" for k, v in (r.get("settings") or {}).items())
    return [f"**{r.get('kind')}**, measured {r.get('created_utc')}" + (f" ({settings})" if settings else "")] + \
        (_targets_table(r) or ["", "(no targets recorded)"])


def _arm64_parity_section(r: Mapping[str, Any]) -> list[str]:
    """The emulated-aarch64 parity check: argmax agreement per model file and emulated CPU."""
    emu = r.get("emulation") or {}
    summ = r.get("summary") or {}
    lines = [f"**ARM64 parity under emulation** ({emu.get('emulator', 'qemu')}; "
             f"{summ.get('disagreeing_windows', '?')} of {summ.get('windows', '?')} windows disagree; timings "
             f"{emu.get('timing_note', 'emulated')})", "",
             "| bundle | model | CPU | status | argmax agreement vs x86-64 | max abs error |", "|---|---|---|---|---|---|"]
    for row in r.get("results") or []:
        parity = row.get("parity") or {}
        lines.append(f"| {row.get('bundle')} | {row.get('model')} | {row.get('cpu')} | {row.get('status')} | "
                     f"{_pct(parity.get('argmax_agreement'), '.1f')} | "
                     f"{_num(parity.get('first_output_max_abs_error'), '.2g')} |")
    return lines


def _face_section(r: Mapping[str, Any]) -> list[str]:
    """Per-frame stage timings of each face bundle (unrelated frames and a tracked video), and the fer targets."""
    lines = [f"**Face modality** (640x480 frames, one thread; {r.get('settings', {}).get('frames', '?')} frames per row)",
             "", "| bundle | frames | detect p50 / p99 ms | crop p50 ms | expression p50 ms | total p50 / p99 ms "
                 "| total mean ms |", "|---|---|---|---|---|---|---|"]
    for bundle, runs in (r.get("stages") or {}).items():
        for mode, label in (("image", "unrelated"), ("video", "panning video, tracked")):
            st = runs.get(mode) or {}
            if not st:
                continue
            lines.append(f"| {bundle} | {label} | {_num(st['detect']['p50_ms'], '.2f')} / "
                         f"{_num(st['detect']['p99_ms'], '.2f')} | {_num(st['crop']['p50_ms'], '.2f')} | "
                         f"{_num(st['expression']['p50_ms'], '.2f')} | {_num(st['total']['p50_ms'], '.2f')} / "
                         f"{_num(st['total']['p99_ms'], '.2f')} | {_num(st['total'].get('mean_ms'), '.2f')} |")
    for t in r.get("targets") or []:
        value = _num(t.get("value"), ".4g")
        lines.append(f"- {_mark(t.get('met'))} {t.get('description')}: {value} (goal {t.get('threshold')})")
    return lines


def _suite_notes(results: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Per device: the newest suite's overhead and repeat-spread lines."""
    notes: dict[str, list[str]] = {}
    for r in results:
        if r.get("kind") != "suite":
            continue
        lines = []
        o = r.get("overhead") or {}
        if o.get("fraction") is not None:
            lines.append(f"Suite of {r.get('created_utc')}: benchmark overhead {o['loop_ns']:.0f} ns per timed run "
                         f"({o['fraction'] * 100:.2f} % of the smallest p50, {o.get('smallest_cell')}; "
                         f"target < 1 %).")
        s = r.get("repeat")
        if s and s.get("max_spread") is not None:
            lines.append(f"p50 spread over {s['runs']} runs: worst cell {s['max_spread'] * 100:.1f} % "
                         f"({s['cells_over_target']} of {len(s['cells'])} cells over 10 %).")
        notes[device_id(r)] = lines
    return notes


def latest_per_key(results: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str, str], Mapping[str, Any]]:
    """(device, bundle, engine, kind) -> newest result (input: :func:`expand_results` output)."""
    latest: dict[tuple[str, str, str, str], Mapping[str, Any]] = {}
    for r in sorted(results, key=lambda r: str(r.get("created_utc", ""))):
        key = (device_id(r), str((r.get("bundle") or {}).get("name")), str(r.get("engine") or ""),
               r.get("kind", "bundles"))
        latest[key] = r
    return latest


def _verified_files(bundle_name: str, cache: dict[str, dict[str, bool] | None]) -> dict[str, bool] | None:
    """file -> verified, of the bundle of that name loadable here (shipped, or a folder of that name),
    from its verification report; None when no such bundle is here (then nothing is known)."""
    if bundle_name not in cache:
        try:
            from edgemer.backends.choice import verified_models
            from edgemer.bundle import load_bundle

            bundle = load_bundle(bundle_name)
            eligible, _ = verified_models(bundle)
            cache[bundle_name] = {mf.file: mf.key in eligible for mf in bundle.manifest.models.values()}
        except Exception:  # a bundle measured on another machine that is not here: say so in the table
            cache[bundle_name] = None
    return cache[bundle_name]


def fastest_paths(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The fastest verified path of every bundle on every device: one row per (device, bundle).

    Candidates are the ok cells (model file x engine x precision x threads, p50 ms) of the newest
    ``engines``, ``bundles`` and ``suite`` results of that device. Verified: ``engines`` rows say so;
    for other cells the bundle of that name is looked up here and its verification report decides
    (``verified`` None: not known, no such bundle here). The fastest verified cell wins; with none
    verified, the fastest cell of unknown verification (said in the row); never an unverified one.
    "Fastest" is auto's rule (:func:`edgemer.backends.choice.pick_fastest`: a cell with more threads
    must beat the best with fewer threads by ``THREAD_GAIN``).
    Row: device, bundle, path (``engine/precision/tN``), file, p50_ms, verified, kind, created_utc,
    candidates (how many cells were compared).
    """
    latest = {k: r for k, r in latest_per_key(expand_results(results)).items() if k[3] != "engines"}
    for r in sorted(results, key=lambda r: str(r.get("created_utc", ""))):
        if r.get("kind") == "engines":
            for b in r.get("bundles", []):
                latest[(device_id(r), str(b.get("name")), "", "engines")] = {**r, "_entry": b}
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    verified_cache: dict[str, dict[str, bool] | None] = {}
    for (dev, bundle, engine, kind), r in latest.items():
        if kind == "engines":
            for row in r["_entry"].get("fixed", []):
                backend, precision, threads = str(row["cell"]).split("/")
                cells.setdefault((dev, bundle), []).append({
                    "path": row["cell"], "file": row.get("file"), "p50_ms": row.get("p50_ms"),
                    "verified": bool(row.get("verified")), "kind": "engines", "created_utc": r.get("created_utc")})
        elif kind == "bundles":
            known = _verified_files(bundle, verified_cache)
            for c in r.get("cells", []):
                if c.get("status") != "ok":
                    continue
                cells.setdefault((dev, bundle), []).append({
                    "path": f"{engine or c['backend']}/{c['precision']}/t{c['threads']}", "file": c.get("model_file"),
                    "p50_ms": c["latency_ms"]["p50"], "verified": None if known is None else known.get(c.get("model_file")),
                    "kind": "suite" if r.get("engine") else "bundles", "created_utc": r.get("created_utc")})
    rows = []
    for (dev, bundle), cands in sorted(cells.items()):
        cands = [c for c in cands if isinstance(c["p50_ms"], (int, float)) and c["p50_ms"] > 0]
        pool = [c for c in cands if c["verified"] is True] or [c for c in cands if c["verified"] is None]
        if pool:
            from edgemer.backends.choice import Cell, Measurement, pick_fastest

            ms = [Measurement(Cell(str(i), str(c["file"]), *c["path"].rsplit("/", 2)[:2],
                                   int(c["path"].rsplit("/t", 1)[1])), c["p50_ms"]) for i, c in enumerate(pool)]
            best = pool[int(pick_fastest(ms).cell.model)]  # auto's rule: more threads must win by THREAD_GAIN
            rows.append({"device": dev, "bundle": bundle, **best, "candidates": len(cands)})
    return rows


def _fastest_section(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["## Fastest verified path per device", "",
             "What `backend = \"auto\"` runs on each device when it has these measurements: per bundle, the "
             "lowest p50 among the model files whose INT8/FP32 parity meets the bundle's targets (newest "
             "`engines`, `bundles` and `suite` results of the device; `edgemer bench engines` adds the auto "
             "choice beside every fixed one).", "",
             "| device | bundle | fastest verified path | file | p50 ms | cells compared | from |",
             "|---|---|---|---|---:|---:|---|"]
    for r in rows:
        note = "" if r["verified"] else " (verification not known here)"
        lines.append(f"| {r['device']} | {r['bundle']} | {r['path']}{note} | {r['file']} | {r['p50_ms']:.4f} | "
                     f"{r['candidates']} | {r['kind']} {str(r['created_utc'])[:10]} |")
    return lines + [""]


def markdown_report(results: Sequence[Mapping[str, Any]], plots: Sequence[str] = (),
                    problems: Sequence[str] = ()) -> str:
    """One Markdown document: plots (file names relative to the report), then a section per device
    with a table per bundle x engine, ratios and pipeline lines; files left out are listed last."""
    notes = _suite_notes(results)
    expanded = expand_results(results)
    latest = latest_per_key(expanded)
    devices: dict[str, list[Mapping[str, Any]]] = {}
    for key, r in sorted(latest.items()):
        devices.setdefault(key[0], []).append(r)
    summary = (f"{len(latest)} result(s) from {len(devices)} device(s). Latency in ms per inference (batch 1, "
               f"one caller), p50 over adaptive repeated runs; RSS is each cell's own process. Bundles trained on "
               f"synthetic data say so: their timings are real, their accuracy is not.")
    lines = ["# edgemer benchmark results", "", summary, ""]
    lines += _fastest_section(fastest_paths(results))
    for name in plots:
        lines += [f"![{Path(name).stem}]({name})", ""]
    for dev, rs in devices.items():
        lines += [_device_heading(rs[0].get("device") or {}), ""]
        lines += [n for n in notes.get(dev, [])] + ([""] if notes.get(dev) else [])
        for r in rs:
            kind = r.get("kind", "bundles")
            if kind == "bundles":
                lines += _bundle_section(r) + [""]
                if r.get("pipeline"):
                    lines += _pipeline_section(r["pipeline"]) + [""]
            elif kind == "bundle-failed":
                lines += [f"**{r['bundle']['name']}**: failed — {r.get('reason')}", ""]
            elif kind == "pipeline":
                lines += _pipeline_section(r) + [""]
            elif kind == "arm64":
                lines += _arm64_parity_section(r) + [""]
            elif kind == "face":
                lines += _face_section(r) + [""]
            elif kind == "audio":
                lines += _audio_section(r) + [""]
            elif kind in ("multimodal", "bridge"):  # every run of this device, not only the newest
                runs = sorted((m for m in expanded if m.get("kind") == kind and device_id(m) == dev),
                              key=lambda m: str(m.get("created_utc", "")))
                lines += (_multimodal_section(runs) if kind == "multimodal" else _bridge_section(runs)) + [""]
            else:
                lines += _generic_section(r) + [""]
    if problems:
        lines += ["## Files left out", ""] + [f"- {p}" for p in problems] + [""]
    return "\n".join(lines).rstrip() + "\n"


# -- plots ---------------------------------------------------------------------------------------------

def _ok_cells(results: Sequence[Mapping[str, Any]]):
    """(device, bundle, engine, cell) for every ok cell of the newest bundle results."""
    for (dev, bundle, _, kind), r in sorted(latest_per_key(expand_results(results)).items()):
        if kind != "bundles":
            continue
        for c in r.get("cells", []):
            if c.get("status") == "ok":
                yield dev, bundle, _engine(r, c), c


def plot_data(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """The numbers behind the plots, each ``{row label: {device: value}}`` at 1 thread.

    latency: p50 ms per ``bundle / engine / precision``; int8_speedup: p50(fp32) / p50(int8) per
    ``bundle / engine``; memory: peak RSS MiB per ``bundle / engine / precision``.
    """
    latency: dict[str, dict[str, float]] = {}
    memory: dict[str, dict[str, float]] = {}
    p50: dict[tuple[str, str, str, str], float] = {}
    for dev, bundle, engine, c in _ok_cells(results):
        if c["threads"] != 1:
            continue
        label = f"{bundle} / {engine} / {c['precision']}"
        latency.setdefault(label, {})[dev] = c["latency_ms"]["p50"]
        memory.setdefault(label, {})[dev] = c["rss_peak_mib"]
        p50[(dev, bundle, engine, c["precision"])] = c["latency_ms"]["p50"]
    speedup: dict[str, dict[str, float]] = {}
    for (dev, bundle, engine, precision), v in p50.items():
        if precision == "int8" and (dev, bundle, engine, "fp32") in p50:
            speedup.setdefault(f"{bundle} / {engine}", {})[dev] = p50[(dev, bundle, engine, "fp32")] / v
    return {"latency": latency, "int8_speedup": speedup, "memory": memory}


def _bar_plot(plt, data: Mapping[str, Mapping[str, float]], title: str, xlabel: str, path: Path,
              log: bool = False, line_at: float | None = None) -> None:
    """Horizontal grouped bars: one group per row label, one bar per device."""
    rows = sorted(data)
    devices = sorted({d for v in data.values() for d in v})
    height = 0.8 / max(1, len(devices))
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.45 * max(1, len(rows)) * max(1, len(devices)) ** 0.5))
    for j, dev in enumerate(devices):
        ys = [i + j * height for i, r in enumerate(rows) if dev in data[r]]
        xs = [data[r][dev] for r in rows if dev in data[r]]
        ax.barh(ys, xs, height=height, label=dev)
    ax.set_yticks([i + height * (len(devices) - 1) / 2 for i in range(len(rows))])
    ax.set_yticklabels(rows, fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    if line_at is not None:
        ax.axvline(line_at, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if devices:
        ax.legend(fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_plots(results: Sequence[Mapping[str, Any]], out: Path) -> list[str]:
    """Write the PNG plots into ``out``; return their file names (those with data)."""
    from edgemer._extras import require

    matplotlib = require("matplotlib", "export", "Plots in the benchmark report")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = plot_data(results)
    written = []
    specs = {"latency": ("p50 latency per model, 1 thread", "ms per inference (log scale)", True, None),
             "int8_speedup": ("INT8 speed-up over FP32, 1 thread", "p50(FP32) / p50(INT8)", False, 1.0),
             "memory": ("Peak RSS per model, 1 thread (own process)", "MiB", False, None)}
    for key, (title, xlabel, log, line_at) in specs.items():
        if not data[key]:
            continue
        _bar_plot(plt, data[key], title, xlabel, out / PLOTS[key], log=log, line_at=line_at)
        written.append(PLOTS[key])
    return written


def render_report(folder: str | Path, out: str | Path) -> Path:
    """``folder``'s results -> ``out/REPORT.md`` with PNG plots next to it; returns the Markdown path.

    Raises
    ------
    ResultSchemaError: ``folder`` holds no readable result (files left out are listed in the message).
    MissingExtraError: matplotlib is not installed (names the extra).
    """
    problems: list[str] = []
    results = collect_results(folder, problems)
    if not results:
        raise ResultSchemaError(f"{folder}: no edgemer benchmark results found"
                                + (f" ({len(problems)} left out: {'; '.join(problems)})" if problems else
                                   "; write some with `edgemer bench KIND --json DIR`, e.g. `edgemer bench suite "
                                   "--json benchmarks/results`"))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = render_plots(results, out)
    path = out / "REPORT.md"
    path.write_text(markdown_report(results, plots, problems), encoding="utf-8")
    return path


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgemer bench report``."""
    parser.description = ("Render every benchmark result in a folder (every kind, every device; older schema "
                          "versions migrated) into FOLDER/REPORT.md with PNG plots (needs matplotlib: "
                          "pip install 'edgemer[export]').")
    parser.add_argument("results", nargs="?", type=Path, default=Path("benchmarks/results"),
                        help="folder of result files, searched recursively (default benchmarks/results)")
    parser.add_argument("--out", type=Path, default=Path("report"), metavar="FOLDER",
                        help="where REPORT.md and the PNG plots go (default report/)")


def run(args: argparse.Namespace) -> int:
    """``edgemer bench report [RESULTS] --out DIR``: print where the report went; 0."""
    path = render_report(args.results, args.out)
    print(f"wrote {path} ({', '.join(p.name for p in sorted(path.parent.glob('*.png')))})")
    return 0
