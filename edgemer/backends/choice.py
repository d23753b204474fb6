"""Engine choice: which verified model file, engine and thread count a bundle runs on here.

A bundle carries several model files (FP32/INT8 ONNX, INT8 TFLite, sometimes FP32
TFLite), and which is fastest depends on the device. With ``backend="auto"`` and
``precision="auto"`` (the defaults of :class:`~edgemer.pipeline.PipelineConfig`) the
runtime calls :func:`choose_engine`, which applies one rule:

1. **Verified files only.** A file is eligible when the bundle's ``verification.json``
   shows its parity meets the bundle's targets (:func:`verified_models`): the reference
   of the verification (the FP32 ONNX export) always is; a file compared against a
   reference is when every parity target of that comparison passed (targets about file
   size say nothing about correctness and are not counted) and its reference is itself
   eligible; a comparison without target rows is checked against the report's
   ``thresholds.min_argmax_agreement``. A file no comparison covers is not eligible. A
   bundle without a report runs its FP32 files only. LiteRT files are skipped when no
   LiteRT runtime is installed (``pip install 'edgemer[tflite]'``).
2. **Fastest measured p50 on this device.** Among the eligible file x engine x threads
   cells, the lowest median latency per inference wins; a cell with more threads must
   beat the best cell with fewer threads by :data:`THREAD_GAIN` (5 %, the tolerance of the
   engine benchmark's target), because every
   extra inference thread costs CPU that the sources, front-ends and other models share.
3. **Measurements** come from this device's own results, kept in a cache file
   (:class:`ChoiceCache`, ``$EDGEMER_CACHE_DIR`` or ``$XDG_CACHE_HOME/edgemer`` or
   ``~/.cache/edgemer``, file :data:`CACHE_NAME`) keyed by the device fingerprint (CPU,
   cores, board, installed runtime builds and versions, read without importing them:
   :func:`device_key`) and the bundle's hash (of its model files: :func:`bundle_hash`).
   ``edgemer bench engines`` and
   :func:`remember_measurements` write there; with no entry, a short first-use
   measurement (:func:`measure_cells`: 5 interleaved passes of at most 0.04 s per cell, each
   cell keeping its lowest p50, so a burst of load elsewhere hurts one pass, not the choice;
   with a progress line) fills
   it. A cache that is corrupt, from another edgemer version or another device, or that
   cannot be written is ignored with a warning, never an error.

4. **The device preset as the prior.** A bundle exported with a device preset
   (``edgemer export ... --target pi4|pi5|jetson-orin|x86``, see
   :mod:`edgemer.export.core.targets`) records in its manifest
   (``quantisation.onnx.prefer``) the engine, precision and threads to prefer on that device.
   When nothing is measured (first-use measurement off or failed) and this machine is of the
   preset's architecture, that cell runs (rule ``preset``) instead of the first verified
   file (rule ``default``). A measurement always wins over the prior.

Forcing ``backend`` and ``precision`` pins the choice (no measurement; ``threads``
defaults to 1); forcing one of them restricts the candidates to it. Everything the
decision used is in the returned :class:`EngineChoice`, which the pipeline prints at
start, records in every :class:`~edgemer.types.Estimate` (``engines``) and in
``Pipeline.stats()``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from edgemer.bundle import Bundle, ModelFile
from edgemer.errors import BackendUnavailableError, ConfigError

log = logging.getLogger(__name__)

AUTO = "auto"
BACKEND_CHOICES = (AUTO, "onnxruntime", "litert")
"""Values ``backend`` takes in configs and on the command line."""
PRECISION_CHOICES = (AUTO, "int8", "fp32")
"""Values ``precision`` takes in configs and on the command line."""
ENGINE_OF_FORMAT = {"onnx": "onnxruntime", "tflite": "litert"}
"""Model file format -> the engine (backend) that runs it."""
THREAD_GAIN = 0.05
"""A cell with more threads is chosen only when its p50 is below (1 - THREAD_GAIN) x the best p50
with fewer threads (fraction)."""
MAX_AUTO_THREADS = 4
"""Most inference threads the first-use measurement tries (1, 2, 4, at most the usable cores)."""
CACHE_ENV = "EDGEMER_CACHE_DIR"
"""Environment variable naming the cache folder (tests point it at a temporary folder)."""
CACHE_NAME = "engine-choice.json"
CACHE_SCHEMA = "edgemer.engine-choice/1"

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """``$EDGEMER_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgemer``, else ``~/.cache/edgemer``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgemer"


