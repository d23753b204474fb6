"""Prove the ARM path under emulation: the shipped bundles give the same argmax on aarch64 as on x86-64.

::

    sudo scripts/install-arm64-emulation.sh           # qemu-user-static, debootstrap, binfmt-support
    sudo python3 -m edgemer bench arm64               # [--work DIR] [--bundles a,b] [--json DIR]

End to end, as root on an x86-64 Debian/Ubuntu host:

1. **Root filesystem.** ``debootstrap --arch=arm64 --foreign --variant=minbase`` a Debian
   (default ``bookworm``) with ``python3`` and ``python3-venv``, then its second stage inside
   ``chroot`` through qemu's binfmt_misc handler (registered with ``update-binfmts`` when
   binfmt_misc can be mounted). Without binfmt_misc (some containers) the downloaded
   packages are unpacked with ``dpkg-deb -x`` instead: enough to run Python. Cached under
   ``--work`` (default ``~/.cache/edgemer/arm64``) and reused.
2. **Wheels.** ``pip download --platform manylinux_2_X_aarch64 --only-binary=:all:
   --python-version <the root filesystem's Python>`` of onnxruntime, ai-edge-litert and
   numpy — by default the versions installed on this host, so both sides run the same
   release — installed into the root filesystem with ``pip install --target`` (on the host:
   nothing runs under emulation but the models).
3. **Runs.** Every model file of every shipped bundle (FP32/INT8 ONNX, FP32/INT8 TFLite)
   on every window of its ``samples.npz`` parity set, batch 1, 1 thread, once on this host
   and once per emulated CPU inside the root filesystem via ``QEMU_CPU=<cpu> chroot ROOTFS
   /usr/bin/qemu-aarch64-static /usr/bin/python3`` — the same standalone runner
   (``arm64_runner.py``, which imports only numpy/onnxruntime/ai_edge_litert) on both sides.
   Default CPUs: ``cortex-a72`` (Raspberry Pi 4: no dot-product instructions) and
   ``cortex-a76`` (Pi 5: dot product), so both int8 kernel families are exercised; qemu's
   default ``max`` CPU would report SVE and i8mm, which no Pi has.
4. **Result.** ``benchmarks/results/<device>_arm64_<stamp>.json`` (or ``--json FILE_OR_DIR``;
   kind ``arm64``, see ``benchmarks/SCHEMA.md``): per bundle and model file the aarch64-vs-x86-64 argmax
   agreement and largest output difference, accuracy on the parity labels, the aarch64 INT8
   vs FP32 agreement, versions, and timings — the emulated ones labelled
   ``"emulated: meaningless for speed"`` (qemu translates every instruction).

Errors name what to do: not root, a missing tool (-> ``scripts/install-arm64-emulation.sh``),
no aarch64 wheel for a pinned version (-> ``--latest``).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgemer.errors import EdgemerError

INSTALL_SCRIPT = "scripts/install-arm64-emulation.sh"
TOOLS = ("debootstrap", "qemu-aarch64-static", "chroot")
PACKAGES = {"onnxruntime": "onnxruntime", "ai-edge-litert": "ai_edge_litert", "numpy": "numpy"}
"""Distribution name -> module name of the runtimes installed into the root filesystem."""
DEFAULT_WORK = Path("~/.cache/edgemer/arm64")
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
EMULATED_NOTE = "emulated: meaningless for speed"
RUNNER = Path(__file__).with_name("arm64_runner.py")
SITE = "opt/edgemer-arm64/site"
"""Where the aarch64 wheels are installed, relative to the root filesystem."""
ROOTFS_MARKER = ".edgemer-rootfs.json"
CPU_MODELS = {
    "cortex-a53": "Raspberry Pi 3 / Zero 2 W class (ARMv8.0-A: NEON, no dot product)",
    "cortex-a72": "Raspberry Pi 4 (ARMv8.0-A: NEON, no dot product)",
    "cortex-a76": "Raspberry Pi 5 (ARMv8.2-A: NEON + dot product sdot/udot, no i8mm)",
    "max": "qemu's 'max' CPU: every feature qemu emulates (dot product, i8mm, SVE): no real board",
}
"""qemu ``-cpu`` models (``QEMU_CPU``) that can be emulated: the kernels onnxruntime and XNNPACK pick
depend on the CPU features the emulated core reports (HWCAP), so each board class is its own run."""
DEFAULT_CPUS = ("cortex-a72", "cortex-a76")


class EmulationError(EdgemerError):
    """The emulated aarch64 environment cannot be built or run; the message says what to install or change."""


@dataclass(frozen=True)
class Rootfs:
    """A finished arm64 root filesystem. path: its folder. method: ``debootstrap-second-stage`` or
    ``dpkg-deb-extract``. python: ``major.minor`` of its python3. glibc: ``major.minor``."""

    path: Path
    suite: str
    method: str
    python: str
    glibc: str


# -- host checks ----------------------------------------------------------------------------------

def check_host(which=shutil.which, euid: int | None = None) -> None:
    """Raise :class:`EmulationError` unless this process is root and every tool in :data:`TOOLS` is found."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        raise EmulationError("building and entering the arm64 root filesystem (debootstrap, chroot) needs root: "
                             "run it with sudo, e.g. sudo python3 -m edgemer bench arm64")
    missing = [t for t in TOOLS if which(t) is None]
    if missing:
        raise EmulationError(f"missing tool(s) {missing}: install them with sudo {INSTALL_SCRIPT} "
                             f"(Debian packages qemu-user-static, debootstrap, binfmt-support)")


