"""The ``reluscope`` command line: one module per command group."""

from __future__ import annotations

import typer

from reluscope.cli.bounds import bounds
from reluscope.cli.experiments import list_experiments, reproduce, run
from reluscope.cli.measure import measure
from reluscope.cli.regions import regions_app
from reluscope.cli.sweep import sweep

app = typer.Typer(help="Look inside piecewise-linear (ReLU) networks.", no_args_is_help=True)
app.add_typer(regions_app, name="regions")
app.command("measure")(measure)
app.command("bounds")(bounds)
app.command("experiments")(list_experiments)
app.command("run")(run)
app.command("reproduce")(reproduce)
app.command("sweep")(sweep)


def main() -> None:
    app()
