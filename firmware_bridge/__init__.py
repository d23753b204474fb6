"""The firmware bridge: a wearable-to-runtime serial link that survives real cables.

Modules (each small, importable on its own; COBS/CRC come from the ``[serial]`` extra):

``protocol``   wire format v1: constants, message layouts, the Python encoder
``codec``      COBS and CRC-16/CCITT-FALSE from the ``cobs`` and ``crcmod`` libraries
``framing``    bytes -> checked frames (resync on the next 0x00, counted rejects)
``session``    frames -> sample blocks in physical units; gaps, resets, wrap-around
``clocksync``  device clock -> pipeline clock: online offset + drift fit
``device``     the emulated wearable's firmware (pure, driven by "true" time)
``faults``     seeded link faults: bit flips, dropped bytes, truncation, garbage
``emulator``   the device on a pseudo-terminal (``edgemer emulate``)
``vectors``    the test vectors shared with the C code in ``c/``
``bench``      ``edgemer bench bridge``: throughput, clock sync, recovery, latency

The host-side source is :class:`edgemer.sources.serial_wearable.SerialWearable`
(``--source serial:PORT``). The byte layout is in ``PROTOCOL.md`` next to this file; the
C99 encoder and command parser for MCU firmware are in ``c/``.
"""
