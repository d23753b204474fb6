"""Device fingerprint: what a benchmark ran on, so results from different boards compare.

Every probe reads a file or asks the standard library and tolerates its absence: a
value that cannot be read is ``None`` (never an exception). torch is never imported;
runtime versions and distributions come from package metadata, and onnxruntime is
imported only to list its execution providers (``device_fingerprint(providers=False)``,
the runtime's engine-choice key, does not import it: about 20 MiB resident saved).

Fields (see ``benchmarks/SCHEMA.md`` for the full list with units)::

    device_id        short slug for file names, e.g. "x86_64-amd-epyc-2c"
    cpu_model        "AMD EPYC 7B13", "Cortex-A76", ...
    cpu_flags        {"avx2": bool, "avx512f": bool, ..., "asimddp": bool}
    logical_cores    os.cpu_count(); usable_cores: cores this process may run on
    memory_gib       total RAM, GiB
    board            {"model": device-tree model, "raspberry_pi": str|None, "jetson": str|None}
    cpu_governor     cpufreq governor of cpu0, e.g. "ondemand"
    thermal_c        {zone type: temperature °C}
    l4t_release      Jetson Linux release from /etc/nv_tegra_release, e.g. "R35.4.1"
    power_mode       Jetson nvpmodel mode, e.g. "2 (15W)"
    throttled        Raspberry Pi firmware throttling flags, e.g. "0x0" (0x0 = never throttled)
    runtime_distributions  installed inference-runtime distribution -> version, e.g.
                     {"onnxruntime": "1.32.0", "ai-edge-litert": "2.3.0"}
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
from pathlib import Path
from typing import Any

# CPU features that decide which kernels onnxruntime / XNNPACK pick for INT8 and FP32.
X86_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
ARM_FLAGS = ("neon", "asimd", "asimddp", "asimdhp", "fphp", "i8mm", "sve", "bf16")

# ARM "CPU part" numbers (implementer 0x41, Arm Ltd) of the cores found on Pi / Jetson / SBCs.
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd42": "Cortex-A78AE", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710",
    "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2",
}

# Distribution names to try for each runtime (first installed wins).
RUNTIME_DISTRIBUTIONS = {
    "numpy": ("numpy",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-silicon", "onnxruntime-openvino"),
    "ai_edge_litert": ("ai-edge-litert", "ai-edge-litert-nightly"),
    "tflite_runtime": ("tflite-runtime", "tflite_runtime"),
    "edgemer": ("edgemer",),
}


def read_text(path: str | Path) -> str | None:
    """A small text file's content (NULs stripped), or None when it cannot be read."""
    try:
        return Path(path).read_bytes().replace(b"\x00", b"").decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        return None


def _cpuinfo(text: str | None) -> dict[str, str]:
    """The first processor block of /proc/cpuinfo plus board-level keys (Hardware, Model)."""
    info: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info


def cpu_model(cpuinfo: dict[str, str]) -> str | None:
    """CPU name: x86 ``model name``, else the ARM core from ``CPU part``, else platform.processor()."""
    for key in ("model name", "cpu model", "Processor"):
        if cpuinfo.get(key):
            return cpuinfo[key]
    part = cpuinfo.get("CPU part", "").lower()
    if cpuinfo.get("CPU implementer", "").lower() == "0x41" and part in ARM_PARTS:
        return ARM_PARTS[part]
    if part:
        return f"ARM implementer {cpuinfo.get('CPU implementer', '?')} part {part}"
    return platform.processor() or None


def cpu_flags(cpuinfo: dict[str, str], machine: str) -> dict[str, bool]:
    """The benchmark-relevant CPU features as booleans (x86 ``flags`` or ARM ``Features``)."""
    have = set((cpuinfo.get("flags") or cpuinfo.get("Features") or "").split())
    wanted = X86_FLAGS if machine.lower() in ("x86_64", "amd64", "i686", "i386") else ARM_FLAGS
    flags = {f: f in have for f in wanted}
    if machine.lower() in ("aarch64", "arm64"):
        flags["neon"] = True  # ARMv8-A always has Advanced SIMD; kernels list it as "asimd"
    return flags


def memory_gib() -> float | None:
    """Total RAM in GiB from /proc/meminfo (MemTotal, kB), else sysconf."""
    text = read_text("/proc/meminfo")
    if text:
        m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
        if m:
            return round(int(m.group(1)) / 2**20, 2)
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 2)
    except (ValueError, OSError, AttributeError):
        return None


