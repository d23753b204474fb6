"""Collect benchmark results from several devices and render one Markdown report.

``collect_results(folder)`` reads every ``*.json`` written by ``edgemer bench --json``
(schema ``edgemer.bench/*``); ``markdown_report(results)`` renders, per device, a table
of p50 latency per bundle x model x backend x precision x threads and the INT8/FP32
ratios, plus the pipeline overhead where it was measured. When one device measured one
bundle several times, the newest result is shown. Plots are not drawn yet.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

SCHEMA_PREFIX = "edgemer.bench/"


def collect_results(folder: str | Path) -> list[dict[str, Any]]:
    """Every benchmark result JSON under ``folder`` (recursively), oldest first.

    Files that are not JSON objects of an ``edgemer.bench/*`` schema are ignored.
    """
    results = []
    for f in sorted(Path(folder).rglob("*.json")):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and str(data.get("schema", "")).startswith(SCHEMA_PREFIX):
            data.setdefault("_file", str(f))
            results.append(data)
    return sorted(results, key=lambda r: str(r.get("created_utc", "")))


def _num(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def _device_heading(device: Mapping[str, Any]) -> str:
    board = device.get("board") or {}
    versions = device.get("versions") or {}
    parts = [device.get("cpu_model") or "unknown CPU", f"{device.get('logical_cores')} cores",
             f"{device.get('memory_gib')} GiB"]
    if board.get("raspberry_pi") or board.get("jetson"):
        parts.insert(0, board.get("raspberry_pi") or board.get("jetson"))
    runtimes = ", ".join(f"{k} {v}" for k, v in versions.items() if v and k != "edgemer")
    return f"### {device.get('device_id')}\n\n{'; '.join(parts)}. Runtimes: {runtimes}."


def _bundle_section(result: Mapping[str, Any]) -> list[str]:
    b = result["bundle"]
    synthetic = " (trained on synthetic data)" if b.get("synthetic_data") else ""
    lines = [f"**{b['name']}**{synthetic}, measured {result.get('created_utc')}", "",
             "| model | backend | precision | threads | p50 ms | p99 ms | load ms | peak RSS MiB | size KiB |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in result.get("cells", []):
        size = _num(c["model_bytes"] / 1024 if c.get("model_bytes") else None, ".1f")
        if c["status"] == "ok":
            lat = c["latency_ms"]
            lines.append(f"| {c['model_file']} | {c['backend']} | {c['precision']} | {c['threads']} | "
                         f"{lat['p50']:.3f} | {lat['p99']:.3f} | {c['load_s'] * 1e3:.1f} | {c['rss_peak_mib']:.0f} | "
                         f"{size} |")
        else:
            lines.append(f"| {c.get('model_file') or '–'} | {c['backend']} | {c['precision']} | {c['threads']} | "
                         f"{c['status']} | | | | {size} |")
    ratios = [r for r in result.get("ratios", []) if r.get("latency_p50_ratio") is not None or r.get("size_ratio")]
    if ratios:
        lines += ["", "| backend | threads | INT8/FP32 p50 | INT8/FP32 size | argmax agreement |",
                  "|---|---:|---:|---:|---:|"]
        for r in ratios:
            agree = (r.get("parity") or {}).get("argmax_agreement")
            lat = _num(r["latency_p50_ratio"], ".2f") + ("x" if r["latency_p50_ratio"] is not None else "")
            if r.get("ci_separated") is False:
                lat += " (noise)"
            lines.append(f"| {r['backend']} | {r['threads']} | {lat} | {_num(r['size_ratio'], '.2f')}x | "
                         f"{_num(None if agree is None else agree * 100, '.1f')} % |")
    return lines


def _pipeline_section(p: Mapping[str, Any]) -> list[str]:
    s, o, goal = p["settings"], p["overhead"], p["goal"]
    mark = "–" if goal["met"] is None else ("met" if goal["met"] else "not met")
    return [(f"Pipeline ({p['bundle']['name']}, {s['backend']} {s['precision']} threads={s['threads']}, "
            f"{p['estimates']} estimates): inference {_num(p['inference_ms']['median'], '.3f')} ms, processing "
            f"{_num(p['processing_ms']['median'], '.3f')} ms per estimate; overhead beyond inference "
            f"{_num(None if o['median'] is None else o['median'] * 100, '.0f')} % (goal <= "
            f"{goal['threshold'] * 100:.0f} %: {mark}); real-time factor {_num(p['real_time_factor'], '.4f')}.")]


def markdown_report(results: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown document: a section per device, a table per bundle, ratios, pipeline lines."""
    latest: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for r in sorted(results, key=lambda r: str(r.get("created_utc", ""))):
        key = (r["device"]["device_id"], r["bundle"]["name"], r.get("kind", "bundle"))
        latest[key] = r
    devices: dict[str, list[Mapping[str, Any]]] = {}
    for (device_id, _, _), r in sorted(latest.items()):
        devices.setdefault(device_id, []).append(r)
    summary = (f"{len(latest)} result(s) from {len(devices)} device(s). Latency in ms per inference (batch 1, "
               f"one caller), p50 over adaptive repeated runs; RSS is each cell's own process.")
    lines = ["# edgemer benchmark results", "", summary, ""]
    for device_id, rs in devices.items():
        lines += [_device_heading(rs[0]["device"]), ""]
        for r in rs:
            if r.get("kind", "bundle") == "bundle":
                lines += _bundle_section(r) + [""]
                if r.get("pipeline"):
                    lines += _pipeline_section(r["pipeline"]) + [""]
            elif r.get("kind") == "pipeline":
                lines += _pipeline_section(r) + [""]
    return "\n".join(lines).rstrip() + "\n"