def stderr_progress(message: str) -> None:
    """Default progress printer of the first-use measurement: one line on stderr."""
    print(f"edgemer: {message}", file=sys.stderr, flush=True)


# -- what may run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One way to run a bundle: manifest model key, file, engine, precision, inference threads."""

    model: str
    file: str
    backend: str
    precision: str
    threads: int

    @property
    def label(self) -> str:
        """Short name, e.g. ``litert/int8/t1``."""
        return f"{self.backend}/{self.precision}/t{self.threads}"


@dataclass(frozen=True)
class Measurement:
    """A measured cell: median latency per inference (ms) and where the number comes from
    (``first-use``, ``bench``, ``cache``), and when (ISO 8601 UTC)."""

    cell: Cell
    p50_ms: float
    source: str = "first-use"
    measured_utc: str = ""


def is_parity_target(target: Mapping[str, Any]) -> bool:
    """Whether a verification target speaks about correctness (agreement, F1, correlation),
    not about file size."""
    return "size" not in str(target.get("name", "")).lower()


def verified_models(bundle: Bundle) -> tuple[dict[str, ModelFile], dict[str, str]]:
    """Split the bundle's model files into eligible ones and excluded ones (key -> why).

    See the module docstring, rule 1. Reads ``verification.json`` (absent: FP32 files only).
    """
    models = dict(bundle.manifest.models)
    report = bundle.verification()
    if not report:
        eligible = {k: m for k, m in models.items() if m.precision == "fp32"}
        return eligible, {k: "no verification report in the bundle (only FP32 files run without one)"
                          for k in models if k not in eligible}
    comparisons = report.get("comparisons") if isinstance(report.get("comparisons"), Mapping) else {}
    targets = [t for t in report.get("targets") or [] if isinstance(t, Mapping)]
    thresholds = report.get("thresholds") if isinstance(report.get("thresholds"), Mapping) else {}
    min_agreement = thresholds.get("min_argmax_agreement")
    by_candidate: dict[str, list[tuple[str, str]]] = {}     # candidate -> [(comparison label, reference)]
    references = set()
    for label, row in comparisons.items():
        if isinstance(row, Mapping) and row.get("candidate") in models and row.get("reference") in models:
            by_candidate.setdefault(row["candidate"], []).append((label, row["reference"]))
            references.add(row["reference"])
    failed: dict[str, str] = {}
    for key, rows in by_candidate.items():
        for label, _ in rows:
            checks = [t for t in targets if t.get("comparison") == label and is_parity_target(t)]
            bad = [t for t in checks if not t.get("passed")]
            row = comparisons[label]
            if bad:
                t = bad[0]
                failed[key] = (f"parity target failed in '{label}': {t.get('name')} {_num(t.get('value'))} "
                               f"(needs {t.get('op')} {t.get('threshold')})")
            elif not checks and isinstance(min_agreement, (int, float)):
                agreement = row.get("argmax_agreement")
                if not isinstance(agreement, (int, float)) or agreement < min_agreement:
                    failed[key] = (f"'{label}': argmax agreement {_num(agreement)} below the bundle's "
                                   f"threshold {min_agreement}")
            if key in failed:
                break
    eligible: dict[str, ModelFile] = {}
    excluded: dict[str, str] = {}
    for key in models:
        if key in failed:
            excluded[key] = failed[key]
        elif key not in by_candidate and key not in references:
            excluded[key] = "not covered by the bundle's verification report"
    # The reference of the verification is eligible; a candidate is when its reference is (chains
    # such as int8-tflite vs fp32-tflite vs fp32-onnx), resolved until nothing changes.
    changed = True
    while changed:
        changed = False
        for key, mf in models.items():
            if key in eligible or key in excluded:
                continue
            refs = [ref for _, ref in by_candidate.get(key, [])]
            if not refs or any(r in eligible for r in refs):
                eligible[key] = mf
                changed = True
            elif all(r in excluded for r in refs):
                excluded[key] = f"its reference ({', '.join(refs)}) is not eligible"
                changed = True
    for key in models:
        if key not in eligible and key not in excluded:
            excluded[key] = "its verification chain does not reach the reference"
    return eligible, excluded


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def litert_installed() -> bool:
    """Whether a LiteRT runtime (ai_edge_litert or tflite_runtime) can be imported."""
    for name in ("ai_edge_litert", "tflite_runtime"):
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except (ImportError, ValueError):
            continue
    return False


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def auto_threads(cores: int | None = None) -> tuple[int, ...]:
    """Thread counts the first-use measurement tries: 1, 2, 4 up to the usable cores."""
    cores = usable_cores() if cores is None else cores
    return tuple(t for t in (1, 2, 4) if t <= min(cores, MAX_AUTO_THREADS)) or (1,)


