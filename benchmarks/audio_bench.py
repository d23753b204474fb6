"""Speech-path benchmark: the audio modality's targets, measured and printed.

    edgemer bench audio [--bundle audio-demo] [--hf-model-dir DIR] [--json FILE_OR_DIR]

1. Log-mel front-end vs librosa on the same 10 s clip: max |difference| in dB after the
   same top_db clipping (target <= 1e-3 dB) and the speed ratio librosa / edgemer
   (target >= 1: edgemer at least as fast). Needs librosa (extra ``[dev]``).
2. INT8 vs FP32 of the CNN bundle on speech windows through edgemer's backends: argmax
   agreement (target >= 99 %), regression r of arousal/valence/dominance (target >=
   0.99), latency at one thread and the FP32/INT8 speed ratio (target >= 2x).
3. End to end: a WAV replayed through the real pipeline (INT8, one thread, the process
   pinned to one core): latency from the arrival of the newest audio block to the
   estimate (p50, p99) and the real-time factor of the audio path (audio seconds per
   second of front-end + voice-activity + inference time; goal >= 50x).
4. The transformer path: a tiny randomly initialised wav2vec2 (or ``--hf-model-dir``)
   exported through optimum; INT8 vs FP32 output correlation (target >= 0.99). Needs the
   ``[hf]`` extra; skipped (and said so) without it.

Timings are medians of repeated runs on this machine; compare ratios across machines,
not absolute numbers. ``--json FILE_OR_DIR`` writes the result (kind ``audio``, the common
schema of benchmarks/SCHEMA.md), e.g. into ``benchmarks/results/``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from edgemer.benchmarks.result import target


def _median_ms(fn: Callable[[], Any], repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _speech_clip(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """espeak-ng speech (where installed) or the voiced stand-in, with pauses and a -60 dBFS floor."""
    from edgemer.errors import DatasetError
    from edgemer.export.audio.synth import SENTENCES, VOICES, synthesise, voiced_sound

    rng = np.random.default_rng(seed)
    parts, n = [], int(seconds * rate)
    total = 0
    i = 0
    while total < n:
        try:
            x = synthesise(SENTENCES[i % len(SENTENCES)], VOICES[i % len(VOICES)], int(rng.integers(110, 220)),
                           int(rng.integers(25, 75)), int(rng.integers(50, 180)))
        except DatasetError:
            x = voiced_sound(2.0, rate, seed=seed + i)
        pause = np.zeros(int(rng.uniform(0.2, 0.8) * rate), np.float32)
        parts += [x, pause]
        total += x.size + pause.size
        i += 1
    clip = np.concatenate(parts)[:n]
    return clip + rng.standard_normal(n).astype(np.float32) * 1e-3


def bench_log_mel(repeat: int) -> dict[str, Any]:
    from edgemer.frontends.audio_dsp import LogMelExtractor, MelConfig

    cfg = MelConfig()
    x = _speech_clip(10.0)
    ours = LogMelExtractor(cfg)
    out: dict[str, Any] = {"clip_s": 10.0, "edgemer_ms": _median_ms(lambda: ours(x), repeat)}
    try:
        import librosa
    except ImportError:
        out["skipped"] = "librosa not installed (pip install 'edgemer[dev]')"
        return out

    def ref() -> np.ndarray:
        s = librosa.feature.melspectrogram(y=x, sr=cfg.sample_rate_hz, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                           win_length=cfg.win_length, window="hann", center=cfg.center,
                                           pad_mode="constant", power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin_hz,
                                           fmax=cfg.fmax_hz, htk=False, norm="slaney")
        return librosa.power_to_db(s, ref=cfg.ref_power, amin=cfg.amin, top_db=cfg.top_db)

    out["max_abs_diff_db"] = float(np.max(np.abs(ours(x) - ref())))
    out["librosa_ms"] = _median_ms(ref, repeat)
    out["speed_ratio"] = out["librosa_ms"] / out["edgemer_ms"]
    out["librosa_version"] = librosa.__version__
    return out


def _bundle_windows(bundle, n: int) -> np.ndarray:
    """Model inputs from speech windows through the bundle's own front-end, plus its samples.npz."""
    from edgemer.frontends.audio import AudioFrontEnd
    from edgemer.types import Window

    fe = AudioFrontEnd.from_manifest(bundle.manifest)
    clip = _speech_clip(n * 1.0 + fe.window_s, seed=1)
    rows = []
    k = int(fe.config.sample_rate_hz)
    for i in range(n):
        x = clip[i * k:i * k + fe.config.n_samples]
        w = Window(t_end=0.0, length_s=fe.window_s, streams={"audio": x[:, None]}, coverage={"audio": 1.0})
        rows.append(fe.features(fe.window_samples(w)[0]))
    samples = bundle.samples().get("signals")
    inputs = np.concatenate(rows)
    return np.concatenate([inputs, samples]) if samples is not None else inputs


