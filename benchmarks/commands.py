"""``edgemer bench KIND``: the one benchmark verb, its registry of kinds and their parsers.

A kind is one line in :data:`KINDS`: a name, a one-line summary (listed by ``edgemer bench
--help``) and the module that measures it. That module defines two functions::

    def configure(parser: argparse.ArgumentParser) -> None   # add the kind's options
    def run(args: argparse.Namespace) -> int                   # measure, print, write; exit status

``run`` builds its result with :func:`edgemer.benchmarks.result.make_result` (the common
schema: ``schema``, ``kind``, ``created_utc``, ``device``, ``settings``, ``targets``) and,
when ``args.json`` is set, writes it with :func:`write_json`; the registry adds that
``--json`` option to every kind that writes a result. Adding a benchmark is therefore a new
module with those two functions plus one :class:`BenchKind` line here.

Only the standard library is imported at module level, and a kind's module is imported only
when that kind is parsed (run or ``--help``), so ``edgemer --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

from edgemer.benchmarks.result import result_filename, strict_json, write_json

__all__ = ["KINDS", "BenchKind", "KindParser", "add_bench_commands", "configure_bench", "csv_list",
           "deprecated_main", "kind_named", "kinds_help", "result_filename", "run_kind", "strict_json", "write_json"]


@dataclass(frozen=True)
class BenchKind:
    """One ``edgemer bench NAME``.

    name: the word after ``edgemer bench``; also the ``kind`` of the results it writes.
    summary: one line for ``edgemer bench --help``.
    module: import path of the module defining ``configure(parser)`` and ``run(args) -> int``.
    writes_result: whether the kind writes a result (then the registry adds ``--json``).
    """

    name: str
    summary: str
    module: str
    writes_result: bool = True

    def load(self) -> ModuleType:
        """Import the kind's module."""
        return importlib.import_module(self.module)


KINDS: tuple[BenchKind, ...] = (
    BenchKind("bundles", "one bundle's model files x backend x precision x threads: load, latency, RSS, "
                         "INT8-vs-FP32 parity (--pipeline: end to end)", "edgemer.benchmarks.bundle_bench"),
    BenchKind("suite", "every shipped bundle x engine (ORT CPU/CUDA/TensorRT, LiteRT) x precision x threads, "
                       "plus the three-modality pipeline", "edgemer.benchmarks.suite"),
    BenchKind("engines", "backend/precision 'auto' against every fixed engine choice (file x engine x threads), "
                         "per bundle", "edgemer.benchmarks.engines_bench"),
    BenchKind("audio", "speech path: log-mel vs librosa, INT8 vs FP32, end-to-end latency and real-time factor, "
                       "wav2vec2 INT8", "edgemer.benchmarks.audio_bench"),
    BenchKind("face", "face path: detection, crop and expression per frame; fer INT8 agreement and speed",
              "edgemer.benchmarks.face_bench"),
    BenchKind("physio", "physiology front-ends on real recordings (heartpy, systole): PPG/ECG heart rate and EDA "
                        "features vs heartpy and neurokit2", "edgemer.benchmarks.physio_bench"),
    BenchKind("multimodal", "three-modality pipeline: overhead, one-core real-time factor, peak RSS "
                            "(--soak: 1 h of stream at 100x)", "edgemer.benchmarks.soak_bench"),
    BenchKind("cpu", "three-modality runtime (examples/full.toml) at 1x: whole-process CPU per stream second, "
                     "per thread, py-spy breakdown (--profile); target <= 1 % of a core",
              "edgemer.benchmarks.cpu_profile"),
    BenchKind("bridge", "serial link: decoder throughput, clock sync, recovery after an unplug, latency",
              "edgemer.firmware_bridge.bench"),
    BenchKind("arm64", "shipped bundles on emulated aarch64 (qemu; needs root): argmax parity with x86-64",
              "edgemer.benchmarks.arm64_parity"),
    BenchKind("fuzz", "every file format edgemer reads, fed hostile input (10,000 cases each): typed errors, "
                      "crashes, hangs, peak RSS", "edgemer.benchmarks.fuzz_bench"),
    BenchKind("report", "every result in a folder (all kinds, all devices) -> REPORT.md with plots",
              "edgemer.benchmarks.report", writes_result=False),
)
"""Every benchmark kind, in the order ``edgemer bench --help`` lists them."""

JSON_HELP = ("write the result (schema in benchmarks/SCHEMA.md) to FILE.json, or into a folder (e.g. "
             "benchmarks/results) as DEVICE_NAME_STAMP.json")


