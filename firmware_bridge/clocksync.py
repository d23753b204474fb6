"""Mapping the device clock onto the host's pipeline clock: an online offset + drift fit.

The model is linear within one device boot::

    host_s = y0 + slope * (dev_s - x0),   slope = 1 / (1 + drift_ppm * 1e-6)

(``drift_ppm`` > 0: the device crystal runs fast). Evidence comes from two places:

* time-sync pings: the host sends PING at ``t_send``, the device stamps its clock at
  reception, the PONG arrives at ``t_recv``; the device time corresponds to the host
  time ``(t_send + t_recv) / 2`` within ``± rtt / 2``. Points are weighted by
  ``1 / (rtt + 0.1 ms)^2`` and those slower than 10x the median round trip are dropped;
  a weighted least-squares line over the last ``window_s`` seconds gives offset and
  slope (the slope only once the points span ``min_span_s``; before, the last known
  drift is kept).
* arrival times, used until the first PONG of a boot (or for devices that do not answer
  pings): a sample cannot arrive before it was measured, so
  ``offset <= arrival - slope * t_last_sample``; the lowest recent bound is used.

After a device reset the offset is forgotten and the drift kept (it belongs to the
crystal, not to the boot). Times are seconds on the pipeline clock; device times are µs.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from edgemer.errors import ConfigError


@dataclass(frozen=True)
class ClockSyncConfig:
    """window_s: seconds of pings the fit uses. min_span_s: seconds the pings must span
    before the slope (drift) is fitted. max_points: pings kept. arrivals: recent frame
    arrivals kept for the fallback bound."""

    window_s: float = 120.0
    min_span_s: float = 5.0
    max_points: int = 512
    arrivals: int = 256

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise ConfigError(f"ClockSyncConfig.window_s must be > 0 s, got {self.window_s}")
        if not 0 < self.min_span_s <= self.window_s:
            raise ConfigError(f"ClockSyncConfig.min_span_s must be in (0, window_s], got {self.min_span_s}")
        if self.max_points < 2 or self.arrivals < 1:
            raise ConfigError("ClockSyncConfig.max_points must be >= 2 and arrivals >= 1")


class ClockMapper:
    """Online fit of host time (s) against unwrapped device time (µs)."""

    def __init__(self, config: ClockSyncConfig = ClockSyncConfig()) -> None:
        self.config = config
        self._slope = 1.0
        self._drift_fitted = False
        self.reset()

    def reset(self) -> None:
        """The device clock restarted: drop the offset and the points, keep the drift."""
        self._points: deque[tuple[float, float, float]] = deque(maxlen=self.config.max_points)  # dev_s, host_s, rtt
        self._arrivals: deque[float] = deque(maxlen=self.config.arrivals)  # arrival - slope * dev_s
        self._x0 = 0.0
        self._y0: float | None = None
        self._bound: float | None = None
        self.rtt_s = float("nan")
        self.syncs = 0

    # -- evidence ---------------------------------------------------------------------------------
    def add_sync(self, dev_us: int, t_send: float, t_recv: float) -> None:
        """A PONG: the device read ``dev_us`` between host times ``t_send`` and ``t_recv``."""
        rtt = t_recv - t_send
        if not (rtt >= 0 and math.isfinite(rtt)):
            return
        self._points.append((dev_us * 1e-6, 0.5 * (t_send + t_recv), rtt))
        self.rtt_s = rtt
        self.syncs += 1
        self._fit()

    def add_arrival(self, dev_last_us: float, arrival: float) -> None:
        """A frame whose last sample was taken at device time ``dev_last_us`` arrived at ``arrival``."""
        self._arrivals.append(arrival - self._slope * dev_last_us * 1e-6)
        self._bound = None

    # -- mapping ----------------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        """True once pings anchor the offset (else arrival times do)."""
        return self._y0 is not None

    @property
    def ready(self) -> bool:
        return self._y0 is not None or bool(self._arrivals)

    def to_host(self, dev_us: float) -> float:
        """Host (pipeline) time in seconds of device time ``dev_us``; NaN before any evidence."""
        if self._y0 is not None:
            return self._y0 + self._slope * (dev_us * 1e-6 - self._x0)
        if self._arrivals:
            if self._bound is None:
                self._bound = min(self._arrivals)
            return self._bound + self._slope * dev_us * 1e-6
        return float("nan")

    @property
    def drift_ppm(self) -> float:
        """Device clock rate error in ppm (> 0: device fast); 0 until fitted."""
        return (1.0 / self._slope - 1.0) * 1e6

    @property
    def drift_fitted(self) -> bool:
        return self._drift_fitted

    @property
    def offset_s(self) -> float:
        """Host time minus device time at the newest sync point, seconds (NaN before any)."""
        if not self._points or self._y0 is None:
            return float("nan")
        x = self._points[-1][0]
        return self.to_host(x * 1e6) - x

    def _fit(self) -> None:
        cfg = self.config
        newest = self._points[-1][1]
        while self._points and self._points[0][1] < newest - cfg.window_s:
            self._points.popleft()
        pts = np.asarray(self._points, dtype=np.float64)
        x, y, rtt = pts[:, 0], pts[:, 1], pts[:, 2]
        keep = rtt <= 10.0 * np.median(rtt) + 1e-6
        x, y, rtt = x[keep], y[keep], rtt[keep]
        w = 1.0 / (rtt + 1e-4) ** 2
        x0, y0 = float(x[-1]), float(y[-1])
        dx, dy = x - x0, y - y0
        slope = self._slope
        if dx.max() - dx.min() >= cfg.min_span_s:
            sw = w.sum()
            mx, my = (w * dx).sum() / sw, (w * dy).sum() / sw
            sxx = (w * (dx - mx) ** 2).sum()
            if sxx > 0:
                slope = float((w * (dx - mx) * (dy - my)).sum() / sxx)
                self._drift_fitted = True
        intercept = float((w * (dy - slope * dx)).sum() / w.sum())
        self._slope = slope
        self._x0, self._y0 = x0, y0 + intercept


__all__ = ["ClockMapper", "ClockSyncConfig"]
