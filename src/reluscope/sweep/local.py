"""The local backend of a sweep: runs in worker processes on this machine."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from reluscope.sweep.task import RunTask, TaskResult, available_cores, execute, lost


def run_local(tasks: list[RunTask], workers: int) -> Iterator[TaskResult]:
    """Run ``tasks`` in ``workers`` spawned processes (each with ``cores // workers`` torch
    threads), yielding each result as soon as its run ends. Stopping early (Ctrl-C) cancels the
    runs not yet started."""
    if not tasks:
        return
    threads = max(1, available_cores() // workers)
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context)
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
        executor.shutdown(wait=finished, cancel_futures=True)