def candidate_cells(models: Mapping[str, ModelFile], backend: str = AUTO, precision: str = AUTO,
                    threads: int | None = None, litert: bool | None = None,
                    thread_options: Sequence[int] | None = None) -> tuple[list[Cell], dict[str, str]]:
    """The cells to choose from among ``models`` (eligible files), restricted by the pinned
    ``backend`` / ``precision`` / ``threads`` (``auto`` / None: free), and the files left out
    because their engine is not installed here (key -> why)."""
    litert = litert_installed() if litert is None else litert
    options = (threads,) if threads is not None else tuple(thread_options or auto_threads())
    cells, skipped = [], {}
    for key, mf in models.items():
        engine = ENGINE_OF_FORMAT.get(mf.format)
        if engine is None or (backend != AUTO and engine != backend) or (precision != AUTO and
                                                                          mf.precision != precision):
            continue
        if engine == "litert" and not litert:
            skipped[key] = "LiteRT is not installed (pip install 'edgemer[tflite]')"
            continue
        cells.extend(Cell(key, mf.file, engine, mf.precision, t) for t in options)
    return cells, skipped


@dataclass(frozen=True)
class EnginePreference:
    """What a device preset prefers when nothing is measured: ``backend``, ``precision``,
    ``threads`` (at most the usable cores), for machines whose ``platform.machine()`` is in
    ``machines`` (empty: any), and why (``reason``). Recorded in a bundle's manifest as
    ``quantisation.onnx.prefer`` (:meth:`to_dict`) by ``edgemer export ... --target``."""

    backend: str
    precision: str
    threads: int = 1
    machines: tuple[str, ...] = ()
    reason: str = ""

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_CHOICES[1:]:
            raise ConfigError(f"EnginePreference.backend must be one of {BACKEND_CHOICES[1:]}, got {self.backend!r}")
        if self.precision not in PRECISION_CHOICES[1:]:
            raise ConfigError(f"EnginePreference.precision must be one of {PRECISION_CHOICES[1:]}, "
                              f"got {self.precision!r}")
        if self.threads < 1:
            raise ConfigError(f"EnginePreference.threads must be >= 1, got {self.threads}")

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.precision}/t{self.threads}"

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, "threads": self.threads,
                "machines": list(self.machines), "reason": self.reason}

    @classmethod
    def from_manifest(cls, manifest: Any) -> tuple["EnginePreference", str] | None:
        """The preference a bundle's manifest records and the preset's name, or None (absent or
        malformed: a malformed one is logged and ignored, it is only a prior)."""
        onnx = ((getattr(manifest, "raw", None) or {}).get("quantisation") or {}).get("onnx")
        prefer = onnx.get("prefer") if isinstance(onnx, Mapping) else None
        if not isinstance(prefer, Mapping):
            return None
        try:
            pref = cls(str(prefer["backend"]), str(prefer["precision"]), int(prefer.get("threads", 1)),
                       tuple(str(m) for m in prefer.get("machines") or ()), str(prefer.get("reason", "")))
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            log.warning("bundle manifest: quantisation.onnx.prefer is malformed (%s); ignored", exc)
            return None
        return pref, str(onnx.get("target") or "?")

    def applies_here(self, machine: str | None = None) -> bool:
        """Whether this machine (``platform.machine()``, or ``machine``) is one the preset is for."""
        import platform

        machine = (machine or platform.machine()).lower()
        return not self.machines or machine in {m.lower() for m in self.machines}


