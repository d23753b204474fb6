"""A wrist wearable on a pseudo-terminal: the device side of the serial link, for tests and demos.

>>> from edgemer.firmware_bridge.emulator import WearableEmulator, EmulatorConfig
>>> with WearableEmulator(EmulatorConfig(speed=10)) as emu:
...     print(emu.port)          # e.g. /dev/pts/5: open it like a USB serial device

:class:`WearableEmulator` runs :class:`~edgemer.firmware_bridge.device.DeviceModel` in a
thread behind ``os.openpty()`` (raw mode): it writes the device's frames at their real
times (or ``speed`` times faster), answers the commands the host writes, and injects
faults on request: bit flips, dropped bytes, truncated frames and garbage bursts
(:mod:`~edgemer.firmware_bridge.faults`), device resets, clock drift (in the device
config) and unplugging. Unplugging closes the pseudo-terminal, as a pulled USB cable
removes ``/dev/ttyACM0``; replugging opens a new one. Its name may change, so give a
``link`` path: the emulator keeps that symlink pointing at the current terminal, as udev
does with ``/dev/serial/by-id/...``.

Times given to the emulator (``reset_every_s``, ``unplug_every_s``, ``unplug_for_s``)
are emulated seconds: at ``speed`` 10 an unplug of 3 s lasts 0.3 wall seconds.
"""
from __future__ import annotations

import logging
import math
import os
import select
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass, field

