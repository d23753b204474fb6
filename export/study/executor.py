"""Where the study's tasks run: in this process, in worker processes on this machine, or on Ray.

``--executor serial`` (default), ``processes[:N]`` (N worker processes, default one per
CPU) or ``ray[:ADDRESS]`` (no address: start Ray on this machine with one CPU per core;
``ray:N``: with N CPUs; ``ray:auto``, ``ray:HOST:PORT``, ``ray://HOST:10001``: join a
running cluster). Ray is imported only when ``ray`` is used (here and by
:mod:`~edgemer.export.study.tune`); a missing Ray raises
:class:`~edgemer.errors.MissingExtraError` naming the ``study`` extra.

Every executor gives the same results for the same tasks (see :mod:`~edgemer.export.study.tasks`),
hands each finished task to the driver as it completes (the driver caches it at once, so an
interrupted run resumes), retries a failed task once (on Ray also when its worker process
died) and returns the tasks that failed twice instead of raising, so that the report names
them. Ctrl-C cancels what is queued, stops the workers and re-raises ``KeyboardInterrupt``.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import signal
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from edgemer._extras import require
from edgemer.errors import ConfigError
from edgemer.export.core.progress import progress_bar
from edgemer.export.study.run import Pool, StudyOptions
from edgemer.export.study.tasks import StudyTask, TaskOutput, run_task

ATTEMPTS = 2
"""Runs a task gets at most: the first and one retry."""

EXECUTORS = ("serial", "processes", "ray")


@dataclass(frozen=True)
class ExecutorSpec:
    """How to run the study's tasks (see the module docstring for the text forms).

    kind: ``serial``, ``processes`` or ``ray``. workers: processes: worker processes;
    ray: CPUs of the local Ray instance this starts (None: one per core). address: ray
    only: the cluster to join (None: start Ray here, or use the one this process already
    started with ``ray.init``).
    """

    kind: str = "serial"
    workers: int | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"executor must be one of serial, processes[:N], ray[:ADDRESS]; got {self.kind!r}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"executor {self.kind}: the number of workers must be >= 1, got {self.workers}")
        if self.address is not None and self.kind != "ray":
            raise ConfigError(f"executor {self.kind} takes no address (only ray:ADDRESS does)")
        if self.workers is not None and self.address is not None:
            raise ConfigError("executor ray: give either a CPU count (ray:N, local) or an address (ray:ADDRESS)")
        if self.kind == "serial" and self.workers is not None:
            raise ConfigError("executor serial runs one task at a time; use processes:N or ray for more")

    @classmethod
    def parse(cls, text: str) -> "ExecutorSpec":
        """``serial``, ``processes``, ``processes:N``, ``ray``, ``ray:N`` or ``ray:ADDRESS``."""
        kind, _, rest = text.strip().partition(":")
        if kind not in EXECUTORS:
            raise ConfigError(f"--executor must be serial, processes[:N] or ray[:ADDRESS]; got {text!r}")
        if not rest:
            return cls(kind)
        if re.fullmatch(r"\d+", rest):
            return cls(kind, workers=int(rest))
        if kind != "ray":
            raise ConfigError(f"--executor {kind}:N takes a number of workers, got {rest!r}")
        return cls(kind, address=rest)

    def describe(self) -> str:
        if self.kind == "serial":
            return "serial"
        if self.kind == "processes":
            return f"processes ({self.workers or os.cpu_count()} workers)"
        return f"ray ({self.address or 'local'}" + (f", {self.workers} CPUs)" if self.workers else ")")


@dataclass
class Failure:
    """A task that failed every attempt: its name and the last error."""

    task: StudyTask
    error: str
    attempts: int

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task.name, "protocol": self.task.protocol, "fold": self.task.fold,
                "variant": self.task.variant, "attempts": self.attempts, "error": self.error}


OnDone = Callable[[StudyTask, TaskOutput], None]


def run_tasks(tasks: Sequence[StudyTask], pool: Pool, opts: StudyOptions, spec: ExecutorSpec, on_done: OnDone,
              log_dir: Path | None = None, progress: bool = True) -> list[Failure]:
    """Run ``tasks`` with ``spec``; call ``on_done(task, output)`` in this process as each one
    succeeds; return the tasks that failed :data:`ATTEMPTS` times.

    A task whose ``needs`` names another task gets that task's model when it succeeded,
    and trains the model itself otherwise. ``log_dir``: where each task appends its log
    (``<task>.log``; on a cluster, a folder every node can write, or the logs stay on the nodes).
    """
    bar = progress_bar(total=len(tasks), enabled=progress, desc=f"study [{spec.kind}]", unit="task")
    try:
        if spec.kind == "serial":
            return _run_serial(tasks, pool, opts, on_done, log_dir, bar)
        if spec.kind == "processes":
            return _run_processes(tasks, pool, opts, spec, on_done, log_dir, bar)
        return _run_ray(tasks, pool, opts, spec, on_done, log_dir, bar)
    finally:
        bar.close()


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


# --------------------------------------------------------------------------- serial

def _run_serial(tasks: Sequence[StudyTask], pool: Pool, opts: StudyOptions, on_done: OnDone,
                log_dir: Path | None, bar: Any) -> list[Failure]:
    sched, failures = _Scheduler(tasks), []
    while sched.waiting:
        for task, upstream in sched.ready():
            bar.set_description(task.name)
            error = ""
            for _ in range(ATTEMPTS):
                try:
                    out = run_task(task, pool, opts, log_dir, upstream)
                except Exception as exc:  # noqa: BLE001 - retried, then named in the report
                    error = _error_text(exc)
                    continue
                sched.done(task, out.model)
                on_done(task, out)
                break
            else:
                failures.append(Failure(task, error, ATTEMPTS))
                sched.settled.add(task.name)
            bar.update(1)
    return failures


# --------------------------------------------------------------------------- processes

def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is the driver's to handle (it stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Scheduler:
    """Submits tasks whose upstream task is settled, in order; used by every executor.

    A task's output model (:attr:`TaskOutput.model`) is kept while tasks that need it wait and
    dropped when the last of them has started.
    """

    def __init__(self, tasks: Sequence[StudyTask]) -> None:
        self.waiting = list(tasks)
        self.dependents = Counter(t.needs for t in tasks if t.needs)
        self.models: dict[str, Any] = {}  # task name -> its model (process) or model ObjectRef (Ray)
        self.settled: set[str] = set()  # tasks done or failed for good

    def done(self, task: StudyTask, model: Any) -> None:
        """``task`` succeeded with ``model`` (kept when another task needs it)."""
        if self.dependents[task.name]:
            self.models[task.name] = model
        self.settled.add(task.name)

    def ready(self) -> list[tuple[StudyTask, Any]]:
        """Tasks that can start now, each with its upstream model (or None), removed from the queue."""
        out = []
        for task in list(self.waiting):
            if task.needs is None or task.needs in self.settled:
                self.waiting.remove(task)
                out.append((task, self._hand_on(task.needs)))
        return out

    def _hand_on(self, name: str | None) -> Any:
        if name is None:
            return None
        self.dependents[name] -= 1
        return self.models.get(name) if self.dependents[name] else self.models.pop(name, None)


def _run_processes(tasks: Sequence[StudyTask], pool: Pool, opts: StudyOptions, spec: ExecutorSpec,
                   on_done: OnDone, log_dir: Path | None, bar: Any) -> list[Failure]:
    workers = spec.workers or os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")  # fork after torch's threads started can deadlock
    before = set(multiprocessing.active_children())
    sched = _Scheduler(tasks)
    attempts: dict[str, int] = {}
    upstream_of: dict[str, Any] = {}
    failures: list[Failure] = []
    running: dict[Future, StudyTask] = {}
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_sigint)

    def submit(task: StudyTask, upstream: Any) -> None:
        attempts[task.name] = attempts.get(task.name, 0) + 1
        upstream_of[task.name] = upstream
        running[executor.submit(run_task, task, pool, opts, log_dir, upstream)] = task

    def settle_failed(task: StudyTask, error: str) -> None:
        if attempts[task.name] < ATTEMPTS:
            submit(task, upstream_of[task.name])
            return
        failures.append(Failure(task, error, attempts[task.name]))
        sched.settled.add(task.name)
        bar.update(1)

    try:
        while sched.waiting or running:
            for task, upstream in sched.ready():
                submit(task, upstream)
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            retry: list[tuple[StudyTask, str]] = []
            broken = False
            for fut in done:
                task = running.pop(fut)
                try:
                    out = fut.result()
                except BrokenProcessPool as exc:  # a worker died (killed, out of memory): the pool is gone
                    broken = True
                    retry.append((task, f"worker process died ({exc})"))
                    continue
                except Exception as exc:  # noqa: BLE001 - retried, then named in the report
                    retry.append((task, _error_text(exc)))
                    continue
                sched.done(task, out.model)
                on_done(task, out)
                bar.update(1)
            if broken:  # every task still in the dead pool fails with it; a new pool reruns them
                retry += [(task, "worker process died") for task in running.values()]
                running.clear()
                executor.shutdown(wait=False, cancel_futures=True)
                executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_sigint)
            for task, error in retry:
                settle_failed(task, error)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        for child in set(multiprocessing.active_children()) - before:
            child.terminate()
        for child in set(multiprocessing.active_children()) - before:
            child.join(5)
        raise
    executor.shutdown(wait=True)
    return failures


# --------------------------------------------------------------------------- ray

def _ray_task(task: StudyTask, pool: Pool, opts: StudyOptions, log_dir: Path | None,
              upstream: Any) -> tuple[dict[str, Any], Any, float]:
    out = run_task(task, pool, opts, log_dir, upstream)
    return out.saved, out.model, out.peak_rss_mb


def _run_ray(tasks: Sequence[StudyTask], pool: Pool, opts: StudyOptions, spec: ExecutorSpec,
             on_done: OnDone, log_dir: Path | None, bar: Any) -> list[Failure]:
    with ray_session(spec.address, spec.workers) as ray:
        return _run_on_ray(ray, tasks, pool, opts, on_done, log_dir, bar)


def _run_on_ray(ray: Any, tasks: Sequence[StudyTask], pool: Pool, opts: StudyOptions, on_done: OnDone,
                log_dir: Path | None, bar: Any) -> list[Failure]:
    remote = ray.remote(_ray_task).options(num_cpus=opts.task_threads, num_returns=3, max_retries=ATTEMPTS - 1,
                                           retry_exceptions=True)
    sched = _Scheduler(tasks)
    failures: list[Failure] = []
    running: dict[Any, tuple[StudyTask, Any, Any]] = {}  # saved ref -> (task, model ref, rss ref)
    try:
        pool_ref = ray.put(pool)  # once into the object store; every task reads it from there
        while sched.waiting or running:
            for task, upstream in sched.ready():
                saved, model, rss = remote.remote(task, pool_ref, opts, log_dir, upstream)
                running[saved] = (task, model, rss)
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)  # timeout: Ctrl-C is seen within 1 s
            for ref in done:
                task, model_ref, rss_ref = running.pop(ref)
                try:
                    saved, rss = ray.get([ref, rss_ref])
                except Exception as exc:  # noqa: BLE001 - a RayError: Ray retried the task already
                    cause = getattr(exc, "cause", None) or exc
                    failures.append(Failure(task, _error_text(cause).splitlines()[0], ATTEMPTS))
                    sched.settled.add(task.name)
                    bar.update(1)
                    continue
                sched.done(task, model_ref)  # passed on by reference: Ray resolves it in the worker
                on_done(task, TaskOutput(saved, None, rss))
                bar.update(1)
    except BaseException:
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    return failures


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """The ``ray`` module, connected: to ``address`` (a running cluster), else to the Ray this
    process already started (``ray.init`` in a notebook or a test), else to a new local Ray with
    ``num_cpus`` CPUs (None: one per core), which is shut down on exit (also on Ctrl-C).

    Raises
    ------
    MissingExtraError: Ray is not installed (extra ``study``).
    """
    ray = require("ray", "study", "Running the study on Ray (edgemer study --executor ray, edgemer study tune)")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
