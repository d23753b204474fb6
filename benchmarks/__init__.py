"""edgemer benchmarks: per-cell model latency, memory and INT8-vs-FP32 parity, the
end-to-end pipeline, a device fingerprint, and a report across devices.

Modules (import what you need; this package imports nothing at load time so that
``edgemer --help`` stays fast):

- :mod:`edgemer.benchmarks.bundle_bench` — :func:`bench_bundle`, :func:`format_table`
- :mod:`edgemer.benchmarks.pipeline_bench` — :func:`bench_pipeline`
- :mod:`edgemer.benchmarks.fingerprint` — :func:`device_fingerprint`
- :mod:`edgemer.benchmarks.report` — :func:`collect_results`, :func:`markdown_report`
- :mod:`edgemer.benchmarks.commands` — ``edgemer bench`` options and entry point
- :mod:`edgemer.benchmarks.cell` — the per-cell worker process

Results follow the versioned JSON schema in ``benchmarks/SCHEMA.md``.
"""
from __future__ import annotations

SCHEMA = "edgemer.bench/1"
"""Version tag of the result JSON (``result["schema"]``); bump on incompatible changes."""