from edgemer.errors import ConfigError, SourceError
from edgemer.firmware_bridge.device import DeviceConfig, DeviceModel
from edgemer.firmware_bridge.faults import FaultConfig, FaultInjector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulated wearable behaves.

    device: the firmware model (seed, drift in ppm, clock start, rates, autostart).
    faults: per-frame probabilities of link faults.
    speed: emulated seconds per wall second (1 = real time).
    link: path of a symlink kept pointing at the current pseudo-terminal (survives unplugs).
    reset_every_s: reset the device every so many emulated seconds (None: never).
    unplug_every_s, unplug_for_s: unplug every so many emulated seconds, for so long.
    record_writes: keep ``time.monotonic()`` after each SAMPLES frame was written, by
        ``(boot, stream, seq)`` in ``write_times`` (latency benchmarks).
    """

    device: DeviceConfig = field(default_factory=DeviceConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    speed: float = 1.0
    link: str | None = None
    reset_every_s: float | None = None
    unplug_every_s: float | None = None
    unplug_for_s: float = 3.0
    record_writes: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ConfigError(f"EmulatorConfig.speed must be > 0, got {self.speed!r}")
        for name in ("reset_every_s", "unplug_every_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"EmulatorConfig.{name} must be > 0 s or None, got {value!r}")
        if not self.unplug_for_s > 0:
            raise ConfigError(f"EmulatorConfig.unplug_for_s must be > 0 s, got {self.unplug_for_s!r}")


@dataclass
class EmulatorStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    tx_dropped_bytes: int = 0
    """Bytes the pseudo-terminal would not take (nobody reading): lost, as on a real link."""
    commands: int = 0
    resets: int = 0
    unplugs: int = 0


class WearableEmulator:
    """The emulated device behind a pseudo-terminal; a context manager (thread + pty)."""

    def __init__(self, config: EmulatorConfig = EmulatorConfig()) -> None:
        self.config = config
        self.model = DeviceModel(config.device)
        self.faults = FaultInjector(config.faults)
        self.stats = EmulatorStats()
        self.events: deque[tuple[str, float, float]] = deque(maxlen=10_000)
        """(kind, emulated seconds, time.monotonic()) of each reset, unplug and replug."""
        self.write_times: dict[tuple[int, str, int], float] = {}
        self.port: str | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mono0 = 0.0
        self._reset_requested = False
        self._unplug_request: float | None = None
        self._replug_at: float | None = None
        self.plugged = threading.Event()

    # -- time -----------------------------------------------------------------------------------------
    def true_now(self) -> float:
        """Emulated seconds since start."""
        return (time.monotonic() - self._mono0) * self.config.speed

    def wall_of(self, true_s: float) -> float:
        """``time.monotonic()`` at which emulated second ``true_s`` happens."""
        return self._mono0 + true_s / self.config.speed

    @property
    def path(self) -> str:
        """What a host should open: the link if there is one, else the current port."""
        return self.config.link or self.port or ""

    # -- lifecycle ------------------------------------------------------------------------------------
    def __enter__(self) -> "WearableEmulator":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise SourceError("this WearableEmulator was already started; create a new one")
        self._mono0 = time.monotonic()
        self._plug()
        for frame in self.model.boot_frames:
            self._send(frame)
        self._thread = threading.Thread(target=self._loop, name="edgemer-emulator", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._unplug_now()

    # -- requests (thread-safe) -----------------------------------------------------------------------
    def reset(self) -> None:
        """Restart the device firmware: sequence numbers and device clock begin again."""
        with self._lock:
            self._reset_requested = True

    def unplug(self, duration_s: float) -> None:
        """Disconnect now for ``duration_s`` emulated seconds."""
        if not duration_s > 0:
            raise ConfigError(f"unplug duration must be > 0 s, got {duration_s!r}")
        with self._lock:
            self._unplug_request = float(duration_s)

    # -- pty ------------------------------------------------------------------------------------------
    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation: a byte pipe like a USB CDC port
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.port = os.ttyname(slave)
        if self.config.link:
            tmp = f"{self.config.link}.tmp{os.getpid()}"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.port, tmp)
            os.replace(tmp, self.config.link)
        self.plugged.set()

    def _unplug_now(self) -> None:
        self.plugged.clear()
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        link = self.config.link
        if link and os.path.islink(link) and os.readlink(link) == self.port:
            os.unlink(link)

    def _send(self, data: bytes, key: tuple[int, str, int] | None = None) -> None:
        self.stats.frames_sent += 1
        data = self.faults.apply(data)
        if self._master is None:
            return
        try:
            n = os.write(self._master, data)
        except (BlockingIOError, OSError):
            n = 0
        if key is not None and self.config.record_writes and n == len(data):
            self.write_times[key] = time.monotonic()
        self.stats.bytes_sent += n
        self.stats.tx_dropped_bytes += len(data) - n

    # -- the device loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        cfg = self.config
        next_reset = cfg.reset_every_s
        next_unplug = cfg.unplug_every_s
        try:
            while not self._stop.is_set():
                now = self.true_now()
                with self._lock:
                    reset, self._reset_requested = self._reset_requested, False
                    unplug, self._unplug_request = self._unplug_request, None
                if next_reset is not None and now >= next_reset:
                    reset, next_reset = True, next_reset + cfg.reset_every_s
                if next_unplug is not None and now >= next_unplug and self._replug_at is None:
                    unplug, next_unplug = cfg.unplug_for_s, next_unplug + cfg.unplug_every_s
                if unplug is not None and self._replug_at is None:
                    self._unplug_now()
                    self._replug_at = now + unplug
                    self.stats.unplugs += 1
                    self.events.append(("unplug", now, time.monotonic()))
                    log.info("emulator: unplugged for %.2f s", unplug)
                if self._replug_at is not None and now >= self._replug_at:
                    self._replug_at = None
                    self._plug()
                    self.events.append(("replug", now, time.monotonic()))
                    log.info("emulator: plugged back in on %s", self.port)
                if reset:
                    self.stats.resets += 1
                    self.events.append(("reset", now, time.monotonic()))
                    for frame in self.model.boot(now):
                        self._send(frame)
                for out in self.model.due(now):
                    self._send(out.data, out.key)
                self._wait(now, next_reset, next_unplug)
        except Exception as exc:  # pragma: no cover - reported, the emulator thread must not die silently
            log.exception("emulator stopped: %s", exc)
            raise

    def _wait(self, now: float, *deadlines: float | None) -> None:
        upcoming = [self.model.next_due_s(), *(d for d in deadlines if d is not None)]
        if self._replug_at is not None:
            upcoming.append(self._replug_at)
        timeout = min(0.05, max(0.0, (min(upcoming) - now) / self.config.speed))
        master = self._master
        if master is None:
            self._stop.wait(timeout)
            return
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            return
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, OSError):
            return
        if data:
            before = self.model.commands
            replies = self.model.receive(data, self.true_now())
            self.stats.commands += self.model.commands - before
            for reply in replies:
                self._send(reply)

    def status(self) -> dict:
        """Counters of the emulator and of its injected faults."""
        return {"port": self.port, "link": self.config.link, "emulated_s": round(self.true_now(), 3),
                **vars(self.stats), "faults": self.faults.counts.as_dict(),
                "host_frames_rejected": self.model.parser.stats.bad_frames}


__all__ = ["EmulatorConfig", "EmulatorStats", "WearableEmulator"]