def binfmt_aarch64(register: bool = True) -> bool:
    """Whether the kernel runs aarch64 binaries through qemu (binfmt_misc). With ``register``, first try
    to mount binfmt_misc and enable Debian's qemu-aarch64 entry (``update-binfmts``); False when that
    is not possible here (e.g. an unprivileged container)."""
    root = Path("/proc/sys/fs/binfmt_misc")
    entry = root / "qemu-aarch64"

    def enabled() -> bool:
        try:
            return entry.read_text().splitlines()[0].strip() == "enabled"
        except (OSError, IndexError):
            return False

    if enabled() or not register:
        return enabled()
    if not (root / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(root)], capture_output=True, check=False)
    if shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, check=False)
    return enabled()


def _run(cmd: Sequence[str], what: str, hint: str, env: Mapping[str, str] | None = None,
         timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd``; on failure raise :class:`EmulationError` with ``what``, the output's tail and ``hint``."""
    try:
        proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, env=env, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise EmulationError(f"{what} took longer than {timeout:.0f} s and was stopped. {hint}") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-1500:]
        raise EmulationError(f"{what} failed (exit {proc.returncode}): {tail}\n{hint}")
    return proc


# -- root filesystem ------------------------------------------------------------------------------

def chroot_python(rootfs: Path, *args: str) -> list[str]:
    """The command that runs the root filesystem's python3 under qemu (no binfmt_misc needed)."""
    return ["chroot", str(rootfs), "/usr/bin/qemu-aarch64-static", "/usr/bin/python3", *args]


def _probe_python(rootfs: Path) -> tuple[str, str]:
    code = "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.libc_ver()[1], platform.machine())"
    out = _run(chroot_python(rootfs, "-c", code), "running python3 inside the arm64 root filesystem",
               "Rebuild it with --rebuild.").stdout.split()
    if len(out) != 3 or out[2] != "aarch64":
        raise EmulationError(f"python3 in {rootfs} reported {out}, expected '<version> <glibc> aarch64'; "
                             f"rebuild it with --rebuild")
    return out[0], ".".join(out[1].split(".")[:2])


