"""Command-line front end of the firmware bridge: ``edgemer emulate``.

The serial link benchmark is ``edgemer bench bridge`` (:mod:`edgemer.firmware_bridge.bench`).

Registered in :func:`edgemer.cli.build_parser`; this module imports nothing heavy at the
top, so building the parser stays cheap.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def _rate(text: str) -> tuple[str, float]:
    name, sep, hz = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name, float(hz)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=HZ, e.g. bvp=32, got {text!r}") from None


def configure_emulate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speed", type=float, default=1.0,
                   help="emulated seconds per wall second (default 1 = real time); give the runtime the same "
                        "--speed")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="emulated seconds to run (default: until Ctrl-C)")
    p.add_argument("--link", type=Path, default=None, metavar="PATH",
                   help="keep a symlink PATH pointing at the current pseudo-terminal (its name can change when "
                        "the emulator unplugs and replugs); open PATH from the runtime")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated signals (default 0)")
    p.add_argument("--autostart", action="store_true", help="stream from boot, without waiting for START")
    p.add_argument("--rate", type=_rate, action="append", default=[], metavar="NAME=HZ",
                   help="start a stream at a lower rate (its native rate divided by an integer), e.g. bvp=32")
    p.add_argument("--drift-ppm", type=float, default=0.0, help="device clock error in ppm (> 0: fast)")
    p.add_argument("--clock-start-us", type=int, default=0, metavar="US",
                   help="device clock at boot, µs (e.g. 4294000000 to see the 32-bit wrap within a minute)")
    faults = p.add_argument_group("fault injection (probabilities per frame, 0..1)")
    faults.add_argument("--bit-flips", type=float, default=0.0, metavar="P", help="flip one random bit")
    faults.add_argument("--dropped-bytes", type=float, default=0.0, metavar="P", help="drop one random byte")
    faults.add_argument("--truncated", type=float, default=0.0, metavar="P", help="cut the end of the frame")
    faults.add_argument("--garbage", type=float, default=0.0, metavar="P",
                        help="send a burst of random bytes before the frame")
    faults.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws (default 0)")
    faults.add_argument("--reset-every", type=float, default=None, metavar="SECONDS",
                        help="reset the device (sequence numbers and clock restart) every SECONDS emulated seconds")
    faults.add_argument("--unplug-every", type=float, default=None, metavar="SECONDS",
                        help="disconnect every SECONDS emulated seconds (use --link to keep a stable path)")
    faults.add_argument("--unplug-for", type=float, default=3.0, metavar="SECONDS",
                        help="how long each disconnect lasts, emulated seconds (default 3)")
    p.add_argument("--status-every", type=float, default=5.0, metavar="SECONDS",
                   help="wall seconds between status lines (0: none; default 5)")


def _status_line(emu) -> str:
    s = emu.status()
    f = s["faults"]
    faults = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in f.items()
                       if k not in ("frames", "garbage_bytes") and v)
    return (f"[{s['emulated_s']:8.1f} s] {s['frames_sent']} frames ({s['bytes_sent'] / 1024:.1f} KiB) sent, "
            f"{s['commands']} commands, {s['resets']} resets, {s['unplugs']} unplugs"
            + (f"; injected: {faults}" if faults else "")
            + (f"; {s['tx_dropped_bytes']} bytes unread by the host dropped" if s["tx_dropped_bytes"] else ""))


def run_emulate(args: argparse.Namespace) -> int:
    from edgemer.firmware_bridge.device import DeviceConfig
    from edgemer.firmware_bridge.emulator import EmulatorConfig, WearableEmulator
    from edgemer.firmware_bridge.faults import FaultConfig

    device = DeviceConfig(seed=args.seed, drift_ppm=args.drift_ppm, clock_start_us=args.clock_start_us,
                          autostart=args.autostart, rates=tuple(args.rate))
    faults = FaultConfig(bit_flips=args.bit_flips, dropped_bytes=args.dropped_bytes, truncated=args.truncated,
                         garbage=args.garbage, seed=args.fault_seed)
    config = EmulatorConfig(device=device, faults=faults, speed=args.speed,
                            link=str(args.link) if args.link else None, reset_every_s=args.reset_every,
                            unplug_every_s=args.unplug_every, unplug_for_s=args.unplug_for)
    emu = WearableEmulator(config)
    try:
        with emu:
            target = emu.path
            print(f"edgemer emulate: wrist wearable on {emu.port}"
                  + (f" (link {args.link})" if args.link else "") + f", speed x{args.speed:g}")
            streams = ", ".join(f"{s.desc.name} {s.desc.rate_hz:g} Hz"
                                + (f" x{s.desc.channels}" if s.desc.channels > 1 else "") + f" {s.desc.unit}"
                                for s in emu.model.streams.values())
            print(f"  streams: {streams}")
            if faults.any or args.reset_every or args.unplug_every or args.drift_ppm:
                print(f"  faults: bit flips {args.bit_flips:g}, dropped bytes {args.dropped_bytes:g}, truncated "
                      f"{args.truncated:g}, garbage {args.garbage:g} per frame; drift {args.drift_ppm:+g} ppm"
                      + (f"; reset every {args.reset_every:g} s" if args.reset_every else "")
                      + (f"; unplug every {args.unplug_every:g} s for {args.unplug_for:g} s" if args.unplug_every
                         else ""))
            if args.unplug_every and not args.link:
                print("  note: without --link the port name may change at each replug")
            speed = f" --speed {args.speed:g}" if args.speed != 1 else ""
            print(f"  connect: edgemer run --source serial:{target} --bundle physio-demo{speed}")
            print("Ctrl-C stops.", flush=True)
            next_status = time.monotonic() + args.status_every
            while args.duration is None or emu.true_now() < args.duration:
                time.sleep(0.05)
                if args.status_every > 0 and time.monotonic() >= next_status:
                    print(_status_line(emu), flush=True)
                    next_status += args.status_every
    except KeyboardInterrupt:
        pass
    print("stopped: " + _status_line(emu), flush=True)
    return 0


__all__ = ["configure_emulate", "run_emulate"]