def preferred_cell(cells: Sequence[Cell], preference: EnginePreference, cores: int | None = None) -> Cell | None:
    """The candidate cell matching ``preference``: its backend and precision, the most threads up to
    min(preference.threads, usable cores) that a candidate has; None when no candidate matches."""
    cores = usable_cores() if cores is None else cores
    limit = max(1, min(preference.threads, cores))
    matching = [c for c in cells if c.backend == preference.backend and c.precision == preference.precision
                and c.threads <= limit]
    return max(matching, key=lambda c: c.threads) if matching else None


def pick_fastest(measurements: Iterable[Measurement], thread_gain: float = THREAD_GAIN) -> Measurement:
    """The measurement with the lowest p50; one with more threads must beat the best with fewer
    threads by ``thread_gain`` (fraction). Ties go to fewer threads, then to the order given."""
    ms = [m for m in measurements if m.p50_ms > 0]
    if not ms:
        raise ValueError("no measurement to choose from")
    best: Measurement | None = None
    for n in sorted({m.cell.threads for m in ms}):
        fastest = min((m for m in ms if m.cell.threads == n), key=lambda m: m.p50_ms)
        if best is None or fastest.p50_ms < best.p50_ms * (1.0 - thread_gain):
            best = fastest
    assert best is not None
    return best


# -- the decision -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineChoice:
    """What runs a bundle, and why.

    bundle: bundle name. model, file, backend, precision, threads: the chosen cell.
    rule: ``forced`` (pinned by the caller), ``fastest-verified`` (lowest measured p50 among the
    verified files), ``preset`` (nothing measured: the cell the bundle's device preset prefers)
    or ``default`` (nothing measured and no preset for this machine: the first verified cell).
    source: where the p50s came from (``first-use``, ``bench``, ``cache``, or None).
    p50_ms: the chosen cell's measured p50 (ms), None when not measured.
    measured: every measured cell as ``(label, p50_ms)``, fastest first.
    excluded: model key -> why it was not a candidate (parity, missing engine).
    reason: one line for a person. bundle_hash, device_key: what the measurements are keyed by.
    """

    bundle: str
    model: str
    file: str
    backend: str
    precision: str
    threads: int
    rule: str
    reason: str
    source: str | None = None
    p50_ms: float | None = None
    measured: tuple[tuple[str, float], ...] = ()
    excluded: Mapping[str, str] = field(default_factory=dict)
    bundle_hash: str = ""
    device_key: str = ""

    @property
    def label(self) -> str:
        """Short name of the chosen cell, e.g. ``litert/int8/t1``."""
        return f"{self.backend}/{self.precision}/t{self.threads}"

    def line(self) -> str:
        """One line for the terminal: bundle, chosen cell and file, why."""
        return f"engine {self.bundle}: {self.label} ({self.file}): {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["measured"] = [{"cell": c, "p50_ms": p} for c, p in self.measured]
        d["excluded"] = dict(self.excluded)
        d["label"] = self.label
        return d


def bundle_hash(bundle: Bundle) -> str:
    """sha256 over the bundle's model files (manifest key, file name and sha256 of each), so
    run-time options that change the front-end (face detector, analysis rate) keep the key."""
    h = hashlib.sha256()
    for key in sorted(bundle.manifest.models):
        mf = bundle.manifest.models[key]
        digest = (bundle.manifest.files.get(mf.file) or {}).get("sha256", "")
        h.update(f"{key}\0{mf.file}\0{digest}\n".encode())
    return h.hexdigest()[:16]


DEVICE_KEY_FIELDS = ("machine", "cpu_model", "cpu_flags", "logical_cores", "usable_cores", "cgroup_cpu_limit",
                     "memory_gib", "board", "power_mode", "versions", "runtime_distributions")
"""Fingerprint fields a measurement depends on (not temperatures, governor or kernel).

The runtimes enter as ``versions`` (importable numpy / onnxruntime / LiteRT / edgemer) and
``runtime_distributions`` (installed runtime distribution -> version, from package metadata),
not as onnxruntime's provider list: listing providers imports onnxruntime (about 20 MiB
resident), which a pipeline whose bundles all run on LiteRT would then carry for nothing. The
distribution and its version determine the provider list (it is the set of providers compiled
into that build, e.g. ``onnxruntime-gpu`` adds CUDA and TensorRT, not a probe of the hardware),
so the key still changes when the providers can change: another onnxruntime version, a GPU or
OpenVINO build instead of the CPU one, or a second build installed over the first. What it
misses: a build compiled from source with other providers but the same distribution name and
version; run ``edgemer bench engines`` after installing one (it replaces the measurements).
"""


