"""COBS and CRC-16 from maintained libraries, imported lazily.

* COBS (Consistent Overhead Byte Stuffing): the ``cobs`` package (C extension).
* CRC-16/CCITT-FALSE (also catalogued as CRC-16/IBM-3740 or CRC-16/AUTOSAR): width 16,
  polynomial 0x1021, initial value 0xFFFF, no reflection, final XOR 0x0000, check value
  ``crc(b"123456789") == 0x29B1``; from ``crcmod`` (the ``crcmod-plus`` distribution,
  a maintained build of crcmod with C speed).

Both come with the ``[serial]`` extra; a missing one raises
:class:`~edgemer.errors.MissingExtraError` naming it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from edgemer._extras import require

CRC_NAME = "CRC-16/CCITT-FALSE"
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF
CRC_CHECK = 0x29B1
"""CRC of the ASCII bytes ``123456789``."""


@dataclass(frozen=True)
class Codec:
    """The three byte-level functions the wire protocol needs.

    cobs_encode(bytes) -> bytes without zero bytes; cobs_decode(bytes) -> bytes, raising
    ``cobs_error`` on bad input; crc16(bytes) -> int, CRC-16/CCITT-FALSE.
    """

    cobs_encode: Callable[[bytes], bytes]
    cobs_decode: Callable[[bytes], bytes]
    cobs_error: type
    crc16: Callable[[bytes], int]


@functools.lru_cache(maxsize=None)
def load_codec() -> Codec:
    """Import ``cobs`` and ``crcmod`` once (an import cache, not mutable state)."""
    cobs = require("cobs.cobs", "serial", "The firmware bridge's COBS framing")
    predefined = require("crcmod.predefined", "serial", "The firmware bridge's CRC-16 check")
    crc16 = predefined.mkCrcFun("crc-ccitt-false")
    if crc16(b"123456789") != CRC_CHECK:  # pragma: no cover - guards against a different variant
        raise RuntimeError("crcmod's 'crc-ccitt-false' does not give the CRC-16/CCITT-FALSE check value 0x29B1")
    return Codec(cobs_encode=cobs.encode, cobs_decode=cobs.decode, cobs_error=cobs.DecodeError, crc16=crc16)
