"""MkDocs hook: a view of edgemer's import namespace for the API reference.

edgemer maps four top-level folders into one import namespace (``edgemer``,
``edgemer.export`` = ``export/``, ``edgemer.firmware_bridge`` = ``firmware_bridge/``,
``edgemer.benchmarks`` = ``benchmarks/``; see setup.cfg ``package_dir``). mkdocstrings
reads sources statically and only follows the top-level mapping of an editable install,
so this hook builds ``build/api-src/edgemer/`` out of symlinks that lay the four folders
out as they are imported, and mkdocs.yml points the Python handler at it.
"""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VIEW = REPO / "build" / "api-src" / "edgemer"
MAPPED = {"export": "export", "firmware_bridge": "firmware_bridge", "benchmarks": "benchmarks"}


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def on_startup(command: str, dirty: bool) -> None:
    """Lay out the symlink view before mkdocstrings looks for modules."""
    VIEW.mkdir(parents=True, exist_ok=True)
    wanted = {entry.name: entry for entry in (REPO / "edgemer").iterdir() if entry.name != "__pycache__"}
    wanted.update({name: REPO / folder for name, folder in MAPPED.items()})
    for stale in VIEW.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for name, target in wanted.items():
        _link(VIEW / name, target)