def device_key(fingerprint: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """A short hash of the speed-relevant part of the device fingerprint, and that part.

    fingerprint: :func:`edgemer.benchmarks.fingerprint.device_fingerprint` (taken here when None,
    without onnxruntime's provider list, so no inference runtime is imported: see
    :data:`DEVICE_KEY_FIELDS`).
    """
    if fingerprint is None:
        from edgemer.benchmarks.fingerprint import device_fingerprint

        fingerprint = device_fingerprint(providers=False)
    part = {k: fingerprint.get(k) for k in DEVICE_KEY_FIELDS}
    if isinstance(part.get("memory_gib"), (int, float)):
        part["memory_gib"] = round(float(part["memory_gib"]))  # MemTotal moves by a few MiB between boots
    text = json.dumps(part, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16], part


class ChoiceCache:
    """The measurements of one device, in ``<folder>/engine-choice.json``.

    Layout: ``schema``, ``edgemer`` (version that wrote it), ``device_key``, ``device`` (the
    fingerprint part), ``bundles``: bundle hash -> ``name``, ``measured_utc``, ``source``,
    ``cells`` (list of ``{model, file, backend, precision, threads, p50_ms}``).
    A file that is corrupt, of another schema or edgemer version, or of another device is
    ignored with one warning (and replaced at the next write); a write that fails warns.
    """

    def __init__(self, folder: str | Path | None = None, device: tuple[str, dict[str, Any]] | None = None,
                 version: str | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.path = self.folder / CACHE_NAME
        self._device = device
        if version is None:
            from edgemer import __version__ as version
        self.version = version
        self.warnings: list[str] = []

    @property
    def device(self) -> tuple[str, dict[str, Any]]:
        if self._device is None:
            self._device = device_key()
        return self._device

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning(message)

    def _read(self) -> dict[str, Any]:
        """The file's content when it is usable here, else an empty cache (with a warning)."""
        empty = {"schema": CACHE_SCHEMA, "edgemer": self.version, "device_key": self.device[0],
                 "device": self.device[1], "bundles": {}}
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return empty
        except (OSError, UnicodeDecodeError) as exc:
            self._warn(f"engine-choice cache {self.path} cannot be read ({exc}); ignoring it and measuring again")
            return empty
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            self._warn(f"engine-choice cache {self.path} is corrupt ({str(exc)[:80]}); ignoring it and measuring "
                       f"again")
            return empty
        if not isinstance(data, dict) or not isinstance(data.get("bundles"), dict):
            self._warn(f"engine-choice cache {self.path} is not an edgemer engine-choice file; ignoring it")
            return empty
        if data.get("schema") != CACHE_SCHEMA or data.get("edgemer") != self.version:
            self._warn(f"engine-choice cache {self.path} was written by edgemer {data.get('edgemer')!r} "
                       f"({data.get('schema')!r}); this is {self.version}: ignoring it and measuring again")
            return empty
        if data.get("device_key") != self.device[0]:
            self._warn(f"engine-choice cache {self.path} holds measurements of another device or runtime versions "
                       f"(key {str(data.get('device_key'))[:20]!r}, here {self.device[0]}); ignoring it")
            return empty
        return data

    def lookup(self, bundle_key: str) -> list[Measurement]:
        """This device's measurements of the bundle with hash ``bundle_key`` (empty when none)."""
        entry = self._read()["bundles"].get(bundle_key)
        if not isinstance(entry, dict):
            return []
        out = []
        for row in entry.get("cells") or []:
            try:
                cell = Cell(str(row["model"]), str(row["file"]), str(row["backend"]), str(row["precision"]),
                            int(row["threads"]))
                p50 = float(row["p50_ms"])
            except (KeyError, TypeError, ValueError):
                self._warn(f"engine-choice cache {self.path}: a malformed cell of bundle {entry.get('name')!r} "
                           f"is ignored")
                continue
            if p50 > 0 and p50 == p50:
                out.append(Measurement(cell, p50, str(entry.get("source", "cache")), str(entry.get("measured_utc", ""))))
        return out

    def store(self, bundle_key: str, name: str, measurements: Sequence[Measurement], source: str) -> bool:
        """Replace the bundle's cells with ``measurements`` (other bundles are kept); True when written."""
        data = self._read()
        data.update(schema=CACHE_SCHEMA, edgemer=self.version, device_key=self.device[0], device=self.device[1])
        data["bundles"][bundle_key] = {
            "name": name, "source": source, "measured_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cells": [{**asdict(m.cell), "p50_ms": m.p50_ms} for m in measurements]}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".engine-choice-", suffix=".json", dir=self.folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=1, allow_nan=False)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, ValueError) as exc:
            self._warn(f"engine-choice cache {self.path} cannot be written ({exc}); the measurement is used for "
                       f"this run only. Set {CACHE_ENV} to a writable folder to keep it")
            return False
        return True


