"""``reluscope experiments | run | reproduce``: the papers' experiments and the HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from reluscope.cli.common import _run, console

ScaleOpt = Annotated[str, typer.Option(help="quick (minutes, on generated data) or paper.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(help="Directory of MNIST / CIFAR-10 files, for experiments with a data_dir."),
]


def _with_data_dir(config_cls: Any, overrides: dict[str, Any], data_dir: Path | None) -> dict:
    if data_dir is not None and "data_dir" in config_cls.model_fields:
        return {"data_dir": str(data_dir), **overrides}
    return overrides


def list_experiments() -> None:
    """List the registered experiments and their configuration keys."""
    from reluscope.experiments import experiments

    table = Table()
    table.add_column("name", no_wrap=True)
    for column in ("paper", "title", "config keys"):
        table.add_column(column)
    for e in experiments():
        table.add_row(e.name, e.paper, e.title, ", ".join(e.config.config_keys()))
    console.print(table)


def _print_outcome(summary) -> None:
    outcome = summary.outcome
    state = "reused an earlier run" if summary.reused else f"{summary.elapsed_s:.1f} s"
    console.print(f"[bold]{summary.experiment.name}[/] ({state}) -> {summary.run_dir}")
    for p in outcome.predictions:
        badge = "[green]PASS[/]" if p.passed else "[red]FAIL[/]"
        console.print(f"  {badge} {escape(p.claim)} [dim]({escape(p.measured)})[/]")
    for key, value in outcome.numbers.items():
        console.print(
            f"  {key} = {value:.4g}" if isinstance(value, float) else f"  {key} = {value}"
        )


def run(
    name: Annotated[str, typer.Argument(help="Experiment name (see `reluscope experiments`).")],
    scale: ScaleOpt = "quick",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Config override key=value, e.g. train.lr=0.01 (repeatable; see reluscope.values).",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/NAME).")] = None,
    data_dir: DataDirOpt = None,
    rerun: Annotated[bool, typer.Option(help="Recompute even if the run finished.")] = False,
) -> None:
    """Run one experiment: records, figures and PASS/FAIL predictions in its run directory.
    An interrupted run resumes from its checkpoints when run again with the same settings."""

    def go() -> None:
        from reluscope.experiments import get_experiment, run_experiment
        from reluscope.values import parse_assignments

        experiment = get_experiment(name)
        overrides = _with_data_dir(experiment.config, parse_assignments(set_ or []), data_dir)
        summary = _interruptible(
            lambda: run_experiment(
                name, scale, overrides, out, rerun=rerun, progress=True, console=console
            ),
            out or Path("runs") / name,
        )
        _print_outcome(summary)

    _run(go)


def _interruptible(call, where: Path):
    try:
        return call()
    except KeyboardInterrupt:
        console.print(
            f"\n[yellow]interrupted[/]: what finished is kept in {where}; "
            "run the same command again to resume."
        )
        raise typer.Exit(130) from None


def reproduce(
    scale: ScaleOpt = "quick",
    out: Annotated[
        Path, typer.Option(help="Output directory; the report is OUT/index.html.")
    ] = Path("reluscope-report"),
    only: Annotated[
        str | None, typer.Option(help="Comma-separated experiment names (default: all).")
    ] = None,
    data_dir: DataDirOpt = None,
    rerun: Annotated[bool, typer.Option(help="Recompute runs that already finished.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            help="Experiments run at once in worker processes, one torch thread each "
            "(0: one per CPU core, at most 4; 1: one after another in this process)."
        ),
    ] = 0,
) -> None:
    """Run every registered experiment and write one self-contained HTML report,
    OUT/index.html. Finished runs in OUT are reused, so an interrupted reproduce resumes."""

    def go() -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        from reluscope.experiments.reproduce import choose
        from reluscope.experiments.reproduce import reproduce as run_all
        from reluscope.sweep.task import available_cores

        names = [n.strip() for n in only.split(",") if n.strip()] if only is not None else None
        count = workers or min(available_cores(), 4)
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=count == 1,
        )
        with progress:
            bar = progress.add_task(f"experiments ({count} at a time)", total=None)

            def show(name: str, result) -> None:
                progress.advance(bar)
                if isinstance(result, str):
                    console.print(f"[red]error[/] in {name}:\n{escape(result)}")
                else:
                    _print_outcome(result)

            def run_all_experiments():
                progress.update(bar, total=len(choose(names)))
                return run_all(
                    names,
                    scale,
                    out,
                    overrides=lambda e: _with_data_dir(e.config, {}, data_dir),
                    rerun=rerun,
                    workers=count,
                    console=console if count == 1 else None,
                    on_result=show,
                )

            done = _interruptible(run_all_experiments, out)
        predictions = [p for r in done.runs for p in r.outcome.predictions]
        console.rule()
        console.print(
            f"{sum(p.passed for p in predictions)}/{len(predictions)} predictions PASS, "
            f"{len(done.failures)} experiment(s) failed; report: {done.report}"
        )
        if done.failures:
            raise typer.Exit(1)

    _run(go)
