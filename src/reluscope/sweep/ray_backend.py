"""The Ray backend of a sweep: each run a Ray task, on a cluster or on a local Ray instance.

Internal to reluscope.sweep: not part of the public API.
"""

from __future__ import annotations

import logging
import os
import site
import sys
import sysconfig
from collections.abc import Generator
from types import ModuleType

from reluscope.errors import InputError
from reluscope.sweep.task import RunTask, TaskResult, available_cores, execute, lost

INSTALL_HINT = 'the Ray backend needs ray: pip install "reluscope[ray]"'


def import_ray() -> ModuleType:
    """The ``ray`` module, or an InputError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return ray


def run_ray(
    tasks: list[RunTask], workers: int, address: str | None
) -> Generator[TaskResult, None, None]:
    """Run ``tasks`` as Ray tasks, yielding each result as soon as its run ends. With
    ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:10001``) they go to that cluster, one
    CPU (and one GPU when the config's device is CUDA) and one torch thread each; without it, to
    a local Ray instance of ``workers`` CPUs, each task with ``cores // workers`` torch threads.
    A Ray session already started in this process is used as it is."""
    ray = import_ray()
    if not tasks:
        return
    started = not ray.is_initialized()
    if started:
        _start(ray, workers, address)
    threads = 1 if address else max(1, available_cores() // workers)
    remote = ray.remote(execute)
    refs = {
        remote.options(num_cpus=1, num_gpus=task.gpus).remote(task, threads): task for task in tasks
    }
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died or the node was lost
                    yield lost(refs[ref], exc)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def _start(ray: ModuleType, workers: int, address: str | None) -> None:
    """Connect to the cluster at ``address``, or start a local instance of ``workers`` CPUs.
    The workers get this process's import path (PYTHONPATH), so that a user's experiment found
    here is found there too."""
    options = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "runtime_env": {"env_vars": {"PYTHONPATH": _import_path()}},
    }
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(address="local", num_cpus=workers, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise InputError(f"cannot connect to {where}: {exc}") from exc


def _import_path() -> str:
    """This process's import directories other than the standard library and site-packages
    (the working directory, PYTHONPATH, ...), as a PYTHONPATH."""
    paths = sysconfig.get_paths()
    installed = [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    installed += [*site.getsitepackages(), site.getusersitepackages()]
    installed = [os.path.realpath(p) for p in installed]
    entries = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.getcwd())
        inside = any(path == p or path.startswith(p + os.sep) for p in installed)
        if os.path.isdir(path) and not inside and path not in entries:
            entries.append(path)
    return os.pathsep.join(entries)
