"""Write a folder all at once: build it in a temporary sibling, then rename it into place.

A run that fails (or is interrupted) leaves neither a half-written output folder nor
its temporary sibling behind. Used by ``edgemer data synth-wesad`` and ``edgemer export``.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from edgemer.errors import EdgemerError


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


@contextlib.contextmanager
def atomic_directory(out_dir: Path, overwrite: bool, looks_like_ours: Callable[[Path], bool], what: str,
                     error: type[EdgemerError], hint: str) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``out_dir``; on success it becomes ``out_dir``.

    Parameters
    ----------
    out_dir: the final folder. It may be missing or empty; a non-empty one is replaced
        only when ``overwrite`` is true *and* ``looks_like_ours(out_dir)`` says it holds
        what this command writes (so ``--overwrite`` can never wipe an unrelated folder).
    what: the thing being written, for messages (``"synthetic WESAD folder"``).
    error: the :class:`EdgemerError` subclass to raise on refusal.
    hint: the option that allows overwriting, for the message (``"--overwrite"``).

    Raises
    ------
    ``error``: ``out_dir`` is a file, or a non-empty folder that may not be replaced.
    """
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise error(f"{out_dir}: exists and is not a folder; choose another output path for the {what}")
    if out_dir.is_dir() and not _is_empty_dir(out_dir):
        if not overwrite:
            raise error(f"{out_dir}: folder exists and is not empty; choose a new folder for the {what}, "
                        f"or pass {hint} to replace it")
        if not looks_like_ours(out_dir):
            raise error(f"{out_dir}: folder is not empty and does not look like a {what}; refusing to replace it "
                        f"even with {hint}. Choose a new folder.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        if out_dir.exists():
            # Move the old folder aside first, so a failed rename can never lose both.
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            old.rmdir()
            out_dir.rename(old)
            try:
                tmp.rename(out_dir)
            except BaseException:
                old.rename(out_dir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
