"""``reluscope experiments | run | reproduce``: the papers' experiments and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from rich.markup import escape
from rich.table import Table

from reluscope.cli.common import ForceOpt, Scale, _run, choice_option, console

ScaleOpt = Annotated[
    Scale,
    choice_option(Scale, "quick: minutes, on generated data; paper: the papers' configs."),
]
TensorboardOpt = Annotated[
    bool,
    typer.Option(
        "--tensorboard",
        help="Also log every training run's probe values to TensorBoard (RUN_DIR/.../tensorboard;"
        " needs the tensorboard package).",
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(help="Directory of MNIST / CIFAR-10 files, for experiments with a data_dir."),
]


def _with_data_dir(config_cls: Any, overrides: dict[str, Any], data_dir: Path | None) -> dict:
    if data_dir is not None and "data_dir" in config_cls.model_fields:
        return {"data_dir": str(data_dir), **overrides}
    return overrides


def _names_help(what: str) -> str:
    from reluscope.experiments.registry import declared_names

    return f"{what}: {', '.join(declared_names())}, or your own as package.module:ATTR."


def _complete_name(incomplete: str) -> list[str]:
    from reluscope.experiments.registry import declared_names

    return [n for n in declared_names() if n.startswith(incomplete)]


NameArg = Annotated[
    str,
    typer.Argument(
        help=_names_help("The experiment"),
        autocompletion=_complete_name,
        show_default=False,
    ),
]


def list_experiments(
    name: Annotated[
        str | None,
        typer.Argument(
            help=_names_help("Show the config keys of this experiment"),
            autocompletion=_complete_name,
            show_default=False,
        ),
    ] = None,
) -> None:
    """List the registered experiments, or show one experiment's config keys with their type,
    default (quick scale), paper-scale value and meaning."""

    def go() -> None:
        from reluscope.experiments import experiments, get_experiment

        if name is not None:
            console.print(_config_table(get_experiment(name)))
            return
        table = Table(caption="reluscope experiments NAME shows every config key of one")
        table.add_column("name", no_wrap=True)
        for column in ("paper", "title", "config keys"):
            table.add_column(column)
        for e in experiments():
            table.add_row(e.name, e.paper, e.title, ", ".join(e.config.config_keys()))
        console.print(table)

    _run(go)


def all_keys(config_cls: type[BaseModel], prefix: str = "") -> dict[str, FieldInfo]:
    """Every key of a config class, nested configs as dotted keys (``train.lr``)."""
    keys: dict[str, FieldInfo] = {}
    for key, info in config_cls.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            keys.update(all_keys(kind, f"{prefix}{key}."))
        else:
            keys[f"{prefix}{key}"] = info
    return keys


def _type_name(info: FieldInfo) -> str:
    kind = info.annotation
    text = kind.__name__ if isinstance(kind, type) else str(kind)
    text = text.replace("typing.", "").replace("NoneType", "None")
    limits = [
        f"{symbol} {getattr(m, attr)}"
        for m in info.metadata
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        if getattr(m, attr, None) is not None
    ]
    return text + (f" ({', '.join(limits)})" if limits else "")


def _config_table(experiment) -> Table:
    from reluscope.experiments.provenance import flatten

    quick = flatten(experiment.config.build("quick").to_json())
    paper = flatten(experiment.config.build("paper").to_json())
    table = Table(
        title=f"{experiment.name}: {experiment.title}",
        caption=f"reluscope run {experiment.name} --set KEY=VALUE",
    )
    table.add_column("key", no_wrap=True, style="bold")
    for column in ("type", "quick (default)", "paper", "meaning"):
        table.add_column(column, overflow="fold")
    for key, info in all_keys(experiment.config).items():
        default, big = quick.get(key), paper.get(key)
        table.add_row(
            key,
            escape(_type_name(info)),
            escape(json.dumps(default)),
            escape("same" if big == default else json.dumps(big)),
            escape(info.description or ""),
        )
    return table


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
    name: NameArg,
    scale: ScaleOpt = Scale.quick,
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
    force: ForceOpt = False,
    tensorboard: TensorboardOpt = False,
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
                name,
                scale.value,
                overrides,
                out,
                rerun=rerun,
                force=force,
                progress=True,
                console=console,
                tensorboard=tensorboard,
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
    scale: ScaleOpt = Scale.quick,
    out: Annotated[
        Path, typer.Option(help="Output directory; the report is OUT/index.html.")
    ] = Path("reluscope-report"),
    only: Annotated[
        str | None,
        typer.Option(help=_names_help("Comma-separated experiments (default: all), from")),
    ] = None,
    data_dir: DataDirOpt = None,
    rerun: Annotated[bool, typer.Option(help="Recompute runs that already finished.")] = False,
    force: ForceOpt = False,
    workers: Annotated[
        int,
        typer.Option(
            help="Experiments run at once in worker processes, one torch thread each "
            "(0: one per CPU core, at most 4; 1: one after another in this process)."
        ),
    ] = 0,
    open_: Annotated[
        bool, typer.Option("--open", help="Open the report in the web browser.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show each experiment's key numbers.")
    ] = False,
) -> None:
    """Run every registered experiment and write one self-contained HTML report,
    OUT/index.html. Finished runs in OUT are reused, so an interrupted reproduce resumes.
    While it runs, a table shows the running experiments with their training progress and
    ETA; at the end, a table shows each experiment's PASS/FAIL verdicts."""

    def go() -> None:
        from rich.live import Live

        from reluscope.cli.board import Board, verdict_table
        from reluscope.cli.report import show_report
        from reluscope.reproduce import check_plan
        from reluscope.reproduce import reproduce as run_all
        from reluscope.sweep.task import available_cores

        names = [n.strip() for n in only.split(",") if n.strip()] if only is not None else None
        count = workers or min(available_cores(), 4)

        def extra(experiment) -> dict:
            return _with_data_dir(experiment.config, {}, data_dir)

        chosen, _ = check_plan(names, scale.value, out, extra, count, force)
        board = Board([e.name for e in chosen], out, count)

        def show(name: str, result) -> None:
            board.finished(name, result)
            if isinstance(result, str):
                console.print(f"[red]error[/] in {name}:\n{escape(result)}")
            elif verbose or count == 1:
                _print_outcome(result)
            else:
                passed = sum(p.passed for p in result.outcome.predictions)
                console.print(
                    f"[bold]{name}[/] done: {passed}/{len(result.outcome.predictions)} PASS"
                )

        def run_all_experiments():
            return run_all(
                names,
                scale.value,
                out,
                overrides=extra,
                rerun=rerun,
                force=force,
                workers=count,
                console=console if count == 1 else None,
                on_result=show,
            )

        if count == 1:  # in this process: each training run shows its own progress bar
            done = _interruptible(run_all_experiments, out)
        else:
            with Live(board, console=console, refresh_per_second=2, transient=True):
                done = _interruptible(run_all_experiments, out)
        console.print(verdict_table(done.runs, done.failures, verbose))
        predictions = [p for r in done.runs for p in r.outcome.predictions]
        console.print(
            f"{sum(p.passed for p in predictions)}/{len(predictions)} predictions PASS, "
            f"{len(done.failures)} experiment(s) failed"
        )
        show_report(done.report, open_)
        if done.failures:
            raise typer.Exit(1)

    _run(go)
