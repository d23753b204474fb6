"""The ``edgemer`` command line.

Runtime commands (``demo``, ``run``, ``info``, ``bench``) need only the core install;
host commands (``data``, ``export``) import the ``[export]`` extra when they run.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import statistics
import sys
import threading
from pathlib import Path
from typing import Sequence

from edgemer.errors import ConfigError, EdgemerError

REAL_DATA_HINT = "edgemer export physio --wesad /path/to/WESAD --out my-physio-bundle"


def _speed(text: str) -> float:
    """--speed: a number, or 'max' (as fast as the pipeline processes)."""
    from edgemer.clock import parse_speed

    try:
        return parse_speed(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_run_options(p: argparse.ArgumentParser) -> None:
    # Every default is None, so that an option given on the command line can be told from one left
    # out: with --config, only the given ones replace the file's values (defaults apply where used).
    p.add_argument("--speed", type=_speed, default=None,
                   help="stream seconds per wall second for simulated/replayed sources (default 1 = real time); "
                        "'max': as fast as the pipeline processes, in lockstep (every window, nothing dropped)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stream seconds to run (default: until Ctrl-C, or the end of a replay)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE.jsonl",
                   help="also write every estimate as one JSON object per line")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "litert"), default=None,
                   help="inference runtime; 'auto' (default) runs each bundle's fastest verified file measured on "
                        "this device (cached; 'edgemer bench engines' shows it); litert needs: pip install "
                        "'edgemer[tflite]'")
    p.add_argument("--precision", choices=("auto", "int8", "fp32"), default=None,
                   help="model precision (default auto); pin --backend and --precision for a fixed deployment")
    p.add_argument("--threads", type=int, default=None,
                   help="inference threads (default: chosen with the engine; 1 when backend and precision are pinned)")
    p.add_argument("--providers", default=None,
                   help="onnxruntime execution providers, comma-separated: cpu, cuda, tensorrt (default cpu)")
    p.add_argument("--seed", type=int, default=None, help="seed of the simulated wearable (default 0)")
    p.add_argument("--record", type=Path, default=None, metavar="FOLDER",
                   help="record the raw sensor chunks (never audio/video) to FOLDER; replay with "
                        "--source replay:FOLDER")
    p.add_argument("--calibrate", type=float, default=None, metavar="SECONDS",
                   help="start with a resting phase of SECONDS that records the wearer's baseline (e.g. 120)")
    p.add_argument("--baseline", type=Path, default=None, metavar="FILE.json",
                   help="with --calibrate: save the baseline there; alone: load a saved baseline (no phase)")
    p.add_argument("--user", default=None, help="whose baseline this is (default 'default')")
    p.add_argument("--quiet", action="store_true", default=None, help="print no per-estimate lines (summary only)")


def build_parser() -> argparse.ArgumentParser:
    from edgemer import __version__

    parser = argparse.ArgumentParser(
        prog="edgemer",
        description="On-device multimodal emotion and stress recognition for wearables and edge boards.",
        epilog="Run 'edgemer COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"edgemer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="simulated wrist wearable -> shipped physiology bundle, live in the terminal",
                          description="Stream a simulated wrist wearable (EDA 4 Hz, BVP 64 Hz, TEMP 4 Hz, ACC 32 Hz) "
                                      "through the runtime and the shipped physio-demo bundle (on its fastest "
                                      "verified model file here, unless --backend/--precision pin one). "
                                      "No hardware, no downloads.")
    _add_run_options(demo)
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="run a bundle on a source",
                         description="Run a bundle on a sensor source and print estimates. With --config FILE.toml "
                                     "the file describes the run, and every option given on the command line "
                                     "replaces the file's value wherever the file sets it (e.g. --duration also "
                                     "each [[source]]'s duration_s, --backend also each [[bundle]]'s backend, "
                                     "--calibrate/--baseline the whole [calibration] table); the header line says "
                                     "which values came from where. --bundle and --source cannot be combined with "
                                     "--config (the file's [[bundle]] and [[source]] tables name them).")
    run.add_argument("--bundle", help="bundle folder or shipped bundle name (see 'edgemer info')")
    run.add_argument("--config", type=Path, default=None, metavar="FILE.toml",
                     help="describe sources, bundles, fusion and sinks in a TOML file (see examples/); options "
                          "given on the command line replace the file's values")
    run.add_argument("--source", default=None,
                     help="(default 'simulated') 'simulated', 'replay:PATH[:SUBJECT]' (WESAD-layout folder or "
                          "subject .pkl) or "
                          "'serial:PORT[@BAUD]' (a wearable or 'edgemer emulate' on a serial port); for face "
                          "bundles 'camera[:INDEX[:WIDTHxHEIGHT[@FPS]]]' or 'replay:VIDEO_OR_IMAGE_DIR[@FPS]'; for "
                          "audio bundles 'mic[:DEVICE][@CAPTURE_RATE_HZ]' (device index or part of its name) or "
                          "'replay:FILE.wav' ('replay:speech-example' plays the shipped example)")
    run.add_argument("--analysis-fps", type=float, default=None, metavar="FPS",
                     help="face bundles: frames analysed per second, independent of the camera rate "
                          "(default: the bundle's, e.g. 5)")
    run.add_argument("--face-detector", default=None, metavar="blazeface-short|blazeface-full|haar|FILE.onnx",
                     help="face bundles: 'blazeface' (MediaPipe BlazeFace shipped with edgemer: full range for "
                          "whole frames, short range around the tracked face), 'blazeface-full', 'blazeface-short', "
                          "'haar' (OpenCV cascade, [camera]) or a YuNet-format ONNX file (default: the bundle's)")
    run.add_argument("--face-selection", default=None, choices=("largest", "tracked"),
                     help="face bundles: analyse the largest face of each frame, or follow one face from frame to "
                          "frame ('tracked': for a live camera; with BlazeFace or Haar it searches only near the "
                          "face's last box between whole-frame searches, several times cheaper) "
                          "(default: 'tracked' for a camera or a video file, else the bundle's, 'largest')")
    run.add_argument("--vad", default=None, metavar="energy|silero[:FILE.onnx]|none",
                     help="audio bundles: the voice-activity gate; 'silero' uses the Silero VAD model of an installed "
                          "silero-vad package, 'silero:FILE.onnx' a given file (default: the bundle's, 'energy')")
    _add_run_options(run)
    run.set_defaults(func=cmd_run)

    info = sub.add_parser("info", help="verify and describe a bundle, or list shipped bundles",
                          description="With a bundle: verify its files (sha256, sizes, schema) and describe it. "
                                      "Without: list the bundles shipped in the package.")
    info.add_argument("bundle", nargs="?", help="bundle folder or shipped bundle name")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    info.set_defaults(func=cmd_info)

    from edgemer.benchmarks.commands import add_bench_commands

    add_bench_commands(sub)  # edgemer bench KIND (and the deprecated, unlisted bridge-bench)

    from edgemer.firmware_bridge.commands import configure_emulate, run_emulate

    emulate = sub.add_parser("emulate", help="an emulated wrist wearable on a pseudo-terminal (serial link tests)",
                             description="Open a pseudo-terminal that behaves like a wrist wearable speaking the "
                                         "edgemer wire protocol: it announces its streams, sends simulated signals "
                                         "(the simulator of 'edgemer demo'), answers commands and injects faults "
                                         "on request. Prints the port; run 'edgemer run --source serial:PORT'.")
    configure_emulate(emulate)
    emulate.set_defaults(func=run_emulate)

    from edgemer.export.physio.commands import (configure_export_physio, configure_synth_wesad,
                                                run_export_physio, run_synth_wesad)

    data = sub.add_parser("data", help="make data sets (host side)")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    synth = data_sub.add_parser("synth-wesad", help="write a synthetic data set in the WESAD layout",
                                description="Write synthetic subjects in the WESAD layout (DIR/S2/S2.pkl ...) from "
                                            "the EDA dynamics ODE with known parameters (DIR/truth.json).")
    configure_synth_wesad(synth)
    synth.set_defaults(func=run_synth_wesad)
    from edgemer.export.physio import e4 as e4_to_wesad

    e4 = data_sub.add_parser("e4-to-wesad", help="Empatica E4 sessions + a condition timetable -> a WESAD-layout folder",
                             description="Turn E4 connect exports (folders or .zip) and a timetable CSV "
                                         "(subject,condition,start_s,end_s) into a WESAD-layout folder for "
                                         "'edgemer export physio' and 'edgemer study physio'.")
    e4_to_wesad.configure(e4)
    e4.set_defaults(func=e4_to_wesad.run)

    export = sub.add_parser("export", help="train/convert models into INT8 bundles (host side, needs [export])")
    export_sub = export.add_subparsers(dest="export_command", metavar="EXPORT_COMMAND", required=True)
    physio = export_sub.add_parser("physio", help="train the multi-task PINN on a WESAD folder and write a bundle",
                                   description="Train the physiology multi-task PINN on a WESAD-layout folder and "
                                               "write a bundle: FP32 ONNX, INT8 ONNX, INT8 TFLite, manifest, "
                                               "verification report.")
    configure_export_physio(physio)
    physio.set_defaults(func=run_export_physio)

    from edgemer.export.face.commands import add_face_commands
    from edgemer.export.models import add_models_commands

    add_face_commands(data_sub, export_sub)
    from edgemer.export.audio.commands import add_audio_commands

    add_audio_commands(data_sub, export_sub)
    from edgemer.export.byo.commands import add_byo_commands as add_export_onnx_command

    add_export_onnx_command(export_sub)
    add_models_commands(sub)
    from edgemer.export.study.commands import add_study_commands

    add_study_commands(sub)
    return parser


def _pipeline_from_args(bundle_ref: str, source_spec: str, args: argparse.Namespace):
    from edgemer.pipeline import Pipeline, PipelineConfig
    from edgemer.sources import source_from_spec

    providers = _providers(args)
    given = {k: getattr(args, k) for k in ("backend", "precision", "threads") if getattr(args, k) is not None}
    config = PipelineConfig(providers=providers, **given)
    source = source_from_spec(source_spec, speed=1.0 if args.speed is None else args.speed, duration_s=args.duration,
                              seed=0 if args.seed is None else args.seed)
    bundle = bundle_ref
    fps, detector = getattr(args, "analysis_fps", None), getattr(args, "face_detector", None)
    from edgemer.frontends.face import default_face_selection

    selection = getattr(args, "face_selection", None) or default_face_selection(bundle_ref, [source])
    if fps is not None or detector is not None or selection is not None:
        from edgemer.bundle import load_bundle
        from edgemer.frontends.face import configure_face_bundle

        bundle = configure_face_bundle(load_bundle(bundle_ref), analysis_fps=fps, detector=detector,
                                       selection=selection)
    if getattr(args, "vad", None) is not None:
        from edgemer.bundle import Bundle, load_bundle
        from edgemer.frontends.audio import configure_audio_bundle

        bundle = configure_audio_bundle(bundle if isinstance(bundle, Bundle) else load_bundle(bundle), vad=args.vad)
    return Pipeline([source], [bundle], config=config, record=args.record, calibration=_calibration(args))


def _providers(args: argparse.Namespace) -> tuple[str, ...] | None:
    return tuple(p.strip() for p in args.providers.split(",")) if args.providers else None


def _calibration_table(args: argparse.Namespace) -> dict | None:
    """--calibrate / --baseline / --user as a [calibration] table (None when neither is given)."""
    user = {"user": args.user} if args.user is not None else {}
    if args.calibrate is not None:
        save = {"save_to": str(args.baseline.resolve())} if args.baseline is not None else {}
        return {"duration_s": args.calibrate, **user, **save}
    if args.baseline is not None:
        return {"load_from": str(args.baseline.resolve()), **user}
    return None


def _calibration(args: argparse.Namespace):
    from edgemer.calibration import CalibrationConfig

    table = _calibration_table(args)
    if table is None:
        return None
    return CalibrationConfig(**{k: Path(v) if k in ("save_to", "load_from") else v for k, v in table.items()})


_NOT_WITH_CONFIG = {"bundle": "its [[bundle]] tables name the bundles",
                    "source": "its [[source]] tables name the sources"}


def _config_overrides(args: argparse.Namespace) -> dict[str, dict]:
    """The options given with --config, as pipeline-file keys that replace the file's values
    (see edgemer.config.OVERRIDABLE); an option that cannot apply to a file is an error."""
    for name, why in _NOT_WITH_CONFIG.items():
        if getattr(args, name) is not None:
            raise ConfigError(f"--{name} cannot be used with --config: {args.config} describes the run and {why}; "
                              f"edit the file, or drop --config to run one bundle on one source")
    if args.user is not None and args.calibrate is None and args.baseline is None:
        raise ConfigError("--user applies with --calibrate or --baseline (it names whose baseline is recorded or "
                          "loaded); with --config give one of them too, or set user in the file's [calibration]")
    run = {"speed": args.speed, "duration_s": args.duration, "seed": args.seed,
           "record": str(args.record.resolve()) if args.record is not None else None}
    runtime = {"backend": args.backend, "precision": args.precision, "threads": args.threads,
               "providers": list(_providers(args)) if args.providers else None}
    bundle = {"analysis_fps": args.analysis_fps, "face_detector": args.face_detector,
              "face_selection": args.face_selection, "vad": args.vad}
    out = {"run": run, "runtime": runtime, "bundle": bundle, "calibration": _calibration_table(args) or {}}
    return {section: {k: v for k, v in values.items() if v is not None} for section, values in out.items()}


def _origin_line(pf) -> str:
    """Which values came from the command line (with the file's values they replaced)."""
    if not pf.overridden:
        return f"all settings from {pf.path}"
    given = []
    for key, (value, old) in pf.overridden.items():
        name = key.split(".", 1)[-1]
        if key == "calibration":
            value = ", ".join(f"{k} {v}" for k, v in value.items())
            old = ", ".join(f"{k} {v}" for k, v in old.items()) if old else None
        elif value == float("inf"):
            value = "max"
        given.append(f"{name} {value}" + (f" (file: {old})" if old is not None else ""))
    return f"from the command line: {'; '.join(given)}; everything else from {pf.path}"


def _run_pipeline(pipe, args: argparse.Namespace, origins: str | None = None) -> int:
    """Print what runs (and, for a pipeline file, which values came from the command line),
    stream estimates to the terminal (and --out), then a summary."""
    from edgemer.sinks import JsonlSink, TerminalSink

    names = ", ".join(r.bundle.name for r in pipe.runners)
    sessions = "; ".join(r.session.description for r in pipe.runners)
    speed = "speed max (lockstep: as fast as processed)" if pipe.lockstep else f"speed x{pipe.speed:g}"
    print(f"edgemer: {', '.join(s.name for s in pipe.sources)} -> {names} [{sessions}], {speed}"
          + (f"; {origins}" if origins else ""))
    for r in pipe.runners:
        print(r.choice.line())
    for r in pipe.runners:
        if r.bundle.manifest.trained_on_synthetic_data:
            hint = r.bundle.manifest.provenance.get("train_on_real_data", REAL_DATA_HINT)
            print(f"NOTE: bundle '{r.bundle.name}' was trained on SYNTHETIC data; its estimates show the pipeline "
                  f"working, not validated emotion recognition. Train on real data with: {hint}")
            if r.bundle.manifest.provenance.get("use_real_model"):
                print(f"      or use a real pretrained model: {r.bundle.manifest.provenance['use_real_model']}")
    if not args.quiet:  # None (not given) or False
        pipe.sinks.append(TerminalSink())
    if args.out is not None:
        pipe.sinks.append(JsonlSink(args.out))
    latencies = []
    stop_requested = threading.Event()

    def request_stop(signum, frame) -> None:
        # Only flags the stop: raising KeyboardInterrupt at an arbitrary point of the main thread
        # (e.g. inside a queue's lock) could leave the worker blocked. The iteration then ends
        # once the worker has finished its window, and leaving the block stops and flushes everything.
        stop_requested.set()
        pipe.request_stop()

    # In place before "Ctrl-C stops." is printed, so that a Ctrl-C from then on stops cleanly.
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    first = min(r.front_end.window_s for r in pipe.runners)
    window = max(r.front_end.window_s for r in pipe.runners)
    wall = "" if pipe.lockstep else f" ({first / pipe.speed:.1f} s wall)"
    try:
        print(f"First estimate after {first:g} s of stream time{wall}, "
              + ("" if window == first else f"with every modality after {window:g} s, ")
              + f"then one every {pipe.hop_s:g} s. Ctrl-C stops.", flush=True)
        with pipe:
            for est in pipe:
                latencies.append(est.latency_s)
    except KeyboardInterrupt:  # a Ctrl-C before the handler was in place
        stop_requested.set()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    interrupted = stop_requested.is_set()
    stats = pipe.stats()
    dropped = sum(s["dropped_samples"] for s in stats["streams"].values())
    nans = sum(s["nan_samples"] for s in stats["streams"].values())
    skipped = sum(b["skipped_windows"] + b.get("stale_windows", 0) + b.get("flat_windows", 0)
                  for b in stats["bundles"].values())
    empty = sum(b.get("empty_windows", 0) for b in stats["bundles"].values())
    median_ms = statistics.median(latencies) * 1000 if latencies else float("nan")
    print(f"{'stopped' if interrupted else 'done'}: {stats['estimates']} estimates, median latency {median_ms:.1f} ms, "
          f"{skipped} windows skipped, {nans} NaN samples, {dropped} samples dropped"
          + (f", {empty} windows with nothing to analyse (e.g. no face)" if empty else "")
          + (f"; estimates written to {args.out}" if args.out else "")
          + (f"; raw chunks recorded in {pipe.recorder.path}" if pipe.recorder else ""))
    for name, err in stats.get("source_errors", {}).items():  # the other sources kept running
        print(f"source {name} failed: {err}")
    for src in pipe.sources:  # link health of sources that report it (e.g. a serial wearable)
        health = src.health()
        if health:
            print(f"source {src.name}: " + ", ".join(f"{k} {v}" for k, v in health.items() if k != "port"))
    return 130 if interrupted else 0


def cmd_demo(args: argparse.Namespace) -> int:
    return _run_pipeline(_pipeline_from_args("physio-demo", "simulated", args), args)


def cmd_run(args: argparse.Namespace) -> int:
    if args.config is not None:
        from edgemer.config import load_pipeline_file

        pf = load_pipeline_file(args.config, overrides=_config_overrides(args))
        return _run_pipeline(pf.build(), args, origins=_origin_line(pf))
    if args.bundle is None:
        raise ConfigError("edgemer run needs --bundle (or --config FILE.toml)")
    return _run_pipeline(_pipeline_from_args(args.bundle, args.source or "simulated", args), args)


def cmd_info(args: argparse.Namespace) -> int:
    from edgemer.bundle import list_shipped_bundles, load_bundle

    if args.bundle is None:
        names = list_shipped_bundles()
        if not names:
            print("no bundles ship in this installation")
            return 0
        print("Shipped bundles (use the name wherever a --bundle is asked for):")
        for name in names:
            m = load_bundle(name, verify=False).manifest
            tag = "trained on SYNTHETIC data" if m.trained_on_synthetic_data else "trained on real data"
            print(f"  {name:16s} {m.modality:8s} {m.task:16s} {', '.join(m.labels)}  ({tag})")
        return 0
    bundle = load_bundle(args.bundle)
    m = bundle.manifest
    if args.json:
        print(json.dumps(m.raw, indent=2))
        return 0
    print(f"bundle      {m.name}  ({bundle.path})")
    print(f"verified    {len(m.files)} files, sha256 and sizes match the manifest (schema {m.raw['schema_version']})")
    print(f"modality    {m.modality}, task {m.task}, labels {', '.join(m.labels)}")
    for mf in m.models.values():
        size = m.files[mf.file].get("bytes", 0)
        print(f"model       {mf.file:22s} {mf.format:6s} {mf.precision:4s} {size / 1024:8.1f} KiB")
    for t in m.inputs:
        print(f"input       {t.name} {list(t.shape)} {t.dtype}")
    for t in m.outputs:
        print(f"output      {t.name} {list(t.shape)} {t.dtype}")
    fe = m.front_end
    streams = ", ".join(f"{k} {v['rate_hz']:g} Hz" for k, v in fe.get("streams", {}).items())
    print(f"front-end   {fe.get('type')}: window {fe.get('window_s')} s, hop {fe.get('hop_s')} s; streams {streams}")
    physics = m.raw.get("physics")
    if physics:
        print(f"physics     {physics.get('ode')}")
        learned = ", ".join(f"{k}={physics[k]:.4g}" for k in ("alpha_0", "beta", "gamma") if k in physics)
        print(f"            learned {learned}")
        truth = physics.get("truth")
        if truth:
            print("            truth   " + ", ".join(f"{k}={truth[k]:.4g}" for k in ("alpha_0", "beta", "gamma")
                                                     if k in truth))
    ver = bundle.verification()
    for key, row in (ver.get("comparisons") or {}).items():
        if isinstance(row, dict) and "argmax_agreement" in row:
            print(f"parity      {key}: argmax agreement {row['argmax_agreement'] * 100:.1f} %, "
                  f"macro-F1 drop {row.get('macro_f1_drop_points', float('nan')):.2f} pt")
    prov = m.provenance
    if m.trained_on_synthetic_data:
        if m.modality == "face":
            print(f"provenance  trained on SYNTHETIC drawn faces ({prov.get('dataset')}); not a validated "
                  f"expression recogniser.")
            print(f"            train on FER2013: {prov.get('train_on_real_data')}")
            print(f"            real pretrained model: {prov.get('use_real_model')}")
        elif m.modality == "audio":
            print(f"provenance  trained on SYNTHETIC speech ({prov.get('dataset')}, espeak-ng); not a validated "
                  f"emotion recogniser.")
            print(f"            train on RAVDESS/CREMA-D: {prov.get('train_on_real_data')}")
            print(f"            real pretrained model: {prov.get('use_real_model')}")
        else:
            print("provenance  trained on SYNTHETIC data (edgemer data synth-wesad); not a validated stress detector.")
            print(f"            train on real WESAD: {prov.get('train_on_real_data', REAL_DATA_HINT)}")
    else:
        print(f"provenance  dataset {prov.get('dataset')}")
    if prov.get("created_utc"):
        print(f"            created {prov['created_utc']}")
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="edgemer %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # SIGTERM stops cleanly through the same path as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return int(args.func(args) or 0)
    except EdgemerError as exc:
        print(f"edgemer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
