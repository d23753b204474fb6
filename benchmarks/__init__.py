"""edgemer benchmarks: one command, ``edgemer bench KIND``, one result schema, one report.

The kinds and where each lives (the registry is :data:`edgemer.benchmarks.commands.KINDS`):

- ``bundles`` — :mod:`edgemer.benchmarks.bundle_bench` (per model file x backend x precision x
  threads, each cell in a fresh process by :mod:`edgemer.benchmarks.cell`; ``--pipeline`` adds
  :mod:`edgemer.benchmarks.pipeline_bench`)
- ``suite`` — :mod:`edgemer.benchmarks.suite`
- ``audio`` — :mod:`edgemer.benchmarks.audio_bench`
- ``face`` — :mod:`edgemer.benchmarks.face_bench`
- ``multimodal`` — :mod:`edgemer.benchmarks.soak_bench`
- ``bridge`` — :mod:`edgemer.firmware_bridge.bench`
- ``arm64`` — :mod:`edgemer.benchmarks.arm64_parity`
- ``fuzz`` — :mod:`edgemer.benchmarks.fuzz_bench` (formats in :mod:`edgemer.benchmarks.fuzz_formats`)
- ``report`` — :mod:`edgemer.benchmarks.report` (the cross-device report of every kind)

Shared pieces: :mod:`edgemer.benchmarks.result` (the common schema: build, check, write),
:mod:`edgemer.benchmarks.fingerprint` (the device fingerprint), :mod:`edgemer.benchmarks.stats`.
This package imports nothing at load time so that ``edgemer --help`` stays fast. Results
follow the versioned JSON schema in ``benchmarks/SCHEMA.md``.
"""
from __future__ import annotations

SCHEMA = "edgemer.bench/2"
"""Version tag of the result JSON (``result["schema"]``); bump on incompatible changes."""