def kind_named(name: str) -> BenchKind:
    """The registered kind ``name``; KeyError names the kinds there are."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(f"no benchmark kind {name!r}; kinds: {', '.join(k.name for k in KINDS)}")


def csv_list(kind: type) -> Callable[[str], tuple]:
    """An argparse ``type`` reading a comma-separated list of ``kind`` (``"1,2"`` -> ``(1, 2)``)."""
    def parse(text: str) -> tuple:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list, e.g. 1,2")
        try:
            return tuple(kind(t) for t in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of {kind.__name__}") from None
    parse.__name__ = f"{kind.__name__} list"
    return parse


class KindParser(argparse.ArgumentParser):
    """The parser of one ``edgemer bench KIND``. The kind's module is imported and its options added
    the first time the parser is used (parsing, usage or help), not when the CLI is built."""

    def __init__(self, *args, kind: BenchKind, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self._configured = False

    def _configure(self) -> None:
        if self._configured:
            return
        self._configured = True
        module = self.kind.load()
        if self.kind.writes_result:
            self.add_argument("--json", type=Path, default=None, metavar="FILE_OR_DIR", help=JSON_HELP)
        module.configure(self)  # may change defaults, e.g. arm64 writes into benchmarks/results by default
        self.set_defaults(func=module.run)

    def parse_known_args(self, args=None, namespace=None):
        self._configure()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._configure()
        return super().format_usage()

    def format_help(self) -> str:
        self._configure()
        return super().format_help()


def _is_bundle(name: str) -> bool:
    if Path(name).is_dir():
        return True
    from edgemer.bundle import list_shipped_bundles

    return name in list_shipped_bundles()


class _Moved(argparse.Action):
    """An option of ``edgemer bench`` from before the kinds: stops with the new spelling."""

    def __init__(self, option_strings, dest, new: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.error(f"{option_string} moved: run 'edgemer bench {self.new}' (edgemer bench --help lists the kinds)")


def kinds_help(width: int = 100) -> str:
    """One line per kind (name, then its summary), as ``edgemer bench --help`` lists them."""
    pad = max(len(k.name) for k in KINDS) + 4
    lines = []
    for kind in KINDS:
        wrapped = textwrap.wrap(kind.summary, width - pad) or [""]
        lines.append(f"  {kind.name:<{pad - 2}}{wrapped[0]}")
        lines += [" " * pad + more for more in wrapped[1:]]
    return "\n".join(lines)


def configure_bench(parser: argparse.ArgumentParser) -> None:
    """Turn ``parser`` into ``edgemer bench KIND [options]`` (the kind parses its own options)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = ("One verb for every benchmark. Every kind prints its targets and, with --json FILE_OR_DIR, "
                          "writes one result schema\n(benchmarks/SCHEMA.md) that 'edgemer bench report' renders across "
                          "kinds and devices.\n\nkinds ('edgemer bench KIND --help' for a kind's options):\n"
                          + kinds_help())
    parser.add_argument("kind", nargs="?", metavar="KIND", help="which benchmark (listed above)")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="...", help="the kind's options")
    for option, new in (("--suite", "suite"), ("--multimodal", "multimodal"), ("--soak", "multimodal --soak"),
                        ("--pipeline", "bundles BUNDLE --pipeline")):
        parser.add_argument(option, action=_Moved, new=new)

    def dispatch(args: argparse.Namespace) -> int:
        if args.kind is None:
            parser.print_help()
            return 2
        if args.kind in {k.name for k in KINDS}:
            return run_kind(args.kind, args.argv)
        if _is_bundle(args.kind):  # the spelling before the kinds: edgemer bench BUNDLE [options]
            print(f"note: 'edgemer bench {args.kind}' is now 'edgemer bench bundles {args.kind}'", file=sys.stderr)
            return run_kind("bundles", [args.kind, *args.argv])
        parser.error(f"no benchmark kind {args.kind!r} (and no bundle of that name); kinds: "
                     f"{', '.join(k.name for k in KINDS)}. A bundle folder is benchmarked with "
                     f"'edgemer bench bundles FOLDER'")

    parser.set_defaults(func=dispatch)


def run_kind(name: str, argv: Sequence[str]) -> int:
    """Parse ``argv`` as ``edgemer bench NAME ARGV`` and run it; edgemer errors print one line (exit 2)."""
    from edgemer.errors import EdgemerError

    kind = kind_named(name)
    args = KindParser(prog=f"edgemer bench {name}", description=kind.summary, kind=kind).parse_args(list(argv))
    try:
        return int(args.func(args) or 0)
    except EdgemerError as exc:
        print(f"edgemer: error: {exc}", file=sys.stderr)
        return 2


def deprecated_main(old: str, name: str, argv: Sequence[str] | None = None) -> int:
    """An old spelling (``old``) of ``edgemer bench NAME``: says where it moved, then runs it."""
    print(f"note: '{old}' is now 'edgemer bench {name}'; running that", file=sys.stderr)
    return run_kind(name, sys.argv[1:] if argv is None else argv)


def add_bench_commands(sub: argparse.Action) -> None:
    """Register ``edgemer bench`` (and the hidden, deprecated ``edgemer bridge-bench``) on the CLI's sub-commands."""
    bench = sub.add_parser("bench", help=f"every benchmark: {', '.join(k.name for k in KINDS)} "
                                         "(edgemer bench --help)")
    configure_bench(bench)
    # Deprecated spelling, not listed: every argument after it is passed on untouched ('+' is its only
    # option prefix, so argparse leaves '--json' and the like to 'edgemer bench bridge').
    old = sub.add_parser("bridge-bench", prefix_chars="+", add_help=False)
    old.add_argument("argv", nargs=argparse.REMAINDER)
    old.set_defaults(func=lambda args: deprecated_main("edgemer bridge-bench", "bridge", args.argv))