def build_rootfs(work: Path, suite: str = DEFAULT_SUITE, mirror: str = DEFAULT_MIRROR, use_binfmt: bool = True,
                 rebuild: bool = False, say=print) -> Rootfs:
    """The cached arm64 root filesystem under ``work``, built first when missing (see module docstring)."""
    final = work / f"rootfs-{suite}"
    marker = final / ROOTFS_MARKER
    if rebuild and final.exists():
        shutil.rmtree(final)
    if marker.is_file():
        info = json.loads(marker.read_text())
        say(f"reusing {final} ({info['method']}, Python {info['python']}, glibc {info['glibc']})")
        return Rootfs(final, info["suite"], info["method"], info["python"], info["glibc"])
    if final.exists():
        raise EmulationError(f"{final} exists but is not a finished edgemer root filesystem (no {ROOTFS_MARKER}); "
                             f"delete it or pass --rebuild")
    partial = work / f"rootfs-{suite}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    work.mkdir(parents=True, exist_ok=True)
    say(f"debootstrap --foreign: downloading arm64 Debian {suite} from {mirror} (about 30 s) ...")
    _run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", "--include=python3,python3-venv",
          suite, partial, mirror], f"debootstrap --arch=arm64 --foreign {suite}",
         f"Check that {mirror} is reachable and that '{suite}' is a Debian suite.", timeout=1800)
    shutil.copy2(shutil.which("qemu-aarch64-static"), partial / "usr/bin/qemu-aarch64-static")
    if use_binfmt and binfmt_aarch64(register=True):
        say("debootstrap --second-stage inside the chroot under qemu (a few minutes) ...")
        _run(["chroot", partial, "/debootstrap/debootstrap", "--second-stage"], "debootstrap --second-stage",
             "Rerun with --no-binfmt to unpack the packages without running their scripts.", timeout=3600)
        method = "debootstrap-second-stage"
    else:
        say(f"{'--no-binfmt' if not use_binfmt else 'binfmt_misc unavailable here'}: unpacking the downloaded "
            f"packages with dpkg-deb -x (no package scripts run; enough for python3) ...")
        debs = sorted((partial / "var/cache/apt/archives").glob("*.deb"))
        if not debs:
            raise EmulationError(f"debootstrap left no packages in {partial}/var/cache/apt/archives; "
                                 f"rerun with --rebuild")
        for deb in debs:
            _run(["dpkg-deb", "-x", deb, partial], f"dpkg-deb -x {deb.name}", "The download may be damaged: --rebuild.")
        method = "dpkg-deb-extract"
    python, glibc = _probe_python(partial)
    partial.rename(final)
    info = {"suite": suite, "mirror": mirror, "method": method, "python": python, "glibc": glibc,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    marker.write_text(json.dumps(info, indent=1))
    return Rootfs(final, suite, method, python, glibc)


# -- wheels ---------------------------------------------------------------------------------------

def host_versions() -> dict[str, str | None]:
    """Installed versions of :data:`PACKAGES` on this host (None when absent)."""
    out: dict[str, str | None] = {}
    for dist in PACKAGES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def aarch64_platforms(glibc: str) -> list[str]:
    """pip ``--platform`` tags a glibc ``2.N`` aarch64 system accepts: manylinux_2_17 … manylinux_2_N."""
    major, minor = (int(v) for v in glibc.split(".")[:2])
    if major != 2 or minor < 17:
        raise EmulationError(f"glibc {glibc} is older than manylinux2014 (2.17): use a newer Debian suite")
    return [f"manylinux_2_{m}_aarch64" for m in range(minor, 16, -1)] + ["manylinux2014_aarch64"]


def requirements(pinned: Mapping[str, str | None]) -> list[str]:
    """``name==version`` for pinned packages, bare names for the others."""
    return [f"{name}=={v}" if v else name for name, v in pinned.items()]


def install_wheels(work: Path, rootfs: Rootfs, pinned: Mapping[str, str | None], say=print) -> dict[str, str]:
    """Download the aarch64 wheels (cached in ``work/wheels-cpXY``) and install them into the root filesystem.

    Returns the installed version of each package.
    """
    site = rootfs.path / SITE
    stamp = site / ".edgemer-packages.json"
    reqs = requirements(pinned)
    if stamp.is_file() and json.loads(stamp.read_text()).get("requested") == reqs:
        return json.loads(stamp.read_text())["installed"]
    wheels = work / f"wheels-cp{rootfs.python.replace('.', '')}"
    platform_args = [a for p in aarch64_platforms(rootfs.glibc) for a in ("--platform", p)]
    common = [*platform_args, "--only-binary=:all:", "--python-version", rootfs.python, "--implementation", "cp"]
    say(f"pip download (aarch64, Python {rootfs.python}): {' '.join(reqs)} ...")
    _run([sys.executable, "-m", "pip", "download", "--dest", wheels, *common, *reqs],
         "pip download of the aarch64 wheels",
         "A pinned version may have no aarch64 wheel for this Python: rerun with --latest, or check that PyPI is "
         "reachable.", timeout=1800)
    if site.exists():
        shutil.rmtree(site)
    _run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheels, "--target", site, *common,
          *reqs], "pip install --target of the aarch64 wheels", "Delete the wheel cache and rerun.", timeout=1800)
    installed = {}
    for dist in PACKAGES:
        found = sorted(site.glob(f"{dist.replace('-', '_')}-*.dist-info"))
        installed[dist] = found[0].name[:-len(".dist-info")].split("-")[1] if found else None
    stamp.write_text(json.dumps({"requested": reqs, "installed": installed}, indent=1))
    return installed


