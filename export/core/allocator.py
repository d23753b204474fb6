"""The C heap settings that training loops run with (glibc on Linux; elsewhere nothing changes).

A torch training loop allocates and frees the same buffers on every step. With glibc's
defaults, buffers of several MiB are handed back to the kernel (``munmap`` above the mmap
threshold, a heap trim above the trim threshold) and taken back as fresh, zero-filled pages
on the next step. On this project's 2-core VM a small conv training loop (batch 64 x 32
channels x 240 samples) spent about a quarter of its CPU time in those page faults; keeping
freed buffers in the heap ran it in 3.2 s instead of 4.8 s, system time 0.3 s instead of
1.8 s. The study's own tasks, whose buffers are smaller, ran no faster (task time 349 s
before and after). The numbers computed are the same (only where the bytes live changes);
the process keeps its peak heap until it exits, as training commands and study workers do.
:func:`~edgemer.export.core.training.fit_classifier` and
:func:`~edgemer.export.physio.train.train_pinn` call :func:`keep_freed_buffers`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20
"""Buffers up to this size (glibc's largest allowed, 32 MiB on 64-bit) come from the heap."""
TRIM_THRESHOLD_BYTES = 1 << 30
"""Free memory at the top of the heap is returned to the kernel only above this size."""


def keep_freed_buffers() -> bool:
    """Make glibc keep freed buffers of up to 32 MiB for reuse instead of returning them to the
    kernel (``mallopt`` of the mmap and trim thresholds), for this process. Idempotent.

    Returns True when the settings were applied, False where there is no glibc (macOS,
    musl, Windows): those keep their allocator's own behaviour.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl has no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    if not ok:
        log.debug("mallopt refused the heap thresholds; the allocator keeps its defaults")
    return ok