def measure_cells(bundle: Bundle, cells: Sequence[Cell], providers: Sequence[str] | None = None,
                  max_time_s: float = 0.04, passes: int = 5, progress: Progress | None = stderr_progress,
                  what: str = "first use") -> tuple[list[Measurement], dict[str, str]]:
    """Measure each cell in this process: open its session, warm up, then timed ``Session.run``
    calls on the bundle's inputs (:func:`edgemer.benchmarks.cell.model_inputs`) for at most
    ``max_time_s`` per pass; ``passes`` round-robin passes over all cells, each keeping its lowest
    p50 (ms). A cell listed twice gets two sessions, measured separately.

    Returns one measurement per cell that ran, in the order given, and the cells that could not
    run (label -> why).
    """
    import numpy as np

    from edgemer.backends import open_session
    from edgemer.benchmarks.cell import CellSpec, model_inputs, timed_runs

    feeds, _ = model_inputs(bundle)
    feeds = feeds[:16]
    spec = CellSpec(bundle_path=str(bundle.path), backend="", precision="", threads=1, min_iterations=20,
                    min_time_s=max_time_s / 3, max_time_s=max_time_s, warmup_s=0.0, target_rel_ci=0.03)
    if progress is not None:
        progress(f"measuring {len(cells)} verified engine x precision x threads cells of '{bundle.name}' on this "
                 f"device ({what}, at most {len(cells) * (passes * max_time_s + 0.2):.0f} s)")
    sessions: list[tuple[Cell, Any]] = []
    failed: dict[str, str] = {}
    for cell in cells:
        try:
            session = open_session(bundle, cell.backend, cell.precision, cell.threads,
                                   providers if cell.backend == "onnxruntime" else None)
            for f in feeds[:3]:
                session.run(f)
            sessions.append((cell, session))
        except Exception as exc:  # a file the runtime refuses is not a candidate; say why
            failed[cell.label] = f"{type(exc).__name__}: {str(exc)[:160]}"
    best = [float("inf")] * len(sessions)
    for _ in range(max(1, passes)):
        for i, (cell, session) in enumerate(sessions):
            latencies, _, _ = timed_runs(session.run, feeds, spec)
            best[i] = min(best[i], float(np.median(latencies)))
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return [Measurement(c, p, "first-use", stamp) for (c, _), p in zip(sessions, best)], failed