# -- job ------------------------------------------------------------------------------------------

def prepare_job(bundle_refs: Sequence[str], job_dir: Path, threads: int = 1) -> dict[str, Any]:
    """Copy each bundle's model files and ``samples.npz`` into ``job_dir`` and write ``job.json``.

    The parity windows of an input are ``samples.npz[<input name>]``, or ``samples.npz["signals"]`` for a
    single-input bundle (what the exporters write). A bundle without usable samples is an error.
    """
    from edgemer.bundle import load_bundle

    if job_dir.exists():
        shutil.rmtree(job_dir)
    job_dir.mkdir(parents=True)
    bundles = []
    for ref in bundle_refs:
        bundle = load_bundle(ref)
        m = bundle.manifest
        samples_file = bundle.path / "samples.npz"
        samples = bundle.samples()
        inputs = []
        for spec in m.inputs:
            key = spec.name if spec.name in samples else ("signals" if len(m.inputs) == 1 else None)
            arr = samples.get(key) if key else None
            if arr is None or tuple(arr.shape[1:]) != tuple(spec.shape[1:]):
                raise EmulationError(f"bundle {bundle.name}: samples.npz has no parity windows for input '{spec.name}' "
                                     f"of shape {list(spec.shape)}; re-export the bundle (exporters write samples.npz)")
            inputs.append({"name": spec.name, "shape": list(spec.shape), "key": key})
        folder = job_dir / bundle.name
        folder.mkdir()
        shutil.copy2(samples_file, folder / "samples.npz")
        models = []
        for key, mf in m.models.items():
            shutil.copy2(bundle.path / mf.file, folder / mf.file)
            models.append({"key": key, "file": mf.file, "format": mf.format, "precision": mf.precision})
        labels = samples.get("labels")
        bundles.append({"name": bundle.name, "folder": bundle.name, "samples": "samples.npz", "inputs": inputs,
                        "outputs": [{"name": o.name, "shape": list(o.shape)} for o in m.outputs], "models": models,
                        "has_labels": labels is not None, "synthetic_data": m.trained_on_synthetic_data})
    job = {"threads": threads, "bundles": bundles}
    (job_dir / "job.json").write_text(json.dumps(job, indent=1))
    shutil.copy2(RUNNER, job_dir / RUNNER.name)
    return job


