"""The C99 reference code, compiled with the system compiler and tested against the shared vectors."""
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgemer.firmware_bridge import protocol as P
from edgemer.firmware_bridge.framing import FrameDecoder
from edgemer.firmware_bridge.session import AckEvent, DescriptorEvent, DeviceSession, InfoEvent, PongEvent, SampleBlock
from edgemer.firmware_bridge.vectors import VECTOR_FILE

C_DIR = Path(P.__file__).with_name("c")
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc/gcc/clang) on PATH; install gcc to test the C code")
needs_cxx = pytest.mark.skipif(CC is None or CXX is None,
                               reason="no C++ compiler (c++/g++/clang++) on PATH to build the Arduino example")
WARN = ["-Wall", "-Wextra", "-Werror", "-pedantic"]


def _compile(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stderr}"


def _sanitizers(tmp_path) -> list[str]:
    """ASan/UBSan when this compiler and its runtime support them."""
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    r = subprocess.run([CC, *flags, str(probe), "-o", str(tmp_path / "probe")], capture_output=True)
    if r.returncode == 0 and subprocess.run([str(tmp_path / "probe")], capture_output=True).returncode == 0:
        return flags
    return []


@needs_cc
def test_c_code_passes_the_shared_vectors(tmp_path):
    exe = tmp_path / "test_wire"
    _compile([CC, "-std=c99", *WARN, "-g", *_sanitizers(tmp_path), "-o", str(exe), "test_wire.c", "edgemer_wire.c"],
             C_DIR)
    r = subprocess.run([str(exe), str(VECTOR_FILE)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"^(\d+) passed, (\d+) failed$", r.stdout, re.M)
    assert m and int(m.group(2)) == 0 and int(m.group(1)) > 100, r.stdout


@needs_cc
def test_c_library_needs_only_stdint_and_string_and_no_malloc(tmp_path):
    for name in ("edgemer_wire.c", "edgemer_wire.h"):
        includes = re.findall(r'^\s*#\s*include\s+([<"][^>"]+[>"])', (C_DIR / name).read_text(), re.M)
        assert set(includes) <= {"<stdint.h>", "<string.h>", '"edgemer_wire.h"'}, (name, includes)
    obj = tmp_path / "edgemer_wire.o"
    _compile([CC, "-std=c99", *WARN, "-Os", "-ffreestanding", "-c", "edgemer_wire.c", "-o", str(obj)], C_DIR)
    nm = shutil.which("nm")
    if nm:
        undefined = set(subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True).stdout.split()) - {"U"}
        assert undefined <= {"memcpy", "memmove", "memset", "strlen"}, undefined


ARDUINO_STUB = r"""
#pragma once
#include <stdint.h>
#include <stddef.h>
#include <string.h>
enum { A0 = 0, A1 = 1, A2 = 2 };
uint32_t micros();
int analogRead(int pin);
struct FakeSerial {
    void begin(unsigned long baud);
    int available();
    int read();
    size_t write(const uint8_t *data, size_t n);
};
extern FakeSerial Serial;
"""

HARNESS = r"""
#include "Arduino.h"
#include <stdio.h>
#include <stdlib.h>
#include <vector>
static const uint32_t START_US = 4294000000u; /* 0.967 s before the 32-bit wrap */
static uint32_t now_us = START_US;
static std::vector<uint8_t> input;
static size_t in_pos = 0;
FakeSerial Serial;
uint32_t micros() { return now_us; }
int analogRead(int pin) { return 300 + 100 * pin + (int)((now_us / 1000u) % 50u); }
void FakeSerial::begin(unsigned long) {}
int FakeSerial::available() {
    return (now_us - START_US) >= 10000u ? (int)(input.size() - in_pos) : 0; /* host bytes arrive at 10 ms */
}
int FakeSerial::read() { return input[in_pos++]; }
size_t FakeSerial::write(const uint8_t *data, size_t n) { return fwrite(data, 1, n, stdout); }
void setup();
void loop();
int main(int, char **argv) {
    FILE *f = fopen(argv[1], "rb");
    int c;
    while ((c = fgetc(f)) != EOF) input.push_back((uint8_t)c);
    fclose(f);
    setup();
    for (long step = 0; step < atol(argv[2]) * 10000L; step++) { /* 100 us per loop() */
        loop();
        now_us += 100u;
    }
    return 0;
}
"""


