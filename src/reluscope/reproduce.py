"""Running a set of experiments into one output directory and writing their HTML report, one
at a time in this process or in worker processes."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from reluscope.errors import InputError
from reluscope.experiments.provenance import command_line, environment, now
from reluscope.experiments.registry import Experiment, experiments, get_experiment
from reluscope.experiments.runner import RunSummary, check_device, run_experiment
from reluscope.io import atomic_write
from reluscope.report.html import write_report
from reluscope.report.rundirs import PROVENANCE_FILE, FailedRun, RunSet, read_run
from reluscope.rundir import claim_directory, locked, mark_collection
from reluscope.validation import check_int


@dataclass(frozen=True)
class Reproduction:
    """The runs that finished, the experiments that failed (name, error) and the report."""

    runs: list[RunSummary]
    failures: list[tuple[str, str]]
    report: Path


def choose(names: Sequence[str] | None) -> list[Experiment]:
    """The experiments called ``names`` (all registered ones when None)."""
    chosen = [get_experiment(n) for n in names] if names is not None else experiments()
    if not chosen:
        raise InputError("no experiments to run: give at least one name")
    return chosen


def check_plan(
    names: Sequence[str] | None,
    scale: str,
    out: str | Path,
    overrides: Callable[[Experiment], dict] | None = None,
    workers: int = 1,
    force: bool = False,
) -> tuple[list[Experiment], dict[str, dict]]:
    """Everything :func:`reproduce` checks before it runs anything: the experiments ``names``,
    ``workers``, the output directory ``out`` (see :func:`~reluscope.rundir.claim_directory`)
    and every experiment's config at ``scale`` with its ``overrides`` (device included).
    Returns the experiments and their overrides by name; writes nothing."""
    chosen = choose(names)
    workers = check_int("workers", workers, minimum=1)
    claim_directory(out, force, collection=True)
    configs = {e.name: (overrides(e) if overrides else {}) for e in chosen}
    for e in chosen:
        check_device(e.config.build(scale, configs[e.name]).device)
    return chosen, configs


def reproduce(
    names: Sequence[str] | None = None,
    scale: str = "quick",
    out: str | Path = "reluscope-report",
    *,
    overrides: Callable[[Experiment], dict] | None = None,
    rerun: bool = False,
    force: bool = False,
    workers: int = 1,
    console: Console | None = None,
    on_result: Callable[[str, RunSummary | str], None] | None = None,
) -> Reproduction:
    """Run the experiments ``names`` (default: all) at ``scale`` into ``out/NAME`` and write
    ``out/index.html``. ``overrides(experiment)`` gives each one's config overrides. With
    ``workers > 1`` the experiments run in that many processes (which end with this one). A
    failing experiment is recorded and the others go on; finished runs in ``out`` are reused
    unless ``rerun``. A non-empty ``out`` that reluscope did not write is refused unless
    ``force``; ``out`` is locked while this runs.
    ``console`` shows each run's progress (in-process only); ``on_result(name, summary or
    error text)`` is called as each experiment ends."""
    chosen, configs = check_plan(names, scale, out, overrides, workers, force)
    out = Path(out)
    say = on_result or (lambda name, result: None)
    with locked(out, "output directory"):
        mark_collection(out)
        started, start = now(), time.perf_counter()
        if workers == 1:
            runs, failures = _in_process(chosen, scale, out, configs, rerun, force, console, say)
        else:
            runs, failures = _in_workers(chosen, scale, out, configs, rerun, force, workers, say)
        provenance = write_provenance(
            out,
            {
                "scale": scale,
                "experiments": [e.name for e in chosen],
                "workers": workers,
                "threads": 1 if workers > 1 else torch.get_num_threads(),
                "started": started,
                "finished": now(),
                "wall_s": time.perf_counter() - start,
                "reused": [r.experiment.name for r in runs if r.reused],
            },
        )
        runset = RunSet(
            [read_run(r.run_dir) for r in runs],
            [FailedRun(name, out / name, error) for name, error in failures],
            provenance,
        )
        report = write_report(runset, out / "index.html")
    return Reproduction(runs, failures, report)


def _in_process(chosen, scale, out, configs, rerun, force, console, say):
    runs, failures = [], []
    for i, experiment in enumerate(chosen, 1):
        if console is not None:
            console.rule(f"[{i}/{len(chosen)}] {experiment.name}: {experiment.title}")
        try:
            summary = run_experiment(
                experiment,
                scale,
                configs[experiment.name],
                out / experiment.name,
                rerun=rerun,
                force=force,
                progress=console is not None,
                console=console,
            )
        except InputError as exc:
            failures.append((experiment.name, str(exc)))
        except Exception:  # one broken experiment must not lose the others' results
            failures.append((experiment.name, traceback.format_exc()))
        else:
            runs.append(summary)
            say(experiment.name, summary)
            continue
        say(*failures[-1])
    return runs, failures


def _in_workers(chosen, scale, out, configs, rerun, force, workers, say):
    from reluscope.sweep.local import run_local
    from reluscope.sweep.task import RunTask

    by_name = {e.name: e for e in chosen}
    if rerun:
        for e in chosen:
            (out / e.name / "outcome.json").unlink(missing_ok=True)
    tasks = [
        RunTask(e, scale, configs[e.name], str(out / e.name), e.name, force=force) for e in chosen
    ]
    done: dict[str, RunSummary | tuple[str, str]] = {}
    for result in run_local(tasks, workers):
        experiment = by_name[result.run_id]
        if result.outcome is None:
            failure = (experiment.name, result.traceback or result.error)
            done[result.run_id] = failure
            say(*failure)
            continue
        summary = RunSummary(
            experiment,
            experiment.config.build(scale, configs[experiment.name]),
            result.outcome,
            out / experiment.name,
            result.elapsed_s,
            scale,
            result.reused,
        )
        done[result.run_id] = summary
        say(experiment.name, summary)
    ordered = [done[e.name] for e in chosen if e.name in done]
    runs = [r for r in ordered if isinstance(r, RunSummary)]
    failures = [r for r in ordered if not isinstance(r, RunSummary)]
    return runs, failures


def write_provenance(out: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Write the run-level provenance ``info`` with this process's environment and command
    line to ``out/provenance.json``, atomically; returns what was written."""
    payload = {**environment(), "command_line": command_line(), **info}
    text = json.dumps(payload, indent=2)
    atomic_write(out / PROVENANCE_FILE, lambda t: t.write_text(text))
    return payload
