"""The unit of work of a sweep: one experiment run, executed in a worker process or a Ray task,
described and answered by plain picklable data.

Internal to reluscope.sweep: not part of the public API.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reluscope.experiments.outcome import Outcome
from reluscope.experiments.registry import Experiment

ERROR_FILE = "error.txt"


@dataclass(frozen=True)
class RunTask:
    """One run for a worker: the experiment (an Experiment, a registered name or
    ``package.module:ATTRIBUTE``), its scale and config overrides, its run directory, its run
    id, the GPUs it needs, whether a run directory reluscope did not write may be used, and
    whether its training runs log to TensorBoard."""

    experiment: str | Experiment
    scale: str
    overrides: dict[str, Any]
    run_dir: str
    run_id: str
    gpus: int = 0
    force: bool = False
    tensorboard: bool = False


@dataclass(frozen=True)
class TaskResult:
    """What a worker sends back: the outcome (None when the run failed), the run's duration in
    seconds, whether it was read back from an earlier run, and the error (one line) and its
    traceback when it failed."""

    run_id: str
    outcome: Outcome | None
    elapsed_s: float
    reused: bool = False
    error: str = ""
    traceback: str = ""


def execute(task: RunTask, threads: int) -> TaskResult:
    """Run ``task`` with ``threads`` torch threads. An exception does not escape: it becomes a
    failed result, and its traceback is also written to ``error.txt`` in the run directory."""
    import torch

    from reluscope.experiments.runner import run_experiment

    torch.set_num_threads(threads)
    error_file = Path(task.run_dir) / ERROR_FILE
    with contextlib.suppress(OSError):  # the run directory may not exist yet
        error_file.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        summary = run_experiment(
            task.experiment,
            task.scale,
            task.overrides,
            task.run_dir,
            force=task.force,
            progress=False,
            tensorboard=task.tensorboard,
        )
    except Exception as exc:
        trace = traceback.format_exc()
        if os.access(task.run_dir, os.W_OK):  # absent when the run failed before creating it
            with contextlib.suppress(OSError):
                error_file.write_text(trace)
        message = f"{type(exc).__name__}: {exc}"
        return TaskResult(
            task.run_id, None, time.perf_counter() - start, error=message, traceback=trace
        )
    return TaskResult(task.run_id, summary.outcome, summary.elapsed_s, summary.reused)


def lost(task: RunTask, exc: BaseException) -> TaskResult:
    """The result of a task whose worker itself failed (killed, out of memory, unreachable)."""
    return TaskResult(
        task.run_id, None, 0.0, error=f"the worker failed: {type(exc).__name__}: {exc}"
    )


def available_cores() -> int:
    """The CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
