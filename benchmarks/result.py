"""The one result schema every ``edgemer bench KIND`` writes: build, check, write.

Every result is a JSON object that starts with the same fields (``benchmarks/SCHEMA.md``)::

    {"schema": "edgemer.bench/2", "kind": "audio", "created_utc": "2026-12-02T18:00:00+00:00",
     "device": {...device fingerprint...}, "settings": {...how it was measured...},
     "targets": [{"id", "description", "value", "threshold", "met", "unit"}, ...],
     ...the kind's own payload...}

:func:`make_result` builds that head, :func:`target` one ``targets[]`` row,
:func:`check_result` says what a result lacks, and :func:`write_json` is the one writer
(strict JSON, a dated file name inside a folder). Only the standard library is imported at
module level (numpy only inside :func:`strict_json`), so the CLI stays fast.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from edgemer.benchmarks import SCHEMA

COMMON_FIELDS = ("schema", "kind", "created_utc", "device", "settings", "targets")
"""The fields every result starts with, in this order."""

TARGET_FIELDS = ("id", "description", "value", "threshold", "met", "unit")
"""The fields of every ``targets[]`` row (a row may carry more, e.g. ``significant``)."""


def now_utc() -> str:
    """The current UTC time as ISO 8601 to the second, e.g. ``2026-12-02T18:00:00+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def target(tid: str, description: str, value: float | int | None, threshold: str, met: bool | None,
           unit: str | None, **extra: Any) -> dict[str, Any]:
    """One ``targets[]`` row.

    Parameters
    ----------
    tid: the target's name, a stable identifier (``pipeline_overhead``).
    description: the target in words.
    value: the measured value in ``unit``; None when not measured.
    threshold: the goal as text, e.g. ``"<= 0.1"``, ``">= 20"``.
    met: whether the value meets the goal; None when not measured.
    unit: unit of ``value`` and ``threshold``: ``ratio``, ``fraction``, ``ms``, ``s``, ``MiB``, ``ppm``,
        ``dB``, ``count``, ``r`` (a correlation coefficient); None only in results migrated from schema 1.
    extra: further fields of this target (documented in SCHEMA.md), e.g. ``significant``.
    """
    return {"id": tid, "description": description, "value": value, "threshold": threshold,
            "met": None if met is None else bool(met), "unit": unit, **extra}


def make_result(kind: str, settings: Mapping[str, Any], targets: list[dict[str, Any]] | None = None,
                device: Mapping[str, Any] | None = None, created_utc: str | None = None,
                **payload: Any) -> dict[str, Any]:
    """A result of ``kind`` with the common head (device fingerprinted now unless given) and ``payload``."""
    if device is None:
        from edgemer.benchmarks.fingerprint import device_fingerprint

        device = device_fingerprint()
    return {"schema": SCHEMA, "kind": kind, "created_utc": created_utc or now_utc(), "device": dict(device),
            "settings": dict(settings), "targets": list(targets or []), **payload}


def check_result(result: Mapping[str, Any]) -> list[str]:
    """What ``result`` lacks of the common schema, one message per problem (empty: it conforms)."""
    problems = [f"no '{f}' field" for f in COMMON_FIELDS if f not in result]
    if problems:
        return problems
    if not str(result["schema"]).startswith("edgemer.bench/"):
        problems.append(f"schema {result['schema']!r} is not edgemer.bench/<number>")
    if not isinstance(result["kind"], str) or not result["kind"]:
        problems.append("'kind' is not a non-empty string")
    try:
        datetime.fromisoformat(str(result["created_utc"]))
    except ValueError:
        problems.append(f"created_utc {result['created_utc']!r} is not an ISO 8601 time")
    if not isinstance(result["device"], Mapping) or not result["device"].get("device_id"):
        problems.append("'device' is not a fingerprint with a device_id")
    if not isinstance(result["settings"], Mapping):
        problems.append("'settings' is not an object")
    if not isinstance(result["targets"], list):
        return problems + ["'targets' is not a list"]
    for i, t in enumerate(result["targets"]):
        missing = [f for f in TARGET_FIELDS if not isinstance(t, Mapping) or f not in t]
        if missing:
            problems.append(f"targets[{i}] lacks {missing}")
        elif t["met"] not in (True, False, None):
            problems.append(f"targets[{i}] ({t['id']}): 'met' is {t['met']!r}, not true, false or null")
    return problems


def strict_json(x: Any) -> Any:
    """``x`` with NaN and infinities as None and numpy scalars as Python numbers (strict JSON, as SCHEMA.md asks)."""
    import numpy as np

    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def result_filename(result: Mapping[str, Any]) -> str:
    """``<device_id>_<name>_<YYYYmmddTHHMMSS>.json``: ``name`` is the bundle for a ``bundles`` result,
    ``suite-<suite>`` for a suite, else the kind (``face``, ``bridge``, ...)."""
    stamp = str(result["created_utc"]).replace("-", "").replace(":", "").split("+")[0]
    if result.get("kind") == "suite":
        name = f"suite-{result.get('suite', 'standard')}"
    elif result.get("kind") == "bundles":
        name = result["bundle"]["name"]
    else:
        name = result["kind"]
    return f"{result['device']['device_id']}_{name}_{stamp}.json"


def write_json(result: Mapping[str, Any], dest: Path) -> Path:
    """Write ``result`` as strict JSON to ``dest`` (a ``.json`` file) or into the folder ``dest`` under
    :func:`result_filename`; returns the path.

    Raises
    ------
    ResultSchemaError: ``result`` does not follow the common schema (:func:`check_result`), which is a
        bug of the benchmark that built it.
    """
    from edgemer.errors import ResultSchemaError

    result = strict_json(dict(result))
    problems = check_result(result)
    if problems:
        raise ResultSchemaError(f"benchmark result of kind {result.get('kind')!r} does not follow "
                                f"benchmarks/SCHEMA.md: {'; '.join(problems)}")
    dest = Path(dest)
    is_folder = dest.is_dir() or dest.suffix.lower() != ".json"
    path = dest / result_filename(result) if is_folder else dest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path
