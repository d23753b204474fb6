"""One study task: one (protocol, fold, variant) with its inputs and seed, runnable in any process.

A task carries everything that decides its result: the fold's training and test window
indices into the pool, the study options (seed, epochs, ...) and, for the personalised
PINN, optionally the fold's trained plain PINN. The same task gives the same result in
the driver, in a worker process or on a Ray node, because it runs with a fixed number of
threads (``StudyOptions.task_threads``): torch's and OpenMP's reductions change with the
thread count, so a different count gives a (slightly) different model.
"""
from __future__ import annotations

import contextlib
import os
import resource
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, TextIO

import numpy as np

from edgemer.export.study.run import (
    BOOTSTRAP,
    INTERVAL_VARIANTS,
    PINN_VARIANTS,
    TONIC_PHASIC,
    FoldRun,
    Pool,
    StudyOptions,
    _trace,
    interval_task_run,
    run_cell,
)


@dataclass(frozen=True, eq=False)
class StudyTask:
    """One (protocol, fold, variant) of the study, or one piece of the CV physics intervals
    (:func:`~edgemer.export.study.run.interval_tasks`: the all-subject fit, and bootstrap replicates
    whose ``fold`` is the replicate's index).

    train, test: [n] int window indices into the :class:`~edgemer.export.study.run.Pool`.
    cache_name: file name of the task's result in the study's ``runs/`` folder (the
    task's cache key, together with the folder, which is keyed by the training options).
    trace: keep the first test subject's forecasts for the report's EDA plot.
    needs: name of the task that runs first and hands this one what it computed: the fold's
    ``tonic-phasic`` task its tonic/phasic fit (for the PINN variants with a physics term), the
    fold's plain PINN its trained model (for the personalised PINN). None: the task computes
    (or loads from the study's cache) what it needs itself.
    """

    protocol: str
    fold: int
    variant: str
    train: np.ndarray
    test: np.ndarray
    cache_name: str
    trace: bool = False
    needs: str | None = None

    @property
    def name(self) -> str:
        """``protocol/foldK/variant`` (``cv/bootstrapK`` for a bootstrap replicate), how logs, progress
        and the report name the task."""
        if self.variant == BOOTSTRAP:
            return f"{self.protocol}/bootstrap{self.fold}"
        return f"{self.protocol}/fold{self.fold}/{self.variant}"

    @property
    def log_name(self) -> str:
        return self.cache_name.removesuffix(".json") + ".log"


@dataclass
class TaskOutput:
    """What a task hands back: ``saved`` goes into its cache file (``{"result": ..., "trace": ...}``);
    ``model``: what a task that needs this one starts from: ``(model, history)`` of the plain PINN,
    ``(fit, components)`` of the ``tonic-phasic`` task's fold physics, the all-subject fit of the
    ``tonic-phasic-all`` task (for the bootstrap replicates), else None;
    ``peak_rss_mb``: the worker process's peak resident memory so far, MiB (Linux ru_maxrss)."""

    saved: dict[str, Any]
    model: Any = None
    peak_rss_mb: float = 0.0


def model_name(task: StudyTask) -> str:
    """Name of the plain-PINN task of ``task``'s fold (what the personalised variant reuses)."""
    return f"{task.protocol}/fold{task.fold}/pinn"


def physics_name(task: StudyTask) -> str:
    """Name of the ``tonic-phasic`` task of ``task``'s fold (whose fit the physics variants reuse)."""
    return f"{task.protocol}/fold{task.fold}/{TONIC_PHASIC}"


class TaskLog:
    """Appends time-stamped lines to one task's log file (or nowhere when ``path`` is None).

    Appending keeps every attempt: a retried task's log shows both starts.
    """

    def __init__(self, path: Path | None) -> None:
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def line(self, text: str) -> None:
        if self._file is not None:
            stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            self._file.write(f"{stamp} {text}\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "TaskLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextlib.contextmanager
def task_threads(n: int) -> Iterator[None]:
    """Run torch and the OpenMP/BLAS pools (scikit-learn) with ``n`` threads; restore them afterwards."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _fold_task(task: StudyTask, pool: Pool, opts: StudyOptions, upstream: Any,
               log: TaskLog) -> tuple[dict[str, Any], Any]:
    """(what goes into the task's cache file, what it hands on) of a (protocol, fold, variant) task."""
    fold = FoldRun(pool, task.train, task.test, opts)
    if upstream is not None and task.needs == model_name(task):
        fold.adopt("pinn", *upstream)
    elif upstream is not None:
        fold.adopt_physics(*upstream)
    res, preds = run_cell(task.variant, pool, task.train, task.test, opts, fold)
    if task.variant in PINN_VARIANTS:
        for epoch, row in enumerate(fold.trained(task.variant)[1]["epochs"], 1):
            log.line(f"epoch {epoch} " + " ".join(f"{k}={v:.5g}" for k, v in row.items()))
    saved: dict[str, Any] = {"result": res}
    if task.trace and "pred_uS" in preds:
        saved["trace"] = _trace(pool, task.test, preds["pred_uS"])
    model = (fold.trained("pinn") if task.variant == "pinn"
             else fold.physics() if task.variant == TONIC_PHASIC else None)
    return saved, model


def run_task(task: StudyTask, pool: Pool, opts: StudyOptions, log_dir: Path | None = None,
             upstream: Any = None) -> TaskOutput:
    """Run one task and return its output; any error propagates (after it is written to the task's log).

    upstream: what ``task.needs`` handed on (:attr:`TaskOutput.model`): the fold's plain PINN
    ``(model, history)`` for the personalised variant, the fold's tonic/phasic ``(fit, components)``
    for a physics variant (None: the task computes it itself, with the same seed, so the same result).
    """
    with TaskLog(None if log_dir is None else Path(log_dir) / task.log_name) as log:
        log.line(f"started {task.name} pid={os.getpid()} host={os.uname().nodename} seed={opts.seed} "
                 f"threads={opts.task_threads} train={task.train.size} test={task.test.size} windows")
        started = time.perf_counter()
        try:
            with task_threads(opts.task_threads), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if upstream is not None:
                    log.line(f"starts from what {task.needs} computed")
                if task.variant in INTERVAL_VARIANTS:
                    res, model = interval_task_run(task, pool, opts, upstream)
                    saved: dict[str, Any] = {"result": res}
                else:
                    saved, model = _fold_task(task, pool, opts, upstream, log)
            for w in caught:
                log.line(f"warning {w.category.__name__}: {w.message}")
        except BaseException as exc:  # noqa: BLE001 - logged, then re-raised unchanged
            log.line(f"failed after {time.perf_counter() - started:.2f} s: {type(exc).__name__}: {exc}")
            log.line("".join(traceback.format_exception(exc)).rstrip())
            raise
        peak = _peak_rss_mb()
        log.line(f"finished in {time.perf_counter() - started:.2f} s, peak RSS {peak:.0f} MiB")
    return TaskOutput(saved, model, peak)

