"""Standalone model runner for the emulated-aarch64 parity check (see ``arm64_parity.py``).

Runs inside the arm64 root filesystem, where edgemer itself is not installed, so it
imports only numpy, onnxruntime and ai_edge_litert (LiteRT) — never edgemer. The same
file runs on the x86-64 host, so both sides execute identical code::

    python3 arm64_runner.py JOB.json OUT_DIR

``JOB.json``: ``{"threads": 1, "bundles": [{"name", "folder", "samples", "inputs": [{name,
shape}], "outputs": [{name, shape}], "models": [{"key", "file", "format", "precision"}]}]}``
(paths relative to the job file). Every window of ``samples`` (``[n, *input_shape[1:]]``
float32) is run alone (batch 1). Fully-integer TFLite models get int8 inputs quantised
with the tensor's scale and zero point, and their int8 outputs dequantised — the same
arithmetic as :mod:`edgemer.backends.litert_backend` (kept separate here on purpose:
this file must not import edgemer).

Writes ``OUT_DIR/<bundle>__<model key>.npz`` (one array per manifest output,
``[n, *output_shape]`` float32) and ``OUT_DIR/runner.json``: machine, versions, and per
model ``status`` (``ok``/``failed``), ``error``, ``load_s`` (s), ``first_ms`` and
``median_ms`` (ms per window), ``n``.
"""
from __future__ import annotations

import json
import platform
import re
import sys
import time
import traceback
from pathlib import Path


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for module in ("numpy", "onnxruntime", "ai_edge_litert"):
        try:
            out[module] = __import__(module).__version__
        except Exception as exc:  # absent or broken: record why
            out[module] = None
            out[f"{module}_error"] = f"{type(exc).__name__}: {exc}"[:200]
        if module == "ai_edge_litert" and out[module] is None:
            try:
                from importlib.metadata import version

                out[module] = version("ai-edge-litert")
                out.pop(f"{module}_error", None)
            except Exception:
                pass
    return out


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class OnnxModel:
    def __init__(self, path: Path, threads: int, inputs, outputs) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs, self.outputs = inputs, outputs

    def run(self, feeds: dict) -> dict:
        names = [o["name"] for o in self.outputs]
        return dict(zip(names, self.session.run(names, feeds)))


class TfliteModel:
    def __init__(self, path: Path, threads: int, inputs, outputs) -> None:
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter

        self.np = np
        self.interp = Interpreter(model_path=str(path), num_threads=threads)
        self.interp.allocate_tensors()
        self.runner = self.interp.get_signature_runner()
        ins, outs = self.runner.get_input_details(), self.runner.get_output_details()
        self.in_names, self.out_names = sorted(ins, key=_natural_key), sorted(outs, key=_natural_key)
        self.in_details, self.out_details = [ins[n] for n in self.in_names], [outs[n] for n in self.out_names]
        self.inputs, self.outputs = inputs, outputs

    def run(self, feeds: dict) -> dict:
        np = self.np
        call = {}
        for spec, sig, det in zip(self.inputs, self.in_names, self.in_details):
            x = feeds[spec["name"]]
            dtype = np.dtype(det["dtype"])
            if np.issubdtype(dtype, np.integer):
                scale, zp = det["quantization"]
                info = np.iinfo(dtype)
                x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dtype)
            call[sig] = x
        raw = self.runner(**call)
        out = {}
        for spec, sig, det in zip(self.outputs, self.out_names, self.out_details):
            y = raw[sig]
            if np.issubdtype(y.dtype, np.integer):
                scale, zp = det["quantization"]
                y = (y.astype(np.float32) - zp) * scale
            out[spec["name"]] = np.asarray(y, np.float32).reshape(spec["shape"])
        return out


def run_model(bundle: dict, model: dict, root: Path, threads: int, out_dir: Path) -> dict:
    """Run one model over every sample window; write its outputs; return its record."""
    import numpy as np

    folder = root / bundle["folder"]
    with np.load(folder / bundle["samples"], allow_pickle=False) as z:
        windows = {spec["name"]: np.asarray(z[spec["key"]], np.float32) for spec in bundle["inputs"]}
    n = min(len(w) for w in windows.values())
    cls = OnnxModel if model["format"] == "onnx" else TfliteModel
    t0 = time.perf_counter()
    m = cls(folder / model["file"], threads, bundle["inputs"], bundle["outputs"])
    load_s = time.perf_counter() - t0
    times, results = [], []
    for i in range(n):
        feeds = {name: w[i:i + 1] for name, w in windows.items()}
        t0 = time.perf_counter()
        results.append(m.run(feeds))
        times.append((time.perf_counter() - t0) * 1e3)
    arrays = {o["name"]: np.stack([np.asarray(r[o["name"]], np.float32).reshape(o["shape"]) for r in results])
              for o in bundle["outputs"]}
    np.savez(out_dir / f"{bundle['name']}__{model['key']}.npz", **arrays)
    return {"status": "ok", "error": None, "n": n, "load_s": load_s, "first_ms": times[0],
            "median_ms": float(np.median(times))}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: arm64_runner.py JOB.json OUT_DIR", file=sys.stderr)
        return 2
    job_path, out_dir = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"machine": platform.machine(), "versions": _versions(), "models": {}}
    for bundle in job["bundles"]:
        for model in bundle["models"]:
            key = f"{bundle['name']}/{model['key']}"
            try:
                report["models"][key] = run_model(bundle, model, job_path.parent, int(job.get("threads", 1)), out_dir)
            except Exception as exc:  # one model failing must not hide the others
                report["models"][key] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500],
                                         "traceback": traceback.format_exc(limit=4)}
            print(f"{report['machine']}: {key}: {report['models'][key]['status']}", file=sys.stderr, flush=True)
    (out_dir / "runner.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
