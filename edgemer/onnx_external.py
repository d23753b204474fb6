"""What an ONNX file declares about its tensors, read without the ``onnx`` package.

An ONNX model may keep tensor data in other files ("external data": a ``location``
relative to the model's folder, with ``offset`` and ``length`` in bytes). A model from a
shared bundle or brought to ``edgemer export onnx`` is untrusted, so before any runtime
opens it, :func:`check_onnx_file` reads the protobuf wire format directly (the runtime
imports no ``onnx``) and refuses

- an external-data ``location`` that is absolute, holds ``..``, or resolves (symlinks
  followed) outside the model's folder;
- an external-data file that does not exist, or an ``offset``/``length`` beyond its end;
- a tensor whose declared shape holds more than :data:`MAX_TENSOR_ELEMENTS` elements;
- a file that is not a readable protobuf (truncated, garbage), or nested deeper than
  :data:`MAX_DEPTH` graphs.

Only the fields that can hold tensors are walked (graph initializers, sparse
initializers, node attributes, subgraphs and functions); raw tensor bytes are skipped by
length, so a multi-megabyte model is scanned in milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from edgemer.errors import EdgemerError

MAX_TENSOR_ELEMENTS = 1 << 28
"""Largest tensor a model may declare (268 M elements, 1 GiB of float32)."""
MAX_DEPTH = 32
"""Deepest nesting of subgraphs (If/Loop bodies) accepted."""
MAX_NAME_CHARS = 255


class _WireError(ValueError):
    """The bytes are not protobuf wire format."""


@dataclass
class ExternalRef:
    """One tensor stored outside the model file: ``location`` (relative to the model's folder),
    ``offset`` and ``length`` in bytes (None when not given)."""

    tensor: str
    location: str | None
    offset: int | None = None
    length: int | None = None


@dataclass
class OnnxScan:
    """What :func:`scan_onnx_bytes` found: external-data references and the largest
    declared tensor (``(name, elements)``)."""

    external: list[ExternalRef] = field(default_factory=list)
    largest: tuple[str, int] = ("", 0)


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _WireError("varint longer than 10 bytes")


def _skip(buf: memoryview, pos: int, wire: int) -> int:
    """Position after one value of ``wire`` type (groups skipped whole, as protobuf parsers do)."""
    n = len(buf)
    if wire == 0:
        return _varint(buf, pos)[1]
    if wire in (1, 5):
        pos += 8 if wire == 1 else 4
    elif wire == 2:
        length, pos = _varint(buf, pos)
        pos += length
    elif wire == 3:
        depth = 1
        while depth:
            key, pos = _varint(buf, pos)
            if key & 7 == 3:
                depth += 1
            elif key & 7 == 4:
                depth -= 1
            else:
                pos = _skip(buf, pos, key & 7)
            if depth > MAX_DEPTH:
                raise _WireError("groups nested too deep")
    else:
        raise _WireError(f"wire type {wire} where a value was expected")
    if pos > n:
        raise _WireError("a field runs past the end of the file")
    return pos


def _fields(buf: memoryview):
    """Yield ``(field_number, wire_type, value)``; value is an int (varint/fixed) or a memoryview.
    Groups (wire type 3, unused by ONNX) are skipped."""
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _WireError("field number 0")
        if wire == 3:
            pos = _skip(buf, pos, 3)
            continue
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > n:
                raise _WireError("truncated fixed64")
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            if pos + 4 > n:
                raise _WireError("truncated fixed32")
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > n:
                raise _WireError(f"a field declares {length} bytes, {n - pos} are left")
            value, pos = buf[pos:pos + length], pos + length
        else:
            raise _WireError(f"wire type {wire} (groups are not used by ONNX)")
        yield number, wire, value


def _text(v) -> str:
    if not isinstance(v, memoryview):
        raise _WireError("expected a string field")
    return bytes(v).decode("utf-8", errors="replace")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _tensor(buf: memoryview, scan: OnnxScan) -> None:
    dims: list[int] = []
    name = ""
    external = False
    entries: dict[str, str] = {}
    for number, wire, v in _fields(buf):
        if number == 1:  # dims, packed or not
            if wire == 2:
                p = 0
                while p < len(v):
                    d, p = _varint(v, p)
                    dims.append(_signed(d))
            elif wire == 0:
                dims.append(_signed(v))
        elif number == 8 and wire == 2:
            name = _text(v)[:MAX_NAME_CHARS]
        elif number == 14 and wire == 0:
            external = v == 1
        elif number == 13 and wire == 2:
            key = value = ""
            for n2, w2, v2 in _fields(v):
                if n2 == 1 and w2 == 2:
                    key = _text(v2)
                elif n2 == 2 and w2 == 2:
                    value = _text(v2)
            entries[key] = value
    elements = 1
    for d in dims:
        elements *= max(d, 0)
        if elements > MAX_TENSOR_ELEMENTS:
            break
    if elements > scan.largest[1]:
        scan.largest = (name, elements)
    if external or entries:
        def number_of(key: str) -> int | None:
            text = entries.get(key)
            if text is None:
                return None
            if not text.strip().isdigit() or len(text) > 20:
                raise _WireError(f"tensor '{name}': external-data {key} {text[:40]!r} is not a byte count")
            return int(text)

        scan.external.append(ExternalRef(name, entries.get("location"), number_of("offset"), number_of("length")))


def _sparse(buf: memoryview, scan: OnnxScan) -> None:
    for number, wire, v in _fields(buf):
        if number in (1, 2) and wire == 2:
            _tensor(v, scan)


def _attribute(buf: memoryview, scan: OnnxScan, depth: int) -> None:
    for number, wire, v in _fields(buf):
        if wire != 2:
            continue
        if number in (5, 10):
            _tensor(v, scan)
        elif number in (6, 11):
            _graph(v, scan, depth + 1)
        elif number in (22, 23):
            _sparse(v, scan)


def _node(buf: memoryview, scan: OnnxScan, depth: int) -> None:
    for number, wire, v in _fields(buf):
        if number == 5 and wire == 2:
            _attribute(v, scan, depth)


def _graph(buf: memoryview, scan: OnnxScan, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _WireError(f"subgraphs nested deeper than {MAX_DEPTH}")
    for number, wire, v in _fields(buf):
        if wire != 2:
            continue
        if number == 1:
            _node(v, scan, depth)
        elif number == 5:
            _tensor(v, scan)
        elif number == 15:
            _sparse(v, scan)


def scan_onnx_bytes(data: bytes) -> OnnxScan:
    """Walk a serialised ``ModelProto``; raises ``ValueError`` when it is not protobuf."""
    scan = OnnxScan()
    buf = memoryview(data)
    for number, wire, v in _fields(buf):
        if wire != 2:
            continue
        if number == 7:
            _graph(v, scan, 0)
        elif number == 25:  # FunctionProto: nodes are field 7
            for n2, w2, v2 in _fields(v):
                if n2 == 7 and w2 == 2:
                    _node(v2, scan, 0)
    return scan


def is_plain_relative(name: str) -> bool:
    """True for a relative name such as ``model.onnx`` or ``weights/w.bin``: no absolute path,
    drive, backslash, NUL, ``.`` or ``..`` part, at most :data:`MAX_NAME_CHARS` characters."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS or "\x00" in name or "\\" in name:
        return False
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive or name.startswith("~"):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def resolve_inside(folder: Path, name: str) -> Path | None:
    """``folder / name`` with symlinks followed, or None when that leaves ``folder``."""
    try:
        root = folder.resolve()
        target = (folder / name).resolve()
    except (OSError, RuntimeError, ValueError):  # symlink loops, over-long paths
        return None
    return target if target == root or root in target.parents else None


def check_onnx_file(path: Path, error: type[EdgemerError], listed: set[str] | None = None,
                    unreadable: type[EdgemerError] | None = None, skip_unreadable: bool = False) -> OnnxScan | None:
    """Refuse an ONNX file whose tensors live outside its folder or declare absurd sizes.

    path: the ``.onnx`` file. error: the :class:`EdgemerError` subclass to raise (a bundle
    raises its own, ``edgemer export onnx`` a model-check error). listed: when given (a
    bundle), every external-data file must also be one of these names, so that its sha256
    was verified. unreadable: the error for a file that is not protobuf at all (default
    ``error``); with ``skip_unreadable`` such a file returns None instead, leaving the
    refusal to whoever opens it next. Returns the scan.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the model ({exc.strerror or exc})") from exc
    try:
        scan = scan_onnx_bytes(data)
    except (_WireError, RecursionError) as exc:
        if skip_unreadable:
            return None
        raise (unreadable or error)(f"{path}: not a readable ONNX file ({exc}); it is truncated or another "
                                    f"format; re-export the bundle or the model") from None
    name, elements = scan.largest
    if elements > MAX_TENSOR_ELEMENTS:
        raise error(f"{path}: tensor '{name}' declares more than {MAX_TENSOR_ELEMENTS} elements (field 'dims'); "
                    f"refused before loading. The file is damaged or not meant for an edge device")
    for ref in scan.external:
        where = f"{path}: tensor '{ref.tensor}' external-data 'location'"
        if ref.location is None or not is_plain_relative(ref.location):
            raise error(f"{where} {str(ref.location)[:80]!r} is not a plain relative file name inside the model's "
                        f"folder (absolute, '..' or empty); refused. Save the model with its data next to it "
                        f"(onnx.save(..., save_as_external_data=True, location='NAME.data'))")
        target = resolve_inside(path.parent, ref.location)
        if target is None:
            raise error(f"{where} {ref.location!r} leaves the model's folder through a symlink; refused. "
                        f"Copy the data file into {path.parent}")
        if not target.is_file():
            raise error(f"{where}: {ref.location!r} is missing next to the model; copy it into {path.parent}")
        if listed is not None and ref.location not in listed:
            raise error(f"{where}: {ref.location!r} has no sha256 entry under the manifest's 'files', so it "
                        f"cannot be verified; re-export the bundle")
        size = target.stat().st_size
        end = (ref.offset or 0) + (ref.length or 0)
        if end > size:
            raise error(f"{where}: {ref.location!r} offset {ref.offset} + length {ref.length} runs past its "
                        f"{size} bytes; the data file is truncated or belongs to another model")
    return scan
