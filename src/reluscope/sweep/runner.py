"""Running a sweep: validate every config of the grid, skip the runs that already finished,
run the others on a backend (local processes or Ray), and gather their records."""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from contextlib import closing
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reluscope.errors import InputError, did_you_mean
from reluscope.experiments.config import ExperimentConfig
from reluscope.experiments.outcome import Outcome
from reluscope.experiments.registry import Experiment, get_experiment
from reluscope.experiments.runner import prepare_run_dir
from reluscope.rundir import claim_directory, make_directory, mark_collection
from reluscope.sweep.grid import SweepPoint, expand_grid
from reluscope.sweep.result import FAILED, RAN, REUSED, SweepResult, SweepRun
from reluscope.sweep.task import RunTask, TaskResult
from reluscope.train.display import writer_class
from reluscope.validation import check_choice, check_int
from reluscope.values import lookup

BACKENDS = ("local", "ray")


def run_sweep(
    experiment: str | Experiment,
    grid: dict[str, list[Any]],
    seeds: int = 1,
    scale: str = "quick",
    overrides: dict[str, Any] | None = None,
    out_dir: str | os.PathLike = "runs",
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    *,
    progress: bool = True,
    console: Console | None = None,
    force: bool = False,
    tensorboard: bool = False,
) -> SweepResult:
    """Run ``experiment`` (an Experiment, a registered name or ``package.module:ATTRIBUTE``,
    importable by the workers) once per combination of the ``grid`` values and seed
    ``0..seeds-1``, with the fixed ``overrides``, each into ``out_dir/NAME/RUN_ID``, and write
    the records of all runs to ``out_dir/NAME/sweep.parquet`` and each run's status to
    ``runs.parquet``.

    Every config is validated before anything runs. Runs that already finished with the same
    config are read back, not run again. ``backend="local"`` runs ``workers`` processes here;
    ``backend="ray"`` runs Ray tasks on the cluster at ``address`` or on a local Ray instance of
    ``workers`` CPUs. A failed run is reported in the result (with its error) and does not stop
    the others. A non-empty ``out_dir/NAME`` that reluscope did not write is refused unless
    ``force``. With ``tensorboard``, each run's training runs also log to TensorBoard."""
    if tensorboard:
        writer_class()  # InputError now, not in every worker, when tensorboard is missing
    check_choice("backend", backend, BACKENDS)
    workers = check_int("workers", workers, minimum=1)
    if address is not None and backend != "ray":
        raise InputError(
            f"address {address!r} is only used by the Ray backend: choose backend ray "
            "(--backend ray)"
        )
    target = experiment
    if not isinstance(experiment, Experiment):
        experiment = get_experiment(experiment)
    points = expand_grid(grid, seeds, overrides)
    configs = _validate(experiment, points, scale)
    grid = _validated_grid(grid, points, configs)
    points = expand_grid(grid, seeds, overrides)
    configs = _validate(experiment, points, scale)
    if backend == "ray":
        from reluscope.sweep.ray_backend import import_ray

        import_ray()
    directory = claim_directory(Path(out_dir) / experiment.name, force, collection=True)
    make_directory(directory, "sweep directory")
    mark_collection(directory)
    runs: dict[str, SweepRun] = {}
    tasks: list[RunTask] = []
    for point, config in zip(points, configs, strict=True):
        run_dir = directory / point.run_id
        if prepare_run_dir(run_dir, config.to_json(), experiment.name):
            outcome, extra = Outcome.load(run_dir)
            runs[point.run_id] = SweepRun(
                point, config.to_json(), run_dir, REUSED, extra.get("elapsed_s", 0.0), outcome
            )
        else:
            gpus = 1 if config.device.startswith("cuda") else 0
            task = RunTask(
                target, scale, point.overrides, str(run_dir), point.run_id, gpus, force, tensorboard
            )
            tasks.append(task)
    results = _results(tasks, backend, workers, address)
    with (
        closing(results),
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not progress,
        ) as bar,
    ):
        total = bar.add_task(_describe(experiment.name, runs), total=len(points))
        bar.advance(total, len(runs))
        by_id = {p.run_id: (p, c) for p, c in zip(points, configs, strict=True)}
        for result in results:
            point, config = by_id[result.run_id]
            status = FAILED if result.outcome is None else (REUSED if result.reused else RAN)
            runs[result.run_id] = SweepRun(
                point,
                config.to_json(),
                directory / point.run_id,
                status,
                result.elapsed_s,
                result.outcome,
                result.error,
                result.traceback,
            )
            bar.update(total, advance=1, description=_describe(experiment.name, runs))
    ordered = [runs[p.run_id] for p in points]
    sweep = SweepResult.collect(experiment.name, directory, tuple(grid), ordered)
    sweep.save()
    return sweep


def _validate(
    experiment: Experiment, points: list[SweepPoint], scale: str
) -> list[ExperimentConfig]:
    """The config of every point, built and validated; the first invalid one is an InputError
    naming its run."""
    fields = experiment.config.model_fields
    unknown = sorted({key.split(".")[0] for key in points[0].overrides} - set(fields))
    if unknown:
        raise InputError(
            f"unknown config key(s) {', '.join(unknown)} for experiment {experiment.name}; "
            f"valid keys: {', '.join(fields)}{did_you_mean(unknown[0], fields)}"
        )
    configs = []
    for point in points:
        try:
            configs.append(experiment.config.build(scale, point.overrides))
        except InputError as exc:
            raise InputError(f"run {point.run_id} of the sweep: {exc}") from None
    return configs


def _validated_grid(
    grid: dict[str, list[Any]], points: list[SweepPoint], configs: list[ExperimentConfig]
) -> dict[str, list[Any]]:
    """``grid`` with each value replaced by its validated JSON value (``1`` -> ``1.0`` for a
    float key), so that run ids, columns and re-runs do not depend on how a value was written."""
    validated: dict[str, dict[str, Any]] = {key: {} for key in grid}
    for point, config in zip(points, configs, strict=True):
        values = config.to_json()
        for key in grid:
            validated[key].setdefault(_text(point.values[key]), lookup(values, key))
    return {key: [validated[key][_text(v)] for v in values] for key, values in grid.items()}


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _results(
    tasks: list[RunTask], backend: str, workers: int, address: str | None
) -> Generator[TaskResult, None, None]:
    """The results of ``tasks`` on ``backend``, as they come (a generator: closing it stops
    the runs not yet started)."""
    if backend == "ray":
        from reluscope.sweep.ray_backend import run_ray

        return run_ray(tasks, workers, address)
    from reluscope.sweep.local import run_local

    return run_local(tasks, workers)


def _describe(name: str, runs: dict[str, SweepRun]) -> str:
    failed = sum(run.status == FAILED for run in runs.values())
    return f"sweep {name}" + (f" [red]({failed} failed)[/]" if failed else "")