@needs_cxx
def test_arduino_example_streams_decodable_frames(tmp_path):
    (tmp_path / "Arduino.h").write_text(ARDUINO_STUB)
    (tmp_path / "harness.cpp").write_text(HARNESS)
    lib = tmp_path / "edgemer_wire.o"
    _compile([CC, "-std=c99", *WARN, "-c", str(C_DIR / "edgemer_wire.c"), "-o", str(lib)], tmp_path)
    exe = tmp_path / "sketch"
    sketch = C_DIR / "examples" / "wrist_wearable" / "wrist_wearable.ino"
    _compile([CXX, "-std=c++11", "-Wall", "-Wextra", "-Werror", f"-I{tmp_path}", f"-I{C_DIR}", "-x", "c++",
              str(sketch), "-x", "none", str(tmp_path / "harness.cpp"), str(lib), "-o", str(exe)], tmp_path)
    cmds = [P.Command(P.MsgType.HELLO, seq=1), P.Command(P.MsgType.START, seq=2),
            P.Command(P.MsgType.PING, seq=3, token=42), P.Command(P.MsgType.SET_RATE, 1, 4, rate_hz=32.0),
            P.Command(P.MsgType.SET_RATE, 1, 5, rate_hz=50.0), P.Command(P.MsgType.STOP, 9, 6)]
    (tmp_path / "host.bin").write_bytes(b"".join(P.encode_command(c) for c in cmds))
    out = subprocess.run([str(exe), str(tmp_path / "host.bin"), "2"], capture_output=True, timeout=60).stdout
    decoder, session = FrameDecoder(), DeviceSession()
    events = [e for e in map(session.handle, decoder.feed(out)) if e is not None]
    assert decoder.stats.bad_frames == 0 and decoder.stats.frames_ok == len(events) > 0
    infos = [e.info for e in events if isinstance(e, InfoEvent)]
    assert [i.reason for i in infos] == [P.InfoReason.BOOT, P.InfoReason.HELLO]
    assert infos[0].name == "wrist-ref" and infos[0].n_streams == 4
    descs = [e.descriptor for e in events if isinstance(e, DescriptorEvent)]
    assert [d.name for d in descs[:4]] == ["eda", "bvp", "temp", "acc"]
    assert descs[-1].name == "bvp" and descs[-1].rate_hz == 32.0
    assert [e.token for e in events if isinstance(e, PongEvent)] == [42]
    acks = {(e.command, e.command_seq): e.status for e in events if isinstance(e, AckEvent)}
    assert acks == {(P.MsgType.START, 2): P.AckStatus.OK, (P.MsgType.SET_RATE, 4): P.AckStatus.OK,
                    (P.MsgType.SET_RATE, 5): P.AckStatus.BAD_ARGUMENT, (P.MsgType.STOP, 6): P.AckStatus.UNKNOWN_STREAM}
    blocks = [e for e in events if isinstance(e, SampleBlock)]
    by_stream = {name: [b for b in blocks if b.stream == name] for name in ("eda", "bvp", "temp", "acc")}
    assert len(by_stream["eda"]) == 8 and len(by_stream["acc"]) == 8  # 2 s of 0.25 s frames
    assert all(b.samples.shape == (8, 3) for b in by_stream["acc"])
    assert {b.samples.shape[0] for b in by_stream["bvp"]} == {8}  # 32 Hz after SET_RATE
    eda_t = np.array([b.t_dev_us for b in by_stream["eda"]])
    np.testing.assert_array_equal(np.diff(eda_t), 250_000)  # through the 32-bit wrap, no reset seen
    assert session.stats.resets == 0 and session.stats.seq_gaps == 0
    assert 0.3 < by_stream["eda"][0].samples[0, 0] < 1.6  # analogRead * 4 counts of 0.001 uS
