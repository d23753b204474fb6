"""Reading WESAD-layout subject files safely.

WESAD (Schmidt et al., 2018) ships one pickle per subject, ``DIR/S2/S2.pkl``::

    {"subject": "S2",
     "signal": {"wrist": {"ACC": [n, 3] 32 Hz (1/64 g), "BVP": [n, 1] 64 Hz,
                          "EDA": [n, 1] 4 Hz (µS), "TEMP": [n, 1] 4 Hz (°C)},
                "chest": {"ACC", "ECG", "EMG", "EDA", "Temp", "Resp": [n, k] 700 Hz}},
     "label": [n] 700 Hz, codes 0-7}

Pickles can execute code when loaded, so user files are never read with a bare
``pickle.load``: :class:`RestrictedUnpickler` admits only numpy arrays, numpy
scalars/dtypes and plain containers, and refuses anything else before it runs. Sizes a
pickle declares never drive an allocation: reads are clamped to the bytes left in the
file, the admitted constructors that allocate (``bytearray(n)``, numpy's
``_reconstruct(shape)``) refuse more than :data:`MAX_ELEMENTS` elements, and the memo is
a dict (the pure-Python unpickler), so a memo index of 10^8 costs nothing (CPython's C
unpickler allocates an array of that many slots).
"""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemer.errors import DatasetError, UnsafePickleError

LABEL_RATE_HZ = 700.0
MAX_ELEMENTS = 1 << 20
"""Most elements a constructor call in a pickle may ask for (``bytearray(n)``, numpy's
``_reconstruct(cls, shape, dtype)``). numpy's own pickles ask for 0 and carry the data as
bytes, whose size the file bounds."""
WRIST_KEYS = {"eda": "EDA", "bvp": "BVP", "temp": "TEMP", "acc": "ACC"}
"""edgemer stream name -> WESAD wrist key."""

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "bytearray"), ("builtins", "complex"),
    ("__builtin__", "dict"), ("__builtin__", "list"), ("__builtin__", "set"), ("__builtin__", "frozenset"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
}


def _bounded(name: str, original: Any) -> Any:
    """``original`` wrapped so that an absurd size argument is refused before it allocates."""

    def checked(*args: Any) -> Any:
        if name == "bytearray" and args and isinstance(args[0], int) and args[0] > MAX_ELEMENTS:
            raise UnsafePickleError(f"the pickle asks for a bytearray of {args[0]} bytes; refused")
        if name == "_reconstruct" and len(args) > 1:
            shape = args[1] if isinstance(args[1], tuple) else (args[1],)
            if not all(isinstance(d, int) and 0 <= d <= MAX_ELEMENTS for d in shape) or \
                    np.prod([float(d) for d in shape]) > MAX_ELEMENTS:
                raise UnsafePickleError(f"the pickle asks for an array of shape {str(shape)[:80]}; refused")
        if name == "encode" and (len(args) < 2 or str(args[1]).lower().replace("-", "") not in ("latin1", "utf8")):
            raise UnsafePickleError(f"the pickle asks for the codec {str(args[1:2])[:40]}; only latin1 is used "
                                    f"by numpy pickles, refused")
        return original(*args)

    return checked


class _ClampedFile:
    """A binary file whose ``read(n)`` never asks for more than the bytes left, so a length
    field in the pickle cannot make the unpickler allocate beyond the file's size."""

    def __init__(self, f: Any, size: int) -> None:
        self._f, self._size = f, size

    def read(self, n: int = -1) -> bytes:
        left = max(0, self._size - self._f.tell())
        return self._f.read(left if n is None or n < 0 else min(n, left))

    def readinto(self, buf: Any) -> int:
        return self._f.readinto(buf)

    def readline(self, limit: int = -1) -> bytes:
        return self._f.readline(limit)

    def peek(self, n: int = 0) -> bytes:
        return self._f.peek(n)


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its memo is a dict
    """An unpickler that resolves only the globals numpy arrays and plain containers need."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            found = super().find_class(module, name)
            return _bounded(name, found) if name in ("bytearray", "_reconstruct", "encode") else found
        raise UnsafePickleError(
            f"the pickle asks for '{module}.{name}', which is not a numpy array or plain container; "
            f"refused without running it. Only WESAD-style data pickles are accepted."
        )


def safe_load_pickle(path: Path) -> Any:
    """Load a pickle with :class:`RestrictedUnpickler` (``encoding='latin1'``, as WESAD needs)."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(_ClampedFile(f, path.stat().st_size), encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    except Exception as exc:  # noqa: BLE001 - the pure-Python unpickler fails on damaged data with struct.error,
        # KeyError (memo), IndexError (stack), UnpicklingError, ...: all mean "not a readable pickle"
        raise DatasetError(f"{path}: not a readable WESAD pickle ({type(exc).__name__}: {str(exc)[:160]}); "
                           f"the file is truncated or of another format, copy it again") from exc