def run_host(job_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The runner on this host with this Python; returns its ``runner.json``."""
    _run([sys.executable, job_dir / RUNNER.name, job_dir / "job.json", out_dir], "the runner on this host",
         "See the error above.", timeout=3600)
    return json.loads((out_dir / "runner.json").read_text())


def run_emulated(rootfs: Rootfs, job_dir: Path, out_dir: Path, cpu: str) -> dict[str, Any]:
    """The runner inside the root filesystem under qemu emulating ``cpu`` (a key of :data:`CPU_MODELS`);
    ``job_dir`` and ``out_dir`` must lie inside the root filesystem."""
    inside = lambda p: "/" + str(Path(p).relative_to(rootfs.path))  # noqa: E731
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": "/" + SITE, "HOME": "/root", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "QEMU_CPU": cpu}
    _run(chroot_python(rootfs.path, inside(job_dir / RUNNER.name), inside(job_dir / "job.json"), inside(out_dir)),
         "the runner under qemu-aarch64", "Rebuild the root filesystem (--rebuild) if python3 itself fails.", env=env,
         timeout=3 * 3600)
    return json.loads((out_dir / "runner.json").read_text())


# -- comparison -----------------------------------------------------------------------------------

def compare_outputs(reference: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray],
                    first_output: str) -> dict[str, Any]:
    """``test`` vs ``reference`` outputs (name -> ``[n, ...]``): argmax agreement of ``first_output`` over the
    last axis (fraction of windows), its largest absolute difference, and the largest per output."""
    ref, tst = np.asarray(reference[first_output]), np.asarray(test[first_output])
    if ref.shape != tst.shape:
        raise EmulationError(f"output '{first_output}' has shape {list(tst.shape)} on one side and "
                             f"{list(ref.shape)} on the other")
    n = ref.shape[0]
    agree = np.argmax(ref.reshape(n, -1), axis=1) == np.argmax(tst.reshape(n, -1), axis=1)
    return {"n_inputs": int(n), "argmax_agreement": float(agree.mean()) if n else None,
            "disagreeing_windows": [int(i) for i in np.flatnonzero(~agree)],
            "first_output_max_abs_error": float(np.max(np.abs(ref - tst))) if n else None,
            "max_abs_error": {k: float(np.max(np.abs(np.asarray(reference[k]) - np.asarray(test[k]))))
                              for k in reference if k in test and np.shape(reference[k]) == np.shape(test[k])}}


def accuracy(outputs: Mapping[str, np.ndarray], first_output: str, labels: np.ndarray | None) -> float | None:
    """Fraction of windows whose argmax of ``first_output`` equals the label (None without labels)."""
    if labels is None:
        return None
    y = np.asarray(outputs[first_output])
    return float(np.mean(np.argmax(y.reshape(len(y), -1), axis=1) == labels[:len(y)]))


def _load(folder: Path, bundle: str, key: str) -> dict[str, np.ndarray] | None:
    f = folder / f"{bundle}__{key}.npz"
    if not f.is_file():
        return None
    with np.load(f, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _timing(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not record or record.get("status") != "ok":
        return None
    return {k: record[k] for k in ("load_s", "first_ms", "median_ms", "n")}


def compare_runs(job: Mapping[str, Any], job_dir: Path, host_dir: Path, arm_dir: Path,
                 host_report: Mapping[str, Any], arm_report: Mapping[str, Any], cpu: str) -> list[dict[str, Any]]:
    """One row per bundle x model file for the emulated ``cpu``: status, aarch64-vs-host parity, accuracy,
    INT8-vs-FP32 on aarch64, timings."""
    rows = []
    for b in job["bundles"]:
        first = b["outputs"][0]["name"]
        labels = None
        if b.get("has_labels"):
            with np.load(job_dir / b["folder"] / b["samples"], allow_pickle=False) as z:
                labels = np.asarray(z["labels"])
        arm_fp32 = _load(arm_dir, b["name"], "fp32-onnx")
        for m in b["models"]:
            key = f"{b['name']}/{m['key']}"
            h_rec, a_rec = host_report["models"].get(key, {}), arm_report["models"].get(key, {})
            row: dict[str, Any] = {"cpu": cpu, "bundle": b["name"], "model": m["key"], "file": m["file"],
                                   "format": m["format"], "precision": m["precision"], "first_output": first}
            errors = {side: rec.get("error") for side, rec in (("x86_64", h_rec), ("aarch64", a_rec))
                      if rec.get("status") != "ok"}
            host_out, arm_out = _load(host_dir, b["name"], m["key"]), _load(arm_dir, b["name"], m["key"])
            if errors or host_out is None or arm_out is None:
                row.update(status="failed", reason="; ".join(f"{s}: {e}" for s, e in errors.items()) or "no outputs")
            else:
                row.update(status="ok", reason=None, parity=compare_outputs(host_out, arm_out, first),
                           label_accuracy={"x86_64": accuracy(host_out, first, labels),
                                           "aarch64": accuracy(arm_out, first, labels)},
                           aarch64_vs_fp32_onnx=(compare_outputs(arm_fp32, arm_out, first)["argmax_agreement"]
                                                 if arm_fp32 is not None and m["key"] != "fp32-onnx" else None))
            row["timing"] = {"x86_64": _timing(h_rec),
                             "aarch64_emulated": {"note": EMULATED_NOTE, **(_timing(a_rec) or {})}}
            rows.append(row)
    return rows


def build_result(rows: Sequence[Mapping[str, Any]], rootfs: Rootfs | Mapping[str, Any],
                 host_report: Mapping[str, Any], arm_report: Mapping[str, Any], emulator: str,
                 cpus: Sequence[str], device: Mapping[str, Any] | None = None, created_utc: str | None = None,
                 settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``arm64`` result (see SCHEMA.md) from :func:`compare_runs` rows (all CPUs), the host's and
    one emulated runner report (for versions), and the emulated ``cpus``. settings: how it was run
    (default: just the CPUs)."""
    from edgemer.benchmarks.result import make_result, target

    ok = [r for r in rows if r["status"] == "ok"]
    agreements = [r["parity"]["argmax_agreement"] for r in ok if r["parity"]["argmax_agreement"] is not None]
    worst = min(agreements) if agreements else None
    by_cpu = {cpu: min((r["parity"]["argmax_agreement"] for r in ok if r["cpu"] == cpu), default=None) for cpu in cpus}
    fs = {k: (str(v) if isinstance(v, Path) else v)
          for k, v in (asdict(rootfs) if isinstance(rootfs, Rootfs) else dict(rootfs)).items()}
    return make_result(
        "arm64",
        settings=dict(settings) if settings is not None else {"cpus": list(cpus)},
        targets=[target("arm64_argmax_parity", "every model file gives the same argmax on emulated aarch64 (every "
                        "CPU) as on x86-64 for every window of its parity set (worst model's agreement)",
                        worst, "== 1.0", None if worst is None else worst == 1.0 and len(ok) == len(rows),
                        "fraction")],
        device=device, created_utc=created_utc,
        bundle={"name": "arm64", "bundles": sorted({r["bundle"] for r in rows})},
        emulation={"emulator": emulator, "rootfs": fs, "cpus": {c: CPU_MODELS.get(c, "qemu CPU model") for c in cpus},
                   "command": "QEMU_CPU=<cpu> chroot ROOTFS /usr/bin/qemu-aarch64-static /usr/bin/python3 "
                              "arm64_runner.py JOB.json OUT_DIR", "timing_note": EMULATED_NOTE},
        versions={"x86_64": host_report.get("versions"), "aarch64": arm_report.get("versions")},
        results=list(rows),
        summary={"models": len(rows), "compared": len(ok), "failed": len(rows) - len(ok),
                 "min_argmax_agreement": worst, "min_argmax_agreement_by_cpu": by_cpu,
                 "windows": sum(r["parity"]["n_inputs"] for r in ok),
                 "disagreeing_windows": sum(len(r["parity"]["disagreeing_windows"]) for r in ok)},
    )


def format_result(result: Mapping[str, Any]) -> str:
    """The result on screen: one line per model file, then the target."""
    lines = [f"{'cpu':<11} {'bundle/model':<28} {'aarch64 vs x86_64 argmax':>24} {'max |diff|':>11} "
             f"{'acc x86/arm':>12} {'emulated ms*':>12}"]
    for r in result["results"]:
        name = f"{r['cpu']:<11} {r['bundle']}/{r['model']:<{27 - len(r['bundle'])}}"
        if r["status"] != "ok":
            lines.append(f"{name} FAILED: {r['reason']}")
            continue
        p, acc = r["parity"], r["label_accuracy"]
        accs = "-" if acc["x86_64"] is None else f"{acc['x86_64']:.3f}/{acc['aarch64']:.3f}"
        ms = r["timing"]["aarch64_emulated"].get("median_ms")
        lines.append(f"{name} {p['argmax_agreement'] * 100:>8.1f} % of {p['n_inputs']:>3} windows "
                     f"{p['first_output_max_abs_error']:>11.2e} {accs:>12} {'-' if ms is None else f'{ms:.1f}':>12}")
    t = result["targets"][0]
    mark = "not measured" if t["met"] is None else ("MET" if t["met"] else "NOT MET")
    lines += [f"* {EMULATED_NOTE}", f"target: {t['description']}: {t['value']} ({t['threshold']}) -> {mark}"]
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------------

def _qemu_version() -> str:
    try:
        out = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True, check=False)
        return out.stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return "qemu-aarch64-static (version unknown)"


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgemer bench arm64``; the result goes into benchmarks/results unless --json says otherwise."""
    parser.description = ("Run the shipped bundles on emulated aarch64 (qemu) and compare their argmax with x86-64. "
                          f"Needs root (sudo python3 -m edgemer bench arm64) and {INSTALL_SCRIPT}.")
    parser.set_defaults(json=Path("benchmarks/results"))
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, metavar="DIR",
                        help=f"cache for the root filesystem and wheels (default {DEFAULT_WORK})")
    parser.add_argument("--bundles", default=None, metavar="NAMES",
                        help="comma-separated bundle names or folders (default: every shipped bundle)")
    parser.add_argument("--suite", default=DEFAULT_SUITE, help=f"Debian suite of the root filesystem ({DEFAULT_SUITE})")
    parser.add_argument("--mirror", default=DEFAULT_MIRROR, help=f"Debian mirror ({DEFAULT_MIRROR})")
    parser.add_argument("--threads", type=int, default=1, help="inference threads on both sides (default 1)")
    others = ", ".join(sorted(set(CPU_MODELS) - set(DEFAULT_CPUS)))
    parser.add_argument("--cpus", default=",".join(DEFAULT_CPUS), metavar="MODELS",
                        help=f"comma-separated qemu CPU models to emulate, one run each (default "
                             f"{','.join(DEFAULT_CPUS)} = Pi 4, Pi 5; also {others})")
    parser.add_argument("--latest", action="store_true",
                        help="install the newest aarch64 wheels instead of this host's onnxruntime/LiteRT/numpy "
                             "versions")
    parser.add_argument("--no-binfmt", action="store_true",
                        help="do not register qemu with binfmt_misc; unpack the packages with dpkg-deb instead")
    parser.add_argument("--rebuild", action="store_true", help="delete and rebuild the cached root filesystem")


def run(args: argparse.Namespace) -> int:
    """``edgemer bench arm64``: build/reuse the root filesystem, run, compare, print, write.

    Returns 0 when the parity target is met, 1 when not. Raises :class:`EmulationError` (one line on the
    command line) when the host cannot emulate or ``--cpus`` names an unknown model.
    """
    from edgemer.benchmarks.result import write_json
    from edgemer.bundle import list_shipped_bundles

    cpus = [c.strip() for c in args.cpus.split(",") if c.strip()]
    unknown = [c for c in cpus if c not in CPU_MODELS]
    if not cpus or unknown:
        raise EmulationError(f"--cpus must name qemu CPU models among {sorted(CPU_MODELS)}, got {args.cpus!r}")
    check_host()
    work = args.work.expanduser().absolute()
    rootfs = build_rootfs(work, args.suite, args.mirror, use_binfmt=not args.no_binfmt, rebuild=args.rebuild)
    pinned = {d: None for d in PACKAGES} if args.latest else host_versions()
    installed = install_wheels(work, rootfs, pinned)
    print(f"aarch64 packages: {installed}")
    refs = [b.strip() for b in args.bundles.split(",")] if args.bundles else list_shipped_bundles()
    job_dir = rootfs.path / "opt/edgemer-arm64/job"
    job = prepare_job(refs, job_dir, args.threads)
    print(f"x86_64: running {sum(len(b['models']) for b in job['bundles'])} model files ...")
    host_report = run_host(job_dir, job_dir / "out-x86_64")
    rows, arm_report = [], {}
    for cpu in cpus:
        print(f"aarch64 (emulated {cpu}): running the same models under qemu ...")
        out = job_dir / f"out-aarch64-{cpu}"
        arm_report = run_emulated(rootfs, job_dir, out, cpu)
        rows += compare_runs(job, job_dir, job_dir / "out-x86_64", out, host_report, arm_report, cpu)
    settings = {"cpus": cpus, "bundles": refs, "threads": args.threads, "suite": args.suite, "mirror": args.mirror,
                "latest": args.latest, "binfmt": not args.no_binfmt}
    result = build_result(rows, rootfs, host_report, arm_report, _qemu_version(), cpus, settings=settings)
    print(format_result(result))
    if args.json is not None:
        print(f"wrote {write_json(result, args.json)}")
    return 0 if result["targets"][0]["met"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Deprecated spelling ``sudo python3 -m edgemer.benchmarks.arm64_parity``: runs ``edgemer bench arm64``
    (``--out-dir DIR`` is now ``--json DIR``)."""
    from edgemer.benchmarks.commands import deprecated_main

    argv = ["--json" if a == "--out-dir" else a for a in (sys.argv[1:] if argv is None else argv)]
    return deprecated_main("python3 -m edgemer.benchmarks.arm64_parity", "arm64", argv)


if __name__ == "__main__":
    sys.exit(main())
