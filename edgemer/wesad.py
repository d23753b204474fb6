"""Reading WESAD-layout subject files safely.

WESAD (Schmidt et al., 2018) ships one pickle per subject, ``DIR/S2/S2.pkl``::

    {"subject": "S2",
     "signal": {"wrist": {"ACC": [n, 3] 32 Hz (1/64 g), "BVP": [n, 1] 64 Hz,
                          "EDA": [n, 1] 4 Hz (µS), "TEMP": [n, 1] 4 Hz (°C)},
                "chest": {"ACC", "ECG", "EMG", "EDA", "Temp", "Resp": [n, k] 700 Hz}},
     "label": [n] 700 Hz, codes 0-7}

Pickles can execute code when loaded, so user files are never read with a bare
``pickle.load``: :class:`RestrictedUnpickler` admits only numpy arrays, numpy
scalars/dtypes and plain containers, and refuses anything else before it runs.
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


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals numpy arrays and plain containers need."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"the pickle asks for '{module}.{name}', which is not a numpy array or plain container; "
            f"refused without running it. Only WESAD-style data pickles are accepted."
        )


def safe_load_pickle(path: Path) -> Any:
    """Load a pickle with :class:`RestrictedUnpickler` (``encoding='latin1'``, as WESAD needs)."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DatasetError(f"{path}: not a readable WESAD pickle ({type(exc).__name__}: {exc}); "
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
    try:
        wrist_raw = data["signal"]["wrist"]
        label = np.asarray(data["label"]).reshape(-1).astype(np.int16)
        wrist = {}
        for name, key in WRIST_KEYS.items():
            arr = np.asarray(wrist_raw[key], dtype=np.float32)
            wrist[name] = arr.reshape(arr.shape[0], -1)
        subject = str(data.get("subject", path.stem))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: not in the WESAD layout (missing or malformed {exc}); expected "
                           f"'signal' -> 'wrist' -> EDA/BVP/TEMP/ACC and a 700 Hz 'label' array") from exc
    if wrist["acc"].shape[1] != 3:
        raise DatasetError(f"{path}: wrist ACC has {wrist['acc'].shape[1]} axes, expected 3")
    return WesadSubject(subject=subject, wrist=wrist, label=label, path=path)


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