def bench_int8(bundle_ref: str, repeat: int, windows: int) -> dict[str, Any]:
    from edgemer.backends import open_session
    from edgemer.bundle import load_bundle
    from edgemer.export.audio.verify import pearson
    from edgemer.export.core.verify import BACKEND_OF_FORMAT

    bundle = load_bundle(bundle_ref)
    m = bundle.manifest
    x = _bundle_windows(bundle, windows)
    name = m.inputs[0].name
    cls = m.front_end.get("outputs", {}).get("classes")
    dims = (m.front_end.get("outputs", {}).get("dimensions") or {}).get("output")
    outs, lat = {}, {}
    for key, mf in m.models.items():
        try:
            session = open_session(bundle, BACKEND_OF_FORMAT[mf.format], mf.precision, threads=1)
        except Exception as exc:  # e.g. LiteRT not installed on this device
            lat[key] = f"unavailable: {exc}"
            continue
        outs[key] = {o.name: np.concatenate([session.run({name: x[i:i + 1]})[o.name] for i in range(len(x))])
                     for o in m.outputs}
        lat[key] = _median_ms(lambda: session.run({name: x[:1]}), repeat)
    result: dict[str, Any] = {"bundle": m.name, "windows": int(len(x)), "latency_ms_1_thread": lat, "comparisons": {}}
    for ref, cand in (("fp32-onnx", "int8-onnx"), ("fp32-onnx", "int8-tflite")):
        if ref not in outs or cand not in outs:
            continue
        row: dict[str, Any] = {}
        if cls:
            row["argmax_agreement"] = float(np.mean(outs[ref][cls].argmax(1) == outs[cand][cls].argmax(1)))
        if dims:
            names = m.front_end["outputs"]["dimensions"]["names"]
            row["regression_r"] = {n: pearson(outs[ref][dims][:, i], outs[cand][dims][:, i])
                                   for i, n in enumerate(names)}
        if isinstance(lat.get(ref), float) and isinstance(lat.get(cand), float):
            row["speed_ratio"] = lat[ref] / lat[cand]
        result["comparisons"][f"{cand} vs {ref}"] = row
    return result


def bench_end_to_end(bundle_ref: str, seconds: float, speed: float) -> dict[str, Any]:
    from scipy.io import wavfile

    from edgemer.pipeline import Pipeline, PipelineConfig
    from edgemer.sources.wav_replay import WavReplay

    with tempfile.TemporaryDirectory(prefix="edgemer-audio-bench-") as tmp:
        path = Path(tmp) / "speech.wav"
        clip = _speech_clip(seconds, seed=2)
        wavfile.write(path, 16000, np.clip(np.round(clip * 32767), -32768, 32767).astype(np.int16))
        source = WavReplay(path, speed=speed, block_s=0.032)
        latencies, work, empty = [], 0.0, 0
        with Pipeline([source], [bundle_ref], PipelineConfig(precision="int8", threads=1)) as pipe:
            for est in pipe:
                if est.modalities:
                    latencies.append(est.latency_s)
                work += est.frontend_s + est.inference_s
            stats = pipe.stats()
        empty = sum(b.get("empty_windows", 0) for b in stats["bundles"].values())
        hop = pipe.hop_s
    n = stats["estimates"]
    return {"audio_s": seconds, "speed": speed, "estimates": n, "no_speech_windows": empty,
            "latency_ms_p50": float(np.percentile(latencies, 50) * 1000) if latencies else float("nan"),
            "latency_ms_p99": float(np.percentile(latencies, 99) * 1000) if latencies else float("nan"),
            "processing_ms_per_window": work / max(n, 1) * 1000,
            "real_time_factor": (n * hop) / work if work > 0 else float("inf")}


def bench_hf(model_dir: str | None) -> dict[str, Any]:
    try:
        import optimum.onnxruntime  # noqa: F401
        import transformers
    except ImportError:
        return {"skipped": "optimum not installed (pip install 'edgemer[export,hf]')"}
    from edgemer.export.audio.config import HfExportConfig
    from edgemer.export.audio.transformer import export_hf

    with tempfile.TemporaryDirectory(prefix="edgemer-hf-bench-") as tmp:
        if model_dir is None:
            import torch

            labels = ["angry", "happy", "neutral", "sad"]
            cfg = transformers.Wav2Vec2Config(
                hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4), num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=4, classifier_proj_size=32, num_labels=4,
                id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)})
            torch.manual_seed(0)
            model_dir = str(Path(tmp) / "tiny-wav2vec2")
            transformers.Wav2Vec2ForSequenceClassification(cfg).save_pretrained(model_dir)
            transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(model_dir)
            what = "tiny random wav2vec2 (2 layers, hidden 64)"
        else:
            what = model_dir
        result = export_hf(Path(model_dir), Path(tmp) / "bundle", HfExportConfig(verify_windows=16))
    row = result.verification["comparisons"]["int8-onnx vs fp32-onnx"]
    return {"model": what, "int8_vs_fp32_r": row["r"], "argmax_agreement": row.get("argmax_agreement"),
            "size_ratio": row["size_ratio"]}


