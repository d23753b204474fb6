"""Progress bars: tqdm when it is installed and wanted, otherwise nothing."""
from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator


class _NoBar:
    """Stands in for a tqdm bar when progress is off: same calls, no output."""

    def __init__(self, iterable: Iterable[Any] | None) -> None:
        self._iterable = iterable if iterable is not None else ()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._iterable)

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(iterable: Iterable[Any] | None = None, enabled: bool = True, **kwargs: Any) -> Any:
    """A ``tqdm`` bar over ``iterable`` (keyword options passed on), or a silent stand-in."""
    if enabled:
        with contextlib.suppress(ImportError):
            from tqdm.auto import tqdm

            return tqdm(iterable, **kwargs)
    return _NoBar(iterable)
