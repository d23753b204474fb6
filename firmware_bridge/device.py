"""The firmware of the emulated wrist wearable, as a pure model driven by "true" time.

:class:`DeviceModel` does what ``c/examples/wrist_wearable/wrist_wearable.ino`` does on
an MCU: it samples EDA (4 Hz), BVP (64 Hz), skin temperature (4 Hz), a 3-axis
accelerometer (32 Hz) and, because it is an emulator, the simulated condition (4 Hz,
WESAD label code), packs them into SAMPLES frames, announces its streams and answers
host commands. Signals come from :class:`edgemer.simulate.WristSimulator`, the simulator
behind ``edgemer demo``.

Time: ``true_s`` is the true time in seconds since the model was created (the emulator
maps it to the wall clock, times ``speed``). The device clock runs ``drift_ppm`` fast,
starts at ``clock_start_us`` at every boot and goes on the wire modulo 2**32 µs. A frame
is sent as soon as its last sample has been taken.

No threads and no I/O: :class:`~edgemer.firmware_bridge.emulator.WearableEmulator` adds
the pseudo-terminal, fault injection and unplugging. Tests drive the model directly.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from edgemer.errors import ConfigError
from edgemer.firmware_bridge.codec import load_codec
from edgemer.firmware_bridge.framing import FrameDecoder
from edgemer.firmware_bridge.protocol import (HOST_TYPES, NO_STREAM, AckStatus, Command, DeviceInfo, InfoReason,
                                              MsgType, SampleFormat, StreamDescriptor, encode_ack,
                                              encode_descriptor, encode_info, encode_pong, encode_samples)
from edgemer.simulate import BLOCK_S, DEMO_SCENARIO, WristSimulator

DEVICE_NAME = "edgemer-wrist"
FIRMWARE = "emu-1.0"

WRIST_DESCRIPTORS: tuple[StreamDescriptor, ...] = (
    StreamDescriptor(0, "eda", 4.0, 1, "uS", 0.001, 0.0, SampleFormat.U16),
    StreamDescriptor(1, "bvp", 64.0, 1, "a.u.", 0.01, 0.0, SampleFormat.I16),
    StreamDescriptor(2, "temp", 4.0, 1, "degC", 0.01, 0.0, SampleFormat.I16),
    StreamDescriptor(3, "acc", 32.0, 3, "g/64", 1.0, 0.0, SampleFormat.I8),
    StreamDescriptor(4, "condition", 4.0, 1, "wesad-code", 1.0, 0.0, SampleFormat.U8),
)
"""The emulated sensors at their native rates, in WESAD units: EDA µS in 0.001 µS steps,
BVP arbitrary units in 0.01 steps, TEMP °C in 0.01 °C steps, ACC 1/64 g as int8 (as the
Empatica E4 sends it), condition as the WESAD label code."""

_SIM_KEY = {"eda": "eda", "bvp": "bvp", "temp": "temp", "acc": "acc", "condition": "label"}


class SentFrame(NamedTuple):
    """Ground truth about one SAMPLES frame the model sent (for tests and benchmarks).

    true_s: true time of the first sample, seconds. samples: float32 physical values
    exactly as a correct decoder must reproduce them.
    """

    stream: str
    boot: int
    seq: int
    t_us: int
    true_s: float
    samples: np.ndarray


class OutFrame(NamedTuple):
    """A SAMPLES frame to send: its wire bytes and ``(boot, stream name, seq)``."""

    data: bytes
    key: tuple[int, str, int]


class _Stream:
    def __init__(self, desc: StreamDescriptor) -> None:
        self.native = desc
        self.desc = desc
        self.step = 1  # native samples per sent sample (decimation)
        self.next_index = 0  # native sample index (device time grid of this boot) of the next sample to send
        self.seq = 0
        self.streaming = False

    def set_rate(self, rate_hz: float, frame_s: float) -> bool:
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            return False
        step = self.native.rate_hz / rate_hz
        if abs(step - round(step)) > 1e-6 * step or round(step) < 1:
            return False
        self.step = int(round(step))
        self.desc = StreamDescriptor(self.native.stream_id, self.native.name, self.native.rate_hz / self.step,
                                     self.native.channels, self.native.unit, self.native.scale, self.native.offset,
                                     self.native.format)
        self.count = max(1, min(self.desc.max_count(), int(round(self.desc.rate_hz * frame_s))))
        return True


@dataclass(frozen=True)
class DeviceConfig:
    """Settings of the emulated device.

    seed: simulator seed. drift_ppm: device clock rate error (> 0: fast), ppm.
    clock_start_us: device clock value at boot, µs (near 2**32 to exercise wrap-around).
    frame_s: seconds of samples per frame (0.25 s: 1 EDA, 16 BVP, 1 TEMP, 8 ACC samples).
    autostart: stream from boot without waiting for START.
    rates: initial sample rates by stream name (a native rate divided by an integer).
    scenario: the simulator's (WESAD code, seconds) protocol.
    record_truth: keep the last ``truth_frames`` sent SAMPLES frames as :class:`SentFrame`.
    """

    seed: int = 0
    drift_ppm: float = 0.0
    clock_start_us: int = 0
    frame_s: float = 0.25
    autostart: bool = False
    rates: tuple[tuple[str, float], ...] = ()
    scenario: tuple[tuple[int, float], ...] = DEMO_SCENARIO
    record_truth: bool = False
    truth_frames: int = 200_000

    def __post_init__(self) -> None:
        if not (math.isfinite(self.drift_ppm) and abs(self.drift_ppm) < 1e5):
            raise ConfigError(f"DeviceConfig.drift_ppm must be finite and below 1e5 ppm, got {self.drift_ppm}")
        if not 0 <= self.clock_start_us < 2 ** 32:
            raise ConfigError(f"DeviceConfig.clock_start_us must be 0..2**32-1 µs, got {self.clock_start_us}")
        if not 0 < self.frame_s <= 4.0:
            raise ConfigError(f"DeviceConfig.frame_s must be in (0, 4] s, got {self.frame_s}")
        names = {d.name for d in WRIST_DESCRIPTORS}
        for name, rate in self.rates:
            if name not in names:
                raise ConfigError(f"DeviceConfig.rates: unknown stream '{name}', use one of {sorted(names)}")


class DeviceModel:
    """Emulated firmware. Call :meth:`due` with the current true time to get the frames to
    send, :meth:`receive` with bytes from the host to get the replies."""

    def __init__(self, config: DeviceConfig = DeviceConfig()) -> None:
        self.config = config
        self.codec = load_codec()
        self.parser = FrameDecoder(accept=HOST_TYPES, codec=self.codec)
        self.simulator = WristSimulator(scenario=config.scenario, seed=config.seed, loop=True)
        self.streams = {d.stream_id: _Stream(d) for d in WRIST_DESCRIPTORS}
        for s in self.streams.values():
            s.set_rate(s.native.rate_hz, config.frame_s)
        for name, rate in config.rates:
            stream = next(s for s in self.streams.values() if s.native.name == name)
            if not stream.set_rate(rate, config.frame_s):
                raise ConfigError(f"DeviceConfig.rates: {name} supports {stream.native.rate_hz:g} Hz divided by an "
                                  f"integer, got {rate:g} Hz")
        self.truth: deque[SentFrame] = deque(maxlen=config.truth_frames)
        self.boot_count = 0
        self.commands = 0
        self._ctl_seq = 0
        self._sim: dict[str, np.ndarray] = {k: np.zeros((0, d.channels), np.float32)
                                            for k, d in zip(_SIM_KEY, WRIST_DESCRIPTORS)}
        self._sim_start = 0  # simulator 0.25 s block index of row 0 of the buffers
        self._boot_true = 0.0
        self._k = 1.0 + config.drift_ppm * 1e-6
        self.boot_frames = self.boot(0.0)

    # -- clock --------------------------------------------------------------------------------------
    def device_us(self, true_s: float) -> int:
        """Device clock (µs, not wrapped) at true time ``true_s``."""
        return self.config.clock_start_us + int(math.floor((true_s - self._boot_true) * self._k * 1e6))

    def _true_of_index(self, stream: _Stream, index: int) -> float:
        """True time at which native sample ``index`` (of this boot) is taken."""
        return self._boot_true + index / stream.native.rate_hz / self._k

    def _t_us(self, stream: _Stream, index: int) -> int:
        return self.config.clock_start_us + int(round(index * 1e6 / stream.native.rate_hz))

    # -- lifecycle ------------------------------------------------------------------------------------
    def boot(self, true_s: float) -> list[bytes]:
        """(Re)start the firmware at ``true_s``: clock and sequence numbers restart; returns
        INFO (reason BOOT) and the stream descriptors."""
        self.boot_count += 1
        self._boot_true = true_s
        for s in self.streams.values():
            s.seq = 0
            s.next_index = 0
            s.streaming = self.config.autostart
        return [self._info(InfoReason.BOOT, true_s)] + [self._descriptor(s, true_s) for s in self.streams.values()]

    def _ctl(self) -> int:
        self._ctl_seq = (self._ctl_seq + 1) & 0xFFFF
        return self._ctl_seq

    def _info(self, reason: int, true_s: float) -> bytes:
        info = DeviceInfo(reason, len(self.streams), DEVICE_NAME, FIRMWARE)
        return encode_info(info, self._ctl(), self.device_us(true_s), self.codec)

    def _descriptor(self, s: _Stream, true_s: float) -> bytes:
        return encode_descriptor(s.desc, self._ctl(), self.device_us(true_s), self.codec)

    # -- sampling -------------------------------------------------------------------------------------
    def _next_due(self, s: _Stream) -> float:
        return self._true_of_index(s, s.next_index + (s.count - 1) * s.step)

    def next_due_s(self) -> float:
        """True time of the next SAMPLES frame (inf when nothing streams)."""
        return min((self._next_due(s) for s in self.streams.values() if s.streaming), default=math.inf)

    def _sim_rows(self, name: str, rate: float, true_times: np.ndarray) -> np.ndarray:
        """Simulator samples of one stream at the given true times (nearest earlier sample)."""
        idx = np.floor(true_times * rate + 1e-6).astype(np.int64)
        per_block = int(round(rate * BLOCK_S))
        need_block = int(idx.max()) // per_block + 1
        have_block = self._sim_start + len(self._sim["eda"])
        if need_block > have_block:
            block = self.simulator.generate((need_block - have_block + 40) * BLOCK_S)
            for key in self._sim:
                arr = block[_SIM_KEY[key]]
                arr = arr[:, None] if arr.ndim == 1 else arr
                self._sim[key] = np.concatenate([self._sim[key], arr.astype(np.float32)])
        base = self._sim_start * per_block
        return self._sim[name][idx - base]

    def _trim_sim(self) -> None:
        """Forget simulator samples older than every stream's next sample."""
        oldest = min((self._true_of_index(s, s.next_index) for s in self.streams.values() if s.streaming),
                     default=0.0)
        drop = int(oldest / BLOCK_S) - 8 - self._sim_start
        if drop > 64:
            for key, desc in zip(self._sim, WRIST_DESCRIPTORS):
                self._sim[key] = self._sim[key][drop * int(round(desc.rate_hz * BLOCK_S)):]
            self._sim_start += drop

    def due(self, true_s: float) -> list[OutFrame]:
        """SAMPLES frames whose last sample has been taken by ``true_s``, in time order."""
        ready: list[tuple[float, int, OutFrame]] = []
        for s in self.streams.values():
            if not s.streaming:
                continue
            while self._next_due(s) <= true_s:
                ready.append(self._sample_frame(s))
        if ready:
            self._trim_sim()
        ready.sort(key=lambda r: (r[0], r[1]))
        return [r[2] for r in ready]

    def _sample_frame(self, s: _Stream) -> tuple[float, int, OutFrame]:
        indices = s.next_index + s.step * np.arange(s.count)
        true_times = self._boot_true + indices / s.native.rate_hz / self._k
        values = self._sim_rows(s.native.name, s.native.rate_hz, true_times)
        raw = s.desc.quantise(values)
        t_us = self._t_us(s, s.next_index)
        frame = encode_samples(s.desc, s.seq, t_us, raw, self.codec)
        if self.config.record_truth:
            self.truth.append(SentFrame(s.desc.name, self.boot_count, s.seq, t_us, float(true_times[0]),
                                        s.desc.to_physical(raw)))
        out = OutFrame(frame, (self.boot_count, s.desc.name, s.seq))
        s.seq = (s.seq + 1) & 0xFFFF
        s.next_index += s.count * s.step
        return float(true_times[-1]), s.desc.stream_id, out

    def _align(self, s: _Stream, true_s: float) -> None:
        first = int(math.ceil((true_s - self._boot_true) * self._k * s.native.rate_hz - 1e-9))
        s.next_index = max(s.next_index, ((first + s.step - 1) // s.step) * s.step)

    # -- commands -------------------------------------------------------------------------------------
    def receive(self, data: bytes, true_s: float) -> list[bytes]:
        """Bytes from the host -> reply frames (commands are checked like any frame)."""
        out: list[bytes] = []
        for frame in self.parser.feed(data):
            out.extend(self.execute(Command.from_frame(frame), true_s))
        return out

    def execute(self, cmd: Command, true_s: float) -> list[bytes]:
        self.commands += 1
        now_us = self.device_us(true_s)
        if cmd.type == MsgType.PING:
            return [encode_pong(cmd.token or 0, self._ctl(), now_us, self.codec)]
        if cmd.type == MsgType.HELLO:
            return [self._info(InfoReason.HELLO, true_s)] + [self._descriptor(s, true_s)
                                                              for s in self.streams.values()]
        targets = self._targets(cmd.stream)
        if targets is None:
            return [self._ack(cmd, AckStatus.UNKNOWN_STREAM, now_us)]
        if cmd.type in (MsgType.START, MsgType.STOP):
            for s in targets:
                if cmd.type == MsgType.START and not s.streaming:
                    self._align(s, true_s)
                s.streaming = cmd.type == MsgType.START
            return [self._ack(cmd, AckStatus.OK, now_us)]
        if cmd.type == MsgType.SET_RATE:
            if cmd.stream == NO_STREAM or not targets[0].set_rate(float(cmd.rate_hz or 0.0), self.config.frame_s):
                return [self._ack(cmd, AckStatus.BAD_ARGUMENT, now_us)]
            s = targets[0]
            self._align(s, true_s)
            return [self._ack(cmd, AckStatus.OK, now_us), self._descriptor(s, true_s)]
        return [self._ack(cmd, AckStatus.UNKNOWN_COMMAND, now_us)]  # pragma: no cover - parser accepts host types only

    def _targets(self, stream: int) -> Sequence[_Stream] | None:
        if stream == NO_STREAM:
            return list(self.streams.values())
        s = self.streams.get(stream)
        return None if s is None else [s]

    def _ack(self, cmd: Command, status: int, now_us: int) -> bytes:
        return encode_ack(cmd.stream, cmd.type, status, cmd.seq, self._ctl(), now_us, self.codec)


__all__ = ["DEVICE_NAME", "DeviceConfig", "DeviceModel", "FIRMWARE", "OutFrame", "SentFrame", "WRIST_DESCRIPTORS"]
