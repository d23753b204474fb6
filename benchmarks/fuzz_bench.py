"""``edgemer bench fuzz``: every file format edgemer reads, fed hostile input.

For each format (see :mod:`edgemer.benchmarks.fuzz_formats`) hypothesis generates cases
from the committed seeds (``tests/fuzz_corpus/<format>/``): structured changes (manifest
fields, WAV header fields, TOML tables, pickle layouts, ONNX external-data references,
symlinks) and byte mutations (bit flips, interesting integers, inserted, deleted, repeated
and truncated ranges). Each case runs in a worker process that writes the case's files
into a fresh folder and calls the reader a user would hit. Outcomes:

- ``ok``: the reader accepted it; ``typed``: it raised an :class:`~edgemer.errors.EdgemerError`;
- ``crash``: any other exception, or the worker died (the traceback is kept);
- ``hang``: the case ran past ``--case-timeout`` seconds (the worker is killed and replaced);
- ``memory``: the case raised the worker's peak RSS by more than ``--max-case-mib``.

A crash, hang or memory case is written to ``--crash-dir`` (with its traceback) so that it
can become a regression test with its input in the corpus. Printed per format: cases,
typed errors, crashes, hangs, memory cases and peak RSS (MiB). Targets: 0 crashes, 0
hangs and 0 memory cases per format. Needs hypothesis (``pip install 'edgemer[dev]'``).
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CASES = 10000
CASE_TIMEOUT_S = 20.0
MAX_CASE_MIB = 512.0
WORKER_ADDRESS_SPACE_GIB = 8
"""The worker's address-space limit (``RLIMIT_AS``), so a runaway allocation fails in the
worker (counted) instead of taking the machine's memory."""


def _kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    try:  # Linux >= 4.0: writing 5 resets VmHWM to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _worker(conn, format_names: list[str]) -> None:
    """Run cases sent over ``conn``: ``(format, case)`` -> ``(outcome, detail, peak_mib, growth_mib)``."""
    from edgemer.benchmarks.fuzz_formats import FORMATS, materialize
    from edgemer.errors import EdgemerError

    logging.disable(logging.CRITICAL)  # readers log every refusal; the tally counts them
    warnings.simplefilter("ignore")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # FFmpeg and libpng write to fd 2 directly
    limit = WORKER_ADDRESS_SPACE_GIB << 30
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass
    for name in format_names:
        FORMATS[name].prepare()
    root = Path(tempfile.mkdtemp(prefix="edgemer-fuzz-"))
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message is None:
                return
            name, case = message
            folder = root / "case"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            before = _kib("VmRSS:")
            _reset_peak_rss()
            detail = ""
            try:
                entry = materialize(folder, case)
                FORMATS[name].target(folder, entry, case)
                outcome = "ok"
            except EdgemerError as exc:
                outcome, detail = "typed", f"{type(exc).__name__}: {exc}"
                if not str(exc).strip():
                    outcome, detail = "crash", f"{type(exc).__name__} with an empty message"
            except Exception:  # noqa: BLE001 - exactly what the fuzzer looks for
                outcome, detail = "crash", traceback.format_exc(limit=12)
            peak = _kib("VmHWM:")
            if len(detail) > 4000:  # keep the error's class name (the tally's key) and the traceback's end
                detail = f"{detail[:2000]} ... {detail[-2000:]}"
            conn.send((outcome, detail, peak / 1024.0, max(0, peak - before) / 1024.0))
    finally:
        shutil.rmtree(root, ignore_errors=True)