@dataclass(frozen=True)
class WesadSubject:
    """One subject's wrist signals and labels.

    ``wrist`` maps edgemer stream names (eda, bvp, temp, acc) to float32 ``[n, channels]``
    arrays at 4, 64, 4 and 32 Hz; ``label`` is the 700 Hz WESAD label array (int).
    """

    subject: str
    wrist: dict[str, np.ndarray]
    label: np.ndarray
    path: Path

    @property
    def duration_s(self) -> float:
        return min(self.wrist["eda"].shape[0] / 4.0, self.label.shape[0] / LABEL_RATE_HZ)

    def labels_at(self, rate_hz: float) -> np.ndarray:
        """The label array resampled (nearest sample) to ``rate_hz``."""
        n = int(self.label.shape[0] * rate_hz / LABEL_RATE_HZ)
        idx = np.minimum((np.arange(n) * LABEL_RATE_HZ / rate_hz).astype(np.int64), self.label.shape[0] - 1)
        return self.label[idx]


def load_subject(path: Path) -> WesadSubject:
    """Read one WESAD subject pickle (``S2.pkl``) safely and check its layout.

    Raises
    ------
    DatasetError, UnsafePickleError: missing, unreadable or malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: subject file not found; a WESAD folder holds S<N>/S<N>.pkl per subject")
    data = safe_load_pickle(path)
    layout = (f"expected a dict with 'signal' -> 'wrist' -> EDA/BVP/TEMP/ACC arrays [n, channels] and a 700 Hz "
              f"'label' array")
    if not isinstance(data, dict) or not isinstance(data.get("signal"), dict) or \
            not isinstance(data["signal"].get("wrist"), dict):
        raise DatasetError(f"{path}: not in the WESAD layout (top level {type(data).__name__}); {layout}")
    try:
        wrist_raw = data["signal"]["wrist"]
        label = _numeric(data["label"], path, "label").reshape(-1)
        if not np.all(np.isfinite(label)) or label.size == 0:
            raise DatasetError(f"{path}: 'label' is empty or holds NaN/infinite codes; {layout}")
        label = label.astype(np.int16)
        wrist = {}
        for name, key in WRIST_KEYS.items():
            arr = _numeric(wrist_raw[key], path, f"signal/wrist/{key}").astype(np.float32)
            if arr.ndim not in (1, 2) or arr.shape[0] == 0:
                raise DatasetError(f"{path}: 'signal/wrist/{key}' has shape {arr.shape}; {layout}")
            wrist[name] = arr.reshape(arr.shape[0], -1)
        subject = str(data.get("subject", path.stem))[:64]
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path}: not in the WESAD layout (missing or malformed {str(exc)[:120]}); "
                           f"{layout}") from exc
    if wrist["acc"].shape[1] != 3:
        raise DatasetError(f"{path}: wrist ACC has {wrist['acc'].shape[1]} axes, expected 3")
    return WesadSubject(subject=subject, wrist=wrist, label=label, path=path)


def _numeric(value: Any, path: Path, field: str) -> np.ndarray:
    """``value`` as a real-valued numpy array; DatasetError naming ``field`` otherwise."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise DatasetError(f"{path}: '{field}' holds {arr.dtype} values, expected numbers (int or float)")
    return arr


def _subject_number(p: Path) -> int:
    m = re.fullmatch(r"S(\d+)", p.name)
    return int(m.group(1)) if m else 1 << 30


def find_subjects(root: Path) -> list[Path]:
    """Subject pickles under a WESAD folder, ordered by subject number (S2, S3, ... S17).

    Raises :class:`DatasetError` if the folder is missing or holds no subject folder, or
    a subject folder lacks its pickle.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: WESAD folder not found")
    dirs = sorted((p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"S\d+", p.name)), key=_subject_number)
    if not dirs:
        raise DatasetError(f"{root}: no subject folders (S2, S3, ...); point --wesad at the folder that holds them, "
                           f"or make one with 'edgemer data synth-wesad --out {root}'")
    files = []
    for d in dirs:
        f = d / f"{d.name}.pkl"
        if not f.is_file():
            raise DatasetError(f"{d}: subject folder without {d.name}.pkl; restore the file or remove the folder")
        files.append(f)
    return files