def audio_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets as ``{id, description, value, threshold, met}`` rows (value/met null when not measured)."""
    lm, q, e, h = res["log_mel"], res["int8"], res["end_to_end"], res["hf"]
    rows = [target("log_mel_vs_librosa_db", "max |edgemer - librosa| log-mel on a 10 s clip, dB",
                   lm.get("max_abs_diff_db"), "<= 1e-3",
                   None if "max_abs_diff_db" not in lm else lm["max_abs_diff_db"] <= 1e-3, "dB"),
            target("log_mel_speed_ratio", "librosa time / edgemer time for the same log-mel", lm.get("speed_ratio"),
                   ">= 1", None if "speed_ratio" not in lm else lm["speed_ratio"] >= 1, "ratio")]
    for label, row in q["comparisons"].items():
        tag = label.split(" vs ")[0].replace("-", "_")
        agree, r, speed = row.get("argmax_agreement"), row.get("regression_r"), row.get("speed_ratio")
        rmin = min(r.values()) if r else None
        rows += [target(f"{tag}_argmax_agreement", f"{label}: argmax agreement", agree, ">= 0.99",
                        None if agree is None else agree >= 0.99, "fraction"),
                 target(f"{tag}_regression_r", f"{label}: lowest arousal/valence/dominance correlation", rmin,
                        ">= 0.99", None if rmin is None else rmin >= 0.99, "r"),
                 target(f"{tag}_speed_ratio_1_thread", f"{label}: FP32 / INT8 latency at one thread", speed, ">= 2",
                        None if speed is None else speed >= 2, "ratio")]
    rtf = e.get("real_time_factor")
    rtf = rtf if rtf is not None and np.isfinite(rtf) else None  # no estimate or no timed work: not measured
    rows.append(target("audio_real_time_factor", "audio seconds per second of front-end + VAD + inference, one "
                       "core (goal)", rtf, ">= 50", None if rtf is None else rtf >= 50, "ratio"))
    hr = h.get("int8_vs_fp32_r")
    rows.append(target("wav2vec2_int8_vs_fp32_r", "tiny wav2vec2 through optimum: INT8 vs FP32 output correlation",
                       hr, ">= 0.99", None if hr is None else hr >= 0.99, "r"))
    return rows


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Measure and print every part; returns the result (kind ``audio``, benchmarks/SCHEMA.md)."""
    from edgemer.benchmarks.result import make_result, now_utc
    from edgemer.bundle import load_bundle

    if args.one_core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    bundle = load_bundle(args.bundle)
    res = make_result("audio", settings={"repeat": args.repeat, "windows": args.windows, "seconds": args.seconds,
                                         "speed": args.speed, "one_core": args.one_core,
                                         "hf_model_dir": args.hf_model_dir, "transformer": not args.no_transformer},
                      bundle={"name": bundle.manifest.name, "path": str(bundle.path),
                              "synthetic_data": bool(bundle.manifest.provenance.get("synthetic_data"))},
                      machine={"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                               "cores_used": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                               else os.cpu_count()})
    print(f"edgemer audio benchmark ({res['machine']['cores_used']} core(s); medians of {args.repeat} runs)")
    lm = res["log_mel"] = bench_log_mel(args.repeat)
    if "skipped" in lm:
        print(f"log-mel   edgemer {lm['edgemer_ms']:.2f} ms per 10 s clip; vs librosa skipped: {lm['skipped']}")
    else:
        print(f"log-mel   10 s clip: max |edgemer - librosa| {lm['max_abs_diff_db']:.2e} dB (target <= 1e-3) "
              f"{_verdict(lm['max_abs_diff_db'] <= 1e-3)}; edgemer {lm['edgemer_ms']:.2f} ms, librosa "
              f"{lm['librosa_ms']:.2f} ms, speed ratio {lm['speed_ratio']:.2f}x (target >= 1) "
              f"{_verdict(lm['speed_ratio'] >= 1)}")
    q = res["int8"] = bench_int8(args.bundle, args.repeat, args.windows)
    lat = ", ".join(f"{k} {v:.3f} ms" if isinstance(v, float) else f"{k} {v}" for k, v in q["latency_ms_1_thread"].items())
    print(f"INT8      bundle {q['bundle']}, {q['windows']} windows; latency at 1 thread: {lat}")
    for label, row in q["comparisons"].items():
        parts = []
        if "argmax_agreement" in row:
            parts.append(f"argmax agreement {row['argmax_agreement']:.1%} (>= 99 %) "
                         f"{_verdict(row['argmax_agreement'] >= 0.99)}")
        if "regression_r" in row:
            r = row["regression_r"]
            parts.append("regression r " + ", ".join(f"{k} {v:.4f}" for k, v in r.items())
                         + f" (>= 0.99) {_verdict(min(r.values()) >= 0.99)}")
        if "speed_ratio" in row:
            parts.append(f"speed ratio {row['speed_ratio']:.2f}x (>= 2x) {_verdict(row['speed_ratio'] >= 2)}")
        print(f"          {label}: " + "; ".join(parts))
    e = res["end_to_end"] = bench_end_to_end(args.bundle, args.seconds, args.speed)
    print(f"pipeline  {e['audio_s']:.0f} s of speech replayed at x{e['speed']:g}: {e['estimates']} estimates "
          f"({e['no_speech_windows']} without speech); block arrival -> estimate p50 {e['latency_ms_p50']:.1f} ms, "
          f"p99 {e['latency_ms_p99']:.1f} ms; {e['processing_ms_per_window']:.2f} ms per window; real-time factor "
          f"{e['real_time_factor']:.0f}x on one core (goal >= 50x) {_verdict(e['real_time_factor'] >= 50)}")
    h = res["hf"] = ({"skipped": "--no-transformer given"} if args.no_transformer else bench_hf(args.hf_model_dir))
    if "skipped" in h:
        print(f"wav2vec2  skipped: {h['skipped']}")
    else:
        print(f"wav2vec2  {h['model']} through optimum: INT8 vs FP32 output correlation {h['int8_vs_fp32_r']:.5f} "
              f"(>= 0.99) {_verdict(h['int8_vs_fp32_r'] >= 0.99)}"
              + (f", argmax agreement {h['argmax_agreement']:.1%}" if h.get("argmax_agreement") is not None else ""))
    res["targets"] = audio_targets(res)
    res["created_utc"] = now_utc()
    met = [t for t in res["targets"] if t["met"] is not None]
    print(f"targets   {sum(t['met'] for t in met)} of {len(met)} measured targets met"
          + (f"; not met: {', '.join(t['id'] for t in met if not t['met'])}" if not all(t["met"] for t in met) else "")
          + (f"; not measured: {', '.join(t['id'] for t in res['targets'] if t['met'] is None)}"
             if len(met) < len(res["targets"]) else ""))
    return res


def configure(p: argparse.ArgumentParser) -> None:
    """Options of ``edgemer bench audio``."""
    p.description = ("Measure the speech path against the audio modality's targets: log-mel vs librosa, INT8 vs "
                     "FP32 of the CNN bundle, a WAV replayed end to end, and a wav2vec2 exported through optimum.")
    p.add_argument("--bundle", default="audio-demo", help="CNN speech bundle (default: the shipped audio-demo)")
    p.add_argument("--hf-model-dir", default=None, metavar="DIR",
                   help="a local wav2vec2/HuBERT checkpoint for the transformer line (default: a tiny random one)")
    p.add_argument("--no-transformer", action="store_true",
                   help="skip the wav2vec2 line (it exports a transformer through optimum: the slowest part)")
    p.add_argument("--repeat", type=int, default=50, help="timed runs per measurement (default 50)")
    p.add_argument("--windows", type=int, default=256,
                   help="speech windows for the INT8 parity, besides the bundle's samples.npz (default 256: one "
                        "window is 0.4 %%, fine enough to test the 99 %% agreement target)")
    p.add_argument("--seconds", type=float, default=60.0, help="audio replayed end to end, s (default 60)")
    p.add_argument("--speed", type=float, default=10.0, help="replay speed for the end-to-end run (default 10)")
    p.add_argument("--all-cores", dest="one_core", action="store_false",
                   help="do not pin the process to one core (default: pinned)")


def run(args: argparse.Namespace) -> int:
    """``edgemer bench audio``: measure, print PASS/FAIL per target, write with --json; 0."""
    from edgemer.benchmarks.result import write_json

    res = measure(args)
    if args.json is not None:
        print(f"results written to {write_json(res, args.json)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Deprecated spelling ``python3 -m edgemer.benchmarks.audio_bench``: runs ``edgemer bench audio``."""
    from edgemer.benchmarks.commands import deprecated_main

    return deprecated_main("python3 -m edgemer.benchmarks.audio_bench", "audio", argv)


if __name__ == "__main__":
    sys.exit(main())