class CaseRunner:
    """A worker process that runs one case at a time with a time limit, restarted after a
    hang or a death. Use as a context manager."""

    def __init__(self, format_names: list[str], case_timeout_s: float = CASE_TIMEOUT_S) -> None:
        self.format_names = list(format_names)
        self.case_timeout_s = case_timeout_s
        self._ctx = mp.get_context("fork")
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_worker, args=(child, self.format_names), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def run(self, name: str, case: dict) -> tuple[str, str, float, float]:
        """``(outcome, detail, peak_rss_mib, case_growth_mib)`` of one case."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        try:
            self._conn.send((name, case))
            if not self._conn.poll(self.case_timeout_s):
                self._kill()
                return "hang", f"no answer within {self.case_timeout_s} s", 0.0, 0.0
            return self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            code = self._proc.exitcode if self._proc is not None else None
            self._kill()
            return "crash", f"the worker died (exit code {code}: a signal is negative)", 0.0, 0.0

    def __enter__(self) -> "CaseRunner":
        return self

    def __exit__(self, *exc) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
                self._proc.join(5)
            except OSError:
                pass
        self._kill()


@dataclass
class FormatTally:
    """What one format's run found."""

    name: str
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    peak_rss_mib: float = 0.0
    failures: list[dict] = field(default_factory=list)
    wall_s: float = 0.0

    def add(self, case: dict, outcome: str, detail: str, peak_mib: float, growth_mib: float,
            max_case_mib: float) -> str:
        if outcome in ("ok", "typed") and growth_mib > max_case_mib:
            outcome, detail = "memory", f"peak RSS grew {growth_mib:.0f} MiB in one case ({detail[:200]})"
        self.cases += 1
        self.outcomes[outcome] += 1
        self.peak_rss_mib = max(self.peak_rss_mib, peak_mib)
        if outcome == "typed":
            self.errors[detail.split(":", 1)[0]] += 1
        if outcome in ("crash", "hang", "memory"):
            self.failures.append({"outcome": outcome, "detail": detail, "case": case})
        return outcome

    def summary(self) -> dict[str, Any]:
        return {"format": self.name, "cases": self.cases, "ok": self.outcomes["ok"], "typed_errors": self.outcomes["typed"],
                "crashes": self.outcomes["crash"], "hangs": self.outcomes["hang"], "memory": self.outcomes["memory"],
                "peak_rss_mib": round(self.peak_rss_mib, 1), "wall_s": round(self.wall_s, 1),
                "error_types": dict(self.errors.most_common())}


class CaseFailed(AssertionError):
    """Raised inside hypothesis (``raise_on_failure``) so that it shrinks the failing case."""


