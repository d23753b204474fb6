"""Pipelines described in a TOML file (``edgemer run --config pipeline.toml``).

Example (``examples/physio.toml``)::

    [run]
    speed = 20.0            # stream seconds per wall second (simulated/replayed sources);
                            # "max": as fast as the pipeline processes (lockstep, nothing dropped)
    duration_s = 600        # stream seconds; omit to run until Ctrl-C
    # record = "session-rec"  # record raw chunks (never audio/video) for later replay

    [runtime]               # defaults for every bundle
    backend = "auto"        # auto (fastest verified file measured here) | onnxruntime | litert
    precision = "auto"      # auto | int8 | fp32; pin both backend and precision for a fixed deployment
    # threads = 1           # omit with auto: chosen with the engine
    # stale_data_s = 10.0   # a window whose newest sample is older than this counts as missing

    [fusion]
    smoothing = "hmm"       # none | ema | hmm
    stale_s = 30.0

    # [calibration]         # resting phase at the start -> the wearer's baseline
    # duration_s = 120
    # user = "alice"
    # save_to = "alice-baseline.json"   # or load_from = ... to skip the phase

    [[source]]
    spec = "simulated"      # simulated | replay:PATH | any spec `edgemer run --source` takes
    # loop = true           # replayed files (WAV, video, images, recordings) start again at the end
    # duration_s = 60       # this source only (default: [run] duration_s)

    [[bundle]]
    name = "physio-demo"    # shipped name or folder (relative to this file)
    backend = "litert"      # optional per-bundle override: backend, precision, threads, providers
    # analysis_fps = 2      # face bundles (also face_detector, face_selection); audio bundles: vad = "energy"

    [[sink]]
    type = "jsonl"          # jsonl | lsl | terminal
    path = "estimates.jsonl"
    max_bytes = 10_000_000

Every key is checked: an unknown key or a value of the wrong type raises
:class:`~edgemer.errors.ConfigError` naming the key and its line in the file.

Values given on the command line replace the file's (``overrides`` of
:func:`load_pipeline_file`, see :data:`OVERRIDABLE`): a key is replaced wherever the file
sets it, e.g. ``duration_s`` in ``[run]`` and in every ``[[source]]``, ``backend`` in
``[runtime]`` and in every ``[[bundle]]``; :attr:`PipelineFile.overridden` lists them with
the file's values.
``examples/full.toml`` runs all three modalities from replay files shipped with edgemer.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edgemer.calibration import CalibrationConfig
from edgemer.clock import parse_speed
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
    "run": {"speed": (int, float, str), "duration_s": (int, float), "record": str, "seed": int},
    "runtime": {"backend": str, "precision": str, "threads": int, "providers": list, "max_wait_s": (int, float),
                "min_wait_wall_s": (int, float), "buffer_s": (int, float), "queue_size": int,
                "stale_data_s": (int, float), "opencv_threads": int},
    "calibration": {"duration_s": (int, float), "user": str, "save_to": str, "load_from": str},
    "fusion": {"smoothing": str, "stale_s": (int, float), "ema_alpha": (int, float), "hmm_stay": (int, float),
               "weights": dict},
}
_ARRAYS = {
    "source": {"spec": str, "seed": int, "loop": bool, "duration_s": (int, float)},
    "bundle": {"name": str, "backend": str, "precision": str, "threads": int, "providers": list,
               "analysis_fps": (int, float), "face_detector": str, "face_selection": str, "vad": str},
    "sink": {"type": str, "path": str, "max_bytes": int, "backups": int, "name": str, "labels": list},
}

OVERRIDABLE = {
    "run": ("speed", "duration_s", "seed", "record"),
    "runtime": ("backend", "precision", "threads", "providers"),
    "calibration": ("duration_s", "user", "save_to", "load_from"),
    "bundle": ("analysis_fps", "face_detector", "face_selection", "vad"),
}
"""Keys that ``overrides`` may replace, per section. A ``[run]`` or ``[runtime]`` key also
replaces the same key in every ``[[source]]`` / ``[[bundle]]`` table; a ``calibration``
override replaces the whole ``[calibration]`` table; ``bundle`` keys apply to the bundles of
their modality (face: analysis_fps, face_detector, face_selection; audio: vad), and to none
is an error."""

_BUNDLE_KEY_MODALITY = {"analysis_fps": "face", "face_detector": "face", "face_selection": "face", "vad": "audio"}


MAX_FILE_BYTES = 1 << 20
"""Largest pipeline file read (1 MiB)."""


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
    overridden: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    """``section.key`` -> (value given on the command line, the file's value or None)."""

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


def _line_of(text: str, key: str, section: str | None = None, index: int = 0) -> int | None:
    """Line number (1-based) of ``key = ...``; inside ``[section]`` or the ``index``-th
    ``[[section]]`` when given (a key such as ``duration_s`` may appear in several tables)."""
    lines = text.splitlines()
    begin, end = 0, len(lines)
    if section is not None:
        header = re.compile(rf"\s*\[\[?\s*{re.escape(section)}\s*\]\]?")
        starts = [i for i, line in enumerate(lines) if header.match(line)]
        if index < len(starts):
            begin = starts[index] + 1
            nxt = [i for i, line in enumerate(lines) if i >= begin and re.match(r"\s*\[", line)]
            end = nxt[0] if nxt else len(lines)
    for i in range(begin, end):
        if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
            return i + 1
    return None


def _check_table(path: Path, text: str, where: str, table: Mapping[str, Any], allowed: Mapping[str, Any],
                 index: int = 0) -> None:
    section = where.strip("[]")
    for key, value in table.items():
        line = _line_of(text, key, section, index)
        at = f"{path}:{line}" if line else str(path)
        if key not in allowed:
            raise ConfigError(f"{at}: unknown key '{key}' in [{where}]; allowed: {', '.join(sorted(allowed))}")
        types = allowed[key]
        if (isinstance(value, bool) and types is not bool) or not isinstance(value, types):
            want = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{at}: '{key}' in [{where}] must be {want}, got {type(value).__name__} {value!r}")


def _configured_bundle(path: Path, ref: str, table: Mapping[str, Any]):
    """The bundle reference, or the loaded bundle with its run-time options (face analysis
    rate and detector, audio voice-activity gate) applied, as ``edgemer run`` does."""
    face_keys = ("analysis_fps", "face_detector", "face_selection")
    if not any(k in table for k in (*face_keys, "vad")):
        return ref
    from edgemer.bundle import load_bundle

    bundle = load_bundle(ref)
    kind = bundle.manifest.modality
    if any(k in table for k in face_keys):
        if kind != "face":
            raise ConfigError(f"{path}: {'/'.join(repr(k) for k in face_keys)} apply to face bundles; "
                              f"'{bundle.name}' is a {kind} bundle")
        from edgemer.frontends.face import configure_face_bundle

        bundle = configure_face_bundle(bundle, analysis_fps=table.get("analysis_fps"),
                                       detector=table.get("face_detector"), selection=table.get("face_selection"))
    if "vad" in table:
        if kind != "audio":
            raise ConfigError(f"{path}: 'vad' applies to audio bundles; '{bundle.name}' is a {kind} bundle")
        from edgemer.frontends.audio import configure_audio_bundle

        bundle = configure_audio_bundle(bundle, vad=table["vad"])
    return bundle


def _apply_overrides(path: Path, data: dict[str, Any], overrides: Mapping[str, Mapping[str, Any]]
                     ) -> dict[str, tuple[Any, Any]]:
    """Replace the file's values in ``data`` (parsed TOML) by ``overrides`` (see
    :data:`OVERRIDABLE`); returns ``section.key`` -> (new value, file value or None).
    Bundle keys are applied later, per bundle, by :func:`load_pipeline_file`."""
    done: dict[str, tuple[Any, Any]] = {}
    for section, values in overrides.items():
        allowed = OVERRIDABLE.get(section)
        if allowed is None:
            raise ConfigError(f"cannot override section '{section}' of {path}; sections: {', '.join(OVERRIDABLE)}")
        for key in values:
            if key not in allowed:
                raise ConfigError(f"cannot override '{key}' in [{section}] of {path}; keys: {', '.join(allowed)}")
    for section in ("run", "runtime"):
        table = data.setdefault(section, {})
        per_item = data.get("source" if section == "run" else "bundle", [])
        for key, value in overrides.get(section, {}).items():
            old = table.get(key)
            items = [t.pop(key) for t in per_item if key in t]  # the command line wins over per-item keys too
            done[f"{section}.{key}"] = (value, old if old is not None or not items else items[0])
            table[key] = value
    if overrides.get("calibration"):
        old = data.get("calibration")
        data["calibration"] = dict(overrides["calibration"])
        done["calibration"] = (data["calibration"], old)
    return done


def load_pipeline_file(path: str | Path, speed: float | None = None, duration_s: float | None = None,
                       loop: bool | None = None,
                       overrides: Mapping[str, Mapping[str, Any]] | None = None) -> PipelineFile:
    """Parse and validate a pipeline TOML file; sources and bundles are created (not started).

    ``overrides`` replaces the file's values: ``{section: {key: value}}`` with the keys of
    :data:`OVERRIDABLE`, as TOML would give them (paths absolute or relative to the working
    folder); ``edgemer run --config`` passes every option given on its command line this way.
    ``speed`` and ``duration_s`` (stream seconds; every source's) are shorthands for
    ``{"run": {"speed": ..., "duration_s": ...}}``; ``loop`` sets every replayed source's
    ``loop`` (benchmarks use them to run the same file longer or faster).
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes, more than {MAX_FILE_BYTES}; a pipeline file is "
                              f"a few hundred bytes, is this the right file?")
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the pipeline file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the pipeline file as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    except RecursionError:
        raise ConfigError(f"{path}: arrays or tables nested too deep to read; this is not a pipeline file") from None
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
        for i, t in enumerate(tables):
            _check_table(path, text, f"[{name}]", t, allowed, index=i)
    given = {section: dict(values) for section, values in (overrides or {}).items() if values}
    if speed is not None:
        given.setdefault("run", {})["speed"] = speed
    if duration_s is not None:
        given.setdefault("run", {})["duration_s"] = duration_s
    overridden = _apply_overrides(path, data, given)
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
    speed = parse_speed(run.get("speed", 1.0))
    duration = run.get("duration_s")
    base = path.parent

    def local(p: str) -> str:
        """A relative replay path is looked up next to this file first (then as given: the
        working folder, or a replay example shipped with edgemer such as ``physio-example``)."""
        head, sep, rest = p.partition(":")
        if sep and head == "replay" and not Path(rest.split(":")[0]).is_absolute():
            target = rest.split(":")[0]  # without a WESAD subject (":S5")
            if (base / (target.rpartition("@")[0] if "@" in target else target)).exists():  # without "@FPS"
                return f"replay:{base / rest}"
        return p

    sources = []
    for index, t in enumerate(data["source"]):
        if "spec" not in t:
            raise ConfigError(f"{path}: [[source]] number {index + 1} needs 'spec', e.g. spec = \"simulated\"")
        src = source_from_spec(local(t["spec"]), speed=speed, duration_s=t.get("duration_s", duration),
                               seed=t.get("seed", run.get("seed", 0)))
        if "loop" in t:
            if not hasattr(src, "loop"):
                raise ConfigError(f"{path}:{_line_of(text, 'loop', 'source', index) or ''} source '{t['spec']}' cannot loop; "
                                  f"'loop' applies to replayed files (WAV, video, image folder, recording)")
            src.loop = t["loop"]
        if loop is not None and hasattr(src, "loop"):
            src.loop = loop
        sources.append(src)
    bundle_keys = dict(given.get("bundle", {}))
    applied: set[str] = set()
    bundles = []
    from edgemer.frontends.face import default_face_selection

    for t in data["bundle"]:
        name = t.get("name")
        if not name:
            raise ConfigError(f"{path}: a [[bundle]] needs 'name' (shipped name or folder)")
        ref = str(base / name) if (base / name).is_dir() else name
        if "face_selection" not in t and "face_selection" not in bundle_keys:
            selection = default_face_selection(ref, sources)  # a camera or video file: follow the face
            if selection is not None:
                t = {**t, "face_selection": selection}
        if bundle_keys:
            from edgemer.bundle import load_bundle

            kind = load_bundle(ref, verify=False).manifest.modality
            for key, value in bundle_keys.items():
                if _BUNDLE_KEY_MODALITY[key] == kind:
                    overridden.setdefault(f"bundle.{key}", (value, t.get(key)))
                    t = {**t, key: value}
                    applied.add(key)
        bundles.append(BundleSpec(_configured_bundle(path, ref, t), backend=t.get("backend"),
                                  precision=t.get("precision"), threads=t.get("threads"),
                                  providers=tuple(t["providers"]) if "providers" in t else None))
    for key in bundle_keys:
        if key not in applied:
            names = ", ".join(str(t.get("name")) for t in data["bundle"])
            raise ConfigError(f"{path}: '{key}' given on the command line (--{key.replace('_', '-')}) applies to "
                              f"{_BUNDLE_KEY_MODALITY[key]} bundles, and this file runs none ({names})")
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
                        calibration=calibration, overridden=overridden)
