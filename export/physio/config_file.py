"""``edgemer export physio --config FILE``: export options from a JSON file, e.g. the ``best.json``
that ``edgemer study tune`` writes (standard library only).

The file holds :class:`~edgemer.export.physio.config.PhysioExportConfig` field names
(``epochs``, ``lr``, ``physics_weight``, ``window_s``, ``train_hop_s``, ...). An option
given on the command line with a value other than its default wins over the file.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgemer.errors import ConfigError
from edgemer.export.physio.config import COMMAND_FLAGS, PhysioExportConfig


def _attribute(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's options, checked: a JSON object of known PhysioExportConfig fields.

    Raises
    ------
    ConfigError: the file is missing, not JSON, not an object or names an unknown field
        (the message names the file and the field).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--config {path}: cannot read a JSON object ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of export options, got {type(data).__name__}")
    unknown = sorted(set(data) - set(COMMAND_FLAGS))
    if unknown:
        raise ConfigError(f"--config {path}: unknown option(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(COMMAND_FLAGS))}")
    return data


def apply_config_file(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the values of ``args.config`` (when given) where the command line kept the default."""
    path = getattr(args, "config", None)
    if path is None:
        return args
    defaults = PhysioExportConfig()
    merged = argparse.Namespace(**vars(args))
    for name, value in read_config_file(path).items():
        if name == "tflite":  # switched off by --no-tflite
            if not args.no_tflite:
                merged.no_tflite = not bool(value)
            continue
        attr = _attribute(COMMAND_FLAGS[name])
        if getattr(args, attr) == getattr(defaults, name):
            merged.__dict__[attr] = type(getattr(defaults, name))(value)
    return merged