def fuzz_format(name: str, cases: int, runner: CaseRunner, seed: int | None = 0, max_case_mib: float = MAX_CASE_MIB,
                raise_on_failure: bool = False, progress: bool = False) -> FormatTally:
    """Run ``cases`` hypothesis-generated cases of format ``name`` through ``runner``."""
    try:
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as hseed
    except ImportError:
        from edgemer.errors import MissingExtraError

        raise MissingExtraError("dev", "hypothesis", "The fuzzer") from None
    from edgemer.benchmarks.fuzz_formats import FORMATS

    fmt = FORMATS[name]
    tally = FormatTally(name)
    t0 = time.monotonic()
    phases = (Phase.generate, Phase.shrink) if raise_on_failure else (Phase.generate,)

    @settings(max_examples=cases, deadline=None, database=None, phases=phases, derandomize=False,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(fmt.strategy())
    def one(case: dict) -> None:
        outcome = tally.add(case, *runner.run(name, case), max_case_mib)
        if progress and tally.cases % 500 == 0:
            print(f"  {name}: {tally.cases} cases ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
        if raise_on_failure and outcome not in ("ok", "typed"):
            raise CaseFailed(f"{name}: {outcome}: {tally.failures[-1]['detail']}")

    if seed is not None:
        one = hseed(seed)(one)
    one()
    tally.wall_s = time.monotonic() - t0
    return tally


def save_failures(tally: FormatTally, folder: Path) -> list[Path]:
    """Write each failing case as ``folder/<format>-<n>.json`` (files base64-encoded) with its traceback."""
    import base64

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(tally.failures):
        case = dict(f["case"])
        case["files"] = {k: base64.b64encode(v).decode() for k, v in case.get("files", {}).items()}
        path = folder / f"{tally.name}-{i}.json"
        path.write_text(json.dumps({"outcome": f["outcome"], "detail": f["detail"], "case": case}, indent=1,
                                   default=repr))
        out.append(path)
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'format':<10} {'cases':>7} {'ok':>7} {'typed':>7} {'crashes':>8} {'hangs':>6} {'memory':>7} " \
           f"{'peak RSS':>9} {'time':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['format']:<10} {r['cases']:>7} {r['ok']:>7} {r['typed_errors']:>7} {r['crashes']:>8} "
                     f"{r['hangs']:>6} {r['memory']:>7} {r['peak_rss_mib']:>5.0f} MiB {r['wall_s']:>6.0f}s")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgemer bench fuzz``."""
    from edgemer.benchmarks.fuzz_formats import FORMATS

    parser.add_argument("--formats", default="all", metavar="LIST",
                        help=f"comma-separated formats (default all: {', '.join(FORMATS)})")
    parser.add_argument("--cases", type=int, default=DEFAULT_CASES, metavar="N",
                        help=f"cases per format (default {DEFAULT_CASES})")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0; -1: random)")
    parser.add_argument("--case-timeout", type=float, default=CASE_TIMEOUT_S, metavar="SECONDS",
                        help=f"a case running longer counts as a hang (default {CASE_TIMEOUT_S:g})")
    parser.add_argument("--max-case-mib", type=float, default=MAX_CASE_MIB, metavar="MIB",
                        help=f"a case raising peak RSS by more counts as a memory failure (default {MAX_CASE_MIB:g})")
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"), metavar="FOLDER",
                        help="where failing cases are written (default fuzz-crashes/)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    """Fuzz each format; print the table and targets; 1 if any crash, hang or memory case."""
    from edgemer.benchmarks.fuzz_formats import FORMATS
    from edgemer.benchmarks.result import make_result, target, write_json
    from edgemer.errors import ConfigError

    names = list(FORMATS) if args.formats == "all" else [n.strip() for n in args.formats.split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ConfigError(f"--formats: unknown {unknown}; formats: {', '.join(FORMATS)}")
    if args.cases < 1:
        raise ConfigError(f"--cases must be >= 1, got {args.cases}")
    seed = None if args.seed == -1 else args.seed
    rows, targets = [], []
    for name in names:
        if not FORMATS[name].available():
            print(f"{name}: skipped ({FORMATS[name].unavailable_reason()})", file=sys.stderr)
            continue
        with CaseRunner([name], args.case_timeout) as runner:
            tally = fuzz_format(name, args.cases, runner, seed=seed, max_case_mib=args.max_case_mib,
                                progress=not args.quiet)
        row = tally.summary()
        rows.append(row)
        if tally.failures:
            saved = save_failures(tally, args.crash_dir)
            print(f"{name}: {len(saved)} failing cases written to {args.crash_dir}/", file=sys.stderr)
        for key, what in (("crashes", "bare exceptions or worker deaths"), ("hangs", "cases past the time limit"),
                          ("memory", f"cases growing RSS by > {args.max_case_mib:g} MiB")):
            targets.append(target(f"fuzz_{name}_{key}", f"{name}: {what} in {row['cases']} cases", row[key],
                                  "== 0", row[key] == 0, "count"))
    print(format_table(rows))
    result = make_result("fuzz", {"formats": names, "cases_per_format": args.cases, "seed": seed,
                                  "case_timeout_s": args.case_timeout, "max_case_mib": args.max_case_mib,
                                  "worker_address_space_gib": WORKER_ADDRESS_SPACE_GIB},
                         targets, formats=rows)
    if getattr(args, "json", None) is not None:
        print(f"\nwrote {write_json(result, args.json)}")
    return 0 if all(t["met"] for t in targets) else 1


def main(argv: list[str] | None = None) -> int:
    """``python3 -m edgemer.benchmarks.fuzz_bench``: the same as ``edgemer bench fuzz`` (its registry adds ``--json``)."""
    from edgemer.benchmarks.commands import run_kind

    return run_kind("fuzz", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