def usable_cores() -> int | None:
    """Cores this process may run on (CPU affinity), which containers often restrict."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def cgroup_cpu_limit() -> float | None:
    """CPU quota of this container in cores (cgroup v2 ``cpu.max``), None when unlimited or unknown."""
    text = read_text("/sys/fs/cgroup/cpu.max")
    if not text:
        return None
    quota, _, period = text.partition(" ")
    try:
        return None if quota == "max" else round(int(quota) / int(period), 2)
    except ValueError:
        return None


def board() -> dict[str, str | None]:
    """Board model from the device tree, Raspberry Pi model, and Jetson L4T release."""
    model = read_text("/proc/device-tree/model") or read_text("/sys/firmware/devicetree/base/model")
    tegra = read_text("/etc/nv_tegra_release")
    jetson = None
    if tegra:
        jetson = tegra.splitlines()[0].lstrip("# ").strip()
        if model and "jetson" in model.lower():
            jetson = f"{model} ({jetson})"
    elif model and "jetson" in model.lower():
        jetson = model
    return {"model": model, "raspberry_pi": model if model and "raspberry pi" in model.lower() else None,
            "jetson": jetson}


def cpu_governor() -> str | None:
    return read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")


def cpu_max_mhz() -> float | None:
    """Maximum frequency of cpu0 in MHz (cpufreq reports kHz)."""
    text = read_text("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return round(int(text) / 1000.0, 1) if text else None
    except ValueError:
        return None


def thermal_c() -> dict[str, float] | None:
    """Temperature of each thermal zone, °C (sysfs reports milli-degrees); None when there are none."""
    zones: dict[str, float] = {}
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        temp = read_text(zone / "temp")
        try:
            value = int(temp) / 1000.0 if temp else None
        except ValueError:
            value = None
        if value is None:
            continue
        name = read_text(zone / "type") or zone.name
        if name in zones:
            name = f"{name}-{zone.name}"
        zones[name] = round(value, 1)
    return zones or None


def l4t_release(tegra: str | None = None) -> str | None:
    """``R<major>.<revision>`` from ``/etc/nv_tegra_release`` ("# R35 (release), REVISION: 4.1, ..." -> "R35.4.1").
    The JetPack version follows from it (NVIDIA's table: e.g. L4T R35.4.1 = JetPack 5.1.2)."""
    text = read_text("/etc/nv_tegra_release") if tegra is None else tegra
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    return f"R{m.group(1)}.{m.group(2)}" if m else None


def jetson_power_mode(status: str | None = None, conf: str | None = None) -> str | None:
    """nvpmodel mode: id from ``/var/lib/nvpmodel/status`` ("pmode:0002 ...") and its name from
    ``/etc/nvpmodel.conf`` ("< POWER_MODEL ID=2 NAME=15W >"), e.g. "2 (15W)"; None when unreadable."""
    status = read_text("/var/lib/nvpmodel/status") if status is None else status
    m = re.search(r"pmode:\s*(\d+)", status or "")
    if not m:
        return None
    mode = int(m.group(1))
    conf = read_text("/etc/nvpmodel.conf") if conf is None else conf
    name = re.search(rf"POWER_MODEL\s+ID=0*{mode}\s+NAME=([^\s>]+)", conf or "")
    return f"{mode} ({name.group(1)})" if name else str(mode)


def pi_throttled() -> str | None:
    """Raspberry Pi firmware throttling flags (``get_throttled``: bit 0 under-voltage, 1 frequency capped,
    2 throttled now, 16-18 the same since boot); None where the kernel does not expose them."""
    for path in ("/sys/devices/platform/soc/soc:firmware/get_throttled",
                 "/sys/devices/platform/soc/soc:firmware/raspberrypi-hwmon/get_throttled"):
        text = read_text(path)
        if text:
            try:
                return hex(int(text, 16))
            except ValueError:
                return text
    return None


def os_release() -> str | None:
    """PRETTY_NAME from /etc/os-release, e.g. "Debian GNU/Linux 12 (bookworm)"."""
    text = read_text("/etc/os-release")
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text or "", re.MULTILINE)
    return m.group(1) if m else None


def runtime_versions() -> dict[str, str | None]:
    """Installed versions of numpy, onnxruntime, ai_edge_litert, tflite_runtime and edgemer (None if absent).

    Read from package metadata, so nothing heavy is imported.
    """
    versions: dict[str, str | None] = {}
    for module, dists in RUNTIME_DISTRIBUTIONS.items():
        versions[module] = None
        for dist in dists:
            try:
                versions[module] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        if versions[module] is not None and module != "edgemer" and importlib.util.find_spec(module) is None:
            versions[module] = None  # metadata left behind by a broken install: not importable
    return versions