def bench_measurements(bundle: Bundle, cells: Iterable[Mapping[str, Any]], providers: Sequence[str] | None = None,
                       delegate: str | None = None) -> list[Measurement]:
    """The cells of an ``edgemer bench bundles`` / ``suite`` result (dicts with ``backend``,
    ``precision``, ``threads``, ``model_file``, ``status``, ``latency_ms.p50``) as measurements of
    what ``auto`` can run here, for :func:`remember_measurements`.

    Kept: ``ok`` cells of the bundle's files measured the way ``auto`` opens them: LiteRT without
    a delegate; onnxruntime with the execution providers ``auto`` uses here (``providers``
    resolving to the same list as the default, e.g. ``cpu`` on a machine with CPU only). Cells of
    other engines (a delegate, CUDA where TensorRT is the default) say nothing about the choice.
    """
    from edgemer.backends.onnxruntime_backend import choose_providers

    by_file = {mf.file: mf for mf in bundle.manifest.models.values()}
    ort_ok = True
    if providers:
        try:
            import onnxruntime as ort

            available = ort.get_available_providers()
            ort_ok = (choose_providers(providers, available, strict=True).providers
                      == choose_providers(None, available).providers)
        except Exception:  # onnxruntime missing or a provider that is not here: nothing to remember
            ort_ok = False
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = []
    for c in cells:
        mf = by_file.get(str(c.get("model_file")))
        backend = c.get("backend")
        if c.get("status") != "ok" or mf is None or ENGINE_OF_FORMAT.get(mf.format) != backend:
            continue
        if (backend == "litert" and delegate) or (backend == "onnxruntime" and not ort_ok):
            continue
        try:
            p50 = float(c["latency_ms"]["p50"])
            threads = int(c["threads"])
        except (KeyError, TypeError, ValueError):
            continue
        out.append(Measurement(Cell(mf.key, mf.file, str(backend), mf.precision, threads), p50, "bench", stamp))
    return out


def remember_measurements(bundle: Bundle, measurements: Sequence[Measurement], source: str = "bench",
                          cache_dir: str | Path | None = None, cache: ChoiceCache | None = None) -> bool:
    """Store a benchmark's p50s of this device in the engine-choice cache, so that ``auto`` uses them
    (``edgemer bench engines``, ``bundles`` and ``suite`` call it; the last two through
    :func:`bench_measurements`). Only cells of files the bundle lists are kept; they replace what
    the cache held for the bundle. Returns whether the cache was written (False also when nothing
    was kept)."""
    known = {mf.file for mf in bundle.manifest.models.values()}
    kept = [m for m in measurements if m.cell.file in known and m.p50_ms > 0]
    if not kept:
        return False
    cache = cache or ChoiceCache(cache_dir)
    return cache.store(bundle_hash(bundle), bundle.name, kept, source)


