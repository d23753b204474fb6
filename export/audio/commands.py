"""Command-line glue for ``edgemer data synth-speech``, ``edgemer export audio`` and ``edgemer export hf``.

Only argparse and the standard library are imported here; numpy, torch and optimum are
imported when a command runs, so ``edgemer --help`` stays fast on a device.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from edgemer.export.core.commands import add_bundle_options, add_command, add_training_options, finish, invoked_command


def add_audio_commands(data_sub: argparse._SubParsersAction, export_sub: argparse._SubParsersAction) -> None:
    """Register ``data synth-speech``, ``export audio`` and ``export hf`` under the given groups."""
    add_command(data_sub, "synth-speech", configure_synth_speech, run_synth_speech,
                help="synthesise a labelled speech folder with espeak-ng",
                description="Write WAVs spoken by espeak-ng voices in five styles (neutral, calm, happy, sad, angry: "
                            "speaking rate, pitch, loudness and pitch range) and labels.csv with arousal/valence/"
                            "dominance: a folder:DIR data set for 'edgemer export audio'. Synthetic speech, no "
                            "recordings of anyone. Needs espeak-ng (apt-get install espeak-ng).")
    add_command(export_sub, "audio", configure_export_audio, run_export_audio,
                help="train the compact speech emotion CNN and write a bundle",
                description="Train a compact log-mel CNN with emotion-class and arousal/valence/dominance heads on "
                            "RAVDESS, CREMA-D or a folder with labels.csv, and write a bundle: FP32 ONNX, INT8 ONNX, "
                            "INT8 TFLite, manifest with the front-end parameters, verification report.")
    add_command(export_sub, "hf", configure_export_hf, run_export_hf,
                help="export a local Hugging Face wav2vec2/HuBERT checkpoint (optimum) to a bundle",
                description="Export a local Hugging Face audio-classification or regression checkpoint (wav2vec2, "
                            "HuBERT, WavLM) through optimum to FP32 ONNX and INT8 ONNX, into a bundle the runtime "
                            "runs on raw 16 kHz waveform windows. Offline: reads only --model-dir. Needs pip install "
                            "'edgemer[export,hf]'.")


def configure_synth_speech(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to create (missing or empty)")
    parser.add_argument("--per-voice", type=int, default=4, help="clips per class and voice (default 4; 12 voices)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it holds an earlier synth-speech output")


def run_synth_speech(args: argparse.Namespace) -> int:
    from edgemer.export.audio.synth import write_speech_folder

    out = write_speech_folder(args.out, per_voice=args.per_voice, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote synthetic speech (espeak-ng) and labels.csv to {out}")
    print(f"next: edgemer export audio --data folder:{shlex.quote(str(out))} --out my-audio-bundle")
    return 0


def configure_export_audio(parser: argparse.ArgumentParser) -> None:
    from edgemer.export.audio.config import AudioExportConfig

    d = AudioExportConfig()
    parser.add_argument("--data", required=True, metavar="SPEC",
                        help="ravdess:DIR (RAVDESS Actor_XX folders), crema-d:DIR (CREMA-D AudioWAV) or folder:DIR "
                             "(WAVs + labels.csv with file,label[,speaker,split,arousal,valence,dominance])")
    parser.add_argument("--out", type=Path, required=True, metavar="BUNDLE_DIR", help="bundle folder to create")
    parser.add_argument("--name", default=d.name, help=f"bundle name (default {d.name})")
    parser.add_argument("--window", type=float, default=d.window_s, metavar="SECONDS",
                        help=f"model window, s (default {d.window_s:g})")
    parser.add_argument("--hop", type=float, default=d.hop_s, metavar="SECONDS",
                        help=f"runtime hop between estimates, s (default {d.hop_s:g})")
    parser.add_argument("--n-mels", type=int, default=d.n_mels, help=f"mel bands (default {d.n_mels})")
    add_training_options(parser, d, "windows")
    parser.add_argument("--width", type=int, default=d.width, help=f"channels of the first block (default {d.width})")
    parser.add_argument("--dims-weight", type=float, default=d.dims_weight,
                        help=f"weight of the arousal/valence/dominance loss (default {d.dims_weight:g})")
    parser.add_argument("--crops-per-clip", type=int, default=d.crops_per_clip,
                        help=f"training windows cut from each clip (default {d.crops_per_clip})")
    parser.add_argument("--heldout-fraction", type=float, default=d.heldout_fraction,
                        help=f"share of speakers held out for verification (default {d.heldout_fraction:g})")
    parser.add_argument("--include-song", action="store_true", help="RAVDESS: use the song clips too")
    parser.add_argument("--max-per-class", type=int, default=None, help="at most this many clips per class")
    parser.add_argument("--calibration-windows", type=int, default=d.calibration_windows,
                        help=f"training windows for the INT8 ranges (default {d.calibration_windows})")
    add_bundle_options(parser, d, "windows")


def run_export_audio(args: argparse.Namespace) -> int:
    from edgemer.export.audio.export import export_audio
    from edgemer.export.audio.config import AudioExportConfig

    config = AudioExportConfig(name=args.name, window_s=args.window, hop_s=args.hop, n_mels=args.n_mels,
                               epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                               width=args.width, dims_weight=args.dims_weight, crops_per_clip=args.crops_per_clip,
                               heldout_fraction=args.heldout_fraction, include_song=args.include_song,
                               max_per_class=args.max_per_class, calibration_windows=args.calibration_windows,
                               tflite=not args.no_tflite, guard_steps=args.guard_steps)
    return finish(export_audio(args.data, args.out, config, progress=not args.quiet, overwrite=args.overwrite,
                               command=invoked_command()), args)


def configure_export_hf(parser: argparse.ArgumentParser) -> None:
    from edgemer.export.audio.config import HfExportConfig
    from edgemer.export.core.targets import TARGETS

    d = HfExportConfig()
    parser.add_argument("--model-dir", type=Path, required=True, metavar="DIR",
                        help="local checkpoint folder: config.json, model.safetensors (or pytorch_model.bin) and "
                             "preprocessor_config.json, e.g. from save_pretrained() or a downloaded model repository")
    parser.add_argument("--out", type=Path, required=True, metavar="BUNDLE_DIR", help="bundle folder to create")
    parser.add_argument("--name", default=d.name, help=f"bundle name (default {d.name})")
    parser.add_argument("--window", type=float, default=d.window_s, metavar="SECONDS",
                        help=f"waveform window, s (default {d.window_s:g})")
    parser.add_argument("--hop", type=float, default=d.hop_s, metavar="SECONDS",
                        help=f"runtime hop between estimates, s (default {d.hop_s:g})")
    parser.add_argument("--quantization", choices=("dynamic", "static"), default=d.quantization,
                        help="INT8 scheme: dynamic (weights INT8, activations at run time; default) or static "
                             "(calibrated activations)")
    parser.add_argument("--target", choices=tuple(TARGETS), default=d.target,
                        help=f"device preset of the INT8 model, as for export physio (default {d.target}): dynamic "
                             "INT8 uses optimum's config for x86-avx2 (avx2), x86-vnni (avx512_vnni) or arm64; "
                             "static INT8 (also jetson-trt) uses the preset's quantisation options")
    parser.add_argument("--dimensions", default=None, metavar="NAMES",
                        help="regression checkpoints: comma-separated output names in order, e.g. "
                             "arousal,dominance,valence (default: the checkpoint's id2label)")
    parser.add_argument("--scale", type=float, default=d.scale,
                        help="regression outputs are mapped to [-1, 1] by value * scale + offset (0..1 outputs: "
                             "--scale 2 --offset -1)")
    parser.add_argument("--offset", type=float, default=d.offset, help="see --scale")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a verification target fails (the bundle is still written)")
    parser.add_argument("--overwrite", action="store_true", help="replace BUNDLE_DIR if it holds an earlier bundle")


def run_export_hf(args: argparse.Namespace) -> int:
    from edgemer.export.audio.config import HfExportConfig
    from edgemer.export.audio.transformer import export_hf

    dims = tuple(n.strip() for n in args.dimensions.split(",")) if args.dimensions else None
    config = HfExportConfig(name=args.name, window_s=args.window, hop_s=args.hop, quantization=args.quantization,
                            target=args.target, dimensions=dims, scale=args.scale, offset=args.offset)
    return finish(export_hf(args.model_dir, args.out, config, overwrite=args.overwrite, command=invoked_command()),
                  args)
