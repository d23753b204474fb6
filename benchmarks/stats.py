"""Latency statistics: percentiles and a distribution-free confidence interval of the median.

All functions take latencies in milliseconds as a 1-D sequence and return
milliseconds; nothing here measures time.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054
"""Two-sided 95 % quantile of the standard normal."""


def summarize_ms(latencies_ms: Sequence[float]) -> dict[str, float]:
    """min, mean, p50, p90, p99 and max of latencies (ms); p-values by linear interpolation."""
    x = np.asarray(latencies_ms, dtype=np.float64)
    if x.size == 0:
        raise ValueError("summarize_ms needs at least one latency")
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"min": float(x.min()), "mean": float(x.mean()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "max": float(x.max())}


def median_ci95(latencies_ms: Sequence[float]) -> tuple[float, float]:
    """95 % confidence interval of the median (ms) from order statistics.

    For ``n`` sorted samples the interval is ``[x_(l), x_(u)]`` with
    ``l, u = n/2 -/+ 1.96 * sqrt(n)/2`` (1-based, rounded outwards): the binomial
    interval of the rank of the median under the normal approximation. It assumes
    independent runs and needs no distribution; with fewer than 6 samples it is the
    whole range.
    """
    x = np.sort(np.asarray(latencies_ms, dtype=np.float64))
    n = x.size
    if n == 0:
        raise ValueError("median_ci95 needs at least one latency")
    half = Z95 * math.sqrt(n) / 2.0
    lo = max(1, int(math.floor(n / 2.0 - half)))
    hi = min(n, int(math.ceil(n / 2.0 + half + 1)))
    return float(x[lo - 1]), float(x[hi - 1])


def relative_half_width(latencies_ms: Sequence[float]) -> float:
    """Half-width of :func:`median_ci95` divided by the median (0.05 = +-5 %); inf for a zero median."""
    lo, hi = median_ci95(latencies_ms)
    med = float(np.median(np.asarray(latencies_ms, dtype=np.float64)))
    return (hi - lo) / 2.0 / med if med > 0 else math.inf


def enough_runs(latencies_ms: Sequence[float], min_iterations: int, target_rel_ci: float) -> bool:
    """True once at least ``min_iterations`` runs exist and the median's 95 % CI half-width
    is within ``target_rel_ci`` of the median."""
    return len(latencies_ms) >= min_iterations and relative_half_width(latencies_ms) <= target_rel_ci
