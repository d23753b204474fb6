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
file, a length the pickle declares (a frame, bytes, str, bytearray, long) that is larger
than the bytes left in the file is refused before anything is allocated (a 28 KB file
declaring a 1.8 GB bytearray made the stdlib allocate it first), the admitted constructors
that allocate (``bytearray(n)``, numpy's ``_reconstruct(shape, dtype)``) refuse more than
:data:`MAX_ELEMENTS` elements or more bytes than the file holds, an array's state (``BUILD``)
may not declare more elements than the file has bytes, and the memo is a dict (the
pure-Python unpickler), so a memo index of 10^8 costs nothing (CPython's C unpickler
allocates an array of that many slots).
"""
from __future__ import annotations

import math
import pickle
import re
import struct
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


def _itemsize(dtype: Any) -> int:
    """Bytes per element of the dtype a pickle names (1 if it names none numpy reads)."""
    try:
        return max(1, np.dtype(dtype).itemsize)
    except Exception:  # noqa: BLE001 - numpy refuses it itself when the constructor runs
        return 1


def _bounded(name: str, original: Any, file_size: int) -> Any:
    """``original`` wrapped so that an absurd size argument is refused before it allocates;
    ``file_size`` (bytes) bounds what an array may take."""

    def checked(*args: Any) -> Any:
        if name == "bytearray" and args and isinstance(args[0], int) and args[0] > MAX_ELEMENTS:
            raise UnsafePickleError(f"the pickle asks for a bytearray of {args[0]} bytes; refused")
        if name == "_reconstruct" and len(args) > 1:
            shape = args[1] if isinstance(args[1], tuple) else (args[1],)
            if not all(isinstance(d, int) and 0 <= d <= MAX_ELEMENTS for d in shape) or \
                    math.prod(shape) > MAX_ELEMENTS:
                raise UnsafePickleError(f"the pickle asks for an array of shape {str(shape)[:80]}; refused")
            nbytes = math.prod(shape) * _itemsize(args[2] if len(args) > 2 else None)
            if nbytes > file_size:
                raise UnsafePickleError(f"the pickle asks for an array of {nbytes} bytes (shape {str(shape)[:80]}) "
                                        f"in a file of {file_size} bytes; refused")
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

    @property
    def remaining(self) -> int:
        """Bytes left in the file after the read position."""
        return max(0, self._size - self._f.tell())

    def read(self, n: int = -1) -> bytes:
        left = self.remaining
        return self._f.read(left if n is None or n < 0 else min(n, left))

    def readinto(self, buf: Any) -> int:
        return self._f.readinto(buf)

    def readline(self, limit: int = -1) -> bytes:
        return self._f.readline(limit)

    def peek(self, n: int = 0) -> bytes:
        return self._f.peek(n)


def _declared(fmt: str, field: str, body: Any) -> Any:
    """A dispatch entry for an opcode followed by a length (``struct`` format ``fmt``) and
    that many bytes: the length is checked against the bytes left before ``body(self, n)``
    (the stdlib's own loader, minus reading the length) reads or allocates anything."""

    def load(self: "RestrictedUnpickler") -> None:
        raw = self.read(struct.calcsize(fmt))
        (n,) = struct.unpack(fmt, raw)
        left = self._bytes_left()
        if n < 0 or n > left:
            raise DatasetError(f"the pickle declares a {field} of {n} bytes but only {left} bytes are left in the "
                               f"file; the file is truncated or damaged, copy it again")
        body(self, n)

    return load


def _load_long(self: pickle._Unpickler, n: int) -> None:
    self.append(pickle.decode_long(self.read(n)))


def _load_bytearray(self: pickle._Unpickler, n: int) -> None:
    b = bytearray(n)
    self.readinto(b)
    self.append(b)


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its memo is a dict
    """An unpickler that resolves only the globals numpy arrays and plain containers need,
    and refuses declared sizes the file cannot hold (``file_size`` in bytes)."""

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.FRAME[0]] = _declared("<Q", "frame", lambda self, n: self._unframer.load_frame(n))
    dispatch[pickle.BINBYTES[0]] = _declared("<I", "bytes object", lambda self, n: self.append(self.read(n)))
    dispatch[pickle.BINBYTES8[0]] = _declared("<Q", "bytes object", lambda self, n: self.append(self.read(n)))
    dispatch[pickle.BINUNICODE[0]] = _declared(
        "<I", "str", lambda self, n: self.append(str(self.read(n), "utf-8", "surrogatepass")))
    dispatch[pickle.BINUNICODE8[0]] = _declared(
        "<Q", "str", lambda self, n: self.append(str(self.read(n), "utf-8", "surrogatepass")))
    dispatch[pickle.BINSTRING[0]] = _declared(
        "<i", "str", lambda self, n: self.append(self._decode_string(self.read(n))))
    dispatch[pickle.BYTEARRAY8[0]] = _declared("<Q", "bytearray", _load_bytearray)
    dispatch[pickle.LONG4[0]] = _declared("<i", "long integer", _load_long)

    def __init__(self, file: _ClampedFile, file_size: int, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._clamped, self._file_size = file, file_size

    def _bytes_left(self) -> int:
        """Bytes the pickle can still supply: the rest of the current frame and of the file."""
        frame = getattr(self, "_unframer", None) and self._unframer.current_frame
        in_frame = 0
        if frame:
            with frame.getbuffer() as view:
                in_frame = view.nbytes - frame.tell()
        return in_frame + self._clamped.remaining

    def load_build(self) -> None:
        """``BUILD``: an array's state may not declare more elements than the file has bytes
        (numpy allocates an object array's memory before it reads the element list)."""
        state, target = self.stack[-1], self.stack[-2] if len(self.stack) > 1 else None
        if isinstance(target, np.ndarray) and isinstance(state, tuple) and len(state) >= 3:
            shape = state[1] if isinstance(state[1], tuple) else (state[1],)
            if not all(isinstance(d, int) and d >= 0 for d in shape) or math.prod(shape) > self._file_size:
                raise DatasetError(f"an array's state declares shape {str(shape)[:80]}, more elements than the "
                                   f"file's {self._file_size} bytes can hold; the file is damaged")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            found = super().find_class(module, name)
            return _bounded(name, found, self._file_size) if name in ("bytearray", "_reconstruct", "encode") \
                else found
        raise UnsafePickleError(
            f"the pickle asks for '{module}.{name}', which is not a numpy array or plain container; "
            f"refused without running it. Only WESAD-style data pickles are accepted."
        )


def safe_load_pickle(path: Path) -> Any:
    """Load a pickle with :class:`RestrictedUnpickler` (``encoding='latin1'``, as WESAD needs)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            return RestrictedUnpickler(_ClampedFile(f, size), size, encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None
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
