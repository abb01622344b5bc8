"""The local backend of a sweep: runs in worker processes on this machine.

Internal to reluscope.sweep: not part of the public API.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Generator
from concurrent.futures import ProcessPoolExecutor, as_completed

from reluscope.sweep.lifeline import die_with_parent
from reluscope.sweep.task import RunTask, TaskResult, available_cores, execute, lost

# Keep freed large buffers mapped in worker processes: with glibc's defaults, arrays above a few
# hundred kB are unmapped and page-faulted again on every training step, which made the
# dynamics simulations about 4x slower on our machines.
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "134217728"}


def run_local(tasks: list[RunTask], workers: int) -> Generator[TaskResult, None, None]:
    """Run ``tasks`` in ``workers`` spawned processes (each with ``cores // workers`` torch
    threads), yielding each result as soon as its run ends. Stopping early (Ctrl-C) stops the
    workers at once; their runs resume from their checkpoints when the sweep is run again. The
    workers end with this process, even when it is killed with SIGKILL."""
    if not tasks:
        return
    threads = max(1, available_cores() // workers)
    for name, value in WORKER_MALLOC.items():  # read by glibc when a worker starts
        os.environ.setdefault(name, value)
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=context, initializer=die_with_parent
    )
    finished = False
    try:
        futures = {executor.submit(execute, task, threads): task for task in tasks}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # the worker process died (killed, out of memory)
                yield lost(futures[future], exc)
        finished = True
    finally:
        if finished:
            executor.shutdown()
        else:
            _stop(executor)


def _stop(executor: ProcessPoolExecutor) -> None:
    """Cancel the runs not started and end the worker processes now."""
    processes = list((executor._processes or {}).values())  # no public way before Python 3.14
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