def choose_engine(bundle: Bundle, backend: str = AUTO, precision: str = AUTO, threads: int | None = None,
                  providers: Sequence[str] | None = None, cache: ChoiceCache | None = None,
                  cache_dir: str | Path | None = None, measure: bool = True,
                  progress: Progress | None = stderr_progress, litert: bool | None = None,
                  thread_options: Sequence[int] | None = None) -> EngineChoice:
    """Decide how ``bundle`` runs here (module docstring: the rule).

    backend: ``auto``, ``onnxruntime`` or ``litert``. precision: ``auto``, ``int8`` or ``fp32``.
    threads: inference threads, None = chosen (1 when backend and precision are both pinned).
    providers: onnxruntime execution providers used for the onnxruntime cells.
    cache / cache_dir: where measurements are kept (default :func:`default_cache_dir`).
    measure: measure on first use when the cache has nothing for this bundle and device.
    progress: called with progress lines of a first-use measurement (None: silent).
    litert: whether LiteRT may be used (None: when it is installed). thread_options: thread
    counts to try (None: :func:`auto_threads`).
    """
    if backend not in BACKEND_CHOICES:
        raise ConfigError(f"backend must be one of {', '.join(BACKEND_CHOICES)}, got {backend!r}")
    if precision not in PRECISION_CHOICES:
        raise ConfigError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    models = bundle.manifest.models
    if backend != AUTO and precision != AUTO:
        fmt = "onnx" if backend == "onnxruntime" else "tflite"
        mf = bundle.manifest.model(fmt, precision)  # ManifestError naming the files there are
        eligible, excluded = verified_models(bundle)
        note = "" if mf.key in eligible else f"; NOTE: not verified for this bundle ({excluded.get(mf.key)})"
        return EngineChoice(bundle.name, mf.key, mf.file, backend, precision, threads or 1, "forced",
                            f"pinned by the caller (backend={backend}, precision={precision}){note}",
                            excluded=excluded, bundle_hash=bundle_hash(bundle))
    eligible, excluded = verified_models(bundle)
    cells, skipped = candidate_cells(eligible, backend, precision, threads, litert, thread_options)
    excluded = {**excluded, **skipped}
    pinned = ", ".join(f"{k}={v}" for k, v in (("backend", backend), ("precision", precision)) if v != AUTO)
    if not cells:
        raise BackendUnavailableError(
            f"bundle '{bundle.name}': no verified model file can run here"
            + (f" with {pinned}" if pinned else "") + " ("
            + "; ".join(f"{k}: {why}" for k, why in excluded.items()) + "). Pin --backend and --precision to run an "
            "unverified file, or re-export the bundle")
    key = bundle_hash(bundle)
    cache = cache or ChoiceCache(cache_dir)
    try:
        dev_key = cache.device[0]
    except Exception as exc:  # a fingerprint probe must never stop a run
        log.warning("device fingerprint failed (%s); measuring without the cache", exc)
        dev_key = ""
    wanted = set(cells)
    known = [m for m in (cache.lookup(key) if dev_key else []) if m.cell in wanted]
    cached = bool(known)
    missing = [c for c in cells if c not in {m.cell for m in known}]
    measured_now = False
    if missing and measure and (not known or _untried_files(missing, known)):
        new, failed = measure_cells(bundle, missing, providers, progress=progress)
        excluded.update({label: f"failed to run here: {why}" for label, why in failed.items()})
        if new:
            known = known + new
            measured_now = True
            if dev_key:
                cache.store(key, bundle.name, known, "first-use")
    if not known:
        prior = EnginePreference.from_manifest(bundle.manifest)
        if prior is not None and prior[0].applies_here():
            cell = preferred_cell(cells, prior[0])
            if cell is not None:
                return EngineChoice(
                    bundle.name, cell.model, cell.file, cell.backend, cell.precision, cell.threads, "preset",
                    f"no measurement on this device (first-use measurement off or failed): the bundle's "
                    f"--target {prior[1]} preset prefers {prior[0].label}"
                    + (f" ({prior[0].reason})" if prior[0].reason else ""),
                    excluded=excluded, bundle_hash=key, device_key=dev_key)
        cell = cells[0]
        return EngineChoice(bundle.name, cell.model, cell.file, cell.backend, cell.precision, cell.threads,
                            "default", "no measurement on this device (first-use measurement off or failed): the "
                            "first verified file", excluded=excluded, bundle_hash=key, device_key=dev_key)
    ranked = sorted(known, key=lambda m: (m.p50_ms, m.cell.threads))
    best = pick_fastest(ranked)
    runner_up = next((m for m in ranked if m.cell != best.cell), None)
    if best.source == "first-use" and not cached:
        source, how = "first-use", "measured now (first use, cached)"
    elif best.source == "bench":
        source, how = "bench", f"from 'edgemer bench' on this device ({best.measured_utc[:10]})"
    else:
        source = "cache+first-use" if measured_now else "cache"
        how = f"cached first-use measurement ({best.measured_utc[:10]})"
    reason = (f"fastest verified of {len(ranked)} cells, p50 {best.p50_ms:.3g} ms"
              + (f" (next {runner_up.cell.label} {runner_up.p50_ms:.3g} ms)" if runner_up else "")
              + f", {how}" + (f"; {pinned}" if pinned else "")
              + (f"; not eligible: {', '.join(sorted(excluded))}" if excluded else ""))
    return EngineChoice(bundle.name, best.cell.model, best.cell.file, best.cell.backend, best.cell.precision,
                        best.cell.threads, "fastest-verified", reason, source, best.p50_ms,
                        tuple((m.cell.label, m.p50_ms) for m in ranked), excluded, key, dev_key)


def _untried_files(missing: Sequence[Cell], known: Sequence[Measurement]) -> bool:
    """Whether the cache lacks a whole file (not just a thread count the bench did not run)."""
    files = {m.cell.file for m in known}
    return any(c.file not in files for c in missing)


__all__ = ["AUTO", "BACKEND_CHOICES", "CACHE_ENV", "CACHE_NAME", "Cell", "ChoiceCache", "EngineChoice",
           "EnginePreference", "Measurement", "PRECISION_CHOICES", "THREAD_GAIN", "bench_measurements", "bundle_hash",
           "candidate_cells", "choose_engine", "default_cache_dir", "device_key", "measure_cells", "pick_fastest",
           "preferred_cell", "remember_measurements", "verified_models"]
