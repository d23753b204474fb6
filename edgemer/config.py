"""Pipelines described in a TOML file (``edgemer run --config pipeline.toml``).

Example (``examples/physio.toml``)::

    [run]
    speed = 20.0            # stream seconds per wall second (simulated/replayed sources)
    duration_s = 600        # stream seconds; omit to run until Ctrl-C
    # record = "session-rec"  # record raw chunks (never audio/video) for later replay

    [runtime]               # defaults for every bundle
    backend = "onnxruntime"
    precision = "int8"
    threads = 1

    [fusion]
    smoothing = "hmm"       # none | ema | hmm
    stale_s = 30.0

    # [calibration]         # resting phase at the start -> the wearer's baseline
    # duration_s = 120
    # user = "alice"
    # save_to = "alice-baseline.json"   # or load_from = ... to skip the phase

    [[source]]
    spec = "simulated"      # simulated | replay:PATH | any spec `edgemer run --source` takes

    [[bundle]]
    name = "physio-demo"    # shipped name or folder (relative to this file)
    backend = "litert"      # optional per-bundle override: backend, precision, threads, providers

    [[sink]]
    type = "jsonl"          # jsonl | lsl | terminal
    path = "estimates.jsonl"
    max_bytes = 10_000_000

Every key is checked: an unknown key or a value of the wrong type raises
:class:`~edgemer.errors.ConfigError` naming the key and its line in the file.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from edgemer.calibration import CalibrationConfig
from edgemer.errors import ConfigError
from edgemer.fusion import FusionConfig
from edgemer.pipeline import BundleSpec, Pipeline, PipelineConfig
from edgemer.sinks import JsonlSink, LslSink, Sink, TerminalSink
from edgemer.sources import Source, source_from_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6): the tomli backport, installed by setup.cfg
    import tomli as tomllib

_SECTIONS = {
    "run": {"speed": (int, float), "duration_s": (int, float), "record": str, "seed": int},
    "runtime": {"backend": str, "precision": str, "threads": int, "providers": list, "max_wait_s": (int, float),
                "min_wait_wall_s": (int, float), "buffer_s": (int, float), "queue_size": int},
    "calibration": {"duration_s": (int, float), "user": str, "save_to": str, "load_from": str},
    "fusion": {"smoothing": str, "stale_s": (int, float), "ema_alpha": (int, float), "hmm_stay": (int, float),
               "weights": dict},
}
_ARRAYS = {
    "source": {"spec": str, "seed": int},
    "bundle": {"name": str, "backend": str, "precision": str, "threads": int, "providers": list},
    "sink": {"type": str, "path": str, "max_bytes": int, "backups": int, "name": str, "labels": list},
}


@dataclass
class PipelineFile:
    """A parsed pipeline file: everything :meth:`build` needs to make a :class:`Pipeline`."""

    path: Path
    sources: list[Source]
    bundles: list[BundleSpec]
    config: PipelineConfig
    sink_tables: list[dict[str, Any]]
    duration_s: float | None
    record: Path | None
    calibration: CalibrationConfig | None = None

    def build(self, extra_sinks: list[Sink] | None = None) -> Pipeline:
        pipe = Pipeline(self.sources, self.bundles, config=self.config, record=self.record,
                        calibration=self.calibration)
        labels = tuple(dict.fromkeys(lab for r in pipe.runners for lab in r.bundle.manifest.labels))
        sinks: list[Sink] = [self._make_sink(t, labels) for t in self.sink_tables] + list(extra_sinks or [])
        pipe.sinks.extend(sinks)
        return pipe

    def _make_sink(self, table: Mapping[str, Any], labels: tuple[str, ...]) -> Sink:
        kind = table.get("type")
        if kind == "jsonl":
            if "path" not in table:
                raise ConfigError(f"{self.path}: a [[sink]] of type 'jsonl' needs 'path'")
            return JsonlSink(self._resolve(table["path"]), max_bytes=table.get("max_bytes"),
                             backups=table.get("backups", 5))
        if kind == "lsl":
            return LslSink(tuple(table.get("labels", labels)), name=table.get("name", "edgemer"))
        if kind == "terminal":
            return TerminalSink()
        raise ConfigError(f"{self.path}: [[sink]] type must be 'jsonl', 'lsl' or 'terminal', got {kind!r}")

    def _resolve(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.path.parent / q


def _line_of(text: str, key: str) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            return i
    return None


def _check_table(path: Path, text: str, where: str, table: Mapping[str, Any], allowed: Mapping[str, Any]) -> None:
    for key, value in table.items():
        line = _line_of(text, key)
        at = f"{path}:{line}" if line else str(path)
        if key not in allowed:
            raise ConfigError(f"{at}: unknown key '{key}' in [{where}]; allowed: {', '.join(sorted(allowed))}")
        types = allowed[key]
        if isinstance(value, bool) or not isinstance(value, types):
            want = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{at}: '{key}' in [{where}] must be {want}, got {type(value).__name__} {value!r}")


def load_pipeline_file(path: str | Path) -> PipelineFile:
    """Parse and validate a pipeline TOML file; sources and bundles are created (not started)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the pipeline file ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    for key in data:
        if key not in _SECTIONS and key not in _ARRAYS:
            raise ConfigError(f"{path}:{_line_of(text, key) or ''} unknown section '{key}'; sections: "
                              f"{', '.join(sorted(list(_SECTIONS) + [f'[[{k}]]' for k in _ARRAYS]))}")
    for name, allowed in _SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: '{name}' must be a table [{name}]")
        _check_table(path, text, name, table, allowed)
    for name, allowed in _ARRAYS.items():
        tables = data.get(name, [])
        if not isinstance(tables, list):
            raise ConfigError(f"{path}: '{name}' must be an array of tables [[{name}]]")
        for t in tables:
            _check_table(path, text, f"[{name}]", t, allowed)
    run = data.get("run", {})
    runtime = dict(data.get("runtime", {}))
    if "providers" in runtime:
        runtime["providers"] = tuple(runtime["providers"])
    fusion = FusionConfig(**data.get("fusion", {}))
    config = PipelineConfig(fusion=fusion, **runtime)
    if not data.get("source"):
        raise ConfigError(f"{path}: no [[source]]; add one, e.g. [[source]] spec = \"simulated\"")
    if not data.get("bundle"):
        raise ConfigError(f"{path}: no [[bundle]]; add one, e.g. [[bundle]] name = \"physio-demo\"")
    speed = float(run.get("speed", 1.0))
    duration = run.get("duration_s")
    base = path.parent

    def local(p: str) -> str:
        head, sep, rest = p.partition(":")
        if sep and head == "replay" and not Path(rest.split(":")[0]).is_absolute():
            return f"replay:{base / rest}"
        return p

    sources = [source_from_spec(local(t["spec"]), speed=speed, duration_s=duration,
                                seed=t.get("seed", run.get("seed", 0))) for t in data["source"]]
    bundles = []
    for t in data["bundle"]:
        name = t.get("name")
        if not name:
            raise ConfigError(f"{path}: a [[bundle]] needs 'name' (shipped name or folder)")
        ref = str(base / name) if (base / name).is_dir() else name
        bundles.append(BundleSpec(ref, backend=t.get("backend"), precision=t.get("precision"),
                                  threads=t.get("threads"),
                                  providers=tuple(t["providers"]) if "providers" in t else None))
    record = base / run["record"] if "record" in run else None
    calibration = None
    if "calibration" in data:
        c = dict(data["calibration"])
        for key in ("save_to", "load_from"):
            if key in c:
                c[key] = base / c[key]
        calibration = CalibrationConfig(**c)
    return PipelineFile(path=path, sources=sources, bundles=bundles, config=config,
                        sink_tables=list(data.get("sink", [])), duration_s=duration, record=record,
                        calibration=calibration)