def runtime_distributions() -> dict[str, str]:
    """Every installed distribution of the inference runtimes named in :data:`RUNTIME_DISTRIBUTIONS`
    (onnxruntime, LiteRT, tflite_runtime; not numpy or edgemer) -> its version, e.g.
    ``{"onnxruntime": "1.32.0", "ai-edge-litert": "2.3.0"}``.

    Read from package metadata, so nothing is imported. Unlike :func:`runtime_versions` it names
    the build: ``onnxruntime`` and ``onnxruntime-gpu`` of one version are different entries, and two
    builds installed over each other both show. onnxruntime's execution providers
    (``get_available_providers()``) are the ones compiled into the installed distribution, not
    probed from the hardware (``onnxruntime-gpu`` lists CUDA on a machine without a GPU), so the
    distribution and its version stand for the provider list without importing onnxruntime.
    """
    found: dict[str, str] = {}
    for module, dists in RUNTIME_DISTRIBUTIONS.items():
        if module in ("numpy", "edgemer"):
            continue
        for dist in dists:
            try:
                found[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def onnxruntime_providers() -> list[str] | None:
    """onnxruntime's available execution providers, or None when onnxruntime does not import."""
    try:
        import onnxruntime
    except Exception:  # a broken install raises more than ImportError
        return None
    return list(onnxruntime.get_available_providers())


def slug(text: str, max_len: int = 40) -> str:
    """Lower-case ``text`` with runs of other characters replaced by one ``-``."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:max_len].rstrip("-") or "unknown"


def make_device_id(machine: str, board_info: dict[str, str | None], model: str | None, cores: int | None) -> str:
    """``<arch>-<board or cpu>-<cores>c``, e.g. ``aarch64-raspberry-pi-5-model-b-4c``."""
    name = board_info.get("model") or model or "unknown-cpu"
    name = re.sub(r"\s+Rev\s+[\d.]+$", "", name)  # "Raspberry Pi 4 Model B Rev 1.4": revision not needed
    name = re.sub(r"\b\d+-Core Processor\b|\(R\)|\(TM\)|\bCPU\b|@.*$", " ", name)
    arch = re.sub(r"[^a-z0-9_]+", "-", (machine or "unknown").lower()).strip("-")[:12] or "unknown"
    return f"{arch}-{slug(name)}-{cores or 0}c"


def device_fingerprint(providers: bool = True) -> dict[str, Any]:
    """Describe this machine for a benchmark result (see module docstring and SCHEMA.md).

    providers: list onnxruntime's execution providers (``onnxruntime_providers``), which imports
    onnxruntime; False leaves that field out and imports no runtime (the engine-choice key,
    :func:`edgemer.backends.choice.device_key`, so that a pipeline running on LiteRT only never
    loads onnxruntime). Never raises for a missing file: unknown values are None.
    """
    machine = platform.machine()
    info = _cpuinfo(read_text("/proc/cpuinfo"))
    model = cpu_model(info)
    cores = os.cpu_count()
    board_info = board()
    return {
        "device_id": make_device_id(machine, board_info, model, cores),
        "machine": machine,
        "cpu_model": model,
        "cpu_flags": cpu_flags(info, machine),
        "cpu_max_mhz": cpu_max_mhz(),
        "logical_cores": cores,
        "usable_cores": usable_cores(),
        "cgroup_cpu_limit": cgroup_cpu_limit(),
        "memory_gib": memory_gib(),
        "os": platform.system(),
        "kernel": platform.release(),
        "os_release": os_release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "versions": runtime_versions(),
        "runtime_distributions": runtime_distributions(),
        **({"onnxruntime_providers": onnxruntime_providers()} if providers else {}),  # absent: not probed
        "board": board_info,
        "cpu_governor": cpu_governor(),
        "thermal_c": thermal_c(),
        "l4t_release": l4t_release(),
        "power_mode": jetson_power_mode(),
        "throttled": pi_throttled(),
    }


def device_line(fp: dict[str, Any]) -> str:
    """One line for the terminal: id, CPU, cores, memory, board, runtimes."""
    v = fp.get("versions") or {}
    flags = [f for f, on in (fp.get("cpu_flags") or {}).items() if on and f not in ("sse4_2", "avx", "neon", "asimd")]
    parts = [f"device {fp.get('device_id') or 'unknown'}: {fp.get('cpu_model') or 'unknown CPU'}",
             f"{fp.get('usable_cores') or 'unknown'}/{fp.get('logical_cores') or 'unknown'} cores",
             f"{fp.get('memory_gib') or 'unknown'} GiB"]
    b = fp.get("board") or {}
    if b.get("raspberry_pi") or b.get("jetson"):
        parts.append(b.get("raspberry_pi") or b.get("jetson"))
    if flags:
        parts.append("+".join(flags))
    if fp.get("cpu_governor"):
        parts.append(f"governor {fp['cpu_governor']}")
    if fp.get("power_mode"):
        parts.append(f"power mode {fp['power_mode']}")
    if fp.get("l4t_release"):
        parts.append(f"L4T {fp['l4t_release']}")
    runtimes = [f"{k} {val}" for k, val in v.items() if val and k != "edgemer"]
    parts.append(", ".join(runtimes))
    return "; ".join(parts)
