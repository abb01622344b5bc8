"""``reluscope sweep``: an experiment over a grid of config values and seeds, on local worker
processes or on Ray."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from reluscope.cli.common import ForceOpt, Scale, _run, console
from reluscope.cli.experiments import (
    DataDirOpt,
    NameArg,
    ScaleOpt,
    TensorboardOpt,
    _interruptible,
    _with_data_dir,
)

MAX_NUMBERS = 6


def sweep(
    name: NameArg,
    grid: Annotated[
        list[str] | None,
        typer.Option(help="key=v1,v2,... (repeatable; values read like --set values)."),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Run every grid point with seeds 0..K-1.")] = 1,
    scale: ScaleOpt = Scale.quick,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Fixed config override key=value, e.g. train.lr=0.01 (repeatable)."
        ),
    ] = None,
    backend: Annotated[str, typer.Option(help="local (worker processes) or ray.")] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: local)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Runs at a time (local processes, or CPUs of a local Ray).")
    ] = 1,
    out: Annotated[
        Path, typer.Option(help="Output directory; the runs go to OUT/NAME/RUN_ID.")
    ] = Path("runs"),
    data_dir: DataDirOpt = None,
    force: ForceOpt = False,
    tensorboard: TensorboardOpt = False,
) -> None:
    """Run an experiment once per combination of the --grid values and seed, skipping runs
    that already finished; write all records to OUT/NAME/sweep.parquet (with the grid values
    and seed as columns) and print PASS/FAIL counts and key numbers (mean +- std over seeds)."""

    def go() -> None:
        from reluscope.experiments import get_experiment
        from reluscope.sweep import parse_grid, run_sweep
        from reluscope.values import parse_assignments

        experiment = get_experiment(name)
        overrides = _with_data_dir(experiment.config, parse_assignments(set_ or []), data_dir)
        values = parse_grid(grid or [])
        result = _interruptible(
            lambda: run_sweep(
                name,
                values,
                seeds,
                scale.value,
                overrides,
                out,
                backend=backend,
                workers=workers,
                address=address,
                console=console,
                force=force,
                tensorboard=tensorboard,
            ),
            out / experiment.name,
        )
        console.print(_summary_table(result, console.width))
        if any(run.outcome is not None and run.outcome.predictions for run in result.runs):
            console.print(_prediction_table(result))
        for run in result.failures:
            console.print(
                f"[red]FAILED[/] {escape(run.run_id)}: {escape(run.error)} "
                f"[dim](traceback: {escape(str(run.run_dir / 'error.txt'))})[/]"
            )
        from reluscope.sweep.figures import sweep_figures

        for figure in sweep_figures(result):
            console.print(f"figure: {escape(str(figure))}")
        counts = {s: sum(r.status == s for r in result.runs) for s in ("ran", "reused", "failed")}
        console.print(
            f"{len(result.runs)} runs ({', '.join(f'{n} {s}' for s, n in counts.items())}); "
            f"{len(result.records)} records in {escape(str(result.directory / 'sweep.parquet'))}, "
            f"per-run status in {escape(str(result.directory / 'runs.parquet'))}"
        )
        if result.failures:
            raise typer.Exit(1)

    _run(go)


#: Columns a key number needs to stay readable in the summary table ("1.234 ± 0.56" and borders).
NUMBER_WIDTH = 13


def _summary_table(result, width: int = 120) -> Table:
    """Per grid point: runs, PASS/FAIL counts of the predictions, key numbers mean +- std (as
    many as fit in ``width`` columns, at most MAX_NUMBERS; the rest are in runs.parquet)."""
    summary = result.summary()
    numbers = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean")]
    keys = sum(max(len(k), 6) + 3 for k in result.grid_keys) + 3 * 7
    shown = numbers[: max(1, min(MAX_NUMBERS, (width - keys) // NUMBER_WIDTH))]
    caption = (
        f"{len(numbers) - len(shown)} more numbers in runs.parquet" if shown != numbers else None
    )
    table = Table(title=f"sweep {result.name}: mean ± std over seeds", caption=caption)
    for header in (*result.grid_keys, "runs", "PASS", "FAIL"):
        table.add_column(escape(header), no_wrap=True)
    for name in shown:  # long keys wrap at their separators instead of squeezing the values
        table.add_column(escape(name.replace("_", " ").replace(".", ". ")), justify="right")
    for row in summary.to_dict("records"):
        done = f"{row['runs'] - row['failed_runs']}/{row['runs']}"
        if row["failed_runs"]:
            done = f"[red]{done}[/]"
        table.add_row(
            *(escape(str(row[k])) for k in result.grid_keys),
            done,
            f"[green]{row['passed']}[/]" if row["passed"] else "0",
            f"[red]{row['failed']}[/]" if row["failed"] else "0",
            *(_mean_std(row[f"{n}_mean"], row[f"{n}_std"]) for n in shown),
        )
    return table


def _mean_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"


def _prediction_table(result) -> Table:
    """One row per prediction of the paper, one column per grid point: how many of the seeds
    that finished bear it out ('k/n'), green when all do; the claims are the caption."""
    points: dict[str, list] = {}
    for run in result.runs:
        values = run.columns(result.grid_keys)
        label = ",".join(f"{k}={values[k]}" for k in result.grid_keys) or "all"
        points.setdefault(label, []).append(run)
    claims = next(r.outcome.predictions for r in result.runs if r.outcome is not None)
    table = Table(
        title="predictions of the paper: seeds that bear each out",
        caption="\n".join(f"P{i}: {escape(p.claim)}" for i, p in enumerate(claims, 1)),
        caption_justify="left",
    )
    table.add_column("prediction", no_wrap=True)
    for label in points:
        table.add_column(escape(label), justify="right", no_wrap=True)
    for i in range(len(claims)):
        cells = []
        for runs in points.values():
            verdicts = [
                r.outcome.predictions[i].passed
                for r in runs
                if r.outcome is not None and len(r.outcome.predictions) > i
            ]
            passed, total = sum(verdicts), len(verdicts)
            colour = "green" if total and passed == total else "red"
            cells.append(f"[{colour}]{passed}/{total}[/]" if total else "")
        table.add_row(f"P{i + 1}", *cells)
    return table
